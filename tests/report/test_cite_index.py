"""Issue 15, items 4 and 5: the index says what each report changed and found, each claim's
band says what it spans, a sweep has a chart; a citation says what was run and carries the
report's identity, in plain text, BibTeX and CSL-JSON; `lpulab cite NOTEBOOK` picks the latest."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import pytest

from lpulab import catalog, cli
from lpulab.report import cite, index, provenance, runner

VERDICT = {"claim": "C1", "metric": "m", "claimed": 20.0, "comparison": "at-least", "tolerance": 0.05,
           "as_stated": 23.88, "estimate": 23.88, "low": 10.0, "high": 40.2, "reproduces": True,
           "holds": "depends on assumptions", "assumptions": {"band": "over the GPUs"}, "note": ""}


@pytest.fixture
def clean(monkeypatch):
    state = {"commit": "1" * 40, "dirty": False, "changed": []}
    monkeypatch.setattr(provenance, "git_state", lambda: dict(state))
    return state


@pytest.fixture
def recorded(fake_kernel, make_executed):
    """Runs of 01_bandwidth record a C1 verdict."""
    _, behaviour = fake_kernel

    def run(nb, ex):
        make_executed(nb, ex, {"ratio_vs_reference": 23.88}, [VERDICT])
        return "", "", None

    behaviour["01_bandwidth"] = run
    return behaviour


def test_the_index_shows_changed_parameters_and_a_headline(reports_dir, clean, recorded, capsys):
    assert cli.main(["run", "01_bandwidth", "-q", "-p", "gpu_achieved", "0.5", "-p", "tier", "l2"]) == 0
    assert cli.main(["run", "02_placement", "-q"]) == 0
    page = (reports_dir / "index.html").read_text()
    page = page[page.index('<table class="reports">'):]
    row = re.search(r"01_bandwidth-custom-.*?</tr>", page, re.S).group(0)
    assert "gpu_achieved=0.5" in row and 'tier=&#34;l2&#34;' in row
    assert "C1 best estimate: 23.9x [10, 40.2], depends on assumptions" in row
    row2 = re.search(r"02_placement-default-.*?</tr>", page, re.S).group(0)
    assert "the defaults" in row2
    st = json.loads((next(reports_dir.glob("01_bandwidth-custom-*")) / "status.json").read_text())
    assert st["non_default"] == {"gpu_achieved": 0.5, "tier": "l2"}


def test_each_claim_says_what_its_band_spans(reports_dir, clean, recorded):
    runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False)
    led = {c["id"]: c for c in json.loads((reports_dir / "claims.json").read_text())}
    claims = catalog.load_claims()
    assert led["C1"]["band"] == claims["C1"].band and "GPUs compared" in claims["C1"].band
    assert all(c.band for c in claims.values())
    assert f"band: {claims['C1'].band}" in (reports_dir / "index.html").read_text()


def test_a_sweep_has_a_chart_of_its_metric(sweep_run):
    _, reports, _ = sweep_run
    png = reports / "sweeps" / "probe" / "chart.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    meta = json.loads((png.parent / "sweep.json").read_text())
    assert meta["chart"] == "chart.png" and "C1 best estimate" in meta["chart_alt"]
    index.build(reports)
    assert '<img src="sweeps/probe/chart.png"' in (reports / "index.html").read_text()


def test_a_citation_says_what_was_run_and_carries_its_identity(reports_dir, clean, recorded, monkeypatch, capsys):
    monkeypatch.setenv(cite.URL_ENV, "https://example.org/lpulab/{report_id}/report.html")
    r = runner.run_notebook("01_bandwidth", {"gpu_achieved": 0.5}, reports=reports_dir, progress=False)
    prov = json.loads((r.path / "provenance.json").read_text())
    today = datetime.now(UTC).date().isoformat()
    c = cite.cite_report(r.path)
    assert "C1: Is the chip's on-die memory" in c["title"] and "01_bandwidth, gpu_achieved=0.5" in c["title"]
    for part in (r.report_id, prov["git"]["commit"][:12], prov["param_hash"][:12], prov["data_hash"][:12],
                 f"Accessed {today}", f"https://example.org/lpulab/{r.report_id}/report.html"):
        assert part in c["plain"], part
    assert f"urldate = {{{today}}}" in c["bibtex"] and "url = {https://example.org/lpulab/" in c["bibtex"]
    assert "gpu\\_achieved=0.5" in c["bibtex"]  # escaped for LaTeX
    (item,) = json.loads(c["csl_json"])
    assert item["type"] == "report" and item["number"] == r.report_id and item["URL"].endswith("/report.html")
    assert item["accessed"]["date-parts"][0] == [int(x) for x in today.split("-")]
    assert prov["data_hash"][:12] in item["note"]
    # the report page carries the same citation
    assert "gpu_achieved=0.5" in (r.path / "report.html").read_text()
    # the command line: formats, and the template from an option
    assert cli.main(["cite", r.report_id, "--format", "csl-json", "--url-template", "https://x.org/{notebook}/{commit}"]) == 0
    (item,) = json.loads(capsys.readouterr().out)
    assert item["URL"] == f"https://x.org/01_bandwidth/{prov['git']['commit']}"
    assert cli.main(["cite", r.report_id, "--url-template", "https://x.org/{nope}"]) == 2
    assert "{nope}" in capsys.readouterr().err
    assert cli.main(["cite", r.report_id, "--url-template", "javascript:alert(1)//{report_id}"]) == 2


def test_cite_a_notebook_picks_its_latest_report(reports_dir, clean, recorded, monkeypatch, capsys):
    old = runner.run_notebook("01_bandwidth", {"gpu_achieved": 0.5}, reports=reports_dir, progress=False)
    time.sleep(1.1)  # a later UTC second
    new = runner.run_notebook("01_bandwidth", {"gpu_achieved": 0.7}, reports=reports_dir, progress=False)
    assert cli.main(["cite", "01_bandwidth", "--plain"]) == 0
    out = capsys.readouterr().out
    assert new.report_id in out and old.report_id not in out and "gpu_achieved=0.7" in out
    # a DRAFT run later still: the clean one is cited first
    monkeypatch.setattr(provenance, "git_state", lambda: {"commit": "1" * 40, "dirty": True, "changed": ["x"],
                                                           "fingerprint": "f"})
    time.sleep(1.1)
    runner.run_notebook("01_bandwidth", {"gpu_achieved": 0.9}, reports=reports_dir, progress=False)
    assert cli.main(["cite", "01_bandwidth", "--plain"]) == 0
    assert new.report_id in capsys.readouterr().out
    assert cli.main(["cite", "04_cost"]) == 2
    assert "no finished report of notebook 04_cost" in capsys.readouterr().err


def test_nothing_in_a_report_points_outside_the_repository(reports_dir, clean, fake_kernel, make_executed, tmp_path,
                                                          monkeypatch):
    d = tmp_path / "mydata"
    (d / "hardware").mkdir(parents=True)
    chip = d / "hardware" / "my-chip.toml"
    chip.write_text("x")
    monkeypatch.setenv("LPULAB_DATA", str(d))
    _, behaviour = fake_kernel

    def run(nb, ex):
        make_executed(nb, ex)
        book = json.loads(ex.read_text())
        out = book["cells"][-1]["outputs"][0]["data"]["application/vnd.lpulab.results+json"]
        out["files_read"] = {str(chip): "ab" * 32, "data/hardware/groq-lpu-v1.toml": "cd" * 32}
        ex.write_text(json.dumps(book))
        return "", "", None

    behaviour["01_bandwidth"] = run
    r = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False)
    assert r.ok, r.error
    for name in ("report.html", "provenance.json", "status.json", "results.json"):
        text = (r.path / name).read_text()
        assert str(tmp_path) not in text and "/work/" not in text and str(__import__("pathlib").Path.home()) + "/" not in text, name
        # and no relative path out of the repository (developers' notes beside it are not shipped)
        assert not re.search(r"\.\./(?!index\.html)", text), name  # the back link to the index is the one
    prov = json.loads((r.path / "provenance.json").read_text())
    assert "LPULAB_DATA[0]/hardware/my-chip.toml" in prov["data_files"]
