"""The CPU thread policy: common.config.default_cpu_threads, set_cpu_threads and LoadAwareThreads (measured in
bench/threads.py), and the choice of bfloat16 training on CPUs that have it."""

import os

import pytest
import torch

from common import config


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cpus, expected", [(1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (64, 32)])
def test_policy_is_one_thread_per_two_cpus(monkeypatch, cpus, expected):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    assert config.default_cpu_threads() == expected


def test_policy_without_sched_getaffinity(monkeypatch):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert config.default_cpu_threads() == 3


def test_set_cpu_threads_applies_the_policy_or_an_override(monkeypatch, restore_threads):
    monkeypatch.delenv("COURSE_THREADS", raising=False)
    assert config.set_cpu_threads() == config.default_cpu_threads() == torch.get_num_threads()
    assert config.set_cpu_threads(2) == 2 == torch.get_num_threads()
    monkeypatch.setenv("COURSE_THREADS", "3")
    assert config.set_cpu_threads() == 3
    assert config.set_cpu_threads(1) == 1  # an explicit argument wins over the environment


def test_bad_thread_counts_are_clear_errors(monkeypatch, restore_threads):
    with pytest.raises(ValueError, match="num_threads"):
        config.set_cpu_threads(0)
    monkeypatch.setenv("COURSE_THREADS", "two")
    with pytest.raises(ValueError, match="COURSE_THREADS"):
        config.set_cpu_threads()


@pytest.fixture
def restore_blas_threads():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=None, user_api="blas"):  # changes nothing; restores the counts on exit
        yield


def _blas_threads() -> set[int]:
    from threadpoolctl import threadpool_info

    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_set_numpy_threads_sets_numpys_blas_library(monkeypatch, restore_blas_threads):
    import numpy as np

    assert _blas_threads(), "NumPy's BLAS library is not visible to threadpoolctl"
    monkeypatch.delenv("COURSE_THREADS", raising=False)
    assert config.set_numpy_threads() == config.default_cpu_threads()
    assert _blas_threads() == {config.default_cpu_threads()}
    assert config.set_numpy_threads(2) == 2 and _blas_threads() == {2}
    monkeypatch.setenv("COURSE_THREADS", "1")
    assert config.set_numpy_threads() == 1 and _blas_threads() == {1}
    a = np.random.default_rng(0).standard_normal((300, 300))
    np.testing.assert_allclose(a @ a.T, (a @ a.T).T, atol=1e-9)  # products still work after the change
    with pytest.raises(ValueError, match="num_threads"):
        config.set_numpy_threads(0)
    monkeypatch.setenv("COURSE_THREADS", "many")
    with pytest.raises(ValueError, match="COURSE_THREADS"):
        config.set_numpy_threads()


class FakeMachine:
    """A clock, the busy CPU seconds of all CPUs and this process's CPU seconds, advanced by hand."""

    def __init__(self, monkeypatch, cpus=2):
        self.now = self.busy = self.own = 0.0
        monkeypatch.setattr(config, "_available_cpus", lambda: cpus)
        monkeypatch.setattr(config, "_busy_cpu_seconds", lambda: self.busy)
        monkeypatch.setattr(config.LoadAwareThreads, "_own_cpu_seconds", staticmethod(lambda: self.own))
        monkeypatch.setattr(config.time, "monotonic", lambda: self.now)
        monkeypatch.delenv("COURSE_THREADS", raising=False)
        monkeypatch.setattr(config.LoadAwareThreads, "_recent", None)

    def run(self, seconds, ours, others):
        """``seconds`` pass with this process on ``ours`` CPUs and other processes on ``others``."""
        self.now += seconds
        self.own += ours * seconds
        self.busy += (ours + others) * seconds


def test_load_aware_threads_take_every_cpu_only_while_nothing_else_is_busy(monkeypatch, restore_threads):
    machine = FakeMachine(monkeypatch)
    torch.set_num_threads(1)
    with config.LoadAwareThreads(busy_cores=0.3, interval=1.0) as threads:
        assert threads.poll() == 1 == torch.get_num_threads()  # no reading yet
        machine.run(0.1, ours=1, others=0)
        assert threads.poll() == 1  # the first reading comes after a quarter of the interval
        machine.run(0.2, ours=1, others=0.05)
        assert threads.poll() == 2 == torch.get_num_threads()  # idle machine: both CPUs
        machine.run(0.5, ours=2, others=1)
        assert threads.poll() == 2  # later readings once per interval
        machine.run(0.6, ours=1.4, others=0.6)  # a busy process appeared: 0.6 + 0.5 others in 1.1 s
        assert threads.poll() == 1 == torch.get_num_threads()
        torch.set_num_threads(2)  # other code changed the count: the decision is applied again
        assert threads.poll() == 1 == torch.get_num_threads()
        machine.run(1.0, ours=1, others=1)
        assert threads.poll() == 1
        machine.run(1.0, ours=1, others=0.1)  # it finished
        assert threads.poll() == 2
        assert threads.changes == 3
    assert torch.get_num_threads() == 1  # the count from before is restored
    machine.run(0.5, ours=1, others=0)
    with config.LoadAwareThreads(interval=1.0) as threads:  # right after: it starts from the last decision
        assert torch.get_num_threads() == 2  # applied on entering
        assert threads.poll() == 2 == torch.get_num_threads()
    machine.run(1.5, ours=1, others=0)
    with config.LoadAwareThreads(interval=1.0) as threads:  # later: from the policy's count again
        assert threads.poll() == 1


