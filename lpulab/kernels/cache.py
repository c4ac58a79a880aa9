"""A cache for notebook 05's slow measurements, keyed on everything they depend on.

The host bench (:func:`cached_hostbench`) and the SmolLM2 check against llama.cpp
(:func:`cached_reference_check`) take most of a run of notebook 05. Their results depend
on the machine, the library versions, the model file, the parameters and lpulab's own
code; when none of these changed, a run reuses the stored result and says so.

The key is the SHA-256 of a JSON record of those inputs (:func:`machine`, the versions,
the file hash, the parameters and a hash of the source files that compute the result).
Entries live in ``$LPULAB_CACHE`` or ``<repository>/.cache/lpulab`` (git-ignored): one
pickle per entry, next to a JSON file with the inputs and the time it was measured.
Writes go to a temporary file first, then are renamed, so an interrupted run leaves no
half-written entry; an entry that cannot be read is measured again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import pickle
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["cache_dir", "machine", "source_hash", "file_sha256", "CacheInfo", "cached", "cached_hostbench",
           "cached_smollm2", "cached_reference_check", "clear"]

KERNELS_DIR = Path(__file__).resolve().parent


def cache_dir() -> Path:
    """``$LPULAB_CACHE`` if set, else ``<repository>/.cache/lpulab``."""
    env = os.environ.get("LPULAB_CACHE", "").strip()
    if env:
        return Path(env).expanduser().resolve()
    from .. import paths

    return paths.ROOT / ".cache" / "lpulab"


def machine() -> dict:
    """What identifies this machine for a measurement: CPU model and vendor, the CPUs this
    process may use, memory, cache sizes, the BLAS numpy uses, Python and numpy versions."""
    from .hostbench import read_caches, read_cpu

    cpu = read_cpu()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cpus = os.cpu_count() or 1
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = sorted(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in threadpool_info()
                      if i.get("user_api") == "blas")
    except Exception:  # pragma: no cover - threadpoolctl is a dependency
        pass
    return {
        "cpu_model": str(cpu.get("model")), "cpu_vendor": str(cpu.get("vendor")), "cpus": cpus,
        "mem_bytes": cpu.get("mem_bytes"), "machine": platform.machine(),
        "caches": [[c.level, c.type, c.size_bytes, c.shared_cpus] for c in read_caches()],
        "blas": blas, "python": platform.python_version(), "numpy": np.__version__,
    }


def source_hash(*files: str | os.PathLike) -> str:
    """SHA-256 over the named source files (names relative to lpulab/kernels), in order."""
    h = hashlib.sha256()
    for f in files:
        p = Path(f)
        p = p if p.is_absolute() else KERNELS_DIR / p
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


_FILE_HASHES: dict = {}


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file (remembered per path, size and modification time)."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


@dataclass(frozen=True)
class CacheInfo:
    """Where a result came from: ``reused`` (True: read from the cache), ``measured_utc``
    (when it was measured), ``load`` (the 1-minute load average when the measurement
    started: a shared machine's timings depend on it), ``key`` (the SHA-256 of
    ``inputs``), ``path`` and ``inputs``."""

    kind: str
    key: str
    reused: bool
    measured_utc: str
    path: str
    inputs: Mapping
    load: float | None = None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "key": self.key, "reused": self.reused, "measured_utc": self.measured_utc,
                "load": self.load, "path": self.path}

    def sentence(self, what: str) -> str:
        when = self.measured_utc.replace("T", " ").replace("+00:00", " UTC")
        cpus = self.inputs.get("machine", {}).get("cpus")
        load = "" if self.load is None else f", load average {self.load:.1f}" + (f" on {cpus} CPUs" if cpus else "")
        if self.reused:
            return (f"{what}: reused from the cache (measured {when}{load}; machine, versions, inputs and code "
                    f"unchanged, key {self.key[:12]}; `reuse = False` measures afresh)")
        return f"{what}: measured in this run ({when}{load}), stored in the cache under key {self.key[:12]}"


def _key(inputs: Mapping) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def cached(kind: str, inputs: Mapping, compute: Callable[[], object], *, enabled: bool = True, store: bool = True):
    """``(value, CacheInfo)``: the stored value for ``(kind, inputs)`` if there is one and
    ``enabled``, else ``compute()``, stored for next time when ``store`` (also when not
    ``enabled``: a fresh measurement replaces the old one)."""
    if not kind.replace("-", "").isalnum():
        raise ValueError(f"cached: kind must be letters, digits and dashes, got {kind!r}")
    inputs = json.loads(json.dumps(dict(inputs), sort_keys=True, default=str))
    key = _key({"kind": kind, **inputs})
    d = cache_dir()
    path = d / f"{kind}-{key[:32]}.pkl"
    meta = path.with_suffix(".json")
    if enabled and path.is_file() and meta.is_file():
        try:
            m = json.loads(meta.read_text())
            if m.get("key") == key:
                with open(path, "rb") as f:
                    value = pickle.load(f)
                return value, CacheInfo(kind, key, True, m["measured_utc"], str(path), inputs, m.get("load"))
        except Exception:  # unreadable or stale entry: measure again
            pass
    load = _load()
    value = compute()
    measured = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    if not store:
        return value, CacheInfo(kind, key, False, measured, "", inputs, load)
    d.mkdir(parents=True, exist_ok=True)
    stem = f".{path.name}.{os.getpid()}"
    tmp, tmp_meta = d / (stem + ".tmp"), d / (stem + ".json.tmp")
    with open(tmp, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp_meta.write_text(json.dumps({"kind": kind, "key": key, "measured_utc": measured, "load": load, "inputs": inputs},
                                   indent=1))
    tmp.replace(path)
    tmp_meta.replace(meta)
    return value, CacheInfo(kind, key, False, measured, str(path), inputs, load)


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # pragma: no cover
        return None


def clear(kind: str | None = None) -> int:
    """Remove cached entries (of one ``kind``, or all); returns how many."""
    d = cache_dir()
    if not d.is_dir():
        return 0
    n = 0
    for p in d.glob(f"{kind}-*.pkl" if kind else "*.pkl"):
        p.unlink(missing_ok=True)
        p.with_suffix(".json").unlink(missing_ok=True)
        n += 1
    return n


def cached_hostbench(quick: bool = False, *, enabled: bool = True, **kw):
    """:func:`lpulab.kernels.hostbench.run_hostbench` through the cache: ``(result, CacheInfo)``.

    Keyed on :func:`machine`, the thread count, ``quick``, the other arguments and the
    host bench's source."""
    from . import hostbench

    threads = kw.pop("threads", None) or hostbench._n_threads()
    inputs = {"machine": machine(), "threads": threads, "quick": bool(quick),
              "arguments": dict(sorted(kw.items())),
              "code": source_hash("hostbench.py")}
    return cached("hostbench", inputs, lambda: hostbench.run_hostbench(quick=quick, threads=threads, **kw),
                  enabled=enabled)


