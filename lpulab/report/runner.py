"""``lpulab run``: execute a notebook with papermill into ``reports/<report-id>/``.

Parameters are checked against the notebook's declared ones first (nothing starts on a bad
parameter). The kernel is ``python3``, started in the repository root, with a cell timeout.
The run is built in a hidden temporary folder and moved into place when complete, so a
report folder is never half-written. A failing notebook keeps its executed copy (with the
error) and a ``status.json`` saying which cell failed and how (``failure``): ``cell`` (a cell
raised), ``timeout`` (a cell ran past the timeout), ``kernel`` (the kernel did not start or
died), ``no-results`` (the notebook never called ``record``). It gets no report.html.

A kernel that fails to start (or dies) is retried once with a fresh kernel: parallel runs can
race on the TCP ports jupyter_client picks for a kernel. A failing cell is never retried.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .. import paths
from . import html, provenance
from .cite import citation
from .io import atomic_write_text, replace_dir
from .params import check_parameters, load_param_file
from .record import MIME

KERNEL = "python3"
DEFAULT_TIMEOUT = 900  # seconds per cell


@dataclass
class RunResult:
    notebook: str
    report_id: str
    path: Path
    ok: bool
    params: dict
    results: dict = field(default_factory=dict)
    verdicts: list = field(default_factory=list)
    error: str = ""
    duration_s: float = 0.0
    failure: str = ""            # "", "cell", "timeout", "kernel" or "no-results"
    failed_cell: int | None = None  # index in the executed notebook
    failed_source: str = ""         # the first line of that cell
    attempts: int = 1
    commit: str = ""

    def __str__(self):
        state = "ok" if self.ok else f"FAILED: {self.error}"
        return f"{self.notebook} -> {self.path} [{state}] ({self.duration_s:.1f} s)"


class NotebookFailed(RuntimeError):
    pass


def resolve_parameters(notebook, param_file=None, overrides=None) -> dict:
    values = {}
    if param_file:
        values.update(load_param_file(param_file))
    values.update(overrides or {})
    return check_parameters(notebook, values)


def _label(param_file, overrides) -> str:
    if overrides:
        return "custom"
    if param_file:
        return Path(param_file).stem
    return "default"


def _extract(nb) -> dict | None:
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if MIME in data:
                payload = data[MIME]
                return json.loads(payload) if isinstance(payload, str) else payload
    return None


def _failure(nb) -> tuple[int | None, str, str]:
    """The index of the first failing cell (in the executed notebook), its error line and the
    first line of its source, so a person can find it."""
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
                return i, f"{out.get('ename')}: {out.get('evalue')}", first[:120]
    return None, "", ""


def classify(exc: BaseException) -> str:
    """How an execution failed: ``cell``, ``timeout`` or ``kernel`` (worth one retry)."""
    import papermill
    from nbclient.exceptions import CellTimeoutError

    if isinstance(exc, papermill.PapermillExecutionError):
        return "cell"
    if isinstance(exc, CellTimeoutError):
        return "timeout"
    # a kernel that never answered (RuntimeError "Kernel didn't respond"), died (DeadKernelError),
    # lost a port race (zmq "Address already in use") or could not be launched (OSError)
    return "kernel"


def _execute(nb_path: Path, executed: Path, params: dict, timeout: int, progress: bool):
    """One papermill execution: (error, failure kind, failed cell) with error "" on success."""
    import papermill

    try:
        papermill.execute_notebook(
            str(nb_path), str(executed), parameters=params, kernel_name=KERNEL, cwd=str(paths.ROOT),
            execution_timeout=timeout, progress_bar=progress, log_output=False, report_mode=False,
        )
    except Exception as exc:
        kind = classify(exc)
        if kind == "cell":
            return f"{exc.ename}: {exc.evalue}", kind, exc.cell_index
        return f"{type(exc).__name__}: {exc}", kind, None
    return "", "", None


def run_notebook(notebook, parameters: dict | None = None, param_file=None, *, label: str | None = None,
                 reports: Path | None = None, timeout: int = DEFAULT_TIMEOUT, progress: bool = True,
                 build_index: bool = True, kernel_retries: int = 1, extra_status: dict | None = None) -> RunResult:
    """Run one notebook into a report. Raises ParameterError before execution on bad input;
    returns a RunResult with ``ok=False`` (and keeps the executed copy) if a cell fails.

    ``kernel_retries``: how many times a kernel that failed to start (or died) is retried.
    ``extra_status``: more fields for ``status.json`` (a sweep names itself there).
    """

    nb_path = paths.notebook(notebook)
    params = resolve_parameters(nb_path, param_file, parameters)
    label = label or _label(param_file, parameters)
    git = provenance.git_state()
    rid = provenance.report_id(nb_path.stem, label, params, git["commit"])
    reports = Path(reports or paths.reports_dir())
    reports.mkdir(parents=True, exist_ok=True)
    final = reports / rid
    tmp = reports / f".tmp-{rid}-{time.time_ns()}"
    tmp.mkdir()
    executed = tmp / "notebook.ipynb"
    t0 = time.perf_counter()
    started = provenance.utc_now()
    attempts = 0
    while True:
        attempts += 1
        executed.unlink(missing_ok=True)
        error, failure, failed_cell = _execute(nb_path, executed, params, timeout, progress)
        if failure != "kernel" or attempts > kernel_retries:
            break
        time.sleep(0.5 * attempts)  # let a port race settle before the next kernel starts
    duration = time.perf_counter() - t0
    status = {"notebook": nb_path.stem, "label": label, "report_id": rid, "commit": git["commit"],
              "dirty": git["dirty"], "utc_time": started, "duration_s": round(duration, 2),
              "attempts": attempts, **(extra_status or {})}
    try:
        nb = nbformat.read(executed, as_version=4) if executed.is_file() else None
        payload = _extract(nb) if nb is not None and not error else None
        if not error and payload is None:
            error, failure = "the notebook ran but recorded no results (it must call lpulab.report.record)", "no-results"
        if error:
            source = ""
            if nb is not None:
                idx, msg, source = _failure(nb)
                failed_cell = idx if idx is not None else failed_cell
                error = msg or error
            status.update(status="failed", error=error, failure=failure, failed_cell=failed_cell,
                          failed_cell_source=source, verdicts=[])
            atomic_write_text(tmp / "status.json", json.dumps(status, indent=2))
            atomic_write_text(tmp / "parameters.json", json.dumps(params, indent=2, default=str))
            replace_dir(tmp, final)
            result = RunResult(nb_path.stem, rid, final, False, params, error=error, duration_s=duration,
                               failure=failure, failed_cell=failed_cell, failed_source=source, attempts=attempts,
                               commit=git["commit"])
        else:
            prov = {
                "report_id": rid, "title": html.notebook_title(nb), "notebook": str(nb_path.relative_to(paths.ROOT))
                if nb_path.is_relative_to(paths.ROOT) else str(nb_path),
                "notebook_sha256": provenance.sha256_file(nb_path), "label": label, "parameters": params,
                "param_hash": provenance.param_hash(params), "git": git, "versions": provenance.versions(),
                "data_files": payload.get("files_read", {}), "utc_time": started, "duration_s": round(duration, 2),
                "kernel": KERNEL, "cell_timeout_s": timeout, "platform": provenance.platform_info(),
            }
            cite = citation(rid, prov, prov["title"])
            atomic_write_text(tmp / "results.json", json.dumps(
                {"report_id": rid, "results": payload["results"], "verdicts": payload["verdicts"]}, indent=2))
            atomic_write_text(tmp / "provenance.json", json.dumps(prov, indent=2, default=str))
            atomic_write_text(tmp / "report.html", html.render(
                nb, report_id=rid, params=params, provenance=prov, verdicts=payload["verdicts"], cite=cite))
            status.update(status="ok", verdicts=payload["verdicts"])
            atomic_write_text(tmp / "status.json", json.dumps(status, indent=2))
            replace_dir(tmp, final)
            result = RunResult(nb_path.stem, rid, final, True, params, payload["results"], payload["verdicts"],
                               duration_s=duration, attempts=attempts, commit=git["commit"])
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    if build_index:
        from .index import build
        build(reports)
    return result
