"""Numbers and tables for people: the one place that decides how lpulab shows a value.

Every number a reader sees (in a notebook's tables and prose, in ``record``'s table, in the
report's header, in figure labels) goes through these functions:

>>> money(20000), money(12.3e6), money(0.274)
('$20,000', '$12.3M', '$0.274')
>>> ratio(23.881), ratio(1719.4), ratio(0.27)
('23.9x', '1,720x', '0.27x')
>>> count(305.0), count(68976648192)
('305', '69.0 billion')
>>> duration(94.6e6), duration(3.2e-5)
('3 years', '32 µs')
>>> si(3.35e12, "B/s"), si(230e6, "B"), si(185.0, "W")
('3.35 TB/s', '230 MB', '185 W')

Rules: three significant figures (``SIG``), never ``e+`` notation, counts as whole numbers,
decimal SI prefixes as vendors quote them (1 GB = 10^9 bytes), money in US dollars with
thousands separators below a million and M/B above, trailing zeros after the decimal point
dropped. Missing and non-finite values show as ``n/a``.

:func:`table` (and :func:`show`, which displays it) turns a DataFrame into an HTML table in
a box of its own that scrolls sideways instead of running off the page, with every cell,
header and caption HTML-escaped (catalog text may hold markup; pandas' Styler does not
escape) and marked so that no math renderer reads a ``$`` in a cell as TeX.
"""

from __future__ import annotations

import html
import math
import numbers
import re
import string
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

#: significant figures of every computed number shown to a reader
SIG = 3
#: what a missing, NaN or infinite value shows as
NA = "n/a"

_SI_PREFIXES = [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"),
                (1e-6, "µ"), (1e-9, "n"), (1e-12, "p")]
_WORDS = [(1e12, " trillion"), (1e9, " billion"), (1e6, " million")]
_MONEY = [(1e12, "T"), (1e9, "B"), (1e6, "M")]
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _finite(x) -> float | None:
    """``x`` as a float, or None when it is missing, NaN, infinite or not a number."""
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def round_sig(x: float, sig: int = SIG) -> float:
    """``x`` rounded half up to ``sig`` significant figures (``round_sig(152500) == 153000``)."""
    if x == 0 or not math.isfinite(x):
        return x
    exp = math.floor(math.log10(abs(x)))
    q = Decimal(1).scaleb(exp - sig + 1)
    return float(Decimal(repr(x)).quantize(q, rounding=ROUND_HALF_UP))


def _plain(x: float, sig: int = SIG, strip: bool = True) -> str:
    """``x`` (finite) to ``sig`` significant figures in positional notation, with thousands
    separators; trailing zeros after the decimal point dropped when ``strip``."""
    r = round_sig(x, sig)
    if r == 0:
        return "0"
    exp = math.floor(math.log10(abs(r)))
    if exp < -6 or exp >= 15:  # positional notation would be all zeros, or digits no float holds
        mant, e = f"{x:.{sig - 1}e}".split("e")
        if strip and "." in mant:
            mant = mant.rstrip("0").rstrip(".")
        return f"{mant} × 10{str(int(e)).translate(_SUPERSCRIPT)}"
    decimals = max(0, sig - 1 - exp)
    s = f"{r:,.{decimals}f}"
    if strip and "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def number(x, sig: int = SIG) -> str:
    """A plain number: ``23.9``, ``0.00123``, ``1,720``, ``12.3 million``."""
    f = _finite(x)
    if f is None:
        return NA
    a = abs(round_sig(f, sig))
    for scale, word in _WORDS:
        if a >= scale:
            return _plain(f / scale, sig) + word
    return _plain(f, sig)


def count(x) -> str:
    """A count: a whole number (``305``, ``1,024``); from a million on, three significant
    figures (``69.0 billion``): a count that large is not known to the unit."""
    f = _finite(x)
    if f is None:
        return NA
    if abs(f) >= 1e6:
        return _plain(f / _scale(abs(f), _WORDS), SIG, strip=False) + _word(abs(f))
    return f"{int(round(f)):,}"


def _scale(a, table):
    for scale, _ in table:
        if round_sig(a) >= scale:
            return scale
    return 1.0


def _word(a):
    for scale, word in _WORDS:
        if round_sig(a) >= scale:
            return word
    return ""


