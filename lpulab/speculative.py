"""Speculative decoding in the serving model: a draft proposes ``k`` tokens, the target checks
them in one step, and every stream keeps the accepted ones plus one of the target's own.

The draft is either another catalog model of the same vocabulary (e.g. llama-3.1-8b for
llama-3.1-70b) or the target's own multi-token-prediction modules (``mtp_layers`` in its
file, e.g. DeepSeek-V3). With each drafted token accepted with probability ``alpha``
independently of the others, one verification step yields in expectation (Leviathan et al.
2023, arXiv:2211.17192)::

    E[tokens per step] = (1 - alpha^(k+1)) / (1 - alpha)        (k + 1 at alpha = 1)

One round of a replica holding ``b`` streams is ``k`` draft steps (the draft's decode at the
same ``b`` streams, :func:`lpulab.perf.step_profile` on the draft's deployment) and one
verification step of the target in which every stream runs ``k + 1`` tokens (a short prefill
chunk: the weights are read once, compute, activations, attention over the cache and the
LM head's rows scale with the tokens; ``step_profile(..., tokens=k + 1)``)::

    round = k t_draft(b) + t_verify(b, k + 1)      TPOT = round / E      aggregate = b E / round

Nothing about batch size is assumed: a verification step at a large batch runs ``b (k+1)``
tokens through every matrix product, so where a step is compute-bound (a GPU at high
concurrency) the extra tokens cost time and the gain shrinks, while a memory-bound step (an
SRAM machine at one stream) verifies them almost for free.

Where the draft runs (:func:`draft_placement`): on the target's own chips when its weights
and cache fit beside the target's (summed over the replica's chips), with the target's
tensor width on one stage; otherwise on chips of its own (counted in the prediction's
chips) at the target's tensor width, in the fewest pipeline stages that hold it there: a
draft packed onto the fewest chips of an SRAM machine would read as many bytes per chip per
step as the target and gain nothing, so it is spread as wide as the target. Draft and
verification steps do not overlap (a conservative choice when the draft has chips of its
own). The prompt's prefill for the draft is spread
over the draft steps like the target's over its steps. The defaults for ``k`` and ``alpha``
are sourced assumptions in ``data/serving.toml`` (:func:`assumptions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import catalog, paths, perf, placement, workload
from .catalog import Model, Value
from .parallel import Layout

METHODS = ("draft", "mtp")


class SpeculationError(perf.PerfError):
    """Speculative decoding the serving model cannot time as asked; the message says why."""


# --------------------------------------------------------------------------- the formula


def expected_tokens(k, alpha):
    """Expected tokens one verification step yields: ``(1 - alpha^(k+1)) / (1 - alpha)``,
    ``k + 1`` at ``alpha = 1`` (Leviathan et al. 2023, eq. 1). Arrays broadcast."""
    k = np.asarray(k, float)
    a = np.asarray(alpha, float)
    if np.any(k < 0) or np.any(k != np.floor(k)):
        raise SpeculationError(f"draft length k must be whole numbers >= 0, got {k}")
    if np.any(~np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
        raise SpeculationError(f"acceptance alpha must lie in [0, 1], got {a}")
    one = a >= 1.0
    safe = np.where(one, 0.5, a)
    out = np.where(one, k + 1.0, (1.0 - safe ** (k + 1.0)) / (1.0 - safe))
    return float(out) if out.ndim == 0 else out


# --------------------------------------------------------------------------- sourced assumptions


@dataclass(frozen=True)
class Assumptions:
    """``data/serving.toml``: the default draft length and acceptance per method (sourced
    values with ranges), the KV link of a disaggregated split, and published speeds with and
    without speculative decoding (measurement ids)."""

    accept: dict[str, Value]
    draft_tokens: dict[str, Value]
    link: dict[str, Value]
    reference: dict[str, dict[str, str]]
    path: str = ""


def load_assumptions(path=None) -> Assumptions:
    """Read and check ``data/serving.toml`` (every number sourced, with its unit)."""
    from pathlib import Path

    p = Path(path or paths.DATA / "serving.toml")
    ctx = catalog._Ctx(p)
    raw = catalog.read_toml(p)
    catalog._check_keys(ctx, "(top level)", raw, {"sources", "speculative", "disaggregated"},
                        ("sources", "speculative", "disaggregated"))
    sources = catalog._sources(ctx, raw["sources"])
    spec = raw["speculative"]
    catalog._check_keys(ctx, "speculative", spec, set(METHODS) | {"reference"}, METHODS)
    accept, tokens = {}, {}
    for m in METHODS:
        catalog._check_keys(ctx, f"speculative.{m}", spec[m], {"accept", "draft_tokens"}, ("accept", "draft_tokens"))
        a = catalog._value(ctx, f"speculative.{m}.accept", spec[m]["accept"], "count", sources)
        k = catalog._value(ctx, f"speculative.{m}.draft_tokens", spec[m]["draft_tokens"], "count", sources)
        for name, v, lo, hi in (("accept", a, 0.0, 1.0), ("draft_tokens", k, 1.0, math.inf)):
            for x in (v.si, v.low_si, v.high_si):
                if x is not None and not lo <= x <= hi:
                    ctx.fail(f"speculative.{m}.{name}", f"{x} is outside [{lo}, {hi}]")
        if k.si != int(k.si):
            ctx.fail(f"speculative.{m}.draft_tokens", f"expected a whole number of tokens, got {k.si}")
        accept[m], tokens[m] = a, k
    ref = {}
    for name, r in (spec.get("reference") or {}).items():
        where = f"speculative.reference.{name}"
        catalog._check_keys(ctx, where, r, {"with", "without", "source", "note"}, ("with", "without", "source"))
        if r["source"] not in sources:
            ctx.fail(where + ".source", f"unknown source {r['source']!r} (sources: {', '.join(sources)})")
        ref[name] = {k: str(v) for k, v in r.items()}
    dis = raw["disaggregated"]
    catalog._check_keys(ctx, "disaggregated", dis, {"link"}, ("link",))
    catalog._check_keys(ctx, "disaggregated.link", dis["link"], {"bandwidth", "latency"}, ("bandwidth", "latency"))
    link = {"bandwidth": catalog._value(ctx, "disaggregated.link.bandwidth", dis["link"]["bandwidth"], "bandwidth",
                                        sources),
            "latency": catalog._value(ctx, "disaggregated.link.latency", dis["link"]["latency"], "time", sources)}
    return Assumptions(accept, tokens, link, ref, catalog._rel(p))


def reference_speedups(a: Assumptions | None = None) -> dict[str, dict[str, Any]]:
    """The published speeds with and without speculative decoding that ``data/serving.toml``
    points to, read from the measurement tables: name -> with, without, ratio, hardware, model."""
    from . import speed

    a = a or load_assumptions()
    df = speed.measured_table().set_index("id")
    out = {}
    for name, r in a.reference.items():
        for k in ("with", "without"):
            if r[k] not in df.index:
                raise SpeculationError(f"{a.path}: speculative.reference.{name}.{k}: no measurement row {r[k]!r}")
        w, wo = df.loc[r["with"]], df.loc[r["without"]]
        vw, vo = float(np.asarray(w["value_si"]).item()), float(np.asarray(wo["value_si"]).item())
        out[name] = {"model": str(w["model"]), "hardware": str(w["hardware"]), "with": vw, "without": vo,
                     "ratio": vw / vo, "metric": str(w["metric"]), "source": str(w["source_title"]),
                     "note": r.get("note", "")}
    return out


# --------------------------------------------------------------------------- the speculation record


@dataclass(frozen=True)
class Speculation:
    """How a deployment decodes speculatively: ``k`` drafted tokens per verification step,
    each accepted with probability ``alpha`` (or a measured ``mean_accepted`` tokens per
    step, 1 to k + 1), drafted by ``draft`` (a model of the target's vocabulary) or, with
    ``draft=None``, by the target's multi-token-prediction modules. ``draft_layout`` places
    the draft on chips of its own in that layout (default: :func:`draft_placement`)."""

    k: int
    alpha: float | None = None
    draft: Model | None = None
    mean_accepted: float | None = None
    draft_layout: Layout | None = None

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise SpeculationError(f"speculative draft length k must be a whole number >= 1, got {self.k!r}")
        if (self.alpha is None) == (self.mean_accepted is None):
            raise SpeculationError("give the acceptance alpha or the measured mean accepted tokens per step, "
                                   "one of the two")
        if self.alpha is not None and not (isinstance(self.alpha, (int, float)) and 0.0 <= self.alpha <= 1.0):
            raise SpeculationError(f"speculative acceptance alpha must be a probability in [0, 1], got {self.alpha!r}")
        if self.mean_accepted is not None and not (1.0 <= self.mean_accepted <= self.k + 1):
            raise SpeculationError(f"mean accepted tokens per step must lie in [1, k + 1] = [1, {self.k + 1}], got "
                                   f"{self.mean_accepted!r}")
        if self.draft_layout is not None and not isinstance(self.draft_layout, Layout):
            raise SpeculationError(f"draft_layout must be a lpulab.parallel.Layout, got {self.draft_layout!r}")
        if self.draft_layout is not None and self.draft_layout.replicas != 1:
            raise SpeculationError("draft_layout is the draft of one replica of the target: replicas must be 1")

    @property
    def method(self) -> str:
        return "mtp" if self.draft is None else "draft"

    @property
    def tokens_per_step(self) -> float:
        """Expected tokens one verification step yields per stream."""
        if self.mean_accepted is not None:
            return float(self.mean_accepted)
        return float(expected_tokens(self.k, self.alpha))

    def label(self) -> str:
        by = "MTP" if self.draft is None else f"draft {self.draft.id}"
        acc = f"alpha {self.alpha:g}" if self.alpha is not None else f"{self.mean_accepted:g} tokens/step"
        return f"speculative ({by}, k={self.k}, {acc})"

    def check(self, model: Model) -> None:
        """Refuse a draft the target cannot use, naming what is wrong."""
        if self.draft is None:
            if not model.mtp_layers:
                raise SpeculationError(f"{model.id} has no multi-token-prediction heads (mtp_layers is 0 in its model "
                                       "file); give a draft model instead")
            return
        if self.draft.id == model.id:
            raise SpeculationError(f"the draft model is the target itself ({model.id}); give a smaller model")
        if self.draft.vocab_size != model.vocab_size:
            raise SpeculationError(f"draft model {self.draft.id} has a vocabulary of {self.draft.vocab_size} tokens, "
                                   f"the target {model.id} {model.vocab_size}: a draft must share the target's "
                                   "tokenizer")


@dataclass(frozen=True)
class DraftPlacement:
    """Where a draft runs: its deployment, whether on the target's chips, its chips per replica."""

    deployment: perf.Deployment
    colocated: bool
    chips_per_replica: int        # 0 when co-located
    draft_bytes: float            # weights and cache of one replica's draft (at the largest stream count)
    free_bytes: float             # what the target's chips of one replica leave free


def mtp_draft(model: Model) -> Model:
    """The model a multi-token-prediction module runs as a draft, for timing: one layer of
    the kind of the target's last layer with the target's embedding and LM head (the module's
    ``eh_proj`` and extra norms are left out, see :func:`approximations`)."""
    last = model.layers - 1
    moe = model.layer_is_moe(last)
    win = model.layer_window(last)
    return replace(model, id=f"{model.id}-mtp", name=f"{model.name} MTP module", layers=1,
                   first_dense_layers=0 if moe or not model.is_moe else 1, mtp_layers=0,
                   sliding_window=win, sliding_window_layers="all" if win else "")


def _draft_model(model: Model, spec: Speculation) -> Model:
    return mtp_draft(model) if spec.draft is None else spec.draft


def draft_bytes(model: Model, spec: Speculation, precision, streams, context) -> np.ndarray:
    """Bytes the draft adds to one replica: its weights (for MTP, the modules' own, the
    embedding and head being the target's) and its KV cache for ``streams`` streams."""
    p = workload.Precision.of(precision)
    d = _draft_model(model, spec)
    if spec.draft is None:
        from . import architecture

        w = (architecture.parameter_count(model, mtp=True) - architecture.parameter_count(model)) * p.w
    else:
        w = workload.weight_bytes(d, p)
    return np.asarray(w + np.asarray(workload.kv_bytes(d, streams, context, p.kv), float), float)


def draft_placement(model: Model, dep: perf.Deployment, spec: Speculation, streams, context: int) -> DraftPlacement:
    """The draft's deployment: on the target's chips (the target's tensor width, or the
    widest the draft allows below it, one stage) when its weights and cache fit in what the
    target leaves free on one replica's chips at the largest of ``streams``; otherwise chips
    of its own at the same width, the fewest stages that hold it (the fewest chips when it
    does not fit at that width; ``spec.draft_layout`` when given)."""
    d = _draft_model(model, spec)
    dev, p = dep.device, dep.precision
    s = float(np.max(np.asarray(streams, float)))
    tier = dev.main_tier
    cap = dev.capacity(tier) * (1.0 - dep.reserve)
    per_replica = dep.layout.chips // dep.layout.replicas
    used = workload.weight_bytes(model, p) + float(workload.kv_bytes(model, s, context, p.kv))
    free = per_replica * cap - used
    need = float(draft_bytes(model, spec, p, s, context))
    expert = dep.layout.expert if d.is_moe else 1
    widths = [t for t in placement.allowed_tensors(d, dev) if t <= dep.layout.tensor] or [1]
    if spec.draft_layout is None and need <= free:
        layout = Layout(1, max(widths), 1, expert)
        try:
            return DraftPlacement(dep.with_(layout=layout), True, 0, need, free)
        except perf.PerfError as exc:
            raise SpeculationError(f"draft {d.id} on {dev.id}'s chips: {exc}") from None
    if spec.draft_layout is not None:
        layout = spec.draft_layout
    else:   # as wide as the target (a draft step then reads no more per chip than it must), fewest stages
        n = placement.need(d, dev, s, int(context), precision=p, reserve=dep.reserve, tensor_choices=(max(widths),))
        if not np.isfinite(float(n.chips)):
            n = placement.need(d, dev, s, int(context), precision=p, reserve=dep.reserve)
        if not np.isfinite(float(n.chips)):
            raise SpeculationError(f"the draft {d.id} does not fit {dev.id} at {int(s)} streams of {context} tokens")
        layout = Layout(1, int(n.tensor), int(n.pipeline), 1)
    try:
        ddep = dep.with_(layout=layout, microbatches=None)
    except perf.PerfError as exc:
        raise SpeculationError(f"draft {d.id} on {dev.id} in {layout.label()}: {exc}") from None
    return DraftPlacement(ddep, False, layout.chips, need, free)


def approximations(model: Model, spec: Speculation, where: DraftPlacement) -> tuple[str, ...]:
    """What the speculative timing leaves out or assumes, in words a report prints."""
    out = [f"{spec.label()}: {spec.tokens_per_step:.3f} tokens per verification step in expectation "
           "(Leviathan et al. 2023); draft and verification steps do not overlap"]
    if spec.draft is None:
        from . import architecture

        eh = 2 * model.hidden_size * model.hidden_size
        tot = architecture.parameter_count(model, mtp=True) - architecture.parameter_count(model)
        out.append(f"the MTP draft step is timed as one layer of {model.id}'s last kind with its embedding and LM "
                   f"head; the module's eh_proj ({eh / 1e9:.2f}B of its {tot / 1e9:.2f}B parameters) and extra norms "
                   "are not timed")
        if spec.k > model.mtp_layers:
            out.append(f"k={spec.k} chains {model.id}'s {model.mtp_layers} MTP module(s) on their own output; the "
                       "acceptance of tokens past the first module's is not published")
    d = where.deployment
    if where.colocated:
        out.append(f"the draft runs on the target's chips ({d.layout.label()}): its {where.draft_bytes / 1e9:.1f} GB "
                   f"fit the {where.free_bytes / 1e9:.1f} GB the target leaves free per replica (summed over chips)")
    else:
        out.append(f"the draft runs on {where.chips_per_replica} chips of its own per replica ({d.layout.label()}): "
                   f"its {where.draft_bytes / 1e9:.1f} GB do not fit the {max(where.free_bytes, 0) / 1e9:.1f} GB the "
                   "target leaves free" if spec.draft_layout is None else
                   f"the draft runs on {where.chips_per_replica} chips of its own per replica ({d.layout.label()}, "
                   "as given)")
    return tuple(out)


# --------------------------------------------------------------------------- the serving profile


@dataclass(frozen=True)
class SpeculativeProfile:
    """The knob-free part of a speculative prediction: the plain profile of the same
    deployment (its prefill steps and the speed-up's baseline), the verification and draft
    steps of each replica. :meth:`evaluate` takes any :class:`~lpulab.perf.Knobs`."""

    base: perf.ServingProfile
    spec: Speculation
    verify_hi: Any
    verify_lo: Any
    draft_hi: Any
    draft_lo: Any
    where: DraftPlacement
    fits: np.ndarray
    notes: tuple[str, ...] = field(default=())

    @property
    def deployment(self) -> perf.Deployment:
        return self.base.deployment

    @property
    def chips(self) -> int:
        return self.deployment.chips + self.deployment.layout.replicas * self.where.chips_per_replica

    def evaluate(self, knobs: perf.Knobs | None = None, plain: perf.Prediction | None = None) -> perf.Prediction:
        """The prediction under ``knobs``; ``plain``: ``self.base.evaluate(knobs)`` when the
        caller has it already (the baseline of the speed-ups)."""
        k = knobs or perf.Knobs.of(self.deployment)
        b = self.base
        plain = b.evaluate(k) if plain is None else plain
        E, K = self.spec.tokens_per_step, self.spec.k
        v_hi, t_hi = perf._round_time(self.verify_hi, k)
        v_lo, _ = perf._round_time(self.verify_lo, k)
        d_hi, _ = perf._round_time(self.draft_hi, k)
        d_lo, _ = perf._round_time(self.draft_lo, k)
        rnd_hi, rnd_lo = K * d_hi + v_hi, K * d_lo + v_lo
        c = b.concurrency
        s_hi, s_lo = b.hi.streams, b.lo.streams
        agg = E * (b.n_hi * s_hi / rnd_hi + b.n_lo * s_lo / rnd_lo)
        tpot = (b.n_hi * s_hi * rnd_hi + b.n_lo * s_lo * rnd_lo) / (E * c)
        alone = perf.step_times(b.alone, k).path
        busy = perf.step_times(b.busy, k).path
        ttft = np.where(c <= 1, alone, 0.5 * rnd_hi + busy)
        dep = self.deployment
        extra = {"speculative": self.spec.method, "spec_k": K, "spec_alpha": self.spec.alpha,
                 "spec_tokens_per_step": E, "draft_model": _draft_model_id(self),
                 "draft_layout": self.where.deployment.layout.to_dict(), "draft_colocated": self.where.colocated,
                 "draft_chips": dep.layout.replicas * self.where.chips_per_replica, "target_chips": dep.chips,
                 "verify_s": v_hi, "draft_s": K * d_hi,
                 "speedup_per_user": (agg / c) / plain.per_user_tok_s,
                 "speedup_aggregate": agg / plain.aggregate_tok_s}
        return perf.Prediction(b.model, dep.label() + " " + self.spec.label(), dep.layout.to_dict(), b.prompt, b.output,
                               c, ttft, tpot, rnd_hi / E, agg / c, agg, perf._bound(t_hi), self.fits, s_hi, self.chips,
                               tuple(n for n in plain.notes if not (self.spec.draft is None and
                                                                     "neither placed nor timed" in n)) + self.notes,
                               extra)


def _draft_model_id(prof: SpeculativeProfile) -> str:
    return prof.spec.draft.id if prof.spec.draft is not None else f"{prof.base.model} (MTP)"


def speculative_profile(model: Model, dep: perf.Deployment, spec: Speculation, concurrency, prompt: int, output: int,
                        *, fused_prefill: bool = True, base: perf.ServingProfile | None = None) -> SpeculativeProfile:
    """The knob-free part of :func:`predict` (arguments as :func:`lpulab.perf.predict`).
    ``base``: the plain profile of the same model, deployment, concurrency, prompt and
    output when built already (a search that times both keeps one)."""
    spec.check(model)
    if base is None:
        base = perf.serving_profile(model, dep, concurrency, prompt, output, fused_prefill=fused_prefill)
    elif (base.model != model.id or base.deployment != dep or (base.prompt, base.output) != (int(prompt), int(output))
          or not np.array_equal(base.concurrency, np.asarray(concurrency, float))):
        raise SpeculationError("speculative_profile: base is the plain profile of another model, deployment, "
                               "concurrency, prompt or output")
    prompt, output = int(prompt), int(output)
    E, K = spec.tokens_per_step, spec.k
    ctx = float(math.floor(prompt + output / 2.0))
    stages = perf._stages(model, dep, prompt + output)
    where = draft_placement(model, dep, spec, base.hi.streams, prompt + output)
    d = _draft_model(model, spec)
    ddep = where.deployment
    dstages = perf._stages(d, ddep, prompt + output)
    # steps a request lasts: output / E verification steps, k draft steps each
    v_steps = output / E if fused_prefill else np.inf
    d_steps = K * output / E if fused_prefill else np.inf
    s_hi, s_lo = base.hi.streams, np.maximum(base.lo.streams, 1.0)
    same = np.array_equal(s_lo, s_hi)     # the same streams give the same steps: built once
    vh = perf._replica(model, dep, s_hi, v_steps, prompt, ctx, stages, K + 1)
    vl = replace(vh if same else perf._replica(model, dep, s_lo, v_steps, prompt, ctx, stages, K + 1),
                 streams=base.lo.streams)
    dh = perf._replica(d, ddep, s_hi, d_steps, prompt, ctx, dstages)
    dl = replace(dh if same else perf._replica(d, ddep, s_lo, d_steps, prompt, ctx, dstages), streams=base.lo.streams)
    fits = np.asarray(base.fits, bool)
    need = draft_bytes(model, spec, dep.precision, s_hi, prompt + output)
    if where.colocated:
        per_replica = dep.layout.chips // dep.layout.replicas
        cap = dep.device.capacity(dep.device.main_tier) * (1.0 - dep.reserve)
        used = workload.weight_bytes(model, dep.precision) + np.asarray(
            workload.kv_bytes(model, s_hi, prompt + output, dep.precision.kv), float)
        fits = fits & (used + need <= per_replica * cap)
    else:
        fits = fits & perf._fits(d, ddep, s_hi, prompt + output)
    return SpeculativeProfile(base, spec, vh, vl, dh, dl, where, fits, approximations(model, spec, where))


def predict(model: Model, dep: perf.Deployment, spec: Speculation, concurrency, prompt: int, output: int,
            knobs: perf.Knobs | None = None) -> perf.Prediction:
    """:func:`lpulab.perf.predict` with speculative decoding: TPOT, per-user and aggregate
    tokens/s over rounds of ``k`` draft steps and one verification step, the chips of a
    draft that needs its own counted; ``Prediction.extra`` holds the tokens per step, the
    draft's placement, the verify and draft times and the speed-ups over plain decoding of
    the same deployment under the same knobs."""
    return speculative_profile(model, dep, spec, concurrency, prompt, output).evaluate(knobs)


def default(method: str, a: Assumptions | None = None) -> tuple[int, float]:
    """The sourced default (k, alpha) of ``method`` (``draft`` or ``mtp``)."""
    if method not in METHODS:
        raise SpeculationError(f"speculative method {method!r} is not one of {', '.join(METHODS)}")
    a = a or load_assumptions()
    return int(a.draft_tokens[method].si), float(a.accept[method].si)
