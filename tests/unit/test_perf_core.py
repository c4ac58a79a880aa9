"""lpulab.perf, the serving model: per-operator roofline, stages from the placement, exact
stream counts, replicas, micro-batch rounds, time to first token, knobs that broadcast."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab import catalog, perf, placement, workload
from lpulab.parallel import Layout

from ._tiny import tiny_device, tiny_model

M = tiny_model(L=3, h=8, H=2, G=1, dh=4, F=16, V=32, ctx=4096)


def device(capacity=1e9, flops=None, bw=None):
    """A tiny SRAM chip: 1 TB/s and the catalog's fp16 peak from the shared test helper,
    optionally with its compute or bandwidth made effectively infinite."""
    d = tiny_device(capacity)
    raw_peak = 1e30 if flops == "inf" else 1e12
    mem = d.memory[d.main_tier]
    from dataclasses import replace

    from lpulab.catalog import Value
    bw_si = 1e30 if bw == "inf" else mem.bandwidth.si
    tier = replace(mem, bandwidth=replace(mem.bandwidth, si=bw_si))
    comp = {"fp16": Value(raw_peak, raw_peak, "FLOP/s", mem.bandwidth.source, "vendor-peak", "dense")}
    return replace(d, memory={d.main_tier: tier}, compute=comp)


P16 = workload.Precision("fp16", "fp16", "fp16")


def test_a_memory_bound_step_is_bytes_over_bandwidth_and_a_compute_bound_one_flops_over_peak():
    # materialised attention counts exactly what lpulab.workload counts
    for kind in ("memory", "compute"):
        d = device(flops="inf") if kind == "memory" else device(bw="inf")
        dep = perf.Deployment(d, Layout(), P16, attention="materialised")
        prof = perf.step_profile(M, dep, 4, 100, 0.0, 1)
        t = perf.step_times(prof, perf.Knobs()).stage.sum()
        tot = workload.totals(M, "decode", 4, 100, precision=P16)
        want = tot.bytes / d.bandwidth() if kind == "memory" else tot.flops / d.peak("fp16")
        assert t == pytest.approx(want, rel=1e-12)


def test_each_operator_sits_on_its_own_roof():
    """Roofline per operator: the sum of each op's max(compute, memory) is at least the
    roofline of the totals, and here strictly more (some ops are compute-bound, some not)."""
    d = device()
    dep = perf.Deployment(d, Layout(), P16, attention="materialised")
    ops = workload.op_counts(M, "decode", 256, 100, None, P16)
    P, W = d.peak("fp16"), d.bandwidth()
    by_hand = sum(max(float(o.counts.flops) / P, float(o.counts.bytes) / W) * (M.layers if o.group == "layer" else 1)
                  for o in ops)
    got = float(perf.step_times(perf.step_profile(M, dep, 256, 100, 0.0, 1), perf.Knobs()).stage.sum())
    assert got == pytest.approx(by_hand, rel=1e-12)
    tot = workload.totals(M, "decode", 256, 100, precision=P16)
    assert got > max(tot.flops / P, tot.bytes / W) * (1 + 1e-6)


def test_fused_attention_reads_the_cache_but_never_writes_the_scores():
    d = device(flops="inf")
    fused = perf.Deployment(d, Layout(), P16)
    mat = perf.Deployment(d, Layout(), P16, attention="materialised")
    t = {k: float(perf.step_times(perf.step_profile(M, dep, 1, 3000, 0.0, 1), perf.Knobs()).stage.sum())
         for k, dep in (("fused", fused), ("mat", mat))}
    H, K = M.attention_heads, 3001  # scores of one query over 3001 cached tokens, per head
    # materialised: the scores are written, read and written by the softmax, and read again: 4 H K values
    assert t["mat"] - t["fused"] == pytest.approx(M.layers * 4 * H * K * 2.0 / d.bandwidth(), rel=1e-9)


def test_attention_runs_at_the_caches_format_and_the_other_products_at_the_weights():
    """NVFP4 weights and activations with an FP8 cache: the projections at the FP4 peak,
    attention's products at the FP8 peak (half of it); a device without an FP8 peak runs
    attention like the rest."""
    from lpulab.catalog import Value

    d = device(bw="inf")
    v = d.compute["fp16"]
    d = dataclasses.replace(d, compute={"fp8": dataclasses.replace(v, si=2e12), "fp4": dataclasses.replace(v, si=4e12)})
    p = workload.Precision("nvfp4", "nvfp4", "fp8")
    dep = perf.Deployment(d, Layout(), p)
    assert (dep.compute, dep.attention_compute) == ("fp4", "fp8")
    ops = perf._op_list(M, dep, "decode", 8, 500, None)
    by_hand = sum(float(o.counts.flops) / (2e12 if o.kind == "attention" else 4e12)
                  * (M.layers if o.group == "layer" else 1) for o in ops)
    got = float(perf.step_times(perf.step_profile(M, dep, 8, 500, 0.0, 1), perf.Knobs()).stage.sum())
    assert got == pytest.approx(by_hand, rel=1e-12)
    assert any(o.kind == "attention" and float(o.counts.flops) > 0 for o in ops)
    only4 = dataclasses.replace(d, compute={"fp4": Value(4e12, 4e12, "FLOP/s", v.source, "vendor-peak", "dense")})
    assert perf.Deployment(only4, Layout(), p).attention_compute == "fp4"


def test_the_slowest_stage_sets_a_full_pipelines_pace():
    """Three layers, an embedding and a head on two stages: whole items per stage, so the
    stages are uneven; with two micro-batches the round is twice the slowest stage."""
    d = device(flops="inf")
    dep = perf.Deployment(d, Layout(1, 1, 2), P16, hop_latency=0.0)
    stages = placement.stage_split(M, d, 1, 2, context=4096, precision=P16)
    assert [len(s.layers) for s in stages] != [1.5, 1.5] and sum(len(s.layers) for s in stages) == 3
    prof = perf.step_profile(M, dep, 1, 100, 0.0, 1, stages)
    st_t = perf.step_times(prof, perf.Knobs())
    slow = float(st_t.stage.max())
    assert slow > float(st_t.stage.min())
    rep = perf._replica(M, dep, 2.0, 10**9, 1, 100, stages)   # 2 streams, no prefill to speak of
    rnd, _ = perf._round_time(rep, perf.Knobs())
    assert float(rnd) == pytest.approx(2 * slow, rel=1e-3)


def test_streams_are_counted_exactly_over_replicas():
    d = device()
    one = perf.Deployment(d, Layout(1, 1, 1), P16)
    two = perf.Deployment(d, Layout(2, 1, 1), P16)
    p5 = perf.predict(M, two, 5, 64, 64)
    p3, p2 = perf.predict(M, one, 3, 64, 64), perf.predict(M, one, 2, 64, 64)
    assert float(p5.aggregate_tok_s) == pytest.approx(float(p3.aggregate_tok_s + p2.aggregate_tok_s), rel=1e-12)
    assert float(p5.per_user_tok_s) == pytest.approx(float(p5.aggregate_tok_s) / 5)
    assert float(p5.tpot_max_s) == pytest.approx(float(p3.tpot_s))
    assert float(p5.streams_per_replica) == 3.0


def test_replicas_multiply_throughput_and_keep_per_user_speed():
    h = catalog.load_device("nvidia-h100-sxm")
    m = catalog.load_model("llama-2-70b")
    one = perf.predict(m, perf.Deployment(h, Layout(1, 2, 1), "fp8"), 16, 300, 200)
    four = perf.predict(m, perf.Deployment(h, Layout(4, 2, 1), "fp8"), 64, 300, 200)
    assert float(four.aggregate_tok_s) == pytest.approx(4 * float(one.aggregate_tok_s), rel=1e-12)
    assert float(four.per_user_tok_s) == pytest.approx(float(one.per_user_tok_s), rel=1e-12)
    assert four.chips == 8


def test_tensor_parallelism_adds_all_reduces_from_the_catalogs_link():
    h = catalog.load_device("nvidia-h100-sxm")
    m = catalog.load_model("llama-2-70b")
    dep = perf.Deployment(h, Layout(1, 8, 1), "fp8")
    assert dep.collective_latency_s() == h.interconnect["nvlink"].collective_latency.si
    prof = perf.step_profile(m, dep, 1, 100, 0.0, 1)
    assert prof.comm_latency == pytest.approx(2 * dep.collective_latency_s())
    t = perf.step_times(prof, perf.Knobs())
    assert float(t.communication.sum()) == pytest.approx(m.layers * (prof.comm_latency + float(prof.comm_bytes_time)))


def test_time_to_first_token_alone_is_the_prefill_through_every_stage():
    d = device()
    dep = perf.Deployment(d, Layout(), P16)
    p = perf.predict(M, dep, 1, 200, 50)
    alone = perf.step_times(perf.step_profile(M, dep, 0.0, 0.0, 1.0, 200), perf.Knobs()).path
    assert float(p.ttft_s) == pytest.approx(float(alone))
    busy = perf.predict(M, dep, 8, 200, 50)
    assert float(busy.ttft_s) > float(p.ttft_s)     # queued behind a running step, and sharing it


def test_knobs_broadcast_like_a_loop():
    h = catalog.load_device("nvidia-h100-sxm")
    m = catalog.load_model("llama-2-70b")
    prof = perf.serving_profile(m, perf.Deployment(h, Layout(4, 2, 1), "fp8"), np.array([1, 64, 1024]), 300, 200)
    mem = np.array([[0.5], [0.8], [1.0]])
    many = prof.evaluate(perf.Knobs(0.6, mem, 1.0, 1e-5))
    for i, e in enumerate(mem[:, 0]):
        single = prof.evaluate(perf.Knobs(0.6, float(e), 1.0, 1e-5))
        np.testing.assert_allclose(many.aggregate_tok_s[i], single.aggregate_tok_s, rtol=1e-12)
        np.testing.assert_allclose(many.ttft_s[i], single.ttft_s, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(1.0, 10.0), conc=st.integers(1, 512), overhead=st.floats(0.0, 1e-4))
def test_more_bandwidth_or_less_overhead_is_never_slower(scale, conc, overhead):
    h = catalog.load_device("nvidia-h100-sxm")
    m = catalog.load_model("llama-2-70b")
    prof = perf.serving_profile(m, perf.Deployment(h, Layout(1, 2, 1), "fp8"), conc, 300, 200)
    slow = prof.evaluate(perf.Knobs(0.6, 0.8 / scale, 1.0, overhead))
    fast = prof.evaluate(perf.Knobs(0.6, 0.8, 1.0, 0.0))
    assert float(fast.tpot_s) <= float(slow.tpot_s) * (1 + 1e-12)
    assert float(fast.aggregate_tok_s) >= float(slow.aggregate_tok_s) * (1 - 1e-12)


@pytest.mark.parametrize("build,match", [
    (lambda h: perf.Deployment(h, Layout(1, 16, 1), "fp8"), "exceeds nvidia-h100-sxm's scale-up domain of 8"),
    (lambda h: perf.Deployment(h, Layout(1, 1, 1), "fp8", attention="sparse"), "attention 'sparse'"),
    # expert parallelism is timed now; a dense model has no experts to spread
    (lambda h: perf.predict(catalog.load_model("llama-2-70b"), perf.Deployment(h, Layout(1, 1, 1, 2), "fp8"), 1, 10, 10),
     "no experts to spread"),
    (lambda h: perf.Deployment(h, Layout(), workload.Precision("nvfp4", "nvfp4", "fp8")), "has no nvfp4 peak"),
    (lambda h: perf.Deployment(h, Layout(), "fp8", layer_overhead_s=float("nan")), "layer_overhead_s"),
    (lambda h: perf.predict(catalog.load_model("llama-2-70b"), perf.Deployment(h, Layout(1, 2, 1), "fp8"), 0, 10, 10),
     "concurrency must be whole numbers"),
    (lambda h: perf.predict(catalog.load_model("llama-2-70b"), perf.Deployment(h, Layout(1, 2, 1), "fp8"), 1, 4000, 200),
     "exceed llama-2-70b's context of 4096"),
])
def test_what_cannot_be_timed_is_refused_clearly(build, match):
    with pytest.raises(perf.PerfError, match=match):
        build(catalog.load_device("nvidia-h100-sxm"))


def _without_link_latency(device):
    """The device with its scale-up link's latencies taken out (every shipped GPU file has them)."""
    link = device.deployment.scale_up_link
    ic = dict(device.interconnect)
    ic[link] = dataclasses.replace(ic[link], latency=None, collective_latency=None)
    return dataclasses.replace(device, interconnect=ic)


