"""The runner tells a kernel that did not start from a failing cell, and retries only the first."""

from __future__ import annotations

import json

import papermill
import pytest
import zmq
from nbclient.exceptions import CellTimeoutError, DeadKernelError

from lpulab.report import runner


def test_classify():
    cell = papermill.PapermillExecutionError(3, 4, "raise ValueError", "ValueError", "bad", [])
    assert runner.classify(cell) == "cell"
    assert runner.classify(CellTimeoutError("cell timed out")) == "timeout"
    assert runner.classify(RuntimeError("Kernel didn't respond in 60 seconds")) == "kernel"
    assert runner.classify(DeadKernelError("Kernel died")) == "kernel"
    assert runner.classify(zmq.ZMQError(98, "Address already in use")) == "kernel"


def test_a_kernel_that_fails_to_start_is_retried_once(tmp_path, monkeypatch, probe_notebook):
    real = papermill.execute_notebook
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel didn't respond in 60 seconds")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    r = runner.run_notebook(probe_notebook, {"note": "retry"}, reports=tmp_path, progress=False, build_index=False)
    assert r.ok, r.error
    assert len(calls) == 2 and r.attempts == 2
    assert json.loads((r.path / "status.json").read_text())["attempts"] == 2
    assert json.loads((r.path / "results.json").read_text())["results"]["note"] == "retry"


def test_a_kernel_that_never_starts_fails_after_one_retry(tmp_path, monkeypatch, probe_notebook):
    calls = []

    def dead(*args, **kwargs):
        calls.append(1)
        raise zmq.ZMQError(98, "Address already in use")

    monkeypatch.setattr(papermill, "execute_notebook", dead)
    r = runner.run_notebook(probe_notebook, {"note": "x"}, reports=tmp_path, progress=False, build_index=False)
    assert not r.ok and r.failure == "kernel" and r.attempts == 2 and len(calls) == 2
    status = json.loads((r.path / "status.json").read_text())
    assert status["status"] == "failed" and status["failure"] == "kernel" and "Address already in use" in status["error"]


@pytest.mark.parametrize("exc", [CellTimeoutError("Cell execution timed out"),
                                 papermill.PapermillExecutionError(2, 3, "raise ValueError", "ValueError", "no", [])])
def test_timeouts_and_failing_cells_are_not_retried(tmp_path, monkeypatch, exc, probe_notebook):
    calls = []

    def fails(*args, **kwargs):
        calls.append(1)
        raise exc

    monkeypatch.setattr(papermill, "execute_notebook", fails)
    r = runner.run_notebook(probe_notebook, {"note": "x"}, reports=tmp_path, progress=False, build_index=False)
    assert not r.ok and len(calls) == 1 and r.failure in ("timeout", "cell")
