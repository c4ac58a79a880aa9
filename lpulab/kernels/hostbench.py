"""Host bench: this machine's bandwidth per cache level and compute peak, measured with numpy.

STREAM kernels (McCalpin's counting: copy and scale move 2 arrays of 8-byte doubles per
element, add and triad 3) over array sizes from L1-sized to DRAM-sized, with numpy
ufuncs writing into preallocated arrays (``out=``), split over ``threads`` Python threads
(numpy releases the GIL inside ufunc loops). Triad is two ufunc passes (``a = s*c`` then
``a += b``) done block by block (64 Ki elements) so the second pass hits cache and DRAM
sees the three STREAM arrays only. Small sizes repeat the kernel inside one ufunc call
through zero-stride views (``as_strided`` with an outer stride of 0), so per-call
overhead does not swamp L1 bandwidth (copy switches to a loop of 1-D ``np.copyto``, i.e.
memcpy, from 4 Ki elements, where that is faster). These are numpy-achievable rates: in
L1 and L2 they stay below what compiled code reaches (triad needs two passes there). Each size is timed ``repeats`` times; the median
and the best (STREAM's choice) are both kept and the reports say which is used.

GEMM (``a @ b``, square, float32 and float64) gives the compute peak; GEMV (float32,
matrix larger than the last-level cache) the bandwidth a memory-bound matrix-vector
product reaches.

:func:`device_entry` turns a result into a device entry in lpulab's catalog schema (kind
"measured", dated, with its sources); :func:`to_toml` renders it and
:func:`write_device_toml` is the only function here that writes a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = [
    "KERNELS",
    "CacheLevel",
    "StreamResult",
    "ComputeResult",
    "HostBenchResult",
    "read_caches",
    "read_cpu",
    "measure_stream",
    "measure_gemm",
    "measure_gemv",
    "run_hostbench",
    "device_entry",
    "to_toml",
    "write_device_toml",
    "as_device",
    "tier_for",
    "tier_table",
    "HOST_TIERS",
]

KERNELS = ("copy", "scale", "add", "triad")
STREAM_BYTES = {"copy": 16, "scale": 16, "add": 24, "triad": 24}  # per element, 8-byte doubles
ARRAYS = {"copy": 2, "scale": 2, "add": 3, "triad": 3}
TRIAD_BLOCK = 1 << 16
SMALL = 1 << 16  # per-thread elements up to which the zero-stride repetition is used
COPY_LOOP_MIN = 1 << 12  # from here a loop of 1-D np.copyto (memcpy) beats the 2-D strided copy
SCALAR = 3.0


def _n_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- host facts


@dataclass(frozen=True)
class CacheLevel:
    level: int
    type: str  # Data | Unified | Instruction
    size_bytes: int
    shared_cpus: int  # how many CPUs share one instance
    source: str  # where the numbers came from


def _parse_size(s: str) -> int:
    s = s.strip()
    mult = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if s and s[-1] in mult:
        return int(s[:-1]) * mult[s[-1]]
    return int(s)


def _cpu_list_len(s: str) -> int:
    n = 0
    for part in s.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            n += int(b) - int(a) + 1
        else:
            n += 1
    return n


def read_caches(root: str | Path = "/sys/devices/system/cpu/cpu0/cache") -> list[CacheLevel]:
    """Data/unified cache levels of CPU 0 from Linux sysfs; empty if unavailable."""
    root = Path(root)
    out: list[CacheLevel] = []
    if not root.is_dir():
        return out
    for d in sorted(root.glob("index*")):
        try:
            typ = (d / "type").read_text().strip()
            if typ == "Instruction":
                continue
            out.append(CacheLevel(int((d / "level").read_text()), typ, _parse_size((d / "size").read_text()),
                                  _cpu_list_len((d / "shared_cpu_list").read_text()), str(d)))
        except (OSError, ValueError):
            continue
    return sorted(out, key=lambda c: c.level)


def read_cpu(cpuinfo: str | Path = "/proc/cpuinfo", meminfo: str | Path = "/proc/meminfo") -> dict:
    """CPU model name, vendor and memory size (bytes) from /proc, with fallbacks."""
    info: dict[str, Any] = {"model": platform.processor() or platform.machine(), "vendor": "unknown", "mem_bytes": None}
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            k, _, v = line.partition(":")
            k, v = k.strip(), v.strip()
            if k == "model name" and v:
                info["model"] = v
            elif k == "vendor_id" and v:
                info["vendor"] = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel"}.get(v, v)
            if k == "processor" and v != "0":
                break
    except OSError:
        pass
    try:
        for line in Path(meminfo).read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_bytes"] = int(line.split()[1]) * 1024  # /proc/meminfo "kB" are KiB
    except OSError:
        pass
    return info


# --------------------------------------------------------------------------- STREAM


@dataclass(frozen=True)
class StreamResult:
    kernel: str
    elements: int  # per array, all threads together
    threads: int
    inner_reps: int  # kernel executions per timed repetition
    times: tuple[float, ...]  # seconds per timed repetition
    working_set_bytes: int  # bytes of the arrays the kernel touches (all threads)

    @property
    def bytes_per_rep(self) -> int:
        return STREAM_BYTES[self.kernel] * self.elements * self.inner_reps

    @property
    def best_gbs(self) -> float:
        return self.bytes_per_rep / min(self.times) / 1e9

    @property
    def median_gbs(self) -> float:
        return self.bytes_per_rep / float(np.median(self.times)) / 1e9

    def as_dict(self) -> dict:
        return {"kernel": self.kernel, "elements": self.elements, "threads": self.threads, "inner_reps": self.inner_reps,
                "working_set_bytes": self.working_set_bytes, "best_GBps": self.best_gbs, "median_GBps": self.median_gbs,
                "times_s": list(self.times)}


def _rep(x: np.ndarray, r: int) -> np.ndarray:
    return as_strided(x, shape=(r, x.shape[0]), strides=(0, x.strides[0]))


def _run_part(kernel: str, a: np.ndarray, b: np.ndarray, c: np.ndarray, t: np.ndarray, reps: int) -> None:
    """Run ``kernel`` ``reps`` times on one thread's slices (t: triad scratch, small sizes)."""
    s = SCALAR
    m = a.shape[0]
    if m <= SMALL and not (kernel == "copy" and m >= COPY_LOOP_MIN):
        A, B, C = _rep(a, reps), _rep(b, reps), _rep(c, reps)
        if kernel == "copy":
            np.copyto(C, A)
        elif kernel == "scale":
            np.multiply(C, s, out=B)
        elif kernel == "add":
            np.add(A, B, out=C)
        else:
            T = _rep(t, reps)
            np.multiply(C, s, out=T)
            np.add(B, T, out=A)
        return
    for _ in range(reps):
        if kernel == "copy":
            np.copyto(c, a)
        elif kernel == "scale":
            np.multiply(c, s, out=b)
        elif kernel == "add":
            np.add(a, b, out=c)
        else:
            for i in range(0, m, TRIAD_BLOCK):
                j = min(m, i + TRIAD_BLOCK)
                ab = a[i:j]
                np.multiply(c[i:j], s, out=ab)
                np.add(ab, b[i:j], out=ab)


