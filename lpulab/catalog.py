"""The data catalog: ``data/**/*.toml`` -> validated, frozen dataclasses with SI floats.

Every number in a catalog file is an inline table ``{value, unit, source, kind}``; the
loader converts it with pint into SI (bytes, bytes/s, FLOP/s, W, USD, s ...) and keeps
where it came from. A file with an unknown field, a missing or unknown unit, a missing
source, a negative value or a bad kind is refused with the file and the field named.

This module is the only place in lpulab that reads input files. Each file it reads is
remembered with its SHA-256 (:func:`files_read`) so a report can state its inputs.
"""

from __future__ import annotations

import contextvars
import copy
import datetime
import hashlib
import math
import re
import tomllib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from . import paths, units

if TYPE_CHECKING:
    import pandas as pd

_T = TypeVar("_T")

KINDS = ("vendor-peak", "derived", "measured", "estimate")
CONFIDENCES = ("official", "third-party", "media", "unverified", "measured", "override")
#: Descriptive kinds of chip; no rule in lpulab reads them (deployment rules are data).
CATEGORIES = ("gpu", "lpu", "tpu", "cpu", "wafer", "rdu")
TIERS = ("sram", "l1", "l2", "l3", "hbm", "gddr", "dram")
#: Compute formats a device may list a peak for (``fp4``: NVFP4 or MXFP4 operands).
PRECISIONS = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4", "fp4")
#: Storage width of one value at each precision, bytes.
#: Block-scaled 4-bit formats carry their scales: NVFP4 an 8-bit scale per 16 values (4.5 bits),
#: MXFP4 an 8-bit scale per 32 (4.25 bits); the per-tensor FP32 scale of NVFP4 is negligible.
PRECISION_BYTES = {"fp64": 8.0, "fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5,
                   "fp4": 0.5, "nvfp4": 4.5 / 8, "mxfp4": 4.25 / 8}
QUANTITY_KEYS = {"value", "unit", "source", "kind", "sparsity", "note", "formula", "low", "high"}

_FILES_READ: dict[str, str] = {}


class CatalogError(ValueError):
    """A catalog file that does not follow the schema; the message names file and field."""


def files_read() -> dict[str, str]:
    """Every data file read so far in this process: path relative to the repo -> sha256."""
    return dict(sorted(_FILES_READ.items()))


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(paths.ROOT))
    except ValueError:
        return str(path)


def read_toml(path: Path) -> dict:
    """Read a TOML file, record its hash, and turn syntax errors into CatalogError."""
    path = Path(path)
    raw = path.read_bytes()
    _FILES_READ[_rel(path)] = hashlib.sha256(raw).hexdigest()
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{_rel(path)}: not valid TOML ({exc})") from None


def record_read(path: Path) -> bytes:
    """Read a non-TOML input file (e.g. a CSV) through the catalog so its hash is recorded."""
    raw = Path(path).read_bytes()
    _FILES_READ[_rel(Path(path))] = hashlib.sha256(raw).hexdigest()
    return raw


# --------------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class Override:
    """One per-run change of a catalog number: ``"<id>.<path>": "<quantity>"``."""

    key: str                  # as the user wrote it
    kind: str                 # hardware | models | prices
    id: str
    path: tuple[str, ...]
    text: str | int | float   # the new value as written ("15000 USD", "40 TB/s", 15000)

    def to_dict(self) -> dict:
        return {"key": self.key, "file": f"{self.kind}/{self.id}.toml", "path": ".".join(self.path),
                "value": self.text}


_OVERRIDES: tuple[Override, ...] = ()
_OVERRIDE_KINDS = ("hardware", "models", "prices")


def _quantity_paths(raw: Mapping, prefix: tuple[str, ...] = ()) -> list[str]:
    out = []
    for k, v in raw.items():
        if k == "sources":
            continue
        if isinstance(v, Mapping) and "value" in v and "unit" in v:
            out.append(".".join(prefix + (k,)))
        elif isinstance(v, Mapping):
            out += _quantity_paths(v, prefix + (k,))
        elif not prefix and k in ("id",):
            continue
        elif isinstance(v, str) and prefix:
            out.append(".".join(prefix + (k,)))
    return out


def _parse_key(key: str) -> tuple[str, str, tuple[str, ...]]:
    """``"groq-card.price.unit"`` or ``"prices/groq-card.price.unit"`` -> (kind, id, path)."""
    if not isinstance(key, str) or not key.strip():
        raise CatalogError(f"overrides: a key must be '<id>.<path>' (e.g. 'groq-card.price.unit'), got {key!r}")
    kind = None
    rest = key.strip()
    if "/" in rest:
        kind, rest = rest.split("/", 1)
        if kind not in _OVERRIDE_KINDS:
            raise CatalogError(f"overrides: {key!r}: {kind!r} is not one of {', '.join(_OVERRIDE_KINDS)}")
    # ids may contain dots (llama-3.1-70b): take the longest prefix that names an entry
    parts = rest.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        cand = ".".join(parts[:cut])
        kinds = [k for k in ([kind] if kind else _OVERRIDE_KINDS) if cand in entry_ids(k)]
        if len(kinds) > 1:
            raise CatalogError(f"overrides: {key!r}: {cand!r} is both a {' and a '.join(kinds)} id; write "
                               f"'{kinds[0]}/{rest}' or '{kinds[1]}/{rest}'")
        if kinds:
            return kinds[0], cand, tuple(parts[cut:])
    known = sorted(set().union(*(entry_ids(k) for k in ([kind] if kind else _OVERRIDE_KINDS))))
    raise CatalogError(f"overrides: {key!r} names no catalog entry; a key is '<id>.<path>' with an id from: "
                       f"{', '.join(known)}")


def _override_target(raw: Mapping, ov: Override, rel: str) -> Any:
    node: Any = raw
    for i, k in enumerate(ov.path):
        if not isinstance(node, Mapping) or k not in node or k == "sources":
            raise CatalogError(f"overrides: {ov.key!r}: {rel} has no field {'.'.join(ov.path[:i + 1])!r}; "
                               f"fields that can be overridden: {', '.join(_quantity_paths(raw))}")
        node = node[k]
    return node


def _overridden_value(old: Mapping, ov: Override, rel: str) -> dict:
    unit = old["unit"]
    try:
        dimension = units.dimension_of(unit)
    except units.UnitError as exc:
        raise CatalogError(f"{rel}: {'.'.join(ov.path)}.unit: {exc}") from None
    text = ov.text
    try:
        if isinstance(text, bool):
            raise units.UnitError("a true/false is not a quantity")
        if isinstance(text, (int, float)):
            v = float(text)
        else:
            try:
                v = float(str(text).strip())
            except ValueError:
                v = float(units.from_si(units.parse_quantity(str(text), dimension), unit, dimension))
    except units.UnitError as exc:
        raise CatalogError(f"overrides: {ov.key!r} = {text!r}: {exc}; give a {dimension} quantity such as "
                           f"'{old.get('value')} {unit}'") from None
    if not math.isfinite(v) or v < 0:
        raise CatalogError(f"overrides: {ov.key!r} = {text!r}: expected a finite, non-negative {dimension}")
    return {"value": v, "unit": unit, "source": "override", "kind": "estimate",
            "note": f"Per-run override {ov.key} = {text} (the file says {old.get('value')} {unit})."}


def _apply_overrides(kind: str, raw: dict, path: Path, overrides: tuple[Override, ...] | None = None) -> dict:
    """``raw`` with this run's overrides of the entry applied (a copy; the file is untouched)."""
    mine = [o for o in (_OVERRIDES if overrides is None else overrides)
            if o.kind == kind and o.id == Path(path).stem and isinstance(raw, Mapping)]
    if not mine:
        return raw
    raw = copy.deepcopy(raw)
    rel = _rel(Path(path))
    for ov in mine:
        parent = _override_target(raw, Override(ov.key, kind, ov.id, ov.path[:-1], ov.text), rel) if len(ov.path) > 1 else raw
        target = _override_target(raw, ov, rel)
        if isinstance(target, Mapping) and "value" in target and "unit" in target:
            parent[ov.path[-1]] = _overridden_value(target, ov, rel)
            raw.setdefault("sources", {})["override"] = {
                "title": "Per-run override given as a report parameter (see the report's overrides table)",
                "url": "", "date": datetime.date.today().isoformat(), "confidence": "override"}
        elif isinstance(target, str):
            parent[ov.path[-1]] = str(ov.text)
        else:
            raise CatalogError(f"overrides: {ov.key!r}: {rel} field {'.'.join(ov.path)!r} is a table, not a number; "
                               f"fields that can be overridden: {', '.join(_quantity_paths(raw))}")
    return raw


