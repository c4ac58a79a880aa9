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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from . import tiled

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

#: Up to this many elements the element-wise operators use plain expressions (a new array
#: per operation); above it, one buffer updated in place (``out=``, ``+=``). Measured
#: (benchmarks/bench_elementwise.py): on a decode step's few thousand values a call's fixed
#: cost decides and the plain form is faster; on a prefill's activations the temporaries
#: no longer fit the L2 cache and the in-place form is up to several times faster. Both
#: forms do the same arithmetic, so the results are identical.
INPLACE_MIN = 1 << 14

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
        for f in _COUNT_FIELDS:
            v = getattr(self, f)
            if type(v) is int and v >= 0:  # the common case, checked first
                continue
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"OpCount {self.name!r}: {f} must be a non-negative integer, got {v!r}")
            object.__setattr__(self, f, int(v))

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

    def __add__(self, other: OpCount) -> OpCount:
        if not isinstance(other, OpCount):
            return NotImplemented
        name = self.name if self.name == other.name else f"{self.name}+{other.name}"
        return OpCount(name, *(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)[1:]))


_COUNT_FIELDS = ("flops", "weight", "act_read", "act_write", "kv_read", "kv_write")

#: The operators' counts: an OpCount is immutable, and a decoder makes the same ones every
#: step, so equal arguments share one instance (a dictionary lookup, not a construction).
_count = lru_cache(maxsize=1 << 16)(OpCount)


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


# --------------------------------------------------------------------------- quantised weights
#
# Every quantised format stores W = scale[row] * W_int with W_int an integer matrix kept
# compressed (int8 codes, fp8 codes, int4 nibbles with power-of-two block factors). A
# product quantises the activations per row to integers (``act_bits``: 8 or 16), forms
# the exact integer accumulators xq @ W_int.T on cache-sized tiles (lpulab.kernels.tiled)
# and scales once at the end (:func:`dequantize_acc`). The accumulators are exact, so
# splitting the rows, the columns or the reduction over threads or chips changes nothing.

#: float32 tiles of int8 weights take 8-bit activation pieces over at most this many
#: reduction elements (1024 * 128 * 127 < 2**24; see lpulab.kernels.tiled).
INT_KCHUNK = tiled.K_CHUNK_F32
ACT_BITS = (8, 16)
#: Up to this many activation vectors (rows times pieces) a tile is multiplied by GEMV.
GEMV_ROWS = tiled.GEMV_MAX


