"""Perceptron: the update rule, convergence on separable clouds, label checks, the decision grid."""

import numpy as np
import pytest

from common.classifiers.perceptron import Perceptron, decision_grid
from common.data.generators import make_gaussian_clouds


def test_single_update_follows_the_rule():
    p = Perceptron(2, max_epochs=1, learning_rate=0.5)
    X, y = np.array([[1.0, 2.0]]), np.array([-1])
    p.train(X, y)  # w = 0 scores 0 -> a mistake: w = -0.5 * x, b = -0.5
    np.testing.assert_allclose(p.w, [-0.5, -1.0])
    assert p.b == -0.5
    assert p.train(X, y)["updates"] == []  # now correct: a second pass makes no update
    assert X[0] @ p.w + p.b < 0  # on its side (scored from w and b: forward is an exercise of its own)


def test_update_corrects_only_mistakes():
    p = Perceptron(3, learning_rate=0.25)
    x = np.array([1.0, -2.0, 0.5])
    assert p.update(x, 1)  # score 0 counts as a mistake
    np.testing.assert_allclose(p.w, 0.25 * x)
    assert p.b == pytest.approx(0.25)
    w, b = p.w.copy(), p.b
    assert not p.update(x, 1)  # now on its side: nothing changes
    np.testing.assert_array_equal(p.w, w)
    assert p.b == b
    assert p.update(2 * x, -1)  # a mistake of the other class moves w towards -x
    np.testing.assert_allclose(p.w, 0.25 * x - 0.5 * x)
    assert p.b == pytest.approx(0.0)


def _fixed_perceptron():
    p = Perceptron(2)
    p.w, p.b = np.array([2.0, -1.0]), 0.5
    return p, np.array([[1.0, 1.0], [0.0, 3.0], [0.0, 0.5]])  # scores 1.5, -2.5, 0


def test_scores():
    p, X = _fixed_perceptron()
    np.testing.assert_allclose(p.decision_function(X), [1.5, -2.5, 0.0])
    np.testing.assert_allclose(p.decision_function(X[0]), [1.5])  # one sample (D,)


def test_labels():
    p, X = _fixed_perceptron()
    np.testing.assert_array_equal(p.forward(X), [1, -1, -1])  # a score of exactly 0 counts as -1
    assert p.score(X, np.array([1, -1, 1])) == pytest.approx(2 / 3)


def test_separable_clouds_converge_to_perfect_accuracy():
    X, y = make_gaussian_clouds(200, std=0.7, seed=0)
    X_test, y_test = make_gaussian_clouds(200, std=0.7, seed=1)
    p = Perceptron(2, max_epochs=100, learning_rate=0.01, seed=0)
    hist = p.train(X, y)
    assert hist["converged"] and hist["mistakes"][-1] == 0
    assert len(hist["updates"]) == sum(hist["mistakes"])
    np.testing.assert_allclose(hist["updates"][-1][0], p.w)
    assert p.score(X, y) == 1.0
    assert p.score(X_test, y_test) >= 0.99
    # every training point is strictly on its own side of the separating line (scored from w and b directly:
    # training is what this test judges, decision_function has tests of its own)
    assert np.all(y * (X @ p.w + p.b) > 0)


def test_overlapping_clouds_do_not_converge_but_beat_chance():
    X, y = make_gaussian_clouds(200, mean_pos=(0.5, 0.5), mean_neg=(-0.5, -0.5), std=1.0, seed=0)
    p = Perceptron(2, max_epochs=20, seed=0)
    hist = p.train(X, y)
    assert not hist["converged"] and len(hist["mistakes"]) == 20
    assert p.score(X, y) > 0.6


def test_zero_init_is_learning_rate_invariant():
    """From w = 0 every weight vector is a multiple of the learning rate: predictions do not change."""
    X, y = make_gaussian_clouds(50, std=1.5, seed=3)
    a = Perceptron(2, max_epochs=5, learning_rate=0.01, seed=0)
    b = Perceptron(2, max_epochs=5, learning_rate=10.0, seed=0)
    a.train(X, y)
    b.train(X, y)
    np.testing.assert_allclose(b.w, 1000 * a.w, rtol=1e-10)
    np.testing.assert_array_equal(X @ a.w + a.b > 0, X @ b.w + b.b > 0)  # the same predictions


def test_rejects_zero_one_labels_and_bad_shapes():
    p = Perceptron(2)
    with pytest.raises(ValueError, match=r"\+1 and -1"):
        p.train(np.zeros((3, 2)), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="shape"):
        p.forward(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="learning_rate"):
        Perceptron(2, learning_rate=0)


def test_decision_grid():
    X = np.array([[0.0, 0.0], [1.0, 2.0]])
    xx, yy, Z = decision_grid(lambda P: P[:, 0] > 0.5, X, resolution=11, margin=0.0)
    assert xx.shape == yy.shape == Z.shape == (11, 11)
    assert xx.min() == 0 and yy.max() == 2
    np.testing.assert_array_equal(Z, xx > 0.5)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        decision_grid(lambda P: P, np.zeros((3, 3)))


def test_averaged_perceptron_is_the_mean_of_visited_weights():
    X, y = make_gaussian_clouds(5, mean_pos=(0.3, 0.3), mean_neg=(-0.3, -0.3), seed=4)
    plain = Perceptron(2, max_epochs=3, learning_rate=0.1, seed=0)
    avg = Perceptron(2, max_epochs=3, learning_rate=0.1, seed=0, average=True)
    plain.train(X, y)
    avg.train(X, y)
    np.testing.assert_allclose(avg.w_last, plain.w)  # same trajectory
    # replay the trajectory by hand and average it
    rng, w, b, ws, bs = np.random.default_rng(0), np.zeros(2), 0.0, [], []
    for _ in range(3):
        for i in rng.permutation(len(X)):
            if y[i] * (X[i] @ w + b) <= 0:
                w, b = w + 0.1 * y[i] * X[i], b + 0.1 * y[i]
            ws.append(w)
            bs.append(b)
    np.testing.assert_allclose(avg.w, np.mean(ws, axis=0))
    assert avg.b == pytest.approx(np.mean(bs))


def test_averaged_perceptron_is_stable_on_overlapping_clouds():
    X, y = make_gaussian_clouds(100, mean_pos=(1, 1), mean_neg=(-1, -1), std=1.2, seed=2)
    Xt, yt = make_gaussian_clouds(500, mean_pos=(1, 1), mean_neg=(-1, -1), std=1.2, seed=3)
    accs = []
    for s in range(4):
        p = Perceptron(2, max_epochs=30, seed=s, average=True)
        p.train(X, y)
        accs.append(p.score(Xt, yt))
    assert min(accs) > 0.83  # Bayes optimum is 0.88
