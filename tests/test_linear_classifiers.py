"""Linear SVM and softmax losses against float64 centred differences, PyTorch autograd and hand-computed values;
minibatch SGD training (loss goes down, seeded, global RNG untouched); the notebook's experiment helpers."""

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.classifiers.linear_classifier import LinearClassifier, LinearSVM, Softmax
from common.classifiers.linear_svm import svm_loss_naive, svm_loss_vectorized
from common.classifiers.softmax import softmax_loss_naive, softmax_loss_vectorized
from common.diagnose import assert_close
from common.experiments.linear_classifiers import as_rows, class_templates, grid_search
from common.gradient_check import eval_numerical_gradient

# Tolerances: naive vs vectorised and torch (float64, same maths) agree to round-off; centred differences
# (h = 1e-5, float64) to < 1e-6 away from the SVM's kinks (the round-off of a loss of order 10, divided by 2h,
# is about 1e-10: relative to the smallest gradient entries that is more than 1e-7).
SAME_TOL = 1e-10
NUM_TOL = 1e-6

LOSSES = {
    "svm": (svm_loss_naive, svm_loss_vectorized),
    "softmax": (softmax_loss_naive, softmax_loss_vectorized),
}
CASES = [(1, 2, 2, 0.0), (8, 5, 3, 0.0), (20, 6, 4, 0.3), (50, 11, 10, 2.5)]  # N, D, C, reg


def _problem(N, D, C, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal((D, C)), rng.standard_normal((N, D)), rng.integers(C, size=N)


def _svm_margins_away_from_kinks(W, X, y, gap=1e-3):
    scores = X @ W
    margins = scores - scores[np.arange(len(y)), y][:, None] + 1
    margins[np.arange(len(y)), y] = 1.0
    return np.abs(margins).min() > gap


def _context(W, X, reg):
    """What the diagnosis of a linear classifier's loss knows: the sizes, and the penalty's gradient."""
    (N, D), C = X.shape, W.shape[1]
    penalty = "the gradient of reg * sum(W**2) is 2 * reg * W"
    return {"N": N, "D": D, "C": C, "terms": {"reg * W": reg * W}, "hints": {"term:reg * W": penalty}}


def _torch_loss(kind, W, X, y, reg):
    """Loss and gradient from PyTorch: F.multi_margin_loss (which divides by C; CS231n sums over the classes,
    so times C) or F.cross_entropy, plus ``reg * sum(W**2)``."""
    Wt = torch.tensor(W, requires_grad=True)
    scores = torch.tensor(X) @ Wt
    yt = torch.tensor(y)
    if kind == "svm":
        data_loss = F.multi_margin_loss(scores, yt, p=1, margin=1.0) * W.shape[1]
    else:
        data_loss = F.cross_entropy(scores, yt)
    loss = data_loss + reg * (Wt**2).sum()
    loss.backward()
    return loss.item(), Wt.grad.numpy()


# Each of the four losses is an exercise of its own, checked against the oracles (PyTorch, centred differences,
# values computed by hand) by tests of its own: a vectorised loss is never judged by the naive one, which may not
# be written yet, and one loss not written yet fails only its own tests. The helpers take the function.
def _check_gradient_matches_centred_differences(loss_fn, kind, N, D, C, reg):
    W, X, y = _problem(N, D, C, seed=10 + N, scale=0.3)
    if kind == "svm":
        assert _svm_margins_away_from_kinks(W, X, y), "pick another seed: a margin sits on the hinge's kink"
    _, dW = loss_fn(W, X, y, reg)
    dW_num = eval_numerical_gradient(lambda w: loss_fn(w, X, y, reg)[0], W, verbose=False)
    context = {**_context(W, X, reg), "expected_as": "the slope of your loss"}
    assert_close(f"{loss_fn.__name__}: dW", dW, dW_num, NUM_TOL, context=context)


def _check_matches_pytorch_autograd(loss_fn, kind, N, D, C, reg):
    W, X, y = _problem(N, D, C, seed=20 + N)
    loss_t, dW_t = _torch_loss(kind, W, X, y, reg)
    loss, dW = loss_fn(W, X, y, reg)
    assert isinstance(loss, float), (
        f"{loss_fn.__name__}: the loss must be a Python float (float(...)), got {type(loss).__name__}"
    )
    assert_close(f"{loss_fn.__name__}: loss", loss, loss_t, SAME_TOL, context=_context(W, X, reg))
    if kind == "softmax" or _svm_margins_away_from_kinks(W, X, y):
        assert_close(f"{loss_fn.__name__}: dW", dW, dW_t, SAME_TOL, context=_context(W, X, reg))


def _check_svm_hand_computed_example(fn):
    W = np.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]])  # (D=2, C=3)
    X = np.array([[1.0, 1.0], [0.5, -1.0]])  # scores [[1, 2, -0.5], [0.5, -2, -1]]
    y = np.array([0, 2])
    # sample 0: max(0, 2-1+1) + max(0, -0.5-1+1) = 2; sample 1: max(0, 0.5+1+1) + max(0, -2+1+1) = 2.5
    loss, _ = fn(W, X, y, 0.0)
    assert loss == pytest.approx((2 + 2.5) / 2)
    loss, _ = fn(W, X, y, 0.1)
    assert loss == pytest.approx(2.25 + 0.1 * np.sum(W**2))


