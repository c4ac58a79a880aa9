"""Peak memory of a sharded run vs the model's bytes (aim: <= 1.5x).

Each case runs in a fresh subprocess: tracemalloc is started before the model is built
and its peak is reset once the model exists, so the run's traced peak includes the
model's own bytes plus everything the run allocates (views, KV caches, activations,
int8 conversion tiles); the ratio is that peak / model bytes. numpy reports its buffers
to tracemalloc. The process's max RSS growth from start to end (``resource.getrusage``,
so including model construction and the interpreter's own arenas) is given too, and the
traced peak while building the model.

    python benchmarks/bench_sharded_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys

from _common import HERE, table, write_result

WORKER = r"""
import json, resource, sys, tracemalloc
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import numpy as np
from bench_decode_roofline import CONFIG
from lpulab.kernels import Decoder, ShardedDecoder, build_plan
prec, stages, tp, prompt, steps, whole = {args}
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
m = Decoder.random(CONFIG, seed=0, precision=prec)
model_bytes = m.nbytes
build_peak = tracemalloc.get_traced_memory()[1]
tracemalloc.reset_peak()
runner = m if whole else ShardedDecoder(m, build_plan(CONFIG, n_chips=stages * tp, pipeline_stages=stages,
                                                      tensor_parallel=tp, sram_bytes=10**12))
toks = np.random.default_rng(0).integers(0, CONFIG.vocab, (1, prompt))
g = runner.generate(toks, steps)
cur, peak = tracemalloc.get_traced_memory()
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(model_bytes=model_bytes, traced_peak=peak, build_peak=build_peak,
                      rss_growth=(rss1 - rss0) * 1024)))
"""


def run_case(prec: str, stages: int, tp: int, prompt: int = 32, steps: int = 8, whole: bool = False) -> dict:
    code = WORKER.format(root=str(HERE.parent), bench=str(HERE), args=repr((prec, stages, tp, prompt, steps, whole)))
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = []
    for prec in ("fp32", "int8"):
        for stages, tp, whole in ((1, 1, True), (1, 1, False), (2, 2, False), (4, 1, False), (1, 4, False)):
            r = run_case(prec, stages, tp, whole=whole)
            rows.append({"precision": prec, "run": "whole" if whole else f"{stages} stages x {tp} TP",
                         "model_MB": r["model_bytes"] / 1e6, "traced_peak_MB": r["traced_peak"] / 1e6,
                         "peak_ratio": r["traced_peak"] / r["model_bytes"],
                         "build_peak_ratio": r["build_peak"] / r["model_bytes"],
                         "rss_growth_ratio": r["rss_growth"] / r["model_bytes"]})
    print(table(rows, list(rows[0])))
    p = write_result("sharded_memory", {"rows": rows, "aim": "peak_ratio <= 1.5", "prompt_tokens": 32, "decode_steps": 8})
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
