"""notebooks/05_kernels.ipynb through the real runner with smoke.yaml."""

import json

import nbformat
import pytest

from lpulab import catalog, paths
from lpulab.report import run_notebook

NB = paths.NOTEBOOKS / "05_kernels.ipynb"
pytestmark = pytest.mark.notebook


def test_committed_notebook_has_no_outputs_and_one_parameters_cell():
    nb = nbformat.read(NB, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
            assert "def " not in cell.source and "class " not in cell.source
    assert len([c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]) == 1


def test_every_parameter_file_is_valid():
    from lpulab.report import check_parameters
    from lpulab.report.params import load_param_file

    files = sorted((paths.PARAMS / "05_kernels").glob("*.yaml"))
    assert {f.stem for f in files} >= {"default", "smoke", "smollm2-fp32", "smollm2-pipeline", "shape-dram"}
    for f in files:
        check_parameters(NB, load_param_file(f))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # a fresh cache: this run measures everything itself
        mp.setenv("LPULAB_CACHE", str(tmp_path_factory.mktemp("cache")))
        r = run_notebook(NB, param_file=paths.PARAMS / "05_kernels" / "smoke.yaml",
                         reports=tmp_path_factory.mktemp("r"), progress=False, build_index=False)
    assert r.ok, r.error
    return json.loads((r.path / "results.json").read_text())["results"]


def test_sharded_equals_whole_and_counts_equal_the_workload(smoke):
    s = smoke["sharded"]
    # int8 with integer accumulation over a placement of 2 stages x 2 chips: bit for bit
    assert (s["chips"], s["tensor_parallel"], s["pipeline"]) == (4, 2, 2)
    assert s["exactness"] == "bit-exact" and s["bit_identical"] and s["same_tokens"] and s["max_abs_diff"] == 0.0
    assert s["stages"][-1][-1] == "head" and s["embed_stage"] == s["head_stage"] == 1  # tied: table with the head
    assert max(r["weight_bytes"] + r["kv_bytes"] for r in smoke["residency"]) <= 100_000
    assert smoke["counts_equal_workload"] and smoke["counts_max_abs_diff"] == 0.0
    # prefill + 2 decode steps, each: embedding, 16 ops x 2 layers, final norm, LM head; FLOPs and 5 byte kinds
    assert len(smoke["sharded_steps"]) == 3 and smoke["counts_compared"] == 3 * (1 + 2 * 16 + 2) * 6


def test_bytes_between_chips_against_perf_by_hand(smoke):
    # h=64, L=2, t=2, p=2, float32 activations, one token: perf assumes 2L * 2(t-1) * h*4 + (p-1) * t * h*4
    assert smoke["bytes_per_token_assumed"] == 2 * 2 * 2 * 1 * 64 * 4 + 1 * 2 * 64 * 4 == 2560
    parts = {r["part"]: r for r in smoke["transfers"]}
    assert parts["layer all-reduces"]["measured"] == 2 * parts["layer all-reduces"]["assumed"]  # int64 accumulators
    assert parts["layer all-reduces"]["width_measured"] == 8 and parts["layer all-reduces"]["width_assumed"] == 4
    assert parts["int8 row scales"]["measured"] == 4 * 2 * 1 * 4
    assert parts["embedding all-reduce"]["measured"] == 2 * 1 * 64 * 4
    assert parts["pipeline hand-overs"]["measured"] == 2 * 2 * 64 * 4  # tied: one hop back to the first stage
    assert parts["logits gather"]["measured"] == 128 * 4
    assert smoke["bytes_per_token_measured"] == 4096 + 32 + 512 + 1024 + 512
    assert smoke["bytes_ratio_measured_over_assumed"] == pytest.approx(6176 / 2560)
    assert all(r["note"] for r in smoke["transfers"] if r["part"] != "total")


def test_host_roofline_and_decode_speed(smoke):
    from lpulab.kernels import hostbench

    host = smoke["host"]
    dev = hostbench.as_device(host["entry"])  # the recorded entry loads through the catalog's schema
    assert dev.category == "cpu" and set(host["bandwidth"]) == set(dev.memory)
    assert all(s.confidence in catalog.CONFIDENCES for s in dev.sources.values())
    assert host["quick"] is True and host["peak_fp32"] > 0
    assert host["cache"]["reused"] is False and host["cache"]["measured_utc"] and len(host["cache"]["key"]) == 64
    assert host["cache"]["load"] >= 0
    ops = {(p["op"], p["phase"]) for p in smoke["op_points"]}
    assert {("q_proj", "decode"), ("lm_head", "prefill"), ("attention", "decode")} <= ops
    assert all(p["seconds"] > 0 and p["fraction"] > 0 for p in smoke["op_points"])
    d = smoke["decode"]
    assert d["tokens_per_s"] > 0 and d["bound_tokens_per_s"] > 0 and d["fraction"] == pytest.approx(
        d["tokens_per_s"] / d["bound_tokens_per_s"])
    assert d["ops_per_step"] == 1 + 2 * 16 + 2


def test_fits_and_reference_off(smoke):
    fits = {r["weights"]: r for r in smoke["fits"]}
    assert fits["int8"]["chips_needed"] == 1 and fits["int8"]["decoder_fits_one_chip"] is True
    assert smoke["reference"] == {"ran": False, "why_not": "the reference check is switched off (reference = False)"}
    assert smoke["reference_cache"] is None


@pytest.mark.parametrize("chips, tensor", [(1, 1), (2, 2)])
def test_one_chip_or_one_stage_records_no_undefined_ratio(tmp_path, chips, tensor):
    # one chip has no all-reduces and one stage no hand-overs: perf assumes 0 bytes and the
    # executed run sends 0, so their ratio is undefined and is left out, not recorded as NaN
    # (the default parameters, 3 chips in one stage, once stopped the whole run on it)
    from lpulab.report.params import load_param_file

    p = {**load_param_file(paths.PARAMS / "05_kernels" / "smoke.yaml"), "chips": chips, "tensor_parallel": tensor,
         "sram_MB": 1.0}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LPULAB_CACHE", str(tmp_path / "cache"))
        r = run_notebook(NB, parameters=p, reports=tmp_path / "r", progress=False, build_index=False)
    assert r.ok, r.error
    res = json.loads((r.path / "results.json").read_text())["results"]
    parts = {row["part"]: row for row in res["transfers"]}
    assert parts["pipeline hand-overs"]["assumed"] == 0 and "pipeline_ratio" not in res
    assert ("layer_allreduce_ratio" in res) == (tensor > 1)
    assert ("bytes_ratio_measured_over_assumed" in res) == (chips > 1)
