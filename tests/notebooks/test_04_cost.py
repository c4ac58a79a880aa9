"""Notebook 04_cost through the real runner with smoke.yaml, asserting on results.json."""

from __future__ import annotations

import json

import nbformat
import pytest

from lpulab import paths
from lpulab.report import ParameterError, run_notebook

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    r = run_notebook("04_cost", param_file=paths.PARAMS / "04_cost" / "smoke.yaml", reports=reports, progress=False,
                     build_index=False)
    assert r.ok, r.error
    return r, json.loads((r.path / "results.json").read_text())


def test_report_is_complete(smoke):
    r, _ = smoke
    for name in ("notebook.ipynb", "report.html", "results.json", "provenance.json", "status.json"):
        assert (r.path / name).is_file(), name
    prov = json.loads((r.path / "provenance.json").read_text())
    read = json.dumps(prov)
    for f in ("data/prices/as-stated-jia-2024.toml", "data/prices/groq-card.toml", "data/prices/nvidia-dgx-h100.toml",
              "data/prices/us-2023.toml", "data/measurements/speed.csv", "data/claims.toml"):
        assert f in read, f


def test_as_stated_reproduction(smoke):
    _, payload = smoke
    res = payload["results"]
    assert round(res["as_stated_capex_ratio"], 1) == 38.1
    assert round(res["as_stated_opex_ratio"], 1) == 10.6
    assert res["as_stated_capex_ratio_by_chips"]["305"] == pytest.approx(20.33, abs=0.01)
    assert res["as_stated_lpu_opex_usd"] == pytest.approx(762_000, rel=1e-3)
    assert res["as_stated_gpu_opex_usd"] == pytest.approx(72_000, rel=1e-3)
    assert res["as_stated_implied_usd_per_kwh"] == pytest.approx(0.274)
    assert res["repost_305_gpu_side_usd_for_stated_ratio"] == pytest.approx(152_500)


def test_best_estimate_bands_and_break_even(smoke):
    _, payload = smoke
    res = payload["results"]
    assert res["samples"] == 2000
    for metric, b in res["bands"].items():
        assert b["p5"] <= b["p50"] <= b["p95"], metric
    c3 = res["bands"]["capex_ratio"]
    assert c3["p5"] <= res["estimate_capex_ratio"] <= c3["p95"]
    # operating cost is a power ratio: the opex and power ratios agree at the point estimate
    assert res["estimate_opex_ratio"] == pytest.approx(res["estimate_power_ratio"])
    # at MLPerf's operating point one server out-delivers the LPU deployment, and per token the LPU costs more
    assert res["gpu_servers_matched_mlperf_point"] < 1.0
    assert res["cost_per_token_ratio_mlperf_point"] > res["estimate_tco_ratio"]
    be = res["break_even"]
    assert be["lpu_users_at_matched_speed"] > 0
    assert be["gpu_tokens_per_s_per_server"] > 0
    assert be["card_price_usd_vs_mlperf_point"] < 0   # no card price breaks even there
    assert 0 < be["card_price_usd_for_claimed_capex_ratio"] < 40_000
    assert res["lpu_usd_per_mtok"] > 0 and res["gpu_usd_per_mtok_mlperf_point"] > 0


def test_verdicts_recorded(smoke):
    _, payload = smoke
    verdicts = {v["claim"]: v for v in payload["verdicts"]}
    assert set(verdicts) == {"C3", "C4"}
    for v in verdicts.values():
        assert v["reproduces"] is True
        assert v["low"] <= v["estimate"] <= v["high"]
        assert v["holds"] in ("holds", "does not hold", "depends on assumptions")
    assert verdicts["C3"]["as_stated"] == pytest.approx(38.13, abs=0.01)
    assert verdicts["C4"]["as_stated"] == pytest.approx(10.58, abs=0.01)


def test_card_count_and_gpu_throughput_from_the_models(tmp_path):
    r = run_notebook("04_cost", {"chips_source": "placement", "throughput_source": "perf", "samples": 200},
                     reports=tmp_path, progress=False, build_index=False)
    assert r.ok, r.error
    res = r.results
    # placement: int8 weights + one full-context KV cache, whole nodes of 8 cards
    assert res["lpu_chips"] % 8 == 0 and 300 <= res["lpu_chips"] <= 330
    assert res["lpu_chips"] < 572  # fewer than the claim's count: the claim's cards are not the model's minimum


def test_bad_parameter_is_refused_before_running(tmp_path):
    with pytest.raises(ParameterError, match="opex_basis"):
        run_notebook("04_cost", {"opex_basis": "free"}, reports=tmp_path, progress=False, build_index=False)
    assert not any(tmp_path.iterdir())


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(paths.NOTEBOOKS / "04_cost.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
        assert "def " not in cell.source.replace("undefined", "") or cell.cell_type == "markdown"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("variant", sorted(p.stem for p in (paths.PARAMS / "04_cost").glob("*.yaml")))
def test_every_parameter_file_validates(variant):
    from lpulab.report.runner import resolve_parameters

    resolve_parameters(paths.notebook("04_cost"), paths.PARAMS / "04_cost" / f"{variant}.yaml")
