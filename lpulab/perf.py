"""The serving model: time to first token, time per output token and tokens/s of a deployment.

A :class:`Deployment` is a device used in a :class:`~lpulab.parallel.Layout` (``replicas``
copies of the model, each ``pipeline`` stages of ``tensor`` chips) at a precision, with the
achieved fractions of its peaks and a named per-layer overhead. It serves ``concurrency``
streams in all (spread over the replicas as evenly as whole streams allow), each with a
prompt of ``prompt`` tokens and ``output`` generated tokens, by continuous batching: every
step of a micro-batch decodes one token for each of its streams and, fused into the same
step, prefills the prompts of the requests that start meanwhile (``streams / output`` per
step in steady state).

Time of one micro-batch of ``b`` streams on one pipeline stage, from the operators the
stage actually holds (:func:`lpulab.placement.stage_split`: whole layers, the embedding
with the first, the head with the last)::

    t_op     = max(F_op / (n e_c P),  B_op / (n e_m W))         each operator on its roofline
    t_layer  = sum_op t_op + 2 [tensor > 1] allreduce(M) + o     per layer of each kind
    t_stage  = [embedding] t_emb + sum_kinds layers_k * t_layer_k + [head] t_head
    allreduce(M) = alpha_coll + 2 (t-1)/t * M / (e_l W_link)

with ``n = tensor`` chips sharing every operator, ``P`` the peak at the compute format,
``W`` the bandwidth of the tier holding the weights, ``M = tokens x hidden x activation
bytes`` the message of one all-reduce, ``alpha_coll`` the link's measured collective
latency (catalog), ``o`` the per-layer overhead (kernel launches, scheduling; a calibrated
knob). Attention is counted fused by default (scores never leave the chip); the
materialised variant counts the score matrix's reads and writes. Stages hand activations
over one hop each (``hop latency + M / (e_l W_link)``).

Layers are not all alike (:func:`lpulab.architecture.layer_kinds`): a stage is timed with
the operators of its own layers, kind by kind (dense and MoE FFNs, full and windowed
attention, MLA). A mixture-of-experts layer reads the weights of the distinct experts its
tokens touch (:func:`lpulab.workload.expected_experts`), so weight reads grow with the
batch; a step that also prefills a prompt (a fraction ``r`` of the steps, on average)
reads the experts of the decode tokens plus, in that fraction, those the prompt adds.

Expert parallelism (``Layout.expert = e > 1``): a stage is ``e`` groups of ``tensor``
chips. Attention and the dense and shared parts run data parallel over the groups, each on
its share of the streams (``ceil(b / e)``); the routed experts are spread over the groups
(the fullest holds ``m = ceil(E / e)``), so each group does ``m / E`` of the routed work of
all the step's tokens and reads the weights of ``m / E`` of the distinct experts touched.
Every MoE layer adds an all-to-all, dispatch and combine, over the link joining the stage's
chips (the scale-up link when the stage fits the scale-up domain, else the scale-out
link)::

    a2a = 2 (alpha + n_tok g (e-1)/e h a / (t e_l W_link))

with ``n_tok`` the group's tokens, ``g`` the expected distinct groups a token's ``k``
experts fall in (:func:`lpulab.workload.expected_expert_groups`) and ``alpha`` the link's
small-message collective latency (or one hop when the catalog has none).

With ``m`` micro-batches in flight (sizes as even as whole streams allow), one round in
which every stream gets one token lasts::

    round = max( max_stage sum_micro t_stage(b_i),  max_micro (sum_stage t_stage(b_i) + hops) )

so the slowest stage sets the pace of a full pipeline. ``TPOT = round``; aggregate
tokens/s sum ``streams / round`` over the replicas; ``TTFT`` is the prefill of one prompt
passing every stage (alone at concurrency 1; fused into a decode step, after waiting half a
round on average, when other streams are running).

Everything broadcasts over an array of concurrencies: a latency-throughput frontier is one
call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from . import workload
from .catalog import Device, Link
from .parallel import Layout
from .roofline import Efficiency
from .workload import Precision

ATTENTION = ("fused", "materialised")
BOUNDS = ("compute", "memory", "communication", "overhead")


class PerfError(ValueError):
    """A deployment or an operating point the serving model cannot time; the message says why."""


def compute_format(device: Device, precision: Precision) -> str:
    """The format the matrix units run in (:func:`lpulab.workload.compute_format`): the
    wider of the weights' and the activations', or a format of the same width the device
    lists. A device with no such peak is a clear error."""
    try:
        return workload.compute_format(device, precision)
    except workload.WorkloadError as exc:
        raise PerfError(str(exc)) from None


@dataclass(frozen=True)
class Deployment:
    """A device serving a model in a layout. ``efficiency`` and ``layer_overhead_s`` are
    calibrated knobs (see :mod:`lpulab.calibration`); everything else comes from the catalog."""

    device: Device
    layout: Layout
    precision: Precision = field(default_factory=Precision)
    compute: str | None = None            # tensor-core format; None: :func:`compute_format`
    efficiency: Efficiency = field(default_factory=Efficiency)
    layer_overhead_s: float = 0.0         # fixed time per layer per step (kernel launches, scheduling)
    attention: str = "fused"
    microbatches: int | None = None       # per replica; None: as many as pipeline stages
    reserve: float = 0.0                  # fraction of each chip's memory kept free
    hop_latency: float | None = None      # s per chip-to-chip hop; None: the link's catalog latency
    collective_latency: float | None = None  # s per small all-reduce; None: the link's catalog value

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", Precision.of(self.precision))
        if not isinstance(self.layout, Layout):
            raise PerfError(f"Deployment.layout must be a lpulab.parallel.Layout, got {self.layout!r}")
        if self.compute is None:
            object.__setattr__(self, "compute", compute_format(self.device, self.precision))
        elif self.compute not in self.device.compute:
            raise PerfError(f"{self.device.id} has no {self.compute} peak (it runs: {', '.join(self.device.compute)})")
        if self.attention not in ATTENTION:
            raise PerfError(f"attention {self.attention!r} is not one of {', '.join(ATTENTION)}")
        if not (math.isfinite(self.layer_overhead_s) and self.layer_overhead_s >= 0):
            raise PerfError(f"layer_overhead_s must be a finite number >= 0, got {self.layer_overhead_s!r}")
        if self.microbatches is not None and (int(self.microbatches) != self.microbatches or self.microbatches < 1):
            raise PerfError(f"microbatches must be a whole number >= 1, got {self.microbatches!r}")
        for name in ("hop_latency", "collective_latency"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise PerfError(f"{name} must be a finite number of seconds >= 0, got {v!r}")
        if not (0.0 <= self.reserve < 1.0):
            raise PerfError(f"reserve must be a fraction in [0, 1), got {self.reserve!r}")
        if self.layout.stage_chips > 1 or self.layout.pipeline > 1:
            rules = self.device.deployment
            if self.layout.tensor > rules.max_tensor:
                raise PerfError(f"tensor={self.layout.tensor} exceeds {self.device.id}'s scale-up domain of "
                                f"{rules.max_tensor} chips (deployment.scale_up)")
            self.link  # noqa: B018  (raises a clear error when the catalog has no link)

    # ---- what the catalog says about this device

    @property
    def link(self) -> Link:
        """The interconnect inside the scale-up domain (``deployment.scale_up_link``)."""
        name = self.device.deployment.scale_up_link
        if name is None:
            raise PerfError(f"{self.device.id}: deployment.scale_up_link is not set, so chips cannot talk; "
                            "name the [interconnect] that joins them")
        return self.device.interconnect[name]

    @property
    def expert_link(self) -> Link:
        """The link the routed tokens' all-to-all crosses: the scale-up link when a stage's
        ``tensor x expert`` chips fit the scale-up domain, else the scale-out link."""
        rules = self.device.deployment
        name = rules.scale_up_link if self.layout.stage_chips <= rules.max_tensor else rules.scale_out_link
        if name is None:
            raise PerfError(f"{self.device.id}: no interconnect joins a stage's {self.layout.stage_chips} chips "
                            "(deployment.scale_up_link / scale_out_link)")
        return self.device.interconnect[name]

    def a2a_latency_s(self) -> float:
        """Fixed time of one dispatch or combine: the expert link's small-message collective
        latency, else one hop."""
        ln = self.expert_link
        v = ln.collective_latency or ln.latency
        if v is None:
            raise PerfError(f"{self.device.id}: interconnect {ln.name!r} has neither collective_latency nor latency; "
                            f"add one to its hardware file to time expert parallelism")
        return v.si

    @property
    def link_bandwidth(self) -> float:
        bw = self.link.bandwidth
        if bw is None:
            raise PerfError(f"{self.device.id}: interconnect {self.link.name!r} has no bandwidth")
        return bw.si * self.efficiency.link

    @property
    def hop_latency_s(self) -> float:
        """One chip-to-chip hop (a pipeline hand-over): the link's ``latency``."""
        if self.hop_latency is not None:
            return self.hop_latency
        if self.link.latency is None:
            raise PerfError(f"{self.device.id}: interconnect {self.link.name!r} has no latency; add "
                            f"interconnect.{self.link.name}.latency (one hop) to its hardware file")
        return self.link.latency.si

    def collective_latency_s(self) -> float:
        """Fixed time of one small all-reduce over the tensor group: the link's measured
        ``collective_latency``, else ``2 ceil(log2 t)`` hops (a recursive-doubling bound)."""
        t = self.layout.tensor
        if t <= 1:
            return 0.0
        if self.collective_latency is not None:
            return self.collective_latency
        if self.link.collective_latency is not None:
            return self.link.collective_latency.si
        return 2 * math.ceil(math.log2(t)) * self.hop_latency_s

    @property
    def attention_compute(self) -> str:
        """The format attention's products run in: the wider of the activations' (queries)
        and the KV cache's (keys, values). NVFP4 weights and activations with an FP8 cache
        run attention at the FP8 peak, not the FP4 one. A device with no peak at that format
        runs attention like the other products."""
        p = self.precision
        try:
            return compute_format(self.device, workload.Precision(p.kv, p.activations, p.kv))
        except PerfError:
            return self.compute  # type: ignore[return-value]  # set by __post_init__

    @property
    def peak(self) -> float:
        return self.device.peak(self.compute) * self.efficiency.compute  # type: ignore[arg-type]  # set by __post_init__

    @property
    def bandwidth(self) -> float:
        return self.device.bandwidth() * self.efficiency.memory

    @property
    def chips(self) -> int:
        return self.layout.chips

    @property
    def units(self) -> int:
        """Deployment units bought (chips rounded up to the device's ``deployment.unit``)."""
        u = self.device.deployment.unit_chips
        return -(-self.chips // u)

    def with_(self, **changes) -> Deployment:
        return replace(self, **changes)

    def label(self) -> str:
        return f"{self.device.id} {self.layout.label()} {self.precision.label()}"


# --------------------------------------------------------------------------- operator times


def _op_list(model, dep: Deployment, phase, batch, context, tokens):
    """Operators of one step (embedding, one layer of each kind, head) with the attention
    fused or not."""
    ops = workload.op_counts(model, phase, batch, context, tokens, dep.precision)
    if dep.attention == "materialised":
        return ops
    att: dict = {}
    for o in ops:
        if o.kind == "attention":
            att.setdefault(o.part, {})[o.name] = o.counts
    out, done = [], set()
    for o in ops:
        if o.kind == "attention":
            if o.part not in done:
                a = att[o.part]
                s, v, sm = a["attn_scores"], a["attn_values"], a["softmax"]
                fused = workload.Counts(s.flops + sm.flops + v.flops, s.weight + sm.weight + v.weight, s.act_read,
                                        v.act_write, s.kv_read + v.kv_read, 0.0)
                out.append(workload.Op("attention", "layer", "attention", fused, o.part))
                done.add(o.part)
            continue
        out.append(o)
    return out


def _merge(a: workload.Counts, b: workload.Counts, scale) -> workload.Counts:
    """``a`` plus ``scale`` times ``b`` in one step: the weights are read once."""
    scale = np.asarray(scale, float)
    w = np.maximum(np.asarray(a.weight, float), np.where(scale > 0, np.asarray(b.weight, float), 0.0))
    return workload.Counts(a.flops + scale * b.flops, w, a.act_read + scale * b.act_read,
                           a.act_write + scale * b.act_write, a.kv_read + scale * b.kv_read,
                           a.kv_write + scale * b.kv_write)


@dataclass(frozen=True)
class Knobs:
    """The calibrated numbers of the serving model: achieved fractions of the compute peak,
    the memory bandwidth and the link bandwidth, and the fixed time per layer per step.
    Each may be a numpy array (e.g. shape ``(k, 1)``): every result broadcasts over it."""

    compute: object = 1.0
    memory: object = 1.0
    link: object = 1.0
    layer_overhead_s: object = 0.0
    prefill_compute: object = None    # achieved compute fraction of prefill's large products; None: as ``compute``
    half_tokens: object = 0.0         # a matrix product of M rows runs at M / (M + half_tokens) of its achieved rate

    @classmethod
    def of(cls, dep: Deployment) -> Knobs:
        e = dep.efficiency
        return cls(e.compute, e.memory, e.link, dep.layer_overhead_s)


@dataclass(frozen=True)
class StepProfile:
    """One step of one micro-batch, before the knobs: every operator's compute time and
    memory time at the vendor's peaks (arrays ``(..., ops)`` per part: the embedding, one
    layer of each kind, the head), the all-reduce, all-to-all and hand-over times split
    into a fixed latency and a part that scales with the link's achieved bandwidth, and
    what each stage holds."""

    tc: dict                     # part -> (..., ops) decode compute times at the peak
    tp: dict                     # part -> (..., ops) prefill compute times at the peak
    inv_rows: dict               # part -> (..., ops) 1 / rows of a matrix product (0 for other operators)
    tm: dict                     # part -> (..., ops) memory times at the peak bandwidth
    comm_latency: float          # per layer: 2 all-reduces' fixed latency
    comm_bytes_time: np.ndarray  # per layer: 2 all-reduces' bandwidth term at full link bandwidth
    hop_latency: float           # all hand-overs of one micro-batch: fixed part
    hop_bytes_time: np.ndarray   # ... and their bandwidth term
    emb: np.ndarray              # (stages,) 1 where a stage holds the embedding
    lay: np.ndarray              # (stages,) layers per stage
    head: np.ndarray             # (stages,) 1 where a stage holds the head
    parts: dict = field(default_factory=dict)  # part -> (stages,) how many of it each stage holds
    a2a_latency: float = 0.0     # per MoE layer with expert parallelism: dispatch + combine, fixed part
    a2a_bytes_time: object = None  # ... and their bandwidth term (None: no expert parallelism)
    moe: np.ndarray | None = None  # (stages,) MoE layers per stage


def _decode_ops(model, dep: Deployment, batch, context, tokens: int = 1):
    """The operators of a decode step in which each of ``batch`` streams runs ``tokens`` new
    tokens over ``context`` cached ones (``tokens > 1``: a speculative verification step):
    every token's work, attention over the cache and the new tokens before it, and the LM
    head's logits at every new token (each one is checked against the draft)."""
    if tokens == 1:
        return _op_list(model, dep, "decode", batch, context, None)
    ops = _op_list(model, dep, "decode", batch, context, int(tokens))
    head = [o for o in _op_list(model, dep, "decode", np.asarray(batch, float) * int(tokens), context, None)
            if o.part == "head"]
    return [o for o in ops if o.part != "head"] + head


def step_profile(model, dep: Deployment, decode_batch, context, prefill_requests=0.0, prompt=1,
                 stages=None, tokens: int = 1) -> StepProfile:
    """The knob-free work of one step of one micro-batch: ``decode_batch`` streams each
    decoding one token over ``context`` cached tokens, with ``prefill_requests`` prompts of
    ``prompt`` tokens fused in (fractional: the average number starting per step). A
    ``decode_batch`` of 0 is a prefill-only step. Each stage is timed with its own layers.

    ``tokens`` > 1 makes it a verification step of speculative decoding: each stream runs
    ``tokens`` new tokens (its last token and the draft's), like a short prefill chunk: the
    weights are read once, the compute, the activations, the attention over the cache and
    the LM head's rows scale with the tokens (see :mod:`lpulab.speculative`)."""
    from . import architecture

    if isinstance(tokens, bool) or int(tokens) != tokens or tokens < 1:
        raise PerfError(f"tokens per stream must be a whole number >= 1, got {tokens!r}")
    S = int(tokens)
    b = np.asarray(decode_batch, float)
    r = np.asarray(prefill_requests, float)
    e = dep.layout.expert
    if e > 1:
        try:
            groups = workload.expert_groups(model, e)
        except workload.WorkloadError as exc:
            raise PerfError(f"{dep.label()}: {exc}") from None
    if stages is None:
        stages = _stages(model, dep, int(np.max(context)) if np.size(context) else 0)
    # the streams and prompts of the fullest expert group (all of them without expert parallelism)
    bg = np.ceil(b / e) if e > 1 else b
    rg = np.maximum(r / e, np.minimum(r, 1.0)) if e > 1 else r
    dec = _decode_ops(model, dep, np.maximum(bg, 1.0), np.asarray(context, float), S)
    dec_all = _decode_ops(model, dep, np.maximum(b, 1.0), np.asarray(context, float), S) if e > 1 else dec
    pre = _op_list(model, dep, "prefill", 1, 0, int(prompt))
    live = (b > 0).astype(float)
    n = dep.layout.tensor
    P, W = dep.device.peak(dep.compute) * n, dep.device.bandwidth() * n  # type: ignore[arg-type]  # set by __post_init__
    P_att = dep.device.peak(dep.attention_compute) * n
    kinds = architecture.layer_kinds(model)
    names = ["embedding"] + [k.name for k in kinds] + ["head"]
    tc: dict = {g: [] for g in names}
    tp: dict = {g: [] for g in names}
    tm: dict = {g: [] for g in names}
    inv: dict = {g: [] for g in names}
    shape = np.broadcast_shapes(b.shape, r.shape, np.shape(context))
    # rows of each matrix product (a product of few rows leaves the matrix units part idle): the
    # group's tokens, the LM head's rows, or a routed expert's share of all the step's tokens
    tokens_all = np.maximum(b, 0.0) * S + r * int(prompt)
    tokens_in_step = np.maximum(bg, 0.0) * S + rg * int(prompt)
    share = model.active_experts / model.experts if model.is_moe else 1.0
    if model.is_moe:
        f = max(groups) / model.experts if e > 1 else 1.0     # the fullest group's share of the routed work
        d_step = workload.expected_experts(model, np.maximum(b, 1.0) * S)
        d_dec = workload.expected_experts(model, b * S)
        d_pre = workload.expected_experts(model, b * S + np.maximum(r, 1.0) * int(prompt))
        d_mix = d_dec + np.minimum(r, 1.0) * (d_pre - d_dec)  # experts read per step, in expectation
    for od, oa, op in zip(dec, dec_all, pre):
        if od.kind == "matmul":
            if od.routed:
                rows = tokens_all * share
            else:
                rows = np.where(od.name == "lm_head", np.maximum(bg, 0.0) * S + rg, tokens_in_step)
            inv[od.part].append(np.broadcast_to(np.where(rows > 0, 1.0 / np.maximum(rows, 1e-12), 0.0), shape))
        else:
            inv[od.part].append(np.zeros(shape))
        if od.routed:
            # all the step's tokens, the fullest group's share; weights: the distinct experts
            # the decode tokens touch, plus those a prompt adds in the steps that prefill one
            c = oa.counts
            base = workload.Counts(*(np.asarray(getattr(c, k), float) * live * f for k in workload.COLUMNS))
            w = np.asarray(c.weight, float) / d_step * d_mix * f
            m = workload.Counts(base.flops + r * f * np.asarray(op.counts.flops, float), w,
                                base.act_read + r * f * np.asarray(op.counts.act_read, float),
                                base.act_write + r * f * np.asarray(op.counts.act_write, float),
                                base.kv_read + r * f * np.asarray(op.counts.kv_read, float),
                                base.kv_write + r * f * np.asarray(op.counts.kv_write, float))
            tc[od.part].append(np.broadcast_to(np.asarray(base.flops, float) / P, shape))
            tp[od.part].append(np.broadcast_to(r * f * np.asarray(op.counts.flops, float) / P, shape))
            tm[od.part].append(np.broadcast_to(np.asarray(m.bytes, float) / W, shape))
            continue
        base = workload.Counts(*(np.asarray(getattr(od.counts, c), float) * live for c in workload.COLUMNS))
        m = _merge(base, op.counts, rg)
        peak = P_att if od.kind == "attention" else P
        tc[od.part].append(np.broadcast_to(np.asarray(base.flops, float) / peak, shape))
        tp[od.part].append(np.broadcast_to(rg * np.asarray(op.counts.flops, float) / peak, shape))
        tm[od.part].append(np.broadcast_to(np.asarray(m.bytes, float) / W, shape))
    tc, tp, tm, inv = ({g: np.stack(v, axis=-1) if v else np.zeros(shape + (1,)) for g, v in d.items()}
                       for d in (tc, tp, tm, inv))
    message = (bg * S + rg * int(prompt)) * model.hidden_size * dep.precision.a
    t = dep.layout.tensor
    link_bw = None
    if t > 1 or dep.layout.pipeline > 1:
        link_bw = dep.link.bandwidth.si if dep.link.bandwidth is not None else None
        if link_bw is None:
            raise PerfError(f"{dep.device.id}: interconnect {dep.link.name!r} has no bandwidth")
    comm_lat = 2.0 * dep.collective_latency_s() if t > 1 else 0.0
    comm_bw = 2.0 * 2.0 * (t - 1) / t * message / link_bw if t > 1 else np.zeros(shape)
    hops = dep.layout.pipeline - 1
    hop_lat = hops * dep.hop_latency_s if hops else 0.0
    hop_bw = hops * message / link_bw if hops else np.zeros(shape)
    emb = np.array([s_.embedding for s_ in stages], float)
    lay = np.array([len(s_.layers) for s_ in stages], float)
    head = np.array([s_.head for s_ in stages], float)
    counts = {"embedding": emb}
    for k in kinds:
        counts[k.name] = np.array([sum(1 for i in s_.layers if i in set(k.layers)) for s_ in stages], float)
    counts["head"] = head
    a2a_lat, a2a_bw, moe = 0.0, None, None
    if e > 1:
        ln = dep.expert_link
        if ln.bandwidth is None:
            raise PerfError(f"{dep.device.id}: interconnect {ln.name!r} has no bandwidth")
        remote = workload.expected_expert_groups(model, e) * (e - 1) / e
        sent = (bg * S + rg * int(prompt)) * remote * model.hidden_size * dep.precision.a / t
        a2a_lat = 2.0 * dep.a2a_latency_s()
        a2a_bw = np.broadcast_to(2.0 * sent / ln.bandwidth.si, shape)
        moe = np.array([sum(1 for i in s_.layers if model.layer_is_moe(i)) for s_ in stages], float)
    return StepProfile(tc, tp, inv, tm, comm_lat, np.broadcast_to(comm_bw, shape), hop_lat, np.broadcast_to(hop_bw, shape),
                       emb, lay, head, counts, a2a_lat, a2a_bw, moe)


@dataclass(frozen=True)
class StepTimes:
    """Times of one micro-batch step on each pipeline stage (arrays: stages x ...)."""

    stage: np.ndarray
    compute: np.ndarray
    memory: np.ndarray
    communication: np.ndarray
    overhead: np.ndarray
    hops: np.ndarray            # all hand-overs of one micro-batch

    @property
    def path(self):
        """One micro-batch through every stage and hand-over."""
        return self.stage.sum(axis=0) + self.hops


def step_times(prof: StepProfile, knobs: Knobs) -> StepTimes:
    """A step's times with the knobs applied: each operator on its roofline, summed per
    part, assembled per stage (each stage with its own layers) with the all-reduces, the
    experts' all-to-alls and the per-layer overhead."""
    ec, em, el, o = (np.asarray(x, float) for x in (knobs.compute, knobs.memory, knobs.link, knobs.layer_overhead_s))
    ep = ec if knobs.prefill_compute is None else np.asarray(knobs.prefill_compute, float)
    hf = np.asarray(knobs.half_tokens, float)
    g = {}
    for grp in prof.tc:
        c = (prof.tc[grp] / ec[..., None] + prof.tp[grp] / ep[..., None]) * (1.0 + hf[..., None] * prof.inv_rows[grp])
        m = prof.tm[grp] / em[..., None]
        t = np.maximum(c, m)
        g[grp] = (t.sum(axis=-1), np.where(c >= m, t, 0.0).sum(axis=-1), np.where(c >= m, 0.0, t).sum(axis=-1))
    comm = prof.comm_latency + prof.comm_bytes_time / el
    hops = prof.hop_latency + prof.hop_bytes_time / el
    layer_parts = [k for k in prof.tc if k not in ("embedding", "head")]
    nd = max(np.ndim(g[layer_parts[0]][0]), np.ndim(comm), np.ndim(o))
    sh = (-1,) + (1,) * nd
    counts = prof.parts or {"embedding": prof.emb, layer_parts[0]: prof.lay, "head": prof.head}
    cnt = {k: np.asarray(v, float).reshape(sh) for k, v in counts.items()}
    lay = prof.lay.reshape(sh)

    def per_stage(i):
        acc = cnt["embedding"] * g["embedding"][i]
        for k in layer_parts:
            acc = acc + cnt[k] * g[k][i]
        return acc + cnt["head"] * g["head"][i]

    stage = per_stage(0) + lay * (comm + o)
    communication = lay * comm
    if prof.a2a_bytes_time is not None:
        a2a = prof.moe.reshape(sh) * (prof.a2a_latency + prof.a2a_bytes_time / el)  # type: ignore[union-attr]  # set with a2a_bytes_time
        stage = stage + a2a
        communication = communication + a2a
    zero = 0.0 * stage
    return StepTimes(stage, per_stage(1) + zero, per_stage(2) + zero, communication + zero, lay * o + zero,
                     np.asarray(hops, float))


def _check_experts(model, dep: Deployment) -> None:
    if dep.layout.expert > 1:
        try:
            workload.expert_groups(model, dep.layout.expert)
        except workload.WorkloadError as exc:
            raise PerfError(f"{dep.label()}: {exc}") from None


def _stages(model, dep: Deployment, context: int):
    from . import placement

    _check_experts(model, dep)

    return placement.stage_split(model, dep.device, dep.layout.tensor, dep.layout.pipeline, batch=1,
                                 context=max(int(context), 1), precision=dep.precision, expert=dep.layout.expert)


# --------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class Prediction:
    """What :func:`predict` returns: one value per operating point (concurrency)."""

    model: str
    deployment: str
    layout: dict
    prompt: int
    output: int
    concurrency: np.ndarray       # streams in flight over the whole deployment
    ttft_s: np.ndarray
    tpot_s: np.ndarray            # stream-weighted mean over the replicas
    tpot_max_s: np.ndarray        # the slowest replica's
    per_user_tok_s: np.ndarray    # aggregate / concurrency
    aggregate_tok_s: np.ndarray
    bound: np.ndarray             # compute | memory | communication | overhead, of the slowest stage
    fits: np.ndarray              # weights + KV cache of the busiest replica fit its chips
    streams_per_replica: np.ndarray
    chips: int
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)   # speculative or disaggregated serving's own numbers

    METRICS = ("ttft_s", "tpot_s", "tpot_max_s", "per_user_tok_s", "per_request_tok_s", "aggregate_tok_s")

    @property
    def per_request_tok_s(self):
        """Generated tokens over a request's whole time, first token included:
        ``output / (TTFT + output x TPOT)`` (LLMPerf's per-request output throughput)."""
        return self.output / (self.ttft_s + self.output * self.tpot_s)

    def frame(self) -> pd.DataFrame:
        cols = ["concurrency", "ttft_s", "tpot_s", "tpot_max_s", "per_user_tok_s", "aggregate_tok_s", "bound", "fits",
                "streams_per_replica"]
        n = np.broadcast(*[np.asarray(getattr(self, c)) for c in cols]).shape
        df = pd.DataFrame({c: np.broadcast_to(np.asarray(getattr(self, c)), n).ravel() for c in cols})
        df["aggregate_per_chip_tok_s"] = df["aggregate_tok_s"] / self.chips
        return df

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in ("model", "deployment", "layout", "prompt", "output", "chips", "notes")}
        for k in ("concurrency", "ttft_s", "tpot_s", "tpot_max_s", "per_user_tok_s", "aggregate_tok_s", "fits",
                  "streams_per_replica", "bound"):
            v = np.asarray(getattr(self, k))
            d[k] = v.item() if v.ndim == 0 else v.tolist()
        for k, v in self.extra.items():
            if isinstance(v, (np.ndarray, np.generic)):
                v = np.asarray(v)
                v = v.item() if v.ndim == 0 else v.tolist()
            d[k] = v
        return d


