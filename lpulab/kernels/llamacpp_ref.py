"""llama.cpp (through llama-cpp-python) as the independent reference for the GGUF model,
and the comparison of lpulab's numpy decoder against it.

Only this module imports ``llama_cpp``, lazily. Both sides get the same token ids; the
numpy side needs no tokenizer.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LlamaCppReference",
    "requantized_gguf",
    "ENGINES",
    "PromptComparison",
    "compare_greedy",
    "DEFAULT_PROMPTS",
    "LOGIT_TOLERANCE",
    "smollm2_check",
    "report_dict",
    "measure_speed",
    "SmolLM2Report",
]

DEFAULT_PROMPTS = (
    "The capital of France is",
    "def fibonacci(n):",
    "Water boils at a temperature of",
    "<|im_start|>user\nName three primary colors.<|im_end|>\n<|im_start|>assistant\n",
)


def _threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def requantized_gguf(ftype: str = "q8_0", source: str | Path | None = None) -> Path:
    """The SmolLM2 GGUF requantised by llama.cpp itself to ``ftype`` ("q8_0": every matrix
    8-bit, llama.cpp's 8-bit path, the counterpart of lpulab's int8), made once and kept in
    :func:`lpulab.kernels.cache.cache_dir` (keyed on the source file's SHA-256 and the
    llama-cpp-python version). The Q4_1 values are requantised (``allow_requantize``)."""
    import llama_cpp

    from .cache import cache_dir, file_sha256
    from .gguf_model import smollm2_gguf_path

    types = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0}
    if ftype not in types:
        raise ValueError(f"requantized_gguf: ftype must be one of {', '.join(types)}, got {ftype!r}")
    src = Path(source) if source is not None else smollm2_gguf_path()
    tag = f"{file_sha256(src)[:16]}-{getattr(llama_cpp, '__version__', 'unknown')}"
    d = cache_dir()
    out = d / f"{src.stem}.{ftype}-{tag}.gguf"
    if out.is_file():
        return out
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{out.name}.{os.getpid()}.tmp"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = types[ftype]
    params.allow_requantize = True
    params.pure = True  # every matrix in ftype (token embedding and output too)
    params.nthread = _threads()
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"llama.cpp could not requantise {src} to {ftype} (return code {rc})")
    tmp.replace(out)
    return out


class LlamaCppReference:
    """A llama.cpp context on the CPU: last-position logits and greedy decoding.

    Flash attention is left at llama.cpp's default, the KV cache at its default (f16).
    """

    def __init__(self, model_path: str | Path, *, n_ctx: int = 512, n_threads: int | None = None, seed: int = 0):
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.n_threads = n_threads or _threads()
        self.llm = llama_cpp.Llama(
            model_path=str(model_path), n_ctx=n_ctx, n_threads=self.n_threads, n_threads_batch=self.n_threads,
            logits_all=False, verbose=False, seed=seed,
        )
        self.n_vocab = self.llm.n_vocab()
        self.version = getattr(llama_cpp, "__version__", "unknown")

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def detokenize(self, ids: Sequence[int]) -> str:
        return self.llm.detokenize([int(i) for i in ids]).decode("utf-8", errors="replace")

    def _last_logits(self) -> np.ndarray:
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()

    def last_logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits after the last of ``ids``, from an empty context."""
        self.llm.reset()
        self.llm.eval([int(i) for i in ids])
        return self._last_logits()

    def greedy(self, ids: Sequence[int], n_new: int) -> tuple[list[int], list[np.ndarray]]:
        """Greedy continuation (argmax each step) and the logits that chose each token."""
        self.llm.reset()
        self.llm.eval([int(i) for i in ids])
        out, logits = [], []
        for i in range(n_new):
            lg = self._last_logits()
            logits.append(lg)
            tok = int(np.argmax(lg))
            out.append(tok)
            if i + 1 < n_new:
                self.llm.eval([tok])
        return out, logits

    def timed(self, ids: Sequence[int], n_new: int) -> tuple[list[int], float, float]:
        """Greedy continuation with (prefill seconds, decode seconds for n_new - 1 steps)."""
        self.llm.reset()
        t0 = time.perf_counter()
        self.llm.eval([int(i) for i in ids])
        lg = self._last_logits()
        t1 = time.perf_counter()
        out = [int(np.argmax(lg))]
        for _ in range(n_new - 1):
            self.llm.eval([out[-1]])
            out.append(int(np.argmax(self._last_logits())))
        t2 = time.perf_counter()
        return out, t1 - t0, t2 - t1


