"""Benchmark: placement.need over a grid of batch x context in one vectorised call, for a
model whose layers are all alike (Llama-2-70B: the closed form), one that starts dense and
turns MoE (DeepSeek-V3: two runs of alike layers) and one that alternates windowed and full
layers (gpt-oss-120b: 36 runs), on the Groq LPU v1 (thousands of tensor widths to try)
and the H100; against the same grid point by point in a Python loop.

Run: .venv/bin/python benchmarks/bench_placement_need.py [--grid 40] [--loop 40] [--repeat 5]
Prints the medians per grid point and the ratio, and writes benchmarks/results/placement_need.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from _common import table, write_result

from lpulab import catalog, placement


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--grid", type=int, default=40, help="batches and contexts per axis")
    ap.add_argument("--loop", type=int, default=40, help="grid points timed one by one")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    B, C = np.meshgrid(np.unique(np.geomspace(1, 256, a.grid).round()), np.unique(np.geomspace(512, 32768, a.grid).round()),
                       indexing="ij")
    rows = []
    for mid in ("llama-2-70b", "deepseek-v3", "gpt-oss-120b"):
        m = catalog.load_model(mid)
        for did in ("groq-lpu-v1", "nvidia-h100-sxm"):
            d = catalog.load_device(did)
            pts = list(zip(B.ravel()[: a.loop], C.ravel()[: a.loop]))
            placement.need(m, d, B, C, precision="int8")       # warm up (the per-model tables)
            tv, tl = [], []
            for _ in range(a.repeat):
                t = time.perf_counter()
                n = placement.need(m, d, B, C, precision="int8")
                tv.append((time.perf_counter() - t) / B.size)
                t = time.perf_counter()
                one = [placement.need(m, d, b, c, precision="int8").chips for b, c in pts]
                tl.append((time.perf_counter() - t) / len(pts))
            assert np.array_equal(np.asarray(one, float), n.chips.ravel()[: len(pts)]), (mid, did)
            rows.append({"model": mid, "device": did, "points": int(B.size),
                         "vector_us_per_point": statistics.median(tv) * 1e6,
                         "loop_us_per_point": statistics.median(tl) * 1e6,
                         "speedup": statistics.median(l_ / v for l_, v in zip(tl, tv)),
                         "vector_runs_us": [x * 1e6 for x in tv], "loop_runs_us": [x * 1e6 for x in tl]})
    write_result("placement_need", {"grid": a.grid, "loop_sample": a.loop, "repeat": a.repeat, "rows": rows})
    print(table(rows, ["model", "device", "points", "vector_us_per_point", "loop_us_per_point", "speedup"]))


if __name__ == "__main__":
    main()
