"""Notebook 01 through the real runner (papermill, kernel python3) with its smoke parameters."""

import json

import pytest

from lpulab import paths
from lpulab.report import run_notebook

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    r = run_notebook("01_bandwidth", param_file=paths.PARAMS / "01_bandwidth" / "smoke.yaml",
                     reports=reports, progress=False)
    return r, reports


def test_runs_and_writes_a_whole_report(run):
    r, reports = run
    assert r.ok, r.error
    for f in ("notebook.ipynb", "report.html", "results.json", "provenance.json", "status.json"):
        assert (r.path / f).is_file(), f
    assert not list(reports.glob(".tmp-*")), "temporary folders left behind"
    assert (reports / "index.html").is_file() and (reports / "claims.json").is_file()


def test_results_hold_the_c1_numbers(run):
    r, _ = run
    res = json.loads((r.path / "results.json").read_text())
    out = res["results"]
    assert out["ratio_vs_reference"] == pytest.approx(80 / 3.35)
    assert out["ratio_by_gpu"]["nvidia-b200"] == pytest.approx(10.0)
    # batch-1 matvec is memory-bound on both: its speed-up is the bandwidth ratio
    rf = out["roofline"]
    assert rf["batches"] == [1, 64] and rf["speedup"][0] == pytest.approx(80 / 3.35, rel=1e-3)
    assert rf["speedup"][1] < rf["speedup"][0]
    # the decode matrix is the model's largest of a layer, from the tensor table
    assert (rf["matrix"], rf["rows"], rf["cols"]) in {("gate_proj", 28672, 8192), ("up_proj", 28672, 8192),
                                                     ("down_proj", 8192, 28672)}
    d = out["deployment"]
    assert d["gpu"]["chips"] == 8 and d["lpu"]["chips"] % 72 == 0
    (v,) = res["verdicts"]
    assert v["claim"] == "C1" and v["reproduces"] is True
    assert v["holds"] == "depends on assumptions"  # 10x against B200, 23.9x against H100


def test_provenance_is_complete(run):
    r, _ = run
    prov = json.loads((r.path / "provenance.json").read_text())
    assert len(prov["git"]["commit"]) == 40 or prov["git"]["commit"] == "unknown"
    assert isinstance(prov["git"]["dirty"], bool)
    assert prov["versions"]["papermill"] and prov["versions"]["numpy"]
    assert prov["parameters"]["gpus"] == ["nvidia-h100-sxm", "nvidia-b200"]
    assert len(prov["param_hash"]) == 64
    assert "data/hardware/groq-lpu-v1.toml" in prov["data_files"]
    assert "data/claims.toml" in prov["data_files"]
    assert prov["utc_time"].endswith("+00:00")


def test_report_html_hides_code_and_embeds_figures(run):
    r, _ = run
    html = (r.path / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert "lpulab.report.validate" not in html  # code is hidden
    assert "How to cite" in html and r.report_id in html
    assert "23.9x" in html


def test_report_id_is_stable(run, tmp_path):
    r, _ = run
    again = run_notebook("01_bandwidth", param_file=paths.PARAMS / "01_bandwidth" / "smoke.yaml",
                         reports=tmp_path, progress=False, build_index=False)
    assert again.report_id == r.report_id


def test_a_failing_notebook_keeps_its_executed_copy(tmp_path):
    # LPU v1 has no fp8 peak: the analysis raises, the run says so, no report.html
    r = run_notebook("01_bandwidth", {"precision": "fp8", "gpus": ["nvidia-h100-sxm"], "gpu": "nvidia-h100-sxm"},
                     reports=tmp_path, progress=False)
    assert not r.ok and "fp8" in r.error
    assert (r.path / "notebook.ipynb").is_file() and not (r.path / "report.html").exists()
    status = json.loads((r.path / "status.json").read_text())
    assert status["status"] == "failed" and isinstance(status["failed_cell"], int)
    assert "failed" in (tmp_path / "index.html").read_text()