@dataclass(frozen=True)
class PromptComparison:
    """One prompt: numpy vs llama.cpp greedy tokens and logits.

    ``agree_until``: number of leading generated tokens that agree. At the first step
    where they part (if any), ``gap_at_split`` is the reference's top-two logit gap
    there, and ``explained`` says whether it was inside the logit tolerance (so the split
    is a near-tie, not a bug).
    """

    prompt: str
    prompt_ids: tuple[int, ...]
    numpy_tokens: tuple[int, ...]
    reference_tokens: tuple[int, ...]
    first_logits_max_abs_diff: float
    max_abs_diff_while_agreeing: float
    agree_until: int
    gap_at_split: float | None
    explained: bool
    tolerance: float
    numpy_text: str = ""
    reference_text: str = ""

    @property
    def agrees(self) -> bool:
        return self.agree_until == len(self.numpy_tokens)


def _top2_gap(logits: np.ndarray) -> float:
    a = np.partition(logits, -2)[-2:]
    return float(a[1] - a[0])


def compare_greedy(
    step_generate: Callable[[np.ndarray, int], Any],
    reference: LlamaCppReference,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    n_new: int = 12,
    tolerance: float = 0.5,
) -> list[PromptComparison]:
    """Greedy-decode each prompt with both and compare step by step.

    ``step_generate(ids (1, S), n_new)`` returns an object with ``.tokens`` (1, n_new) and
    ``.logits`` (one (1, V) array per step), e.g. ``Decoder.generate``. Logit differences
    are compared only while both sides have seen the same tokens.
    """
    out = []
    for text in prompts:
        ids = reference.tokenize(text)
        gen = step_generate(np.asarray([ids], dtype=np.int64), n_new)
        mine = [int(t) for t in np.asarray(gen.tokens)[0]]
        ref_tokens, ref_logits = reference.greedy(ids, n_new)
        agree = 0
        max_diff = 0.0
        first_diff = float(np.max(np.abs(np.asarray(gen.logits[0])[0] - ref_logits[0])))
        gap = None
        for i in range(n_new):
            d = float(np.max(np.abs(np.asarray(gen.logits[i])[0] - ref_logits[i])))
            max_diff = max(max_diff, d)
            if mine[i] != ref_tokens[i]:
                gap = _top2_gap(ref_logits[i])
                break
            agree += 1
        out.append(PromptComparison(
            prompt=text, prompt_ids=tuple(ids), numpy_tokens=tuple(mine), reference_tokens=tuple(ref_tokens),
            first_logits_max_abs_diff=first_diff, max_abs_diff_while_agreeing=max_diff, agree_until=agree,
            gap_at_split=gap, explained=gap is None or gap <= tolerance, tolerance=tolerance,
            numpy_text=reference.detokenize(mine), reference_text=reference.detokenize(ref_tokens),
        ))
    return out


# --------------------------------------------------------------------------- the SmolLM2 check

# Stated tolerances on last-position logits (absolute; SmolLM2's logits reach ~20-30).
# llama.cpp quantises activations to 8 bits inside its Q4_1/Q8_0 dot products; a rounding
# flip in a block that holds one of the model's "massive activations" (|x| ~ 2e4) moves
# the logits by ~0.5. Measured: perturbing the embedding by 2**-20 (relative) moves the
# ggml-emulating numpy model's logits by up to ~0.8, so llama.cpp's own logits carry that
# much numerical noise; no float32 implementation can agree more tightly than that.
LOGIT_TOLERANCE = {"fp32": 1.5, "ggml": 1.5, "int8": 2.5}


@dataclass
class ModeCheck:
    mode: str
    tolerance: float
    model_bytes: int
    last_logits_max_abs_diff: list[float]
    prompts: list[PromptComparison]

    @property
    def ok(self) -> bool:
        return max(self.last_logits_max_abs_diff) <= self.tolerance and all(p.explained for p in self.prompts)


@dataclass
class ShardCheck:
    mode: str
    plan: str  # e.g. "3 chips: 1 stage x 3 tensor-parallel"
    exactness: str
    max_abs_diff_vs_whole: float
    matches_whole: bool
    same_greedy_tokens: bool
    bytes_per_token_decode: float
    per_chip_bytes: list[int]


@dataclass
class SmolLM2Report:
    gguf: str
    config: dict
    llama_cpp_version: str
    threads: int
    device: str  # the catalog device whose chip the fits and sharded runs use
    chip_sram_bytes: int
    fits_one_chip: dict  # mode -> bool
    modes: dict  # mode -> ModeCheck
    shards: list  # ShardCheck
    speed: dict  # engine -> {"tokens_per_s", ...}
    noise_floor: float | None = None
    notes: list = field(default_factory=list)