def test_a_link_without_a_latency_says_what_to_add():
    mi = _without_link_latency(catalog.load_device("amd-mi300x"))
    link = mi.deployment.scale_up_link
    assert mi.interconnect[link].latency is None and mi.interconnect[link].collective_latency is None
    with pytest.raises(perf.PerfError, match=f"add interconnect.{link}.latency"):
        perf.predict(catalog.load_model("llama-2-70b"), perf.Deployment(mi, Layout(1, 4, 1), "fp8"), 1, 10, 10)
    # given as a per-run value it is used (and the prediction names the fallback for the collective)
    p = perf.predict(catalog.load_model("llama-2-70b"), perf.Deployment(mi, Layout(1, 4, 1), "fp8", hop_latency=2e-6),
                     1, 10, 10)
    assert math.isfinite(float(p.tpot_s)) and "2 ceil(log2 4) hops" in p.notes[0]


def test_whole_step_work_for_the_kernels_still_counts_transfers():
    m = catalog.load_model("llama-2-70b")
    w = perf.decode_work(m, 4, 100, "fp8")
    t = perf.transfer_bytes(w, pipeline=3, tensor=2)
    msg = 4 * m.hidden_size * 1.0
    assert t["all_reduce"] == pytest.approx(2 * m.layers * 2 * 1 * msg) and t["pipeline"] == pytest.approx(2 * 2 * msg)
    pre = perf.prefill_work(m, 0.5, 300, "fp8")
    merged = w.merge(pre)                                       # the weights are read once
    assert float(merged.weight) == pytest.approx(max(float(w.weight), float(pre.weight)))
    assert float(merged.bytes) == pytest.approx(float(w.bytes + pre.bytes) - min(float(w.weight), float(pre.weight)))


