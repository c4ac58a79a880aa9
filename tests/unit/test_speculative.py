"""lpulab.speculative and lpulab.disaggregated: the expected accepted length against a
seeded simulation, a verification step and a round timed by hand, speed-ups that come out
of the serving model (not assumed), the disaggregated TTFT by hand, and clear refusals."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from lpulab import catalog, cli, disaggregated, perf, speculative, speed, workload
from lpulab.parallel import Layout

from ._tiny import tiny_device, tiny_model

M = tiny_model(L=3, h=8, H=2, G=1, dh=4, F=16, V=32, ctx=4096)
DRAFT = tiny_model(L=1, h=4, H=2, G=1, dh=2, F=8, V=32, ctx=4096, id="tiny-draft")
P16 = workload.Precision("fp16", "fp16", "fp16")


def device(capacity=1e9, flops=None):
    """A tiny SRAM chip (1 TB/s) with an fp16 peak of 1 TFLOP/s, or effectively infinite."""
    from lpulab.catalog import Value

    d = tiny_device(capacity)
    peak = 1e30 if flops == "inf" else 1e12
    mem = d.memory[d.main_tier]
    return replace(d, compute={"fp16": Value(peak, peak, "FLOP/s", mem.bandwidth.source, "vendor-peak", "dense")})


# --------------------------------------------------------------------------- the formula


@pytest.mark.parametrize("alpha", [0.3, 0.7, 0.9])
@pytest.mark.parametrize("k", [1, 4, 8])
def test_expected_tokens_per_step_matches_a_seeded_simulation(k, alpha):
    """Each of k drafted tokens is accepted with probability alpha until the first
    rejection; the step yields the accepted ones plus one token of the target's."""
    rng = np.random.default_rng(20241029 + k)
    n = 200_000
    ok = rng.random((n, k)) < alpha
    tokens = np.cumprod(ok, axis=1).sum(axis=1) + 1
    se = tokens.std(ddof=1) / np.sqrt(n)
    assert abs(tokens.mean() - speculative.expected_tokens(k, alpha)) < 4 * se


def test_expected_tokens_at_the_bounds():
    assert speculative.expected_tokens(4, 0.0) == 1.0          # nothing accepted: one token per step
    assert speculative.expected_tokens(4, 1.0) == 5.0          # everything accepted: k + 1
    assert speculative.expected_tokens(0, 0.7) == pytest.approx(1.0)
    np.testing.assert_allclose(speculative.expected_tokens(np.array([1, 2]), 0.5), [1.5, 1.75])
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(speculative.SpeculationError, match=r"\[0, 1\]"):
            speculative.expected_tokens(4, bad)


# --------------------------------------------------------------------------- steps by hand


def _hand_verify_bytes(model, B, P, S, p):
    """A verification step's bytes: the workload's counts of S new tokens per stream, plus the
    LM head's S - 1 more rows per stream (logits at every drafted position)."""
    tot = workload.totals(model, "decode", B, P, S, p)
    extra_rows = B * S - B
    h, V = model.hidden_size, model.vocab_size
    return float(tot.bytes) + extra_rows * (h + V) * p.a, float(tot.flops) + extra_rows * 2 * h * V


def test_a_verification_step_by_hand():
    for kind in ("memory", "compute"):
        d = device(flops="inf") if kind == "memory" else device()
        dep = perf.Deployment(d, Layout(), P16, attention="materialised")
        B, P, S = 3, 100, 5
        by, fl = _hand_verify_bytes(M, B, P, S, P16)
        t = float(perf.step_times(perf.step_profile(M, dep, B, P, 0.0, 1, tokens=S), perf.Knobs()).stage.sum())
        if kind == "memory":
            assert t == pytest.approx(by / d.bandwidth(), rel=1e-12)
        else:   # every operator on its own roof: at least the totals' flops over the peak
            assert t >= fl / d.peak("fp16") * (1 - 1e-12)
    # one token per stream is today's decode step, exactly
    dep = perf.Deployment(device(), Layout(), P16)
    a = perf.step_times(perf.step_profile(M, dep, 7, 300, 0.5, 64), perf.Knobs()).stage
    b = perf.step_times(perf.step_profile(M, dep, 7, 300, 0.5, 64, tokens=1), perf.Knobs()).stage
    assert np.array_equal(a, b)
    with pytest.raises(perf.PerfError, match="tokens per stream"):
        perf.step_profile(M, dep, 1, 10, tokens=0)