def parse_overrides(mapping: Mapping | None) -> tuple[Override, ...]:
    """Check a mapping of overrides (``{"<id>.<path>": "<quantity>"}``) against the catalog:
    every key names an entry and a field, every value parses in the field's dimension.
    Raises CatalogError naming the key and what is allowed."""
    if mapping is None:
        return ()
    if not isinstance(mapping, Mapping):
        raise CatalogError(f"overrides must be a mapping of '<id>.<path>' to a quantity, got {type(mapping).__name__}")
    out = []
    for key, text in mapping.items():
        if not isinstance(text, (str, int, float)) or isinstance(text, bool):
            raise CatalogError(f"overrides: {key!r}: the value must be a quantity string such as '15000 USD' "
                               f"or a number, got {text!r}")
        kind, eid, path = _parse_key(key)
        ov = Override(str(key), kind, eid, path, text)
        file = entry_path(kind, eid)
        _apply_overrides(kind, tomllib.loads(file.read_text("utf-8")), file, (ov,))
        out.append(ov)
    return tuple(out)


def set_overrides(mapping: Mapping | None) -> tuple[Override, ...]:
    """Make ``mapping`` this process's overrides (replacing any before); returns them checked."""
    global _OVERRIDES
    _OVERRIDES = parse_overrides(mapping)
    return _OVERRIDES


def overrides_key() -> tuple[tuple[str, str], ...]:
    """The overrides in force as a hashable key (for caches of results that depend on them)."""
    return tuple((o.key, str(o.text)) for o in _OVERRIDES)


def active_overrides() -> tuple[Override, ...]:
    """The overrides in force in this process."""
    return _OVERRIDES


@contextmanager
def overriding(mapping: Mapping | None) -> Iterator[tuple[Override, ...]]:
    """``with catalog.overriding({...}):`` the overrides hold inside the block only."""
    global _OVERRIDES
    before = _OVERRIDES
    try:
        yield set_overrides(mapping)
    finally:
        _OVERRIDES = before


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Source:
    key: str
    title: str
    url: str
    date: str
    confidence: str


@dataclass(frozen=True)
class Value:
    """One sourced number. ``si`` is the float lpulab computes with."""

    si: float
    value: float
    unit: str
    source: Source
    kind: str
    sparsity: str | None = None
    note: str | None = None
    formula: str | None = None
    low_si: float | None = None
    high_si: float | None = None

    def __float__(self) -> float:
        return self.si

    @property
    def is_range(self) -> bool:
        return self.low_si is not None and self.high_si is not None

    def cite(self) -> str:
        s = self.source
        return f"{s.title} ({s.date}), {s.url} [{s.confidence}, {self.kind}]"


class _Ctx:
    """Where we are in a file, for error messages."""

    def __init__(self, path: Path):
        self.path = path
        self.rel = _rel(path)

    def fail(self, where: str, msg: str) -> NoReturn:
        raise CatalogError(f"{self.rel}: {where}: {msg}")


#: Fields whose value must be a table wherever they appear at a file's top level, and fields
#: that must be text there (a number or a list in their place is refused, not crashed on).
_TOP_TABLES = {"sources", "memory", "compute", "interconnect", "power", "price", "clock", "architecture",
               "parameters", "deployment", "tariff", "factor", "count", "time"}
_TOP_STRINGS = {"id", "name", "vendor", "category", "family", "notes"}
#: Dimensions whose zero would be a divisor somewhere (a time = bytes / bandwidth, a chip
#: count = bytes / capacity, a ratio of two powers or two tariffs): refused, like negatives.
NONZERO_DIMENSIONS = ("bytes", "bandwidth", "compute", "frequency", "power", "energy_price")

#: While :func:`validate_all` runs, the problems found in the current file: checks append
#: here and go on, so every problem in a file is reported at once (None: raise at the first).
_PROBLEMS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("lpulab_catalog_problems", default=None)


def _soft(exc: CatalogError) -> bool:
    """Collect ``exc`` when validating a whole file (True: go on), else let the caller raise."""
    found = _PROBLEMS.get()
    if found is None:
        return False
    found.append(str(exc))
    return True


