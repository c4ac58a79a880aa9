"""The lpulab command refuses bad input before any kernel starts, with a clear message."""

import subprocess
import sys

import pytest

from lpulab import cli


def test_misspelled_parameter_fails_before_execution(reports_dir, capsys):
    rc = cli.main(["run", "notebooks/01_bandwidth.ipynb", "-p", "gpuss", '["nvidia-b200"]'])
    err = capsys.readouterr().err
    assert rc == 2
    assert "unknown parameter(s) 'gpuss' (did you mean 'gpus'?)" in err
    assert not reports_dir.exists() or not any(reports_dir.iterdir())  # nothing ran, nothing written


def test_unknown_device_lists_choices(reports_dir, capsys):
    rc = cli.main(["run", "01_bandwidth", "-p", "gpus", '["nvidia-b2000"]'])
    assert rc == 2
    assert "allowed:" in capsys.readouterr().err


def test_bad_param_file(reports_dir, capsys, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("tier: dram\n")
    assert cli.main(["run", "01_bandwidth", "-f", str(f)]) == 2
    assert "'dram' is not allowed; allowed: hbm, l2, l1" in capsys.readouterr().err


def test_catalog_validates_and_lists(capsys):
    assert cli.main(["catalog", "--validate"]) == 0
    assert cli.main(["catalog"]) == 0
    out = capsys.readouterr().out
    assert "groq-lpu-v1" in out and "nvidia-h100-sxm" in out


def test_params_lists_the_declared_parameters(capsys):
    assert cli.main(["params", "01_bandwidth"]) == 0
    assert "gpu = 'nvidia-h100-sxm'" in capsys.readouterr().out


@pytest.mark.notebook
def test_run_with_b200_from_the_shell(reports_dir):
    # the README's example, as a user types it
    p = subprocess.run([sys.executable, "-m", "lpulab.cli", "run", "notebooks/01_bandwidth.ipynb", "-q",
                        "-p", "gpus", '["nvidia-b200"]', "-p", "gpu", "nvidia-b200"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    # quiet: no kernel log lines (TCP without encryption, KeyboardInterrupt at shutdown), no warnings
    assert "IPKernelApp" not in p.stderr and "Warning" not in p.stderr and "WARNING" not in p.stderr, p.stderr
    (rep,) = [d for d in reports_dir.iterdir() if d.is_dir()]
    assert rep.name.startswith("01_bandwidth-custom-")
    assert (rep / "report.html").is_file()


def test_cite_unknown_report(reports_dir, capsys):
    assert cli.main(["cite", "nope"]) == 2
    assert "no finished report" in capsys.readouterr().err
