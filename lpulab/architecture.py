"""The one description of a model's weight tensors.

Every weight a decoder holds is listed here once, with what the rest of lpulab needs to
know about it: its shape in the model's dimensions (matrices stored ``(out, in)``, as the
numpy kernels hold them), the axis a tensor-parallel split cuts, whether it is stored at
the weights' precision or the activations' (norm gains, biases, sinks), which tokens
multiply it (every token, the tokens routed to one expert, or the rows reaching the LM
head), where its output goes (activations or the KV cache), how many copies a layer holds
(routed experts) and its llama.cpp (GGUF) name. From this table:

- :mod:`lpulab.workload` counts every matrix product's FLOPs and bytes,
- :mod:`lpulab.placement` places every tensor on chips,
- :mod:`lpulab.kernels` builds the numpy decoder's weights, its sharding plan and its GGUF
  name map.

The non-weight work of a layer (rotary embedding, attention scores and values, softmax,
the gated activation, residual adds) is counted in :mod:`lpulab.workload` from the same
dimensions.

Layers are not all alike. A layer's *kind* (:func:`layer_kinds`) is what sets its tensors
and its work: a dense or a mixture-of-experts FFN (``first_dense_layers``), full or windowed
attention (``sliding_window_layers``). A model whose layers are all alike has one kind,
named ``layer``; otherwise the kinds are named by what differs (``dense``/``moe``,
``window``/``full``, or both: ``moe.window``).

Names: ``embed_tokens``; per layer ``attn_norm``, ``q_proj``, ``k_proj``, ``v_proj``,
``o_proj`` (with ``attention_bias``: ``q_proj.bias`` ...; with ``attention_sinks``:
``sinks``), or, with multi-head latent attention, ``q_a_proj``, ``q_a_norm``, ``q_b_proj``
(``q_proj`` when ``q_lora_rank`` is 0), ``kv_a_proj`` (its output, the latent and the
shared rotary key, is what the cache holds), ``kv_a_norm``, ``kv_b_proj`` (the per-head
up-projection of keys and values), ``o_proj``; then ``ffn_norm``, ``gate_proj``,
``up_proj``, ``down_proj`` (a mixture-of-experts layer has ``router`` (+ ``router.bias``),
``experts.{e}.gate_proj`` ... (+ ``.bias``) and ``shared_experts.gate_proj`` ...);
``final_norm``; ``lm_head`` (absent when the embeddings are tied: the head reads
``embed_tokens``). A multi-token-prediction module (:func:`mtp_tensors`) is listed in its
own group ``mtp`` and is not part of the served model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .catalog import Model

GROUPS = ("embedding", "layer", "head", "mtp")
ROLES = ("gather", "norm", "matmul", "router", "bias", "sink")
#: What multiplies a tensor's work: every token, tokens routed to one expert, rows at the LM head, none.
TOKENS = ("token", "expert", "row", "none")
WIDTHS = ("weight", "activation")
OUTPUTS = ("act", "kv", "none")


@dataclass(frozen=True)
class TensorSpec:
    """One weight tensor (or, for routed experts, one tensor of each of ``copies`` experts)."""

    name: str                     # short name within its group: q_proj, experts.gate_proj, lm_head
    group: str                    # embedding | layer | head | mtp
    role: str                     # gather | norm | matmul | router | bias | sink
    shape: tuple[int, ...]        # (out, in) for a matrix
    split_axis: int               # the axis a tensor-parallel split cuts
    width: str = "weight"         # weight | activation: the precision it is stored at
    tokens: str = "token"         # what multiplies its FLOPs (see TOKENS)
    output: str = "act"           # act | kv | none: where a product's output goes
    copies: int = 1               # routed experts: how many such tensors a layer holds
    gguf: str = ""                # llama.cpp tensor name, "{i}" for the layer

    @property
    def elements(self) -> int:
        """Values of one copy."""
        return math.prod(self.shape)

    @property
    def is_expert(self) -> bool:
        """A routed expert's tensor: one copy per expert, used by the tokens routed to it."""
        return self.copies > 1 or self.tokens == "expert"

    def names(self, layer: int | None = None) -> list[str]:
        """Full names of every copy: ``layers.3.q_proj``; ``layers.3.experts.7.gate_proj``."""
        pre = "" if layer is None else f"layers.{layer}."
        if self.is_expert:
            base = self.name.split(".", 1)[1] if self.name.startswith("experts.") else self.name
            return [f"{pre}experts.{e}.{base}" for e in range(self.copies)]
        return [pre + self.name]


