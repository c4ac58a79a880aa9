"""Sharded execution of the decoder over simulated chips with hard SRAM budgets.

A :class:`Plan` is plain data:

* ``chips``: ``[(name, sram_bytes), ...]``;
* ``tensors``: ``{tensor_name: [(chip, axis, start, stop), ...]}``: chip ``chip`` holds
  ``W[start:stop]`` along ``axis`` of the stored array (linear weights are stored
  ``(out, in)``, so axis 0 splits output features: Megatron's "column parallel"; axis 1
  splits the reduction: "row parallel"). A whole tensor is ``(chip, 0, 0, shape[0])``.
  Several chips may hold the same slice (replicas);
* ``layer_stage``: the pipeline stage of each layer (non-decreasing);
* ``stage_chips``: the chips of each stage, in the order their partial results are
  combined (the tensor-parallel group);
* ``embed_stage`` / ``head_stage`` (optional): the stage that runs the embedding and the
  stage that runs the final norm and LM head; by default the first layer's and the last
  layer's stage. A stage may hold no layer at all (e.g. only the embedding), and with tied
  embeddings stored once with the head (as :mod:`lpulab.placement` stores them) the
  embedding runs on the last stage.

:func:`plan_from_placement` turns a :class:`lpulab.placement.Placement` into a plan.

What each chip computes follows from what it holds: in layer ``l`` a chip of that layer's
stage that holds rows ``[g0*dh, g1*dh)`` of ``k_proj`` runs KV heads ``g0..g1`` (and asks
for the matching rows of q_proj / v_proj and columns of o_proj); one that holds rows
``[a, b)`` of ``gate_proj`` runs FFN columns ``a..b`` (and asks for up_proj rows and
down_proj columns ``a..b``). The embedding runs on the first stage's chips that hold
vocabulary rows of ``embed_tokens``; the final norm and head on the last stage's chips
that hold rows of the head weight. A chip asking for a tensor slice it does not hold
raises :class:`OwnershipError`; a chip whose weights and KV cache exceed its SRAM budget
raises :class:`SramBudgetError`.

Chips hold numpy *views* of the model's weights, so the sharded run needs no extra copy
of any weight. The simulation keeps one copy of the replicated residual stream.

Bytes moved between chips (``Transfer`` records, summed over all links):

* pipeline: a stage hands the residual stream (N x h activations) to each chip of the
  next stage: ``t_next * N * h * a``; also from the embedding's stage to the first layer's
  and from the last layer's to the head's when they differ (with tied embeddings held
  by the last stage, that is a hop from the last stage back to the first);
* all_reduce (ring) of M bytes over t chips: ``2 * (t - 1) * M``; used after the
  row-parallel o_proj and down_proj (M = N*h*a in float32; with quantised weights the
  exact integer accumulators, int32 for int8 weights with 8-bit activations and int64
  otherwise, M = N*h*4 or N*h*8, plus the per-row activation maximum, M = N*4) and after a
  vocabulary-split embedding (M = N*h*a);
* gather of the vocabulary-split logits to the stage's first chip: the other chips'
  slices, ``sum R * (stop - start) * a``.

Sampled token ids returning to the first stage are not counted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops, tiled
from .model import Decoder, DecoderConfig, Generation, _check_tokens, dense_llama_problems, greedy_generate
from .ops import OpCount, _Quantised

__all__ = [
    "DEFAULT_DEVICE",
    "chip_sram_bytes",
    "PlanError",
    "SramBudgetError",
    "OwnershipError",
    "Chip",
    "Shard",
    "Plan",
    "build_plan",
    "plan_from_placement",
    "simulated_device",
    "Transfer",
    "Tolerance",
    "ShardedStep",
    "ShardedKVCache",
    "ChipMemory",
    "ShardedDecoder",
]

#: The catalog device whose chips a plan simulates when neither ``sram_bytes`` nor ``device``
#: is given: its on-chip memory is each chip's budget (:func:`chip_sram_bytes`).
DEFAULT_DEVICE = "groq-lpu-v1"

FP32_TP_TOLERANCE = (1e-4, 1e-4)


class PlanError(ValueError):
    """A plan that does not fit the model (shape, coverage or structure)."""


class SramBudgetError(PlanError):
    """A chip's weights plus KV cache exceed its SRAM budget."""


class OwnershipError(RuntimeError):
    """A chip touched a tensor (slice) it does not hold."""


@dataclass(frozen=True)
class Chip:
    name: str
    sram_bytes: int

    def __post_init__(self) -> None:
        if not isinstance(self.sram_bytes, (int, np.integer)) or self.sram_bytes < 0:
            raise PlanError(f"chip {self.name!r}: sram_bytes must be a non-negative integer, got {self.sram_bytes!r}")


@dataclass(frozen=True)
class Shard:
    chip: int
    axis: int
    start: int
    stop: int

    def __str__(self) -> str:
        return f"chip {self.chip} [axis {self.axis}, {self.start}:{self.stop}]"


def _as_shard(x) -> Shard:
    if isinstance(x, Shard):
        return x
    if isinstance(x, Mapping):
        return Shard(int(x["chip"]), int(x["axis"]), int(x["start"]), int(x["stop"]))
    if len(x) != 4:
        raise PlanError(f"a shard is (chip, axis, start, stop), got {x!r}")
    return Shard(*(int(v) for v in x))


