"""``lpulab run``: execute a notebook with papermill into ``reports/<report-id>/``.

Parameters are checked against the notebook's declared ones first (nothing starts on a bad
parameter). The kernel is ``python3``, started in the repository root, with a cell timeout;
it talks to the runner over local sockets (IPC), and what it prints on its own stderr goes
to ``kernel.log`` in the report folder (kept only when not empty).

The report-id is the notebook, a label, and a hash of the parameters, the git commit and
every data file the run can read (:func:`lpulab.report.provenance.data_files`); a run from a
tree with uncommitted changes ends in ``-draft`` (a DRAFT report), so it never replaces a
clean one.

The run is built in a hidden temporary folder and moved into place when complete, so a
report folder is never half-written. A failing notebook keeps its executed copy (with the
error) and a ``status.json`` saying what failed and how (``failure``): ``cell`` (a cell
raised), ``timeout`` (a cell ran past the timeout), ``kernel`` (the kernel did not start or
died), ``no-results`` (the notebook never called ``record``), ``render`` (the report page
could not be made), ``write`` (a file could not be written: disk full, name too long). It gets
no report.html. A failed run never replaces a finished report of the same id: it is written
next to it as ``<id>-failed``.

A kernel that fails to start (or dies) is retried once with a fresh kernel. A failing cell is
never retried. Ctrl-C (SIGINT) stops the run: the kernel is shut down, the temporary folder
removed, and KeyboardInterrupt raised to the caller.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from . import provenance
from .cite import citation
from .io import atomic_write_text, read_status, recover, replace_dir, tmp_name
from .params import ParameterError, check_parameters, declared_parameters, load_param_file, short
from .record import MIME

KERNEL = "python3"
DEFAULT_TIMEOUT = 900  # seconds per cell
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
    failure: str = ""            # "", "cell", "timeout", "kernel", "no-results", "render" or "write"
    failed_cell: int | None = None  # index in the executed notebook
    failed_source: str = ""         # the first line of that cell
    attempts: int = 1
    commit: str = ""
    skipped: bool = False           # an identical run had already completed; nothing ran
    note: str = ""

    def __str__(self):
        if self.skipped:
            return f"{self.notebook} -> {self.path} [skipped: completed before, same inputs]"
        state = "ok" if self.ok else f"FAILED ({self.failure}): {self.error}"
        return f"{self.notebook} -> {self.path} [{state}] ({self.duration_s:.1f} s)" + (f"\n    {self.note}" if self.note else "")


class NotebookFailed(RuntimeError):
    pass


@dataclass
class Plan:
    """Everything that decides a run's report, known before any kernel starts."""
    notebook: Path
    params: dict
    label: str
    git: dict
    data_files: dict
    data_hash: str
    report_id: str
    non_default: dict

    @property
    def draft(self) -> bool:
        return bool(self.git.get("dirty"))


def check_label(label: str) -> str:
    """A label becomes part of a folder name: letters, digits, ``-``, ``_`` and ``.``, at most 64."""
    if not isinstance(label, str) or not LABEL.match(label):
        raise ParameterError(f"label {short(label, 80)}: use letters, digits, '-', '_' and '.', starting with a letter "
                             "or digit, at most 64 characters (it becomes part of the report's folder name)")
    return label


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


def non_default(notebook, params: dict) -> dict:
    """The parameters whose value differs from the notebook's own default."""
    decl = declared_parameters(notebook)
    return {k: v for k, v in params.items() if k in decl and v != decl[k].default}


def plan(notebook, parameters: dict | None = None, param_file=None, label: str | None = None,
         git: dict | None = None, data_files: dict | None = None) -> Plan:
    """Check a run's parameters and label and work out its report-id. Raises ParameterError."""
    nb_path = paths.notebook(notebook)
    params = resolve_parameters(nb_path, param_file, parameters)
    label = check_label(label or _label(param_file, parameters))
    git = git if git is not None else provenance.git_state()
    files = data_files if data_files is not None else provenance.data_files()
    dhash = provenance.data_hash(files)
    rid = provenance.report_id(nb_path.stem, label, params, git["commit"], dhash, draft=bool(git.get("dirty")))
    return Plan(nb_path, params, label, git, files, dhash, rid, non_default(nb_path, params))


