"""Rosenblatt's perceptron: a linear classifier for labels +1/-1, trained with the mistake-driven update rule."""

from __future__ import annotations

import numpy as np

__all__ = ["Perceptron", "decision_grid"]


class Perceptron:
    """A single linear threshold unit, ``f(x) = sign(w . x + b)`` with labels in {+1, -1}.

    Training visits the samples one at a time (in a fresh random order each epoch) and corrects
    every mistake, i.e. every sample with ``y (w . x + b) <= 0``::

        w <- w + learning_rate * y * x,    b <- b + learning_rate * y

    On linearly separable data this stops after finitely many mistakes (Novikoff's theorem);
    on overlapping data it never settles, so training stops after ``max_epochs`` epochs.

    Args:
        n_inputs: number of input features D.
        max_epochs: maximum number of passes over the training set.
        learning_rate: step size of the update.
        init: 'zeros' (the classic choice) or 'random' (weights ~ N(0, init_scale^2)).
        init_scale: standard deviation of the 'random' initialisation.
        seed: seeds the local generator used for the initialisation and the visiting order.
        average: if True, ``train`` ends by replacing ``(w, b)`` with their average over every sample
            visit of the run (the *averaged perceptron*, a stable answer when the data overlap); the
            last weights stay available as ``w_last``, ``b_last``.
    """

    def __init__(
        self,
        n_inputs: int,
        max_epochs: int = 100,
        learning_rate: float = 0.01,
        init: str = "zeros",
        init_scale: float = 1.0,
        seed: int | None = None,
        average: bool = False,
    ):
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be at least 1, got {n_inputs}")
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be at least 1, got {max_epochs}")
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        if init not in ("zeros", "random"):
            raise ValueError(f"init must be 'zeros' or 'random', got {init!r}")
        self.n_inputs = n_inputs
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.average = average
        self.rng = np.random.default_rng(seed)
        if init == "zeros":
            self.w = np.zeros(n_inputs)  # (D,)
            self.b = 0.0
        else:
            self.w = self.rng.normal(0.0, init_scale, size=n_inputs)
            self.b = float(self.rng.normal(0.0, init_scale))

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (N, {self.n_inputs}), got {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X has no samples (N=0): pass at least one sample")
        return X

    def decision_function(self, X) -> np.ndarray:
        """Signed score ``w . x_n + b`` of every sample: ``X (N, D)`` (or one sample ``(D,)``) -> ``(N,)``."""
        X = self._check_X(X)
        # One score per sample from the weights self.w (D,) and the bias self.b: scores (N,).
        ### BEGIN SOLUTION
        scores = X @ self.w + self.b  # (N, D) @ (D,) -> (N,)
        ### END SOLUTION
        return scores

    def forward(self, X) -> np.ndarray:
        """Predicted labels in {+1, -1} for ``X (N, D)`` (or one sample ``(D,)``); a score of 0 counts as -1."""
        # Threshold the scores of decision_function: labels (N,) of ints +1 / -1, and a score of exactly 0 gives -1.
        ### BEGIN SOLUTION
        labels = np.where(self.decision_function(X) > 0, 1, -1)
        ### END SOLUTION
        return labels

    def update(self, x: np.ndarray, y: int) -> bool:
        """One step of the perceptron rule on one sample ``x (D,)`` with label ``y`` in {+1, -1}.

        If the sample is a mistake, ``y (w . x + b) <= 0`` (a score of exactly 0 counts as a mistake),
        move the line towards it: ``w <- w + learning_rate * y * x``, ``b <- b + learning_rate * y``.
        Returns True when it corrected a mistake, False when the sample was already on its side (no change).
        """
        # mistake: a bool, whether this sample is on the wrong side (or on the line); only then change self.w
        # (D,) and self.b as the rule above says.
        ### BEGIN SOLUTION
        mistake = y * (x @ self.w + self.b) <= 0
        if mistake:
            self.w = self.w + self.learning_rate * y * x
            self.b = self.b + self.learning_rate * y
        ### END SOLUTION
        return bool(mistake)

    def score(self, X, y) -> float:
        """Accuracy of the predictions on ``X (N, D)`` against labels ``y (N,)`` in {+1, -1}."""
        return float(np.mean(self.forward(X) == np.asarray(y)))

    def train(self, X, y) -> dict:
        """Run the perceptron rule (``update``) on ``X (N, D)``, ``y (N,)`` in {+1, -1}, one sample at a time.

        Stops early after the first epoch without a mistake. Returns a history dict with one
        entry per epoch: ``mistakes`` (updates made during the epoch), ``train_acc`` (accuracy of
        the current, not averaged, weights at the end of the epoch); and for the whole run ``converged`` (True
        when an epoch made no mistake) and ``updates``, the list of ``(w, b)`` after every update (to animate the line).
        """
        X = self._check_X(X)
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise ValueError(f"y must have shape ({X.shape[0]},) to match X, got {y.shape}")
        values = set(np.unique(y).tolist())
        if not values <= {1, -1}:
            raise ValueError(
                f"y must contain only +1 and -1, got values {sorted(values)}; map 0/1 labels with y = 2 * y - 1"
            )
        history = {"mistakes": [], "train_acc": [], "converged": False, "updates": []}
        w_sum, b_sum, visits = np.zeros_like(self.w), 0.0, 0
        for _ in range(self.max_epochs):
            mistakes = 0
            for i in self.rng.permutation(len(X)):
                if self.update(X[i], y[i]):
                    mistakes += 1
                    history["updates"].append((self.w.copy(), self.b))
                if self.average:
                    w_sum += self.w
                    b_sum += self.b
                    visits += 1
            history["mistakes"].append(mistakes)
            history["train_acc"].append(self.score(X, y))
            if mistakes == 0:
                history["converged"] = True
                break
        if self.average:
            self.w_last, self.b_last = self.w.copy(), self.b
            self.w, self.b = w_sum / visits, b_sum / visits
        return history


def decision_grid(predict, X, resolution: int = 200, margin: float = 0.5):
    """Evaluate ``predict`` on a regular grid covering the 2-D points ``X (N, 2)`` (for contour plots).

    ``predict`` maps ``(M, 2)`` points to ``(M,)`` labels or scores. Returns ``(xx, yy, Z)``, each
    ``(resolution, resolution)``, ready for ``ax.contourf(xx, yy, Z)``.
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must have shape (N, 2) to draw a 2-D decision boundary, got {X.shape}")
    x_min, y_min = X.min(axis=0) - margin
    x_max, y_max = X.max(axis=0) + margin
    xx, yy = np.meshgrid(np.linspace(x_min, x_max, resolution), np.linspace(y_min, y_max, resolution))
    grid = np.c_[xx.ravel(), yy.ravel()]  # (resolution**2, 2)
    Z = np.asarray(predict(grid)).reshape(xx.shape)
    return xx, yy, Z
