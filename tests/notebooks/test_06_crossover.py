"""Notebook 06_crossover through the real runner with its smoke set, asserting on
results.json: each platform's cheapest configuration per speed target (fits, meets the
target, never cheaper at a faster target), the crossover with its Monte Carlo interval,
the odds map, the measured runs costed, one sentence per claim, the headline."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest

from lpulab import paths
from lpulab.report import ParameterError, run_notebook

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    reports = tmp_path_factory.mktemp("reports")
    r = run_notebook("06_crossover", param_file=paths.PARAMS / "06_crossover" / "smoke.yaml", reports=reports,
                     progress=False, build_index=False)
    assert r.ok, r.error
    return r, json.loads((r.path / "results.json").read_text())["results"]


def test_report_is_complete_and_names_its_inputs(smoke):
    r, _ = smoke
    for name in ("notebook.ipynb", "report.html", "results.json", "provenance.json", "status.json"):
        assert (r.path / name).is_file(), name
    read = json.dumps(json.loads((r.path / "provenance.json").read_text()))
    for f in ("data/prices/groq-card.toml", "data/prices/nvidia-dgx-h100.toml", "data/prices/us-2023.toml",
              "data/hardware/groq-lpu-v1.toml", "data/models/llama-2-70b.toml", "data/measurements/mlperf.csv"):
        assert f in read, f
    status = json.loads((r.path / "status.json").read_text())
    assert status["headline"]["name"] == "crossover_tok_s" and status["headline"]["value"] > 0


def test_every_cheapest_configuration_fits_meets_its_target_and_costs_more_when_faster(smoke):
    _, res = smoke
    plats = {p["platform"]: p for p in res["platforms"]}
    assert set(plats) == {"groq-lpu-v1 int8", "nvidia-h100-sxm fp8"}
    assert plats["groq-lpu-v1 int8"]["side"] == "sram" and plats["nvidia-h100-sxm fp8"]["side"] == "hbm"
    rows = res["frontier"]
    assert len(rows) == 2 * 2 * len(res["targets_tok_s"])      # objectives x platforms x targets
    for obj in ("usd_per_mtok", "joules_per_token"):
        for plat, p in plats.items():
            mine = [x for x in rows if x["objective"] == obj and x["platform"] == plat]
            ok = [x for x in mine if x["feasible"]]
            assert ok, (obj, plat)
            for x in ok:
                assert x["per_user_tok_s"] >= x["target_tok_s"]
                assert x["chips"] == x["replicas"] * x["tensor"] * x["pipeline"] <= x["chips_deployed"]
                assert x["chips_deployed"] % p["unit_chips"] == 0
                assert x["units"] == -(-x["chips_deployed"] // p["chips_per_unit"])
                assert x["usd_per_mtok"] > 0 and x["joules_per_token"] > 0
            vals = np.array([x[obj] for x in ok])
            assert np.all(np.diff(vals) >= -1e-9 * vals[1:])
            feas = [x["feasible"] for x in mine]
            assert feas == sorted(feas, reverse=True)            # out of reach stays out of reach
    gpu = [x for x in rows if x["platform"] == "nvidia-h100-sxm fp8" and x["feasible"]]
    assert {x["layout"].split(" x ", 1)[1] for x in gpu} >= {"(TP8 x PP1)"}    # fast targets take a whole server


def test_the_crossover_has_a_point_and_a_monte_carlo_interval(smoke):
    _, res = smoke
    c = res["crossover"]
    lo, hi = c["speed_range"]
    assert c["draws"] == 1000 and c["quantiles"] == [2.5, 97.5]
    assert c["status"] == "crosses" and lo < c["value"] < hi and res["crossover_tok_s"] == c["value"]
    assert c["sram_platform"] == "groq-lpu-v1 int8" and c["gpu_platform"] == "nvidia-h100-sxm fp8"
    assert 0 <= c["below"] <= 1 and 0 <= c["above"] <= 1 and c["below"] + c["above"] <= 1
    # percentiles are ordered where they lie inside the range (None: beyond one end)
    qs = [c["low"], c["quartiles"][0], c["median"], c["quartiles"][1], c["high"]]
    inside = [q for q in qs if q is not None]
    assert inside == sorted(inside) and all(lo < q <= hi for q in inside)
    assert c["median"] is not None or c["below"] >= 0.5 or c["above"] >= 0.5
    e = res["energy_crossover"]
    assert e["metric"] == "joules_per_token" and e["draws"] == 1000


def test_the_odds_map_covers_targets_by_electricity_price(smoke):
    _, res = smoke
    o = res["odds"]
    assert o["axis"] == "electricity" and o["axis_unit"] == "USD/kWh" and o["draws"] == 1000
    assert o["axis_values"] == pytest.approx([0.04, 0.04 * (0.3 / 0.04) ** 0.5, 0.3])
    rows = o["rows"]
    assert len(rows) == len(res["targets_tok_s"]) * 3
    p = np.array([np.nan if r["p_sram_cheaper"] is None else r["p_sram_cheaper"] for r in rows], float)
    ok = np.isfinite(p)
    assert ok.sum() > len(rows) // 2 and np.all((p[ok] >= 0) & (p[ok] <= 1))
    by_t = {}
    for r, v in zip(rows, p):
        by_t.setdefault(r["target_tok_s"], []).append(v)
    slow, fast = min(by_t), max(t for t, v in by_t.items() if np.isfinite(v).all())
    assert np.mean(by_t[slow]) < np.mean(by_t[fast])         # the SRAM side's odds grow with the speed asked


def test_measured_runs_are_costed_and_each_claim_has_a_sentence(smoke):
    _, res = smoke
    m = res["measured"]
    assert m and {x["device"] for x in m} <= {"groq-lpu-v1", "nvidia-h100-sxm"}
    for x in m:
        assert x["usd_per_mtok"] > 0 and x["units"] >= 1 and x["per_user"] > 0 and x["aggregate"] > 0
    s = res["claim_sentences"]
    assert set(s) == {"C2", "C3", "C4"}
    assert "tok/s per user" in s["C2"] and "'10x faster'" in s["C2"] and "'38x the hardware cost'" in s["C3"]
    assert res["skipped"] == []


def test_bad_parameters_are_refused_before_running(tmp_path):
    for bad, match in (({"map_axis": "weather"}, "map_axis"), ({"devices": ["nvidia-h100-sxmm"]}, "unknown device"),
                       ({"target_low": 2000.0}, "target_low"), ({"site": "groq-card"}, "unknown site price sheet"),
                       ({"map_models": ["llama-9"]}, "unknown model")):
        with pytest.raises(ParameterError, match=match):
            run_notebook("06_crossover", bad, reports=tmp_path, progress=False, build_index=False)
    assert not any(tmp_path.iterdir())


def test_committed_notebook_has_no_outputs_and_stable_cell_ids():
    nb = nbformat.read(paths.NOTEBOOKS / "06_crossover.ipynb", as_version=4)
    assert [c.id for c in nb.cells] == [f"06-{i:02d}" for i in range(len(nb.cells))]
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None
            assert "def " not in cell.source and "class " not in cell.source
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("variant", sorted(p.stem for p in (paths.PARAMS / "06_crossover").glob("*.yaml")))
def test_every_parameter_file_validates(variant):
    from lpulab.report.runner import resolve_parameters

    resolve_parameters(paths.notebook("06_crossover"), paths.PARAMS / "06_crossover" / f"{variant}.yaml")