def _split(total, parts):
    """``total`` whole things over ``parts`` holders as evenly as possible: (hi, n_hi, lo, n_lo)."""
    total = np.asarray(total, float)
    parts = np.asarray(parts, float)
    lo = np.floor(total / parts)
    rem = total - lo * parts
    hi = lo + (rem > 0)
    n_hi = np.where(rem > 0, rem, parts)
    return hi, n_hi, lo, parts - n_hi


def _bound(t: StepTimes) -> np.ndarray:
    j = np.argmax(t.stage, axis=0)
    parts = [np.take_along_axis(getattr(t, k), j[None], axis=0)[0] for k in ("compute", "memory", "communication",
                                                                             "overhead")]
    parts[2] = parts[2] + t.hops / max(t.stage.shape[0], 1)
    return np.asarray(BOUNDS, dtype=object)[np.argmax(np.stack(np.broadcast_arrays(*parts)), axis=0)]


@dataclass(frozen=True)
class _Replica:
    """The profiles of one replica holding ``streams`` streams: its micro-batches' steps."""

    streams: np.ndarray
    n_hi: np.ndarray
    n_lo: np.ndarray
    hi: StepProfile
    lo: StepProfile


def _replica(model, dep: Deployment, streams, output, prompt: int, context, stages, tokens: int = 1) -> _Replica:
    """A replica's micro-batch steps: each step starts ``streams / output`` prompts on
    average (``output`` may be fractional: the steps a request lasts) and runs ``tokens``
    new tokens per stream (:func:`step_profile`)."""
    s = np.asarray(streams, float)
    m = np.minimum(float(dep.microbatches or dep.layout.pipeline), np.maximum(s, 1.0))
    b_hi, n_hi, b_lo, n_lo = _split(np.maximum(s, 1.0), m)
    n_lo = n_lo * (b_lo >= 1)
    hi = step_profile(model, dep, b_hi, context, b_hi / output, prompt, stages, tokens)
    # micro-batches of equal size (one micro-batch, or streams that split evenly) have the same step: built once
    lo = hi if np.array_equal(np.maximum(b_lo, 1.0), b_hi) else step_profile(
        model, dep, np.maximum(b_lo, 1.0), context, np.maximum(b_lo, 1.0) / output, prompt, stages, tokens)
    return _Replica(s, n_hi, n_lo, hi, lo)


