"""Executed kernels on this host's roofline: each operator timed, and decode speed against
its bound.

:func:`op_points` times every operator of one step (the embedding, one layer's operators,
the head) in isolation on the decoder's own weights and activations of the step's shape,
and reports its FLOPs and bytes (docs/counting.md) with the time it took: a measured point
(intensity, achieved FLOP/s) for a roofline plot. :func:`against_roofline` adds the bound
each point has on a device (the host's measured entry, :mod:`lpulab.kernels.hostbench`):
the tier its bytes fit in, the roofline time, and the fraction of that bound reached.
:func:`decode_speed` measures greedy decode tokens/s and its roofline bound (the bytes a
decode step must stream, weights and KV cache, over the bandwidth of the tier that holds
them; or the FLOPs over the peak, whichever is slower).

Times are medians of ``repeats`` timed runs, each long enough (``min_time``) that the
clock's resolution does not matter. An operator timed alone runs with warm caches: a
small model's weights stay in cache between runs, which is what the tier choice says.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from .. import roofline, workload
from . import ops
from .hostbench import tier_for
from .ops import OpCount

__all__ = ["op_points", "against_roofline", "decode_speed", "time_call"]


def time_call(fn: Callable[[], object], repeats: int = 5, min_time: float = 0.002,
              clock: Callable[[], float] = time.perf_counter) -> float:
    """Median seconds per call of ``fn`` over ``repeats`` timed runs, each repeating the call
    until it lasts ``min_time`` (calibrated once, after a warm-up call)."""
    if repeats < 1:
        raise ValueError(f"time_call: repeats must be >= 1, got {repeats}")
    fn()
    n = 1
    while True:
        t0 = clock()
        for _ in range(n):
            fn()
        dt = clock() - t0
        if dt >= min_time or n >= 1 << 16:
            break
        n = min(1 << 16, max(2 * n, int(n * min_time / max(dt, 1e-9) * 1.2)))
    times = []
    for _ in range(repeats):
        t0 = clock()
        for _ in range(n):
            fn()
        times.append((clock() - t0) / n)
    return float(np.median(times))


def op_points(decoder, *, batch: int = 1, context: int = 0, tokens: int = 1, repeats: int = 5,
              min_time: float = 0.002, seed: int = 0, layer: int = 0) -> pd.DataFrame:
    """Each operator of one step with ``batch`` sequences of ``tokens`` new tokens after
    ``context`` cached ones (``tokens=1``: a decode step), timed alone.

    Rows: ``embedding``, the operators of layer ``layer`` (``attention`` is scores, softmax
    and values together: one numpy call), ``final_norm``, ``lm_head``. Columns: ``op``,
    ``phase``, ``per_step`` (how many times a step runs it: the layer count for layer ops),
    ``flops``, ``bytes`` (all kinds), ``weight``, ``intensity`` (FLOP/byte), ``seconds``
    (median per call), ``flops_per_s``, ``bytes_per_s``.
    """
    c, W, num = decoder.config, decoder.weights, decoder.numerics
    if not 0 <= layer < c.n_layers:
        raise ValueError(f"op_points: layer must be in 0..{c.n_layers - 1}, got {layer}")
    if batch < 1 or tokens < 1 or context < 0:
        raise ValueError(f"op_points: need batch >= 1, tokens >= 1, context >= 0; got {batch}, {tokens}, {context}")
    rng = np.random.default_rng(seed)
    b, s, past = int(batch), int(tokens), int(context)
    n, h, hq, g, dh, f = b * s, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn
    kvt = np.dtype(num.kv_dtype)
    ids = rng.integers(0, c.vocab, n)
    x = rng.standard_normal((n, h), dtype=np.float32)
    hn = rng.standard_normal((n, h), dtype=np.float32)
    q = rng.standard_normal((n, hq * dh), dtype=np.float32)
    q4 = ops.split_heads(q, b, s, hq, dh)
    k4 = rng.standard_normal((b, g, s, dh), dtype=np.float32)
    kc = rng.standard_normal((b, g, past + s, dh), dtype=np.float32).astype(kvt)
    vc = rng.standard_normal((b, g, past + s, dh), dtype=np.float32).astype(kvt)
    att = rng.standard_normal((n, hq * dh), dtype=np.float32)
    gu = rng.standard_normal((n, f), dtype=np.float32)
    last = rng.standard_normal((b, h), dtype=np.float32)
    positions = np.arange(past, past + s)
    p = f"layers.{layer}."
    cw = kvt.itemsize
    cases: list[tuple[str, int, Callable[[], object]]] = [
        ("embedding", 1, lambda: ops.embedding(ids, W["embed_tokens"], name="embedding")),
        ("attn_norm", c.n_layers, lambda: ops.rmsnorm(x, W[p + "attn_norm"], c.norm_eps, name=p + "attn_norm")),
        ("q_proj", c.n_layers, lambda: ops.linear(hn, W[p + "q_proj"], name=p + "q_proj")),
        ("k_proj", c.n_layers, lambda: ops.linear(hn, W[p + "k_proj"], name=p + "k_proj", write="kv", write_itemsize=cw)),
        ("v_proj", c.n_layers, lambda: ops.linear(hn, W[p + "v_proj"], name=p + "v_proj", write="kv", write_itemsize=cw)),
        ("rope", c.n_layers, lambda: ops.rope(q4, k4, positions, theta=c.rope_theta, layout=c.rope_layout, name=p + "rope")),
        ("attention", c.n_layers, lambda: ops.attention(q4, kc, vc, past, prefix=p, round_inputs=num.round_attn_inputs)),
        ("o_proj", c.n_layers, lambda: ops.linear(att, W[p + "o_proj"], name=p + "o_proj")),
        ("attn_residual", c.n_layers, lambda: ops.residual_add(x, hn, name=p + "attn_residual")),
        ("ffn_norm", c.n_layers, lambda: ops.rmsnorm(x, W[p + "ffn_norm"], c.norm_eps, name=p + "ffn_norm")),
        ("gate_proj", c.n_layers, lambda: ops.linear(hn, W[p + "gate_proj"], name=p + "gate_proj")),
        ("up_proj", c.n_layers, lambda: ops.linear(hn, W[p + "up_proj"], name=p + "up_proj")),
        ("silu_mul", c.n_layers, lambda: ops.silu_mul(gu, gu, name=p + "silu_mul")),
        ("down_proj", c.n_layers, lambda: ops.linear(gu, W[p + "down_proj"], name=p + "down_proj")),
        ("ffn_residual", c.n_layers, lambda: ops.residual_add(x, hn, name=p + "ffn_residual")),
        ("final_norm", 1, lambda: ops.rmsnorm(x, W["final_norm"], c.norm_eps, name="final_norm")),
        ("lm_head", 1, lambda: ops.lm_head(last, W[c.head_weight_name], name="lm_head")),
    ]
    phase = "decode" if s == 1 else "prefill"
    rows = []
    for name, per_step, fn in cases:
        out = fn()
        counts = [v for v in (out if isinstance(out, tuple) else (out,)) if isinstance(v, (OpCount, list))]
        flat = [x for v in counts for x in (v if isinstance(v, list) else [v])]
        cnt = ops.total(flat, name)
        sec = time_call(fn, repeats, min_time)
        rows.append({"op": name, "phase": phase, "per_step": per_step, "flops": cnt.flops, "bytes": cnt.bytes,
                     "weight": cnt.weight, "intensity": cnt.flops / cnt.bytes if cnt.bytes else np.nan,
                     "seconds": sec, "flops_per_s": cnt.flops / sec, "bytes_per_s": cnt.bytes / sec})
    return pd.DataFrame(rows)


def against_roofline(points: pd.DataFrame, device, precision: str = "fp32") -> pd.DataFrame:
    """``points`` (from :func:`op_points`) with the roofline of ``device`` (a host entry):
    ``tier`` (the fastest tier that holds the op's bytes, :func:`tier_for`), ``bound_s``
    (roofline time: FLOPs over the peak or bytes over that tier's bandwidth, whichever is
    slower), ``bound`` (which) and ``fraction`` (bound_s / seconds: 1.0 is on the roof)."""
    r = roofline.roofs(device, precision)
    out = points.copy()
    tiers = np.atleast_1d(tier_for(device, out["bytes"].to_numpy(float)))
    out["tier"] = tiers
    out["bound_s"] = [float(roofline.op_time(fl, {t: by}, r)) for fl, t, by in zip(out.flops, tiers, out["bytes"])]
    out["bound"] = [str(roofline.bound(fl, {t: by}, r)) for fl, t, by in zip(out.flops, tiers, out["bytes"])]
    out["fraction"] = out["bound_s"] / out["seconds"]
    return out


def decode_speed(decoder, device, *, prompt: int = 8, new_tokens: int = 16, batch: int = 1, repeats: int = 3,
                 seed: int = 0, precision: str = "fp32") -> dict:
    """Greedy decode speed of ``decoder`` on this host against its roofline on ``device``.

    Prefills ``prompt`` random tokens, then times ``new_tokens`` decode steps (median of
    ``repeats`` runs after a short warm-up run of two steps). The bound is one decode step at the middle context:
    its FLOPs over ``device``'s ``precision`` peak, or the bytes it must stream (weights
    and KV cache read, docs/counting.md) over the bandwidth of the tier that holds them,
    whichever is slower. Returns tokens_per_s (sequences x steps per second), step_s,
    bound_s, bound_tokens_per_s, fraction, tier, bound (which roof), the step's flops,
    weight bytes, streamed bytes, all bytes and ops_per_step (operator calls in a step).
    """
    if prompt < 1 or new_tokens < 1 or batch < 1:
        raise ValueError(f"decode_speed: prompt, new_tokens and batch must be >= 1, got {prompt}, {new_tokens}, {batch}")
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, decoder.config.vocab, (batch, prompt))

    ops_per_step = []

    def run(steps: int = new_tokens):
        cache = decoder.new_cache(batch, prompt + steps + 1)
        tok = np.argmax(decoder.forward(ids, cache).logits, axis=-1)
        t0 = time.perf_counter()
        for _ in range(steps):
            step = decoder.decode(tok, cache)
            tok = np.argmax(step.logits, axis=-1)
        dt = time.perf_counter() - t0
        ops_per_step.append(len(step.counts))
        return dt

    run(min(new_tokens, 2))  # warm-up: caches, buffers and worker threads, not a full run
    dt = float(np.median([run() for _ in range(repeats)]))
    step_s = dt / new_tokens
    model = decoder.config.to_model()
    ctx = prompt + new_tokens // 2
    c = workload.totals(model, "decode", batch, ctx, None, decoder.workload_precision)
    streamed = float(c.weight + c.kv_read)
    tier = str(tier_for(device, streamed))
    r = roofline.roofs(device, precision)
    bound_s = float(roofline.op_time(c.flops, {tier: streamed}, r))
    return {"tokens_per_s": batch / step_s, "step_s": step_s, "bound_s": bound_s, "bound_tokens_per_s": batch / bound_s,
            "fraction": bound_s / step_s, "tier": tier, "bound": str(roofline.bound(c.flops, {tier: streamed}, r)),
            "flops": float(c.flops), "weight_bytes": float(c.weight), "streamed_bytes": streamed,
            "bytes": float(c.bytes), "ops_per_step": ops_per_step[-1], "prompt": prompt, "new_tokens": new_tokens, "batch": batch, "repeats": repeats}
