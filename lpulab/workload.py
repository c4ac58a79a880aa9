"""What a decoder-only transformer asks of compute and memory: FLOPs and bytes per operator.

Every count follows ``docs/counting.md`` (the numpy kernels in :mod:`lpulab.kernels` count
by the same rules, and a test compares the two op by op). Notation: ``B`` sequences,
``S`` new tokens per sequence (the prompt length in prefill, 1 in a decode step), ``P``
tokens already in the KV cache, ``N = B*S`` tokens processed, ``R = B`` rows reaching the
LM head, and ``K_att = B*(S*P + S*(S+1)/2)`` attended (query, key) pairs per head. Byte
widths: ``w`` weights, ``a`` activations, ``c`` KV cache.

Two views of the same numbers:

- :func:`op_table`: one row per operator (``embedding``, ``layers.{i}.q_proj``, ...,
  ``final_norm``, ``lm_head``) with FLOPs and bytes by kind, for one shape (scalars).
- :func:`totals`, :func:`parts`, :func:`op_counts`: the same counts summed, for numpy
  arrays of batch, context and new tokens in one call (no table is built), so a sweep of
  a million configurations is a few array operations.

Also: :func:`parameter_count`, :func:`weight_bytes`, :func:`kv_bytes_per_token`,
:func:`kv_bytes`, :func:`activation_bytes` (an activation working-set estimate) and
:func:`expected_experts` (mixture of experts: distinct experts one step touches).

Mixture of experts: every expert is resident (:func:`weight_bytes`), the router is a
matmul of ``2*N*h*E`` FLOPs, the FFN ops run once per active expert per token, and the
expert weight bytes read in one step are those of the distinct experts the step touches,
``E*(1-(1-k/E)^N)`` per layer in expectation (tokens routed independently and uniformly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .catalog import PRECISION_BYTES, Device, Model

if TYPE_CHECKING:
    import numpy.typing as npt

    from .architecture import LayerKind, TensorSpec

PHASES = ("prefill", "decode")
#: Precisions a workload may store weights, activations or the KV cache in.
PRECISIONS = ("fp32", "bf16", "fp16", "fp8", "int8", "int4", "nvfp4", "mxfp4")
#: Element-wise FLOPs per element (docs/counting.md).
RMSNORM_FLOPS, ROPE_FLOPS, SOFTMAX_FLOPS, SILU_MUL_FLOPS, ACT_FLOPS, RESIDUAL_FLOPS = 4, 3, 5, 5, 4, 1
#: The byte kinds of a count, in table order.
KINDS = ("weight", "act_read", "act_write", "kv_read", "kv_write")
COLUMNS = ("flops",) + KINDS


class WorkloadError(ValueError):
    """A shape or precision the workload cannot count (the message says what is allowed)."""


# --------------------------------------------------------------------------- precisions


@dataclass(frozen=True)
class Precision:
    """Storage precision of the weights, the activations and the KV cache."""

    weights: str = "bf16"
    activations: str = "bf16"
    kv: str = "bf16"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if v not in PRECISIONS:
                raise WorkloadError(f"Precision.{f.name}: {v!r} is not one of {', '.join(PRECISIONS)}")

    @property
    def w(self) -> float:
        """Bytes per weight."""
        return PRECISION_BYTES[self.weights]

    @property
    def a(self) -> float:
        """Bytes per activation value."""
        return PRECISION_BYTES[self.activations]

    @property
    def c(self) -> float:
        """Bytes per KV-cache value."""
        return PRECISION_BYTES[self.kv]

    @classmethod
    def of(cls, spec: PrecisionLike = None) -> Precision:
        """A Precision from a Precision, ``None`` (bf16 throughout), one name for all three
        (``"int8"``), ``"weights/activations/kv"`` (``"int4/bf16/fp8"``), a mapping
        ``{weights, activations, kv}`` or a 3-tuple."""
        if spec is None:
            return cls()
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
            if "/" in spec:                     # "int4/bf16/fp8": weights/activations/kv
                parts = [s.strip() for s in spec.split("/")]
                if len(parts) != 3:
                    raise WorkloadError(f"precision {spec!r}: give one name or weights/activations/kv, "
                                        "e.g. int4/bf16/fp8")
                return cls(*parts)
            return cls(spec, spec, spec)
        if isinstance(spec, Mapping):
            unknown = set(spec) - {"weights", "activations", "kv"}
            if unknown:
                raise WorkloadError(f"precision: unknown key(s) {', '.join(sorted(unknown))} "
                                    "(allowed: weights, activations, kv)")
            return cls(**spec)
        if isinstance(spec, (tuple, list)) and len(spec) == 3:
            return cls(*spec)
        raise WorkloadError(f"precision: cannot read {spec!r}; give a Precision, a name "
                            f"({', '.join(PRECISIONS)}), a mapping or (weights, activations, kv)")

    def label(self) -> str:
        return f"w:{self.weights} a:{self.activations} kv:{self.kv}"


#: What :meth:`Precision.of` reads.
PrecisionLike = Precision | str | Mapping[str, str] | Sequence[str] | None


#: Formats of the same width a device may list under either name (a device that lists an
#: int8 peak runs fp8 operands at it, and the converse; 4-bit floats run at its ``fp4`` peak).
SAME_WIDTH = {"bf16": ("bf16", "fp16"), "fp16": ("fp16", "bf16"), "fp8": ("fp8", "int8"), "int8": ("int8", "fp8"),
              "int4": ("int4", "fp8", "int8"), "fp32": ("fp32", "tf32"), "nvfp4": ("fp4",), "mxfp4": ("fp4",)}


class PrecisionError(WorkloadError):
    """A precision a device does not run (it lists no peak at its compute format)."""


def compute_format(device: Device, precision: PrecisionLike) -> str:
    """The format ``device``'s matrix units run ``precision`` in: the wider of the weights'
    and the activations' (narrower weights are widened on the way in: INT4 or FP4 weights
    with 8- or 16-bit activations run at the 8- or 16-bit peak), or a format of the same
    width the device lists. A device with no such peak (its ``[compute.*]`` tables say what
    it runs) is a :class:`PrecisionError` naming what it runs."""
    p = Precision.of(precision)
    name = p.activations if PRECISION_BYTES[p.activations] >= PRECISION_BYTES[p.weights] else p.weights
    for cand in SAME_WIDTH.get(name, (name,)):
        if cand in device.compute:
            return cand
    raise PrecisionError(f"{device.id} has no {name} peak (it runs: {', '.join(device.compute) or 'none'}); "
                         f"choose a precision it runs (weights {p.weights}, activations {p.activations})")


# --------------------------------------------------------------------------- counts

#: A count: a float, or a numpy array over batch and context (the two broadcast).
Num = float | np.ndarray


@dataclass(frozen=True)
class Counts:
    """FLOPs and bytes by kind; each field a float or a numpy array (they broadcast)."""

    flops: Num = 0.0
    weight: Num = 0.0
    act_read: Num = 0.0
    act_write: Num = 0.0
    kv_read: Num = 0.0
    kv_write: Num = 0.0

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(getattr(self, c) + getattr(other, c) for c in COLUMNS))

    def __mul__(self, k: Num) -> Counts:
        return Counts(*(getattr(self, c) * k for c in COLUMNS))

    __rmul__ = __mul__

    @property
    def act(self) -> Num:
        return self.act_read + self.act_write

    @property
    def kv(self) -> Num:
        return self.kv_read + self.kv_write

    @property
    def bytes(self) -> Num:
        """All bytes moved: weights + activations + KV cache."""
        return self.weight + self.act_read + self.act_write + self.kv_read + self.kv_write

    @property
    def intensity(self) -> np.ndarray:
        """Arithmetic intensity, FLOP per byte moved."""
        return np.asarray(self.flops, float) / np.asarray(self.bytes, float)

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in COLUMNS}


@dataclass(frozen=True)
class Op:
    """One operator type of one part: the ``embedding``, one layer of a kind, or the ``head``."""

    name: str        # short name: q_proj, attn_scores, ..., or experts.gate_proj in an MoE layer
    group: str       # embedding | layer | head
    kind: str        # gather | norm | matmul | attention | elementwise
    counts: Counts
    part: str = ""   # embedding | the layer's kind (``layer`` when all layers are alike) | head
    routed: bool = False  # the routed experts' work: spread over expert-parallel groups

    def __post_init__(self) -> None:
        if not self.part:
            object.__setattr__(self, "part", self.group)


# --------------------------------------------------------------------------- shapes


def _shape(phase: str, batch: npt.ArrayLike, context: npt.ArrayLike,
           tokens: npt.ArrayLike | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if phase not in PHASES:
        raise WorkloadError(f"phase {phase!r} is not one of {', '.join(PHASES)}")
    if tokens is None:
        if phase == "prefill":
            raise WorkloadError("prefill needs tokens= (the prompt length, new tokens per sequence)")
        tokens = 1
    B, P, S = (np.asarray(x, dtype=float) for x in (batch, context, tokens))
    for name, x, lo in (("batch", B, 1), ("tokens", S, 1), ("context", P, 0)):
        if np.any(~np.isfinite(x)) or np.any(x < lo) or np.any(x != np.floor(x)):
            raise WorkloadError(f"{name} must be whole numbers >= {lo}, got {x if x.ndim == 0 else x.ravel()[:5]}")
    return B, S, P


def _scalar(x: npt.ArrayLike) -> Num:
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------- model sizes


def _dims(model: Model) -> tuple[int, ...]:
    return (model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim, model.ffn_size, model.vocab_size,
            model.layers, model.experts, model.active_experts)


def layer_parameters(model: Model, active: bool = False, layer: int = 0) -> int:
    """Parameters of layer ``layer`` (all experts, or the active ones), from
    :mod:`lpulab.architecture`'s tensor table."""
    from . import architecture

    k = model.active_experts
    return sum(t.elements * (k if active and t.is_expert else t.copies) for t in architecture.layer_tensors(model, layer))


