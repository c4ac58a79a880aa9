"""Disaggregated serving: prompts prefilled on one deployment, tokens decoded on another.

The prefill deployment (e.g. GPUs) runs each prompt alone; its KV cache crosses a network
link to the decode deployment (e.g. an LPU rack), which runs decode-only steps (no prompt
fused into them). With ``bytes = kv_bytes(model, 1, prompt)`` at the prefill side's cache
precision and ``n`` parallel paths (each chip of the smaller side sends or receives its
share over its own link; ``paths`` overrides)::

    TTFT = t_prefill(prompt; prefill deployment, alone) + latency + bytes / (n W_link)
    TPOT, per-user and aggregate tokens/s: the decode deployment's, decode-only steps

Queueing is left out: TTFT is the time of a request that finds the prefill side idle. The
prefill side's load (prompts arriving per second x prefill time, over its replicas) is
reported, so a split whose prefill side cannot keep up shows (> 1). Chips and deployment
units of both sides are reported; the prediction's ``chips`` is their sum.

The link's bandwidth and latency default to the sourced assumption in ``data/serving.toml``
(``[disaggregated.link]``, with its range).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import perf, workload
from .catalog import Model


class DisaggregationError(perf.PerfError):
    """A split the serving model cannot time; the message says why."""


@dataclass(frozen=True)
class KVLink:
    """The network a KV cache crosses: bandwidth per path (B/s, per direction), latency of
    one hand-over (s), and the number of parallel paths (None: the smaller side's chips per
    replica)."""

    bandwidth: float
    latency: float
    paths: int | None = None

    def __post_init__(self) -> None:
        if not (np.isfinite(self.bandwidth) and self.bandwidth > 0):
            raise DisaggregationError(f"KV link bandwidth must be a positive number of bytes/s, got {self.bandwidth!r}")
        if not (np.isfinite(self.latency) and self.latency >= 0):
            raise DisaggregationError(f"KV link latency must be a number of seconds >= 0, got {self.latency!r}")
        if self.paths is not None and (isinstance(self.paths, bool) or int(self.paths) != self.paths or self.paths < 1):
            raise DisaggregationError(f"KV link paths must be a whole number >= 1, got {self.paths!r}")

    @classmethod
    def default(cls) -> KVLink:
        """The sourced assumption of ``data/serving.toml`` ``[disaggregated.link]``."""
        from . import speculative

        a = speculative.load_assumptions()
        return cls(a.link["bandwidth"].si, a.link["latency"].si)


def kv_transfer_bytes(model: Model, prompt: int, precision) -> float:
    """Bytes of one request's KV cache after its prefill: ``prompt`` tokens at the cache
    precision (what every layer caches, windowed layers at most their window)."""
    p = workload.Precision.of(precision)
    return float(workload.kv_bytes(model, 1, int(prompt), p.kv))


@dataclass(frozen=True)
class DisaggregatedProfile:
    """The knob-free parts: the decode side's profile (decode-only steps, speculative or
    not) and the prefill side's prompt step, with the transfer. :meth:`evaluate` takes the
    knobs of each side (the prefill side's default: its deployment's own)."""

    decode: Any                      # perf.ServingProfile or speculative.SpeculativeProfile
    prefill_deployment: perf.Deployment
    prefill_step: perf.StepProfile
    link: KVLink
    kv_bytes: float
    prefill_fits: bool
    model_id: str
    notes: tuple[str, ...] = field(default=())

    @property
    def deployment(self) -> perf.Deployment:
        return self.decode.deployment

    @property
    def paths(self) -> int:
        if self.link.paths is not None:
            return int(self.link.paths)
        dd, pd_ = self.deployment.layout, self.prefill_deployment.layout
        return max(1, min(dd.chips // dd.replicas, pd_.chips // pd_.replicas))

    @property
    def transfer_s(self) -> float:
        return self.link.latency + self.kv_bytes / (self.paths * self.link.bandwidth)

    def evaluate(self, knobs: perf.Knobs | None = None, prefill_knobs: perf.Knobs | None = None) -> perf.Prediction:
        d = self.decode.evaluate(knobs)
        pk = prefill_knobs or perf.Knobs.of(self.prefill_deployment)
        t_pre = perf.step_times(self.prefill_step, pk).path
        ttft = t_pre + self.transfer_s + 0.0 * np.asarray(d.tpot_s)
        pdep = self.prefill_deployment
        decode_chips = int(d.chips)
        rate = np.asarray(d.aggregate_tok_s) / d.output          # prompts arriving per second
        load = rate * t_pre / pdep.layout.replicas
        extra = dict(d.extra)
        extra.update(disaggregated=True, prefill_deployment=pdep.label(), prefill_layout=pdep.layout.to_dict(),
                     prefill_s=t_pre, kv_transfer_s=self.transfer_s, kv_bytes=self.kv_bytes, kv_paths=self.paths,
                     kv_link_bandwidth=self.link.bandwidth, kv_link_latency=self.link.latency,
                     prefill_chips=pdep.chips, decode_chips=decode_chips, prefill_units=pdep.units,
                     decode_units=self.deployment.units, prefill_load=load, prefill_fits=self.prefill_fits)
        notes = tuple(d.notes) + self.notes
        if np.any(np.asarray(load) > 1):
            notes += (f"the prefill side ({pdep.label()}) cannot keep up where its load exceeds 1: prompts arrive "
                      "faster than its replicas prefill them (TTFT here leaves queueing out)",)
        return perf.Prediction(d.model, f"prefill {pdep.label()} -> decode {d.deployment}", d.layout, d.prompt,
                               d.output, d.concurrency, ttft, d.tpot_s, d.tpot_max_s, d.per_user_tok_s,
                               d.aggregate_tok_s, d.bound, np.asarray(d.fits) & self.prefill_fits,
                               d.streams_per_replica, decode_chips + pdep.chips, notes, extra)


def disaggregated_profile(model: Model, decode: perf.Deployment, prefill: perf.Deployment, concurrency, prompt: int,
                          output: int, *, link: KVLink | None = None, speculation=None) -> DisaggregatedProfile:
    """The knob-free part of :func:`predict` (arguments as there)."""
    if speculation is not None:
        from . import speculative

        dprof: Any = speculative.speculative_profile(model, decode, speculation, concurrency, prompt, output,
                                                     fused_prefill=False)
    else:
        dprof = perf.serving_profile(model, decode, concurrency, prompt, output, fused_prefill=False)
    stages = perf._stages(model, prefill, int(prompt))
    step = perf.step_profile(model, prefill, 0.0, 0.0, 1.0, int(prompt), stages)
    fits = bool(np.all(perf._fits(model, prefill, 1.0, int(prompt))))
    link = link or KVLink.default()
    kv = kv_transfer_bytes(model, prompt, prefill.precision)
    note: tuple[str, ...] = ()
    if prefill.precision.kv != decode.precision.kv:
        note = (f"the KV cache is sent at the prefill side's {prefill.precision.kv} and stored at the decode side's "
                f"{decode.precision.kv} (conversion not timed)",)
    return DisaggregatedProfile(dprof, prefill, step, link, kv, fits, model.id,
                                ("disaggregated: TTFT = the prompt's prefill alone on the prefill deployment + the KV "
                                 "transfer; decode steps carry no prefill; queueing left out",) + note)


def predict(model: Model, decode: perf.Deployment, prefill: perf.Deployment, concurrency, prompt: int, output: int,
            *, link: KVLink | None = None, speculation=None, knobs: perf.Knobs | None = None,
            prefill_knobs: perf.Knobs | None = None) -> perf.Prediction:
    """``model`` prefilled on ``prefill`` and decoded on ``decode`` (optionally with
    speculative decoding), its KV cache sent over ``link`` (default: ``data/serving.toml``).
    ``Prediction.extra`` holds the prefill and transfer times, the KV bytes, both sides'
    chips and units and the prefill side's load; ``Prediction.chips`` is both sides'."""
    return disaggregated_profile(model, decode, prefill, concurrency, prompt, output, link=link,
                                 speculation=speculation).evaluate(knobs, prefill_knobs)
