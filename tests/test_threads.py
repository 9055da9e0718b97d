"""The CPU thread policy: common.config.default_cpu_threads and set_cpu_threads (measured in bench/threads.py)."""

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
