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
from them), fraction (0 < x <= 1), positive (> 0), nonnegative (>= 0).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from pathlib import Path

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


_TAG = re.compile(r"^\s*\[(\w+)(?:\s*:\s*([^\]]*))?\]\s*(.*)$")


def declared_parameters(notebook) -> dict[str, Declared]:
    """The parameters a notebook declares, from papermill's own inspection."""
    import papermill

    nb = paths.notebook(notebook)
    out = {}
    for name, p in papermill.inspect_notebook(str(nb)).items():
        try:
            default = ast.literal_eval(p["default"])
        except (ValueError, SyntaxError):
            raise ParameterError(
                f"{nb.name}: parameter {name!r} has a default that is not a literal ({p['default']}); "
                "the parameters cell must hold literals only"
            ) from None
        m = _TAG.match(p.get("help") or "")
        tag, arg, help_ = (m.group(1), m.group(2), m.group(3)) if m else (None, None, p.get("help") or "")
        args = tuple(a.strip() for a in arg.split(",")) if arg else ()
        out[name] = Declared(name, type(default).__name__, default, help_, tag, args)
    if not out:
        raise ParameterError(f"{nb.name} has no cell tagged 'parameters'")
    return out


def _coerce(decl: Declared, value, where: str):
    t = decl.type_name

    def bad(expect):
        return ParameterError(f"{where}: expected {expect}, got {value!r} ({type(value).__name__})")

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
        if isinstance(value, float) and value.is_integer():
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
            return float(value)
        if isinstance(value, str):  # YAML reads 1e3 as a string
            try:
                return float(value)
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
            proto = Declared(decl.name, type(decl.default[0]).__name__, decl.default[0], "", None, ())
            value = [_coerce(proto, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return value
    if t == "dict":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        if not isinstance(value, dict):
            raise bad("a mapping")
        return value
    return value


def _check_tag(decl: Declared, value, where: str) -> None:
    tag = decl.tag
    if tag is None:
        return
    if tag in ("device", "devices", "model", "models"):
        known = catalog.device_ids() if tag.startswith("device") else catalog.model_ids()
        items = value if tag.endswith("s") else [value]
        for v in items:
            if v not in known:
                what = "device" if tag.startswith("device") else "model"
                raise ParameterError(f"{where}: unknown {what} {v!r}; allowed: {', '.join(known)}")
        if tag.endswith("s") and not items:
            raise ParameterError(f"{where}: give at least one")
    elif tag in ("choice", "choices"):
        items = value if tag == "choices" else [value]
        for v in items:
            if v not in decl.tag_arg:
                raise ParameterError(f"{where}: {v!r} is not allowed; allowed: {', '.join(decl.tag_arg)}")
    elif tag in ("fraction", "positive", "nonnegative"):
        items = value if isinstance(value, list) else [value]
        for v in items:
            ok = {"fraction": 0 < v <= 1, "positive": v > 0, "nonnegative": v >= 0}[tag]
            if not ok:
                rule = {"fraction": "0 < x <= 1", "positive": "x > 0", "nonnegative": "x >= 0"}[tag]
                raise ParameterError(f"{where}: {v!r} is out of range ({rule})")
    else:
        raise ParameterError(f"{where}: the notebook declares an unknown tag [{tag}]")


def check_parameters(notebook, values: dict | None = None, *, fill_defaults: bool = True) -> dict:
    """Validate ``values`` against the notebook's declared parameters.

    Returns the full parameter set (defaults filled in) with values coerced to the declared
    types, or raises ParameterError naming the parameter, the problem and the allowed values.
    """
    nb = paths.notebook(notebook)
    decl = declared_parameters(nb)
    values = dict(values or {})
    unknown = sorted(set(values) - set(decl))
    if unknown:
        import difflib

        hints = []
        for u in unknown:
            close = difflib.get_close_matches(u, list(decl), n=1)
            hints.append(f"{u!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ParameterError(
            f"{nb.name}: unknown parameter(s) {', '.join(hints)}; declared: {', '.join(decl)}"
        )
    out = {k: d.default for k, d in decl.items()} if fill_defaults else {}
    for k, v in values.items():
        out[k] = _coerce(decl[k], v, f"{nb.name}: parameter {k!r}")
    for k, v in out.items():
        _check_tag(decl[k], v, f"{nb.name}: parameter {k!r}")
    return out


def load_param_file(path) -> dict:
    """Read a YAML parameter file (a mapping of name -> value)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"no parameter file {str(path)!r}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ParameterError(f"{path}: expected a mapping of parameter names to values")
    return data


def parse_cli_value(text: str):
    """A value from ``-p NAME VALUE``: JSON when it parses (numbers, lists, true/false), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def validate(notebook, namespace: dict) -> dict:
    """For a notebook's setup cell: check the declared parameters as they stand in the
    notebook's namespace (after papermill's injection, or as a user edited them)."""
    decl = declared_parameters(notebook)
    missing = [k for k in decl if k not in namespace]
    if missing:
        raise ParameterError(f"parameters {', '.join(missing)} are not defined; run the parameters cell first")
    return check_parameters(notebook, {k: namespace[k] for k in decl})
