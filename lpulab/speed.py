"""Claim C2 and the calibrated serving model: measured results as operating points, the
calibration that fits the serving model's knobs on them, predictions with intervals, and
C2's verdict.

Every measured row of ``data/measurements`` (all tables) becomes an operating point of
:mod:`lpulab.perf` when the catalog knows its model and hardware: the deployment as it was
run (the row's tensor/pipeline/replica layout and precision), its concurrency and its
prompt and output lengths.

- Concurrency: MLPerf Server and Interactive runs hold ``tokens/s x (TPOT + TTFT/output)``
  streams in flight (Little's law on the same run's rows); an Offline run, the most
  streams its KV cache holds; an ``api`` or ``paper`` row, its stated concurrency; a
  vendor's single-stream claim, one stream.
- Lengths: the row's input/output tokens; where MLPerf does not publish the mean prompt
  length, ``assumptions["mlperf_prompt"]``; a vendor claim's unstated lengths,
  ``assumptions["vendor_prompt"]``/``["vendor_output"]``.
- Layout: the row's; an SRAM machine's (never published) is the fewest chips that hold the
  model at the row's operating point (:func:`lpulab.placement.need`), said so in the point.
  A GPU row without a published layout is left out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import calibration, catalog, claims, perf, placement, workload
from .calibration import Calibration, Point
from .parallel import Layout

METRIC_COLUMN = {"output_tok_s_per_user": "per_user_tok_s", "output_tok_s_per_request": "per_request_tok_s",
                 "output_tok_s_aggregate": "aggregate_tok_s", "tpot_s": "tpot_s", "ttft_s": "ttft_s"}
#: Assumptions behind operating points whose lengths a source does not state.
ASSUMPTIONS = {
    # MLPerf rows state no mean prompt: data/benchmarks.toml gives each benchmark's (sourced);
    # a model missing there leaves its rows out
    "vendor_prompt": 128,       # a vendor's single-stream speed claim: lengths not stated
    "vendor_output": 256,
}
#: The date up to which the default calibration fits; later results test it.
DEFAULT_CUTOFF = "2024-12-31"
_PRECISION_NAMES = {"16-bit": "bf16", "fp16": "fp16", "bf16": "bf16", "fp8": "fp8", "int8": "int8", "8-bit": "fp8",
                    "int4": "int4"}


class SpeedError(ValueError):
    """An operating point or comparison C2 cannot make; the message says why."""


def side_of(device) -> str:
    """The calibration side of a device: ``sram`` where the weights sit on the chip."""
    return "sram" if device.sram_only else "hbm"


def precision_of(device, name) -> workload.Precision | None:
    """A row's precision as lpulab's (weights = activations = KV cache), or None when it
    is not stated or not modelled (e.g. FP4 before the workbook models it)."""
    if not isinstance(name, str):
        return None
    key = name.strip().lower()
    if key in ("fp4", "nvfp4"):          # NVIDIA's FP4 runs are NVFP4 weights and activations, FP8 KV cache
        return workload.Precision("nvfp4", "nvfp4", "fp8")
    if key == "mxfp4":
        return workload.Precision("mxfp4", "mxfp4", "fp8")
    p = _PRECISION_NAMES.get(key)
    if p is None:
        return None
    if p == "fp8" and "fp8" not in device.compute and "int8" in device.compute:
        p = "int8"
    return workload.Precision(p, p, p)


def default_precision(device) -> workload.Precision:
    """For a row that does not say: the narrowest 8-bit format the device runs, else bf16."""
    for p in ("fp8", "int8", "bf16", "fp16"):
        if p in device.compute:
            return workload.Precision(p, p, p)
    raise SpeedError(f"{device.id} lists no fp8, int8, bf16 or fp16 peak")


def sram_layout(model, device, precision, batch: int, context: int) -> Layout:
    """The fewest chips that hold ``model`` with ``batch`` streams of ``context`` tokens: the
    layout assumed for an SRAM machine whose deployment is not published."""
    n = placement.need(model, device, max(int(batch), 1), int(context), precision=precision)
    if not np.isfinite(float(n.chips)):
        raise SpeedError(f"{model.id} does not fit on {device.id} at batch {batch}, context {context}")
    return Layout(1, int(n.tensor), int(n.pipeline))


@dataclass(frozen=True)
class Skipped:
    row: str
    why: str


def _run_key(r) -> tuple:
    return (r.source_url, r.model, r.hardware, r.scenario, r.chips if r.chips == r.chips else None,
            r.input_tokens if r.input_tokens == r.input_tokens else None,
            r.output_tokens if r.output_tokens == r.output_tokens else None,
            r.concurrency if r.concurrency == r.concurrency else None, r.tensor if r.tensor == r.tensor else None,
            r.pipeline if r.pipeline == r.pipeline else None, r.replicas if r.replicas == r.replicas else None,
            r.precision, getattr(r, "expert", None) if getattr(r, "expert", None) == getattr(r, "expert", None) else None)


def measured_table(names: Sequence[str] | None = None) -> pd.DataFrame:
    """Every measurement table, concatenated (rows keep their ids)."""
    frames = [catalog.load_measurements(n) for n in (names or catalog.measurement_names())]
    return pd.concat(frames, ignore_index=True)


def points(measurements: pd.DataFrame | None = None, assumptions: Mapping | None = None,
           deployment_kw: Mapping | None = None) -> tuple[list[Point], list[Skipped]]:
    """The measured rows as operating points (one per run and metric; the runs of several
    submitters of one system, layout, scenario and date collapse into their median), and
    the rows left out with the reason."""
    a = {**ASSUMPTIONS, **(assumptions or {})}
    df = measured_table() if measurements is None else measurements
    models, devices = set(catalog.model_ids()), set(catalog.device_ids())
    benchmarks = catalog.load_benchmarks()
    skipped: list[Skipped] = []
    runs: dict[tuple, list] = {}
    r: Any   # a row of itertuples()
    for r in df.itertuples():
        if r.metric == "samples_per_s":
            continue
        if r.model not in models:
            skipped.append(Skipped(r.id, f"model {r.model!r} is not in the catalog"))
            continue
        if r.hardware not in devices:
            skipped.append(Skipped(r.id, f"hardware {r.hardware!r} is not in the catalog"))
            continue
        spec = getattr(r, "speculative", "none")
        if isinstance(spec, str) and spec not in ("none", "unknown", ""):
            skipped.append(Skipped(r.id, f"speculative decoding ({spec}): the knobs describe plain decoding, and the "
                                         "row states no acceptance rate for lpulab.speculative to model it"))
            continue
        runs.setdefault(_run_key(r), []).append(r)
    groups: dict[tuple, list] = {}
    for rows in runs.values():
        r0 = rows[0]
        ids = [r.id for r in rows]
        device = catalog.load_device(r0.hardware)
        model = catalog.load_model(r0.model)
        vals = {r.metric: float(r.value_si) for r in rows}
        prec: workload.Precision | None
        if r0.precision in (None, "", "unknown") or r0.precision != r0.precision:
            prec, prec_note = default_precision(device), "precision assumed"
        else:
            prec, prec_note = precision_of(device, r0.precision), ""
        if prec is None:
            skipped += [Skipped(i, f"precision {r0.precision!r} is not modelled yet") for i in ids]
            continue
        try:
            perf.compute_format(device, prec)
        except perf.PerfError as exc:
            skipped += [Skipped(i, str(exc)) for i in ids]
            continue
        output = r0.output_tokens if r0.output_tokens == r0.output_tokens else None
        prompt = r0.input_tokens if r0.input_tokens == r0.input_tokens else None
        scen = r0.scenario
        if scen in ("Offline", "Server", "Interactive") and prompt is None:
            bench = benchmarks.get(("mlperf", r0.model))
            prompt = bench.mean_prompt.si if bench else None
        if scen == "vendor-claim":
            prompt = prompt or a["vendor_prompt"]
            output = output or a["vendor_output"]
        if prompt is None or output is None:
            skipped += [Skipped(i, "prompt or output length not stated") for i in ids]
            continue
        prompt, output = int(round(prompt)), int(round(output))
        if prompt + output > model.max_context:
            skipped += [Skipped(i, f"prompt + output exceed {model.id}'s context") for i in ids]
            continue
        # concurrency
        if scen in ("Server", "Interactive"):
            if "output_tok_s_aggregate" not in vals or "tpot_s" not in vals:
                skipped += [Skipped(i, "a Server run needs its tokens/s and TPOT for Little's law") for i in ids]
                continue
            conc = vals["output_tok_s_aggregate"] * (vals["tpot_s"] + vals.get("ttft_s", 0.0) / output)
        elif scen == "Offline":
            conc = None
        elif scen == "vendor-claim":
            conc = 1.0
        else:
            conc = r0.concurrency if r0.concurrency == r0.concurrency else None
            if conc is None:
                skipped += [Skipped(i, "concurrency not stated") for i in ids]
                continue
            if scen == "static-batch" and conc > 1:
                skipped += [Skipped(i, "a static batch prefills all its prompts before decoding: not modelled "
                                       "beyond one request") for i in ids]
                continue
        # layout
        lay = (r0.tensor, r0.pipeline, r0.replicas)
        ep = getattr(r0, "expert", float("nan"))
        if all(x == x for x in lay):
            layout, lay_note = Layout(int(lay[2]), int(lay[0]), int(lay[1]), int(ep) if ep == ep else 1), ""
        elif device.sram_only:
            batch = int(max(round(conc or 1), 1))
            try:
                layout = sram_layout(model, device, prec, batch, prompt + output)
            except SpeedError as exc:
                skipped += [Skipped(i, str(exc)) for i in ids]
                continue
            lay_note = "layout assumed (fewest chips that hold it)"
        else:
            skipped += [Skipped(i, "layout not published") for i in ids]
            continue
        try:
            dep = perf.Deployment(device, layout, prec, **(deployment_kw or {}))
            if conc is None:   # Offline: as many streams as their average cache (prompt + output / 2) allows
                conc = perf.max_concurrency(model, dep, prompt + output // 2)
                if conc < 1:
                    raise perf.PerfError("the weights alone do not fit the published layout")
        except (perf.PerfError, placement.PlacementError, catalog.CatalogError) as exc:
            skipped += [Skipped(i, str(exc)) for i in ids]
            continue
        # a benchmark's dataset (no stated prompt length): its output length is each submitter's
        # own mean, and submitters merge; stated lengths are part of the run (128 vs 2,048 out),
        # so is a stated concurrency (a sweep's 1, 5, 25 and 50 streams are four operating points)
        stated = r0.input_tokens == r0.input_tokens
        gkey = (str(r0.date), r0.model, r0.hardware, scen, layout, prec, prompt, output if stated else None,
                r0.concurrency if r0.concurrency == r0.concurrency else None)
        for r in rows:
            if r.metric not in METRIC_COLUMN:
                continue
            groups.setdefault(gkey + (r.metric,), []).append((r, dep, model, conc, output, prec_note, lay_note))
    pts = []
    for gkey, members in groups.items():
        r0, dep, model, _, _, prec_note, lay_note = members[0]
        measured = float(np.median([m[0].value_si for m in members]))
        conc = int(max(round(float(np.median([m[3] for m in members]))), 1))
        output = int(round(float(np.median([m[4] for m in members]))))
        metric = METRIC_COLUMN[r0.metric]
        # one submitter filed the same run twice (two accuracy targets): count a row once
        row_ids = tuple(sorted({m[0].id for m in members}))
        try:
            prof = perf.serving_profile(model, dep, conc, gkey[6], output)
        except (perf.PerfError, placement.PlacementError) as exc:
            skipped += [Skipped(m[0].id, str(exc)) for m in members]
            continue
        notes = "; ".join(x for x in (prec_note, lay_note) if x)
        key = f"{gkey[0]} {r0.model} {r0.hardware} {gkey[3]} {dep.layout.label()} {dep.precision.weights} c={conc}"
        sources = "; ".join(dict.fromkeys(str(m[0].source_title) for m in members))
        pts.append(Point(key + (f" [{notes}]" if notes else "") + f" {metric}", side_of(dep.device), metric,
                         measured, str(gkey[0]), prof, row_ids, sources))
    return pts, skipped


def _inputs_key(cutoff: str) -> str:
    """What the default calibration depends on: the code of the modules that compute it, the
    catalog files it can read (shipped and user folders), the run's overrides and the cutoff."""
    import hashlib

    from . import paths

    h = hashlib.sha256()
    here = paths.ROOT / "lpulab"
    for mod in ("architecture", "calibration", "catalog", "parallel", "perf", "placement", "speed", "workload"):
        h.update((here / f"{mod}.py").read_bytes())
    for d in paths.data_dirs():
        if (d / "benchmarks.toml").is_file():
            h.update((d / "benchmarks.toml").read_bytes())
        for kind in ("hardware", "models", "measurements"):
            for f in sorted((d / kind).glob("*")) if (d / kind).is_dir() else []:
                h.update(str(f.relative_to(d)).encode())
                h.update(f.read_bytes())
    h.update(repr((cutoff, catalog.overrides_key())).encode())
    return h.hexdigest()[:24]