def cached_smollm2(mode: str = "int8", *, reuse: bool = True):
    """SmolLM2-135M loaded from its GGUF file in ``mode`` (``"fp32"``, ``"ggml"``, ``"int8"``,
    or ``"fp8"`` / ``"int4"``: the fp32 weights requantised), through the cache:
    ``((decoder, GGUFModelInfo), CacheInfo)``. Keyed on the file's SHA-256, the mode and the
    loader's code; entries are the weights as stored (135 MB at int8, 538 MB at fp32)."""
    from .gguf_model import MODES, load_gguf, smollm2_gguf_path
    from .model import FORMATS, Decoder, quantize_weights

    if mode not in MODES + tuple(FORMATS):
        raise ValueError(f"cached_smollm2: mode must be one of {', '.join(dict.fromkeys(MODES + tuple(FORMATS)))}, "
                         f"got {mode!r}")

    def load():
        if mode in MODES:
            return load_gguf(mode=mode)
        dec, info = load_gguf(mode="fp32")
        return Decoder(dec.config, quantize_weights(dec.weights, precision=mode), dec.numerics), info

    inputs = {"gguf_sha256": file_sha256(smollm2_gguf_path()), "mode": mode,
              "code": source_hash("gguf_model.py", "model.py", "ops.py")}
    return cached("smollm2-weights", inputs, load, enabled=reuse, store=reuse)


#: Source files whose code decides the SmolLM2 check's numbers.
REFERENCE_SOURCES = ("ops.py", "tiled.py", "model.py", "gguf_model.py", "llamacpp_ref.py", "sharded.py")


def cached_reference_check(model: str, enabled: bool, *, n_new: int = 12, speed_tokens: int = 32,
                           speed_repeats: int = 3, reuse: bool = True):
    """:func:`lpulab.kernels.runs.reference_check` through the cache: ``(report, why_not,
    CacheInfo or None)``. Keyed on :func:`machine`, the GGUF file's SHA-256, the versions
    of llama-cpp-python and gguf, the parameters and the kernels' source."""
    from . import runs

    report, why_not = runs.reference_check(model, enabled, n_new=n_new, speed_tokens=speed_tokens,
                                           speed_repeats=speed_repeats, dry_run=True)
    if why_not is not None:
        return None, why_not, None
    from importlib.metadata import version

    from .gguf_model import smollm2_gguf_path
    from .llamacpp_ref import DEFAULT_PROMPTS, LOGIT_TOLERANCE

    inputs = {
        "machine": machine(), "gguf_sha256": file_sha256(smollm2_gguf_path()),
        "versions": {p: version(p) for p in ("llama_cpp_python", "gguf")},
        "parameters": {"n_new": n_new, "speed_tokens": speed_tokens, "speed_repeats": speed_repeats,
                       "prompts": list(DEFAULT_PROMPTS), "tolerances": LOGIT_TOLERANCE,
                       "threads": os.environ.get("LPULAB_THREADS") or os.environ.get("OPENBLAS_NUM_THREADS")},
        "code": source_hash(*REFERENCE_SOURCES),
    }

    def compute():
        return runs.reference_check(model, enabled, n_new=n_new, speed_tokens=speed_tokens,
                                    speed_repeats=speed_repeats)[0]

    report, info = cached("smollm2-reference", inputs, compute, enabled=reuse)
    return report, None, info
