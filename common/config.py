"""Course-wide settings: where the data lives, quick mode, seeding and the compute device."""
from __future__ import annotations

import os
import random
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment variable that overrides the data directory.
DATA_DIR_ENV = "COURSE_DATA_DIR"
#: Environment variable that switches every notebook to quick mode (what CI runs).
QUICK_ENV = "COURSE_QUICK"


def data_dir() -> Path:
    """The directory that holds the datasets: ``$COURSE_DATA_DIR`` if set, else ``<repo>/datasets``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "datasets"


def is_quick() -> bool:
    """True when ``COURSE_QUICK`` is set to a true value (1, true, yes, on)."""
    return os.environ.get(QUICK_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


#: Quick mode, read once at import. Notebooks use ``QUICK`` to pick smaller sizes.
QUICK = is_quick()


def seed_everything(seed: int = 0) -> None:
    """Seed Python's, NumPy's and (if installed) PyTorch's global generators.

    Call it once, in a notebook's setup cell. The library itself never touches global
    random state: its functions take ``rng``/``seed``/``generator`` arguments.
    """
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)


def get_device(prefer: str | None = None):
    """The best available ``torch.device``: CUDA, then Apple's MPS, then the CPU.

    ``prefer`` ('cuda', 'mps' or 'cpu') forces a choice; an unavailable one is a ``ValueError``.
    """
    import torch

    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if prefer is not None:
        if prefer not in available:
            raise ValueError(f"prefer must be 'cuda', 'mps' or 'cpu', got {prefer!r}")
        if not available[prefer]:
            raise ValueError(f"device {prefer!r} is not available on this machine; use get_device() to pick one")
        return torch.device(prefer)
    for name in ("cuda", "mps", "cpu"):
        if available[name]:
            return torch.device(name)
