"""The kernels' tensors are lpulab.architecture's: names, shapes, split axes, bytes and GGUF
names of what the numpy decoder holds, reads and shards agree with the tensor table that
workload and placement count (a tiny config and SmolLM2-135M's catalog config); models the
decoder does not run are refused by name; a chip's SRAM budget comes from the catalog."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from lpulab import architecture, catalog, placement, workload
from lpulab.kernels import Decoder, DecoderConfig, build_plan, chip_sram_bytes
from lpulab.kernels.gguf_model import gguf_names
from lpulab.kernels.model import LAYER_TENSORS
from lpulab.kernels.ops import weight_payload_bytes
from lpulab.kernels.sharded import DEFAULT_DEVICE, PlanError, plan_from_placement

TINY = DecoderConfig()  # 2 layers, h 64, 4 heads over 2 KV heads of 16, FFN 160, vocab 256, tied
INT8 = workload.Precision("int8", "fp32", "fp32")


def smollm2() -> tuple[catalog.Model, DecoderConfig]:
    m = catalog.load_model("smollm2-135m")
    return m, DecoderConfig.from_model(m)


def test_tiny_weight_shapes_by_hand():
    h, q, kv, f, v = 64, 4 * 16, 2 * 16, 160, 256
    layer = {"attn_norm": (h,), "q_proj": (q, h), "k_proj": (kv, h), "v_proj": (kv, h), "o_proj": (h, q),
             "ffn_norm": (h,), "gate_proj": (f, h), "up_proj": (f, h), "down_proj": (h, f)}
    want = {"embed_tokens": (v, h), **{f"layers.{i}.{k}": s for i in range(2) for k, s in layer.items()},
            "final_norm": (h,)}
    assert list(TINY.weight_shapes().items()) == list(want.items())  # the order init_weights draws them in
    assert replace(TINY, tied_embeddings=False).weight_shapes() == {**want, "lm_head": (v, h)}


@pytest.mark.parametrize("which", ["tiny", "tiny-untied", "smollm2-135m"])
def test_names_and_shapes_are_the_architectures(which):
    if which == "smollm2-135m":
        model, cfg = smollm2()
    else:
        cfg = TINY if which == "tiny" else replace(TINY, tied_embeddings=False)
        model = cfg.to_model()
    shapes = cfg.weight_shapes()
    assert shapes == architecture.named_shapes(model)
    assert cfg.n_params == architecture.parameter_count(model) == cfg.to_model().published_parameters.si
    # every layer is what the forward runs, in the table's order
    for i in (0, model.layers - 1):
        assert tuple(t.name for t in architecture.layer_tensors(model, i)) == LAYER_TENSORS
    # bytes at int8 weights: matrices at one byte, norm gains at float32, as placement and workload count them
    kernels = {n: math.prod(s) * (1 if len(s) == 2 else 4) for n, s in shapes.items()}
    placed = {t.name: math.prod(t.shape) * t.width for t in placement.weight_tensors(model, INT8)}
    assert kernels == placed
    assert sum(kernels.values()) == workload.weight_bytes(model, INT8)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("tied", [True, False])
def test_the_decoder_holds_and_reads_exactly_the_table(precision, tied):
    cfg = replace(TINY, tied_embeddings=tied)
    model = cfg.to_model()
    dec = Decoder.random(cfg, seed=0, precision=precision)
    prec = workload.Precision(precision, "fp32", "fp32")
    placed = {t.name: t for t in placement.weight_tensors(model, prec)}
    assert set(dec.weights) == set(placed)
    for name, w in dec.weights.items():
        assert tuple(w.shape) == placed[name].shape
        assert weight_payload_bytes(w) == math.prod(placed[name].shape) * placed[name].width
    assert sum(weight_payload_bytes(w) for w in dec.weights.values()) == workload.weight_bytes(model, prec)

    read: set[str] = set()

    class Reading(dict):
        def __getitem__(self, key):
            read.add(key)
            return super().__getitem__(key)

    dec.weights = Reading(dec.weights)
    dec.generate(np.array([[1, 2, 3]]), 2)
    assert read == set(placed)  # the forward reads every tensor of the table and nothing else


@pytest.mark.parametrize("stages,tp", [(1, 2), (2, 2), (2, 1)])
def test_the_plans_tensors_and_axes_are_the_tables(stages, tp):
    cfg = replace(TINY, tied_embeddings=False)
    model = cfg.to_model()
    plan = build_plan(cfg, n_chips=stages * tp, pipeline_stages=stages, tensor_parallel=tp, sram_bytes=10**9)
    specs = {n: t for t in architecture.embedding_tensors(model) + architecture.head_tensors(model) for n in t.names()}
    for i in range(model.layers):
        specs.update((n, t) for t in architecture.layer_tensors(model, i) for n in t.names(i))
    assert set(plan.tensors) == set(specs) == set(cfg.weight_shapes())
    for name, shards in plan.tensors.items():
        t = specs[name]
        assert {s.axis for s in shards} == {t.split_axis}
        held = sorted((s.start, s.stop) for s in shards)
        if t.role == "norm":  # every chip that normalises holds the whole gain
            assert held == [(0, t.shape[0])] * len(shards)
        else:  # the stage's chips cut it along the table's split axis, covering it once per stage
            per_stage = len(shards) // tp
            assert sum(b - a for a, b in held) == per_stage * t.shape[t.split_axis]


def test_gguf_names_are_the_tables_and_the_files():
    model, cfg = smollm2()
    names = gguf_names(cfg)
    assert sorted(names.values()) == sorted(cfg.weight_shapes())
    assert names["blk.7.attn_q.weight"] == "layers.7.q_proj" and names["token_embd.weight"] == "embed_tokens"
    stems = architecture.gguf_map(model)
    assert {n.split(".")[2]: v.split(".", 2)[2] for n, v in names.items() if n.startswith("blk.")} == stems
    pytest.importorskip("gguf")
    try:
        from lpulab.kernels.gguf_model import smollm2_gguf_path

        path = smollm2_gguf_path()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    from gguf import GGUFReader

    assert set(names) == {t.name for t in GGUFReader(str(path)).tensors}


def test_models_the_decoder_does_not_run_are_refused_by_name():
    with pytest.raises(ValueError, match=r"mixtral-8x7b is not Llama-like.*mixture of experts \(8 experts, 2 active\)"):
        DecoderConfig.from_model(catalog.load_model("mixtral-8x7b"))
    with pytest.raises(ValueError, match=r"deepseek-v3 is not Llama-like.*multi-head latent attention"):
        DecoderConfig.from_model(catalog.load_model("deepseek-v3"))
    s = catalog.load_model("smollm2-135m")
    with pytest.raises(ValueError, match=r"holds q_proj\.bias, k_proj\.bias, v_proj\.bias, o_proj\.bias"):
        DecoderConfig.from_model(replace(s, attention_bias=True))
    with pytest.raises(ValueError, match="lacks gate_proj"):
        DecoderConfig.from_model(replace(s, ffn_gated=False))
    with pytest.raises(ValueError, match=r"windowed attention \(64 tokens\)"):
        DecoderConfig.from_model(replace(s, sliding_window=64, sliding_window_layers="all"))
    pl = placement.place(catalog.load_model("deepseek-v3"), catalog.load_device("nvidia-h100-sxm"), batch=1,
                         context=64, precision=workload.Precision("fp8", "bf16", "bf16"))
    with pytest.raises(PlanError, match="multi-head latent attention"):
        plan_from_placement(pl)


def test_a_chips_sram_comes_from_the_catalog():
    dev = catalog.load_device(DEFAULT_DEVICE)
    assert dev.tier().placement == "on-chip"
    assert chip_sram_bytes(DEFAULT_DEVICE) == chip_sram_bytes(dev) == int(dev.capacity()) == 220 * 2**20
    assert build_plan(TINY, n_chips=1).chips[0].sram_bytes == 220 * 2**20  # groq-lpu-v1 by default
    assert build_plan(TINY, n_chips=1, sram_bytes=1234).chips[0].sram_bytes == 1234
    with pytest.raises(PlanError, match="nvidia-h100-sxm holds its weights in 'hbm'"):
        build_plan(TINY, n_chips=1, device="nvidia-h100-sxm")
    with pytest.raises(PlanError, match="not both"):
        build_plan(TINY, n_chips=1, sram_bytes=1234, device=DEFAULT_DEVICE)


def test_the_profiled_operators_read_the_tables_tensors():
    from lpulab.kernels.profile import op_points

    model = TINY.to_model()
    dec = Decoder.random(TINY, seed=0, precision="int8")
    pts = op_points(dec, repeats=1, min_time=0.0).set_index("op")
    layer = {t.name: t for t in placement.layer_weight_tensors(model, 0, INT8)}
    head = {t.name: t for t in placement.weight_tensors(model, INT8) if t.group == "head"}
    # the layer's operators that read weights are the table's tensors, each reading all of its bytes
    reads = pts.index[(pts.weight > 0) & (pts.per_step == model.layers)]
    assert [f"layers.0.{op}" for op in reads] == list(layer)
    for op in reads:
        t = layer[f"layers.0.{op}"]
        assert pts.at[op, "weight"] == math.prod(t.shape) * t.width
    # the head: the final norm's gain and the (tied) table, whole
    assert pts.at["final_norm", "weight"] == math.prod(head["final_norm"].shape) * head["final_norm"].width
    assert pts.at["lm_head", "weight"] == math.prod(head["embed_tokens"].shape) * head["embed_tokens"].width
