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

from dataclasses import dataclass, fields
from typing import Mapping

import numpy as np
import pandas as pd

from .catalog import PRECISION_BYTES, Model

PHASES = ("prefill", "decode")
#: Precisions a workload may store weights, activations or the KV cache in.
PRECISIONS = ("fp32", "bf16", "fp16", "fp8", "int8", "int4")
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

    def __post_init__(self):
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
    def of(cls, spec=None) -> "Precision":
        """A Precision from a Precision, ``None`` (bf16 throughout), one name for all three
        (``"int8"``), a mapping ``{weights, activations, kv}`` or a 3-tuple."""
        if spec is None:
            return cls()
        if isinstance(spec, cls):
            return spec
        if isinstance(spec, str):
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


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class Counts:
    """FLOPs and bytes by kind; each field a float or a numpy array (they broadcast)."""

    flops: object = 0.0
    weight: object = 0.0
    act_read: object = 0.0
    act_write: object = 0.0
    kv_read: object = 0.0
    kv_write: object = 0.0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(getattr(self, c) + getattr(other, c) for c in COLUMNS))

    def __mul__(self, k) -> "Counts":
        return Counts(*(getattr(self, c) * k for c in COLUMNS))

    __rmul__ = __mul__

    @property
    def act(self):
        return self.act_read + self.act_write

    @property
    def kv(self):
        return self.kv_read + self.kv_write

    @property
    def bytes(self):
        """All bytes moved: weights + activations + KV cache."""
        return self.weight + self.act_read + self.act_write + self.kv_read + self.kv_write

    @property
    def intensity(self):
        """Arithmetic intensity, FLOP per byte moved."""
        return np.asarray(self.flops, float) / np.asarray(self.bytes, float)

    def as_dict(self) -> dict:
        return {c: getattr(self, c) for c in COLUMNS}


@dataclass(frozen=True)
class Op:
    """One operator type of one group (``embedding``, one ``layer``, or the ``head``)."""

    name: str        # short name: q_proj, attn_scores, ..., or experts.gate_proj in an MoE layer
    group: str       # embedding | layer | head
    kind: str        # gather | norm | matmul | attention | elementwise
    counts: Counts


# --------------------------------------------------------------------------- shapes


def _shape(phase: str, batch, context, tokens):
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


def _scalar(x):
    x = np.asarray(x)
    return float(x) if x.ndim == 0 else x


# --------------------------------------------------------------------------- model sizes


def _dims(model: Model):
    return (model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim, model.ffn_size, model.vocab_size,
            model.layers, model.experts, model.active_experts)


def layer_parameters(model: Model, active: bool = False) -> int:
    """Parameters of one transformer layer (all experts, or the active ones), from
    :mod:`lpulab.architecture`'s tensor table."""
    from . import architecture

    k = model.active_experts
    return sum(t.elements * (k if active and t.is_expert else t.copies) for t in architecture.layer_tensors(model, 0))


def parameter_count(model: Model, active: bool = False) -> int:
    """Parameters computed from the architecture (:func:`lpulab.architecture.parameter_count`);
    ``active=True`` counts only the active experts' FFN weights (parameters used per token).

    ``L*(h*H*dh + 2*h*G*dh + H*dh*h + E*(3 or 2)*h*F + (h*E if E>1) + 2*h) + V*h*(1 if
    tied else 2) + h``.
    """
    from . import architecture

    return architecture.parameter_count(model, active)


def weight_bytes(model: Model, precision=None) -> float:
    """Resident weight bytes: every matrix at the weight width, the norm gains at the
    activation width (as counted in docs/counting.md); all experts; tied embeddings once."""
    p = Precision.of(precision)
    h, L = model.hidden_size, model.layers
    gains = L * 2 * h + h
    return float((parameter_count(model) - gains) * p.w + gains * p.a)


def kv_bytes_per_token(model: Model, kv="bf16") -> float:
    """KV-cache bytes one token adds: keys and values of every layer, ``2*L*G*dh*c``."""
    c = kv.c if isinstance(kv, Precision) else PRECISION_BYTES[_check_prec(kv, "kv")]
    return float(2 * model.layers * model.kv_heads * model.head_dim * c)


def kv_bytes(model: Model, batch=1, context=None, kv="bf16"):
    """KV-cache bytes of ``batch`` sequences of ``context`` tokens each (arrays broadcast).
    ``kv_bytes(model, 1, context)`` is the cache of one sequence."""
    context = model.max_context if context is None else context
    return _scalar(np.asarray(batch, float) * np.asarray(context, float) * kv_bytes_per_token(model, kv))