def _check_keys(ctx: _Ctx, where: str, table: Mapping, allowed: Collection[str], required: Iterable[str] = ()) -> None:
    if not isinstance(table, Mapping):
        ctx.fail(where, f"expected a table, got {type(table).__name__} {_short(table)}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        try:
            ctx.fail(where, f"unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
        except CatalogError as exc:
            if not _soft(exc):
                raise
    if where == "(top level)":  # a table or a string given as something else: the file cannot be read on
        bad = [CatalogError(f"{ctx.rel}: {k}: expected {'a table' if k in _TOP_TABLES else 'a string'}, "
                            f"got {type(v).__name__} {_short(v)}")
               for k, v in table.items() if k in allowed and ((k in _TOP_TABLES and not isinstance(v, Mapping))
                                                              or (k in _TOP_STRINGS and not isinstance(v, str)))]
        for err in bad[1:]:
            _soft(err)
        if bad:
            raise bad[0]
    missing = [k for k in required if k not in table]
    if missing:
        ctx.fail(where, f"missing field(s) {', '.join(missing)}")


def _short(v: Any, limit: int = 60) -> str:
    """A value for an error message, cut to ``limit`` characters."""
    r = repr(v)
    return r if len(r) <= limit else r[:limit] + "..."


def _sources(ctx: _Ctx, raw: Mapping) -> dict[str, Source]:
    if not isinstance(raw, Mapping):
        ctx.fail("sources", f"expected a table of [sources.<key>] tables, got {type(raw).__name__} {_short(raw)}")
    if not raw:
        ctx.fail("sources", "at least one source is required")
    out = {}
    for key, s in raw.items():
        where = f"sources.{key}"
        try:
            _check_keys(ctx, where, s, {"title", "url", "date", "confidence"}, ("title", "url", "date", "confidence"))
            if not isinstance(s["title"], str) or not s["title"].strip():
                ctx.fail(where + ".title", f"expected a non-empty string, got {_short(s['title'])}")
            if not isinstance(s["url"], str):
                ctx.fail(where + ".url", f"expected a string, got {type(s['url']).__name__} {_short(s['url'])}")
            if not isinstance(s["date"], (str, datetime.date)):
                ctx.fail(where + ".date", f"expected a date (YYYY, YYYY-MM or YYYY-MM-DD), got {_short(s['date'])}")
            if not isinstance(s["confidence"], str) or s["confidence"] not in CONFIDENCES:
                ctx.fail(where + ".confidence", f"{_short(s['confidence'])} is not one of {', '.join(CONFIDENCES)}")
        except CatalogError as exc:
            if not _soft(exc):
                raise
            if not isinstance(s, Mapping):
                continue
        # (a source with a problem already reported stays known, so values citing it add no noise)
        out[key] = Source(key, str(s.get("title")), str(s.get("url")), str(s.get("date")), str(s.get("confidence")))
    return out


def _number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, (int, float))


def _value(ctx: _Ctx, where: str, raw: Any, dimension: str, sources: Mapping[str, Source],
           need_sparsity: bool = False) -> Value:
    try:
        return _value_strict(ctx, where, raw, dimension, sources, need_sparsity)
    except CatalogError as exc:
        if not _soft(exc):
            raise
        # a stand-in so the rest of the file is still checked; the file is reported invalid
        placeholder = Source("?", "?", "?", "?", "unverified")
        return Value(si=1.0, value=1.0, unit="", source=placeholder, kind="estimate",
                     sparsity="dense" if need_sparsity else None)


def _value_strict(ctx: _Ctx, where: str, raw: Any, dimension: str, sources: Mapping[str, Source],
                  need_sparsity: bool = False) -> Value:
    if not isinstance(raw, Mapping):
        ctx.fail(where, f"a number must be an inline table {{value, unit, source, kind}}, not a bare value ({_short(raw)})")
    _check_keys(ctx, where, raw, QUANTITY_KEYS, ("value", "unit", "source", "kind"))
    for k in ("unit", "source", "kind", "sparsity", "note", "formula"):
        if k in raw and not isinstance(raw[k], str):
            ctx.fail(f"{where}.{k}", f"expected a string, got {type(raw[k]).__name__} {_short(raw[k])}")
    v = raw["value"]
    if not _number(v) or not math.isfinite(v):
        ctx.fail(where + ".value", f"expected a finite number, got {_short(v)}")
    if v < 0:
        ctx.fail(where + ".value", f"negative value {v} (values are magnitudes)")
    if v == 0 and dimension in NONZERO_DIMENSIONS:
        ctx.fail(where + ".value", f"0 is not allowed for a {dimension} (lpulab divides by it); give a positive number")
    try:
        units.check_unit(raw["unit"], dimension)
    except units.UnitError as exc:
        ctx.fail(where + ".unit", str(exc))
    if raw["source"] not in sources:
        ctx.fail(where + ".source", f"unknown source {raw['source']!r} (sources: {', '.join(sources)})")
    if raw["kind"] not in KINDS:
        ctx.fail(where + ".kind", f"{raw['kind']!r} is not one of {', '.join(KINDS)}")
    if raw["kind"] == "derived" and not raw.get("formula"):
        ctx.fail(where + ".formula", "a derived value must name its formula")
    sparsity = raw.get("sparsity")
    if need_sparsity and sparsity not in ("dense", "sparse"):
        ctx.fail(where + ".sparsity", "a compute peak must say sparsity = 'dense' or 'sparse'")
    if sparsity is not None and sparsity not in ("dense", "sparse"):
        ctx.fail(where + ".sparsity", f"{sparsity!r} is not 'dense' or 'sparse'")
    lo, hi = raw.get("low"), raw.get("high")
    if (lo is None) != (hi is None):
        ctx.fail(where, "give both low and high, or neither")
    if lo is not None and hi is not None:   # both or neither (checked above)
        for name, b in (("low", lo), ("high", hi)):
            if not _number(b) or not math.isfinite(b) or b < 0:
                ctx.fail(f"{where}.{name}", f"expected a finite non-negative number, got {_short(b)}")
        if not lo <= v <= hi:
            ctx.fail(where, f"value {v} lies outside its range [{lo}, {hi}]")
    conv = lambda x: None if x is None else units.to_si(float(x), raw["unit"], dimension)  # noqa: E731
    si, lo_si, hi_si = units.to_si(float(v), raw["unit"], dimension), conv(lo), conv(hi)
    for name, x in (("value", si), ("low", lo_si), ("high", hi_si)):
        if x is not None and not math.isfinite(x):
            ctx.fail(f"{where}.{name}", f"{raw[name]} {raw['unit']} overflows in SI units; give a finite magnitude")
    return Value(
        si=si, value=float(v), unit=raw["unit"], source=sources[raw["source"]], kind=raw["kind"],
        sparsity=sparsity, note=raw.get("note"), formula=raw.get("formula"), low_si=lo_si, high_si=hi_si,
    )


def _choice(ctx: _Ctx, where: str, v: Any, allowed: Collection[str]) -> str:
    if v not in allowed:
        ctx.fail(where, f"{v!r} is not one of {', '.join(allowed)}")
    return v


def _string(ctx: _Ctx, where: str, v: Any) -> str:
    if not isinstance(v, str):
        ctx.fail(where, f"expected a string, got {v!r}")
    return v


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class MemoryTier:
    name: str
    placement: str
    capacity: Value | None
    bandwidth: Value | None


@dataclass(frozen=True)
class Link:
    """A chip's interconnect: ``bandwidth`` per chip per direction (all links together),
    ``latency`` of one hop, ``collective_latency`` the measured time of a small-message
    all-reduce over the scale-up domain, ``topology`` how the chips are joined."""

    name: str
    bandwidth: Value | None
    links: Value | None
    latency: Value | None
    collective_latency: Value | None = None
    topology: str | None = None


TOPOLOGIES = ("switch", "ring", "mesh", "torus", "dragonfly", "point-to-point", "wafer")
TENSOR_SPLITS = ("any", "power-of-two", "kv-heads")


@dataclass(frozen=True)
class DeploymentRules:
    """What a deployment of a device is made of (its file's ``[deployment]``).

    ``units``: purchase/installation units, name -> chips per unit (smallest first);
    ``unit``: the one chip counts are rounded up to; ``prices``: the price sheet of one
    unit; ``tensor_split``: the tensor-parallel widths a stage may use (``any`` whole
    number, ``power-of-two``, or ``kv-heads``: powers of two dividing the model's key/value
    heads), up to ``scale_up_chips``; ``scale_up_link``/``scale_out_link``: the
    interconnect inside and between scale-up domains; ``weights_tier``: the memory tier
    that holds the weights and the KV cache, when the file names it (else
    :attr:`Device.main_tier`'s default rule)."""

    unit: str
    units: Mapping[str, Value]
    tensor_split: str
    scale_up_chips: Value
    scale_up_link: str | None
    scale_out_link: str | None
    prices: str | None
    path: str = ""
    weights_tier: str | None = None

    def chips_per(self, unit: str | None = None) -> int:
        name = unit or self.unit
        if name not in self.units:
            raise CatalogError(f"{self.path}: deployment has no unit {name!r} (units: {', '.join(self.units)})")
        return int(self.units[name].si)

    @property
    def unit_chips(self) -> int:
        """Chips in the unit a deployment is rounded up to."""
        return self.chips_per(self.unit)

    @property
    def max_tensor(self) -> int:
        """The widest tensor-parallel group: the scale-up domain."""
        return int(self.scale_up_chips.si)


@dataclass(frozen=True)
class Device:
    id: str
    name: str
    vendor: str
    category: str
    released: str
    memory: Mapping[str, MemoryTier]
    compute: Mapping[str, Value]
    compute_sparse: Mapping[str, Value]
    interconnect: Mapping[str, Link]
    power: Mapping[str, Value]
    price: Mapping[str, Value]
    clock: Value | None
    sources: Mapping[str, Source]
    notes: str = ""
    path: str = ""
    deployment_rules: DeploymentRules | None = None

    @property
    def deployment(self) -> DeploymentRules:
        """The device's ``[deployment]`` rules, or a clear error naming what to add."""
        if self.deployment_rules is None:
            raise CatalogError(
                f"{self.path or self.id}: no [deployment] section: add `unit`, `tensor_split`, `scale_up_link`, "
                "[deployment.scale_up] chips and [deployment.units.<name>] chips (see docs/architecture.md)")
        return self.deployment_rules

    @property
    def sram_only(self) -> bool:
        """Whether the tier that holds the weights is on the chip (an SRAM machine)."""
        return self.memory[self.main_tier].placement == "on-chip"

    def price_sheet_id(self) -> str:
        """The id of the price sheet of one deployment unit, or a clear error naming what to add."""
        d = self.deployment
        if not d.prices:
            raise CatalogError(
                f"{self.path or self.id}: deployment.prices is not set, so {self.id} cannot be costed: add a price sheet "
                f"prices/<id>.toml with category = \"system\" (keys count.chips_per_unit, price.unit, power.unit; see "
                f"docs/architecture.md) to your data folder and set deployment.prices = \"<id>\" in its hardware file")
        return d.prices

    @property
    def main_tier(self) -> str:
        """The tier that holds a model's weights: the file's ``deployment.weights_tier`` when
        it names one (a machine with SRAM used as a scratchpad beside HBM, e.g. SambaNova's
        SN40L), else on-die SRAM when the device has it, else the largest off-chip memory
        (HBM, GDDR, DRAM)."""
        if self.deployment_rules is not None and self.deployment_rules.weights_tier is not None:
            return self.deployment_rules.weights_tier
        if "sram" in self.memory:
            return "sram"
        off = [t for t in self.memory.values() if t.placement == "off-chip" and t.capacity]
        if not off:
            raise CatalogError(f"{self.path}: no off-chip memory tier with a capacity to hold weights")
        return max(off, key=lambda t: t.capacity.si).name  # type: ignore[union-attr]  # off: tiers with a capacity

    def tier(self, name: str | None = None) -> MemoryTier:
        name = name or self.main_tier
        if name not in self.memory:
            raise KeyError(f"device {self.id!r} has no memory tier {name!r} (tiers: {', '.join(self.memory)})")
        return self.memory[name]

    def bandwidth(self, tier: str | None = None) -> float:
        t = self.tier(tier)
        if t.bandwidth is None:
            raise KeyError(f"device {self.id!r}: tier {t.name!r} has no bandwidth in the catalog")
        return t.bandwidth.si

    def capacity(self, tier: str | None = None) -> float:
        t = self.tier(tier)
        if t.capacity is None:
            raise KeyError(f"device {self.id!r}: tier {t.name!r} has no capacity in the catalog")
        return t.capacity.si

    def peak(self, precision: str) -> float:
        """Dense peak FLOP/s (or OP/s) at ``precision``."""
        if precision not in self.compute:
            raise KeyError(
                f"device {self.id!r} has no {precision} peak (has: {', '.join(self.compute)})"
            )
        return self.compute[precision].si


_DEVICE_TOP = {"id", "name", "vendor", "category", "released", "notes", "sources", "memory",
               "compute", "clock", "interconnect", "power", "price", "deployment"}


def _deployment(ctx: _Ctx, raw: Any, sources: Mapping[str, Source], interconnect: Mapping[str, Link],
                memory: Mapping[str, MemoryTier]) -> DeploymentRules:
    where = "deployment"
    _check_keys(ctx, where, raw, {"prices", "unit", "units", "tensor_split", "scale_up", "scale_up_link",
                                  "scale_out_link", "weights_tier"}, ("unit", "units", "tensor_split", "scale_up"))
    units_raw = raw["units"]
    if not isinstance(units_raw, Mapping) or not units_raw:
        ctx.fail(where + ".units", "give at least one unit, e.g. [deployment.units.node] chips = {value = 8, ...}")
    units_ = {}
    for name, u in units_raw.items():
        _check_keys(ctx, f"{where}.units.{name}", u, {"chips"}, ("chips",))
        v = _value(ctx, f"{where}.units.{name}.chips", u["chips"], "count", sources)
        if v.si < 1 or v.si != int(v.si):
            ctx.fail(f"{where}.units.{name}.chips.value", f"expected a whole number >= 1, got {v.value}")
        units_[name] = v
    unit = _string(ctx, where + ".unit", raw["unit"])
    if unit not in units_:
        ctx.fail(where + ".unit", f"{unit!r} is not one of the units given ({', '.join(units_)})")
    split = _choice(ctx, where + ".tensor_split", raw["tensor_split"], TENSOR_SPLITS)
    _check_keys(ctx, where + ".scale_up", raw["scale_up"], {"chips"}, ("chips",))
    up = _value(ctx, where + ".scale_up.chips", raw["scale_up"]["chips"], "count", sources)
    if up.si < 1 or up.si != int(up.si):
        ctx.fail(where + ".scale_up.chips.value", f"expected a whole number >= 1, got {up.value}")
    links = {}
    for key in ("scale_up_link", "scale_out_link"):
        name = raw.get(key)
        if name is not None:
            _string(ctx, f"{where}.{key}", name)
            if name not in interconnect:
                ctx.fail(f"{where}.{key}", f"{name!r} is not an [interconnect] of this device "
                                           f"(has: {', '.join(interconnect) or 'none'})")
            if interconnect[name].bandwidth is None:
                ctx.fail(f"{where}.{key}", f"interconnect {name!r} has no bandwidth")
        links[key] = name
    if up.si > 1 and links["scale_up_link"] is None:
        ctx.fail(where + ".scale_up_link", f"a scale-up domain of {int(up.si)} chips needs the interconnect that joins them")
    prices = raw.get("prices")
    if prices is not None:
        _string(ctx, where + ".prices", prices)
    weights_tier = raw.get("weights_tier")
    if weights_tier is not None:
        _string(ctx, where + ".weights_tier", weights_tier)
        held = [t for t, m in memory.items() if m.capacity is not None]
        if weights_tier not in held:
            ctx.fail(where + ".weights_tier", f"{weights_tier!r} is not a [memory] tier of this device with a capacity "
                                              f"(tiers: {', '.join(held) or 'none'})")
    return DeploymentRules(unit=unit, units=units_, tensor_split=split, scale_up_chips=up,
                           scale_up_link=links["scale_up_link"],
                           scale_out_link=links["scale_out_link"] or links["scale_up_link"],
                           prices=prices or None, path=ctx.rel, weights_tier=weights_tier)


def parse_device(raw: Mapping, path: Path) -> Device:
    ctx = _Ctx(Path(path))
    _check_keys(ctx, "(top level)", raw, _DEVICE_TOP, ("id", "name", "vendor", "category", "released", "sources", "memory"))
    if raw["id"] != Path(path).stem:
        ctx.fail("id", f"{raw['id']!r} must equal the file name {Path(path).stem!r}")
    sources = _sources(ctx, raw["sources"])
    memory = {}
    for tname, t in raw["memory"].items():
        where = f"memory.{tname}"
        _choice(ctx, where, tname, TIERS)
        _check_keys(ctx, where, t, {"placement", "capacity", "bandwidth"}, ("placement",))
        memory[tname] = MemoryTier(
            tname, _choice(ctx, where + ".placement", t["placement"], ("on-chip", "off-chip")),
            _value(ctx, where + ".capacity", t["capacity"], "bytes", sources) if "capacity" in t else None,
            _value(ctx, where + ".bandwidth", t["bandwidth"], "bandwidth", sources) if "bandwidth" in t else None,
        )
    if not memory:
        ctx.fail("memory", "at least one memory tier is required")
    compute, sparse = {}, {}
    for prec, c in raw.get("compute", {}).items():
        where = f"compute.{prec}"
        _choice(ctx, where, prec, PRECISIONS)
        _check_keys(ctx, where, c, {"peak", "peak_sparse"}, ("peak",))
        compute[prec] = _value(ctx, where + ".peak", c["peak"], "compute", sources, need_sparsity=True)
        if compute[prec].sparsity != "dense":
            ctx.fail(where + ".peak.sparsity", "`peak` must be the dense figure; put a sparse one in `peak_sparse`")
        if "peak_sparse" in c:
            sparse[prec] = _value(ctx, where + ".peak_sparse", c["peak_sparse"], "compute", sources, need_sparsity=True)
    links = {}
    for lname, ln in raw.get("interconnect", {}).items():
        where = f"interconnect.{lname}"
        _check_keys(ctx, where, ln, {"bandwidth", "links", "latency", "collective_latency", "topology"})
        if "topology" in ln:
            _choice(ctx, where + ".topology", ln["topology"], TOPOLOGIES)
        links[lname] = Link(
            lname,
            _value(ctx, where + ".bandwidth", ln["bandwidth"], "bandwidth", sources) if "bandwidth" in ln else None,
            _value(ctx, where + ".links", ln["links"], "count", sources) if "links" in ln else None,
            _value(ctx, where + ".latency", ln["latency"], "time", sources) if "latency" in ln else None,
            _value(ctx, where + ".collective_latency", ln["collective_latency"], "time", sources)
            if "collective_latency" in ln else None,
            ln.get("topology"),
        )
    power = {}
    if "power" in raw:
        _check_keys(ctx, "power", raw["power"], {"tdp", "typical", "max"})
        power = {k: _value(ctx, f"power.{k}", v, "power", sources) for k, v in raw["power"].items()}
    price = {}
    if "price" in raw:
        _check_keys(ctx, "price", raw["price"], {"unit_price"})
        price = {k: _value(ctx, f"price.{k}", v, "money", sources) for k, v in raw["price"].items()}
    clock = None
    if "clock" in raw:
        _check_keys(ctx, "clock", raw["clock"], {"frequency"}, ("frequency",))
        clock = _value(ctx, "clock.frequency", raw["clock"]["frequency"], "frequency", sources)
    return Device(
        id=raw["id"], name=_string(ctx, "name", raw["name"]), vendor=_string(ctx, "vendor", raw["vendor"]),
        category=_choice(ctx, "category", raw["category"], CATEGORIES),
        released=str(raw["released"]), memory=memory, compute=compute, compute_sparse=sparse,
        interconnect=links, power=power, price=price, clock=clock, sources=sources,
        notes=str(raw.get("notes", "")), path=ctx.rel,
        deployment_rules=_deployment(ctx, raw["deployment"], sources, links, memory) if "deployment" in raw else None,
    )


#: The catalog's kinds of entry and the folder of a data directory that holds each.
KINDS_OF_ENTRY = ("hardware", "models", "prices", "measurements")


def _folders(kind: str, folder: Path | None = None) -> list[Path]:
    """The folders searched for entries of ``kind``: ``folder`` alone when given, else the
    user data folders (``$LPULAB_DATA``) in order, then the shipped ``data/``."""
    if folder is not None:
        return [Path(folder)]
    out = []
    for d in paths.data_dirs():
        if d != paths.DATA and not d.is_dir():
            raise CatalogError(f"{paths.DATA_ENV} names {str(d)!r}, which is not a folder "
                               f"(a user data folder holds hardware/, models/, prices/ or measurements/)")
        if (d / kind).is_dir():
            out.append(d / kind)
    return out


def entry_ids(kind: str, folder: Path | None = None) -> list[str]:
    """Every id of ``kind`` (hardware, models, prices) over the searched folders."""
    return sorted({p.stem for f in _folders(kind, folder) for p in f.glob("*.toml")})


def entry_path(kind: str, id_or_path: str | Path, folder: Path | None = None) -> Path:
    """The file of entry ``id_or_path`` of ``kind`` (the first folder that has it), or a
    path to a TOML file given directly."""
    what = {"hardware": "device", "models": "model", "prices": "price sheet"}.get(kind, kind)
    p = Path(id_or_path)
    if p.suffix == ".toml" and p.is_file():
        return p
    if not isinstance(id_or_path, str) or not id_or_path or "/" in id_or_path or "\\" in id_or_path:
        raise KeyError(f"unknown {what} {str(id_or_path)!r}; known: {', '.join(entry_ids(kind, folder))}")
    for f in _folders(kind, folder):
        candidate = f / f"{id_or_path}.toml"
        if candidate.is_file():
            return candidate
    raise KeyError(f"unknown {what} {str(id_or_path)!r}; known: {', '.join(entry_ids(kind, folder))}")


def load_device(id_or_path: str | Path, folder: Path | None = None) -> Device:
    """Load one device by id (``<data>/hardware/<id>.toml``, user data folders first) or
    by path to a TOML file; the run's overrides (:func:`set_overrides`) apply."""
    path = entry_path("hardware", id_or_path, folder)
    return parse_device(_apply_overrides("hardware", read_toml(path), path), path)


def device_ids(folder: Path | None = None) -> list[str]:
    return entry_ids("hardware", folder)


def devices(folder: Path | None = None) -> dict[str, Device]:
    return {i: load_device(i, folder) for i in device_ids(folder)}


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class Model:
    """A model's architecture as its file gives it (``[architecture]``), with the published
    parameter counts. The 2025-26 fields default to "not used" (a dense GQA decoder), so a
    model written before them reads unchanged; see docs/architecture.md for each."""

    id: str
    name: str
    family: str
    released: str
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    ffn_size: int
    vocab_size: int
    max_context: int
    experts: int
    active_experts: int
    ffn_gated: bool
    tied_embeddings: bool
    norm: str
    published_parameters: Value
    values: Mapping[str, Value] = field(default_factory=dict)
    sources: Mapping[str, Source] = field(default_factory=dict)
    path: str = ""
    attention: str = "gqa"            # gqa (grouped-query, MHA and MQA included) | mla (multi-head latent)
    q_lora_rank: int = 0              # MLA: rank of the query compression (0: none, q_proj is full)
    kv_lora_rank: int = 0             # MLA: rank of the compressed key/value latent
    qk_nope_head_dim: int = 0         # MLA: per-head query/key width without rotary embedding
    qk_rope_head_dim: int = 0         # MLA: per-head query/key width with rotary embedding (the key's is shared)
    v_head_dim: int = 0               # MLA: per-head value width
    moe_ffn_size: int = 0             # intermediate size of one routed (and shared) expert; 0: ffn_size
    shared_experts: int = 0           # experts every token of an MoE layer passes through
    first_dense_layers: int = 0       # the first k layers have a dense FFN, the rest are MoE
    sliding_window: int = 0           # window length of the windowed layers (0: every layer attends to all)
    sliding_window_layers: str = ""   # "" | all | alternate (layers 0, 2, 4, ...)
    attention_sinks: bool = False     # a learned sink logit per head in the softmax
    attention_bias: bool = False      # biases on q, k, v and o
    router_bias: bool = False         # one bias per routed expert on the router's scores
    expert_bias: bool = False         # biases on every expert projection (routed and shared)
    mtp_layers: int = 0               # multi-token-prediction modules, outside the published total
    active_includes_embedding: bool = True  # whether the published active count includes the input embedding

    @property
    def is_moe(self) -> bool:
        return self.experts > 1

    @property
    def is_mla(self) -> bool:
        return self.attention == "mla"

    @property
    def expert_ffn_size(self) -> int:
        """Intermediate size of one routed or shared expert."""
        return self.moe_ffn_size or self.ffn_size

    def layer_is_moe(self, layer: int) -> bool:
        """Whether layer ``layer`` has a mixture-of-experts FFN (after the first dense layers)."""
        return self.is_moe and layer >= self.first_dense_layers

    def layer_window(self, layer: int) -> int:
        """The attention window of layer ``layer``: 0 for full attention."""
        if not self.sliding_window:
            return 0
        if self.sliding_window_layers == "all" or (self.sliding_window_layers == "alternate" and layer % 2 == 0):
            return self.sliding_window
        return 0

    @property
    def kv_values_per_token(self) -> int:
        """Values one layer caches per token: keys and values of every KV head (``2 G d_h``),
        or MLA's compressed latent plus its shared rotary key (``kv_lora_rank + qk_rope_head_dim``)."""
        if self.is_mla:
            return self.kv_lora_rank + self.qk_rope_head_dim
        return 2 * self.kv_heads * self.head_dim


_MODEL_INTS = ("layers", "hidden_size", "attention_heads", "kv_heads", "head_dim", "ffn_size",
               "vocab_size", "max_context", "experts", "active_experts")
#: Optional whole-number fields (absent: the feature is not used) and the least value each takes.
_MODEL_OPTIONAL_INTS = {"q_lora_rank": 0, "kv_lora_rank": 1, "qk_nope_head_dim": 1, "qk_rope_head_dim": 1,
                        "v_head_dim": 1, "moe_ffn_size": 1, "shared_experts": 0, "first_dense_layers": 0,
                        "sliding_window": 1, "mtp_layers": 0}
_MODEL_OPTIONAL_BOOLS = ("attention_sinks", "attention_bias", "router_bias", "expert_bias")
_MLA_FIELDS = ("q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")
ATTENTIONS = ("gqa", "mla")
WINDOW_LAYERS = ("all", "alternate")


def parse_model(raw: Mapping, path: Path) -> Model:
    ctx = _Ctx(Path(path))
    _check_keys(ctx, "(top level)", raw, {"id", "name", "family", "released", "notes", "sources", "architecture", "parameters"},
                ("id", "name", "family", "released", "sources", "architecture", "parameters"))
    if raw["id"] != Path(path).stem:
        ctx.fail("id", f"{raw['id']!r} must equal the file name {Path(path).stem!r}")
    sources = _sources(ctx, raw["sources"])
    arch = raw["architecture"]
    _check_keys(ctx, "architecture", arch,
                set(_MODEL_INTS) | set(_MODEL_OPTIONAL_INTS) | set(_MODEL_OPTIONAL_BOOLS)
                | {"ffn_gated", "tied_embeddings", "norm", "attention", "sliding_window_layers"},
                _MODEL_INTS + ("ffn_gated", "tied_embeddings", "norm"))
    vals: dict[str, Value] = {}
    ints: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for k in _MODEL_INTS:
        vals[k] = _value(ctx, f"architecture.{k}", arch[k], "count", sources)
        if vals[k].si != int(vals[k].si) or vals[k].si < 1:
            ctx.fail(f"architecture.{k}.value", f"expected a positive whole number, got {vals[k].value}")
        ints[k] = int(vals[k].si)
    for k, least in _MODEL_OPTIONAL_INTS.items():
        if k in arch:
            vals[k] = _value(ctx, f"architecture.{k}", arch[k], "count", sources)
            if vals[k].si != int(vals[k].si) or vals[k].si < least:
                ctx.fail(f"architecture.{k}.value", f"expected a whole number >= {least}, got {vals[k].value}")
            extra[k] = int(vals[k].si)
    for k in ("ffn_gated", "tied_embeddings") + _MODEL_OPTIONAL_BOOLS:
        if k in arch and not isinstance(arch[k], bool):
            ctx.fail(f"architecture.{k}", f"expected true or false, got {arch[k]!r}")
        if k in _MODEL_OPTIONAL_BOOLS and k in arch:
            extra[k] = arch[k]
    _choice(ctx, "architecture.norm", arch["norm"], ("rmsnorm", "layernorm"))
    if "attention" in arch:
        extra["attention"] = _choice(ctx, "architecture.attention", arch["attention"], ATTENTIONS)
    if "sliding_window_layers" in arch:
        extra["sliding_window_layers"] = _choice(ctx, "architecture.sliding_window_layers", arch["sliding_window_layers"],
                                                 WINDOW_LAYERS)
    if ints["active_experts"] > ints["experts"]:
        ctx.fail("architecture.active_experts", "cannot exceed experts")
    if ints["attention_heads"] % ints["kv_heads"]:
        ctx.fail("architecture.kv_heads", "attention_heads must be a multiple of kv_heads")
    _check_model_consistency(ctx, ints, extra)
    _check_keys(ctx, "parameters", raw["parameters"], {"published", "published_active", "active_includes_embedding"},
                ("published",))
    pub = _value(ctx, "parameters.published", raw["parameters"]["published"], "count", sources)
    if "published_active" in raw["parameters"]:
        vals["published_active"] = _value(ctx, "parameters.published_active", raw["parameters"]["published_active"], "count", sources)
    if "active_includes_embedding" in raw["parameters"]:
        v = raw["parameters"]["active_includes_embedding"]
        if not isinstance(v, bool):
            ctx.fail("parameters.active_includes_embedding", f"expected true or false, got {v!r}")
        if "published_active" not in raw["parameters"]:
            ctx.fail("parameters.active_includes_embedding", "says how published_active counts; give published_active")
        extra["active_includes_embedding"] = v
    return Model(
        id=raw["id"], name=raw["name"], family=raw["family"], released=str(raw["released"]),
        ffn_gated=arch["ffn_gated"], tied_embeddings=arch["tied_embeddings"], norm=arch["norm"],
        published_parameters=pub, values=vals, sources=sources, path=ctx.rel, **ints, **extra,
    )


def _check_model_consistency(ctx: _Ctx, ints: Mapping[str, int], extra: Mapping) -> None:
    """The 2025-26 fields against each other and the dense fields: each problem names its field."""
    mla = extra.get("attention") == "mla"
    if mla:
        missing = [k for k in _MLA_FIELDS if k not in extra]
        if missing:
            ctx.fail("architecture", f'attention = "mla" needs {", ".join(missing)}')
        if ints["head_dim"] != extra["qk_nope_head_dim"] + extra["qk_rope_head_dim"]:
            ctx.fail("architecture.head_dim", f"with MLA, head_dim is the query/key width qk_nope_head_dim + "
                                              f"qk_rope_head_dim = {extra['qk_nope_head_dim'] + extra['qk_rope_head_dim']}"
                                              f", got {ints['head_dim']}")
        if ints["kv_heads"] != ints["attention_heads"]:
            ctx.fail("architecture.kv_heads", f"with MLA every head has its own key and value (up-projected from the "
                                              f"latent): kv_heads must equal attention_heads = {ints['attention_heads']}"
                                              f", got {ints['kv_heads']}")
    else:
        given = [k for k in _MLA_FIELDS if k in extra]
        if given:
            ctx.fail("architecture", f'{", ".join(given)} describe multi-head latent attention: set attention = "mla" '
                                     "or remove them")
    moe = ints["experts"] > 1
    for k in ("moe_ffn_size", "shared_experts", "first_dense_layers", "router_bias", "expert_bias"):
        if k in extra and extra[k] and not moe:
            ctx.fail(f"architecture.{k}", f"only a mixture of experts (experts > 1) has it; {ctx.rel} has "
                                          f"experts = {ints['experts']}")
    if extra.get("first_dense_layers", 0) >= ints["layers"]:
        ctx.fail("architecture.first_dense_layers.value", f"must be less than layers = {ints['layers']} (a model with "
                                                          "no MoE layer is dense: set experts = 1)")
    if ("sliding_window" in extra) != ("sliding_window_layers" in extra):
        ctx.fail("architecture", "give sliding_window and sliding_window_layers together (all | alternate), or neither")
    if extra.get("sliding_window", 0) > ints["max_context"]:
        ctx.fail("architecture.sliding_window.value", f"a window of {extra['sliding_window']} tokens exceeds "
                                                      f"max_context = {ints['max_context']}")
    if extra.get("attention_sinks") and mla:
        ctx.fail("architecture.attention_sinks", "sinks are modelled for grouped-query attention only")
    if extra.get("attention_bias") and mla:
        ctx.fail("architecture.attention_bias", "biases are modelled for grouped-query attention only")


def load_model(id_or_path: str | Path, folder: Path | None = None) -> Model:
    """Load one model by id (user data folders first) or path; overrides apply."""
    path = entry_path("models", id_or_path, folder)
    return parse_model(_apply_overrides("models", read_toml(path), path), path)


def model_ids(folder: Path | None = None) -> list[str]:
    return entry_ids("models", folder)


# --------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    id: str
    slug: str
    wording_zh: str
    wording_en: str
    source: str
    source_url: str
    metric: str
    claimed: float
    comparison: str
    tolerance: float
    notebook: str
    note: str = ""
    band: str = ""                                   # what the verdict's band means for this claim
    as_stated: Mapping[str, Any] = field(default_factory=dict)  # the claim's own inputs (devices, rows, sheet)


COMPARISONS = ("at-least", "approximately")


def load_claims(path: Path | None = None) -> dict[str, Claim]:
    """The claim ledger's definitions, ``data/claims.toml``. Every problem in a claim is
    reported (while :func:`validate_all` runs, every problem in the file)."""
    path = Path(path or paths.CLAIMS)
    ctx = _Ctx(path)
    raw = read_toml(path)
    texts = ("slug", "wording_zh", "wording_en", "source", "source_url", "metric", "notebook", "note", "band")
    fields = set(texts) | {"claimed", "comparison", "tolerance", "as_stated"}
    required = tuple(sorted(fields - {"note", "band", "as_stated"}))
    out, problems = {}, []

    def check(cid: str, key: str, ok: bool, msg: str) -> None:
        if not ok:
            problems.append(CatalogError(f"{ctx.rel}: {cid}.{key}: {msg}"))

    for cid, c in raw.items():
        n = len(problems)
        try:
            _check_keys(ctx, cid, c, fields, required)
        except CatalogError as exc:
            problems.append(exc)
            continue
        check(cid, "as_stated", isinstance(c.get("as_stated", {}), Mapping), "expected a table of the claim's own inputs")
        for k in texts:
            if k in c:
                check(cid, k, isinstance(c[k], str), f"expected a string, got {type(c[k]).__name__} {_short(c[k])}")
        for k in ("slug", "wording_en", "source", "metric", "notebook"):
            check(cid, k, not isinstance(c[k], str) or bool(c[k].strip()), "must not be empty")
        url = c["source_url"]
        check(cid, "source_url", not isinstance(url, str) or url == "" or re.match(r"^https?://[^\s]+$", url) is not None,
              f"{_short(url)} is not an http(s) URL")
        check(cid, "comparison", c["comparison"] in COMPARISONS if isinstance(c["comparison"], str) else False,
              f"{_short(c['comparison'])} is not one of {', '.join(COMPARISONS)}")
        cl, tol = c["claimed"], c["tolerance"]
        check(cid, "claimed", _number(cl) and math.isfinite(cl) and cl > 0,
              f"expected a finite number > 0, got {_short(cl)}")
        check(cid, "tolerance", _number(tol) and math.isfinite(tol) and 0 <= tol < 1,
              f"expected a relative tolerance 0 <= x < 1, got {_short(tol)}")
        if isinstance(c["notebook"], str) and c["notebook"].strip():
            nb = paths.NOTEBOOKS / f"{c['notebook']}.ipynb"
            known = sorted(q.stem for q in paths.NOTEBOOKS.glob("*.ipynb"))
            check(cid, "notebook", nb.is_file(), f"no notebook {c['notebook']!r} (notebooks: {', '.join(known)})")
        if len(problems) == n:
            out[cid] = Claim(id=cid, **{k: c[k] for k in fields if k in c})
    if not raw:
        problems.append(CatalogError(f"{ctx.rel}: no claims"))
    if problems:
        raise CatalogError("\n".join(str(e) for e in problems))
    return out


# --------------------------------------------------------------------------- measurements

MEASUREMENT_COLUMNS = ("id", "date", "source_title", "source_url", "confidence", "model", "hardware", "chips",
                       "software", "precision", "scenario", "concurrency", "input_tokens", "output_tokens",
                       "metric", "value", "unit", "note")
#: Optional columns: how the measured deployment was run (whole numbers, empty when not
#: published) and which speculative decoding it used (none, unknown, or what).
MEASUREMENT_LAYOUT_COLUMNS = ("tensor", "pipeline", "replicas", "expert")
MEASUREMENT_OPTIONAL_COLUMNS = MEASUREMENT_LAYOUT_COLUMNS + ("speculative",)
#: metric -> the kind of unit it must have
MEASUREMENT_METRICS = {"output_tok_s_per_user": "rate", "output_tok_s_per_request": "rate",
                       "output_tok_s_aggregate": "rate", "ttft_s": "time",
                       "tpot_s": "time", "samples_per_s": "request_rate"}


def measurement_names(folder: Path | None = None) -> list[str]:
    """The measurement tables (``<data>/measurements/<name>.csv``) over the searched folders."""
    return sorted({p.stem for f in _folders("measurements", folder) for p in f.glob("*.csv")})


def load_measurements(name: str = "speed", folder: Path | None = None) -> pd.DataFrame:
    """A measurements table as a pandas DataFrame with a ``value_si`` column: the rows of
    ``<data>/measurements/<name>.csv`` of every searched folder (user data folders first,
    then the shipped one), concatenated; every row is checked (columns, metric, unit,
    value, source) and ids must be unique across the files."""
    import io

    import numpy as np
    import pandas as pd

    files = [f / f"{name}.csv" for f in _folders("measurements", folder) if (f / f"{name}.csv").is_file()]
    if not files:
        raise KeyError(f"no measurements {name!r}; known: {', '.join(measurement_names(folder))}")
    frames = []
    for path in files:
        ctx = _Ctx(path)
        try:
            part = pd.read_csv(io.BytesIO(record_read(path)), dtype={"date": str})
        except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
            ctx.fail("(file)", f"not a readable CSV table ({exc})")
        missing = [c for c in MEASUREMENT_COLUMNS if c not in part.columns]
        extra = [c for c in part.columns if c not in MEASUREMENT_COLUMNS + MEASUREMENT_OPTIONAL_COLUMNS]
        if missing or extra:
            ctx.fail("columns", f"missing {missing or 'none'}, unknown {extra or 'none'} (expected: "
                     f"{', '.join(MEASUREMENT_COLUMNS)}; optional: {', '.join(MEASUREMENT_OPTIONAL_COLUMNS)})")
        part["data_file"] = ctx.rel
        frames.append(part)
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    ctx = _Ctx(files[0]) if len(files) == 1 else _Ctx(Path(f"{name}.csv (in {len(files)} data folders)"))
    for c in MEASUREMENT_LAYOUT_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
        bad = df[c].notna() & ~df[c].apply(lambda x: isinstance(x, (int, float)) and x == x and x >= 1 and float(x).is_integer())
        if bad.any():
            first = df[bad].iloc[0]
            ctx.fail(f"row {first['id']!r}.{c}", f"expected a whole number >= 1 or empty, got {first[c]!r}")
    if "speculative" not in df.columns:
        df["speculative"] = None
    df["speculative"] = [s if isinstance(s, str) and s else None for s in df["speculative"]]
    if df["id"].duplicated().any():
        ctx.fail("id", f"duplicate ids: {', '.join(map(str, df['id'][df['id'].duplicated()]))}")
    si = []
    r: Any   # a row of itertuples()
    for r in df.itertuples():
        ctx = _Ctx(Path(r.data_file))
        where = f"row {r.id!r}"
        if r.metric not in MEASUREMENT_METRICS:
            ctx.fail(where + ".metric", f"{r.metric!r} is not one of {', '.join(MEASUREMENT_METRICS)}")
        if not isinstance(r.source_url, str) or not r.source_url or not isinstance(r.source_title, str):
            ctx.fail(where + ".source_url", "every row needs a source title and URL")
        if r.confidence not in CONFIDENCES:
            ctx.fail(where + ".confidence", f"{r.confidence!r} is not one of {', '.join(CONFIDENCES)}")
        if not (isinstance(r.value, (int, float)) and math.isfinite(r.value) and r.value >= 0):
            ctx.fail(where + ".value", f"expected a non-negative number, got {r.value!r}")
        try:
            si.append(units.to_si(float(r.value), r.unit, MEASUREMENT_METRICS[r.metric]))
        except units.UnitError as exc:
            ctx.fail(where + ".unit", str(exc))
    df["value_si"] = si
    return df


# --------------------------------------------------------------------------- prices


#: The sections of a price sheet and the kind of quantity each holds.
PRICE_SECTIONS = {
    "price": "money",          # USD: a card, a server, a host's share, a network's share
    "power": "power",          # W drawn per unit (typical, maximum)
    "tariff": "energy_price",  # USD per energy: $/kWh, or an all-in $/kW/month (also USD/J)
    "factor": "count",         # dimensionless ratios: PUE
    "count": "count",          # how many: cards in a deployment, cards per node
    "time": "time",            # a lifetime, hours in a period
}
PRICE_CATEGORIES = ("system", "site", "claim")
#: What a ``system`` sheet must price: one deployment unit of a device.
SYSTEM_REQUIRED = ("count.chips_per_unit", "price.unit", "power.unit")
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")


@dataclass(frozen=True)
class PriceSheet:
    """One ``data/prices/<id>.toml``: dated, sourced prices and powers of one thing (a card,
    a server, a site) or one claim's inputs. ``values`` is keyed ``"section.name"``, e.g.
    ``"price.card"`` or ``"power.server"``; every entry is a :class:`Value` in SI."""

    id: str
    name: str
    as_of: str
    category: str
    values: Mapping[str, Value]
    sources: Mapping[str, Source]
    notes: str = ""
    path: str = ""

    def __getitem__(self, key: str) -> Value:
        if key not in self.values:
            raise KeyError(f"price sheet {self.id!r} has no entry {key!r} (entries: {', '.join(self.values)})")
        return self.values[key]

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, default: Value | None = None) -> Value | None:
        return self.values.get(key, default)