def _qrows(x: np.ndarray, absmax: np.ndarray | None, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row symmetric quantisation as integer-valued float32 ``q`` and the scale."""
    qmax = np.float32(2 ** (bits - 1) - 1)
    if absmax is None:
        absmax = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0], np.float32)
    scale = np.asarray(absmax, dtype=np.float32) / qmax
    if not scale.all():
        scale[scale == 0] = 1.0
    q = x / scale[:, None]
    np.rint(q, out=q)
    np.minimum(q, qmax, out=q)  # |x| <= absmax already keeps q in range; this guards the rounding
    np.maximum(q, -qmax, out=q)
    return q, scale


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
    q, scale = _qrows(x, absmax, bits)
    return q.astype(np.int8 if bits == 8 else np.int16), scale


@dataclass(frozen=True, eq=False)
class _Int8Codes:
    """A bare int8 matrix as a tile source (for :func:`int_matmul_t`)."""

    q: np.ndarray
    int_max = 127
    tile_dtype = np.float32

    @property
    def shape(self):
        return self.q.shape

    def fill_tile(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        np.copyto(out, self.q[r0:r1, c0:c1], casting="unsafe")


def int_matmul_t(xq: np.ndarray, wq: np.ndarray) -> np.ndarray:
    """Exact ``xq @ wq.T`` for integer operands (int8 or int16 activations, int8 weights).

    Integer accumulation done with float BLAS on integer-valued tiles whose every partial
    sum is exactly representable (lpulab.kernels.tiled), so the result does not depend on
    the order BLAS adds in, nor on how rows, columns or the reduction are split. Returns
    int32 (int8 activations) or int64 (int16 activations). The int8 weight is expanded
    tile by tile into a reused buffer; no full float copy of it is made.
    """
    if wq.dtype != np.int8 or xq.dtype not in (np.int8, np.int16):
        raise TypeError(f"int_matmul_t: expected int8/int16 activations and int8 weights, got {xq.dtype} and {wq.dtype}")
    if xq.ndim != 2 or wq.ndim != 2:
        raise ValueError(f"int_matmul_t: expected 2-D operands, got shapes {xq.shape} and {wq.shape}")
    if xq.shape[1] != wq.shape[1]:
        raise ValueError(f"int_matmul_t: inner dimensions differ ({xq.shape[1]} vs {wq.shape[1]})")
    bits = 8 if xq.dtype == np.int8 else 16
    with tiled.blas_single():
        acc = tiled.exact_accumulate(xq, [_Int8Codes(wq)], bits)
    return acc.astype(np.int32 if bits == 8 else np.int64)


def dequantize_acc(acc: np.ndarray, x_scale: np.ndarray, w_scale: np.ndarray) -> np.ndarray:
    """float32 result of an integer GEMM: ``acc * x_scale[:, None] * w_scale[None, :]``.

    Computed in float64 and rounded once, element by element, so it does not depend on
    how the rows or columns were split.
    """
    s = np.multiply(np.asarray(x_scale, np.float64)[:, None], np.asarray(w_scale, np.float64)[None, :])
    np.multiply(np.asarray(acc, np.float64), s, out=s)
    return s.astype(np.float32)


class _Quantised:
    """Shared behaviour of the quantised formats: the exact product and the protocol
    (``shape``, ``ndim``, ``nbytes``, ``payload_nbytes``, ``slice``, ``matmul_t``,
    ``take_rows``). Subclasses give ``scale`` (float32 per row: W = scale * W_int),
    ``int_max``, ``tile_dtype``, ``fill_tile`` and ``act_bits``."""

    ndim = 2

    if TYPE_CHECKING:   # what every subclass gives
        scale: np.ndarray
        act_bits: int
        int_max: int
        tile_dtype: type

        @property
        def shape(self) -> tuple[int, int]: ...

        def fill_tile(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None: ...

    @property
    def scale64(self) -> np.ndarray:
        """The row scales as float64 (made once)."""
        s = self.__dict__.get("_scale64")
        if s is None:
            s = self.scale.astype(np.float64)
            object.__setattr__(self, "_scale64", s)
        return s

    @property
    def acc_itemsize(self) -> int:
        """Bytes of one integer accumulator (what a row-parallel all-reduce sends): int32
        where 8-bit activations times int8 weights fit, else int64."""
        return 4 if (self.act_bits == 8 and self.int_max <= 127) else 8

    def int_acc(self, xq: np.ndarray) -> np.ndarray:
        """Exact ``xq @ W_int.T`` (float64 holding integers) for integer-valued ``xq``."""
        with tiled.blas_single():
            return tiled.exact_accumulate(xq, [self], self.act_bits)

    def matmul_t(self, x: np.ndarray) -> np.ndarray:
        return matmul_t_many(x, [self])[0]

    def dense_int(self) -> np.ndarray:
        """The whole integer matrix as float64 (the reference the tiled product must equal)."""
        out = np.empty(self.shape, np.dtype(self.tile_dtype))
        self.fill_tile(0, self.shape[0], 0, self.shape[1], out)
        return out.astype(np.float64)

    def dequantize(self) -> np.ndarray:
        return (self.dense_int() * self.scale.astype(np.float64)[:, None]).astype(np.float32)

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx).reshape(-1)
        rows = np.empty((idx.size, self.shape[1]), np.dtype(self.tile_dtype))
        for i, r in enumerate(idx):
            self.fill_tile(int(r), int(r) + 1, 0, self.shape[1], rows[i:i + 1])
        return (rows.astype(np.float64) * self.scale.astype(np.float64)[idx][:, None]).astype(np.float32)


def _check_act_bits(cls: str, act_bits) -> None:
    if act_bits not in ACT_BITS:
        raise ValueError(f"{cls}.act_bits must be one of {ACT_BITS}, got {act_bits!r}")


def _check_scale(cls: str, scale, rows: int) -> None:
    if not isinstance(scale, np.ndarray) or scale.dtype != np.float32 or scale.shape != (rows,):
        raise ValueError(f"{cls}.scale must be float32 of shape ({rows},), got "
                         f"{getattr(scale, 'dtype', type(scale).__name__)} {getattr(scale, 'shape', '')}")


@dataclass(frozen=True, eq=False)
class Int8Weight(_Quantised):
    """int8 weight with one float32 scale per output channel (row): ``W ~ q * scale[:, None]``.

    Symmetric per-output-channel quantisation, q in [-127, 127]. ``matmul_t`` quantises the
    activations per row (dynamic, symmetric) to ``act_bits`` (16 by default: W8A16; 8 gives
    W8A8) and accumulates exactly in integers, so splitting the output channels or the
    reduction dimension over chips gives bit-identical results. (Per-row int8 activations
    lose the small entries of rows with one huge "massive activation", which real models
    have; int16 keeps them at the same exactness.) Tiles are float32 (int8 to float32 is
    numpy's fastest widening cast); a 16-bit activation goes in as two 8-bit pieces.
    """

    q: np.ndarray
    scale: np.ndarray
    act_bits: int = 16

    int_max = 127
    tile_dtype = np.float32
    bytes_per_weight = 1
    format = "int8"

    def __post_init__(self) -> None:
        if not isinstance(self.q, np.ndarray) or self.q.dtype != np.int8 or self.q.ndim != 2:
            raise ValueError(f"Int8Weight.q must be a 2-D int8 array, got {getattr(self.q, 'dtype', type(self.q))} "
                             f"{getattr(self.q, 'shape', '')}")
        _check_scale("Int8Weight", self.scale, self.q.shape[0])
        _check_act_bits("Int8Weight", self.act_bits)

    @classmethod
    def quantize(cls, w: np.ndarray, act_bits: int = 16) -> Int8Weight:
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
    def nbytes(self) -> int:
        return self.q.nbytes + self.scale.nbytes

    @property
    def payload_nbytes(self) -> int:
        return self.q.nbytes

    def fill_tile(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        np.copyto(out, self.q[r0:r1, c0:c1], casting="unsafe")

    def dequantize(self) -> np.ndarray:
        return self.q.astype(np.float32) * self.scale[:, None]

    def slice(self, axis: int, start: int, stop: int) -> Int8Weight:
        if axis == 0:
            return Int8Weight(self.q[start:stop], self.scale[start:stop], self.act_bits)
        if axis == 1:
            return Int8Weight(self.q[:, start:stop], self.scale, self.act_bits)
        raise ValueError(f"Int8Weight.slice: axis must be 0 or 1, got {axis}")

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        return self.q[idx].astype(np.float32) * self.scale[idx][:, None]


# fp8 e4m3 (OCP "E4M3FN"): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities,
# S.1111.111 is NaN; largest 448, smallest subnormal 2**-9. Every value times 2**9 is an
# integer of at most 18 bits.
FP8_MAX = 448.0
FP8_UNIT = 2.0**-9


def _e4m3_values() -> np.ndarray:
    c = np.arange(256)
    sign = np.where(c & 0x80, -1.0, 1.0)
    e, m = (c >> 3) & 0xF, c & 0x7
    mag = np.where(e == 0, m / 8.0 * 2.0**-6, (1 + m / 8.0) * 2.0 ** (e - 7.0))
    v = sign * mag
    v[(c & 0x7F) == 0x7F] = np.nan
    return v


E4M3 = _e4m3_values()
#: Integer value (code value / 2**-9) of every code; NaN codes map to 0 (never produced).
_E4M3_INT = np.nan_to_num(E4M3 / FP8_UNIT, nan=0.0)
_E4M3_POS = E4M3[:0x7F]  # codes 0x00..0x7E: the non-negative values, increasing


def quantize_e4m3(v: np.ndarray) -> np.ndarray:
    """Codes (uint8) of the e4m3 values nearest to ``v`` (ties to the even code),
    saturating at +-448."""
    a = np.minimum(np.abs(np.asarray(v, np.float64)), FP8_MAX)
    hi = np.clip(np.searchsorted(_E4M3_POS, a, side="left"), 1, 0x7E)
    lo = hi - 1
    dl, dh = a - _E4M3_POS[lo], _E4M3_POS[hi] - a
    code = np.where((dh < dl) | ((dh == dl) & (hi % 2 == 0)), hi, lo)
    code = np.where(a == _E4M3_POS[hi], hi, code)
    return (code | np.where(np.signbit(v) & (code != 0), 0x80, 0)).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class Fp8Weight(_Quantised):
    """fp8 (e4m3) weight, emulated: one byte per weight holding an e4m3 code, and one
    float32 scale per output channel: ``W = e4m3(code) * scale[row]`` (the row's largest
    |w| maps to 448). Products as for :class:`Int8Weight` (activations per row to
    ``act_bits`` integers, exact accumulation), on float64 tiles: an e4m3 value times
    2**9 is an integer of up to 18 bits, which float32 cannot accumulate exactly. A tile
    is expanded by a 256-entry table lookup."""

    codes: np.ndarray
    scale: np.ndarray  # per row, times 2**-9: W = _E4M3_INT[code] * scale
    act_bits: int = 16

    int_max = int(np.max(np.abs(_E4M3_INT)))
    tile_dtype = np.float64
    bytes_per_weight = 1
    format = "fp8"

    def __post_init__(self) -> None:
        if not isinstance(self.codes, np.ndarray) or self.codes.dtype != np.uint8 or self.codes.ndim != 2:
            raise ValueError(f"Fp8Weight.codes must be a 2-D uint8 array, got {getattr(self.codes, 'dtype', type(self.codes))}")
        if np.any((self.codes & 0x7F) == 0x7F):
            raise ValueError("Fp8Weight.codes holds e4m3 NaN codes (0x7F / 0xFF)")
        _check_scale("Fp8Weight", self.scale, self.codes.shape[0])
        _check_act_bits("Fp8Weight", self.act_bits)

    @classmethod
    def quantize(cls, w: np.ndarray, act_bits: int = 16) -> Fp8Weight:
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 2:
            raise ValueError(f"Fp8Weight.quantize: expected a 2-D (out, in) weight, got shape {w.shape}")
        s = (np.max(np.abs(w), axis=1) / np.float32(FP8_MAX)).astype(np.float32) if w.shape[1] else np.ones(w.shape[0], np.float32)
        s[s == 0] = 1.0
        codes = np.empty(w.shape, np.uint8)
        step = max(1, (1 << 18) // max(1, w.shape[1]))
        for r0 in range(0, w.shape[0], step):
            codes[r0:r0 + step] = quantize_e4m3(w[r0:r0 + step] / s[r0:r0 + step, None])
        return cls(codes, (s * np.float32(FP8_UNIT)).astype(np.float32), act_bits)

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.scale.nbytes

    @property
    def payload_nbytes(self) -> int:
        return self.codes.nbytes

    def fill_tile(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        np.take(_E4M3_INT if out.dtype == np.float64 else _E4M3_INT.astype(out.dtype), self.codes[r0:r1, c0:c1],
                out=out, mode="clip")

    def slice(self, axis: int, start: int, stop: int) -> Fp8Weight:
        if axis == 0:
            return Fp8Weight(self.codes[start:stop], self.scale[start:stop], self.act_bits)
        if axis == 1:
            return Fp8Weight(self.codes[:, start:stop], self.scale, self.act_bits)
        raise ValueError(f"Fp8Weight.slice: axis must be 0 or 1, got {axis}")


#: Block int4: power-of-two block factors span at most 2**INT4_SPAN within a row.
INT4_SPAN = 12
INT4_QMAX = 7
# (256, 2): the two signed nibbles of a byte (low nibble first), stored as nibble + 8.
_NIBBLES = np.stack([(np.arange(256) & 0xF) - 8, (np.arange(256) >> 4) - 8], axis=1).astype(np.float64)


@dataclass(frozen=True, eq=False)
class Int4Weight(_Quantised):
    """Block-quantised int4 weight: half a byte per weight.

    Along each row, blocks of ``block`` weights share a power-of-two factor under one
    float32 scale per row: ``W = scale[row] * 2**-exp[row, block] * q`` with q in [-7, 7]
    (two per byte, low nibble first, stored as q + 8) and ``exp`` in 0..12 (a uint8 per
    block). The row scale maps the row's largest |w| to 7; each block takes the largest
    factor that does not clip it, so a block is within a factor 2 of its own best scale
    (shared power-of-two block exponents, as the OCP microscaling formats use). Integer
    values ``q * 2**(12 - exp)`` keep the products exact (float64 tiles), so sharding stays
    bit-exact; the per-block factors are applied to per-block partial sums, which are exact
    integers too. A slice along either axis is a view (a column slice may start or end
    inside a block, or a byte).
    """

    packed: np.ndarray  # uint8 (rows, ceil(k/2))
    exp: np.ndarray  # uint8 (rows, ceil(k/block))
    scale: np.ndarray  # float32 (rows,), times 2**-INT4_SPAN
    cols: int
    block: int = 32
    act_bits: int = 16
    col0: int = 0  # first column (a view's offset into packed, in weights)

    int_max = INT4_QMAX << INT4_SPAN
    tile_dtype = np.float64
    bytes_per_weight = 0.5
    format = "int4"

    def __post_init__(self) -> None:
        if self.block < 2 or self.block % 2:
            raise ValueError(f"Int4Weight.block must be an even number >= 2, got {self.block!r}")
        if not isinstance(self.packed, np.ndarray) or self.packed.dtype != np.uint8 or self.packed.ndim != 2:
            raise ValueError("Int4Weight.packed must be a 2-D uint8 array")
        if self.col0 < 0 or self.cols < 0 or self.col0 + self.cols > 2 * self.packed.shape[1]:
            raise ValueError(f"Int4Weight: columns {self.col0}:{self.col0 + self.cols} do not fit the packed array "
                             f"({2 * self.packed.shape[1]} nibbles)")
        if self.exp.dtype != np.uint8 or self.exp.shape != (self.packed.shape[0], -(-2 * self.packed.shape[1] // self.block)):
            raise ValueError(f"Int4Weight.exp must be uint8 of shape (rows, blocks), got {self.exp.dtype} {self.exp.shape}")
        _check_scale("Int4Weight", self.scale, self.packed.shape[0])
        _check_act_bits("Int4Weight", self.act_bits)

    @classmethod
    def quantize(cls, w: np.ndarray, act_bits: int = 16, block: int = 32) -> Int4Weight:
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 2:
            raise ValueError(f"Int4Weight.quantize: expected a 2-D (out, in) weight, got shape {w.shape}")
        if block < 2 or block % 2:
            raise ValueError(f"Int4Weight.quantize: block must be an even number >= 2, got {block!r}")
        o, k = w.shape
        nb = -(-k // block)
        wp = np.zeros((o, nb * block), np.float32)
        wp[:, :k] = w
        bl = np.abs(wp.reshape(o, nb, block)).max(axis=2)  # (o, nb)
        rmax = bl.max(axis=1) if nb else np.zeros(o, np.float32)
        s = (rmax / np.float32(INT4_QMAX)).astype(np.float32)
        s[s == 0] = 1.0
        with np.errstate(divide="ignore"):
            ratio = np.where(bl > 0, rmax[:, None].astype(np.float64) / bl, 2.0**INT4_SPAN)
        e = np.clip(np.floor(np.log2(ratio)), 0, INT4_SPAN).astype(np.int64)
        # log2 may round up at an exact power of two: step back where the block's max would clip
        # (beyond float32 rounding of the row scale, which the clip to 7 absorbs)
        limit = INT4_QMAX * s.astype(np.float64)[:, None] * np.ldexp(1.0, -e) * (1 + 1e-6)
        e = np.where((bl > limit) & (e > 0), e - 1, e)
        step = s.astype(np.float64)[:, None, None] * np.ldexp(1.0, -e)[:, :, None]
        q = np.clip(np.rint(wp.reshape(o, nb, block) / step), -INT4_QMAX, INT4_QMAX).reshape(o, nb * block)
        u = (q[:, : k + k % 2] + 8).astype(np.uint8)  # no block padding is stored, only a nibble to fill a byte
        packed = (u[:, 0::2] | (u[:, 1::2] << 4)).astype(np.uint8)
        return cls(np.ascontiguousarray(packed), e.astype(np.uint8), (s * np.float32(2.0**-INT4_SPAN)).astype(np.float32),
                   k, block, act_bits)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.packed.shape[0], self.cols)

    @property
    def nbytes(self) -> int:
        b0, b1 = self.col0 // 2, -(-(self.col0 + self.cols) // 2)
        k0, k1 = self.col0 // self.block, -(-(self.col0 + self.cols) // self.block)
        rows = self.packed.shape[0]
        return rows * (b1 - b0) + rows * (k1 - k0) + self.scale.nbytes

    @property
    def payload_nbytes(self) -> int:
        return (self.packed.shape[0] * self.cols + 1) // 2

    def fill_tile(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        """Integer values ``q * 2**(12 - exp)`` of rows r0:r1, columns c0:c1."""
        bs = self.block
        a, b = self.col0 + c0, self.col0 + c1  # columns of the packed array
        rows, width = r1 - r0, b - a
        src = self.packed[r0:r1, a // 2:(b + 1) // 2]
        if a % 2 == 0 and width % 2 == 0 and out.flags.c_contiguous:
            np.take(_NIBBLES, src, axis=0, out=out.reshape(rows, width // 2, 2), mode="clip")
        else:  # a column range that starts or ends inside a byte
            out[...] = np.take(_NIBBLES, src, axis=0, mode="clip").reshape(rows, -1)[:, a % 2:a % 2 + width]
        fb = a // bs
        f = np.ldexp(1.0, INT4_SPAN - self.exp[r0:r1, fb:(b - 1) // bs + 1].astype(np.int64))
        head = min(b, (fb + 1) * bs) - a  # the (possibly partial) first block
        out[:, :head] *= f[:, :1]
        nfull = (width - head) // bs
        if nfull:
            v = out[:, head:head + nfull * bs].reshape(rows, nfull, bs)  # a view: out's rows are contiguous
            np.multiply(v, f[:, 1:1 + nfull, None], out=v)
        if head + nfull * bs < width:
            out[:, head + nfull * bs:] *= f[:, 1 + nfull:2 + nfull]

    def slice(self, axis: int, start: int, stop: int) -> Int4Weight:
        if axis == 0:
            return Int4Weight(self.packed[start:stop], self.exp[start:stop], self.scale[start:stop], self.cols,
                              self.block, self.act_bits, self.col0)
        if axis == 1:
            if not 0 <= start < stop <= self.cols:
                raise ValueError(f"Int4Weight.slice: columns {start}:{stop} are outside 0:{self.cols}")
            return Int4Weight(self.packed, self.exp, self.scale, stop - start, self.block, self.act_bits,
                              self.col0 + start)
        raise ValueError(f"Int4Weight.slice: axis must be 0 or 1, got {axis}")


#: Weight formats by name (the decoder's precisions besides fp32).
FORMATS: dict[str, type[Int8Weight] | type[Fp8Weight] | type[Int4Weight]] = {
    "int8": Int8Weight, "fp8": Fp8Weight, "int4": Int4Weight}


def _split_cols(y: np.ndarray, cols: Sequence[int]) -> list[np.ndarray]:
    out, off = [], 0
    for o in cols:
        out.append(y[:, off:off + o])
        off += o
    return out


def matmul_t_many(x: np.ndarray, weights: Sequence) -> list[np.ndarray]:
    """``x @ W.T`` for several weights that share the input ``x`` (e.g. q, k and v):
    float arrays by BLAS, quantised formats by their exact tiled product; the input is
    quantised once per activation width, and the products run as one parallel job. Each
    result equals the product with that weight alone, element for element."""
    if len(weights) > 1:
        kinds = {"float" if isinstance(w, np.ndarray) else (w.act_bits if isinstance(w, _Quantised) else None)
                 for w in weights}
        if len(kinds) > 1 or None in kinds:  # mixed formats: one group at a time
            return [matmul_t_many(x, [w])[0] for w in weights]
    w0 = weights[0]
    if isinstance(w0, np.ndarray):
        y = tiled.float_matmul_t(x, weights)
    elif isinstance(w0, _Quantised):
        xq, xs = _qrows(x, None, w0.act_bits)
        ws = w0.scale64 if len(weights) == 1 else np.concatenate([w.scale64 for w in weights])
        # dequantize_acc's arithmetic, in the accumulators' own buffer
        s = np.multiply(xs.astype(np.float64)[:, None], ws)
        with tiled.blas_single():
            y = tiled.exact_accumulate(xq, weights, w0.act_bits, scale=s).astype(np.float32)
    else:
        return [w.matmul_t(x) for w in weights]
    return [y] if len(weights) == 1 else _split_cols(y, [w.shape[0] for w in weights])


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
    """``x @ W.T`` for a float array or a weight object (see :func:`matmul_t_many`)."""
    return matmul_t_many(x, [w])[0]


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
    return y, _count(name, flops=2 * m * k * n, act_read=a.nbytes + b.nbytes, act_write=y.nbytes)


def _linear_count(x: np.ndarray, w, name: str, write: str, write_itemsize: int | None) -> OpCount:
    shape = tuple(w.shape)
    if len(shape) != 2 or shape[1] != x.shape[1]:
        raise ValueError(f"linear {name!r}: input has {x.shape[1]} features but the weight is {shape} (out, in)")
    if write not in ("act", "kv"):
        raise ValueError(f"linear {name!r}: write must be 'act' or 'kv', got {write!r}")
    n, k = x.shape
    o = shape[0]
    a = x.itemsize
    out_bytes = n * o * (write_itemsize if (write == "kv" and write_itemsize) else a)
    return _count(
        name,
        flops=2 * n * k * o,
        weight=weight_payload_bytes(w),
        act_read=n * k * a,
        act_write=out_bytes if write == "act" else 0,
        kv_write=out_bytes if write == "kv" else 0,
    )


def linear(
    x: np.ndarray, w, *, name: str, write: str = "act", write_itemsize: int | None = None
) -> tuple[np.ndarray, OpCount]:
    """``y = x @ W.T`` with W stored (out, in): a GEMM, or a GEMV when x has one row.

    ``write="kv"`` counts the output as a KV-cache write of ``write_itemsize`` bytes per
    element (k_proj / v_proj, docs/counting.md) instead of an activation write.
    """
    _check_2d(x, f"linear {name!r} input")
    cnt = _linear_count(x, w, name, write, write_itemsize)
    return matmul_t(x, w), cnt


def linears(x: np.ndarray, specs: Sequence[tuple]) -> tuple[list[np.ndarray], list[OpCount]]:
    """Several linears of the same input, e.g. q, k and v, or gate and up: ``specs`` is
    ``[(w, name, write, write_itemsize), ...]`` (as :func:`linear` takes them). The input
    is quantised once and the products run as one parallel job (:func:`matmul_t_many`);
    each linear is counted on its own, exactly as :func:`linear` counts it."""
    _check_2d(x, f"linear {specs[0][1]!r} input" if specs else "linears input")
    counts = [_linear_count(x, w, name, write, itemsize) for w, name, write, itemsize in specs]
    return matmul_t_many(x, [sp[0] for sp in specs]), counts


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
    return x, _count(name, weight=w_bytes, act_write=n * h * x.itemsize)


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
    scale = (1.0 / np.sqrt((ms + eps).astype(np.float32))).astype(x.dtype, copy=False)
    if x.size <= INPLACE_MIN:
        y = (x * scale[:, None]) * gain
    else:
        y = x * scale[:, None]
        y *= gain
    a = x.itemsize
    return y, _count(name, flops=RMSNORM_FLOPS * n * h, weight=h * gain.itemsize, act_read=n * h * a, act_write=n * h * a)


def residual_add(x: np.ndarray, y: np.ndarray, *, name: str) -> tuple[np.ndarray, OpCount]:
    """``x + y``: N*h FLOPs, two tensors read, one written."""
    if x.shape != y.shape:
        raise ValueError(f"residual_add {name!r}: shapes differ, {x.shape} vs {y.shape}")
    z = x + y
    return z, _count(name, flops=RESIDUAL_FLOPS * x.size, act_read=2 * x.size * x.itemsize, act_write=z.size * z.itemsize)


def _softmax(x: np.ndarray, mask: np.ndarray | None, scale: float) -> np.ndarray:
    z = x * np.asarray(scale, dtype=x.dtype) if scale != 1.0 else x.copy()
    if mask is not None and (z.size > INPLACE_MIN or not mask.all()):
        z = np.where(mask, z, np.asarray(-np.inf, dtype=z.dtype))
    m = np.max(z, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # a row with every position masked
    if z.size <= INPLACE_MIN:
        e = np.exp(z - m)
        return e / np.sum(e, axis=-1, keepdims=True)
    z -= m
    np.exp(z, out=z)
    z /= np.sum(z, axis=-1, keepdims=True)
    return z


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
    return p, _count(name, flops=SOFTMAX_FLOPS * n, act_read=n * a, act_write=n * a)


def silu_mul(g: np.ndarray, u: np.ndarray, *, name: str) -> tuple[np.ndarray, OpCount]:
    """``silu(g) * u`` with ``silu(g) = g / (1 + exp(-g))``: 5 FLOPs per element."""
    if g.shape != u.shape:
        raise ValueError(f"silu_mul {name!r}: shapes differ, {g.shape} vs {u.shape}")
    with np.errstate(over="ignore"):
        if g.size <= INPLACE_MIN:
            y = g / (np.asarray(1, g.dtype) + np.exp(-g)) * u
        else:  # one buffer, in place: no temporaries of the activations' size
            y = np.negative(g)
            np.exp(y, out=y)
            y += np.asarray(1, g.dtype)
            np.divide(g, y, out=y)
            y *= u
    a = g.itemsize
    return y, _count(name, flops=SILU_MUL_FLOPS * g.size, act_read=2 * g.size * a, act_write=g.size * a)


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
    q: np.ndarray, k: np.ndarray, positions: np.ndarray, *, theta: float, layout: str = "half", name: str = "rope",
    angles: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, OpCount]:
    """Rotary embedding of q (B, H, S, dh) and k (B, G, S, dh): 3*N*(H+G)*dh FLOPs.

    ``angles``: the ``(cos, sin)`` of ``positions`` (:func:`rope_angles`), when the caller
    has them already (a decoder computes them once per step, not once per layer). q and k
    are rotated in one pass (element by element, so the result is the same)."""
    if q.ndim != 4 or k.ndim != 4 or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(f"rope {name!r}: expected q (B, H, S, dh) and k (B, G, S, dh), got {q.shape} and {k.shape}")
    cos, sin = angles if angles is not None else rope_angles(positions, q.shape[-1], theta)
    both = apply_rope(np.concatenate((q, k), axis=1), cos, sin, layout)
    qr, kr = both[:, : q.shape[1]], both[:, q.shape[1]:]
    elems = q.size + k.size
    a = q.itemsize
    return qr, kr, _count(name, flops=ROPE_FLOPS * elems, act_read=elems * a, act_write=elems * a)


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
        _count(prefix + "attn_scores", flops=2 * dh * hq * k_att, act_read=n * hq * dh * a,
                act_write=hq * k_att * a, kv_read=kv_bytes),
        _count(prefix + "softmax", flops=SOFTMAX_FLOPS * hq * k_att, act_read=hq * k_att * a, act_write=hq * k_att * a),
        _count(prefix + "attn_values", flops=2 * dh * hq * k_att, act_read=hq * k_att * a,
                act_write=n * hq * dh * a, kv_read=kv_bytes),
    ]
    return out, counts


# --------------------------------------------------------------------------- feed-forward


def swiglu(
    x: np.ndarray, w_gate, w_up, w_down, *, prefix: str = ""
) -> tuple[np.ndarray, list[OpCount]]:
    """SwiGLU feed-forward ``down(silu(gate(x)) * up(x))``; counts gate_proj, up_proj,
    silu_mul, down_proj."""
    (g, u), (c1, c2) = linears(x, [(w_gate, prefix + "gate_proj", "act", None), (w_up, prefix + "up_proj", "act", None)])
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
