"""Independent jobs (an ablation's or a sweep's training runs) spread over the CPUs nothing else is using.

``run_jobs(fn, jobs)`` calls ``fn(*args)`` for every ``key: args`` of ``jobs`` and yields ``(key, result)`` as each
finishes. With one worker it runs them in this process, in order; with more it starts that many fresh Python
processes ("spawn", the same on every OS and safe in a process that holds threads), each limited to one CPU
thread so that the workers do not compete with each other. Jobs must be seeded: then the results do not depend
on how many processes share them, only the wall time does.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed

from common.config import THREADS_ENV, idle_cpus

__all__ = ["run_jobs"]

#: Environment of a worker process: one thread for torch (``set_cpu_threads``), OpenMP and the BLAS libraries.
_WORKER_ENV = {
    THREADS_ENV: "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}


def _start_worker() -> None:
    # runs in each fresh worker before its first job imports numpy or torch
    os.environ.update(_WORKER_ENV)


def run_jobs(fn: Callable, jobs: dict, workers: int | None = None) -> Iterator[tuple[object, object]]:
    """Yield ``(key, fn(*args))`` for each ``key: args`` of ``jobs`` as it finishes.

    ``workers``: how many processes; None asks ``common.config.idle_cpus()`` (every CPU while the machine is
    otherwise idle, fewer next to other work, one when ``$COURSE_THREADS`` is set). ``fn`` must be a module-level
    function and ``args`` picklable, since they travel to the workers. An exception in a job is raised here.
    """
    workers = min(idle_cpus() if workers is None else workers, max(1, len(jobs)))
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for key, args in jobs.items():
            yield key, fn(*args)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker) as pool:
        futures = {pool.submit(fn, *args): key for key, args in jobs.items()}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            for future in futures:  # stopped early (an error, or the caller broke off): drop the jobs not started
                future.cancel()
