"""data/measurements/papers.csv: measured speeds at low concurrency (1-64 requests in flight)
with their layout. Checks the loader accepts it, that every row names its source and layout,
that rows agree with the other columns of the same source row (throughput against per-token
latency and first-token time), that no decode speed beats the weight-streaming bound of the
catalog's memory bandwidth, and a few values re-read at their sources."""

import math
import re

import numpy as np
import pandas as pd
import pytest

from lpulab import catalog

SCENARIOS = {"paper", "static-batch", "fixed-concurrency", "vendor-claim", "api", "Offline", "Server", "Interactive"}
#: model ids the table may use: the catalog's, and the Llama 3.1/3.3 ids the catalog work is adding
MODELS = set(catalog.model_ids()) | {"llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b", "llama-3.1-405b"}
#: hardware ids outside the catalog that the table may use (the catalog work is adding amd-mi300x)
OTHER_HARDWARE = {"amd-mi300x", "nvidia-h100 (SXM or PCIe, not stated)"}


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return catalog.load_measurements("papers")


def _num(note: str, pattern: str) -> float:
    m = re.search(pattern, note)
    assert m, f"pattern {pattern!r} not in note: {note[:120]}"
    return float(m.group(1))


def test_the_loader_accepts_the_table_and_ids_are_unique_across_tables(rows):
    assert len(rows) >= 60
    assert rows.id.is_unique
    for name in catalog.measurement_names():
        if name == "papers":
            continue
        other = set(catalog.load_measurements(name).id)
        assert not other & set(rows.id), (name, sorted(other & set(rows.id))[:5])


def test_every_row_names_its_source_model_device_and_scenario(rows):
    assert rows.source_url.str.match(r"^https://").all()
    assert (rows.source_title.str.len() > 20).all()
    assert (rows.note.str.len() > 80).all()
    assert rows.date.str.fullmatch(r"20(2[3-6])(-\d{2}(-\d{2})?)?").all(), set(rows.date)
    assert set(rows.scenario) <= SCENARIOS, set(rows.scenario) - SCENARIOS
    assert set(rows.model) <= MODELS, set(rows.model) - MODELS
    assert set(rows.hardware) <= set(catalog.device_ids()) | OTHER_HARDWARE
    # several independent sources, devices and models, not one table copied
    host = rows.source_url.str.extract(r"https://([^/]+/[^/]+)")[0]
    assert host.nunique() >= 6
    assert {"nvidia-a100-sxm-80gb", "nvidia-h100-sxm", "nvidia-h200", "amd-mi300x"} <= set(rows.hardware)


def test_measured_rows_state_their_concurrency_lengths_and_layout(rows):
    measured = rows[rows.scenario.isin(["paper", "static-batch", "fixed-concurrency"])]
    assert len(measured) >= 90
    assert measured.concurrency.notna().all()
    assert measured.concurrency.between(1, 64).all()
    assert (measured.concurrency == measured.concurrency.round()).all()
    assert measured.input_tokens.notna().all() and measured.output_tokens.notna().all()
    assert measured.chips.notna().all()
    # batch sizes and tensor widths both vary, so the table pins the knobs the brief asked for
    assert {1, 2, 4, 8, 16, 32, 64} <= set(measured.concurrency.astype(int))
    assert {1, 2, 4, 8} <= set(measured.tensor.dropna().astype(int))


def test_layouts_multiply_to_the_chip_count(rows):
    lay = rows.dropna(subset=["tensor", "pipeline", "replicas"])
    assert len(lay) >= 90
    expert = lay.expert.fillna(1)
    assert (lay.tensor * lay.pipeline * lay.replicas * expert == lay.chips).all()
    spec = rows.speculative.dropna()
    assert spec.str.fullmatch(r"none|unknown|medusa|eagle3|mtp|draft:[a-z0-9.\-]+").all(), set(spec)


def test_no_decode_speed_beats_the_weight_streaming_bound(rows):
    """At any batch a decode step reads every weight once, so one user's speed is at most
    (chips x HBM bandwidth) / weight bytes. A row above that bound, or below 5% of it, has a
    wrong unit, layout or precision."""
    devices, models = set(catalog.device_ids()), set(catalog.model_ids())
    checked = 0
    for r in rows.itertuples():
        if r.hardware not in devices or r.model not in models or r.precision not in catalog.PRECISION_BYTES:
            continue
        if r.metric == "tpot_s":
            speed = 1.0 / r.value_si
        elif r.metric == "output_tok_s_per_user":
            speed = r.value_si
        else:
            continue
        device, model = catalog.load_device(r.hardware), catalog.load_model(r.model)
        chips = r.tensor if not math.isnan(r.tensor) else r.chips
        bound = chips * device.bandwidth() / (model.published_parameters.si * catalog.PRECISION_BYTES[r.precision])
        assert 0.05 * bound < speed < bound, (r.id, speed, bound)
        checked += 1
    assert checked >= 10


