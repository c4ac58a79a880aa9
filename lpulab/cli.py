"""The ``lpulab`` command: run notebooks into reports, reproduce everything, inspect the catalog."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import paths


def _params(ns) -> dict:
    from .report.params import parse_cli_value

    return {name: parse_cli_value(value) for name, value in (ns.param or [])}


def cmd_run(ns) -> int:
    from .report.index import build
    from .report.runner import run_notebook

    overrides = _params(ns)
    # check every notebook's parameters before any kernel starts
    from .report.runner import resolve_parameters

    for nb in ns.notebooks:
        resolve_parameters(nb, ns.file, overrides)
    results = []
    for i, nb in enumerate(ns.notebooks, 1):
        print(f"[{i}/{len(ns.notebooks)}] running {nb} ...", flush=True)
        r = run_notebook(nb, overrides or None, ns.file, label=ns.label, timeout=ns.timeout,
                         progress=not ns.quiet, build_index=False)
        print(f"    {r}", flush=True)
        results.append(r)
    index = build()
    print(f"index: {index}")
    return 0 if all(r.ok for r in results) else 1


def cmd_reproduce(ns) -> int:
    from .report.index import build
    from .report.runner import run_notebook

    notebooks = sorted(paths.NOTEBOOKS.glob("[0-9]*.ipynb"))
    failed = []
    for i, nb in enumerate(notebooks, 1):
        pfile = paths.PARAMS / nb.stem / f"{ns.params}.yaml"
        print(f"[{i}/{len(notebooks)}] {nb.stem} with {pfile.relative_to(paths.ROOT) if pfile.is_file() else 'its defaults'}", flush=True)
        r = run_notebook(nb, None, pfile if pfile.is_file() else None, label=ns.params, timeout=ns.timeout,
                         progress=not ns.quiet, build_index=False)
        print(f"    {r}", flush=True)
        if not r.ok:
            failed.append(r)
    index = build()
    print(f"\nreports: {paths.reports_dir()}\nindex:   {index}")
    if failed:
        print(f"{len(failed)} notebook(s) failed: " + ", ".join(r.notebook for r in failed), file=sys.stderr)
        return 1
    return 0


def cmd_sweep(ns) -> int:
    from .report.sweep import run_sweep

    r = run_sweep(ns.notebook, ns.grid, name=ns.name, workers=ns.jobs, scheduler=ns.scheduler,
                  timeout=ns.timeout, force=ns.force, progress=not ns.quiet)
    print(r.summary())
    return 0 if r.ok else 1


def cmd_catalog(ns) -> int:
    from . import catalog, units

    ok, errors = catalog.validate_all()
    if ns.validate:
        for e in errors:
            print(f"INVALID {e}", file=sys.stderr)
        print(f"{len(ok)} catalog file(s) valid, {len(errors)} invalid")
        return 1 if errors else 0
    rows = []
    for did in catalog.device_ids():
        try:
            d = catalog.load_device(did)
        except (catalog.CatalogError, KeyError) as exc:
            rows.append((did, f"INVALID: {exc}", "", "", ""))
            continue
        t = d.tier()
        cap = units.fmt(t.capacity.si, "GB") if t.capacity else "?"
        bw = units.fmt(t.bandwidth.si, "TB/s") if t.bandwidth else "?"
        peak = next((f"{units.fmt(d.compute[p].si, 'TFLOP/s')} {p}" for p in ("bf16", "fp16", "fp8", "int8", "fp32") if p in d.compute), "?")
        rows.append((did, d.name, f"{t.name} {cap}", bw, peak))
    widths = [max(len(str(r[i])) for r in rows + [("id", "name", "weights tier", "bandwidth", "peak")]) for i in range(5)]
    for r in [("id", "name", "weights tier", "bandwidth", "peak")] + rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    for e in errors:
        print(f"INVALID {e}", file=sys.stderr)
    return 1 if errors else 0


def cmd_params(ns) -> int:
    from .report.params import declared_parameters

    for d in declared_parameters(ns.notebook).values():
        tag = f"[{d.tag}{': ' + ', '.join(d.tag_arg) if d.tag_arg else ''}] " if d.tag else ""
        print(f"{d.name} = {d.default!r}  ({d.type_name}) {tag}{d.help}")
    return 0


def cmd_index(ns) -> int:
    from .report.index import build

    print(build())
    return 0


def cmd_cite(ns) -> int:
    from .report.cite import cite_report

    p = Path(ns.report)
    if not (p / "provenance.json").is_file():
        p = paths.reports_dir() / ns.report
    if not (p / "provenance.json").is_file():
        known = sorted(d.name for d in paths.reports_dir().glob("*/") if (d / "provenance.json").is_file())
        print(f"no finished report {ns.report!r}; reports: {', '.join(known) or 'none'}", file=sys.stderr)
        return 2
    c = cite_report(p)
    print(c["bibtex"] if ns.bibtex else c["plain"] if ns.plain else c["plain"] + "\n\n" + c["bibtex"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lpulab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run notebooks into reports/<report-id>/")
    r.add_argument("notebooks", nargs="+", help="notebook paths or stems, e.g. notebooks/01_bandwidth.ipynb")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter; VALUE is JSON when it parses (numbers, lists), else a string")
    r.add_argument("-f", "--file", help="YAML parameter file, e.g. notebooks/params/01_bandwidth/smoke.yaml")
    r.add_argument("--label", help="label in the report-id (default: the parameter file's name, 'custom' or 'default')")
    r.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("reproduce", help="run every notebook with its parameter set and build reports/index.html")
    rp.add_argument("--params", default="default", help="parameter set name under notebooks/params/<stem>/ (default: default)")
    rp.add_argument("--timeout", type=int, default=900)
    rp.add_argument("-q", "--quiet", action="store_true")
    rp.set_defaults(func=cmd_reproduce)

    sw = sub.add_parser("sweep", help="run a notebook over a grid of parameter sets, each a report, in parallel",
                        description="Run NOTEBOOK once per parameter set of GRID (a cartesian product and/or a "
                        "list; see lpulab/report/sweep.py), skip sets already completed at this commit, and write "
                        "reports/sweeps/<name>/results.csv (+ .parquet). Exit status 0 when every set passed.")
    sw.add_argument("notebook", help="notebook path or stem, e.g. 01_bandwidth")
    sw.add_argument("-g", "--grid", required=True, help="YAML grid file, e.g. notebooks/params/01_bandwidth/sweep-achieved.yaml")
    sw.add_argument("-j", "--jobs", type=int, help="worker processes (default: one per core)")
    sw.add_argument("--scheduler", help="run on a Dask cluster at this address, e.g. tcp://10.0.0.5:8786")
    sw.add_argument("--name", help="sweep name (default: the grid's name: or the file's name)")
    sw.add_argument("--force", action="store_true", help="rerun sets that already completed")
    sw.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    c = sub.add_parser("catalog", help="list devices; --validate checks every catalog file")
    c.add_argument("--validate", action="store_true")
    c.set_defaults(func=cmd_catalog)

    p = sub.add_parser("params", help="show a notebook's declared parameters")
    p.add_argument("notebook")
    p.set_defaults(func=cmd_params)

    i = sub.add_parser("index", help="rebuild reports/index.html and reports/claims.json")
    i.set_defaults(func=cmd_index)

    ct = sub.add_parser("cite", help="print how to cite a report (plain text and BibTeX)")
    ct.add_argument("report", help="report-id or report folder")
    g = ct.add_mutually_exclusive_group()
    g.add_argument("--bibtex", action="store_true")
    g.add_argument("--plain", action="store_true")
    ct.set_defaults(func=cmd_cite)
    return ap


def main(argv=None) -> int:
    from .catalog import CatalogError
    from .report.params import ParameterError

    ns = build_parser().parse_args(argv)
    try:
        return ns.func(ns)
    except (ParameterError, CatalogError, FileNotFoundError, KeyError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"lpulab {ns.cmd}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