def parse_prices(raw: Mapping, path: Path) -> PriceSheet:
    ctx = _Ctx(Path(path))
    top = {"id", "name", "as_of", "category", "notes", "sources", *PRICE_SECTIONS}
    _check_keys(ctx, "(top level)", raw, top, ("id", "name", "as_of", "category", "sources"))
    if raw["id"] != Path(path).stem:
        ctx.fail("id", f"{raw['id']!r} must equal the file name {Path(path).stem!r}")
    as_of = str(raw["as_of"])
    if not _DATE.match(as_of):
        ctx.fail("as_of", f"{as_of!r} is not a date YYYY, YYYY-MM or YYYY-MM-DD")
    sources = _sources(ctx, raw["sources"])
    values = {}
    for section, dimension in PRICE_SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, Mapping):
            ctx.fail(section, f"expected a table of entries, got {type(table).__name__}")
        for key, entry in table.items():
            values[f"{section}.{key}"] = _value(ctx, f"{section}.{key}", entry, dimension, sources)
    if not values:
        ctx.fail("(top level)", f"no entries; give at least one of [{'], ['.join(PRICE_SECTIONS)}]")
    category = _choice(ctx, "category", raw["category"], PRICE_CATEGORIES)
    if category == "system":
        missing = [k for k in SYSTEM_REQUIRED if k not in values]
        if missing:
            ctx.fail("(top level)", f"a system sheet prices one deployment unit and needs {', '.join(SYSTEM_REQUIRED)}; "
                     f"missing {', '.join(missing)}")
        n = values["count.chips_per_unit"].si
        if n < 1 or n != int(n):
            ctx.fail("count.chips_per_unit.value", f"expected a whole number >= 1, got {values['count.chips_per_unit'].value}")
    return PriceSheet(
        id=raw["id"], name=_string(ctx, "name", raw["name"]), as_of=as_of,
        category=category, values=values,
        sources=sources, notes=str(raw.get("notes", "")), path=ctx.rel,
    )