def money(x, currency: str = "$") -> str:
    """US dollars: ``$20,000``, ``$762,000``, ``$12.3M``, ``$1.27``, ``-$1,200``."""
    f = _finite(x)
    if f is None:
        return NA
    sign = "-" if f < 0 else ""
    a = abs(f)
    for scale, suffix in _MONEY:
        if round_sig(a) >= scale:
            return f"{sign}{currency}{_plain(a / scale)}{suffix}"
    return f"{sign}{currency}{_plain(a)}"


def ratio(x, sig: int = SIG) -> str:
    """A ratio with ``x``: ``23.9x``, ``0.27x``, ``40x``, ``1,720x``."""
    f = _finite(x)
    if f is None:
        return NA
    return _plain(f, sig) + "x"


def percent(x, sig: int = SIG) -> str:
    """A fraction as a percentage: ``percent(0.1234) == "12.3%"``."""
    f = _finite(x)
    if f is None:
        return NA
    return _plain(100 * f, sig) + "%"


def duration(seconds) -> str:
    """A time in the unit that reads best: ``3 years``, ``7.3 h``, ``45 ms``, ``32 µs``."""
    f = _finite(seconds)
    if f is None:
        return NA
    a = abs(round_sig(f))
    if a == 0:
        return "0 s"
    # minutes from 2 min, hours from 2 h, days from 2 days, years from one year
    for scale, floor, unit in ((365.25 * 86400, 365.25 * 86400, "year"), (86400, 2 * 86400, "day"),
                               (3600, 2 * 3600, "h"), (60, 120, "min"), (1, 1, "s"), (1e-3, 1e-3, "ms"),
                               (1e-6, 1e-6, "µs")):
        if a >= floor:
            v = _plain(f / scale)
            plural = unit in ("year", "day") and v not in ("1", "-1")
            return f"{v} {unit}{'s' if plural else ''}"
    return f"{_plain(f / 1e-9)} ns"


def si(x, unit: str, sig: int = SIG) -> str:
    """An SI value with a decimal prefix: ``si(3.35e12, "B/s") == "3.35 TB/s"``,
    ``si(230e6, "B") == "230 MB"``, ``si(9.89e14, "FLOP/s") == "989 TFLOP/s"``."""
    f = _finite(x)
    if f is None:
        return NA
    a = abs(round_sig(f, sig))
    if a == 0:
        return f"0 {unit}"
    for scale, prefix in _SI_PREFIXES:
        if a >= scale:
            return f"{_plain(f / scale, sig)} {prefix}{unit}"
    return f"{_plain(f / 1e-12, sig)} p{unit}"


#: how each kind of quantity (a key of :data:`lpulab.units.DIMENSIONS`) is shown, from SI
KINDS: dict[str, Callable[[Any], str]] = {
    "bytes": lambda v: si(v, "B"),
    "bandwidth": lambda v: si(v, "B/s"),
    "compute": lambda v: si(v, "FLOP/s"),
    "flop": lambda v: si(v, "FLOP"),
    "frequency": lambda v: si(v, "Hz"),
    "power": lambda v: si(v, "W"),
    "energy": lambda v: number(f / 3.6e6) + " kWh" if (f := _finite(v)) is not None else NA,
    "money": money,
    "time": duration,
    "count": count,
    "rate": lambda v: number(v) + " tok/s" if _finite(v) is not None else NA,
    "request_rate": lambda v: number(v) + " samples/s" if _finite(v) is not None else NA,
    "energy_price": lambda v: money(f * 3.6e6) + "/kWh" if (f := _finite(v)) is not None else NA,
    "money_rate": lambda v: money(f * 3600) + "/h" if (f := _finite(v)) is not None else NA,
    # kinds without a unit of their own
    "ratio": ratio,
    "percent": percent,
    "number": number,
}


def quantity(x, unit: str) -> str:
    """``x`` given in ``unit`` (anything pint reads, e.g. ``"USD"``, ``"kW"``, ``"hour"``,
    ``"TB/s"``), shown the way its kind is shown: ``quantity(2.628e4, "hour") == "3 years"``,
    ``quantity(20000, "USD") == "$20,000"``. ``"x"`` is a ratio; ``""``/``"-"`` a number."""
    from .. import units

    if unit in ("x",):
        return ratio(x)
    if unit in ("", "-", None):
        return number(x)
    f = _finite(x)
    if f is None:
        return NA
    kind = units.dimension_of(unit)
    return KINDS[kind](units.to_si(f, unit))


