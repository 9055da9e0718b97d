"""Notebooks stay clean in git: the nbstripout filter's settings, the committed notebooks, the save hook."""

import json
import runpy
import shutil
import subprocess
import sys

import nbformat
import pytest
from traitlets.config import Config

from common.config import REPO_ROOT
from tools import notebook_filter

NOTEBOOKS = sorted(REPO_ROOT.glob("assignment*/*.ipynb"))
# What JupyterLab writes back, after the filter (and the save hook) cut language_info to its name.
COMMITTED_METADATA = {
    "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}
KERNEL_LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
    "version": "3.11.7",
}


def run_notebook_as_jupyterlab_saves_it() -> nbformat.NotebookNode:
    """A notebook after a run and a save: outputs, counts, timings, widget state, the kernel's details."""
    code = nbformat.v4.new_code_cell(
        "print(1)",
        id="setup-cell",
        execution_count=3,
        outputs=[nbformat.v4.new_output("stream", name="stdout", text="1\n")],
    )
    code.metadata.update(
        nbgrader={"grade": True, "grade_id": "q1", "points": 2},
        tags=["exercise"],
        execution={"iopub.status.busy": "2026-01-01T00:00:00Z"},
        scrolled=True,
    )
    text = nbformat.v4.new_markdown_cell("# Title", id="title")
    text.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True}
    nb = nbformat.v4.new_notebook(cells=[text, code])
    nb.metadata.update(
        kernelspec=COMMITTED_METADATA["kernelspec"],
        language_info=dict(KERNEL_LANGUAGE_INFO),
        widgets={"application/vnd.jupyter.widget-state+json": {"state": {}}},
    )
    return nb


def test_the_filter_drops_outputs_and_run_metadata_and_keeps_ids_and_nbgrader():
    nb = notebook_filter.strip(run_notebook_as_jupyterlab_saves_it())
    text, code = nb.cells
    assert nb.metadata == COMMITTED_METADATA
    assert code.outputs == [] and code.execution_count is None
    assert (text.id, code.id) == ("title", "setup-cell")
    assert code.metadata == {"nbgrader": {"grade": True, "grade_id": "q1", "points": 2}, "tags": ["exercise"]}
    assert text.metadata == {"nbgrader": {"grade": False, "solution": False, "locked": True}}


def test_strip_agrees_with_the_nbstripout_command_git_runs(tmp_path):
    raw = nbformat.writes(run_notebook_as_jupyterlab_saves_it())
    extra = ["--extra-keys", " ".join(notebook_filter.EXTRA_KEYS)]  # what git config's extrakeys adds
    done = subprocess.run(
        [sys.executable, "-m", "nbstripout", *notebook_filter.OPTIONS, *extra],
        input=raw,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    ours = nbformat.writes(notebook_filter.strip(nbformat.reads(raw, as_version=4))) + "\n"
    assert done.stdout == ours


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_are_what_the_filter_stores(path):
    rel = path.relative_to(REPO_ROOT)
    assert json.loads(path.read_text())["metadata"] == COMMITTED_METADATA, f"{rel}: unexpected top-level metadata"
    assert path.read_text(encoding="utf-8") == notebook_filter.canonical_text(path), (
        f"{rel} is not stored as JupyterLab and the git filter write it (outputs, run metadata or formatting); "
        f"fix it with `.venv/bin/python -m tools.notebook_filter strip {rel}`"
    )


def test_the_save_hook_keeps_only_the_language_name():
    config = Config()
    runpy.run_path(str(REPO_ROOT / "jupyter-config" / "jupyter_server_config.py"), init_globals={"c": config})
    hook = config.FileContentsManager.pre_save_hook
    model = {"type": "notebook", "content": {"metadata": {"language_info": dict(KERNEL_LANGUAGE_INFO)}}}
    hook(model=model, path="x.ipynb", contents_manager=None)
    assert model["content"]["metadata"]["language_info"] == {"name": "python"}
    other = {"type": "file", "content": "text"}
    hook(model=other, path="x.txt", contents_manager=None)
    assert other == {"type": "file", "content": "text"}


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_sees_no_change_after_a_run_and_a_save(tmp_path):
    def git(*args):
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    git("init", "-q")
    shutil.copy(REPO_ROOT / ".gitattributes", tmp_path / ".gitattributes")
    assert notebook_filter.install(tmp_path) == 0
    clean = notebook_filter.strip(run_notebook_as_jupyterlab_saves_it())
    (tmp_path / "nb.ipynb").write_text(nbformat.writes(clean) + "\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "clean notebook")
    (tmp_path / "nb.ipynb").write_text(nbformat.writes(run_notebook_as_jupyterlab_saves_it()) + "\n")
    assert git("diff", "--stat") == ""
    git("add", "nb.ipynb")  # what `git commit -a` would store: nothing new
    assert git("diff", "--cached", "--stat") == ""
    assert git("status", "--porcelain") == ""


def test_install_does_nothing_outside_a_git_work_tree(tmp_path, capsys):
    assert notebook_filter.install(tmp_path) == 0
    assert "not a git work tree" in capsys.readouterr().out
