"""Where every byte of a model lives: tensors into chips' memory tiers, and how many chips.

The deployment model
--------------------
A deployment is ``pipeline`` pipeline stages of ``tensor`` chips each (``chips = pipeline * tensor``). The
model is a sequence of items: the embedding, the ``L`` transformer layers, the head (final
norm and LM head). Each stage holds a contiguous run of whole items (a layer is never split
between stages), and every tensor of a stage is split along one axis into ``tensor`` slices,
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

The fewest stages for a given ``tensor`` come from greedy next-fit over the ordered items,
which is optimal for a contiguous split of a fixed order; the fewest chips is the minimum
of ``tensor * stages`` over the allowed ``tensor``. :func:`place` then re-balances the same number
of stages so that the fullest chip is as empty as it can be.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from . import workload
from .catalog import Device, Model
from .parallel import Layout
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
    """One tensor to place. ``axis`` is the axis it is split along over a stage's chips;
    ``expert`` the routed expert it belongs to (None: every expert group holds it)."""

    name: str
    kind: str                 # weight | kv | activation
    group: str                # embedding | layer | head | stage
    layer: int | None
    shape: tuple[int, ...]
    axis: int
    width: float              # bytes per element
    expert: int | None = None

    @property
    def nbytes(self) -> float:
        return float(math.prod(self.shape)) * self.width

    def bounds(self, tensor: int) -> np.ndarray:
        """Slice boundaries along ``axis`` for ``tensor`` chips (array_split sizes)."""
        return _bounds(self.shape[self.axis], tensor)

    def max_slice_bytes(self, tensor: int) -> float:
        other = math.prod(self.shape) // self.shape[self.axis] if self.shape[self.axis] else 0
        return float(-(-self.shape[self.axis] // tensor) * other) * self.width


def _bounds(n: int, tensor: int) -> np.ndarray:
    q, r = divmod(int(n), int(tensor))
    sizes = np.full(int(tensor), q, dtype=np.int64)
    sizes[:r] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def _tensor(spec, p: Precision, layer: int | None, name: str, expert: int | None = None) -> Tensor:
    width = p.w if spec.width == "weight" else p.a
    return Tensor(name, "weight", spec.group, layer, spec.shape, spec.split_axis, width, expert)


def layer_weight_tensors(model: Model, i: int, precision=None) -> list[Tensor]:
    """The weight tensors of layer ``i`` from :mod:`lpulab.architecture`'s table, stored
    (out, in) as in :mod:`lpulab.kernels`, each cut along the axis the table gives
    (column-parallel q, k, v, gate, up, router along axis 0; row-parallel o, down along
    axis 1; norm gains along axis 0); every routed expert is its own tensor."""
    from . import architecture

    p = Precision.of(precision)
    out = []
    for t in architecture.layer_tensors(model, i):
        for e, n in enumerate(t.names(i)):
            out.append(_tensor(t, p, i, n, e if t.is_expert else None))
    return out


def _kv_shape(model: Model, i: int, batch: int, context: int) -> tuple[int, ...]:
    """Layer ``i``'s cache: ``(2, batch, tokens, kv_heads*head_dim)`` (keys and values), or
    with MLA ``(1, batch, tokens, kv_lora_rank + qk_rope_head_dim)``; a windowed layer
    holds at most its window of tokens."""
    win = model.layer_window(i)
    tokens = min(int(context), win) if win else int(context)
    if model.is_mla:
        return (1, int(batch), tokens, model.kv_values_per_token)
    return (2, int(batch), tokens, model.kv_heads * model.head_dim)


def kv_tensor(model: Model, i: int, batch: int, context: int, precision=None, name: str | None = None) -> Tensor:
    """Layer ``i``'s KV cache of ``batch`` sequences of ``context`` tokens, split over the
    stage's chips along its last axis (kv-heads x head-dim, or MLA's latent)."""
    p = Precision.of(precision)
    return Tensor(name or f"layers.{i}.kv_cache", "kv", "layer", i, _kv_shape(model, i, batch, context), 3, p.c)


def _activation_elems(model: Model, batch, context, tokens, precision: Precision):
    tokens_arr = np.asarray(tokens, float)
    phase = "decode" if np.all(tokens_arr == 1) else "prefill"
    past = np.maximum(np.asarray(context, float) - tokens_arr, 0)
    act = workload.activation_bytes(model, phase, batch, past, tokens, precision)
    return np.round(np.asarray(act, float) / precision.a)


def _expert_groups(model: Model, expert: int) -> list[int]:
    try:
        return workload.expert_groups(model, expert)
    except workload.WorkloadError as exc:
        raise PlacementError(f"expert={expert}: {exc}") from None


def _group_batch(batch, expert: int):
    """Streams of the fullest expert group: the streams split over the groups' attention
    as evenly as whole streams allow (the first groups get one more)."""
    return np.ceil(np.asarray(batch, float) / expert) if expert > 1 else batch


def _check_precision(device: Device, p: Precision) -> str | None:
    """The device's compute format for ``p``, or a PlacementError when it lists peaks but
    none that runs ``p``. A device with no ``[compute]`` table at all (a simulated chip of
    the numpy kernels) says nothing about what it runs: it is placed by bytes alone."""
    if not device.compute:
        return None
    try:
        return workload.compute_format(device, p)
    except workload.WorkloadError as exc:
        raise PlacementError(str(exc), what="precision") from None


# --------------------------------------------------------------------------- per-chip sizes


@dataclass(frozen=True)
class ChipSizes:
    """Bytes on the fullest chip (rank 0 of expert group 0) of a stage at tensor-parallel
    width ``tensor``, per item: the embedding, one layer of each kind (``kind_weight``,
    ``kind_kv``; arrays over batch and context), the head and the activations.
    ``layer_weight`` and ``layer_kv`` are those of the largest kind (the only one when
    all layers are alike); ``kinds`` gives the kind of every layer, in order."""

    tensor: int
    embedding: float
    layer_weight: float
    layer_kv: workload.Num
    head: float
    act: workload.Num
    kind_weight: Mapping[str, float] = field(default_factory=dict)
    kind_kv: Mapping[str, workload.Num] = field(default_factory=dict)
    kinds: tuple[str, ...] = ()
    expert: int = 1

    @property
    def layer(self):
        return self.layer_weight + self.layer_kv

    def layer_size(self, i: int):
        """Weights + KV cache of layer ``i`` on the fullest chip."""
        k = self.kinds[i]
        return self.kind_weight[k] + self.kind_kv[k]


_TABLES: dict[int, tuple] = {}


def _table(model: Model):
    """The model's layer kinds and, per part (embedding, each kind, head), its tensors as
    arrays: split-axis length, values per slice unit, stored at the weights' width, copies,
    routed expert. Cached per model object (need() evaluates thousands of widths)."""
    import weakref

    from . import architecture

    hit = _TABLES.get(id(model))
    if hit is not None and hit[0]() is model:
        return hit[1]
    kinds = architecture.layer_kinds(model)
    parts = {"embedding": architecture.embedding_tensors(model)}
    for k in kinds:
        parts[k.name] = architecture.layer_tensors(model, k.layers[0])
    parts["head"] = architecture.head_tensors(model)
    table = {}
    for name, specs in parts.items():
        n = np.array([t.shape[t.split_axis] for t in specs], dtype=np.int64)
        other = np.array([math.prod(t.shape) // t.shape[t.split_axis] if t.shape[t.split_axis] else 0 for t in specs],
                         dtype=np.int64)
        table[name] = (n, other, np.array([t.width == "weight" for t in specs], bool),
                       np.array([t.copies for t in specs], dtype=np.int64), np.array([t.is_expert for t in specs], bool))
    order = [""] * model.layers
    for k in kinds:
        for i in k.layers:
            order[i] = k.name
    out = (kinds, table, tuple(order))
    with contextlib.suppress(TypeError):
        _TABLES[id(model)] = (weakref.ref(model), out)
    return out


def _part_bytes(arrays, ts: np.ndarray, p: Precision, per_group: int) -> np.ndarray:
    """Bytes of one part on the fullest chip, for each tensor-parallel width in ``ts``."""
    n, other, isw, copies, isexp = arrays
    if n.size == 0:
        return np.zeros(len(ts))
    ceil = -(-n[None, :] // ts[:, None])                      # the largest slice, array_split sizes
    vals = (ceil * other[None, :]).astype(float) * np.where(isw, p.w, p.a)[None, :]
    return (vals * np.where(isexp, per_group, copies)[None, :]).sum(axis=1)


def _sizes(model: Model, ts: np.ndarray, batch, context, tokens, p: Precision, expert: int, elems=None) -> dict:
    """Per-chip bytes of every item for the widths ``ts`` (leading axis) over the broadcast
    batch x context (trailing axes): embedding, head (W,), each kind's weights (W,) and KV
    cache (W, ...), activations (W, ...)."""
    kinds, table, order = _table(model)
    per_group = max(_expert_groups(model, expert)) if expert > 1 else model.experts
    Bg = np.asarray(_group_batch(batch, expert), float)
    T = np.asarray(context, float)
    nd = max(Bg.ndim, T.ndim, np.ndim(elems) if elems is not None else 0)
    col = ts.reshape((-1,) + (1,) * nd)
    out = {"embedding": _part_bytes(table["embedding"], ts, p, per_group),
           "head": _part_bytes(table["head"], ts, p, per_group), "weight": {}, "kv": {}, "kinds": order}
    width = model.kv_values_per_token if model.is_mla else model.kv_heads * model.head_dim
    ceil_kv = (-(-width // col)).astype(float)
    for k in kinds:
        out["weight"][k.name] = _part_bytes(table[k.name], ts, p, per_group)
        Tk = np.minimum(T, k.window) if k.window else T
        if model.is_mla:
            out["kv"][k.name] = Bg * Tk * ceil_kv * p.c
        else:
            out["kv"][k.name] = 2.0 * Bg * Tk * ceil_kv * p.c
    n = _activation_elems(model, Bg if expert > 1 else batch, context, tokens, p) if elems is None else elems
    out["act"] = np.ceil(np.asarray(n, float) / col) * p.a
    return out


def chip_sizes(model: Model, tensor: int, batch=1, context=None, tokens=1, precision=None,
               _act_elems=None, expert: int = 1) -> ChipSizes:
    """Bytes on the fullest chip of a stage at tensor-parallel width ``tensor``, per item;
    with ``expert`` groups per stage, the chip holds the attention and dense tensors' slices,
    the slices of the experts of the fullest group and the cache of that group's streams."""
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    if int(tensor) != tensor or tensor < 1:
        raise PlacementError(f"tensor-parallel width must be a whole number >= 1, got {tensor!r}")
    s = _sizes(model, np.array([int(tensor)], dtype=np.int64), batch, context, tokens, p, int(expert), _act_elems)
    kw = {k: float(v[0]) for k, v in s["weight"].items()}
    kk = {k: v[0] for k, v in s["kv"].items()}
    kk = {k: float(v) if np.ndim(v) == 0 else v for k, v in kk.items()}
    big = max(kw, key=lambda k: (kw[k], float(np.max(kk[k]))))
    act = s["act"][0]
    return ChipSizes(int(tensor), float(s["embedding"][0]), kw[big], kk[big], float(s["head"][0]),
                     float(act) if np.ndim(act) == 0 else act, kw, kk, s["kinds"], int(expert))


