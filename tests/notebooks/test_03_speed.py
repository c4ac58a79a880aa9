"""Notebook 03 through the real runner with its smoke parameters."""

import json

import pytest

from lpulab import paths
from lpulab.report import run_notebook

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    r = run_notebook("03_speed", param_file=paths.PARAMS / "03_speed" / "smoke.yaml",
                     reports=tmp_path_factory.mktemp("reports"), progress=False)
    assert r.ok, r.error
    return json.loads((r.path / "results.json").read_text()), (r.path / "report.html").read_text()


def test_c2_as_stated_is_like_for_like_and_the_band_is_a_prediction_interval(result):
    res, _ = result
    r = res["results"]
    assert r["like_for_like"]["ratio"] == pytest.approx(185 / 33)
    assert r["like_for_like"]["vendor_ratio"] == pytest.approx(300 / 33)
    (v,) = res["verdicts"]
    assert v["claim"] == "C2" and v["as_stated"] == pytest.approx(185 / 33)
    assert v["low"] <= v["estimate"] <= v["high"] and v["low"] < v["high"]
    assert "prediction interval" in v["assumptions"]["band"]
    assert "per-user" in v["assumptions"]["metric"] and "stream" in v["assumptions"]["GPU side"]


def test_the_report_shows_the_validation_table(result):
    res, html = result
    r = res["results"]
    sets = {row["set"] for row in r["validation"]}
    assert {"fit", "test"} <= sets
    assert any(k["status"].startswith("fitted") for k in r["knobs"])
    assert "leave-one-out" in html and "Fitted on" in html and html.count("data:image/png;base64,") >= 3
    errs = {(e["set"], e["metric"]): e for e in r["calibration"]["errors"]}
    assert ("test", "all") in errs and errs[("test", "all")]["points"] > 10


def test_both_sides_fit_and_the_lpu_is_faster_per_user(result):
    res, _ = result
    r = res["results"]
    assert r["lpu"]["per_user_tok_s"] > r["gpu"]["per_user_tok_s"]
    assert r["lpu"]["fits"] and r["gpu"]["fits"]
