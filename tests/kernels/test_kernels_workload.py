"""What the kernels execute equals what lpulab.workload counts, op by op, exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lpulab import catalog, workload
from lpulab.kernels import Decoder, DecoderConfig, Numerics
from lpulab.kernels.compare import counts_vs_workload


def _run(cfg, precision, kv, batch, prompt, steps, seed=0):
    """Prefill of ``prompt`` tokens, then ``steps`` decode steps; yields (phase, B, P, S, counts)."""
    m = Decoder.random(cfg, seed=seed, precision=precision, numerics=Numerics(kv_dtype=kv))
    rng = np.random.default_rng(seed)
    cache = m.new_cache(batch, prompt + steps + 1)
    step = m.forward(rng.integers(0, cfg.vocab, (batch, prompt)), cache)
    yield "prefill", batch, 0, prompt, step.counts, m.workload_precision
    for i in range(steps):
        step = m.decode(rng.integers(0, cfg.vocab, batch), cache)
        yield "decode", batch, prompt + i, None, step.counts, m.workload_precision


SHAPES = {
    "gqa-untied": DecoderConfig(n_layers=2, hidden=32, n_heads=4, n_kv_heads=2, head_dim=8, ffn=80, vocab=64,
                                tied_embeddings=False),
    "mha-tied": DecoderConfig(n_layers=1, hidden=16, n_heads=2, n_kv_heads=2, head_dim=8, ffn=40, vocab=50),
    "mqa-tied": DecoderConfig(n_layers=3, hidden=24, n_heads=6, n_kv_heads=1, head_dim=4, ffn=36, vocab=30),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("precision,kv", [("fp32", "float32"), ("int8", "float32"), ("int8", "float16"),
                                          ("fp8", "float32"), ("int4", "float16")])
@pytest.mark.parametrize("batch,prompt", [(1, 1), (1, 5), (3, 4)])
def test_counts_equal_the_workload_op_by_op(shape, precision, kv, batch, prompt):
    cfg = SHAPES[shape]
    model = cfg.to_model()
    for phase, B, P, S, counts, prec in _run(cfg, precision, kv, batch, prompt, steps=2):
        df = counts_vs_workload(counts, model, phase, B, P, S, prec)
        bad = df[df["diff"] != 0]
        assert df.attrs["equal"], (phase, B, P, S, bad.to_string())
        # every op on both sides, in the same order
        table = workload.op_table(model, phase, B, P, S, prec)
        assert [c.name for c in counts] == list(table.op)


def test_chunked_prefill_with_a_filled_cache_counts_like_the_workload():
    cfg = SHAPES["gqa-untied"]
    m = Decoder.random(cfg, seed=1, precision="int8")
    cache = m.new_cache(2, 16)
    m.forward(np.ones((2, 3), np.int64), cache)
    step = m.forward(np.ones((2, 4), np.int64), cache)  # S=4 new tokens after P=3
    assert counts_vs_workload(step.counts, cfg.to_model(), "prefill", 2, 3, 4, m.workload_precision).attrs["equal"]


def test_smollm2_shape_from_the_catalog_counts_like_the_workload():
    # The real model's shape (30 layers, GQA 9/3, tied 49152 x 576), from data/models; one
    # layer is enough to run quickly: every layer is alike and the head is whole.
    sm = catalog.load_model("smollm2-135m")
    cfg = DecoderConfig.from_model(sm)
    assert cfg.n_params == workload.parameter_count(sm) == sm.published_parameters.si
    one = DecoderConfig(**{**cfg.__dict__, "n_layers": 1})
    for phase, B, P, S, counts, prec in _run(one, "int8", "float32", 1, 3, steps=1):
        assert counts_vs_workload(counts, one.to_model(), phase, B, P, S, prec).attrs["equal"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(g=st.integers(1, 3), r=st.integers(1, 3), dh=st.sampled_from([2, 4, 6]), h=st.integers(4, 24),
       f=st.integers(2, 30), v=st.integers(2, 40), layers=st.integers(1, 2), tied=st.booleans(),
       precision=st.sampled_from(["fp32", "int8"]), kv=st.sampled_from(["float32", "float16"]),
       batch=st.integers(1, 3), prompt=st.integers(1, 5))
def test_counts_equal_the_workload_for_any_shape(g, r, dh, h, f, v, layers, tied, precision, kv, batch, prompt):
    cfg = DecoderConfig(n_layers=layers, hidden=h, n_heads=g * r, n_kv_heads=g, head_dim=dh, ffn=f, vocab=v,
                        tied_embeddings=tied)
    for phase, B, P, S, counts, prec in _run(cfg, precision, kv, batch, prompt, steps=1):
        assert counts_vs_workload(counts, cfg.to_model(), phase, B, P, S, prec).attrs["equal"], (phase, cfg)


def test_a_difference_is_reported_op_by_op():
    cfg = SHAPES["mha-tied"]
    m = Decoder.random(cfg, seed=0)
    step, _ = m.prefill(np.array([[1, 2]]))
    counts = list(step.counts)
    i = next(j for j, c in enumerate(counts) if c.name == "layers.0.softmax")
    counts[i] = type(counts[i])(counts[i].name, counts[i].flops + 1, *[getattr(counts[i], k) for k in
                                                                      ("weight", "act_read", "act_write", "kv_read", "kv_write")])
    df = counts_vs_workload(counts, cfg.to_model(), "prefill", 1, 0, 2, m.workload_precision)
    assert not df.attrs["equal"]
    bad = df[df["diff"] != 0]
    assert list(zip(bad.op, bad.column, bad["diff"])) == [("layers.0.softmax", "flops", 1.0)]


def test_config_from_a_model_refuses_what_the_decoder_cannot_run():
    with pytest.raises(ValueError, match="mixtral-8x7b is not Llama-like"):
        DecoderConfig.from_model(catalog.load_model("mixtral-8x7b"))
    m = Decoder(SHAPES["mha-tied"], dict(Decoder.random(SHAPES["mha-tied"]).weights.items()))
    assert m.workload_precision == workload.Precision("fp32", "fp32", "fp32")
