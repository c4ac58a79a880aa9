"""lpulab.perf, the serving model: per-operator roofline, stages from the placement, exact
stream counts, replicas, micro-batch rounds, time to first token, knobs that broadcast."""

from __future__ import annotations

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


def test_a_link_without_a_latency_says_what_to_add():
    mi = catalog.load_device("amd-mi300x")
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
