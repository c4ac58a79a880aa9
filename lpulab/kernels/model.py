"""A Llama-like decoder in numpy: config, seeded weights, KV cache, prefill and decode.

The weights are the tensors :mod:`lpulab.architecture` lists for a dense Llama-style model
(the one description of a model's tensors; :meth:`DecoderConfig.weight_shapes` reads it)::

    embed_tokens                      (vocab, hidden)
    layers.{i}.attn_norm              (hidden,)
    layers.{i}.q_proj                 (heads*head_dim, hidden)
    layers.{i}.k_proj / v_proj        (kv_heads*head_dim, hidden)
    layers.{i}.o_proj                 (hidden, heads*head_dim)
    layers.{i}.ffn_norm               (hidden,)
    layers.{i}.gate_proj / up_proj    (ffn, hidden)
    layers.{i}.down_proj              (hidden, ffn)
    final_norm                        (hidden,)
    lm_head                           (vocab, hidden), absent when embeddings are tied

These names are also the names a sharding plan uses. The decoder runs dense Llama-style
layers only (:data:`LAYER_TENSORS`): a catalog model with experts, multi-head latent
attention, biases, sinks, an ungated FFN, windowed attention or LayerNorm is refused
(:func:`dense_llama_problems` says why).

A forward step returns the last-position logits of each sequence and one
:class:`~lpulab.kernels.ops.OpCount` per op per layer, named as in docs/counting.md
(``embedding``, ``layers.3.q_proj``, ..., ``final_norm``, ``lm_head``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import ops, tiled
from .ops import OpCount

__all__ = [
    "DecoderConfig",
    "Numerics",
    "KVCache",
    "Step",
    "Generation",
    "Decoder",
    "init_weights",
    "quantize_weights",
    "weights_nbytes",
    "greedy_generate",
    "PRECISIONS",
    "LAYER_TENSORS",
    "dense_llama_problems",
]

PRECISIONS = ("fp32", "int8", "fp8", "int4")
#: The quantised weight formats, by precision name.
FORMATS = ops.FORMATS
#: The tensors of one layer that :meth:`Decoder.forward` reads, in the order
#: :func:`lpulab.architecture.layer_tensors` lists them for a dense Llama-style layer (their
#: shapes, split axes and GGUF names are the architecture's).
LAYER_TENSORS = ("attn_norm", "q_proj", "k_proj", "v_proj", "o_proj", "ffn_norm", "gate_proj", "up_proj", "down_proj")
LINEAR_SUFFIXES = tuple(n for n in LAYER_TENSORS if n.endswith("_proj"))


def dense_llama_problems(model) -> list[str]:
    """What keeps the catalog :class:`~lpulab.catalog.Model` ``model`` from being the dense
    Llama-style decoder the numpy kernels run (empty when nothing does): a mixture of
    experts, multi-head latent attention, layers whose tensors (by
    :func:`lpulab.architecture.layer_tensors`) are not :data:`LAYER_TENSORS` (biases, sinks,
    an ungated FFN), windowed attention, a norm other than RMSNorm."""
    from .. import architecture

    out = []
    if model.is_moe:
        out.append(f"a mixture of experts ({model.experts} experts, {model.active_experts} active)")
    if model.is_mla:
        out.append("multi-head latent attention")
    for kind in architecture.layer_kinds(model):
        names = [t.name for t in architecture.layer_tensors(model, kind.layers[0])]
        if names != list(LAYER_TENSORS) and not out:  # experts and MLA explain their tensors already
            extra = [n for n in names if n not in LAYER_TENSORS]
            missing = [n for n in LAYER_TENSORS if n not in names]
            what = "; ".join(x for x in (f"holds {', '.join(extra)}" if extra else "",
                                         f"lacks {', '.join(missing)}" if missing else "") if x)
            out.append(f"layers whose tensors are not a dense Llama layer's ({what or 'in another order'}; the "
                       f"decoder runs {', '.join(LAYER_TENSORS)})")
        if kind.window:
            out.append(f"windowed attention ({kind.window} tokens) in its {kind.name!r} layers")
    if model.norm != "rmsnorm":
        out.append(f"norm {model.norm!r} (the decoder runs 'rmsnorm')")
    return out


@dataclass(frozen=True)
class DecoderConfig:
    """Llama-like architecture. Defaults give a tiny model for tests."""

    n_layers: int = 2
    hidden: int = 64
    n_heads: int = 4
    n_kv_heads: int = 2
    head_dim: int = 16
    ffn: int = 160
    vocab: int = 256
    tied_embeddings: bool = True
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    rope_layout: str = "half"

    def __post_init__(self) -> None:
        for name in ("n_layers", "hidden", "n_heads", "n_kv_heads", "head_dim", "ffn", "vocab"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"DecoderConfig.{name} must be a positive integer, got {v!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"DecoderConfig: n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})"
            )
        if self.head_dim % 2:
            raise ValueError(f"DecoderConfig.head_dim must be even for rotary embeddings, got {self.head_dim}")
        if not self.rope_theta > 0:
            raise ValueError(f"DecoderConfig.rope_theta must be positive, got {self.rope_theta}")
        if not self.norm_eps >= 0:
            raise ValueError(f"DecoderConfig.norm_eps must be >= 0, got {self.norm_eps}")
        if self.rope_layout not in ops.ROPE_LAYOUTS:
            raise ValueError(f"DecoderConfig.rope_layout must be one of {ops.ROPE_LAYOUTS}, got {self.rope_layout!r}")

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def group(self) -> int:
        return self.n_heads // self.n_kv_heads

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight tensor's name and shape: :func:`lpulab.architecture.named_shapes` of
        :meth:`to_model`, in pipeline order except that the embedding table comes first even
        when tied (the architecture lists a tied table with the head), which is the order
        :func:`init_weights` draws them in."""
        return dict(_weight_shapes(self))

    @property
    def n_params(self) -> int:
        return int(sum(int(np.prod(s)) for s in self.weight_shapes().values()))

    @property
    def head_weight_name(self) -> str:
        return "embed_tokens" if self.tied_embeddings else "lm_head"

    @classmethod
    def from_model(cls, model, **kw) -> DecoderConfig:
        """The decoder shape of a catalog :class:`~lpulab.catalog.Model` (dense, gated FFN,
        RMSNorm: Llama-like); ``kw`` sets what the catalog does not hold (``rope_theta``,
        ``norm_eps``, ``rope_layout``)."""
        problems = dense_llama_problems(model)
        if problems:
            raise ValueError(f"DecoderConfig.from_model: {model.id} is not Llama-like: the numpy decoder runs dense "
                             f"Llama-style decoders only (gated FFN, RMSNorm, no experts, biases or sinks), and "
                             f"{model.id} has " + "; ".join(problems))
        return cls(n_layers=model.layers, hidden=model.hidden_size, n_heads=model.attention_heads,
                   n_kv_heads=model.kv_heads, head_dim=model.head_dim, ffn=model.ffn_size, vocab=model.vocab_size,
                   tied_embeddings=model.tied_embeddings, **kw)

    def to_model(self, id: str = "numpy-decoder", max_context: int = 4096):
        """This shape as a catalog :class:`~lpulab.catalog.Model`, so :mod:`lpulab.workload`,
        :mod:`lpulab.placement` and :mod:`lpulab.perf` can count, place and time it. Its
        parameter count is derived from the shape (no published figure exists)."""
        from dataclasses import replace

        from .. import architecture, catalog

        src = catalog.Source("shape", "a decoder shape given as parameters", "local", "n/a", "unverified")

        def count(n: float, formula: str):
            return catalog.Value(si=n, value=n, unit="count", source=src, kind="derived", formula=formula)

        m = catalog.Model(
            id=id, name=f"numpy decoder {self.n_layers}x{self.hidden}", family="lpulab-kernels", released="n/a",
            layers=self.n_layers, hidden_size=self.hidden, attention_heads=self.n_heads, kv_heads=self.n_kv_heads,
            head_dim=self.head_dim, ffn_size=self.ffn, vocab_size=self.vocab, max_context=int(max_context), experts=1,
            active_experts=1, ffn_gated=True, tied_embeddings=self.tied_embeddings, norm="rmsnorm",
            published_parameters=count(0.0, "not yet counted"), sources={"shape": src})
        n = float(architecture.parameter_count(m))
        return replace(m, published_parameters=count(n, "the tensor table's parameters "
                                                        "(lpulab.architecture.parameter_count; DecoderConfig.n_params)"))


