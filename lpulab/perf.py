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
