"""Sharded execution equals the whole model; ownership, budgets and traffic."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab.kernels import (
    Decoder,
    DecoderConfig,
    OwnershipError,
    Plan,
    PlanError,
    ShardedDecoder,
    SramBudgetError,
    build_plan,
)

BIG = 10**12  # a budget nothing reaches


@st.composite
def cases(draw):
    g = draw(st.integers(1, 3))
    cfg = DecoderConfig(
        n_layers=draw(st.integers(1, 3)), hidden=draw(st.sampled_from([8, 12, 16])), n_heads=g * draw(st.integers(1, 2)),
        n_kv_heads=g, head_dim=draw(st.sampled_from([2, 4])), ffn=draw(st.integers(4, 20)), vocab=draw(st.integers(8, 40)),
        tied_embeddings=draw(st.booleans()), rope_layout=draw(st.sampled_from(["half", "interleaved"])),
    )
    tp = draw(st.sampled_from([d for d in range(1, g + 1) if g % d == 0]))
    stages = draw(st.integers(1, cfg.n_layers))
    cuts = sorted(draw(st.lists(st.integers(1, cfg.ffn - 1), min_size=tp - 1, max_size=tp - 1, unique=True)))
    return dict(cfg=cfg, tp=tp, stages=stages, cuts=cuts, batch=draw(st.integers(1, 2)), prompt=draw(st.integers(1, 4)),
                steps=draw(st.integers(1, 3)), precision=draw(st.sampled_from(["fp32", "int8", "fp8"])),
                act_bits=draw(st.sampled_from([8, 16])), seed=draw(st.integers(0, 2**16)))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(cases())
def test_sharded_equals_whole(case):
    cfg = case["cfg"]
    m = Decoder.random(cfg, seed=case["seed"], precision=case["precision"], act_bits=case["act_bits"])
    plan = build_plan(cfg, n_chips=case["stages"] * case["tp"], pipeline_stages=case["stages"],
                      tensor_parallel=case["tp"], sram_bytes=BIG, ffn_cuts=case["cuts"])
    sd = ShardedDecoder(m, plan)
    if case["precision"] != "fp32" or case["tp"] == 1:
        assert sd.exactness == "bit-exact"
    prompt = np.random.default_rng(case["seed"]).integers(0, cfg.vocab, (case["batch"], case["prompt"]))
    whole = m.generate(prompt, case["steps"])
    shard = sd.generate(prompt, case["steps"])
    for step, ref in zip(shard.steps, whole.logits):
        assert step.matches(ref), (step.exactness, np.max(np.abs(step.logits - ref)))
        if step.exactness == "bit-exact":
            np.testing.assert_array_equal(step.logits, ref)
    np.testing.assert_array_equal(shard.tokens, whole.tokens)


CFG = DecoderConfig(n_layers=4, hidden=16, n_heads=4, n_kv_heads=2, head_dim=4, ffn=24, vocab=32)


def test_chips_hold_views_not_copies():
    m = Decoder.random(CFG, seed=0)
    sd = ShardedDecoder(m, build_plan(CFG, n_chips=4, pipeline_stages=2, tensor_parallel=2, sram_bytes=BIG))
    for ch in sd.chips:
        for name, entries in ch._held.items():
            for _, view in entries:
                assert np.shares_memory(view, m.weights[name])
    # replicas: the tied table on both end stages; norm gains on both chips of a stage
    extra = 32 * 16 * 4 + (4 * 2 + 1) * 16 * 4
    assert sum(ch.weight_bytes for ch in sd.chips) == m.nbytes + extra


def test_touching_an_unowned_tensor_raises():
    m = Decoder.random(CFG, seed=0)
    plan = build_plan(CFG, n_chips=2, tensor_parallel=2, sram_bytes=BIG).to_dict()
    plan["tensors"]["layers.2.o_proj"] = [s for s in plan["tensors"]["layers.2.o_proj"] if s[0] != 1]
    sd = ShardedDecoder(m, Plan.from_dict(plan))
    with pytest.raises(OwnershipError, match=r"chip 1 \('chip1'\) touched layers.2.o_proj\[axis 1, 8:16\]"):
        sd.prefill(np.array([[1, 2, 3]]))
    with pytest.raises(OwnershipError, match=r"it holds only \['chip 0 \[axis 0, 0:8\]'\]"):
        sd.chips[0].get("layers.0.q_proj", 0, 8, 16)  # chip 0 holds rows 0:8 only
    staged = ShardedDecoder(m, build_plan(CFG, n_chips=2, pipeline_stages=2, sram_bytes=BIG))
    with pytest.raises(OwnershipError, match="holds no slice of that tensor"):
        staged.chips[0].get("layers.3.q_proj")  # layer 3 lives on stage 1


def test_budget_violation_raises_with_chip_bytes_and_budget():
    m = Decoder.random(CFG, seed=0)
    need = ShardedDecoder(m, build_plan(CFG, n_chips=2, pipeline_stages=2, sram_bytes=BIG)).chips[0].weight_bytes
    with pytest.raises(SramBudgetError, match=rf"chip 0 \('chip0'\) needs {need:,} bytes of SRAM .* budget is {need - 1:,} bytes"):
        ShardedDecoder(m, build_plan(CFG, n_chips=2, pipeline_stages=2, sram_bytes=need - 1))


def test_kv_cache_counts_against_the_budget():
    m = Decoder.random(CFG, seed=0)
    w = max(ShardedDecoder(m, build_plan(CFG, n_chips=1, sram_bytes=BIG)).chips[0].weight_bytes, 1)
    sd = ShardedDecoder(m, build_plan(CFG, n_chips=1, sram_bytes=w + 4096))
    sd.new_cache(1, 8)  # 4 layers * 2 * 1 * 2 heads * 8 * 4 dims * 4 B = 2048 B: fits
    with pytest.raises(SramBudgetError, match=r"KV cache 8,192"):
        sd.new_cache(2, 16)


def test_int8_fits_where_fp32_does_not():
    cfg = DecoderConfig(n_layers=2, hidden=64, n_heads=4, n_kv_heads=2, head_dim=16, ffn=128, vocab=256)
    f = Decoder.random(cfg, seed=0)
    budget = f.nbytes // 2
    with pytest.raises(SramBudgetError):
        ShardedDecoder(f, build_plan(cfg, n_chips=1, sram_bytes=budget))
    ShardedDecoder(f.quantized(), build_plan(cfg, n_chips=1, sram_bytes=budget))
    ShardedDecoder(f, build_plan(cfg, n_chips=2, tensor_parallel=2, sram_bytes=budget + 4096))


@pytest.mark.parametrize("kwargs,msg", [
    (dict(n_chips=3, pipeline_stages=2), r"n_chips \(3\) must equal pipeline_stages \(2\) x tensor_parallel \(1\)"),
    (dict(n_chips=3, tensor_parallel=3), r"must divide n_kv_heads \(2\); allowed: \[1, 2\]"),
    (dict(n_chips=5, pipeline_stages=5), r"cannot exceed n_layers \(4\)"),
    (dict(n_chips=2, tensor_parallel=2, ffn_cuts=[30]), "ffn_cuts must be 1 increasing points"),
])
def test_plan_errors_are_clear(kwargs, msg):
    with pytest.raises(PlanError, match=msg):
        build_plan(CFG, **kwargs)


def test_coverage_gap_is_refused():
    m = Decoder.random(CFG, seed=0)
    plan = build_plan(CFG, n_chips=2, tensor_parallel=2, sram_bytes=BIG).to_dict()
    plan["tensors"]["layers.1.gate_proj"] = [s for s in plan["tensors"]["layers.1.gate_proj"] if s[0] != 1]
    with pytest.raises(PlanError, match=r"rows of layers.1.gate_proj held by stage 0 .* must cover 0:24 exactly once"):
        ShardedDecoder(m, Plan.from_dict(plan))


def test_plan_round_trips_as_plain_data():
    plan = build_plan(CFG, n_chips=4, pipeline_stages=2, tensor_parallel=2)
    assert Plan.from_dict(plan.to_dict()) == plan
    assert plan.layer_stage == (0, 0, 1, 1) and plan.stage_chips == ((0, 1), (2, 3))
    assert plan.tensors["layers.3.o_proj"][1].chip == 3 and plan.tensors["layers.3.o_proj"][1].axis == 1


def test_bytes_moved_by_hand():
    # fp32, 2 stages x 2 chips, B=1: prefill of S=3 tokens (N=3), then one decode step.
    m = Decoder.random(CFG, seed=0)
    sd = ShardedDecoder(m, build_plan(CFG, n_chips=4, pipeline_stages=2, tensor_parallel=2, sram_bytes=BIG))
    step, cache = sd.prefill(np.array([[1, 2, 3]]))
    n, h, a, v = 3, 16, 4, 32
    ring = 2 * (2 - 1) * n * h * a                      # one all-reduce of N x h over 2 chips
    expect = {
        "all_reduce": ring * (1 + 2 * 4),                # embedding + (o_proj, down_proj) x 4 layers
        "pipeline": 2 * n * h * a,                       # stage 0 -> both chips of stage 1
        "gather": 1 * (v // 2) * a,                      # chip 3's half of the vocabulary
    }
    assert step.by_kind() == expect
    assert step.bytes_per_token == sum(expect.values()) / n
    step = sd.decode(np.array([4]), cache)
    assert step.by_kind() == {"all_reduce": 2 * 1 * h * a * 9, "pipeline": 2 * h * a, "gather": (v // 2) * a}  # N = 1


def test_int8_all_reduce_sends_integer_accumulators():
    m = Decoder.random(CFG, seed=0, precision="int8")  # W8A16: int64 accumulators
    sd = ShardedDecoder(m, build_plan(CFG, n_chips=2, tensor_parallel=2, sram_bytes=BIG))
    step, _ = sd.prefill(np.array([[1, 2]]))
    ar = {t.name: t.bytes for t in step.transfers if t.kind == "all_reduce"}
    assert ar["layers.0.o_proj"] == 2 * 1 * 2 * 16 * 8
    assert ar["layers.0.o_proj.absmax"] == 2 * 1 * 2 * 4
