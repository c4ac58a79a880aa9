"""lpulab.workload: counts by hand for a tiny model, closed forms for real ones, laws."""

from dataclasses import replace

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


# --------------------------------------------------------------------------- layer kinds, MLA, windows, experts


def _mla_tiny():
    from .test_architecture import mla_tiny

    return mla_tiny()


def test_mla_cache_and_counts_by_hand():
    """h=8, H=2, q_lora 4, kv_lora 3, nope 2, rope 1, v 2, 3 layers, every width 1 byte.
    The cache holds kv_lora + rope = 4 values per layer per token: 12 bytes per token."""
    from lpulab import architecture

    m = _mla_tiny()
    assert workload.kv_bytes_per_token(m, "int8") == 3 * (3 + 1) == 12
    assert workload.kv_bytes(m, 5, 7, "int8") == 5 * 7 * 12
    # decode, B=1, P=3: N=1, K=4, KVT=4; the up-projections absorbed
    dec = {o.name: o.counts for o in workload.op_counts(m, "decode", 1, 3, None, INT8) if o.part == "moe"}
    assert dec["kv_a_proj"].kv_write == 4 and dec["kv_a_proj"].flops == 2 * 8 * 4
    assert dec["attn_scores"].kv_read == 4 * 4 and dec["attn_values"].kv_read == 0      # the latent read once
    assert dec["attn_scores"].flops == 2 * (3 + 1) * 2 * 4     # q in latent space (kv_lora + rope) per head and pair
    assert dec["attn_values"].flops == 2 * 3 * 2 * 4           # attention over the latent
    assert dec["kv_b_proj"].flops == 2 * 1 * (2 * (2 + 2) * 3) and dec["kv_b_proj"].weight == 24  # per token, not per key
    assert dec["rope"].flops == 3 * (2 * 1 + 1)
    # prefill of 5 tokens, P=0: K = 15 pairs, KVT = 5; keys and values decompressed per head
    pre = {o.name: o.counts for o in workload.op_counts(m, "prefill", 1, 0, 5, INT8) if o.part == "moe"}
    assert pre["kv_b_proj"].flops == 2 * 5 * 24 and pre["kv_b_proj"].kv_read == 5 * 3
    assert pre["attn_scores"].flops == 2 * (2 + 1) * 2 * 15 and pre["attn_scores"].kv_read == 5 * 1
    assert pre["attn_values"].flops == 2 * 2 * 2 * 15
    # the two forms read the same weights (apart from the routed experts and the embedding rows: 5 tokens
    # touch more of them)
    def fixed(phase, *shape):
        return sum(o.counts.weight
                   for o in workload.op_counts(m, phase, *shape, precision=INT8) if not o.routed and o.group != "embedding")
    assert fixed("decode", 1, 3, None) == fixed("prefill", 1, 0, 5)
    # totals: the embedding, each kind times its layers, the head; equal to the table
    pt = workload.parts(m, "decode", 1, 3, precision=INT8)
    assert list(pt) == ["embedding", "dense", "moe", "head"]
    kinds = {k.name: k.count for k in architecture.layer_kinds(m)}
    tot = workload.totals(m, "decode", 1, 3, precision=INT8)
    assert tot.flops == pt["embedding"].flops + pt["dense"].flops * kinds["dense"] + pt["moe"].flops * kinds["moe"] + \
        pt["head"].flops
    t = workload.op_table(m, "decode", 1, 3, precision=INT8)
    assert t.flops.sum() == tot.flops and t.weight.sum() == tot.weight and t.kv_read.sum() == tot.kv_read
    assert set(t[t.layer == 0].type) >= {"gate_proj", "q_b_proj"} and "router" not in set(t[t.layer == 0].type)


def test_the_decompressed_cache_would_be_71_times_deepseeks_latent():
    m = catalog.load_model("deepseek-v3")
    per_head = 2 * 128 * (192 + 128) // 2 * 61 * 2     # K (192) and V (128) of 128 heads, 61 layers, BF16
    assert per_head / workload.kv_bytes_per_token(m, "bf16") == pytest.approx(71.1, abs=0.05)


