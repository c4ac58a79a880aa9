"""Units at the boundary: pint parses what people and data files write, SI floats inside.

>>> to_si(80, "TB/s")
80000000000000.0
>>> to_si(220, "MiB")
230686720.0
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pint

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def _registry() -> pint.UnitRegistry:
    # pint's default file makes the bit dimensionless, which would let bytes, counts and
    # frequencies convert into one another. Here information has a dimension of its own.
    here = Path(pint.__file__).parent
    text = (here / "default_en.txt").read_text()
    text = text.replace("\nbit = []\n", "\nbit = [information]\n", 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "lpulab_units.txt"
        path.write_text(text)
        (Path(tmp) / "constants_en.txt").write_text((here / "constants_en.txt").read_text())
        reg: pint.UnitRegistry = pint.UnitRegistry(str(path))
    # Counts of operations. One multiply-add is two FLOPs; integer ops (TOP/s) count alike.
    reg.define("FLOP = [operation] = flop")
    reg.define("OP = FLOP")
    reg.define("USD = [currency] = dollar")
    reg.define("token = [token] = tok")
    reg.define("sample = [sample]")
    return reg


ureg = _registry()

#: The SI unit each physical kind is stored in, and the unit humans read it in.
DIMENSIONS = {
    "bytes": ("byte", "GB"),
    "bandwidth": ("byte / second", "TB/s"),
    "compute": ("FLOP / second", "TFLOP/s"),
    "frequency": ("hertz", "GHz"),
    "power": ("watt", "W"),
    "energy": ("joule", "kWh"),
    "money": ("USD", "USD"),
    "time": ("second", "s"),
    "count": ("count", "count"),
    "rate": ("token / second", "token/s"),
    "request_rate": ("sample / second", "samples/s"),
    "energy_price": ("USD / joule", "USD/kWh"),
    "money_rate": ("USD / second", "USD/h"),
}


class UnitError(ValueError):
    """A unit that pint cannot parse, or one of the wrong dimension."""


@functools.lru_cache(maxsize=512)
def _unit(unit: str) -> pint.Unit:
    if unit == "":
        return ureg.dimensionless
    try:
        return ureg.Unit(unit)
    except Exception as exc:  # pint raises several types here
        raise UnitError(f"unknown unit {unit!r} ({exc})") from None


def check_unit(unit: str, dimension: str | None = None) -> None:
    """Raise UnitError unless ``unit`` parses (and has the dimension ``dimension``)."""
    u = _unit(unit)
    if dimension is not None:
        si = _unit(DIMENSIONS[dimension][0])
        if u.dimensionality != si.dimensionality:
            raise UnitError(
                f"unit {unit!r} is not a {dimension} unit (expected something like "
                f"{DIMENSIONS[dimension][1]!r})"
            )


def dimension_of(unit: str) -> str:
    """The name of the physical kind ``unit`` measures (a key of :data:`DIMENSIONS`)."""
    u = _unit(unit)
    for name, (si, _) in DIMENSIONS.items():
        if _unit(si).dimensionality == u.dimensionality:
            return name
    raise UnitError(f"unit {unit!r} is of no kind lpulab knows ({', '.join(DIMENSIONS)})")


def _si_unit(unit: str, dimension: str | None) -> pint.Unit:
    check_unit(unit, dimension)
    return _unit(DIMENSIONS[dimension or dimension_of(unit)][0])


@overload
def to_si(value: float, unit: str, dimension: str | None = None) -> float: ...
@overload
def to_si(value: np.ndarray, unit: str, dimension: str | None = None) -> np.ndarray: ...
def to_si(value: float | np.ndarray, unit: str, dimension: str | None = None) -> float | np.ndarray:
    """Convert ``value`` in ``unit`` to a float (or array) in the SI unit of its kind.

    The kind (bytes, bandwidth, compute ...) is ``dimension`` or is inferred from ``unit``;
    bytes stay bytes (pint's own base unit would be the bit).
    """
    si = _si_unit(unit, dimension)
    factor = float(ureg.Quantity(1.0, _unit(unit)).to(si).magnitude)
    return value * factor if not isinstance(value, (int, float)) else float(value) * factor


@overload
def from_si(value: float, unit: str, dimension: str | None = None) -> float: ...
@overload
def from_si(value: np.ndarray, unit: str, dimension: str | None = None) -> np.ndarray: ...
def from_si(value: float | np.ndarray, unit: str, dimension: str | None = None) -> float | np.ndarray:
    """Convert an SI float (or array) to ``unit`` (the inverse of :func:`to_si`)."""
    si = _si_unit(unit, dimension)
    factor = float(ureg.Quantity(1.0, _unit(unit)).to(si).magnitude)
    return value / factor


def parse_quantity(text: str, dimension: str | None = None) -> float:
    """Parse what a user types, e.g. ``"3.35 TB/s"`` or ``"185 W"``, to an SI float."""
    try:
        q: Any = ureg.Quantity(text)
    except Exception as exc:
        raise UnitError(f"cannot parse quantity {text!r} ({exc})") from None
    return to_si(float(q.magnitude), str(q.units) if not q.unitless else "count", dimension)


def fmt(value: float, unit: str, digits: int = 3) -> str:
    """Format an SI value for people in a fixed unit: ``fmt(8e13, "TB/s") == "80 TB/s"``
    (``digits`` significant figures, thousands separators, never ``e`` notation; see
    :mod:`lpulab.report.fmt` for money, ratios, durations and SI prefixes chosen per value)."""
    from .report.fmt import number

    return f"{number(from_si(value, unit), digits)} {unit}"


def format_columns(df: pd.DataFrame, formats: dict) -> pd.DataFrame:
    """A copy of ``df`` for display: each column in ``formats`` ({column: unit}) shown in
    that unit, the unit moved into the header (``"x"`` formats a ratio as ``23.9x``), every
    number under the rules of :mod:`lpulab.report.fmt`.

    The copy holds text. To show a table in a notebook use :func:`lpulab.report.fmt.show`,
    which takes the same ``formats``, escapes every cell and keeps the table inside the page;
    a pandas Styler escapes nothing."""
    from .report.fmt import in_unit

    out = df.copy()
    for col, unit in formats.items():
        out[col] = [in_unit(v, unit) for v in df[col]]
        if unit != "x":
            out = out.rename(columns={col: f"{col} ({unit})"})
    return out
