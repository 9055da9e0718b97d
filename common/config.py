"""Course-wide settings: where data and caches live, quick mode, seeding, the compute device, CPU threads,
and the normalisation constants of the datasets and the pretrained network."""

from __future__ import annotations

import os
import random
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Environment variable that overrides the data directory.
DATA_DIR_ENV = "COURSE_DATA_DIR"
#: Environment variable that overrides the cache directory (trained checkpoints, features, sweeps).
CACHE_DIR_ENV = "COURSE_CACHE_DIR"
#: Environment variable that switches every notebook to quick mode (what CI runs).
QUICK_ENV = "COURSE_QUICK"
#: Environment variable that overrides the number of torch CPU threads chosen by ``set_cpu_threads``.
THREADS_ENV = "COURSE_THREADS"

#: MNIST pixel mean and standard deviation (of [0, 1] pixels over the training set).
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: ImageNet per-channel mean and standard deviation (RGB, [0, 1] pixels), as the pretrained network expects.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def data_dir() -> Path:
    """The directory that holds the datasets: ``$COURSE_DATA_DIR`` if set, else ``<repo>/datasets``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "datasets"


def cache_dir() -> Path:
    """The root of every cache (trained models, features, sweeps): ``$COURSE_CACHE_DIR`` if set, else
    ``<repo>/.cache``. Not created here; writers create the sub-folder they need."""
    env = os.environ.get(CACHE_DIR_ENV)
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache"


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


def default_cpu_threads() -> int:
    """The course's thread policy: half the CPUs this process may run on, at least one (one on a 2-core machine).

    Torch's OpenMP threads busy-wait for each other: when another process takes a core, a step of a
    two-thread run stalls until the descheduled thread gets the core back, and small nets barely gain from
    a second thread even on an idle machine. One thread per two CPUs keeps notebooks that run side by side
    (and Jupyter itself) from stalling each other, at a modest cost on a machine that is otherwise idle.
    ``bench/threads.py`` measures the trade-off; its figures are in ``bench/RESULTS.md``.
    """
    try:
        cpus = len(os.sched_getaffinity(0))  # the CPUs this process may use (containers, taskset)
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def set_cpu_threads(num_threads: int | None = None) -> int:
    """Apply the course's CPU thread policy to torch and return the thread count in use.

    ``num_threads``, else ``$COURSE_THREADS``, else ``default_cpu_threads()``. Call it once, in a notebook's
    setup cell (e.g. ``COURSE_THREADS=2`` on a machine you have to yourself). On a GPU run it only sets the
    CPU side.
    """
    import torch

    if num_threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env and not env.isdigit():
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {env!r}; unset it to use the policy")
        num_threads = int(env) if env else default_cpu_threads()
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    torch.set_num_threads(num_threads)
    return torch.get_num_threads()


def make_generator(seed: int | None = None):
    """A private ``torch.Generator`` seeded with ``seed``; ``None`` seeds it from the operating system's
    entropy. Either way no global generator is read or reseeded."""
    import torch

    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") >> 1
    return torch.Generator().manual_seed(int(seed))
