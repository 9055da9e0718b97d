"""Recurrent layers in NumPy: vanilla RNN and LSTM (step and sequence), word embedding, temporal affine and loss.

They keep the contract of ``common.layers``: the arrays passed in are left as they are, and every output and
gradient has the shape and the floating dtype of what it belongs to (float32 stays float32).
"""

import numpy as np
from scipy.special import log_softmax

from common.layers import _check_ndim, _check_x, sigmoid_forward


def _sigmoid(x):
    return sigmoid_forward(x)[0]


# ---------------------------------------------------------------------------- vanilla RNN


def rnn_step_forward(x, prev_h, Wx, Wh, b):
    """One step of a tanh RNN: ``next_h = tanh(x @ Wx + prev_h @ Wh + b)``.

    Inputs: x (N, D), prev_h (N, H), Wx (D, H), Wh (H, H), b (H,).
    Returns (next_h (N, H), cache).
    """
    _check_step(x, prev_h, Wx, Wh, b, gates=1)
    # next_h (N, H) from the formula above; cache whatever rnn_step_backward will need (the inputs, the
    # weights, and next_h itself, whose square gives tanh's derivative).
    ### BEGIN SOLUTION
    next_h = np.tanh(x @ Wx + prev_h @ Wh + b)  # (N, H)
    cache = (x, prev_h, Wx, Wh, next_h)
    ### END SOLUTION
    return next_h, cache


def rnn_step_backward(dnext_h, cache):
    """Backward pass of one RNN step; ``d tanh(a) / da = 1 - tanh(a)^2``.

    Returns (dx (N, D), dprev_h (N, H), dWx (D, H), dWh (H, H), db (H,)).
    """
    # Back through tanh first (an (N, H) gradient of the pre-activation), then through the affine map:
    # each gradient has the shape of its input.
    ### BEGIN SOLUTION
    x, prev_h, Wx, Wh, next_h = cache
    da = dnext_h * (1 - next_h**2)  # (N, H)
    dx, dprev_h, dWx, dWh, db = da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
    ### END SOLUTION
    return dx, dprev_h, dWx, dWh, db


def rnn_forward(x, h0, Wx, Wh, b):
    """Run the RNN over a whole sequence.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, H), Wh (H, H), b (H,).
    Returns (h (N, T, H), cache).
    """
    _check_sequence(x, h0)
    # Loop rnn_step_forward over t = 0..T-1, starting from h0, storing every hidden state in h (N, T, H);
    # the cache holds what rnn_backward needs (e.g. the list of step caches).
    ### BEGIN SOLUTION
    N, T, _ = x.shape
    h = np.zeros((N, T, h0.shape[1]), dtype=np.result_type(x, h0, Wx))
    cache = []
    prev_h = h0
    for t in range(T):
        prev_h, step_cache = rnn_step_forward(x[:, t], prev_h, Wx, Wh, b)
        h[:, t] = prev_h
        cache.append(step_cache)
    ### END SOLUTION
    return h, cache


def rnn_backward(dh, cache):
    """Backward pass over the sequence: ``dh (N, T, H)`` is the upstream gradient of every hidden state.

    Returns (dx (N, T, D), dh0 (N, H), dWx (D, H), dWh (H, H), db (H,)).
    """
    # Walk back from t = T-1 to 0 with rnn_step_backward. The state at t receives gradient from the loss at
    # t (dh[:, t]) and from step t+1; the weights are shared by all steps, so their gradients add up.
    # dh0 is the gradient that flows out of the first step.
    ### BEGIN SOLUTION
    N, T, H = dh.shape
    dx_steps = [None] * T
    dWx = dWh = db = 0.0  # sums of the per-step weight gradients
    dprev_h = np.zeros((N, H), dtype=dh.dtype)  # nothing comes back from beyond the last step
    for t in reversed(range(T)):
        dx_steps[t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t] + dprev_h, cache[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    dx = np.stack(dx_steps, axis=1)  # T x (N, D) -> (N, T, D)
    dh0 = dprev_h
    ### END SOLUTION
    return dx, dh0, dWx, dWh, db


# ---------------------------------------------------------------------------- LSTM


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """One LSTM step with the gates in the order i, f, o, g.

    ``a = x @ Wx + prev_h @ Wh + b`` (N, 4H), split into four (N, H) blocks:
    ``i = sigmoid(a_i), f = sigmoid(a_f), o = sigmoid(a_o), g = tanh(a_g)``;
    ``next_c = f * prev_c + i * g``, ``next_h = o * tanh(next_c)``.

    Inputs: x (N, D), prev_h (N, H), prev_c (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns (next_h (N, H), next_c (N, H), cache).
    """
    _check_step(x, prev_h, Wx, Wh, b, gates=4, prev_c=prev_c)
    # One (N, 4H) pre-activation, split into the four gates in the order i, f, o, g (use _sigmoid above);
    # cache the inputs, the weights and the gate values that lstm_step_backward will need.
    ### BEGIN SOLUTION
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b  # (N, 4H)
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H]), _sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    tanh_c = np.tanh(next_c)
    next_h = o * tanh_c
    cache = (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c)
    ### END SOLUTION
    return next_h, next_c, cache


