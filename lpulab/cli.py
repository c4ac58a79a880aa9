"""The ``lpulab`` command: run notebooks into reports, reproduce everything, inspect the catalog.

Every command takes ``--data DIR`` (repeatable): user data folders shaped like ``data/``
(``hardware/``, ``models/``, ``prices/``, ``measurements/``) that overlay the shipped
catalog. They are passed as ``LPULAB_DATA`` (joined with ``os.pathsep``) to this process and
to every kernel it starts. ``run``, ``reproduce`` and ``sweep`` check every parameter and
validate the whole catalog, user folders included, before any kernel starts.

Exit status: 0 done, 1 a run failed, 2 bad input (nothing ran), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import paths

DEBUG_ENV = "LPULAB_DEBUG"


def _params(ns) -> dict:
    from .report.params import parse_cli_value

    return {name: parse_cli_value(value) for name, value in (ns.param or [])}


def _say(msg: str, err: bool = False) -> None:
    """A line of output that does not break progress bars drawn meanwhile."""
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr if err else sys.stdout)
    (sys.stderr if err else sys.stdout).flush()


def validate_catalog() -> None:
    """Refuse to start any kernel on a broken catalog: every problem, every file."""
    from . import catalog

    _, errors = catalog.validate_all()
    if errors:
        lines = "\n".join(f"  {e}" for e in errors)
        raise catalog.CatalogError(f"the catalog has {len(errors)} problem(s); nothing ran (check with "
                                   f"`lpulab catalog --validate`):\n{lines}")


def _jobs(ns, n: int) -> int:
    cores = os.cpu_count() or 1
    if ns.jobs is not None and ns.jobs < 1:
        from .report.params import ParameterError
        raise ParameterError(f"-j {ns.jobs}: give a number of notebooks to run at once, 1 to {cores}")
    return max(1, min(ns.jobs or 1, cores, n))


def _run_batch(plans, ns, *, skip_completed: bool) -> tuple[list, bool]:
    """Run planned notebooks (in parallel with -j), print each one's outcome; returns
    (results, interrupted). The index is rebuilt at the end whatever happened."""
    from .report import batch
    from .report.index import build
    from .report.runner import run_notebook

    reports = paths.reports_dir()
    n = len(plans)
    workers = _jobs(ns, n)
    tty = sys.stderr.isatty() and not ns.quiet
    results, interrupted = [], False
    order = {p.report_id: i for i, p in enumerate(plans, 1)}

    def report(r):
        results.append(r)
        i = order.get(r.report_id, len(results))
        _say(f"[{i}/{n}] {r}")

    try:
        if workers == 1:
            for i, p in enumerate(plans, 1):
                if not (skip_completed and _done(reports, p)):
                    _say(f"[{i}/{n}] {p.notebook.stem}: running ({p.report_id})")
                report(run_notebook(p.notebook, planned=p, reports=reports, timeout=ns.timeout,
                                    progress={"desc": p.notebook.stem, "leave": False} if tty else False,
                                    build_index=False, skip_completed=skip_completed))
        else:
            tasks = []
            for p in plans:
                if skip_completed and _done(reports, p):
                    report(run_notebook(p.notebook, planned=p, reports=reports, build_index=False, skip_completed=True))
                    continue
                tasks.append({"notebook": str(p.notebook), "plan": p, "reports": str(reports), "timeout": ns.timeout,
                              "skip_completed": skip_completed, "desc": p.notebook.stem})
            if tasks:
                _say(f"running {len(tasks)} notebook(s), {min(workers, len(tasks))} at a time: "
                     + ", ".join(t["desc"] for t in tasks))
            stream = batch.parallel(batch.run_one, tasks, workers, progress=tty) if tasks else iter(())
            try:
                for task, r in stream:
                    if isinstance(r, BaseException):
                        from .report.runner import RunResult
                        p = task["plan"]
                        r = RunResult(p.notebook.stem, p.report_id, reports / p.report_id, False, p.params,
                                      error=f"the worker process failed: {type(r).__name__}: {r}", failure="worker",
                                      commit=p.git["commit"])
                    report(r)
            finally:
                close = getattr(stream, "close", None)
                if close:
                    close()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            index = build(reports)
            _say(f"index: {index}")
        except KeyboardInterrupt:
            interrupted = True
        except OSError as exc:
            _say(f"the index could not be written: {exc}", err=True)
    return results, interrupted


def _done(reports: Path, p) -> bool:
    from .report.runner import completed

    return completed(reports / p.report_id, p)


def _summary(results, interrupted: bool, total: int) -> int:
    ran = [r for r in results if not r.skipped]
    skipped = [r for r in results if r.skipped]
    failed = [r for r in results if not r.ok]
    parts = [f"ran {len(ran)}", f"skipped {len(skipped)} (completed before with the same inputs; --force reruns)"
             if skipped else None, f"failed {len(failed)}" if failed else None,
             f"not run {total - len(results)}" if total > len(results) else None]
    _say("done: " + ", ".join(x for x in parts if x))
    for r in failed:
        _say(f"  FAILED {r.notebook} ({r.failure}): {r.error}" + (f"\n         {r.note}" if r.note else ""), err=True)
    if interrupted:
        _say("interrupted: the reports that finished are kept, the others left nothing behind", err=True)
        return 130
    return 1 if failed else 0


def cmd_run(ns) -> int:
    from .report.runner import plan

    overrides = _params(ns)
    # every notebook's parameters and the catalog are checked before any kernel starts
    plans = [plan(nb, overrides or None, ns.file, ns.label) for nb in ns.notebooks]
    validate_catalog()
    results, interrupted = _run_batch(plans, ns, skip_completed=False)
    return _summary(results, interrupted, len(plans))


def _param_sets() -> dict[str, list[str]]:
    """Parameter set name -> notebooks that have it."""
    out: dict[str, list[str]] = {}
    for f in sorted(paths.PARAMS.glob("*/*.yaml")):
        out.setdefault(f.stem, []).append(f.parent.name)
    return out


def cmd_reproduce(ns) -> int:
    from .report.params import ParameterError
    from .report.runner import plan

    notebooks = ([paths.notebook(n) for n in ns.notebooks] if ns.notebooks
                 else sorted(paths.NOTEBOOKS.glob("[0-9]*.ipynb")))
    sets = _param_sets()
    name = ns.params
    have = [nb for nb in notebooks if (paths.PARAMS / nb.stem / f"{name}.yaml").is_file()]
    if name != "default" and not have:
        common = sorted(k for k, nbs in sets.items() if all(nb.stem in nbs for nb in notebooks))
        some = sorted(k for k in sets if k not in common)
        raise ParameterError(f"--params {name!r}: no notebook has a parameter set of that name; sets of every notebook: "
                             f"{', '.join(common) or 'none'}" + (f"; of some: {', '.join(some)}" if some else ""))
    plans = []
    for nb in notebooks:
        pfile = paths.PARAMS / nb.stem / f"{name}.yaml"
        if pfile.is_file():
            plans.append(plan(nb, None, pfile, name))
        else:
            if name != "default":
                _say(f"note: {nb.stem} has no parameter set {name!r}; it runs with its defaults", err=True)
            plans.append(plan(nb, None, None, "default"))
    validate_catalog()
    t0 = time.perf_counter()
    results, interrupted = _run_batch(plans, ns, skip_completed=not ns.force)
    rc = _summary(results, interrupted, len(plans))
    _say(f"reports: {paths.reports_dir()} ({time.perf_counter() - t0:.1f} s)")
    return rc


def cmd_sweep(ns) -> int:
    from .report.sweep import load_sweep, run_sweep

    load_sweep(ns.notebook, ns.grid, ns.name)  # every set checked before the catalog and any kernel
    validate_catalog()
    r = run_sweep(ns.notebook, ns.grid, name=ns.name, workers=ns.jobs, scheduler=ns.scheduler,
                  timeout=ns.timeout, force=ns.force, progress=not ns.quiet)
    print(r.summary())
    if r.interrupted:
        print("interrupted: the sets that finished are in the table, the others left nothing behind", file=sys.stderr)
        return 130
    return 0 if r.ok else 1


def cmd_catalog(ns) -> int:
    from . import catalog, units

    ok, errors = catalog.validate_all()
    if ns.validate:
        for e in errors:
            print(f"INVALID {e}", file=sys.stderr)
        print(f"{len(ok)} catalog file(s) valid, {len(errors)} problem(s)")
        return 1 if errors else 0
    rows = []
    for did in catalog.device_ids():
        try:
            d = catalog.load_device(did)
        except (catalog.CatalogError, KeyError) as exc:
            rows.append((did, f"INVALID: {str(exc).splitlines()[0]}", "", "", ""))
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
    from .report.cite import cite_report, find_report

    c = cite_report(find_report(ns.report), url_template=ns.url_template)
    fmt = ns.format or ("bibtex" if ns.bibtex else "plain" if ns.plain else "csl-json" if ns.csl_json else "all")
    if fmt == "all":
        print(c["plain"] + "\n\n" + c["bibtex"])
    else:
        print({"plain": c["plain"], "bibtex": c["bibtex"], "csl-json": c["csl_json"]}[fmt])
    return 0


def cmd_predict(ns) -> int:
    """One operating point through the calibrated serving model (:func:`lpulab.speed.forecast`)."""
    import json

    import numpy as np

    from . import catalog, perf, speed, workload
    from .parallel import Layout
    from .report.params import ParameterError

    model, device = catalog.load_model(ns.model), catalog.load_device(ns.device)
    prec = workload.Precision.of(ns.precision)
    if ns.tensor is None and ns.pipeline is None and ns.expert in (None, 1):
        if ns.replicas not in (None, 1):
            raise ParameterError("--replicas needs --tensor and/or --pipeline (the layout of one copy)")
        conc0 = 1 if ns.concurrency == "max" else int(ns.concurrency)
        layout = speed.sram_layout(model, device, prec, conc0, ns.prompt + ns.output)
        layout_note = "layout: the fewest chips that hold the model (no --tensor/--pipeline given)"
    else:
        layout = Layout(ns.replicas or 1, ns.tensor or 1, ns.pipeline or 1, ns.expert or 1)
        layout_note = ""
    dep = perf.Deployment(device, layout, prec)
    if ns.concurrency == "max":
        conc = perf.max_concurrency(model, dep, ns.prompt + ns.output)
        if conc < 1:
            raise ParameterError(f"{model.id} does not fit {device.id} in {layout.label()} at {prec.label()}")
    else:
        try:
            conc = int(ns.concurrency)
        except ValueError:
            raise ParameterError(f"--concurrency {ns.concurrency!r}: a whole number of streams >= 1, or 'max'") from None
        if conc < 1:
            raise ParameterError(f"--concurrency {conc}: a whole number of streams >= 1, or 'max'")
    spec = _speculation(ns, model)
    prefill = _prefill(ns, model)
    link = _kv_link(ns) if prefill is not None else None
    if prefill is None and (ns.kv_link_bandwidth is not None or ns.kv_link_latency is not None):
        raise ParameterError("--kv-link-bandwidth/--kv-link-latency need --prefill-on DEVICE (a disaggregated split)")
    f = speed.forecast(model, dep, conc, ns.prompt, ns.output, speculation=spec, prefill=prefill, link=link)
    p = f.prediction
    out = {"model": model.id, "device": device.id, "layout": layout.to_dict(), "precision": prec.label(),
           "concurrency": conc, "prompt": ns.prompt, "output": ns.output}
    for m in ("ttft_s", "tpot_s", "per_user_tok_s", "aggregate_tok_s"):
        iv = f.intervals[m]
        out[m], out[f"{m}_low"], out[f"{m}_high"] = (float(np.asarray(x)) for x in (iv.value, iv.low, iv.high))
    out.update(bound=str(np.asarray(p.bound).item()), fits=bool(np.asarray(p.fits).item()), calibrated=f.calibrated,
               side=f.side, notes=[n for n in (layout_note, *f.notes) if n])
    if p.extra:
        d = p.to_dict()
        out.update({k: d[k] for k in p.extra})
        out["chips"] = int(p.chips)
    if ns.json:
        print(json.dumps(out, indent=2))
        return 0
    rows = [("time to first token", "ttft_s", "s"), ("time per output token", "tpot_s", "s"),
            ("per-user speed", "per_user_tok_s", "tok/s"), ("aggregate", "aggregate_tok_s", "tok/s")]
    from .report import fmt

    print(f"{model.id} on {device.id} {layout.label()} ({prec.label()}), {conc} stream(s), "
          f"{ns.prompt} in / {ns.output} out")
    for label, k, unit in rows:
        print(f"  {label:24s} {fmt.number(out[k])} {unit}  [95 % interval {fmt.number(out[k + '_low'])} to "
              f"{fmt.number(out[k + '_high'])}]")
    print(f"  bound by {out['bound']}; fits in memory: {'yes' if out['fits'] else 'no'}")
    if spec is not None:
        print(f"  speculative: {out['spec_tokens_per_step']:.3f} tokens per verification step; verify "
              f"{fmt.number(out['verify_s'])} s + draft {fmt.number(out['draft_s'])} s per round; speed-up over plain "
              f"decoding {out['speedup_per_user']:.2f}x per user, {out['speedup_aggregate']:.2f}x aggregate; draft on "
              f"{'the target' if out['draft_colocated'] else str(out['draft_chips']) + ' own'} chips")
    if prefill is not None:
        print(f"  disaggregated: prefill {fmt.number(out['prefill_s'])} s on {out['prefill_deployment']} + KV transfer "
              f"{fmt.number(out['kv_transfer_s'])} s ({fmt.number(out['kv_bytes'] / 1e6)} MB); chips: "
              f"{out['prefill_chips']} prefill + {out['decode_chips']} decode; prefill load {out['prefill_load']:.2f}")
    for n in out["notes"]:
        print(f"  note: {n}")
    return 0


def _speculation(ns, model):
    """``--draft MODEL`` or ``--mtp`` with ``--spec-k`` / ``--spec-accept`` (defaults:
    data/serving.toml), or None when speculative decoding is not asked for."""
    from . import catalog, speculative
    from .parallel import Layout
    from .report.params import ParameterError

    if ns.draft is None and not ns.mtp:
        if any(v is not None for v in (ns.spec_k, ns.spec_accept, ns.draft_tensor, ns.draft_pipeline)):
            raise ParameterError("--spec-k/--spec-accept/--draft-tensor/--draft-pipeline need a drafter: --draft MODEL "
                                 "(a catalog model of the same vocabulary) or --mtp (the model's own "
                                 "multi-token-prediction heads)")
        return None
    if ns.draft is not None and ns.mtp:
        raise ParameterError("--draft and --mtp: give one drafter, not both")
    if ns.spec_k is not None and ns.spec_k < 1:
        raise ParameterError(f"--spec-k {ns.spec_k}: the draft length is a whole number of tokens >= 1 (leave the "
                             "speculative options out for plain decoding)")
    if ns.spec_accept is not None and not 0.0 <= ns.spec_accept <= 1.0:
        raise ParameterError(f"--spec-accept {ns.spec_accept}: the per-token acceptance probability alpha lies in "
                             "[0, 1]")
    method = "mtp" if ns.mtp else "draft"
    if ns.mtp and not model.mtp_layers:
        raise ParameterError(f"--mtp: {model.id} has no multi-token-prediction heads (mtp_layers is 0 in its model "
                             "file); use --draft MODEL instead")
    draft = None
    if ns.draft is not None:
        try:
            draft = catalog.load_model(ns.draft)
        except KeyError as exc:
            raise ParameterError(f"--draft {ns.draft}: {exc.args[0] if exc.args else exc}") from None
    k0, a0 = speculative.default(method)
    draft_layout = None
    if ns.draft_tensor is not None or ns.draft_pipeline is not None:
        for opt, v in (("--draft-tensor", ns.draft_tensor), ("--draft-pipeline", ns.draft_pipeline)):
            if v is not None and v < 1:
                raise ParameterError(f"{opt} {v}: a whole number of chips >= 1")
        draft_layout = Layout(1, ns.draft_tensor or 1, ns.draft_pipeline or 1)
    try:
        spec = speculative.Speculation(ns.spec_k if ns.spec_k is not None else k0,
                                       ns.spec_accept if ns.spec_accept is not None else a0, draft,
                                       draft_layout=draft_layout)
        spec.check(model)
    except speculative.SpeculationError as exc:
        raise ParameterError(f"{'--mtp' if ns.mtp else '--draft ' + ns.draft}: {exc}") from None
    return spec


def _prefill(ns, model):
    """``--prefill-on DEVICE`` (+ layout and precision): the prefill side's deployment."""
    from . import catalog, perf, speed, workload
    from .parallel import Layout
    from .report.params import ParameterError

    given = [o for o, v in (("--prefill-tensor", ns.prefill_tensor), ("--prefill-pipeline", ns.prefill_pipeline),
                            ("--prefill-replicas", ns.prefill_replicas), ("--prefill-precision", ns.prefill_precision))
             if v is not None]
    if ns.prefill_on is None:
        if given:
            raise ParameterError(f"{', '.join(given)} need --prefill-on DEVICE (the device that prefills)")
        return None
    try:
        device = catalog.load_device(ns.prefill_on)
    except KeyError as exc:
        raise ParameterError(f"--prefill-on {ns.prefill_on}: {exc.args[0] if exc.args else exc}") from None
    prec = workload.Precision.of(ns.prefill_precision or ns.precision)
    try:
        if ns.prefill_tensor is None and ns.prefill_pipeline is None:
            layout = speed.sram_layout(model, device, prec, 1, ns.prompt)
            layout = Layout(ns.prefill_replicas or 1, layout.tensor, layout.pipeline)
        else:
            layout = Layout(ns.prefill_replicas or 1, ns.prefill_tensor or 1, ns.prefill_pipeline or 1)
        return perf.Deployment(device, layout, prec)
    except (perf.PerfError, speed.SpeedError, ValueError) as exc:
        raise ParameterError(f"--prefill-on {ns.prefill_on}: {exc}") from None


