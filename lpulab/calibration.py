"""Fitting the serving model's knobs to measured results, and testing it on results it never saw.

The knobs are the achieved fractions of the compute peak and of the memory bandwidth and a
fixed time per layer per step (:class:`lpulab.perf.Knobs`), one set per *memory side*: the
machines whose weights sit in off-chip memory (``hbm``: GPUs) and those whose weights sit
on the chip (``sram``: Groq, Cerebras). Which side a device is on follows from its catalog
entry (:attr:`lpulab.catalog.Device.sram_only`), never from its vendor.

The method:

1. every measured row becomes an *operating point* (:mod:`lpulab.speed` builds them): the
   deployment as it was run, its concurrency, prompt and output lengths; rows that repeat
   one run (an accuracy target filed twice, a run's samples/s beside its tokens/s) collapse
   into one point, and several submitters' results on the same system, layout and scenario
   into their median;
2. the points are split by date: fitted up to ``cutoff``, tested after it;
3. a knob is fitted only when at least ``min_rows`` fitted points move it (moving the knob
   across its range changes their prediction by at least ``sensitivity``), and only while
   the fitted points can tell it from the other knobs (the normal matrix of the Jacobian
   stays well conditioned); otherwise it is held at its prior and the result says why.
   There are always more fitted points than knobs;
4. least squares on log ratios (scipy.optimize.least_squares, knobs in log space within
   their ranges); the knobs' 95 % intervals come from the Jacobian
   (``cov = s^2 (J^T J)^-1``, ``s`` the residual standard deviation);
5. every point gets a 95 % prediction interval by the delta method: the knobs' covariance
   through the point's own sensitivities, plus the residual scatter ``s^2`` (the model's own
   error on points like the fitted ones);
6. leave-one-out over the fitted points: each refitted without itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .perf import Knobs, ServingProfile

SIDES = ("hbm", "sram")
FIELDS = ("compute", "prefill_compute", "half_tokens", "memory", "link", "layer_overhead_s")


class CalibrationError(ValueError):
    """A calibration that the data cannot support (no rows, fewer rows than knobs, ...)."""


@dataclass(frozen=True)
class KnobSpec:
    """One knob: which side and field it sets, its prior (used when the data cannot fit it)
    and its allowed range, and why."""

    side: str
    field: str
    prior: float
    low: float
    high: float
    meaning: str
    basis: str

    @property
    def name(self) -> str:
        return f"{self.side}.{self.field}"

    def show(self, value: float) -> str:
        """``value`` of this knob as people read it (a duration for the ``_s`` knobs)."""
        from .report.fmt import duration, number

        return duration(value) if self.field.endswith("_s") else number(value, 4)


#: The knobs and their priors. The priors matter only for knobs the data does not identify;
#: the report lists which those are.
KNOBS: tuple[KnobSpec, ...] = (
    KnobSpec("hbm", "memory", 0.85, 0.3, 1.0, "achieved fraction of the peak HBM bandwidth",
             "third-party measurements of H100 HBM3 reach about 2.8-3.1 of 3.35 TB/s (0.84-0.93), noted in "
             "data/hardware/nvidia-h100-sxm.toml"),
    KnobSpec("hbm", "compute", 0.6, 0.1, 1.0, "achieved fraction of the dense tensor-core peak",
             "assumption: large matrix products on GPUs commonly reach half to three quarters of the peak"),
    KnobSpec("hbm", "prefill_compute", 0.7, 0.1, 1.0, "achieved fraction of the dense tensor-core peak in prefill's "
             "large matrix products", "assumption: prefill's large products run closer to the peak than decode's"),
    KnobSpec("hbm", "half_tokens", 32.0, 0.1, 4096.0, "rows at which a matrix product reaches half its achieved rate "
             "(M / (M + half) of it with M rows: small batches leave the matrix units part idle)",
             "assumption: tensor-core tiles of 64-128 rows fill from a few dozen rows on"),
    KnobSpec("hbm", "layer_overhead_s", 5e-6, 1e-8, 1e-3, "fixed time per layer per step (kernel launches, "
             "synchronisation, scheduling, and whatever else a step of few streams loses)",
             "assumption: a few microseconds per kernel, a handful of kernels per layer; the range reaches 1 ms "
             "because the fitted one-stream GPU rows ask for far more than launches explain"),
    KnobSpec("sram", "memory", 0.9, 0.2, 1.0, "achieved fraction of the peak on-chip SRAM bandwidth",
             "assumption: statically scheduled SRAM streams close to its peak"),
    KnobSpec("sram", "compute", 0.9, 0.1, 1.0, "achieved fraction of the peak compute",
             "assumption: statically scheduled compute close to its peak"),
    KnobSpec("sram", "prefill_compute", 0.9, 0.1, 1.0, "achieved fraction of the peak compute in prefill",
             "assumption: statically scheduled compute close to its peak"),
    KnobSpec("sram", "layer_overhead_s", 1e-6, 1e-8, 2e-4, "fixed time per layer per step",
             "assumption: no kernel launches on a statically scheduled chip; about a microsecond of "
             "synchronisation"),
)


def knob_specs(names: Sequence[str] | None = None) -> tuple[KnobSpec, ...]:
    by = {k.name: k for k in KNOBS}
    if names is None:
        return KNOBS
    unknown = [n for n in names if n not in by]
    if unknown:
        raise CalibrationError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(by)}")
    return tuple(by[n] for n in names)


def knobs_for(side: str, values: Mapping[str, float], arrays: Mapping[str, np.ndarray] | None = None) -> Knobs:
    """The :class:`~lpulab.perf.Knobs` of one side from a name -> value mapping (priors
    for names not given); ``arrays`` (name -> array) override, for vectorised evaluation."""
    if side not in SIDES:
        raise CalibrationError(f"side {side!r} is not one of {', '.join(SIDES)}")
    kw: dict[str, Any] = {"link": 1.0}
    for k in KNOBS:
        if k.side == side:
            kw[k.field] = values.get(k.name, k.prior)
    for name, arr in (arrays or {}).items():
        s, f = name.split(".", 1)
        if s == side:
            kw[f] = arr
    return Knobs(compute=kw["compute"], memory=kw["memory"], link=kw["link"], layer_overhead_s=kw["layer_overhead_s"],
                 prefill_compute=kw["prefill_compute"], half_tokens=kw.get("half_tokens", 0.0))


# --------------------------------------------------------------------------- points


@dataclass(frozen=True)
class Point:
    """One operating point to predict: a knob-free serving profile, the side whose knobs
    apply, the metric measured and its value (median over the rows it stands for)."""

    key: str
    side: str
    metric: str                 # per_user_tok_s | per_request_tok_s | aggregate_tok_s | tpot_s | ttft_s
    measured: float
    date: str
    profile: ServingProfile
    rows: tuple[str, ...]       # measurement ids it stands for
    source: str = ""            # the title(s) of the source(s) those rows cite

    def predict(self, values: Mapping[str, float], arrays: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        pred = self.profile.evaluate(knobs_for(self.side, values, arrays))
        return np.asarray(getattr(pred, self.metric), float)


# --------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class Calibration:
    """The outcome of :func:`fit`: knob values with their 95 % intervals, which were fitted
    and which held at their priors (and why), the residual scatter, and one row per point."""

    values: Mapping[str, float]
    fitted: tuple[str, ...]
    held: Mapping[str, str]                     # knob -> why it was not fitted
    weak: Mapping[str, str]                     # fitted knob -> why its value is poorly pinned
    interval: Mapping[str, tuple[float, float]]
    covariance: np.ndarray                      # of the fitted knobs' logs, in ``fitted`` order
    sigma: float                                # residual standard deviation of log(pred/measured)
    cutoff: str
    metrics: tuple[str, ...]
    table: pd.DataFrame = field(repr=False)
    success: bool = True
    message: str = ""

    def error_summary(self) -> pd.DataFrame:
        """Median and largest |relative error| and the share of points beyond 30 % by set
        (fit, leave-one-out, test) and metric; ``speed metrics`` groups the metrics the knobs
        are fitted on (time per output token and the tokens/s ones: time to first token is
        reported on its own)."""
        t = self.table
        rows = []
        for name, frame, col in (("fit", t[t.set == "fit"], "rel_error"), ("leave-one-out", t[t.set == "fit"], "loo_rel_error"),
                                 ("test", t[t.set == "test"], "rel_error")):
            groups = [("all", frame), ("speed metrics", frame[frame.metric.isin(self.metrics)])]
            for metric, g in groups + list(frame.groupby("metric")):
                e = g[col].abs().dropna()
                if len(e):
                    rows.append({"set": name, "metric": metric, "points": len(e), "median_abs_error": float(e.median()),
                                 "max_abs_error": float(e.max()), "beyond_30pct": float((e > 0.3).mean()),
                                 "within_interval": float(g["covered"].mean()) if "covered" in g and name == "test"
                                 else float("nan")})
        return pd.DataFrame(rows)

    def error(self, set_: str, metric: str, column: str = "median_abs_error") -> float:
        """One number of :meth:`error_summary` (e.g. ``("test", "speed metrics")``'s median),
        NaN where that set has no point of that metric."""
        s = self.error_summary()
        hit = s[(s["set"] == set_) & (s["metric"] == metric)]
        return float(hit[column].iloc[0]) if len(hit) else float("nan")

    def to_dict(self) -> dict:
        return {"values": dict(self.values), "fitted": list(self.fitted), "held": dict(self.held), "weak": dict(self.weak),
                "interval": {k: list(v) for k, v in self.interval.items()}, "sigma": self.sigma, "cutoff": self.cutoff,
                "metrics": list(self.metrics), "success": self.success, "message": self.message,
                "errors": self.error_summary().to_dict(orient="records")}


def _log_resid(points: Sequence[Point], values: Mapping[str, float]) -> np.ndarray:
    return np.array([math.log(float(p.predict(values)) / p.measured) for p in points])


def _sensitivity(points: Sequence[Point], values: Mapping[str, float], names: Sequence[str], step: float = 0.1):
    """d log(pred) / d log(knob) for every point and knob: one vectorised evaluation per point."""
    if not names:
        return np.zeros((len(points), 0))
    J = np.zeros((len(points), len(names)))
    for i, p in enumerate(points):
        mine = [j for j, n in enumerate(names) if n.startswith(p.side + ".")]
        if not mine:
            continue
        arrays = {}
        for k, j in enumerate(mine):
            n = names[j]
            col = np.full(len(mine) + 1, float(values[n]))
            col[k + 1] = values[n] * math.exp(step)
            arrays[n] = col
        y = np.log(np.asarray(p.predict(values, arrays), float).reshape(-1))
        J[i, mine] = (y[1:] - y[0]) / step
    return J


def _solve(points, names, specs, x0: Mapping[str, float], max_nfev=None):
    from scipy.optimize import least_squares

    lo = np.log([specs[n].low for n in names])
    hi = np.log([specs[n].high for n in names])
    z0 = np.clip(np.log([x0[n] for n in names]), lo + 1e-9, hi - 1e-9)
    base = dict(x0)

    def vals(z):
        return {**base, **dict(zip(names, np.exp(z)))}

    def res(z):
        return _log_resid(points, vals(z))

    def jac(z):
        return _sensitivity(points, vals(z), names, step=1e-4)

    sol = least_squares(res, z0, jac=jac, bounds=(lo, hi), method="trf", max_nfev=max_nfev, x_scale="jac")
    return vals(sol.x), sol


def fit(points: Sequence[Point], cutoff: str, *, knobs: Sequence[str] | None = None, min_rows: int = 3,
        sensitivity: float = 0.1, loo: bool = True, max_condition: float = 1e10, fit_metrics: Sequence[str] = ("per_user_tok_s", "per_request_tok_s",
        "aggregate_tok_s", "tpot_s")) -> Calibration:
    """Fit the knobs on the points dated up to ``cutoff`` (``YYYY-MM-DD``), test on the later
    ones. See the module docstring for the method."""
    import re

    if not isinstance(cutoff, str) or not re.match(r"^\d{4}(-\d{2}(-\d{2})?)?$", cutoff):
        raise CalibrationError(f"cutoff must be a date YYYY, YYYY-MM or YYYY-MM-DD, got {cutoff!r}")
    specs = {k.name: k for k in knob_specs(knobs)}
    pts = list(points)
    if not pts:
        raise CalibrationError("no measured points to calibrate on")
    is_fit = np.array([p.date <= cutoff and p.metric in fit_metrics for p in pts])
    fit_pts = [p for p, f in zip(pts, is_fit) if f]
    if not fit_pts:
        raise CalibrationError(f"no points dated up to {cutoff} with a metric in {', '.join(fit_metrics)}")
    priors = {n: s.prior for n, s in specs.items()}
    # which knobs the fitted points can identify: a knob counts for a point when moving it
    # across its whole range changes the point's prediction by at least ``sensitivity``
    held, names = {}, []
    for n, spec in specs.items():
        k = 0
        for p in fit_pts:
            if not n.startswith(p.side + "."):
                continue
            y = np.asarray(p.predict(priors, {n: np.array([spec.low, spec.high])}), float).reshape(-1)
            k += bool(abs(math.log(y[-1] / y[0])) >= math.log1p(sensitivity))
        if k < min_rows:
            held[n] = f"moved by {k} fitted point(s), fewer than {min_rows}: held at its prior {spec.show(spec.prior)}"
        else:
            names.append(n)
    if names and len(fit_pts) <= len(names):
        raise CalibrationError(f"{len(fit_pts)} fitted point(s) cannot determine {len(names)} knob(s) "
                               f"({', '.join(names)}); add measurements or hold knobs")
    # fit; while the fitted points cannot tell two knobs apart (the Jacobian's normal matrix
    # is near singular), or leave a knob's whole range inside its 95 % interval, hold the
    # knob they move least at its prior and fit again
    while True:
        values, sol = (_solve(fit_pts, names, specs, priors) if names else (priors, None))
        J = _sensitivity(fit_pts, values, names, step=1e-4)
        r = _log_resid(fit_pts, values)
        dof = max(len(fit_pts) - len(names), 1)
        sigma = float(math.sqrt(float(np.sum(r ** 2)) / dof))
        cov = np.zeros((len(names), len(names)))
        interval = {}
        if not names:
            break
        JtJ = J.T @ J
        cond = float(np.linalg.cond(JtJ))
        if not (np.isfinite(cond) and cond <= max_condition):
            weakest = names[int(np.argmin(np.linalg.norm(J, axis=0)))]
            held[weakest] = (f"not separable from {', '.join(n for n in names if n != weakest)} by the fitted points "
                             f"(condition number {cond:.3g}): held at its prior {specs[weakest].show(specs[weakest].prior)}")
        else:
            cov = sigma ** 2 * np.linalg.inv(JtJ)
            spanning = []
            for j, n in enumerate(names):
                half = min(1.96 * math.sqrt(max(cov[j, j], 0.0)), 700.0)   # beyond exp's reach: the whole range
                interval[n] = (max(values[n] * math.exp(-half), specs[n].low),
                               min(values[n] * math.exp(half), specs[n].high))
                if interval[n][0] <= specs[n].low * 1.0001 and interval[n][1] >= specs[n].high * 0.9999:
                    spanning.append(j)
            if not spanning:
                break
            weakest = names[min(spanning, key=lambda j: float(np.linalg.norm(J[:, j])))]
            held[weakest] = (f"not pinned by the fitted points (its 95 % interval spans its whole range "
                             f"[{specs[weakest].show(specs[weakest].low)}, {specs[weakest].show(specs[weakest].high)}]): held at its prior "
                             f"{specs[weakest].show(specs[weakest].prior)}")
        names.remove(weakest)
        # start the next fit from this one's values, the held knob back at its prior
        priors = {**priors, **{n: values[n] for n in names}, weakest: specs[weakest].prior}
        values = {**values, weakest: specs[weakest].prior}
    from .report.fmt import number  # here, not at the top: lpulab.report imports the library

    weak = {}
    for n in names:
        lo_, hi_ = interval[n]
        why = []
        if hi_ / lo_ > 10.0:
            why.append(f"weakly identified: its 95 % interval [{specs[n].show(lo_)}, {specs[n].show(hi_)}] spans a "
                       f"factor of {number(hi_ / lo_)}")
        for end, bound in (("upper", specs[n].high), ("lower", specs[n].low)):
            if abs(math.log(values[n] / bound)) < math.log(1.05):
                why.append(f"at the {end} end of its allowed range ({specs[n].show(bound)}): the fitted points would "
                           f"take it further, so the range, not the data, sets it")
        if why:
            weak[n] = "; ".join(why)
    for n in held:
        interval[n] = (specs[n].low, specs[n].high)
    # every point: prediction, interval, leave-one-out
    rows = []
    loo_pred = {}
    if loo and names:
        for i, p in enumerate(fit_pts):
            others = fit_pts[:i] + fit_pts[i + 1:]
            v_i, _ = _solve(others, names, specs, values, max_nfev=20)
            loo_pred[p.key] = float(p.predict(v_i))
    all_J = _sensitivity(pts, values, names, step=1e-4)
    for i, (p, f) in enumerate(zip(pts, is_fit)):
        pred = float(p.predict(values))
        g = all_J[i]
        var = float(g @ cov @ g) + sigma ** 2
        half = 1.96 * math.sqrt(var)
        lo_, hi_ = pred * math.exp(-half), pred * math.exp(half)
        lp = loo_pred.get(p.key, float("nan"))
        rows.append({"point": p.key, "set": "fit" if f else ("test" if p.date > cutoff else "unfitted"),
                     "metric": p.metric, "side": p.side, "date": p.date, "measured": p.measured, "predicted": pred,
                     "rel_error": pred / p.measured - 1.0, "pi_low": lo_, "pi_high": hi_,
                     "covered": bool(lo_ <= p.measured <= hi_), "loo_predicted": lp,
                     "loo_rel_error": lp / p.measured - 1.0 if lp == lp else float("nan"),
                     "rows": len(p.rows), "ids": ";".join(p.rows), "source": p.source})
    return Calibration(values=values, fitted=tuple(names), held=held, weak=weak, interval=interval, covariance=cov,
                       sigma=sigma, cutoff=cutoff, metrics=tuple(fit_metrics), table=pd.DataFrame(rows),
                       success=bool(sol.success) if sol is not None else True,
                       message=str(sol.message) if sol is not None else "no knob identified: all held at priors")


def interval(cal: Calibration, side: str, predict_log: Callable[[Mapping[str, np.ndarray]], np.ndarray],
             z: float = 1.96, ndim: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A prediction with its interval by the delta method: ``predict_log(arrays)`` returns
    the log of a prediction for knob arrays (name -> array over ``1 + k`` perturbations on
    a leading axis, shaped to broadcast over ``ndim`` more axes of operating points); the
    result is (point, low, high), each of the operating points' shape."""
    names = [n for n in cal.fitted if n.startswith(side + ".")]
    idx = [cal.fitted.index(n) for n in names]
    step = 1e-4
    arrays = {}
    for j, n in enumerate(names):
        col = np.full(len(names) + 1, float(cal.values[n]))
        col[j + 1] = cal.values[n] * math.exp(step)
        arrays[n] = col.reshape((-1,) + (1,) * ndim)
    y = np.asarray(predict_log(arrays), float)
    if not names:
        y = y[None] if y.ndim == ndim else y
    y0 = y[0]
    g = (y[1:] - y0) / step if names else np.zeros((0,) + np.shape(y0))
    cov = cal.covariance[np.ix_(idx, idx)] if names else np.zeros((0, 0))
    var = np.einsum("i...,ij,j...->...", g, cov, g) + cal.sigma ** 2 if names else np.full(np.shape(y0), cal.sigma ** 2)
    half = z * np.sqrt(var)
    return np.exp(y0), np.exp(y0 - half), np.exp(y0 + half)


def knob_table(cal: Calibration) -> pd.DataFrame:
    """One row per knob: value, 95 % interval, whether it was fitted, held at its prior or
    weakly identified, what it means and where its prior comes from."""
    rows = []
    for k in KNOBS:
        n = k.name
        status = "fitted" if n in cal.fitted else "held at prior"
        why = cal.held.get(n, "") or cal.weak.get(n, "")
        if n in cal.weak:
            status = "fitted, weakly identified"
        lo, hi = cal.interval.get(n, (k.low, k.high))
        rows.append({"knob": n, "value": float(cal.values.get(n, k.prior)), "low": float(lo), "high": float(hi),
                     "status": status, "why": why, "meaning": k.meaning, "prior": k.prior, "prior basis": k.basis})
    return pd.DataFrame(rows)