@given(P=st.integers(0, 40), S=st.integers(1, 12), w=st.integers(1, 20), B=st.integers(1, 3))
def test_windowed_attention_pairs_and_keys_read_by_enumeration(P, S, w, B):
    m = replace(tiny_model(L=2, ctx=128), sliding_window=w, sliding_window_layers="alternate")
    pairs = B * sum(min(P + i, w) for i in range(1, S + 1))        # token P+i attends to min(P+i, w) keys
    keys = B * len({k for i in range(1, S + 1) for k in range(max(0, P + i - w), P + i)})
    counts = {o.part: o.counts for o in workload.op_counts(m, "prefill", B, P, S, INT8) if o.name == "softmax"}
    scores = {o.part: o.counts for o in workload.op_counts(m, "prefill", B, P, S, INT8) if o.name == "attn_scores"}
    H, kvd = m.attention_heads, m.kv_heads * m.head_dim
    assert counts["window"].flops == workload.SOFTMAX_FLOPS * H * pairs
    assert scores["window"].kv_read == keys * kvd
    assert counts["full"].flops == workload.SOFTMAX_FLOPS * H * B * (S * P + S * (S + 1) / 2)
    # the windowed layer's cache holds at most w tokens
    assert workload.kv_bytes(m, B, P + S, "int8") == B * (P + S + min(P + S, w)) * 2 * kvd   # K and V, 1 byte


def test_sinks_add_one_logit_per_query_and_head():
    base = tiny_model(L=1)
    m = replace(base, attention_sinks=True)
    a = {o.name: o.counts for o in workload.op_counts(base, "decode", 3, 5, None, INT8)}
    b = {o.name: o.counts for o in workload.op_counts(m, "decode", 3, 5, None, INT8)}
    assert b["softmax"].flops - a["softmax"].flops == workload.SOFTMAX_FLOPS * base.attention_heads * 3
    assert b["softmax"].weight == base.attention_heads       # the sink values, one byte each


def test_expected_distinct_experts_against_a_seeded_simulation():
    """Tokens each pick k of E experts uniformly without replacement; the mean number of
    distinct experts one step touches, over 4000 seeded draws, matches E(1-(1-k/E)^N) within
    1 % (and one token touches k)."""
    rng = np.random.default_rng(20260112)
    for E, k, N in ((8, 2, 3), (256, 8, 16), (128, 4, 64)):
        m = tiny_model(E=E, k=k)
        sims = [len({int(x) for _ in range(N) for x in rng.choice(E, size=k, replace=False)}) for _ in range(4000)]
        # one token leaves a given expert out with probability C(E-1,k)/C(E,k) = 1-k/E, so N independent
        # tokens touch E(1-(1-k/E)^N) experts in expectation: the simulation checks it by sampling
        assert np.mean(sims) == pytest.approx(workload.expected_experts(m, N), rel=0.01)
    assert workload.expected_experts(tiny_model(E=8, k=2), 1) == pytest.approx(2.0)


def test_expected_expert_groups_against_a_seeded_simulation():
    rng = np.random.default_rng(7)
    for E, k, e in ((256, 8, 8), (8, 2, 3), (128, 4, 128)):
        m = tiny_model(E=E, k=k)
        sizes = workload.expert_groups(m, e)
        group = np.repeat(np.arange(e), sizes)
        sims = [len(set(group[rng.choice(E, size=k, replace=False)])) for _ in range(4000)]
        assert np.mean(sims) == pytest.approx(workload.expected_expert_groups(m, e), rel=0.01)
    assert workload.expert_groups(tiny_model(E=10, k=2), 4) == [3, 3, 2, 2]
    with pytest.raises(workload.WorkloadError, match="dense"):
        workload.expert_groups(tiny_model(), 2)
    with pytest.raises(workload.WorkloadError, match="has 4 experts"):
        workload.expert_groups(tiny_model(E=4, k=1), 5)


def test_a_precision_names_weights_activations_and_cache():
    assert Precision.of("int4/bf16/fp8") == Precision("int4", "bf16", "fp8")
    with pytest.raises(workload.WorkloadError, match="weights/activations/kv"):
        Precision.of("int4/bf16")
    h100, b200 = catalog.load_device("nvidia-h100-sxm"), catalog.load_device("nvidia-b200")
    assert workload.compute_format(h100, Precision("int4", "bf16", "fp8")) == "bf16"    # INT4 weights, 16-bit math
    assert workload.compute_format(h100, Precision("int4", "int8", "int8")) == "int8"
    assert workload.compute_format(h100, Precision("mxfp4", "fp8", "fp8")) == "fp8"      # weight-only FP4
    assert workload.compute_format(b200, Precision("nvfp4", "nvfp4", "fp8")) == "fp4"
    with pytest.raises(workload.PrecisionError, match="nvidia-h100-sxm has no nvfp4 peak"):
        workload.compute_format(h100, "nvfp4")
    # the scale overheads are in the storage width: NVFP4 4.5 bits, MXFP4 4.25 bits per value
    assert Precision("nvfp4").w == 0.5625 and Precision("mxfp4").w == 0.53125
