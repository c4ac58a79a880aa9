"""lpulab.perf on hand-made work: memory-bound decode time is bytes over bandwidth, and laws."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab import catalog, perf
from lpulab.roofline import Efficiency

H100 = catalog.load_device("nvidia-h100-sxm")
LPU = catalog.load_device("groq-lpu-v1")


def work(flops=0.0, nbytes=70e9, weight=None, message=0.0, layers=80):
    a = lambda x: np.asarray(x, float)  # noqa: E731
    return perf.Work(a(flops), a(nbytes), a(nbytes if weight is None else weight), a(message), layers)


def test_memory_bound_decode_is_bytes_over_bandwidth():
    # 70 GB of fp8 weights on one H100: 70e9 / 3.35e12 = 20.9 ms per token
    dep = perf.Deployment(H100, chips=1, precision="fp8")
    s = perf.step(work(flops=2 * 69e9, nbytes=70e9), dep)
    assert s["cycle"] == pytest.approx(70e9 / 3.35e12)
    assert s["bound"] == "memory"


def test_tensor_parallel_divides_bytes_and_adds_allreduces():
    dep = perf.Deployment(H100, chips=8, tensor=8, precision="fp8", hop_latency_s=5e-6)
    msg = 8192 * 2.0  # one token's hidden state in bf16
    s = perf.step(work(nbytes=70e9, message=msg, layers=80), dep)
    ar = 2 * 3 * 5e-6 + 2 * 7 / 8 * msg / 450e9
    assert s["comm"] == pytest.approx(2 * 80 * ar)
    assert s["cycle"] == pytest.approx(70e9 / (8 * 3.35e12) + 2 * 80 * ar)


def test_pipeline_latency_adds_stages_and_hops():
    dep = perf.Deployment(LPU, chips=8, pipeline=8, precision="int8", hop_latency_s=1e-6)
    w = work(nbytes=8 * 200e6, message=8192.0, layers=8)
    s = perf.step(w, dep, microbatches=1)
    stage = 200e6 / 80e12
    hop = 1e-6 + 8192 / 240e9
    assert s["cycle"] == pytest.approx(8 * stage + 7 * hop)


def test_serve_aggregate_is_concurrency_over_cycle():
    dep = perf.Deployment(H100, chips=8, tensor=8, precision="fp8", hop_latency_s=0.0)
    c = np.array([1.0, 16.0, 256.0])
    dec = work(flops=2 * 69e9 * c, nbytes=70e9 + 1e6 * c, weight=70e9)
    pre = work(flops=0 * c, nbytes=0 * c, weight=0 * c)
    out = perf.serve(dec, pre, dep, c, output_tokens=200)
    assert np.allclose(out["aggregate_tok_s"], c / out["tpot_s"])
    assert np.allclose(out["per_user_tok_s"] * out["tpot_s"], 1.0)


def test_merge_reads_weights_once():
    a = work(flops=1.0, nbytes=100.0, weight=80.0)
    b = work(flops=2.0, nbytes=90.0, weight=80.0)
    m = a.merge(b)
    assert float(m.bytes) == 110.0 and float(m.flops) == 3.0


@pytest.mark.parametrize("kwargs,match", [
    ({"chips": 10, "tensor": 4}, "multiple"),
    ({"chips": 0}, "positive integer"),
    ({"chips": 1, "precision": "fp4"}, "no fp4 peak"),
    ({"chips": 1, "link": "warp"}, "no interconnect 'warp'"),
])
def test_bad_deployments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        perf.Deployment(H100, **{"precision": "fp8", **kwargs})


pos = st.floats(1e-3, 1e3)


@settings(max_examples=60, deadline=None)
@given(bw_scale=st.floats(1.0, 10.0), nbytes=st.floats(1e6, 1e12), flops=st.floats(0, 1e16))
def test_more_bandwidth_is_never_slower(bw_scale, nbytes, flops):
    slow = perf.Deployment(H100, chips=1, precision="fp8", efficiency=Efficiency(memory=1.0 / bw_scale))
    fast = perf.Deployment(H100, chips=1, precision="fp8")
    w = work(flops=flops, nbytes=nbytes)
    assert perf.step(w, fast)["cycle"] <= perf.step(w, slow)["cycle"] * (1 + 1e-12)


@settings(max_examples=60, deadline=None)
@given(per_seq_kv=st.floats(1e3, 1e8), weights=st.floats(1e8, 2e11))
def test_larger_batch_never_lowers_aggregate_before_the_compute_roof(per_seq_kv, weights):
    dep = perf.Deployment(H100, chips=8, tensor=8, precision="fp8", hop_latency_s=1e-6)
    b = np.arange(1, 513, dtype=float)
    flops = 2 * (weights / 1.0) * b  # 2 FLOPs per weight byte per sequence (fp8)
    dec = work(flops=flops, nbytes=weights + per_seq_kv * b, weight=weights, message=8192 * 2 * b)
    out = perf.serve(dec, work(0 * b, 0 * b, 0 * b), dep, b, output_tokens=100)
    memory_bound = out["bound"] != "compute"
    agg = out["aggregate_tok_s"][memory_bound]
    assert np.all(np.diff(agg) >= -1e-9 * agg[1:])


def test_calibration_recovers_known_factors():
    """Synthetic 'measurements' made with known efficiency and latency are recovered."""
    truth = {"memory": 0.7, "alpha": 2e-6}
    rows = pd.DataFrame({"batch": [1.0, 4.0, 32.0, 128.0, 512.0]})

    def predict(p, r):
        dep = perf.Deployment(H100, chips=8, tensor=8, precision="fp8", hop_latency_s=p["alpha"],
                              efficiency=Efficiency(memory=min(p["memory"], 1.0)))
        w = work(flops=2 * 69e9 * r.batch, nbytes=70e9 + 2.6e8 * r.batch, weight=70e9,
                 message=8192 * 2 * r.batch)
        return float(perf.serve(w, work(0, 0, 0), dep, r.batch, 100)["aggregate_tok_s"])

    rows["value"] = [predict(truth, r) for r in rows.itertuples()]
    cal = perf.calibrate(rows, predict, {"memory": 0.4, "alpha": 1e-5},
                         {"memory": (0.05, 1.0), "alpha": (1e-8, 1e-3)})
    assert cal.success
    assert cal.values["memory"] == pytest.approx(0.7, rel=1e-3)
    assert cal.values["alpha"] == pytest.approx(2e-6, rel=1e-2)
    assert np.all(np.abs(cal.table.rel_error) < 1e-4)


def test_calibration_reports_unfitted_rows_too():
    rows = pd.DataFrame({"x": [1.0, 2.0, 3.0], "value": [2.0, 4.0, 9.0]})
    cal = perf.calibrate(rows, lambda p, r: p["k"] * r.x, {"k": 1.0}, {"k": (0.1, 10.0)},
                         fit_mask=[True, True, False])
    assert cal.values["k"] == pytest.approx(2.0, rel=1e-6)
    assert list(cal.table.fitted) == [True, True, False]
    assert cal.table.rel_error.iloc[2] == pytest.approx(6.0 / 9.0 - 1.0)
    with pytest.raises(ValueError, match="cannot determine"):
        perf.calibrate(rows, lambda p, r: p["k"] * r.x, {"k": 1.0, "j": 1.0},
                       {"k": (0.1, 10.0), "j": (0.1, 10.0)}, fit_mask=[True, False, False])


def test_affine_decode_path_equals_the_direct_count():
    from lpulab import workload

    m = catalog.load_model("llama-2-70b")
    rng = np.random.default_rng(0)
    B = rng.integers(1, 5000, 5000).astype(float)
    P = rng.integers(0, 4096, 5000).astype(float)
    fast = perf.decode_work(m, B, P, "fp8")             # >= 4096 entries: the affine path
    direct = workload.totals(m, "decode", B, P, None, "fp8")
    assert np.allclose(fast.flops, direct.flops, rtol=1e-12)
    assert np.allclose(fast.bytes, direct.bytes, rtol=1e-12)
    assert np.allclose(fast.weight, direct.weight, rtol=1e-12)