def _check_prec(name: str, what: str) -> str:
    if name not in PRECISIONS:
        raise WorkloadError(f"{what} precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def expected_experts(model: Model, tokens):
    """Expected distinct experts one layer touches when ``tokens`` tokens each pick
    ``k`` of ``E`` experts uniformly: ``E*(1-(1-k/E)^N)``; 1 for a dense model."""
    E, k = model.experts, model.active_experts
    n = np.asarray(tokens, float)
    if E == 1:
        return _scalar(np.ones_like(n))
    return _scalar(E * (1.0 - (1.0 - k / E) ** n))


# --------------------------------------------------------------------------- operators


def _formulas(model: Model, p: Precision, one, N, K, KVT, R, D) -> list[Op]:
    """docs/counting.md, written once. Every count is linear in the terms ``one`` (1),
    ``N = B*S``, ``K = K_att``, ``KVT = B*(P+S)`` (cached tokens read), ``R = B`` and
    ``D`` (distinct experts touched; 1 for a dense model): :func:`op_counts` passes their
    values, :func:`parts` passes unit vectors to read off each count's coefficients.

    Weight tensors (norm gains and matrix products) come from the one tensor table,
    :mod:`lpulab.architecture`; the work between them (rotary embedding, attention,
    activation, residual adds) is counted here from the same dimensions."""
    from . import architecture

    h, H, G, dh, F, V, L, E, k = _dims(model)
    w, a, c = p.w, p.a, p.c
    q, kvd = H * dh, G * dh
    T = N * k if model.is_moe else N            # token visits to the FFN's experts

    def C(flops=0.0, weight=0.0, ar=0.0, aw=0.0, kr=0.0, kw=0.0):
        return Counts(flops, weight, ar, aw, kr, kw)

    def tensor_op(t: architecture.TensorSpec, name: str | None = None) -> Op:
        if t.role == "norm":
            n = t.shape[0]
            return Op(name or t.name, t.group, "norm", C(RMSNORM_FLOPS * N * n, n * a * one, N * n * a, N * n * a))
        out_dim, in_dim = t.shape
        rows = {"token": N, "expert": T, "row": R}[t.tokens]
        reads = D if t.is_expert else one        # a routed expert's weights are read if a token picks it
        width = w if t.width == "weight" else a
        wr = C(2 * rows * in_dim * out_dim, out_dim * in_dim * width * reads, rows * in_dim * a)
        if t.output == "kv":
            return Op(name or t.name, t.group, "matmul", wr + C(kw=rows * out_dim * c))
        return Op(name or t.name, t.group, "matmul", wr + C(aw=rows * out_dim * a))

    def residual(name):
        return Op(name, "layer", "elementwise", C(RESIDUAL_FLOPS * N * h, 0, 2 * N * h * a, N * h * a))

    specs = {t.name: t for t in architecture.layer_tensors(model, 0)}
    pre = "experts." if model.is_moe else ""
    out = [Op("embedding", "embedding", "gather", C(0, N * h * w, 0, N * h * a))]
    lay = [tensor_op(specs[n]) for n in ("attn_norm", "q_proj", "k_proj", "v_proj")]
    lay += [
        Op("rope", "layer", "elementwise", C(ROPE_FLOPS * N * (q + kvd), 0, N * (q + kvd) * a, N * (q + kvd) * a)),
        Op("attn_scores", "layer", "attention", C(2 * dh * H * K, 0, N * q * a, H * K * a, KVT * kvd * c)),
        Op("softmax", "layer", "attention", C(SOFTMAX_FLOPS * H * K, 0, H * K * a, H * K * a)),
        Op("attn_values", "layer", "attention", C(2 * dh * H * K, 0, H * K * a, N * q * a, KVT * kvd * c)),
        tensor_op(specs["o_proj"]),
        residual("attn_residual"),
        tensor_op(specs["ffn_norm"]),
    ]
    if model.is_moe:
        lay.append(tensor_op(specs["router"]))
    if model.ffn_gated:
        lay += [tensor_op(specs[pre + "gate_proj"]), tensor_op(specs[pre + "up_proj"]),
                Op(pre + "silu_mul", "layer", "elementwise", C(SILU_MUL_FLOPS * T * F, 0, 2 * T * F * a, T * F * a))]
    else:
        lay += [tensor_op(specs[pre + "up_proj"]),
                Op(pre + "activation", "layer", "elementwise", C(ACT_FLOPS * T * F, 0, T * F * a, T * F * a))]
    lay += [tensor_op(specs[pre + "down_proj"]), residual("ffn_residual")]
    out += lay
    head = {t.role: t for t in architecture.head_tensors(model)}
    out += [tensor_op(head["norm"], "final_norm"), tensor_op(head["matmul"], "lm_head")]
    return out


def _terms(model: Model, phase, batch, context, tokens):
    """Values of the terms (one, N, K, KVT, R, D) for a shape, as broadcast float arrays."""
    B, S, P = _shape(phase, batch, context, tokens)
    N = B * S
    D = expected_experts(model, N) if model.is_moe else 1.0
    return 1.0, N, B * (S * P + S * (S + 1) / 2), B * (P + S), B, np.asarray(D, float)


def op_counts(model: Model, phase: str = "decode", batch=1, context=0, tokens=None, precision=None) -> list[Op]:
    """The operators of the embedding, of ONE transformer layer (all layers are alike) and
    of the head, with counts broadcast over ``batch``, ``context``, ``tokens``.

    The model's totals are ``embedding + layers * layer + head``; see :func:`totals`.
    """
    return _formulas(model, Precision.of(precision), *_terms(model, phase, batch, context, tokens))


def parts(model: Model, phase: str = "decode", batch=1, context=0, tokens=None, precision=None) -> dict[str, Counts]:
    """Counts of the ``embedding``, of ONE ``layer`` and of the ``head`` (final norm + LM
    head), vectorised. A pipeline stage holding layers i..j costs ``(j-i+1) * layer``.

    Each count is read off the formulas as coefficients of the six terms and evaluated as
    one dot product per field: a million configurations cost a few dozen array operations.
    """
    p = Precision.of(precision)
    unit = np.eye(6)
    basis = _formulas(model, p, unit[0], unit[1], unit[2], unit[3], unit[4], unit[5] if model.is_moe else unit[0])
    coef: dict[str, np.ndarray] = {}
    for op in basis:
        m = np.array([np.broadcast_to(np.asarray(getattr(op.counts, col), float), (6,)) for col in COLUMNS])
        coef[op.group] = coef[op.group] + m if op.group in coef else m
    terms = _terms(model, phase, batch, context, tokens)
    shape = _broadcast_shape(batch, context, tokens)
    out = {}
    for g, m in coef.items():
        fields = []
        for row in m:
            acc = 0.0
            for cval, t in zip(row, terms):
                if cval:
                    acc = acc + cval * t
            fields.append(acc)
        out[g] = _full(Counts(*fields), shape)
    return out


def _broadcast_shape(batch, context, tokens):
    return np.broadcast_shapes(np.shape(batch), np.shape(context), np.shape(1 if tokens is None else tokens))


def _full(c: Counts, shape) -> Counts:
    """Every field as a float (scalar shape) or a float array of the full broadcast shape."""
    if shape == ():
        return Counts(*(float(getattr(c, col)) for col in COLUMNS))
    return Counts(*(np.broadcast_to(np.asarray(getattr(c, col), float), shape).copy() for col in COLUMNS))


def totals(model: Model, phase: str = "decode", batch=1, context=0, tokens=None, precision=None) -> Counts:
    """FLOPs and bytes of one step of the whole model, for arrays of batch, context and
    tokens in one call: ``embedding + L * layer + head``. Equals the sum of
    :func:`op_table` (a test checks it)."""
    pt = parts(model, phase, batch, context, tokens, precision)
    return pt["embedding"] + pt["layer"] * model.layers + pt["head"]


def op_table(model: Model, phase: str = "decode", batch: int = 1, context: int = 0, tokens: int | None = None,
             precision=None) -> pd.DataFrame:
    """One row per operator of one step, for one shape.

    Columns: ``op`` (full name as in docs/counting.md: ``embedding``, ``layers.3.q_proj``,
    ``layers.3.experts.gate_proj`` in an MoE layer, ``final_norm``, ``lm_head``), ``layer``
    (nullable int; <NA> for embedding and head), ``type`` (the short name), ``group``,
    ``kind``, then ``flops``, ``weight``, ``act_read``, ``act_write``, ``kv_read``, ``kv_write``.
    """
    for name, x in (("batch", batch), ("context", context), ("tokens", tokens)):
        if x is not None and np.ndim(x) != 0:
            raise WorkloadError(f"op_table takes one shape; {name} is an array (use totals() for sweeps)")
    ops = op_counts(model, phase, batch, context, tokens, precision)
    rows = []
    for op in ops:
        vals = [float(getattr(op.counts, col)) for col in COLUMNS]
        if op.group == "layer":
            rows += [[f"layers.{i}.{op.name}", i, op.name, op.group, op.kind, *vals] for i in range(model.layers)]
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


def activation_bytes(model: Model, phase: str = "decode", batch=1, context=0, tokens=None, precision=None):
    """Activation working-set estimate of one step, bytes (vectorised).

    The residual stream (``N*h*a``, live across every op) plus the largest single op's
    activation input and output (``act_read + act_write``). Attention scores count as
    materialised, as in docs/counting.md, so a long prefill's ``H*K_att`` scores dominate.
    """
    p = Precision.of(precision)
    B, S, P = _shape(phase, batch, context, tokens)
    biggest = None
    for op in op_counts(model, phase, batch, context, tokens, p):
        x = np.asarray(op.counts.act_read + op.counts.act_write, float)
        biggest = x if biggest is None else np.maximum(biggest, x)
    return _scalar(B * S * model.hidden_size * p.a + biggest)
