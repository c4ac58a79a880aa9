"""Where every byte of a model lives: tensors into chips' memory tiers, and how many chips.

The deployment model
--------------------
A deployment is ``pp`` pipeline stages of ``tp`` chips each (``chips = pp * tp``). The
model is a sequence of items: the embedding, the ``L`` transformer layers, the head (final
norm and LM head). Each stage holds a contiguous run of whole items (a layer is never split
between stages), and every tensor of a stage is split along one axis into ``tp`` slices,
one per chip of the stage (``numpy.array_split`` sizes: the first chips get the larger
slices). A layer's KV cache lives with the layer's weights, split the same way; each stage
also holds one activation working set (:func:`lpulab.workload.activation_bytes`), split
over its chips; each chip keeps ``reserve`` of every tier it uses free. On an SRAM-only
device (the LPU) everything is in its one tier; on a GPU, weights and KV cache are in HBM,
and activations too unless ``tiers`` says otherwise.

Tensor names are the ones the numpy kernels and a sharding plan use (``embed_tokens``,
``layers.3.q_proj``, ..., ``final_norm``, ``lm_head``; weights stored (out, in)); the
KV cache of layer i is ``layers.{i}.kv_cache`` with shape ``(2, batch, context,
kv_heads*head_dim)``; a stage's activations are ``stages.{s}.activations``. MoE experts
are ``layers.{i}.experts.{e}.gate_proj`` etc., with the router ``layers.{i}.router``; all
experts are resident. Tied embeddings are stored once, with the head (the LM head reads
the whole table every step; the embedding gathers a few rows).

What is computed
----------------
- :func:`need` / :func:`chips_needed`: the fewest chips, vectorised over batch and context
  arrays (the step function), from a closed form of the greedy packing below;
  :func:`fluid_chips` is the lower bound with no granularity at all (bytes / capacity).
- :func:`place`: one placement, as a :class:`Placement` with the per-tensor shards, the
  per-chip residency map (chip, tier, kind, bytes, capacity, headroom), the stage split,
  and :meth:`Placement.plan` for :mod:`lpulab.kernels` sharded execution.
- :func:`capacity_chain`: from "70 GB / 230 MB = 305 chips" to a deployed rack count, one
  modelled step at a time.

The fewest stages for a given ``tp`` come from greedy next-fit over the ordered items,
which is optimal for a contiguous split of a fixed order; the fewest chips is the minimum
of ``tp * stages`` over the allowed ``tp``. :func:`place` then re-balances the same number
of stages so that the fullest chip is as empty as it can be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from . import workload
from .catalog import Device, Model
from .workload import Precision

KINDS = ("weight", "kv", "activation", "reserve")
ITEM_GROUPS = ("embedding", "layer", "head")


class PlacementError(ValueError):
    """Something cannot fit. Attributes say what, how many bytes, on which chip, against
    which capacity, and what would make it fit."""

    def __init__(self, message: str, *, what: str = "", nbytes: float = float("nan"), chip: int | None = None,
                 capacity: float = float("nan"), fixes: Sequence[str] = ()):
        super().__init__(message)
        self.what, self.nbytes, self.chip, self.capacity, self.fixes = what, nbytes, chip, capacity, list(fixes)


def _b(x: float) -> str:
    """Bytes for people (decimal units, as vendors use; lpulab.report.fmt's rules)."""
    from .report.fmt import si

    return si(float(x), "B")


# --------------------------------------------------------------------------- tensors


@dataclass(frozen=True)
class Tensor:
    """One tensor to place. ``axis`` is the axis it is split along over a stage's chips."""

    name: str
    kind: str                 # weight | kv | activation
    group: str                # embedding | layer | head | stage
    layer: int | None
    shape: tuple[int, ...]
    axis: int
    width: float              # bytes per element

    @property
    def nbytes(self) -> float:
        return float(math.prod(self.shape)) * self.width

    def bounds(self, tp: int) -> np.ndarray:
        """Slice boundaries along ``axis`` for ``tp`` chips (array_split sizes)."""
        n = self.shape[self.axis]
        q, r = divmod(n, tp)
        sizes = np.full(tp, q, dtype=np.int64)
        sizes[:r] += 1
        return np.concatenate([[0], np.cumsum(sizes)])

    def max_slice_bytes(self, tp: int) -> float:
        other = math.prod(self.shape) // self.shape[self.axis] if self.shape[self.axis] else 0
        return float(-(-self.shape[self.axis] // tp) * other) * self.width


def layer_weight_tensors(model: Model, i: int, precision=None) -> list[Tensor]:
    """The weight tensors of layer ``i``, stored (out, in) as in :mod:`lpulab.kernels`:
    column-parallel matrices (q, k, v, gate, up, router) split along their output axis 0,
    row-parallel ones (o, down) along their input axis 1, norm gains along axis 0."""
    p = Precision.of(precision)
    h, H, G, dh, F = model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim, model.ffn_size
    pre = f"layers.{i}."

    def T(name, shape, axis, width=p.w):
        return Tensor(pre + name, "weight", "layer", i, shape, axis, width)

    out = [
        T("attn_norm", (h,), 0, p.a),
        T("q_proj", (H * dh, h), 0), T("k_proj", (G * dh, h), 0), T("v_proj", (G * dh, h), 0),
        T("o_proj", (h, H * dh), 1),
        T("ffn_norm", (h,), 0, p.a),
    ]
    ffn = ["gate_proj", "up_proj", "down_proj"] if model.ffn_gated else ["up_proj", "down_proj"]
    experts = [f"experts.{e}." for e in range(model.experts)] if model.is_moe else [""]
    if model.is_moe:
        out.append(T("router", (model.experts, h), 0))
    for ex in experts:
        for name in ffn:
            out.append(T(ex + name, (h, F), 1) if name == "down_proj" else T(ex + name, (F, h), 0))
    return out


def kv_tensor(model: Model, i: int, batch: int, context: int, precision=None) -> Tensor:
    """Layer ``i``'s KV cache: keys and values of ``batch`` sequences of ``context`` tokens,
    split over the stage's chips along the kv-heads x head-dim axis."""
    p = Precision.of(precision)
    return Tensor(f"layers.{i}.kv_cache", "kv", "layer", i,
                  (2, int(batch), int(context), model.kv_heads * model.head_dim), 3, p.c)


def _activation_elems(model: Model, batch, context, tokens, precision: Precision):
    tokens_arr = np.asarray(tokens, float)
    phase = "decode" if np.all(tokens_arr == 1) else "prefill"
    past = np.maximum(np.asarray(context, float) - tokens_arr, 0)
    act = workload.activation_bytes(model, phase, batch, past, tokens, precision)
    return np.round(np.asarray(act, float) / precision.a)


# --------------------------------------------------------------------------- per-chip sizes


@dataclass(frozen=True)
class ChipSizes:
    """Bytes on the fullest chip (rank 0) of a stage at tensor-parallel width ``tp``, per
    item; ``layer_kv`` and ``act`` are arrays over batch and context."""

    tp: int
    embedding: float
    layer_weight: float
    layer_kv: object
    head: float
    act: object

    @property
    def layer(self):
        return self.layer_weight + self.layer_kv


def chip_sizes(model: Model, tp: int, batch=1, context=None, tokens=1, precision=None,
               _act_elems=None) -> ChipSizes:
    """Bytes on the fullest chip of a stage at tensor-parallel width ``tp``, per item."""
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    if int(tp) != tp or tp < 1:
        raise PlacementError(f"tensor-parallel width must be a whole number >= 1, got {tp!r}")
    tp = int(tp)
    ws = weight_tensors_template(model, p)
    emb = sum(t.max_slice_bytes(tp) for t in ws["embedding"])
    lay = sum(t.max_slice_bytes(tp) for t in ws["layer"])
    head = sum(t.max_slice_bytes(tp) for t in ws["head"])
    B, T = np.asarray(batch, float), np.asarray(context, float)
    kvd = model.kv_heads * model.head_dim
    kv = 2.0 * B * T * float(-(-kvd // tp)) * p.c
    n = _activation_elems(model, batch, context, tokens, p) if _act_elems is None else _act_elems
    act = np.ceil(n / tp) * p.a
    return ChipSizes(tp, emb, lay, kv, head, act)


def weight_tensors_template(model: Model, precision: Precision) -> dict[str, list[Tensor]]:
    """Weight tensors of the embedding, of layer 0 (all layers alike) and of the head."""
    p = Precision.of(precision)
    h, V = model.hidden_size, model.vocab_size
    emb = [] if model.tied_embeddings else [Tensor("embed_tokens", "weight", "embedding", None, (V, h), 0, p.w)]
    head = [Tensor("final_norm", "weight", "head", None, (h,), 0, p.a),
            Tensor("embed_tokens" if model.tied_embeddings else "lm_head", "weight", "head", None, (V, h), 0, p.w)]
    return {"embedding": emb, "layer": layer_weight_tensors(model, 0, p), "head": head}


def weight_tensors(model: Model, precision=None) -> list[Tensor]:
    """Every weight tensor of the model, in pipeline order (embedding, layers, head)."""
    t = weight_tensors_template(model, Precision.of(precision))
    out = list(t["embedding"])
    for i in range(model.layers):
        out += layer_weight_tensors(model, i, precision)
    return out + t["head"]


# --------------------------------------------------------------------------- stage counts


def _greedy_stages(room, e, x, hd, L: int):
    """Fewest contiguous stages for [e, x * L, hd] with ``room`` bytes per chip per stage
    (greedy next-fit, optimal for a fixed order); inf where an item alone does not fit."""
    room, e, x, hd = np.broadcast_arrays(*(np.asarray(v, float) for v in (room, e, x, hd)))
    ok = (e <= room) & (x <= room) & (hd <= room) & (x > 0)
    xs = np.where(x > 0, x, 1.0)
    m = np.floor(np.where(ok, room / xs, 1.0))
    m = np.where(m * xs > room, m - 1, m)
    m = np.maximum(m, 1.0)
    k0 = np.floor(np.where(ok, (room - e) / xs, 0.0))
    k0 = np.where(k0 * xs > room - e, k0 - 1, k0)
    k0 = np.clip(k0, 0, L)
    r = L - k0
    s = np.where(r > 0, np.ceil(r / m), 0.0)
    last = np.where(r > 0, (r - (s - 1) * m) * xs, e + k0 * xs)
    extra = (last + hd > room).astype(float)
    return np.where(ok, 1.0 + s + extra, np.inf)


def default_tp_choices(model: Model, device: Device) -> tuple[int, ...]:
    """Tensor-parallel widths tried by default. An LPU splits matrices over any number of
    chips (its compiler schedules each slice), so 1..72, a stage within one 72-chip rack;
    a GPU splits by key/value heads within one 8-GPU NVLink server: the widths up to 8
    that divide the kv heads."""
    if device.category == "lpu":
        return tuple(range(1, 73))
    return tuple(t for t in (1, 2, 4, 8) if model.kv_heads % t == 0)


TP_RULES = ("any", "power-of-two", "kv-heads")


def tp_widths(model: Model, rule: str = "any", max_tp: int = 72) -> tuple[int, ...]:
    """Allowed tensor-parallel widths up to ``max_tp``: ``any`` whole number, powers of
    two, or (``kv-heads``) powers of two that divide the model's key/value heads."""
    if rule not in TP_RULES:
        raise PlacementError(f"tp rule {rule!r} is not one of {', '.join(TP_RULES)}")
    if int(max_tp) != max_tp or max_tp < 1:
        raise PlacementError(f"max_tp must be a whole number >= 1, got {max_tp!r}")
    ts = range(1, int(max_tp) + 1)
    if rule == "any":
        return tuple(ts)
    pow2 = [t for t in ts if t & (t - 1) == 0]
    if rule == "power-of-two":
        return tuple(pow2)
    return tuple(t for t in pow2 if model.kv_heads % t == 0)


def rules(model: Model, devices: Sequence[Device], *, lpu_rule: str = "any", lpu_max_tp: int = 72,
          gpu_max_tp: int = 8, lpu_unit: int = 72, gpu_unit: int = 8) -> tuple[dict, dict]:
    """Per device: the tensor-parallel widths it may use and the unit its chip count is
    rounded to. SRAM-only devices (category ``lpu``) follow ``lpu_rule`` up to
    ``lpu_max_tp`` and round to ``lpu_unit`` (a rack); the others split by key/value heads
    up to ``gpu_max_tp`` and round to ``gpu_unit`` (a server)."""
    tp, unit = {}, {}
    for d in devices:
        lpu = d.category == "lpu"
        tp[d.id] = tp_widths(model, lpu_rule if lpu else "kv-heads", lpu_max_tp if lpu else gpu_max_tp)
        unit[d.id] = int(lpu_unit if lpu else gpu_unit)
    return tp, unit


def _usable(device: Device, tier: str, reserve: float) -> tuple[float, float, float]:
    if not 0.0 <= reserve < 1.0:
        raise PlacementError(f"reserve must be a fraction in [0, 1), got {reserve!r}")
    cap = device.capacity(tier)
    res = float(math.ceil(cap * reserve))
    return cap, res, cap - res


def _tiers(device: Device, tiers: Mapping[str, str] | None) -> dict[str, str]:
    main = device.main_tier
    out = {"weight": main, "kv": main, "activation": main}
    for k, v in (tiers or {}).items():
        if k not in out:
            raise PlacementError(f"tiers: unknown kind {k!r} (kinds: weight, kv, activation)")
        if v not in device.memory or device.memory[v].capacity is None:
            have = [t for t, m in device.memory.items() if m.capacity]
            raise PlacementError(f"tiers: {device.id} has no tier {v!r} with a capacity (tiers: {', '.join(have)})")
        out[k] = v
    if out["kv"] != out["weight"]:
        raise PlacementError(f"tiers: the KV cache ({out['kv']}) must share the weights' tier ({out['weight']}); "
                             "a layer's cache lives with its weights")
    return out


@dataclass(frozen=True)
class Need:
    """The fewest chips (arrays over the broadcast batch x context). ``chips`` is
    ``tp * pp`` of the best layout (inf where nothing fits), ``deployed`` rounds it up to
    whole ``unit``s, ``fluid`` is the bytes / usable-capacity lower bound."""

    chips: np.ndarray
    tp: np.ndarray
    pp: np.ndarray
    deployed: np.ndarray
    fluid: np.ndarray
    unit: int


def need(model: Model, device: Device, batch=1, context=None, *, tokens=1, precision=None, reserve: float = 0.0,
         tp_choices: Sequence[int] | None = None, unit: int = 1, tiers: Mapping[str, str] | None = None,
         pp: int | None = None) -> Need:
    """The fewest chips that hold the model at each (batch, context), vectorised.

    Minimises ``tp * stages(tp)`` over ``tp_choices`` (ties: the wider tp, fewer stages).
    ``pp`` fixes the number of stages (then the narrowest tp that fits is taken).
    """
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    tr = _tiers(device, tiers)
    cap, res, U = _usable(device, tr["weight"], reserve)
    choices = tuple(tp_choices) if tp_choices is not None else default_tp_choices(model, device)
    if not choices or any(int(t) != t or t < 1 for t in choices):
        raise PlacementError(f"tp_choices must be whole numbers >= 1, got {choices!r}")
    if int(unit) != unit or unit < 1:
        raise PlacementError(f"unit must be a whole number >= 1, got {unit!r}")
    act_sep = tr["activation"] != tr["weight"]
    if act_sep:
        acap, ares, aU = _usable(device, tr["activation"], reserve)
    shape = np.broadcast_shapes(np.shape(batch), np.shape(context), np.shape(tokens))
    best = np.full(shape, np.inf)
    best_tp = np.zeros(shape)
    best_pp = np.zeros(shape)
    elems = _activation_elems(model, batch, context, tokens, p)
    for tp in sorted(set(int(t) for t in choices), reverse=True):
        s = chip_sizes(model, tp, batch, context, tokens, p, _act_elems=elems)
        act = 0.0 if act_sep else s.act
        stages = _greedy_stages(U - act, s.embedding, s.layer, s.head, model.layers)
        if act_sep:
            stages = np.where(s.act <= aU, stages, np.inf)
        if pp is not None:
            stages = np.where(stages <= pp, float(pp), np.inf)
        chips = np.broadcast_to(stages * tp, shape)
        better = chips < best
        best = np.where(better, chips, best)
        best_tp = np.where(better, tp, best_tp)
        best_pp = np.where(better, np.broadcast_to(stages, shape), best_pp)
    total = workload.weight_bytes(model, p) + workload.kv_bytes(model, batch, context, p.kv)
    fluid = np.broadcast_to(np.ceil(np.asarray(total, float) / U), shape)
    deployed = np.where(np.isfinite(best), np.ceil(best / unit) * unit, np.inf)
    return Need(best, best_tp.astype(int), best_pp.astype(int), deployed, fluid, int(unit))


def chips_needed(model: Model, device: Device, batch=1, context=None, **kw) -> np.ndarray:
    """The step function: deployed chips (rounded to ``unit``) for arrays of batch and
    context (inf where no allowed layout fits). Keywords as :func:`need`."""
    out = need(model, device, batch, context, **kw).deployed
    return float(out) if np.ndim(out) == 0 else out


def fluid_chips(model: Model, device: Device, batch=1, context=None, *, precision=None, reserve: float = 0.0,
                weights_only: bool = False):
    """Lower bound: resident bytes (weights, plus the KV cache unless ``weights_only``)
    over one chip's usable capacity, rounded up; no layer or tensor granularity."""
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    _, _, U = _usable(device, device.main_tier, reserve)
    total = workload.weight_bytes(model, p) + (0.0 if weights_only else workload.kv_bytes(model, batch, context, p.kv))
    out = np.ceil(np.asarray(total, float) / U)
    return float(out) if out.ndim == 0 else out


def _largest(ok, limit: int) -> int:
    """The largest whole number n in [1, limit] with ok(n), for a monotone ok with ok(1) true:
    double until it fails, then bisect."""
    lo, hi = 1, 2
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    if hi > limit:
        return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo


def max_batch(model: Model, device: Device, context=None, *, tp: int, pp: int, limit: int = 1 << 22, **kw) -> int:
    """The largest batch that a (tp, pp) deployment holds at ``context`` (0 if none)."""
    def fits(b):
        return bool(np.isfinite(need(model, device, b, context, tp_choices=(tp,), pp=pp, **kw).chips))
    if not fits(1):
        return 0
    return _largest(fits, limit)


# --------------------------------------------------------------------------- placing


@dataclass(frozen=True)
class Deployment:
    """How the chips are used: ``tp`` chips per stage, ``pp`` stages. ``None`` for either
    means "the fewest that fit"; ``Deployment()`` is the smallest deployment that fits."""

    tp: int | None = None
    pp: int | None = None

    @classmethod
    def of_chips(cls, chips: int, tp: int) -> "Deployment":
        if chips % tp:
            raise PlacementError(f"{chips} chips do not split into stages of tp={tp} chips")
        return cls(tp=tp, pp=chips // tp)

    @property
    def chips(self) -> int | None:
        return None if self.tp is None or self.pp is None else self.tp * self.pp


@dataclass(frozen=True)
class Stage:
    index: int
    embedding: bool
    layers: tuple[int, ...]
    head: bool

    @property
    def items(self) -> list[str]:
        return (["embedding"] if self.embedding else []) + [f"layers.{i}" for i in self.layers] + (
            ["head"] if self.head else [])


@dataclass(frozen=True)
class Placement:
    """A model placed on ``chips = tp * pp`` chips of one device.

    ``shards``: one row per (tensor, chip) slice: tensor, kind, group, layer, stage, chip,
    rank, tier, axis, start, stop, bytes. ``residency``: one row per (chip, tier, kind):
    chip, stage, rank, tier, kind, bytes, capacity, headroom (capacity less everything on
    that chip's tier, reserve included).
    """

    model: Model
    device: Device
    precision: Precision
    batch: int
    context: int
    tokens: int
    reserve: float
    tp: int
    pp: int
    unit: int
    tiers: Mapping[str, str]
    stages: tuple[Stage, ...]
    tensors: tuple[Tensor, ...]
    shards: pd.DataFrame = field(repr=False)
    residency: pd.DataFrame = field(repr=False)

    @property
    def chips(self) -> int:
        return self.tp * self.pp

    @property
    def chips_deployed(self) -> int:
        """Chips rounded up to whole ``unit``s (nodes or racks); the extra chips hold nothing."""
        return -(-self.chips // self.unit) * self.unit

    def layer_stage(self) -> dict[int, int]:
        """Layer index -> pipeline stage."""
        return {i: s.index for s in self.stages for i in s.layers}

    def stage_chips(self, stage: int) -> list[int]:
        return list(range(stage * self.tp, (stage + 1) * self.tp))

    def chip_bytes(self, tier: str | None = None) -> pd.DataFrame:
        """Bytes per chip by kind on ``tier`` (default: the weights' tier): one row per chip,
        columns weight, kv, activation, reserve, used, capacity, headroom, stage, rank."""
        tier = tier or self.tiers["weight"]
        r = self.residency[self.residency.tier == tier]
        wide = r.pivot_table(index="chip", columns="kind", values="bytes", aggfunc="sum").reindex(columns=list(KINDS))
        wide = wide.fillna(0.0)
        wide["used"] = wide[list(KINDS)].sum(axis=1)
        first = r.groupby("chip").first()
        wide["capacity"] = first["capacity"]
        wide["headroom"] = first["headroom"]
        wide["stage"] = first["stage"]
        wide["rank"] = first["rank"]
        wide.columns.name = None
        return wide.reset_index()

    def stage_table(self) -> pd.DataFrame:
        """One row per pipeline stage: its chips, what it holds, and its fullest chip's bytes."""
        cb = self.chip_bytes()
        rows = []
        for st in self.stages:
            c = cb[cb.stage == st.index]
            rows.append({
                "stage": st.index, "first_chip": st.index * self.tp, "last_chip": (st.index + 1) * self.tp - 1,
                "embedding": st.embedding, "layers": len(st.layers),
                "first_layer": st.layers[0] if st.layers else None, "last_layer": st.layers[-1] if st.layers else None,
                "head": st.head, "weight": float(c.weight.max()), "kv": float(c.kv.max()),
                "activation": float(c.activation.max()), "used": float(c.used.max()),
                "capacity": float(c.capacity.max()),
            })
        return pd.DataFrame(rows)

    def totals(self) -> dict[str, float]:
        """Bytes placed, by kind (reserve excluded), over all chips."""
        return self.shards.groupby("kind")["bytes"].sum().reindex(["weight", "kv", "activation"], fill_value=0.0).to_dict()

    def plan(self, kinds: Sequence[str] = ("weight",)) -> dict[str, list[tuple[int, int, int, int]]]:
        """The sharding plan for :mod:`lpulab.kernels`: tensor name -> [(chip, axis, start,
        stop), ...] for tensors of ``kinds`` (weights by default); empty slices are left out."""
        return export_plan(self, kinds)[0]

    def summary(self) -> dict:
        cb = self.chip_bytes()
        t = self.totals()
        return {
            "device": self.device.id, "model": self.model.id, "precision": self.precision.label(),
            "batch": self.batch, "context": self.context, "tokens": self.tokens, "reserve": self.reserve,
            "tp": self.tp, "pp": self.pp, "chips": self.chips, "unit": self.unit, "chips_deployed": self.chips_deployed,
            "weight_bytes": t["weight"], "kv_bytes": t["kv"], "activation_bytes": t["activation"],
            "max_chip_fill": float((cb.used / cb.capacity).max()),
            "min_headroom_bytes": float(cb.headroom.min()),
        }


def export_plan(placement: Placement, kinds: Sequence[str] = ("weight",)):
    """``(plan, layer_stage)``: plan maps each tensor name of ``kinds`` to its slices
    ``[(chip, axis, start, stop), ...]``; layer_stage maps layer index -> stage."""
    sh = placement.shards[placement.shards.kind.isin(list(kinds)) & (placement.shards.stop > placement.shards.start)]
    plan: dict[str, list[tuple[int, int, int, int]]] = {}
    for name, chip, axis, start, stop in zip(sh.tensor, sh.chip, sh.axis, sh.start, sh.stop):
        plan.setdefault(name, []).append((int(chip), int(axis), int(start), int(stop)))
    return plan, placement.layer_stage()


def _stage_items(model: Model, sizes: ChipSizes, act: float) -> tuple[list[str], list[float]]:
    names = (["embedding"] if model.tied_embeddings is False else []) + [f"layers.{i}" for i in range(model.layers)] + ["head"]
    vals = []
    for n in names:
        vals.append(sizes.embedding if n == "embedding" else sizes.head if n == "head" else float(sizes.layer))
    return names, vals


def _greedy_bins(items: Sequence[float], room: float) -> list[list[int]]:
    bins, cur, load = [], [], 0.0
    for i, v in enumerate(items):
        if cur and load + v > room:
            bins.append(cur)
            cur, load = [], 0.0
        cur.append(i)
        load += v
    if cur:
        bins.append(cur)
    return bins


def _balanced(items: Sequence[float], pp: int) -> list[list[int]]:
    """Contiguous split of ``items`` into exactly ``pp`` non-empty stages whose largest
    load is as small as possible (bisection on the bottleneck, then splitting the stages
    with most items until there are ``pp``)."""
    if pp > len(items):
        raise PlacementError(f"{pp} pipeline stages but only {len(items)} items (embedding, layers, head) to place")
    lo, hi = max(items) - 0.5, float(sum(items))
    while hi - lo > 0.25:
        mid = (lo + hi) / 2
        if len(_greedy_bins(items, mid)) <= pp and max(items) <= mid:
            hi = mid
        else:
            lo = mid
    bins = _greedy_bins(items, hi)
    while len(bins) < pp:
        j = max(range(len(bins)), key=lambda k: (len(bins[k]), -k))
        b = bins[j]
        half = len(b) // 2
        bins[j:j + 1] = [b[:half], b[half:]]
    return bins


def _chips(n) -> str:
    n = int(n)
    return f"{n} chip" + ("" if n == 1 else "s")


def _fixes(model, device, batch, context, tokens, p, reserve, tp_choices, unit, tiers, tp=None, pp=None) -> list[str]:
    """What would make it fit: other deployments, precisions, batch, context, devices."""
    out = []
    kw = dict(tokens=tokens, reserve=reserve, unit=unit, tiers=tiers)
    if tp is not None:
        n = need(model, device, batch, context, precision=p, tp_choices=(tp,), **kw)
        if np.isfinite(n.chips):
            out.append(f"pp >= {int(n.pp)} stages at tp={tp} ({_chips(n.chips)})")
    n = need(model, device, batch, context, precision=p, tp_choices=tp_choices, **kw)
    if np.isfinite(n.chips):
        out.append(f"the smallest deployment that fits: tp={int(n.tp)} x pp={int(n.pp)} = {_chips(n.chips)}")
    else:
        def fits(t):
            return bool(np.isfinite(need(model, device, batch, context, precision=p, tp_choices=(t,), **kw).chips))
        if fits(1024):  # per-chip slices shrink as tp grows, so the widths that fit form a ray
            lo, hi = 0, 1024
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if fits(mid) else (mid, hi)
            wider = need(model, device, batch, context, precision=p, tp_choices=range(hi, 1025), **kw)
            out.append(f"allow tensor-parallel widths of {hi} or more (tp_choices; the fewest chips would be "
                       f"tp={int(wider.tp)} x pp={int(wider.pp)} = {_chips(wider.chips)})")
    if tp is not None and pp is not None:
        mb = max_batch(model, device, context, tp=tp, pp=pp, precision=p, tokens=tokens, reserve=reserve, tiers=tiers)
        if mb >= 1 and mb < batch:
            out.append(f"batch <= {mb} at context {context} on this tp={tp} x pp={pp} deployment")
    order = list(workload.PRECISIONS)
    for what in ("kv", "weights"):
        cur = getattr(p, what)
        for lower in ("int8", "int4"):
            if order.index(lower) > order.index(cur):
                q = Precision(**{**p.__dict__, what: lower})
                m = need(model, device, batch, context, precision=q, tp_choices=tp_choices if tp is None else (tp,),
                         pp=pp, **kw)
                if np.isfinite(m.chips):
                    out.append(f"{'KV cache' if what == 'kv' else 'weights'} at {lower} "
                               f"(tp={int(m.tp)} x pp={int(m.pp)} = {_chips(m.chips)})")
                    break
    return out


def place(model: Model, device: Device, *, batch: int = 1, context: int | None = None, tokens: int = 1,
          precision=None, deployment: Deployment | None = None, reserve: float = 0.0,
          tp_choices: Sequence[int] | None = None, unit: int = 1, tiers: Mapping[str, str] | None = None) -> Placement:
    """Place every tensor of ``model`` (weights, the KV cache of ``batch`` sequences of
    ``context`` tokens, one activation working set per stage) on ``device`` chips.

    ``deployment``: ``None`` or ``Deployment()`` for the smallest that fits,
    ``Deployment(tp=4)`` for the fewest stages at tp=4, ``Deployment(pp=2)`` for the
    narrowest tp at 2 stages, ``Deployment(tp=4, pp=90)`` for exactly that. Raises
    :class:`PlacementError` saying what does not fit, by how much, where, and what would.
    """
    p = Precision.of(precision)
    context = model.max_context if context is None else int(context)
    for name, v, lo in (("batch", batch, 1), ("context", context, 0), ("tokens", tokens, 1)):
        if np.ndim(v) != 0 or int(v) != v or v < lo:
            raise PlacementError(f"place() takes one shape: {name} must be a whole number >= {lo}, got {v!r} "
                                 "(use need() or chips_needed() for arrays)")
    batch, tokens = int(batch), int(tokens)
    if tokens > max(context, 1):
        raise PlacementError(f"tokens ({tokens}) cannot exceed the context held in the KV cache ({context})")
    dep = deployment or Deployment()
    tr = _tiers(device, tiers)
    cap, res, U = _usable(device, tr["weight"], reserve)
    choices = tuple(tp_choices) if tp_choices is not None else default_tp_choices(model, device)
    args = (model, device, batch, context, tokens, p, reserve, choices, unit, tr)

    if dep.tp is None or dep.pp is None:
        n = need(model, device, batch, context, tokens=tokens, precision=p, reserve=reserve,
                 tp_choices=choices if dep.tp is None else (dep.tp,), unit=unit, tiers=tr, pp=dep.pp)
        if not np.isfinite(n.chips):
            _raise_unfit(*args, tp=dep.tp, pp=dep.pp)
        tp, pp = int(n.tp), int(n.pp)
    else:
        tp, pp = int(dep.tp), int(dep.pp)
        if tp < 1 or pp < 1:
            raise PlacementError(f"deployment needs tp >= 1 and pp >= 1, got tp={tp}, pp={pp}")

    sizes = chip_sizes(model, tp, batch, context, tokens, p)
    act_sep = tr["activation"] != tr["weight"]
    act = 0.0 if act_sep else float(sizes.act)
    names, vals = _stage_items(model, sizes, act)
    if pp > len(vals):
        raise PlacementError(f"{pp} pipeline stages but the model has only {len(vals)} items to place "
                             f"(embedding, {model.layers} layers, head); use pp <= {len(vals)}",
                             what="deployment", fixes=[f"pp <= {len(vals)}"])
    bins = _balanced(vals, pp)
    loads = [act + sum(vals[i] for i in b) for b in bins]
    worst = int(np.argmax(loads))
    if loads[worst] > U:
        b = bins[worst]
        items = [names[i] for i in b]
        what = f"stage {worst} ({items[0]}" + (f" .. {items[-1]}" if len(items) > 1 else "") + ")"
        fixes = _fixes(*args, tp=tp, pp=pp)
        chip = worst * tp
        parts = _load_parts(model, sizes, items, act)
        raise PlacementError(
            f"{model.id} on {device.id} ({p.label()}, batch {batch}, context {context}): {what} needs "
            f"{_b(loads[worst])} on chip {chip} (rank 0 of tp={tp}; {parts}) but a chip's {tr['weight']} holds "
            f"{_b(U)} after a {reserve:.0%} reserve of {_b(cap)}: {_b(loads[worst] - U)} too much. "
            f"It would fit with: " + ("; ".join(fixes) if fixes else "no change found: use a device with more memory"),
            what=what, nbytes=loads[worst], chip=chip, capacity=U, fixes=fixes)
    if act_sep:
        _, _, aU = _usable(device, tr["activation"], reserve)
        if float(sizes.act) > aU:
            raise PlacementError(
                f"activations need {_b(float(sizes.act))} per chip at tp={tp} but {device.id}'s {tr['activation']} "
                f"holds {_b(aU)}; place activations in {tr['weight']} (tiers) or use a smaller batch/prompt",
                what="activations", nbytes=float(sizes.act), chip=0, capacity=aU,
                fixes=[f"tiers={{'activation': '{tr['weight']}'}}"])

    stages = []
    for s, b in enumerate(bins):
        items = [names[i] for i in b]
        stages.append(Stage(s, "embedding" in items, tuple(int(n.split(".")[1]) for n in items if n.startswith("layers.")),
                            "head" in items))
    return _build(model, device, p, batch, context, tokens, reserve, tp, pp, unit, tr, tuple(stages))


def _load_parts(model, sizes: ChipSizes, items, act) -> str:
    nl = sum(1 for i in items if i.startswith("layers."))
    w = nl * sizes.layer_weight + (sizes.embedding if "embedding" in items else 0) + (sizes.head if "head" in items else 0)
    kv = nl * float(sizes.layer_kv)
    return f"weights {_b(w)}, KV cache {_b(kv)}, activations {_b(act)}"


def _raise_unfit(model, device, batch, context, tokens, p, reserve, choices, unit, tr, tp=None, pp=None):
    cap, res, U = _usable(device, tr["weight"], reserve)
    widths = (tp,) if tp is not None else choices
    t = max(widths)
    s = chip_sizes(model, t, batch, context, tokens, p)
    act = 0.0 if tr["activation"] != tr["weight"] else float(s.act)
    items = {"the embedding": s.embedding, "one layer (weights + KV cache)": float(s.layer), "the head": s.head}
    what, nbytes = max(items.items(), key=lambda kv: kv[1])
    fixes = _fixes(model, device, batch, context, tokens, p, reserve, choices, unit, tr, tp=tp, pp=pp)
    where = f"at tp={t}" + (f" with pp={pp}" if pp is not None else "")
    raise PlacementError(
        f"{model.id} does not fit on {device.id} ({p.label()}, batch {batch}, context {context}) with tensor-parallel "
        f"widths {_widths(widths)}{'' if pp is None else f' and {pp} stages'}: {where}, {what} needs {_b(nbytes + act)} "
        f"on one chip (per chip: one layer's weights {_b(s.layer_weight)} + its KV cache {_b(float(s.layer_kv))}, "
        f"activations {_b(act)}) but a chip's {tr['weight']} holds {_b(U)} after a {reserve:.0%} reserve. It would fit with: "
        + ("; ".join(fixes) if fixes else "no change found: use a device with more memory"),
        what=what, nbytes=nbytes + act, chip=0, capacity=U, fixes=fixes)


def _widths(w) -> str:
    w = sorted(w)
    return f"{w[0]}..{w[-1]}" if len(w) > 4 and w == list(range(w[0], w[-1] + 1)) else ", ".join(map(str, w))


def _build(model, device, p, batch, context, tokens, reserve, tp, pp, unit, tr, stages) -> Placement:
    tensors: list[Tensor] = []
    cols = {k: [] for k in ("tensor", "kind", "group", "layer", "stage", "chip", "rank", "tier", "axis", "start",
                            "stop", "bytes")}
    acts = _activation_elems(model, batch, context, tokens, p)
    templ = weight_tensors(model, p)
    emb = [t for t in templ if t.group == "embedding"]
    head = [t for t in templ if t.group == "head"]
    for st in stages:
        ts = list(emb) if st.embedding else []
        for i in st.layers:
            ts += layer_weight_tensors(model, i, p)
            ts.append(kv_tensor(model, i, batch, context, p))
        if st.head:
            ts += head
        ts.append(Tensor(f"stages.{st.index}.activations", "activation", "stage", None, (int(acts),), 0, p.a))
        for t in ts:
            tensors.append(t)
            bnd = t.bounds(tp)
            other = float(math.prod(t.shape) // t.shape[t.axis]) * t.width if t.shape[t.axis] else 0.0
            for r in range(tp):
                cols["tensor"].append(t.name)
                cols["kind"].append(t.kind)
                cols["group"].append(t.group)
                cols["layer"].append(t.layer)
                cols["stage"].append(st.index)
                cols["chip"].append(st.index * tp + r)
                cols["rank"].append(r)
                cols["tier"].append(tr[t.kind])
                cols["axis"].append(t.axis)
                cols["start"].append(int(bnd[r]))
                cols["stop"].append(int(bnd[r + 1]))
                cols["bytes"].append(float(bnd[r + 1] - bnd[r]) * other)
    shards = pd.DataFrame(cols)
    shards["layer"] = shards["layer"].astype("Int64")
    chips = tp * pp
    used_tiers = sorted(set(tr.values()))
    rows = []
    by = shards.groupby(["chip", "tier", "kind"])["bytes"].sum()
    for tier in used_tiers:
        cap, res, _ = _usable(device, tier, reserve)
        for c in range(chips):
            kinds = {k: float(by.get((c, tier, k), 0.0)) for k in ("weight", "kv", "activation")}
            kinds["reserve"] = res
            head = cap - sum(kinds.values())
            for k in KINDS:
                rows.append((c, c // tp, c % tp, tier, k, kinds[k], cap, head))
    residency = pd.DataFrame(rows, columns=["chip", "stage", "rank", "tier", "kind", "bytes", "capacity", "headroom"])
    return Placement(model, device, p, batch, context, tokens, reserve, tp, pp, int(unit), dict(tr), tuple(stages),
                     tuple(tensors), shards, residency)


# --------------------------------------------------------------------------- the 305 -> N chain


def items_count(model: Model) -> int:
    """Pipeline items: the embedding (unless tied: then it lives with the head), the
    layers, the head. ``pp = items_count(model)`` is one item per stage."""
    return model.layers + (1 if model.tied_embeddings else 2)


LAYOUTS = ("best", "layer-per-stage")


def capacity_chain(model: Model, device: Device, *, batch: int = 1, context: int | None = None, precision=None,
                   reserve: float = 0.0, tp_choices: Sequence[int] | None = None, layout: str = "best",
                   node: int = 8, rack: int = 72, stated_weight_bytes: float | None = None,
                   stated_chip_bytes: float | None = None) -> pd.DataFrame:
    """From the back-of-envelope chip count to a deployable one, one modelled step at a time.

    Rows (each a chip count and what the step adds): ``as stated`` (stated model bytes /
    stated chip bytes, when given), ``weights`` (exact weight bytes / catalog capacity),
    ``+ KV cache`` (at ``batch`` x ``context``), ``+ reserve`` (usable capacity),
    ``+ layer granularity`` (whole layers per stage, one tp width per stage, activations;
    ``layout="best"`` is :func:`need`'s fewest chips, ``"layer-per-stage"`` gives every
    layer, the embedding and the head a stage of their own, so no chip holds parts of two
    layers), ``whole nodes`` (rounded up to ``node`` chips) and ``whole racks`` (``rack``).
    """
    if layout not in LAYOUTS:
        raise PlacementError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    cap = device.capacity(device.main_tier)
    W = workload.weight_bytes(model, p)
    KV = float(workload.kv_bytes(model, batch, context, p.kv))
    rows = []
    if stated_weight_bytes is not None and stated_chip_bytes is not None:
        rows.append(("as stated", math.ceil(stated_weight_bytes / stated_chip_bytes),
                     f"{_b(stated_weight_bytes)} of weights / {_b(stated_chip_bytes)} per chip"))
    rows.append(("weights", math.ceil(W / cap), f"{_b(W)} of {p.weights} weights / {_b(cap)} per chip"))
    rows.append(("+ KV cache", math.ceil((W + KV) / cap),
                 f"+ {_b(KV)} of {p.kv} KV cache ({batch} sequence{'' if batch == 1 else 's'} x {context} tokens)"))
    U = cap - math.ceil(cap * reserve)
    rows.append(("+ reserve", math.ceil((W + KV) / U), f"{reserve:.0%} of each chip kept free: {_b(U)} usable"))
    pp = items_count(model) if layout == "layer-per-stage" else None
    n = need(model, device, batch, context, precision=p, reserve=reserve, tp_choices=tp_choices, pp=pp)
    if not np.isfinite(n.chips):
        rows.append(("+ layer granularity", float("inf"), "no allowed layout fits"))
    else:
        chips = int(n.chips)
        s = chip_sizes(model, int(n.tp), batch, context, 1, p)
        per = "one item per stage" if layout == "layer-per-stage" else "whole layers per stage"
        rows.append(("+ layer granularity", chips,
                     f"{per}: tp={int(n.tp)} chips x pp={int(n.pp)} stages; per chip, one layer is "
                     f"{_b(s.layer_weight)} of weights + {_b(float(s.layer_kv))} of KV cache"))
        rows.append(("whole nodes", -(-chips // node) * node, f"rounded up to nodes of {node} chips"))
        rows.append(("whole racks", -(-chips // rack) * rack, f"rounded up to racks of {rack} chips"))
    df = pd.DataFrame(rows, columns=["step", "chips", "what"])
    df["added"] = df["chips"].diff().fillna(df["chips"])
    return df


# --------------------------------------------------------------------------- comparisons


@dataclass(frozen=True)
class Attempt:
    """The outcome of :func:`attempt`: a placement, or the error that says why not."""

    ok: bool
    placement: Placement | None
    error: str

    @property
    def chips(self) -> int | None:
        return self.placement.chips if self.placement else None


def attempt(model: Model, device: Device, **kw) -> Attempt:
    """:func:`place`, returning the PlacementError's message instead of raising it."""
    try:
        return Attempt(True, place(model, device, **kw), "")
    except PlacementError as exc:
        return Attempt(False, None, str(exc))


def compare_devices(model: Model, devices: Sequence[Device], *, batch=1, context=None, precision=None,
                    reserve: float = 0.0, tp_choices: Mapping[str, Sequence[int]] | None = None,
                    units: Mapping[str, int] | None = None) -> pd.DataFrame:
    """One row per device: its weight tier's capacity and bandwidth, the chips needed
    (weights only and weights + KV without granularity, the best layout, and deployed in
    whole ``units[device]``), the layout's tp and pp, and what those chips add up to."""
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    rows = []
    for d in devices:
        tier = d.main_tier
        n = need(model, d, batch, context, precision=p, reserve=reserve,
                 tp_choices=(tp_choices or {}).get(d.id), unit=(units or {}).get(d.id, 1))
        chips = float(n.chips)
        bw = d.memory[tier].bandwidth.si if d.memory[tier].bandwidth else float("nan")
        rows.append({
            "device": d.id, "category": d.category, "tier": tier, "capacity": d.capacity(tier), "bandwidth": bw,
            "weights_only": fluid_chips(model, d, batch, context, precision=p, reserve=reserve, weights_only=True),
            "fluid": float(n.fluid), "chips": chips, "tp": int(n.tp), "pp": int(n.pp), "unit": n.unit,
            "deployed": float(n.deployed),
            "deployment_capacity": chips * d.capacity(tier), "deployment_bandwidth": chips * bw,
        })
    return pd.DataFrame(rows)


def sweep(model: Model, devices: Sequence[Device], contexts, batches, *, precision=None, reserve: float = 0.0,
          tp_choices: Mapping[str, Sequence[int]] | None = None, units: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Chips needed over the grid contexts x batches for each device (one vectorised
    :func:`need` call per device); long form: device, context, batch, chips, deployed, tp, pp."""
    C, B = np.meshgrid(np.asarray(contexts), np.asarray(batches), indexing="ij")
    frames = []
    for d in devices:
        n = need(model, d, B, C, precision=precision, reserve=reserve,
                 tp_choices=(tp_choices or {}).get(d.id), unit=(units or {}).get(d.id, 1))
        frames.append(pd.DataFrame({"device": d.id, "context": C.ravel(), "batch": B.ravel(),
                                    "chips": n.chips.ravel(), "deployed": n.deployed.ravel(),
                                    "tp": n.tp.ravel(), "pp": n.pp.ravel()}))
    return pd.concat(frames, ignore_index=True)


def batch_for_chips(model: Model, device: Device, chips: int, context=None, *, limit: int = 1 << 16, **kw) -> int:
    """The largest batch whose deployed chip count (``need(...).deployed``) is at most
    ``chips`` at ``context`` (0 if even batch 1 needs more)."""
    def ok(b):
        return bool(need(model, device, b, context, **kw).deployed <= chips)
    if not ok(1):
        return 0
    return _largest(ok, limit)


def sweep_summary(sw: pd.DataFrame, value: str = "chips") -> pd.DataFrame:
    """Per device of a :func:`sweep`: the smallest and largest chip count over the grid
    points that fit, how many grid points fit nowhere (inf), and the growth largest/smallest."""
    rows = []
    for dev, g in sw.groupby("device", sort=False):
        ok = g[np.isfinite(g[value])]
        lo = float(ok[value].min()) if len(ok) else float("nan")
        hi = float(ok[value].max()) if len(ok) else float("nan")
        rows.append({"device": dev, "smallest": lo, "largest": hi, "growth": hi / lo if len(ok) else float("nan"),
                     "points": len(g), "unfit": int((~np.isfinite(g[value])).sum())})
    return pd.DataFrame(rows).set_index("device")