def in_unit(x, unit: str) -> str:
    """An SI value shown as a number in a fixed ``unit`` (the unit goes into a header):
    ``in_unit(3.35e12, "TB/s") == "3.35"``."""
    from .. import units

    f = _finite(x)
    if f is None:
        return NA
    if unit == "x":
        return ratio(f)
    if unit in ("USD", "$"):
        return money(f)
    return number(units.from_si(f, unit))


# --------------------------------------------------------------------------- any value


_NAME_RULES: list[tuple[re.Pattern, Callable[[Any], str]]] = [
    (re.compile(r"(^|_)seed$|(^|_)id$|hash|commit|version"), lambda v: str(v)),
    (re.compile(r"ratio|speedup|(^|_)x$"), ratio),
    (re.compile(r"usd|price|capex|opex|cost"), money),
    (re.compile(r"(^|_)(pct|percent)$"), lambda v: number(v) + " %" if _finite(v) is not None else NA),
    (re.compile(r"(fraction|share|fill)$"), percent),
    (re.compile(r"tok(ens)?_(per_)?s$"), lambda v: number(v) + " tok/s" if _finite(v) is not None else NA),
    (re.compile(r"(^|_)bytes($|_)|_b$"), KINDS["bytes"]),
    (re.compile(r"_(seconds|s)$"), duration),
    (re.compile(r"_w$|watts?$"), KINDS["power"]),
]


def auto(v, name: str | None = None) -> str:
    """Any recorded value as text: a number by its key's name when the name says what it
    is (``*_usd`` money, ``*ratio*`` a ratio, ``*_bytes`` bytes, ``*_s`` a time), else by its
    type (an int is a count, a float three significant figures); strings as they are;
    lists and mappings item by item, cut short when long."""
    if v is None:
        return NA
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, str):
        return v
    if isinstance(v, Mapping):
        items = list(v.items())
        shown = ", ".join(f"{k}: {auto(x, str(k) if name is None else name)}" for k, x in items[:8])
        return shown + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, Mapping) for x in v):  # a table: say what it holds
            keys = list(dict.fromkeys(k for x in v for k in x))
            return f"{len(v)} rows of {', '.join(map(str, keys[:6]))}{', ...' if len(keys) > 6 else ''}"
        if len(v) > 8:
            return f"[{len(v)} values: {', '.join(auto(x, name) for x in v[:3])}, ...]"
        return "[" + ", ".join(auto(x, name) for x in v) + "]"
    if hasattr(v, "tolist") and not isinstance(v, numbers.Number):  # numpy arrays
        return auto(v.tolist(), name)
    if isinstance(v, numbers.Number):
        key = (name or "").lower()
        for pattern, f in _NAME_RULES:
            if key and pattern.search(key):
                return f(v)
        if isinstance(v, numbers.Integral):
            return count(v)
        return number(v)
    return str(v)


# --------------------------------------------------------------------------- prose


_SPEC = re.compile(r"^(?P<head>.*?)(?:\.(?P<prec>\d+))?(?P<type>[eEfFgGn%]?)$")
_DIGITS = re.compile(r"\d[\d,]*(?:\.\d+)?")


def _sig_digits(text: str) -> int:
    """Significant digits of the number in ``text`` (``"1,230.00"`` -> 6, ``"0.0120"`` -> 3)."""
    m = _DIGITS.search(text)
    if not m:
        return 0
    s = m.group(0).replace(",", "")
    if "." in s:
        return len(s.replace(".", "").lstrip("0"))
    return len(s.rstrip("0")) if s.strip("0") else 1


