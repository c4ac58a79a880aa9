"""The decoder against an independent straightforward implementation, and its invariants."""

import numpy as np
import pytest

from lpulab.kernels import Decoder, DecoderConfig, init_weights

CFG = DecoderConfig(n_layers=2, hidden=24, n_heads=6, n_kv_heads=2, head_dim=4, ffn=40, vocab=50)


def reference_logits(cfg, w, tokens):
    """Float64, one sequence, token by token with explicit loops over heads: the Llama
    equations written out (HF rotate_half rotary), all positions' logits."""
    w = {k: (v if isinstance(v, np.ndarray) else v.dequantize()).astype(np.float64) for k, v in w.items()}
    hq, g, dh = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim

    def norm(x, gain):
        return x / np.sqrt(np.mean(x * x) + cfg.norm_eps) * gain

    def rot(x, pos):
        half = dh // 2
        inv = cfg.rope_theta ** (-np.arange(half) * 2.0 / dh)
        c, s = np.cos(pos * inv), np.sin(pos * inv)
        return np.concatenate([x[:half] * c - x[half:] * s, x[:half] * s + x[half:] * c])

    keys = [[] for _ in range(cfg.n_layers)]
    vals = [[] for _ in range(cfg.n_layers)]
    out = []
    for pos, tok in enumerate(tokens):
        x = w["embed_tokens"][tok].copy()
        for i in range(cfg.n_layers):
            p = f"layers.{i}."
            hn = norm(x, w[p + "attn_norm"])
            q = (w[p + "q_proj"] @ hn).reshape(hq, dh)
            k = (w[p + "k_proj"] @ hn).reshape(g, dh)
            v = (w[p + "v_proj"] @ hn).reshape(g, dh)
            keys[i].append(np.stack([rot(k[j], pos) for j in range(g)]))
            vals[i].append(v)
            att = np.zeros((hq, dh))
            for j in range(hq):
                kv = j // (hq // g)
                qj = rot(q[j], pos)
                sc = np.array([qj @ kk[kv] for kk in keys[i]]) / np.sqrt(dh)
                pr = np.exp(sc - sc.max())
                pr /= pr.sum()
                att[j] = sum(pr[t] * vals[i][t][kv] for t in range(len(pr)))
            x = x + w[p + "o_proj"] @ att.reshape(-1)
            hn = norm(x, w[p + "ffn_norm"])
            gt, up = w[p + "gate_proj"] @ hn, w[p + "up_proj"] @ hn
            x = x + w[p + "down_proj"] @ (gt / (1 + np.exp(-gt)) * up)
        head = w["embed_tokens"] if cfg.tied_embeddings else w["lm_head"]
        out.append(head @ norm(x, w["final_norm"]))
    return np.array(out)


@pytest.mark.parametrize("cfg", [CFG, DecoderConfig(n_layers=1, hidden=16, n_heads=2, n_kv_heads=1, head_dim=8,
                                                    ffn=24, vocab=30, tied_embeddings=False, rope_theta=500.0)])
def test_prefill_and_decode_match_the_reference(cfg):
    m = Decoder.random(cfg, seed=3)
    tokens = [5, 1, 7, 7, 2, 9]
    ref = reference_logits(cfg, m.weights, tokens)
    step, cache = m.prefill(np.array([tokens[:4]]), capacity=8)
    np.testing.assert_allclose(step.logits[0], ref[3], rtol=1e-4, atol=1e-4)
    for i in (4, 5):
        step = m.decode(np.array([tokens[i]]), cache)
        np.testing.assert_allclose(step.logits[0], ref[i], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["int8", "fp8", "int4"])
def test_quantised_model_matches_the_reference_of_its_dequantised_weights(precision):
    m = Decoder.random(CFG, seed=4, precision=precision)
    assert m.precision == precision
    tokens = [3, 4, 5, 6]
    ref = reference_logits(CFG, m.weights, tokens)
    step, _ = m.prefill(np.array([tokens]))
    # only the activations' 16-bit per-row quantisation differs
    np.testing.assert_allclose(step.logits[0], ref[-1], rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("precision,shrink,close", [("int8", 3, 0.05), ("fp8", 3, 0.1), ("int4", 5, 0.3)])
def test_quantised_is_close_to_fp32(precision, shrink, close):
    f = Decoder.random(CFG, seed=5)
    q = f.quantized(precision=precision)
    assert q.precision == precision and f.precision == "fp32"
    assert q.nbytes < f.nbytes / shrink
    t = np.array([[1, 2, 3, 4, 5]])
    lf, lq = f.prefill(t)[0].logits, q.prefill(t)[0].logits
    assert np.max(np.abs(lf - lq)) < close * np.max(np.abs(lf))
    with pytest.raises(ValueError, match="quantise from fp32 weights"):
        q.quantized()


def test_batch_rows_are_independent():
    m = Decoder.random(CFG, seed=6)
    a, b = [1, 2, 3], [9, 8, 7]
    both = m.generate(np.array([a, b]), 4)
    for i, row in enumerate((a, b)):
        alone = m.generate(np.array([row]), 4)
        np.testing.assert_array_equal(both.tokens[i], alone.tokens[0])
        np.testing.assert_allclose(both.logits[-1][i], alone.logits[-1][0], rtol=1e-5, atol=1e-5)


def test_chunked_prefill_equals_one_prefill():
    m = Decoder.random(CFG, seed=7)
    t = np.array([[4, 5, 6, 7, 8]])
    one = m.prefill(t)[0].logits
    cache = m.new_cache(1, 8)
    m.forward(t[:, :2], cache)
    two = m.forward(t[:, 2:], cache).logits
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-5)


def test_weights_are_seeded():
    a, b, c = init_weights(CFG, 1), init_weights(CFG, 1), init_weights(CFG, 2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["layers.0.q_proj"], c["layers.0.q_proj"])
    assert list(a) == list(CFG.weight_shapes())
    assert CFG.n_params == sum(v.size for v in a.values())


@pytest.mark.parametrize("kwargs,msg", [
    (dict(n_heads=5, n_kv_heads=2), "multiple of n_kv_heads"),
    (dict(head_dim=3), "head_dim must be even"),
    (dict(hidden=0), "hidden must be a positive integer"),
    (dict(rope_layout="neox"), "rope_layout must be one of"),
])
def test_config_errors_are_clear(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        DecoderConfig(**kwargs)


def test_bad_inputs_are_refused():
    m = Decoder.random(CFG, seed=0)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 50\)"):
        m.prefill(np.array([[1, 50]]))
    _step, cache = m.prefill(np.array([[1, 2]]), capacity=3)
    m.decode(np.array([1]), cache)
    with pytest.raises(ValueError, match="exceed the cache capacity 3"):
        m.decode(np.array([1]), cache)
    with pytest.raises(ValueError, match="cache holds 1 sequences, tokens have 2"):
        m.forward(np.array([[1], [2]]), m.new_cache(1, 4))
    with pytest.raises(ValueError, match=r"weight 'layers.0.q_proj' has shape"):
        w = init_weights(CFG, 0)
        w["layers.0.q_proj"] = w["layers.0.q_proj"][:-1]
        Decoder(CFG, w)
