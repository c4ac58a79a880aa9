"""``lpulab sweep``: one notebook over many parameter sets, each set a report.

A grid file (YAML) says which sets to run::

    name: achieved              # optional; default: the grid file's name. Labels the report-ids.
    base_file: smoke            # optional; a parameter file: a path relative to the grid file, or
                                #   a name under notebooks/params/<notebook>/
    base:                       # optional; parameters fixed for every set (override base_file)
      tier: hbm
    grid:                       # a cartesian product: name -> list of values
      gpu_achieved: [0.5, 0.75, 1.0]
      reference_gpu: [nvidia-h100-sxm, nvidia-b200]
    sets:                       # and/or an explicit list of parameter sets
      - {lpu: groq-lpu-v1}
      - {lpu: groq-lpu-3}

With both ``grid`` and ``sets``, every set is combined with every grid point. A file whose top
level is a plain mapping of lists (no ``grid:`` key) is a grid; a top-level list is ``sets``.

Every set is checked against the notebook's declared parameters before anything runs. Sets
run in parallel worker processes (one per core by default), or on a Dask cluster given a
scheduler address. A set whose report already completed at this commit (same report-id,
status ok) is skipped, so a rerun resumes; failed ones run again. One failing set never stops
the others. A kernel that does not start is retried once (see :mod:`lpulab.report.runner`).

At the end the sweep writes ``reports/sweeps/<name>/``: ``results.csv`` (and
``results.parquet`` when pyarrow is installed), one row per set with the run's report-id and
status, the parameters as columns (named as the notebook names them), the recorded results
flattened with dotted names (``ratio_by_gpu.nvidia-b200``), and each verdict's fields
(``verdict.C1.estimate``). A result named like a parameter or a column above is prefixed with
``result.``. Lists are written as JSON text. ``sweep.json`` records the sweep itself. The
index (reports/index.html) is built once, after every set finished.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from .. import paths
from . import provenance
from .io import atomic_write_text, recover, replace_dir, tmp_name
from .params import ParameterError, check_parameters, declared_parameters, load_param_file, read_yaml
from .runner import read_status

RESERVED = ("name", "base", "base_file", "grid", "sets")
META = ("report_id", "status", "failure", "error", "failed_cell", "failed_cell_source", "attempts",
        "duration_s", "commit", "dirty")
_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Sweep:
    """A validated sweep: the full parameter sets (defaults filled) and what each one varies."""
    name: str
    notebook: Path
    sets: list[dict]
    varied: list[dict]
    grid_file: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class SweepResult:
    sweep: Sweep
    outcomes: list[dict]          # one per set, in the sweep's order
    folder: Path                  # reports/sweeps/<name>/
    tables: list[Path]
    index: Path | None
    interrupted: bool = False

    @property
    def ran(self) -> list[dict]:
        return [o for o in self.outcomes if not o.get("skipped")]

    @property
    def skipped(self) -> list[dict]:
        return [o for o in self.outcomes if o.get("skipped")]

    @property
    def failed(self) -> list[dict]:
        return [o for o in self.outcomes if o["status"] != "ok"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        s = self.sweep
        lines = [f"sweep {s.name}: {len(self.outcomes)} set(s) of {s.notebook.stem}; ran {len(self.ran)}, "
                 f"skipped {len(self.skipped)} already completed, {len(self.failed)} failed"]
        for o in self.failed:
            where = f"cell {o['failed_cell']}" if o.get("failed_cell") is not None else o.get("failure") or "run"
            if o.get("failed_cell_source"):
                where += f" ({o['failed_cell_source']})"
            varied = ", ".join(f"{k}={v!r}" for k, v in o.get("varied", {}).items()) or "base parameters"
            lines.append(f"  FAILED {o['report_id']} [{varied}]\n         {where}: {o.get('error', '')}")
        lines += [f"  note: {o['report_id']} {o['note']}" for o in self.outcomes if o.get("note")]
        lines += [f"table: {t}" for t in self.tables]
        if self.index:
            lines.append(f"index: {self.index}")
        return "\n".join(lines)


# --- reading and checking a grid ---------------------------------------------------------------

def _sweep_name(text: str) -> str:
    name = _NAME.sub("-", str(text)).strip("-.")
    if not name:
        raise ParameterError(f"sweep name {text!r} has no letters or digits")
    return name


def _base_file(ref, grid_file: Path | None, notebook: Path) -> dict:
    ref = str(ref)
    candidates = []
    if grid_file is not None:
        candidates.append(grid_file.parent / ref)
    candidates += [Path(ref), paths.PARAMS / notebook.stem / ref, paths.PARAMS / notebook.stem / f"{ref}.yaml"]
    for c in candidates:
        if c.is_file():
            return load_param_file(c)
    raise ParameterError(f"base_file {ref!r}: no such parameter file (looked in "
                         f"{', '.join(str(c) for c in candidates)})")


def expand(spec, where: str = "grid") -> tuple[dict, list[dict], dict]:
    """Split a grid spec into (base, list of varied sets, extra keys). Pure: no file access."""
    if isinstance(spec, list):
        spec = {"sets": spec}
    if not isinstance(spec, dict):
        raise ParameterError(f"{where}: expected a mapping (grid:, sets:, base:) or a list of parameter sets")
    if not any(k in spec for k in RESERVED):
        spec = {"grid": spec}
    unknown = sorted(set(spec) - set(RESERVED))
    if unknown:
        raise ParameterError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(RESERVED)} "
                             "(parameters go under grid:, sets: or base:)")
    base = spec.get("base") or {}
    if not isinstance(base, dict):
        raise ParameterError(f"{where}: base: must be a mapping of parameter names to values")
    grid = spec.get("grid") or {}
    if not isinstance(grid, dict):
        raise ParameterError(f"{where}: grid: must be a mapping of parameter names to lists of values")
    for k, v in grid.items():
        if not isinstance(v, list) or not v:
            raise ParameterError(f"{where}: grid value of {k!r} must be a non-empty list of values (got {v!r}); "
                                 "a value fixed for every set goes under base:")
    sets = spec.get("sets")
    if sets is None:
        sets = [{}]
    if not isinstance(sets, list) or not sets or not all(isinstance(s, dict) for s in sets):
        raise ParameterError(f"{where}: sets: must be a non-empty list of mappings (parameter name -> value)")
    if "grid" not in spec and "sets" not in spec:
        raise ParameterError(f"{where}: give grid: (a cartesian product) or sets: (a list), or both")
    names = list(grid)
    points = [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]
    varied = []
    for i, s in enumerate(sets):
        clash = sorted(set(s) & set(grid))
        if clash:
            raise ParameterError(f"{where}: set {i} and grid: both set {', '.join(clash)}")
        varied += [{**s, **p} for p in points]
    extra = {k: spec[k] for k in ("name", "base_file") if k in spec}
    return base, varied, extra


def load_sweep(notebook, grid, name: str | None = None) -> Sweep:
    """Read a grid file (path) or spec (mapping or list) and check every set; raise
    ParameterError listing every bad set before anything runs."""
    nb = paths.notebook(notebook)
    grid_file = None
    if isinstance(grid, (str, os.PathLike)):
        grid_file = Path(grid)
        spec = read_yaml(grid_file, "grid file")
        where = str(grid)
    else:
        spec, where = grid, "grid"
    base, varied, extra = expand(spec, where)
    fixed = dict(_base_file(extra["base_file"], grid_file, nb)) if "base_file" in extra else {}
    fixed.update(base)
    sweep_name = _sweep_name(name or extra.get("name") or (grid_file.stem if grid_file else "sweep"))
    declared = declared_parameters(nb)
    seen: dict[Any, Any]
    sets, kept, errors, seen, notes = [], [], [], {}, []
    for i, v in enumerate(varied):
        try:
            full = check_parameters(nb, {**fixed, **v})
        except ParameterError as exc:
            errors.append(f"  set {i} {v}: {exc}")
            continue
        key = provenance.canonical(full)
        if key in seen:
            notes.append(f"set {i} {v} repeats set {seen[key]}; it runs once")
            continue
        seen[key] = i
        sets.append({k: full[k] for k in declared})
        kept.append(v)
    if errors:
        head = errors[:20] + ([f"  ... and {len(errors) - 20} more"] if len(errors) > 20 else [])
        raise ParameterError(f"{where}: {len(errors)} of {len(varied)} parameter set(s) are invalid; nothing ran:\n"
                             + "\n".join(head))
    return Sweep(sweep_name, nb, sets, kept, grid_file, notes)


# --- running one set (in a worker process, local or on a Dask worker) ---------------------------

def _outcome_from_disk(folder: Path) -> dict:
    st = read_status(folder) or {"status": "failed", "error": "status.json cannot be read", "failure": "write"}
    out = {k: st.get(k) for k in META if k in st}
    out["report_id"] = folder.name
    res = folder / "results.json"
    out["results"], out["verdicts"] = {}, []
    if st.get("status") == "ok" and res.is_file():
        try:
            data = json.loads(res.read_text(encoding="utf-8"))
            out["results"], out["verdicts"] = data.get("results", {}), data.get("verdicts", [])
        except (OSError, ValueError):
            out.update(status="failed", error="results.json cannot be read", failure="write")
    return out


def run_set(task: dict) -> dict:
    """Run one parameter set into a report and say how it went. Never raises (but Ctrl-C).

    ``task``: notebook, params, label, sweep, reports (folder or None), timeout, ship, and
    plan (the run's :class:`~lpulab.report.runner.Plan`, for a worker on this machine). With
    ``ship`` the report is written to a scratch folder and returned as ``files`` (name ->
    bytes), for a worker that does not share the client's disk; it plans the run itself, at
    its own commit and with its own data files.
    """
    from .runner import run_notebook

    scratch = Path(tempfile.mkdtemp(prefix="lpulab-sweep-")) if task.get("ship") else None
    reports = scratch or Path(task["reports"])
    notebook = Path(task["notebook"])
    if not notebook.is_absolute():  # relative to the repository, wherever this worker has it
        notebook = paths.ROOT / notebook
    try:
        r = run_notebook(notebook, task["params"], label=task["label"], reports=reports,
                         timeout=task["timeout"], progress=task.get("progress", False), build_index=False,
                         extra_status={"sweep": task["sweep"]}, planned=None if scratch else task.get("plan"))
        out = _outcome_from_disk(r.path) if (r.path / "status.json").is_file() else {
            "report_id": r.report_id, "status": "failed", "failure": r.failure, "error": r.error,
            "results": {}, "verdicts": []}
        if scratch is not None:
            out["files"] = {str(q.relative_to(r.path)): q.read_bytes() for q in r.path.rglob("*") if q.is_file()}
    except Exception as exc:  # anything the runner did not turn into a failed report
        out = {"report_id": task.get("report_id", ""), "status": "failed", "failure": "error",
               "error": f"{type(exc).__name__}: {exc}", "results": {}, "verdicts": []}
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return out


def _receive(out: dict, reports: Path) -> None:
    """Write a report shipped back by a remote worker into reports/<id>/, whole or not at all."""
    files = out.pop("files", None)
    if not files:
        return
    tmp = reports / tmp_name(out["report_id"])
    try:
        for rel, data in files.items():
            q = tmp / rel
            q.parent.mkdir(parents=True, exist_ok=True)
            q.write_bytes(data)
        replace_dir(tmp, reports / out["report_id"])
    except OSError as exc:
        out.update(status="failed", failure="write", error=f"the shipped report could not be written: {exc}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _failed(task: dict, exc: BaseException) -> dict:
    return {"report_id": task["report_id"], "status": "failed", "failure": "worker",
            "error": f"{type(exc).__name__}: {exc}", "results": {}, "verdicts": []}


def _local(tasks: list[dict], workers: int, progress: bool = False):
    """Yield (task, outcome) as sets finish, in worker processes (Ctrl-C: see lpulab.report.batch)."""
    from . import batch

    stream = batch.parallel(run_set, tasks, workers, progress=progress)
    try:
        for t, out in stream:
            yield t, (_failed(t, out) if isinstance(out, BaseException) else out)
    finally:
        stream.close()  # on Ctrl-C or an early stop: the running sets are interrupted and waited for


def _dask(tasks: list[dict], scheduler, timeout_s: float = 30):
    """Yield (task, outcome) as sets finish, on a Dask cluster (address or Client)."""
    from distributed import Client, as_completed

    own = not hasattr(scheduler, "submit")
    client = Client(scheduler, timeout=timeout_s) if own else scheduler
    try:
        futures = {client.submit(run_set, t, key=f"lpulab-sweep-{t['report_id']}-{time.time_ns()}", pure=False): t
                   for t in tasks}
        try:
            for fut in as_completed(list(futures)):
                t = futures[fut]
                try:
                    yield t, fut.result()
                except Exception as exc:  # a worker that died or lost the task
                    yield t, _failed(t, exc)
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        if own:
            client.close()


def run_sweep(notebook, grid, *, name: str | None = None, reports: Path | None = None, workers: int | None = None,
              scheduler=None, timeout: int = 900, force: bool = False, progress: bool = True,
              build_index: bool = True) -> SweepResult:
    """Run every set of a sweep (see the module's doc); return what happened.

    ``workers``: local worker processes (default: one per core). ``scheduler``: a Dask
    scheduler address (``tcp://host:8786``) or a ``distributed.Client``; the sets then run on
    that cluster and each report comes back to ``reports``. ``force``: rerun completed sets.
    On Ctrl-C the sets that finished are written to the table and the index, and the result
    says ``interrupted``.
    """
    from tqdm.auto import tqdm

    from .runner import Plan, completed, non_default

    sweep = load_sweep(notebook, grid, name)
    reports = Path(reports or paths.reports_dir()).resolve()
    reports.mkdir(parents=True, exist_ok=True)
    recover(reports)
    git = provenance.git_state()
    commit = git["commit"]
    files = provenance.data_files()
    dhash = provenance.data_hash(files)
    stem = sweep.notebook.stem
    outcomes: list[dict | None] = [None] * len(sweep.sets)
    tasks = []
    for i, (params, _varied) in enumerate(zip(sweep.sets, sweep.varied)):
        rid = provenance.report_id(stem, sweep.name, params, commit, dhash, draft=bool(git.get("dirty")))
        planned = Plan(sweep.notebook, params, sweep.name, git, files, dhash, rid, non_default(sweep.notebook, params))
        if not force and completed(reports / rid, planned):
            outcomes[i] = {**_outcome_from_disk(reports / rid), "skipped": True}
            continue
        nb = sweep.notebook.relative_to(paths.ROOT) if sweep.notebook.is_relative_to(paths.ROOT) else sweep.notebook
        tasks.append({"i": i, "report_id": rid, "notebook": str(nb), "params": params,
                      "label": sweep.name, "sweep": sweep.name, "reports": str(reports), "timeout": timeout,
                      "ship": scheduler is not None, "plan": None if scheduler is not None else planned,
                      "desc": f"{sweep.name}[{i}]"})
    for note in sweep.notes:
        print(f"note: {note}", file=sys.stderr)
    interrupted = False
    if tasks:
        if scheduler is not None:
            stream = _dask(tasks, scheduler)
        else:
            stream = _local(tasks, max(1, min(workers or os.cpu_count() or 1, len(tasks))))
        bar = tqdm(total=len(sweep.sets), initial=len(sweep.sets) - len(tasks), desc=f"sweep {sweep.name}",
                   unit="run", disable=not progress, file=sys.stderr)
        failed = 0
        try:
            for task, out in stream:
                _receive(out, reports)
                if out.get("commit") and out["commit"] != commit:
                    out["note"] = f"ran at commit {out['commit'][:12]}, the client is at {commit[:12]}"
                outcomes[task["i"]] = out
                failed += out["status"] != "ok"
                bar.set_postfix(failed=failed)
                bar.update()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            stream.close()
            bar.close()
    for i, t in enumerate(outcomes):
        if t is None:  # interrupted before it finished
            rid = str(next(x["report_id"] for x in tasks if x["i"] == i))
            outcomes[i] = {"report_id": rid, "status": "not run", "failure": "interrupted",
                           "error": "the sweep was interrupted before this set finished", "results": {}, "verdicts": []}
    filled = cast("list[dict]", outcomes)   # every set has its outcome now
    for o, v in zip(filled, sweep.varied):
        o["varied"] = v
    folder = reports / "sweeps" / sweep.name
    tables = write_table(sweep, filled, folder)
    chart, alt = write_chart(sweep, filled, folder)
    atomic_write_text(folder / "sweep.json", json.dumps({
        "name": sweep.name, "notebook": stem, "grid_file": _shown(sweep.grid_file),
        "commit": commit, "data_hash": dhash, "dirty": bool(git.get("dirty")), "utc_time": provenance.utc_now(),
        "sets": len(filled), "ok": sum(o["status"] == "ok" for o in filled),
        "failed": sum(o["status"] != "ok" for o in filled), "interrupted": interrupted,
        "tables": [t.name for t in tables], "chart": chart.name if chart else None, "chart_alt": alt,
        "runs": [{"report_id": o["report_id"], "status": o["status"], "varied": o["varied"]} for o in filled],
    }, indent=2, default=str))
    index = None
    if build_index:
        from .index import build
        index = build(reports)
    return SweepResult(sweep, filled, folder, tables, index, interrupted)


def _shown(path: Path | None) -> str | None:
    """A grid file's path for the sweep's record: in the repository, or only its name."""
    if path is None:
        return None
    p = Path(path).resolve()
    return str(p.relative_to(paths.ROOT)) if p.is_relative_to(paths.ROOT) else p.name


# --- the tidy table ------------------------------------------------------------------------------

def flatten(d: dict, prefix: str = "") -> dict:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": 1, "c": "[1, 2]"}``: dotted names, lists as JSON."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = _cell(v)
    return out


def _cell(v):
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, default=str)
    return v


def table(sweep: Sweep, outcomes: list[dict]):
    """The sweep as a pandas DataFrame: one row per set (see the module's doc for columns)."""
    import pandas as pd

    rows = []
    for params, o in zip(sweep.sets, outcomes):
        row = {k: o.get(k) for k in META}
        taken = set(row) | set(params)
        row.update({k: _cell(v) for k, v in params.items()})
        for k, v in flatten(o.get("results") or {}).items():
            row[f"result.{k}" if k in taken else k] = v
        for v in o.get("verdicts") or []:
            for f in ("as_stated", "estimate", "low", "high", "reproduces", "holds", "tolerance"):
                row[f"verdict.{v['claim']}.{f}"] = v.get(f)
        rows.append(row)
    return pd.DataFrame(rows)


def _arrow_safe(df):
    """Object columns holding more than one type become text (Parquet columns have one type)."""
    df = df.copy()
    for c in df.columns:
        if df[c].dtype == object:
            kinds = {type(x) for x in df[c] if x is not None and x == x}
            if len(kinds) > 1:
                df[c] = [None if x is None or x != x else str(x) for x in df[c]]
    return df


def write_table(sweep: Sweep, outcomes: list[dict], folder: Path) -> list[Path]:
    """Write results.csv (always) and results.parquet (with pyarrow) under ``folder``."""
    df = table(sweep, outcomes)
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / "results.csv"
    atomic_write_text(csv, df.to_csv(index=False))
    out = [csv]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return out
    pq = folder / "results.parquet"
    tmp = folder / f".results.parquet.{os.getpid()}.tmp"
    _arrow_safe(df).to_parquet(tmp, index=False)
    os.replace(tmp, pq)
    out.append(pq)
    return out


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) != float("inf")


def chart_spec(sweep: Sweep, outcomes: list[dict]) -> dict | None:
    """What the sweep's chart shows: the swept metric (the first claim's best estimate with
    its band, else the first recorded number that varies) against the first varied numeric
    parameter (else one bar per set), one line per value of the next varied parameter."""
    ok = [(v, o) for v, o in zip(sweep.varied, outcomes) if o.get("status") == "ok"]
    if not ok:
        return None
    claims = [v.get("claim") for v in (ok[0][1].get("verdicts") or []) if isinstance(v, dict)]
    if claims:
        c = claims[0]
        verdict: Callable[[dict], dict] = lambda o: next((v for v in o.get("verdicts") or [] if v.get("claim") == c), {})  # noqa: E731
        ys = [(verdict(o).get("estimate"), verdict(o).get("low"), verdict(o).get("high")) for _, o in ok]
        metric = f"{c} best estimate (x), band as error bars"
    else:
        flat = [flatten(o.get("results") or {}) for _, o in ok]
        keys = [k for k in flat[0] if all(_number(f.get(k)) for f in flat) and len({f.get(k) for f in flat}) > 1]
        if not keys:
            return None
        ys = [(f[keys[0]], None, None) for f in flat]
        metric = keys[0]
    if not all(_number(y[0]) for y in ys):
        return None
    names = list(dict.fromkeys(k for v, _ in ok for k in v))
    numeric = [k for k in names if all(_number(v.get(k)) for v, _ in ok)]
    x = numeric[0] if numeric else None
    hue = next((k for k in names if k != x), None)
    return {"metric": metric, "x": x, "hue": hue, "points": [(v, y) for (v, _), y in zip(ok, ys)]}


def write_chart(sweep: Sweep, outcomes: list[dict], folder: Path) -> tuple[Path | None, str]:
    """A small PNG of the swept metric (see :func:`chart_spec`) next to the table, as
    ``chart.png``; (None, "") when there is nothing to draw."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    spec = chart_spec(sweep, outcomes)
    if spec is None:
        return None, ""
    fig = Figure(figsize=(4.8, 3.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    pts, x, hue = spec["points"], spec["x"], spec["hue"]
    if x is not None:
        groups: dict = {}
        for v, y in pts:
            groups.setdefault(json.dumps(v.get(hue), default=str) if hue else "", []).append((v[x], y))
        for g, rows in groups.items():
            rows.sort(key=lambda r: r[0])
            xs = [r[0] for r in rows]
            ys = [r[1][0] for r in rows]
            err = None
            if all(_number(r[1][1]) and _number(r[1][2]) for r in rows):
                err = [[max(0.0, y - r[1][1]) for y, r in zip(ys, rows)], [max(0.0, r[1][2] - y) for y, r in zip(ys, rows)]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=f"{hue}={g}" if hue else None)
        ax.set_xlabel(x)
        if hue and len(groups) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    else:
        labels = [", ".join(f"{k}={v[k]}" for k in v)[:30] or "base" for v, _ in pts]
        ax.bar(range(len(pts)), [y[0] for _, y in pts])
        ax.set_xticks(range(len(pts)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(spec["metric"], fontsize=8)
    ax.set_title(f"sweep {sweep.name}: {sweep.notebook.stem}", fontsize=9)
    ax.grid(alpha=0.3)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "chart.png"
    tmp = folder / f".chart.png.{os.getpid()}.tmp"
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    alt = f"{spec['metric']} against {x or 'the parameter sets'}" + (f", by {hue}" if hue and x else "")
    return out, alt