def weight_tensors_template(model: Model, precision: Precision) -> dict[str, list[Tensor]]:
    """Weight tensors of the embedding, of the first layer of each kind (keyed by kind:
    ``layer`` when all layers are alike) and of the head."""
    from . import architecture

    p = Precision.of(precision)
    out = {"embedding": [_tensor(x, p, None, x.name) for x in architecture.embedding_tensors(model)]}
    for k in architecture.layer_kinds(model):
        out[k.name] = layer_weight_tensors(model, k.layers[0], p)
    out["head"] = [_tensor(x, p, None, x.name) for x in architecture.head_tensors(model)]
    return out


def weight_tensors(model: Model, precision=None) -> list[Tensor]:
    """Every weight tensor of the model, in pipeline order (embedding, layers, head)."""
    from . import architecture

    p = Precision.of(precision)
    out = [_tensor(x, p, None, x.name) for x in architecture.embedding_tensors(model)]
    for i in range(model.layers):
        out += layer_weight_tensors(model, i, p)
    return out + [_tensor(x, p, None, x.name) for x in architecture.head_tensors(model)]


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


def _runs(kinds: Sequence[str]) -> list[tuple[str, int]]:
    """Consecutive layers of one kind: [(kind, count), ...] in layer order."""
    out: list[tuple[str, int]] = []
    for k in kinds:
        if out and out[-1][0] == k:
            out[-1] = (k, out[-1][1] + 1)
        else:
            out.append((k, 1))
    return out


def _greedy_runs(room, e, runs: Sequence[tuple[workload.Num, int]], hd):
    """Fewest contiguous stages for [e, run_1 (n_1 items of x_1), run_2, ..., hd] (greedy
    next-fit, run by run in closed form: a model whose layers are not all alike);
    inf where an item alone does not fit. With one run it is :func:`_greedy_stages`."""
    room = np.asarray(room, float)
    e, hd = np.asarray(e, float), np.asarray(hd, float)
    ok = (e <= room) & (hd <= room)
    stages = np.ones(np.broadcast_shapes(room.shape, e.shape, hd.shape, *(np.shape(x) for x, _ in runs)))
    load = e + 0.0 * stages
    for x, n in runs:
        x = np.asarray(x, float)
        ok = ok & (x <= room) & (x > 0)
        xs = np.where(x > 0, x, 1.0)
        good = ok
        k0 = np.floor(np.where(good, (room - load) / xs, 0.0))
        k0 = np.where(k0 * xs > room - load, k0 - 1, k0)
        k0 = np.clip(k0, 0, n)
        m = np.floor(np.where(good, room / xs, 1.0))
        m = np.where(m * xs > room, m - 1, m)
        m = np.maximum(m, 1.0)
        r = n - k0
        s = np.where(r > 0, np.ceil(r / m), 0.0)
        load = np.where(r > 0, (r - (s - 1) * m) * xs, load + k0 * xs)
        stages = stages + s
    stages = stages + (load + hd > room)
    return np.where(ok, stages, np.inf)


TENSOR_SPLITS = ("any", "power-of-two", "kv-heads")


def tensor_widths(model: Model, rule: str = "any", max_tensor: int = 72) -> tuple[int, ...]:
    """Allowed tensor-parallel widths up to ``max_tensor``: ``any`` whole number, powers of
    two, or (``kv-heads``) powers of two that divide the model's key/value heads."""
    if rule not in TENSOR_SPLITS:
        raise PlacementError(f"tensor split rule {rule!r} is not one of {', '.join(TENSOR_SPLITS)}")
    if int(max_tensor) != max_tensor or max_tensor < 1:
        raise PlacementError(f"max_tensor must be a whole number >= 1, got {max_tensor!r}")
    ts = range(1, int(max_tensor) + 1)
    if rule == "any":
        return tuple(ts)
    pow2 = [t for t in ts if t & (t - 1) == 0]
    if rule == "power-of-two":
        return tuple(pow2)
    return tuple(t for t in pow2 if model.kv_heads % t == 0)