def _round_time(rep: _Replica, knobs: Knobs):
    t_hi, t_lo = step_times(rep.hi, knobs), step_times(rep.lo, knobs)
    load = rep.n_hi * t_hi.stage + rep.n_lo * t_lo.stage
    path = np.maximum(t_hi.path, np.where(rep.n_lo > 0, t_lo.path, 0.0))
    return np.maximum(load.max(axis=0), path), t_hi


@dataclass(frozen=True)
class ServingProfile:
    """Everything :func:`predict` needs that does not depend on the knobs, for one
    deployment at an array of concurrencies: evaluate it with any :class:`Knobs` (arrays
    broadcast) at the cost of a few array operations. Calibration evaluates it thousands
    of times."""

    model: str
    deployment: Deployment
    prompt: int
    output: int
    concurrency: np.ndarray
    hi: _Replica
    lo: _Replica
    n_hi: np.ndarray             # replicas holding the larger share of streams
    n_lo: np.ndarray             # replicas holding the smaller (0 where they hold none)
    alone: StepProfile           # one prompt's prefill on an idle deployment
    busy: StepProfile            # one prompt's prefill fused into a running decode step
    fits: np.ndarray
    model_notes: tuple[str, ...] = ()   # what the model of this architecture approximates

    def evaluate(self, knobs: Knobs | None = None) -> Prediction:
        k = knobs or Knobs.of(self.deployment)
        c = self.concurrency
        rnd_hi, t_hi = _round_time(self.hi, k)
        rnd_lo, _ = _round_time(self.lo, k)
        s_hi, s_lo = self.hi.streams, self.lo.streams
        agg = self.n_hi * s_hi / rnd_hi + self.n_lo * s_lo / rnd_lo
        tpot = (self.n_hi * s_hi * rnd_hi + self.n_lo * s_lo * rnd_lo) / c
        alone = step_times(self.alone, k).path
        busy = step_times(self.busy, k).path
        ttft = np.where(c <= 1, alone, 0.5 * rnd_hi + busy)
        dep = self.deployment
        notes: tuple[str, ...] = ()
        if dep.layout.tensor > 1 and dep.collective_latency is None and dep.link.collective_latency is None:
            notes = (f"no measured collective latency for {dep.device.id}'s {dep.link.name}: all-reduce latency "
                     f"taken as 2 ceil(log2 {dep.layout.tensor}) hops",)
        notes = notes + tuple(self.model_notes)
        return Prediction(self.model, dep.label(), dep.layout.to_dict(), self.prompt, self.output, c, ttft, tpot,
                          rnd_hi, agg / c, agg, _bound(t_hi), self.fits, s_hi, dep.chips, notes)


