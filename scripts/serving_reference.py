"""Record the dense (and Mixtral) models' numbers of the workload, placement and serving
model, so that a later change of those modules can be checked to leave them unchanged.

    .venv/bin/python scripts/serving_reference.py > tests/fixtures/serving_reference.json

The fixture in tests/fixtures was written by this script from the tree of the commit it
names (``commit``: the ``serving`` branch before layer kinds, MLA and expert parallelism
entered the library; run there with ``PYTHONPATH`` pointing at an export of that tree, the
commit set by ``LPULAB_REFERENCE_COMMIT`` when the tree is not a git checkout);
tests/unit/test_reference_numbers.py recomputes every entry and compares them exactly.
SambaNova SN40L is left out: its weights tier was corrected afterwards (hbm, not sram).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from lpulab import catalog, perf, placement, workload
from lpulab.parallel import Layout

MODELS = ("llama-2-7b", "llama-2-13b", "llama-2-70b", "llama-3-8b", "llama-3-70b", "llama-3.1-8b", "llama-3.1-70b",
          "llama-3.1-405b", "llama-3.3-70b", "mixtral-8x7b", "smollm2-135m")
DEVICES = ("groq-lpu-v1", "groq-lpu-3", "cerebras-wse-3", "nvidia-h100-sxm", "nvidia-h100-pcie", "nvidia-h200",
           "nvidia-b200", "nvidia-gb200", "nvidia-a100-sxm-80gb", "amd-mi300x", "amd-mi325x", "google-tpu-v5e",
           "google-tpu-v5p", "nvidia-rtx-3090")
PRECISIONS = {"bf16": "bf16", "int8": "int8", "fp8": "fp8", "w4a16": ("int4", "bf16", "fp8")}
SHAPES = [("decode", 1, 0, None), ("decode", 7, 100, None), ("decode", 64, 4000, None),
          ("prefill", 1, 0, 128), ("prefill", 3, 512, 2048)]
BATCHES, CONTEXTS = [1, 8, 64], [512, 4096]
PREDICT = [  # model, device, layout (replicas, tensor, pipeline), precision
    ("llama-2-70b", "nvidia-h100-sxm", (1, 2, 1), "fp8"), ("llama-2-70b", "nvidia-h100-sxm", (4, 2, 1), "fp8"),
    ("llama-3.1-70b", "nvidia-h100-sxm", (1, 8, 1), "fp8"), ("llama-3.1-70b", "nvidia-b200", (1, 8, 1), "fp8"),
    ("llama-3.1-8b", "nvidia-h100-sxm", (2, 1, 1), "bf16"), ("mixtral-8x7b", "nvidia-h100-sxm", (1, 2, 1), "fp8"),
    ("mixtral-8x7b", "nvidia-h100-sxm", (1, 1, 2), "bf16"), ("llama-3.1-405b", "nvidia-h100-sxm", (1, 8, 2), "fp8"),
    ("llama-2-70b", "groq-lpu-v1", (1, 8, 72), "int8"), ("mixtral-8x7b", "groq-lpu-v1", (1, 18, 32), "int8"),
    ("llama-3.1-8b", "cerebras-wse-3", (1, 1, 1), "bf16"), ("llama-3.1-8b", "groq-lpu-3", (1, 1, 1), "fp8"),
]
KNOBS = [None, perf.Knobs(0.6, 0.85, 0.9, 5e-6, 0.7), perf.Knobs(0.6, 0.85, 0.9, 5e-6, 0.7, 16.0)]


def _f(x):
    a = np.asarray(x, float)
    return a.item() if a.ndim == 0 else a.tolist()


def main() -> None:
    commit = os.environ.get("LPULAB_REFERENCE_COMMIT") or subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = {"commit": commit,
           "sizes": {}, "totals": [], "ops": [], "need": [], "place": [], "predict": []}
    models = {m: catalog.load_model(m) for m in MODELS}
    devices = {d: catalog.load_device(d) for d in DEVICES}
    for mid, m in models.items():
        out["sizes"][mid] = {"parameters": workload.parameter_count(m),
                             "active": workload.parameter_count(m, active=True),
                             "weight_bytes": {k: workload.weight_bytes(m, v) for k, v in PRECISIONS.items()},
                             "kv_bytes_per_token": workload.kv_bytes_per_token(m, "bf16"),
                             "kv_bytes": _f(workload.kv_bytes(m, [1, 3], [100, 5000], "fp8"))}
        for pname, prec in PRECISIONS.items():
            for phase, b, c, s in SHAPES:
                t = workload.totals(m, phase, b, c, s, prec)
                out["totals"].append({"model": mid, "precision": pname, "shape": [phase, b, c, s],
                                      **{k: _f(v) for k, v in t.as_dict().items()}})
        for op in workload.op_counts(m, "decode", 5, 300, None, "bf16"):
            out["ops"].append({"model": mid, "op": op.name, "group": op.group, "kind": op.kind,
                               **{k: _f(v) for k, v in op.counts.as_dict().items()}})
    for mid in ("llama-2-70b", "llama-3.1-70b", "llama-3.1-8b", "mixtral-8x7b", "llama-3.1-405b"):
        m = models[mid]
        for did, d in devices.items():
            for pname in ("bf16", "fp8", "w4a16"):
                prec = workload.Precision.of(PRECISIONS[pname])
                try:
                    perf.compute_format(d, prec)
                except perf.PerfError:
                    continue
                B, C = np.meshgrid(BATCHES, CONTEXTS + [m.max_context], indexing="ij")
                n = placement.need(m, d, B, C, precision=prec)
                out["need"].append({"model": mid, "device": did, "precision": pname,
                                    **{k: _f(getattr(n, k)) for k in ("chips", "tensor", "pipeline", "deployed", "fluid")}})
    for mid, did, kw in (("llama-2-70b", "groq-lpu-v1", dict(precision="int8", context=4096)),
                         ("mixtral-8x7b", "groq-lpu-v1", dict(precision="int8", context=4096, batch=4)),
                         ("llama-2-70b", "nvidia-h100-sxm", dict(precision="fp8", context=4096, batch=8)),
                         ("llama-3.1-8b", "groq-lpu-v1", dict(precision="fp16", context=2048, tensor=16))):
        pl = placement.place(models[mid], devices[did], **kw)
        out["place"].append({"model": mid, "device": did, "summary": pl.summary(),
                             "stages": [list(s.layers) for s in pl.stages],
                             "chip_used": pl.chip_bytes().used.tolist()})
    for mid, did, lay, prec in PREDICT:
        dep = perf.Deployment(devices[did], Layout(*lay), prec)
        for k in KNOBS:
            p = perf.predict(models[mid], dep, [1, 8, 64], 550, 150, k)
            out["predict"].append({"model": mid, "device": did, "layout": list(lay), "precision": prec,
                                   "knobs": None if k is None else [k.compute, k.memory, k.link, k.layer_overhead_s,
                                                                   k.prefill_compute, k.half_tokens],
                                   **{f: _f(getattr(p, f)) for f in ("ttft_s", "tpot_s", "tpot_max_s", "aggregate_tok_s")},
                                   "bound": [str(x) for x in np.asarray(p.bound).ravel()],
                                   "fits": [bool(x) for x in np.asarray(p.fits).ravel()]})
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
