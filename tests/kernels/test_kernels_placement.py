"""A placement computed by lpulab.placement drives the sharded decoder; the bytes it moves
between chips are compared with what lpulab.perf assumes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab import catalog, perf, placement, workload
from lpulab.kernels import Decoder, DecoderConfig, OwnershipError, PlanError, ShardedDecoder, SramBudgetError
from lpulab.kernels.compare import transfers_vs_perf
from lpulab.kernels.sharded import Plan, plan_from_placement, simulated_device

CFG = DecoderConfig(n_layers=4, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=64, vocab=96, tied_embeddings=False)


def _place(cfg, precision, sram, context=16, **kw):
    prec = workload.Precision(precision, "fp32", "fp32")
    return placement.place(cfg.to_model(), simulated_device(sram), batch=1, context=context, precision=prec, **kw)


def test_a_placement_on_a_small_chip_budget_runs_sharded_and_equals_the_whole_run():
    # 40 kB chips: the fp32 model (~140 kB of weights) needs several; placement picks the layout
    pl = _place(CFG, "fp32", 40_000, tensor_choices=placement.tensor_widths(CFG.to_model(), "kv-heads"))
    assert pl.chips > 1
    plan = plan_from_placement(pl)
    assert plan.chips[0].sram_bytes == 40_000 and len(plan.chips) == pl.chips
    m = Decoder.random(CFG, seed=3)
    sd = ShardedDecoder(m, plan)
    for r in sd.residency():  # the decoder's own budget check agrees with the placement
        assert r["weight_bytes"] + r["kv_bytes"] <= 40_000
    prompt = np.array([[5, 1, 4, 1, 5, 9]])
    whole, shard = m.generate(prompt, 4, capacity=16), sd.generate(prompt, 4, capacity=16)
    assert all(s.matches(w) for s, w in zip(shard.steps, whole.logits))
    np.testing.assert_array_equal(shard.tokens, whole.tokens)
    # every weight slice a chip holds is the one the placement lists (norm gains whole)
    shards = pl.shards[pl.shards.kind == "weight"]
    for row in shards.itertuples():
        if row.stop > row.start and not row.tensor.endswith("norm"):
            assert sd.chips[row.chip].get(row.tensor, row.axis, row.start, row.stop).shape[row.axis] == row.stop - row.start


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("tp,pp", [(2, 1), (1, 3), (2, 2)])
def test_int8_is_bit_exact_and_fp32_within_tolerance(tied, tp, pp):
    cfg = DecoderConfig(**{**CFG.__dict__, "tied_embeddings": tied})
    prompt = np.array([[3, 1, 4, 1], [2, 7, 1, 8]])
    for precision in ("int8", "fp32"):
        pl = _place(cfg, precision, 10**9, tensor=tp, pipeline=pp)
        m = Decoder.random(cfg, seed=tp * 10 + pp, precision=precision)
        sd = ShardedDecoder(m, plan_from_placement(pl))
        whole, shard = m.generate(prompt, 3, capacity=16), sd.generate(prompt, 3, capacity=16)
        if precision == "int8" or tp == 1:
            assert sd.exactness == "bit-exact"
            for s, w in zip(shard.steps, whole.logits):
                np.testing.assert_array_equal(s.logits, w)
        else:
            assert sd.exactness == "tolerance"
            assert all(s.matches(w) for s, w in zip(shard.steps, whole.logits))
        np.testing.assert_array_equal(shard.tokens, whole.tokens)


@st.composite
def placements(draw):
    g = draw(st.integers(1, 3))
    cfg = DecoderConfig(n_layers=draw(st.integers(1, 4)), hidden=draw(st.sampled_from([8, 16])),
                        n_heads=g * draw(st.integers(1, 2)), n_kv_heads=g, head_dim=draw(st.sampled_from([2, 4])),
                        ffn=draw(st.integers(3, 24)), vocab=draw(st.integers(8, 40)), tied_embeddings=draw(st.booleans()))
    tp = draw(st.sampled_from([d for d in range(1, g + 1) if g % d == 0]))
    items = cfg.n_layers + (1 if cfg.tied_embeddings else 2)
    pp = draw(st.integers(1, items))
    return cfg, tp, pp, draw(st.sampled_from(["fp32", "int8"])), draw(st.integers(0, 1000))


@settings(max_examples=60, deadline=None, derandomize=True)
@given(placements())
def test_any_placement_runs_sharded_like_the_whole(case):
    cfg, tp, pp, precision, seed = case
    pl = _place(cfg, precision, 10**9, tensor=tp, pipeline=pp)
    m = Decoder.random(cfg, seed=seed, precision=precision)
    sd = ShardedDecoder(m, plan_from_placement(pl))
    prompt = np.random.default_rng(seed).integers(0, cfg.vocab, (1, 3))
    whole, shard = m.generate(prompt, 2, capacity=8), sd.generate(prompt, 2, capacity=8)
    for s, w in zip(shard.steps, whole.logits):
        assert s.matches(w)
        if precision == "int8":
            np.testing.assert_array_equal(s.logits, w)


def _decode_step(cfg, precision, tp, pp, context=5):
    model = cfg.to_model()
    pl = _place(cfg, precision, 10**9, tensor=tp, pipeline=pp)
    m = Decoder.random(cfg, seed=0, precision=precision)
    plan = plan_from_placement(pl)
    sd = ShardedDecoder(m, plan)
    _, cache = sd.prefill(np.arange(context)[None, :] % cfg.vocab, capacity=16)
    step = sd.decode(np.array([1]), cache)
    work = perf.decode_work(model, 1, context, m.workload_precision)
    return transfers_vs_perf(step, plan, work, model).set_index("part")


def test_fp32_tensor_parallel_layer_traffic_is_what_perf_assumes():
    t = _decode_step(CFG, "fp32", tp=2, pp=1)
    h, L = CFG.hidden, CFG.n_layers
    # perf: 2 all-reduces per layer, 2(t-1)/t * h * 4 bytes from each of t=2 chips
    assert t.at["layer all-reduces", "assumed"] == 2 * L * 2 * (2 - 1) * h * 4
    assert t.at["layer all-reduces", "measured"] == t.at["layer all-reduces", "assumed"]
    assert t.at["layer all-reduces", "ratio"] == 1.0
    assert t.at["layer all-reduces", "width_measured"] == t.at["layer all-reduces", "width_assumed"] == 4.0
    # what perf leaves out: the vocabulary-split embedding's all-reduce and the logits gather
    assert t.at["embedding all-reduce", "measured"] == 2 * (2 - 1) * h * 4
    assert t.at["logits gather", "measured"] == (CFG.vocab - CFG.vocab // 2) * 4
    assert t.at["total", "measured"] == sum(t.loc[p, "measured"] for p in t.index if p != "total")


def test_int8_sends_integer_accumulators_and_row_scales():
    t = _decode_step(CFG, "int8", tp=2, pp=1)
    L = CFG.n_layers
    # W8A16: int64 accumulators (8 bytes per value) instead of fp32 activations (4): twice perf's figure
    assert t.at["layer all-reduces", "width_measured"] == 8.0 and t.at["layer all-reduces", "ratio"] == 2.0
    assert t.at["int8 row scales", "measured"] == 2 * L * 2 * (2 - 1) * 4  # one float32 max per row per all-reduce
    assert t.at["int8 row scales", "assumed"] == 0.0


def test_pipeline_hops_and_the_tied_embeddings_extra_hop():
    h = CFG.hidden
    untied = _decode_step(CFG, "fp32", tp=2, pp=3)
    assert untied.at["pipeline hand-overs", "assumed"] == (3 - 1) * 2 * h * 4  # every chip of the next stage gets h*a
    assert untied.at["pipeline hand-overs", "ratio"] == 1.0
    tied = _decode_step(DecoderConfig(**{**CFG.__dict__, "tied_embeddings": True}), "fp32", tp=1, pp=3)
    # the table lives with the head (last stage): its rows travel back to the first stage
    assert tied.at["pipeline hand-overs", "transfers"] == 3 and tied.at["pipeline hand-overs", "ratio"] == 1.5


def test_perf_transfer_bytes_by_hand():
    w = perf.Work(np.array(0.0), np.array(0.0), np.array(0.0), np.array([100.0, 200.0]), layers=3)
    tb = perf.transfer_bytes(w, pipeline=4, tensor=8)
    np.testing.assert_array_equal(tb["all_reduce"], [2 * 3 * 2 * 7 * 100, 2 * 3 * 2 * 7 * 200])
    np.testing.assert_array_equal(tb["pipeline"], [3 * 8 * 100, 3 * 8 * 200])
    np.testing.assert_array_equal(tb["total"], tb["all_reduce"] + tb["pipeline"])
    assert perf.transfer_bytes(w)["total"].tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="tensor must be a positive integer"):
        perf.transfer_bytes(w, tensor=0)


def test_a_width_that_splits_a_kv_head_is_refused_with_the_allowed_widths():
    pl = _place(CFG, "fp32", 10**9, tensor=3, pipeline=1)
    with pytest.raises(PlanError, match=r"tensor-parallel width 3 does not divide .* 2 KV heads.*allowed widths: \[1, 2\]"):
        plan_from_placement(pl)
    moe = catalog.load_model("mixtral-8x7b")
    pl = placement.place(moe, simulated_device(1e12), batch=1, context=8, precision="int8",
                         tensor=1, pipeline=1)
    with pytest.raises(PlanError, match="mixture of experts"):
        plan_from_placement(pl)


def test_the_decoders_budget_and_ownership_still_hold_on_a_placement_plan():
    pl = _place(CFG, "fp32", 10**9, tensor=2, pipeline=2)
    plan = plan_from_placement(pl)
    m = Decoder.random(CFG, seed=0)
    d = plan.to_dict()
    d["chips"] = [[name, 1000] for name, _ in d["chips"]]
    with pytest.raises(SramBudgetError, match=r"chip 0 \('chip0'\) needs"):
        ShardedDecoder(m, Plan.from_dict(d))
    d = plan.to_dict()
    d["tensors"]["layers.3.down_proj"] = [s for s in d["tensors"]["layers.3.down_proj"] if s[0] != 3]
    sd = ShardedDecoder(m, Plan.from_dict(d))
    with pytest.raises(OwnershipError, match=r"chip 3 \('chip3'\) touched layers.3.down_proj"):
        sd.prefill(np.array([[1, 2]]))
    assert Plan.from_placement(pl) == plan and Plan.from_dict(plan.to_dict()) == plan


def test_simulated_device_is_a_catalog_device():
    d = simulated_device(230e6)
    assert d.category == "lpu" and d.main_tier == "sram" and d.capacity() == 230e6 and d.bandwidth() == 80e12
    with pytest.raises(PlanError, match="sram_bytes must be a positive number"):
        simulated_device(0)