@dataclass(frozen=True)
class LayerKind:
    """Layers that share their tensors and their work: a dense or MoE FFN, full or windowed
    attention (``window`` tokens; 0 for full)."""

    name: str
    layers: tuple[int, ...]
    moe: bool
    window: int

    @property
    def count(self) -> int:
        return len(self.layers)


def layer_kinds(model: Model) -> tuple[LayerKind, ...]:
    """The model's kinds of layer, in the order of their first layer. One kind named
    ``layer`` when all layers are alike; otherwise named by what differs (``dense``/``moe``,
    ``window``/``full``, joined by a dot when both differ)."""
    groups: dict[tuple[bool, int], list[int]] = {}
    for i in range(model.layers):
        groups.setdefault((model.layer_is_moe(i), model.layer_window(i)), []).append(i)
    keys = list(groups)
    if len(keys) == 1:
        (moe, win), = keys
        return (LayerKind("layer", tuple(groups[keys[0]]), moe, win),)
    ffn_varies = len({k[0] for k in keys}) > 1
    att_varies = len({k[1] for k in keys}) > 1
    out = []
    for moe, win in keys:
        parts = ([("moe" if moe else "dense")] if ffn_varies else []) + ([("window" if win else "full")] if att_varies else [])
        out.append(LayerKind(".".join(parts), tuple(groups[(moe, win)]), moe, win))
    return tuple(out)


def kind_of(model: Model, layer: int) -> LayerKind:
    """The kind of layer ``layer``."""
    for k in layer_kinds(model):
        if layer in k.layers:
            return k
    raise ValueError(f"layer {layer!r} is not in 0..{model.layers - 1} for {model.id}")


def _bias(of: TensorSpec, axis_out: int = 0) -> TensorSpec:
    """The bias of a matrix ``of``: one value per output, stored like a norm gain; a
    row-parallel matrix's bias is added after its all-reduce but is counted split like it."""
    gguf = of.gguf.replace(".weight", ".bias") if of.gguf else ""
    return TensorSpec(of.name + ".bias", of.group, "bias", (of.shape[0],), 0, width="activation", tokens=of.tokens,
                      output="none", copies=of.copies, gguf=gguf)


