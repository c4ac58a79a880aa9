"""Operators against straightforward references, known values, and the counting convention."""

import numpy as np
import pytest

from lpulab.kernels import ops
from lpulab.kernels.ops import Int8Weight, OpCount


def rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- OpCount

def test_opcount_bytes_and_op_name():
    c = OpCount("layers.3.q_proj", flops=10, weight=1, act_read=2, act_write=3, kv_read=4, kv_write=5)
    assert c.bytes == 15 and c.op == "q_proj"
    assert ops.total([c, c]).flops == 20
    assert ops.by_op([c, OpCount("layers.4.q_proj", flops=1)])["q_proj"].flops == 11


def test_opcount_rejects_negative_and_float():
    with pytest.raises(ValueError, match="non-negative integer"):
        OpCount("x", flops=-1)
    with pytest.raises(ValueError, match="flops"):
        OpCount("x", flops=1.5)


# ----------------------------------------------------------------------------- matmul

def test_linear_matches_loops_and_counts():
    x = rng(1).standard_normal((3, 5), dtype=np.float32)
    w = rng(2).standard_normal((4, 5), dtype=np.float32)
    y, c = ops.linear(x, w, name="p")
    ref = np.array([[sum(float(x[i, k]) * float(w[o, k]) for k in range(5)) for o in range(4)] for i in range(3)])
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)
    assert c == OpCount("p", flops=2 * 3 * 5 * 4, weight=4 * 5 * 4, act_read=3 * 5 * 4, act_write=3 * 4 * 4)
    _, ckv = ops.linear(x, w, name="k", write="kv", write_itemsize=2)
    assert (ckv.act_write, ckv.kv_write) == (0, 3 * 4 * 2)


def test_linear_shape_error_is_clear():
    with pytest.raises(ValueError, match="input has 5 features but the weight is"):
        ops.linear(np.zeros((2, 5), np.float32), np.zeros((3, 4), np.float32), name="q")


def test_matmul_gemm_and_gemv():
    a = rng(3).standard_normal((4, 6), dtype=np.float32)
    b = rng(4).standard_normal((6, 3), dtype=np.float32)
    y, c = ops.matmul(a, b, name="mm")
    np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-5, atol=1e-6)
    assert c.flops == 2 * 4 * 6 * 3 and c.act_read == (24 + 18) * 4 and c.act_write == 12 * 4
    v, cv = ops.matmul(a, b[:, 0], name="mv")
    np.testing.assert_allclose(v, y[:, 0], rtol=1e-5, atol=1e-6)
    assert cv.flops == 2 * 4 * 6


# ----------------------------------------------------------------------------- element-wise

def test_softmax_known_values_and_mask():
    p, c = ops.softmax(np.array([[0.0, np.log(3.0)]], dtype=np.float32))
    np.testing.assert_allclose(p, [[0.25, 0.75]], rtol=1e-6)
    assert c.flops == 5 * 2
    x = rng(5).standard_normal((3, 4), dtype=np.float32)
    mask = np.tril(np.ones((3, 4), bool))
    p, c = ops.softmax(x, mask=mask, scale=0.5)
    assert np.all(p[~mask] == 0)
    np.testing.assert_allclose(p.sum(-1), 1, rtol=1e-6)
    e = np.where(mask, np.exp(0.5 * x.astype(np.float64)), 0)
    np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), rtol=1e-5)
    assert c.flops == 5 * int(mask.sum())
    big, _ = ops.softmax(np.array([[1000.0, 1000.0]], dtype=np.float32))
    np.testing.assert_allclose(big, [[0.5, 0.5]])


def test_rmsnorm_known_values():
    x = np.array([[3.0, 4.0]], dtype=np.float32)
    g = np.array([1.0, 2.0], dtype=np.float32)
    y, c = ops.rmsnorm(x, g, 0.0, name="n")
    r = np.sqrt(12.5)
    np.testing.assert_allclose(y, [[3 / r, 8 / r]], rtol=1e-6)
    assert c == OpCount("n", flops=4 * 2, weight=2 * 4, act_read=8, act_write=8)


def test_silu_mul_known_values():
    g = np.array([0.0, 20.0, -20.0, 1.0], dtype=np.float32)
    u = np.array([5.0, 2.0, 3.0, 1.0], dtype=np.float32)
    y, c = ops.silu_mul(g, u, name="s")
    np.testing.assert_allclose(y, [0.0, 40.0, 3 * -20 / (1 + np.exp(20)), 1 / (1 + np.exp(-1))], rtol=1e-5, atol=1e-7)
    assert c.flops == 5 * 4 and c.act_read == 2 * 4 * 4


