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


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) > 8:
        return f"[{len(v)} values]"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in list(v.items())[:8]) + (" ..." if len(v) > 8 else "")
    return str(v)


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
        f"<tr><td><code>{html.escape(str(k))}</code></td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in payload["results"].items()
    )
    vrows = "".join(
        f"<li>{html.escape(v.summary)}</li>" for v in verdicts
    )
    table = (
        "<div class='lpulab-results'><h3>Recorded results</h3>"
        + (f"<ul>{vrows}</ul>" if vrows else "")
        + f"<table><thead><tr><th>name</th><th>value</th></tr></thead><tbody>{rows}</tbody></table></div>"
    )
    text = "\n".join(f"{k} = {_fmt(v)}" for k, v in payload["results"].items())
    display({MIME: payload, "text/html": table, "text/plain": text}, raw=True)


def md(template: str, **values):
    """Markdown prose with numbers filled in from recorded values, e.g.
    ``md("The ratio is {r:.1f}x.", r=results["ratio"])``: numbers in prose are never typed.

    String values are HTML-escaped (a parameter holding markup shows as text); the template,
    written in the notebook, is not."""
    from IPython.display import Markdown

    safe = {k: html.escape(v, quote=False) if isinstance(v, str) else v for k, v in values.items()}
    return Markdown(template.format(**safe))