def _teacher_forced(model, ids: Sequence[int], tokens: Sequence[int]) -> list:
    """Logits at each step when the continuation ``tokens`` is fed (prefill then decode)."""
    cache = model.new_cache(1, len(ids) + len(tokens) + 1)
    out = [model.forward(np.asarray([list(ids)]), cache)]
    for t in tokens[:-1]:
        out.append(model.forward(np.asarray([[int(t)]]), cache))
    return out


def smollm2_check(
    prompts: Sequence[str] = DEFAULT_PROMPTS, n_new: int = 12, *, modes: Sequence[str] = ("fp32", "int8"),
    speed_tokens: int = 0, speed_repeats: int = 3, noise_floor: bool = False, n_threads: int | None = None,
    shard_layouts: Sequence[tuple[str, int, int]] | None = None, device: str | None = None,
) -> SmolLM2Report:
    """SmolLM2-135M (Q4_1 GGUF) in lpulab's numpy decoder vs llama.cpp on the same ids:
    last-position logits, greedy continuations, sharded runs, placement, and (with
    ``speed_tokens``) tokens/s in this process; benchmarks/bench_smollm2.py times each
    engine in its own process instead, which is fairer on a shared machine.

    ``shard_layouts``: (mode, pipeline stages, tensor parallel) of the sharded runs on chips
    of ``device``'s on-chip memory (:func:`lpulab.kernels.sharded.chip_sram_bytes`; default
    :data:`lpulab.kernels.sharded.DEFAULT_DEVICE`, groq-lpu-v1: 220 MiB in the catalog;
    default layouts: fp32 1x3, int8 1x1, 1x3, 3x1);
    ``()`` skips them (notebook 05 shards through :mod:`lpulab.placement` instead)."""
    from .gguf_model import load_gguf, smollm2_gguf_path
    from .model import Decoder, quantize_weights
    from .sharded import DEFAULT_DEVICE, ShardedDecoder, SramBudgetError, build_plan, chip_sram_bytes

    device = device or DEFAULT_DEVICE
    sram = chip_sram_bytes(device)

    path = smollm2_gguf_path()
    ref = LlamaCppReference(path, n_threads=n_threads)
    base, _info = load_gguf(path, mode="fp32")
    cfg = base.config
    models = {"fp32": base}
    if "int8" in modes:
        models["int8"] = Decoder(cfg, quantize_weights(base.weights), base.numerics)
    if "ggml" in modes:
        models["ggml"] = load_gguf(path, mode="ggml")[0]

    checks = {}
    for mode in modes:
        m = models[mode]
        tol = LOGIT_TOLERANCE[mode]
        comps = compare_greedy(m.generate, ref, prompts, n_new, tol)
        checks[mode] = ModeCheck(mode, tol, m.nbytes, [c.first_logits_max_abs_diff for c in comps], comps)

    fits = {}
    for mode in ("fp32", "int8"):
        if mode not in models:
            continue
        try:
            ShardedDecoder(models[mode], build_plan(cfg, n_chips=1, sram_bytes=sram)).new_cache(1, 64)
            fits[mode] = True
        except SramBudgetError:
            fits[mode] = False

    ids = ref.tokenize(prompts[0])
    shards = []
    if shard_layouts is None:
        layouts = [("fp32", 1, 3)] + ([("int8", 1, 1), ("int8", 1, 3), ("int8", 3, 1)] if "int8" in models else [])
    else:
        layouts = [tuple(x) for x in shard_layouts]  # type: ignore[misc]  # (mode, stages, tensor) triples
    for mode, stages, tp in layouts:
        m = models[mode]
        sd = ShardedDecoder(m, build_plan(cfg, n_chips=stages * tp, pipeline_stages=stages, tensor_parallel=tp,
                                          sram_bytes=sram))
        whole = m.generate(np.asarray([ids]), n_new)
        toks = [int(t) for t in whole.tokens[0]]
        steps = _teacher_forced(sd, ids, toks)
        diffs = [float(np.max(np.abs(s.logits - w))) for s, w in zip(steps, whole.logits)]
        greedy = sd.generate(np.asarray([ids]), n_new)
        shards.append(ShardCheck(
            mode, f"{stages * tp} chips: {stages} stage(s) x {tp} tensor-parallel", sd.exactness, max(diffs),
            all(s.matches(w) for s, w in zip(steps, whole.logits)),
            bool(np.array_equal(greedy.tokens, whole.tokens)), steps[-1].bytes_per_token,
            [r["weight_bytes"] + r["kv_bytes"] for r in sd.residency()],
        ))

    speed = {}
    if speed_tokens:
        for engine in ("llama.cpp", *(f"numpy-{m}" for m in modes)):
            speed[engine] = measure_speed(engine, prompts[0], speed_tokens, speed_repeats,
                                          model=models.get(engine.removeprefix("numpy-")), reference=ref)

    floor = None
    if noise_floor:
        from .gguf_model import ggml_noise_floor

        gm = models.get("ggml") or load_gguf(path, mode="ggml")[0]
        floor = max(ggml_noise_floor(gm, ref.tokenize(p)) for p in prompts)
    c = cfg
    return SmolLM2Report(
        gguf=str(path),
        config=dict(n_layers=c.n_layers, hidden=c.hidden, n_heads=c.n_heads, n_kv_heads=c.n_kv_heads,
                    head_dim=c.head_dim, ffn=c.ffn, vocab=c.vocab, tied_embeddings=c.tied_embeddings,
                    rope_theta=c.rope_theta, norm_eps=c.norm_eps, rope_layout=c.rope_layout, n_params=c.n_params),
        llama_cpp_version=ref.version, threads=ref.n_threads, device=device, chip_sram_bytes=sram, fits_one_chip=fits,
        modes=checks, shards=shards, speed=speed, noise_floor=floor,
    )


