"""Benchmark: one vectorised call over 1,000,000 configurations against the same function
called configuration by configuration in a Python loop.

Run: .venv/bin/python benchmarks/bench_perf_vectorised.py [--n 1000000] [--loop 2000] [--repeat 5]
Prints the medians and the ratio, and writes benchmarks/results/perf_vectorised.json.
The loop is timed on a sample of --loop configurations and reported per configuration.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from lpulab import catalog, perf


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--loop", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    model = catalog.load_model("llama-2-70b")
    dep = perf.Deployment(catalog.load_device("nvidia-h100-sxm"), 8, tensor=8, precision="fp8", hop_latency_s=5e-6)
    rng = np.random.default_rng(0)
    conc = rng.integers(1, 4097, a.n).astype(float)   # one configuration = one concurrency (with its context)

    def vector():
        return perf.operating_points(model, dep, conc, 550, 150, "fp8", as_frame=False)

    def loop():
        return [perf.operating_points(model, dep, float(x), 550, 150, "fp8", as_frame=False) for x in conc[:a.loop]]

    vector(), loop()  # warm up
    tv, tl = [], []
    for _ in range(a.repeat):
        t = time.perf_counter()
        out = vector()
        tv.append((time.perf_counter() - t) / a.n)
        t = time.perf_counter()
        ref = loop()
        tl.append((time.perf_counter() - t) / a.loop)
    # the two give the same numbers
    got = out["tpot_s"][: a.loop]
    exp = np.array([float(r["tpot_s"]) for r in ref])
    assert np.allclose(got, exp, rtol=1e-9), "vectorised and loop results differ"
    res = {"n": a.n, "loop_sample": a.loop, "repeat": a.repeat,
           "vector_ns_per_config_median": statistics.median(tv) * 1e9,
           "loop_ns_per_config_median": statistics.median(tl) * 1e9,
           "speedup_median": statistics.median(lo / v for lo, v in zip(tl, tv)),
           "vector_runs_ns": [x * 1e9 for x in tv], "loop_runs_ns": [x * 1e9 for x in tl],
           "machine": platform.machine(), "python": platform.python_version(), "numpy": np.__version__}
    out_dir = Path(__file__).resolve().parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "perf_vectorised.json").write_text(json.dumps(res, indent=2))
    print(f"vectorised: {res['vector_ns_per_config_median']:.0f} ns/config (median of {a.repeat}, {a.n} configs in one call)")
    print(f"loop:       {res['loop_ns_per_config_median']:.0f} ns/config (median of {a.repeat}, {a.loop}-config sample)")
    print(f"speed-up:   {res['speedup_median']:.0f}x (median of per-run ratios)")


if __name__ == "__main__":
    main()