def load_prices(id_or_path: str | Path, folder: Path | None = None) -> PriceSheet:
    """Load one price sheet by id (``<data>/prices/<id>.toml``, user data folders first) or
    by path to a TOML file; overrides apply."""
    path = entry_path("prices", id_or_path, folder)
    return parse_prices(_apply_overrides("prices", read_toml(path), path), path)


def price_ids(folder: Path | None = None, category: str | None = None) -> list[str]:
    """Price sheet ids, all or those of one ``category`` (system, site, claim)."""
    ids = entry_ids("prices", folder)
    if category is None:
        return ids
    if category not in PRICE_CATEGORIES:
        raise CatalogError(f"price category {category!r} is not one of {', '.join(PRICE_CATEGORIES)}")
    return [i for i in ids if load_prices(i, folder).category == category]


#: How sure a row's scenario is: vendor claims are the vendor's own best figure.
_CSV_KIND = {"Offline": "measured", "Server": "measured", "api": "measured", "vendor-claim": "vendor-peak"}


def measurement(row_id: str, name: str = "speed") -> Value:
    """One row of ``data/measurements/<name>.csv`` as a sourced :class:`Value` in SI
    (tokens/s, s). Vendor claims come back with kind ``vendor-peak``; benchmark results as
    ``measured``."""
    df = load_measurements(name)
    rows = df[df["id"] == row_id]
    if rows.empty:
        raise KeyError(f"data/measurements/{name}.csv: no row {row_id!r} (rows: {', '.join(df['id'])})")
    r = rows.iloc[0]
    src = Source(row_id, r["source_title"], r["source_url"], str(r["date"]), r["confidence"])
    note = r["note"] if isinstance(r["note"], str) and r["note"] else None
    return Value(si=float(r["value_si"]), value=float(r["value"]), unit=r["unit"], source=src,
                 kind=_CSV_KIND.get(r["scenario"], "measured"), note=note)


