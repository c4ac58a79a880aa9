"""How to cite a report: CITATION.cff + what was run + the report's identity.

A citation names what was run (the notebook's title, the notebook, and the parameters that
differ from its defaults) and carries the report-id, the git commit, the parameter hash, the
data hash, the date it was accessed and, when a URL template is set, where the report is
published. The template (``--url-template`` on ``lpulab cite`` or ``$LPULAB_REPORT_URL``)
takes ``{report_id}``, ``{notebook}``, ``{commit}`` and ``{label}``, e.g.
``https://example.org/lpulab/{report_id}/report.html``. Without one the URL is the code's
(``repository-code`` in CITATION.cff), when it has one.

Formats: plain text, BibTeX and CSL-JSON (what Zotero, pandoc and citeproc read).
"""

from __future__ import annotations

import json
import os
import re
import string
from datetime import UTC, datetime
from pathlib import Path

from .. import paths
from .io import read_status

URL_ENV = "LPULAB_REPORT_URL"
URL_FIELDS = ("report_id", "notebook", "commit", "label")


class CiteError(ValueError):
    """No such report, or a URL template that cannot be filled."""


def citation_meta() -> dict:
    import yaml

    return yaml.safe_load(paths.CITATION.read_text(encoding="utf-8"))


def _authors(meta) -> list[str]:
    out = []
    for a in meta.get("authors", []):
        out.append(a.get("name") or " ".join(x for x in (a.get("given-names"), a.get("family-names")) if x))
    return out


def _csl_author(a: dict) -> dict:
    if a.get("family-names"):
        return {k: v for k, v in (("family", a["family-names"]), ("given", a.get("given-names"))) if v}
    return {"literal": a.get("name", "")}


def parameters_text(params: dict, limit: int = 240) -> str:
    """``gpus=["nvidia-b200"], reference_gpu="nvidia-b200"``, cut to ``limit`` characters."""
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in sorted(params.items()))
    return text if len(text) <= limit else text[: limit - 3].rstrip(", ") + "..."


def title_of(provenance: dict, title: str = "") -> str:
    """What was run: the notebook's title, the notebook, its non-default parameters."""
    nb = Path(provenance.get("notebook", "")).stem or provenance.get("report_id", "")
    nd = provenance.get("non_default_parameters") or {}
    what = f"{nb}, " + (parameters_text(nd) if nd else "default parameters")
    base = (title or provenance.get("title") or "").strip().rstrip(".")
    return f"{base} ({what})" if base else what


def url_for(template: str | None, provenance: dict) -> str:
    """Fill a URL template; raises CiteError on a field it does not know."""
    if not template:
        return ""
    values = {"report_id": provenance.get("report_id", ""), "notebook": Path(provenance.get("notebook", "")).stem,
              "commit": provenance.get("git", {}).get("commit", ""), "label": provenance.get("label", "")}
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise CiteError(f"URL template {template!r}: {exc}") from None
    unknown = [n for n in names if n not in URL_FIELDS]
    if unknown:
        raise CiteError(f"URL template {template!r}: unknown field(s) {', '.join('{' + n + '}' for n in unknown)}; "
                        f"fields: {', '.join('{' + f + '}' for f in URL_FIELDS)}")
    url = template.format(**values)
    if not re.match(r"^https?://", url):
        raise CiteError(f"URL template {template!r}: the URL must start with http:// or https://")
    return url


_BIB = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "%": r"\%", "&": r"\&", "#": r"\#", "_": r"\_",
        "$": r"\$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def bibtex_escape(text: str) -> str:
    return "".join(_BIB.get(ch, ch) for ch in str(text))