def test_a_speculative_round_by_hand():
    """Decode-only steps on a memory-bound chip: TPOT = (k t_draft + t_verify) / E, the draft
    on the target's chip (it fits), each step's bytes over the bandwidth."""
    d = device(flops="inf")
    dep = perf.Deployment(d, Layout(), P16, attention="materialised")
    k, alpha, prompt, output = 3, 0.6, 64, 32
    spec = speculative.Speculation(k, alpha, DRAFT)
    prof = speculative.speculative_profile(M, dep, spec, 1, prompt, output, fused_prefill=False)
    pred = prof.evaluate(perf.Knobs())
    ctx = prompt + output // 2
    E = (1 - alpha ** (k + 1)) / (1 - alpha)
    W = d.bandwidth()
    t_verify = _hand_verify_bytes(M, 1, ctx, k + 1, P16)[0] / W
    t_draft = float(workload.totals(DRAFT, "decode", 1, ctx, None, P16).bytes) / W
    assert pred.extra["draft_colocated"] and pred.extra["draft_chips"] == 0 and pred.chips == 1
    assert float(pred.tpot_s) == pytest.approx((k * t_draft + t_verify) / E, rel=1e-12)
    assert float(pred.aggregate_tok_s) == pytest.approx(E / (k * t_draft + t_verify), rel=1e-12)
    plain = float(perf.serving_profile(M, dep, 1, prompt, output, fused_prefill=False).evaluate(perf.Knobs()).tpot_s)
    assert plain == pytest.approx(float(workload.totals(M, "decode", 1, ctx, None, P16).bytes) / W, rel=1e-12)
    assert float(pred.extra["speedup_per_user"]) == pytest.approx(plain / float(pred.tpot_s), rel=1e-12)


def test_acceptance_zero_costs_and_acceptance_one_is_bounded_by_the_draft_length():
    big = tiny_model(L=8, h=64, H=4, G=2, dh=16, F=256, V=32, ctx=4096, id="tiny-target")   # 64x the draft's work
    dep = perf.Deployment(device(flops="inf"), Layout(), P16)     # memory-bound, as decode at one stream
    up = {a: float(speculative.predict(big, dep, speculative.Speculation(4, a, DRAFT), 1, 64, 32).extra[
        "speedup_per_user"]) for a in (0.0, 0.7, 1.0)}
    assert up[0.0] < 1.0 < up[1.0] <= 5.0
    assert up[0.0] < up[0.7] < up[1.0]


def test_a_draft_that_does_not_fit_gets_chips_of_its_own_and_they_are_counted():
    need = workload.weight_bytes(M, P16) + workload.kv_bytes(M, 1, 96, "fp16")
    d = device(capacity=need * 1.05)        # the target fits one chip; the draft does not fit beside it
    dep = perf.Deployment(d, Layout(2, 1, 1), P16)
    pred = speculative.predict(M, dep, speculative.Speculation(2, 0.8, DRAFT), 2, 64, 32)
    assert not pred.extra["draft_colocated"]
    assert pred.extra["draft_chips"] == 2 * Layout(**{k: v for k, v in pred.extra["draft_layout"].items()
                                                      if k != "chips"}).chips
    assert pred.chips == dep.chips + pred.extra["draft_chips"]


