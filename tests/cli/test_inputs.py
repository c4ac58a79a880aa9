"""Issue 14, findings 5, 6 and 7: bad parameter files, a broken catalog and out-of-range
values are refused before any kernel starts, with every problem named and no traceback."""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path

import pytest

from lpulab import catalog, cli, paths
from lpulab.report import params

BOMB = (b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + b"".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n".encode() for p, n in zip("abcdefgh", "bcdefghi")))


@pytest.fixture
def no_kernel(monkeypatch):
    """Fail the test if anything tries to start a kernel."""
    from lpulab.report import runner

    def boom(*a, **k):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(runner, "_execute", boom)


def _refused(capsys, argv, *words):
    t0 = time.perf_counter()
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    assert time.perf_counter() - t0 < 30  # refused, not worked on
    return err


# --- finding 5: parameter files ------------------------------------------------------------------

@pytest.mark.parametrize("content,words", [
    ("tier: h\xe9m\n".encode("latin-1"), ["not UTF-8", "byte 7"]),
    (b"x: " + b"[" * 5000 + b"]" * 5000 + b"\n", ["not valid YAML", "nesting depth"]),
    (b"x: " + b"[" * 40 + b"]" * 40 + b"\n", ["nested more than 32 deep"]),
    (BOMB, ["once YAML aliases", "expanded"]),
    (b"[]\n", ["expected a mapping", "list"]),
    (b"false\n", ["expected a mapping", "bool"]),
    (b"0\n", ["expected a mapping", "int"]),
    (b"''\n", ["expected a mapping", "str"]),
    (b"null\n", ["expected a mapping", "nothing"]),
    (b"", ["expected a mapping", "nothing"]),
    (b"tier: hbm\ntier: l2\n", ["duplicate key 'tier'", "line 1"]),
    (b"x" * (params.MAX_FILE_BYTES + 1), ["bytes", "at most"]),
], ids=["latin-1", "5000-deep", "40-deep", "alias-bomb", "list", "false", "zero", "empty-string", "null", "empty",
        "duplicate", "too-big"])
def test_bad_parameter_files_are_refused(tmp_path, capsys, reports_dir, no_kernel, content, words):
    f = tmp_path / "p.yaml"
    f.write_bytes(content)
    err = _refused(capsys, ["run", "01_bandwidth", "-f", str(f)], *words)
    assert len(err) < 2000  # the message never embeds an expanded value
    assert not reports_dir.exists()


def test_an_alias_bomb_in_a_grid_file_is_refused_quickly(tmp_path, capsys, reports_dir, no_kernel):
    g = tmp_path / "grid.yaml"
    g.write_bytes(BOMB)
    _refused(capsys, ["sweep", "01_bandwidth", "-g", str(g)], "aliases")


def test_a_value_too_deep_on_the_command_line_is_refused(capsys, reports_dir, no_kernel):
    _refused(capsys, ["run", "01_bandwidth", "-p", "batches", "[" * 5000 + "]" * 5000], "nested more than")


def test_an_unknown_parameter_set_is_refused_with_the_names_that_exist(capsys, reports_dir, no_kernel):
    err = _refused(capsys, ["reproduce", "--params", "smok"], "'smok'", "smoke", "default")
    assert "sweep-achieved" in err  # sets of some notebooks are named too


def test_a_bad_value_error_is_short(capsys, reports_dir, no_kernel, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("lpu: [" + ", ".join(["x" * 50] * 200) + "]\n")
    err = _refused(capsys, ["run", "01_bandwidth", "-f", str(f)], "expected a string")
    assert len(err) < 500


# --- finding 6: the catalog ----------------------------------------------------------------------

LPU = (paths.HARDWARE / "groq-lpu-v1.toml").read_text()
CASES = {
    "unit-list": (LPU.replace('unit = "TB/s"', 'unit = ["TB/s"]', 1), "unit: expected a string, got list"),
    "source-list": (LPU.replace('source = "', 'source = ["x", "', 1).replace('", kind', '"], kind', 1),
                    "source: expected a string, got list"),
    "memory-5": (re.sub(r"\[memory\.[a-z0-9]+\][^\[]*", "", LPU).replace("\nname = ", "\nmemory = 5\nname = ", 1),
                 "memory: expected a table, got int 5"),
    "sources-x": (re.sub(r"\[sources\.[a-z0-9_]+\][^\[]*", "", LPU).replace("\nname = ", '\nsources = "x"\nname = ', 1),
                  "sources: expected a table"),
    "compute-x": (re.sub(r"\[compute\.[a-z0-9]+\][^\[]*", "", LPU).replace("\nname = ", '\ncompute = "x"\nname = ', 1),
                  "compute: expected a table"),
    "bandwidth-0": (re.sub(r"(\[memory\.sram\][^\[]*?bandwidth = \{ value = )[0-9.]+", r"\g<1>0", LPU, count=1),
                    "bandwidth.value: 0 is not allowed"),
    "high-inf": (re.sub(r"(\[memory\.sram\][^\[]*?bandwidth = \{ value = [0-9.]+)", r"\1, low = 1, high = inf", LPU, count=1),
                 "high: expected a finite"),
    "bandwidth-1e300": (re.sub(r"(\[memory\.sram\][^\[]*?bandwidth = \{ value = )[0-9.]+", r"\g<1>1e300", LPU, count=1),
                        "overflows"),
}


def _user_folder(tmp_path: Path, kind: str, name: str, text: str) -> Path:
    d = tmp_path / "mydata"
    (d / kind).mkdir(parents=True, exist_ok=True)
    (d / kind / name).write_text(text)
    return d


@pytest.mark.parametrize("case", sorted(CASES))
def test_broken_hardware_files_are_refused_before_any_kernel(tmp_path, capsys, reports_dir, no_kernel, case):
    text, words = CASES[case]
    assert text != LPU, "the case changed nothing"
    d = _user_folder(tmp_path, "hardware", "groq-lpu-v1.toml", text)
    err = _refused(capsys, ["run", "01_bandwidth", "--data", str(d)], "nothing ran", words)
    assert "groq-lpu-v1.toml" in err and not reports_dir.exists()


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    text = (LPU.replace('unit = "TB/s"', 'unit = 3', 1).replace('kind = "vendor-peak"', 'kind = "nope"', 1)
            .replace('confidence = "', 'confidence = "x', 1))
    d = _user_folder(tmp_path, "hardware", "groq-lpu-v1.toml", text)
    with pytest.raises(catalog.CatalogError) as e:
        catalog._checked(catalog.load_device, d / "hardware" / "groq-lpu-v1.toml")
    lines = str(e.value).splitlines()
    assert len(lines) >= 3, lines
    assert any("unit: expected a string" in x for x in lines) and any("'nope'" in x for x in lines)
    assert any("confidence" in x for x in lines)


def _claims(**change) -> str:
    text = paths.CLAIMS.read_text()
    for k, v in change.items():
        text = re.sub(rf"(?m)^{k} = .*$", f"{k} = {v}", text, count=1)
    return text


@pytest.mark.parametrize("change,words", [
    ({"tolerance": "nan"}, "C1.tolerance: expected a relative tolerance"),
    ({"claimed": "true"}, "C1.claimed: expected a finite number > 0"),
    ({"claimed": "0"}, "C1.claimed: expected a finite number > 0"),
    ({"wording_en": "3"}, "C1.wording_en: expected a string"),
    ({"source_url": '"javascript:alert(1)"'}, "is not an http(s) URL"),
    ({"notebook": '"01_bandwith"'}, "no notebook '01_bandwith'"),
])
def test_claims_are_checked_field_by_field(tmp_path, change, words):
    f = tmp_path / "claims.toml"
    f.write_text(_claims(**change))
    with pytest.raises(catalog.CatalogError, match=re.escape(words)):
        catalog.load_claims(f)


def test_a_model_name_that_is_a_number_is_refused(tmp_path):
    text = re.sub(r'(?m)^name = .*$', "name = 70", (paths.MODELS / "llama-2-70b.toml").read_text(), count=1)
    d = _user_folder(tmp_path, "models", "llama-2-70b.toml", text)
    with pytest.raises(catalog.CatalogError, match="name: expected a string, got int 70"):
        catalog._checked(catalog.load_model, d / "models" / "llama-2-70b.toml")


def test_a_zero_tariff_is_refused(tmp_path):
    text = re.sub(r"(electricity = \{ value = )[0-9.]+", r"\g<1>0", (paths.PRICES / "us-2023.toml").read_text(), count=1)
    d = _user_folder(tmp_path, "prices", "us-2023.toml", text)
    with pytest.raises(catalog.CatalogError, match="0 is not allowed for a energy_price"):
        catalog._checked(catalog.load_prices, d / "prices" / "us-2023.toml")


def test_the_shipped_catalog_is_valid():
    ok, errors = catalog.validate_all()
    assert errors == [] and len(ok) > 20


# --- finding 7: range tags that match the library ------------------------------------------------

def _numeric(d: params.Declared) -> bool:
    v = d.default
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) or (
        isinstance(v, list) and v and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v))