def parameter_count(model: Model, active: bool = False, *, embedding: bool = True, mtp: bool = False) -> int:
    """Parameters computed from the architecture (:func:`lpulab.architecture.parameter_count`);
    ``active=True`` counts only the active experts' FFN weights (parameters used per token),
    ``embedding=False`` leaves the input embedding table out, ``mtp=True`` adds the
    multi-token-prediction modules.

    For a dense GQA model: ``L*(h*H*dh + 2*h*G*dh + H*dh*h + (3 or 2)*h*F + 2*h) + V*h*(1 if
    tied else 2) + h``.
    """
    from . import architecture

    return architecture.parameter_count(model, active, embedding=embedding, mtp=mtp)


def weight_bytes(model: Model, precision: PrecisionLike = None) -> float:
    """Resident weight bytes: every matrix at the weight width, the norm gains, biases and
    sinks at the activation width (as counted in docs/counting.md); all experts; tied
    embeddings once; multi-token-prediction modules not included."""
    from . import architecture

    p = Precision.of(precision)
    nw, na = architecture.parameters_by_width(model)
    return float(nw * p.w + na * p.a)


def _kv_width(kv: Precision | str) -> float:
    return kv.c if isinstance(kv, Precision) else PRECISION_BYTES[_check_prec(kv, "kv")]