def format_value(v, spec: str = "") -> str:
    """``format(v, spec)`` under the rules of this module: a float is first rounded to
    ``SIG`` significant figures, then written with ``spec``, with fewer decimals where the
    spec would print more digits than are significant, and never in ``e`` notation;
    an integer below a million is written exactly, a larger one as :func:`count` does.
    ``format_value(0.123456, ".1%") == "12.3%"``, ``format_value(66315.2, ",.0f") == "66,300"``."""
    if isinstance(v, bool) or not isinstance(v, numbers.Number) or isinstance(v, complex):
        return format(v, spec)
    if isinstance(v, numbers.Integral):
        return format(v, spec) if abs(int(v)) < 1e6 else count(v)
    f = float(cast(numbers.Real, v))   # not complex: returned above
    if not math.isfinite(f):
        return NA
    if f == 0:
        return format(0.0, spec) if spec and spec[-1:] not in "eEgG" else "0"
    m = _SPEC.match(spec)
    if not spec or m is None or m.group("type") in ("e", "E", "n", ""):
        return number(f)
    head, prec, kind = m.group("head"), m.group("prec"), m.group("type")
    r = round_sig(f)
    if abs(r) >= 1e15:  # a float holds no more digits than this: write it as number() does
        return number(f)
    prec_i = int(prec) if prec is not None else 6
    out = format(r, f"{head}.{prec_i}{kind}")
    while "e" in out.lower() or (_sig_digits(out) > SIG and prec_i > 0):
        if "e" in out.lower():
            return number(f)
        prec_i -= 1
        out = format(r, f"{head}.{prec_i}{kind}")
    if kind in "gG" and "e" in out.lower():
        return number(f)
    return out


#: a dollar sign that no math renderer takes for a TeX delimiter: JupyterLab's MathJax reads
#: ``$...$`` in the rendered text (a ``\\$`` or ``&#36;`` becomes ``$`` before it looks), but
#: never pairs a ``$`` with one in another element
SAFE_DOLLAR = "<span>&#36;</span>"


#: Markdown punctuation that would make a value into a link, emphasis or code: written as
#: character references, which every renderer shows as the character itself
_MD_PUNCT = {"\\": "&#92;", "[": "&#91;", "]": "&#93;", "`": "&#96;", "*": "&#42;", "_": "&#95;", "!": "&#33;"}


def markdown_text(s: str) -> str:
    """A value for Markdown prose, shown as the text it is: HTML-escaped, Markdown's link,
    emphasis and code punctuation written as character references (a catalog text
    ``[x](javascript:...)`` must not become a link), and each ``$`` (or ``\\$``) a
    :data:`SAFE_DOLLAR`."""
    out = html.escape(s, quote=False).replace("\\$", "$")
    out = "".join(_MD_PUNCT.get(ch, ch) for ch in out)
    return out.replace("$", SAFE_DOLLAR)


def _code_text(s: str) -> str:
    """A value inside a Markdown code span: shown as written (a code span is never parsed as
    Markdown or HTML), except that a backtick would end the span."""
    return s.replace("`", "'").replace("\n", " ")


def prose(template: str, **values) -> str:
    """Fill a Markdown template: strings shown as the text they are (:func:`markdown_text`, or
    as written inside a code span of the template), numbers written by :func:`format_value`,
    and every ``\\$`` of the template (a dollar sign, not math) made a :data:`SAFE_DOLLAR`.
    ``$...$`` without a backslash stays math."""
    f = string.Formatter()
    out, in_code = [], False
    for literal, field, spec, conversion in f.parse(template):
        out.append(literal.replace("\\$", SAFE_DOLLAR))
        in_code ^= literal.count("`") % 2 == 1
        if field is None:
            continue
        v = f.get_field(field, (), values)[0]
        if conversion:
            v = f.convert_field(v, conversion)
        spec = f.vformat(spec, (), values) if spec and "{" in spec else (spec or "")
        if isinstance(v, numbers.Number) and not isinstance(v, (bool, complex)):
            text = format_value(v, spec)
        else:
            text = format(v, spec)
            text = _code_text(text) if in_code else markdown_text(text)
        out.append(text)
    return "".join(out)


# --------------------------------------------------------------------------- tables


class per_row:
    """A column format that takes each row's unit from another column: ``formats={"point":
    per_row("unit")}`` shows 20000 with unit USD as ``$20,000`` and 26280 hour as ``3 years``."""

    def __init__(self, unit_column: str):
        self.unit_column = unit_column

    def __call__(self, v, row) -> str:
        unit = row.get(self.unit_column, "")
        try:
            return quantity(v, "" if unit is None or unit != unit else str(unit))
        except Exception:  # a unit pint does not know: the number, then the unit as written
            return f"{number(v)} {unit}" if _finite(v) is not None else NA


Format = "str | Callable | per_row"