def citation(report_id: str, provenance: dict, title: str = "", *, url_template: str | None = None,
             accessed: str | None = None) -> dict:
    """A report's citation: ``plain``, ``bibtex``, ``csl`` (a CSL-JSON item) and ``csl_json``
    (a list of that one item, as text), ``title`` and ``url``."""
    meta = citation_meta()
    authors = _authors(meta)
    when = provenance.get("utc_time", "") or ""
    year = when[:4]
    accessed = accessed or datetime.now(UTC).date().isoformat()
    git = provenance.get("git", {})
    commit = git.get("commit", "unknown")
    draft = bool(git.get("dirty", True))
    phash = provenance.get("param_hash", "")
    dhash = provenance.get("data_hash", "")
    template = url_template if url_template is not None else os.environ.get(URL_ENV) or None
    url = url_for(template, provenance) if template else (meta.get("repository-code") or meta.get("url") or "")
    version = meta.get("version", "")
    rtitle = title_of(provenance, title)
    ident = (f"commit {commit[:12]}" + (" (DRAFT: uncommitted changes)" if draft else "")
             + (f", parameters sha256 {phash[:12]}" if phash else "") + (f", data sha256 {dhash[:12]}" if dhash else ""))
    plain = (f"{', '.join(authors)} ({year}). {rtitle}. Report {report_id} of {meta['title']}, version {version}; "
             f"{ident}." + (f" {url}" if url else "") + f" Accessed {accessed}.")
    key = "lpulab-" + re.sub(r"[^A-Za-z0-9-]+", "-", report_id)
    note = f"lpulab {version}, {ident}, accessed {accessed}"
    fields = [("author", " and ".join(f"{{{bibtex_escape(a)}}}" for a in authors)), ("title", bibtex_escape(rtitle)),
              ("institution", bibtex_escape(meta["title"])), ("type", "lpulab report"), ("number", bibtex_escape(report_id)),
              ("year", year), ("note", bibtex_escape(note))]
    if url:
        fields += [("url", url), ("urldate", accessed)]
    bib = f"@techreport{{{key},\n" + ",\n".join(f"  {k} = {{{v}}}" for k, v in fields) + "\n}"

    def parts(d: str):
        nums = [int(x) for x in re.findall(r"\d+", d[:10])]
        return {"date-parts": [nums[:3]]} if nums else None

    csl = {"id": key, "type": "report", "title": rtitle,
           "author": [_csl_author(a) for a in meta.get("authors", [])],
           "publisher": meta["title"], "genre": "lpulab report", "number": report_id, "version": version,
           "note": note}
    if parts(when):
        csl["issued"] = parts(when)
    csl["accessed"] = parts(accessed)
    if url:
        csl["URL"] = url
    return {"title": rtitle, "url": url, "plain": plain, "bibtex": bib, "csl": csl,
            "csl_json": json.dumps([csl], indent=2, ensure_ascii=False)}


def find_report(ref: str, reports: Path | None = None) -> Path:
    """The report folder ``ref`` names: a folder, a report-id, or a notebook (path or stem,
    e.g. ``04_cost``), whose latest finished report it then is (a clean one before a DRAFT).
    Raises CiteError listing what exists."""
    reports = Path(reports or paths.reports_dir())
    p = Path(ref)
    for cand in (p, reports / ref):
        if (cand / "provenance.json").is_file():
            return cand
    try:
        stem = paths.notebook(ref).stem
    except FileNotFoundError:
        stem = None
    done = []
    for d in (reports.glob("*/") if reports.is_dir() else []):
        st = read_status(d)
        if st and st.get("status") == "ok" and (d / "provenance.json").is_file():
            done.append((d, st))
    if stem is not None:
        mine = [(not st.get("dirty", False), st.get("utc_time", ""), d) for d, st in done if st.get("notebook") == stem]
        if mine:
            return max(mine)[2]
        raise CiteError(f"no finished report of notebook {stem}; run `lpulab run {stem}` first")
    known = sorted(d.name for d, _ in done)
    notebooks = sorted(q.stem for q in paths.NOTEBOOKS.glob("[0-9]*.ipynb"))
    raise CiteError(f"no finished report {ref!r}; give a report-id ({', '.join(known[:20]) or 'none yet'}"
                    f"{' ...' if len(known) > 20 else ''}) or a notebook ({', '.join(notebooks)})")


def cite_report(report_dir: Path, *, url_template: str | None = None, accessed: str | None = None) -> dict:
    report_dir = Path(report_dir)
    prov = json.loads((report_dir / "provenance.json").read_text(encoding="utf-8"))
    return citation(prov["report_id"], prov, prov.get("title", ""), url_template=url_template, accessed=accessed)
