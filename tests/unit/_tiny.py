"""Small hand-made models and devices for the workload and placement tests."""

from pathlib import Path

from lpulab import catalog
from lpulab.catalog import Model


def tiny_model(L=1, h=4, H=2, G=1, dh=2, F=8, V=10, E=1, k=1, gated=True, tied=False, ctx=64, id="tiny") -> Model:
    return Model(id=id, name=id, family="test", released="2024", layers=L, hidden_size=h, attention_heads=H,
                 kv_heads=G, head_dim=dh, ffn_size=F, vocab_size=V, max_context=ctx, experts=E, active_experts=k,
                 ffn_gated=gated, tied_embeddings=tied, norm="rmsnorm", published_parameters=None)


def tiny_device(capacity_bytes, id="tinychip", category="lpu", tier="sram"):
    src = {"s": {"title": "test", "url": "https://example.org", "date": "2024", "confidence": "official"}}
    raw = {
        "id": id, "name": id, "vendor": "test", "category": category, "released": "2024", "sources": src,
        "memory": {tier: {"placement": "on-chip" if tier == "sram" else "off-chip",
                          "capacity": {"value": capacity_bytes, "unit": "B", "source": "s", "kind": "estimate"},
                          "bandwidth": {"value": 1, "unit": "TB/s", "source": "s", "kind": "estimate"}}},
        # a test chip that runs every format lpulab models, at 1 TFLOP/s (placement refuses a
        # precision a device lists no peak for)
        "compute": {f: {"peak": {"value": 1, "unit": "TFLOP/s", "source": "s", "kind": "estimate", "sparsity": "dense"}}
                    for f in ("fp32", "bf16", "fp16", "fp8", "int8", "fp4")},
        "interconnect": {"link": {"bandwidth": {"value": 100, "unit": "GB/s", "source": "s", "kind": "estimate"}}},
        "deployment": {  # an SRAM chip splits any way up to a rack of 72; others by KV heads up to 8
            "unit": "chip", "tensor_split": "any" if category == "lpu" else "kv-heads", "scale_up_link": "link",
            "scale_up": {"chips": {"value": 72 if category == "lpu" else 8, "unit": "count", "source": "s",
                                   "kind": "estimate"}},
            "units": {"chip": {"chips": {"value": 1, "unit": "count", "source": "s", "kind": "estimate"}}}},
    }
    return catalog.parse_device(raw, Path(f"{id}.toml"))