def completed(folder: Path, p: Plan) -> bool:
    """Whether ``folder`` holds a finished report of exactly this run's inputs: status ok,
    the same commit, data files and DRAFT state (and, for a DRAFT, the same uncommitted
    changes). A rerun (``lpulab reproduce``, ``lpulab sweep``) skips such a run."""
    st = read_status(folder)
    if st is None or st.get("status") != "ok" or not (Path(folder) / "results.json").is_file():
        return False
    same = (st.get("commit") == p.git["commit"] and st.get("data_hash") == p.data_hash
            and bool(st.get("dirty")) == p.draft)
    if same and p.draft:
        same = st.get("fingerprint") == p.git.get("fingerprint")
    return same


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


def kernel_manager(log: Path | None):
    """A kernel manager class for one run: local sockets (IPC) rather than TCP ports, and the
    kernel's own stderr (its log lines: a shutdown's "KeyboardInterrupt caught") into ``log``."""
    import tempfile
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class RunKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self):
            return "ipc"

        @default("ip")
        def _ip_default(self):
            # jupyter_client's default is "kernel-ipc" in the working folder when asked early:
            # two kernels at once would share its sockets. One short path per kernel instead.
            return os.path.join(tempfile.gettempdir(), f"lpulab-kernel-{uuid.uuid4().hex[:16]}")

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            if log is not None:
                with open(log, "ab") as f:  # the child keeps its own copy of the descriptor
                    kw["stdout"] = kw["stderr"] = f
                    return await super()._async_launch_kernel(kernel_cmd, **kw)
            return await super()._async_launch_kernel(kernel_cmd, **kw)

    return RunKernelManager


def _execute(nb_path: Path, executed: Path, params: dict, timeout: int, progress):
    """One papermill execution: (error, failure kind, failed cell) with error "" on success.
    ``progress``: False, True, or tqdm options for papermill's progress bar."""
    import papermill

    try:
        papermill.execute_notebook(
            str(nb_path), str(executed), parameters=params, kernel_name=KERNEL, cwd=str(paths.ROOT),
            execution_timeout=timeout, progress_bar=progress, log_output=False, report_mode=False,
            kernel_manager_class=kernel_manager(executed.parent / "kernel.log"),
        )
    except Exception as exc:
        kind = classify(exc)
        if kind == "cell":
            return f"{exc.ename}: {exc.evalue}", kind, exc.cell_index  # type: ignore[attr-defined]  # papermill's cell error
        return f"{type(exc).__name__}: {exc}", kind, None
    return "", "", None