def test_lmdeploy_throughput_agrees_with_its_per_token_latency(rows):
    """The static benchmark's throughput (all requests) and median per-token latency are
    separate columns of one run: concurrency / TPOT must come within 25% of the throughput
    (the median excludes the first token and the table rounds token latencies to 1 ms)."""
    lm = rows[rows.id.str.startswith("lmdeploy-")].copy()
    lm["run"] = lm.id.str.rsplit("-", n=1).str[0].str.replace("-output_tok_s_aggregate", "", regex=False)
    tpot = lm[lm.metric == "tpot_s"].set_index("run")
    agg = lm[lm.metric == "output_tok_s_aggregate"].set_index(lm[lm.metric == "output_tok_s_aggregate"].id.str.replace("-output_tok_s_aggregate", "", regex=False))
    both = tpot.index.intersection(agg.index)
    assert len(both) >= 12
    estimate = tpot.loc[both, "concurrency"] / tpot.loc[both, "value_si"]
    assert np.allclose(estimate, agg.loc[both, "value_si"], rtol=0.25)


def test_nim_throughput_is_concurrency_over_request_time(rows):
    """NIM's table gives mean TTFT, mean ITL and total output throughput of one run; with
    fixed lengths a request lasts TTFT + (output - 1) x ITL, so throughput = concurrency x
    output / that time, to within the table's rounding and the spread of request times."""
    nim = rows[rows.id.str.startswith("nim-")]
    runs = nim.id.str.rsplit("-", n=1).str[0].str.replace("-output_tok_s", "", regex=False).unique()
    assert len(runs) >= 5
    for run in runs:
        get = lambda m: nim[nim.id.str.startswith(run + "-") & (nim.metric == m)].iloc[0]  # noqa: E731, B023 (used within this iteration)
        ttft, itl, thr = get("ttft_s"), get("tpot_s"), get("output_tok_s_aggregate")
        expected = thr.concurrency * thr.output_tokens / (ttft.value_si + (thr.output_tokens - 1) * itl.value_si)
        assert expected == pytest.approx(thr.value_si, rel=0.02), run


def test_converted_rows_reproduce_the_numbers_in_their_notes(rows):
    """Argonne rows: per-user speed = output tokens / the batch latency printed in the note.
    Oracle rows: output throughput x batch latency = batch x 128 tokens."""
    arg = rows[rows.id.str.startswith("llminferencebench-")]
    assert len(arg) >= 30
    for r in arg.itertuples():
        latency = _num(r.note, r"Latency ([0-9.]+) s")
        assert r.value == pytest.approx(r.output_tokens / latency, rel=1e-3), r.id
    oci = rows[rows.id.str.startswith("oci-")]
    assert len(oci) == 7
    for r in oci.itertuples():
        latency = _num(r.note, r"'Average latency in seconds' = ([0-9.]+)")
        assert r.value * latency == pytest.approx(r.concurrency * 128, rel=0.02), r.id


def test_per_user_speed_falls_as_the_batch_grows(rows):
    """Within one source, device, model and layout, more requests in flight never make each
    user faster (a sign the rows are not shuffled between configurations)."""
    arg = rows[rows.id.str.startswith("llminferencebench-")]
    groups = arg.groupby(["hardware", "model", "tensor"])
    assert groups.ngroups >= 8
    for key, g in groups:
        g = g.sort_values("concurrency")
        assert (np.diff(g.value.to_numpy()) < 0).all(), key


@pytest.mark.parametrize("row_id, value", [
    # re-read at the sources when the rows were written
    ("lmdeploy-2023-12-llama-2-70b-a100x4-tp4-b1-in128-out2048-tpot_s", 0.031),
    ("lmdeploy-2023-12-llama-2-70b-a100x4-tp4-b64-in128-out2048-output_tok_s_aggregate", 1391.8),
    ("trtllm-v0.5-llama-2-70b-h100x4-tp4-b1-in2048-ttft_s", 0.109),
    ("nim-1.8.0-llama-3.3-70b-h100x2-tp2-c1-in5000-out500-tpot_s", 0.01858),
    ("oci-2024-10-10-llama-3.1-405b-mi300x8-b64-output_tok_s_aggregate", 1184),
    ("nvidia-blog-2024-medusa-llama-3.1-405b-h200x8-tok", 108),
    ("llminferencebench-2024-llama-2-70b-h100x4-tp4-b1-io256-output_tok_s_per_user", 53.97),
])
def test_pinned_values(rows, row_id, value):
    r = rows[rows.id == row_id]
    assert len(r) == 1, row_id
    assert r.value.iloc[0] == pytest.approx(value)