# --------------------------------------------------------------------------- layers that are not alike, experts


def _mixed():
    from .test_placement import mixed_tiny

    return mixed_tiny()


def _part_time(model, dep, part, batch, context):
    """Memory time of one part of a decode step (infinite compute), from the operator counts."""
    ops = workload.op_counts(model, "decode", batch, context, None, dep.precision)
    return sum(float(o.counts.bytes) for o in ops if o.part == part) / dep.device.bandwidth()


def test_a_dense_then_moe_model_is_timed_stage_by_stage():
    """The dense-then-MoE tiny model on two stages (embedding, layers 0-1 | layer 2, head):
    each stage costs its own layers' operators, a dense layer and an MoE layer differently,
    not ``layers x one layer``."""
    m = _mixed()
    d = device(flops="inf")
    dep = perf.Deployment(d, Layout(1, 1, 2), P16, attention="materialised", hop_latency=0.0)
    stages = placement.stage_split(m, d, 1, 2, context=4096, precision=P16)
    assert [s.layers for s in stages] == [(0, 1), (2,)]
    prof = perf.step_profile(m, dep, 4, 100, 0.0, 1, stages)
    t = perf.step_times(prof, perf.Knobs())
    emb, dense, moe, head = (_part_time(m, dep, p, 4, 100) for p in ("embedding", "dense", "moe", "head"))
    assert dense != moe
    assert float(t.stage[0]) == pytest.approx(emb + dense + moe, rel=1e-12)
    assert float(t.stage[1]) == pytest.approx(moe + head, rel=1e-12)
    # the whole step is the model's totals: embedding + dense + 2 x MoE + head
    tot = workload.totals(m, "decode", 4, 100, precision=P16)
    assert float(t.stage.sum()) == pytest.approx(tot.bytes / d.bandwidth(), rel=1e-12)


