"""Counts of a full forward pass against docs/counting.md, by hand for a tiny shape."""

import numpy as np
import pytest

from lpulab.kernels import Decoder, DecoderConfig, Numerics, OpCount

# h=4, H=2, G=1, dh=2, F=3, V=5, one layer, tied embeddings; float32 so a = w = c = 4.
TINY = DecoderConfig(n_layers=1, hidden=4, n_heads=2, n_kv_heads=1, head_dim=2, ffn=3, vocab=5)

# Prefill, B=1, S=2, P=0: N=2, K_att = B*(S*P + S*(S+1)/2) = 3.
# (name, flops, weight, act_read, act_write, kv_read, kv_write)
PREFILL = [
    ("embedding", 0, 2 * 4 * 4, 0, 2 * 4 * 4, 0, 0),                          # N*h*w, N*h*a
    ("layers.0.attn_norm", 4 * 2 * 4, 4 * 4, 32, 32, 0, 0),                    # 4*N*h, h*a
    ("layers.0.q_proj", 2 * 2 * 4 * 4, 4 * 4 * 4, 32, 2 * 4 * 4, 0, 0),        # 2*N*h*H*dh, h*H*dh*w
    ("layers.0.k_proj", 2 * 2 * 4 * 2, 4 * 2 * 4, 32, 0, 0, 2 * 2 * 4),        # kv_write N*G*dh*c
    ("layers.0.v_proj", 2 * 2 * 4 * 2, 4 * 2 * 4, 32, 0, 0, 2 * 2 * 4),
    ("layers.0.rope", 3 * 2 * 3 * 2, 0, 2 * 3 * 2 * 4, 2 * 3 * 2 * 4, 0, 0),   # 3*N*(H+G)*dh
    ("layers.0.attn_scores", 2 * 2 * 2 * 3, 0, 2 * 2 * 2 * 4, 2 * 3 * 4, 1 * 2 * 1 * 2 * 4, 0),
    ("layers.0.softmax", 5 * 2 * 3, 0, 2 * 3 * 4, 2 * 3 * 4, 0, 0),
    ("layers.0.attn_values", 2 * 2 * 2 * 3, 0, 2 * 3 * 4, 2 * 2 * 2 * 4, 1 * 2 * 1 * 2 * 4, 0),
    ("layers.0.o_proj", 2 * 2 * 4 * 4, 4 * 4 * 4, 2 * 4 * 4, 2 * 4 * 4, 0, 0),
    ("layers.0.attn_residual", 2 * 4, 0, 2 * 2 * 4 * 4, 2 * 4 * 4, 0, 0),
    ("layers.0.ffn_norm", 4 * 2 * 4, 4 * 4, 32, 32, 0, 0),
    ("layers.0.gate_proj", 2 * 2 * 4 * 3, 4 * 3 * 4, 32, 2 * 3 * 4, 0, 0),
    ("layers.0.up_proj", 2 * 2 * 4 * 3, 4 * 3 * 4, 32, 2 * 3 * 4, 0, 0),
    ("layers.0.silu_mul", 5 * 2 * 3, 0, 2 * 2 * 3 * 4, 2 * 3 * 4, 0, 0),
    ("layers.0.down_proj", 2 * 2 * 3 * 4, 3 * 4 * 4, 2 * 3 * 4, 2 * 4 * 4, 0, 0),
    ("layers.0.ffn_residual", 2 * 4, 0, 2 * 2 * 4 * 4, 2 * 4 * 4, 0, 0),
    ("final_norm", 4 * 2 * 4, 4 * 4, 32, 32, 0, 0),
    ("lm_head", 2 * 1 * 4 * 5, 4 * 5 * 4, 1 * 4 * 4, 1 * 5 * 4, 0, 0),         # R = B = 1
]

# Decode, B=1, S=1, P=2: N=1, K_att = 1*(1*2 + 1) = 3, keys read B*(P+S)*G*dh*c = 24.
DECODE = [
    ("embedding", 0, 16, 0, 16, 0, 0),
    ("layers.0.attn_norm", 16, 16, 16, 16, 0, 0),
    ("layers.0.q_proj", 32, 64, 16, 16, 0, 0),
    ("layers.0.k_proj", 16, 32, 16, 0, 0, 8),
    ("layers.0.v_proj", 16, 32, 16, 0, 0, 8),
    ("layers.0.rope", 18, 0, 24, 24, 0, 0),
    ("layers.0.attn_scores", 24, 0, 16, 24, 24, 0),
    ("layers.0.softmax", 30, 0, 24, 24, 0, 0),
    ("layers.0.attn_values", 24, 0, 24, 16, 24, 0),
    ("layers.0.o_proj", 32, 64, 16, 16, 0, 0),
    ("layers.0.attn_residual", 4, 0, 32, 16, 0, 0),
    ("layers.0.ffn_norm", 16, 16, 16, 16, 0, 0),
    ("layers.0.gate_proj", 24, 48, 16, 12, 0, 0),
    ("layers.0.up_proj", 24, 48, 16, 12, 0, 0),
    ("layers.0.silu_mul", 15, 0, 24, 12, 0, 0),
    ("layers.0.down_proj", 24, 48, 12, 16, 0, 0),
    ("layers.0.ffn_residual", 4, 0, 32, 16, 0, 0),
    ("final_norm", 16, 16, 16, 16, 0, 0),
    ("lm_head", 40, 80, 16, 20, 0, 0),
]


