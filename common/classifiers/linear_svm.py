"""Multiclass (structured) SVM loss of a linear classifier ``scores = X @ W``: a naive and a vectorised version."""

from __future__ import annotations

import numpy as np

__all__ = ["check_linear_loss_args", "svm_loss_naive", "svm_loss_vectorized"]


def check_linear_loss_args(W, X, y, reg) -> tuple[int, int]:
    """Validate the arguments of a linear classifier's loss; returns ``(N, C)``.

    ``W (D, C)`` and ``X (N, D)`` floating point, ``y (N,)`` integer labels in ``[0, C)``, ``reg >= 0``.
    """
    for name, a in (("W", W), ("X", X)):
        if not isinstance(a, np.ndarray) or a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
            raise ValueError(
                f"{name} must be a 2-D floating-point NumPy array, got {type(a).__name__} "
                f"{getattr(a, 'dtype', '')} {getattr(a, 'shape', '')}"
            )
    (N, D), C = X.shape, W.shape[1]
    if W.shape[0] != D:
        raise ValueError(
            f"W must have shape (D, C) with D = X.shape[1] = {D}, got {W.shape}; is the bias column on one side only?"
        )
    y = np.asarray(y)
    if y.shape != (N,) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold N = {N} integer labels, got {y.dtype} {y.shape}")
    if N == 0:
        raise ValueError("X has no samples (N = 0)")
    if y.min() < 0 or y.max() >= C:
        raise ValueError(f"labels must lie in [0, {C}) for W with C = {C} columns, got [{y.min()}, {y.max()}]")
    if not reg >= 0:
        raise ValueError(f"reg must be >= 0, got {reg!r}")
    return N, C


def svm_loss_naive(W, X, y, reg):
    """Multiclass SVM loss and its gradient, with explicit loops over samples and classes.

    ``L = 1/N sum_i sum_{j != y_i} max(0, s_ij - s_iy_i + 1) + reg * sum(W**2)`` with ``s_i = X[i] @ W``:
    margin 1, loss averaged over the N samples, L2 penalty ``reg * sum(W**2)`` (CS231n's convention,
    no 1/2, so its gradient is ``2 * reg * W``).

    Inputs: W (D, C) weights; X (N, D) samples (with a bias column if a bias is wanted); y (N,) labels
    in [0, C); reg: L2 strength.
    Returns (loss, dW): a float and dW (D, C).
    """
    N, C = check_linear_loss_args(W, X, y, reg)
    # Loop over samples i and classes j != y[i]: every positive margin adds to the loss, adds X[i] to
    # column j of dW and subtracts X[i] from column y[i]. Then average over N and add the penalty and its gradient.
    ### BEGIN SOLUTION
    loss = 0.0
    dW = np.zeros_like(W)
    for i in range(N):
        scores = X[i] @ W  # (C,)
        for j in range(C):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + 1.0
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    loss = loss / N + reg * np.sum(W * W)
    dW = dW / N + 2 * reg * W
    ### END SOLUTION
    return float(loss), dW


def svm_loss_vectorized(W, X, y, reg):
    """The loss and gradient of ``svm_loss_naive``, without Python loops.

    Inputs and returns as ``svm_loss_naive``.
    """
    N, C = check_linear_loss_args(W, X, y, reg)
    # scores (N, C); margins of every class against the row's correct score, 0 at the correct class.
    # dW = X.T @ G with G (N, C): 1 where a margin is positive, minus the row's count of those at y[i].
    ### BEGIN SOLUTION
    scores = X @ W  # (N, C)
    rows = np.arange(N)
    margins = np.maximum(scores - scores[rows, y].reshape(N, 1) + 1.0, 0.0)  # (N, C)
    margins[rows, y] = 0.0
    loss = margins.sum() / N + reg * np.sum(W * W)
    G = (margins > 0).astype(W.dtype)  # (N, C)
    G[rows, y] = -G.sum(axis=1)
    dW = X.T @ G / N + 2 * reg * W  # (D, C)
    ### END SOLUTION
    return float(loss), dW
