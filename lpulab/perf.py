"""Inference speed of a deployment: time to first token, time per output token, tokens/s.

A deployment is ``chips`` of one device arranged as ``replicas`` copies of a model, each
split into ``pipeline`` stages of ``tensor`` chips (tensor parallel inside a stage). One
step of a micro-batch does work ``W`` = (FLOPs ``F``, bytes through the weight-holding tier
``b``, all-reduce message ``M`` per layer), spread evenly over the ``n = pipeline*tensor``
chips of a replica. Per stage:

    t_stage = max(F / (n e_c P), b / (n e_m W_mem)) + o_step
            + (L / pipeline) * 2 * allreduce(M, tensor)
    allreduce(M, t) = 2 ceil(log2 t) alpha + 2 (t-1)/t * M / (e_l W_link)

A token passes every stage in turn and stages hand over activations in one hop each
(``alpha + M / (e_l W_link)``). With ``m`` micro-batches in flight in the pipeline:

    cycle     = max(m, pipeline) * t_stage + (pipeline - 1) * hop
    TPOT      = cycle                      (each stream gets one token per cycle)
    aggregate = replicas * m * b_micro / cycle

``alpha`` (latency per collective step or hop), ``o_step`` (fixed overhead per stage step)
and the achieved fractions ``e`` are the knobs that calibration fits to measurements.
Everything broadcasts over numpy arrays: batch, context and configuration arrays give a
whole latency-throughput frontier in one call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .catalog import Device
from .roofline import Efficiency


@dataclass(frozen=True)
class Deployment:
    """How chips serve one model. ``hop_latency_s`` and ``step_overhead_s`` are assumptions
    (or calibrated values), not vendor figures."""

    device: Device
    chips: int
    pipeline: int = 1
    tensor: int = 1
    precision: str = "int8"          # the compute roof used (weights' precision)
    link: str | None = None          # device.interconnect key for chip-to-chip traffic
    hop_latency_s: float = 1e-6
    step_overhead_s: float = 0.0
    efficiency: Efficiency = field(default_factory=Efficiency)

    def __post_init__(self):
        for name in ("chips", "pipeline", "tensor"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"Deployment.{name} must be a positive integer, got {v!r}")
        if self.chips % (self.pipeline * self.tensor):
            raise ValueError(
                f"{self.chips} chips cannot be split into replicas of pipeline {self.pipeline} x tensor "
                f"{self.tensor} = {self.pipeline * self.tensor}; choose chips as a multiple of that")
        if self.precision not in self.device.compute:
            raise ValueError(f"{self.device.id} has no {self.precision} peak (has {', '.join(self.device.compute)})")
        if self.hop_latency_s < 0 or self.step_overhead_s < 0:
            raise ValueError("hop_latency_s and step_overhead_s must be non-negative")
        if self.link is not None and self.link not in self.device.interconnect:
            raise ValueError(f"{self.device.id} has no interconnect {self.link!r} "
                             f"(has {', '.join(self.device.interconnect) or 'none'})")

    @property
    def per_replica(self) -> int:
        return self.pipeline * self.tensor

    @property
    def replicas(self) -> int:
        return self.chips // self.per_replica

    @property
    def link_bandwidth(self) -> float:
        """Chip-to-chip bandwidth per chip per direction, bytes/s (the first non-PCIe link)."""
        names = [self.link] if self.link else [k for k in self.device.interconnect if k != "pcie"] or list(self.device.interconnect)
        for n in names:
            ln = self.device.interconnect[n]
            if ln.bandwidth is not None:
                return ln.bandwidth.si
        if self.per_replica == 1:
            return math.inf  # a single chip never talks to another
        raise ValueError(f"{self.device.id} has no chip-to-chip link bandwidth in the catalog")

    def with_(self, **changes) -> "Deployment":
        return replace(self, **changes)


@dataclass(frozen=True)
class Work:
    """The work of one step of one micro-batch, whole model (one replica). Arrays broadcast.

    ``weight`` is the part of ``bytes`` that is weights: it is read once per step however
    many sequences the step serves, which is what :meth:`merge` relies on.
    """

    flops: np.ndarray
    bytes: np.ndarray
    weight: np.ndarray
    message: np.ndarray      # bytes of one all-reduce / one pipeline hand-over
    layers: int

    def merge(self, other: "Work") -> "Work":
        """Two kinds of work fused into one step (e.g. decode plus a chunk of prefill):
        the weights are read once."""
        return Work(self.flops + other.flops, self.bytes + other.bytes - np.minimum(self.weight, other.weight),
                    np.maximum(self.weight, other.weight), self.message + other.message, self.layers)


def allreduce_time(message, width: int, alpha: float, link_bw: float, link_eff: float = 1.0):
    """All-reduce of ``message`` bytes over ``width`` chips: a latency term of
    2*ceil(log2(width)) steps and a bandwidth term of 2(width-1)/width * message."""
    if width <= 1:
        return np.zeros_like(np.asarray(message, float))
    return 2 * math.ceil(math.log2(width)) * alpha + 2 * (width - 1) / width * np.asarray(message, float) / (link_eff * link_bw)


def transfer_bytes(work: Work, pipeline: int = 1, tensor: int = 1) -> dict:
    """Bytes that cross chip boundaries in one step of one replica, as this model times them.

    ``all_reduce``: two per layer (after attention and after the FFN); :func:`allreduce_time`
    sends ``2(t-1)/t * M`` from each of the ``t`` chips, ``2(t-1) * M`` in all.
    ``pipeline``: ``pipeline - 1`` hand-overs; :func:`hop_time` times one message of ``M``
    over one link, i.e. each of the next stage's ``t`` chips receives ``M`` over its own
    link in parallel, ``t * M`` in all. ``M = tokens * hidden * activation bytes``
    (``work.message``). Arrays broadcast; ``total`` is the sum.
    """
    for name, v in (("pipeline", pipeline), ("tensor", tensor)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"transfer_bytes: {name} must be a positive integer, got {v!r}")
    m = np.asarray(work.message, float)
    ar = 2 * work.layers * 2 * (tensor - 1) * m
    hop = (pipeline - 1) * tensor * m
    return {"all_reduce": ar, "pipeline": hop, "total": ar + hop}


def stage_time(work: Work, dep: Deployment) -> dict:
    """Time of one pipeline stage for one micro-batch, and its parts."""
    e = dep.efficiency
    n = dep.per_replica
    compute = work.flops / (n * e.compute * dep.device.peak(dep.precision))
    memory = work.bytes / (n * e.memory * dep.device.bandwidth())
    layers_per_stage = work.layers / dep.pipeline
    comm = 2 * layers_per_stage * allreduce_time(work.message, dep.tensor, dep.hop_latency_s,
                                                 dep.link_bandwidth, e.link)
    roof = np.maximum(compute, memory)
    return {"compute": compute, "memory": memory, "comm": comm, "overhead": dep.step_overhead_s,
            "stage": roof + comm + dep.step_overhead_s}


def hop_time(work: Work, dep: Deployment):
    if dep.pipeline <= 1:
        return np.zeros_like(np.asarray(work.message, float))
    return dep.hop_latency_s + work.message / (dep.efficiency.link * dep.link_bandwidth)


def step(work: Work, dep: Deployment, microbatches=1) -> dict:
    """One step with ``microbatches`` in flight: cycle time and what bounds it."""
    m = np.asarray(microbatches, float)
    st = stage_time(work, dep)
    hops = (dep.pipeline - 1) * hop_time(work, dep)
    cycle = np.maximum(m, dep.pipeline) * st["stage"] + hops
    parts = np.stack(np.broadcast_arrays(st["compute"], st["memory"], st["comm"] + hops / np.maximum(m, dep.pipeline)))
    bound = np.asarray(["compute", "memory", "communication"], dtype=object)[np.argmax(parts, axis=0)]
    return {**st, "hops": hops, "cycle": cycle, "bound": bound}


def serve(decode_work: Work, prefill_work: Work, dep: Deployment, concurrency, output_tokens,
          microbatches=None, first_token_work: Work | None = None) -> pd.DataFrame | dict:
    """Steady state of continuous batching with ``concurrency`` streams per replica.

    ``decode_work`` is one decode step for a micro-batch of ``concurrency / m`` streams;
    ``prefill_work`` is the prefill of the requests that start during that step
    (``streams / output_tokens`` requests), fused into the same step. ``first_token_work`` is
    one request's prefill alone, for the time to first token. Returns arrays: tpot_s,
    per_user_tok_s, aggregate_tok_s, ttft_s, bound.
    """
    m = dep.pipeline if microbatches is None else microbatches
    w = decode_work.merge(prefill_work)
    s = step(w, dep, m)
    conc = np.asarray(concurrency, float)
    out = {
        "tpot_s": s["cycle"],
        "per_user_tok_s": 1.0 / s["cycle"],
        "aggregate_tok_s": dep.replicas * conc / s["cycle"],
        "bound": s["bound"],
    }
    if first_token_work is not None:
        f = step(first_token_work, dep, 1)
        out["ttft_s"] = f["cycle"]
    return out


# --------------------------------------------------------------------------- calibration


@dataclass
class Calibration:
    names: tuple
    values: dict
    table: pd.DataFrame
    cost: float
    success: bool
    message: str


def calibrate(rows: pd.DataFrame, predict, x0: dict, bounds: dict, fit_mask=None) -> Calibration:
    """Fit the parameters ``x0`` (name -> start value, within ``bounds`` name -> (lo, hi)) so
    that ``predict(params, row) -> float`` matches ``rows['value']`` on the rows where
    ``fit_mask`` is true (all rows by default), minimising squared log-ratios with
    scipy.optimize.least_squares. The returned table reports every row, fitted or not:
    predicted, measured, relative error."""
    from scipy.optimize import least_squares

    names = tuple(x0)
    fit_mask = np.ones(len(rows), bool) if fit_mask is None else np.asarray(fit_mask, bool)
    if not fit_mask.any():
        raise ValueError("calibration needs at least one row to fit")
    if fit_mask.sum() < len(names):
        raise ValueError(f"{fit_mask.sum()} row(s) cannot determine {len(names)} parameters ({', '.join(names)})")
    fit_rows = rows[fit_mask]
    lo = np.array([bounds[n][0] for n in names], float)
    hi = np.array([bounds[n][1] for n in names], float)
    # optimise in log space: the parameters span decades (microseconds to seconds, fractions)
    def residuals(z):
        p = dict(zip(names, np.exp(z)))
        return [math.log(predict(p, r) / r.value) for r in fit_rows.itertuples()]

    z0 = np.log(np.clip([x0[n] for n in names], lo, hi))
    sol = least_squares(residuals, z0, bounds=(np.log(lo), np.log(hi)))
    values = dict(zip(names, np.exp(sol.x).tolist()))
    table = rows.copy()
    table["predicted"] = [predict(values, r) for r in rows.itertuples()]
    table["measured"] = table["value"]
    table["rel_error"] = table["predicted"] / table["measured"] - 1.0
    table["fitted"] = fit_mask
    return Calibration(names, values, table, float(sol.cost), bool(sol.success), str(sol.message))


# --------------------------------------------------------------------------- from a model


def _work(counts, model, tokens, precision) -> Work:
    from .workload import Precision

    p = Precision.of(precision)
    message = np.asarray(tokens, float) * model.hidden_size * p.a
    return Work(np.asarray(counts.flops, float), np.asarray(counts.bytes, float),
                np.asarray(counts.weight, float), message, model.layers)


def decode_work(model, batch, context, precision=None) -> Work:
    """One decode step of ``batch`` sequences that have ``context`` tokens in their cache.

    For a dense model every count of a decode step is affine in ``B`` and ``B*(P+1)``
    (docs/counting.md), so large arrays are evaluated from three scalar shapes, exactly,
    instead of building every operator's count at full array size. Mixture-of-experts
    models (expected distinct experts are not affine in B) take the direct path.
    """
    from . import workload

    B, P = np.asarray(batch, float), np.asarray(context, float)
    if model.experts > 1 or max(B.size, P.size) < 4096:
        c = workload.totals(model, "decode", batch, context, None, precision)
        return _work(c, model, batch, precision)
    f10, f20, f11 = (workload.totals(model, "decode", b, p, None, precision) for b, p in ((1, 0), (2, 0), (1, 1)))
    BP = B * (P + 1)

    def affine(col):
        x10, x20, x11 = (float(getattr(f, col)) for f in (f10, f20, f11))
        d = x11 - x10
        b = x20 - x10 - d
        return (x10 - b - d) + b * B + d * BP

    c = workload.Counts(*(affine(col) for col in workload.COLUMNS))
    return _work(c, model, batch, precision)


def prefill_work(model, requests, prompt, precision=None) -> Work:
    """Prefill of ``requests`` prompts of ``prompt`` tokens fused into one step. ``requests``
    may be fractional (the average number starting per step): everything but the weights
    scales with it, and the weights are read once."""
    from . import workload

    r = np.asarray(requests, float)
    one = workload.totals(model, "prefill", 1, 0, prompt, precision)
    w = np.asarray(one.weight, float)
    return Work(r * np.asarray(one.flops, float), r * (np.asarray(one.bytes, float) - w) + np.where(r > 0, w, 0.0),
                np.where(r > 0, w, 0.0), r * np.asarray(prompt, float) * model.hidden_size * _act_bytes(precision),
                model.layers)


def _act_bytes(precision) -> float:
    from .workload import Precision

    return Precision.of(precision).a


def kv_fits(model, dep: Deployment, concurrency, context, precision=None, reserve: float = 0.0):
    """Whether the weights plus the KV cache of ``concurrency`` streams of ``context`` tokens
    (per replica) fit in a replica's memory, keeping ``reserve`` (a fraction) free."""
    from . import workload
    from .workload import Precision

    p = Precision.of(precision)
    need = workload.weight_bytes(model, p.weights) + workload.kv_bytes(model, concurrency, context, p.kv)
    have = dep.per_replica * dep.device.capacity() * (1.0 - reserve)
    return np.asarray(need <= have)


