"""Keep notebooks clean in git: nbstripout as a git filter that drops outputs and what Jupyter adds on save.

``python -m tools.notebook_filter install`` (run by the Makefile's set-up) configures this clone: git then
stores every ``*.ipynb`` (see ``.gitattributes``) as nbstripout cleans it, so outputs, execution counts,
widget state, cell timings and the kernel's version details in ``metadata.language_info`` never reach a
commit, and a notebook that was opened, run and saved in JupyterLab shows no change in ``git status``.
Cell ids and all other cell metadata (``nbgrader``, ``tags``, ...) are kept.

``python -m tools.notebook_filter strip FILE...`` rewrites notebooks in place as the filter would store them.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What nbstripout's command line drops besides outputs and execution counts (its built-in list).
NBSTRIPOUT_DEFAULT_KEYS = [
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
]
# Dropped on top of those: what a kernel or an editor writes back on save that differs between machines.
# language_info keeps only its name, as the committed notebooks do.
EXTRA_KEYS = [
    "metadata.language_info.codemirror_mode",
    "metadata.language_info.file_extension",
    "metadata.language_info.mimetype",
    "metadata.language_info.nbconvert_exporter",
    "metadata.language_info.pygments_lexer",
    "metadata.language_info.version",
    "metadata.vscode",
]
# Cell ids are what JupyterLab and nbgrader know a cell by: keep them instead of renumbering.
OPTIONS = ["--keep-id"]


def filter_command(python: str = sys.executable) -> str:
    """The clean command git runs on every notebook it stores."""
    return f'"{python}" -m nbstripout ' + " ".join(OPTIONS)


def in_git_work_tree(root: Path = ROOT) -> bool:
    done = subprocess.run(
        ["git", "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True, check=False
    )
    return done.returncode == 0 and done.stdout.strip() == "true"


def install(root: Path = ROOT) -> int:
    """Configure the filter in this clone's git config (idempotent); outside a git work tree, do nothing."""
    if not in_git_work_tree(root):
        print("notebook filter: not a git work tree, nothing to install")
        return 0
    settings = {
        "filter.nbstripout.clean": filter_command(),
        "filter.nbstripout.smudge": "cat",
        "filter.nbstripout.required": "true",
        "filter.nbstripout.extrakeys": " ".join(EXTRA_KEYS),
        "diff.ipynb.textconv": filter_command() + " -t",
    }
    for key, value in settings.items():
        subprocess.run(["git", "config", "--local", key, value], cwd=root, check=True)
    return 0


def strip(nb):
    """The notebook as the filter stores it (``nb`` is an nbformat NotebookNode, changed in place)."""
    from nbstripout import strip_output

    keys = NBSTRIPOUT_DEFAULT_KEYS + EXTRA_KEYS
    return strip_output(nb, keep_output=None, keep_count=False, keep_id=True, extra_keys=keys)


def canonical_text(path: Path) -> str:
    """The text git stores for the notebook at ``path``: stripped and written the way nbformat writes."""
    import nbformat

    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    return nbformat.writes(strip(nb)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("install", help="configure the git filter in this clone")
    strip_cmd = sub.add_parser("strip", help="rewrite notebooks in place as the filter stores them")
    strip_cmd.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    if args.command == "install":
        return install()
    for path in args.files:
        text = canonical_text(path)
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"stripped {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