def _check_initial_loss_with_small_weights(fn, C, expected):
    W, X, y = _problem(200, 30, C, seed=5, scale=1e-6)
    assert fn(W, X, y, 0.0)[0] == pytest.approx(expected, abs=1e-3)


def _check_softmax_is_stable_on_large_scores(fn):
    W, X, y = _problem(6, 4, 3, seed=2)
    X[:, -1], W[-1] = 1.0, 1000.0  # every score is about 1000: exp(1000) overflows unless shifted
    loss, dW = fn(W, X, y, 0.0)
    loss_t, dW_t = _torch_loss("softmax", W, X, y, 0.0)
    # finite, and right (a NaN or an infinity fails the comparison and is named as such)
    assert_close(f"{fn.__name__}: loss (scores about 1000)", loss, loss_t, 1e-8)
    assert_close(f"{fn.__name__}: dW (scores about 1000)", dW, dW_t, 1e-8)


# ---- svm_loss_naive
@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_svm_loss_naive_matches_pytorch_autograd(N, D, C, reg):
    _check_matches_pytorch_autograd(svm_loss_naive, "svm", N, D, C, reg)


@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_svm_loss_naive_gradient_matches_centred_differences(N, D, C, reg):
    _check_gradient_matches_centred_differences(svm_loss_naive, "svm", N, D, C, reg)


def test_svm_loss_naive_of_a_hand_computed_example():
    _check_svm_hand_computed_example(svm_loss_naive)


@pytest.mark.parametrize("C", [3, 10])
def test_svm_loss_naive_initial_loss_with_small_weights(C):
    _check_initial_loss_with_small_weights(svm_loss_naive, C, C - 1)


# ---- svm_loss_vectorized
@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_svm_loss_vectorized_matches_pytorch_autograd(N, D, C, reg):
    _check_matches_pytorch_autograd(svm_loss_vectorized, "svm", N, D, C, reg)


@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_svm_loss_vectorized_gradient_matches_centred_differences(N, D, C, reg):
    _check_gradient_matches_centred_differences(svm_loss_vectorized, "svm", N, D, C, reg)


def test_svm_loss_vectorized_of_a_hand_computed_example():
    _check_svm_hand_computed_example(svm_loss_vectorized)


@pytest.mark.parametrize("C", [3, 10])
def test_svm_loss_vectorized_initial_loss_with_small_weights(C):
    _check_initial_loss_with_small_weights(svm_loss_vectorized, C, C - 1)


# ---- softmax_loss_naive
@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_softmax_loss_naive_matches_pytorch_autograd(N, D, C, reg):
    _check_matches_pytorch_autograd(softmax_loss_naive, "softmax", N, D, C, reg)


@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_softmax_loss_naive_gradient_matches_centred_differences(N, D, C, reg):
    _check_gradient_matches_centred_differences(softmax_loss_naive, "softmax", N, D, C, reg)


@pytest.mark.parametrize("C", [3, 10])
def test_softmax_loss_naive_initial_loss_with_small_weights(C):
    _check_initial_loss_with_small_weights(softmax_loss_naive, C, np.log(C))


def test_softmax_loss_naive_is_stable_on_large_scores():
    _check_softmax_is_stable_on_large_scores(softmax_loss_naive)


# ---- softmax_loss_vectorized
@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_softmax_loss_vectorized_matches_pytorch_autograd(N, D, C, reg):
    _check_matches_pytorch_autograd(softmax_loss_vectorized, "softmax", N, D, C, reg)


@pytest.mark.parametrize("N,D,C,reg", CASES)
def test_softmax_loss_vectorized_gradient_matches_centred_differences(N, D, C, reg):
    _check_gradient_matches_centred_differences(softmax_loss_vectorized, "softmax", N, D, C, reg)