def _window_layers(model: Model) -> tuple[int, int, int]:
    """(full-attention layers, windowed layers, the window)."""
    win = sum(1 for i in range(model.layers) if model.layer_window(i))
    return model.layers - win, win, model.sliding_window


def kv_bytes_per_token(model: Model, kv: Precision | str = "bf16", context: npt.ArrayLike | None = None) -> Num:
    """KV-cache bytes per token of context: what every layer that attends to the whole
    context caches per token, ``2*G*dh*c`` (keys and values) or, with MLA,
    ``(kv_lora_rank + qk_rope_head_dim)*c`` (the latent and the shared rotary key).

    Windowed layers keep at most ``sliding_window`` tokens whatever the context, so they
    add nothing per token of a long context: ``context=None`` gives the full-attention
    layers' bytes per token (what the cache grows by, per token, once the context exceeds
    the window); ``context=T`` gives the cache of one sequence of ``T`` tokens divided by
    ``T``, windowed layers included (arrays broadcast)."""
    c = _kv_width(kv)
    full, win, w = _window_layers(model)
    if model.is_mla:
        per_full = float(full * model.kv_values_per_token * c)
    else:
        per_full = float(2 * full * model.kv_heads * model.head_dim * c)
    if context is None or not win:
        return per_full
    T = np.asarray(context, float)
    if np.any(~np.isfinite(T)) or np.any(T < 1):
        raise WorkloadError(f"context must be a number of tokens >= 1, got {context!r}")
    per_win = win * model.kv_values_per_token * c
    return _scalar((per_full * T + per_win * np.minimum(T, w)) / T)