def test_a_fused_prefill_reads_the_experts_it_adds_only_in_its_share_of_steps():
    """Decode of b streams with r < 1 prompts of P tokens per step: the routed experts read
    per step are D(b) + r (D(b + P) - D(b)) in expectation, not D(P) every step."""
    m = tiny_model(L=1, h=8, H=2, G=1, dh=4, F=16, V=32, E=8, k=2, ctx=4096)
    d = device(flops="inf")
    dep = perf.Deployment(d, Layout(), P16, attention="materialised")
    b, r, P = 3, 0.25, 50
    prof = perf.step_profile(m, dep, b, 100, r, P)
    ops = [o for o in workload.op_counts(m, "decode", b, 100, None, P16) if o.part == "layer"]
    routed = [i for i, o in enumerate(ops) if o.routed]
    per_expert = sum(float(ops[i].counts.weight) for i in routed) / workload.expected_experts(m, b)
    D = workload.expected_experts
    want = per_expert * (D(m, b) + r * (D(m, b + P) - D(m, b)))
    pre = [o for o in workload.op_counts(m, "prefill", 1, 0, P, P16) if o.part == "layer"]
    other = sum(float(ops[i].counts.bytes - ops[i].counts.weight) + r * float(pre[i].counts.bytes - pre[i].counts.weight)
                for i in routed)
    got = float(prof.tm["layer"][..., routed].sum()) * d.bandwidth()
    assert got == pytest.approx(want + other, rel=1e-12)
    # a whole prompt touches all 8 experts; a step reads 4.6 + 0.25 x 3.4 = 5.5 of them on average
    assert D(m, P) > 7.9 and want == pytest.approx(per_expert * 5.46875, rel=1e-4)


