"""The same sweep on a Dask cluster: a LocalCluster on loopback, two worker processes."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lpulab import cli

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, worker_dashboard_address=None) as c:
        yield c


def test_sweep_on_a_dask_cluster(cluster, tmp_path, monkeypatch, capsys):
    grid = tmp_path / "dask.yaml"
    grid.write_text("name: dask\nbase_file: smoke\ngrid:\n  gpu_achieved: [0.8, 1.0]\n")
    reports = tmp_path / "reports"
    monkeypatch.setenv("LPULAB_REPORTS", str(reports))
    rc = cli.main(["sweep", "01_bandwidth", "-g", str(grid), "--scheduler", cluster.scheduler_address, "-q"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "ran 2, skipped 0 already completed, 0 failed" in out
    df = pd.read_csv(reports / "sweeps" / "dask" / "results.csv")
    assert sorted(df.gpu_achieved) == [0.8, 1.0] and set(df.status) == {"ok"}
    assert df.set_index("gpu_achieved").loc[0.8, "ratio_vs_reference"] == pytest.approx(80 / (0.8 * 3.35))
    # each report came back whole from the worker into the client's reports/
    for rid in df.report_id:
        d = reports / rid
        assert {"report.html", "results.json", "provenance.json", "status.json", "notebook.ipynb"} <= \
            {p.name for p in d.iterdir()}
        assert json.loads((d / "status.json").read_text())["sweep"] == "dask"
    assert not list(reports.glob(".tmp-*"))
    # and a rerun on the cluster resumes: nothing left to run
    assert cli.main(["sweep", "01_bandwidth", "-g", str(grid), "--scheduler", cluster.scheduler_address, "-q"]) == 0
    assert "ran 0, skipped 2" in capsys.readouterr().out