@functools.lru_cache(maxsize=64)
def _weight_shapes(config: DecoderConfig) -> tuple[tuple[str, tuple[int, ...]], ...]:
    from .. import architecture

    shapes = architecture.named_shapes(config.to_model())
    first = {"embed_tokens": shapes.pop("embed_tokens")}  # a tied table is listed with the head
    return tuple({**first, **shapes}.items())


@dataclass(frozen=True)
class Numerics:
    """Numeric choices besides the weight format.

    kv_dtype: "float32" or "float16" (ggml's default cache type).
    round_attn_inputs: round q and the softmax probabilities to kv_dtype before the two
    attention products, as ggml does with a float16 cache.
    """

    kv_dtype: str = "float32"
    round_attn_inputs: bool = False

    def __post_init__(self) -> None:
        if self.kv_dtype not in ("float32", "float16"):
            raise ValueError(f"Numerics.kv_dtype must be 'float32' or 'float16', got {self.kv_dtype!r}")


def _draw_weights(config: DecoderConfig, seed: int):
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"init_weights: seed must be an integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    for name, shape in config.weight_shapes().items():
        w = rng.standard_normal(shape, dtype=np.float32)
        if len(shape) == 1:
            w *= np.float32(0.1)
            w += np.float32(1.0)
        else:
            w *= np.float32(1.0 / np.sqrt(shape[1]))
        yield name, w


