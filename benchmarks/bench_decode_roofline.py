"""Decode at batch 1 of a model larger than the last-level cache vs its roofline bound.

Bound: the weight bytes one decode step reads (the ``weight`` bytes of its op counts,
docs/counting.md: 4 per fp32 weight, 1 per int8 or fp8 weight, half a byte per int4)
divided by this machine's DRAM bandwidth, measured here with the host bench (numpy triad
at DRAM size, same thread count as the kernels). Ratio = bound time / measured step time
(1.0 = at the roofline). A round measures the bandwidth, then a run of decode steps of
every precision, so all see the same background load; the ratio reported is the median
over rounds. Also given against the GEMV-measured bandwidth (a read-only stream, which
this CPU serves faster than triad).

For the quantised precisions the run also measures the kernels' own ceiling on this
machine: the tiled product (expand a tile of weights into a float buffer, multiply with
BLAS) on a matrix that fits in the last-level cache, so no DRAM traffic limits it.
``ratio_vs_kernel`` is that ceiling's time for the step's weights over the step time: how
close the decode gets to what numpy's expansion pass allows, whatever the memory.

Aims (issue 16): int8 >= 0.5 of the triad roofline; fp32 no worse than before.

    python benchmarks/bench_decode_roofline.py [--rounds 5] [--steps 16] [--precisions fp32,int8]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import table, write_result

from lpulab.kernels import Decoder, DecoderConfig, ops, tiled
from lpulab.kernels import hostbench as hb

# ~123 M parameters: 492 MB in float32, 123 MB in int8, both well above a 32 MiB L3.
CONFIG = DecoderConfig(n_layers=8, hidden=1024, n_heads=16, n_kv_heads=4, head_dim=64, ffn=2816, vocab=32000)


def decode_times(model: Decoder, steps: int, prompt_len: int = 8) -> tuple[list[float], int]:
    cache = model.new_cache(1, prompt_len + steps + 2)
    rng = np.random.default_rng(0)
    st = model.forward(rng.integers(0, model.config.vocab, (1, prompt_len)), cache)
    tok = int(np.argmax(st.logits[0]))
    times, wbytes = [], 0
    for _ in range(steps):
        t0 = time.perf_counter()
        st = model.decode(np.array([tok]), cache)
        times.append(time.perf_counter() - t0)
        tok = int(np.argmax(st.logits[0]))
        wbytes = st.total.weight
    return times, wbytes


def kernel_ceiling(precision: str, repeats: int = 5) -> float:
    """Weights per second of the tiled product on cache-resident weights (all threads),
    matrix-vector, the decode's shapes: 4 Mi weights (4 MiB at int8)."""
    rng = np.random.default_rng(1)
    w = ops.FORMATS[precision].quantize(rng.standard_normal((4096, 1024), dtype=np.float32))
    x = rng.standard_normal((1, 1024), dtype=np.float32)
    w.matmul_t(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(4):
            w.matmul_t(x)
        times.append((time.perf_counter() - t0) / 4)
    return 4096 * 1024 / float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--precisions", default="fp32,int8")
    args = ap.parse_args()
    threads = tiled.threads()  # the kernels' threads (LPULAB_THREADS / OPENBLAS_NUM_THREADS / the CPUs)
    n = 1 << 24  # 128 MiB per array: 4x the L3
    arrays = hb._Arrays(n, threads)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    precs = args.precisions.split(",")
    models = {p: Decoder.random(CONFIG, seed=0, precision=p) for p in precs}
    for m in models.values():
        decode_times(m, 2)  # warm up
    per = {p: {"ratio": [], "ratio_gemv": [], "ratio_kernel": [], "step": [], "triad": [], "gemv": [], "ceiling": [],
               "load": []} for p in precs}
    wbytes = {}
    for _ in range(args.rounds):
        bw = hb.measure_stream("triad", n, threads=threads, repeats=5, min_time=0.005, pool=pool, arrays=arrays)
        gemv = hb.measure_gemv(8192, 8192, repeats=5)
        for p, m in models.items():
            times, wbytes[p] = decode_times(m, args.steps)
            step = float(np.median(times))
            r = per[p]
            r["ratio"].append(wbytes[p] / (bw.median_gbs * 1e9) / step)
            r["ratio_gemv"].append(wbytes[p] / (gemv.median_gbs * 1e9) / step)
            r["step"].append(step)
            r["triad"].append(bw.median_gbs)
            r["gemv"].append(gemv.median_gbs)
            r["load"].append(os.getloadavg()[0])
            if p != "fp32":
                ceil = kernel_ceiling(p)
                r["ceiling"].append(ceil)
                r["ratio_kernel"].append(wbytes[p] / ops.FORMATS[p].bytes_per_weight / ceil / step)
    if pool:
        pool.shutdown()
    rows, raw = [], {}
    for p, m in models.items():
        r = per[p]
        med = lambda k: float(np.median(r[k])) if r[k] else float("nan")  # noqa: E731, B023 (used within this iteration)
        row = {
            "precision": p, "model_MB": m.nbytes / 1e6, "weight_MB_per_step": wbytes[p] / 1e6,
            "step_ms": 1e3 * med("step"), "tokens_per_s": 1 / med("step"), "triad_GBps": med("triad"),
            "achieved_GBps": wbytes[p] / med("step") / 1e9, "ratio_vs_triad": med("ratio"), "gemv_GBps": med("gemv"),
            "ratio_vs_gemv": med("ratio_gemv"), "kernel_Gweights_s": med("ceiling") / 1e9,
            "ratio_vs_kernel": med("ratio_kernel"), "load": med("load"),
        }
        rows.append(row)
        raw[p] = {**row, "round_ratios": r["ratio"], "round_ratios_gemv": r["ratio_gemv"],
                  "round_ratios_kernel": r["ratio_kernel"], "round_step_s": r["step"], "round_load": r["load"]}
    print(table(rows, list(rows[0])))
    p = write_result(f"decode_roofline_{threads}t", {
        "config": CONFIG.__dict__, "threads": threads, "rounds": args.rounds, "steps": args.steps, "results": raw,
        "load_at_end": os.getloadavg(), "aim": "ratio_vs_triad >= 0.5 (int8); fp32 no worse than before"})
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
