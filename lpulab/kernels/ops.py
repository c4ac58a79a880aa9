"""Transformer operators in plain numpy, each returning its output and what it cost.

Every operator returns ``(output, OpCount)`` (or several counts for the fused attention
and feed-forward helpers). The counts follow docs/counting.md exactly: FLOPs count a
multiply-add as 2, and bytes are split by kind (weight, act_read, act_write, kv_read,
kv_write), every tensor an op touches counted once per op. Byte widths come from the
arrays themselves: ``a`` is the activation itemsize, ``c`` the KV cache itemsize and ``w``
the weight format's stored bytes per element (4 for float32, 1 for int8; see
:func:`weight_payload_bytes`).

Layouts: activations are row-major ``(N, features)`` with ``N = B*S`` tokens; linear
weights are stored ``(out_features, in_features)`` (the PyTorch / GGUF order) and applied
as ``x @ W.T``; attention tensors are ``(B, heads, S, head_dim)``; a KV cache layer is
``(B, kv_heads, capacity, head_dim)``.

Weights are either float ndarrays or objects with the small weight protocol used here
(:class:`Int8Weight` is one): ``shape``, ``nbytes`` (all stored bytes), ``payload_nbytes``
(the bytes docs/counting.md counts), ``slice(axis, start, stop)`` (a view),
``matmul_t(x)`` (``x @ W.T``) and ``take_rows(idx)`` (float32 rows, for the embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "OpCount",
    "total",
    "by_op",
    "Int8Weight",
    "weight_payload_bytes",
    "matmul_t",
    "quantize_rows",
    "int_matmul_t",
    "dequantize_acc",
    "matmul",
    "linear",
    "embedding",
    "lm_head",
    "rmsnorm",
    "residual_add",
    "softmax",
    "rope_angles",
    "apply_rope",
    "rope",
    "attention",
    "silu_mul",
    "swiglu",
    "ROPE_LAYOUTS",
    "causal_mask",
    "split_heads",
    "check_counts_equal",
]

ROPE_LAYOUTS = ("half", "interleaved")

# Element-wise FLOPs per element, docs/counting.md.
RMSNORM_FLOPS = 4
ROPE_FLOPS = 3
SOFTMAX_FLOPS = 5
SILU_MUL_FLOPS = 5
RESIDUAL_FLOPS = 1


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class OpCount:
    """FLOPs and bytes (by kind) that one operator performed.

    ``name`` is hierarchical, e.g. ``"layers.3.q_proj"``; :attr:`op` is its last part.
    """

    name: str
    flops: int = 0
    weight: int = 0
    act_read: int = 0
    act_write: int = 0
    kv_read: int = 0
    kv_write: int = 0

    def __post_init__(self) -> None:
        for f in fields(self)[1:]:
            v = getattr(self, f.name)
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"OpCount {self.name!r}: {f.name} must be a non-negative integer, got {v!r}")
            object.__setattr__(self, f.name, int(v))

    @property
    def op(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def bytes(self) -> int:
        return self.weight + self.act_read + self.act_write + self.kv_read + self.kv_write

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["bytes"] = self.bytes
        return d

    def __add__(self, other: "OpCount") -> "OpCount":
        if not isinstance(other, OpCount):
            return NotImplemented
        name = self.name if self.name == other.name else f"{self.name}+{other.name}"
        return OpCount(name, *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)[1:]))


def total(counts: Iterable[OpCount], name: str = "total") -> OpCount:
    """Sum of counts (FLOPs and each byte kind)."""
    acc = [0] * 6
    for c in counts:
        for i, f in enumerate(fields(OpCount)[1:]):
            acc[i] += getattr(c, f.name)
    return OpCount(name, *acc)


def by_op(counts: Iterable[OpCount]) -> dict[str, OpCount]:
    """Counts summed per operator kind (the last part of the name), in first-seen order."""
    out: dict[str, OpCount] = {}
    for c in counts:
        prev = out.get(c.op)
        out[c.op] = total([prev, c], c.op) if prev is not None else OpCount(c.op, *(getattr(c, f.name) for f in fields(c)[1:]))
    return out


# --------------------------------------------------------------------------- int8 weights

# int8 x int8: |sum| <= KCHUNK * 127 * 127 < 2**24, so a float32 GEMM over a chunk of
# integer-valued operands is exact whatever order BLAS adds in (1024 * 16129 = 16_516_096
# < 16_777_216); chunks are added in int32.
# int16 activations are split as x = 256*hi + lo with |hi| <= 128, |lo| <= 128; then
# |sum| <= 1024 * 128 * 127 = 16_646_144 < 2**24 per chunk as well, both halves go through
# the same float32 GEMM (stacked as extra rows), and 256*hi_acc + lo_acc is formed in int64.
INT_KCHUNK = 1024
# Elements of one float32 weight tile converted from int8 at a time (4 MiB; larger tiles
# mean fewer Python-level iterations, which dominate below this on a decode step).
INT_TILE_ELEMS = 1 << 20
ACT_BITS = (8, 16)
# Up to this many activation rows, one gemv per row beats a small-M gemm (which packs the tile).
GEMV_ROWS = 4


def quantize_rows(x: np.ndarray, absmax: np.ndarray | None = None, bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row integer quantisation: ``x ~ q * scale[:, None]``.

    ``bits`` 8 (int8, q in [-127, 127]) or 16 (int16, q in [-32767, 32767]).
    ``absmax`` (per row) may be given, e.g. the all-reduced maximum when the row is split
    over chips; it must be at least the row's own max |x|.
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"quantize_rows: x must be 2-D (rows, features), got shape {x.shape}")
    if bits not in ACT_BITS:
        raise ValueError(f"quantize_rows: bits must be one of {ACT_BITS}, got {bits!r}")
    qmax = np.float32(2 ** (bits - 1) - 1)
    if absmax is None:
        absmax = np.max(np.abs(x), axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    scale = (np.asarray(absmax, dtype=np.float32) / qmax).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.rint(x / scale[:, None])
    np.clip(q, -qmax, qmax, out=q)
    return q.astype(np.int8 if bits == 8 else np.int16), scale


def int_matmul_t(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """Exact ``xq @ wq.T`` for integer operands (int8 or int16 activations, int8 weights).

    Integer accumulation done with float32 BLAS on integer-valued operands whose every
    partial sum is exactly representable (see ``INT_KCHUNK``), so the result does not
    depend on the order BLAS adds in, nor on how rows, columns or the reduction are split.
    Returns int32 (int8 activations) or int64 (int16 activations). The int8 weight is
    converted tile by tile (``INT_TILE_ELEMS``); no full float copy of it is made.
    """
    if wq.dtype != np.int8 or xq.dtype not in (np.int8, np.int16):
        raise TypeError(f"int_matmul_t: expected int8/int16 activations and int8 weights, got {xq.dtype} and {wq.dtype}")
    n, k = xq.shape
    o, k2 = wq.shape
    if k != k2:
        raise ValueError(f"int_matmul_t: inner dimensions differ ({k} vs {k2})")
    wide = xq.dtype == np.int16
    if wide:
        hi = np.rint(xq / np.float32(256.0)).astype(np.float32)
        lo = xq.astype(np.float32) - np.float32(256.0) * hi
        xf = np.concatenate([hi, lo])  # (2n, k), all |values| <= 128
    else:
        xf = xq.astype(np.float32)
    acc = np.zeros((xf.shape[0], o), dtype=np.int64 if wide else np.int32)
    if n and o and k:
        kc = min(k, INT_KCHUNK)
        rows = max(1, min(o, INT_TILE_ELEMS // kc))
        buf = np.empty((rows, kc), dtype=np.float32)
        for o0 in range(0, o, rows):
            o1 = min(o, o0 + rows)
            for k0 in range(0, k, kc):
                k1 = min(k, k0 + kc)
                tile = buf[: o1 - o0, : k1 - k0]
                np.copyto(tile, wq[o0:o1, k0:k1], casting="unsafe")
                if xf.shape[0] <= GEMV_ROWS:  # matrix-vector products: BLAS gemv, no packing
                    part = np.stack([tile @ xf[r, k0:k1] for r in range(xf.shape[0])])
                else:
                    part = xf[:, k0:k1] @ tile.T
                if k0 == 0:
                    acc[:, o0:o1] = part
                else:
                    acc[:, o0:o1] += part.astype(acc.dtype)
    if wide:
        return acc[:n] * 256 + acc[n:]
    return acc


def dequantize_acc(acc: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """float32 result of an integer GEMM: ``acc * x_scale[:, None] * w_scale[None, :]``.

    Computed in float64 and rounded once, element by element, so it does not depend on
    how the rows or columns were split.
    """
    s = x_scale.astype(np.float64)[:, None] * w_scale.astype(np.float64)[None, :]
    return (acc.astype(np.float64) * s).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Int8Weight:
    """int8 weight with one float32 scale per output channel (row): ``W ~ q * scale[:, None]``.

    Symmetric per-output-channel quantisation, q in [-127, 127]. ``matmul_t`` quantises the
    activations per row (dynamic, symmetric) to ``act_bits`` (16 by default: W8A16; 8 gives
    W8A8) and accumulates exactly in integers, so splitting the output channels or the
    reduction dimension over chips gives bit-identical results. (Per-row int8 activations
    lose the small entries of rows with one huge "massive activation", which real models
    have; int16 keeps them at the same exactness.)
    """

    q: np.ndarray
    scale: np.ndarray
    act_bits: int = 16

    def __post_init__(self) -> None:
        if self.q.dtype != np.int8 or self.q.ndim != 2:
            raise ValueError(f"Int8Weight.q must be a 2-D int8 array, got {self.q.dtype} {self.q.shape}")
        if self.scale.dtype != np.float32 or self.scale.shape != (self.q.shape[0],):
            raise ValueError(
                f"Int8Weight.scale must be float32 of shape ({self.q.shape[0]},), got {self.scale.dtype} {self.scale.shape}"
            )
        if self.act_bits not in ACT_BITS:
            raise ValueError(f"Int8Weight.act_bits must be one of {ACT_BITS}, got {self.act_bits!r}")

    bytes_per_weight = 1

    @classmethod
    def quantize(cls, w: np.ndarray, act_bits: int = 16) -> "Int8Weight":
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 2:
            raise ValueError(f"Int8Weight.quantize: expected a 2-D (out, in) weight, got shape {w.shape}")
        scale = np.empty(w.shape[0], np.float32)
        q = np.empty(w.shape, np.int8)
        step = max(1, (1 << 20) // max(1, w.shape[1]))  # row blocks: no full-size float temporaries
        for r0 in range(0, w.shape[0], step):
            blk = w[r0:r0 + step]
            s = (np.max(np.abs(blk), axis=1) / np.float32(127.0)).astype(np.float32)
            s[s == 0] = 1.0
            qb = np.rint(blk / s[:, None])
            np.clip(qb, -127, 127, out=qb)
            q[r0:r0 + step] = qb
            scale[r0:r0 + step] = s
        return cls(q, scale, act_bits)

    @property
    def shape(self) -> tuple[int, int]:
        return self.q.shape

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return self.q.nbytes + self.scale.nbytes

    @property
    def payload_nbytes(self) -> int:
        return self.q.nbytes

    def dequantize(self) -> np.ndarray:
        return self.q.astype(np.float32) * self.scale[:, None]

    def slice(self, axis: int, start: int, stop: int) -> "Int8Weight":
        if axis == 0:
            return Int8Weight(self.q[start:stop], self.scale[start:stop], self.act_bits)
        if axis == 1:
            return Int8Weight(self.q[:, start:stop], self.scale, self.act_bits)
        raise ValueError(f"Int8Weight.slice: axis must be 0 or 1, got {axis}")

    def matmul_t(self, x: np.ndarray) -> np.ndarray:
        xq, xs = quantize_rows(x, bits=self.act_bits)
        return dequantize_acc(int_matmul_t(xq, self.q), xs, self.scale)

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        return self.q[idx].astype(np.float32) * self.scale[idx][:, None]


def weight_payload_bytes(w) -> int:
    """Weight bytes as docs/counting.md counts them: elements x stored bytes per element.

    float arrays: ``nbytes``; weight objects: their ``payload_nbytes`` (int8: 1 byte per
    weight; the per-channel scales are not part of the count, but they are part of a
    chip's SRAM residency, see :mod:`lpulab.kernels.sharded`).
    """
    if isinstance(w, np.ndarray):
        return int(w.nbytes)
    return int(w.payload_nbytes)


def _bytes_per_weight(w) -> float:
    if isinstance(w, np.ndarray):
        return float(w.itemsize)
    return w.payload_nbytes / float(np.prod(w.shape))


def matmul_t(x: np.ndarray, w) -> np.ndarray:
    """``x @ W.T`` for a float array or a weight object."""
    if isinstance(w, np.ndarray):
        return x @ w.T
    return w.matmul_t(x)


# --------------------------------------------------------------------------- matmuls


def _check_2d(x: np.ndarray, what: str) -> None:
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array, got {type(x).__name__} with shape {getattr(x, 'shape', None)}")


def matmul(a: np.ndarray, b: np.ndarray, *, name: str = "matmul") -> tuple[np.ndarray, OpCount]:
    """General GEMM / GEMV of two activations ``a (M, K) @ b (K, N)``.

    Counted as 2*M*K*N FLOPs, both operands as act_read, the result as act_write. A 1-D
    ``b`` is a GEMV (N = 1).
    """
    _check_2d(a, f"matmul {name!r} operand a")
    b2 = b[:, None] if b.ndim == 1 else b
    _check_2d(b2, f"matmul {name!r} operand b")
    if a.shape[1] != b2.shape[0]:
        raise ValueError(f"matmul {name!r}: inner dimensions differ, a {a.shape} @ b {b.shape}")
    y = a @ b
    m, k = a.shape
    n = b2.shape[1]
    return y, OpCount(name, flops=2 * m * k * n, act_read=a.nbytes + b.nbytes, act_write=y.nbytes)


def linear(
    x: np.ndarray, w, *, name: str, write: str = "act", write_itemsize: int | None = None
) -> tuple[np.ndarray, OpCount]:
    """``y = x @ W.T`` with W stored (out, in): a GEMM, or a GEMV when x has one row.

    ``write="kv"`` counts the output as a KV-cache write of ``write_itemsize`` bytes per
    element (k_proj / v_proj, docs/counting.md) instead of an activation write.
    """
    _check_2d(x, f"linear {name!r} input")
    shape = tuple(w.shape)
    if len(shape) != 2 or shape[1] != x.shape[1]:
        raise ValueError(f"linear {name!r}: input has {x.shape[1]} features but the weight is {shape} (out, in)")
    if write not in ("act", "kv"):
        raise ValueError(f"linear {name!r}: write must be 'act' or 'kv', got {write!r}")
    y = matmul_t(x, w)
    n, k = x.shape
    o = shape[0]
    a = x.itemsize
    out_bytes = n * o * (write_itemsize if (write == "kv" and write_itemsize) else a)
    return y, OpCount(
        name,
        flops=2 * n * k * o,
        weight=weight_payload_bytes(w),
        act_read=n * k * a,
        act_write=out_bytes if write == "act" else 0,
        kv_write=out_bytes if write == "kv" else 0,
    )


def embedding(tokens: np.ndarray, table, *, name: str = "embedding") -> tuple[np.ndarray, OpCount]:
    """Gather rows of the (vocab, hidden) table: N*h*w weight bytes read, N*h*a written."""
    idx = np.asarray(tokens).reshape(-1)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding {name!r}: token ids must be integers, got dtype {idx.dtype}")
    vocab, h = table.shape
    if idx.size and (idx.min() < 0 or idx.max() >= vocab):
        raise ValueError(f"embedding {name!r}: token ids must be in [0, {vocab}), got range [{idx.min()}, {idx.max()}]")
    if isinstance(table, np.ndarray):
        x = table[idx].astype(np.float32, copy=False)
    else:
        x = table.take_rows(idx)
    n = idx.size
    w_bytes = int(round(n * h * _bytes_per_weight(table)))
    return x, OpCount(name, weight=w_bytes, act_write=n * h * x.itemsize)


def lm_head(x_last: np.ndarray, w, *, name: str = "lm_head") -> tuple[np.ndarray, OpCount]:
    """Logits of the R rows that reach the head: ``x_last (R, h) @ W.T`` with W (V, h)."""
    return linear(x_last, w, name=name)


# --------------------------------------------------------------------------- element-wise


def rmsnorm(x: np.ndarray, gain: np.ndarray, eps: float, *, name: str) -> tuple[np.ndarray, OpCount]:
    """``x / sqrt(mean(x**2) + eps) * gain`` over the last axis.

    The sum of squares is accumulated in float64 (as ggml does); the scale is applied and
    then the gain, in float32.
    """
    _check_2d(x, f"rmsnorm {name!r} input")
    n, h = x.shape
    if gain.shape != (h,):
        raise ValueError(f"rmsnorm {name!r}: gain must have shape ({h},), got {gain.shape}")
    ms = np.sum(np.square(x, dtype=np.float64), axis=1) / h
    scale = (1.0 / np.sqrt((ms + eps).astype(np.float32))).astype(x.dtype)
    y = (x * scale[:, None]) * gain
    a = x.itemsize
    return y, OpCount(name, flops=RMSNORM_FLOPS * n * h, weight=h * gain.itemsize, act_read=n * h * a, act_write=n * h * a)


def residual_add(x: np.ndarray, y: np.ndarray, *, name: str) -> tuple[np.ndarray, OpCount]:
    """``x + y``: N*h FLOPs, two tensors read, one written."""
    if x.shape != y.shape:
        raise ValueError(f"residual_add {name!r}: shapes differ, {x.shape} vs {y.shape}")
    z = x + y
    return z, OpCount(name, flops=RESIDUAL_FLOPS * x.size, act_read=2 * x.size * x.itemsize, act_write=z.size * z.itemsize)


def _softmax(x: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    z = x * np.asarray(scale, dtype=x.dtype) if scale != 1.0 else x.copy()
    if mask is not None:
        z = np.where(mask, z, np.asarray(-np.inf, dtype=z.dtype))
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(z - m)
    s = np.sum(e, axis=-1, keepdims=True)
    return e / s


def softmax(
    x: np.ndarray, *, mask: np.ndarray | None = None, scale: float = 1.0, name: str = "softmax"
) -> tuple[np.ndarray, OpCount]:
    """Softmax over the last axis of ``scale * x``; ``mask`` (broadcastable, True = keep).

    Counted over the kept elements only: 5 FLOPs each, one read and one write each.
    Masked positions come out exactly 0.
    """
    x = np.asarray(x)
    p = _softmax(x, mask, scale)
    n = x.size if mask is None else int(np.count_nonzero(np.broadcast_to(mask, x.shape)))
    a = x.itemsize
    return p, OpCount(name, flops=SOFTMAX_FLOPS * n, act_read=n * a, act_write=n * a)


def silu_mul(g: np.ndarray, u: np.ndarray, *, name: str) -> tuple[np.ndarray, OpCount]:
    """``silu(g) * u`` with ``silu(g) = g / (1 + exp(-g))``: 5 FLOPs per element."""
    if g.shape != u.shape:
        raise ValueError(f"silu_mul {name!r}: shapes differ, {g.shape} vs {u.shape}")
    with np.errstate(over="ignore"):
        y = g / (np.asarray(1, g.dtype) + np.exp(-g)) * u
    a = g.itemsize
    return y, OpCount(name, flops=SILU_MUL_FLOPS * g.size, act_read=2 * g.size * a, act_write=g.size * a)


# --------------------------------------------------------------------------- rotary


def rope_angles(positions: np.ndarray, head_dim: int, theta: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin, float32 of shape (len(positions), head_dim // 2).

    Frequency of pair i is ``theta ** (-2 i / head_dim)``; angles are formed in float64.
    """
    if head_dim % 2:
        raise ValueError(f"rope: head_dim must be even, got {head_dim}")
    if not theta > 0:
        raise ValueError(f"rope: theta must be positive, got {theta}")
    inv = float(theta) ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv[None, :]
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, layout: str = "half") -> np.ndarray:
    """Rotate ``x (..., S, head_dim)`` by per-position angles.

    ``layout="half"``: pairs (i, i + head_dim/2), the Hugging Face Llama convention
    (rotate_half). ``layout="interleaved"``: pairs (2i, 2i+1), Meta's original Llama and
    ggml's LLAMA_ROPE_TYPE_NORM; GGUF files store q/k rows permuted for this layout.
    """
    d2 = x.shape[-1] // 2
    if cos.shape != (x.shape[-2], d2):
        raise ValueError(f"rope: angles have shape {cos.shape}, expected ({x.shape[-2]}, {d2})")
    if layout == "half":
        x0, x1 = x[..., :d2], x[..., d2:]
        return np.concatenate((x0 * cos - x1 * sin, x0 * sin + x1 * cos), axis=-1)
    if layout == "interleaved":
        x0, x1 = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = x0 * cos - x1 * sin
        out[..., 1::2] = x0 * sin + x1 * cos
        return out
    raise ValueError(f"rope: layout must be one of {ROPE_LAYOUTS}, got {layout!r}")


