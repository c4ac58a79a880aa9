"""lpulab.architecture and the model fields of the catalog: layer kinds, MLA's tensors, shared
experts, biases, sinks, the MTP module, approximations, and files refused with the field named."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import pytest

from lpulab import architecture, catalog, workload
from lpulab.catalog import CatalogError

from ._tiny import tiny_model


def mla_tiny(**kw):
    """A tiny DeepSeek-like model: h=8, H=2 heads, q_lora 4, kv_lora 3, nope 2, rope 1, v 2;
    the first of 3 layers dense (F=6), the others MoE with 4 experts of 2 (k=2) and 1 shared."""
    base = tiny_model(L=3, h=8, H=2, G=2, dh=3, F=6, V=10, E=4, k=2)
    return replace(base, attention="mla", q_lora_rank=4, kv_lora_rank=3, qk_nope_head_dim=2, qk_rope_head_dim=1,
                   v_head_dim=2, moe_ffn_size=2, shared_experts=1, first_dense_layers=1, **kw)


# --------------------------------------------------------------------------- layer kinds


def test_layer_kinds_of_the_shipped_models():
    kinds = {k.name: k for k in architecture.layer_kinds(catalog.load_model("deepseek-v3"))}
    assert list(kinds) == ["dense", "moe"]
    assert kinds["dense"].layers == (0, 1, 2) and kinds["moe"].count == 58 and kinds["moe"].moe
    g = architecture.layer_kinds(catalog.load_model("gpt-oss-120b"))
    assert [(k.name, k.count, k.window) for k in g] == [("window", 18, 128), ("full", 18, 0)]
    assert g[0].layers[:3] == (0, 2, 4)                     # alternate: layers 0, 2, 4, ... are windowed
    (one,) = architecture.layer_kinds(catalog.load_model("llama-3.1-70b"))
    assert one.name == "layer" and one.count == 80
    both = replace(catalog.load_model("gpt-oss-120b"), first_dense_layers=2)
    assert [k.name for k in architecture.layer_kinds(both)] == ["dense.window", "dense.full", "moe.window", "moe.full"]


def test_mla_tensor_table_by_hand():
    m = mla_tiny()
    dense = {t.name: t.shape for t in architecture.layer_tensors(m, 0)}
    assert dense == {"attn_norm": (8,), "q_a_proj": (4, 8), "q_a_norm": (4,), "q_b_proj": (2 * 3, 4),
                     "kv_a_proj": (3 + 1, 8), "kv_a_norm": (3,), "kv_b_proj": (2 * (2 + 2), 3), "o_proj": (8, 2 * 2),
                     "ffn_norm": (8,), "gate_proj": (6, 8), "up_proj": (6, 8), "down_proj": (8, 6)}
    moe = {t.name: t for t in architecture.layer_tensors(m, 1)}
    assert moe["experts.gate_proj"].shape == (2, 8) and moe["experts.gate_proj"].copies == 4
    assert moe["shared_experts.down_proj"].shape == (8, 2) and not moe["shared_experts.down_proj"].is_expert
    assert moe["kv_a_proj"].output == "kv" and moe["router"].shape == (4, 8)
    # by hand: attention 32+4+24 + 32+3+24 + 32 + 2 norms 16 = 167; dense FFN 144; MoE: router 32,
    # 4 experts of 48, shared 48 -> 272
    assert architecture.parameter_count(m) == 80 + (167 + 144) + 2 * (167 + 272) + 8 + 80
    # active: 2 of 4 experts, shared always, no input embedding
    assert architecture.parameter_count(m, active=True, embedding=False) == (167 + 144) + 2 * (167 + 32 + 96 + 48) + 8 + 80


def test_biases_sinks_and_router_bias_are_counted_where_they_live():
    base = tiny_model(L=2, h=4, H=2, G=1, dh=2, F=3, V=10, E=4, k=2)
    plain = architecture.parameter_count(base)
    m = replace(base, attention_bias=True, attention_sinks=True, router_bias=True, expert_bias=True)
    names = {t.name: t for t in architecture.layer_tensors(m, 0)}
    assert names["q_proj.bias"].shape == (4,) and names["o_proj.bias"].shape == (4,) and names["sinks"].shape == (2,)
    assert names["experts.gate_proj.bias"].copies == 4 and names["experts.gate_proj.bias"].is_expert
    # per layer: biases q 4, k 2, v 2, o 4; sinks 2; router bias 4; expert biases 4 x (3 + 3 + 4)
    assert architecture.parameter_count(m) - plain == 2 * (12 + 2 + 4 + 40)
    # stored at the activations' width, like the norm gains
    w, a = architecture.parameters_by_width(m)
    assert w + a == architecture.parameter_count(m)
    assert a == 2 * (4 + 4 + 12 + 2 + 4 + 40) + 4


def test_the_mtp_module_is_listed_outside_the_served_model():
    m = mla_tiny(mtp_layers=1)
    mtp = architecture.mtp_tensors(m)
    assert {t.group for t in mtp} == {"mtp"} and mtp[2].name == "mtp.0.eh_proj" and mtp[2].shape == (8, 16)
    # enorm 8 + hnorm 8 + eh_proj 128 + one MoE layer (167 + 272) + shared head norm 8
    assert architecture.parameter_count(m, mtp=True) - architecture.parameter_count(m) == 8 + 8 + 128 + 167 + 272 + 8
    assert architecture.parameter_count(m) == architecture.parameter_count(mla_tiny())
    assert workload.weight_bytes(m) == workload.weight_bytes(mla_tiny())      # not placed


def test_approximations_are_said_for_the_models_that_have_them():
    assert architecture.approximations(catalog.load_model("llama-3.1-70b")) == ()
    ds = architecture.approximations(catalog.load_model("deepseek-v3"))
    assert len(ds) == 3 and "multi-token-prediction" in ds[0] and "11.61B" in ds[0]
    assert any("absorbed" in a for a in ds) and any("uniform" in a for a in ds)
    assert len(architecture.approximations(catalog.load_model("gpt-oss-120b"))) == 1


# --------------------------------------------------------------------------- the catalog's checks


def _raw(model_id: str) -> dict:
    return copy.deepcopy(catalog.read_toml(catalog.entry_path("models", model_id)))


def _parse(raw, name):
    return catalog.parse_model(raw, Path(f"{name}.toml"))


@pytest.mark.parametrize("edit,field,says", [
    (lambda a: a.pop("attention"), "architecture", "set attention = \"mla\""),
    (lambda a: a.pop("kv_lora_rank"), "architecture", "needs kv_lora_rank"),
    (lambda a: a["head_dim"].update(value=128), "architecture.head_dim", "qk_nope_head_dim + qk_rope_head_dim = 192"),
    (lambda a: a["kv_heads"].update(value=1), "architecture.kv_heads", "must equal attention_heads"),
    (lambda a: a["first_dense_layers"].update(value=61), "architecture.first_dense_layers.value", "less than layers"),
    (lambda a: a["shared_experts"].update(value=-1), "architecture.shared_experts", "negative"),
    (lambda a: a["q_lora_rank"].update(value=1.5), "architecture.q_lora_rank.value", "whole number"),
    (lambda a: a.update(attention="linear"), "architecture.attention", "is not one of gqa, mla"),
    (lambda a: a.update(sliding_window={"value": 128, "unit": "count", "source": "config", "kind": "vendor-peak"}),
     "architecture", "give sliding_window and sliding_window_layers together"),
    (lambda a: a.update(expert_bias="yes"), "architecture.expert_bias", "expected true or false"),
    (lambda a: a.update(mla_extra=1), "architecture", "unknown field(s) mla_extra"),
])
def test_bad_model_fields_are_refused_with_the_field_named(edit, field, says):
    raw = _raw("deepseek-v3")
    edit(raw["architecture"])
    with pytest.raises(CatalogError) as e:
        _parse(raw, "deepseek-v3")
    assert f"deepseek-v3.toml: {field}" in str(e.value) and says in str(e.value)


def test_moe_fields_on_a_dense_model_and_windows_beyond_the_context_are_refused():
    raw = _raw("llama-3.1-8b")
    raw["architecture"]["shared_experts"] = {"value": 1, "unit": "count", "source": "config", "kind": "vendor-peak"}
    with pytest.raises(CatalogError, match=r"architecture.shared_experts: only a mixture of experts"):
        _parse(raw, "llama-3.1-8b")
    raw = _raw("gpt-oss-120b")
    raw["architecture"]["sliding_window"]["value"] = 10**7
    with pytest.raises(CatalogError, match=r"sliding_window.value: a window of 10000000 tokens exceeds max_context"):
        _parse(raw, "gpt-oss-120b")
    raw = _raw("gpt-oss-120b")
    raw["architecture"]["sliding_window_layers"] = "odd"
    with pytest.raises(CatalogError, match="sliding_window_layers: 'odd' is not one of all, alternate"):
        _parse(raw, "gpt-oss-120b")


def test_a_validating_model_reads_its_new_fields():
    m = catalog.load_model("gpt-oss-120b")
    assert (m.sliding_window, m.sliding_window_layers, m.attention_sinks, m.attention_bias, m.router_bias,
            m.expert_bias) == (128, "alternate", True, True, True, True)
    assert m.layer_window(0) == 128 and m.layer_window(1) == 0 and m.expert_ffn_size == 2880
    d = catalog.load_model("deepseek-v3")
    assert d.is_mla and d.kv_values_per_token == 576 and d.expert_ffn_size == 2048 and d.mtp_layers == 1
    assert not d.layer_is_moe(2) and d.layer_is_moe(3) and not d.active_includes_embedding


def test_the_weights_tier_is_the_files_when_it_names_one():
    sn = catalog.load_device("sambanova-sn40l")
    assert sn.main_tier == "hbm" and not sn.sram_only and sn.capacity() == 64e9
    assert catalog.load_device("groq-lpu-v1").main_tier == "sram"         # the default rule
    raw = copy.deepcopy(catalog.read_toml(catalog.entry_path("hardware", "sambanova-sn40l")))
    raw["deployment"]["weights_tier"] = "l2"
    with pytest.raises(CatalogError, match=r"deployment.weights_tier: 'l2' is not a \[memory\] tier of this device"):
        catalog.parse_device(raw, Path("sambanova-sn40l.toml"))
