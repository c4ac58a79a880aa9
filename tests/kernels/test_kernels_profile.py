"""Operators on the host roofline, decode speed against its bound, notebook 05's helpers and figures."""

import itertools

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")

from lpulab import plots, roofline, workload
from lpulab.kernels import Decoder, DecoderConfig, hostbench, runs
from lpulab.kernels.profile import against_roofline, decode_speed, op_points, time_call
from tests.unit._tiny import tiny_device

CFG = DecoderConfig(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=48, vocab=64, tied_embeddings=False)


def _host():
    """A host-like device with known roofs: l1 1 kB at 100 GB/s, dram at 10 GB/s, 1 TFLOP/s fp32."""
    entry = {
        "id": "fake-host", "name": "fake", "vendor": "test", "category": "cpu", "released": "2024",
        "sources": {"s": {"title": "test", "url": "local", "date": "2024", "confidence": "measured"}},
        "memory": {"l1": {"placement": "on-chip", "capacity": {"value": 1000, "unit": "B", "source": "s", "kind": "measured"},
                          "bandwidth": {"value": 100, "unit": "GB/s", "source": "s", "kind": "measured"}},
                   "dram": {"placement": "off-chip", "capacity": {"value": 1, "unit": "GB", "source": "s", "kind": "measured"},
                            "bandwidth": {"value": 10, "unit": "GB/s", "source": "s", "kind": "measured"}}},
        "compute": {"fp32": {"peak": {"value": 1, "unit": "TFLOP/s", "source": "s", "kind": "measured", "sparsity": "dense"}}},
    }
    return hostbench.as_device(entry)


def test_time_call_is_the_median_per_call_with_a_fake_clock():
    ticks = itertools.count(0.0, 0.001)  # every clock reading advances 1 ms
    t = time_call(lambda: None, repeats=3, min_time=0.0, clock=lambda: next(ticks))
    assert t == pytest.approx(0.001)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_call(lambda: None, repeats=0)


def test_op_points_count_what_the_decoder_counts():
    m = Decoder.random(CFG, seed=0)
    pts = op_points(m, context=4, tokens=1, repeats=1, min_time=0.0).set_index("op")
    table = workload.op_table(CFG.to_model(), "decode", 1, 4, precision=m.workload_precision)
    table["type"] = table["type"].replace({"attn_scores": "attention", "softmax": "attention", "attn_values": "attention"})
    per_type = table.groupby("type")[list(workload.COLUMNS)].sum()
    for op, row in pts.iterrows():
        n = row.per_step
        assert row.flops * n == per_type.at[op, "flops"], op
        assert row["bytes"] * n == sum(per_type.at[op, k] for k in workload.KINDS), op
        assert row.seconds > 0
    assert set(pts.phase) == {"decode"}
    assert set(op_points(m, tokens=3, repeats=1, min_time=0.0).phase) == {"prefill"}
    with pytest.raises(ValueError, match=r"layer must be in 0..1"):
        op_points(m, layer=2)


def test_against_roofline_by_hand():
    host = _host()
    pts = pd.DataFrame({"op": ["small", "big", "dense"], "flops": [100.0, 1e6, 1e9], "bytes": [500.0, 1e6, 1e3],
                        "seconds": [1e-8, 1e-3, 2e-3]})
    out = against_roofline(pts, host).set_index("op")
    assert list(out.tier) == ["l1", "dram", "l1"]
    assert out.at["small", "bound_s"] == pytest.approx(500 / 100e9) and out.at["small", "bound"] == "l1"
    assert out.at["big", "bound_s"] == pytest.approx(1e6 / 10e9) and out.at["big", "fraction"] == pytest.approx(0.1)
    assert out.at["dense", "bound"] == "compute" and out.at["dense", "fraction"] == pytest.approx(1e-3 / 2e-3)


def test_decode_speed_bound_is_the_roofline_of_one_step():
    host = _host()
    m = Decoder.random(CFG, seed=0, precision="int8")
    d = decode_speed(m, host, prompt=3, new_tokens=4, repeats=1)
    c = workload.totals(CFG.to_model(), "decode", 1, 3 + 2, None, m.workload_precision)
    assert d["streamed_bytes"] == c.weight + c.kv_read and d["tier"] == "dram"
    r = roofline.roofs(host, "fp32")
    assert d["bound_s"] == pytest.approx(max(c.flops / r.peak, d["streamed_bytes"] / 10e9))
    assert d["fraction"] == pytest.approx(d["bound_s"] / d["step_s"]) and d["ops_per_step"] == 2 * 16 + 3


def test_tier_table_lists_roofs_and_ridges():
    t = hostbench.tier_table(_host()).set_index("tier")
    assert list(t.index) == ["l1", "dram"] and t.at["dram", "ridge"] == pytest.approx(1e12 / 10e9)


def test_reference_check_says_why_it_did_not_run():
    assert runs.reference_check("shape", False)[1] == "the reference check is switched off (reference = False)"
    assert "needs the real model" in runs.reference_check("shape", True)[1]
    empty = runs.reference_tables(None)
    assert empty["prompts"].empty and "decode_tokens_per_s" in empty["speed"].columns
    assert runs.reference_summary(None, "why") == {"ran": False, "why_not": "why"}


def test_decoder_for_and_sharded_run_refuse_clearly():
    with pytest.raises(ValueError, match="model must be one of shape, smollm2-135m"):
        runs.decoder_for("llama-2-70b")
    dec, model, info = runs.decoder_for("shape", "fp32", 1, dict(n_layers=1, hidden=8, n_heads=2, n_kv_heads=1,
                                                                 head_dim=4, ffn=8, vocab=16))
    assert model.id == "shape" and info["weights"] == "random, seed 1"
    with pytest.raises(ValueError, match="exceed the context placed on the chips"):
        runs.sharded_run(dec, model, tiny_device(1e6), chips=1, tensor_parallel=1, context=4, prompt_tokens=3,
                         new_tokens=2)


def test_figures_are_figures():
    host = _host()
    pts = against_roofline(pd.DataFrame({"op": ["a", "b"], "phase": ["decode", "prefill"], "flops": [10.0, 1e6],
                                         "bytes": [40.0, 1e4], "seconds": [1e-6, 1e-4]}).assign(
        intensity=lambda d: d.flops / d["bytes"], flops_per_s=lambda d: d.flops / d.seconds), host)
    fig = plots.measured_roofline(roofline.roofs(host, "fp32"), pts)
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "log"
    tab = pd.DataFrame({"part": ["x", "y"], "measured": [1.0, 2.0], "assumed": [1.0, 0.0]})
    assert len(plots.measured_vs_assumed(tab).axes) == 1
