"""The GAN caches under faults: damaged and crafted files, interrupted training, global RNG state, two processes."""

import os
import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from common.config import training_precision
from common.experiments.gan import GANTrainConfig, gan_cache_entry, train_gan, train_gan_cached
from common.experiments.gan_scoring import (
    ClassifierTrainConfig,
    classifier_cache_entry,
    get_mnist_classifier,
    train_classifier,
)
from common.torch_models.gan import GANConfig, build_gan
from common.torch_models.mnist import MNISTClassifierConfig
from common.training.checkpoint import CacheWarning
from tests.cache_faults import DAMAGE_KINDS, damage, write_crafted_pickle

CPU = torch.device("cpu")
SMALL_GAN = GANConfig(latent_dim=8, g_hidden=(16, 32), d_hidden=(16,))
GAN_TRAIN = GANTrainConfig(num_steps=6, batch_size=16, log_every=1, checkpoint_every=2, num_samples=4)
SMALL_CLF = MNISTClassifierConfig(channels=(2, 4), hidden=8)
CLF_TRAIN = ClassifierTrainConfig(epochs=1, batch_size=64)


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("COURSE_CACHE_DIR", str(root))
    return root


def _images(n=64, seed=0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1  # (n, 1, 28, 28) in [-1, 1]


def _digits(seed=0) -> SimpleNamespace:
    """Random images and labels standing in for MNIST (what matters here is the cache, not accuracy)."""
    rng = np.random.default_rng(seed)
    return SimpleNamespace(
        X_train=rng.integers(0, 256, (128, 1, 28, 28), dtype=np.uint8),
        y_train=rng.integers(0, 10, 128),
        X_test=rng.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8),
        y_test=rng.integers(0, 10, 32),
    )


def _train_gan(X, callback=None, seed=0) -> tuple[dict, torch.nn.Module]:
    G, D = build_gan(SMALL_GAN, seed=seed)
    return train_gan_cached(G, D, X, GAN_TRAIN, name="toy", device=CPU, callback=callback, progress=False), G


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def _gan_path(X, partial: bool):
    entry = gan_cache_entry("toy", SMALL_GAN, GAN_TRAIN, X, precision=training_precision(CPU))
    return entry.partial.path if partial else entry.path


def _leave_partial(X) -> None:
    """An interrupted run: stopped by its callback after the step-2 checkpoint."""

    def stop(step, G):
        if step == 4:
            raise KeyboardInterrupt
        return step

    with pytest.raises(KeyboardInterrupt):
        _train_gan(X, callback=stop)
    assert _gan_path(X, partial=True).is_file() and not _gan_path(X, partial=False).exists()


# ----------------------------------------------------------------------------------------------------------
# GAN cache
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("partial", [False, True], ids=["final", "partial"])
@pytest.mark.parametrize("how", DAMAGE_KINDS)
def test_damaged_gan_cache_is_rebuilt_with_a_warning(cache_root, how, partial):
    X = _images()
    reference, G_ref = _train_gan(X)
    if partial:
        _gan_path(X, False).unlink()
        _leave_partial(X)
    path = damage(_gan_path(X, partial), how)
    with pytest.warns(CacheWarning, match=re.escape(str(path))):
        history, G = _train_gan(X)
    assert not history["from_cache"] and history["resumed_from"] == 0
    assert history["d_loss"] == reference["d_loss"] and _states_equal(G, G_ref)  # rebuilt from scratch
    assert _train_gan(X, seed=4)[0]["from_cache"]  # and stored again, readable


@pytest.mark.parametrize("partial", [False, True], ids=["final", "partial"])
def test_crafted_gan_cache_never_runs_code(cache_root, tmp_path, partial):
    X = _images()
    marker = tmp_path / "code_ran"
    path = write_crafted_pickle(_gan_path(X, partial), marker)
    with pytest.warns(CacheWarning, match=re.escape(str(path))):
        history, _ = _train_gan(X)
    assert not marker.exists()
    assert not history["from_cache"] and history["resumed_from"] == 0
    assert _train_gan(X)[0]["from_cache"]


