"""The measured rows in data/measurements: ids, dates, sources, ids of models and devices,
layouts, and facts read from the sources (pinned values, MLPerf latency limits)."""

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from lpulab import catalog

TABLES = ("speed", "mlperf", "vendor")

MODELS = {"llama-2-7b", "llama-2-13b", "llama-2-70b", "mixtral-8x7b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b",
          "llama-3.1-405b", "deepseek-v3", "deepseek-r1", "gpt-oss-120b", "kimi-k2"}
HARDWARE = {"groq-lpu-v1", "groq-lpu-3", "nvidia-a100-sxm-80gb", "nvidia-h100-sxm", "nvidia-h100-pcie", "nvidia-h200",
            "nvidia-b200", "nvidia-rtx-3090", "amd-mi300x", "amd-mi325x", "nvidia-gb200", "cerebras-wse-3",
            "sambanova-sn40l", "unknown GPU (provider API)"}
SCENARIOS = {"Offline", "Server", "Interactive", "api", "vendor-claim", "paper"}
MLPERF_ROUND = {"40": "v4.0", "41": "v4.1", "50": "v5.0", "51": "v5.1"}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    frames = []
    for name in TABLES:
        df = catalog.load_measurements(name)
        df["table"] = name
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def _date(s: str) -> dt.date:
    parts = [int(p) for p in s.split("-")]
    return dt.date(parts[0], parts[1] if len(parts) > 1 else 1, parts[2] if len(parts) > 2 else 1)


def test_every_table_loads_and_ids_are_unique_across_tables(rows):
    assert set(rows.table) == set(TABLES)
    dup = rows.id[rows.id.duplicated()]
    assert dup.empty, f"ids used twice: {list(dup)}"


def test_dates_parse_and_span_several_years(rows):
    for r in rows.itertuples():
        assert re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", r.date), (r.id, r.date)
        d = _date(r.date)  # raises on 2024-02-30 and the like
        assert dt.date(2023, 1, 1) <= d <= dt.date(2026, 12, 31), (r.id, r.date)
    assert rows.date.str[:4].nunique() >= 3


def test_model_hardware_and_scenario_ids_are_known(rows):
    assert set(rows.model) <= MODELS, set(rows.model) - MODELS
    assert set(rows.hardware) <= HARDWARE, set(rows.hardware) - HARDWARE
    assert set(rows.scenario) <= SCENARIOS, set(rows.scenario) - SCENARIOS
    # the ids the catalog already has must be real files; the others are being added by the catalog work
    present = set(catalog.model_ids()) & set(rows.model)
    assert {"llama-2-70b", "llama-3.1-405b"} <= present


def test_every_row_names_its_source(rows):
    assert rows.source_url.str.match(r"^https://").all()
    assert (rows.source_title.str.len() > 10).all()
    assert (rows.note.fillna("").str.len() > 20).all()


def test_mlperf_rows_point_to_the_summary_file_of_their_round(rows):
    ml = rows[rows.id.str.startswith("mlperf")]
    assert len(ml) > 1000
    for r in ml.itertuples():
        rnd = MLPERF_ROUND[r.id[6:8]]
        assert r.source_url.startswith(f"https://github.com/mlcommons/inference_results_{rnd}/blob/"), r.id
        assert r.source_url.endswith("/performance/run_1/mlperf_log_summary.txt"), r.id
        assert "/closed/" in r.source_url, r.id
        assert r.confidence == "official", r.id
        assert r.scenario in {"Offline", "Server", "Interactive"}, r.id


def test_layouts_multiply_to_the_chip_count(rows):
    lay = rows.dropna(subset=["tensor", "pipeline", "replicas"])
    assert len(lay) > 1000
    for r in lay.itertuples():
        expert = 1 if np.isnan(r.expert) else r.expert
        assert r.tensor * r.pipeline * r.replicas * expert == r.chips, (r.id, r.tensor, r.pipeline, r.replicas, expert, r.chips)
    # several distinct layouts, not one copied everywhere
    shapes = {(int(r.tensor), int(r.pipeline), 0 if np.isnan(r.expert) else int(r.expert)) for r in lay.itertuples()}
    assert {(1, 1, 0), (2, 1, 0), (1, 2, 0), (4, 1, 0), (2, 2, 0), (8, 1, 0), (1, 1, 8)} <= shapes


def test_speculative_values_follow_the_vocabulary(rows):
    spec = rows.speculative.dropna()
    assert spec.str.fullmatch(r"none|unknown|eagle3|mtp|draft:[a-z0-9.\-]+").all(), set(spec)


def test_mlperf_latencies_respect_the_scenario_limits(rows):
    """LoadGen only marks a Server run VALID when p99 TTFT and TPOT meet the limits; the mean
    is below the p99, so every mean must be under the limit of its benchmark."""
    limits = {("llama-2-70b", "Server"): (2.0, 0.2), ("llama-2-70b", "Interactive"): (0.45, 0.04),
              ("llama-3.1-405b", "Server"): (6.0, 0.175)}
    ml = rows[rows.id.str.startswith("mlperf")]
    checked = 0
    for (model, scen), (ttft, tpot) in limits.items():
        sel = ml[(ml.model == model) & (ml.scenario == scen)]
        assert (sel[sel.metric == "ttft_s"].value_si < ttft).all(), (model, scen)
        assert (sel[sel.metric == "tpot_s"].value_si < tpot).all(), (model, scen)
        checked += len(sel)
    assert checked > 300