def init_weights(config: DecoderConfig, seed: int) -> dict[str, np.ndarray]:
    """Seeded random float32 weights: N(0, 1/fan_in) for matrices, 1 + N(0, 0.1^2) for
    norm gains. Drawn in :meth:`DecoderConfig.weight_shapes` order from
    ``np.random.default_rng(seed)``."""
    return dict(_draw_weights(config, seed))


def _quantizer(precision: str, what: str):
    if precision not in FORMATS:
        raise ValueError(f"{what}: precision must be one of {', '.join(FORMATS)}, got {precision!r}")
    return FORMATS[precision].quantize


def quantize_weights(weights: Mapping[str, Any], act_bits: int = 16, precision: str = "int8") -> dict[str, Any]:
    """Quantised copy: matrices (linears, embedding, head) become :class:`Int8Weight`
    (per-output-channel symmetric; the default), :class:`~lpulab.kernels.ops.Fp8Weight`
    (``precision="fp8"``: e4m3 codes, per-channel scale) or
    :class:`~lpulab.kernels.ops.Int4Weight` (``"int4"``: blocks of 32 with power-of-two
    factors); activations are quantised per row to ``act_bits`` inside each product; norm
    gains stay float32."""
    quantize = _quantizer(precision, "quantize_weights")
    out: dict[str, Any] = {}
    for name, w in weights.items():
        if isinstance(w, np.ndarray) and w.ndim == 2:
            out[name] = quantize(w, act_bits)
        else:
            out[name] = w
    return out


def weights_nbytes(weights: Mapping[str, Any]) -> int:
    """All stored bytes (int8 scales included)."""
    return int(sum(int(w.nbytes) for w in weights.values()))


class KVCache:
    """Per-layer K and V buffers of shape (batch, kv_heads, capacity, head_dim).

    ``length`` is the number of positions already filled (the same for every sequence).
    A forward step writes its new keys/values and then advances ``length``.
    """

    def __init__(self, n_layers: int, batch: int, kv_heads: int, capacity: int, head_dim: int, dtype: str = "float32"):
        if batch < 1 or capacity < 1:
            raise ValueError(f"KVCache: batch and capacity must be >= 1, got batch={batch}, capacity={capacity}")
        shape = (batch, kv_heads, capacity, head_dim)
        self.k = [np.zeros(shape, dtype=dtype) for _ in range(n_layers)]
        self.v = [np.zeros(shape, dtype=dtype) for _ in range(n_layers)]
        self.batch = batch
        self.capacity = capacity
        self.length = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.k) + sum(a.nbytes for a in self.v)

    @property
    def itemsize(self) -> int:
        return self.k[0].itemsize if self.k else 4


@dataclass(frozen=True)
class Step:
    """One forward step: last-position logits (B, vocab) and the op-by-op counts."""

    logits: np.ndarray
    counts: tuple[OpCount, ...]
    tokens: int  # N = B*S processed

    @property
    def total(self) -> OpCount:
        return ops.total(self.counts)


@dataclass(frozen=True)
class Generation:
    """Greedy continuation: new tokens (B, n_new) and each step's logits and counts."""

    tokens: np.ndarray
    logits: tuple[np.ndarray, ...]
    steps: tuple[Any, ...] = field(repr=False, default=())


def _check_tokens(tokens, vocab: int, what: str) -> np.ndarray:
    t = np.asarray(tokens)
    if t.ndim == 1:
        t = t[None, :]
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{what}: tokens must be (batch, seq) with batch, seq >= 1, got shape {np.shape(tokens)}")
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what}: token ids must be integers, got dtype {t.dtype}")
    if t.min() < 0 or t.max() >= vocab:
        raise ValueError(f"{what}: token ids must be in [0, {vocab}), got range [{t.min()}, {t.max()}]")
    return t.astype(np.int64)