def test_interrupted_gan_training_resumes_from_its_checkpoint(cache_root):
    X = _images()
    G_full, D_full = build_gan(SMALL_GAN, seed=0)
    full = train_gan_cached(
        G_full, D_full, X, GAN_TRAIN, name="toy", device=CPU, progress=False, cache=False, callback=lambda step, G: step
    )
    _leave_partial(X)
    steps_trained = []
    history, G = _train_gan(X, callback=lambda step, G: steps_trained.append(step) or step, seed=7)
    assert history["resumed_from"] == 2 and steps_trained == [4, 6]  # only the steps after the checkpoint
    assert not history["from_cache"] and history["callback"] == full["callback"]
    assert history["step"] == full["step"] and history["d_loss"] == full["d_loss"]  # the history continues
    assert _states_equal(G, G_full)
    assert _gan_path(X, False).is_file() and not _gan_path(X, True).exists()


def test_gan_training_takes_a_device_and_leaves_global_rng_alone():
    X = _images()
    G, D = build_gan(SMALL_GAN, seed=0)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    history = train_gan(G, D, X, GAN_TRAIN, device=torch.device("cpu"), progress=False)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert all(isinstance(v, float) for v in history["d_loss"] + history["time"])
    assert all(isinstance(s, np.ndarray) for s in history["samples"].values())


# ----------------------------------------------------------------------------------------------------------
# Classifier cache
# ----------------------------------------------------------------------------------------------------------


def _classifier(data):
    return get_mnist_classifier(SMALL_CLF, CLF_TRAIN, data=data, device=CPU, progress=False)


@pytest.mark.parametrize("how", DAMAGE_KINDS)
def test_damaged_classifier_cache_is_rebuilt_with_a_warning(cache_root, how):
    data = _digits()
    model, info = _classifier(data)
    assert info["path"] == classifier_cache_entry(SMALL_CLF, CLF_TRAIN, data).path
    damage(info["path"], how)
    with pytest.warns(CacheWarning, match=re.escape(str(info["path"]))):
        again, info2 = _classifier(data)
    assert not info2["from_cache"] and _states_equal(model, again)
    assert _classifier(data)[1]["from_cache"]


def test_crafted_classifier_cache_never_runs_code(cache_root, tmp_path):
    data = _digits()
    marker = tmp_path / "code_ran"
    path = write_crafted_pickle(classifier_cache_entry(SMALL_CLF, CLF_TRAIN, data).path, marker)
    with pytest.warns(CacheWarning, match=re.escape(str(path))):
        _, info = _classifier(data)
    assert not marker.exists() and not info["from_cache"] and info["path"] == path
    assert _classifier(data)[1]["from_cache"]


def test_classifier_cache_is_keyed_by_the_data(cache_root):
    first = _classifier(_digits(0))[1]
    other = _classifier(_digits(1))[1]
    assert not other["from_cache"] and other["path"] != first["path"]


def test_classifier_training_takes_a_device_and_leaves_global_rng_alone():
    data = _digits()
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    model, info = train_classifier(
        data.X_train,
        data.y_train,
        data.X_test,
        data.y_test,
        CLF_TRAIN,
        SMALL_CLF,
        device=torch.device("cpu"),
        progress=False,
    )
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert isinstance(info["test_acc"], float) and not model.training


# ----------------------------------------------------------------------------------------------------------
# Two processes on one cache
# ----------------------------------------------------------------------------------------------------------

_WORKER = textwrap.dedent("""
    import sys
    import torch
    sys.path.insert(0, {repo!r})
    from tests.test_gan_cache import CPU, SMALL_GAN, _classifier, _digits, _images
    from common.experiments.gan import GANTrainConfig, train_gan_cached
    from common.torch_models.gan import build_gan

    torch.set_num_threads(1)
    config = GANTrainConfig(num_steps=40, batch_size=16, checkpoint_every=1, num_samples=4)
    G, D = build_gan(SMALL_GAN, seed=0)
    history = train_gan_cached(G, D, _images(), config, name="toy", device=CPU, progress=False)
    model, info = _classifier(_digits())
    print("ok", history["step"][-1], round(info["test_acc"], 6))
""")


def test_two_processes_on_one_cache_both_succeed(cache_root):
    from common.config import REPO_ROOT

    script = _WORKER.format(repo=str(REPO_ROOT))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    results = [w.communicate(timeout=300) for w in workers]
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0, err
        assert out.split()[:2] == ["ok", "40"], out
    assert results[0][0] == results[1][0]  # the same result, whoever wrote the file
    files = sorted(p.name for p in (cache_root / "gan").iterdir())
    assert len(files) == 2 and not any(".partial" in f or f.endswith(".tmp") for f in files), files
