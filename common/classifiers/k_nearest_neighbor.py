"""k-nearest-neighbour classifier with L2 distances computed three ways: two loops, one loop, no loop."""

from __future__ import annotations

import numpy as np

__all__ = ["KNearestNeighbor"]


class KNearestNeighbor:
    """A kNN classifier under the L2 (Euclidean) distance, CS231n's API.

    ``train`` only memorises the training set; ``predict`` computes the ``(num_test, num_train)``
    distance matrix ``dists[i, j] = ||X[i] - X_train[j]||_2`` and lets the ``k`` nearest training
    points of each test point vote. Distances are computed in float64 whatever the input dtype.
    """

    def __init__(self):
        self.X_train = None
        self.y_train = None

    def train(self, X, y):
        """Memorise the training data: ``X (num_train, D)``, ``y (num_train,)`` integer labels."""
        X, y = np.asarray(X), np.asarray(y)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"X must have shape (num_train, D), num_train >= 1, got {X.shape}; flatten images first")
        if y.shape != (X.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError(f"y must be {X.shape[0]} non-negative integer labels, got {y.dtype} {y.shape}")
        self.X_train = X.astype(np.float64)
        self.y_train = y

    def predict(self, X, k=1, num_loops=0):
        """Labels ``(num_test,)`` for ``X (num_test, D)``, from the ``k`` nearest training points.

        ``num_loops`` (0, 1 or 2) chooses the implementation of the distances; all give the same result.
        """
        methods = {
            0: self.compute_distances_no_loops,
            1: self.compute_distances_one_loop,
            2: self.compute_distances_two_loops,
        }
        if num_loops not in methods:
            raise ValueError(f"num_loops must be 0, 1 or 2, got {num_loops!r}")
        return self.predict_labels(methods[num_loops](X), k=k)

    def _check_test(self, X) -> np.ndarray:
        if self.X_train is None:
            raise RuntimeError("call train(X, y) before computing distances or predicting")
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.X_train.shape[1]:
            raise ValueError(
                f"X must have shape (num_test, {self.X_train.shape[1]}) like the training data, got {X.shape}"
            )
        return X.astype(np.float64)

    def compute_distances_two_loops(self, X):
        """``dists (num_test, num_train)`` with a double loop over test and training points."""
        X = self._check_test(X)
        dists = np.zeros((X.shape[0], self.X_train.shape[0]))
        # One entry per (test i, train j) pair: the L2 norm of the difference of the two rows.
        # No loop over the D features: use NumPy on the two (D,) rows.
        ### BEGIN SOLUTION
        for i in range(X.shape[0]):
            for j in range(self.X_train.shape[0]):
                diff = X[i] - self.X_train[j]  # (D,)
                dists[i, j] = np.sqrt(diff @ diff)
        ### END SOLUTION
        return dists

    def compute_distances_one_loop(self, X):
        """``dists (num_test, num_train)`` with one loop over the test points."""
        X = self._check_test(X)
        dists = np.zeros((X.shape[0], self.X_train.shape[0]))
        # Row i of dists at once: broadcast the test row (D,) against all training rows (num_train, D).
        ### BEGIN SOLUTION
        for i in range(X.shape[0]):
            dists[i, :] = np.sqrt(np.square(self.X_train - X[i]).sum(axis=1))  # (num_train,)
        ### END SOLUTION
        return dists

    def compute_distances_no_loops(self, X):
        """``dists (num_test, num_train)`` with no Python loop at all."""
        X = self._check_test(X)
        # Expand ||x - t||^2 = ||x||^2 + ||t||^2 - 2 x.t: one matrix product (num_test, num_train) plus two
        # broadcast vectors of squared norms. Round-off can make tiny squared distances negative: clip at 0.
        ### BEGIN SOLUTION
        test_sq = np.einsum("ij,ij->i", X, X)[:, None]  # (num_test, 1)
        train_sq = np.einsum("ij,ij->i", self.X_train, self.X_train)[None, :]  # (1, num_train)
        cross = X @ self.X_train.T  # (num_test, num_train)
        dists = np.sqrt(np.maximum(test_sq + train_sq - 2.0 * cross, 0.0))
        ### END SOLUTION
        return dists

    def predict_labels(self, dists, k=1):
        """Labels ``(num_test,)`` by majority vote of the ``k`` nearest training points of each row of ``dists``.

        A tie between labels goes to the smaller label (CS231n's rule).
        """
        if self.y_train is None:
            raise RuntimeError("call train(X, y) before predicting")
        dists = np.asarray(dists)
        num_train = len(self.y_train)
        if dists.ndim != 2 or dists.shape[1] != num_train:
            raise ValueError(f"dists must have shape (num_test, {num_train}), got {dists.shape}")
        if not isinstance(k, (int, np.integer)) or not 1 <= k <= num_train:
            raise ValueError(f"k must be an integer in [1, {num_train}] (the number of training points), got {k!r}")
        y_pred = np.zeros(dists.shape[0], dtype=self.y_train.dtype)
        # For each test row: the labels of its k smallest distances, then the most frequent of those labels
        # (a tie between labels goes to the smaller label).
        ### BEGIN SOLUTION
        nearest = np.argsort(dists, axis=1)[:, :k]  # (num_test, k) training indices, closest first
        closest_y = self.y_train[nearest]  # (num_test, k)
        for i in range(len(closest_y)):
            y_pred[i] = np.argmax(np.bincount(closest_y[i]))
        ### END SOLUTION
        return y_pred
