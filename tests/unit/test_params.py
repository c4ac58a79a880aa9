"""Parameter checking happens before any kernel starts (papermill alone would only warn)."""

import pytest

from lpulab.report import params
from lpulab.report.params import ParameterError

NB = "01_bandwidth"


def test_declared_parameters_come_from_papermill():
    d = params.declared_parameters(NB)
    assert d["lpu"].tag == "device" and d["gpus"].tag == "devices"
    assert d["tier"].tag == "choice" and d["tier"].tag_arg == ("hbm", "l2", "l1")
    assert d["gpu_achieved"].type_name == "float"


def test_defaults_fill_in_and_types_coerce():
    p = params.check_parameters(NB, {"gpu_achieved": 1, "batches": ["1", 8]})
    assert p["gpu_achieved"] == 1.0 and isinstance(p["gpu_achieved"], float)
    assert p["batches"] == [1, 8]
    assert p["lpu"] == "groq-lpu-v1"
    # YAML and `-p` give 1e3 as a string; a float parameter takes it as a number
    assert params.check_parameters(NB, {"gpu_achieved": "1e0"})["gpu_achieved"] == 1.0


@pytest.mark.parametrize("values,match", [
    ({"gpuss": ["nvidia-b200"]}, r"unknown parameter\(s\) 'gpuss' \(did you mean 'gpus'\?\)"),
    ({"gpu": "nvidia-a100-sxm-80gb", "gpus": ["nvidia-h100-sxm"]}, r"must be one of gpus"),
    ({"overrides": {"groq-lpu-v1.memory.sram.bandwith": "1 TB/s"}}, r"has no field 'memory.sram.bandwith'"),
    ({"gpus": ["nvidia-b2000"]}, r"unknown device 'nvidia-b2000'; allowed: .*nvidia-b200"),
    ({"lpu": "tpu"}, r"unknown device 'tpu'"),
    ({"tier": "dram"}, r"'dram' is not allowed; allowed: hbm, l2, l1"),
    ({"gpu_achieved": 1.5}, r"out of range \(0.01 <= x <= 1\)"),
    ({"gpu_achieved": "fast"}, r"expected a number"),
    ({"context": 2.5}, r"expected an integer"),
    ({"lpu": True}, r"YAML reads yes/no"),
    ({"batches": [0]}, r"out of range \(1 <= x <= 1000000\)"),
    ({"gpus": []}, r"give at least one"),
])
def test_bad_parameters_are_refused_clearly(values, match):
    with pytest.raises(ParameterError, match=match):
        params.check_parameters(NB, values)


def test_cli_values_parse_as_json_or_string():
    assert params.parse_cli_value('["nvidia-b200"]') == ["nvidia-b200"]
    assert params.parse_cli_value("1e3") == 1000.0
    assert params.parse_cli_value("nvidia-b200") == "nvidia-b200"
    assert params.parse_cli_value("yes") == "yes"


def test_param_files(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("- a list\n")
    with pytest.raises(ParameterError, match="mapping"):
        params.load_param_file(f)
    with pytest.raises(ParameterError, match="no parameter file"):
        params.load_param_file(tmp_path / "missing.yaml")


def test_unknown_notebook_lists_known_ones():
    with pytest.raises(FileNotFoundError, match="01_bandwidth"):
        params.declared_parameters("99_nothing")
