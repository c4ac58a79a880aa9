"""Decode at batch 1 of a model larger than the last-level cache vs its roofline bound.

Bound: the weight bytes one decode step reads (the ``weight`` bytes of its op counts,
docs/counting.md) divided by this machine's DRAM bandwidth, measured here with the host
bench (numpy triad at DRAM size, same thread count as numpy's BLAS). Ratio = bound time /
measured step time (1.0 = at the roofline). Rounds alternate a bandwidth measurement and
a run of decode steps, so both see the same background load; the ratio reported is the
median over rounds. Also given against the GEMV-measured bandwidth (a read-only stream,
which this CPU serves faster than triad). Aim: >= 0.6 (fp32).

    python benchmarks/bench_decode_roofline.py [--rounds 5] [--steps 16]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from _common import table, write_result
from lpulab.kernels import Decoder, DecoderConfig
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--precisions", default="fp32,int8")
    args = ap.parse_args()
    # numpy's BLAS uses OPENBLAS_NUM_THREADS (default: all CPUs); the bandwidth is measured
    # with the same number of threads.
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", len(os.sched_getaffinity(0))))
    n = 1 << 24  # 128 MiB per array: 4x the L3
    arrays = hb._Arrays(n, threads)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads) if threads > 1 else None
    rows, raw = [], {}
    models = {}
    for prec in args.precisions.split(","):
        models[prec] = Decoder.random(CONFIG, seed=0, precision=prec)
    for prec, m in models.items():
        decode_times(m, 2)  # warm up
        ratios, ratios_gemv, steps_med, bw_med, gemv_med = [], [], [], [], []
        wbytes = 0
        for _ in range(args.rounds):
            bw = hb.measure_stream("triad", n, threads=threads, repeats=5, min_time=0.005, pool=pool, arrays=arrays)
            gemv = hb.measure_gemv(8192, 8192, repeats=5)
            times, wbytes = decode_times(m, args.steps)
            step = float(np.median(times))
            ratios.append(wbytes / (bw.median_gbs * 1e9) / step)
            ratios_gemv.append(wbytes / (gemv.median_gbs * 1e9) / step)
            steps_med.append(step)
            bw_med.append(bw.median_gbs)
            gemv_med.append(gemv.median_gbs)
        row = {
            "precision": prec, "model_MB": m.nbytes / 1e6, "weight_MB_per_step": wbytes / 1e6,
            "step_ms": 1e3 * float(np.median(steps_med)), "tokens_per_s": 1 / float(np.median(steps_med)),
            "triad_GBps": float(np.median(bw_med)), "achieved_GBps": wbytes / float(np.median(steps_med)) / 1e9,
            "ratio_vs_triad": float(np.median(ratios)), "gemv_GBps": float(np.median(gemv_med)),
            "ratio_vs_gemv": float(np.median(ratios_gemv)),
        }
        rows.append(row)
        raw[prec] = {**row, "round_ratios": ratios, "round_ratios_gemv": ratios_gemv, "round_step_s": steps_med}
    if pool:
        pool.shutdown()
    print(table(rows, list(rows[0])))
    p = write_result(f"decode_roofline_{threads}t", {"config": CONFIG.__dict__, "threads": threads, "rounds": args.rounds,
                                         "steps": args.steps, "results": raw, "aim": "ratio_vs_triad >= 0.6 (fp32)"})
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
