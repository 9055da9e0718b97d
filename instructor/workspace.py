"""Where the instructor tools run the course's checks: a copy of the instructor tree, and the environment of
quick-mode checks (used by ``check_release`` for each stubbed block and by ``grade`` for each submission)."""

from __future__ import annotations

import shutil
from pathlib import Path

#: What a copy of the tree leaves out: version control, environments, editions, caches, reports. The datasets
#: are linked, not copied.
_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "dist",
    ".cache",
    "datasets",
    "__pycache__",
    "*.egg-info",
    ".ipynb_checkpoints",
    "build",
    ".browser-test",
    "grades",
)

#: The environment every check runs with, on top of its tree's ``PYTHONPATH`` and cache folder: quick mode,
#: no display, one thread per process (the runs go side by side), no bytecode written into the tree.
QUICK_CHECK_ENV = {
    "COURSE_QUICK": "1",
    "MPLBACKEND": "Agg",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "COURSE_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}


def copy_instructor_tree(root: Path, dest: Path) -> Path:
    """Copy the course at ``root`` to ``dest`` (which must not exist) with the datasets linked; returns ``dest``."""
    shutil.copytree(root, dest, ignore=_IGNORE, symlinks=True)
    (dest / "datasets").symlink_to(root / "datasets")
    return dest