def report_dict(report: SmolLM2Report) -> dict:
    """Plain-data (JSON-ready) form of a :class:`SmolLM2Report`."""
    import dataclasses

    return dataclasses.asdict(report)


#: Engines :func:`measure_speed` times: llama.cpp on the Q4_1 file, llama.cpp on its own
#: 8-bit requantisation (:func:`requantized_gguf`), and the numpy decoder's modes.
ENGINES = ("llama.cpp", "llama.cpp-q8_0", "numpy-fp32", "numpy-int8", "numpy-fp8", "numpy-int4", "numpy-ggml")


def measure_speed(engine: str, prompt: str = DEFAULT_PROMPTS[0], n_new: int = 32, repeats: int = 3, *,
                  model=None, reference: LlamaCppReference | None = None, n_threads: int | None = None,
                  reuse: bool = False) -> dict:
    """Greedy generation speed of one engine of :data:`ENGINES` (SmolLM2, same prompt ids,
    same number of new tokens).

    Returns the median over ``repeats`` runs (after one warm-up) of the prefill time and
    the decode rate ((n_new - 1) single-token steps), and the overall tokens/s.
    ``reuse``: load the numpy weights through :mod:`lpulab.kernels.cache`.
    """
    from .gguf_model import smollm2_gguf_path

    if engine not in ENGINES:
        raise ValueError(f"measure_speed: engine must be one of {ENGINES}, got {engine!r}")
    if n_new < 2:
        raise ValueError(f"measure_speed: n_new must be >= 2, got {n_new}")
    ref = reference or LlamaCppReference(smollm2_gguf_path(), n_threads=n_threads)
    ids = ref.tokenize(prompt)
    if engine.startswith("llama.cpp"):
        eng = ref if engine == "llama.cpp" else LlamaCppReference(requantized_gguf(engine.split("-", 1)[1]),
                                                                  n_threads=ref.n_threads)
        run = lambda: eng.timed(ids, n_new)  # noqa: E731
        threads = eng.n_threads
    else:
        mode = engine.removeprefix("numpy-")
        if model is None:
            from .cache import cached_smollm2

            model = cached_smollm2(mode, reuse=reuse)[0][0]
        m = model

        def run():
            cache = m.new_cache(1, len(ids) + n_new)
            t0 = time.perf_counter()
            tok = int(np.argmax(m.forward(np.asarray([ids]), cache).logits[0]))
            out = [tok]
            t1 = time.perf_counter()
            for _ in range(n_new - 1):
                tok = int(np.argmax(m.forward(np.asarray([[tok]]), cache).logits[0]))
                out.append(tok)
            return out, t1 - t0, time.perf_counter() - t1

        from . import tiled

        threads = tiled.threads()
    run()  # warm-up
    runs = [run() for _ in range(repeats)]
    pre = float(np.median([r[1] for r in runs]))
    dec = float(np.median([r[2] for r in runs]))
    return {"engine": engine, "prefill_s": pre, "decode_tokens_per_s": (n_new - 1) / dec,
            "total_tokens_per_s": n_new / (pre + dec), "threads": threads, "prompt_tokens": len(ids),
            "new_tokens": n_new, "runs": repeats, "tokens": runs[-1][0]}
