"""lpulab.speed: measured rows as operating points (layouts, Little's law, duplicates), the
like-for-like C2 ratio, predictions with intervals, and `lpulab predict`."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from lpulab import catalog, cli, perf, speed
from lpulab.parallel import Layout


def test_c2_as_stated_is_like_for_like_with_the_vendor_ratio_beside_it():
    r = speed.like_for_like()
    assert r["lpu_measured"] == 185.0 and r["gpu_median"] == 33.0 and r["gpu_providers"] == 7
    assert r["ratio"] == pytest.approx(185 / 33)
    assert r["vendor_stated"] == 300.0 and round(r["vendor_ratio"], 2) == 9.09


def _rows(**over):
    base = dict(id="x-agg", date="2024-03-27", source_title="t", source_url="https://example.org/run1", confidence="official",
                model="llama-2-70b", hardware="nvidia-h100-sxm", chips=8.0, software="s", precision="fp8",
                scenario="Server", concurrency=np.nan, input_tokens=np.nan, output_tokens=290.0,
                metric="output_tok_s_aggregate", value=20000.0, unit="tok/s", note="", tensor=2.0, pipeline=1.0,
                replicas=4.0, expert=np.nan, speculative="none", value_si=20000.0)
    return {**base, **over}


def test_a_server_run_holds_its_littles_law_streams_in_its_published_layout():
    df = pd.DataFrame([_rows(), _rows(id="x-tpot", metric="tpot_s", value=0.12, unit="s", value_si=0.12),
                       _rows(id="x-ttft", metric="ttft_s", value=0.3, unit="s", value_si=0.3)])
    pts, skipped = speed.points(df)
    assert not skipped and {p.metric for p in pts} == {"aggregate_tok_s", "tpot_s", "ttft_s"}
    p = pts[0]
    want = 20000 * (0.12 + 0.3 / 290)                      # tokens/s x (TPOT + TTFT / output)
    assert float(p.profile.concurrency) == round(want)
    assert p.profile.deployment.layout == Layout(4, 2, 1)
    assert p.profile.prompt == round(catalog.load_benchmarks()[("mlperf", "llama-2-70b")].mean_prompt.si) == 222


def test_one_run_filed_twice_and_several_submitters_collapse_into_one_point():
    twice = [_rows(), _rows(id="y-agg", source_url="https://example.org/run1-99.9"),
             _rows(id="x-tpot", metric="tpot_s", value=0.12, unit="s", value_si=0.12),
             _rows(id="y-tpot", source_url="https://example.org/run1-99.9", metric="tpot_s", value=0.12, unit="s",
                   value_si=0.12),
             _rows(id="z-agg", source_url="https://example.org/other", value=22000.0, value_si=22000.0),
             _rows(id="z-tpot", source_url="https://example.org/other", metric="tpot_s", value=0.13, unit="s",
                   value_si=0.13)]
    pts, _ = speed.points(pd.DataFrame(twice))
    agg = [p for p in pts if p.metric == "aggregate_tok_s"]
    assert len(agg) == 1 and set(agg[0].rows) == {"x-agg", "y-agg", "z-agg"}
    assert agg[0].measured == pytest.approx(20000.0)        # the median of 20,000, 20,000 and 22,000


def test_runs_with_stated_lengths_stay_apart_when_only_their_output_differs():
    # one table, one system: 2,048 in / 128 out and 2,048 in / 2,048 out are two runs
    # (a benchmark dataset's rows, with no stated prompt, merge across submitters instead)
    rows = [_rows(id=f"t-{o}", source_url="https://example.org/table", scenario="Offline", input_tokens=2048.0,
                  output_tokens=float(o), value=v, value_si=v, tensor=1.0, pipeline=1.0, replicas=1.0,
                  hardware="nvidia-h200")
            for o, v in ((128, 1000.0), (2048, 4000.0))]
    pts, skipped = speed.points(pd.DataFrame(rows))
    assert not skipped and len(pts) == 2
    by_out = {p.profile.output: p for p in pts}
    assert set(by_out) == {128, 2048}
    assert by_out[128].measured == 1000.0 and by_out[2048].measured == 4000.0
    assert by_out[128].rows == ("t-128",) and by_out[2048].rows == ("t-2048",)


def test_a_sweep_over_stated_concurrencies_gives_one_point_per_concurrency():
    rows = [_rows(id=f"s-{c}", source_url="https://example.org/sweep", scenario="fixed-concurrency",
                  concurrency=float(c), input_tokens=2000.0, output_tokens=500.0, value=v, value_si=v,
                  tensor=2.0, pipeline=1.0, replicas=1.0)
            for c, v in ((1, 52.0), (5, 218.0), (25, 623.0), (50, 800.0))]
    pts, skipped = speed.points(pd.DataFrame(rows))
    assert not skipped and len(pts) == 4
    got = sorted((int(p.profile.concurrency), p.measured) for p in pts)
    assert got == [(1, 52.0), (5, 218.0), (25, 623.0), (50, 800.0)]


def test_a_speculative_run_is_left_out_of_the_plain_decoding_points():
    rows = [_rows(id="m", scenario="vendor-claim", metric="output_tok_s_per_user", value=268.0, value_si=268.0,
                  speculative="medusa", tensor=8.0, replicas=1.0, hardware="nvidia-h200"),
            _rows(id="u", scenario="vendor-claim", metric="output_tok_s_per_user", value=100.0, value_si=100.0,
                  speculative="unknown", tensor=8.0, replicas=1.0, hardware="nvidia-h200")]
    pts, skipped = speed.points(pd.DataFrame(rows))
    assert [p.rows for p in pts] == [("u",)]          # not stated either way: kept
    (s,) = skipped
    assert s.row == "m" and "speculative decoding (medusa)" in s.why and "acceptance rate" in s.why


@pytest.mark.parametrize("over,why", [
    ({"hardware": "no-such-chip"}, "is not in the catalog"),
    ({"tensor": np.nan, "pipeline": np.nan, "replicas": np.nan}, "layout not published"),
    ({"precision": "fp6"}, "precision 'fp6' is not modelled yet"),
    ({"model": "llama-2-13b"}, "prompt or output length not stated"),
])
def test_rows_that_cannot_be_predicted_are_left_out_with_the_reason(over, why):
    df = pd.DataFrame([_rows(**over), _rows(id="x-tpot", metric="tpot_s", value=0.12, unit="s", value_si=0.12, **over)])
    pts, skipped = speed.points(df)
    assert not pts and skipped and all(why in s.why for s in skipped)


def test_an_sram_machine_without_a_published_layout_gets_the_fewest_chips_and_says_so():
    df = pd.DataFrame([_rows(id="g", hardware="groq-lpu-v1", scenario="api", concurrency=5.0, input_tokens=550.0,
                             output_tokens=150.0, metric="output_tok_s_per_user", value=185.0, value_si=185.0,
                             precision="unknown", tensor=np.nan, pipeline=np.nan, replicas=np.nan, chips=np.nan)])
    pts, _ = speed.points(df)
    (p,) = pts
    assert "layout assumed" in p.key and "precision assumed" in p.key and p.side == "sram"
    n = catalog.load_device("groq-lpu-v1")
    assert p.profile.deployment.layout.chips == speed.sram_layout(catalog.load_model("llama-2-70b"), n,
                                                                   p.profile.deployment.precision, 5, 700).chips


def test_the_ratio_of_two_forecasts_adds_their_log_variances():
    a = speed.Interval("m", 100.0, 100 * math.exp(-1.96 * 0.3), 100 * math.exp(1.96 * 0.3))
    b = speed.Interval("m", 10.0, 10 * math.exp(-1.96 * 0.4), 10 * math.exp(1.96 * 0.4))
    fa = speed.Forecast(None, {"m": a}, "sram", True, {})
    fb = speed.Forecast(None, {"m": b}, "hbm", True, {})
    r = speed.ratio_interval(fa, fb, "m")
    assert r.value == pytest.approx(10.0)
    assert r.high == pytest.approx(10 * math.exp(1.96 * 0.5)) and r.low == pytest.approx(10 * math.exp(-1.96 * 0.5))


@pytest.mark.slow
def test_predict_answers_with_intervals_and_marks_an_uncalibrated_device(capsys):
    assert cli.main(["predict", "--model", "llama-2-70b", "--device", "nvidia-h100-sxm", "--tensor", "2", "--pipeline",
                     "1", "--replicas", "4", "--precision", "fp8", "--concurrency", "64", "--prompt", "512", "--output",
                     "128", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) >= {"ttft_s", "tpot_s", "per_user_tok_s", "aggregate_tok_s", "tpot_s_low", "tpot_s_high"}
    assert out["tpot_s_low"] < out["tpot_s"] < out["tpot_s_high"] and out["calibrated"]
    assert out["per_user_tok_s"] == pytest.approx(out["aggregate_tok_s"] / 64)
    # by hand, from the same calibration: the prediction is perf.predict at the side's knobs
    cal, _devices, _ = speed.calibrate()
    from lpulab import calibration
    dep = perf.Deployment(catalog.load_device("nvidia-h100-sxm"), Layout(4, 2, 1), "fp8")
    p = perf.predict(catalog.load_model("llama-2-70b"), dep, 64, 512, 128, calibration.knobs_for("hbm", cal.values))
    assert out["tpot_s"] == pytest.approx(float(p.tpot_s))
    # a device no measurement covers: predicted, and said to be uncalibrated
    assert cli.main(["predict", "--model", "llama-2-7b", "--device", "nvidia-rtx-3090", "--precision", "fp16",
                     "--concurrency", "max", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert not out["calibrated"] and any("uncalibrated" in n for n in out["notes"]) and out["concurrency"] >= 1
    assert cli.main(["predict", "--model", "llama-2-70b", "--device", "nvidia-h100-sxm", "--concurrency", "lots"]) == 2


@pytest.mark.slow
def test_predict_takes_expert_parallelism_and_split_precisions(capsys):
    assert cli.main(["predict", "--model", "deepseek-v3", "--device", "nvidia-b200", "--expert", "8", "--precision",
                     "fp8", "--concurrency", "64", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["layout"] == {"replicas": 1, "tensor": 1, "pipeline": 1, "expert": 8, "chips": 8} and out["fits"]
    assert any("absorbed" in n for n in out["notes"])                    # the model's approximations are said
    cal, _, _ = speed.calibrate()
    from lpulab import calibration
    dep = perf.Deployment(catalog.load_device("nvidia-b200"), Layout(1, 1, 1, 8), "fp8")
    p = perf.predict(catalog.load_model("deepseek-v3"), dep, 64, 512, 128, calibration.knobs_for("hbm", cal.values))
    assert out["tpot_s"] == pytest.approx(float(p.tpot_s))
    assert cli.main(["predict", "--model", "gpt-oss-120b", "--device", "nvidia-h100-sxm", "--tensor", "1",
                     "--precision", "mxfp4/fp8/fp8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["precision"] == "w:mxfp4 a:fp8 kv:fp8"
    assert cli.main(["predict", "--model", "gpt-oss-120b", "--device", "nvidia-h100-sxm", "--precision", "nvfp4"]) == 2
    assert "has no nvfp4 peak" in capsys.readouterr().err
