"""`lpulab sweep`: grids, validation before running, parallel runs, the tidy table, resumption."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lpulab import cli, paths
from lpulab.report import provenance
from lpulab.report.params import ParameterError
from lpulab.report.sweep import expand, flatten, load_sweep

# --- grids: pure ---------------------------------------------------------------------------------

def test_grid_is_a_cartesian_product():
    base, sets, _ = expand({"base": {"tier": "hbm"}, "grid": {"a": [1, 2, 3], "b": ["x", "y"]}})
    assert base == {"tier": "hbm"}
    assert len(sets) == 6
    assert {(s["a"], s["b"]) for s in sets} == {(a, b) for a in (1, 2, 3) for b in "xy"}


def test_sets_are_combined_with_every_grid_point():
    _, sets, _ = expand({"sets": [{"lpu": "v1"}, {"lpu": "v3"}], "grid": {"tier": ["hbm", "l2"]}})
    assert sets == [{"lpu": "v1", "tier": "hbm"}, {"lpu": "v1", "tier": "l2"},
                    {"lpu": "v3", "tier": "hbm"}, {"lpu": "v3", "tier": "l2"}]


def test_plain_forms():
    assert expand({"a": [1, 2]})[1] == [{"a": 1}, {"a": 2}]           # a bare mapping is a grid
    assert expand([{"a": 1}, {"a": 5}])[1] == [{"a": 1}, {"a": 5}]      # a bare list is sets


@pytest.mark.parametrize("spec, words", [
    ({"grid": {"a": 0.5}}, ["non-empty list", "base:"]),
    ({"grid": {"a": []}}, ["non-empty list"]),
    ({"sets": [{"a": 1}], "grid": {"a": [1]}}, ["both set a"]),
    ({"gird": {"a": [1]}, "base": {}}, ["unknown key", "gird"]),
    ({"base": {"a": 1}}, ["grid:", "sets:"]),
    ("text", ["mapping"]),
])
def test_bad_grids_are_refused(spec, words):
    with pytest.raises(ParameterError) as e:
        expand(spec)
    for w in words:
        assert w in str(e.value)


def test_flatten_uses_dotted_names_and_json_lists():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": 2.5}) == \
        {"a.b": 1, "a.c.d": "x", "e": "[1, 2]", "f": 2.5}


# --- checking every set before anything runs ----------------------------------------------------

def test_every_set_is_checked_before_anything_runs(tmp_path):
    grid = {"base_file": "smoke", "grid": {"gpu": ["nvidia-h100-sxm", "nvidia-h9000"],
                                           "gpu_achieved": [0.5, 1.5]}}
    with pytest.raises(ParameterError) as e:
        from lpulab.report.sweep import run_sweep
        run_sweep("01_bandwidth", grid, reports=tmp_path, progress=False)
    msg = str(e.value)
    assert "3 of 4 parameter set(s) are invalid; nothing ran" in msg
    assert "nvidia-h9000" in msg and "must be one of gpus" in msg and "out of range" in msg
    assert list(tmp_path.iterdir()) == []


def test_repeated_sets_run_once():
    s = load_sweep("01_bandwidth", {"sets": [{"tier": "hbm"}, {}]})  # hbm is the default tier
    assert len(s.sets) == 1 and "repeats set 0" in s.notes[0]


def test_example_grids_are_valid():
    grids = sorted((paths.PARAMS / "01_bandwidth").glob("sweep-*.yaml"))
    assert grids, "expected example grids under notebooks/params/01_bandwidth/"
    for g in grids:
        s = load_sweep("01_bandwidth", g)
        assert len(s.sets) >= 2, g


# --- a real sweep (session fixture: 2 sets complete, 1 fails in a cell) ---------------------------

def test_one_failing_set_does_not_stop_the_others(sweep_run):
    result, reports, _ = sweep_run
    assert not result.ok
    assert [o["status"] for o in result.outcomes] == ["ok", "ok", "failed"]
    bad = result.outcomes[2]
    assert bad["varied"] == {"precision": "fp8"}
    assert bad["failure"] == "cell" and bad["attempts"] == 1  # a failing cell is never retried
    assert "ValueError" in bad["error"] and "fp8" in bad["error"]
    assert isinstance(bad["failed_cell"], int) and bad["failed_cell_source"]
    for o in result.outcomes:
        assert (reports / o["report_id"] / "status.json").is_file()
    assert (reports / bad["report_id"] / "notebook.ipynb").is_file()       # the executed copy is kept
    assert not (reports / bad["report_id"] / "report.html").exists()
    summary = result.summary()
    assert "1 failed" in summary and bad["report_id"] in summary and f"cell {bad['failed_cell']}" in summary
    assert (reports / "index.html").is_file()


def test_report_ids_are_stable(sweep_run):
    result, reports, _ = sweep_run
    git = provenance.git_state()
    data = provenance.data_hash(provenance.data_files())
    for params, o in zip(result.sweep.sets, result.outcomes):
        assert o["report_id"] == provenance.report_id("01_bandwidth", "probe", params, git["commit"], data,
                                                      draft=git["dirty"])
        status = json.loads((reports / o["report_id"] / "status.json").read_text())
        assert status["sweep"] == "probe" and status["label"] == "probe"


def test_the_tidy_table(sweep_run):
    _result, reports, _ = sweep_run
    folder = reports / "sweeps" / "probe"
    csv = pd.read_csv(folder / "results.csv")
    pq = pd.read_parquet(folder / "results.parquet")
    for df in (csv, pq):
        assert len(df) == 3
        assert list(df.status) == ["ok", "ok", "failed"]
        for col in ("report_id", "gpu_achieved", "precision", "gpus", "ratio_vs_reference",
                    "ratio_by_gpu.nvidia-b200", "verdict.C1.estimate", "verdict.C1.holds", "result.tier"):
            assert col in df.columns, col
    ok = csv[csv.status == "ok"].set_index("gpu_achieved")
    # hand-computed: 80 TB/s / 3.35 TB/s at equal fractions; halving the GPU's fraction doubles it
    assert ok.loc[1.0, "ratio_vs_reference"] == pytest.approx(80 / 3.35)
    assert ok.loc[0.5, "ratio_vs_reference"] == pytest.approx(2 * 80 / 3.35)
    assert ok.loc[1.0, "ratio_by_gpu.nvidia-b200"] == pytest.approx(80 / 8)
    assert json.loads(csv.gpus[0]) == ["nvidia-h100-sxm", "nvidia-b200"]
    bad = csv[csv.status == "failed"].iloc[0]
    assert "fp8" in bad.error and pd.isna(bad.ratio_vs_reference)
    meta = json.loads((folder / "sweep.json").read_text())
    assert meta["sets"] == 3 and meta["ok"] == 2 and meta["failed"] == 1


def test_rerun_resumes_through_the_cli(sweep_run, monkeypatch, capsys):
    """The CLI reruns the same grid: the two completed sets are skipped, the failed one runs
    again (and fails again); the exit status says not all passed."""
    result, reports, grid = sweep_run
    before = {o["report_id"]: (reports / o["report_id"] / "status.json").read_text() for o in result.outcomes}
    monkeypatch.setenv("LPULAB_REPORTS", str(reports))
    rc = cli.main(["sweep", "01_bandwidth", "-g", str(grid), "-j", "2", "-q"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "ran 1, skipped 2 already completed, 1 failed" in out
    assert "FAILED" in out and "ValueError" in out and "cell " in out
    after = {rid: (reports / rid / "status.json").read_text() for rid in before}
    ok_ids = [o["report_id"] for o in result.outcomes if o["status"] == "ok"]
    failed_id = next(o["report_id"] for o in result.outcomes if o["status"] != "ok")
    assert all(after[r] == before[r] for r in ok_ids)      # untouched
    assert after[failed_id] != before[failed_id]           # ran again
    assert len(pd.read_csv(reports / "sweeps" / "probe" / "results.csv")) == 3


def test_bad_grid_exits_2(tmp_path, capsys):
    g = tmp_path / "g.yaml"
    g.write_text("grid:\n  precision: [int4]\n")
    assert cli.main(["sweep", "01_bandwidth", "-g", str(g)]) == 2
    assert "int4" in capsys.readouterr().err