def kv_bytes(model: Model, batch: npt.ArrayLike = 1, context: npt.ArrayLike | None = None,
             kv: Precision | str = "bf16") -> Num:
    """KV-cache bytes of ``batch`` sequences of ``context`` tokens each (arrays broadcast):
    the full-attention layers cache every token, windowed layers the last
    ``sliding_window``. ``kv_bytes(model, 1, context)`` is the cache of one sequence."""
    context = model.max_context if context is None else context
    _full, win, w = _window_layers(model)
    if not win:
        return _scalar(np.asarray(batch, float) * np.asarray(context, float) * kv_bytes_per_token(model, kv))
    T = np.asarray(context, float)
    per_win = win * model.kv_values_per_token * _kv_width(kv)
    return _scalar(np.asarray(batch, float) * (T * kv_bytes_per_token(model, kv) + np.minimum(T, w) * per_win))


def _check_prec(name: str, what: str) -> str:
    if name not in PRECISIONS:
        raise WorkloadError(f"{what} precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def expected_experts(model: Model, tokens: npt.ArrayLike) -> Num:
    """Expected distinct experts one layer touches when ``tokens`` tokens each pick
    ``k`` of ``E`` experts uniformly: ``E*(1-(1-k/E)^N)``; 1 for a dense model."""
    E, k = model.experts, model.active_experts
    n = np.asarray(tokens, float)
    if E == 1:
        return _scalar(np.ones_like(n))
    return _scalar(E * (1.0 - (1.0 - k / E) ** n))


def expert_groups(model: Model, groups: int) -> list[int]:
    """Routed experts held by each of ``groups`` expert-parallel groups (numpy.array_split
    sizes: the first groups hold one more when ``groups`` does not divide ``experts``)."""
    if isinstance(groups, bool) or int(groups) != groups or groups < 1:
        raise WorkloadError(f"expert groups must be a whole number >= 1, got {groups!r}")
    groups = int(groups)
    if groups > 1 and not model.is_moe:
        raise WorkloadError(f"{model.id} is dense: it has no experts to spread over {groups} groups")
    if groups > model.experts:
        raise WorkloadError(f"{groups} expert groups but {model.id} has {model.experts} experts; use at most "
                            f"{model.experts}")
    q, r = divmod(model.experts, groups)
    return [q + 1 if g < r else q for g in range(groups)]


def expected_expert_groups(model: Model, groups: int) -> float:
    """Expected distinct expert-parallel groups one token's ``k`` experts fall in (chosen
    uniformly without replacement from ``E``): ``sum_g 1 - C(E - m_g, k) / C(E, k)`` with
    ``m_g`` experts in group ``g``. What a token's activations are sent to in a dispatch."""
    import math

    E, k = model.experts, model.active_experts
    total = math.comb(E, k)
    return float(sum(1.0 - math.comb(E - m, k) / total for m in expert_groups(model, groups)))


# --------------------------------------------------------------------------- operators


def _C(flops: Num = 0.0, weight: Num = 0.0, ar: Num = 0.0, aw: Num = 0.0, kr: Num = 0.0, kw: Num = 0.0) -> Counts:
    return Counts(flops, weight, ar, aw, kr, kw)


def _tensor_op(model: Model, p: Precision, t: TensorSpec, part: str, one: Num, N: Num, R: Num, D: Num,
               T: Num | None = None, specs: Mapping[str, TensorSpec] | None = None, name: str | None = None) -> Op:
    """A norm gain or a matrix product from its row of the tensor table (and its bias, when
    the table has one: the add is fused into the product)."""
    a, w, c = p.a, p.w, p.c
    if t.role == "norm":
        n = t.shape[0]
        return Op(name or t.name, t.group, "norm", _C(RMSNORM_FLOPS * N * n, n * a * one, N * n * a, N * n * a), part)
    out_dim, in_dim = t.shape
    rows = {"token": N, "expert": T, "row": R}[t.tokens]
    assert rows is not None                  # an expert tensor comes with T
    reads = D if t.is_expert else one        # a routed expert's weights are read if a token picks it
    width = w if t.width == "weight" else a
    wr = _C(2 * rows * in_dim * out_dim, out_dim * in_dim * width * reads, rows * in_dim * a)
    if t.output == "kv":
        cnt = wr + _C(kw=rows * out_dim * c)
    else:
        cnt = wr + _C(aw=rows * out_dim * a)
    b = (specs or {}).get(t.name + ".bias")
    if b is not None:
        cnt = cnt + _C(rows * out_dim, out_dim * a * reads)
    return Op(name or t.name, t.group, "matmul", cnt, part, t.is_expert)


def _embedding_ops(model: Model, p: Precision, one: Num, N: Num, K: Num, KVT: Num, R: Num, D: Num) -> list[Op]:
    h = model.hidden_size
    return [Op("embedding", "embedding", "gather", _C(0, N * h * p.w, 0, N * h * p.a))]


def _head_ops(model: Model, p: Precision, one: Num, N: Num, K: Num, KVT: Num, R: Num, D: Num) -> list[Op]:
    from . import architecture

    head = {t.role: t for t in architecture.head_tensors(model)}
    return [_tensor_op(model, p, head["norm"], "head", one, N, R, D, name="final_norm"),
            _tensor_op(model, p, head["matmul"], "head", one, N, R, D, name="lm_head")]


def _layer_ops(model: Model, p: Precision, phase: str, kind: LayerKind, one: Num, N: Num, K: Num, KVT: Num, R: Num,
               D: Num) -> list[Op]:
    """docs/counting.md, written once, for one layer of ``kind``. Every count is linear in
    the terms ``one`` (1), ``N = B*S``, ``K = K_att`` (of this kind: a windowed layer
    attends to at most its window), ``KVT`` (cached tokens read), ``R = B`` and ``D``
    (distinct experts touched; 1 for a dense model): :func:`op_counts` passes their values,
    :func:`parts` passes unit vectors to read off each count's coefficients.

    Weight tensors (norm gains and matrix products) come from the one tensor table,
    :mod:`lpulab.architecture`; the work between them (rotary embedding, attention,
    activation, residual adds) is counted here from the same dimensions."""
    from . import architecture

    h, H, G, dh = model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim
    k = model.active_experts
    w, a, c = p.w, p.a, p.c
    part = kind.name
    specs = {t.name: t for t in architecture.layer_tensors(model, kind.layers[0])}
    T = N * k                                    # token visits to the routed experts

    def op(name: str, opkind: str, counts: Counts, routed: bool = False) -> Op:
        return Op(name, "layer", opkind, counts, part, routed)

    def tensor_op(name: str) -> Op:
        return _tensor_op(model, p, specs[name], part, one, N, R, D, T, specs)

    def residual(name: str) -> Op:
        return op(name, "elementwise", _C(RESIDUAL_FLOPS * N * h, 0, 2 * N * h * a, N * h * a))

    lay = [tensor_op("attn_norm")]
    if model.is_mla:
        nope, rope, vd, kl = model.qk_nope_head_dim, model.qk_rope_head_dim, model.v_head_dim, model.kv_lora_rank
        qk = nope + rope
        lay += [tensor_op(n) for n in (("q_a_proj", "q_a_norm", "q_b_proj") if model.q_lora_rank else ("q_proj",))]
        lay += [tensor_op("kv_a_proj"), tensor_op("kv_a_norm"),
                op("rope", "elementwise", _C(ROPE_FLOPS * N * (H * rope + rope), 0, N * (H * rope + rope) * a,
                                             N * (H * rope + rope) * a))]
        up = H * (nope + vd) * kl                # the per-head up-projection of keys and values
        if phase == "decode":                    # absorbed: W_UK into the query, W_UV into the output
            lay += [op("kv_b_proj", "matmul", _C(2 * N * up, up * w * one, N * H * (nope + kl) * a, N * H * (kl + vd) * a)),
                    op("attn_scores", "attention", _C(2 * (kl + rope) * H * K, 0, N * H * (kl + rope) * a, H * K * a,
                                                      KVT * (kl + rope) * c)),
                    op("softmax", "attention", _C(SOFTMAX_FLOPS * H * K, 0, H * K * a, H * K * a)),
                    op("attn_values", "attention", _C(2 * kl * H * K, 0, H * K * a, N * H * kl * a))]
        else:                                    # decompressed: keys and values per head for every cached token
            lay += [op("kv_b_proj", "matmul", _C(2 * KVT * up, up * w * one, 0, KVT * H * (nope + vd) * a, KVT * kl * c)),
                    op("attn_scores", "attention", _C(2 * qk * H * K, 0, N * H * qk * a + KVT * H * (nope + vd) * a,
                                                      H * K * a, KVT * rope * c)),
                    op("softmax", "attention", _C(SOFTMAX_FLOPS * H * K, 0, H * K * a, H * K * a)),
                    op("attn_values", "attention", _C(2 * vd * H * K, 0, H * K * a, N * H * vd * a))]
    else:
        q, kvd = H * dh, G * dh
        sm = _C(SOFTMAX_FLOPS * H * K, 0, H * K * a, H * K * a)
        if "sinks" in specs:                     # one more logit per query and head
            sm = sm + _C(SOFTMAX_FLOPS * H * N, H * a * one)
        lay += [tensor_op(n) for n in ("q_proj", "k_proj", "v_proj")]
        lay += [
            op("rope", "elementwise", _C(ROPE_FLOPS * N * (q + kvd), 0, N * (q + kvd) * a, N * (q + kvd) * a)),
            op("attn_scores", "attention", _C(2 * dh * H * K, 0, N * q * a, H * K * a, KVT * kvd * c)),
            op("softmax", "attention", sm),
            op("attn_values", "attention", _C(2 * dh * H * K, 0, H * K * a, N * q * a, KVT * kvd * c)),
        ]
    lay += [tensor_op("o_proj"), residual("attn_residual"), tensor_op("ffn_norm")]

    def ffn(pre: str, size: int, rows: Num, routed: bool) -> list[Op]:
        if model.ffn_gated:
            return [tensor_op(pre + "gate_proj"), tensor_op(pre + "up_proj"),
                    op(pre + "silu_mul", "elementwise",
                       _C(SILU_MUL_FLOPS * rows * size, 0, 2 * rows * size * a, rows * size * a), routed),
                    tensor_op(pre + "down_proj")]
        return [tensor_op(pre + "up_proj"),
                op(pre + "activation", "elementwise", _C(ACT_FLOPS * rows * size, 0, rows * size * a, rows * size * a),
                   routed),
                tensor_op(pre + "down_proj")]

    if kind.moe:
        lay.append(tensor_op("router"))
        lay += ffn("experts.", model.expert_ffn_size, T, True)
        if model.shared_experts:
            lay += ffn("shared_experts.", model.shared_experts * model.expert_ffn_size, N, False)
    else:
        lay += ffn("", model.ffn_size, N, False)
    lay.append(residual("ffn_residual"))
    return lay


def _part_ops(model: Model, p: Precision, phase: str, part: str, terms: Sequence[Num]) -> list[Op]:
    from . import architecture

    if part == "embedding":
        return _embedding_ops(model, p, *terms)
    if part == "head":
        return _head_ops(model, p, *terms)
    kind = {k.name: k for k in architecture.layer_kinds(model)}[part]
    return _layer_ops(model, p, phase, kind, *terms)


def _kv_terms(B: Num, S: Num, P: Num, window: int) -> tuple[Num, Num]:
    """Attended (query, key) pairs per head and cached tokens read, for a layer attending
    to at most ``window`` keys (0: all). The i-th new token (position P+i, i = 1..S)
    attends to ``min(P+i, window)`` keys."""
    if not window:
        return B * (S * P + S * (S + 1) / 2), B * (P + S)
    m = np.clip(window - P, 0, S)                # new tokens that still see the whole context
    K = B * (m * (P + 1) + m * (m - 1) / 2 + (S - m) * window)
    return K, B * np.minimum(P + S, S + window - 1)


def _terms(model: Model, phase: str, batch: npt.ArrayLike, context: npt.ArrayLike,
           tokens: npt.ArrayLike | None) -> dict:
    """Values of the terms (one, N, K, KVT, R, D) for a shape, per part (embedding, each
    layer kind, head), as broadcast float arrays."""
    from . import architecture

    B, S, P = _shape(phase, batch, context, tokens)
    N = B * S
    D = np.asarray(expected_experts(model, N) if model.is_moe else 1.0, float)
    K, KVT = _kv_terms(B, S, P, 0)
    base = (1.0, N, K, KVT, B, D)
    out = {"embedding": base}
    for kind in architecture.layer_kinds(model):
        out[kind.name] = base if not kind.window else (1.0, N, *_kv_terms(B, S, P, kind.window), B, D)
    out["head"] = base
    return out


def op_counts(model: Model, phase: str = "decode", batch: npt.ArrayLike = 1, context: npt.ArrayLike = 0,
              tokens: npt.ArrayLike | None = None, precision: PrecisionLike = None) -> list[Op]:
    """The operators of the embedding, of ONE layer of each kind and of the head, with
    counts broadcast over ``batch``, ``context``, ``tokens``; ``Op.part`` names the part
    (``layer`` when all layers are alike).

    The model's totals are ``embedding + sum over kinds (layers of the kind * layer) + head``;
    see :func:`totals`.
    """
    p = Precision.of(precision)
    terms = _terms(model, phase, batch, context, tokens)
    out = []
    for part, t in terms.items():
        out += _part_ops(model, p, phase, part, t)
    return out


def parts(model: Model, phase: str = "decode", batch: npt.ArrayLike = 1, context: npt.ArrayLike = 0,
          tokens: npt.ArrayLike | None = None, precision: PrecisionLike = None) -> dict[str, Counts]:
    """Counts of the ``embedding``, of ONE layer of each kind (keyed by the kind's name:
    ``layer`` when all layers are alike, see :func:`lpulab.architecture.layer_kinds`) and of
    the ``head`` (final norm + LM head), vectorised. A pipeline stage holding ``n_k`` layers
    of each kind ``k`` costs ``sum_k n_k * parts[k]``.

    Each count is read off the formulas as coefficients of the six terms and evaluated as
    one dot product per field: a million configurations cost a few dozen array operations.
    """
    p = Precision.of(precision)
    unit = np.eye(6)
    sym = (unit[0], unit[1], unit[2], unit[3], unit[4], unit[5] if model.is_moe else unit[0])
    terms = _terms(model, phase, batch, context, tokens)
    shape = _broadcast_shape(batch, context, tokens)
    out = {}
    for part, vals in terms.items():
        m = None
        for op in _part_ops(model, p, phase, part, sym):
            x = np.array([np.broadcast_to(np.asarray(getattr(op.counts, col), float), (6,)) for col in COLUMNS])
            m = x if m is None else m + x
        fields = []
        for row in m:  # type: ignore[union-attr]  # every part has at least one op
            acc = 0.0
            for cval, t in zip(row, vals):
                if cval:
                    acc = acc + cval * t
            fields.append(acc)
        out[part] = _full(Counts(*fields), shape)
    return out


def _broadcast_shape(batch: npt.ArrayLike, context: npt.ArrayLike, tokens: npt.ArrayLike | None) -> tuple[int, ...]:
    return np.broadcast_shapes(np.shape(batch), np.shape(context), np.shape(1 if tokens is None else tokens))


def _full(c: Counts, shape: tuple[int, ...]) -> Counts:
    """Every field as a float (scalar shape) or a float array of the full broadcast shape."""
    if shape == ():
        return Counts(*(float(getattr(c, col)) for col in COLUMNS))
    return Counts(*(np.broadcast_to(np.asarray(getattr(c, col), float), shape).copy() for col in COLUMNS))


def totals(model: Model, phase: str = "decode", batch: npt.ArrayLike = 1, context: npt.ArrayLike = 0,
           tokens: npt.ArrayLike | None = None, precision: PrecisionLike = None) -> Counts:
    """FLOPs and bytes of one step of the whole model, for arrays of batch, context and
    tokens in one call: ``embedding + sum over layer kinds (count * layer) + head``. Equals
    the sum of :func:`op_table` (a test checks it)."""
    from . import architecture

    pt = parts(model, phase, batch, context, tokens, precision)
    acc = pt["embedding"]
    for kind in architecture.layer_kinds(model):
        acc = acc + pt[kind.name] * kind.count
    return acc + pt["head"]


def op_table(model: Model, phase: str = "decode", batch: int = 1, context: int = 0, tokens: int | None = None,
             precision: PrecisionLike = None) -> pd.DataFrame:
    """One row per operator of one step, for one shape.

    Columns: ``op`` (full name as in docs/counting.md: ``embedding``, ``layers.3.q_proj``,
    ``layers.3.experts.gate_proj`` in an MoE layer, ``final_norm``, ``lm_head``), ``layer``
    (nullable int; <NA> for embedding and head), ``type`` (the short name), ``group``,
    ``kind``, then ``flops``, ``weight``, ``act_read``, ``act_write``, ``kv_read``, ``kv_write``.
    """
    from . import architecture

    for name, x in (("batch", batch), ("context", context), ("tokens", tokens)):
        if x is not None and np.ndim(x) != 0:
            raise WorkloadError(f"op_table takes one shape; {name} is an array (use totals() for sweeps)")
    ops = op_counts(model, phase, batch, context, tokens, precision)
    kinds = {k.name: k.layers for k in architecture.layer_kinds(model)}
    rows = []
    for op in ops:
        vals = [float(getattr(op.counts, col)) for col in COLUMNS]
        if op.group == "layer":
            rows += [[f"layers.{i}.{op.name}", i, op.name, op.group, op.kind, *vals] for i in kinds[op.part]]
        else:
            rows.append([op.name, None, op.name, op.group, op.kind, *vals])
    df = pd.DataFrame(rows, columns=["op", "layer", "type", "group", "kind", *COLUMNS])
    # layer order: embedding, layer 0 ops, layer 1 ops, ..., head
    order = {"embedding": -1, "head": model.layers}
    df["_g"] = [order.get(g, lay) for g, lay in zip(df["group"], df["layer"])]
    df = df.sort_values("_g", kind="stable").drop(columns="_g").reset_index(drop=True)
    df["layer"] = df["layer"].astype("Int64")
    return df


# --------------------------------------------------------------------------- working set


def activation_bytes(model: Model, phase: str = "decode", batch: npt.ArrayLike = 1, context: npt.ArrayLike = 0,
                     tokens: npt.ArrayLike | None = None, precision: PrecisionLike = None) -> Num:
    """Activation working-set estimate of one step, bytes (vectorised).

    The residual stream (``N*h*a``, live across every op) plus the largest single op's
    activation input and output (``act_read + act_write``). Attention scores count as
    materialised, as in docs/counting.md, so a long prefill's ``H*K_att`` scores dominate.
    """
    p = Precision.of(precision)
    B, S, _P = _shape(phase, batch, context, tokens)
    biggest = None
    for op in op_counts(model, phase, batch, context, tokens, p):
        x = np.asarray(op.counts.act_read + op.counts.act_write, float)
        biggest = x if biggest is None else np.maximum(biggest, x)
    return _scalar(B * S * model.hidden_size * p.a + biggest)