def rope(
    q: np.ndarray, k: np.ndarray, positions: np.ndarray, *, theta: float, layout: str = "half", name: str = "rope"
) -> tuple[np.ndarray, np.ndarray, OpCount]:
    """Rotary embedding of q (B, H, S, dh) and k (B, G, S, dh): 3*N*(H+G)*dh FLOPs."""
    if q.ndim != 4 or k.ndim != 4 or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"rope {name!r}: expected q (B, H, S, dh) and k (B, G, S, dh), got {q.shape} and {k.shape}")
    cos, sin = rope_angles(positions, q.shape[-1], theta)
    qr, kr = apply_rope(q, cos, sin, layout), apply_rope(k, cos, sin, layout)
    elems = q.size + k.size
    a = q.itemsize
    return qr, kr, OpCount(name, flops=ROPE_FLOPS * elems, act_read=elems * a, act_write=elems * a)


# --------------------------------------------------------------------------- attention


def causal_mask(past: int, s: int) -> np.ndarray:
    """(S, past+S) boolean: new token i (0-based) sees keys 0 .. past+i."""
    return np.arange(past + s)[None, :] <= (past + np.arange(s))[:, None]


def attention(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    past: int,
    *,
    prefix: str = "",
    scale: float | None = None,
    round_inputs: bool = False,
) -> tuple[np.ndarray, list[OpCount]]:
    """Grouped-query causal attention of S new queries against ``past + S`` cached keys.

    q: (B, H, S, dh), already rotated. k_cache, v_cache: (B, G, capacity, dh) with the new
    keys/values already written at ``past .. past+S``. Query head j uses KV head
    ``j // (H // G)``. Returns the output as (B*S, H*dh) and three counts
    (``attn_scores``, ``softmax``, ``attn_values``) over the K_att attended pairs of
    docs/counting.md. (numpy computes the full S x (past+S) rectangle and masks it; the
    count is of attended pairs, as the convention says.)

    ``round_inputs``: round q and the probabilities to the cache dtype before the two
    products, as ggml does when the cache is float16 (products still accumulate in
    float32).
    """
    b, hq, s, dh = q.shape
    bk, g, cap, dhk = k_cache.shape
    if (bk, dhk) != (b, dh) or v_cache.shape != k_cache.shape:
        raise ValueError(f"attention {prefix!r}: q {q.shape} does not match caches k {k_cache.shape}, v {v_cache.shape}")
    if g == 0 or hq % g:
        raise ValueError(f"attention {prefix!r}: query heads ({hq}) must be a multiple of KV heads ({g})")
    t = past + s
    if t > cap:
        raise ValueError(f"attention {prefix!r}: {t} positions exceed the cache capacity {cap}")
    r = hq // g
    scale = float(dh) ** -0.5 if scale is None else scale
    k = k_cache[:, :, :t]
    v = v_cache[:, :, :t]
    qg = q.reshape(b, g, r * s, dh)
    if round_inputs:
        qg = qg.astype(k.dtype)
    if qg.dtype != np.float32:
        qg = qg.astype(np.float32)
    kf = k if k.dtype == np.float32 else k.astype(np.float32)
    vf = v if v.dtype == np.float32 else v.astype(np.float32)
    scores = np.matmul(qg, kf.transpose(0, 1, 3, 2))  # (B, G, r*S, T)
    mask = causal_mask(past, s)  # (S, T)
    p = _softmax(scores.reshape(b, g, r, s, t), mask, scale).reshape(b, g, r * s, t)
    if round_inputs:
        p = p.astype(v.dtype).astype(np.float32)
    out = np.matmul(p, vf)  # (B, G, r*S, dh)
    out = out.reshape(b, hq, s, dh).transpose(0, 2, 1, 3).reshape(b * s, hq * dh)

    a = q.itemsize
    c = k_cache.itemsize
    n = b * s
    k_att = b * (s * past + s * (s + 1) // 2)
    kv_bytes = b * t * g * dh * c
    counts = [
        OpCount(prefix + "attn_scores", flops=2 * dh * hq * k_att, act_read=n * hq * dh * a,
                act_write=hq * k_att * a, kv_read=kv_bytes),
        OpCount(prefix + "softmax", flops=SOFTMAX_FLOPS * hq * k_att, act_read=hq * k_att * a, act_write=hq * k_att * a),
        OpCount(prefix + "attn_values", flops=2 * dh * hq * k_att, act_read=hq * k_att * a,
                act_write=n * hq * dh * a, kv_read=kv_bytes),
    ]
    return out, counts


# --------------------------------------------------------------------------- feed-forward


def swiglu(
    x: np.ndarray, w_gate, w_up, w_down, *, prefix: str = ""
) -> tuple[np.ndarray, list[OpCount]]:
    """SwiGLU feed-forward ``down(silu(gate(x)) * up(x))``; counts gate_proj, up_proj,
    silu_mul, down_proj."""
    g, c1 = linear(x, w_gate, name=prefix + "gate_proj")
    u, c2 = linear(x, w_up, name=prefix + "up_proj")
    m, c3 = silu_mul(g, u, name=prefix + "silu_mul")
    y, c4 = linear(m, w_down, name=prefix + "down_proj")
    return y, [c1, c2, c3, c4]


def split_heads(x: np.ndarray, b: int, s: int, heads: int, dh: int) -> np.ndarray:
    """(B*S, heads*dh) -> (B, heads, S, dh), contiguous."""
    return np.ascontiguousarray(x.reshape(b, s, heads, dh).transpose(0, 2, 1, 3))


def check_counts_equal(a: Sequence[OpCount], b: Sequence[OpCount]) -> list[str]:
    """Differences between two op-by-op count lists, as readable lines (empty if equal)."""
    out = []
    if len(a) != len(b):
        out.append(f"{len(a)} ops vs {len(b)} ops")
    for x, y in zip(a, b):
        if x != y:
            out.append(f"{x} != {y}")
    return out