def _kv_link(ns):
    from . import disaggregated
    from .report.params import ParameterError

    base = disaggregated.KVLink.default()
    bw = base.bandwidth if ns.kv_link_bandwidth is None else ns.kv_link_bandwidth * 1e9
    lat = base.latency if ns.kv_link_latency is None else ns.kv_link_latency * 1e-6
    try:
        return disaggregated.KVLink(bw, lat)
    except disaggregated.DisaggregationError as exc:
        opt = "--kv-link-bandwidth (GB/s > 0)" if "bandwidth" in str(exc) else "--kv-link-latency (us >= 0)"
        raise ParameterError(f"{opt}: {exc}") from None


def _targets(values) -> object:
    """``--targets``: ``LO:HI[:N]`` (N log-spaced, default 50) or the speeds themselves."""
    from .frontier import FrontierError

    text = " ".join(values or [])
    if not text:
        return (5.0, 1000.0, 50)
    try:
        if ":" in text:
            parts = list(text.split(":"))
            if len(parts) not in (2, 3):
                raise ValueError
            return (float(parts[0]), float(parts[1]), int(parts[2]) if len(parts) == 3 else 50)
        return [float(x) for x in text.replace(",", " ").split()]
    except ValueError:
        raise FrontierError(f"--targets {text!r}: give LO:HI[:N] (N speeds log-spaced, default 50) or the speeds "
                            "themselves (tokens/s per user), e.g. --targets 10:2000:40 or --targets 20 50 100") from None


