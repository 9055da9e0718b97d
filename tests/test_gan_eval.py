"""Tests for common.gan_eval: Inception Score and Frechet distance against closed forms, the cached classifier."""
import math

import numpy as np
import pytest
import torch

from common.gan_eval import (
    ClassifierConfig, MNISTClassifier, class_histogram, extract_features, frechet_distance, get_mnist_classifier,
    inception_score, predict_proba, score_samples,
)



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
    torch.manual_seed(0)
    model = MNISTClassifier(ClassifierConfig(channels=(4, 8), hidden=16))
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    p = predict_proba(model, x)
    assert p.shape == (3, 10) and np.allclose(p.sum(1), 1)
    assert extract_features(model, x).shape == (3, 16)
    assert np.allclose(predict_proba(model, (x * 255).astype(np.uint8)), p, atol=1e-2)  # uint8 scaled to [0, 1]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        predict_proba(model, x * 2 - 1)
    with pytest.raises(ValueError, match="shape"):
        predict_proba(model, x[:, :, :20])


def test_cached_classifier_learns_and_is_reused(tmp_path):
    from common.data import load_mnist

    data = load_mnist()
    config = ClassifierConfig(channels=(8, 16), hidden=32, epochs=2, num_train=4000, lr=5e-3)
    cpu = torch.device("cpu")
    model, info = get_mnist_classifier(config, data=data, cache_dir=tmp_path, device=cpu, progress=False)
    assert not info["from_cache"] and info["test_acc"] > 0.85, info["test_acc"]
    again, info2 = get_mnist_classifier(config, cache_dir=tmp_path, device=cpu, progress=False)
    assert info2["from_cache"] and info2["test_acc"] == info["test_acc"] and info2["path"] == info["path"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    other = ClassifierConfig(channels=(4, 8), hidden=16, epochs=1, num_train=500, lr=5e-3, seed=1)
    assert get_mnist_classifier(other, data=data, cache_dir=tmp_path, device=cpu, progress=False)[1]["path"] \
        != info["path"]
    # real test digits score high; one repeated digit scores near 1
    scores = score_samples(model, data.X_test[:1000], real_features=extract_features(model, data.X_test[1000:2000]))
    assert scores["inception_score"] > 4 and scores["histogram"].sum() == 1000 and scores["frechet"] >= 0
    repeated = score_samples(model, np.repeat(data.X_test[:1], 200, axis=0))
    assert repeated["inception_score"] < 1.01 and repeated["histogram"].max() == 200
