"""Notebook parameters: what a notebook declares, and checking values against it.

papermill only warns about a parameter the notebook does not declare and injects whatever
type it is given. lpulab refuses both, before any kernel starts.

A notebook declares its parameters in the cell tagged ``parameters``, one literal per line,
with a comment. A comment may start with a tag that constrains the value:

    lpu = "groq-lpu-v1"        # [device] the LPU (data/hardware/<id>.toml)
    gpus = ["nvidia-h100-sxm"] # [devices] GPUs to compare
    tier = "hbm"               # [choice: hbm, l2, l1] GPU memory tier
    achieved = 1.0             # [fraction] achieved fraction of peak

Tags: device, devices, model, models, choice: a, b, ..., choices: a, b, ... (a list drawn
from them), prices: CATEGORY (a price sheet id of that category in the catalog, or "" for a
device's own sheet), overrides (a mapping ``{"<id>.<path>": "<quantity>"}`` checked against
the catalog), layout (``[replicas, tensor, pipeline]`` or ``[]``), measurement and measurements (row ids of data/measurements/speed.csv;
``[measurements: 3]`` wants exactly three), in: NAME (one of the values of the list parameter
NAME), fraction (0 < x <= 1), positive (> 0), nonnegative (>= 0), and range: LO to HI, both
ends included unless written ``above LO`` or ``below HI``; an end is a number or the name of
another numeric parameter (papermill reads a line with two ``=`` as no parameter at all, so
the tag spells its bounds in words):

    reserve = 0.0              # [range: 0 to below 1] fraction of each chip's memory kept free
    samples = 20000            # [range: 1000 to 1000000] Monte Carlo draws
    users = 10.0               # [range: users_low to users_high] streams served

Every number tagged fraction, positive, nonnegative or range must be finite (no nan or inf;
fraction and positive also refuse subnormal numbers), and a list so tagged must hold at least
one value; each of its values is checked. A number with no tag must still be finite.

Parameter files (``-f``, a sweep's ``base_file``) are YAML, read with limits: UTF-8, at most
:data:`MAX_FILE_BYTES`, nesting at most :data:`MAX_DEPTH` deep, at most :data:`MAX_NODES`
values once aliases are expanded, no duplicate keys, and a mapping of names at the top.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .. import catalog, paths


class ParameterError(ValueError):
    """A parameter the notebook does not declare, of the wrong type, or out of range."""


@dataclass(frozen=True)
class Declared:
    name: str
    type_name: str
    default: object
    help: str
    tag: str | None
    tag_arg: tuple[str, ...]


#: Limits on a parameter file (and on a value given with ``-p``).
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 32
MAX_NODES = 100_000

_TAG = re.compile(r"^\s*\[(\w+)(?:\s*:\s*([^\]]*))?\]\s*(.*)$")


def declared_parameters(notebook) -> dict[str, Declared]:
    """The parameters a notebook declares, from papermill's own inspection (cached while the
    notebook file is unchanged)."""
    nb = paths.notebook(notebook)
    st = nb.stat()
    return dict(_declared(str(nb), st.st_mtime_ns, st.st_size))


#: Where papermill's reading of each notebook's parameters cell is kept, by the notebook's
#: hash and papermill's version: an unchanged notebook is checked without importing papermill
#: (whose import, through nbformat and jsonschema, takes seconds).
CACHE = paths.ROOT / ".cache" / "lpulab"


def _inspected(nb: Path) -> list[tuple[str, str, str]]:
    """(name, default as written, help) of each parameter, as papermill reads the cell."""
    import hashlib
    from importlib import metadata

    try:
        version = metadata.version("papermill")
    except metadata.PackageNotFoundError:
        version = "?"
    key = hashlib.sha256(nb.read_bytes() + version.encode()).hexdigest()[:32]
    cached = CACHE / f"parameters-{key}.json"
    try:
        return [tuple(x) for x in json.loads(cached.read_text(encoding="utf-8"))]
    except (OSError, ValueError, TypeError):
        pass
    import papermill

    out = [(name, p["default"], p.get("help") or "") for name, p in papermill.inspect_notebook(str(nb)).items()]
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{__import__('os').getpid()}.tmp")
        tmp.write_text(json.dumps(out), encoding="utf-8")
        tmp.replace(cached)
    except OSError:
        pass  # a read-only checkout: papermill reads the cell each time
    return out


@functools.lru_cache(maxsize=32)
def _declared(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, Declared], ...]:
    nb = Path(path)
    out = {}
    for name, default_text, help_text in _inspected(nb):
        try:
            default = ast.literal_eval(default_text)
        except (ValueError, SyntaxError):
            raise ParameterError(
                f"{nb.name}: parameter {name!r} has a default that is not a literal ({default_text}); "
                "the parameters cell must hold literals only"
            ) from None
        m = _TAG.match(help_text)
        tag, arg, help_ = (m.group(1), m.group(2), m.group(3)) if m else (None, None, help_text)
        args = tuple(a.strip() for a in arg.split(",")) if arg else ()
        out[name] = Declared(name, type(default).__name__, default, help_, tag, args)
    if not out:
        raise ParameterError(f"{nb.name} has no cell tagged 'parameters'")
    missed = _assigned(nb) - set(out)
    if missed:  # papermill skips a line holding two '=' (e.g. "<=" in its comment) without a word
        raise ParameterError(f"{nb.name}: papermill cannot read the parameter line(s) of {', '.join(sorted(missed))}: "
                             "a line of the parameters cell may hold one '=' only (write a [range] as 'LO to HI')")
    return tuple(out.items())


def _assigned(nb: Path) -> set[str]:
    """The names the parameters cell assigns, as Python reads it."""
    cell = next((c for c in json.loads(nb.read_text(encoding="utf-8"))["cells"]
                 if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return set()
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return set()
    return {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}


def _coerce(decl: Declared, value, where: str):
    t = decl.type_name

    def bad(expect):
        return ParameterError(f"{where}: expected {expect}, got {short(value)} ({type(value).__name__})")

    def finite(x: float):
        if not math.isfinite(x):
            raise ParameterError(f"{where}: expected a finite number, got {x!r}")
        return x

    if t == "NoneType":
        return value
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad("true or false")
    if t == "int":
        if isinstance(value, bool):
            raise bad("an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return _coerce(decl, float(value), where)
            except ValueError:
                pass
        raise bad("an integer")
    if t == "float":
        if isinstance(value, bool):
            raise bad("a number")
        if isinstance(value, (int, float)):
            try:
                return finite(float(value))
            except OverflowError:  # an integer too large for a float
                raise bad("a finite number") from None
        if isinstance(value, str):  # YAML reads 1e3 as a string
            try:
                return finite(float(value))
            except ValueError:
                pass
        raise bad("a number")
    if t == "str":
        if isinstance(value, str):
            return value
        hint = " (YAML reads yes/no/on/off as booleans: quote the value)" if isinstance(value, bool) else ""
        raise bad("a string" + hint)
    if t in ("list", "tuple"):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                value = [value]
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        value = list(value)
        if decl.default:
            first = cast("list | tuple", decl.default)[0]   # a list parameter's default is a list
            proto = Declared(decl.name, type(first).__name__, first, "", None, ())
            value = [_coerce(proto, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value
    if t == "dict":
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        if not isinstance(value, dict):
            raise bad("a mapping")
        return value
    return value


def short(value, limit: int = 120) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    r = repr(value)
    return r if len(r) <= limit else r[:limit] + f"... ({len(r)} characters)"


_BOUND = re.compile(r"^\s*(?P<above>above\s+)?(?P<lo>[^\s]+)\s+to\s+(?P<below>below\s+)?(?P<hi>[^\s]+)\s*$")
_NUMERIC_TAGS = ("fraction", "positive", "nonnegative", "range")


def parse_range(text: str) -> tuple[str, str, str, str]:
    """``"0 to below 1"`` -> ("0", "<=", "<", "1"). Raises ParameterError."""
    m = _BOUND.match(text or "")
    if not m:
        raise ParameterError(f"[range: {text}] is not 'LO to HI' (each end a number or a parameter's name; "
                             "'above LO' or 'below HI' to leave an end out)")
    return m.group("lo"), "<" if m.group("above") else "<=", "<" if m.group("below") else "<=", m.group("hi")


def _bound(token: str, values: dict, where: str) -> float:
    try:
        return float(token)
    except ValueError:
        pass
    if token in values and isinstance(values[token], (int, float)) and not isinstance(values[token], bool):
        return float(values[token])
    raise ParameterError(f"{where}: the notebook's [range] names {token!r}, which is neither a number nor a "
                         "numeric parameter")


def _numeric(decl: Declared, v, where: str, values: dict) -> None:
    tag = decl.tag
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ParameterError(f"{where}: expected a number, got {short(v)}")
    if not math.isfinite(v):
        raise ParameterError(f"{where}: expected a finite number, got {v!r}")
    if tag == "range":
        lo, lop, hop, hi = parse_range(decl.tag_arg[0] if decl.tag_arg else "")
        lo_v, hi_v = _bound(lo, values, where), _bound(hi, values, where)
        ok = (lo_v < v if lop == "<" else lo_v <= v) and (v < hi_v if hop == "<" else v <= hi_v)
        rule = f"{lo} {lop} x {hop} {hi}"
        named = [t for t in (lo, hi) if t in values]
        if named:
            rule += " with " + ", ".join(f"{t} = {values[t]!r}" for t in named)
    else:
        ok = {"fraction": 0 < v <= 1, "positive": v > 0, "nonnegative": v >= 0}[tag]  # type: ignore[index]  # a numeric tag
        rule = {"fraction": "0 < x <= 1", "positive": "x > 0", "nonnegative": "x >= 0"}[tag]  # type: ignore[index]
        if ok and tag in ("fraction", "positive") and v < sys.float_info.min:
            ok, rule = False, f"{rule}, and not below {sys.float_info.min:.3g}: a subnormal number"
    if not ok:
        raise ParameterError(f"{where}: {v!r} is out of range ({rule})")


def _check_tag(decl: Declared, value, where: str, values: dict | None = None) -> None:
    tag = decl.tag
    values = values or {}
    if tag is None:
        return
    if tag in ("device", "devices", "model", "models"):
        known = catalog.device_ids() if tag.startswith("device") else catalog.model_ids()
        items = value if tag.endswith("s") else [value]
        for v in items:
            if v not in known:
                what = "device" if tag.startswith("device") else "model"
                raise ParameterError(f"{where}: unknown {what} {short(v)}; allowed: {', '.join(known)}")
        if tag.endswith("s") and not items:
            raise ParameterError(f"{where}: give at least one")
    elif tag in ("choice", "choices"):
        items = value if tag == "choices" else [value]
        for v in items:
            if v not in decl.tag_arg:
                raise ParameterError(f"{where}: {short(v)} is not allowed; allowed: {', '.join(decl.tag_arg)}")
    elif tag == "in":
        other = decl.tag_arg[0] if decl.tag_arg else ""
        pool = values.get(other)
        if not isinstance(pool, list):
            raise ParameterError(f"{where}: the notebook's [in: {other}] names no list parameter")
        if value not in pool:
            raise ParameterError(f"{where}: {short(value)} must be one of {other} ({short(pool, 200)})")
    elif tag in ("measurement", "measurements"):
        known = measurement_ids()
        items = value if tag == "measurements" else [value]
        for v in items:
            if v not in known:
                close = __import__("difflib").get_close_matches(str(v), known, n=3)
                raise ParameterError(f"{where}: {short(v)} is not a row of data/measurements/speed.csv"
                                     + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
                                     + "; see `lpulab catalog` and data/measurements/README.md")
        if tag == "measurements":
            want = int(decl.tag_arg[0]) if decl.tag_arg and decl.tag_arg[0].isdigit() else None
            if not items or (want is not None and len(items) != want):
                raise ParameterError(f"{where}: give {want if want is not None else 'at least one'} row id(s), got {len(items)}")
    elif tag == "prices":
        category = decl.tag_arg[0] if decl.tag_arg else None
        known = catalog.price_ids(category=category)
        if value != "" and value not in known:
            raise ParameterError(f"{where}: unknown {category or ''} price sheet {short(value)}; allowed: "
                                 f"{', '.join(known)}" + (" (or \"\" for the device's own)" if category == "system" else ""))
    elif tag == "overrides":
        if not isinstance(value, dict):
            raise ParameterError(f"{where}: expected a mapping of '<id>.<path>' to a quantity, got {short(value)}")
        try:
            catalog.parse_overrides(value)
        except catalog.CatalogError as exc:
            raise ParameterError(f"{where}: {exc}") from None
    elif tag == "layout":
        if not isinstance(value, list) or (value and (len(value) != 3 or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value))):
            raise ParameterError(f"{where}: a layout is [replicas, tensor, pipeline], three whole numbers >= 1, "
                                 f"or [] for the fewest chips that hold the model; got {short(value)}")
    elif tag in _NUMERIC_TAGS:
        if isinstance(value, list):
            if not value:
                raise ParameterError(f"{where}: give at least one value")
            for i, v in enumerate(value):
                _numeric(decl, v, f"{where}[{i}]", values)
        else:
            _numeric(decl, value, where, values)
    else:
        raise ParameterError(f"{where}: the notebook declares an unknown tag [{tag}]")


def measurement_ids() -> list[str]:
    """The row ids of the measurements table (``speed``), for the [measurement] tags."""
    return [str(x) for x in catalog.load_measurements("speed")["id"]]


def _finite_everywhere(value, where: str) -> None:
    """No nan or inf anywhere in a value (a list, a mapping) with no numeric tag."""
    stack = [(value, where)]
    while stack:
        v, w = stack.pop()
        if isinstance(v, float) and not math.isfinite(v):
            raise ParameterError(f"{w}: expected a finite number, got {v!r}")
        if isinstance(v, (list, tuple)):
            stack.extend((x, f"{w}[{i}]") for i, x in enumerate(v))
        elif isinstance(v, dict):
            stack.extend((x, f"{w}[{k!r}]") for k, x in v.items())


def check_parameters(notebook, values: dict | None = None, *, fill_defaults: bool = True) -> dict:
    """Validate ``values`` against the notebook's declared parameters.

    Returns the full parameter set (defaults filled in) with values coerced to the declared
    types, or raises ParameterError naming the parameter, the problem and the allowed values.
    """
    nb = paths.notebook(notebook)
    decl = declared_parameters(nb)
    values = dict(values or {})
    for k in values:
        if not isinstance(k, str):
            raise ParameterError(f"{nb.name}: a parameter name must be text, got {short(k)}")
    unknown = sorted(set(values) - set(decl))
    if unknown:
        import difflib

        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u, list(decl), n=1)
            hints.append(short(u, 60) + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(
            f"{nb.name}: unknown parameter(s) {', '.join(hints)}; declared: {', '.join(decl)}"
        )
    out = {k: d.default for k, d in decl.items()} if fill_defaults else {}
    for k, v in values.items():
        out[k] = _coerce(decl[k], v, f"{nb.name}: parameter {k!r}")
    for k, v in out.items():
        _check_tag(decl[k], v, f"{nb.name}: parameter {k!r}", out)
        _finite_everywhere(v, f"{nb.name}: parameter {k!r}")
    return out


class _Loader(getattr(__import__("yaml"), "CSafeLoader", None) or __import__("yaml").SafeLoader):  # type: ignore[misc]  # C loader where built
    """YAML's safe loader that refuses a key given twice in one mapping."""