def cmd_frontier(ns) -> int:
    """Each platform's cheapest configuration per speed target (:func:`lpulab.frontier.analyse`,
    point values: calibrated knobs, the price sheets' values)."""
    import json

    import numpy as np

    from . import frontier
    from .report import fmt
    from .report.record import jsonable

    if ns.ttft is not None and not (ns.ttft > 0 and np.isfinite(ns.ttft)):
        raise frontier.FrontierError(f"--ttft {ns.ttft}: a time-to-first-token limit in seconds > 0")
    r = frontier.analyse(ns.model, ns.devices, targets=_targets(ns.targets), ttft_limit=ns.ttft, prompt=ns.prompt,
                         output=ns.output, site=ns.site, samples=0, with_measured=False)
    best = r.curve("usd_per_mtok")
    if ns.json:
        cols = ["target_tok_s", "feasible", "layout", "replicas", "tensor", "pipeline", "expert", "speculative",
                "precision", "concurrency",
                "chips", "chips_deployed", "units", "price_sheet", "per_user_tok_s", "aggregate_tok_s", "ttft_s",
                "usd_per_mtok", "joules_per_token"]
        f = r.frontier[r.frontier.objective == "usd_per_mtok"]
        out = {"model": r.model, "prompt": r.prompt, "output": r.output, "ttft_limit_s": r.ttft_limit,
               "targets_tok_s": [float(x) for x in r.targets], "objective": "usd_per_mtok",
               "platforms": [p.to_dict() | {"cheapest": [{k: v for k, v in row.items() if k in cols}
                                                         for row in f[f.platform == p.label].to_dict(orient="records")]}
                             for p in r.platforms],
               "skipped": [{"platform": p, "why": w} for p, w in r.skipped],
               "crossover": r.crossover.to_dict() if r.crossover else None}
        print(json.dumps(jsonable(out), indent=1))
        return 0
    print(f"{r.model}, {r.prompt} in / {r.output} out" + (f", TTFT at most {fmt.duration(r.ttft_limit)}" if r.ttft_limit
                                                           else "") + ": the cheapest configuration per speed target "
          "(calibrated serving model, price sheets at their values)")
    for p in r.platforms:
        rows = best[best.platform == p.label]
        print(f"\n{p.label} ({p.side} side; {p.sheet}: {p.chips_per_unit} chip(s) per priced unit, deployed in units of "
              f"{p.unit_chips} chips)")
        if rows.empty:
            print("  meets none of the targets")
            continue
        head = ("target tok/s", "layout", "speculative", "streams", "chips", "units", "tok/s/user", "TTFT", "USD/Mtok",
                "J/token")
        body = [(fmt.number(x.target_tok_s), x.layout, x.speculative, fmt.count(x.concurrency), fmt.count(x.chips), fmt.count(x.units),
                 fmt.number(x.per_user_tok_s), fmt.duration(x.ttft_s), fmt.number(x.usd_per_mtok),
                 fmt.number(x.joules_per_token)) for x in rows.itertuples()]
        w = [max(len(str(c)) for c in col) for col in zip(head, *body)]
        for line in (head, *body):
            print("  " + "  ".join(str(c).rjust(n) for c, n in zip(line, w)))
        missed = len(r.targets) - len(rows)
        if missed:
            print(f"  ({missed} faster target(s) out of reach)")
    for plat, why in r.skipped:
        print(f"\nleft out: {plat}: {why}")
    if r.crossover is not None:
        print(f"\ncrossover ({r.crossover.sram_platform} against {r.crossover.gpu_platform}): {r.crossover.text()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", action="append", metavar="DIR", default=None,
                      help="a user data folder (hardware/, models/, prices/, measurements/) over the shipped data/; "
                           "repeatable, the first wins; sets LPULAB_DATA for this command and its kernels")

    ap = argparse.ArgumentParser(prog="lpulab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", metavar="DIR", dest="data_top", default=None,
                    help="a user data folder (see the commands' --data)")
    sub = ap.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", parents=[data], help="run notebooks into reports/<report-id>/")
    r.add_argument("notebooks", nargs="+", help="notebook paths or stems, e.g. notebooks/01_bandwidth.ipynb")
    r.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a parameter; VALUE is JSON when it parses (numbers, lists), else a string")
    r.add_argument("-f", "--file", help="YAML parameter file, e.g. notebooks/params/01_bandwidth/smoke.yaml")
    r.add_argument("--label", help="label in the report-id (default: the parameter file's name, 'custom' or 'default'); "
                                   "letters, digits, '-', '_', '.'")
    r.add_argument("-j", "--jobs", type=int, help="notebooks run at once (default 1; at most the core count)")
    r.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("reproduce", parents=[data],
                        help="run every notebook with its parameter set and build reports/index.html",
                        description="Run every notebook (or those named) with the parameter set --params, skipping "
                        "each whose report already completed with the same inputs (notebook, parameters, commit, data "
                        "files, DRAFT state); --force reruns them. Then rebuild reports/index.html.")
    rp.add_argument("notebooks", nargs="*", help="notebooks to run (default: every numbered notebook)")
    rp.add_argument("--params", default="default", help="parameter set name under notebooks/params/<stem>/ (default: default)")
    rp.add_argument("-j", "--jobs", type=int,
                    help="notebooks run at once (default 1: 05_kernels measures this machine, which parallel runs "
                         "disturb; at most the core count)")
    rp.add_argument("--force", action="store_true", help="rerun notebooks whose report already completed")
    rp.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    rp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    rp.set_defaults(func=cmd_reproduce)

    sw = sub.add_parser("sweep", parents=[data], help="run a notebook over a grid of parameter sets, each a report, in parallel",
                        description="Run NOTEBOOK once per parameter set of GRID (a cartesian product and/or a "
                        "list; see docs/sweeps.md), skip sets already completed with the same inputs, and write "
                        "reports/sweeps/<name>/results.csv (+ .parquet, chart.png). Exit status 0 when every set passed.")
    sw.add_argument("notebook", help="notebook path or stem, e.g. 01_bandwidth")
    sw.add_argument("-g", "--grid", required=True, help="YAML grid file, e.g. notebooks/params/01_bandwidth/sweep-achieved.yaml")
    sw.add_argument("-j", "--jobs", type=int, help="worker processes (default: one per core)")
    sw.add_argument("--scheduler", help="run on a Dask cluster at this address, e.g. tcp://10.0.0.5:8786")
    sw.add_argument("--name", help="sweep name (default: the grid's name: or the file's name)")
    sw.add_argument("--force", action="store_true", help="rerun sets that already completed")
    sw.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell (default 900)")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=cmd_sweep)

    c = sub.add_parser("catalog", parents=[data], help="list devices; --validate checks every catalog file")
    c.add_argument("--validate", action="store_true")
    c.set_defaults(func=cmd_catalog)

    p = sub.add_parser("params", parents=[data], help="show a notebook's declared parameters")
    p.add_argument("notebook")
    p.set_defaults(func=cmd_params)

    pr = sub.add_parser("predict", parents=[data],
                        help="time to first token, time per output token and tokens/s of one deployment",
                        description="Predict one operating point with the calibrated serving model, with 95 % "
                        "prediction intervals. --concurrency counts the streams in flight over the whole deployment "
                        "(all replicas); 'max' takes the most whose KV cache fits. Without --tensor/--pipeline the "
                        "layout is the fewest chips that hold the model. A device no measurement covers is predicted "
                        "with its side's knobs and said to be uncalibrated.")
    pr.add_argument("--model", required=True, help="a model id (lpulab catalog lists them)")
    pr.add_argument("--device", required=True, help="a hardware id")
    pr.add_argument("--tensor", type=int, help="tensor-parallel width of one copy")
    pr.add_argument("--pipeline", type=int, help="pipeline stages of one copy")
    pr.add_argument("--replicas", type=int, help="copies of the model")
    pr.add_argument("--expert", type=int, help="expert-parallel groups per pipeline stage (a mixture of experts: its "
                    "routed experts spread over them, attention data-parallel across them)")
    pr.add_argument("--precision", default="fp8", help="weights, activations and KV cache (default fp8), e.g. int8, bf16, "
                    "nvfp4, or weights/activations/kv such as int4/bf16/fp8")
    pr.add_argument("--concurrency", default="1", help="streams in flight over the whole deployment, or 'max' (default 1)")
    pr.add_argument("--prompt", type=int, default=512, help="prompt tokens (default 512)")
    pr.add_argument("--output", type=int, default=128, help="generated tokens (default 128)")
    pr.add_argument("--draft", metavar="MODEL", help="speculative decoding with this catalog model as the draft (same "
                    "vocabulary as --model)")
    pr.add_argument("--mtp", action="store_true", help="speculative decoding with the model's own multi-token-"
                    "prediction heads (models whose file has mtp_layers, e.g. deepseek-v3)")
    pr.add_argument("--spec-k", type=int, metavar="K", help="drafted tokens per verification step, >= 1 (default from "
                    "data/serving.toml: 4 for a draft model, 1 for MTP)")
    pr.add_argument("--spec-accept", type=float, metavar="ALPHA", help="per-token acceptance probability in [0, 1] "
                    "(default from data/serving.toml: 0.7 for a draft model, 0.875 for MTP)")
    pr.add_argument("--draft-tensor", type=int, help="put the draft on chips of its own: tensor-parallel width "
                    "(default: on the target's chips when it fits there, else its own at the target's width)")
    pr.add_argument("--draft-pipeline", type=int, help="put the draft on chips of its own: pipeline stages")
    pr.add_argument("--prefill-on", metavar="DEVICE", help="disaggregated serving: prefill the prompts on this device, "
                    "ship the KV cache to --device, which only decodes")
    pr.add_argument("--prefill-tensor", type=int, help="tensor-parallel width of one prefill copy")
    pr.add_argument("--prefill-pipeline", type=int, help="pipeline stages of one prefill copy")
    pr.add_argument("--prefill-replicas", type=int, help="prefill copies (default 1)")
    pr.add_argument("--prefill-precision", help="precision of the prefill side (default: --precision)")
    pr.add_argument("--kv-link-bandwidth", type=float, metavar="GB/S", help="KV link bandwidth per path in GB/s "
                    "(default from data/serving.toml: 50)")
    pr.add_argument("--kv-link-latency", type=float, metavar="US", help="KV hand-over latency in microseconds "
                    "(default from data/serving.toml: 10)")
    pr.add_argument("--json", action="store_true", help="one JSON object")
    pr.set_defaults(func=cmd_predict)

    fr = sub.add_parser("frontier", parents=[data],
                        help="each platform's cheapest configuration per per-user speed target",
                        description="Search every configuration (replicas x tensor x pipeline from each device's "
                        "deployment rules, concurrency) of every platform for the one that serves MODEL cheapest per "
                        "million output tokens at each per-user speed target, with the calibrated serving model and "
                        "the price sheets at their values. A platform is a device at its own 8-bit format (16-bit if "
                        "it has none), priced by its own price sheet; a device without one is left out. Notebook "
                        "06_crossover adds the intervals and the odds.")
    fr.add_argument("--model", required=True, help="a model id (lpulab catalog lists the devices)")
    fr.add_argument("--devices", nargs="+", help="hardware ids (default: every device with a price sheet)")
    fr.add_argument("--targets", nargs="+", help="per-user speeds in tokens/s: LO:HI[:N] (N log-spaced, default "
                                                 "5:1000:50) or the speeds themselves")
    fr.add_argument("--ttft", type=float, help="time-to-first-token limit in seconds (default: none)")
    fr.add_argument("--prompt", type=int, default=550, help="prompt tokens (default 550)")
    fr.add_argument("--output", type=int, default=150, help="generated tokens (default 150)")
    fr.add_argument("--site", default="us-2023", help="site price sheet: electricity, PUE, rent (default us-2023)")
    fr.add_argument("--json", action="store_true", help="one JSON object")
    fr.set_defaults(func=cmd_frontier)

    i = sub.add_parser("index", parents=[data], help="rebuild reports/index.html and reports/claims.json")
    i.set_defaults(func=cmd_index)

    ct = sub.add_parser("cite", parents=[data], help="print how to cite a report (plain text, BibTeX, CSL-JSON)",
                        description="Print the citation of a report: REPORT is a report-id, a report folder, or a "
                        "notebook (e.g. 04_cost: its latest finished report). The URL is filled from --url-template "
                        "or $LPULAB_REPORT_URL, e.g. https://example.org/lpulab/{report_id}/report.html (fields: "
                        "{report_id}, {notebook}, {commit}, {label}).")
    ct.add_argument("report", help="report-id, report folder, or notebook")
    ct.add_argument("--format", choices=("all", "plain", "bibtex", "csl-json"),
                    help="what to print (default: plain text and BibTeX)")
    g = ct.add_mutually_exclusive_group()
    g.add_argument("--bibtex", action="store_true", help="BibTeX only (as --format bibtex)")
    g.add_argument("--plain", action="store_true", help="plain text only (as --format plain)")
    g.add_argument("--csl-json", action="store_true", help="CSL-JSON only (as --format csl-json)")
    ct.add_argument("--url-template", help="where the report is published, e.g. "
                                           "https://example.org/lpulab/{report_id}/report.html")
    ct.set_defaults(func=cmd_cite)
    return ap