class _Arrays:
    """STREAM arrays a, b, c (float64) split into per-thread contiguous parts."""

    def __init__(self, n: int, threads: int):
        self.n, self.threads = n, threads
        self.a = np.full(n, 1.0)
        self.b = np.full(n, 2.0)
        self.c = np.zeros(n)
        edges = [round(i * n / threads) for i in range(threads + 1)]
        self.parts = [(edges[i], edges[i + 1]) for i in range(threads)]
        self.scratch = [np.zeros(min(e - s, SMALL)) for s, e in self.parts]

    def run(self, pool: ThreadPoolExecutor | None, kernel: str, reps: int) -> None:
        jobs = [(self.a[s:e], self.b[s:e], self.c[s:e], self.scratch[i], reps) for i, (s, e) in enumerate(self.parts)]
        if pool is None or len(jobs) == 1:
            for j in jobs:
                _run_part(kernel, *j)
            return
        for f in [pool.submit(_run_part, kernel, *j) for j in jobs]:
            f.result()


def measure_stream(
    kernel: str, elements: int, *, threads: int = 1, repeats: int = 10, min_time: float = 0.01,
    pool: ThreadPoolExecutor | None = None, clock: Callable[[], float] = time.perf_counter, arrays: _Arrays | None = None,
) -> StreamResult:
    """Time one STREAM kernel on arrays of ``elements`` doubles (all threads together).

    The kernel is repeated inside each timed repetition until it lasts about ``min_time``
    seconds (calibrated once), then timed ``repeats`` times.
    """
    if kernel not in KERNELS:
        raise ValueError(f"measure_stream: kernel must be one of {KERNELS}, got {kernel!r}")
    if elements < threads:
        raise ValueError(f"measure_stream: need at least one element per thread, got {elements} for {threads} threads")
    arr = arrays if arrays is not None else _Arrays(elements, threads)
    own_pool = pool is None and threads > 1
    if own_pool:
        pool = ThreadPoolExecutor(max_workers=threads)
    try:
        arr.run(pool, kernel, 1)  # warm up, first touch
        reps = 1
        while True:
            t0 = clock()
            arr.run(pool, kernel, reps)
            dt = clock() - t0
            if dt >= min_time or reps >= 1 << 20:
                break
            reps = min(1 << 20, max(reps * 2, int(reps * min_time / max(dt, 1e-9) * 1.2)))
        times = []
        for _ in range(repeats):
            t0 = clock()
            arr.run(pool, kernel, reps)
            times.append(clock() - t0)
    finally:
        if own_pool:
            pool.shutdown()  # type: ignore[union-attr]  # own_pool: made above
    ws = ARRAYS[kernel] * elements * 8
    return StreamResult(kernel, elements, threads, reps, tuple(times), ws)


