"""Tests for common.experiments.gan_scoring (Inception Score and Frechet distance against closed forms, the
cached classifier) and common.torch_models.mnist (the scoring CNN)."""

import inspect
import math

import numpy as np
import pytest
import torch

from common.config import MNIST_MEAN, MNIST_STD
from common.experiments.gan_scoring import (
    ClassifierTrainConfig,
    class_histogram,
    extract_features,
    frechet_distance,
    get_mnist_classifier,
    inception_score,
    predict_proba,
    score_samples,
)
from common.torch_models import mnist
from common.torch_models.mnist import MNISTClassifierConfig, build_mnist_classifier

CPU = torch.device("cpu")


def test_inception_score_extremes_and_formula():
    one_hot = np.eye(10)[np.arange(100) % 10]  # confident and balanced: the maximum, C
    assert math.isclose(inception_score(one_hot)[0], 10.0, rel_tol=1e-9)
    same = np.tile(np.full(10, 0.1), (50, 1))  # every sample the same distribution: the minimum, 1
    assert math.isclose(inception_score(same)[0], 1.0, rel_tol=1e-9)
    collapsed = np.eye(10)[np.zeros(40, int)]  # confident but all one class (mode collapse): 1
    assert math.isclose(inception_score(collapsed)[0], 1.0, rel_tol=1e-9)
    three_modes = np.eye(10)[np.arange(30) % 3]  # confident, 3 balanced classes: 3
    assert math.isclose(inception_score(three_modes)[0], 3.0, rel_tol=1e-9)
    # a random case against the formula exp(H(p_y) - mean H(p(y|x)))
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10) * 0.3, size=200)
    p_y = probs.mean(0)
    expected = np.exp(-(p_y * np.log(p_y)).sum() + (probs * np.log(probs)).sum(1).mean())
    assert math.isclose(inception_score(probs)[0], expected, rel_tol=1e-8)
    mean, std = inception_score(probs, num_splits=4)
    parts = [inception_score(p)[0] for p in np.array_split(probs, 4)]
    assert math.isclose(mean, np.mean(parts)) and math.isclose(std, np.std(parts)) and std > 0


def test_inception_score_rejects_non_distributions():
    with pytest.raises(ValueError, match="probability distribution"):
        inception_score(np.ones((5, 10)))
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        inception_score(np.ones(10) / 10)


def test_class_histogram():
    probs = np.eye(10)[[3, 3, 7, 0]] * 0.9 + 0.01
    assert class_histogram(probs).tolist() == [1, 0, 0, 2, 0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="probs must have shape"):
        class_histogram(np.ones((4, 3)))


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 4))
    assert abs(frechet_distance(a, a)) < 1e-8
    # a shift by mu adds |mu|^2
    assert math.isclose(frechet_distance(a, a + np.array([1.0, 2.0, 0, 0])), 5.0, rel_tol=1e-6)
    # a scaled copy has S2 = c^2 S1, so (S1 S2)^(1/2) = c S1 and the distance is (1 - c)^2 Tr(S1) + |mu1 - mu2|^2
    c = 3.0
    S1 = np.cov(a, rowvar=False)
    expected = (1 - c) ** 2 * np.trace(S1) + np.sum((a.mean(0) * (1 - c)) ** 2)
    assert math.isclose(frechet_distance(a, c * a), expected, rel_tol=1e-6)
    # independent samples of one Gaussian: small; of two different Gaussians: about the closed form
    b = rng.standard_normal((500, 4)) * 2.0
    assert frechet_distance(a, rng.standard_normal((500, 4))) < 0.2
    assert abs(frechet_distance(a, b) - 4 * (2 - 1) ** 2) < 1.0
    with pytest.raises(ValueError, match=r"\(N1, F\)"):
        frechet_distance(a, a[:, :3])


def test_classifier_shapes_and_input_checks():
    state = torch.get_rng_state()
    model = build_mnist_classifier(MNISTClassifierConfig(channels=(4, 8), hidden=16), seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # initialised from a forked generator
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    p = predict_proba(model, x, device=CPU)
    assert p.shape == (3, 10) and np.allclose(p.sum(1), 1)
    assert extract_features(model, x, device=CPU).shape == (3, 16)
    assert np.allclose(predict_proba(model, (x * 255).astype(np.uint8)), p, atol=1e-2)  # uint8 scaled to [0, 1]
    assert np.allclose(predict_proba(model, x[:, 0]), p)  # (N, 28, 28) is read as one channel
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        predict_proba(model, x * 2 - 1)
    with pytest.raises(ValueError, match="shape"):
        predict_proba(model, x[:, :, :20])
    with pytest.raises(ValueError, match="channels"):
        MNISTClassifierConfig(channels=(4,))


def test_classifier_uses_the_course_normalisation_constants():
    from common.experiments import gan_scoring

    assert mnist.MNIST_MEAN is MNIST_MEAN and mnist.MNIST_STD is MNIST_STD  # imported from common.config
    for module in (mnist, gan_scoring):
        assert "MNIST_MEAN =" not in inspect.getsource(module) and "MNIST_STD =" not in inspect.getsource(module)


def test_cached_classifier_learns_and_is_reused(tmp_path, monkeypatch):
    from common.data.images import load_mnist

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    data = load_mnist()
    model_config = MNISTClassifierConfig(channels=(8, 16), hidden=32)
    config = ClassifierTrainConfig(epochs=2, num_train=4000, lr=5e-3)
    model, info = get_mnist_classifier(model_config, config, data=data, device=CPU, progress=False)
    assert not info["from_cache"] and info["test_acc"] > 0.85, info["test_acc"]
    assert info["path"].parent == tmp_path / "gan" and info["path"].name.startswith("mnist_classifier-")
    assert len(info["history"]["epoch"]) == 2 and info["train_time"] > 0
    again, info2 = get_mnist_classifier(model_config, config, data=data, device=CPU, progress=False)
    assert info2["from_cache"] and info2["test_acc"] == info["test_acc"] and info2["path"] == info["path"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not again.training
    other = ClassifierTrainConfig(epochs=1, num_train=500, lr=5e-3, seed=1)
    assert (
        get_mnist_classifier(
            MNISTClassifierConfig(channels=(4, 8), hidden=16), other, data=data, device=CPU, progress=False
        )[1]["path"]
        != info["path"]
    )
    # real test digits score high; one repeated digit scores near 1
    scores = score_samples(
        model, data.X_test[:1000], real_features=extract_features(model, data.X_test[1000:2000]), device=CPU
    )
    assert scores["inception_score"] > 4 and scores["histogram"].sum() == 1000 and scores["frechet"] >= 0
    repeated = score_samples(model, np.repeat(data.X_test[:1], 200, axis=0))
    assert repeated["inception_score"] < 1.01 and repeated["histogram"].max() == 200