def lstm_step_backward(dnext_h, dnext_c, cache):
    """Backward pass of one LSTM step.

    Returns (dx (N, D), dprev_h (N, H), dprev_c (N, H), dWx (D, 4H), dWh (H, 4H), db (4H,)).
    """
    # next_c reaches the loss directly (dnext_c) and through next_h: add both. Then the gradients of the
    # four gates, back through their nonlinearities into one (N, 4H) array in the order i, f, o, g, and
    # from it the affine map's gradients, as in rnn_step_backward.
    ### BEGIN SOLUTION
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tanh_c = cache
    dc = dnext_c + dnext_h * o * (1 - tanh_c**2)  # total gradient reaching next_c
    do = dnext_h * tanh_c
    di, df, dg = dc * g, dc * prev_c, dc * i
    dprev_c = dc * f
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g**2)], axis=1)  # (N, 4H)
    dx, dprev_h, dWx, dWh, db = da @ Wx.T, da @ Wh.T, x.T @ da, prev_h.T @ da, da.sum(axis=0)
    ### END SOLUTION
    return dx, dprev_h, dprev_c, dWx, dWh, db


def lstm_forward(x, h0, Wx, Wh, b):
    """Run the LSTM over a sequence, starting from ``h0`` and ``c0 = 0``.

    Inputs: x (N, T, D), h0 (N, H), Wx (D, 4H), Wh (H, 4H), b (4H,).
    Returns (h (N, T, H), cache).
    """
    _check_sequence(x, h0)
    # As rnn_forward, with lstm_step_forward and a cell state that starts at zero (it is not returned).
    ### BEGIN SOLUTION
    N, T, _ = x.shape
    H = h0.shape[1]
    h = np.zeros((N, T, H), dtype=np.result_type(x, h0, Wx))
    prev_h, prev_c = h0, np.zeros_like(h0)
    cache = []
    for t in range(T):
        prev_h, prev_c, step_cache = lstm_step_forward(x[:, t], prev_h, prev_c, Wx, Wh, b)
        h[:, t] = prev_h
        cache.append(step_cache)
    ### END SOLUTION
    return h, cache


def lstm_backward(dh, cache):
    """Backward pass over the sequence. Returns (dx (N, T, D), dh0 (N, H), dWx, dWh, db)."""
    # As rnn_backward, carrying two gradients from step t+1 back to step t: the hidden state's (added to
    # dh[:, t]) and the cell state's (zero after the last step).
    ### BEGIN SOLUTION
    N, T, H = dh.shape
    dx_steps = [None] * T
    dWx = dWh = db = 0.0
    dprev_h, dprev_c = np.zeros((N, H), dtype=dh.dtype), np.zeros((N, H), dtype=dh.dtype)
    for t in reversed(range(T)):
        dx_steps[t], dprev_h, dprev_c, dWx_t, dWh_t, db_t = lstm_step_backward(dh[:, t] + dprev_h, dprev_c, cache[t])
        dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
    dx = np.stack(dx_steps, axis=1)  # (N, T, D)
    dh0 = dprev_h
    ### END SOLUTION
    return dx, dh0, dWx, dWh, db


# ---------------------------------------------------------------------------- words in and out


def word_embedding_forward(x, W):
    """Look up word vectors: ``out[n, t] = W[x[n, t]]``.

    Inputs: x (N, T) integer indices in [0, V), W (V, D). Returns (out (N, T, D), cache).
    """
    _check_embedding(x, W)
    # One row of W per index (integer-array indexing does it in one go); cache what the backward pass needs.
    ### BEGIN SOLUTION
    out = W[x]  # (N, T, D)
    cache = (x, W.shape)
    ### END SOLUTION
    return out, cache


def word_embedding_backward(dout, cache):
    """Gradient of the embedding matrix: rows of ``dout (N, T, D)`` summed into their words (``np.add.at``).

    Returns dW (V, D).
    """
    # dW starts at zero; each upstream row adds into its word's row, and a word used several times must
    # receive every contribution.
    ### BEGIN SOLUTION
    x, W_shape = cache
    dW = np.zeros(W_shape, dtype=dout.dtype)
    np.add.at(dW, x, dout)  # repeated words accumulate
    ### END SOLUTION
    return dW


def temporal_affine_forward(x, w, b):
    """An affine layer applied at every time step: ``out[n, t] = x[n, t] @ w + b``.

    Inputs: x (N, T, D), w (D, M), b (M,). Returns (out (N, T, M), cache).
    """
    _check_temporal_affine(x, w, b)
    out = x @ w + b  # (N, T, D) @ (D, M) -> (N, T, M)
    return out, (x, w, b)