def _cell_formatter(spec) -> tuple[Callable[[Any, Mapping], str], str]:
    """(cell -> text, header suffix) for one column's format."""
    if isinstance(spec, per_row):
        return spec, ""
    if spec == "quote":  # text quoted from a source: shown as written, marked as a quotation
        return (lambda v, row: str(v)), ""
    if callable(spec):
        return (lambda v, row: spec(v)), ""
    if spec in KINDS:
        f = KINDS[spec]
        return (lambda v, row: f(v) if _finite(v) is not None else (NA if v is None or _is_nan(v) else str(v))), ""
    if isinstance(spec, str) and spec.startswith("{"):
        return (lambda v, row: format_value(v, spec[2:-1].lstrip(":")) if isinstance(v, numbers.Number) else str(v)), ""
    if isinstance(spec, str):  # a unit: numbers in that unit, the unit in the header
        from .. import units

        if spec not in ("x", "USD", "$"):
            units.check_unit(spec)
        suffix = "" if spec in ("x", "USD", "$") else f" ({spec})"
        return (lambda v, row: in_unit(v, spec)), suffix
    raise TypeError(f"a column format is a kind ({', '.join(KINDS)}), a unit, a format string or a callable; got {spec!r}")


def _is_nan(v) -> bool:
    try:
        return v != v
    except Exception:
        return False


def _default_cell(v, name: str) -> str:
    if v is None or _is_nan(v):
        return NA
    return auto(v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v, name)


def _label(c) -> str:
    if isinstance(c, tuple):
        return " / ".join(str(x) for x in c if str(x))
    return str(c)


_BOX = ("max-width:100%;overflow-x:auto;margin:0.4em 0 0.9em 0")
_TABLE = "border-collapse:collapse;font-size:0.92em;width:auto;margin:0"
_TH = "text-align:left;padding:3px 10px;border-bottom:1px solid #bbb;vertical-align:bottom;white-space:normal"
_NUM = "text-align:right;padding:3px 10px;white-space:nowrap;vertical-align:top"
_TEXT = "text-align:left;padding:3px 10px;white-space:normal;overflow-wrap:break-word;vertical-align:top"
_WIDE = ";min-width:16em;max-width:44em;overflow-wrap:anywhere"  # long text wraps, URLs too


class Table:
    """A formatted table: ``_repr_html_`` (escaped, in a scrolling box) for notebooks and
    reports, ``str()`` for a terminal. Build it with :func:`table`."""

    def __init__(self, columns: list[str], rows: list[list[str]], numeric: list[bool], index: list[str] | None,
                 index_name: str, caption: str, quoted: list[bool] | None = None):
        self.columns, self.rows, self.numeric = columns, rows, numeric
        self.index, self.index_name, self.caption = index, index_name, caption
        self.quoted = quoted or [False] * len(columns)

    def to_html(self) -> str:
        e = html.escape
        wide = [max((len(r[j]) for r in self.rows), default=0) > 60 for j in range(len(self.columns))]
        head = "".join(f'<th style="{_TH}">{e(c)}</th>' for c in ([self.index_name] if self.index is not None else [])
                       + self.columns)
        body = []
        for i, r in enumerate(self.rows):
            cells = []
            if self.index is not None:
                cells.append(f'<th scope="row" style="{_TEXT}">{e(self.index[i])}</th>')
            for j, text in enumerate(r):
                style = _NUM if self.numeric[j] else _TEXT + (_WIDE if wide[j] else "")
                cls = ' class="lpulab-quote"' if self.quoted[j] else ""
                cells.append(f'<td{cls} style="{style}">{e(text)}</td>')
            body.append(f'<tr style="border-bottom:1px solid #eee">{"".join(cells)}</tr>')
        cap = f'<caption style="caption-side:top;text-align:left;font-weight:bold">{e(self.caption)}</caption>' \
            if self.caption else ""
        return (f'<div class="lpulab-table mathjax_ignore tex2jax_ignore" style="{_BOX}">'
                f'<table style="{_TABLE}">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        cols = ([self.index_name] if self.index is not None else []) + self.columns
        rows = [([self.index[i]] if self.index is not None else []) + r for i, r in enumerate(self.rows)]
        widths = [max([len(c)] + [len(r[j]) for r in rows]) for j, c in enumerate(cols)]
        num = ([False] if self.index is not None else []) + self.numeric
        def line(cells):
            return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, num)).rstrip()
        out = ([self.caption] if self.caption else []) + [line(cols), line(["-" * w for w in widths])]
        return "\n".join(out + [line(r) for r in rows])

    def __repr__(self) -> str:
        return str(self)


