"""Issue 14 finding 4, issue 10 item 5, issue 15 item 6: a report's id covers every data file
it can read, a DRAFT never replaces a clean report, and a rerun skips exactly the runs whose
inputs are unchanged (and says so); --force redoes them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lpulab import cli, paths
from lpulab.report import provenance, runner, sweep


@pytest.fixture
def user_data(tmp_path, monkeypatch):
    """A user data folder in LPULAB_DATA holding a copy of one shipped device."""
    d = tmp_path / "mydata"
    (d / "hardware").mkdir(parents=True)
    f = d / "hardware" / "my-chip.toml"
    text = (paths.HARDWARE / "groq-lpu-v1.toml").read_text().replace('id = "groq-lpu-v1"', 'id = "my-chip"')
    f.write_text(text)
    monkeypatch.setenv("LPULAB_DATA", str(d))
    return f


def _git(dirty: bool, fingerprint: str = "f1"):
    state = {"commit": "0" * 40, "dirty": dirty, "changed": ["data/x.toml"] if dirty else []}
    if dirty:
        state["fingerprint"] = fingerprint
    return lambda: dict(state)


def test_the_report_id_covers_every_data_file(tmp_path, monkeypatch, user_data):
    with_user = runner.plan("01_bandwidth").report_id
    assert f"LPULAB_DATA[0]/hardware/{user_data.name}" in provenance.data_files()
    user_data.write_text(user_data.read_text().replace("value = 80,", "value = 40,", 1))
    changed = runner.plan("01_bandwidth").report_id
    monkeypatch.delenv("LPULAB_DATA")
    shipped_only = runner.plan("01_bandwidth").report_id
    assert len({with_user, changed, shipped_only}) == 3
    assert all(str(paths.ROOT) not in k and str(tmp_path) not in k for k in provenance.data_files())
    assert all(k.startswith("data/") for k in provenance.data_files())


def test_a_modified_or_untracked_data_file_makes_a_draft(monkeypatch):
    """git status of data/ counts untracked files (the rest of the tree counts tracked ones)."""
    calls = []

    class P:
        def __init__(self, out, rc=0):
            self.stdout, self.returncode = out, rc

    def fake_run(args, **kw):
        calls.append(args)
        if args[1:3] == ["rev-parse", "HEAD"]:
            return P("a" * 40 + "\n")
        if "--untracked-files=all" in args:
            return P("?? data/hardware/new-chip.toml\n")
        if args[1] == "diff":
            return P("")
        return P("")

    monkeypatch.setattr(provenance.subprocess, "run", fake_run)
    g = provenance.git_state()
    assert g["dirty"] and g["changed"] == ["data/hardware/new-chip.toml"] and g["fingerprint"]
    assert any("--untracked-files=all" in c and c[-1] == "data" for c in calls)
    p = runner.plan("01_bandwidth", git=g)
    assert p.report_id.endswith("-draft") and p.draft


def test_a_draft_never_replaces_a_clean_report(reports_dir, monkeypatch, fake_kernel):
    monkeypatch.setattr(provenance, "git_state", _git(False))
    clean = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=False)
    before = (clean.path / "status.json").read_text()
    monkeypatch.setattr(provenance, "git_state", _git(True))
    draft = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False)
    assert draft.ok and draft.report_id == clean.report_id + "-draft"
    assert (clean.path / "status.json").read_text() == before
    page = (reports_dir / "index.html").read_text()
    assert clean.report_id in page and draft.report_id in page and "DRAFT" in page
    assert "DRAFT" in (draft.path / "report.html").read_text()


def _reproduce(capsys, *args) -> tuple[int, str]:
    rc = cli.main(["reproduce", "01_bandwidth", "02_placement", "-q", *args])
    out, err = capsys.readouterr()
    return rc, out + err


def test_reproduce_skips_what_completed_with_the_same_inputs(reports_dir, monkeypatch, capsys, fake_kernel, tmp_path):
    calls, _ = fake_kernel
    monkeypatch.setattr(provenance, "git_state", _git(False))
    rc, out = _reproduce(capsys)
    assert rc == 0 and calls == ["01_bandwidth", "02_placement"] and "ran 2" in out
    rc, out = _reproduce(capsys)
    assert rc == 0 and len(calls) == 2 and "skipped 2" in out and "--force reruns" in out
    assert re.search(r"01_bandwidth -> .* \[skipped: completed before, same inputs\]", out)
    rc, out = _reproduce(capsys, "--force")
    assert len(calls) == 4 and "ran 2" in out
    # a data file changes: both run again, under new ids
    d = tmp_path / "mydata" / "hardware"
    d.mkdir(parents=True)
    (d / "my-chip.toml").write_text((paths.HARDWARE / "groq-lpu-v1.toml").read_text().replace(
        'id = "groq-lpu-v1"', 'id = "my-chip"'))
    rc, out = _reproduce(capsys, "--data", str(d.parent))
    assert len(calls) == 6 and "ran 2" in out
    monkeypatch.setenv("LPULAB_DATA", "")
    monkeypatch.delenv("LPULAB_DATA")
    # uncommitted changes: a DRAFT runs, the same changes skip, other changes run again
    monkeypatch.setattr(provenance, "git_state", _git(True, "edit-1"))
    _reproduce(capsys)
    assert len(calls) == 8
    _reproduce(capsys)
    assert len(calls) == 8
    monkeypatch.setattr(provenance, "git_state", _git(True, "edit-2"))
    _reproduce(capsys)
    assert len(calls) == 10


def test_a_status_from_before_data_hashes_is_not_taken_as_completed(reports_dir, monkeypatch, fake_kernel):
    monkeypatch.setattr(provenance, "git_state", _git(False))
    r = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=False)
    st = json.loads((r.path / "status.json").read_text())
    p = runner.plan("01_bandwidth")
    assert runner.completed(r.path, p)
    del st["data_hash"]
    (r.path / "status.json").write_text(json.dumps(st))
    assert not runner.completed(r.path, p)


def test_a_sweep_reruns_the_sets_whose_data_changed(reports_dir, monkeypatch, fake_kernel, tmp_path):
    """The stale-sweep finding: after a data change, no set is skipped."""
    calls, _ = fake_kernel
    monkeypatch.setattr(provenance, "git_state", _git(False))
    monkeypatch.setattr(sweep, "_local", lambda tasks, workers, progress=False: ((t, sweep.run_set(t)) for t in tasks))
    grid = {"grid": {"gpu_achieved": [0.5, 1.0]}}
    first = sweep.run_sweep("01_bandwidth", grid, name="stale", reports=reports_dir, progress=False)
    assert len(first.ran) == 2 and len(calls) == 2
    again = sweep.run_sweep("01_bandwidth", grid, name="stale", reports=reports_dir, progress=False)
    assert len(again.skipped) == 2 and len(calls) == 2
    d = tmp_path / "mydata" / "hardware"
    d.mkdir(parents=True)
    (d / "my-chip.toml").write_text((paths.HARDWARE / "groq-lpu-v1.toml").read_text().replace(
        'id = "groq-lpu-v1"', 'id = "my-chip"'))
    monkeypatch.setenv("LPULAB_DATA", str(d.parent))
    changed = sweep.run_sweep("01_bandwidth", grid, name="stale", reports=reports_dir, progress=False)
    assert len(changed.ran) == 2 and len(changed.skipped) == 0 and len(calls) == 4
    assert {o["report_id"] for o in changed.outcomes}.isdisjoint({o["report_id"] for o in first.outcomes})
    monkeypatch.setattr(provenance, "git_state", _git(True))
    draft = sweep.run_sweep("01_bandwidth", grid, name="stale", reports=reports_dir, progress=False)
    assert len(draft.ran) == 2 and all(o["report_id"].endswith("-draft") for o in draft.outcomes)
    for o in changed.outcomes:  # the clean reports are untouched
        assert json.loads((reports_dir / o["report_id"] / "status.json").read_text())["dirty"] is False


@pytest.mark.notebook
def test_reproduce_runs_notebooks_in_parallel(tmp_path, monkeypatch, capsys, reports_dir):
    """-j 2: two notebooks in worker processes, each reported; the second run skips both."""
    probe = Path(__file__).resolve().parent.parent / "fixtures" / "notebooks" / "run_probe.ipynb"
    twin = tmp_path / "run_probe_twin.ipynb"
    twin.write_text(probe.read_text())
    assert cli.main(["run", str(probe), str(twin), "-j", "2", "-q"]) == 0
    out = capsys.readouterr().out
    assert "2 at a time" in out and out.count("[ok]") == 2
    assert len([d for d in reports_dir.iterdir() if (d / "report.html").is_file()]) == 2


def test_reproduce_runs_the_numbered_notebooks_only_never_the_explorer(reports_dir, monkeypatch, capsys, fake_kernel):
    calls, _ = fake_kernel
    monkeypatch.setattr(provenance, "git_state", _git(False))
    assert (paths.NOTEBOOKS / "explore.ipynb").is_file()
    rc = cli.main(["reproduce", "--params", "smoke", "-q"])
    capsys.readouterr()
    numbered = sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9]*.ipynb"))
    assert rc == 0 and sorted(calls) == numbered and "06_crossover" in calls and "explore" not in calls
