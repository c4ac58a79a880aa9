"""Issue 14, findings 2, 3 and 8: one bad report never stops a batch, nothing is half-written,
Ctrl-C stops cleanly, and what a killed run left behind is put back or removed."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpulab import cli, paths
from lpulab.report import html, index, io, runner
from lpulab.report.record import NonFiniteResult, finite_payload


def _hidden(reports: Path) -> list[str]:
    return sorted(d.name for d in reports.iterdir() if d.name.startswith((".tmp-", ".old-"))) if reports.exists() else []


def _index_is_consistent(reports: Path) -> None:
    """claims.json parses, and every link of index.html leads to a file that exists."""
    json.loads((reports / "claims.json").read_text())
    page = (reports / "index.html").read_text()
    links = set(re.findall(r'href="([^"#:]+)"', page))
    assert links, "the index links no report"
    for href in links:
        assert (reports / href).is_file(), f"index.html links a missing {href}"


# --- finding 2: non-finite numbers ---------------------------------------------------------------

def test_the_recorder_refuses_non_finite_results_and_names_them():
    with pytest.raises(NonFiniteResult, match=r"ratio = inf.*by_gpu\.b200 = nan"):
        finite_payload({"ratio": float("inf"), "by_gpu": {"b200": float("nan"), "h100": 2.0}})
    # a missing cell of a table is not a result: it is recorded as null
    res, _ = finite_payload({"table": [{"concurrency": float("nan"), "speed": 3.0}]})
    assert res["table"][0]["concurrency"] is None


def test_a_tiny_achieved_fraction_is_refused_before_any_kernel(reports_dir, capsys, fake_kernel):
    calls, _ = fake_kernel
    rc = cli.main(["run", "01_bandwidth", "-p", "gpu_achieved", "1e-320"])
    err = capsys.readouterr().err
    assert rc == 2 and "gpu_achieved" in err and "out of range" in err and "Traceback" not in err
    assert calls == [] and not reports_dir.exists()


@pytest.mark.notebook
def test_an_infinite_result_fails_its_report_with_a_clear_message(reports_dir, run_probe):
    r = runner.run_notebook(run_probe, {"value": 1e300}, reports=reports_dir, progress=False, timeout=120)
    assert not r.ok and r.failure == "cell"
    assert "NonFiniteResult" in r.error and "value = inf" in r.error
    st = json.loads((r.path / "status.json").read_text())
    assert st["status"] == "failed" and "value = inf" in st["error"]
    assert (r.path / "notebook.ipynb").is_file() and not (r.path / "report.html").exists()
    index.build(reports_dir)
    _index_is_consistent(reports_dir)


# --- findings 2, 3, 8: a batch with a render failure, a full disk and Ctrl-C ----------------------

def test_a_batch_survives_a_render_failure_a_full_disk_and_an_interrupt(reports_dir, monkeypatch, capsys, fake_kernel,
                                                                          make_executed):
    """02's page cannot be rendered, 03's disk is full when its page is written, 05 is
    interrupted: 01 and 04 are written, 02 and 03 are failed reports that keep their executed
    notebooks, nothing of 05 is left, the index is consistent and the exit status is 130."""
    _, behaviour = fake_kernel
    real_render, real_write = html.render, runner.atomic_write_text

    def render(nb, **kw):
        if kw["report_id"].startswith("02_"):
            raise TypeError("must be real number, not NoneType")
        return real_render(nb, **kw)

    def write(path, text):
        if Path(path).name == "report.html" and "-03_speed-" in f"-{Path(path).parent.name}":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_write(path, text)

    def interrupted(nb_path, executed):
        make_executed(Path(nb_path), Path(executed))  # half-way: the executed copy exists
        raise KeyboardInterrupt

    monkeypatch.setattr(html, "render", render)
    monkeypatch.setattr(runner, "atomic_write_text", write)
    behaviour["05_kernels"] = interrupted
    rc = cli.main(["reproduce", "-q"])
    out, err = capsys.readouterr()
    assert rc == 130 and "Traceback" not in out + err and "interrupted" in err
    folders = {d.name.split("-")[0]: d for d in reports_dir.iterdir() if d.is_dir() and not d.name.startswith(".")}
    assert set(folders) == {"01_bandwidth", "02_placement", "03_speed", "04_cost"}
    status = {k: json.loads((d / "status.json").read_text()) for k, d in folders.items()}
    for ok in ("01_bandwidth", "04_cost"):
        assert status[ok]["status"] == "ok" and (folders[ok] / "report.html").is_file()
    assert status["02_placement"]["failure"] == "render" and "NoneType" in status["02_placement"]["error"]
    assert status["03_speed"]["failure"] == "write" and "No space left" in status["03_speed"]["error"]
    for bad in ("02_placement", "03_speed"):
        assert status[bad]["status"] == "failed"
        assert (folders[bad] / "notebook.ipynb").is_file()       # the executed notebook is kept
        assert not (folders[bad] / "report.html").exists()
    assert _hidden(reports_dir) == []                            # nothing half-written
    _index_is_consistent(reports_dir)
    page = (reports_dir / "index.html").read_text()
    assert folders["03_speed"].name in page and folders["04_cost"].name in page


def test_a_full_disk_on_the_first_file_fails_that_report_only(reports_dir, monkeypatch, fake_kernel):
    real_write = runner.atomic_write_text
    monkeypatch.setattr(runner, "atomic_write_text", lambda p, t: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, "No space left on device")) if Path(p).name == "results.json" else real_write(p, t))
    r = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=True)
    assert not r.ok and r.failure == "write" and "No space left" in r.error
    assert (r.path / "notebook.ipynb").is_file() and not (r.path / "results.json").exists()
    _index_is_consistent(reports_dir)


@pytest.mark.parametrize("label,why", [("a/b", "letters, digits"), ("x" * 250, "at most 64"), (".hidden", "starting with")])
def test_bad_labels_are_refused_before_anything_runs(reports_dir, capsys, fake_kernel, label, why):
    calls, _ = fake_kernel
    assert cli.main(["run", "01_bandwidth", "--label", label]) == 2
    err = capsys.readouterr().err
    assert "label" in err and why in err and "Traceback" not in err and "No such file" not in err
    assert calls == [] and not reports_dir.exists()


def test_a_failed_rerun_keeps_the_finished_report(reports_dir, fake_kernel):
    _, behaviour = fake_kernel
    good = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=False)
    assert good.ok
    behaviour["01_bandwidth"] = lambda nb, ex: ("DeadKernelError: Kernel died", "kernel", None)
    bad = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=False,
                              kernel_retries=0)
    assert not bad.ok and bad.path.name == f"{good.report_id}-failed" and "kept" in bad.note
    assert json.loads((good.path / "status.json").read_text())["status"] == "ok"
    assert (good.path / "report.html").is_file()
    behaviour.clear()
    again = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=False)
    assert again.ok and not bad.path.exists()  # a later success clears the failed attempt


# --- finding 8: leftovers of killed runs, the swap, unreadable status files ----------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_leftovers_of_a_killed_run_are_cleaned_and_the_old_report_put_back(reports_dir):
    reports_dir.mkdir()
    dead = _dead_pid()
    tmp = reports_dir / f".tmp-01_bandwidth-default-abc-{dead}-{time.time_ns()}"
    tmp.mkdir()
    (tmp / "notebook.ipynb").write_text("{}")
    old = reports_dir / f".old-02_placement-default-def-{dead}"
    old.mkdir()
    (old / "status.json").write_text('{"status": "ok"}')
    live = reports_dir / f".tmp-03_speed-default-x-{os.getpid()}-{time.time_ns()}"  # this process: alive
    live.mkdir()
    done = io.recover(reports_dir)
    assert not tmp.exists() and live.exists()
    assert (reports_dir / "02_placement-default-def" / "status.json").is_file() and not old.exists()
    assert len(done) == 2


def test_a_kill_between_the_two_renames_leaves_the_old_report_reachable(tmp_path, monkeypatch):
    """Without an atomic swap the old report is renamed aside first; a kill right after that
    leaves it as .old-<id>-<pid>, and the next run puts it back."""
    reports = tmp_path / "reports"
    final, new = reports / "01-x", reports / ".tmp-01-x-1-1234567890123"
    for d, v in ((final, "old"), (new, "new")):
        d.mkdir(parents=True)
        (d / "v").write_text(v)
    real = os.replace
    calls = []

    def killed_after_first(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the renames
        return real(a, b)

    monkeypatch.setattr(io.os, "replace", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        io.replace_dir(new, final, exchange=False)
    monkeypatch.setattr(io.os, "replace", real)
    assert not final.exists()
    monkeypatch.setattr(io, "_alive", lambda pid: False)  # that process has gone
    io.recover(reports)
    assert (final / "v").read_text() == "old"


def test_the_swap_replaces_a_report_in_one_step(tmp_path, monkeypatch):
    """Where the system can swap two folders at once, no rename leaves the report missing."""
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    if not io._exchange(a, b):
        pytest.skip("this system cannot swap two folders in one step (the fallback is tested above)")
    final, new = tmp_path / "r", tmp_path / ".tmp-r-1-1234567890123"
    for d, v in ((final, "old"), (new, "new")):
        d.mkdir()
        (d / "v").write_text(v)
    monkeypatch.setattr(io.os, "replace", lambda *x: pytest.fail("renamed in two steps"))
    io.replace_dir(new, final)
    monkeypatch.undo()
    for d in (a, b):
        d.rmdir()
    assert (final / "v").read_text() == "new" and not new.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_an_unreadable_status_file_never_breaks_the_index(reports_dir, capsys, fake_kernel):
    r = runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False, build_index=False)
    broken = reports_dir / "04_cost-default-0123456789"
    broken.mkdir()
    (broken / "status.json").write_text('{"status": "ok", "verdicts": [{"claim": "C3", "estimate": "x"')
    odd = reports_dir / "03_speed-default-0123456789"
    odd.mkdir()
    (odd / "status.json").write_text(json.dumps({"status": "ok", "verdicts": [{"claim": "C2", "estimate": None}],
                                                 "utc_time": 5, "non_default": ["x"]}))
    assert cli.main(["index"]) == 0
    page = (reports_dir / "index.html").read_text()
    assert "unreadable" in page and broken.name in page and r.report_id in page
    assert runner.run_notebook("01_bandwidth", reports=reports_dir, progress=False).ok  # the end of a run too


# --- finding 8: Ctrl-C on a real run -------------------------------------------------------------

def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (worker processes, kernels)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    out, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - out
        out |= frontier
    return out


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.notebook
@pytest.mark.parametrize("jobs", ["1", "2", "sweep"])
def test_ctrl_c_stops_a_run_cleanly(tmp_path, run_probe, jobs):
    reports = tmp_path / "reports"
    env = {**os.environ, "LPULAB_REPORTS": str(reports)}
    nbs = [run_probe]
    if jobs == "2":  # two notebooks at once, in worker processes
        twin = tmp_path / "run_probe_twin.ipynb"
        twin.write_text(run_probe.read_text())
        nbs.append(twin)
    if jobs == "sweep":  # two sets of a sweep at once
        grid = tmp_path / "pause.yaml"
        grid.write_text("grid:\n  seconds: [120, 121]\n")
        nbs.append(run_probe)
        cmd = ["sweep", str(run_probe), "-g", str(grid), "-j", "2", "-q"]
    else:
        cmd = ["run", *map(str, nbs), "-j", jobs, "-q", "-p", "seconds", "120"]
    proc = subprocess.Popen([sys.executable, "-m", "lpulab.cli", *cmd], cwd=paths.ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until every kernel runs its pause
        tmps = _hidden(reports)
        if len(tmps) == len(nbs) and all((reports / t / "notebook.ipynb").is_file() for t in tmps):
            break
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"the runs did not start: {proc.communicate()}")
    time.sleep(3)
    below = _descendants(proc.pid)
    assert len(below) >= len(nbs)  # the kernels (and the workers) run
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole foreground group
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err and "interrupted" in err
    assert _hidden(reports) == []
    assert not [d for d in reports.iterdir() if d.is_dir() and not d.name.startswith(".") and d.name != "sweeps"]
    assert (reports / "index.html").is_file()
    if jobs == "sweep":  # the table says which sets did not run
        import pandas as pd

        table = pd.read_csv(reports / "sweeps" / "pause" / "results.csv")
        assert list(table.status) == ["not run", "not run"]
    time.sleep(1)
    assert not [p for p in below if _running(p)]  # no kernel or worker left running
    assert not list(paths.ROOT.glob("kernel-ipc*"))  # the kernels' sockets were their own, and are gone
