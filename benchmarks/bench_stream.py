"""numpy STREAM kernels (lpulab.kernels.hostbench) vs a small C STREAM compiled here.

Compiles benchmarks/stream.c with gcc (-O3 -march=native -fopenmp) into a temporary
directory, then, for each thread count, array size and kernel, alternates rounds: the C
binary times the kernel NTIMES times, then numpy does (same N, same thread count, same
STREAM byte counting). Each round gives a ratio of medians; the report gives the median
of those ratios (other work on a shared machine changes from minute to minute, so
ratios taken side by side are steadier than ratios of overall medians) and the ratio of
the best samples (STREAM's statistic). Aim: numpy >= 0.8 of C for copy and triad.

    python benchmarks/bench_stream.py [--runs 3] [--ntimes 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _common import HERE, table, write_result

from lpulab.kernels import hostbench as hb


def compile_stream(tmp: Path) -> Path:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("bench_stream: no C compiler (gcc) found")
    exe = tmp / "stream"
    subprocess.run([cc, "-O3", "-march=native", "-fopenmp", str(HERE / "stream.c"), "-o", str(exe)], check=True)
    return exe


def run_c(exe: Path, n: int, ntimes: int, reps: int, threads: int, kernel: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMP_PROC_BIND="false")
    out = subprocess.run([str(exe), str(n), str(ntimes), str(reps), kernel], env=env, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ntimes", type=int, default=10)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    thread_counts = sorted({1, cpus})
    rows, raw = [], []
    with tempfile.TemporaryDirectory() as tmp:
        exe = compile_stream(Path(tmp))
        for threads in thread_counts:
            sizes = {"l2": threads * (1 << 15), "l3": 1 << 19, "dram": 1 << (22 if args.quick else 24)}
            for tier, n in sizes.items():
                reps = max(1, (1 << 24) // n)
                arrays = hb._Arrays(n, threads)
                pool = ThreadPoolExecutor(threads) if threads > 1 else None
                try:
                    for k in hb.KERNELS:
                        c_all, np_all, ratios = [], [], []
                        for _ in range(args.runs):
                            res = run_c(exe, n, args.ntimes, reps, threads, k)
                            c_gbs = [hb.STREAM_BYTES[k] * n * reps / t / 1e9 for t in res[k]]
                            r = hb.measure_stream(k, n, threads=threads, repeats=args.ntimes, min_time=0.005,
                                                  pool=pool, arrays=arrays)
                            np_gbs = [r.bytes_per_rep / t / 1e9 for t in r.times]
                            ratios.append(float(np.median(np_gbs) / np.median(c_gbs)))
                            c_all += c_gbs
                            np_all += np_gbs
                        c_all, np_all = np.array(c_all), np.array(np_all)
                        row = {"threads": threads, "tier": tier, "n": n, "kernel": k,
                               "C_median_GBps": float(np.median(c_all)), "numpy_median_GBps": float(np.median(np_all)),
                               "ratio_median": float(np.median(ratios)),
                               "C_best_GBps": float(c_all.max()), "numpy_best_GBps": float(np_all.max()),
                               "ratio_best": float(np_all.max() / c_all.max())}
                        rows.append(row)
                        raw.append({**row, "round_ratios": ratios, "C_samples_GBps": c_all.tolist(),
                                    "numpy_samples_GBps": np_all.tolist()})
                finally:
                    if pool:
                        pool.shutdown()
    print(table(rows, ["threads", "tier", "n", "kernel", "C_median_GBps", "numpy_median_GBps", "ratio_median", "ratio_best"]))
    p = write_result("stream_vs_c", {"runs": args.runs, "ntimes": args.ntimes, "rows": raw,
                                     "aim": "numpy/C >= 0.8 for copy and triad"})
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