@pytest.mark.parametrize("C", [3, 10])
def test_softmax_loss_vectorized_initial_loss_with_small_weights(C):
    _check_initial_loss_with_small_weights(softmax_loss_vectorized, C, np.log(C))


def test_softmax_loss_vectorized_is_stable_on_large_scores():
    _check_softmax_is_stable_on_large_scores(softmax_loss_vectorized)


@pytest.mark.parametrize("fn", [f for pair in LOSSES.values() for f in pair])
def test_losses_reject_bad_input(fn):
    W, X, y = _problem(4, 3, 2)
    with pytest.raises(ValueError, match="W must have shape"):
        fn(W[:2], X, y, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fn(W, X, y + 2, 0.0)
    with pytest.raises(ValueError, match="integer labels"):
        fn(W, X, y.astype(float), 0.0)
    with pytest.raises(ValueError, match="reg"):
        fn(W, X, y, -1.0)
    with pytest.raises(ValueError, match="floating-point"):
        fn(W, X.astype(int), y, 0.0)


# ---------------------------------------------------------------------------- SGD training
def _blobs(N=600, D=5, C=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3 * rng.standard_normal((C, D))
    y = rng.integers(C, size=N)
    X = centres[y] + rng.standard_normal((N, D))
    return np.hstack([X, np.ones((N, 1))]), y  # bias column


# train's tests train on losses that are no exercise (PyTorch's), through the hook train uses (self.loss): they
# judge train alone, whatever the state of the loss functions, which have tests of their own.
class _OracleSVM(LinearClassifier):
    def loss(self, X_batch, y_batch, reg):
        return _torch_loss("svm", self.W, X_batch, y_batch, reg)


class _OracleSoftmax(LinearClassifier):
    def loss(self, X_batch, y_batch, reg):
        return _torch_loss("softmax", self.W, X_batch, y_batch, reg)


@pytest.mark.parametrize("cls", [_OracleSVM, _OracleSoftmax], ids=["svm", "softmax"])
def test_sgd_reduces_the_loss_and_learns_separable_blobs(cls):
    X, y = _blobs()
    model = cls(seed=0)
    history = model.train(X, y, learning_rate=1e-2, reg=1e-4, num_iters=300, batch_size=50)
    assert len(history) == 300 and model.W.shape == (6, 4)
    assert np.mean(history[-20:]) < 0.3 * history[0]
    # predictions as predict's contract defines them (predict is an exercise of its own)
    assert np.mean(np.argmax(X @ model.W, axis=1) == y) > 0.95
    full_loss = model.loss(X, y, 1e-4)[0]
    assert full_loss < 0.3 * history[0]


@pytest.mark.parametrize("cls,kind", [(_OracleSVM, "svm"), (_OracleSoftmax, "softmax")], ids=["svm", "softmax"])
def test_one_sgd_step_is_a_gradient_step_on_the_minibatch(cls, kind):
    # every row is the same sample, so every minibatch has the same gradient, however it is drawn
    rng = np.random.default_rng(4)
    X, y = np.tile(rng.standard_normal(6), (30, 1)), np.full(30, 2)
    W0 = rng.standard_normal((6, 3))
    model = cls(seed=0)
    model.W = W0.copy()
    history = model.train(X, y, learning_rate=0.5, reg=0.1, num_iters=1, batch_size=7)
    # the expected step, from the same PyTorch loss
    assert _svm_margins_away_from_kinks(W0, X[:7], y[:7])
    loss, dW = _torch_loss(kind, W0, X[:7], y[:7], 0.1)
    assert history == [pytest.approx(loss)]
    np.testing.assert_allclose(model.W, W0 - 0.5 * dW, rtol=1e-10)


@pytest.mark.parametrize("cls", [_OracleSVM, _OracleSoftmax], ids=["svm", "softmax"])
def test_training_is_reproducible_with_a_seed(cls):
    X, y = _blobs()
    runs = []
    for seed in (7, 7, 8):
        model = cls(seed=seed)
        runs.append((model.train(X, y, learning_rate=1e-2, num_iters=50, batch_size=20), model.W.copy()))
    assert runs[0][0] == runs[1][0] and np.array_equal(runs[0][1], runs[1][1]), (
        "the same seed must give the same run: train draws its minibatches from self.rng, seeded by seed"
    )
    assert not np.array_equal(runs[0][1], runs[2][1]), "another seed must give other minibatches (from self.rng)"


def test_training_leaves_the_global_random_generators_untouched():
    X, y = _blobs()
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    for cls in (_OracleSVM, _OracleSoftmax):
        model = cls(seed=0)
        model.train(X, y, num_iters=20, batch_size=10)
    after = np.random.get_state()
    rule = "train must draw its minibatches from self.rng (seeded by seed), never from a global generator"
    assert np_state[0] == after[0] and np.array_equal(np_state[1], after[1]) and np_state[2:] == after[2:], (
        f"{rule}: NumPy's global generator moved (np.random.choice / np.random.randint?)"
    )
    assert random.getstate() == py_state and torch.equal(torch.get_rng_state(), torch_state), rule


def test_minibatches_are_drawn_from_the_whole_training_set():
    # labels 0..9 on 10 distinct points: after many steps every row must have been used (the softmax
    # weights of a class move only when its row is in a batch or through the penalty, which is 0 here)
    X = np.hstack([np.eye(10), np.ones((10, 1))])
    y = np.arange(10)
    model = _OracleSoftmax(seed=0)
    model.train(X, y, learning_rate=1.0, reg=0.0, num_iters=200, batch_size=3)
    np.testing.assert_array_equal(np.argmax(X @ model.W, axis=1), y)


def test_predict_is_the_argmax_of_the_scores():
    model = LinearSVM(seed=0)
    model.W = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]])  # (D=3, C=3)
    X = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.0], [0.0, 0.0, -5.0], [-1.0, -1.0, 0.5]])
    np.testing.assert_array_equal(model.predict(X), [0, 1, 2, 2])
    rng = np.random.default_rng(1)
    model.W, X = rng.standard_normal((8, 5)), rng.standard_normal((30, 8))
    state = np.random.get_state()[1].copy()
    np.testing.assert_array_equal(model.predict(X), np.argmax(X @ model.W, axis=1))
    assert np.array_equal(state, np.random.get_state()[1]), "predict touched NumPy's global random generator"