def test_prefill_and_decode_counts_by_hand():
    m = Decoder.random(TINY, seed=0)
    step, cache = m.prefill(np.array([[1, 2]]))
    assert list(step.counts) == [OpCount(*row) for row in PREFILL]
    step = m.decode(np.array([3]), cache)
    assert list(step.counts) == [OpCount(*row) for row in DECODE]


def test_int8_weights_and_fp16_cache_change_only_the_byte_widths():
    m = Decoder.random(TINY, seed=0, precision="int8", numerics=Numerics(kv_dtype="float16"))
    step, _ = m.prefill(np.array([[1, 2]]))
    got = {c.name: c for c in step.counts}
    assert got["layers.0.q_proj"].weight == 4 * 4 * 1            # w = 1
    assert got["layers.0.k_proj"].kv_write == 2 * 2 * 2           # c = 2
    assert got["layers.0.attn_scores"].kv_read == 1 * 2 * 1 * 2 * 2
    assert got["embedding"].weight == 2 * 4 * 1
    assert got["layers.0.q_proj"].flops == 2 * 2 * 4 * 4          # FLOPs do not change


def analytic(cfg, b, s, p, a=4, w=4, c=4):
    """docs/counting.md as formulas (what lpulab.workload computes), for any shape."""
    h, hq, g, dh, f, v = cfg.hidden, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.ffn, cfg.vocab
    n, r = b * s, b
    k_att = b * (s * p + s * (s + 1) // 2)
    kv = b * (p + s) * g * dh * c
    rows = [("embedding", 0, n * h * w, 0, n * h * a, 0, 0)]
    for i in range(cfg.n_layers):
        q = f"layers.{i}."
        norm = (4 * n * h, h * a, n * h * a, n * h * a, 0, 0)
        rows += [
            (q + "attn_norm", *norm),
            (q + "q_proj", 2 * n * h * hq * dh, h * hq * dh * w, n * h * a, n * hq * dh * a, 0, 0),
            (q + "k_proj", 2 * n * h * g * dh, h * g * dh * w, n * h * a, 0, 0, n * g * dh * c),
            (q + "v_proj", 2 * n * h * g * dh, h * g * dh * w, n * h * a, 0, 0, n * g * dh * c),
            (q + "rope", 3 * n * (hq + g) * dh, 0, n * (hq + g) * dh * a, n * (hq + g) * dh * a, 0, 0),
            (q + "attn_scores", 2 * dh * hq * k_att, 0, n * hq * dh * a, hq * k_att * a, kv, 0),
            (q + "softmax", 5 * hq * k_att, 0, hq * k_att * a, hq * k_att * a, 0, 0),
            (q + "attn_values", 2 * dh * hq * k_att, 0, hq * k_att * a, n * hq * dh * a, kv, 0),
            (q + "o_proj", 2 * n * hq * dh * h, hq * dh * h * w, n * hq * dh * a, n * h * a, 0, 0),
            (q + "attn_residual", n * h, 0, 2 * n * h * a, n * h * a, 0, 0),
            (q + "ffn_norm", *norm),
            (q + "gate_proj", 2 * n * h * f, h * f * w, n * h * a, n * f * a, 0, 0),
            (q + "up_proj", 2 * n * h * f, h * f * w, n * h * a, n * f * a, 0, 0),
            (q + "silu_mul", 5 * n * f, 0, 2 * n * f * a, n * f * a, 0, 0),
            (q + "down_proj", 2 * n * f * h, f * h * w, n * f * a, n * h * a, 0, 0),
            (q + "ffn_residual", n * h, 0, 2 * n * h * a, n * h * a, 0, 0),
        ]
    rows += [("final_norm", 4 * n * h, h * a, n * h * a, n * h * a, 0, 0),
             ("lm_head", 2 * r * h * v, h * v * w, r * h * a, r * v * a, 0, 0)]
    return [OpCount(*x) for x in rows]


@pytest.mark.parametrize("cfg,b,s", [
    (DecoderConfig(), 2, 5),
    (DecoderConfig(n_layers=3, hidden=24, n_heads=6, n_kv_heads=2, head_dim=4, ffn=40, vocab=50, tied_embeddings=False), 3, 4),
    (DecoderConfig(n_layers=1, hidden=8, n_heads=2, n_kv_heads=2, head_dim=4, ffn=8, vocab=9), 1, 1),
])
def test_counts_match_the_formulas_for_other_shapes(cfg, b, s):
    m = Decoder.random(cfg, seed=1)
    tokens = np.arange(b * s).reshape(b, s) % cfg.vocab
    step, cache = m.prefill(tokens, capacity=s + 3)
    assert list(step.counts) == analytic(cfg, b, s, 0)
    for p in (s, s + 1):
        step = m.decode(np.arange(b) % cfg.vocab, cache)
        assert list(step.counts) == analytic(cfg, b, 1, p)
