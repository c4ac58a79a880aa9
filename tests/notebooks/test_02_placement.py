"""notebooks/02_placement.ipynb through the real runner with smoke.yaml."""

import json

import nbformat
import pytest

from lpulab import paths
from lpulab.report import run_notebook

NB = paths.NOTEBOOKS / "02_placement.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NB, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1


def test_every_parameter_file_is_valid():
    from lpulab.report import check_parameters
    from lpulab.report.params import load_param_file

    files = sorted((paths.PARAMS / "02_placement").glob("*.yaml"))
    assert {f.stem for f in files} >= {"default", "smoke", "mixtral-8x7b", "llama-3.1-405b"}
    for f in files:
        check_parameters(NB, load_param_file(f))


@pytest.mark.notebook
@pytest.mark.slow
def test_smoke_run_records_the_chip_counts(tmp_path):
    res = run_notebook(NB, param_file=paths.PARAMS / "02_placement" / "smoke.yaml", reports=tmp_path,
                       progress=False, build_index=False)
    assert res.ok, res.error
    r = json.loads((res.path / "results.json").read_text())["results"]
    assert r["model"] == "llama-2-70b" and r["parameters_error_pct"] == 0.0
    # the chip counts the cost notebook reads
    assert set(r["chips_needed"]) == {"groq-lpu-v1", "nvidia-h100-sxm"}
    assert r["chips_weights_only"]["groq-lpu-v1"] == 300
    assert r["chips_needed"]["groq-lpu-v1"] >= r["chips_fluid"]["groq-lpu-v1"] >= 300
    assert r["chips_deployed"]["groq-lpu-v1"] % 72 == 0
    assert r["chips_needed"]["nvidia-h100-sxm"] == 1 and r["chips_deployed"]["nvidia-h100-sxm"] == 8
    assert r["chips_needed_by_weights"]["bf16"]["nvidia-h100-sxm"] == 2
    # the 305 -> 576 chain
    assert r["chain"]["as stated"] == 305 and r["chain"]["weights"] == 300
    assert r["chain_groq"]["whole racks"] == 576 and r["batch_for_groq_chips"] >= 30
    # the GPU check
    assert r["gpu_one_holds_bf16"] is False and r["gpu_two_hold_int8"] is True and r["gpu_two_hold_fp8"] is True
    # placement invariants as recorded
    assert r["lpu_placement"]["max_chip_fill"] <= 1.0 and r["lpu_placement"]["min_headroom_bytes"] >= 0
    assert r["bandwidth_ratio_per_chip"] == pytest.approx(80 / 3.35)
    assert r["deployment_bandwidth_ratio"] > 1000
    assert (res.path / "report.html").is_file()
