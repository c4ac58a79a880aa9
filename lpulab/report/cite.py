"""How to cite a report: CITATION.cff + the report-id + the commit."""

from __future__ import annotations

import json
from pathlib import Path

from .. import paths


def citation_meta() -> dict:
    import yaml

    return yaml.safe_load(paths.CITATION.read_text())


def _authors(meta) -> list[str]:
    out = []
    for a in meta.get("authors", []):
        out.append(a.get("name") or " ".join(x for x in (a.get("given-names"), a.get("family-names")) if x))
    return out


def citation(report_id: str, provenance: dict, title: str = "") -> dict:
    """Plain-text and BibTeX citations of one report."""
    meta = citation_meta()
    authors = _authors(meta)
    year = provenance.get("utc_time", "")[:4]
    commit = provenance.get("git", {}).get("commit", "unknown")
    draft = provenance.get("git", {}).get("dirty", True)
    url = meta.get("repository-code") or meta.get("url", "")
    what = f"{meta['title']}, version {meta.get('version', '')}"
    rtitle = title or report_id
    stop = "" if rtitle.endswith((".", "?", "!")) else "."
    plain = (f"{', '.join(authors)} ({year}). {rtitle}{stop} Report {report_id} of {what}, "
             f"commit {commit[:12]}{' (DRAFT: uncommitted changes)' if draft else ''}." + (f" {url}" if url else ""))
    key = "lpulab-" + report_id.replace("_", "-")
    bib = "\n".join([
        f"@techreport{{{key},",
        f"  author = {{{' and '.join(authors)}}},",
        f"  title = {{{rtitle}}},",
        f"  institution = {{{meta['title']}}},",
        f"  number = {{{report_id}}},",
        f"  year = {{{year}}},",
        f"  note = {{lpulab {meta.get('version', '')}, commit {commit[:12]}{', draft' if draft else ''}}},",
    ] + ([f"  url = {{{url}}},"] if url else []))
    bib = bib.rstrip(",") + "\n}"
    return {"plain": plain, "bibtex": bib}


def cite_report(report_dir: Path) -> dict:
    report_dir = Path(report_dir)
    prov = json.loads((report_dir / "provenance.json").read_text())
    return citation(prov["report_id"], prov, prov.get("title", ""))
