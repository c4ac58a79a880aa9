"""lpulab.calibration: known knobs recovered from synthetic measurements, intervals that
cover them, knobs the data cannot pin held and said so, the date split, leave-one-out."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lpulab import calibration, catalog, perf
from lpulab.calibration import Point
from lpulab.parallel import Layout

TRUE = {"hbm.memory": 0.72, "hbm.compute": 0.45, "hbm.layer_overhead_s": 2.0e-5}


def synthetic(noise=0.03, seed=11, concurrencies=(1, 2, 4, 16, 64, 256, 1024, 2048), dates=("2024-01-01", "2025-06-01")):
    """Operating points of Llama-2-70B on H100 in two layouts, 'measured' as the model's own
    prediction at TRUE knobs times lognormal noise (seeded)."""
    rng = np.random.default_rng(seed)
    m = catalog.load_model("llama-2-70b")
    h = catalog.load_device("nvidia-h100-sxm")
    pts = []
    for date in dates:
        for lay in (Layout(4, 2, 1), Layout(1, 8, 1)):
            dep = perf.Deployment(h, lay, "fp8")
            for c in concurrencies:
                prof = perf.serving_profile(m, dep, c * lay.replicas, 300, 200)
                for metric in ("tpot_s", "aggregate_tok_s"):
                    truth = float(getattr(prof.evaluate(calibration.knobs_for("hbm", TRUE)), metric))
                    measured = truth * math.exp(rng.normal(0.0, noise))
                    pts.append(Point(f"{date} {lay} c={c} {metric}", "hbm", metric, measured, date, prof, (f"r{len(pts)}",)))
    return pts


def test_known_knobs_are_recovered_and_their_intervals_cover_them():
    pts = synthetic()
    cal = calibration.fit(pts, "2024-12-31", knobs=list(TRUE), loo=False)
    assert set(cal.fitted) == set(TRUE) and not cal.held
    for k, v in TRUE.items():
        lo, hi = cal.interval[k]
        assert lo <= v <= hi, (k, v, cal.interval[k], cal.values[k])
        assert cal.values[k] == pytest.approx(v, rel=0.15)
    assert cal.sigma == pytest.approx(0.03, rel=0.5)          # the residual scatter is the noise
    test = cal.table[cal.table.set == "test"]
    assert len(test) == len(pts) // 2 and test.covered.mean() >= 0.85
    assert test.rel_error.abs().median() < 0.05


def test_without_noise_the_fit_is_exact():
    cal = calibration.fit(synthetic(noise=0.0), "2024-12-31", knobs=list(TRUE), loo=False)
    for k, v in TRUE.items():
        assert cal.values[k] == pytest.approx(v, rel=1e-3)


def test_a_knob_no_point_moves_is_held_at_its_prior_and_says_why():
    # every point at very high concurrency: the fixed per-layer time hardly moves them
    pts = synthetic(concurrencies=(2048,))
    cal = calibration.fit(pts, "2024-12-31", knobs=["hbm.memory", "hbm.compute", "hbm.layer_overhead_s",
                                                   "sram.memory"], loo=False)
    assert "sram.memory" in cal.held and "fewer than 3" in cal.held["sram.memory"]
    # at one concurrency the bandwidth and compute fractions trade off: one of them is held
    assert any("not separable" in why for why in cal.held.values()), cal.held
    assert cal.values["sram.memory"] == calibration.knob_specs(["sram.memory"])[0].prior
    table = calibration.knob_table(cal).set_index("knob")
    assert table.loc["sram.memory", "status"] == "held at prior"


def test_a_knob_the_data_pushes_to_the_end_of_its_range_is_flagged(monkeypatch):
    # the synthetic truth's per-layer time (20 us) lies beyond a range capped at 10 us
    import dataclasses

    specs = {k.name: k for k in calibration.KNOBS}
    monkeypatch.setattr(calibration, "KNOBS", tuple(dataclasses.replace(k, high=1.0e-5)
                                                    if k.name == "hbm.layer_overhead_s" else k
                                                    for k in calibration.KNOBS))
    cal = calibration.fit(synthetic(), "2024-12-31", knobs=list(TRUE), loo=False)
    assert cal.values["hbm.layer_overhead_s"] == pytest.approx(1.0e-5, rel=0.05)
    assert "at the upper end of its allowed range" in cal.weak["hbm.layer_overhead_s"]
    # knobs fitted inside their ranges carry no such flag
    assert not any("allowed range" in w for n, w in cal.weak.items() if n != "hbm.layer_overhead_s")
    assert specs["hbm.layer_overhead_s"].high > 1.0e-5


def test_too_few_points_for_the_knobs_is_refused():
    pts = synthetic(concurrencies=(1, 1024), dates=("2024-01-01",))[:2]
    with pytest.raises(calibration.CalibrationError, match=r"cannot determine|fewer than"):
        calibration.fit(pts, "2024-12-31", knobs=list(TRUE), min_rows=1, loo=False)


def test_the_split_is_by_date_and_leave_one_out_refits_without_the_point():
    pts = synthetic(concurrencies=(1, 64, 1024))
    cal = calibration.fit(pts, "2024-12-31", knobs=list(TRUE), loo=True)
    fit, test = cal.table[cal.table.set == "fit"], cal.table[cal.table.set == "test"]
    assert (fit.date <= "2024-12-31").all() and (test.date > "2024-12-31").all()
    assert fit.loo_predicted.notna().all() and test.loo_predicted.isna().all()
    # leaving a point out can only make its own error larger or equal, on the whole
    assert fit.loo_rel_error.abs().median() >= fit.rel_error.abs().median() * 0.9
    s = cal.error_summary().set_index(["set", "metric"])
    assert {"fit", "leave-one-out", "test"} <= set(s.index.get_level_values(0))
    # the speed metrics are the fitted ones; the share beyond 30 % is counted, not assumed
    e = test[test.metric.isin(cal.metrics)].rel_error.abs()
    assert s.loc[("test", "speed metrics"), "points"] == len(e)
    assert s.loc[("test", "speed metrics"), "median_abs_error"] == pytest.approx(e.median())
    assert s.loc[("test", "speed metrics"), "beyond_30pct"] == pytest.approx((e > 0.3).mean())
    assert cal.error("test", "speed metrics", "beyond_30pct") == s.loc[("test", "speed metrics"), "beyond_30pct"]
    assert math.isnan(cal.error("test", "no such metric"))


def test_a_bad_cutoff_or_no_points_is_refused():
    with pytest.raises(calibration.CalibrationError, match="cutoff must be a date"):
        calibration.fit(synthetic(concurrencies=(1,)), "last year")
    with pytest.raises(calibration.CalibrationError, match="no measured points"):
        calibration.fit([], "2024-12-31")
    with pytest.raises(calibration.CalibrationError, match="unknown knob"):
        calibration.fit(synthetic(concurrencies=(1,)), "2024-12-31", knobs=["hbm.speed"])


def test_the_prediction_interval_widens_with_the_knobs_uncertainty():
    pts = synthetic(noise=0.05)
    cal = calibration.fit(pts, "2024-12-31", knobs=list(TRUE), loo=False)
    prof = pts[0].profile
    v, lo, hi = calibration.interval(cal, "hbm", lambda a: np.log(prof.evaluate(calibration.knobs_for("hbm", cal.values, a)).tpot_s))
    assert lo < v < hi
    half = math.log(float(hi) / float(v))
    assert half >= 1.96 * cal.sigma * 0.999                    # at least the residual scatter