def max_concurrency(model, dep: Deployment, context, precision=None, reserve: float = 0.0) -> int:
    """The most streams per replica whose KV cache fits beside the weights (0 if the weights
    alone do not fit)."""
    from . import workload
    from .workload import Precision

    p = Precision.of(precision)
    free = dep.per_replica * dep.device.capacity() * (1.0 - reserve) - workload.weight_bytes(model, p.weights)
    per_stream = workload.kv_bytes(model, 1, context, p.kv)
    return int(max(free // per_stream, 0))


def operating_points(model, dep: Deployment, concurrency, prompt: int, output: int, precision=None,
                     microbatches=None, reserve: float = 0.0, as_frame: bool = True):
    """Latency and throughput of ``dep`` serving ``model`` at each ``concurrency`` (streams per
    replica; an array gives the whole latency-throughput frontier in one call).

    Requests have ``prompt`` input and ``output`` generated tokens; a stream's cache holds
    ``prompt + output/2`` tokens on average. Prefill of the requests that start during a step
    is fused into that step (continuous batching). Returns a DataFrame (or a dict of arrays
    with ``as_frame=False``) with concurrency, tpot_s, per_user_tok_s, aggregate_tok_s,
    ttft_s, bound and fits.
    """
    if prompt < 1 or output < 1:
        raise ValueError(f"prompt and output must be >= 1 token, got {prompt}, {output}")
    m = dep.pipeline if microbatches is None else int(microbatches)
    conc = np.asarray(concurrency, float)
    if np.any(conc < 1):
        raise ValueError("concurrency must be >= 1 stream")
    m = np.minimum(m, conc)                        # never more micro-batches than streams
    micro = np.ceil(conc / m)                      # streams per micro-batch
    ctx = np.floor(prompt + output / 2.0)
    dec = decode_work(model, micro, ctx, precision)
    pre = prefill_work(model, micro / output, prompt, precision)
    first = prefill_work(model, 1.0, prompt, precision)
    out = serve(dec, pre, dep, micro * m, output, microbatches=m, first_token_work=first)
    out["aggregate_tok_s"] = dep.replicas * micro * m / out["tpot_s"]
    out["concurrency"] = conc
    out["fits"] = kv_fits(model, dep, micro * m, prompt + output, precision, reserve)
    if not as_frame:
        return out
    n = np.broadcast(*[np.asarray(v) for v in out.values()]).shape
    return pd.DataFrame({k: np.broadcast_to(np.asarray(v), n) for k, v in out.items()})[
        ["concurrency", "tpot_s", "per_user_tok_s", "aggregate_tok_s", "ttft_s", "bound", "fits"]]