def _set_data(ns) -> None:
    """``--data DIR ...`` -> ``LPULAB_DATA`` for this process and the kernels it starts."""
    from .report.params import ParameterError

    dirs = (ns.data_top or []) + (getattr(ns, "data", None) or [])
    if not dirs:
        return
    for d in dirs:
        if not Path(d).expanduser().is_dir():
            raise ParameterError(f"--data {d}: no such folder (a user data folder holds hardware/, models/, prices/ "
                                 "or measurements/, shaped like data/)")
    os.environ["LPULAB_DATA"] = os.pathsep.join(str(Path(d).expanduser().resolve()) for d in dirs)


def main(argv=None) -> int:
    from .catalog import CatalogError
    from .report.cite import CiteError
    from .report.params import ParameterError

    ns = build_parser().parse_args(argv)
    try:
        _set_data(ns)
        return ns.func(ns)
    except KeyboardInterrupt:
        print(f"lpulab {ns.cmd}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`lpulab params 04_cost | head`): stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return 141
    except (ParameterError, CatalogError, CiteError, FileNotFoundError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"lpulab {ns.cmd}: error: {msg}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lpulab {ns.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"lpulab {ns.cmd}: internal error: {type(exc).__name__}: {exc} (run with {DEBUG_ENV}=1 for the "
              "traceback, and please report it)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
