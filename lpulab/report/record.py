"""What a notebook calls to put numbers into its report.

``record(results, verdicts=...)`` displays the results as a table and attaches them, as
JSON under the MIME type :data:`MIME`, to the cell's output. The runner reads them back from
the executed notebook, so the numbers in ``results.json`` are exactly the ones the notebook
showed, and nothing inside the kernel writes files.
"""

from __future__ import annotations

import html
import math
from typing import Mapping

import numpy as np

MIME = "application/vnd.lpulab.results+json"


def jsonable(x):
    """Convert numpy scalars/arrays, dataclass-likes and mappings to plain JSON values."""
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if hasattr(x, "to_dict") and callable(x.to_dict):
        return jsonable(x.to_dict())
    return x


def _fmt(v, name: str | None = None) -> str:
    """A recorded value as the report shows it (:func:`lpulab.report.fmt.auto`)."""
    from .fmt import auto

    return auto(v, name)


def record(results: Mapping, verdicts=()):
    """Record a notebook's results (a mapping of name -> number/string/list/mapping) and
    its claim verdicts (:class:`lpulab.claims.Verdict`) for the report and the ledger.

    Returns None: as a notebook's last line, a returned payload would be displayed again as
    a raw dict at the end of the report."""
    from IPython.display import display

    from .. import __version__, catalog

    payload = {
        "results": jsonable(dict(results)),
        "verdicts": [jsonable(v) for v in verdicts],
        "files_read": catalog.files_read(),
        "lpulab_version": __version__,
    }
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