@contextlib.contextmanager
def _deferred_interrupts():
    """Hold Ctrl-C back while a folder is moved or removed, then deliver it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending = []
    previous = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            raise KeyboardInterrupt


def _rel(path: Path) -> str:
    return str(path.relative_to(paths.ROOT)) if path.is_relative_to(paths.ROOT) else str(path)


class _DeadKernelTasks(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" record for a kernel that died: a
    background task of the kernel client outlives the kernel (a Ctrl-C reaches the kernel and the
    runner at once), and the run itself already reports a dead kernel, with the notebook and
    cell, as a failed or interrupted run."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return type(exc).__name__ != "DeadKernelError"


_QUIET = _DeadKernelTasks()


def run_notebook(notebook, parameters: dict | None = None, param_file=None, *, label: str | None = None,
                 reports: Path | None = None, timeout: int = DEFAULT_TIMEOUT, progress=True,
                 build_index: bool = True, kernel_retries: int = 1, extra_status: dict | None = None,
                 skip_completed: bool = False, planned: Plan | None = None) -> RunResult:
    """Run one notebook into a report. Raises ParameterError before execution on bad input
    and KeyboardInterrupt on Ctrl-C (nothing left behind); otherwise returns a RunResult,
    with ``ok=False`` (and the executed copy kept) when the run failed in any way.

    ``kernel_retries``: how many times a kernel that failed to start (or died) is retried.
    ``extra_status``: more fields for ``status.json`` (a sweep names itself there).
    ``skip_completed``: return at once (``skipped=True``) when the same run already completed.
    ``planned``: the run's :class:`Plan`, when the caller made it already.
    """
    if _QUIET not in logging.getLogger("asyncio").filters:
        logging.getLogger("asyncio").addFilter(_QUIET)
    p = planned or plan(notebook, parameters, param_file, label)
    nb_path, params, rid = p.notebook, p.params, p.report_id
    reports = Path(reports or paths.reports_dir())
    reports.mkdir(parents=True, exist_ok=True)
    recover(reports)
    final = reports / rid
    if skip_completed and completed(final, p):
        st = read_status(final) or {}
        return RunResult(nb_path.stem, rid, final, True, params, verdicts=st.get("verdicts", []),
                         duration_s=0.0, commit=p.git["commit"], skipped=True)
    tmp = reports / tmp_name(rid)
    t0 = time.perf_counter()
    started = provenance.utc_now()
    attempts = 0
    try:
        tmp.mkdir()
        executed = tmp / "notebook.ipynb"
        while True:
            attempts += 1
            executed.unlink(missing_ok=True)
            error, failure, failed_cell = _execute(nb_path, executed, params, timeout, progress)
            if failure != "kernel" or attempts > kernel_retries:
                break
            time.sleep(0.5 * attempts)  # let a failed start settle before the next kernel starts
        duration = time.perf_counter() - t0
        status = {"notebook": nb_path.stem, "label": p.label, "report_id": rid, "commit": p.git["commit"],
                  "dirty": p.draft, "fingerprint": p.git.get("fingerprint"), "data_hash": p.data_hash,
                  "non_default": p.non_default, "utc_time": started, "duration_s": round(duration, 2),
                  "attempts": attempts, **(extra_status or {})}
        with _deferred_interrupts():
            result = _finish(p, reports, tmp, final, status, error, failure, failed_cell, duration, attempts, timeout)
    except OSError as exc:  # the temporary folder itself could not be made or written
        result = RunResult(nb_path.stem, rid, final, False, params, error=f"{type(exc).__name__}: {exc}",
                           duration_s=time.perf_counter() - t0, failure="write", attempts=attempts,
                           commit=p.git["commit"])
    finally:
        if tmp.exists():
            with _deferred_interrupts():
                shutil.rmtree(tmp, ignore_errors=True)
    if build_index:
        from .index import build
        build(reports)
    return result


def _finish(p: Plan, reports: Path, tmp: Path, final: Path, status: dict, error: str, failure: str,
            failed_cell, duration: float, attempts: int, timeout: int) -> RunResult:
    """Turn an executed notebook in ``tmp`` into a report at ``final`` (or a failed one); a
    failure here (rendering, a full disk) fails this report only."""
    nb_path, params, rid = p.notebook, p.params, p.report_id
    executed = tmp / "notebook.ipynb"
    log = tmp / "kernel.log"
    if log.is_file() and log.stat().st_size == 0:
        log.unlink()
    import nbformat  # here, not at the top: a rerun that skips every report never needs it (seconds to import)

    source = ""
    nb = None
    try:
        nb = nbformat.read(executed, as_version=4) if executed.is_file() else None
        payload = _extract(nb) if nb is not None and not error else None
        if not error and payload is None:
            error, failure = "the notebook ran but recorded no results (it must call lpulab.report.record)", "no-results"
        if error and nb is not None:
            idx, msg, source = _failure(nb)
            failed_cell = idx if idx is not None else failed_cell
            error = msg or error
    except (OSError, ValueError) as exc:  # an executed notebook that cannot be read back
        error, failure, payload = f"the executed notebook cannot be read: {type(exc).__name__}: {exc}", "write", None
    if not error:
        try:
            return _write_report(p, reports, tmp, final, status, nb, payload, duration, attempts, timeout)  # type: ignore[arg-type]  # no error: a payload
        except Exception as exc:  # rendering, or a file that cannot be written (disk full, name too long)
            failure = "write" if isinstance(exc, OSError) else "render"
            error = f"{'writing' if failure == 'write' else 'rendering'} the report failed: {type(exc).__name__}: {exc}"
            for name in ("report.html", "results.json", "provenance.json"):
                (tmp / name).unlink(missing_ok=True)
    status.update(status="failed", error=error, failure=failure, failed_cell=failed_cell,
                  failed_cell_source=source, verdicts=[])
    dest, note = final, ""
    if completed_ok(final):  # a finished report of this id is never replaced by a failed run
        dest = final.with_name(f"{rid}-failed")
        note = f"the finished report {rid} was kept; this failed run is in {dest.name}"
        status["failed_over"] = rid
    try:
        atomic_write_text(tmp / "status.json", json.dumps(status, indent=2, default=str))
        atomic_write_text(tmp / "parameters.json", json.dumps(params, indent=2, default=str))
        replace_dir(tmp, dest)
    except OSError as exc:  # not even the failure could be written: keep the executed notebook aside
        kept = reports / f".failed-{rid}-{time.time_ns()}"
        with contextlib.suppress(OSError):
            os.replace(tmp, kept)
        dest = kept if kept.exists() else dest
        note = f"the failure could not be recorded ({type(exc).__name__}: {exc}); executed notebook kept in {kept}"
    return RunResult(nb_path.stem, rid, dest, False, params, error=error, duration_s=duration, failure=failure,
                     failed_cell=failed_cell, failed_source=source, attempts=attempts, commit=p.git["commit"],
                     note=note)


def completed_ok(folder: Path) -> bool:
    st = read_status(folder)
    return st is not None and st.get("status") == "ok"


def _write_report(p: Plan, reports: Path, tmp: Path, final: Path, status: dict, nb, payload: dict,
                  duration: float, attempts: int, timeout: int) -> RunResult:
    from . import html

    nb_path, params, rid = p.notebook, p.params, p.report_id
    files_read = {provenance.display_path(k): v for k, v in (payload.get("files_read") or {}).items()}
    prov = {
        "report_id": rid, "title": html.notebook_title(nb), "notebook": _rel(nb_path),
        "notebook_sha256": provenance.sha256_file(nb_path), "label": p.label, "parameters": params,
        "non_default_parameters": p.non_default, "param_hash": provenance.param_hash(params),
        "git": {k: v for k, v in p.git.items() if k != "changed"} | {"changed": p.git.get("changed", [])[:20]},
        "versions": provenance.versions(), "data_files": files_read, "data_hash": p.data_hash,
        "data_files_hashed": p.data_files, "utc_time": status["utc_time"], "duration_s": round(duration, 2),
        "kernel": KERNEL, "cell_timeout_s": timeout, "platform": provenance.platform_info(),
    }
    cite = citation(rid, prov, prov["title"])
    atomic_write_text(tmp / "results.json", json.dumps(
        {"report_id": rid, "results": payload["results"], "verdicts": payload["verdicts"]}, indent=2))
    atomic_write_text(tmp / "provenance.json", json.dumps(prov, indent=2, default=str))
    atomic_write_text(tmp / "report.html", html.render(
        nb, report_id=rid, params=params, provenance=prov, verdicts=payload["verdicts"], cite=cite))
    headline = _headline(payload)
    status.update(status="ok", verdicts=payload["verdicts"], headline=headline)
    atomic_write_text(tmp / "status.json", json.dumps(status, indent=2, default=str))
    replace_dir(tmp, final)
    stale = final.with_name(f"{rid}-failed")
    if stale.is_dir():
        shutil.rmtree(stale, ignore_errors=True)
    return RunResult(nb_path.stem, rid, final, True, params, payload["results"], payload["verdicts"],
                     duration_s=duration, attempts=attempts, commit=p.git["commit"])


def _headline(payload: dict) -> dict | None:
    """The one number the index shows for a report: what the notebook named with
    ``record(..., headline=...)``, else its first verdict's best estimate."""
    h = payload.get("headline")
    if isinstance(h, dict) and h.get("name"):
        return h
    for v in payload.get("verdicts") or []:
        return {"name": f"{v['claim']} best estimate", "value": v["estimate"], "low": v["low"], "high": v["high"],
                "unit": "x", "holds": v.get("holds")}
    return None
