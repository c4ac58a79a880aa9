"""What a notebook calls to put numbers into its report.

``record(results, verdicts=...)`` displays the results as a table and attaches them, as
JSON under the MIME type :data:`MIME`, to the cell's output. The runner reads them back from
the executed notebook, so the numbers in ``results.json`` are exactly the ones the notebook
showed, and nothing inside the kernel writes files.

Every number recorded must be finite: an infinity or a NaN (an input that overflowed, a
division by zero) is refused with :class:`NonFiniteResult`, naming each one, so the report is
marked failed at that cell instead of showing a number that is not one. The one exception is
a missing cell of a table (a list of rows): NaN there is recorded as null.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

MIME = "application/vnd.lpulab.results+json"


class NonFiniteResult(ValueError):
    """A result or verdict holds an infinity or a NaN."""


def jsonable(x, bad: list | None = None, where: str = "", in_row: bool = False):
    """Convert numpy scalars/arrays, dataclass-likes and mappings to plain JSON values.

    A non-finite float becomes None; when ``bad`` is a list, its place (``where``) is added to
    it unless it is a NaN in a row of a table (``in_row``: a mapping inside a list), a missing
    value there."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v, bad, f"{where}.{k}" if where else str(k), in_row) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, bad, f"{where}[{i}]", in_row or isinstance(v, Mapping)) for i, v in enumerate(x)]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), bad, where, in_row)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        if math.isfinite(f):
            return f
        if bad is not None and not (in_row and math.isnan(f)):
            bad.append(f"{where or 'value'} = {f}")
        return None
    if hasattr(x, "to_dict") and callable(x.to_dict):
        return jsonable(x.to_dict(), bad, where, in_row)
    return x


def finite_payload(results: Mapping, verdicts=()) -> tuple[dict, list]:
    """``results`` and ``verdicts`` as JSON values, or NonFiniteResult naming every number
    that is not finite."""
    bad: list[str] = []
    res = jsonable(dict(results), bad)
    ver = [jsonable(v, bad, f"verdict {getattr(v, 'claim', i)}") for i, v in enumerate(verdicts)]
    if bad:
        shown = ", ".join(bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
        raise NonFiniteResult(
            f"{len(bad)} recorded number(s) are not finite, so no report is made of them: {shown}. An input "
            "overflowed or was divided by zero: check the parameters (lpulab params NOTEBOOK) and the data.")
    return res, ver


def _fmt(v, name: str | None = None) -> str:
    """A recorded value as the report shows it (:func:`lpulab.report.fmt.auto`)."""
    from .fmt import auto

    return auto(v, name)


def record(results: Mapping, verdicts=(), headline: str | None = None, unit: str = ""):
    """Record a notebook's results (a mapping of name -> number/string/list/mapping) and
    its claim verdicts (:class:`lpulab.claims.Verdict`) for the report and the ledger.

    ``headline``: the name of the result the index shows for this report (with ``unit``);
    by default the first verdict's best estimate. Raises :class:`NonFiniteResult` when a
    number is not finite, and KeyError when ``headline`` names no number in ``results``.

    Returns None: as a notebook's last line, a returned payload would be displayed again as
    a raw dict at the end of the report."""
    from IPython.display import display

    from .. import __version__, catalog

    res, ver = finite_payload(results, verdicts)
    payload: dict[str, Any] = {
        "results": res,
        "verdicts": ver,
        "files_read": catalog.files_read(),
        "lpulab_version": __version__,
    }
    if headline is not None:
        value = res.get(headline)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise KeyError(f"record(headline={headline!r}): no number of that name in the results "
                           f"(numbers: {', '.join(k for k, v in res.items() if isinstance(v, (int, float)))})")
        payload["headline"] = {"name": headline, "value": value, "unit": unit}
    rows = "".join(
        f"<tr><td><code>{html.escape(str(k))}</code></td><td>{html.escape(_fmt(v, str(k)))}</td></tr>"
        for k, v in payload["results"].items()
    )
    vrows = "".join(
        f"<li>{html.escape(v.summary)}</li>" for v in verdicts
    )
    table = (
        "<div class='lpulab-results mathjax_ignore tex2jax_ignore'><h3>Recorded results</h3>"
        + (f"<ul>{vrows}</ul>" if vrows else "")
        + "<div class='lpulab-table' style='max-width:100%;overflow-x:auto'>"
        + f"<table><thead><tr><th>name</th><th>value</th></tr></thead><tbody>{rows}</tbody></table></div></div>"
    )
    text = "\n".join(f"{k} = {_fmt(v, str(k))}" for k, v in payload["results"].items())
    display({MIME: payload, "text/html": table, "text/plain": text}, raw=True)


def md(template: str, **values):
    """Markdown prose with numbers filled in from recorded values, e.g.
    ``md("The ratio is {r:.1f}x.", r=results["ratio"])``: numbers in prose are never typed.

    Numbers are written as everywhere else in lpulab (:func:`lpulab.report.fmt.format_value`:
    three significant figures whatever the format spec asks, never ``e`` notation). String
    values are HTML-escaped (a parameter holding markup shows as text); the template, written
    in the notebook, is not. A ``\\$`` in the template, or a ``$`` in a string value, is a
    dollar sign that JupyterLab's math renderer leaves alone (:data:`~lpulab.report.fmt.SAFE_DOLLAR`);
    a bare ``$...$`` in the template is math."""
    from IPython.display import Markdown

    from .fmt import prose

    return Markdown(prose(template, **values))
