"""Linear classifiers ``scores = X @ W`` trained with minibatch SGD: a multiclass SVM and a softmax classifier."""

from __future__ import annotations

import numpy as np
from tqdm.auto import trange

from common.classifiers.linear_svm import svm_loss_vectorized
from common.classifiers.softmax import softmax_loss_vectorized

__all__ = ["LinearClassifier", "LinearSVM", "Softmax"]


class LinearClassifier:
    """A linear classifier with weights ``W (D, C)``; subclasses choose the loss (CS231n's API).

    Args:
        seed: seeds the classifier's own generator (``self.rng``), which draws the initial weights and
            every minibatch; the global NumPy generator is never used. ``None`` seeds it from the OS.
        weight_scale: standard deviation of the initial weights.
    """

    def __init__(self, seed: int | None = None, weight_scale: float = 1e-3):
        self.W = None
        self.rng = np.random.default_rng(seed)
        self.weight_scale = weight_scale

    def train(
        self,
        X,
        y,
        learning_rate=1e-3,
        reg=1e-5,
        num_iters=100,
        batch_size=200,
        verbose=False,
        progress=False,
    ):
        """Minibatch SGD on ``self.loss``; returns the list of the ``num_iters`` minibatch losses.

        Inputs: X (N, D) samples (add a bias column first if a bias is wanted); y (N,) labels in [0, C);
        learning_rate; reg (L2 strength, ``reg * sum(W**2)``); num_iters steps; batch_size samples per step,
        drawn with replacement; verbose prints the loss every 100 steps; progress shows a tqdm bar.
        ``W`` is created on the first call (C = y.max() + 1 classes) and kept by later calls, which continue
        from it. Every random draw comes from ``self.rng`` (seeded by ``seed``): the same seed gives the same
        run, and NumPy's global generator is left as it was.
        """
        X, y = self._check_data(X, y)
        num_train, dim = X.shape
        if num_iters < 1 or batch_size < 1:
            raise ValueError(f"num_iters and batch_size must be >= 1, got {num_iters} and {batch_size}")
        if self.W is None:
            num_classes = int(y.max()) + 1
            self.W = self.weight_scale * self.rng.standard_normal((dim, num_classes)).astype(X.dtype)  # (D, C)
        loss_history = []
        for it in trange(num_iters, disable=not progress, desc=type(self).__name__, leave=False):
            # One SGD step: draw batch_size row indices with replacement from self.rng (never np.random),
            # X_batch (batch_size, D) and y_batch, get the loss and gradient from self.loss, step W downhill.
            ### BEGIN SOLUTION
            batch = self.rng.integers(0, num_train, size=batch_size)
            X_batch, y_batch = X[batch], y[batch]
            loss, dW = self.loss(X_batch, y_batch, reg)
            self.W -= learning_rate * dW
            ### END SOLUTION
            loss_history.append(loss)
            if verbose and it % 100 == 0:
                print(f"iteration {it} / {num_iters}: loss {loss:f}")
        return loss_history

    def predict(self, X):
        """Predicted labels ``(N,)`` for ``X (N, D)``: the class with the highest score."""
        if self.W is None:
            raise RuntimeError("the classifier has no weights yet: call train(X, y) first")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.W.shape[0]:
            raise ValueError(f"X must have shape (N, {self.W.shape[0]}) like the training data, got {X.shape}")
        # Scores (N, C) of every class; the label is the index of the largest score in each row.
        ### BEGIN SOLUTION
        y_pred = (X @ self.W).argmax(axis=1)
        ### END SOLUTION
        return y_pred

    def loss(self, X_batch, y_batch, reg):
        """Loss and gradient ``(loss, dW)`` on a minibatch; defined by the subclasses."""
        raise NotImplementedError(f"{type(self).__name__} does not define a loss; use LinearSVM or Softmax")

    @staticmethod
    def _check_data(X, y):
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating) or X.shape[0] == 0:
            raise ValueError(f"X must be a non-empty (N, D) floating-point array, got {X.dtype} {X.shape}")
        if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError(f"y must be {X.shape[0]} non-negative integer labels, got {y.dtype} {y.shape}")
        return X, y


class LinearSVM(LinearClassifier):
    """A linear classifier trained with the multiclass SVM loss (``svm_loss_vectorized``)."""

    def loss(self, X_batch, y_batch, reg):
        return svm_loss_vectorized(self.W, X_batch, y_batch, reg)


class Softmax(LinearClassifier):
    """A linear classifier trained with the softmax cross-entropy loss (``softmax_loss_vectorized``)."""

    def loss(self, X_batch, y_batch, reg):
        return softmax_loss_vectorized(self.W, X_batch, y_batch, reg)
