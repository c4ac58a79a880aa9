"""llama.cpp (through llama-cpp-python) as the independent reference for the GGUF model,
and the comparison of lpulab's numpy decoder against it.

Only this module imports ``llama_cpp``, lazily. Both sides get the same token ids; the
numpy side needs no tokenizer.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "LlamaCppReference",
    "PromptComparison",
    "compare_greedy",
    "time_generation",
    "DEFAULT_PROMPTS",
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
        return self.llm.detokenize(list(int(i) for i in ids)).decode("utf-8", errors="replace")

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
    step_generate: Callable[[np.ndarray, int], object],
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


def time_generation(generate: Callable[[np.ndarray, int], object], ids: Sequence[int], n_new: int,
                    repeats: int = 3) -> dict:
    """Median wall time of ``generate(ids, n_new)`` over ``repeats`` runs, as tokens/s."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        generate(np.asarray([list(ids)], dtype=np.int64), n_new)
        times.append(time.perf_counter() - t0)
    med = float(np.median(times))
    return {"seconds_median": med, "tokens_per_s": n_new / med, "runs": len(times)}