def test_classifier_bad_input():
    with pytest.raises(RuntimeError, match="train"):
        Softmax().predict(np.zeros((2, 3)))
    with pytest.raises(NotImplementedError, match="LinearSVM or Softmax"):
        LinearClassifier(seed=0).train(np.zeros((4, 3)), np.arange(4))
    model = Softmax(seed=0)
    with pytest.raises(ValueError, match="floating-point"):
        model.train(np.zeros((4, 3), dtype=int), np.arange(4))
    with pytest.raises(ValueError, match="labels"):
        model.train(np.zeros((4, 3)), np.arange(3))
    model.W = np.zeros((6, 4))  # as training would leave it (training is an exercise of its own)
    with pytest.raises(ValueError, match=r"\(N, 6\)"):
        model.predict(np.zeros((2, 3)))


# ---------------------------------------------------------------------------- the notebook's helpers
def test_as_rows_flattens_row_major_and_appends_the_bias_column():
    images = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    rows = as_rows(images)
    assert rows.shape == (2, 12) and np.array_equal(rows[1], images[1].ravel())
    with_bias = as_rows(images, bias=True)
    assert with_bias.shape == (2, 13) and with_bias.dtype == np.float32 and np.all(with_bias[:, -1] == 1)


def test_class_templates_undo_the_flattening():
    rng = np.random.default_rng(0)
    templates = rng.standard_normal((4, 3, 5, 6))  # (C, channels, H, W)
    W = np.vstack([templates.reshape(4, -1).T, np.full((1, 4), 99.0)])  # (D + 1, C), with a bias row
    images = class_templates(W, (3, 5, 6))
    assert images.shape == (4, 5, 6, 3)
    assert np.allclose(images.min(axis=(1, 2, 3)), 0) and np.allclose(images.max(axis=(1, 2, 3)), 1)
    for c in range(4):  # the same picture up to the [0, 1] rescaling
        t = templates[c].transpose(1, 2, 0)
        np.testing.assert_allclose(images[c], (t - t.min()) / (t.max() - t.min()))
    with pytest.raises(ValueError, match="rows"):
        class_templates(W[:-3], (3, 5, 6))


def test_grid_search_tries_every_pair_and_keeps_the_best_model():
    X, y = _blobs(N=300)
    data = {"X_train": X[:200], "y_train": y[:200], "X_val": X[200:], "y_val": y[200:]}
    results, best, histories = grid_search(
        lambda: Softmax(seed=0), data, [1e-6, 1e-2], [0.0, 1e-3], num_iters=100, batch_size=20, progress=False
    )
    assert set(results) == set(histories) == {(1e-6, 0.0), (1e-6, 1e-3), (1e-2, 0.0), (1e-2, 1e-3)}
    best_val = max(v for _, v in results.values())
    assert np.mean(np.argmax(data["X_val"] @ best.W, axis=1) == data["y_val"]) == best_val > 0.9
    assert results[(1e-6, 0.0)][1] < best_val