def test_residual_add():
    x = np.ones((2, 3), np.float32)
    z, c = ops.residual_add(x, 2 * x, name="r")
    assert np.all(z == 3) and c == OpCount("r", flops=6, act_read=48, act_write=24)


# ----------------------------------------------------------------------------- rotary

@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_position_zero_is_identity_and_norm_preserved(layout):
    x = rng(6).standard_normal((1, 2, 5, 8), dtype=np.float32)
    cos, sin = ops.rope_angles(np.arange(5), 8, 10000.0)
    y = ops.apply_rope(x, cos, sin, layout)
    np.testing.assert_array_equal(y[:, :, 0], x[:, :, 0])
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)


def test_rope_known_rotation():
    # head_dim 2: one pair with frequency theta**0 = 1, so position p rotates by p radians
    x = np.array([[[[1.0, 0.0], [1.0, 0.0]]]], dtype=np.float32)
    cos, sin = ops.rope_angles(np.array([1, 2]), 2, 500.0)
    for layout in ("half", "interleaved"):
        y = ops.apply_rope(x, cos, sin, layout)
        np.testing.assert_allclose(y[0, 0], [[np.cos(1), np.sin(1)], [np.cos(2), np.sin(2)]], rtol=1e-6)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_rope_scores_depend_on_relative_position(layout):
    q = rng(7).standard_normal((1, 1, 1, 16), dtype=np.float32)
    k = rng(8).standard_normal((1, 1, 1, 16), dtype=np.float32)

    def score(m, n):
        cq, sq = ops.rope_angles(np.array([m]), 16, 10000.0)
        ck, sk = ops.rope_angles(np.array([n]), 16, 10000.0)
        return float(np.sum(ops.apply_rope(q, cq, sq, layout) * ops.apply_rope(k, ck, sk, layout)))

    assert score(7, 3) == pytest.approx(score(104, 100), rel=1e-4)