# --------------------------------------------------------------------------- benchmarks


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's prompt set as ``data/benchmarks.toml`` describes it."""

    suite: str
    model: str
    dataset: str
    mean_prompt: Value


def load_benchmarks(path: Path | None = None) -> dict[tuple[str, str], Benchmark]:
    """``data/benchmarks.toml``: (suite, model id) -> the benchmark's prompt set, e.g.
    ``("mlperf", "llama-2-70b")``; the mean prompt length of rows that do not state it."""
    path = Path(path or paths.DATA / "benchmarks.toml")
    if not path.is_file():
        return {}
    ctx = _Ctx(path)
    raw = read_toml(path)
    sources = _sources(ctx, raw.get("sources", {}))
    out = {}
    for suite, table in raw.items():
        if suite == "sources":
            continue
        if not isinstance(table, Mapping):
            ctx.fail(suite, "expected a table of models")
        for model, b in table.items():
            where = f"{suite}.{model}"
            _check_keys(ctx, where, b, {"dataset", "mean_prompt"}, ("dataset", "mean_prompt"))
            v = _value(ctx, where + ".mean_prompt", b["mean_prompt"], "count", sources)
            if not v.si >= 1:
                ctx.fail(where + ".mean_prompt", f"expected at least one token, got {v.value}")
            out[(suite, model)] = Benchmark(suite, model, _string(ctx, where + ".dataset", b["dataset"]), v)
    return out