def _no_duplicates(loader, node, deep=False):
    import yaml

    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, f"a mapping key must be a plain value, got {short(key)}",
                                                    key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {short(key, 60)} (first on line {seen[key] + 1}); give each name once",
                key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:map", _no_duplicates)


def _count_nodes(value, where: str, limit: int = MAX_NODES) -> None:
    """Refuse a value with more than ``limit`` parts once YAML aliases are expanded (an alias
    bomb is a few hundred bytes that expand to billions); stops as soon as the limit is hit."""
    n, stack = 0, [value]
    while stack:
        v = stack.pop()
        n += 1
        if n > limit:
            raise ParameterError(f"{where}: more than {limit:,} values once YAML aliases (*name) are expanded; "
                                 "a parameter file this large is refused")
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)


def read_yaml(path, what: str = "parameter file"):
    """A YAML file as plain values, within the limits of this module (see its doc). Raises
    ParameterError naming the file and the problem."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"no {what} {str(path)!r}")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ParameterError(f"{path}: {size:,} bytes; a {what} may hold at most {MAX_FILE_BYTES:,}")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParameterError(f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
                             "save the file as UTF-8") from None
    try:
        depth = nodes = 0
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ParameterError(f"{path}: line {event.start_mark.line + 1}: nested more than {MAX_DEPTH} deep")  # type: ignore[union-attr]  # parser events carry marks
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
            nodes += 1  # noqa: SIM113 (counts YAML events inside a try block, not loop items)
            if nodes > MAX_NODES:
                raise ParameterError(f"{path}: more than {MAX_NODES:,} YAML nodes; a {what} this large is refused")
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        text_ = " ".join(str(exc).replace('in "<unicode string>", ', "").split())
        raise ParameterError(f"{path}: not valid YAML: {text_[:400]}") from None
    _count_nodes(data, str(path))
    return data


def load_param_file(path) -> dict:
    """Read a YAML parameter file: a mapping of parameter names to values."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        got = "nothing (an empty file, or null)" if data is None else f"{type(data).__name__} {short(data, 60)}"
        raise ParameterError(f"{path}: expected a mapping of parameter names to values (name: value, one a line), "
                             f"got {got}")
    return data


def parse_cli_value(text: str):
    """A value from ``-p NAME VALUE``: JSON when it parses (numbers, lists, true/false), else the string.
    Nesting deeper than :data:`MAX_DEPTH` or more than :data:`MAX_NODES` values is refused."""
    depth = max_depth = 0
    in_str = esc = False
    for ch in text:  # JSON nesting, counted without recursion
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            max_depth = max(max_depth, depth)
        elif ch in "]}":
            depth -= 1
    if max_depth > MAX_DEPTH:
        raise ParameterError(f"-p value nested more than {MAX_DEPTH} deep: {short(text, 60)}")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text
    _count_nodes(value, "-p value")
    return value


def validate(notebook, namespace: dict) -> dict:
    """For a notebook's setup cell: check the declared parameters as they stand in the
    notebook's namespace (after papermill's injection, or as a user edited them)."""
    decl = declared_parameters(notebook)
    missing = [k for k in decl if k not in namespace]
    if missing:
        raise ParameterError(f"parameters {', '.join(missing)} are not defined; run the parameters cell first")
    return check_parameters(notebook, {k: namespace[k] for k in decl})
