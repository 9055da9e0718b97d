"""common.parallel.run_jobs: the same results in one process or several, errors reach the caller."""

import os

import pytest

from common.parallel import run_jobs


def _square_and_env(x):
    return x * x, os.environ.get("OMP_NUM_THREADS"), os.getpid()


def _fail_on_one(x):
    if x == 1:
        raise RuntimeError(f"job {x} failed")
    return x


def test_serial_runs_in_order_in_this_process():
    out = list(run_jobs(_square_and_env, {k: (k,) for k in range(4)}, workers=1))
    assert [key for key, _ in out] == [0, 1, 2, 3]
    assert [r[0] for _, r in out] == [0, 1, 4, 9]
    assert {r[2] for _, r in out} == {os.getpid()}


def test_workers_give_the_same_results_in_other_processes_with_one_thread_each():
    out = dict(run_jobs(_square_and_env, {k: (k,) for k in range(6)}, workers=2))
    assert {k: r[0] for k, r in out.items()} == {k: k * k for k in range(6)}
    assert {r[1] for r in out.values()} == {"1"}  # each worker limits its threads
    assert os.getpid() not in {r[2] for r in out.values()}


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_here(workers):
    with pytest.raises(RuntimeError, match="job 1 failed"):
        # one failing job among good ones: its error reaches the caller whichever job finishes first
        list(run_jobs(_fail_on_one, {k: (k,) for k in range(4)}, workers=workers))


def test_bad_worker_count():
    with pytest.raises(ValueError, match="workers"):
        list(run_jobs(_square_and_env, {0: (0,)}, workers=0))