def temporal_affine_backward(dout, cache):
    """Backward pass of ``temporal_affine_forward``. Returns (dx (N, T, D), dw (D, M), db (M,))."""
    x, w, b = cache
    N, T, D = x.shape
    dx = dout @ w.T
    dw = x.reshape(N * T, D).T @ dout.reshape(N * T, -1)
    db = dout.sum(axis=(0, 1))
    return dx, dw, db


def temporal_softmax_loss(x, y, mask, verbose=False):
    """Softmax cross-entropy at every time step, counting only where ``mask`` is true.

    ``loss = -(1/N) * sum_{n,t} mask[n,t] * log softmax(x[n,t])[y[n,t]]`` (summed over time,
    averaged over the minibatch, as in CS231n).

    Inputs: x (N, T, V) scores, y (N, T) targets in [0, V), mask (N, T) bool.
    Returns (loss, dx (N, T, V)).
    """
    _check_temporal_loss(x, y, mask)
    N, T, V = x.shape
    x_flat, y_flat, mask_flat = x.reshape(N * T, V), y.reshape(N * T), mask.reshape(N * T)
    log_probs = log_softmax(x_flat, axis=1)  # stable for large scores
    loss = -np.sum(mask_flat * log_probs[np.arange(N * T), y_flat]) / N
    dx_flat = np.exp(log_probs)
    dx_flat[np.arange(N * T), y_flat] -= 1
    dx_flat *= mask_flat[:, None] / N
    if verbose:
        print("dx_flat: ", dx_flat.shape)
    return loss, dx_flat.reshape(N, T, V)


# ============================================================================ argument checks
# Given code, outside what a student writes: each layer calls its family's check on its first line.
def _check_step(x, prev_h, Wx, Wh, b, gates, prev_c=None):
    """x (N, D), prev_h (N, H) (and prev_c (N, H)), Wx (D, gates*H), Wh (H, gates*H), b (gates*H,)."""
    _check_x(x, 2, "(N, D)")
    _check_ndim("prev_h", prev_h, 2, "(N, H)")
    N, D = x.shape
    H = prev_h.shape[1]
    if prev_h.shape[0] != N:
        raise ValueError(f"prev_h has shape {prev_h.shape} but x has {N} rows; prev_h must be (N, H) = ({N}, H)")
    if prev_c is not None and np.shape(prev_c) != prev_h.shape:
        raise ValueError(f"prev_c has shape {np.shape(prev_c)}; it must match prev_h {prev_h.shape}")
    if np.shape(Wx) != (D, gates * H):
        raise ValueError(
            f"Wx has shape {np.shape(Wx)}; with x {x.shape} and h {prev_h.shape} it must be ({D}, {gates * H})"
        )
    if np.shape(Wh) != (H, gates * H):
        raise ValueError(f"Wh has shape {np.shape(Wh)}; it must be ({H}, {gates * H})")
    if np.shape(b) != (gates * H,):
        raise ValueError(f"b has shape {np.shape(b)}; it must be ({gates * H},)")


def _check_sequence(x, h0):
    """x (N, T, D) with N, T >= 1 and h0 (N, H); the weights are checked at every step."""
    _check_x(x, 3, "(N, T, D)")
    _check_ndim("h0", h0, 2, "(N, H)")
    if h0.shape[0] != x.shape[0]:
        raise ValueError(
            f"h0 has shape {h0.shape} but x has N={x.shape[0]} sequences; h0 must be (N, H) = ({x.shape[0]}, H)"
        )


def _check_embedding(x, W):
    _check_x(x, 2, "(N, T) (integer word indices)")
    _check_ndim("W", W, 2, "(V, D)")
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"x must hold integer word indices, got dtype {x.dtype}")
    if x.min() < 0 or x.max() >= W.shape[0]:
        raise ValueError(f"x has indices in [{x.min()}, {x.max()}] but W has only {W.shape[0]} rows (V)")


def _check_temporal_affine(x, w, b):
    _check_x(x, 3, "(N, T, D)")
    _check_ndim("w", w, 2, "(D, M)")
    if w.shape[0] != x.shape[2]:
        raise ValueError(
            f"w has shape {w.shape} but x {x.shape} has D={x.shape[2]} features; w must be (D, M) = ({x.shape[2]}, M)"
        )
    if np.shape(b) != (w.shape[1],):
        raise ValueError(f"b must have shape (M,) = ({w.shape[1]},), got {np.shape(b)}")


def _check_temporal_loss(x, y, mask):
    _check_x(x, 3, "(N, T, V) (scores)")
    N, T, V = x.shape
    if np.shape(y) != (N, T) or np.shape(mask) != (N, T):
        raise ValueError(f"y and mask must be (N, T) = ({N}, {T}); got y {np.shape(y)}, mask {np.shape(mask)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y must hold integer word indices, got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= V:
        raise ValueError(f"y must hold indices in [0, V) = [0, {V}), got range [{y.min()}, {y.max()}]")
