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
    assert set(r["chips_needed"]) == {"groq-lpu-v1", "nvidia-h100-sxm"}
    assert r["chips_weights_only"]["groq-lpu-v1"] == 300
    assert r["chips_needed"]["groq-lpu-v1"] >= r["chips_fluid"]["groq-lpu-v1"] >= 300
    assert r["chips_deployed"]["groq-lpu-v1"] % 72 == 0          # the device's own deployment unit
    assert r["chips_needed"]["nvidia-h100-sxm"] == 1 and r["chips_deployed"]["nvidia-h100-sxm"] == 8
    # the chain starts at the claim's own arithmetic (data/claims.toml) and ends in whole units of the device's file
    assert r["chain"]["as stated"] == 305 and r["chain"]["weights"] == 300
    assert r["chain"]["whole racks"] % 72 == 0 and r["chain"]["whole nodes"] % 8 == 0
    assert r["full_context_streams"] >= 1
    checks = r["gpu_checks"]
    assert checks["1 x nvidia-h100-sxm at bf16"] is False and checks["2 x nvidia-h100-sxm at fp8"] is True
    assert r["lpu_placement"]["max_chip_fill"] <= 1.0 and r["lpu_placement"]["min_headroom_bytes"] >= 0
    assert r["deployment_bandwidth"]["ratio"] > 1000
    assert (res.path / "report.html").is_file()