@functools.lru_cache(maxsize=8)
def _default(cutoff: str, key: str) -> tuple[Calibration, tuple[str, ...], tuple[Skipped, ...]]:
    """The default calibration: from the on-disk cache (``.cache/lpulab/``, keyed on every
    input) when present, else computed and stored (written whole, then renamed)."""
    import os
    import pickle
    import tempfile

    from . import paths

    folder = paths.ROOT / ".cache" / "lpulab"
    path = folder / f"calibration-{key}.pkl"
    if path.is_file():
        try:
            with path.open("rb") as fh:
                cal, devices, skipped = pickle.load(fh)
            return cal, tuple(devices), tuple(skipped)
        except Exception:  # a damaged or foreign cache file: recompute
            pass
    pts, skipped = points()
    cal = calibration.fit(pts, cutoff)
    devices = tuple(sorted({p.profile.deployment.device.id for p in pts}))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((cal, devices, tuple(skipped)), fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only tree: no cache, same numbers
    return cal, devices, tuple(skipped)


def calibrate(cutoff: str = DEFAULT_CUTOFF) -> tuple[Calibration, list[str], list[Skipped]]:
    """The default calibration fitted on the results published up to ``cutoff``: the
    :class:`~lpulab.calibration.Calibration`, the devices its measurements cover, and the
    rows it left out with why. Cached per process and on disk, keyed on every input."""
    cal, devices, skipped = _default(cutoff, _inputs_key(cutoff))
    return cal, list(devices), list(skipped)


# --------------------------------------------------------------------------- predictions with intervals


@dataclass(frozen=True)
class Interval:
    """A prediction with its 95 % prediction interval, arrays over operating points."""

    metric: str
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def to_dict(self) -> dict:
        f = (lambda x: np.asarray(x).item() if np.ndim(x) == 0 else np.asarray(x).tolist())  # noqa: E731
        return {"metric": self.metric, "value": f(self.value), "low": f(self.low), "high": f(self.high)}


@dataclass(frozen=True)
class Forecast:
    """:func:`forecast`'s result: the prediction at the calibrated knobs and each metric's interval."""

    prediction: perf.Prediction
    intervals: Mapping[str, Interval]
    side: str
    calibrated: bool
    knobs: Mapping[str, float]
    notes: tuple[str, ...] = ()

    def frame(self) -> pd.DataFrame:
        df = self.prediction.frame()
        for m, iv in self.intervals.items():
            df[f"{m}_low"] = np.broadcast_to(iv.low, df.shape[0])
            df[f"{m}_high"] = np.broadcast_to(iv.high, df.shape[0])
        return df

    def to_dict(self) -> dict:
        d = self.prediction.to_dict()
        for m, iv in self.intervals.items():
            d[f"{m}_low"], d[f"{m}_high"] = iv.to_dict()["low"], iv.to_dict()["high"]
        d.update(side=self.side, calibrated=self.calibrated, knobs=dict(self.knobs), notes=list(self.notes))
        return d


def forecast(model, dep: perf.Deployment, concurrency, prompt: int, output: int, cal: Calibration | None = None,
             measured_devices: Sequence[str] | None = None, *, speculation=None,
             prefill: perf.Deployment | None = None, link=None) -> Forecast:
    """:func:`lpulab.perf.predict` with the calibrated knobs of the device's side and a 95 %
    prediction interval on every metric. A device no measurement covers still gets a
    prediction (its side's knobs), marked uncalibrated.

    ``speculation`` (a :class:`lpulab.speculative.Speculation`) decodes speculatively;
    ``prefill`` (a deployment) prefills the prompts there and ships their KV cache over
    ``link`` (:mod:`lpulab.disaggregated`): then TTFT and its interval come from the prefill
    side's knobs, every other metric from ``dep``'s side."""
    if cal is None:
        cal, measured_devices, _ = calibrate()
    side = side_of(dep.device)
    pside = side_of(prefill.device) if prefill is not None else side
    prof: Any
    run: Callable[[Any, str], perf.Prediction]
    if prefill is not None:
        from . import disaggregated

        prof = disaggregated.disaggregated_profile(model, dep, prefill, concurrency, prompt, output, link=link,
                                                   speculation=speculation)
        pknobs = calibration.knobs_for(pside, cal.values)

        def run(arr: Any, which: str) -> perf.Prediction:
            if which == "ttft_s":
                return prof.evaluate(calibration.knobs_for(side, cal.values),
                                     calibration.knobs_for(pside, cal.values, arr))
            return prof.evaluate(calibration.knobs_for(side, cal.values, arr), pknobs)
    else:
        if speculation is not None:
            from . import speculative

            prof = speculative.speculative_profile(model, dep, speculation, concurrency, prompt, output)
        else:
            prof = perf.serving_profile(model, dep, concurrency, prompt, output)

        def run(arr: Any, which: str) -> perf.Prediction:
            return prof.evaluate(calibration.knobs_for(side, cal.values, arr))
    pred = run(None, "")
    nd = np.ndim(concurrency)
    ivs = {}
    for m in ("ttft_s", "tpot_s", "per_user_tok_s", "aggregate_tok_s"):
        s_ = pside if m == "ttft_s" else side

        def log_metric(arr: Any, m: str = m) -> np.ndarray:
            return np.log(getattr(run(arr, m), m))

        v, lo, hi = calibration.interval(cal, s_, log_metric, ndim=nd)
        ivs[m] = Interval(m, v, lo, hi)
    calibrated = measured_devices is None or dep.device.id in measured_devices
    notes = tuple(pred.notes) + (() if calibrated else (f"uncalibrated: no measurement of {dep.device.id}; "
                                                        f"the {side} side's knobs are used",))
    if prefill is not None and measured_devices is not None and prefill.device.id not in measured_devices:
        notes += (f"uncalibrated: no measurement of {prefill.device.id} (prefill side); the {pside} side's knobs "
                  "are used",)
    return Forecast(pred, ivs, side, calibrated, {k: v for k, v in cal.values.items() if k.startswith(side)}, notes)


# --------------------------------------------------------------------------- C2


def judge_c2(as_stated: float, ratio: Interval, assumptions: dict, note: str = "") -> claims.Verdict:
    """C2's verdict on per-user decode speed at the stated operating point: the estimate is
    the predicted ratio, the band its 95 % prediction interval."""
    return claims.judge("C2", as_stated=as_stated, estimate=float(ratio.value), low=float(ratio.low),
                        high=float(ratio.high), assumptions={"band": "95 % prediction interval of the serving model",
                                                             **assumptions}, note=note)


def ratio_interval(a: Forecast, b: Forecast, metric: str = "per_user_tok_s") -> Interval:
    """The ratio ``a / b`` of one metric with a 95 % interval: the two sides' knobs are
    independent, so the log-variances add (each interval's half-width is 1.96 sd)."""
    ia, ib = a.intervals[metric], b.intervals[metric]
    sa = (np.log(ia.high) - np.log(ia.low)) / (2 * 1.96)
    sb = (np.log(ib.high) - np.log(ib.low)) / (2 * 1.96)
    r = ia.value / ib.value
    half = 1.96 * np.sqrt(sa ** 2 + sb ** 2)
    return Interval(f"{metric} ratio", r, r * np.exp(-half), r * np.exp(half))


def like_for_like(claim=None, measurements: pd.DataFrame | None = None) -> dict:
    """C2's own arithmetic from ``data/claims.toml``'s ``[C2.as_stated]``: the measured LPU row
    of one benchmark run over the median of the same run's GPU providers, and the vendor's
    stated speed over the same median beside it."""
    c = claim or catalog.load_claims()["C2"]
    a = c.as_stated
    df = catalog.load_measurements(a.get("table", "speed")) if measurements is None else measurements
    by = df.set_index("id")
    for k in ("lpu_row", "vendor_row"):
        if a.get(k) and a[k] not in by.index:
            raise SpeedError(f"data/claims.toml [C2.as_stated] {k}: no measurement row {a[k]!r}")
    prefix = a["gpu_rows"]
    lpu_metric = by.loc[a["lpu_row"], "metric"]
    gpus = df[df.id.str.startswith(prefix) & (df.metric == lpu_metric)
              & df.hardware.str.startswith("unknown GPU")].value_si
    if gpus.empty:
        raise SpeedError(f"data/claims.toml [C2.as_stated] gpu_rows: no GPU provider rows start with {prefix!r}")
    lpu = float(by.loc[a["lpu_row"], "value_si"])
    med = float(gpus.median())
    out = {"lpu_row": a["lpu_row"], "lpu_measured": lpu, "gpu_median": med, "gpu_min": float(gpus.min()),
           "gpu_max": float(gpus.max()), "gpu_providers": int(len(gpus)), "ratio": lpu / med,
           "lpu_hardware": str(by.loc[a["lpu_row"], "hardware"]), "source": str(by.loc[a["lpu_row"], "source_title"])}
    if a.get("vendor_row"):
        v = float(by.loc[a["vendor_row"], "value_si"])
        out.update(vendor_row=a["vendor_row"], vendor_stated=v, vendor_ratio=v / med)
    return out


@dataclass(frozen=True)
class C2Result:
    """Everything notebook 03 records about C2: the calibrated serving model's validation,
    both deployments' frontiers with intervals, the ratio at the stated operating point,
    the like-for-like measured ratio and the verdict."""

    model: str
    prompt: int
    output: int
    lpu: Forecast                 # at the LPU's stated concurrency
    gpu: Forecast                 # at the GPU's stated concurrency
    ratio: Interval               # per-user speed, LPU / GPU, at the stated operating point
    ratio_at_one: Interval        # both serving one stream
    frontier: pd.DataFrame = field(repr=False)
    aggregate_per_chip_ratio: float = float("nan")   # LPU / GPU, each at its largest fitting concurrency
    like_for_like: Mapping = field(default_factory=dict)
    verdict: claims.Verdict | None = None
    calibration: Calibration | None = field(default=None, repr=False)
    skipped: Mapping[str, int] = field(default_factory=dict)

    def curves(self) -> pd.DataFrame:
        """Against the GPU side's concurrency: the chip under test at its stated concurrency
        over the GPU per user, and both sides' aggregate per chip at the same concurrency."""
        fl = self.frontier[self.frontier.side == "lpu"].set_index("concurrency")
        fg = self.frontier[self.frontier.side == "gpu"].set_index("concurrency")
        lpu_user = float(np.asarray(self.lpu.intervals["per_user_tok_s"].value))
        return pd.DataFrame({"per_user_ratio": lpu_user / fg.per_user_tok_s,
                             "aggregate_per_chip_ratio": fl.aggregate_per_chip_tok_s / fg.aggregate_per_chip_tok_s,
                             "gpu_fits": fg.fits})

    def to_dict(self) -> dict:
        cal = self.calibration
        return {
            "model": self.model, "prompt": self.prompt, "output": self.output,
            "lpu": self.lpu.to_dict(), "gpu": self.gpu.to_dict(), "ratio": self.ratio.to_dict(),
            "ratio_at_one": self.ratio_at_one.to_dict(), "aggregate_per_chip_ratio": self.aggregate_per_chip_ratio,
            "like_for_like": dict(self.like_for_like), "verdict": self.verdict.to_dict() if self.verdict else None,
            "calibration": cal.to_dict() if cal else None, "skipped_rows_by_reason": dict(self.skipped),
            "knobs": calibration.knob_table(cal).to_dict(orient="records") if cal else [],
            "validation": cal.table.drop(columns=["ids"]).to_dict(orient="records") if cal else [],
        }


def analyse(model: str, lpu: str, gpu: str, *, gpu_layout: Layout, lpu_layout: Layout | None = None,
            lpu_precision: str = "int8", gpu_precision: str = "fp8", lpu_concurrency: int = 1,
            gpu_concurrency: int = 64, prompt: int = 550, output: int = 150, sweep=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            cutoff: str = DEFAULT_CUTOFF) -> C2Result:
    """C2 at one stated operating point: ``lpu`` (fewest chips that hold ``model`` unless
    ``lpu_layout``) serving ``lpu_concurrency`` streams against ``gpu`` in ``gpu_layout``
    serving ``gpu_concurrency``, prompts of ``prompt`` and outputs of ``output`` tokens;
    per-user speed with 95 % prediction intervals from the calibration fitted up to ``cutoff``."""
    cal, measured, skipped = calibrate(cutoff)
    M = catalog.load_model(model)
    L, G = catalog.load_device(lpu), catalog.load_device(gpu)
    pl, pg = workload.Precision.of(lpu_precision), workload.Precision.of(gpu_precision)
    if lpu_layout is None:
        lpu_layout = sram_layout(M, L, pl, max(int(lpu_concurrency), 1), prompt + output)
    dl = perf.Deployment(L, lpu_layout, pl)
    dg = perf.Deployment(G, gpu_layout, pg)
    conc = np.unique(np.asarray(sorted(set(sweep) | {1, int(lpu_concurrency), int(gpu_concurrency)}), float))
    fl = forecast(M, dl, conc, prompt, output, cal, measured)
    fg = forecast(M, dg, conc, prompt, output, cal, measured)
    lpu_at = forecast(M, dl, int(lpu_concurrency), prompt, output, cal, measured)
    gpu_at = forecast(M, dg, int(gpu_concurrency), prompt, output, cal, measured)
    ratio = ratio_interval(lpu_at, gpu_at)
    ratio_one = ratio_interval(forecast(M, dl, 1, prompt, output, cal, measured),
                               forecast(M, dg, 1, prompt, output, cal, measured))
    a, b = fl.frame(), fg.frame()
    frontier = pd.concat([a.assign(side="lpu", device=lpu, chips=dl.chips), b.assign(side="gpu", device=gpu,
                                                                                       chips=dg.chips)], ignore_index=True)
    big_l = a[a.fits].aggregate_per_chip_tok_s.max() if a.fits.any() else float("nan")
    big_g = b[b.fits].aggregate_per_chip_tok_s.max() if b.fits.any() else float("nan")
    lfl = like_for_like()
    v = judge_c2(lfl["ratio"], ratio, {
        "metric": "per-user decode speed (tokens/s per stream)", "model": model,
        "LPU side": f"{lpu}, {lpu_layout.label()}, {pl.label()}, {lpu_concurrency} stream(s)",
        "GPU side": f"{gpu}, {gpu_layout.label()}, {pg.label()}, {gpu_concurrency} stream(s)",
        "lengths": f"{prompt} in, {output} out", "calibration": f"fitted on results up to {cal.cutoff}"},
        note=(f"As stated, like for like: {lfl['lpu_measured']:.0f} tok/s measured on {lfl['lpu_hardware']} against the "
              f"median {lfl['gpu_median']:.0f} tok/s of {lfl['gpu_providers']} GPU providers in the same benchmark "
              f"({lfl['ratio']:.2f}x)" + (f"; the vendor's stated {lfl['vendor_stated']:.0f} tok/s gives "
                                         f"{lfl['vendor_ratio']:.2f}x." if "vendor_ratio" in lfl else ".")))
    why: dict[str, int] = {}
    for s in skipped:
        why[s.why] = why.get(s.why, 0) + 1
    return C2Result(model, prompt, output, lpu_at, gpu_at, ratio, ratio_one, frontier,
                    float(big_l / big_g) if big_g == big_g and big_g > 0 else float("nan"), lfl, v, cal, why)


def measured_points(model: str, devices: Sequence[str], measurements: pd.DataFrame | None = None) -> pd.DataFrame:
    """Measured runs of ``model`` on ``devices`` that give both a per-user speed (or TPOT)
    and an aggregate tokens/s: label, device, per_user, aggregate (for frontier charts)."""
    df = measured_table() if measurements is None else measurements
    d = df[(df.model == model) & df.hardware.isin(list(devices))]
    rows = []
    for _url, g in d.groupby("source_url"):
        vals = dict(zip(g.metric, g.value_si))
        per_user = vals.get("output_tok_s_per_user") or (1.0 / vals["tpot_s"] if vals.get("tpot_s") else None)
        agg = vals.get("output_tok_s_aggregate")
        if per_user and agg:
            r = g.iloc[0]
            rows.append({"label": f"{r.scenario} {r.date} {r.hardware} x{int(r.chips) if r.chips == r.chips else '?'}",
                         "device": r.hardware, "per_user": float(per_user), "aggregate": float(agg)})
    return pd.DataFrame(rows, columns=["label", "device", "per_user", "aggregate"]).drop_duplicates(
        subset=["device", "per_user", "aggregate"])