def allowed_tensors(model: Model, device: Device, max_tensor: int | None = None) -> tuple[int, ...]:
    """The tensor-parallel widths ``device`` may use for ``model``: its file's
    ``deployment.tensor_split`` rule up to its scale-up domain (or ``max_tensor``)."""
    rules = device.deployment
    return tensor_widths(model, rules.tensor_split, rules.max_tensor if max_tensor is None else max_tensor)


def deployment_unit(device: Device) -> int:
    """Chips in the unit a deployment of ``device`` is rounded up to (its file's ``deployment.unit``)."""
    return device.deployment.unit_chips


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
    ``tensor * pipeline`` of the best layout (inf where nothing fits), ``deployed`` rounds it up to
    whole ``unit``s, ``fluid`` is the bytes / usable-capacity lower bound."""

    chips: np.ndarray
    tensor: np.ndarray
    pipeline: np.ndarray
    deployed: np.ndarray
    fluid: np.ndarray
    unit: int
    expert: int = 1


def need(model: Model, device: Device, batch=1, context=None, *, tokens=1, precision=None, reserve: float = 0.0,
         tensor_choices: Sequence[int] | None = None, unit: int | None = None, tiers: Mapping[str, str] | None = None,
         pipeline: int | None = None, expert: int = 1, check_precision: bool = True) -> Need:
    """The fewest chips that hold the model at each (batch, context), vectorised.

    Minimises ``tensor * expert * stages(tensor)`` over ``tensor_choices`` (default: the
    device's allowed widths, :func:`allowed_tensors`; ties: the wider tensor, fewer stages).
    ``pipeline`` fixes the number of stages (then the narrowest tensor that fits is taken).
    ``expert`` spreads each MoE layer's routed experts over that many groups of ``tensor``
    chips per stage (the rest of the layer is repeated in every group, and the streams are
    split over the groups). ``unit`` (default: the device's deployment unit) rounds
    ``deployed`` up to whole units. Every layer is placed with its own size: one closed form
    when all layers are alike, run by run of alike layers otherwise. A precision the device
    does not run is refused (``check_precision=False`` asks about bytes alone: the numpy
    kernels place their float32 decoder on simulated chips).
    """
    unit = _unit(device, unit)
    p = Precision.of(precision)
    if check_precision:
        _check_precision(device, p)
    if isinstance(expert, bool) or int(expert) != expert or expert < 1:
        raise PlacementError(f"expert must be a whole number >= 1, got {expert!r}")
    expert = int(expert)
    if expert > 1:
        _expert_groups(model, expert)
    context = model.max_context if context is None else context
    tr = _tiers(device, tiers)
    _cap, _res, U = _usable(device, tr["weight"], reserve)
    choices = tuple(tensor_choices) if tensor_choices is not None else allowed_tensors(model, device)
    if not choices or any(int(t) != t or t < 1 for t in choices):
        raise PlacementError(f"tensor_choices must be whole numbers >= 1, got {choices!r}")
    if int(unit) != unit or unit < 1:
        raise PlacementError(f"unit must be a whole number >= 1, got {unit!r}")
    act_sep = tr["activation"] != tr["weight"]
    if act_sep:
        _acap, _ares, aU = _usable(device, tr["activation"], reserve)
    shape = np.broadcast_shapes(np.shape(batch), np.shape(context), np.shape(tokens))
    best = np.full(shape, np.inf)
    best_tensor = np.zeros(shape)
    best_pipeline = np.zeros(shape)
    elems = _activation_elems(model, _group_batch(batch, expert), context, tokens, p)
    kinds = _table(model)[0]
    runs = _runs(_table(model)[2])

    def chips_at(ts):
        """Stages and chips at each width of ``ts`` (leading axis) over the grid."""
        s = _sizes(model, ts, batch, context, tokens, p, expert, elems)
        col = ts.reshape((-1,) + (1,) * len(shape))
        act = 0.0 if act_sep else s["act"]
        emb, head = s["embedding"].reshape(col.shape), s["head"].reshape(col.shape)
        if len(kinds) == 1:
            k = kinds[0].name
            stages = _greedy_stages(U - act, emb, s["weight"][k].reshape(col.shape) + s["kv"][k], head, model.layers)
        else:
            stages = _greedy_runs(U - act, emb, [(s["weight"][k].reshape(col.shape) + s["kv"][k], n) for k, n in runs],
                                  head)
        if act_sep:
            stages = np.where(s["act"] <= aU, stages, np.inf)
        if pipeline is not None:
            stages = np.where(stages <= pipeline, float(pipeline), np.inf)
        stages = np.broadcast_to(stages, (len(ts),) + shape)
        return stages, stages * (col * expert)

    widths = np.array(sorted({int(t) for t in choices}, reverse=True), dtype=np.int64)
    # a layout of width t uses at least t chips, so once every point has a layout of at most
    # B chips no wider width can win: seed B with the narrowest width that holds the weights
    # in one or two stages, then skip every width above it (a machine whose scale-up domain
    # spans thousands of chips would otherwise try them all)
    total_w = workload.weight_bytes(model, p) + workload.kv_bytes(model, batch, context, p.kv)
    seed = min((int(t) for t in widths if t * expert >= float(np.max(np.ceil(np.asarray(total_w, float) / U)))),
               default=None)
    bound = np.inf
    if seed is not None:
        _st, ch = chips_at(np.array([seed], dtype=np.int64))
        if np.all(np.isfinite(ch)):
            bound = float(np.max(ch))
    widths = widths[widths * expert <= bound]
    step = max(1, 2_000_000 // max(int(np.prod(shape)), 1))   # widths per batch of array work
    for i in range(0, len(widths), step):
        ts = widths[i:i + step]
        stages, chips = chips_at(ts)
        j = np.argmin(chips, axis=0)                         # the first minimum: the widest of equals
        cmin = np.take_along_axis(chips, j[None], axis=0)[0]
        better = cmin < best
        best = np.where(better, cmin, best)
        best_tensor = np.where(better, ts[j], best_tensor)
        best_pipeline = np.where(better, np.take_along_axis(stages, j[None], axis=0)[0], best_pipeline)
    total = workload.weight_bytes(model, p) + workload.kv_bytes(model, batch, context, p.kv)
    fluid = np.broadcast_to(np.ceil(np.asarray(total, float) / U), shape)
    deployed = np.where(np.isfinite(best), np.ceil(best / unit) * unit, np.inf)
    return Need(best, best_tensor.astype(int), best_pipeline.astype(int), deployed, fluid, int(unit), expert)


def chips_needed(model: Model, device: Device, batch=1, context=None, **kw) -> float | np.ndarray:
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


def max_batch(model: Model, device: Device, context=None, *, tensor: int, pipeline: int, limit: int = 1 << 22, **kw) -> int:
    """The largest batch that a (tensor, pipeline) deployment holds at ``context`` (0 if
    none); ``expert=`` (keyword) for expert-parallel stages."""
    def fits(b):
        return bool(np.isfinite(need(model, device, b, context, tensor_choices=(tensor,), pipeline=pipeline, **kw).chips))
    if not fits(1):
        return 0
    return _largest(fits, limit)


# --------------------------------------------------------------------------- placing


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
    """A model placed on ``chips = pipeline * tensor * expert`` chips of one device.

    A stage is ``expert`` groups of ``tensor`` chips: chip ``stage * tensor * expert +
    group * tensor + rank``. The attention and dense tensors are cut over a group's ranks and
    repeated in every group; each routed expert lives in one group (the experts of a layer
    in contiguous blocks, :func:`lpulab.workload.expert_groups`), cut over its ranks; each
    group holds the KV cache and activations of its share of the streams.

    ``residency``: one row per (chip, tier, kind): chip, stage, group, rank, tier, kind,
    bytes, capacity, headroom (capacity less everything on that chip's tier, reserve
    included). ``shards`` (built on first use: one row per tensor slice, so millions for a
    large MoE model cut over hundreds of chips): tensor, kind, group, layer, stage, chip,
    rank, tier, axis, start, stop, bytes.
    """

    model: Model
    device: Device
    precision: Precision
    batch: int
    context: int
    tokens: int
    reserve: float
    tensor: int
    pipeline: int
    unit: int
    tiers: Mapping[str, str]
    stages: tuple[Stage, ...]
    tensors: tuple[Tensor, ...]
    residency: pd.DataFrame = field(repr=False)
    expert: int = 1
    _entries: tuple = field(default=(), repr=False, compare=False)
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def stage_size(self) -> int:
        """Chips per pipeline stage: ``tensor * expert``."""
        return self.tensor * self.expert

    @property
    def chips(self) -> int:
        return self.stage_size * self.pipeline

    @property
    def layout(self) -> Layout:
        """One replica's :class:`~lpulab.parallel.Layout`."""
        return Layout(1, self.tensor, self.pipeline, self.expert)

    @property
    def chips_deployed(self) -> int:
        """Chips rounded up to whole ``unit``s (nodes or racks); the extra chips hold nothing."""
        return -(-self.chips // self.unit) * self.unit

    @property
    def shards(self) -> pd.DataFrame:
        if "shards" not in self._cache:
            self._cache["shards"] = _shards(self)
        return self._cache["shards"]

    def layer_stage(self) -> dict[int, int]:
        """Layer index -> pipeline stage."""
        return {i: s.index for s in self.stages for i in s.layers}

    def stage_chips(self, stage: int) -> list[int]:
        return list(range(stage * self.stage_size, (stage + 1) * self.stage_size))

    def expert_chips(self, layer: int, expert: int) -> list[int]:
        """The chips holding routed expert ``expert`` of layer ``layer`` (its group's ranks)."""
        if not self.model.layer_is_moe(layer):
            raise PlacementError(f"layer {layer} of {self.model.id} has no routed experts")
        g = _group_of(self.model, self.expert, expert)
        base = self.layer_stage()[layer] * self.stage_size + g * self.tensor
        return list(range(base, base + self.tensor))

    def chip_bytes(self, tier: str | None = None) -> pd.DataFrame:
        """Bytes per chip by kind on ``tier`` (default: the weights' tier): one row per chip,
        columns weight, kv, activation, reserve, used, capacity, headroom, stage, group, rank."""
        tier = tier or self.tiers["weight"]
        r = self.residency[self.residency.tier == tier]
        wide = r.pivot_table(index="chip", columns="kind", values="bytes", aggfunc="sum").reindex(columns=list(KINDS))
        wide = wide.fillna(0.0)
        wide["used"] = wide[list(KINDS)].sum(axis=1)
        first = r.groupby("chip").first()
        wide["capacity"] = first["capacity"]
        wide["headroom"] = first["headroom"]
        wide["stage"] = first["stage"]
        wide["group"] = first["group"]
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
                "stage": st.index, "first_chip": st.index * self.stage_size,
                "last_chip": (st.index + 1) * self.stage_size - 1,
                "embedding": st.embedding, "layers": len(st.layers),
                "first_layer": st.layers[0] if st.layers else None, "last_layer": st.layers[-1] if st.layers else None,
                "head": st.head, "weight": float(c.weight.max()), "kv": float(c.kv.max()),
                "activation": float(c.activation.max()), "used": float(c.used.max()),
                "capacity": float(c.capacity.max()),
            })
        return pd.DataFrame(rows)

    def totals(self) -> dict[str, float]:
        """Bytes placed, by kind (reserve excluded), over all chips."""
        r = self.residency[self.residency.kind != "reserve"]
        return cast("dict[str, float]",
                    r.groupby("kind")["bytes"].sum().reindex(["weight", "kv", "activation"], fill_value=0.0).to_dict())

    def plan(self, kinds: Sequence[str] = ("weight",)) -> dict[str, list[tuple[int, int, int, int]]]:
        """The sharding plan for :mod:`lpulab.kernels`: tensor name -> [(chip, axis, start,
        stop), ...] for tensors of ``kinds`` (weights by default); empty slices are left out."""
        return export_plan(self, kinds)[0]

    def summary(self) -> dict:
        cb = self.chip_bytes()
        t = self.totals()
        out = {
            "device": self.device.id, "model": self.model.id, "precision": self.precision.label(),
            "batch": self.batch, "context": self.context, "tokens": self.tokens, "reserve": self.reserve,
            "tensor": self.tensor, "pipeline": self.pipeline, "chips": self.chips, "unit": self.unit, "chips_deployed": self.chips_deployed,
            "weight_bytes": t["weight"], "kv_bytes": t["kv"], "activation_bytes": t["activation"],
            "max_chip_fill": float((cb.used / cb.capacity).max()),
            "min_headroom_bytes": float(cb.headroom.min()),
        }
        if self.expert > 1:
            out["expert"] = self.expert
        return out


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
        vals.append(sizes.embedding if n == "embedding" else sizes.head if n == "head"
                    else float(sizes.layer_size(int(n.split(".")[1]))))
    return names, vals


def _greedy_bins(items: Sequence[float], room: float) -> list[list[int]]:
    bins: list[list[int]] = []
    cur: list[int] = []
    load = 0.0
    for i, v in enumerate(items):
        if cur and load + v > room:
            bins.append(cur)
            cur, load = [], 0.0
        cur.append(i)
        load += v
    if cur:
        bins.append(cur)
    return bins


def _balanced(items: Sequence[float], pipeline: int) -> list[list[int]]:
    """Contiguous split of ``items`` into exactly ``pipeline`` non-empty stages whose largest
    load is as small as possible (bisection on the bottleneck, then splitting the stages
    with most items until there are ``pipeline``)."""
    if pipeline > len(items):
        raise PlacementError(f"{pipeline} pipeline stages but only {len(items)} items (embedding, layers, head) to place")
    lo, hi = max(items) - 0.5, float(sum(items))
    while hi - lo > 0.25:
        mid = (lo + hi) / 2
        if len(_greedy_bins(items, mid)) <= pipeline and max(items) <= mid:
            hi = mid
        else:
            lo = mid
    bins = _greedy_bins(items, hi)
    while len(bins) < pipeline:
        j = max(range(len(bins)), key=lambda k: (len(bins[k]), -k))
        b = bins[j]
        half = len(b) // 2
        bins[j:j + 1] = [b[:half], b[half:]]
    return bins


def _chips(n) -> str:
    n = int(n)
    return f"{n} chip" + ("" if n == 1 else "s")


def _fixes(model, device, batch, context, tokens, p, reserve, tensor_choices, unit, tiers, tensor=None, pipeline=None,
           expert: int = 1) -> list[str]:
    """What would make it fit: other deployments, precisions, batch, context, devices."""
    out = []
    kw = dict(tokens=tokens, reserve=reserve, unit=unit, tiers=tiers, expert=expert)
    ep = f" x expert={expert}" if expert > 1 else ""
    if tensor is not None:
        n = need(model, device, batch, context, precision=p, tensor_choices=(tensor,), **kw)
        if np.isfinite(n.chips):
            out.append(f"pipeline >= {int(n.pipeline)} stages at tensor={tensor}{ep} ({_chips(n.chips)})")
    n = need(model, device, batch, context, precision=p, tensor_choices=tensor_choices, **kw)
    if np.isfinite(n.chips):
        out.append(f"the smallest deployment that fits: tensor={int(n.tensor)} x pipeline={int(n.pipeline)}{ep} = "
                   f"{_chips(n.chips)}")
    else:
        def fits(t):
            return bool(np.isfinite(need(model, device, batch, context, precision=p, tensor_choices=(t,), **kw).chips))
        if fits(1024):  # per-chip slices shrink as tensor grows, so the widths that fit form a ray
            lo, hi = 0, 1024
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if fits(mid) else (mid, hi)
            wider = need(model, device, batch, context, precision=p, tensor_choices=range(hi, 1025), **kw)
            out.append(f"allow tensor-parallel widths of {hi} or more (tensor_choices; the fewest chips would be "
                       f"tensor={int(wider.tensor)} x pipeline={int(wider.pipeline)}{ep} = {_chips(wider.chips)})")
    if tensor is not None and pipeline is not None:
        mb = max_batch(model, device, context, tensor=tensor, pipeline=pipeline, precision=p, tokens=tokens, reserve=reserve,
                       tiers=tiers, expert=expert)
        if mb >= 1 and mb < batch:
            out.append(f"batch <= {mb} at context {context} on this tensor={tensor} x pipeline={pipeline}{ep} deployment")
    order = list(workload.PRECISIONS)
    for what in ("kv", "weights"):
        cur = getattr(p, what)
        for lower in ("int8", "int4"):
            if order.index(lower) > order.index(cur):
                q = Precision(**{**p.__dict__, what: lower})
                try:
                    m = need(model, device, batch, context, precision=q,
                             tensor_choices=tensor_choices if tensor is None else (tensor,), pipeline=pipeline, **kw)
                except PlacementError:      # a precision the device does not run
                    continue
                if np.isfinite(m.chips):
                    out.append(f"{'KV cache' if what == 'kv' else 'weights'} at {lower} "
                               f"(tensor={int(m.tensor)} x pipeline={int(m.pipeline)}{ep} = {_chips(m.chips)})")
                    break
    return out


def _unit(device: Device, unit: int | None) -> int:
    if unit is not None:
        return unit
    return device.deployment.unit_chips if device.deployment_rules is not None else 1


def _whole(name: str, v) -> int:
    if isinstance(v, bool) or int(v) != v or v < 1:
        raise PlacementError(f"{name} must be a whole number >= 1, got {v!r}")
    return int(v)


def place(model: Model, device: Device, *, batch: int = 1, context: int | None = None, tokens: int = 1,
          precision=None, tensor: int | None = None, pipeline: int | None = None, layout: Layout | None = None,
          reserve: float = 0.0, tensor_choices: Sequence[int] | None = None, unit: int | None = None,
          tiers: Mapping[str, str] | None = None, expert: int = 1, check_precision: bool = True) -> Placement:
    """Place every tensor of ``model`` (weights, the KV cache of ``batch`` sequences of
    ``context`` tokens, one activation working set per stage) on ``device`` chips: one
    replica.

    Neither ``tensor`` nor ``pipeline``: the smallest layout that fits (tensor widths from
    the device's ``deployment.tensor_split`` rule up to its scale-up domain, or
    ``tensor_choices``); ``tensor=4``: the fewest stages at 4 chips per stage;
    ``pipeline=2``: the narrowest stage at 2 stages; both (or a :class:`~lpulab.parallel.Layout`
    as ``layout``): exactly that. ``expert`` (or ``layout.expert``) spreads each MoE layer's
    routed experts over that many groups of ``tensor`` chips per stage. ``unit`` (default:
    the device's deployment unit) rounds the chip count to whole units. Raises
    :class:`PlacementError` saying what does not fit, by how much, where, and what would;
    and for a precision the device does not run (unless ``check_precision=False``: bytes alone).
    """
    p = Precision.of(precision)
    if check_precision:
        _check_precision(device, p)
    context = model.max_context if context is None else int(context)
    for name, v, lo in (("batch", batch, 1), ("context", context, 0), ("tokens", tokens, 1)):
        if np.ndim(v) != 0 or int(v) != v or v < lo:
            raise PlacementError(f"place() takes one shape: {name} must be a whole number >= {lo}, got {v!r} "
                                 "(use need() or chips_needed() for arrays)")
    batch, tokens = int(batch), int(tokens)
    if tokens > max(context, 1):
        raise PlacementError(f"tokens ({tokens}) cannot exceed the context held in the KV cache ({context})")
    if layout is not None:
        if tensor is not None or pipeline is not None:
            raise PlacementError("give a layout or tensor/pipeline, not both")
        tensor, pipeline, expert = layout.tensor, layout.pipeline, layout.expert
    for name, width in (("tensor", tensor), ("pipeline", pipeline)):
        if width is not None:
            _whole(name, width)
    expert = _whole("expert", expert)
    if expert > 1:
        _expert_groups(model, expert)
    unit = _unit(device, unit)
    tr = _tiers(device, tiers)
    cap, _res, U = _usable(device, tr["weight"], reserve)
    choices = tuple(tensor_choices) if tensor_choices is not None else allowed_tensors(model, device)
    args = (model, device, batch, context, tokens, p, reserve, choices, unit, tr)

    if tensor is None or pipeline is None:
        n = need(model, device, batch, context, tokens=tokens, precision=p, reserve=reserve,
                 tensor_choices=choices if tensor is None else (int(tensor),), unit=unit, tiers=tr, pipeline=pipeline,
                 expert=expert, check_precision=check_precision)
        if not np.isfinite(n.chips):
            _raise_unfit(*args, tensor=tensor, pipeline=pipeline, expert=expert)
        tensor, pipeline = int(n.tensor), int(n.pipeline)
    else:
        tensor, pipeline = int(tensor), int(pipeline)

    sizes = chip_sizes(model, tensor, batch, context, tokens, p, expert=expert)
    act_sep = tr["activation"] != tr["weight"]
    act = 0.0 if act_sep else float(sizes.act)
    names, vals = _stage_items(model, sizes, act)
    if pipeline > len(vals):
        raise PlacementError(f"{pipeline} pipeline stages but the model has only {len(vals)} items to place "
                             f"(embedding, {model.layers} layers, head); use pipeline <= {len(vals)}",
                             what="deployment", fixes=[f"pipeline <= {len(vals)}"])
    bins = _balanced(vals, pipeline)
    loads = [act + sum(vals[i] for i in b) for b in bins]
    worst = int(np.argmax(loads))
    if loads[worst] > U:
        b = bins[worst]
        items = [names[i] for i in b]
        what = f"stage {worst} ({items[0]}" + (f" .. {items[-1]}" if len(items) > 1 else "") + ")"
        fixes = _fixes(*args, tensor=tensor, pipeline=pipeline, expert=expert)
        chip = worst * tensor * expert
        parts = _load_parts(model, sizes, items, act)
        raise PlacementError(
            f"{model.id} on {device.id} ({p.label()}, batch {batch}, context {context}): {what} needs "
            f"{_b(loads[worst])} on chip {chip} (rank 0 of tensor={tensor}; {parts}) but a chip's {tr['weight']} holds "
            f"{_b(U)} after a {reserve:.0%} reserve of {_b(cap)}: {_b(loads[worst] - U)} too much. "
            f"It would fit with: " + ("; ".join(fixes) if fixes else "no change found: use a device with more memory"),
            what=what, nbytes=loads[worst], chip=chip, capacity=U, fixes=fixes)
    if act_sep:
        _, _, aU = _usable(device, tr["activation"], reserve)
        if float(sizes.act) > aU:
            raise PlacementError(
                f"activations need {_b(float(sizes.act))} per chip at tensor={tensor} but {device.id}'s {tr['activation']} "
                f"holds {_b(aU)}; place activations in {tr['weight']} (tiers) or use a smaller batch/prompt",
                what="activations", nbytes=float(sizes.act), chip=0, capacity=aU,
                fixes=[f"tiers={{'activation': '{tr['weight']}'}}"])

    stages = []
    for s, b in enumerate(bins):
        items = [names[i] for i in b]
        stages.append(Stage(s, "embedding" in items, tuple(int(n.split(".")[1]) for n in items if n.startswith("layers.")),
                            "head" in items))
    return _build(model, device, p, batch, context, tokens, reserve, tensor, pipeline, unit, tr, tuple(stages), expert)


def stage_split(model: Model, device: Device, tensor: int, pipeline: int, *, batch: int = 1,
                context: int | None = None, precision=None, expert: int = 1) -> tuple[Stage, ...]:
    """The stages :func:`place` would build for ``pipeline`` stages of ``tensor x expert``
    chips (the same balanced split of whole items: the embedding, each layer with its own
    size, the head), without checking capacity or building the per-tensor table; what the
    serving model times stage by stage."""
    p = Precision.of(precision)
    context = model.max_context if context is None else int(context)
    sizes = chip_sizes(model, int(tensor), int(batch), context, 1, p, expert=int(expert))
    names, vals = _stage_items(model, sizes, 0.0)
    if int(pipeline) > len(vals):
        raise PlacementError(f"{pipeline} pipeline stages but {model.id} has only {len(vals)} items to place "
                             f"(embedding, {model.layers} layers, head); use pipeline <= {len(vals)}")
    out = []
    for s_, b in enumerate(_balanced(vals, int(pipeline))):
        items = [names[i] for i in b]
        out.append(Stage(s_, "embedding" in items, tuple(int(n.split(".")[1]) for n in items if n.startswith("layers.")),
                         "head" in items))
    return tuple(out)


def _load_parts(model, sizes: ChipSizes, items, act) -> str:
    layers = [int(i.split(".")[1]) for i in items if i.startswith("layers.")]
    w = sum(sizes.kind_weight[sizes.kinds[i]] for i in layers) + (sizes.embedding if "embedding" in items else 0) + (
        sizes.head if "head" in items else 0)
    kv = sum(float(sizes.kind_kv[sizes.kinds[i]]) for i in layers)
    return f"weights {_b(w)}, KV cache {_b(kv)}, activations {_b(act)}"


def _raise_unfit(model, device, batch, context, tokens, p, reserve, choices, unit, tr, tensor=None, pipeline=None,
                 expert: int = 1):
    _cap, _res, U = _usable(device, tr["weight"], reserve)
    widths = (tensor,) if tensor is not None else choices
    t = max(widths)
    s = chip_sizes(model, t, batch, context, tokens, p, expert=expert)
    act = 0.0 if tr["activation"] != tr["weight"] else float(s.act)
    items = {"the embedding": s.embedding, "one layer (weights + KV cache)": float(s.layer), "the head": s.head}
    what, nbytes = max(items.items(), key=lambda kv: kv[1])
    fixes = _fixes(model, device, batch, context, tokens, p, reserve, choices, unit, tr, tensor=tensor, pipeline=pipeline,
                   expert=expert)
    where = f"at tensor={t}" + (f" with pipeline={pipeline}" if pipeline is not None else "") + (
        f" x expert={expert}" if expert > 1 else "")
    raise PlacementError(
        f"{model.id} does not fit on {device.id} ({p.label()}, batch {batch}, context {context}) with tensor-parallel "
        f"widths {_widths(widths)}{'' if pipeline is None else f' and {pipeline} stages'}: {where}, {what} needs {_b(nbytes + act)} "
        f"on one chip (per chip: one layer's weights {_b(s.layer_weight)} + its KV cache {_b(float(s.layer_kv))}, "
        f"activations {_b(act)}) but a chip's {tr['weight']} holds {_b(U)} after a {reserve:.0%} reserve. It would fit with: "
        + ("; ".join(fixes) if fixes else "no change found: use a device with more memory"),
        what=what, nbytes=nbytes + act, chip=0, capacity=U, fixes=fixes)


def _widths(w) -> str:
    w = sorted(w)
    return f"{w[0]}..{w[-1]}" if len(w) > 4 and w == list(range(w[0], w[-1] + 1)) else ", ".join(map(str, w))


def _group_of(model: Model, expert: int, e: int) -> int:
    """The expert group holding routed expert ``e`` (contiguous blocks of array_split sizes)."""
    if not 0 <= int(e) < model.experts:
        raise PlacementError(f"expert {e!r} is not in 0..{model.experts - 1} for {model.id}")
    if expert <= 1:
        return 0
    start = 0
    for g, n in enumerate(workload.expert_groups(model, expert)):
        if e < start + n:
            return g
        start += n
    raise AssertionError("unreachable")


def _build(model, device, p, batch, context, tokens, reserve, tensor, pipeline, unit, tr, stages, expert=1) -> Placement:
    """The tensors of every stage, each with the expert group that holds it (None: every
    group), and every chip's bytes by tier and kind, from each tensor's slice sizes."""
    tensors: list[Tensor] = []
    entries: list[tuple[Tensor, int, int | None]] = []   # (tensor, stage, group or None)
    e = int(expert)
    groups_b = [len(x) for x in np.array_split(np.arange(batch), e)]   # streams of each group
    g: int | None
    acts: dict[int | None, float]
    if e == 1:
        acts = {None: _activation_elems(model, batch, context, tokens, p)}
    else:
        acts = {g: _activation_elems(model, b, context, tokens, p) for g, b in enumerate(groups_b) if b}
    gof = {}
    if e > 1:
        start = 0
        for g, n in enumerate(workload.expert_groups(model, e)):
            for x in range(start, start + n):
                gof[x] = g
            start += n
    templ = weight_tensors(model, p)
    emb = [t for t in templ if t.group == "embedding"]
    head = [t for t in templ if t.group == "head"]
    for st in stages:
        ts: list[tuple[Tensor, int | None]] = [(t, None) for t in emb] if st.embedding else []
        for i in st.layers:
            ts += [(t, gof.get(t.expert) if t.expert is not None and e > 1 else None)
                   for t in layer_weight_tensors(model, i, p)]
            if e == 1:
                ts.append((kv_tensor(model, i, batch, context, p), None))
            else:
                ts += [(kv_tensor(model, i, b, context, p, name=f"layers.{i}.kv_cache.{g}"), g)
                       for g, b in enumerate(groups_b) if b]
        if st.head:
            ts += [(t, None) for t in head]
        for g, elems in acts.items():
            name = f"stages.{st.index}.activations" + ("" if g is None else f".{g}")
            ts.append((Tensor(name, "activation", "stage", None, (int(elems),), 0, p.a), g))
        for t, g in ts:
            tensors.append(t)
            entries.append((t, st.index, g))
    chips = tensor * pipeline * e
    kinds3 = ("weight", "kv", "activation")
    used_tiers = sorted(set(tr.values()))
    acc = {(tier, k): np.zeros(chips) for tier in used_tiers for k in kinds3}
    memo: dict = {}                                      # slice bytes per rank, by shape (experts repeat)
    for t, s, g in entries:
        key = (t.shape, t.axis, t.width)
        per_rank = memo.get(key)
        if per_rank is None:
            bnd = t.bounds(tensor)
            other = float(math.prod(t.shape) // t.shape[t.axis]) * t.width if t.shape[t.axis] else 0.0
            per_rank = memo[key] = np.diff(bnd).astype(float) * other
        base = s * tensor * e
        for gg in (range(e) if g is None else (g,)):
            acc[(tr[t.kind], t.kind)][base + gg * tensor: base + (gg + 1) * tensor] += per_rank
    rows = []
    for tier in used_tiers:
        cap, res, _ = _usable(device, tier, reserve)
        for c in range(chips):
            kinds = {k: float(acc[(tier, k)][c]) for k in kinds3}
            kinds["reserve"] = res
            headroom = cap - sum(kinds.values())
            for k in KINDS:
                rows.append((c, c // (tensor * e), (c // tensor) % e, c % tensor, tier, k, kinds[k], cap, headroom))
    residency = pd.DataFrame(rows, columns=["chip", "stage", "group", "rank", "tier", "kind", "bytes", "capacity",
                                            "headroom"])
    return Placement(model, device, p, batch, context, tokens, reserve, tensor, pipeline, int(unit), dict(tr),
                     tuple(stages), tuple(tensors), residency, e, tuple(entries))


def _shards(pl: Placement) -> pd.DataFrame:
    """One row per (tensor, chip) slice of a placement, in stage, tensor and rank order."""
    cols: dict[str, list] = {k: [] for k in ("tensor", "kind", "group", "layer", "stage", "chip", "rank", "tier", "axis", "start",
                            "stop", "bytes")}
    t_, e = pl.tensor, pl.expert
    for t, s, g in pl._entries:
        bnd = t.bounds(t_)
        other = float(math.prod(t.shape) // t.shape[t.axis]) * t.width if t.shape[t.axis] else 0.0
        for gg in (range(e) if g is None else (g,)):
            for r in range(t_):
                cols["tensor"].append(t.name)
                cols["kind"].append(t.kind)
                cols["group"].append(t.group)
                cols["layer"].append(t.layer)
                cols["stage"].append(s)
                cols["chip"].append(s * t_ * e + gg * t_ + r)
                cols["rank"].append(r)
                cols["tier"].append(pl.tiers[t.kind])
                cols["axis"].append(t.axis)
                cols["start"].append(int(bnd[r]))
                cols["stop"].append(int(bnd[r + 1]))
                cols["bytes"].append(float(bnd[r + 1] - bnd[r]) * other)
    shards = pd.DataFrame(cols)
    shards["layer"] = shards["layer"].astype("Int64")
    return shards


# --------------------------------------------------------------------------- the 305 -> N chain


def items_count(model: Model) -> int:
    """Pipeline items: the embedding (unless tied: then it lives with the head), the
    layers, the head. ``pipeline = items_count(model)`` is one item per stage."""
    return model.layers + (1 if model.tied_embeddings else 2)


LAYOUTS = ("best", "layer-per-stage")


def capacity_chain(model: Model, device: Device, *, batch: int = 1, context: int | None = None, precision=None,
                   reserve: float = 0.0, tensor_choices: Sequence[int] | None = None, layout: str = "best",
                   stated_weight_bytes: float | None = None, stated_chip_bytes: float | None = None) -> pd.DataFrame:
    """From the back-of-envelope chip count to a deployable one, one modelled step at a time.

    Rows (each a chip count and what the step adds): ``as stated`` (stated model bytes /
    stated chip bytes, when given), ``weights`` (exact weight bytes / catalog capacity),
    ``+ KV cache`` (at ``batch`` x ``context``), ``+ reserve`` (usable capacity),
    ``+ layer granularity`` (whole layers per stage, one tensor width per stage, activations;
    ``layout="best"`` is :func:`need`'s fewest chips, ``"layer-per-stage"`` gives every
    layer, the embedding and the head a stage of their own, so no chip holds parts of two
    layers), then one row per deployment unit of the device's file (``whole nodes``,
    ``whole racks``, ...: rounded up to that unit's chips), smallest first.
    """
    if layout not in LAYOUTS:
        raise PlacementError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    cap = device.capacity(device.main_tier)
    W = workload.weight_bytes(model, p)
    KV = float(workload.kv_bytes(model, batch, context, p.kv))
    rows: list[tuple[str, float, str]] = []
    if stated_weight_bytes is not None and stated_chip_bytes is not None:
        rows.append(("as stated", math.ceil(stated_weight_bytes / stated_chip_bytes),
                     f"{_b(stated_weight_bytes)} of weights / {_b(stated_chip_bytes)} per chip"))
    rows.append(("weights", math.ceil(W / cap), f"{_b(W)} of {p.weights} weights / {_b(cap)} per chip"))
    rows.append(("+ KV cache", math.ceil((W + KV) / cap),
                 f"+ {_b(KV)} of {p.kv} KV cache ({batch} sequence{'' if batch == 1 else 's'} x {context} tokens)"))
    U = cap - math.ceil(cap * reserve)
    rows.append(("+ reserve", math.ceil((W + KV) / U), f"{reserve:.0%} of each chip kept free: {_b(U)} usable"))
    pipeline = items_count(model) if layout == "layer-per-stage" else None
    n = need(model, device, batch, context, precision=p, reserve=reserve, tensor_choices=tensor_choices, pipeline=pipeline)
    if not np.isfinite(n.chips):
        rows.append(("+ layer granularity", float("inf"), "no allowed layout fits"))
    else:
        chips = int(n.chips)
        s = chip_sizes(model, int(n.tensor), batch, context, 1, p)
        per = "one item per stage" if layout == "layer-per-stage" else "whole layers per stage"
        rows.append(("+ layer granularity", chips,
                     f"{per}: tensor={int(n.tensor)} chips x pipeline={int(n.pipeline)} stages; per chip, one layer is "
                     f"{_b(s.layer_weight)} of weights + {_b(float(s.layer_kv))} of KV cache"))
        units = device.deployment.units if device.deployment_rules is not None else {}
        for name, v in sorted(units.items(), key=lambda kv: kv[1].si):
            n_unit = int(v.si)
            if n_unit > 1:
                rows.append((f"whole {name}s", -(-chips // n_unit) * n_unit, f"rounded up to {name}s of {n_unit} chips"))
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
                    reserve: float = 0.0, tensor_choices: Mapping[str, Sequence[int]] | None = None,
                    units: Mapping[str, int] | None = None) -> pd.DataFrame:
    """One row per device: its weight tier's capacity and bandwidth, the chips needed
    (weights only and weights + KV without granularity, the best layout, and deployed in
    whole ``units[device]``), the layout's tensor and pipeline, and what those chips add up to."""
    p = Precision.of(precision)
    context = model.max_context if context is None else context
    rows = []
    for d in devices:
        tier = d.main_tier
        n = need(model, d, batch, context, precision=p, reserve=reserve,
                 tensor_choices=(tensor_choices or {}).get(d.id), unit=(units or {}).get(d.id))
        chips = float(n.chips)
        tier_bw = d.memory[tier].bandwidth
        bw = tier_bw.si if tier_bw else float("nan")
        rows.append({
            "device": d.id, "sram_only": d.sram_only, "tier": tier, "capacity": d.capacity(tier), "bandwidth": bw,
            "weights_only": fluid_chips(model, d, batch, context, precision=p, reserve=reserve, weights_only=True),
            "fluid": float(n.fluid), "chips": chips, "tensor": int(n.tensor), "pipeline": int(n.pipeline), "unit": n.unit,
            "deployed": float(n.deployed),
            "deployment_capacity": chips * d.capacity(tier), "deployment_bandwidth": chips * bw,
        })
    return pd.DataFrame(rows)


def sweep(model: Model, devices: Sequence[Device], contexts, batches, *, precision=None, reserve: float = 0.0,
          tensor_choices: Mapping[str, Sequence[int]] | None = None, units: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Chips needed over the grid contexts x batches for each device (one vectorised
    :func:`need` call per device); long form: device, context, batch, chips, deployed, tensor, pipeline."""
    C, B = np.meshgrid(np.asarray(contexts), np.asarray(batches), indexing="ij")
    frames = []
    for d in devices:
        n = need(model, d, B, C, precision=precision, reserve=reserve,
                 tensor_choices=(tensor_choices or {}).get(d.id), unit=(units or {}).get(d.id))
        frames.append(pd.DataFrame({"device": d.id, "context": C.ravel(), "batch": B.ravel(),
                                    "chips": n.chips.ravel(), "deployed": n.deployed.ravel(),
                                    "tensor": n.tensor.ravel(), "pipeline": n.pipeline.ravel()}))
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


# --------------------------------------------------------------------------- the whole analysis


def full_context_streams(model: Model, device: Device, chips: int, *, precision=None, reserve: float = 0.0) -> int:
    """How many sequences of the model's full context window a deployment of ``chips``
    (after rounding to the device's deployment unit) holds beside the weights: the number
    notebooks 02 and 04 both quote (0 if the weights alone do not fit)."""
    return batch_for_chips(model, device, int(chips), model.max_context, precision=precision, reserve=reserve)


@dataclass(frozen=True)
class Result:
    """What notebook 02 records: sizes, chips per device, both placements, the chain from
    the back-of-envelope count, full-context streams, GPU checks, the sweep and the
    deployments' bandwidth."""

    model: str
    precision: str
    batch: int
    context: int
    sizes: Mapping = field(default_factory=dict)
    table: pd.DataFrame | None = field(default=None, repr=False)
    lpu: Placement | None = field(default=None, repr=False)
    gpu: Placement | None = field(default=None, repr=False)
    chain: pd.DataFrame | None = field(default=None, repr=False)
    full_context_streams: int = 0
    gpu_checks: Mapping = field(default_factory=dict)
    sweep: pd.DataFrame | None = field(default=None, repr=False)
    sweep_summary: pd.DataFrame | None = field(default=None, repr=False)
    deployment_bandwidth: Mapping = field(default_factory=dict)
    approximations: tuple[str, ...] = ()         # what lpulab models of this architecture only approximately
    not_run: Mapping[str, str] = field(default_factory=dict)  # devices left out: they do not run the precision

    def to_dict(self) -> dict:
        assert self.table is not None, "a Result is built with its table"
        t = self.table.set_index("device")
        return {
            "model": self.model, "precision": self.precision, "batch": self.batch, "context": self.context,
            **self.sizes,
            "chips_needed": t.chips.to_dict(), "chips_deployed": t.deployed.to_dict(), "chips_fluid": t.fluid.to_dict(),
            "chips_weights_only": t.weights_only.to_dict(), "tensor": t.tensor.to_dict(), "pipeline": t.pipeline.to_dict(),
            "deploy_unit": t.unit.to_dict(),
            "lpu_placement": self.lpu.summary() if self.lpu else None,
            "gpu_placement": self.gpu.summary() if self.gpu else None,
            "chain": dict(zip(self.chain.step, self.chain.chips)) if self.chain is not None else {},
            "full_context_streams": self.full_context_streams, "gpu_checks": dict(self.gpu_checks),
            "sweep_chips_min": self.sweep_summary.smallest.to_dict() if self.sweep_summary is not None else {},
            "sweep_chips_max": self.sweep_summary.largest.to_dict() if self.sweep_summary is not None else {},
            "sweep_unfit_points": self.sweep_summary.unfit.to_dict() if self.sweep_summary is not None else {},
            "deployment_bandwidth": dict(self.deployment_bandwidth),
            "approximations": list(self.approximations), "devices_not_run": dict(self.not_run),
        }


def model_sizes(model: Model, precision, batch: int, context: int) -> dict:
    """Parameters, weight bytes, KV cache per token and per sequence, one decode step's
    activation working set and FLOPs: the sizes a placement starts from."""
    from . import architecture

    p = Precision.of(precision)
    n = workload.parameter_count(model)
    step = workload.totals(model, "decode", batch, max(context - 1, 0), precision=p)
    pub = model.published_parameters.si if model.published_parameters is not None else float("nan")
    return {"parameters": n, "parameters_published": pub, "parameters_error_pct": 100 * (n / pub - 1),
            "active_parameters": workload.parameter_count(model, active=True),
            "weight_bytes": workload.weight_bytes(model, p), "kv_bytes_per_token": workload.kv_bytes_per_token(model, p.kv),
            "kv_bytes_per_sequence": float(workload.kv_bytes(model, 1, context, p.kv)),
            "kv_bytes": float(workload.kv_bytes(model, batch, context, p.kv)),
            "activation_bytes": float(workload.activation_bytes(model, "decode", batch, max(context - 1, 0), precision=p)),
            "decode_flops_per_token": float(step.flops) / batch,
            "decode_flops_per_token_over_2_params": float(step.flops) / batch / (2 * n),
            "attention": model.attention, "layer_kinds": {k.name: k.count for k in architecture.layer_kinds(model)},
            "mtp_parameters": workload.parameter_count(model, mtp=True) - n}


def analyse(model: str, devices: Sequence[str], lpu: str, gpu: str, *, precision=None, batch: int = 1,
            context: int | None = None, reserve: float = 0.0, sweep_contexts=(512, 4096), sweep_batches=(1, 64)) -> Result:
    """Notebook 02's analysis: ``model`` placed on every device in ``devices`` (each by its
    own deployment rules), the chip under test ``lpu`` and the reference ``gpu`` in detail.
    A device that does not run ``precision`` is left out and listed with why (``lpu`` or
    ``gpu`` not running it is an error).
    The chain from the back-of-envelope count starts at the claim's own arithmetic
    (``data/claims.toml`` ``[C3.as_stated]``) when ``lpu`` and ``model`` are the claim's."""
    from . import bandwidth, catalog, units

    stated = catalog.load_claims()["C3"].as_stated
    own = stated.get("lpu") == lpu and stated.get("model") == model
    stated_weights = stated.get("weights") if own else None
    stated_chip_memory = stated.get("chip_memory") if own else None

    missing = [d for d in (lpu, gpu) if d not in devices]
    if missing:
        raise PlacementError(f"lpu and gpu must be among devices {list(devices)}; missing: {missing}")
    M = catalog.load_model(model)
    D = {d: catalog.load_device(d) for d in devices}
    p = Precision.of(precision)
    not_run = {}
    for d in list(D):
        try:
            _check_precision(D[d], p)
        except PlacementError as exc:
            if d in (lpu, gpu):
                raise
            not_run[d] = str(exc)
            del D[d]
    context = M.max_context if context is None else int(context)
    common: dict[str, Any] = dict(batch=batch, context=context, precision=p, reserve=reserve)
    table = compare_devices(M, list(D.values()), **common)
    pl_lpu = place(M, D[lpu], **common)
    pl_gpu = place(M, D[gpu], **common)
    chain_kw: dict[str, Any] = dict(context=context, precision=p, reserve=reserve)
    if stated_weights and stated_chip_memory:
        chain_kw.update(stated_weight_bytes=units.parse_quantity(stated_weights, "bytes"),
                        stated_chip_bytes=units.parse_quantity(stated_chip_memory, "bytes"))
    chain = capacity_chain(M, D[lpu], batch=batch, **chain_kw)
    streams = full_context_streams(M, D[lpu], pl_lpu.chips_deployed, precision=p, reserve=reserve)
    checks = {}
    for w in ("bf16", "fp8", "int8"):
        for t in (1, 2):
            a = attempt(M, D[gpu], precision=Precision(w, p.activations, p.kv), tensor=t, pipeline=1, **{
                k: v for k, v in common.items() if k != "precision"})
            checks[f"{t} x {gpu} at {w}"] = a.ok
    sw = sweep(M, list(D.values()), sweep_contexts, sweep_batches, precision=p, reserve=reserve)
    dep = bandwidth.deployment_bandwidth(M, D[lpu], D[gpu], batch=batch, context=context, precision=p, reserve=reserve)
    from . import architecture

    return Result(model, p.label(), int(batch), int(context), model_sizes(M, p, batch, context), table, pl_lpu, pl_gpu,
                  chain, streams, checks, sw, sweep_summary(sw), dep, architecture.approximations(M), not_run)