# --------------------------------------------------------------------------- validation


def _checked(load: Callable[..., _T], *args: Any, where: str | None = None) -> _T:
    """``load(*args)`` with every problem of the file collected: returns what it loaded, or
    raises one CatalogError listing them all (one per line). Whatever the file holds, the
    error is a CatalogError naming the file, never another exception's traceback."""
    found: list[str] = []
    token = _PROBLEMS.set(found)
    try:
        result = load(*args)
    except CatalogError as exc:
        found.append(str(exc))
    except KeyError as exc:
        found.append(str(exc.args[0]) if exc.args else repr(exc))
    except (OSError, ValueError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        if where is None:
            where = _rel(Path(args[0])) if args and isinstance(args[0], (str, Path)) else getattr(load, "__name__", "?")
        found.append(f"{where}: cannot be read ({type(exc).__name__}: {_short(str(exc), 200)})")
    finally:
        _PROBLEMS.reset(token)
    if found:
        lines = list(dict.fromkeys(line for msg in found for line in msg.splitlines() if line.strip()))
        raise CatalogError("\n".join(lines))
    return result


def _load_entry(kind: str, loader: Callable[[Path], Any], p: Path) -> Any:
    """One catalog entry as validate_all checks it: a device's price sheet must exist and price a system."""
    entry = loader(p)
    if kind == "hardware" and entry.deployment_rules is not None and entry.deployment_rules.prices:
        sheet = entry.deployment_rules.prices
        try:
            cat = load_prices(sheet).category
        except KeyError:
            raise CatalogError(f"{_rel(p)}: deployment.prices: no price sheet {sheet!r} "
                               f"(sheets: {', '.join(price_ids())})") from None
        if cat != "system":
            raise CatalogError(f"{_rel(p)}: deployment.prices: {sheet!r} is a {cat!r} sheet, "
                               "not a system sheet")
    return entry


def validate_all() -> tuple[list[str], list[str]]:
    """Load every catalog file of every data folder (user folders and the shipped one);
    return (names of good entries, error messages, one problem each: every problem of a file
    is reported, not only the first). A device's price sheet must exist and price a system."""
    ok: list[str] = []
    errors: list[str] = []
    try:
        loaders = [(kind, loader, _folders(kind)) for kind, loader in
                   (("hardware", load_device), ("models", load_model), ("prices", load_prices))]
        measurement_folders = _folders("measurements")
    except CatalogError as exc:
        return ok, [str(exc)]
    for kind, loader, folders in loaders:
        for folder in folders:
            for p in sorted(folder.glob("*.toml")):
                try:
                    _checked(_load_entry, kind, loader, p, where=_rel(p))
                    ok.append(_rel(p))
                except (CatalogError, KeyError) as exc:
                    errors.append(str(exc))
    for name in sorted({p.stem for f in measurement_folders for p in f.glob("*.csv")}):
        try:
            _checked(load_measurements, name, where=f"measurements/{name}.csv")
            ok += [_rel(f / f"{name}.csv") for f in measurement_folders if (f / f"{name}.csv").is_file()]
        except (CatalogError, KeyError) as exc:
            errors.append(str(exc))
    try:
        _checked(load_benchmarks, where="benchmarks.toml")
        ok.append(_rel(paths.DATA / "benchmarks.toml"))
    except (CatalogError, FileNotFoundError) as exc:
        errors.append(str(exc))
    try:
        _checked(load_claims)
        ok.append(_rel(paths.CLAIMS))
    except (CatalogError, FileNotFoundError) as exc:
        errors.append(str(exc))
    if (paths.DATA / "serving.toml").is_file():   # speculative and disaggregated serving's assumptions
        from . import speculative

        try:
            _checked(speculative.load_assumptions, where="serving.toml")
            ok.append(_rel(paths.DATA / "serving.toml"))
        except (CatalogError, FileNotFoundError) as exc:
            errors.append(str(exc))
    return ok, [line for e in errors for line in e.splitlines()]