def test_speculation_is_refused_clearly():
    with pytest.raises(speculative.SpeculationError, match="k must be a whole number >= 1"):
        speculative.Speculation(0, 0.5, DRAFT)
    with pytest.raises(speculative.SpeculationError, match=r"probability in \[0, 1\]"):
        speculative.Speculation(2, 1.5, DRAFT)
    with pytest.raises(speculative.SpeculationError, match="one of the two"):
        speculative.Speculation(2)
    with pytest.raises(speculative.SpeculationError, match=r"\[1, k \+ 1\]"):
        speculative.Speculation(2, mean_accepted=3.5)
    with pytest.raises(speculative.SpeculationError, match="no multi-token-prediction heads"):
        speculative.Speculation(1, 0.8).check(M)
    with pytest.raises(speculative.SpeculationError, match="vocabulary of 10 tokens"):
        speculative.Speculation(1, 0.8, tiny_model(V=10, id="other")).check(M)


# --------------------------------------------------------------------------- the catalog's machines


@pytest.fixture(scope="module")
def llama():
    return catalog.load_model("llama-3.1-70b"), catalog.load_model("llama-3.1-8b")


def test_batch_effects_come_out_of_the_model(llama):
    """A GPU's gain shrinks from 1 to 64 streams as verification's extra tokens meet the
    compute roof; an SRAM machine at one stream gains, and more than the GPU at 64. Nothing
    here is assumed about batch size: the same rounds, timed at each concurrency."""
    M70, M8 = llama
    spec = speculative.Speculation(4, 0.7, M8)
    dg = perf.Deployment(catalog.load_device("nvidia-h100-sxm"), Layout(1, 8, 1), "fp8")
    v = {c: speculative.predict(M70, dg, spec, c, 550, 150) for c in (1, 64)}
    up = {c: float(v[c].extra["speedup_per_user"]) for c in v}
    assert up[1] > 1.0 > up[64]
    # the verification step of 64 streams x 5 tokens is compute-bound, one stream's is not
    assert str(np.asarray(v[64].bound).item()) == "compute" != str(np.asarray(v[1].bound).item())
    # DeepSeek-V3's own MTP head on the LPU at one stream: one layer drafting for 61
    m = catalog.load_model("deepseek-v3")
    lpu = catalog.load_device("groq-lpu-v1")
    p8 = workload.Precision.of("int8")
    dl = perf.Deployment(lpu, speed.sram_layout(m, lpu, p8, 1, 700), p8)
    assert float(speculative.predict(m, dl, speculative.Speculation(1, 0.875), 1, 550, 150).extra[
        "speedup_per_user"]) > 1.0


def test_mtp_drafts_for_deepseek_v3_and_gains_less_than_its_accepted_length():
    m = catalog.load_model("deepseek-v3")
    dep = perf.Deployment(catalog.load_device("nvidia-b200"), Layout(1, 8, 1), "fp8")
    k, a = speculative.default("mtp")
    assert (k, a) == (1, pytest.approx(0.875))
    pred = speculative.predict(m, dep, speculative.Speculation(k, a), 1, 550, 150)
    assert 1.0 < float(pred.extra["speedup_per_user"]) < 1 + a
    assert pred.extra["draft_model"] == "deepseek-v3 (MTP)" and pred.extra["draft_colocated"]
    assert not any("neither placed nor timed" in n for n in pred.notes)
    assert any("eh_proj" in n for n in pred.notes)


def test_speculation_off_is_todays_prediction(llama):
    M70, _ = llama
    dep = perf.Deployment(catalog.load_device("nvidia-h100-sxm"), Layout(1, 8, 1), "fp8")
    c = np.array([1.0, 8.0, 64.0])
    a = perf.predict(M70, dep, c, 550, 150)
    b = perf.serving_profile(M70, dep, c, 550, 150, fused_prefill=True).evaluate()
    for m in ("ttft_s", "tpot_s", "aggregate_tok_s"):
        assert np.array_equal(getattr(a, m), getattr(b, m))
    assert "extra" not in json.dumps(a.to_dict()) and "speculative" not in a.to_dict()