@pytest.mark.parametrize("case", ["COURSE_THREADS set", "no /proc/stat", "one CPU", "a GPU run"])
def test_load_aware_threads_change_nothing_when_they_cannot_or_must_not(monkeypatch, restore_threads, case):
    machine = FakeMachine(monkeypatch, cpus=1 if case == "one CPU" else 2)
    if case == "COURSE_THREADS set":
        monkeypatch.setenv("COURSE_THREADS", "1")
    if case == "no /proc/stat":
        monkeypatch.setattr(config, "_busy_cpu_seconds", lambda: None)
    torch.set_num_threads(1)
    with config.LoadAwareThreads("cuda" if case == "a GPU run" else "cpu") as threads:
        for _ in range(3):
            machine.run(1.0, ours=1, others=0)
            assert threads.poll() == 1 == torch.get_num_threads()
    with pytest.raises(ValueError, match="busy_cores"):
        config.LoadAwareThreads(busy_cores=0)


def test_busy_cpu_seconds_reads_this_machine():
    busy = config._busy_cpu_seconds()
    if not os.path.exists("/proc/stat"):
        assert busy is None
    else:
        assert busy > 0
        sum(range(2_000_000))  # some work of our own
        assert config._busy_cpu_seconds() >= busy


def test_bf16_follows_the_cpu_flags_and_the_override(tmp_path, monkeypatch):
    with_bf16, without = tmp_path / "bf16", tmp_path / "plain"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert config.cpu_has_bf16(str(with_bf16)) and not config.cpu_has_bf16(str(without))
    assert not config.cpu_has_bf16(str(tmp_path / "missing"))  # macOS, Windows: float32
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: True)
    monkeypatch.delenv("COURSE_CPU_BF16", raising=False)
    assert config.training_autocast_dtype("cpu") is torch.bfloat16
    assert config.training_autocast_dtype(torch.device("cuda")) is None  # GPUs keep float32
    monkeypatch.setenv("COURSE_CPU_BF16", "0")
    assert config.training_autocast_dtype("cpu") is None
    monkeypatch.setattr(config, "cpu_has_bf16", lambda: False)
    monkeypatch.setenv("COURSE_CPU_BF16", "1")
    assert config.training_autocast_dtype("cpu") is torch.bfloat16
    monkeypatch.setenv("COURSE_CPU_BF16", "maybe")
    with pytest.raises(ValueError, match="COURSE_CPU_BF16"):
        config.training_autocast_dtype("cpu")


def test_idle_cpus_counts_the_cpus_other_processes_leave_free(monkeypatch):
    machine = FakeMachine(monkeypatch, cpus=4)
    others = {"now": 0.0}
    monkeypatch.setattr(config.time, "sleep", lambda s: machine.run(s, ours=0.5, others=others["now"]))
    assert config.idle_cpus() == 4  # idle: every CPU (our own work does not count)
    others["now"] = 0.2
    assert config.idle_cpus(busy_cores=0.3) == 4  # a little background noise
    others["now"] = 1.0
    assert config.idle_cpus(busy_cores=0.3) == 3  # one busy process: the CPUs it leaves
    others["now"] = 6.0
    assert config.idle_cpus() == 1  # overloaded: still one
    monkeypatch.setenv("COURSE_THREADS", "2")
    assert config.idle_cpus() == 2  # fixed by the environment
    monkeypatch.setenv("COURSE_THREADS", "0")
    with pytest.raises(ValueError, match="COURSE_THREADS"):
        config.idle_cpus()


def test_idle_cpus_falls_back_to_the_policy_where_the_load_cannot_be_read(monkeypatch):
    FakeMachine(monkeypatch, cpus=4)
    monkeypatch.setattr(config, "_busy_cpu_seconds", lambda: None)
    assert config.idle_cpus() == config.default_cpu_threads() == 2
    FakeMachine(monkeypatch, cpus=1)
    assert config.idle_cpus() == 1