def test_mlperf_mean_output_length_is_tokens_over_samples(rows):
    ml = rows[rows.id.str.startswith("mlperf")]
    tok = ml[ml.metric == "output_tok_s_aggregate"].set_index(ml.source_url[ml.metric == "output_tok_s_aggregate"])
    smp = ml[ml.metric == "samples_per_s"].set_index(ml.source_url[ml.metric == "samples_per_s"])
    both = tok.index.intersection(smp.index)
    assert len(both) > 400
    ratio = tok.loc[both, "value"] / smp.loc[both, "value"]
    assert np.allclose(ratio, tok.loc[both, "output_tokens"], atol=0.06)


def test_rows_marked_as_duplicates_equal_their_sibling(rows):
    """A -99.9 result noted as 'Same numbers as the llama2-70b-99 result' has the -99 result's
    values in every metric."""
    ml = rows[rows.id.str.startswith("mlperf")].set_index("id")
    same = ml[ml.note.str.contains("Same numbers as the", regex=False)]
    assert len(same) > 100
    compared = 0
    for rid in same.index:
        result = rid.removesuffix("-output_tok_s_aggregate")
        for metric in ("output_tok_s_aggregate", "samples_per_s", "ttft_s", "tpot_s"):
            mine = f"{result}-{metric}"
            if mine in ml.index:
                assert ml.loc[mine.replace("-99.9-", "-99-"), "value"] == ml.loc[mine, "value"], mine
                compared += 1
    assert compared > 300


@pytest.mark.parametrize("row_id, value", [
    # re-read from the source files when the rows were written
    ("mlperf40-h100x8-llama2-70b-server-tpot_s", 0.1368),
    ("mlperf41-nvidia-b200-sxm-180gbx1-trt-llama2-70b-99-server-output_tok_s_aggregate", 10755.59),
    ("mlperf50-nvidia-b200-sxm-180gbx8-trt-llama2-70b-interactive-99-server-output_tok_s_aggregate", 59409.25),
    ("mlperf50-nvidia-b200-sxm-180gbx8-trt-llama2-70b-interactive-99-server-tpot_s", 0.036129344),
    ("mlperf51-nvidia-b200-sxm-180gbx8-trt-llama2-70b-99-offline-output_tok_s_aggregate", 101527),
    ("llmperf-2023-12-llama-2-70b-groq-tok", 185),
    ("sambanova-blog-2024-09-10-llama-3.1-405b-sambanova-tok", 129),
    ("trtllm-perf-v1.0-llama-3.3-70b-nvidia-h100-sxm-tp2-fp8-128-128", 6378),
])
def test_pinned_values(rows, row_id, value):
    r = rows[rows.id == row_id]
    assert len(r) == 1, row_id
    assert r.value.iloc[0] == pytest.approx(value, rel=1e-9)


def test_pinned_layouts(rows):
    """Layouts read from the submissions' configs: NVIDIA's v4.0 H100 ran 4 copies of 2-way
    tensor parallel, H200 8 single-GPU copies; v5.1 DeepSeek-R1 on B200 spreads experts 8 ways."""
    by = rows.set_index("id")
    h100 = by.loc["mlperf40-h100x8-llama2-70b-server-tpot_s"]
    assert (h100.tensor, h100.pipeline, h100.replicas) == (2, 1, 4)
    h200 = by.loc["mlperf40-h200x8-llama2-70b-server-tpot_s"]
    assert (h200.tensor, h200.pipeline, h200.replicas) == (1, 1, 8)
    ds = by.loc["mlperf51-nvidia-b200-sxm-180gbx8-trt-deepseek-r1-offline-output_tok_s_aggregate"]
    assert (ds.tensor, ds.expert, ds.replicas, ds.chips) == (1, 8, 1, 8)


def test_groq_llmperf_rows_carry_the_day_they_were_added(rows):
    groq = rows[rows.id.str.startswith("llmperf-2023-12-llama-2-70b-groq")]
    assert len(groq) == 2 and (groq.date == "2024-01-09").all()
    others = rows[rows.id.str.startswith("llmperf-") & ~rows.id.str.contains("groq")]
    assert (others.date == "2023-12-19").all()


def test_claims_are_not_marked_as_measurements(rows):
    claims = rows[rows.scenario == "vendor-claim"]
    assert len(claims) >= 5
    assert set(claims.confidence) <= {"media", "unverified"}
    official = rows[rows.confidence == "official"]
    assert set(official.scenario) <= {"Offline", "Server", "Interactive", "paper"}


def test_sram_machines_and_new_devices_are_covered(rows):
    have = set(rows.hardware)
    assert {"groq-lpu-v1", "cerebras-wse-3", "sambanova-sn40l", "nvidia-b200", "nvidia-gb200", "amd-mi300x",
            "amd-mi325x", "nvidia-h100-sxm", "nvidia-h200"} <= have