def table(data, formats: Mapping[str, Any] | None = None, *, index: bool | None = None, caption: str = "",
          columns: list | None = None, max_rows: int | None = None, na: str = NA) -> Table:
    """A DataFrame (or Series, or mapping, or list of records) as a :class:`Table`.

    ``formats`` maps a column to how its cells are shown: a kind (``"money"``, ``"ratio"``,
    ``"count"``, ``"percent"``, ``"number"``, ``"bytes"``, ``"bandwidth"``, ``"compute"``,
    ``"power"``, ``"time"``: from SI values, with SI prefixes per cell; ``"quote"``: text
    quoted from a source, shown as written and marked as a quotation), a unit (``"TB/s"``,
    ``"MB"``, ``"us"``: SI values shown in that unit, the unit added to the header; ``"x"`` a
    ratio, ``"USD"`` money), :class:`per_row` (the unit is in another column), a format string
    (``"{:.1%}"``, applied by :func:`format_value`), or a callable. Other columns go by
    value: an int is a count, a float three significant figures, a string as it is.
    ``index``: show the index (by default, when it is not 0, 1, 2, ...). ``columns``: a
    subset, in order (``formats`` may still read the others, e.g. :class:`per_row`'s unit).
    ``max_rows``: keep the first rows and say how many were left out. ``na``: what a missing
    value shows as.
    """
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.Series):
        df = data.to_frame()
    elif isinstance(data, pd.DataFrame):
        df = data
    elif isinstance(data, Mapping):
        df = pd.DataFrame({k: [v] if not isinstance(v, (list, tuple)) else v for k, v in data.items()}) \
            if not all(isinstance(v, Mapping) for v in data.values()) else pd.DataFrame(data).T
    else:
        df = pd.DataFrame(list(data))
    full = df
    if columns is not None:
        df = df[list(columns)]
    formats = dict(formats or {})
    unknown = [c for c in formats if c not in df.columns]
    if unknown:
        raise KeyError(f"formats name columns the table does not have: {unknown}; it has {[_label(c) for c in df.columns]}")
    left_out = 0
    if max_rows is not None and len(df) > max_rows:
        left_out = len(df) - max_rows
        df = df.head(max_rows)
        full = full.head(max_rows)
    if index is None:
        index = not (isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1)
    fmts = {c: _cell_formatter(formats[c]) for c in formats}
    labels, numeric = [], []
    for c in df.columns:
        col = df[c]
        numeric.append(bool(pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)))
        if c not in fmts and numeric[-1] and pd.api.types.is_float_dtype(col):
            finite = col.to_numpy(float)
            finite = finite[np.isfinite(finite)]
            if len(finite) and np.all(finite == np.round(finite)) and np.all(np.abs(finite) < 1e15):
                fmts[c] = _cell_formatter("count")  # whole numbers held as floats: counts
        labels.append(_label(c) + (fmts[c][1] if c in fmts else ""))
    records = full.to_dict("records") if full.columns.is_unique else None
    rows = []
    for i in range(len(df)):
        row = records[i] if records is not None else {}
        cells = []
        for j, c in enumerate(df.columns):
            v = df.iat[i, j]
            if v is None or (_is_nan(v) and not isinstance(v, str)):
                text = na
            elif c in fmts:
                text = fmts[c][0](v, row)
            else:
                text = _default_cell(v, _label(c))
            cells.append(text)
        rows.append(cells)
    idx = None
    if index:
        idx = [_label(x) if not isinstance(x, numbers.Number) or isinstance(x, bool) else auto(x) for x in df.index]
    name = _label(df.index.name) if df.index.name is not None else ""
    if left_out and max_rows is not None:
        caption = (caption + " " if caption else "") + f"(first {max_rows} rows of {max_rows + left_out})"
    quoted = [formats.get(c) == "quote" for c in df.columns]
    return Table(labels, rows, numeric, idx, name, caption, quoted)


def show(data, formats: Mapping[str, Any] | None = None, **kw) -> None:
    """Display :func:`table` ``(data, formats, **kw)`` in a notebook: the one way a notebook
    shows a table."""
    from IPython.display import display

    display(table(data, formats, **kw))