# --------------------------------------------------------------------------- compute


@dataclass(frozen=True)
class ComputeResult:
    kernel: str  # gemm | gemv
    dtype: str
    shape: tuple[int, ...]  # (m, k, n) for gemm, (rows, cols) for gemv
    flops: int  # per call
    bytes: int  # matrix bytes read per call (gemv) / operands (gemm)
    times: tuple[float, ...]

    @property
    def best_gflops(self) -> float:
        return self.flops / min(self.times) / 1e9

    @property
    def median_gflops(self) -> float:
        return self.flops / float(np.median(self.times)) / 1e9

    @property
    def best_gbs(self) -> float:
        return self.bytes / min(self.times) / 1e9

    @property
    def median_gbs(self) -> float:
        return self.bytes / float(np.median(self.times)) / 1e9

    def as_dict(self) -> dict:
        return {"kernel": self.kernel, "dtype": self.dtype, "shape": list(self.shape), "flops": self.flops,
                "bytes": self.bytes, "best_GFLOPps": self.best_gflops, "median_GFLOPps": self.median_gflops,
                "best_GBps": self.best_gbs, "median_GBps": self.median_gbs, "times_s": list(self.times)}


def _time_calls(fn: Callable[[], object], repeats: int, clock: Callable[[], float]) -> tuple[float, ...]:
    fn()
    out = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        out.append(clock() - t0)
    return tuple(out)


def measure_gemm(n: int, dtype: str = "float32", *, repeats: int = 5, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter) -> ComputeResult:
    """Square ``a @ b`` of size n through numpy's BLAS (2*n**3 FLOPs per call)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    out = np.empty((n, n), dtype)
    times = _time_calls(lambda: np.matmul(a, b, out=out), repeats, clock)
    return ComputeResult("gemm", dtype, (n, n, n), 2 * n**3, 3 * n * n * a.itemsize, times)


def measure_gemv(rows: int, cols: int, dtype: str = "float32", *, repeats: int = 10, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter) -> ComputeResult:
    """``W @ x`` with W (rows, cols): memory bound when W exceeds the last-level cache."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((rows, cols), dtype=np.float32).astype(dtype, copy=False)
    x = rng.standard_normal(cols).astype(dtype)
    out = np.empty(rows, dtype)
    times = _time_calls(lambda: np.matmul(w, x, out=out), repeats, clock)
    return ComputeResult("gemv", dtype, (rows, cols), 2 * rows * cols, w.nbytes, times)


# --------------------------------------------------------------------------- the bench