def test_rope_layouts_agree_under_the_gguf_permutation():
    from lpulab.kernels.gguf_model import permute_qk, unpermute_qk

    dh = 8
    w = rng(9).standard_normal((2 * dh, 4), dtype=np.float32)  # 2 heads, Hugging Face row order
    np.testing.assert_array_equal(unpermute_qk(permute_qk(w, 2), 2), w)
    x = rng(10).standard_normal((3, 4), dtype=np.float32)
    cos, sin = ops.rope_angles(np.arange(3), dh, 10000.0)
    heads = lambda y: y.reshape(3, 2, dh).transpose(1, 0, 2)[None]  # noqa: E731
    hf = ops.apply_rope(heads(x @ w.T), cos, sin, "half")
    gg = ops.apply_rope(heads(x @ permute_qk(w, 2).T), cos, sin, "interleaved")
    # GGUF component 2i+j of a head is Hugging Face component j*dh/2 + i
    perm = [j * dh // 2 + i for i in range(dh // 2) for j in range(2)]
    np.testing.assert_allclose(gg, hf[..., perm], rtol=1e-5, atol=1e-6)


def test_rope_rejects_bad_layout():
    with pytest.raises(ValueError, match="layout must be one of"):
        ops.apply_rope(np.zeros((1, 1, 1, 4), np.float32), *ops.rope_angles(np.arange(1), 4, 1e4), "neox")


# ----------------------------------------------------------------------------- attention

def naive_attention(q, k, v, past):
    """Loops: query head j uses KV head j // (H/G); token i sees keys 0..past+i."""
    b, hq, s, dh = q.shape
    g = k.shape[1]
    out = np.zeros((b, s, hq, dh))
    for bi in range(b):
        for j in range(hq):
            kv = j // (hq // g)
            for i in range(s):
                t = past + i + 1
                sc = np.array([np.dot(q[bi, j, i].astype(np.float64), k[bi, kv, u]) for u in range(t)]) / np.sqrt(dh)
                p = np.exp(sc - sc.max())
                p /= p.sum()
                out[bi, i, j] = sum(p[u] * v[bi, kv, u] for u in range(t))
    return out.reshape(b * s, hq * dh)


@pytest.mark.parametrize("b,hq,g,s,past", [(1, 2, 1, 3, 0), (2, 4, 2, 2, 3), (1, 3, 3, 1, 5), (2, 6, 2, 4, 2)])
def test_attention_matches_naive_gqa_causal(b, hq, g, s, past):
    dh, cap = 4, 12
    r = rng(11)
    q = r.standard_normal((b, hq, s, dh), dtype=np.float32)
    kc = np.zeros((b, g, cap, dh), np.float32)
    vc = np.zeros((b, g, cap, dh), np.float32)
    kc[:, :, : past + s] = r.standard_normal((b, g, past + s, dh), dtype=np.float32)
    vc[:, :, : past + s] = r.standard_normal((b, g, past + s, dh), dtype=np.float32)
    out, counts = ops.attention(q, kc, vc, past, prefix="layers.0.")
    np.testing.assert_allclose(out, naive_attention(q, kc, vc, past), rtol=1e-4, atol=1e-5)
    k_att = b * (s * past + s * (s + 1) // 2)
    assert [c.name for c in counts] == ["layers.0.attn_scores", "layers.0.softmax", "layers.0.attn_values"]
    assert counts[0].flops == 2 * dh * hq * k_att and counts[1].flops == 5 * hq * k_att
    assert counts[0].kv_read == counts[2].kv_read == b * (past + s) * g * dh * 4


def test_attention_rejects_overflow_and_bad_groups():
    q = np.zeros((1, 3, 1, 4), np.float32)
    with pytest.raises(ValueError, match="multiple of KV heads"):
        ops.attention(q, np.zeros((1, 2, 4, 4), np.float32), np.zeros((1, 2, 4, 4), np.float32), 0)
    with pytest.raises(ValueError, match="exceed the cache capacity"):
        ops.attention(q, np.zeros((1, 3, 4, 4), np.float32), np.zeros((1, 3, 4, 4), np.float32), 4)


# ----------------------------------------------------------------------------- feed-forward, embedding

def test_swiglu_matches_reference():
    r = rng(12)
    x = r.standard_normal((3, 6), dtype=np.float32)
    wg, wu = r.standard_normal((5, 6), dtype=np.float32), r.standard_normal((5, 6), dtype=np.float32)
    wd = r.standard_normal((6, 5), dtype=np.float32)
    y, counts = ops.swiglu(x, wg, wu, wd, prefix="layers.1.")
    g, u = x.astype(np.float64) @ wg.T, x.astype(np.float64) @ wu.T
    np.testing.assert_allclose(y, (g / (1 + np.exp(-g)) * u) @ wd.T, rtol=1e-4, atol=1e-5)
    assert [c.op for c in counts] == ["gate_proj", "up_proj", "silu_mul", "down_proj"]


def test_embedding_and_lm_head():
    table = rng(13).standard_normal((7, 3), dtype=np.float32)
    x, c = ops.embedding(np.array([4, 0, 4]), table)
    np.testing.assert_array_equal(x, table[[4, 0, 4]])
    assert c == OpCount("embedding", weight=3 * 3 * 4, act_write=3 * 3 * 4)
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 7\)"):
        ops.embedding(np.array([7]), table)
    logits, c = ops.lm_head(x[:1], table)
    np.testing.assert_allclose(logits, x[:1] @ table.T, rtol=1e-6)
    assert c == OpCount("lm_head", flops=2 * 1 * 3 * 7, weight=7 * 3 * 4, act_read=3 * 4, act_write=7 * 4)


# ----------------------------------------------------------------------------- int8

def test_int8_quantize_error_bound_and_counts():
    w = rng(14).standard_normal((6, 40), dtype=np.float32)
    q = Int8Weight.quantize(w)
    assert q.q.dtype == np.int8 and np.abs(q.q).max() <= 127
    assert np.all(np.abs(q.dequantize() - w) <= q.scale[:, None] / 2 + 1e-7)
    x = rng(15).standard_normal((2, 40), dtype=np.float32)
    y, c = ops.linear(x, q, name="q")
    np.testing.assert_allclose(y, x @ w.T, rtol=0.05, atol=0.05)
    assert c.weight == 6 * 40  # 1 byte per weight; scales are residency, not counted traffic


@pytest.mark.parametrize("bits,k", [(8, 100), (8, 2500), (16, 3000)])
def test_int_matmul_is_exact(bits, k):
    r = rng(16)
    lim = 2 ** (bits - 1) - 1
    xq = r.integers(-lim, lim + 1, (3, k)).astype(np.int8 if bits == 8 else np.int16)
    xq[0] = lim  # extreme values: the largest possible partial sums
    wq = r.integers(-127, 128, (300, k)).astype(np.int8)
    wq[0] = 127
    acc = ops.int_matmul_t(xq, wq)
    np.testing.assert_array_equal(acc, xq.astype(np.int64) @ wq.astype(np.int64).T)


def test_quantize_rows_with_given_absmax():
    x = np.array([[1.0, -2.0], [0.0, 0.0]], dtype=np.float32)
    q, s = ops.quantize_rows(x, bits=8)
    np.testing.assert_array_equal(q, [[64, -127], [0, 0]])
    q2, s2 = ops.quantize_rows(x[:, :1], absmax=np.max(np.abs(x), axis=1))
    np.testing.assert_array_equal(q2[:, 0], q[:, 0])
    np.testing.assert_array_equal(s2, s)
