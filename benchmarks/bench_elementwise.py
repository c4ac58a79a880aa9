"""The decoder's element-wise operators: the fused forms in lpulab.kernels.ops against the
plain forms they replaced, and against np.einsum where it could do the same work.

Each operator runs on the activations of a decode step (one token) and of a prefill (64
tokens) of SmolLM2-135M's shape. ``before``: the operator as lpulab.kernels.ops had it
before issue 16 (a new array per operation); ``now``: lpulab.kernels.ops (in-place
ufuncs with ``out=``, fewer temporaries, q and k rotated in one pass, the rotary angles
made once per step). ``einsum``: the same reduction through ``np.einsum(optimize=...)``
where one exists. Times are the median of ``--repeats`` batches (each batch long enough
for the clock), before and now alternating three times in one run (the median of the
three), BLAS at one thread as inside the decoder; ``speedup`` = before / now. The results
are checked to be equal (bit for bit where the arithmetic is the same).

    python benchmarks/bench_elementwise.py [--repeats 9]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import table, write_result

from lpulab.kernels import ops, tiled

# ------------------------------------------------------------------ the forms before issue 16
# (lpulab.kernels.ops at commit 7cf7162, with their checks and counts, so the comparison is
# of the whole operator)

def rmsnorm_before(x, gain, eps, *, name="n"):
    ops._check_2d(x, f"rmsnorm {name!r} input")
    n, h = x.shape
    if gain.shape != (h,):
        raise ValueError(f"rmsnorm {name!r}: gain must have shape ({h},), got {gain.shape}")
    ms = np.sum(np.square(x, dtype=np.float64), axis=1) / h
    scale = (1.0 / np.sqrt((ms + eps).astype(np.float32))).astype(x.dtype)
    y = (x * scale[:, None]) * gain
    a = x.itemsize
    return y, ops.OpCount(name, flops=4 * n * h, weight=h * gain.itemsize, act_read=n * h * a, act_write=n * h * a)


def rmsnorm_einsum(x, gain, eps):
    x64 = x.astype(np.float64)
    ms = np.einsum("ij,ij->i", x64, x64, optimize=True) / x.shape[1]
    scale = (1.0 / np.sqrt((ms + eps).astype(np.float32))).astype(x.dtype)
    y = x * scale[:, None]
    y *= gain
    return y


def softmax_before(x, mask, scale):
    z = x * np.asarray(scale, dtype=x.dtype)
    if mask is not None:
        z = np.where(mask, z, np.asarray(-np.inf, dtype=z.dtype))
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(z - m)
    return e / np.sum(e, axis=-1, keepdims=True)


def silu_mul_before(g, u, *, name="s"):
    if g.shape != u.shape:
        raise ValueError(f"silu_mul {name!r}: shapes differ, {g.shape} vs {u.shape}")
    with np.errstate(over="ignore"):
        y = g / (np.asarray(1, g.dtype) + np.exp(-g)) * u
    a = g.itemsize
    return y, ops.OpCount(name, flops=5 * g.size, act_read=2 * g.size * a, act_write=g.size * a)


def rope_before(q, k, positions, theta, layout, *, name="r"):
    if q.ndim != 4 or k.ndim != 4 or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"rope {name!r}: expected q (B, H, S, dh) and k (B, G, S, dh), got {q.shape} and {k.shape}")
    cos, sin = ops.rope_angles(positions, q.shape[-1], theta)
    qr, kr = ops.apply_rope(q, cos, sin, layout), ops.apply_rope(k, cos, sin, layout)
    elems = q.size + k.size
    a = q.itemsize
    return qr, kr, ops.OpCount(name, flops=3 * elems, act_read=elems * a, act_write=elems * a)


def scores_einsum(q, k):
    return np.einsum("bgqd,bgtd->bgqt", q, k, optimize=True)


def timed(fn, repeats: int, min_time: float = 0.02) -> float:
    fn()
    n, t = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        t = time.perf_counter() - t0
        if t >= min_time:
            break
        n *= 2
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t0) / n)
    return float(np.median(out))


def cases(n: int, rng):
    h, hq, g, dh, f, t = 576, 9, 3, 64, 1536, 64 + n  # SmolLM2-135M; t keys in the cache
    x = rng.standard_normal((n, h), dtype=np.float32)
    gain = (1 + 0.1 * rng.standard_normal(h)).astype(np.float32)
    gt, up = rng.standard_normal((n, f), dtype=np.float32), rng.standard_normal((n, f), dtype=np.float32)
    q = rng.standard_normal((1, hq, n, dh), dtype=np.float32)
    k = rng.standard_normal((1, g, n, dh), dtype=np.float32)
    pos = np.arange(t - n, t)
    ang = ops.rope_angles(pos, dh, 1e5)
    sc = rng.standard_normal((1, g, hq // g, n, t), dtype=np.float32)
    mask = ops.causal_mask(t - n, n)
    qg = rng.standard_normal((1, g, (hq // g) * n, dh), dtype=np.float32)
    kc = rng.standard_normal((1, g, t, dh), dtype=np.float32)
    return [
        ("rmsnorm", lambda: rmsnorm_before(x, gain, 1e-5)[0], lambda: ops.rmsnorm(x, gain, 1e-5, name="n")[0],
         lambda: rmsnorm_einsum(x, gain, 1e-5), True),
        ("softmax", lambda: softmax_before(sc, mask, 0.125), lambda: ops._softmax(sc, mask, 0.125), None, True),
        ("silu_mul", lambda: silu_mul_before(gt, up)[0], lambda: ops.silu_mul(gt, up, name="s")[0], None, True),
        ("rope q+k", lambda: rope_before(q, k, pos, 1e5, "interleaved")[:2],
         lambda: ops.rope(q, k, pos, theta=1e5, layout="interleaved", name="r", angles=ang)[:2], None, True),
        ("attn scores", lambda: np.matmul(qg, kc.transpose(0, 1, 3, 2)), lambda: np.matmul(qg, kc.transpose(0, 1, 3, 2)),
         lambda: scores_einsum(qg, kc), False),
    ]


def same(a, b, exact: bool) -> bool:
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    if exact:
        return all(np.array_equal(x, y) for x, y in zip(a, b))
    return all(np.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in zip(a, b))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    load0 = os.getloadavg()[0]
    for phase, n in (("decode", 1), ("prefill", 64)):
        for name, before, now, alt, exact in cases(n, rng):
            with tiled.blas_single():  # as inside the decoder
                tb, tn = [], []
                for _ in range(3):  # alternate, so both see the same load
                    tb.append(timed(before, args.repeats))
                    tn.append(timed(now, args.repeats))
                tb, tn = float(np.median(tb)), float(np.median(tn))
            row = {"op": name, "phase": phase, "before_us": tb * 1e6, "now_us": tn * 1e6, "speedup": tb / tn,
                   "equal": same(before(), now(), exact)}
            if alt is not None:
                with tiled.blas_single():
                    ta = timed(alt, args.repeats)
                row.update({"einsum_us": ta * 1e6, "einsum_vs_now": tn / ta, "einsum_equal": same(alt(), now(), False)})
            rows.append(row)
    cols = ["op", "phase", "before_us", "now_us", "speedup", "equal", "einsum_us", "einsum_vs_now", "einsum_equal"]
    print(table(rows, cols))
    p = write_result("elementwise", {"repeats": args.repeats, "rows": rows, "load": [load0, os.getloadavg()[0]]})
    print(f"\nwrote {p}")


if __name__ == "__main__":
    main()
