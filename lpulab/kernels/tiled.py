"""Tiled matrix products for quantised weights, and the threads that run them.

A quantised weight is read from memory once per product, as stored (1 byte per int8 or
fp8 weight, half a byte per int4 weight). The arithmetic happens on cache-sized tiles:
a tile of the weight is expanded into a reused float buffer (a few hundred KiB, so it
stays in the core's L2 cache), multiplied by BLAS (GEMV for a few activation rows, GEMM
for more), and accumulated. numpy has no integer BLAS, so this expansion is the one pass
over the weight numpy has to make; the BLAS call then reads the tile from cache.

Exactness. Every format here stores ``W = scale[row] * W_int`` with ``W_int`` an integer
matrix (int8: the codes; fp8 e4m3: the code's value times 2**9; block int4: the nibble
times a power of two per block). Activations are quantised per row to integers (8 or 16
bits). The tile products then run on integer-valued floats whose every partial sum is
exactly representable: float32 tiles (int8) take activations in 8-bit pieces (a 16-bit
value ``x = 256*hi + lo``) and reduction chunks of at most ``K_CHUNK_F32`` (1024 *
128 * 127 < 2**24); float64 tiles (fp8, int4) take the whole 16-bit activation, with
chunks bounded so every sum stays below 2**53. Chunk results are added in float64,
which is exact for integers below 2**53. So the accumulators are the exact integer
products, whatever order BLAS adds in and however the rows, the columns or the
reduction are split over threads or chips: the sharded decoder stays bit-identical to
the whole one.

Float weights (fp32) are not tiled: each thread multiplies its rows of the weight with one
BLAS call. Splitting the rows changes which rows BLAS handles together, so the result may
differ from a single unsplit call in the last bits (float32 rounding; the tests hold it
to ``rtol=1e-5``); the whole and the sharded decoder make the same calls, so where a
sharded fp32 run was bit-identical to the whole one (no tensor-parallel split) it still is.

Threads. :func:`run_parallel` splits work over :func:`threads` threads (the caller and
``threads() - 1`` workers; numpy releases the GIL inside casts, gathers and BLAS calls).
While the kernels run, BLAS is held at one thread (:func:`blas_single`, through
``threadpoolctl``), so the two levels of threading never compete. The thread count comes
from ``LPULAB_THREADS``, else ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` (so a
benchmark that pins BLAS to one thread pins these kernels too), else the CPUs this
process may run on.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "threads",
    "set_threads",
    "blas_single",
    "run_parallel",
    "row_splits",
    "exact_accumulate",
    "float_matmul_t",
    "K_CHUNK_F32",
    "TILE_ELEMS",
    "GEMM_TILE_ELEMS",
    "GEMV_MAX",
]

#: Reduction chunk for float32 tiles: 1024 * 128 * 127 < 2**24 (8-bit pieces x int8 weights).
K_CHUNK_F32 = 1024
#: Weight elements expanded per tile on the matrix-vector path (4 MiB of float32: large
#: enough that a numpy call costs little next to its work, small enough that a tile per
#: thread stays in the last-level cache, from where BLAS reads it as fast as from L2).
TILE_ELEMS = 1 << 20
#: Weight elements per tile on the matrix-matrix path (BLAS blocks it further itself).
GEMM_TILE_ELEMS = 1 << 18
#: Up to this many activation vectors (rows x pieces), one GEMV each beats a GEMM (which packs the tile).
GEMV_MAX = 4
#: Row splits are multiples of this (BLAS kernels work on groups of rows).
ROW_ALIGN = 16
#: Below this many weight elements a product runs on the calling thread alone: handing a
#: small product to a worker costs more than it saves (SmolLM2's 576 x 1536 matrices ran
#: 1.6x slower on two threads than on one; benchmarks/bench_smollm2.py).
PARALLEL_MIN_ELEMS = 1 << 21


# --------------------------------------------------------------------------- threads


def _env_threads() -> int:
    for var in ("LPULAB_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        v = os.environ.get(var, "").strip()
        if v:
            try:
                n = int(v)
            except ValueError:
                raise ValueError(f"{var} must be a positive integer, got {v!r}") from None
            if n < 1:
                raise ValueError(f"{var} must be a positive integer, got {v!r}")
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


_THREADS: int | None = None


def threads() -> int:
    """Threads the kernels use (see the module text)."""
    global _THREADS
    if _THREADS is None:
        _THREADS = _env_threads()
    return _THREADS


def set_threads(n: int | None) -> None:
    """Use ``n`` threads from now on (``None``: back to the environment's choice)."""
    global _THREADS, _POOL
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
        raise ValueError(f"set_threads: n must be a positive integer or None, got {n!r}")
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.close()
            _POOL = None
        _THREADS = None if n is None else int(n)


class _Workers:
    """``n - 1`` daemon threads that each run one part of a job while the caller runs
    another. One job at a time (a lock); a caller that finds it busy runs alone."""

    def __init__(self, n: int):
        self.n = n
        self.busy = threading.Lock()
        self._inboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(n - 1)]
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = []
        for i, box in enumerate(self._inboxes):
            t = threading.Thread(target=self._loop, args=(box,), name=f"lpulab-kernel-{i + 1}", daemon=True)
            t.start()
            self._threads.append(t)

    def _loop(self, box: queue.SimpleQueue) -> None:
        while True:
            item = box.get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
                self._done.put(None)
            except BaseException as e:  # handed to the caller
                self._done.put(e)

    def run(self, fn: Callable, parts: Sequence[tuple]) -> None:
        for box, args in zip(self._inboxes, parts[1:]):
            box.put((fn, args))
        err = None
        try:
            fn(*parts[0])
        except BaseException as e:
            err = e
        for _ in parts[1:]:
            got = self._done.get()
            if got is not None and err is None:
                err = got
        if err is not None:
            raise err

    def close(self) -> None:
        for box in self._inboxes:
            box.put(None)


