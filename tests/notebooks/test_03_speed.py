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
    return json.loads((r.path / "results.json").read_text())


def test_c2_as_stated_and_verdict(result):
    res = result["results"]
    assert res["as_stated_ratio"] == pytest.approx(300 / 33)
    (v,) = result["verdicts"]
    assert v["claim"] == "C2" and v["reproduces"] is True
    assert v["low"] <= v["estimate"] <= v["high"]


def test_calibration_fits_and_metrics_disagree(result):
    res = result["results"]
    assert res["calibration_success"] is True
    fitted = [r for r in res["calibration_table"] if r["fitted"]]
    assert len(fitted) == 3 and all(abs(r["rel_error"]) < 1e-3 for r in fitted)
    # the speed-up is a per-user one: per chip, the GPU server out-produces the LPU deployment
    assert res["per_user_ratio_at_1"] > 1
    assert res["aggregate_ratio_per_chip"] < 1