@pytest.mark.parametrize("nb", sorted(p.stem for p in paths.NOTEBOOKS.glob("[0-9]*.ipynb")))
def test_every_number_parameter_has_finite_bounds(nb):
    """Every number a notebook takes is tagged with a range whose two ends are finite (a
    number or another parameter), and its default lies in it."""
    decl = params.declared_parameters(nb)
    defaults = {k: d.default for k, d in decl.items()}
    for name, d in decl.items():
        if not _numeric(d):
            continue
        assert d.tag in ("range", "in", "layout"), f"{nb}: {name} = {d.default!r} has tag [{d.tag}], not a [range]"
        if d.tag == "range":
            lo, _, _, hi = params.parse_range(d.tag_arg[0])
            for end in (lo, hi):
                assert end in defaults or math.isfinite(float(end)), (nb, name, end)
    params.check_parameters(nb)  # the defaults pass their own tags


@pytest.mark.parametrize("nb,values,words", [
    ("02_placement", {"reserve": 1.0}, "(0 <= x < 1)"),
    ("02_placement", {"reserve": -0.1}, "(0 <= x < 1)"),
    ("02_placement", {"sweep_contexts": []}, "give at least one value"),
    ("01_bandwidth", {"batches": []}, "give at least one value"),
    ("01_bandwidth", {"gpu_achieved": float("inf")}, "finite"),
    ("01_bandwidth", {"context": 1e308}, "out of range"),
    ("01_bandwidth", {"gpu_achieved": 1e-320}, "out of range"),
    ("04_cost", {"utilisation": 0.0}, "(0 < x <= 1)"),
    ("04_cost", {"samples": 1}, "(100 <= x <= 10000000)"),
    ("04_cost", {"gpu_prices": "as-stated-jia-2024"}, "unknown system price sheet"),
    ("04_cost", {"lpu_layout": [0, 1, 1]}, "three whole numbers >= 1"),
    ("03_speed", {"gpu_concurrency": 0}, "(1 <= x <= 1000000)"),
    ("03_speed", {"overrides": {"no-such.price.unit": "1 USD"}}, "names no catalog entry"),
])
def test_values_the_library_cannot_take_are_refused(nb, values, words):
    with pytest.raises(params.ParameterError) as e:
        params.check_parameters(nb, values)
    assert words in str(e.value)