_POOL: _Workers | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> _Workers | None:
    global _POOL
    n = threads()
    if n < 2:
        return None
    if _POOL is None or _POOL.n != n:
        with _POOL_LOCK:
            if _POOL is None or _POOL.n != n:
                if _POOL is not None:
                    _POOL.close()
                _POOL = _Workers(n)
    return _POOL


def run_parallel(fn: Callable, parts: Sequence[tuple]) -> None:
    """Run ``fn(*p)`` for every ``p`` in ``parts`` (at most :func:`threads` of them), in
    parallel when the workers are free, else one after another on this thread."""
    parts = list(parts)
    if not parts:
        return
    pool = _pool()
    if pool is None or len(parts) == 1 or len(parts) > pool.n or not pool.busy.acquire(blocking=False):
        for p in parts:
            fn(*p)
        return
    try:
        with blas_single():
            pool.run(fn, parts)
    finally:
        pool.busy.release()


# --------------------------------------------------------------------------- BLAS threads

_BLAS = None  # threadpoolctl controllers of the BLAS libraries numpy loaded
_BLAS_DEPTH = 0
_BLAS_SAVED: list[int] = []
_BLAS_LOCK = threading.Lock()


def _blas_controllers():
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # pragma: no cover - threadpoolctl is a dependency; be safe anyway
            _BLAS = []
    return _BLAS


@contextmanager
def blas_single():
    """BLAS at one thread inside (re-entrant; the outermost level restores the setting).

    Always, also when the kernels themselves run on one thread: their BLAS calls are
    small (a tile), where BLAS's own threads cost more than they give, and a BLAS thread
    pool that spin-waits degrades badly on a machine whose cores are shared."""
    global _BLAS_DEPTH, _BLAS_SAVED
    with _BLAS_LOCK:
        _BLAS_DEPTH += 1
        if _BLAS_DEPTH == 1:
            libs = _blas_controllers()
            _BLAS_SAVED = [lib.get_num_threads() for lib in libs]
            for lib, n in zip(libs, _BLAS_SAVED):
                if n != 1:
                    lib.set_num_threads(1)
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0:
                for lib, n in zip(_blas_controllers(), _BLAS_SAVED):
                    if n != 1:
                        lib.set_num_threads(n)


def row_splits(o: int, parts: int, align: int | None = None) -> tuple[tuple[int, int], ...]:
    """``parts`` contiguous row ranges covering ``[0, o)`` (cut at multiples of ``align``,
    default ``ROW_ALIGN``; fewer ranges when there are not enough rows)."""
    return _row_splits(o, parts, ROW_ALIGN if align is None else align)