@dataclass(frozen=True)
class Plan:
    """Which chip holds which slice of which tensor, and the pipeline stages."""

    chips: tuple[Chip, ...]
    tensors: Mapping[str, tuple[Shard, ...]] = field(hash=False)
    layer_stage: tuple[int, ...]
    stage_chips: tuple[tuple[int, ...], ...]
    embed_stage: int | None = None
    head_stage: int | None = None

    def __post_init__(self) -> None:
        chips = tuple(c if isinstance(c, Chip) else Chip(str(c[0]), int(c[1])) for c in self.chips)
        tensors = {str(k): tuple(_as_shard(s) for s in v) for k, v in dict(self.tensors).items()}
        stages = tuple(int(s) for s in self.layer_stage)
        groups = tuple(tuple(int(c) for c in g) for g in self.stage_chips)
        object.__setattr__(self, "chips", chips)
        object.__setattr__(self, "tensors", tensors)
        object.__setattr__(self, "layer_stage", stages)
        object.__setattr__(self, "stage_chips", groups)
        n = len(chips)
        if n == 0:
            raise PlanError("plan: at least one chip is needed")
        names = [c.name for c in chips]
        if len(set(names)) != n:
            raise PlanError(f"plan: chip names must be unique, got {names}")
        for name, shards in tensors.items():
            for s in shards:
                if not 0 <= s.chip < n:
                    raise PlanError(f"plan: tensor {name!r} names chip {s.chip}; chips are 0..{n - 1}")
                if s.axis < 0 or s.start < 0 or s.stop <= s.start:
                    raise PlanError(f"plan: tensor {name!r} has an empty or negative slice {s}")
        if not groups or any(not g for g in groups):
            raise PlanError(f"plan: every stage needs at least one chip, got stage_chips={groups}")
        for g in groups:
            for c in g:
                if not 0 <= c < n:
                    raise PlanError(f"plan: stage_chips names chip {c}; chips are 0..{n - 1}")
            if len(set(g)) != len(g):
                raise PlanError(f"plan: a stage lists a chip twice: {g}")
        if not stages:
            raise PlanError("plan: layer_stage is empty")
        if any(not 0 <= s < len(groups) for s in stages):
            raise PlanError(f"plan: layer_stage values must be in 0..{len(groups) - 1}, got {stages}")
        if any(b < a for a, b in itertools.pairwise(stages)):
            raise PlanError(f"plan: layer_stage must be non-decreasing (layers flow through the pipeline in order), got {stages}")
        for what in ("embed_stage", "head_stage"):
            v = getattr(self, what)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < len(groups):
                    raise PlanError(f"plan: {what} must be a stage index in 0..{len(groups) - 1}, got {v!r}")
                object.__setattr__(self, what, int(v))
        if self.head_stage is not None and self.head_stage < stages[-1]:
            raise PlanError(f"plan: head_stage ({self.head_stage}) comes before the last layer's stage ({stages[-1]})")

    @property
    def embedding_stage(self) -> int:
        """The stage that runs the embedding."""
        return self.layer_stage[0] if self.embed_stage is None else self.embed_stage

    @property
    def final_stage(self) -> int:
        """The stage that runs the final norm and the LM head."""
        return self.layer_stage[-1] if self.head_stage is None else self.head_stage

    @classmethod
    def from_placement(cls, placement, **kw) -> Plan:
        """The plan of a :class:`lpulab.placement.Placement` (see :func:`plan_from_placement`)."""
        return plan_from_placement(placement, **kw)

    def to_dict(self) -> dict:
        """Plain data (lists, ints, strings), e.g. for JSON."""
        return {
            "chips": [[c.name, c.sram_bytes] for c in self.chips],
            "tensors": {k: [[s.chip, s.axis, s.start, s.stop] for s in v] for k, v in self.tensors.items()},
            "layer_stage": list(self.layer_stage),
            "stage_chips": [list(g) for g in self.stage_chips],
            "embed_stage": self.embed_stage,
            "head_stage": self.head_stage,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Plan:
        missing = {"chips", "tensors", "layer_stage", "stage_chips"} - set(d)
        if missing:
            raise PlanError(f"plan: missing keys {sorted(missing)}")
        return cls(tuple(d["chips"]), d["tensors"], tuple(d["layer_stage"]), tuple(tuple(g) for g in d["stage_chips"]),
                   d.get("embed_stage"), d.get("head_stage"))

    def shards_on(self, chip: int) -> list[tuple[str, Shard]]:
        return [(name, s) for name, shards in self.tensors.items() for s in shards if s.chip == chip]


def chip_sram_bytes(device) -> int:
    """The on-chip memory of one chip of ``device`` (a catalog id or a
    :class:`~lpulab.catalog.Device`), in bytes: the capacity of the tier that holds its
    weights (:attr:`~lpulab.catalog.Device.main_tier`), which must be on the chip; the
    simulated chips hold weights and KV cache in it and nothing off the chip. A device whose
    weights live off the chip (HBM, DRAM) is refused: give ``sram_bytes`` instead."""
    from .. import catalog

    dev = catalog.load_device(device) if isinstance(device, str) else device
    tier = dev.tier()
    if tier.placement != "on-chip":
        raise PlanError(f"chip_sram_bytes: {dev.id} holds its weights in {tier.name!r} ({tier.placement}), not on the "
                        "chip; a simulated SRAM chip needs a device whose weights tier is on-chip, or sram_bytes "
                        "(bytes per chip) given explicitly")
    return int(dev.capacity(tier.name))


def _split_points(n: int, parts: int) -> list[tuple[int, int]]:
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def build_plan(
    config: DecoderConfig,
    *,
    n_chips: int,
    pipeline_stages: int = 1,
    tensor_parallel: int = 1,
    sram_bytes: int | None = None,
    device=None,
    ffn_cuts: Sequence[int] | None = None,
    chip_prefix: str = "chip",
) -> Plan:
    """A pipeline x tensor-parallel plan: ``n_chips = pipeline_stages * tensor_parallel``.

    Each chip's SRAM budget is ``sram_bytes``, or else the on-chip memory of one chip of
    ``device`` (a catalog id or :class:`~lpulab.catalog.Device`, by default
    :data:`DEFAULT_DEVICE`; :func:`chip_sram_bytes`); give at most one of the two.

    The tensors and the axis each is cut along are :mod:`lpulab.architecture`'s (its
    ``split_axis``). Layers are split into contiguous stages (earlier stages get the extra
    layer). Within a stage, KV heads (with their query heads) and FFN columns are split over
    the tensor-parallel chips: an attention matrix is cut along its split axis in whole
    KV-head groups, an FFN matrix at the FFN cut points; norm gains are held whole by every
    chip that normalises. The embedding / head are split by vocabulary rows. With tied
    embeddings and more than one stage, the table is held by both the first and the last
    stage. ``ffn_cuts``: the ``tensor_parallel - 1`` interior cut points of the FFN columns
    (default: as even as possible).
    """
    from .. import architecture

    c = config
    for name, v in (("n_chips", n_chips), ("pipeline_stages", pipeline_stages), ("tensor_parallel", tensor_parallel)):
        if not isinstance(v, (int, np.integer)) or v < 1:
            raise PlanError(f"build_plan: {name} must be a positive integer, got {v!r}")
    if n_chips != pipeline_stages * tensor_parallel:
        raise PlanError(
            f"build_plan: n_chips ({n_chips}) must equal pipeline_stages ({pipeline_stages}) x tensor_parallel ({tensor_parallel})"
        )
    if pipeline_stages > c.n_layers:
        raise PlanError(f"build_plan: pipeline_stages ({pipeline_stages}) cannot exceed n_layers ({c.n_layers})")
    allowed_tp = [d for d in range(1, c.n_kv_heads + 1) if c.n_kv_heads % d == 0]
    if tensor_parallel not in allowed_tp:
        raise PlanError(
            f"build_plan: tensor_parallel ({tensor_parallel}) must divide n_kv_heads ({c.n_kv_heads}); allowed: {allowed_tp}"
        )
    tp = tensor_parallel
    if ffn_cuts is None:
        ffn_ranges = _split_points(c.ffn, tp)
    else:
        cuts = [int(x) for x in ffn_cuts]
        if len(cuts) != tp - 1 or cuts != sorted(set(cuts)) or (cuts and not (cuts[0] > 0 and cuts[-1] < c.ffn)):
            raise PlanError(f"build_plan: ffn_cuts must be {tp - 1} increasing points inside (0, {c.ffn}), got {list(ffn_cuts)}")
        edges = [0, *cuts, c.ffn]
        ffn_ranges = list(itertools.pairwise(edges))
    if tp > c.vocab:
        raise PlanError(f"build_plan: tensor_parallel ({tp}) cannot exceed vocab ({c.vocab})")
    if sram_bytes is not None and device is not None:
        raise PlanError(f"build_plan: give the chips' SRAM budget once, as sram_bytes (bytes per chip) or as device "
                        f"(a catalog id), not both; got sram_bytes={sram_bytes!r}, device={device!r}")
    budget = chip_sram_bytes(DEFAULT_DEVICE if device is None else device) if sram_bytes is None else sram_bytes
    vocab_ranges = _split_points(c.vocab, tp)
    chips = tuple(Chip(f"{chip_prefix}{i}", int(budget)) for i in range(n_chips))
    stage_chips = tuple(tuple(s * tp + j for j in range(tp)) for s in range(pipeline_stages))
    layer_stage: list[int] = []
    for s, (a, b) in enumerate(_split_points(c.n_layers, pipeline_stages)):
        layer_stage += [s] * (b - a)
    # np-style split gives earlier stages the extra layers when it does not divide evenly
    tensors: dict[str, list[tuple[int, int, int, int]]] = {}

    def add(name: str, chip: int, spec, j: int, ranges: Sequence[tuple[int, int]] | None) -> None:
        """Chip ``chip`` (the ``j``-th of its stage) holds its part of ``spec``: a norm gain
        whole, a matrix cut along its split axis by ``ranges`` (None: KV-head groups)."""
        axis = spec.split_axis
        n = spec.shape[axis]
        if spec.role == "norm":
            a, b = 0, n
        elif ranges is not None:
            a, b = ranges[j]
        else:  # attention: whole KV-head groups, ``n / n_kv_heads`` rows or columns each
            per = n // c.n_kv_heads * (c.n_kv_heads // tp)
            a, b = j * per, (j + 1) * per
        tensors.setdefault(name, []).append((chip, axis, a, b))

    m = c.to_model()
    layer = architecture.layer_tensors(m, 0)  # the decoder's layers are alike (dense, full attention)
    ffn_first = [t.name for t in layer].index("ffn_norm")  # the FFN block: ffn_norm and what follows it
    (table,) = [t for t in architecture.head_tensors(m) + architecture.embedding_tensors(m) if t.name == "embed_tokens"]
    for j, chip in enumerate(stage_chips[0]):
        add("embed_tokens", chip, table, j, vocab_ranges)
    for i, s in enumerate(layer_stage):
        for j, chip in enumerate(stage_chips[s]):
            for k, spec in enumerate(layer):
                add(f"layers.{i}.{spec.name}", chip, spec, j, ffn_ranges if k >= ffn_first else None)
    for j, chip in enumerate(stage_chips[-1]):
        for spec in architecture.head_tensors(m):
            if not (spec.name == "embed_tokens" and pipeline_stages == 1):  # a tied table already held
                add(spec.name, chip, spec, j, vocab_ranges)
    return Plan(chips, tensors, tuple(layer_stage), stage_chips)  # type: ignore[arg-type]  # __post_init__ makes Shards


# --------------------------------------------------------------------------- from lpulab.placement

#: Norm gains: :mod:`lpulab.placement` splits their bytes over a stage's chips; every chip
#: that normalises the (replicated) residual stream needs the whole gain.
_NORMS = ("attn_norm", "ffn_norm", "final_norm")


def plan_from_placement(placement, *, chip_prefix: str = "chip") -> Plan:
    """The sharding plan of a :class:`lpulab.placement.Placement`, for :class:`ShardedDecoder`.

    Every weight slice is the one :func:`lpulab.placement.export_plan` lists (tensor names
    and the (out, in) layout are shared), chip ``i`` of the placement is chip ``i`` here,
    and its SRAM budget is what the placement may use of the chip's tier (capacity less the
    reserve). Two things differ from the placement, both stated:

    * norm gains (``h`` values each) are held whole by every chip of their stage: the
      placement splits their bytes ``t`` ways, the decoder normalises the replicated
      residual stream on every chip; ``(t - 1) * h * a`` more bytes per gain per stage;
    * the decoder's budget counts weights (int8 scales included) and KV cache, not the
      activation working set that the placement also reserves.

    With tied embeddings the placement stores the table once, with the head, so the
    embedding runs on the head's stage (and, with more than one stage, its output travels
    back to the first stage: a pipeline transfer the decoder counts).

    Raises :class:`PlanError` for what the decoder cannot run: a mixture of experts, an
    ungated FFN, or a tensor-parallel width that does not divide the KV heads (the decoder
    splits attention by whole KV heads; place with
    ``tensor_choices=lpulab.placement.tensor_widths(model, "kv-heads")``).
    """
    from ..placement import export_plan

    m = placement.model
    problems = dense_llama_problems(m)
    if problems:
        raise PlanError(f"plan_from_placement: {m.id} is not what the numpy decoder runs (a dense Llama-style "
                        f"decoder): it has " + "; ".join(problems))
    tp, pp = int(placement.tensor), int(placement.pipeline)
    if m.kv_heads % tp:
        ok = [d for d in range(1, m.kv_heads + 1) if m.kv_heads % d == 0]
        raise PlanError(
            f"plan_from_placement: tensor-parallel width {tp} does not divide {m.id}'s {m.kv_heads} KV heads; the "
            f"numpy decoder splits attention by whole KV heads (allowed widths: {ok}; place with "
            f"tensor_choices=placement.tensor_widths(model, 'kv-heads') or tensor=...)")
    tensors, stage_of = export_plan(placement, ("weight",))
    tier = placement.tiers["weight"]
    cap = placement.device.capacity(tier)
    budget = int(cap - math.ceil(cap * placement.reserve))
    chips = tuple(Chip(f"{chip_prefix}{i}", budget) for i in range(placement.chips))
    stage_chips = tuple(tuple(placement.stage_chips(s)) for s in range(pp))
    h = m.hidden_size
    for name in list(tensors):
        if name.rsplit(".", 1)[-1] in _NORMS:
            stages = {chip // tp for chip, *_ in tensors[name]}
            tensors[name] = [(c, 0, 0, h) for st in sorted(stages) for c in stage_chips[st]]
    layer_stage = tuple(int(stage_of[i]) for i in range(m.layers))
    head_stage = next(st.index for st in placement.stages if st.head)
    embed_stage = head_stage if m.tied_embeddings else next(st.index for st in placement.stages if st.embedding)
    return Plan(chips, tensors, layer_stage, stage_chips, embed_stage, head_stage)


def simulated_device(sram_bytes: float, *, id: str | None = None, bandwidth: float = 80e12):
    """A catalog :class:`~lpulab.catalog.Device` for a simulated SRAM-only chip of
    ``sram_bytes`` (category ``lpu``, one ``sram`` tier), validated by the catalog's own
    schema, so :mod:`lpulab.placement` can place a model on it. Its numbers are a user's
    parameters (kind ``estimate``, confidence ``unverified``), not a product's; the
    bandwidth (bytes/s) only matters to code that times it (default: the LPU's stated
    80 TB/s)."""
    from pathlib import Path

    from .. import catalog

    if not np.isfinite(sram_bytes) or sram_bytes <= 0:
        raise PlanError(f"simulated_device: sram_bytes must be a positive number, got {sram_bytes!r}")
    id = id or f"simulated-sram-{sram_bytes / 1e6:g}MB".replace(".", "p")
    src = {"parameter": {"title": "a notebook or test parameter: a simulated SRAM-only chip", "url": "local",
                         "date": "n/a", "confidence": "unverified"}}
    raw = {
        "id": id, "name": f"simulated SRAM chip, {sram_bytes / 1e6:g} MB", "vendor": "lpulab", "category": "lpu",
        "released": "n/a", "sources": src,
        "memory": {"sram": {
            "placement": "on-chip",
            "capacity": {"value": float(sram_bytes), "unit": "B", "source": "parameter", "kind": "estimate"},
            "bandwidth": {"value": float(bandwidth) / 1e12, "unit": "TB/s", "source": "parameter", "kind": "estimate"},
        }},
        "interconnect": {"link": {"bandwidth": {"value": 240, "unit": "GB/s", "source": "parameter", "kind": "estimate"}}},
        "deployment": {  # any tensor-parallel width up to 72 chips, counted chip by chip
            "unit": "chip", "tensor_split": "any", "scale_up_link": "link",
            "scale_up": {"chips": {"value": 72, "unit": "count", "source": "parameter", "kind": "estimate"}},
            "units": {"chip": {"chips": {"value": 1, "unit": "count", "source": "parameter", "kind": "estimate"}}}},
    }
    return catalog.parse_device(raw, Path(f"{id}.toml"))


# --------------------------------------------------------------------------- run records


@dataclass(frozen=True)
class Transfer:
    """Bytes moved between chips for one collective or pipeline hand-off."""

    name: str
    kind: str  # "pipeline" | "all_reduce" | "gather"
    chips: tuple[int, ...]
    bytes: int


@dataclass(frozen=True)
class Tolerance:
    """|x - ref| <= rtol * |ref| + atol_rel * max|ref| (element-wise)."""

    rtol: float
    atol_rel: float

    def max_violation(self, x: np.ndarray, ref: np.ndarray) -> float:
        bound = self.rtol * np.abs(ref) + self.atol_rel * float(np.max(np.abs(ref)))
        return float(np.max(np.abs(x - ref) - bound))

    def allclose(self, x: np.ndarray, ref: np.ndarray) -> bool:
        return x.shape == ref.shape and self.max_violation(x, ref) <= 0


@dataclass(frozen=True)
class ShardedStep:
    """One sharded forward step.

    ``exactness`` is ``"bit-exact"`` when the arithmetic makes the result identical to the
    unsharded run (quantised weights with exact integer accumulation, or no tensor-parallel split),
    else ``"tolerance"`` and ``tolerance`` says how close it is guaranteed to be.
    """

    logits: np.ndarray
    transfers: tuple[Transfer, ...]
    tokens: int
    exactness: str
    tolerance: Tolerance | None
    chip_counts: Mapping[str, OpCount] = field(hash=False, repr=False)

    @property
    def bytes_moved(self) -> int:
        return sum(t.bytes for t in self.transfers)

    @property
    def bytes_per_token(self) -> float:
        return self.bytes_moved / self.tokens

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.transfers:
            out[t.kind] = out.get(t.kind, 0) + t.bytes
        return out

    def matches(self, whole_logits: np.ndarray) -> bool:
        """Whether these logits equal the unsharded ones as promised by ``exactness``."""
        if self.exactness == "bit-exact":
            return bool(np.array_equal(self.logits, whole_logits))
        return self.tolerance.allclose(self.logits, whole_logits)  # type: ignore[union-attr]  # set unless bit-exact


# --------------------------------------------------------------------------- chips


def _slice(w, axis: int, start: int, stop: int):
    if isinstance(w, np.ndarray):
        idx = [slice(None)] * w.ndim
        idx[axis] = slice(start, stop)
        return w[tuple(idx)]
    return w.slice(axis, start, stop)


class ChipMemory:
    """What one simulated chip holds: views of weight slices, and its KV cache bytes."""

    def __init__(self, index: int, chip: Chip, shapes: Mapping[str, tuple[int, ...]]):
        self.index = index
        self.chip = chip
        self._shapes = shapes
        self._held: dict[str, list[tuple[Shard, Any]]] = {}
        self.weight_bytes = 0
        self.kv_bytes = 0

    @property
    def label(self) -> str:
        return f"chip {self.index} ({self.chip.name!r})"

    def hold(self, name: str, shard: Shard, view) -> None:
        self._held.setdefault(name, []).append((shard, view))
        self.weight_bytes += int(view.nbytes)

    def held(self) -> dict[str, list[Shard]]:
        return {k: [s for s, _ in v] for k, v in self._held.items()}

    def get(self, name: str, axis: int = 0, start: int | None = None, stop: int | None = None):
        """View of ``name[start:stop]`` along ``axis``; raises OwnershipError if not held."""
        shape = self._shapes.get(name)
        if shape is None:
            raise OwnershipError(f"{self.label} asked for unknown tensor {name!r}")
        start = 0 if start is None else start
        stop = shape[axis] if stop is None else stop
        for s, view in self._held.get(name, ()):
            whole = s.start == 0 and s.stop == shape[s.axis]
            if s.axis == axis and s.start <= start and stop <= s.stop:
                return _slice(view, axis, start - s.start, stop - s.start)
            if whole:
                return _slice(view, axis, start, stop) if (start, stop) != (0, shape[axis]) else view
        owned = [str(s) for s, _ in self._held.get(name, ())]
        raise OwnershipError(
            f"{self.label} touched {name}[axis {axis}, {start}:{stop}], which it does not own"
            + (f"; it holds only {owned}" if owned else "; it holds no slice of that tensor")
        )


class ShardedKVCache:
    """Per layer, per chip: K and V for the KV heads that chip runs."""

    def __init__(self, k: list[dict[int, np.ndarray]], v: list[dict[int, np.ndarray]], batch: int, capacity: int):
        self.k, self.v = k, v
        self.batch, self.capacity = batch, capacity
        self.length = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for d in self.k for a in d.values()) + sum(a.nbytes for d in self.v for a in d.values())


def _ranges_partition(ranges: list[tuple[int, int]], n: int) -> bool:
    pos = 0
    for a, b in sorted(ranges):
        if a != pos:
            return False
        pos = b
    return pos == n


class ShardedDecoder:
    """Runs a :class:`~lpulab.kernels.model.Decoder` over the chips of a :class:`Plan`."""

    def __init__(self, decoder: Decoder, plan: Plan):
        self.decoder = decoder
        self.config = c = decoder.config
        self.plan = plan
        W = decoder.weights
        shapes = {k: tuple(w.shape) for k, w in W.items()}
        if len(plan.layer_stage) != c.n_layers:
            raise PlanError(f"plan: layer_stage has {len(plan.layer_stage)} entries, the model has {c.n_layers} layers")
        unknown = sorted(set(plan.tensors) - set(shapes))
        if unknown:
            raise PlanError(f"plan: unknown tensors {unknown[:5]}; tensor names are like {list(shapes)[:4]} ...")
        self.chips = [ChipMemory(i, ch, shapes) for i, ch in enumerate(plan.chips)]
        for name, shards in plan.tensors.items():
            shape = shapes[name]
            for s in shards:
                if s.axis >= len(shape) or s.stop > shape[s.axis]:
                    raise PlanError(f"plan: {name} {s} is outside the tensor's shape {shape}")
                try:
                    view = _slice(W[name], s.axis, s.start, s.stop)
                except ValueError as e:
                    raise PlanError(f"plan: {name} {s} cannot be cut from its {type(W[name]).__name__}: {e}") from None
                self.chips[s.chip].hold(name, s, view)
        self._check_budget()

        es, hs = plan.embedding_stage, plan.final_stage
        self._embed_work = self._row_work("embed_tokens", plan.stage_chips[es], c.vocab, f"the embedding's stage ({es})")
        self._head_work = self._row_work(c.head_weight_name, plan.stage_chips[hs], c.vocab, f"the head's stage ({hs})")
        self._attn_work: list[list[tuple[int, int, int]]] = []
        self._ffn_work: list[list[tuple[int, int, int]]] = []
        dh = c.head_dim
        for layer, st in enumerate(plan.layer_stage):
            group = plan.stage_chips[st]
            p = f"layers.{layer}."
            kv = self._row_work(p + "k_proj", group, c.kv_dim, f"stage {st}")
            for ci, a, b in kv:
                if a % dh or b % dh:
                    raise PlanError(f"plan: {p}k_proj rows {a}:{b} on chip {ci} must align to whole heads (head_dim {dh})")
            self._attn_work.append([(ci, a // dh, b // dh) for ci, a, b in kv])
            self._ffn_work.append(self._row_work(p + "gate_proj", group, c.ffn, f"stage {st}"))

        tp_split = any(len(w) > 1 for w in self._attn_work + self._ffn_work + [self._embed_work, self._head_work])
        exact = all(isinstance(W[k], _Quantised) for k in shapes if len(shapes[k]) == 2)
        if exact or not tp_split:
            self.exactness, self.tolerance = "bit-exact", None
        else:
            self.exactness, self.tolerance = "tolerance", Tolerance(*FP32_TP_TOLERANCE)

    def _row_work(self, name: str, group: Iterable[int], n: int, where: str) -> list[tuple[int, int, int]]:
        """(chip, start, stop) of the axis-0 slices of ``name`` held by ``group``'s chips,
        one per chip, in group order; they must cover [0, n) exactly once."""
        work = []
        for ci in group:
            mine = [s for s in self.plan.tensors.get(name, ()) if s.chip == ci and s.axis == 0]
            if len(mine) > 1:
                raise PlanError(f"plan: chip {ci} holds {len(mine)} row slices of {name}; give it one contiguous slice")
            if mine:
                work.append((ci, mine[0].start, mine[0].stop))
        if not _ranges_partition([(a, b) for _, a, b in work], n):
            got = [(ci, a, b) for ci, a, b in work]
            raise PlanError(
                f"plan: the rows of {name} held by {where} (chips {tuple(group)}) must cover 0:{n} exactly once; "
                f"got (chip, start, stop) = {got}"
            )
        return work

    def _check_budget(self, extra_kv: Mapping[int, int] | None = None) -> None:
        for ch in self.chips:
            kv = (extra_kv or {}).get(ch.index, ch.kv_bytes)
            need = ch.weight_bytes + kv
            if need > ch.chip.sram_bytes:
                held = sorted(((int(v.nbytes), k) for k, lst in ch._held.items() for _, v in lst), reverse=True)[:4]
                raise SramBudgetError(
                    f"{ch.label} needs {need:,} bytes of SRAM (weights {ch.weight_bytes:,} + KV cache {kv:,}) "
                    f"but its budget is {ch.chip.sram_bytes:,} bytes; largest tensors on it: "
                    + ", ".join(f"{k} ({n:,} B)" for n, k in held)
                )

    def residency(self) -> list[dict]:
        """Per chip: name, weight bytes, KV bytes, budget."""
        return [
            {"chip": ch.chip.name, "weight_bytes": ch.weight_bytes, "kv_bytes": ch.kv_bytes, "sram_bytes": ch.chip.sram_bytes}
            for ch in self.chips
        ]

    # ------------------------------------------------------------------ cache

    def new_cache(self, batch: int = 1, capacity: int = 128) -> ShardedKVCache:
        """Allocate each chip's KV cache for the heads it runs; refuses (before allocating)
        if a chip's weights plus cache would exceed its SRAM budget."""
        c = self.config
        dtype = np.dtype(self.decoder.numerics.kv_dtype)
        need: dict[int, int] = {ch.index: 0 for ch in self.chips}
        for work in self._attn_work:
            for ci, g0, g1 in work:
                need[ci] += 2 * batch * (g1 - g0) * capacity * c.head_dim * dtype.itemsize
        self._check_budget(need)
        for ch in self.chips:
            ch.kv_bytes = need[ch.index]
        k = [{ci: np.zeros((batch, g1 - g0, capacity, c.head_dim), dtype) for ci, g0, g1 in w} for w in self._attn_work]
        v = [{ci: np.zeros((batch, g1 - g0, capacity, c.head_dim), dtype) for ci, g0, g1 in w} for w in self._attn_work]
        return ShardedKVCache(k, v, batch, capacity)

    # ------------------------------------------------------------------ forward

    def _row_parallel(self, name: str, parts: list[tuple[int, np.ndarray, Any]], transfers: list, counts: dict) -> np.ndarray:
        """Sum over chips of ``x_c @ W_c.T`` where W is split along its input axis."""
        chips = tuple(ci for ci, _, _ in parts)
        t = len(parts)
        n = parts[0][1].shape[0]
        o = parts[0][2].shape[0]
        for ci, x_c, w_c in parts:
            counts[ci].append(OpCount(name, flops=2 * n * x_c.shape[1] * o, weight=ops.weight_payload_bytes(w_c),
                                      act_read=x_c.nbytes, act_write=n * o * 4))
        ws = [w for _, _, w in parts]
        if all(isinstance(w, _Quantised) for w in ws) and len({(type(w), w.act_bits) for w in ws}) == 1:
            # every chip quantises its slice of the row with the all-reduced row maximum, so
            # the integer partial sums add up to exactly the whole model's accumulators
            maxes = [np.max(np.abs(x_c), axis=1) for _, x_c, _ in parts]
            absmax = maxes[0]
            for m in maxes[1:]:
                absmax = np.maximum(absmax, m)
            acc = None
            scale = None
            for _, x_c, w_c in parts:
                xq, scale = ops._qrows(x_c, absmax, w_c.act_bits)
                part = w_c.int_acc(xq)
                acc = part if acc is None else acc + part
            assert acc is not None and scale is not None   # parts is never empty
            if t > 1:
                transfers.append(Transfer(name + ".absmax", "all_reduce", chips, 2 * (t - 1) * n * 4))
                transfers.append(Transfer(name, "all_reduce", chips, 2 * (t - 1) * acc.size * ws[0].acc_itemsize))
            return ops.dequantize_acc(acc, scale, ws[0].scale)
        y = None
        for _, x_c, w_c in parts:
            part = ops.matmul_t(x_c, w_c)
            y = part if y is None else y + part
        assert y is not None   # parts is never empty
        if t > 1:
            transfers.append(Transfer(name, "all_reduce", chips, 2 * (t - 1) * y.nbytes))
        return y

    def forward(self, tokens, cache: ShardedKVCache) -> ShardedStep:
        c = self.config
        t = _check_tokens(tokens, c.vocab, "ShardedDecoder.forward")
        b, s = t.shape
        if cache.batch != b:
            raise ValueError(f"ShardedDecoder.forward: cache holds {cache.batch} sequences, tokens have {b}")
        past = cache.length
        if past + s > cache.capacity:
            raise ValueError(f"ShardedDecoder.forward: {past} cached + {s} new positions exceed the cache capacity {cache.capacity}")
        with tiled.blas_single():
            return self._forward(t, cache, past)

    def _forward(self, t: np.ndarray, cache: ShardedKVCache, past: int) -> ShardedStep:
        c, plan, num = self.config, self.plan, self.decoder.numerics
        b, s = t.shape
        n, h, dh, r = b * s, c.hidden, c.head_dim, c.group
        chips = self.chips
        transfers: list[Transfer] = []
        counts: dict[int, list[OpCount]] = {ch.index: [] for ch in chips}
        flat = t.reshape(-1)

        # embedding: vocabulary rows split over the first stage
        x = np.zeros((n, h), dtype=np.float32)
        for ci, v0, v1 in self._embed_work:
            sel = (flat >= v0) & (flat < v1)
            rows, cnt = ops.embedding(flat[sel] - v0, chips[ci].get("embed_tokens", 0, v0, v1), name="embedding")
            x[sel] = rows
            counts[ci].append(cnt)
        if len(self._embed_work) > 1:
            transfers.append(Transfer("embedding", "all_reduce", tuple(w[0] for w in self._embed_work),
                                      2 * (len(self._embed_work) - 1) * x.nbytes))

        positions = np.arange(past, past + s)
        angles = ops.rope_angles(positions, c.head_dim, c.rope_theta)
        stage = plan.embedding_stage
        for layer in range(c.n_layers):
            p = f"layers.{layer}."
            st = plan.layer_stage[layer]
            if st != stage:
                dst = plan.stage_chips[st]
                transfers.append(Transfer(p + "input", "pipeline", plan.stage_chips[stage] + dst, len(dst) * x.nbytes))
                stage = st
            # attention: KV heads split over the stage's chips
            parts = []
            for ci, g0, g1 in self._attn_work[layer]:
                ch = chips[ci]
                hn, cnt = ops.rmsnorm(x, ch.get(p + "attn_norm"), c.norm_eps, name=p + "attn_norm")
                kc, vc = cache.k[layer][ci], cache.v[layer][ci]
                (q, k, v), (cq, ck, cv) = ops.linears(hn, [
                    (ch.get(p + "q_proj", 0, g0 * r * dh, g1 * r * dh), p + "q_proj", "act", None),
                    (ch.get(p + "k_proj", 0, g0 * dh, g1 * dh), p + "k_proj", "kv", kc.itemsize),
                    (ch.get(p + "v_proj", 0, g0 * dh, g1 * dh), p + "v_proj", "kv", kc.itemsize)])
                q4 = ops.split_heads(q, b, s, (g1 - g0) * r, dh)
                k4 = ops.split_heads(k, b, s, g1 - g0, dh)
                q4, k4, cr = ops.rope(q4, k4, positions, theta=c.rope_theta, layout=c.rope_layout, name=p + "rope",
                                      angles=angles)
                kc[:, :, past:past + s] = k4
                vc[:, :, past:past + s] = ops.split_heads(v, b, s, g1 - g0, dh)
                att, ca = ops.attention(q4, kc, vc, past, prefix=p, round_inputs=num.round_attn_inputs)
                counts[ci] += [cnt, cq, ck, cv, cr, *ca]
                parts.append((ci, att, ch.get(p + "o_proj", 1, g0 * r * dh, g1 * r * dh)))
            o = self._row_parallel(p + "o_proj", parts, transfers, counts)
            x = x + o
            # feed-forward: FFN columns split over the stage's chips
            parts = []
            for ci, a0, a1 in self._ffn_work[layer]:
                ch = chips[ci]
                hn, cnt = ops.rmsnorm(x, ch.get(p + "ffn_norm"), c.norm_eps, name=p + "ffn_norm")
                (g, u), (cg, cu) = ops.linears(hn, [(ch.get(p + "gate_proj", 0, a0, a1), p + "gate_proj", "act", None),
                                                    (ch.get(p + "up_proj", 0, a0, a1), p + "up_proj", "act", None)])
                m, cm = ops.silu_mul(g, u, name=p + "silu_mul")
                counts[ci] += [cnt, cg, cu, cm]
                parts.append((ci, m, ch.get(p + "down_proj", 1, a0, a1)))
            f = self._row_parallel(p + "down_proj", parts, transfers, counts)
            x = x + f
        cache.length = past + s
        if plan.final_stage != stage:
            dst = plan.stage_chips[plan.final_stage]
            transfers.append(Transfer("head.input", "pipeline", plan.stage_chips[stage] + dst, len(dst) * x.nbytes))

        # head: vocabulary rows split over the head's stage, logits gathered on its first chip
        logits = np.empty((b, c.vocab), dtype=np.float32)
        for ci, v0, v1 in self._head_work:
            ch = chips[ci]
            xn, cnt = ops.rmsnorm(x, ch.get("final_norm"), c.norm_eps, name="final_norm")
            last = np.ascontiguousarray(xn.reshape(b, s, h)[:, -1])
            lg, ch_cnt = ops.lm_head(last, ch.get(c.head_weight_name, 0, v0, v1), name="lm_head")
            logits[:, v0:v1] = lg
            counts[ci] += [cnt, ch_cnt]
        if len(self._head_work) > 1:
            head = tuple(w[0] for w in self._head_work)
            transfers.append(Transfer("lm_head", "gather", head, sum(b * (v1 - v0) * 4 for _, v0, v1 in self._head_work[1:])))
        chip_counts = {chips[ci].chip.name: ops.total(cs, chips[ci].chip.name) for ci, cs in counts.items()}
        return ShardedStep(logits, tuple(transfers), n, self.exactness, self.tolerance, chip_counts)

    def prefill(self, prompt, cache: ShardedKVCache | None = None, capacity: int | None = None):
        t = _check_tokens(prompt, self.config.vocab, "ShardedDecoder.prefill")
        if cache is None:
            cache = self.new_cache(t.shape[0], capacity or max(2 * t.shape[1], 16))
        if cache.length:
            raise ValueError(f"ShardedDecoder.prefill: the cache already holds {cache.length} positions")
        return self.forward(t, cache), cache

    def decode(self, tokens, cache: ShardedKVCache) -> ShardedStep:
        return self.forward(np.asarray(tokens).reshape(-1, 1), cache)

    def generate(self, prompt, n_new: int, capacity: int | None = None) -> Generation:
        t = _check_tokens(prompt, self.config.vocab, "ShardedDecoder.generate")
        cache = self.new_cache(t.shape[0], capacity or (t.shape[1] + n_new))
        return greedy_generate(self.forward, t, n_new, cache)