def _ffn(model: Model, prefix: str, size: int, copies: int, tokens: str, gguf_suffix: str, bias: bool,
         group: str = "layer") -> list[TensorSpec]:
    h = model.hidden_size
    names = ("gate_proj", "up_proj", "down_proj") if model.ffn_gated else ("up_proj", "down_proj")
    gg = {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    out = []
    for n in names:
        shape, axis = ((h, size), 1) if n == "down_proj" else ((size, h), 0)
        t = TensorSpec(prefix + n, group, "matmul", shape, axis, tokens=tokens, copies=copies,
                       gguf=f"blk.{{i}}.{gg[n]}{gguf_suffix}.weight")
        out.append(t)
        if bias:
            out.append(_bias(t))
    return out


def _norm(name: str, n: int, gguf: str, group: str = "layer") -> TensorSpec:
    return TensorSpec(name, group, "norm", (n,), 0, width="activation", tokens="none", output="none", gguf=gguf)


def _attention(model: Model, group: str = "layer") -> list[TensorSpec]:
    h, H, G, dh = model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim
    out = [_norm("attn_norm", h, "blk.{i}.attn_norm.weight", group)]
    if model.is_mla:
        qk = model.qk_nope_head_dim + model.qk_rope_head_dim
        ql, kl = model.q_lora_rank, model.kv_lora_rank
        if ql:
            out += [TensorSpec("q_a_proj", group, "matmul", (ql, h), 0, gguf="blk.{i}.attn_q_a.weight"),
                    _norm("q_a_norm", ql, "blk.{i}.attn_q_a_norm.weight", group),
                    TensorSpec("q_b_proj", group, "matmul", (H * qk, ql), 0, gguf="blk.{i}.attn_q_b.weight")]
        else:
            out.append(TensorSpec("q_proj", group, "matmul", (H * qk, h), 0, gguf="blk.{i}.attn_q.weight"))
        out += [TensorSpec("kv_a_proj", group, "matmul", (kl + model.qk_rope_head_dim, h), 0, output="kv",
                           gguf="blk.{i}.attn_kv_a_mqa.weight"),
                _norm("kv_a_norm", kl, "blk.{i}.attn_kv_a_norm.weight", group),
                TensorSpec("kv_b_proj", group, "matmul", (H * (model.qk_nope_head_dim + model.v_head_dim), kl), 0,
                           gguf="blk.{i}.attn_kv_b.weight"),
                TensorSpec("o_proj", group, "matmul", (h, H * model.v_head_dim), 1, gguf="blk.{i}.attn_output.weight")]
        return out
    q, kvd = H * dh, G * dh
    mats = [TensorSpec("q_proj", group, "matmul", (q, h), 0, gguf="blk.{i}.attn_q.weight"),
            TensorSpec("k_proj", group, "matmul", (kvd, h), 0, output="kv", gguf="blk.{i}.attn_k.weight"),
            TensorSpec("v_proj", group, "matmul", (kvd, h), 0, output="kv", gguf="blk.{i}.attn_v.weight"),
            TensorSpec("o_proj", group, "matmul", (h, q), 1, gguf="blk.{i}.attn_output.weight")]
    for t in mats:
        out.append(t)
        if model.attention_bias:
            out.append(_bias(t))
    if model.attention_sinks:
        out.append(TensorSpec("sinks", group, "sink", (H,), 0, width="activation", tokens="none", output="none",
                              gguf="blk.{i}.attn_sinks.weight"))
    return out


def _moe_ffn(model: Model, group: str = "layer") -> list[TensorSpec]:
    h, E, Fm = model.hidden_size, model.experts, model.expert_ffn_size
    router = TensorSpec("router", group, "router", (E, h), 0, gguf="blk.{i}.ffn_gate_inp.weight")
    out = [router] + ([_bias(router)] if model.router_bias else [])
    out += _ffn(model, "experts.", Fm, E, "expert", "_exps", model.expert_bias, group)
    if model.shared_experts:
        out += _ffn(model, "shared_experts.", model.shared_experts * Fm, 1, "token", "_shexp", model.expert_bias, group)
    return out


def layer_tensors(model: Model, layer: int = 0) -> tuple[TensorSpec, ...]:
    """The weight tensors of one transformer layer, in the order the layer uses them.

    Column-parallel matrices (q, k, v, the MLA projections, gate, up, router) are cut along
    their output axis 0, row-parallel ones (o, down) along their input axis 1; norm gains,
    biases and sinks along axis 0."""
    if not 0 <= int(layer) < model.layers:
        raise ValueError(f"layer {layer!r} is not in 0..{model.layers - 1} for {model.id}")
    out = _attention(model)
    out.append(_norm("ffn_norm", model.hidden_size, "blk.{i}.ffn_norm.weight"))
    if model.layer_is_moe(int(layer)):
        out += _moe_ffn(model)
    else:
        out += _ffn(model, "", model.ffn_size, 1, "token", "", False)
    return tuple(out)


def embedding_tensors(model: Model) -> tuple[TensorSpec, ...]:
    """The embedding table, or nothing when it is tied to the LM head (then it lives with the head)."""
    if model.tied_embeddings:
        return ()
    return (TensorSpec("embed_tokens", "embedding", "gather", (model.vocab_size, model.hidden_size), 0,
                       tokens="token", gguf="token_embd.weight"),)


def head_tensors(model: Model) -> tuple[TensorSpec, ...]:
    """The final norm and the LM head (the embedding table itself when tied)."""
    h, V = model.hidden_size, model.vocab_size
    name = "embed_tokens" if model.tied_embeddings else "lm_head"
    gguf = "token_embd.weight" if model.tied_embeddings else "output.weight"
    return (TensorSpec("final_norm", "head", "norm", (h,), 0, width="activation", tokens="none", output="none",
                       gguf="output_norm.weight"),
            TensorSpec(name, "head", "matmul", (V, h), 0, tokens="row", gguf=gguf))


def mtp_tensors(model: Model) -> tuple[TensorSpec, ...]:
    """The tensors of the model's multi-token-prediction modules (DeepSeek-V3's MTP): per
    module ``enorm`` and ``hnorm`` (h), ``eh_proj`` (h x 2h), one whole layer of the last
    layer's kind and ``shared_head_norm`` (h); the embedding and the LM head are the main
    model's. Not in the published total, and not part of a served step: listed so that a
    draft that uses them can be placed and counted. Names ``mtp.{m}.<name>``."""
    h = model.hidden_size
    out = []
    last = model.layers - 1
    for m in range(model.mtp_layers):
        g = "mtp"
        pre = f"mtp.{m}."
        specs = [_norm("enorm", h, "blk.{i}.nextn.enorm.weight", g), _norm("hnorm", h, "blk.{i}.nextn.hnorm.weight", g),
                 TensorSpec("eh_proj", g, "matmul", (h, 2 * h), 0, gguf="blk.{i}.nextn.eh_proj.weight")]
        specs += _attention(model, g) + [_norm("ffn_norm", h, "blk.{i}.ffn_norm.weight", g)]
        specs += _moe_ffn(model, g) if model.layer_is_moe(last) else _ffn(model, "", model.ffn_size, 1, "token", "", False, g)
        specs.append(_norm("shared_head_norm", h, "blk.{i}.nextn.shared_head_norm.weight", g))
        out += [TensorSpec(pre + t.name, g, t.role, t.shape, t.split_axis, t.width, t.tokens, t.output, t.copies, t.gguf)
                for t in specs]
    return tuple(out)


def template(model: Model) -> dict[str, tuple[TensorSpec, ...]]:
    """The tensors of the embedding, of one layer of each kind (keyed by the kind's name:
    ``layer`` when all layers are alike) and of the head."""
    out = {"embedding": embedding_tensors(model)}
    for k in layer_kinds(model):
        out[k.name] = layer_tensors(model, k.layers[0])
    out["head"] = head_tensors(model)
    return out


def named_shapes(model: Model) -> dict[str, tuple[int, ...]]:
    """Every weight tensor's full name and shape, in pipeline order (embedding, layers, head)."""
    out: dict[str, tuple[int, ...]] = {}
    for t in embedding_tensors(model):
        out[t.name] = t.shape
    for i in range(model.layers):
        for t in layer_tensors(model, i):
            for n in t.names(i):
                out[n] = t.shape
    for t in head_tensors(model):
        out[t.name] = t.shape
    return out


def gguf_map(model: Model) -> dict[str, str]:
    """llama.cpp's per-layer tensor stem -> lpulab's short name (``attn_q`` -> ``q_proj``),
    for the dense layers a GGUF file stores one tensor per name."""
    out = {}
    for t in layer_tensors(model, 0):
        if t.gguf and not t.is_expert and t.role != "bias":
            out[t.gguf.split(".")[2]] = t.name
    return out


def _count(specs, active: bool, k: int, width: str | None = None) -> int:
    total = 0
    for t in specs:
        if width is not None and t.width != width:
            continue
        total += t.elements * (k if active and t.is_expert else t.copies)
    return total


def parameter_count(model: Model, active: bool = False, *, embedding: bool = True, mtp: bool = False) -> int:
    """Parameters from the table: every copy of every tensor of the embedding, the layers
    (each kind times its layers) and the head. ``active=True`` counts the routed experts a
    token uses (``active_experts`` of ``experts``; shared experts always) instead of all;
    ``embedding=False`` leaves the input embedding table out (a lookup, not a product: how
    OpenAI, DeepSeek and Moonshot state their active counts; tied embeddings stay, as the
    head); ``mtp=True`` adds the multi-token-prediction modules (not in published totals)."""
    k = model.active_experts
    total = _count(embedding_tensors(model), active, k) if embedding else 0
    for kind in layer_kinds(model):
        total += kind.count * _count(layer_tensors(model, kind.layers[0]), active, k)
    total += _count(head_tensors(model), active, k)
    if mtp:
        total += _count(mtp_tensors(model), active, k)
    return total


def parameters_by_width(model: Model) -> tuple[int, int]:
    """(values stored at the weights' precision, values stored at the activations'): the
    served model's matrices against its norm gains, biases and sinks."""
    w = a = 0
    groups = [(1, embedding_tensors(model)), (1, head_tensors(model))]
    groups += [(kind.count, layer_tensors(model, kind.layers[0])) for kind in layer_kinds(model)]
    for n, specs in groups:
        w += n * _count(specs, False, 0, "weight")
        a += n * _count(specs, False, 0, "activation")
    return w, a


def approximations(model: Model) -> tuple[str, ...]:
    """What lpulab models of ``model`` only approximately, in words a report prints."""
    out = []
    if model.mtp_layers:
        n = parameter_count(model, mtp=True) - parameter_count(model)
        out.append(f"{model.mtp_layers} multi-token-prediction module(s) ({n / 1e9:.2f}B parameters, outside the "
                   "published total) are in the tensor table but neither placed nor timed: a served step runs the "
                   "main model only")
    if model.is_moe:
        out.append(f"routing is taken as uniform and independent per token: a step of N tokens reads "
                   f"E(1-(1-k/E)^N) of the {model.experts} routed experts per MoE layer; real routers are skewed "
                   "(fewer distinct experts) and group-limited routing is not modelled")
    if model.is_mla:
        out.append("MLA decode is counted with the up-projections absorbed into the query and output (the cache holds "
                   f"the {model.kv_lora_rank}-value latent and the {model.qk_rope_head_dim}-value rotary key per layer), "
                   "prefill with keys and values decompressed per head; the latent cache is split over a stage's chips "
                   "as data-parallel attention splits it (plain tensor parallelism replicates it on every rank), and "
                   "the low-rank projections are split like every other matrix")
    return tuple(out)
