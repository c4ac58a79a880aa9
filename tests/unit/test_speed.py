"""C2 assembly: measured rows -> operating points, the claim's arithmetic, calibration."""

import numpy as np
import pytest

from lpulab import catalog, perf, speed, workload


@pytest.fixture(scope="module")
def measurements():
    return catalog.load_measurements("speed")


@pytest.fixture(scope="module")
def platforms():
    return {"lpu": speed.Platform("groq-lpu-v1", "int8", 8, 576), "gpu": speed.Platform("nvidia-h100-sxm", "fp8", 8, 8)}


def test_as_stated_is_groq_over_the_median_gpu_provider(measurements):
    s = speed.as_stated_ratio(measurements)
    assert s["groq_stated"] == 300 and s["gpu_median"] == 33
    assert s["ratio"] == pytest.approx(300 / 33)


def test_mlperf_server_concurrency_is_littles_law(measurements):
    t = speed.targets(measurements)
    row = t[t.id == "mlperf40-h100x8-llama2-70b-server-tpot_s"].iloc[0]
    assert row.concurrency == pytest.approx(20556.4 * 0.1368)
    assert np.isnan(t[t.id == "mlperf40-h100x8-llama2-70b-offline-output_tok_s_aggregate"].concurrency.iloc[0])


def test_platform_chips_default_to_the_fewest_that_hold_the_weights():
    m = catalog.load_model("llama-2-7b")
    chips = speed.Platform("groq-lpu-v1", "int8", 8).chips_for(m)
    w = workload.weight_bytes(m, "int8")
    assert chips % 8 == 0 and (chips - 8) * 220 * 2**20 < w <= chips * 220 * 2**20


def test_memory_bound_single_stream_on_one_gpu_is_bytes_over_bandwidth():
    """Llama-2-7B fp8 on one H100 at one stream: TPOT is about weight bytes / 3.35 TB/s."""
    m = catalog.load_model("llama-2-7b")
    dep = perf.Deployment(catalog.load_device("nvidia-h100-sxm"), 1, precision="fp8")
    op = perf.operating_points(m, dep, 1.0, 1, 1, "fp8", as_frame=False)
    w = workload.weight_bytes(m, "fp8")
    assert float(op["tpot_s"]) == pytest.approx(w / 3.35e12, rel=0.02)


def test_calibration_fits_its_rows_and_reports_the_rest(measurements, platforms):
    t = speed.targets(measurements)
    fit = ["groq-stated-2024-02-llama-2-70b", "mlperf40-h100x8-llama2-70b-server-tpot_s",
           "mlperf40-h100x8-llama2-70b-offline-output_tok_s_aggregate"]
    cal = speed.calibrate(t, platforms, fit)
    assert cal.success
    fitted = cal.table[cal.table.fitted]
    assert np.all(np.abs(fitted.rel_error) < 1e-3)
    assert len(cal.table) == len(t) and (~cal.table.fitted).sum() == len(t) - 3
    # a row the fit did not see: MLPerf Server aggregate follows from TPOT by Little's law
    srv = cal.table[cal.table.id == "mlperf40-h100x8-llama2-70b-server-output_tok_s_aggregate"].iloc[0]
    assert abs(srv.rel_error) < 0.01
    with pytest.raises(ValueError, match="not among the predictable"):
        speed.calibrate(t, platforms, ["no-such-row"])


def test_frontier_is_one_call_over_concurrency(platforms):
    m = catalog.load_model("llama-2-70b")
    knobs = {"lpu_alpha": 3e-6, "gpu_alpha": 1.5e-5, "gpu_compute": 0.5}
    c = np.array([1, 8, 64, 512])
    g = speed.frontier(platforms["gpu"], m, knobs, c, 550, 150, "gpu")
    assert list(g.concurrency) == [1, 8, 64, 512]
    assert np.all(np.diff(g.per_user_tok_s) <= 0)          # more streams: slower for each user
    assert np.all(np.diff(g.aggregate_tok_s) >= 0)         # ... but more tokens for the server
    lp = speed.frontier(platforms["lpu"], m, knobs, c, 550, 150, "lpu")
    assert lp.per_user_tok_s.iloc[0] > g.per_user_tok_s.iloc[0]


def test_measurements_validate(measurements):
    assert {"value_si", "metric", "source_url"} <= set(measurements.columns)
    assert measurements.source_url.str.startswith("http").all()


def test_broken_measurements_are_refused(tmp_path):
    src = (catalog.paths.MEASUREMENTS / "speed.csv").read_text()
    (tmp_path / "speed.csv").write_text(src.replace("output_tok_s_per_user", "tokens_per_user", 1))
    with pytest.raises(catalog.CatalogError, match=r"speed.csv: row '.*'.metric: 'tokens_per_user' is not one of"):
        catalog.load_measurements("speed", tmp_path)
