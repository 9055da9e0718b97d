"""Repository hygiene: the set-up files agree, notebooks are committed clean and listed in the README."""

import json
import re

import tomllib

from common.config import REPO_ROOT

NOTEBOOKS = sorted(p for p in REPO_ROOT.glob("assignment*/*.ipynb"))


def test_torch_pin_agrees_between_makefile_and_environment_yml():
    make_pin = re.search(r"^TORCH_VERSION \?= (\S+)$", (REPO_ROOT / "Makefile").read_text(), re.M).group(1)
    env = (REPO_ROOT / "environment.yml").read_text()
    assert f"- torch=={make_pin}" in env
    assert "- -e .[dev]" in env  # conda installs the project from pyproject.toml, so the two cannot drift


def test_pyproject_declares_what_the_test_command_uses():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    dev = " ".join(project["optional-dependencies"]["dev"])
    for tool in ("pytest", "pytest-xdist", "nbval"):
        assert tool in dev
    runtime = " ".join(project["dependencies"])
    for package in ("numpy", "torch", "matplotlib", "tqdm", "jupyterlab", "scikit-learn"):
        assert package in runtime


def test_there_are_notebooks_in_every_assignment():
    for k in (1, 2, 3):
        assert list(REPO_ROOT.glob(f"assignment{k}/*.ipynb")), f"assignment{k}/ has no notebook"


def test_notebooks_are_committed_without_outputs():
    dirty = []
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        if any(c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count")) for c in cells):
            dirty.append(path.name)
    assert not dirty, f"clear the outputs of {dirty} before committing"


def test_every_notebook_is_listed_in_the_readme_and_vice_versa():
    readme = (REPO_ROOT / "README.md").read_text()
    listed = set(re.findall(r"\((assignment\d/[A-Za-z0-9_]+\.ipynb)\)", readme))
    on_disk = {p.relative_to(REPO_ROOT).as_posix() for p in NOTEBOOKS}
    assert on_disk - listed == set(), "notebooks missing from the README's list"
    assert listed - on_disk == set(), "the README lists notebooks that do not exist"


def test_notebooks_start_with_the_setup_cell_and_import_the_library():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        assert code and "seed_everything" in code[0], f"{path.name}: the first code cell must seed"
        assert any("from common" in src for src in code), f"{path.name} does not use the common package"
        assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
