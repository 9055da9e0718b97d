"""Course-wide settings: where data and caches live, quick mode, seeding, the compute device, CPU threads,
and the normalisation constants of the datasets and the pretrained network."""

from __future__ import annotations

import math
import os
import random
import time
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
    return max(1, _available_cpus() // 2)


def _policy_threads(num_threads: int | None) -> int:
    """``num_threads``, else ``$COURSE_THREADS``, else ``default_cpu_threads()``; ValueError if not positive."""
    if num_threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env and not env.isdigit():
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {env!r}; unset it to use the policy")
        num_threads = int(env) if env else default_cpu_threads()
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    return num_threads


def set_cpu_threads(num_threads: int | None = None) -> int:
    """Apply the course's CPU thread policy to torch and return the thread count in use.

    ``num_threads``, else ``$COURSE_THREADS``, else ``default_cpu_threads()``. Call it once, in a notebook's
    setup cell (e.g. ``COURSE_THREADS=2`` on a machine you have to yourself). On a GPU run it only sets the
    CPU side. The NumPy notebooks call ``set_numpy_threads`` instead.
    """
    import torch

    torch.set_num_threads(_policy_threads(num_threads))
    return torch.get_num_threads()


def set_numpy_threads(num_threads: int | None = None) -> int:
    """Apply the course's CPU thread policy to NumPy's BLAS library (OpenBLAS, MKL, ...) and return its thread
    count, chosen as in ``set_cpu_threads``.

    BLAS threads, like torch's, spin while they wait for each other: next to another busy process (a second
    notebook, a training run) a matrix product split over both cores of a 2-core machine waits for whichever
    thread lost its core, and a NumPy notebook slows down severalfold. The course's products are small enough
    that a second thread gains little on a quiet machine (``bench/RESULTS.md``). Call it once, in a NumPy
    notebook's setup cell; it does not import torch.
    """
    import numpy  # noqa: F401  (loads the BLAS library, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_info, threadpool_limits

    wanted = _policy_threads(num_threads)
    threadpool_limits(limits=wanted, user_api="blas")
    counts = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return min(counts) if counts else wanted


#: Environment variable that turns bfloat16 training on a CPU off (0) or on (1) regardless of the CPU.
BF16_ENV = "COURSE_CPU_BF16"


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU multiplies bfloat16 natively (x86 ``avx512_bf16`` or ``amx_bf16``, read from Linux's
    ``/proc/cpuinfo``). Elsewhere bfloat16 is emulated and slower than float32, so this is False."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def training_autocast_dtype(device) -> object | None:
    """The reduced precision a training loop should autocast to on ``device``, or None for float32.

    On a CPU with native bfloat16 (``cpu_has_bf16``), ``torch.bfloat16``: oneDNN's convolutions and matrix
    products then run on bfloat16 inputs with float32 accumulation, while the weights, the optimiser and the
    loss stay in float32. Everywhere else None (GPUs keep float32 too, so results match across machines).
    ``$COURSE_CPU_BF16`` set to 0 or 1 overrides the detection.
    """
    import torch

    if torch.device(device).type != "cpu":
        return None
    env = os.environ.get(BF16_ENV, "").strip().lower()
    if env not in {"", "0", "1", "true", "false", "yes", "no", "on", "off"}:
        raise ValueError(f"${BF16_ENV} must be 0 or 1, got {env!r}; unset it to follow the CPU")
    enabled = env in {"1", "true", "yes", "on"} if env else cpu_has_bf16()
    return torch.bfloat16 if enabled else None


def training_precision(device) -> str:
    """``"bfloat16"`` or ``"float32"``: what ``training_autocast_dtype(device)`` trains in, for cache keys (weights
    trained in one precision are never loaded as the other's)."""
    import torch

    return str(training_autocast_dtype(device) or torch.float32).removeprefix("torch.")


def _available_cpus() -> int:
    """The CPUs this process may run on (containers, taskset), or all of them where that is unknown."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _busy_cpu_seconds() -> float | None:
    """CPU seconds all CPUs have spent busy since boot (Linux ``/proc/stat``; time taken by the hypervisor
    counts as busy), or None where that file does not exist."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def idle_cpus(busy_cores: float = 0.3, interval: float = 0.25) -> int:
    """How many worker processes a batch of independent CPU jobs (e.g. an ablation's training runs) should use.

    Every CPU this process may run on while other processes keep less than ``busy_cores`` CPUs busy between them
    (read from ``/proc/stat`` over ``interval`` seconds, this process's own time excluded); otherwise the CPUs they
    leave free, and at least one. ``$COURSE_THREADS`` fixes the answer (``make``'s one-thread runs use one
    worker); where the load cannot be read (macOS, Windows) it is the course's policy, ``default_cpu_threads()``.
    """
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {env!r}; unset it to use the policy")
        return int(env)
    free = _available_cpus()
    before, own_before = _busy_cpu_seconds(), LoadAwareThreads._own_cpu_seconds()
    if before is None or free <= 1:
        return default_cpu_threads()
    start = time.monotonic()
    time.sleep(interval)
    elapsed = time.monotonic() - start
    others = max(0.0, (_busy_cpu_seconds() - before) - (LoadAwareThreads._own_cpu_seconds() - own_before)) / elapsed
    if others <= busy_cores:
        return free
    return max(1, free - math.ceil(others - busy_cores))


class LoadAwareThreads:
    """Torch CPU threads for a heavy training loop that follow the machine's load.

    While no other process keeps a CPU busy, the loop uses every CPU this process may run on; as soon as
    other processes use more than ``busy_cores`` CPUs between them, it falls back to the count in use when
    it started (the course's policy, ``set_cpu_threads``). Two threads on an idle 2-core machine train a
    convnet much faster than one, but next to a busy process OpenMP's threads wait for each other while one
    of them has lost its core, and a step can take many times longer (``bench/threads.py`` measures both).

    ``poll()`` between training steps re-reads the load at most every ``interval`` seconds (the first time after
    a quarter of it): the CPU time all CPUs were busy (``/proc/stat``) minus this process's own. A new instance
    entered within ``interval`` of another's last reading starts from that reading's decision (back-to-back
    runs, or a run and its test predictions, do not start over: entering applies it). Where the load cannot be
    read (macOS, Windows), when ``$COURSE_THREADS`` fixes the count, with a single CPU, or for a run on another
    ``device`` than the CPU, it never changes anything. Use it as a context manager; the count in use before is
    restored on exit. ``changes`` counts the switches.
    """

    #: (monotonic time, starting count, decision) of the latest reading of any instance.
    _recent: tuple[float, int, int] | None = None

    def __init__(self, device="cpu", busy_cores: float = 0.3, interval: float = 1.0):
        if busy_cores <= 0 or interval <= 0:
            raise ValueError(f"busy_cores and interval must be positive, got {busy_cores} and {interval}")
        import torch

        self.on_cpu = torch.device(device).type == "cpu"
        self.busy_cores, self.interval = busy_cores, interval
        self.changes = 0
        self._base = None
        self._last = None  # (wall clock, busy CPU seconds of all CPUs, this process's CPU seconds)

    @staticmethod
    def _own_cpu_seconds() -> float:
        t = os.times()
        return t.user + t.system

    def _sample(self):
        busy = _busy_cpu_seconds()
        if busy is None:
            return None
        return time.monotonic(), busy, self._own_cpu_seconds()

    def __enter__(self) -> LoadAwareThreads:
        import torch

        self._base = torch.get_num_threads()
        self._free = _available_cpus()
        fixed = os.environ.get(THREADS_ENV, "").strip() != ""
        self._last = None if fixed or not self.on_cpu or self._free <= self._base else self._sample()
        self._window = self.interval / 4  # a first decision soon, then one per interval
        self._wanted = self._base
        recent = LoadAwareThreads._recent
        if self._last is not None and recent is not None:
            seen, base, wanted = recent
            if base == self._base and self._last[0] - seen <= self.interval:
                self._wanted = wanted
                torch.set_num_threads(wanted)
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self._base is not None and torch.get_num_threads() != self._base:
            torch.set_num_threads(self._base)
        self._last = None

    def others_busy(self) -> float | None:
        """CPUs other processes kept busy since the last reading (None until ``interval`` has passed)."""
        if self._last is None:
            return None
        now = self._sample()
        elapsed = now[0] - self._last[0]
        if elapsed < self._window:
            return None
        self._window = self.interval
        others = max(0.0, (now[1] - self._last[1]) - (now[2] - self._last[2])) / elapsed
        self._last = now
        return others

    def poll(self) -> int:
        """Decide between all CPUs and the starting count when a new reading of the load is due, and apply the
        decision (also after other code changed the count); returns the count in use."""
        import torch

        others = self.others_busy()
        if others is not None:
            wanted = self._base if others > self.busy_cores else self._free
            self.changes += wanted != self._wanted
            self._wanted = wanted
            LoadAwareThreads._recent = (self._last[0], self._base, wanted)
        if self._wanted != torch.get_num_threads():
            torch.set_num_threads(self._wanted)
        return self._wanted


def make_generator(seed: int | None = None):
    """A private ``torch.Generator`` seeded with ``seed``; ``None`` seeds it from the operating system's
    entropy. Either way no global generator is read or reseeded."""
    import torch

    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little") >> 1
    return torch.Generator().manual_seed(int(seed))