@dataclass(frozen=True)
class HostBenchResult:
    date: str
    cpu: Mapping[str, Any]
    threads: int
    caches: tuple[CacheLevel, ...]
    stream: tuple[StreamResult, ...]
    compute: tuple[ComputeResult, ...]
    tiers: Mapping[str, StreamResult] = field(hash=False)  # l1/l2/l3/dram -> chosen triad result
    statistic: str  # which statistic the entry's bandwidths use
    quick: bool
    elapsed_s: float
    numpy_version: str = np.__version__

    def as_dict(self) -> dict:
        return {
            "date": self.date, "cpu": dict(self.cpu), "threads": self.threads, "quick": self.quick,
            "elapsed_s": self.elapsed_s, "statistic": self.statistic, "numpy": self.numpy_version,
            "caches": [c.__dict__ for c in self.caches],
            "stream": [s.as_dict() for s in self.stream],
            "compute": [c.as_dict() for c in self.compute],
            "tiers": {k: v.as_dict() for k, v in self.tiers.items()},
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=1)


def _default_sizes(threads: int, quick: bool, llc_bytes: int = 0) -> list[int]:
    """Elements per array (all threads): per-thread 2**9 .. 2**21 (quick: a subset) plus a
    DRAM size: STREAM's rule of each array >= 4x the last-level cache (quick: >= 1x, so the
    three arrays still exceed it 3x), at least 2**24 (quick: 2**22) elements."""
    exps = [9, 12, 15, 17, 20] if quick else list(range(9, 22))
    sizes = [threads * (1 << e) for e in exps]
    dram = 1 << (22 if quick else 24)
    need = (1 if quick else 4) * llc_bytes / 8
    while dram < need:
        dram <<= 1
    sizes.append(dram)
    return sorted(set(sizes))


def _pick_tiers(results: Sequence[StreamResult], caches: Sequence[CacheLevel], threads: int) -> dict[str, StreamResult]:
    """Choose, per memory tier, the largest triad size that sits in that tier.

    A size is in a cache level when the working set one instance of the level sees (per
    thread for private caches, all threads for a shared one) is at most half its capacity
    and more than the previous level's capacity; DRAM is the largest size measured, if its
    working set exceeds twice the last-level cache.
    """
    triad = sorted((r for r in results if r.kernel == "triad"), key=lambda r: r.elements)
    out: dict[str, StreamResult] = {}
    prev_cap: float = 0
    levels = [c for c in caches if c.type in ("Data", "Unified")]
    for c in levels:
        share = min(c.shared_cpus, threads)
        fits = [r for r in triad
                if r.working_set_bytes * share / threads <= c.size_bytes / 2
                and r.working_set_bytes / threads > prev_cap]
        if fits:
            out[f"l{c.level}"] = fits[-1]
        prev_cap = c.size_bytes if c.shared_cpus <= 1 else c.size_bytes / max(1, min(c.shared_cpus, threads))
    llc = levels[-1].size_bytes if levels else 0
    if triad and triad[-1].working_set_bytes > 2 * llc:
        out["dram"] = triad[-1]
    return out


def run_hostbench(
    quick: bool = False, *, threads: int | None = None, sizes: Sequence[int] | None = None,
    repeats: int | None = None, kernels: Sequence[str] = KERNELS, gemm_n: int | None = None,
    gemv_shape: tuple[int, int] | None = None, date: str | None = None,
    clock: Callable[[], float] = time.perf_counter, caches: Sequence[CacheLevel] | None = None,
) -> HostBenchResult:
    """Run the STREAM sweep, GEMM and GEMV; ~20 s by default, < 5 s with ``quick=True``."""
    t_start = clock()
    threads = threads or _n_threads()
    if threads < 1:
        raise ValueError(f"run_hostbench: threads must be >= 1, got {threads}")
    repeats = repeats or (3 if quick else 10)
    min_time = 0.002 if quick else 0.01
    caches = tuple(read_caches() if caches is None else caches)
    llc = max((c.size_bytes for c in caches), default=0)
    sizes = list(sizes) if sizes is not None else _default_sizes(threads, quick, llc)
    results = []
    pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
    try:
        for n in sizes:
            arr = _Arrays(n, threads)
            for k in kernels:
                results.append(measure_stream(k, n, threads=threads, repeats=repeats, min_time=min_time,
                                              pool=pool, clock=clock, arrays=arr))
            del arr
    finally:
        if pool is not None:
            pool.shutdown()
    gemm_n = gemm_n or (512 if quick else 1536)
    gemv_shape = gemv_shape or ((2048, 4096) if quick else (4096, 8192))
    compute = (
        measure_gemm(gemm_n, "float32", repeats=3 if quick else 5, clock=clock),
        measure_gemm(gemm_n, "float64", repeats=3 if quick else 5, clock=clock),
        measure_gemv(*gemv_shape, "float32", repeats=repeats, clock=clock),
    )
    return HostBenchResult(
        date=date or _dt.date.today().isoformat(), cpu=read_cpu(), threads=threads, caches=caches,
        stream=tuple(results), compute=compute, tiers=_pick_tiers(results, caches, threads),
        statistic="median", quick=quick, elapsed_s=clock() - t_start,
    )