def serving_profile(model, dep: Deployment, concurrency, prompt: int, output: int, *,
                    fused_prefill: bool = True) -> ServingProfile:
    """The knob-free part of :func:`predict` (see there for the arguments).
    ``fused_prefill=False`` times decode-only steps (the prompts are prefilled elsewhere:
    :mod:`lpulab.disaggregated`)."""
    for name, v in (("prompt", prompt), ("output", output)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise PerfError(f"{name} must be a whole number of tokens >= 1, got {v!r}")
    prompt, output = int(prompt), int(output)
    c = np.asarray(concurrency, float)
    if np.any(~np.isfinite(c)) or np.any(c < 1) or np.any(c != np.floor(c)):
        raise PerfError(f"concurrency must be whole numbers of streams >= 1, got {concurrency!r}")
    if prompt + output > model.max_context:
        raise PerfError(f"prompt + output = {prompt + output} tokens exceed {model.id}'s context of {model.max_context}")
    ctx = float(math.floor(prompt + output / 2.0))
    stages = _stages(model, dep, prompt + output)
    s_hi, n_hi, s_lo, n_lo = _split(c, dep.layout.replicas)
    n_lo = n_lo * (s_lo >= 1)
    steps = output if fused_prefill else np.inf     # steps a request lasts: one prompt starts per ``steps``
    hi = _replica(model, dep, s_hi, steps, prompt, ctx, stages)
    # the same streams give the same steps (one replica, or streams that split evenly): built once
    lo = hi if np.array_equal(np.maximum(s_lo, 1.0), s_hi) else _replica(model, dep, np.maximum(s_lo, 1.0), steps,
                                                                          prompt, ctx, stages)
    lo = replace(lo, streams=s_lo)
    alone = step_profile(model, dep, 0.0, 0.0, 1.0, prompt, stages)
    busy = step_profile(model, dep, np.maximum(s_hi - 1.0, 1.0), ctx, 1.0, prompt, stages)
    from . import architecture

    return ServingProfile(model.id, dep, prompt, output, c, hi, lo, n_hi, n_lo, alone, busy,
                          _fits(model, dep, s_hi, prompt + output), architecture.approximations(model))


def predict(model, dep: Deployment, concurrency, prompt: int, output: int, knobs: Knobs | None = None) -> Prediction:
    """Latency and throughput of ``dep`` serving ``model`` to ``concurrency`` streams in all
    (an array gives a frontier in one call), prompts of ``prompt`` and outputs of ``output``
    tokens. A stream's KV cache holds ``prompt + output/2`` tokens on average. ``knobs``
    (default: the deployment's own efficiency and overhead) may hold arrays."""
    return serving_profile(model, dep, concurrency, prompt, output).evaluate(knobs)


def _fits(model, dep: Deployment, streams_per_replica, context) -> np.ndarray:
    from . import placement

    n = placement.need(model, dep.device, np.asarray(streams_per_replica, float), int(context),
                       precision=dep.precision, reserve=dep.reserve, tensor_choices=(dep.layout.tensor,),
                       pipeline=dep.layout.pipeline, unit=1, expert=dep.layout.expert)
    return np.isfinite(np.asarray(n.chips, float))


def max_concurrency(model, dep: Deployment, context: int) -> int:
    """The most streams the whole deployment holds at ``context`` tokens each (0 if the
    weights alone do not fit the layout)."""
    from . import placement

    b = placement.max_batch(model, dep.device, int(context), tensor=dep.layout.tensor, pipeline=dep.layout.pipeline,
                            precision=dep.precision, reserve=dep.reserve, expert=dep.layout.expert)
    return int(b) * dep.layout.replicas


# --------------------------------------------------------------------------- whole-step counts (kernels)


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

    def merge(self, other: Work) -> Work:
        """Two kinds of work fused into one step (e.g. decode plus a chunk of prefill):
        the weights are read once."""
        return Work(self.flops + other.flops, self.bytes + other.bytes - np.minimum(self.weight, other.weight),
                    np.maximum(self.weight, other.weight), self.message + other.message, self.layers)


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
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise PerfError(f"transfer_bytes: {name} must be a positive integer, got {v!r}")
    m = np.asarray(work.message, float)
    ar = 2 * work.layers * 2 * (tensor - 1) * m
    hop = (pipeline - 1) * tensor * m
    return {"all_reduce": ar, "pipeline": hop, "total": ar + hop}


def _work(counts, model, tokens, precision) -> Work:
    p = Precision.of(precision)
    message = np.asarray(tokens, float) * model.hidden_size * p.a
    return Work(np.asarray(counts.flops, float), np.asarray(counts.bytes, float),
                np.asarray(counts.weight, float), message, model.layers)


def decode_work(model, batch, context, precision=None) -> Work:
    """One decode step of ``batch`` sequences that have ``context`` tokens in their cache."""
    c = workload.totals(model, "decode", batch, context, None, precision)
    return _work(c, model, batch, precision)


def prefill_work(model, requests, prompt, precision=None) -> Work:
    """Prefill of ``requests`` prompts of ``prompt`` tokens fused into one step. ``requests``
    may be fractional (the average number starting per step): everything but the weights
    scales with it, and the weights are read once."""
    r = np.asarray(requests, float)
    one = workload.totals(model, "prefill", 1, 0, prompt, precision)
    w = np.asarray(one.weight, float)
    a = Precision.of(precision).a
    return Work(r * np.asarray(one.flops, float), r * (np.asarray(one.bytes, float) - w) + np.where(r > 0, w, 0.0),
                np.where(r > 0, w, 0.0), r * np.asarray(prompt, float) * model.hidden_size * a, model.layers)
