"""common.config: data directory, quick mode, seeding, device choice."""

import random

import numpy as np
import pytest
import torch

from common import config


def test_data_dir_defaults_to_repo_datasets(monkeypatch):
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    assert config.data_dir() == config.REPO_ROOT / "datasets"


def test_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "elsewhere"))
    assert config.data_dir() == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    "value, expected",
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("", False), ("no", False)],
)
def test_quick_mode_values(monkeypatch, value, expected):
    monkeypatch.setenv("COURSE_QUICK", value)
    assert config.is_quick() is expected


def test_seed_everything_makes_all_generators_repeat():
    config.seed_everything(123)
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    config.seed_everything(123)
    second = (random.random(), np.random.rand(), torch.rand(1).item())
    assert first == second
    config.seed_everything(124)
    assert np.random.rand() != first[1]


def test_get_device_picks_an_available_one():
    device = config.get_device()
    assert isinstance(device, torch.device)
    if torch.cuda.is_available():
        assert device.type == "cuda"
    assert config.get_device("cpu") == torch.device("cpu")


def test_get_device_rejects_unknown_and_unavailable():
    with pytest.raises(ValueError, match="prefer must be"):
        config.get_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            config.get_device("cuda")
