"""Notebook 04_cost through the real runner, asserting on results.json: the claim's own
arithmetic, both sides as deployed (chips from placement, tokens/s from notebook 03's
serving model at the same operating point), an override, the verdicts."""

from __future__ import annotations

import hashlib
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


def test_report_is_complete_and_names_its_inputs(smoke):
    r, _ = smoke
    for name in ("notebook.ipynb", "report.html", "results.json", "provenance.json", "status.json"):
        assert (r.path / name).is_file(), name
    read = json.dumps(json.loads((r.path / "provenance.json").read_text()))
    for f in ("data/prices/as-stated-jia-2024.toml", "data/prices/groq-card.toml", "data/prices/nvidia-dgx-h100.toml",
              "data/prices/us-2023.toml", "data/claims.toml"):
        assert f in read, f


def test_the_claims_own_arithmetic(smoke):
    _, payload = smoke
    a = payload["results"]["as_stated"]
    assert round(a["capex_ratio"], 1) == 38.1 and round(a["opex_ratio"], 1) == 10.6 and a["lpu_units"] == 572


def test_both_sides_as_deployed(smoke):
    _, payload = smoke
    res = payload["results"]
    lpu, gpu = res["lpu"], res["gpu"]
    assert lpu["price_sheet"] == "groq-card" and lpu["chips_per_unit"] == 1 and lpu["units"] == lpu["chips_deployed"]
    assert lpu["chips_deployed"] % 72 == 0 and lpu["chips"] <= lpu["chips_deployed"]
    assert gpu["price_sheet"] == "nvidia-dgx-h100" and gpu["chips_deployed"] == 8 and gpu["units"] == 1
    assert lpu["throughput_source"] == gpu["throughput_source"] == "serving model"
    pt = res["point"]
    assert pt["opex_ratio"] == pytest.approx(pt["power_ratio"])      # electricity cancels out of the opex ratio
    for b in res["bands"]:
        assert b["p5"] <= b["p50"] <= b["p95"], b


def test_verdicts_recorded(smoke):
    _, payload = smoke
    verdicts = {v["claim"]: v for v in payload["verdicts"]}
    assert set(verdicts) == {"C3", "C4"}
    for v in verdicts.values():
        assert v["reproduces"] is True and v["low"] <= v["estimate"] <= v["high"]
    assert verdicts["C3"]["as_stated"] == pytest.approx(38.13, abs=0.01)
    assert verdicts["C4"]["as_stated"] == pytest.approx(10.58, abs=0.01)


def test_one_overridden_card_price_moves_c3_and_leaves_the_sheet_alone(smoke, tmp_path):
    _, base = smoke
    sheet = paths.PRICES / "groq-card.toml"
    before = hashlib.sha256(sheet.read_bytes()).hexdigest()
    r = run_notebook("04_cost", {"samples": 2000, "overrides": {"groq-card.price.unit": "10000 USD"}}, reports=tmp_path,
                     progress=False, build_index=False)
    assert r.ok, r.error
    res = json.loads((r.path / "results.json").read_text())
    c3 = {v["claim"]: v for v in res["verdicts"]}["C3"]
    c3_base = {v["claim"]: v for v in base["verdicts"]}["C3"]
    assert c3["estimate"] < c3_base["estimate"] and c3["as_stated"] == pytest.approx(c3_base["as_stated"])
    assert hashlib.sha256(sheet.read_bytes()).hexdigest() == before
    html = (r.path / "report.html").read_text()
    assert "groq-card.price.unit" in html and "override" in html.lower()


def test_the_lpu_side_equals_notebook_03_and_its_streams_equal_notebook_02(smoke, tmp_path):
    _, c = smoke
    s = run_notebook("03_speed", param_file=paths.PARAMS / "03_speed" / "smoke.yaml", reports=tmp_path, progress=False,
                     build_index=False)
    p = run_notebook("02_placement", param_file=paths.PARAMS / "02_placement" / "smoke.yaml", reports=tmp_path,
                     progress=False, build_index=False)
    assert s.ok and p.ok, (s.error, p.error)
    speed_res = json.loads((s.path / "results.json").read_text())["results"]
    place_res = json.loads((p.path / "results.json").read_text())["results"]
    cost_res = c["results"]
    assert cost_res["lpu"]["tokens_per_s"]["value"] == pytest.approx(speed_res["lpu"]["aggregate_tok_s"], rel=1e-12)
    assert cost_res["gpu"]["tokens_per_s"]["value"] == pytest.approx(speed_res["gpu"]["aggregate_tok_s"], rel=1e-12)
    assert cost_res["full_context_streams"] == place_res["full_context_streams"]


def test_a_typed_in_throughput_is_an_override_the_report_labels(tmp_path):
    r = run_notebook("04_cost", {"samples": 500, "gpu_tokens_per_s": 20556.4}, reports=tmp_path, progress=False,
                     build_index=False)
    assert r.ok, r.error
    res = json.loads((r.path / "results.json").read_text())["results"]
    assert res["gpu"]["throughput_source"] == "override" and res["options"]["throughput_overrides"] == {"gpu": 20556.4}


def test_bad_parameters_are_refused_before_running(tmp_path):
    for bad, match in (({"opex_basis": "free"}, "opex_basis"), ({"lpu_prices": "us-2023"}, "unknown system price sheet"),
                       ({"overrides": {"groq-card.price.nope": "1 USD"}}, "has no field 'price.nope'"),
                       ({"gpu_layout": [4, 2]}, "three whole numbers")):
        with pytest.raises(ParameterError, match=match):
            run_notebook("04_cost", bad, reports=tmp_path, progress=False, build_index=False)
    assert not any(tmp_path.iterdir())


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(paths.NOTEBOOKS / "04_cost.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
            assert "def " not in cell.source and "class " not in cell.source
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("variant", sorted(p.stem for p in (paths.PARAMS / "04_cost").glob("*.yaml")))
def test_every_parameter_file_validates(variant):
    from lpulab.report.runner import resolve_parameters

    resolve_parameters(paths.notebook("04_cost"), paths.PARAMS / "04_cost" / f"{variant}.yaml")