@lru_cache(maxsize=4096)
def _row_splits(o: int, parts: int, align: int) -> tuple[tuple[int, int], ...]:
    units = -(-o // align)
    parts = max(1, min(parts, units))
    edges = [min(o, round(i * units / parts) * align) for i in range(parts + 1)]
    edges[-1] = o
    return tuple((a, b) for a, b in itertools.pairwise(edges) if b > a)


# --------------------------------------------------------------------------- per-thread scratch

_SCRATCH = threading.local()


def _scratch(nbytes: int) -> np.ndarray:
    """A reused byte buffer of this thread, at least ``nbytes`` long."""
    buf = getattr(_SCRATCH, "buf", None)
    if buf is None or buf.nbytes < nbytes:
        buf = np.empty(max(nbytes, 1 << 20), dtype=np.uint8)
        _SCRATCH.buf = buf
    return buf


def _tile_buffer(rows: int, cols: int, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    return _scratch(rows * cols * dtype.itemsize)[: rows * cols * dtype.itemsize].view(dtype).reshape(rows, cols)


# --------------------------------------------------------------------------- exact integer products


@lru_cache(maxsize=1024)
def _plan_for(int_max: int, tile_dtype, k: int, act_bits: int) -> tuple[np.dtype, int, int]:
    wmax = int(int_max)
    amax = 2 ** (act_bits - 1) - 1
    dt = np.dtype(tile_dtype)
    if dt == np.float32:
        base = 256 if act_bits > 8 else 0
        piece = 128 if base else amax
        kc = min(k, (1 << 24) // (piece * wmax))
    else:
        base = 0
        kc = min(k, (1 << 53) // (amax * wmax))
    if kc < 1:
        raise ValueError(f"tiled: no exact reduction chunk for integer weights up to {wmax} and {act_bits}-bit activations")
    if kc < k:  # equal chunks, no thin remainder
        kc = -(-k // -(-k // kc))
    return dt, base, kc


def _plan(fmt, act_bits: int) -> tuple[np.dtype, int, int]:
    """(tile dtype, activation piece base (0: whole activations), reduction chunk) of a
    weight format, so that every partial sum of a tile product is an exact float."""
    return _plan_for(fmt.int_max, fmt.tile_dtype, fmt.shape[1], act_bits)


def _pieces(xq: np.ndarray, base: int, dtype) -> tuple[np.ndarray, tuple[float, ...]]:
    """Activation rows as float pieces and their weights: ``x = sum(w_p * piece_p)``."""
    if not base:
        return np.asarray(xq, dtype=dtype), (1.0,)
    n = xq.shape[0]
    v = np.empty((2 * n, xq.shape[1]), np.float32)
    hi, lo = v[:n], v[n:]
    np.multiply(xq, np.float32(1.0 / base), out=hi)
    np.rint(hi, out=hi)
    np.multiply(hi, np.float32(base), out=lo)
    np.subtract(xq, lo, out=lo)  # |hi|, |lo| <= base / 2 for |x| < base**2 / 2
    return v.astype(dtype, copy=False), (float(base), 1.0)


class _Stack:
    """Several weight formats of the same plan, one below the other: their rows form one
    row space, so a tile may take rows from several of them and one BLAS call multiplies
    all (q, k and v of a layer are one product, not three)."""

    def __init__(self, fmts: Sequence):
        self.fmts = list(fmts)
        self.offsets = [0]
        for f in self.fmts:
            self.offsets.append(self.offsets[-1] + f.shape[0])
        self.shape = (self.offsets[-1], self.fmts[0].shape[1])

    def fill_tile(self, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        for f, a, b in zip(self.fmts, self.offsets, self.offsets[1:]):
            lo, hi = max(r0, a), min(r1, b)
            if lo < hi:
                f.fill_tile(lo - a, hi - a, c0, c1, out[lo - r0:hi - r0])


def _exact_rows(fmt, v: np.ndarray, out: np.ndarray, kc: int, dt: np.dtype, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of ``fmt``'s integer matrix times the vectors ``v`` (m, k), chunk by
    chunk of the reduction: ``out[c, j, r] = sum_{k in chunk c} W_int[r, k] * v[j, k]``
    (GEMV path, m <= GEMV_MAX) or ``out[c, r, j]`` (GEMM path)."""
    k = fmt.shape[1]
    m = v.shape[0]
    gemv = m <= GEMV_MAX
    rows = max(1, (TILE_ELEMS if gemv else GEMM_TILE_ELEMS) // kc)
    buf = _tile_buffer(min(rows, r1 - r0), kc, dt)
    fill = fmt.fill_tile
    for a in range(r0, r1, rows):
        b = min(r1, a + rows)
        for c, k0 in enumerate(range(0, k, kc)):
            k1 = min(k, k0 + kc)
            t = buf if (b - a, k1 - k0) == buf.shape else buf[: b - a, : k1 - k0]
            fill(a, b, k0, k1, t)
            if gemv:
                for j in range(m):
                    np.matmul(t, v[j, k0:k1], out=out[c, j, a:b])
            else:
                np.matmul(t, v[:, k0:k1].T, out=out[c, a:b])


def exact_accumulate(xq: np.ndarray, weights: Sequence, act_bits: int, scale: np.ndarray | None = None) -> np.ndarray:
    """Exact ``xq @ W_int.T`` for the weights in ``weights`` side by side (they share the
    input, e.g. q, k and v), as one parallel job.

    ``xq``: (n, k) integer-valued activations (any int or float dtype), ``|xq| <=
    2**(act_bits-1) - 1``. Each weight is a format object with ``shape``, ``int_max``
    (largest ``|W_int|``), ``tile_dtype`` and ``fill_tile(r0, r1, c0, c1, out)``. Returns
    float64 (n, sum of the weights' rows) holding the exact integer accumulators, the
    weights' columns in order; with ``scale`` (float64, broadcastable to that shape) the
    accumulators times ``scale``, formed in the same buffer (one rounding per element).
    """
    xq = np.asarray(xq)
    if xq.ndim != 2:
        raise ValueError(f"exact_accumulate: activations must be 2-D (rows, features), got shape {xq.shape}")
    n, k = xq.shape
    for fmt in weights:
        if fmt.shape[1] != k:
            raise ValueError(f"exact_accumulate: inner dimensions differ (activations {k}, weight {tuple(fmt.shape)})")
    plans = [_plan(fmt, act_bits) for fmt in weights]
    groups: dict[tuple, list[tuple[Any, int | None]]]
    if all(p == plans[0] for p in plans[1:]):
        groups = {plans[0]: [(fmt, None) for fmt in weights]}
    else:
        groups, off = {}, 0
        for fmt, p in zip(weights, plans):
            groups.setdefault(p, []).append((fmt, off))
            off += fmt.shape[0]
    total_o = sum(fmt.shape[0] for fmt in weights)
    if not (n and k):
        acc = np.zeros((n, total_o))
        return acc if scale is None else acc * scale
    jobs = []  # (stack, vectors, out, kc, dtype, piece weights, column offset of each stacked weight)
    for (dt, base, kc), items in groups.items():
        v, wts = _pieces(xq, base, dt)
        stack = items[0][0] if len(items) == 1 else _Stack([f for f, _ in items])
        m = v.shape[0]
        og = stack.shape[0]
        out = np.empty((-(-k // kc), m, og) if m <= GEMV_MAX else (-(-k // kc), og, m), dt)
        jobs.append((stack, v, out, kc, dt, wts, [off for _, off in items]))
    nt = threads() if n * total_o * k >= PARALLEL_MIN_ELEMS else 1
    splits = [row_splits(job[0].shape[0], nt) for job in jobs]
    nparts = max(len(sp) for sp in splits)

    def part(i: int) -> None:
        for (stack, v, out, kc, dt, _, _), sp in zip(jobs, splits):
            if i < len(sp):
                _exact_rows(stack, v, out, kc, dt, *sp[i])

    if nparts == 1:
        part(0)
    else:
        run_parallel(part, [(i,) for i in range(nparts)])
    result = None
    for stack, v, out, _kc, _dt, wts, offs in jobs:
        gemv = v.shape[0] <= GEMV_MAX
        if not gemv:
            out = out.transpose(0, 2, 1)  # (chunks, m, og)
        # acc = sum over chunks and activation pieces, in float64 (exact: integers < 2**53)
        acc = np.empty((n, stack.shape[0]))
        first = True
        for c in range(out.shape[0]):
            for piece, w in enumerate(wts):
                part_ = out[c, piece * n:(piece + 1) * n]
                if first:
                    np.multiply(part_, w, out=acc, dtype=np.float64) if w != 1.0 else np.copyto(acc, part_)
                    first = False
                elif w != 1.0:
                    acc += w * part_.astype(np.float64)
                else:
                    acc += part_
        if len(jobs) == 1:
            if scale is not None:
                acc *= scale
            return acc
        if result is None:
            result = np.empty((n, total_o))
        sub = stack.fmts if isinstance(stack, _Stack) else [stack]
        col = 0
        for fmt, off in zip(sub, offs):  # type: ignore[assignment]  # several groups: int offsets
            o = fmt.shape[0]
            result[:, off:off + o] = acc[:, col:col + o]
            col += o
    assert result is not None   # jobs is never empty
    if scale is not None:
        result *= scale
    return result


# --------------------------------------------------------------------------- float weights


def float_matmul_t(x: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
    """``x @ W.T`` for float weights side by side (they share the input), the output rows
    of each split over the threads: one BLAS call per thread and weight (below
    ``PARALLEL_MIN_ELEMS`` weight elements, on this thread). Returns (n, sum of rows)."""
    n = x.shape[0]
    cols = [w.shape[0] for w in weights]
    y = np.empty((n, sum(cols)), dtype=np.result_type(x, *weights))
    total = sum(w.size for w in weights)
    nt = threads() if total >= PARALLEL_MIN_ELEMS else 1
    offs = np.cumsum([0] + cols).tolist()
    splits = [row_splits(o, nt) for o in cols]

    def part(i: int) -> None:
        for w, off, sp in zip(weights, offs, splits):
            if i < len(sp):
                a, b = sp[i]
                if n == 1:
                    np.matmul(w[a:b], x[0], out=y[0, off + a:off + b])
                else:
                    y[:, off + a:off + b] = x @ w[a:b].T

    nparts = max(len(sp) for sp in splits)
    if nparts == 1:
        part(0)
    else:
        run_parallel(part, [(i,) for i in range(nparts)])
    return y