def test_positive_refuses_subnormal_numbers():
    d = params.Declared("x", "float", 1.0, "", "positive", ())
    with pytest.raises(params.ParameterError, match="subnormal"):
        params._check_tag(d, 1e-320, "x")
    with pytest.raises(params.ParameterError, match="finite"):
        params._check_tag(d, math.inf, "x")


def test_a_tag_papermill_cannot_read_is_an_error_not_a_lost_parameter(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}}
    nb.cells = [nbformat.v4.new_code_cell("a = 1  # [range: 0 <= x <= 2] uses two '='\nb = 2  # fine",
                                          metadata={"tags": ["parameters"]})]
    f = tmp_path / "two_equals.ipynb"
    nbformat.write(nb, f)
    with pytest.raises(params.ParameterError, match=r"papermill cannot read the parameter line.* of a"):
        params.declared_parameters(f)


# --- --data --------------------------------------------------------------------------------------

def test_data_reaches_the_catalog_validation(tmp_path, monkeypatch, capsys, reports_dir, no_kernel):
    seen = []
    monkeypatch.delenv("LPULAB_DATA", raising=False)
    real = catalog.validate_all
    monkeypatch.setattr(catalog, "validate_all", lambda: seen.append(__import__("os").environ.get("LPULAB_DATA"))
                        or real())
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert cli.main(["catalog", "--validate", "--data", str(a), "--data", str(b)]) == 0
    assert seen[-1] == f"{a}{__import__('os').pathsep}{b}"
    assert cli.main(["--data", str(a), "catalog", "--validate"]) == 0
    assert seen[-1] == str(a)
    _refused(capsys, ["run", "01_bandwidth", "--data", str(tmp_path / "missing")], "--data", "no such folder")


@pytest.mark.notebook
def test_data_reaches_the_kernel(tmp_path, monkeypatch, reports_dir):
    import json

    monkeypatch.delenv("LPULAB_DATA", raising=False)
    d = tmp_path / "mydata"
    d.mkdir()
    probe = Path(__file__).resolve().parent.parent / "fixtures" / "notebooks" / "run_probe.ipynb"
    assert cli.main(["run", str(probe), "-q", "--data", str(d)]) == 0
    (rep,) = [p for p in reports_dir.iterdir() if p.is_dir()]
    assert json.loads((rep / "results.json").read_text())["results"]["env"] == str(d.resolve())


# --- quiet --------------------------------------------------------------------------------------

def test_params_into_a_closed_pipe_is_quiet():
    import subprocess

    p = subprocess.run(f"{sys.executable} -m lpulab.cli params 04_cost | head -1", shell=True, capture_output=True,
                       text=True, timeout=120, cwd=paths.ROOT)
    assert p.stdout.startswith("model") and "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_an_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys):
    monkeypatch.delenv("LPULAB_DEBUG", raising=False)
    monkeypatch.setattr(cli, "cmd_index", lambda ns: 1 / 0)
    assert cli.main(["index"]) == 3
    err = capsys.readouterr().err
    assert "internal error: ZeroDivisionError" in err and "LPULAB_DEBUG=1" in err and "Traceback" not in err
    monkeypatch.setenv("LPULAB_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        cli.main(["index"])
