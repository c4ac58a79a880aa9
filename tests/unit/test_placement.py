"""lpulab.placement: a hand-placed tiny model, the reference chip counts, invariants, errors."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lpulab import catalog, placement, workload
from lpulab.placement import PlacementError
from lpulab.workload import Precision

from ._tiny import tiny_device, tiny_model

INT8 = Precision("int8", "int8", "int8")
W8 = Precision("int8", "bf16", "bf16")


@pytest.fixture(scope="module")
def lpu():
    return catalog.load_device("groq-lpu-v1")


@pytest.fixture(scope="module")
def h100():
    return catalog.load_device("nvidia-h100-sxm")


@pytest.fixture(scope="module")
def llama70():
    return catalog.load_model("llama-2-70b")


# --------------------------------------------------------------------------- by hand


def test_tiny_model_placed_by_hand():
    """L=2, h=4, H=2, G=1, dh=2, F=8, V=10, all widths 1 byte, batch 1, context 3.
    Per item at tp=1: embedding 40 B; a layer 152 B of weights + 12 B of KV (2*1*3*2);
    the head 4 + 40 = 44 B; activations 28 B per stage (residual 4 + silu_mul 16 + 8).
    A chip of 250 B leaves 222 B per stage: [embedding, layer 0] = 204, [layer 1, head] = 208."""
    m, d = tiny_model(L=2), tiny_device(250)
    s = placement.chip_sizes(m, 1, batch=1, context=3, precision=INT8)
    assert (s.embedding, s.layer_weight, float(s.layer_kv), s.head, float(s.act)) == (40, 152, 12, 44, 28)
    pl = placement.place(m, d, batch=1, context=3, precision=INT8, tensor_choices=[1])
    assert (pl.tensor, pl.pipeline, pl.chips) == (1, 2, 2)
    assert [(st.embedding, st.layers, st.head) for st in pl.stages] == [(True, (0,), False), (False, (1,), True)]
    cb = pl.chip_bytes().set_index("chip")
    assert cb.loc[0, ["weight", "kv", "activation", "reserve", "headroom"]].tolist() == [192, 12, 28, 0, 18]
    assert cb.loc[1, ["weight", "kv", "activation", "reserve", "headroom"]].tolist() == [196, 12, 28, 0, 14]
    # at tp=2 every slice halves (rounded up per tensor): 20 + 2 * (76 + 6) + 22 + 14 = 220 <= 250: one stage
    s2 = placement.chip_sizes(m, 2, batch=1, context=3, precision=INT8)
    assert (s2.embedding, s2.layer_weight, float(s2.layer_kv), s2.head, float(s2.act)) == (20, 76, 6, 22, 14)
    best = placement.place(m, d, batch=1, context=3, precision=INT8, tensor_choices=[1, 2])
    assert (best.tensor, best.pipeline) == (2, 1)  # a tie at 2 chips goes to the wider tp, fewer stages
    n = placement.need(m, d, 1, 3, precision=INT8, tensor_choices=[1, 2])
    assert (int(n.chips), int(n.tensor), int(n.pipeline), float(n.fluid)) == (2, 2, 1, 2.0)  # ceil(412 / 250)


def test_reserve_is_kept_free_on_every_chip():
    m, d = tiny_model(L=2), tiny_device(250)
    pl = placement.place(m, d, batch=1, context=3, precision=INT8, tensor_choices=[1], reserve=0.1)
    cb = pl.chip_bytes()
    assert (cb.reserve == 25).all()  # ceil(0.1 * 250)
    assert pl.pipeline == 4  # 225 - 28 = 197 per stage: every item alone
    assert (cb.headroom >= 0).all()


# --------------------------------------------------------------------------- reference points


def test_305_is_70GB_over_230MB_and_the_exact_weights_need_300(lpu, llama70):
    chain = placement.capacity_chain(llama70, lpu, batch=1, context=4096, precision=W8,
                                     stated_weight_bytes=70e9, stated_chip_bytes=230e6).set_index("step").chips
    assert chain["as stated"] == 305 == math.ceil(70e9 / 230e6)
    # 68,976,648,192 int8 weights + bf16 norm gains over 220 MiB = 230,686,720 B
    assert chain["weights"] == 300 == placement.fluid_chips(llama70, lpu, precision=W8, weights_only=True)
    assert chain["+ KV cache"] == math.ceil((workload.weight_bytes(llama70, W8) + 4096 * 327_680) / 230_686_720)
    assert chain["+ layer granularity"] >= chain["+ reserve"] >= chain["+ KV cache"] >= chain["weights"]
    assert chain["whole racks"] % 72 == 0 and chain["whole nodes"] % 8 == 0
    assert chain["whole racks"] >= chain["whole nodes"] >= chain["+ layer granularity"]


def test_576_chips_hold_the_weights_and_a_few_dozen_4k_sequences(lpu, llama70):
    b = placement.batch_for_chips(llama70, lpu, 576, 4096, precision=W8, unit=72)
    assert 30 <= b <= 60
    assert placement.need(llama70, lpu, b, 4096, precision=W8, unit=72).deployed == 576
    assert placement.need(llama70, lpu, b + 1, 4096, precision=W8, unit=72).deployed > 576
    # batch 1 fits in 5 racks: the gap to 576 is the KV cache of the served batch
    assert placement.need(llama70, lpu, 1, 4096, precision=W8, unit=72).deployed == 360
    # one layer per stage (no chip holds parts of two layers): 4 chips per layer at batch 1
    n = placement.need(llama70, lpu, 1, 4096, precision=W8, pipeline=placement.items_count(llama70))
    assert (int(n.tensor), int(n.pipeline), int(n.chips)) == (4, 82, 328)


def test_one_h100_cannot_hold_llama_2_70b_in_bf16_two_can_in_int8_or_fp8(h100, llama70):
    with pytest.raises(PlacementError) as e:
        placement.place(llama70, h100, batch=1, context=4096, precision="bf16", tensor=1, pipeline=1)
    msg = str(e.value)
    assert "nvidia-h100-sxm" in msg and "too much" in msg and "on chip 0" in msg and "It would fit with" in msg
    assert e.value.nbytes > e.value.capacity == 80e9 and e.value.chip == 0
    assert any("tensor=2 x pipeline=1 = 2 chips" in f for f in e.value.fixes)
    for w in ("int8", "fp8"):
        pl = placement.place(llama70, h100, batch=1, context=4096, precision=Precision(w, "bf16", "bf16"),
                             tensor=2, pipeline=1)
        assert pl.chips == 2 and (pl.chip_bytes().headroom > 0).all()
    assert placement.need(llama70, h100, 1, 4096, precision="bf16").chips == 2


def test_lpu_counts_per_device(llama70):
    # int8 weights; activations and cache at bf16 where the device runs bf16, else at fp8
    # (the Groq 3 LPU lists only an fp8 peak, and placement refuses a precision a device does not run)
    def prec(d):
        return W8 if "bf16" in d.compute or "fp16" in d.compute else Precision("int8", "fp8", "fp8")
    got = {d: placement.need(llama70, dev, 1, 4096, precision=prec(dev)).chips
           for d in ("groq-lpu-v1", "groq-lpu-3", "nvidia-h100-sxm", "nvidia-h200", "nvidia-b200")
           for dev in [catalog.load_device(d)]}
    assert got["groq-lpu-v1"] >= 300 and got["groq-lpu-3"] >= 139  # 68.98 GB / 500 MB
    assert got["nvidia-h100-sxm"] == got["nvidia-h200"] == got["nvidia-b200"] == 1


# --------------------------------------------------------------------------- invariants


def check_invariants(pl, model, batch, context, p):
    # no chip above capacity, on any tier
    r = pl.residency
    used = r.groupby(["chip", "tier"])["bytes"].sum()
    cap = r.groupby(["chip", "tier"])["capacity"].first()
    assert (used <= cap).all()
    assert (r.headroom >= 0).all()
    # every tensor placed exactly once: unique names, slices that tile each tensor's split axis
    names = [t.name for t in pl.tensors]
    assert len(names) == len(set(names))
    by_name = {name: g.sort_values("rank") for name, g in pl.shards.groupby("tensor")}
    assert set(by_name) == set(names)
    for t in pl.tensors:
        g = by_name[t.name]
        assert list(g["rank"]) == list(range(pl.tensor))
        assert g["start"].iloc[0] == 0 and g["stop"].iloc[-1] == t.shape[t.axis]
        assert (g["start"].to_numpy()[1:] == g["stop"].to_numpy()[:-1]).all()
        assert g["bytes"].sum() == pytest.approx(t.nbytes)
        assert g["stage"].nunique() == 1
        assert set(g["chip"]) == set(pl.stage_chips(int(g["stage"].iloc[0])))
    # totals conserved
    tot = pl.totals()
    assert tot["weight"] == pytest.approx(workload.weight_bytes(model, p))
    assert tot["kv"] == pytest.approx(workload.kv_bytes(model, batch, context, p.kv))
    # every layer in exactly one stage, in order
    ls = pl.layer_stage()
    assert sorted(ls) == list(range(model.layers))
    assert all(ls[i] <= ls[i + 1] for i in range(model.layers - 1))
    # the plan holds every weight tensor once
    plan, _ = placement.export_plan(pl)
    assert set(plan) == {t.name for t in pl.tensors if t.kind == "weight"}


PRECS = list(workload.PRECISIONS)


@st.composite
def tiny_models(draw):
    G = draw(st.sampled_from([1, 2]))
    H = G * draw(st.sampled_from([1, 2, 3]))
    E = draw(st.sampled_from([1, 1, 4]))
    return tiny_model(L=draw(st.integers(1, 4)), h=draw(st.sampled_from([4, 6, 8])), H=H, G=G,
                      dh=draw(st.sampled_from([2, 4])), F=draw(st.integers(3, 20)), V=draw(st.integers(5, 40)),
                      E=E, k=draw(st.integers(1, E)), gated=draw(st.booleans()), tied=draw(st.booleans()))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=tiny_models(), cap=st.integers(60, 3000), batch=st.integers(1, 4), context=st.integers(1, 16),
       w=st.sampled_from(PRECS), a=st.sampled_from(PRECS), c=st.sampled_from(PRECS),
       reserve=st.sampled_from([0.0, 0.05, 0.2]), tps=st.sets(st.integers(1, 6), min_size=1))
def test_smallest_placement_invariants(m, cap, batch, context, w, a, c, reserve, tps):
    p = Precision(w, a, c)
    d = tiny_device(cap)
    n = placement.need(m, d, batch, context, precision=p, reserve=reserve, tensor_choices=sorted(tps))
    att = placement.attempt(m, d, batch=batch, context=context, precision=p, reserve=reserve, tensor_choices=sorted(tps))
    assert att.ok == bool(np.isfinite(n.chips))
    if not att.ok:
        assert "does not fit" in att.error and "would fit with" in att.error
        return
    pl = att.placement
    assert pl.chips == n.chips and (pl.tensor, pl.pipeline) == (n.tensor, n.pipeline)
    assert n.fluid <= n.chips
    check_invariants(pl, m, batch, context, p)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=tiny_models(), cap=st.integers(60, 3000), batch=st.integers(1, 4), context=st.integers(1, 16),
       tp=st.integers(1, 5), pp=st.integers(1, 7))
def test_fixed_deployment_fits_exactly_when_need_says_so(m, cap, batch, context, tp, pp):
    d = tiny_device(cap)
    assume(pp <= placement.items_count(m))
    att = placement.attempt(m, d, batch=batch, context=context, precision=INT8, tensor=tp, pipeline=pp)
    fits = bool(np.isfinite(placement.need(m, d, batch, context, precision=INT8, tensor_choices=[tp], pipeline=pp).chips))
    assert att.ok == fits
    if att.ok:
        assert att.placement.chips == tp * pp and len(att.placement.stages) == pp
        assert all(s.items for s in att.placement.stages)
        check_invariants(att.placement, m, batch, context, INT8)
    else:
        assert "too much" in att.error and "on chip" in att.error


@settings(max_examples=40, deadline=None)
@given(mid=st.sampled_from(["llama-2-70b", "mixtral-8x7b", "llama-3-8b"]), b=st.integers(1, 200),
       ctx=st.integers(1, 32768), db=st.integers(0, 50), dc=st.integers(0, 5000),
       dev=st.sampled_from(["groq-lpu-v1", "groq-lpu-3", "nvidia-h100-sxm"]))
def test_chips_needed_never_falls_as_batch_or_context_grow(mid, b, ctx, db, dc, dev):
    m, d = catalog.load_model(mid), catalog.load_device(dev)
    p = W8 if "bf16" in d.compute or "fp16" in d.compute else Precision("int8", "fp8", "fp8")  # a format it runs
    n = placement.chips_needed(m, d, np.array([b, b + db, b]), np.array([ctx, ctx, ctx + dc]), precision=p)
    assert n[1] >= n[0] and n[2] >= n[0]
    f = placement.fluid_chips(m, d, b, ctx, precision=p)
    assert placement.need(m, d, b, ctx, precision=p).chips >= f


def test_vectorised_need_matches_one_placement_at_a_time(lpu, llama70):
    B = np.array([1, 3, 17, 64])[:, None]
    C = np.array([128, 2048, 4096])[None, :]
    n = placement.need(llama70, lpu, B, C, precision=W8, tensor_choices=placement.tensor_widths(llama70, "power-of-two", 16))
    assert n.chips.shape == (4, 3)
    for i, b in enumerate(B.ravel()):
        for j, c in enumerate(C.ravel()):
            att = placement.attempt(llama70, lpu, batch=int(b), context=int(c), precision=W8,
                                    tensor_choices=placement.tensor_widths(llama70, "power-of-two", 16))
            assert att.ok == bool(np.isfinite(n.chips[i, j]))
            if att.ok:
                assert att.placement.chips == n.chips[i, j]


def test_placement_of_a_real_model_keeps_every_invariant(lpu, llama70):
    pl = placement.place(llama70, lpu, batch=4, context=4096, precision=W8, unit=72)
    check_invariants(pl, llama70, 4, 4096, W8)
    assert pl.chips_deployed % 72 == 0 and pl.chips_deployed >= pl.chips
    st_ = pl.stage_table()
    assert st_.layers.sum() == llama70.layers and (st_.used <= st_.capacity).all()


def test_moe_all_experts_resident(lpu):
    m = catalog.load_model("mixtral-8x7b")
    pl = placement.place(m, lpu, batch=1, context=1024, precision=W8)
    names = {t.name for t in pl.tensors}
    assert {f"layers.0.experts.{e}.down_proj" for e in range(8)} <= names and "layers.0.router" in names
    assert pl.totals()["weight"] == pytest.approx(workload.weight_bytes(m, W8))


def test_tied_embeddings_are_stored_once_with_the_head(lpu):
    m = catalog.load_model("smollm2-135m")
    pl = placement.place(m, lpu, batch=1, context=512, precision="bf16", pipeline=3)
    assert [t.name for t in pl.tensors].count("embed_tokens") == 1
    assert pl.stages[-1].head and not pl.stages[0].embedding


def test_plan_uses_the_kernels_weight_names_and_layout(lpu):
    m = catalog.load_model("llama-2-7b")
    pl = placement.place(m, lpu, batch=1, context=256, precision="int8")
    plan, layer_stage = pl.plan(), pl.layer_stage()
    h, q, kv, F, V = m.hidden_size, m.attention_heads * m.head_dim, m.kv_heads * m.head_dim, m.ffn_size, m.vocab_size
    shapes = {"embed_tokens": (V, h), "layers.0.q_proj": (q, h), "layers.0.k_proj": (kv, h), "layers.0.o_proj": (h, q),
              "layers.0.gate_proj": (F, h), "layers.0.down_proj": (h, F), "layers.0.attn_norm": (h,),
              "final_norm": (h,), "lm_head": (V, h)}
    for name, shape in shapes.items():
        slices = plan[name]
        axis = slices[0][1]
        assert slices[0][2] == 0 and slices[-1][3] == shape[axis]
        assert all(s[1] == axis for s in slices)
    assert plan["layers.0.o_proj"][0][1] == 1 and plan["layers.0.q_proj"][0][1] == 0  # row- and column-parallel
    assert set(layer_stage) == set(range(m.layers))
    assert all(chip in pl.stage_chips(layer_stage[0]) for chip, *_ in plan["layers.0.q_proj"])


def test_gpu_activations_can_live_in_l2(h100):
    m = catalog.load_model("llama-3-8b")
    pl = placement.place(m, h100, batch=1, context=1024, precision="bf16", tiers={"activation": "l2"})
    r = pl.residency
    assert set(r.tier) == {"hbm", "l2"}
    assert r[(r.tier == "l2") & (r.kind == "activation")].bytes.sum() > 0
    assert r[(r.tier == "hbm") & (r.kind == "activation")].bytes.sum() == 0


# --------------------------------------------------------------------------- errors


def test_error_when_one_layer_is_larger_than_a_chip():
    m, d = tiny_model(L=2), tiny_device(150)
    with pytest.raises(PlacementError) as e:
        placement.place(m, d, batch=1, context=3, precision=INT8, tensor_choices=[1])
    msg = str(e.value)
    # 152 B of weights + 12 B of KV + 28 B of activations
    assert "does not fit on tinychip" in msg and "one layer" in msg and "192 B" in msg and "150 B" in msg
    assert "allow tensor-parallel widths of 2 or more" in msg  # what would make it fit
    assert e.value.nbytes == 192 and e.value.capacity == 150


def test_error_when_the_kv_cache_outgrows_the_deployment(lpu, llama70):
    with pytest.raises(PlacementError) as e:
        placement.place(llama70, lpu, batch=64, context=4096, precision=W8, tensor=4, pipeline=82)
    msg = str(e.value)
    assert "KV cache 268 MB" in msg and "on chip 4" in msg and "231 MB" in msg
    assert "batch <= 3 at context 4096" in msg and "the smallest deployment that fits" in msg


def test_bad_arguments_are_refused_clearly(lpu, llama70, h100):
    with pytest.raises(PlacementError, match="reserve must be a fraction"):
        placement.need(llama70, lpu, reserve=1.0)
    with pytest.raises(PlacementError, match="no tier 'hbm'"):
        placement.place(llama70, lpu, tiers={"weight": "hbm"})
    with pytest.raises(PlacementError, match="must share the weights' tier"):
        placement.place(llama70, h100, tiers={"kv": "l2"})
    with pytest.raises(PlacementError, match="only 82 items"):
        placement.place(llama70, lpu, precision=W8, tensor=8, pipeline=90)
    with pytest.raises(PlacementError, match="use need"):
        placement.place(llama70, lpu, batch=np.array([1, 2]))
    with pytest.raises(PlacementError, match="tensor split rule"):
        placement.tensor_widths(llama70, "odd")


# --------------------------------------------------------------------------- layers that are not alike


def mixed_tiny():
    """Layer 0 dense (FFN 8), layers 1-2 MoE (4 experts of 2, k=2): h=4, H=2, G=1, dh=2, V=10."""
    from dataclasses import replace

    return replace(tiny_model(L=3, E=4, k=2), first_dense_layers=1, moe_ffn_size=2)


def test_a_dense_then_moe_model_is_placed_layer_by_layer_by_hand():
    """All widths 1 byte, batch 1, context 3, tensor 1. Attention and norms 56 B per layer;
    the dense FFN 96 B (layer 0: 152 B), the MoE FFN a 16 B router and 4 experts of 24 B
    (layers 1-2: 168 B); 12 B of KV cache per layer; embedding 40 B, head 44 B; activations
    28 B (a residual of 4 B and the dense silu_mul's 16 + 8 B). Items [40, 164, 180, 180, 44]
    on chips of 412 B (384 B of room): emb + L0 + L1 = 384 fits one chip, L2 + head the next:
    2 chips. Sizing every layer as the largest would need 3."""
    m, d = mixed_tiny(), tiny_device(412)
    s = placement.chip_sizes(m, 1, 1, 3, 1, INT8)
    assert s.kinds == ("dense", "moe", "moe")
    assert (s.kind_weight, s.kind_kv) == ({"dense": 152, "moe": 168}, {"dense": 12, "moe": 12})
    assert (s.embedding, s.head, s.act) == (40, 44, 28)
    n = placement.need(m, d, 1, 3, precision=INT8, tensor_choices=[1])
    assert (int(n.chips), int(n.pipeline)) == (2, 2)
    uniform = placement._greedy_stages(412 - 28, 40, 180, 44, 3)
    assert uniform == 3
    pl = placement.place(m, d, batch=1, context=3, precision=INT8, tensor_choices=[1])
    assert [s_.layers for s_ in pl.stages] == [(0, 1), (2,)] and pl.stages[0].embedding and pl.stages[1].head
    cb = pl.chip_bytes().set_index("chip")
    assert (cb.loc[0, "weight"], cb.loc[0, "kv"], cb.loc[0, "activation"], cb.loc[0, "headroom"]) == (360, 24, 28, 0)
    assert (cb.loc[1, "weight"], cb.loc[1, "kv"]) == (168 + 44, 12)
    check_invariants(pl, m, 1, 3, INT8)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.tuples(st.integers(1, 60), st.integers(1, 5)), min_size=1, max_size=6),
       e=st.integers(0, 50), hd=st.integers(0, 50), room=st.integers(1, 150))
def test_run_by_run_stages_equal_greedy_next_fit_item_by_item(sizes, e, hd, room):
    items = [e] + [x for x, n in sizes for _ in range(n)] + [hd]
    want = len(placement._greedy_bins(items, room)) if max(items) <= room else float("inf")
    got = placement._greedy_runs(room, e, [(x, n) for x, n in sizes], hd)
    if e == 0:   # a zero-size embedding (tied) never needs a stage of its own: same count
        want = len(placement._greedy_bins(items[1:], room)) if max(items) <= room else float("inf")
    assert got == want
    if len(sizes) == 1:
        assert got == placement._greedy_stages(room, e, sizes[0][0], hd, sizes[0][1])


def test_windowed_layers_hold_only_their_window_of_cache():
    from dataclasses import replace

    m = replace(tiny_model(L=2, ctx=4096), sliding_window=8, sliding_window_layers="alternate")
    s = placement.chip_sizes(m, 1, 2, 1000, 1, INT8)
    assert (s.kind_kv["window"], s.kind_kv["full"]) == (2 * 2 * 8 * 2, 2 * 2 * 1000 * 2)
    pl = placement.place(m, tiny_device(1e6), batch=2, context=1000, precision=INT8)
    assert pl.totals()["kv"] == workload.kv_bytes(m, 2, 1000, "int8") == 2 * 2 * 2 * (1000 + 8)
    assert {t.name: t.shape for t in pl.tensors if t.kind == "kv"} == {
        "layers.0.kv_cache": (2, 2, 8, 2), "layers.1.kv_cache": (2, 2, 1000, 2)}


def test_mla_cache_is_the_latent_split_over_the_stage():
    from .test_architecture import mla_tiny

    m = mla_tiny()
    pl = placement.place(m, tiny_device(1e6), batch=2, context=5, precision=INT8, tensor=2, pipeline=1)
    kv = [t for t in pl.tensors if t.kind == "kv"]
    assert {t.shape for t in kv} == {(1, 2, 5, 4)} and pl.totals()["kv"] == 3 * 2 * 5 * 4
    check_invariants(pl, m, 2, 5, INT8)


def test_expert_parallel_placement_holds_every_expert_once_per_replica():
    """Mixtral-like tiny MoE, 4 experts over 2 groups of 2 chips, 2 stages: chip = stage*4 +
    group*2 + rank. Each expert's tensors live in one group only (experts 0-1 in group 0,
    2-3 in group 1), cut over its 2 ranks; attention, norms, router, embedding and head are
    in every group; each group caches its own streams."""
    m = tiny_model(L=2, E=4, k=2)
    pl = placement.place(m, tiny_device(1e6), batch=3, context=4, precision=INT8, tensor=2, pipeline=2, expert=2)
    assert pl.chips == 8 and pl.layout.expert == 2 and pl.layout.chips == 8
    sh = pl.shards
    experts = sh[sh.tensor.str.contains(r"\.experts\.")]
    for name, g in experts.groupby("tensor"):
        e = int(name.split(".")[3])
        groups = {(c // 2) % 2 for c in g.chip}
        assert groups == {e // 2}, name                                   # one group only
        assert sorted(g["rank"]) == [0, 1] and g["bytes"].sum() == pytest.approx(
            next(t for t in pl.tensors if t.name == name).nbytes)         # cut once over its ranks
        i = int(name.split(".")[1])
        assert set(g.chip) == set(pl.expert_chips(i, e))
    assert experts.tensor.nunique() == 2 * 4 * 3                          # 2 layers x 4 experts x 3 matrices
    q = sh[sh.tensor == "layers.0.q_proj"]
    assert sorted(q.chip) == [0, 1, 2, 3] and q["bytes"].sum() == 2 * 16   # repeated in both groups
    kv = sh[sh.kind == "kv"]
    assert set(kv.tensor) == {"layers.0.kv_cache.0", "layers.0.kv_cache.1", "layers.1.kv_cache.0", "layers.1.kv_cache.1"}
    assert kv["bytes"].sum() == workload.kv_bytes(m, 3, 4, "int8")       # 2 + 1 streams, each cached once
    # the residency agrees with the shards, and the fullest chip is what chip_sizes says
    by_chip = sh.groupby("chip")["bytes"].sum()
    cb = pl.chip_bytes().set_index("chip")
    assert (cb.weight + cb.kv + cb.activation).to_dict() == pytest.approx(by_chip.to_dict())
    s = placement.chip_sizes(m, 2, 3, 4, 1, INT8, expert=2)
    stage0 = [t for t in pl.tensors if t.layer == 0 or t.group == "embedding"]
    assert s.layer_weight == sum(x.max_slice_bytes(2) for x in stage0 if x.layer == 0 and x.kind == "weight" and (
        x.expert is None or x.expert < 2))
    n = placement.need(m, tiny_device(1e6), 3, 4, precision=INT8, tensor_choices=[2], expert=2)
    assert int(n.chips) == 4 and n.expert == 2                            # one stage of 2 x 2 fits
    with pytest.raises(PlacementError, match="has 4 experts"):
        placement.place(m, tiny_device(1e6), precision=INT8, tensor=1, pipeline=1, expert=8)
    with pytest.raises(PlacementError, match="dense"):
        placement.need(tiny_model(), tiny_device(1e6), precision=INT8, expert=2)


def test_a_precision_the_device_does_not_run_is_refused(llama70):
    wse = catalog.load_device("cerebras-wse-3")            # runs fp16 and bf16 only
    lpu3 = catalog.load_device("groq-lpu-3")                # runs fp8 only
    with pytest.raises(PlacementError, match="cerebras-wse-3 has no int8 peak \\(it runs: fp16, bf16\\)"):
        placement.need(llama70, wse, 1, 4096, precision="int8")
    with pytest.raises(PlacementError, match="groq-lpu-3 has no bf16 peak"):
        placement.place(llama70, lpu3, precision="bf16")
    # weight-only formats run at the activations' width
    assert np.isfinite(placement.need(llama70, wse, 1, 4096, precision=Precision("int8", "bf16", "bf16")).chips)
    # notebook 02's analysis leaves such a device out, and says why
    r = placement.analyse("llama-2-70b", ["groq-lpu-v1", "nvidia-h100-sxm", "cerebras-wse-3"], "groq-lpu-v1",
                          "nvidia-h100-sxm", precision="int8", sweep_contexts=(512,), sweep_batches=(1,))
    assert list(r.not_run) == ["cerebras-wse-3"] and "cerebras-wse-3" not in set(r.table.device)
    with pytest.raises(PlacementError, match="has no int8 peak"):
        placement.analyse("llama-2-70b", ["cerebras-wse-3", "nvidia-h100-sxm"], "cerebras-wse-3", "nvidia-h100-sxm",
                          precision="int8")


def test_the_new_models_place_on_every_machine_of_the_issue():
    def prec(d):
        for p in ("fp8", "int8"):
            try:
                workload.compute_format(d, p)
                return Precision(p, p, p)
            except workload.WorkloadError:
                pass
        return Precision("fp8", "bf16", "bf16")
    for mid in ("deepseek-v3", "gpt-oss-120b", "kimi-k2"):
        m = catalog.load_model(mid)
        for did in ("groq-lpu-v1", "groq-lpu-3", "cerebras-wse-3", "nvidia-h100-sxm", "nvidia-b200", "nvidia-gb200"):
            d = catalog.load_device(did)
            n = placement.need(m, d, 1, 4096, precision=prec(d))
            assert np.isfinite(n.chips), (mid, did)
            assert n.chips >= n.fluid                           # never below bytes / capacity
    # DeepSeek-V3 at fp8: 671 GB of weights over 80 GB H100s needs at least 9; the 8-GPU limit of
    # tensor parallelism (kv-heads, scale-up 8) makes it pipeline stages
    n = placement.need(catalog.load_model("deepseek-v3"), catalog.load_device("nvidia-h100-sxm"), 1, 4096,
                       precision="fp8")
    assert n.chips >= 9 and n.pipeline > 1
