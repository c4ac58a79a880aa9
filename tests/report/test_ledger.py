"""The claim ledger (claims.json, index.html) built from real runs, and each report's parts."""

from __future__ import annotations

import copy
import json
import re

import nbformat
import pytest

from lpulab import catalog, cli
from lpulab.report import html, index
from lpulab.report.cite import bibtex_escape, cite_report


def test_ledger_from_the_sweep(sweep_run):
    _, reports, _ = sweep_run
    index.build(reports)
    led = {c["id"]: c for c in json.loads((reports / "claims.json").read_text())}
    claims = catalog.load_claims()
    assert set(led) == set(claims) == {"C1", "C2", "C3", "C4"}
    for cid, c in led.items():
        assert c["wording_en"] == claims[cid].wording_en and c["wording_zh"] == claims[cid].wording_zh
        assert c["source"] and c["tolerance"] == claims[cid].tolerance
    c1 = led["C1"]
    assert c1["status"] == "reported" and c1["sweep"] == "probe"
    assert (reports / c1["report_url"]).is_file()
    v = c1["verdict"]
    assert v["as_stated"] == pytest.approx(80 / 3.35)           # the claim's own arithmetic
    assert v["low"] <= v["estimate"] <= v["high"]
    assert v["holds"] in ("holds", "does not hold", "depends on assumptions")
    assert v["tolerance"] == 0.05 and v["assumptions"]
    for cid in ("C2", "C3", "C4"):   # their notebooks are not on this branch: no report yet
        assert led[cid]["status"] == "no report yet" and led[cid]["verdict"] is None and led[cid]["report"] is None
    page = (reports / "index.html").read_text()
    assert claims["C1"].wording_zh in page and claims["C1"].source_url in page
    assert page.count("no report yet") == 3
    assert f'href="{c1["report_url"]}"' in page
    assert 'href="sweeps/probe/results.csv"' in page


def _r(id, label="x", sweep=None, status="ok", t="2026-01-01T00:00:00", claim="C1", est=20.0):
    v = {"claim": claim, "estimate": est}
    return {"id": id, "notebook": "01_bandwidth", "label": label, "status": status, "error": "boom" if status != "ok" else "",
            "commit": "c", "draft": False, "utc_time": t, "verdicts": [v] if status == "ok" else [], "sweep": sweep}


def _pick(reports):
    reports = sorted(reports, key=lambda r: r["utc_time"], reverse=True)  # as scan() orders them
    return {c["id"]: c for c in index.ledger(reports)}["C1"]


def test_ledger_prefers_default_then_single_runs_then_the_newest():
    sweep_new = _r("s", label="grid", sweep="grid", t="2026-03-01")
    single_old = _r("a", label="b200", t="2026-01-01")
    single_new = _r("b", label="b200", t="2026-02-01")
    default_old = _r("d", label="default", t="2025-12-01")
    assert _pick([sweep_new])["report"] == "s"
    assert _pick([sweep_new, single_old])["report"] == "a"
    assert _pick([sweep_new, single_old, single_new])["report"] == "b"
    assert _pick([sweep_new, single_old, single_new, default_old])["report"] == "d"


def test_a_claim_whose_only_run_failed_names_it():
    c1 = _pick([_r("f", status="failed")])
    assert c1["status"] == "no report yet" and c1["failed_report"] == "f" and c1["failed_error"] == "boom"


# --- each report ---------------------------------------------------------------------------------

def _ok_report(sweep_run):
    result, reports, _ = sweep_run
    return reports / next(o["report_id"] for o in result.outcomes if o["status"] == "ok")


def test_report_has_id_citation_provenance_and_parameters(sweep_run):
    d = _ok_report(sweep_run)
    prov = json.loads((d / "provenance.json").read_text())
    page = (d / "report.html").read_text()
    assert d.name in page
    assert "How to cite" in page and prov["git"]["commit"][:12] in page
    assert prov["param_hash"] in page and prov["notebook_sha256"] in page
    for name in prov["parameters"]:
        assert f"<code>{name}</code>" in page
    assert ("lpulab-draft" in page) == prov["git"]["dirty"]
    # self-contained: no script from the network, equations as MathML
    assert not re.search(r"<script[^>]+src=", page)
    assert "<math" in page and "$$" not in page
    assert 'href="../index.html"' in page
    assert "files_read" not in page  # record()'s payload is not dumped again as the last output


def test_draft_banner_only_when_dirty(sweep_run):
    d = _ok_report(sweep_run)
    nb = nbformat.read(d / "notebook.ipynb", as_version=4)
    prov = json.loads((d / "provenance.json").read_text())
    data = json.loads((d / "results.json").read_text())
    pages = {}
    for dirty in (True, False):
        p = copy.deepcopy(prov)
        p["git"]["dirty"] = dirty
        pages[dirty] = html.render(nb, report_id=d.name, params=p["parameters"], provenance=p,
                                   verdicts=data["verdicts"], cite={"plain": "c", "bibtex": "b"})
    assert "DRAFT" in pages[True] and "lpulab-draft" in pages[True]
    assert "lpulab-draft" not in pages[False]


def test_cite_prints_plain_text_and_bibtex(sweep_run, monkeypatch, capsys):
    d = _ok_report(sweep_run)
    prov = json.loads((d / "provenance.json").read_text())
    monkeypatch.setenv("LPULAB_REPORTS", str(d.parent))
    assert cli.main(["cite", d.name]) == 0
    out = capsys.readouterr().out
    commit = prov["git"]["commit"][:12]
    plain, bib = out.split("\n\n", 1)
    assert d.name in plain and commit in plain and "lpulab" in plain
    assert bib.startswith("@techreport{lpulab-") and f"number = {{{bibtex_escape(d.name)}}}" in bib and commit in bib
    assert bib.rstrip().endswith("}") and bib.count("{") == bib.count("}")
    assert "= {}" not in bib  # no empty field (CITATION.cff may give no url)
    assert cli.main(["cite", "--bibtex", str(d)]) == 0
    assert capsys.readouterr().out.startswith("@techreport{")
    assert cite_report(d)["plain"] == plain.strip()
    assert cli.main(["cite", "no-such-report"]) == 2
    assert d.name in capsys.readouterr().err  # names the reports there are