def _ep_device(latency=2e-6):
    from dataclasses import replace

    from lpulab.catalog import Value
    d = device(flops="inf")
    ln = d.interconnect["link"]
    lat = Value(latency, latency, "s", ln.bandwidth.source, "estimate")
    return replace(d, interconnect={"link": replace(ln, latency=lat)})


def test_expert_parallel_step_by_hand():
    """4 experts (k=2) over 2 groups of 1 chip, 5 streams: the fullest group runs attention and
    the dense parts for ceil(5/2) = 3 streams, half the routed work of all 5 tokens (its 2 of
    4 experts) and reads half the distinct experts they touch; each MoE layer adds a dispatch
    and a combine of its 3 tokens to the other group's experts."""
    m = tiny_model(L=2, h=8, H=2, G=1, dh=4, F=16, V=32, E=4, k=2, ctx=4096)
    d = _ep_device()
    dep = perf.Deployment(d, Layout(1, 1, 1, 2), P16, attention="materialised")
    prof = perf.step_profile(m, dep, 5, 100, 0.0, 1)
    t = perf.step_times(prof, perf.Knobs())
    W = d.bandwidth()
    own = list(workload.op_counts(m, "decode", 3, 100, None, P16))
    every = list(workload.op_counts(m, "decode", 5, 100, None, P16))
    by_hand = sum(float(o.counts.bytes) * (0.5 if o.routed else 1.0) * (m.layers if o.group == "layer" else 1)
                  for o in (e if e.routed else w for w, e in zip(own, every))) / W
    g = workload.expected_expert_groups(m, 2)                   # groups one token's 2 experts fall in
    assert g == pytest.approx(2 * (1 - 1 / 6))                  # 1 - C(2,2)/C(4,2) per group
    sent = 3 * g * (1 / 2) * m.hidden_size * 2.0                # 3 tokens, remote share, fp16 activations
    a2a = 2 * (2e-6 + sent / d.interconnect["link"].bandwidth.si)
    assert float(t.stage.sum()) == pytest.approx(by_hand + m.layers * a2a, rel=1e-12)
    assert float(t.communication.sum()) == pytest.approx(m.layers * a2a, rel=1e-12)
    # without expert parallelism: no all-to-all, all 5 streams on one chip
    one = perf.step_times(perf.step_profile(m, perf.Deployment(d, Layout(), P16, attention="materialised"), 5, 100),
                          perf.Knobs())
    assert float(one.communication.sum()) == 0.0


def test_expert_parallel_predictions_and_what_cannot_be_timed():
    m = catalog.load_model("deepseek-v3")
    b200 = catalog.load_device("nvidia-b200")
    tp = perf.predict(m, perf.Deployment(b200, Layout(1, 8, 1), "fp8"), [1, 64], 1000, 200)
    ep = perf.predict(m, perf.Deployment(b200, Layout(1, 1, 1, 8), "fp8"), [1, 64], 1000, 200)
    assert np.all(np.isfinite(ep.per_user_tok_s)) and ep.chips == 8 and ep.layout["expert"] == 8
    assert np.all(ep.fits) and np.all(tp.fits)
    # a batch of one reads all attention weights on every expert group: slower per user than TP8
    assert float(ep.per_user_tok_s[0]) < float(tp.per_user_tok_s[0])
    assert any("multi-token-prediction" in n for n in ep.notes)
    mi = _without_link_latency(catalog.load_device("amd-mi300x"))  # as if its xgmi link had no latency
    with pytest.raises(perf.PerfError, match="neither collective_latency nor latency"):
        perf.predict(catalog.load_model("mixtral-8x7b"), perf.Deployment(mi, Layout(1, 1, 1, 2), "fp8"), 4, 100, 10)


def test_a_cost_run_at_a_precision_the_device_does_not_run_is_refused():
    from lpulab import cost

    with pytest.raises((cost.CostError, perf.PerfError, placement.PlacementError), match="has no bf16 peak"):
        cost.analyse("llama-2-70b", "groq-lpu-3", "nvidia-h100-sxm", gpu_layout=Layout(4, 2, 1),
                     lpu_layout=Layout(1, 144, 1), lpu_precision="bf16", lpu_tokens_per_s=100.0,
                     gpu_tokens_per_s=100.0, samples=100)
