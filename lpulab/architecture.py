"""The one description of a model's weight tensors.

Every weight a decoder holds is listed here once, with what the rest of lpulab needs to
know about it: its shape in the model's dimensions (matrices stored ``(out, in)``, as the
numpy kernels hold them), the axis a tensor-parallel split cuts, whether it is stored at
the weights' precision or the activations' (norm gains), which tokens multiply it (every
token, the tokens routed to one expert, or the rows reaching the LM head), where its output
goes (activations or the KV cache), how many copies a layer holds (routed experts) and its
llama.cpp (GGUF) name. From this table:

- :mod:`lpulab.workload` counts every matrix product's FLOPs and bytes,
- :mod:`lpulab.placement` places every tensor on chips,
- :mod:`lpulab.kernels` builds the numpy decoder's weights, its sharding plan and its GGUF
  name map.

The non-weight work of a layer (rotary embedding, attention scores and values, softmax,
the gated activation, residual adds) is counted in :mod:`lpulab.workload` from the same
dimensions.

Names: ``embed_tokens``; per layer ``attn_norm``, ``q_proj``, ``k_proj``, ``v_proj``,
``o_proj``, ``ffn_norm``, ``gate_proj``, ``up_proj``, ``down_proj`` (a mixture-of-experts
layer has ``router`` and ``experts.{e}.gate_proj`` ...); ``final_norm``; ``lm_head`` (absent
when the embeddings are tied: the head reads ``embed_tokens``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .catalog import Model

GROUPS = ("embedding", "layer", "head")
ROLES = ("gather", "norm", "matmul", "router")
#: What multiplies a tensor's work: every token, tokens routed to one expert, rows at the LM head, none.
TOKENS = ("token", "expert", "row", "none")
WIDTHS = ("weight", "activation")
OUTPUTS = ("act", "kv", "none")


@dataclass(frozen=True)
class TensorSpec:
    """One weight tensor (or, for routed experts, one tensor of each of ``copies`` experts)."""

    name: str                     # short name within its group: q_proj, experts.gate_proj, lm_head
    group: str                    # embedding | layer | head
    role: str                     # gather | norm | matmul | router
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
        return self.copies > 1 or self.tokens == "expert"

    def names(self, layer: int | None = None) -> list[str]:
        """Full names of every copy: ``layers.3.q_proj``; ``layers.3.experts.7.gate_proj``."""
        pre = "" if layer is None else f"layers.{layer}."
        if self.is_expert:
            base = self.name.split(".", 1)[1] if self.name.startswith("experts.") else self.name
            return [f"{pre}experts.{e}.{base}" for e in range(self.copies)]
        return [pre + self.name]


def _ffn(model: Model, prefix: str, copies: int, tokens: str, gguf_suffix: str) -> list[TensorSpec]:
    h, F = model.hidden_size, model.ffn_size
    names = ("gate_proj", "up_proj", "down_proj") if model.ffn_gated else ("up_proj", "down_proj")
    gg = {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}
    out = []
    for n in names:
        shape, axis = ((h, F), 1) if n == "down_proj" else ((F, h), 0)
        out.append(TensorSpec(prefix + n, "layer", "matmul", shape, axis, tokens=tokens, copies=copies,
                              gguf=f"blk.{{i}}.{gg[n]}{gguf_suffix}.weight"))
    return out


def layer_tensors(model: Model, layer: int = 0) -> tuple[TensorSpec, ...]:
    """The weight tensors of one transformer layer, in the order the layer uses them.

    Column-parallel matrices (q, k, v, gate, up, router) are cut along their output axis 0,
    row-parallel ones (o, down) along their input axis 1; norm gains along axis 0."""
    if not 0 <= int(layer) < model.layers:
        raise ValueError(f"layer {layer!r} is not in 0..{model.layers - 1} for {model.id}")
    h, H, G, dh, E = model.hidden_size, model.attention_heads, model.kv_heads, model.head_dim, model.experts
    q, kvd = H * dh, G * dh
    out = [
        TensorSpec("attn_norm", "layer", "norm", (h,), 0, width="activation", tokens="none", output="none",
                   gguf="blk.{i}.attn_norm.weight"),
        TensorSpec("q_proj", "layer", "matmul", (q, h), 0, gguf="blk.{i}.attn_q.weight"),
        TensorSpec("k_proj", "layer", "matmul", (kvd, h), 0, output="kv", gguf="blk.{i}.attn_k.weight"),
        TensorSpec("v_proj", "layer", "matmul", (kvd, h), 0, output="kv", gguf="blk.{i}.attn_v.weight"),
        TensorSpec("o_proj", "layer", "matmul", (h, q), 1, gguf="blk.{i}.attn_output.weight"),
        TensorSpec("ffn_norm", "layer", "norm", (h,), 0, width="activation", tokens="none", output="none",
                   gguf="blk.{i}.ffn_norm.weight"),
    ]
    if model.is_moe:
        out.append(TensorSpec("router", "layer", "router", (E, h), 0, gguf="blk.{i}.ffn_gate_inp.weight"))
        out += _ffn(model, "experts.", E, "expert", "_exps")
    else:
        out += _ffn(model, "", 1, "token", "")
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


def template(model: Model) -> dict[str, tuple[TensorSpec, ...]]:
    """The tensors of the embedding, of layer 0 (all layers alike) and of the head."""
    return {"embedding": embedding_tensors(model), "layer": layer_tensors(model, 0), "head": head_tensors(model)}


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
        if t.gguf and not t.is_expert:
            out[t.gguf.split(".")[2]] = t.name
    return out


def parameter_count(model: Model, active: bool = False) -> int:
    """Parameters from the table: every copy of every tensor; ``active=True`` counts the
    routed experts a token uses (``active_experts`` of ``experts``) instead of all."""
    def n(specs):
        total = 0
        for t in specs:
            copies = (model.active_experts if active and t.is_expert else t.copies)
            total += t.elements * copies
        return total
    return n(embedding_tensors(model)) + model.layers * n(layer_tensors(model, 0)) + n(head_tensors(model))
