"""Softmax (cross-entropy) loss of a linear classifier ``scores = X @ W``: a naive and a vectorised version."""

from __future__ import annotations

import numpy as np

from common.classifiers.linear_svm import check_linear_loss_args

__all__ = ["softmax_loss_naive", "softmax_loss_vectorized"]


def softmax_loss_naive(W, X, y, reg):
    """Softmax cross-entropy loss and its gradient, with explicit loops over samples (and classes).

    ``p_ij = exp(s_ij) / sum_k exp(s_ik)`` with ``s_i = X[i] @ W``;
    ``L = -1/N sum_i log p_iy_i + reg * sum(W**2)``: averaged over the N samples, L2 penalty
    ``reg * sum(W**2)`` (CS231n's convention, no 1/2, so its gradient is ``2 * reg * W``).
    ``dL/ds_ij = (p_ij - [j == y_i]) / N``. Numerically stable: scores are shifted by their maximum
    before exponentiating, which leaves every ``p_ij`` unchanged.

    Inputs: W (D, C) weights; X (N, D) samples; y (N,) labels in [0, C); reg: L2 strength.
    Returns (loss, dW): a float and dW (D, C).
    """
    N, C = check_linear_loss_args(W, X, y, reg)
    # For each sample: scores (C,), shifted by their max; probabilities; -log of the correct class's one;
    # column j of dW gains (p_j - [j == y[i]]) * X[i]. Then average over N and add the penalty and its gradient.
    ### BEGIN SOLUTION
    loss = 0.0
    dW = np.zeros_like(W)
    for i in range(N):
        scores = X[i] @ W  # (C,)
        scores = scores - np.max(scores)
        p = np.exp(scores) / np.sum(np.exp(scores))  # (C,)
        loss += -np.log(p[y[i]])
        for j in range(C):
            dW[:, j] += (p[j] - (j == y[i])) * X[i]
    loss = loss / N + reg * np.sum(W * W)
    dW = dW / N + 2 * reg * W
    ### END SOLUTION
    return float(loss), dW


def softmax_loss_vectorized(W, X, y, reg):
    """The loss and gradient of ``softmax_loss_naive``, without Python loops.

    Inputs and returns as ``softmax_loss_naive``.
    """
    N, C = check_linear_loss_args(W, X, y, reg)
    # scores (N, C) shifted by each row's max; log-probabilities by log-sum-exp (no log of an underflowed 0);
    # dscores = (p - onehot(y)) / N, and dW = X.T @ dscores plus the penalty's gradient.
    ### BEGIN SOLUTION
    scores = X @ W  # (N, C)
    scores = scores - scores.max(axis=1, keepdims=True)
    log_p = scores - np.log(np.sum(np.exp(scores), axis=1, keepdims=True))  # (N, C)
    loss = -np.mean(log_p[np.arange(N), y]) + reg * np.sum(W * W)
    dscores = np.exp(log_p)  # p (N, C)
    dscores[np.arange(N), y] -= 1.0
    dW = X.T @ (dscores / N) + 2 * reg * W  # (D, C)
    ### END SOLUTION
    return float(loss), dW