# --------------------------------------------------------------------------- device entry


def _sig(x: float, digits: int = 4) -> float:
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(round(x, digits - 1 - int(math.floor(math.log10(abs(x))))))


def _size_unit(nbytes: int) -> tuple[float, str]:
    for unit, div in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= div and nbytes % div == 0:
            return float(nbytes // div), unit
    return float(nbytes), "B"


def device_entry(result: HostBenchResult, *, id: str = "host-measured", name: str | None = None) -> dict:
    """The measurement as a device entry in the catalog schema (plain dict)."""
    d = result.date
    cpu = result.cpu
    q = "quick mode, " if result.quick else ""
    sizes = sorted({s.elements for s in result.stream})
    entry: dict = {
        "id": id,
        "name": name or f"{cpu.get('model', 'CPU')} ({result.threads} threads, this host)",
        "vendor": str(cpu.get("vendor", "unknown")),
        "category": "cpu",
        "released": d,
        "sources": {
            "hostbench": {
                "title": (f"lpulab host bench (numpy {result.numpy_version}), {q}STREAM copy/scale/add/triad on float64 "
                          f"arrays of {sizes[0] * 8 // 1024} KiB to {sizes[-1] * 8 // 1024**2} MiB each, "
                          f"{result.threads} threads; numpy matmul GEMM and GEMV"),
                "url": "local",
                "date": d,
                "confidence": "measured",
            },
        },
        "memory": {},
        "compute": {},
    }
    # Cache sizes and MemTotal are read from this host when the bench runs: observed here,
    # like the bandwidths, so they carry the catalog's "measured" confidence (the sizes
    # themselves are the CPU's own description, hence kind "vendor-peak").
    if result.caches:
        entry["sources"]["sysfs"] = {"title": "Linux sysfs cache description (/sys/devices/system/cpu/cpu0/cache), "
                                              "read on this host", "url": "local", "date": d, "confidence": "measured"}
    if cpu.get("mem_bytes"):
        entry["sources"]["meminfo"] = {"title": "Linux /proc/meminfo MemTotal, read on this host", "url": "local",
                                       "date": d, "confidence": "measured"}
    caps = {f"l{c.level}": c for c in result.caches if c.type in ("Data", "Unified")}
    for tier in ("l1", "l2", "l3", "dram"):
        r = result.tiers.get(tier)
        if r is None:
            continue
        t: dict = {"placement": "off-chip" if tier == "dram" else "on-chip"}
        if tier in caps:
            c = caps[tier]
            v, u = _size_unit(c.size_bytes)
            per = "per core" if c.shared_cpus <= 1 else f"shared by {c.shared_cpus} CPUs"
            t["capacity"] = {"value": v, "unit": u, "source": "sysfs", "kind": "vendor-peak",
                             "note": f"{per}; sysfs reports binary units"}
        elif tier == "dram" and cpu.get("mem_bytes"):
            t["capacity"] = {"value": _sig(cpu["mem_bytes"] / 1e9), "unit": "GB", "source": "meminfo",
                             "kind": "vendor-peak", "note": "MemTotal (usable memory)"}
        ws = r.working_set_bytes
        t["bandwidth"] = {
            "value": _sig(r.median_gbs), "unit": "GB/s", "source": "hostbench", "kind": "measured",
            "note": (f"numpy triad, {r.threads} threads, median of {len(r.times)} (best {_sig(r.best_gbs)} GB/s); "
                     f"working set {ws / 1024:.0f} KiB" if ws < 1024**2 else
                     f"numpy triad, {r.threads} threads, median of {len(r.times)} (best {_sig(r.best_gbs)} GB/s); "
                     f"working set {ws / 1024**2:.1f} MiB"),
        }
        if tier == "l1":
            t["bandwidth"]["note"] += ("; numpy's per-row loop overhead dominates at L1 size, so this is a lower bound "
                                       "on the hardware's L1 bandwidth")
        entry["memory"][tier] = t
    for cr in result.compute:
        if cr.kernel != "gemm":
            continue
        key = {"float32": "fp32", "float64": "fp64"}[cr.dtype]
        entry["compute"][key] = {"peak": {
            "value": _sig(cr.best_gflops), "unit": "GFLOP/s", "source": "hostbench", "kind": "measured",
            "sparsity": "dense",
            "note": f"numpy matmul {cr.shape[0]}^3 {cr.dtype}, {result.threads} threads, best of {len(cr.times)} "
                    f"(median {_sig(cr.median_gflops)} GFLOP/s)",
        }}
    return entry


def as_device(result_or_entry: HostBenchResult | Mapping, **entry_kwargs):
    """The measurement as a :class:`lpulab.catalog.Device`, through the same TOML text that
    :func:`write_device_toml` writes and the catalog's own parser (schema errors name the
    entry and the field), without writing a file: usable by :mod:`lpulab.roofline`,
    :mod:`lpulab.placement` and :mod:`lpulab.perf` like any catalogued device."""
    import tomllib

    from .. import catalog

    entry = device_entry(result_or_entry, **entry_kwargs) if isinstance(result_or_entry, HostBenchResult) else result_or_entry
    return catalog.parse_device(tomllib.loads(to_toml(entry)), Path(f"{entry['id']}.toml"))


#: Memory tiers of a host entry, fastest first.
HOST_TIERS = ("l1", "l2", "l3", "dram")


def tier_for(device, nbytes):
    """The fastest tier of a host ``device`` whose capacity holds ``nbytes`` (vectorised;
    ``"dram"`` when none does). Private caches are per core: a working set split over the
    threads fits sooner than this says, so it is a conservative choice."""
    n = np.asarray(nbytes, float)
    out = np.full(n.shape, "dram", dtype=object)
    for t in reversed([t for t in HOST_TIERS if t in device.memory and t != "dram"]):
        cap = device.memory[t].capacity
        if cap is not None and device.memory[t].bandwidth is not None:
            out = np.where(n <= cap.si, t, out)
    return out.item() if out.ndim == 0 else out


def tier_table(device, precision: str = "fp32"):
    """One row per memory tier of a host ``device``, fastest-to-slowest by level: ``tier``,
    ``capacity`` (bytes; NaN if unknown), ``bandwidth`` (bytes/s), ``ridge`` (FLOP/byte at
    which the ``precision`` peak meets that tier's roof) and ``peak`` (FLOP/s)."""
    import pandas as pd

    peak = device.peak(precision)
    rows = []
    for t in [t for t in HOST_TIERS if t in device.memory] + [t for t in device.memory if t not in HOST_TIERS]:
        m = device.memory[t]
        if m.bandwidth is None:
            continue
        rows.append({"tier": t, "capacity": m.capacity.si if m.capacity is not None else np.nan,
                     "bandwidth": m.bandwidth.si, "ridge": peak / m.bandwidth.si, "peak": peak})
    return pd.DataFrame(rows)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"to_toml: cannot write a non-finite number ({v})")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"to_toml: unsupported value {v!r}")


def to_toml(entry: Mapping) -> str:
    """Render a device entry: top-level scalars, then ``[sources.*]``, ``[memory.*]``,
    ``[compute.*]`` tables whose quantities are inline tables."""
    lines = []
    for k, v in entry.items():
        if not isinstance(v, Mapping):
            lines.append(f"{k} = {_toml_value(v)}")
    for section, body in entry.items():
        if not isinstance(body, Mapping):
            continue
        for sub, table in body.items():
            lines.append("")
            lines.append(f"[{section}.{sub}]")
            for k, v in table.items():
                lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def write_device_toml(path: str | Path, result_or_entry: HostBenchResult | Mapping, **entry_kwargs) -> Path:
    """Write the device entry to ``path`` (written whole: temp file, then rename)."""
    entry = device_entry(result_or_entry, **entry_kwargs) if isinstance(result_or_entry, HostBenchResult) else result_or_entry
    text = to_toml(entry)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path
