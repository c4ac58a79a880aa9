"""lpulab.workload: counts by hand for a tiny model, closed forms for real ones, laws."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab import catalog, workload
from lpulab.workload import COLUMNS, Precision

from ._tiny import tiny_model

INT8 = Precision("int8", "int8", "int8")


def test_tiny_model_decode_by_hand():
    """L=1, h=4, H=2, G=1, dh=2, F=8, V=10, every width 1 byte; B=1, S=1, P=3.
    N=1, K_att = 1*(1*3 + 1) = 4, R=1, q = H*dh = 4, kv = G*dh = 2."""
    m = tiny_model()
    t = workload.op_table(m, "decode", batch=1, context=3, precision=INT8).set_index("op")
    #           flops weight act_read act_write kv_read kv_write
    expected = {
        "embedding":              (0, 4, 0, 4, 0, 0),
        "layers.0.attn_norm":     (16, 4, 4, 4, 0, 0),
        "layers.0.q_proj":        (32, 16, 4, 4, 0, 0),
        "layers.0.k_proj":        (16, 8, 4, 0, 0, 2),
        "layers.0.v_proj":        (16, 8, 4, 0, 0, 2),
        "layers.0.rope":          (18, 0, 6, 6, 0, 0),
        "layers.0.attn_scores":   (32, 0, 4, 8, 8, 0),
        "layers.0.softmax":       (40, 0, 8, 8, 0, 0),
        "layers.0.attn_values":   (32, 0, 8, 4, 8, 0),
        "layers.0.o_proj":        (32, 16, 4, 4, 0, 0),
        "layers.0.attn_residual": (4, 0, 8, 4, 0, 0),
        "layers.0.ffn_norm":      (16, 4, 4, 4, 0, 0),
        "layers.0.gate_proj":     (64, 32, 4, 8, 0, 0),
        "layers.0.up_proj":       (64, 32, 4, 8, 0, 0),
        "layers.0.silu_mul":      (40, 0, 16, 8, 0, 0),
        "layers.0.down_proj":     (64, 32, 8, 4, 0, 0),
        "layers.0.ffn_residual":  (4, 0, 8, 4, 0, 0),
        "final_norm":             (16, 4, 4, 4, 0, 0),
        "lm_head":                (80, 40, 4, 10, 0, 0),
    }
    assert list(t.index) == list(expected)
    for op, vals in expected.items():
        assert tuple(t.loc[op, list(COLUMNS)]) == vals, op
    tot = workload.totals(m, "decode", 1, 3, precision=INT8)
    assert tot.flops == 586 and tot.weight == 200
    assert workload.parameter_count(m) == 236  # 1*(16+16+16+96+8) + 2*10*4 + 4
    assert workload.weight_bytes(m, INT8) == 236
    assert workload.kv_bytes_per_token(m, "int8") == 4  # 2 * L * G * dh
    # activation working set: residual N*h = 4, largest op silu_mul reads 16 and writes 8
    assert workload.activation_bytes(m, "decode", 1, 3, precision=INT8) == 4 + 24


def test_op_names_follow_counting_md():
    m = catalog.load_model("llama-2-7b")
    t = workload.op_table(m, "decode", 1, 10)
    per_layer = ["attn_norm", "q_proj", "k_proj", "v_proj", "rope", "attn_scores", "softmax", "attn_values",
                 "o_proj", "attn_residual", "ffn_norm", "gate_proj", "up_proj", "silu_mul", "down_proj", "ffn_residual"]
    names = ["embedding"] + [f"layers.{i}.{o}" for i in range(m.layers) for o in per_layer] + ["final_norm", "lm_head"]
    assert list(t.op) == names
    assert t.layer.isna().sum() == 3 and t.layer.max() == m.layers - 1


def test_moe_ops_and_expected_experts():
    m = catalog.load_model("mixtral-8x7b")
    t = workload.op_table(m, "decode", 1, 0)
    assert "layers.0.router" in set(t.op) and "layers.0.experts.gate_proj" in set(t.op)
    h, F, E, k = m.hidden_size, m.ffn_size, m.experts, m.active_experts
    # batch 1: one token touches exactly k experts, k of E expert weights are read
    g = t.set_index("op").loc["layers.0.experts.gate_proj"]
    assert g.weight == pytest.approx(k * h * F * 2)
    assert g.flops == 2 * k * h * F
    assert workload.expected_experts(m, 1) == pytest.approx(k)
    assert workload.expected_experts(m, 10_000) == pytest.approx(E)
    # all experts are resident
    assert workload.weight_bytes(m, "bf16") == pytest.approx(2 * workload.parameter_count(m), rel=1e-4)


def test_non_gated_ffn_has_an_activation_op():
    m = tiny_model(gated=False)
    t = workload.op_table(m, "decode", 2, 5, precision=INT8).set_index("op")
    assert "layers.0.gate_proj" not in t.index
    assert t.loc["layers.0.activation", "flops"] == 4 * 2 * m.ffn_size
    assert workload.parameter_count(m) == 1 * (16 + 16 + 16 + 64 + 8) + 80 + 4


@pytest.mark.parametrize("model_id", ["llama-2-70b", "llama-3-8b", "llama-3.1-405b", "mixtral-8x7b", "smollm2-135m"])
def test_decode_flops_closed_form(model_id):
    """Matmul FLOPs of a decode step = 2 x (parameters used per token, less the embedding
    table's gather) per token exactly; attention adds 4*L*H*dh*(P+1) per token."""
    m = catalog.load_model(model_id)
    B, P = 8, 1000
    t = workload.op_table(m, "decode", B, P)
    h, V, L = m.hidden_size, m.vocab_size, m.layers
    gains = 2 * L * h + h
    gather = 0 if m.tied_embeddings else V * h  # the input embedding table is gathered, not multiplied
    matmul_params = workload.parameter_count(m, active=True) - gains - gather
    assert t[t.kind == "matmul"].flops.sum() == pytest.approx(2 * matmul_params * B, rel=1e-12)
    att = 4 * L * m.attention_heads * m.head_dim * B * (P + 1)
    assert t[t.kind == "attention"].flops.sum() == pytest.approx(att + 5 * L * m.attention_heads * B * (P + 1), rel=1e-12)
    # the rule of thumb: 2 x parameters + attention, within the element-wise ops (< 1 %)
    approx = 2 * matmul_params * B + att
    assert t.flops.sum() == pytest.approx(approx, rel=0.01)


def test_prefill_attention_pairs():
    m = tiny_model()
    B, S, P = 3, 5, 7
    t = workload.op_table(m, "prefill", B, P, tokens=S, precision=INT8).set_index("op")
    K = B * (S * P + S * (S + 1) // 2)
    assert t.loc["layers.0.attn_scores", "flops"] == 2 * m.head_dim * m.attention_heads * K
    assert t.loc["layers.0.attn_scores", "kv_read"] == B * (P + S) * m.kv_heads * m.head_dim
    assert t.loc["lm_head", "flops"] == 2 * B * m.hidden_size * m.vocab_size  # R = B rows reach the head


def test_prefill_needs_tokens_and_errors_are_clear():
    m = tiny_model()
    with pytest.raises(workload.WorkloadError, match="prefill needs tokens"):
        workload.totals(m, "prefill", 1, 0)
    with pytest.raises(workload.WorkloadError, match="phase 'train' is not one of prefill, decode"):
        workload.totals(m, "train")
    with pytest.raises(workload.WorkloadError, match="batch must be whole numbers >= 1"):
        workload.totals(m, "decode", 0)
    with pytest.raises(workload.WorkloadError, match="fp64"):
        Precision("fp64")
    with pytest.raises(workload.WorkloadError, match="use totals"):
        workload.op_table(m, "decode", np.array([1, 2]))


def test_totals_vectorised_over_batch_and_context():
    m = catalog.load_model("llama-2-70b")
    B = np.array([1, 4, 64])[:, None]
    P = np.array([0, 511, 4095])[None, :]
    tot = workload.totals(m, "decode", B, P, precision="bf16")
    assert tot.flops.shape == (3, 3)
    for i, b in enumerate(B.ravel()):
        for j, p in enumerate(P.ravel()):
            one = workload.op_table(m, "decode", int(b), int(p), precision="bf16")[list(COLUMNS)].sum()
            for col in COLUMNS:
                assert getattr(tot, col)[i, j] == pytest.approx(one[col], rel=1e-12)


def test_million_configurations_in_one_call():
    m = catalog.load_model("llama-2-70b")
    rng = np.random.default_rng(0)
    B = rng.integers(1, 512, 1_000_000)
    P = rng.integers(0, 4096, 1_000_000)
    tot = workload.totals(m, "decode", B, P, precision="int8")
    assert tot.flops.shape == (1_000_000,)
    assert np.all(tot.bytes > 0)


MODELS = ["llama-2-7b", "llama-3-8b", "mixtral-8x7b", "smollm2-135m"]
PRECS = list(workload.PRECISIONS)


@settings(max_examples=40, deadline=None)
@given(mid=st.sampled_from(MODELS), phase=st.sampled_from(["prefill", "decode"]), b=st.integers(1, 64),
       p=st.integers(0, 5000), s=st.integers(1, 300), w=st.sampled_from(PRECS), a=st.sampled_from(PRECS),
       c=st.sampled_from(PRECS))
def test_table_totals_equal_vectorised_totals(mid, phase, b, p, s, w, a, c):
    m = catalog.load_model(mid)
    prec = Precision(w, a, c)
    tokens = s if phase == "prefill" else 1
    t = workload.op_table(m, phase, b, p, tokens, prec)
    tot = workload.totals(m, phase, b, p, tokens, prec)
    for col in COLUMNS:
        assert t[col].sum() == pytest.approx(getattr(tot, col), rel=1e-12, abs=1e-9)
    parts = workload.parts(m, phase, b, p, tokens, prec)
    assert (parts["embedding"] + parts["layer"] * m.layers + parts["head"]).flops == pytest.approx(tot.flops, rel=1e-12)


@settings(max_examples=40, deadline=None)
@given(mid=st.sampled_from(MODELS), b1=st.integers(1, 100), b2=st.integers(1, 100), p=st.integers(0, 8000))
def test_decode_is_additive_in_batch_and_weights_barely_grow(mid, b1, b2, p):
    m = catalog.load_model(mid)
    t1, t2, t12 = (workload.totals(m, "decode", b, p) for b in (b1, b2, b1 + b2))
    assert t12.flops == pytest.approx(t1.flops + t2.flops, rel=1e-12)
    assert t12.kv_read == pytest.approx(t1.kv_read + t2.kv_read, rel=1e-12)
    assert t12.act_write == pytest.approx(t1.act_write + t2.act_write, rel=1e-12)
    if not m.is_moe:  # only the embedding gather reads more weight bytes: one row (h values) per token
        assert t12.weight - t1.weight == b2 * m.hidden_size * 2
    else:  # more tokens touch more distinct experts, never more than all of them
        assert t1.weight <= t12.weight <= workload.weight_bytes(m)


@settings(max_examples=40, deadline=None)
@given(mid=st.sampled_from(MODELS), b=st.integers(1, 64), p=st.integers(0, 8000), dp=st.integers(1, 1000),
       db=st.integers(1, 16))
def test_counts_grow_with_context_and_batch(mid, b, p, dp, db):
    m = catalog.load_model(mid)
    base = workload.totals(m, "decode", b, p)
    more_ctx = workload.totals(m, "decode", b, p + dp)
    more_b = workload.totals(m, "decode", b + db, p)
    for col in COLUMNS:
        assert getattr(more_ctx, col) >= getattr(base, col)
        assert getattr(more_b, col) >= getattr(base, col)
    # KV read grows linearly with context: 2 reads (scores, values) of B*(P+1)*G*dh*c per layer
    per = 2 * m.layers * m.kv_heads * m.head_dim * 2
    assert more_ctx.kv_read - base.kv_read == pytest.approx(per * b * dp, rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(mid=st.sampled_from(MODELS), w=st.sampled_from(PRECS))
def test_weight_bytes_scale_with_width(mid, w):
    m = catalog.load_model(mid)
    wb = workload.weight_bytes(m, Precision(w, "bf16", "bf16"))
    gains = 2 * m.layers * m.hidden_size + m.hidden_size
    assert wb == (workload.parameter_count(m) - gains) * catalog.PRECISION_BYTES[w] + gains * 2
    assert workload.kv_bytes(m, 3, 100, w) == 300 * workload.kv_bytes_per_token(m, w)