# --------------------------------------------------------------------------- disaggregated


def test_disaggregated_ttft_is_prefill_plus_transfer_by_hand():
    dd = perf.Deployment(device(), Layout(1, 2, 1), P16, hop_latency=1e-6)   # decode: 2 chips
    dp = perf.Deployment(device(), Layout(1, 1, 1), P16)       # prefill: 1 chip
    link = disaggregated.KVLink(bandwidth=10e9, latency=5e-6)
    prompt, output = 200, 50
    pred = disaggregated.predict(M, dd, dp, np.array([1.0, 4.0]), prompt, output, link=link)
    kv = M.layers * 2 * M.kv_heads * M.head_dim * prompt * 2.0       # fp16 keys and values of every layer
    assert pred.extra["kv_bytes"] == kv
    assert pred.extra["kv_paths"] == 1
    transfer = 5e-6 + kv / 10e9
    alone = float(perf.predict(M, dp, 1, prompt, output).ttft_s)      # the prompt alone on an idle prefill chip
    np.testing.assert_allclose(pred.ttft_s, alone + transfer, rtol=1e-12)
    assert pred.chips == 3 and pred.extra["prefill_chips"] == 1 and pred.extra["decode_chips"] == 2
    # decode-only steps: TPOT is the decode deployment's without prompts fused in
    only = perf.serving_profile(M, dd, np.array([1.0, 4.0]), prompt, output, fused_prefill=False).evaluate()
    np.testing.assert_array_equal(pred.tpot_s, only.tpot_s)
    fused = perf.predict(M, dd, 4, prompt, output)
    assert float(pred.tpot_s[1]) < float(fused.tpot_s)
    with pytest.raises(disaggregated.DisaggregationError, match="bandwidth"):
        disaggregated.KVLink(0.0, 1e-6)