def greedy_generate(step: Callable, prompt, n_new: int, cache) -> Generation:
    """Greedy decoding loop shared by the whole and the sharded decoder.

    ``step(tokens (B, S), cache) -> object with .logits (B, V)``.
    """
    if n_new < 0:
        raise ValueError(f"generate: n_new must be >= 0, got {n_new}")
    prompt = np.asarray(prompt)
    if prompt.ndim == 1:
        prompt = prompt[None, :]
    out = np.zeros((prompt.shape[0], n_new), dtype=np.int64)
    logits, steps = [], []
    if n_new == 0:
        return Generation(out, (), ())
    res = step(prompt, cache)
    for i in range(n_new):
        steps.append(res)
        logits.append(res.logits)
        nxt = np.argmax(res.logits, axis=-1)
        out[:, i] = nxt
        if i + 1 < n_new:
            res = step(nxt[:, None], cache)
    return Generation(out, tuple(logits), tuple(steps))


class Decoder:
    """The unsharded reference decoder.

    ``weights`` maps the names above to float32 arrays, or to weight objects (e.g.
    :class:`Int8Weight`) for the matrices. :meth:`random` builds a seeded model.
    """

    def __init__(self, config: DecoderConfig, weights: Mapping[str, Any], numerics: Numerics = Numerics()):
        expected = config.weight_shapes()
        missing = sorted(set(expected) - set(weights))
        extra = sorted(set(weights) - set(expected))
        if missing or extra:
            raise ValueError(f"Decoder: weights do not match the config; missing {missing[:5]}, unexpected {extra[:5]}")
        for name, shape in expected.items():
            got = tuple(weights[name].shape)
            if got != shape:
                raise ValueError(f"Decoder: weight {name!r} has shape {got}, config needs {shape}")
        self.config = config
        self.weights = dict(weights)
        self.numerics = numerics

    @classmethod
    def random(cls, config: DecoderConfig = DecoderConfig(), seed: int = 0, precision: str = "fp32",
               numerics: Numerics = Numerics(), act_bits: int = 16) -> Decoder:
        """Seeded random model; ``precision`` "int8", "fp8" or "int4" quantises the
        matrices (activations to ``act_bits`` per row inside each product)."""
        if precision not in PRECISIONS:
            raise ValueError(f"Decoder.random: precision must be one of {PRECISIONS}, got {precision!r}")
        if precision != "fp32":  # quantise tensor by tensor: no full float32 copy is held
            quantize = _quantizer(precision, "Decoder.random")
            w = {k: quantize(v, act_bits) if v.ndim == 2 else v for k, v in _draw_weights(config, seed)}
        else:
            w = init_weights(config, seed)
        return cls(config, w, numerics)

    def quantized(self, act_bits: int = 16, precision: str = "int8") -> Decoder:
        """The same model with quantised matrices (int8 per output channel by default; see
        :func:`quantize_weights`). The weights must be float arrays."""
        if self.precision != "fp32":
            raise ValueError(f"Decoder.quantized: the weights are {self.precision}; quantise from fp32 weights")
        return Decoder(self.config, quantize_weights(self.weights, act_bits, precision), self.numerics)

    @property
    def precision(self) -> str:
        kinds = {getattr(self.weights[f"layers.0.{s}"], "format", type(self.weights[f"layers.0.{s}"]).__name__)
                 for s in LINEAR_SUFFIXES}
        if kinds == {"ndarray"}:
            return "fp32"
        if len(kinds) == 1 and next(iter(kinds)) in FORMATS:
            return next(iter(kinds))
        return "+".join(sorted(kinds))

    @property
    def nbytes(self) -> int:
        return weights_nbytes(self.weights)

    @property
    def workload_precision(self):
        """The :class:`lpulab.workload.Precision` the counts of this decoder follow: weights
        fp32, int8, fp8 or int4 (payload bytes; scales are not counted, docs/counting.md),
        float32 activations, the KV cache's dtype. Weight formats without a workload
        precision (e.g. GGUF blocks) raise ValueError."""
        from ..workload import Precision

        w = self.precision
        if w not in PRECISIONS:
            raise ValueError(f"Decoder: weights of format {w!r} have no lpulab.workload precision ({', '.join(PRECISIONS)})")
        return Precision(w, "fp32", {"float32": "fp32", "float16": "fp16"}[self.numerics.kv_dtype])

    def new_cache(self, batch: int = 1, capacity: int = 128) -> KVCache:
        c = self.config
        return KVCache(c.n_layers, batch, c.n_kv_heads, capacity, c.head_dim, self.numerics.kv_dtype)

    # ------------------------------------------------------------------ forward

    def forward(self, tokens, cache: KVCache) -> Step:
        """Process S new tokens per sequence (a prompt, or 1 token in a decode step)."""
        c = self.config
        t = _check_tokens(tokens, c.vocab, "Decoder.forward")
        b, s = t.shape
        if cache.batch != b:
            raise ValueError(f"Decoder.forward: cache holds {cache.batch} sequences, tokens have {b}")
        past = cache.length
        if past + s > cache.capacity:
            raise ValueError(f"Decoder.forward: {past} cached + {s} new positions exceed the cache capacity {cache.capacity}")
        with tiled.blas_single():
            return self._forward(t, cache, past)

    def _forward(self, t: np.ndarray, cache: KVCache, past: int) -> Step:
        c, W, num = self.config, self.weights, self.numerics
        b, s = t.shape
        counts: list[OpCount] = []
        x, cnt = ops.embedding(t.reshape(-1), W["embed_tokens"], name="embedding")
        counts.append(cnt)
        positions = np.arange(past, past + s)
        angles = ops.rope_angles(positions, c.head_dim, c.rope_theta)
        h_, hq, g, dh = c.hidden, c.n_heads, c.n_kv_heads, c.head_dim
        kvb = cache.itemsize
        for i in range(c.n_layers):
            p = f"layers.{i}."
            hn, cnt = ops.rmsnorm(x, W[p + "attn_norm"], c.norm_eps, name=p + "attn_norm")
            counts.append(cnt)
            (q, k, v), cqkv = ops.linears(hn, [(W[p + "q_proj"], p + "q_proj", "act", None),
                                               (W[p + "k_proj"], p + "k_proj", "kv", kvb),
                                               (W[p + "v_proj"], p + "v_proj", "kv", kvb)])
            counts += cqkv
            q4 = ops.split_heads(q, b, s, hq, dh)
            k4 = ops.split_heads(k, b, s, g, dh)
            q4, k4, cnt = ops.rope(q4, k4, positions, theta=c.rope_theta, layout=c.rope_layout, name=p + "rope",
                                   angles=angles)
            counts.append(cnt)
            cache.k[i][:, :, past:past + s] = k4
            cache.v[i][:, :, past:past + s] = ops.split_heads(v, b, s, g, dh)
            att, cnts = ops.attention(q4, cache.k[i], cache.v[i], past, prefix=p, round_inputs=num.round_attn_inputs)
            counts += cnts
            o, cnt = ops.linear(att, W[p + "o_proj"], name=p + "o_proj")
            counts.append(cnt)
            x, cnt = ops.residual_add(x, o, name=p + "attn_residual")
            counts.append(cnt)
            hn, cnt = ops.rmsnorm(x, W[p + "ffn_norm"], c.norm_eps, name=p + "ffn_norm")
            counts.append(cnt)
            f, cnts = ops.swiglu(hn, W[p + "gate_proj"], W[p + "up_proj"], W[p + "down_proj"], prefix=p)
            counts += cnts
            x, cnt = ops.residual_add(x, f, name=p + "ffn_residual")
            counts.append(cnt)
        cache.length = past + s
        # docs/counting.md counts the final norm over all N tokens; only the last row of
        # each sequence reaches the head (R = B).
        xn, cnt = ops.rmsnorm(x, W["final_norm"], c.norm_eps, name="final_norm")
        counts.append(cnt)
        last = np.ascontiguousarray(xn.reshape(b, s, h_)[:, -1])
        logits, cnt = ops.lm_head(last, W[c.head_weight_name], name="lm_head")
        counts.append(cnt)
        return Step(logits, tuple(counts), b * s)

    def prefill(self, prompt, cache: KVCache | None = None, capacity: int | None = None) -> tuple[Step, KVCache]:
        """Run a prompt (B, S) through an empty cache; returns the step and the cache."""
        t = _check_tokens(prompt, self.config.vocab, "Decoder.prefill")
        if cache is None:
            cache = self.new_cache(t.shape[0], capacity or max(2 * t.shape[1], 16))
        if cache.length:
            raise ValueError(f"Decoder.prefill: the cache already holds {cache.length} positions; use forward() to extend it")
        return self.forward(t, cache), cache

    def decode(self, tokens, cache: KVCache) -> Step:
        """One decode step: one new token per sequence, tokens of shape (B,)."""
        t = np.asarray(tokens).reshape(-1, 1)
        return self.forward(t, cache)

    def generate(self, prompt, n_new: int, capacity: int | None = None) -> Generation:
        t = _check_tokens(prompt, self.config.vocab, "Decoder.generate")
        cache = self.new_cache(t.shape[0], capacity or (t.shape[1] + n_new))
        return greedy_generate(self.forward, t, n_new, cache)