def test_the_sourced_assumptions_load_with_ranges_and_the_groq_reference():
    a = speculative.load_assumptions()
    for m in ("draft", "mtp"):
        v = a.accept[m]
        assert v.is_range and v.low_si <= v.si <= v.high_si and v.source.url.startswith("https://")
    assert a.link["bandwidth"].si == pytest.approx(50e9) and a.link["latency"].is_range
    ref = speculative.reference_speedups(a)["groq_llama_3_1_70b"]
    assert ref["hardware"] == "groq-lpu-v1" and ref["ratio"] == pytest.approx(1665 / 250)


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("args, says", [
    (["--model", "llama-3.1-70b", "--mtp"], "--mtp: llama-3.1-70b has no multi-token-prediction heads"),
    (["--model", "llama-3.1-70b", "--draft", "llama-2-7b"], "--draft llama-2-7b: draft model llama-2-7b has a vocab"),
    (["--model", "llama-3.1-70b", "--draft", "no-such-model"], "--draft no-such-model: unknown model"),
    (["--model", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--spec-accept", "1.5"], "--spec-accept 1.5"),
    (["--model", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--spec-k", "0"], "--spec-k 0"),
    (["--model", "llama-3.1-70b", "--spec-k", "3"], "need a drafter"),
    (["--model", "llama-3.1-70b", "--draft-tensor", "2"], "need a drafter"),
    (["--model", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--draft-tensor", "0"], "--draft-tensor 0"),
    (["--model", "llama-3.1-70b", "--draft", "llama-3.1-8b", "--mtp"], "not both"),
    (["--model", "llama-3.1-70b", "--prefill-tensor", "8"], "need --prefill-on"),
    (["--model", "llama-3.1-70b", "--prefill-on", "no-such-chip"], "--prefill-on no-such-chip: unknown device"),
    (["--model", "llama-3.1-70b", "--kv-link-bandwidth", "10"], "need --prefill-on"),
    (["--model", "llama-3.1-70b", "--prefill-on", "nvidia-h100-sxm", "--kv-link-bandwidth", "0"],
     "--kv-link-bandwidth"),
])
def test_predict_refuses_bad_speculative_and_disaggregated_options(capsys, args, says):
    assert cli.main(["predict", "--device", "nvidia-h100-sxm", "--tensor", "8", *args]) == 2
    assert says in capsys.readouterr().err


def test_predict_json_carries_the_speculative_and_disaggregated_fields(capsys):
    assert cli.main(["predict", "--model", "deepseek-v3", "--device", "nvidia-b200", "--tensor", "8", "--mtp",
                     "--prefill-on", "nvidia-h100-sxm", "--prefill-tensor", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["speculative"] == "mtp" and out["spec_k"] == 1 and out["spec_tokens_per_step"] == pytest.approx(1.875)
    assert out["disaggregated"] and out["prefill_chips"] == 8 and out["decode_chips"] == 8 and out["chips"] == 16
    assert out["ttft_s"] == pytest.approx(out["prefill_s"] + out["kv_transfer_s"], rel=1e-9)
    assert out["ttft_s_low"] < out["ttft_s"] < out["ttft_s_high"]


def test_a_broken_assumptions_file_is_refused_naming_the_field(tmp_path):
    text = (catalog.paths.DATA / "serving.toml").read_text()
    bad = tmp_path / "serving.toml"
    bad.write_text(text.replace("value = 0.875, unit = \"count\", low = 0.85, high = 0.90",
                                "value = 1.2, unit = \"count\", low = 1.1, high = 1.3"))
    with pytest.raises(catalog.CatalogError, match=r"speculative.mtp.accept: 1.2 is outside \[0.0, 1.0\]"):
        speculative.load_assumptions(bad)
    ok, errors = catalog.validate_all()
    assert "data/serving.toml" in ok and not errors


def test_a_measured_mean_accepted_length_stands_for_alpha():
    dep = perf.Deployment(device(flops="inf"), Layout(), P16)
    E = speculative.expected_tokens(3, 0.6)
    a = speculative.predict(M, dep, speculative.Speculation(3, 0.6, DRAFT), 4, 64, 32)
    b = speculative.predict(M, dep, speculative.Speculation(3, mean_accepted=E, draft=DRAFT), 4, 64, 32)
    assert float(b.tpot_s) == pytest.approx(float(a.tpot_s), rel=1e-12)
    assert b.extra["spec_alpha"] is None and b.extra["spec_tokens_per_step"] == pytest.approx(E)


def test_disaggregated_decode_can_be_speculative():
    dd = perf.Deployment(device(flops="inf"), Layout(), P16)
    dp = perf.Deployment(device(), Layout(), P16)
    link = disaggregated.KVLink(bandwidth=10e9, latency=0.0)
    spec = speculative.Speculation(2, 0.8, DRAFT)
    both = disaggregated.predict(M, dd, dp, 2, 64, 32, link=link, speculation=spec)
    alone = speculative.speculative_profile(M, dd, spec, 2, 64, 32, fused_prefill=False).evaluate()
    assert float(both.tpot_s) == pytest.approx(float(alone.tpot_s), rel=1e-12)
    assert both.extra["speculative"] == "draft" and both.extra["disaggregated"]


def test_a_draft_layout_given_puts_the_draft_on_chips_of_its_own():
    dep = perf.Deployment(device(), Layout(), P16, hop_latency=1e-6)
    pred = speculative.predict(M, dep, speculative.Speculation(2, 0.8, DRAFT, draft_layout=Layout(1, 2, 1)), 1, 64, 32)
    assert not pred.extra["draft_colocated"] and pred.extra["draft_chips"] == 2 and pred.chips == 3
    with pytest.raises(speculative.SpeculationError, match="replicas must be 1"):
        speculative.Speculation(2, 0.8, DRAFT, draft_layout=Layout(2, 1, 1))
