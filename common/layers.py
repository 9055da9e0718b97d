"""NumPy layers as forward/backward pairs: ``X_forward(...) -> (out, cache)``, ``X_backward(dout, cache) -> grads``.

Each family's argument checks live in one small ``_check_*`` helper, called on the first line of the layer,
so the body below it is the computation. The helpers raise ``ValueError`` naming what is wrong.

The contract every layer keeps (here and in ``common.rnn_layers``; ``tests/test_layer_contracts.py`` checks it):

- the arrays passed in are left as they are: results go into new arrays (``x -= mu`` or ``x[...] = 0`` would
  change the caller's array, which the caller may use again);
- every output and every gradient has the shape of what it is the output or gradient of, and the floating
  dtype of the inputs: float32 in, float32 out (``np.zeros(shape)`` is float64; ``np.zeros_like(x)`` or
  ``dtype=x.dtype`` is not), so that a network built in float32 stays in float32;
- where the template builds the cache after your code (dropout, convolution, pooling), its layout is fixed
  and the backward pass names a cache of another layout; elsewhere the cache is yours, and only your own
  backward pass reads it;
- randomness comes from the generator or seed a layer is given (dropout), never from NumPy's global generator.
"""

import numpy as np

from common.im2col import output_size


# ============================================================================ affine and activations
def affine_forward(x, w, b):
    """Fully connected layer: ``out = x.reshape(N, D) @ w + b``.

    Inputs:
    - x: (N, d_1, ..., d_k), flattened row-major to (N, D) with D = d_1 * ... * d_k
    - w: (D, M)
    - b: (M,)
    Returns (out, cache): out (N, M); cache (x, w, b).
    """
    N, D = _check_affine(x, w, b)
    # Flatten each sample into a row of D features (row-major) and apply the affine map: out (N, M).
    # Keep in cache what affine_backward needs.
    ### BEGIN SOLUTION
    out = x.reshape(N, D) @ w + b  # (N, D) @ (D, M) -> (N, M)
    cache = (x, w, b)
    ### END SOLUTION
    return out, cache


def affine_backward(dout, cache):
    """Backward pass of ``affine_forward``.

    Inputs: dout (N, M); cache from ``affine_forward``.
    Returns (dx, dw, db): dx like x (N, d_1, ..., d_k), dw (D, M), db (M,).
    ``dx = dout @ w.T``, ``dw = x_flat.T @ dout``, ``db = sum_n dout``.
    """
    # Three matrix products/sums, one per formula above; every gradient has the shape of what it is
    # the gradient of, so dx goes back to the shape of x and dw uses x flattened to (N, D).
    ### BEGIN SOLUTION
    x, w, _ = cache
    x_flat = x.reshape(x.shape[0], -1)  # (N, D)
    dx = (dout @ w.T).reshape(x.shape)  # (N, M) @ (M, D) -> (N, D) -> shape of x
    dw = x_flat.T @ dout  # (D, N) @ (N, M) -> (D, M)
    db = dout.sum(axis=0)
    ### END SOLUTION
    return dx, dw, db


def relu_forward(x):
    """ReLU: ``out = max(0, x)``, elementwise, x of any shape (N, ...).

    Returns (out, cache): out like x; cache for ``relu_backward`` (x itself is enough).
    """
    _check_activation(x)
    # Elementwise max with 0; the cache only needs to tell where x was positive.
    ### BEGIN SOLUTION
    out = np.maximum(0, x)
    cache = x
    ### END SOLUTION
    return out, cache


def relu_backward(dout, cache):
    """Backward pass of ReLU: ``dx = dout * [x > 0]`` (the subgradient at 0 is taken as 0).

    Inputs: dout like x; cache from ``relu_forward``. Returns dx like x.
    """
    # The upstream gradient passes where the input was positive and is zero elsewhere.
    ### BEGIN SOLUTION
    x = cache
    dx = dout * (x > 0)
    ### END SOLUTION
    return dx


def leaky_relu_forward(x, alpha=0.01):
    """Leaky ReLU: ``out = x if x > 0 else alpha * x``, elementwise, x of any shape (N, ...).

    Returns (out, cache): out like x; cache for ``leaky_relu_backward`` (it needs x and alpha).
    """
    _check_activation(x)
    # Elementwise choice between x and alpha * x (np.where); cache what the backward pass needs.
    ### BEGIN SOLUTION
    out = np.where(x > 0, x, alpha * x)
    cache = (x, alpha)
    ### END SOLUTION
    return out, cache


def leaky_relu_backward(dout, cache):
    """Backward pass of leaky ReLU: ``dx = dout * (1 if x > 0 else alpha)``. Returns dx like x."""
    # The local slope is 1 where x > 0 and alpha elsewhere; keep dx in the dtype of dout.
    ### BEGIN SOLUTION
    x, alpha = cache
    dx = dout * np.where(x > 0, 1.0, alpha).astype(dout.dtype, copy=False)
    ### END SOLUTION
    return dx


def sigmoid_forward(x):
    """Logistic sigmoid ``s = 1 / (1 + exp(-x))``, elementwise, computed without overflow.

    Returns (out, cache): out like x (a floating dtype: float32 stays float32); cache for ``sigmoid_backward``
    (the output s is enough: the derivative is ``s * (1 - s)``).
    """
    _check_activation(x)
    # exp(-x) overflows for very negative x: exponentiate only non-positive numbers, using 1 / (1 + e^-x)
    # where x >= 0 and the equal e^x / (1 + e^x) where x < 0.
    ### BEGIN SOLUTION
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.result_type(x, np.float32), copy=False)
    cache = out
    ### END SOLUTION
    return out, cache


def sigmoid_backward(dout, cache):
    """Backward pass of the sigmoid: ``dx = dout * s * (1 - s)``. Returns dx like x."""
    # The local derivative written with the forward output s.
    ### BEGIN SOLUTION
    s = cache
    dx = dout * s * (1 - s)
    ### END SOLUTION
    return dx


def tanh_forward(x):
    """Hyperbolic tangent, elementwise, x of any shape (N, ...).

    Returns (out, cache): out like x; cache for ``tanh_backward`` (the output is enough).
    """
    _check_activation(x)
    # NumPy has tanh; cache what makes the derivative cheap.
    ### BEGIN SOLUTION
    out = np.tanh(x)
    cache = out
    ### END SOLUTION
    return out, cache


def tanh_backward(dout, cache):
    """Backward pass of tanh: ``dx = dout * (1 - tanh(x)**2)``. Returns dx like x."""
    # The local derivative written with the forward output.
    ### BEGIN SOLUTION
    t = cache
    dx = dout * (1 - t * t)
    ### END SOLUTION
    return dx


def prelu_forward(x, alpha):
    """Parametric ReLU (He et al., 2015): a leaky ReLU whose negative slope ``alpha`` is learnt.

    ``out = x if x > 0 else alpha * x``, elementwise.
    Inputs:
    - x: (N, D) when alpha is (D,) (one slope per feature, broadcast over the N samples);
      any shape (N, ...) when alpha is a scalar (one slope shared by every unit)
    - alpha: (D,) array or a scalar
    Returns (out, cache): out like x; cache for ``prelu_backward``.
    """
    _check_prelu(x, alpha)
    # As leaky ReLU, with alpha broadcast against x; the backward pass needs x and alpha.
    ### BEGIN SOLUTION
    out = np.where(x > 0, x, alpha * x)
    cache = (x, alpha)
    ### END SOLUTION
    return out, cache


def prelu_backward(dout, cache):
    """Backward pass of PReLU.

    ``dx = dout * (1 if x > 0 else alpha)``; ``dalpha = sum of dout * x over the entries where x <= 0``,
    summed over the samples (axis 0) for a (D,) alpha, over every entry for a scalar alpha.
    Inputs: dout like x; cache from ``prelu_forward``.
    Returns (dx, dalpha): dx like x; dalpha with the shape of alpha (a scalar for a scalar alpha).
    """
    # dx as in leaky ReLU. alpha multiplies x only where x <= 0, so each entry there contributes dout * x
    # to the gradient of the slope it used: sum those over whatever alpha was broadcast along.
    ### BEGIN SOLUTION
    x, alpha = cache
    dx = dout * np.where(x > 0, 1.0, alpha).astype(dout.dtype, copy=False)
    negative_part = dout * np.minimum(x, 0)  # d(out)/d(alpha) = x where x <= 0, else 0
    dalpha = negative_part.sum(axis=0) if np.ndim(alpha) == 1 else negative_part.sum()
    ### END SOLUTION
    return dx, dalpha


# ============================================================================ losses
def svm_loss(x, y):
    """Multiclass SVM (hinge) loss with margin 1, averaged over the N samples.

    ``L = 1/N sum_i sum_{j != y_i} max(0, x_ij - x_iy_i + 1)``.
    Inputs: x (N, C) scores; y (N,) labels in [0, C).
    Returns (loss, dx): a float and dx (N, C).
    """
    _check_loss(x, y)
    N = x.shape[0]
    # Margins (N, C) against each row's correct-class score, zero at the correct class itself. In dx every
    # positive margin adds 1 at its class and -1 at the correct class; divide both loss and dx by N.
    ### BEGIN SOLUTION
    rows = np.arange(N)
    correct = x[rows, y][:, None]  # (N, 1)
    margins = np.maximum(0, x - correct + 1.0)
    margins[rows, y] = 0
    loss = margins.sum() / N
    positive = (margins > 0).astype(x.dtype)
    dx = positive
    dx[rows, y] -= positive.sum(axis=1)
    dx /= N
    ### END SOLUTION
    return loss, dx


def softmax_loss(x, y):
    """Softmax cross-entropy loss, averaged over the N samples; stable (scores shifted by the row max).

    ``p_ij = exp(x_ij) / sum_k exp(x_ik)``, ``L = -1/N sum_i log p_iy_i``, ``dx = (p - onehot(y)) / N``.
    Inputs: x (N, C) scores; y (N,) labels in [0, C).
    Returns (loss, dx): a float and dx (N, C).
    """
    _check_loss(x, y)
    N = x.shape[0]
    # Shift each row by its max before exponentiating (no overflow), take log-probabilities (N, C), average
    # -log p of the correct classes; dx from the formula above.
    ### BEGIN SOLUTION
    shifted = x - x.max(axis=1, keepdims=True)  # (N, C), every row's max is 0
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(N), y].sum() / N
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    dx /= N
    ### END SOLUTION
    return loss, dx


# ============================================================================ normalisation
def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalisation over the batch axis.

    Train mode: ``mu = mean_n x``, ``var = mean_n (x - mu)**2`` (biased), ``xhat = (x - mu) / sqrt(var + eps)``,
    ``out = gamma * xhat + beta``, and the running averages are updated in ``bn_param``:
    ``running = momentum * running + (1 - momentum) * batch_stat``.
    Test mode: ``out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``.

    Inputs:
    - x: (N, D); gamma, beta: (D,)
    - bn_param: dict with 'mode' ('train' | 'test', required), 'eps' (1e-5), 'momentum' (0.9),
      'running_mean', 'running_var' ((D,), created as zeros by the first train-mode call).
    Returns (out, cache): out (N, D); cache for the backward passes (None in test mode).

    Test mode before any training step (no running averages in ``bn_param`` yet) normalises with mean 0
    and variance 1, ``out = gamma * x / sqrt(1 + eps) + beta`` (the initial state of ``torch.nn.BatchNorm1d``),
    and stores nothing: with variance 0 it would multiply x by ``1 / sqrt(eps)``, about 316.
    """
    _check_bn(x, gamma, beta, bn_param)
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.9)
    D = x.shape[1]
    # before any training step: zeros for the first update, or mean 0 / variance 1 in test mode (see above)
    running_mean = bn_param.get("running_mean", np.zeros(D, dtype=x.dtype))
    fresh_var = np.zeros(D, dtype=x.dtype) if mode == "train" else np.ones(D, dtype=x.dtype)
    running_var = bn_param.get("running_var", fresh_var)

    # Train: normalise each column with the batch mean and biased variance, scale by gamma, shift by beta,
    # and move running_mean / running_var towards the batch statistics (stored below); the cache holds what
    # your backward passes need. Test: normalise with running_mean / running_var instead; cache None.
    ### BEGIN SOLUTION
    if mode == "train":
        mu = x.mean(axis=0)  # (D,)
        xc = x - mu  # (N, D)
        var = (xc**2).mean(axis=0)  # (D,), biased like np.var
        std = np.sqrt(var + eps)
        inv_std = 1.0 / std
        xhat = xc * inv_std
        out = gamma * xhat + beta
        cache = (xhat, xc, inv_std, std, gamma)
        running_mean = momentum * running_mean + (1 - momentum) * mu
        running_var = momentum * running_var + (1 - momentum) * var
    else:
        out = gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta
        cache = None
    ### END SOLUTION
    if mode == "train":  # test mode leaves bn_param as it found it
        bn_param["running_mean"], bn_param["running_var"] = running_mean, running_var
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass of batchnorm, one node of the computational graph at a time.

    Graph: ``mu -> xc = x - mu -> var = mean(xc**2) -> std = sqrt(var + eps) -> inv = 1/std
    -> xhat = xc * inv -> out = gamma * xhat + beta``, reversed one node at a time.
    Inputs: dout (N, D); cache from ``batchnorm_forward`` in train mode.
    Returns (dx, dgamma, dbeta), shapes (N, D), (D,), (D,).
    """
    _check_bn_backward(cache)
    # Walk the graph backwards from out to x: dbeta, dgamma, then dxhat and each node in turn. xc feeds
    # both xhat and var, and x feeds both xc and mu: add up the gradient of every path.
    ### BEGIN SOLUTION
    xhat, xc, inv_std, std, gamma = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma  # (N, D)
    # xhat = xc * inv_std: two paths, into xc and into inv_std
    dxc = dxhat * inv_std
    dinv_std = (dxhat * xc).sum(axis=0)  # (D,)
    dstd = -dinv_std / std**2  # inv = 1 / std
    dvar = dstd * 0.5 / std  # std = sqrt(var + eps)
    dxc += dvar * 2.0 * xc / N  # var = mean_n xc**2
    dmu = -dxc.sum(axis=0)  # xc = x - mu
    dx = dxc + dmu / N  # mu = mean_n x
    ### END SOLUTION
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Backward pass of batchnorm in closed form (the graph simplified on paper).

    ``dx = (gamma / sigma) / N * (N * dout - sum_n dout - xhat * sum_n (dout * xhat))``,
    with ``sigma = sqrt(var + eps)``. Same inputs and returns as ``batchnorm_backward``.
    """
    _check_bn_backward(cache)
    # dbeta and dgamma as before, then dx in one vectorised line from the formula above (sums over N).
    ### BEGIN SOLUTION
    xhat, _, inv_std, _, gamma = cache
    N = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = (gamma * inv_std / N) * (N * dout - dbeta - xhat * dgamma)
    ### END SOLUTION
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalisation: each sample (row) normalised over its D features; same at train and test.

    ``xhat = (x - mean_d x) / sqrt(var_d x + eps)``, ``out = gamma * xhat + beta``.
    Inputs: x (N, D); gamma, beta (D,); ln_param dict with optional 'eps' (1e-5).
    Returns (out, cache): out (N, D).
    """
    _check_norm(x, gamma, beta)
    eps = ln_param.get("eps", 1e-5)
    # Batchnorm's train-mode formula along the other axis: the mean and biased variance of each row, shapes
    # (N, 1); then per-feature gamma and beta. No running averages. Cache what layernorm_backward needs.
    ### BEGIN SOLUTION
    mu = x.mean(axis=1, keepdims=True)  # (N, 1)
    xc = x - mu
    var = (xc**2).mean(axis=1, keepdims=True)  # (N, 1)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = xc * inv_std
    out = gamma * xhat + beta
    cache = (xhat, inv_std, gamma)
    ### END SOLUTION
    return out, cache


def layernorm_backward(dout, cache):
    """Backward pass of layernorm: batchnorm's closed form with the roles of N and D swapped.

    ``dx = inv_std / D * (D * dxhat - sum_d dxhat - xhat * sum_d (dxhat * xhat))``, ``dxhat = dout * gamma``.
    Inputs: dout (N, D). Returns (dx, dgamma, dbeta), shapes (N, D), (D,), (D,).
    """
    # dgamma and dbeta still sum over the batch; dx applies the formula above to each row (sums over D),
    # with gamma folded into dxhat first.
    ### BEGIN SOLUTION
    xhat, inv_std, gamma = cache
    D = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dxhat = dout * gamma  # (N, D)
    dx = (inv_std / D) * (
        D * dxhat - dxhat.sum(axis=1, keepdims=True) - xhat * (dxhat * xhat).sum(axis=1, keepdims=True)
    )
    ### END SOLUTION
    return dx, dgamma, dbeta


# ============================================================================ dropout
def dropout_forward(x, dropout_param):
    """Inverted dropout: keep each unit with probability ``p`` and scale by ``1/p`` at train time.

    ``mask = (rand(x.shape) < p) / p``; train: ``out = x * mask``; test: ``out = x``.
    Inputs:
    - x: (N, ...), any shape
    - dropout_param: 'p' (KEEP probability, 0 < p <= 1, required), 'mode' ('train' | 'test', required),
      optional 'seed' (a fresh local generator seeded with it on every call, so the mask is the same on
      every call: what gradient checks need) or 'rng' (a ``np.random.Generator`` to draw from, taking
      precedence). Without either, a fresh unseeded generator. NumPy's global RNG is never used.
    Returns (out, cache): out like x; cache ``(dropout_param, mask)`` (this layout is fixed: code outside
    the layer may read the mask), mask like x in train mode (``x * mask`` is out), None in test mode.
    """
    _check_dropout(x, dropout_param)
    p, mode = dropout_param["p"], dropout_param["mode"]
    rng = _dropout_rng(dropout_param)
    # Train: a mask like x, 1/p where rng.random(x.shape) < p and 0 elsewhere, in the dtype of x (draw from
    # rng, never from np.random); out = x * mask. Test: out = x and mask = None.
    ### BEGIN SOLUTION
    if mode == "train":
        mask = ((rng.random(x.shape) < p) / p).astype(x.dtype, copy=False)
        out = x * mask
    else:
        mask = None
        out = x
    ### END SOLUTION
    return out, (dropout_param, mask)


def dropout_backward(dout, cache):
    """Backward pass of inverted dropout: ``dx = dout * mask`` in train mode, ``dout`` in test mode.

    Inputs: dout like x; cache ``(dropout_param, mask)`` from ``dropout_forward``. Returns dx like x.
    """
    _check_cache("dropout_backward", cache, "dropout_forward", (("dropout_param", _DICT), ("mask", _ARRAY_OR_NONE)))
    dropout_param, mask = cache
    # The same mask as the forward pass in train mode; in test mode the layer was the identity.
    ### BEGIN SOLUTION
    if mask is None:  # test mode
        dx = dout
    else:
        dx = dout * mask
    ### END SOLUTION
    return dx


# ============================================================================ convolution and pooling
def conv_forward_naive(x, w, b, conv_param):
    """Convolution (cross-correlation, as in every DL library), one output value at a time.

    ``out[n, f, i, j] = b[f] + sum_{c, k, l} w[f, c, k, l] * x_pad[n, c, i*stride + k, j*stride + l]``,
    with ``x_pad`` = x zero-padded by ``pad`` on both sides of H and W.

    Inputs:
    - x: (N, C, H, W); w: (F, C, HH, WW); b: (F,)
    - conv_param: {'stride': int >= 1, 'pad': int >= 0}
    Returns (out, cache): out (N, F, H', W') with ``H' = 1 + (H + 2*pad - HH) // stride``,
    ``W' = 1 + (W + 2*pad - WW) // stride``; cache (x, w, b, conv_param).
    Raises ValueError when the geometry does not divide evenly (the message names H or W).
    """
    _check_conv(x, w, b, conv_param)
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    stride, pad = conv_param["stride"], conv_param["pad"]
    # Compute H', W', zero-pad x on H and W only (np.pad), then loop over n, f and the output positions:
    # each value is the sum of one (C, HH, WW) window times the filter, plus the bias.
    ### BEGIN SOLUTION
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, C, H + 2*pad, W + 2*pad)
    out = np.zeros((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride : i * stride + HH, j * stride : j * stride + WW]  # (C, HH, WW)
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    ### END SOLUTION
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache):
    """Backward pass of ``conv_forward_naive``: every output value sends its gradient back to its window.

    ``dw[f] += dout[n, f, i, j] * window``, ``dx_pad[window] += dout[n, f, i, j] * w[f]``,
    ``db[f] = sum_{n, i, j} dout[n, f, i, j]``.
    Inputs: dout (N, F, H', W'); cache (x, w, b, conv_param).
    Returns (dx, dw, db): (N, C, H, W), (F, C, HH, WW), (F,); dx has the dtype of x, dw that of w.
    """
    _check_conv_backward(dout, cache)
    x, w, b, conv_param = cache
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    stride, pad = conv_param["stride"], conv_param["pad"]
    # Loop like the forward pass: each dout[n, f, i, j] adds its share to dw[f] and to the window of a padded
    # dx (windows overlap: +=); db sums dout over (N, H', W'). Crop the padding off dx at the end.
    ### BEGIN SOLUTION
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    hs, ws = i * stride, j * stride
                    dw[f] += dout[n, f, i, j] * x_pad[n, :, hs : hs + HH, ws : ws + WW]
                    dx_pad[n, :, hs : hs + HH, ws : ws + WW] += dout[n, f, i, j] * w[f]
    dx = dx_pad[:, :, pad : pad + H, pad : pad + W]  # drop the padding: (N, C, H, W)
    ### END SOLUTION
    return dx, dw, db


def max_pool_forward_naive(x, pool_param):
    """Max pooling, one window at a time: ``out[n, c, i, j] = max of x[n, c, window(i, j)]``.

    A NaN in a window counts as its maximum (as ``np.max`` does): the output is NaN there.
    Inputs: x (N, C, H, W); pool_param {'pool_height', 'pool_width', 'stride'} (no padding).
    Returns (out, cache): out (N, C, H', W') with ``H' = 1 + (H - pool_height) // stride``,
    ``W' = 1 + (W - pool_width) // stride``; cache (x, pool_param).
    Raises ValueError when the window does not fit or the geometry does not divide evenly.
    """
    _check_pool(x, pool_param)
    N, C, H, W = x.shape
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    # Compute H', W', then loop over n, c and the output positions: each value is the max of one window.
    ### BEGIN SOLUTION
    H_out = 1 + (H - ph) // stride
    W_out = 1 + (W - pw) // stride
    out = np.zeros((N, C, H_out, W_out), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = x[n, c, i * stride : i * stride + ph, j * stride : j * stride + pw].max()
    ### END SOLUTION
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache):
    """Backward pass of max pooling: each window's gradient goes to the position of its maximum.

    Ties go to the first maximum in row-major order (as ``np.argmax`` and PyTorch do); a NaN counts as
    the maximum, so a window holding NaNs sends its gradient to its first NaN (as ``np.argmax`` does).
    Inputs: dout (N, C, H', W'); cache (x, pool_param). Returns dx (N, C, H, W).
    """
    _check_pool_backward(dout, cache)
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    # Loop over the windows again: dout[n, c, i, j] goes to the position of the window's first maximum
    # (np.argmax, then np.unravel_index); += because overlapping windows may share a maximum.
    ### BEGIN SOLUTION
    dx = np.zeros_like(x, dtype=np.result_type(dout, x))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride : i * stride + ph, j * stride : j * stride + pw]
                    k, m = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * stride + k, j * stride + m] += dout[n, c, i, j]  # += : windows may overlap
    ### END SOLUTION
    return dx


# ============================================================================ spatial normalisation
def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Batchnorm for conv feature maps: one mean/variance per channel over (N, H, W).

    Reuses ``batchnorm_forward`` on x viewed as (N*H*W, C).
    Inputs: x (N, C, H, W); gamma, beta (C,); bn_param as in ``batchnorm_forward``.
    Returns (out, cache): out (N, C, H, W).
    """
    _check_spatial_bn(x, gamma, beta)
    N, C, H, W = x.shape
    # Move the channels last and flatten to (N*H*W, C), call batchnorm_forward on that, and bring its
    # output back to (N, C, H, W); its cache is this layer's cache.
    ### BEGIN SOLUTION
    x_flat = x.transpose(0, 2, 3, 1).reshape(-1, C)  # (N, C, H, W) -> (N*H*W, C)
    out_flat, cache = batchnorm_forward(x_flat, gamma, beta, bn_param)
    out = out_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)  # back to (N, C, H, W)
    ### END SOLUTION
    return out, cache


def spatial_batchnorm_backward(dout, cache):
    """Backward pass of spatial batchnorm (``batchnorm_backward_alt`` on the (N*H*W, C) view).

    Inputs: dout (N, C, H, W). Returns (dx, dgamma, dbeta): (N, C, H, W), (C,), (C,).
    """
    N, C, H, W = dout.shape
    # The forward pass in reverse: view dout as (N*H*W, C) the same way, call a batchnorm backward pass,
    # and bring dx back to (N, C, H, W).
    ### BEGIN SOLUTION
    dout_flat = dout.transpose(0, 2, 3, 1).reshape(-1, C)  # (N*H*W, C)
    dx_flat, dgamma, dbeta = batchnorm_backward_alt(dout_flat, cache)
    dx = dx_flat.reshape(N, H, W, C).transpose(0, 3, 1, 2)  # (N, C, H, W)
    ### END SOLUTION
    return dx, dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalisation: each sample's channels split into G groups, each normalised over (C/G, H, W).

    ``xhat = (x - mean_group) / sqrt(var_group + eps)``, ``out = gamma * xhat + beta`` (per channel).
    Same at train and test time (no running statistics).
    Inputs: x (N, C, H, W); gamma, beta (1, C, 1, 1); G: number of groups, must divide C;
    gn_param: dict with optional 'eps' (1e-5).
    Returns (out, cache): out (N, C, H, W).
    """
    _check_gn(x, gamma, beta, G)
    N, C, H, W = x.shape
    eps = gn_param.get("eps", 1e-5)
    # Reshape x to (N, G, C//G * H * W), one row per (sample, group), and normalise each row like layernorm;
    # back to (N, C, H, W), then per-channel gamma and beta. Cache what the backward pass needs.
    ### BEGIN SOLUTION
    xg = x.reshape(N, G, -1)  # (N, G, C//G * H * W): one row per (sample, group)
    mu = xg.mean(axis=2, keepdims=True)
    xc = xg - mu
    var = (xc**2).mean(axis=2, keepdims=True)  # (N, G, 1)
    inv_std = 1.0 / np.sqrt(var + eps)
    xhat = (xc * inv_std).reshape(N, C, H, W)
    out = gamma * xhat + beta
    cache = (xhat, inv_std, gamma, G)
    ### END SOLUTION
    return out, cache


def spatial_groupnorm_backward(dout, cache):
    """Backward pass of group norm: layernorm's closed form applied to each (sample, group) row.

    With M = C/G * H * W elements per group and ``dxhat = dout * gamma``:
    ``dx = inv_std / M * (M * dxhat - sum dxhat - xhat * sum(dxhat * xhat))`` (sums over the group).
    Inputs: dout (N, C, H, W). Returns (dx, dgamma, dbeta): (N, C, H, W), (1, C, 1, 1), (1, C, 1, 1).
    """
    N, C, H, W = dout.shape
    # dgamma and dbeta sum over (N, H, W) and keep the (1, C, 1, 1) shape; for dx, reshape dout * gamma
    # to the (N, G, M) rows of the forward pass and apply the formula above to each row.
    ### BEGIN SOLUTION
    xhat, inv_std, gamma, G = cache
    dbeta = dout.sum(axis=(0, 2, 3), keepdims=True)
    dgamma = (dout * xhat).sum(axis=(0, 2, 3), keepdims=True)
    dxhat = (dout * gamma).reshape(N, G, -1)  # (N, G, M)
    xhat_g = xhat.reshape(N, G, -1)
    M = xhat_g.shape[2]
    dx = (inv_std / M) * (
        M * dxhat - dxhat.sum(axis=2, keepdims=True) - xhat_g * (dxhat * xhat_g).sum(axis=2, keepdims=True)
    )
    dx = dx.reshape(N, C, H, W)
    ### END SOLUTION
    return dx, dgamma, dbeta


# ============================================================================ argument checks
# Given code, outside what a student writes: each layer calls its family's check on its first line.
def _check_x(x, ndim, shape_doc):
    """x is an ndarray with ``ndim`` dimensions (None: at least one) and no empty dimension."""
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x must be a NumPy array of shape {shape_doc}, got a {type(x).__name__}")
    if (ndim is None and x.ndim < 1) or (ndim is not None and x.ndim != ndim):
        raise ValueError(f"x must have shape {shape_doc}, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(
            f"x has no samples (N=0, shape {x.shape}): pass a batch with at least one sample "
            f"(is the data split or the minibatch slice empty?)"
        )
    if x.size == 0:
        raise ValueError(f"x has shape {x.shape} {shape_doc}: every dimension must be at least 1")


def _check_ndim(name, arr, ndim, shape_doc):
    """Raise a ValueError naming ``name`` when ``arr`` does not have ``ndim`` dimensions."""
    if np.ndim(arr) != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got shape {np.shape(arr)}")


def _check_shape(name, arr, shape, shape_doc, x_shape):
    if np.shape(arr) != shape:
        raise ValueError(f"{name} must have shape {shape_doc} = {shape} for x of shape {x_shape}, got {np.shape(arr)}")


def _check_mode(param_name, param):
    if not isinstance(param, dict):
        raise ValueError(f"{param_name} must be a dict with 'mode' ('train' | 'test'), got {type(param).__name__}")
    if param.get("mode") not in ("train", "test"):
        raise ValueError(f"{param_name}['mode'] must be 'train' or 'test', got {param.get('mode')!r}")


def _check_keys(param_name, param, keys):
    """``param`` is a dict holding every key in ``keys`` (their values are checked by ``output_size``)."""
    if not isinstance(param, dict):
        raise ValueError(
            f"{param_name} must be a dict with keys {', '.join(map(repr, keys))}, got {type(param).__name__}"
        )
    missing = [k for k in keys if k not in param]
    if missing:
        raise ValueError(
            f"{param_name} is missing {', '.join(map(repr, missing))}; it needs "
            f"{', '.join(map(repr, keys))} (integers), got {param!r}"
        )


def _check_dout(dout, out_shape):
    """dout is the upstream gradient of an output of shape ``out_shape``, so it has that shape."""
    if np.shape(dout) != tuple(out_shape):
        raise ValueError(
            f"dout has shape {np.shape(dout)} but the forward pass returned an output of shape "
            f"{tuple(out_shape)}; dout is the gradient of that output and must have its shape "
            f"(same order of axes)"
        )


def _check_affine(x, w, b):
    _check_x(x, None, "(N, d_1, ..., d_k)")
    _check_ndim("w", w, 2, "(D, M)")
    _check_ndim("b", b, 1, "(M,)")
    D = int(np.prod(x.shape[1:]))
    if w.shape[0] != D:
        raise ValueError(
            f"w has shape {w.shape} but x of shape {x.shape} flattens to D={D} features; w must be (D, M) = ({D}, M)"
        )
    if b.shape[0] != w.shape[1]:
        raise ValueError(f"b has shape {b.shape} but w has shape {w.shape}; b must be (M,) = ({w.shape[1]},)")
    return x.shape[0], D


def _check_activation(x):
    _check_x(x, None, "(N, ...)")


def _check_prelu(x, alpha):
    """x (N, ...) with a scalar alpha, or x (N, D) with alpha (D,)."""
    _check_x(x, None, "(N, ...)")
    if np.ndim(alpha) == 0:
        if not np.issubdtype(np.asarray(alpha).dtype, np.number):
            raise ValueError(f"alpha must be a number or an array of shape (D,), got {alpha!r}")
        return
    if np.ndim(alpha) != 1:
        raise ValueError(f"alpha must be a scalar or have shape (D,) (one slope per feature), got {np.shape(alpha)}")
    if x.ndim != 2 or x.shape[1] != alpha.shape[0]:
        raise ValueError(
            f"alpha has shape {alpha.shape} (one slope per feature) so x must have shape (N, D) = "
            f"(N, {alpha.shape[0]}), got {x.shape}; use a scalar alpha for other shapes"
        )


def _check_loss(x, y):
    _check_x(x, 2, "(N, C) (class scores)")
    _check_ndim("y", y, 1, "(N,) (integer labels)")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels but x has scores for N={x.shape[0]} samples")
    if not np.issubdtype(np.asarray(y).dtype, np.integer):
        raise ValueError(f"y must hold integer class labels, got dtype {np.asarray(y).dtype}")
    if y.min() < 0 or y.max() >= x.shape[1]:
        raise ValueError(f"y must hold labels in [0, C) = [0, {x.shape[1]}), got range [{y.min()}, {y.max()}]")


def _check_norm(x, gamma, beta):
    """x (N, D) with N, D >= 1; gamma and beta (D,)."""
    _check_x(x, 2, "(N, D)")
    for name, arr in (("gamma", gamma), ("beta", beta)):
        _check_shape(name, arr, (x.shape[1],), "(D,)", x.shape)


def _check_bn(x, gamma, beta, bn_param):
    _check_norm(x, gamma, beta)
    _check_mode("bn_param", bn_param)
    for name in ("running_mean", "running_var"):
        if name in bn_param:
            _check_shape(f"bn_param[{name!r}]", bn_param[name], (x.shape[1],), "(D,)", x.shape)


def _check_bn_backward(cache):
    if cache is None:
        raise ValueError(
            "cache is None: the batchnorm backward passes need the cache of a forward pass "
            "in bn_param['mode'] = 'train' (test mode has nothing to differentiate)"
        )


def _check_dropout(x, dropout_param):
    _check_x(x, None, "(N, ...)")
    _check_mode("dropout_param", dropout_param)
    p = dropout_param.get("p")
    if p is None or not 0 < p <= 1:
        raise ValueError(f"dropout_param['p'] is the keep probability and must be in (0, 1], got {p!r}")


def _dropout_rng(dropout_param):
    """The generator of a dropout mask: ``dropout_param['rng']``, else a fresh one seeded with 'seed' (None:
    unseeded). NumPy's global generator is never used."""
    rng = dropout_param.get("rng")
    return np.random.default_rng(dropout_param.get("seed")) if rng is None else rng


def _check_conv(x, w, b, conv_param):
    """x (N, C, H, W), w (F, C, HH, WW), b (F,), all floating point; conv_param {'stride', 'pad'} integers
    with a geometry that divides evenly."""
    _check_x(x, 4, "(N, C, H, W)")
    _check_ndim("w", w, 4, "(F, C, HH, WW)")
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"w has {w.shape[1]} input channels (w.shape[1]) but x has C={x.shape[1]} (x.shape[1]); they must match"
        )
    if np.shape(b) != (w.shape[0],):
        raise ValueError(f"b must have shape (F,) = ({w.shape[0]},), got {np.shape(b)}")
    for name, arr in (("x", x), ("w", w), ("b", b)):
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(
                f"{name} must hold floating-point numbers, got dtype {arr.dtype}; convert it with .astype(np.float64)"
            )
    _check_keys("conv_param", conv_param, ("stride", "pad"))
    stride, pad = conv_param["stride"], conv_param["pad"]
    output_size(x.shape[2], w.shape[2], stride, pad, "H")
    output_size(x.shape[3], w.shape[3], stride, pad, "W")


def _conv_out_shape(x_shape, w_shape, conv_param):
    """(N, F, H', W') of a convolution whose arguments passed ``_check_conv``."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    return (
        x_shape[0],
        w_shape[0],
        output_size(x_shape[2], w_shape[2], stride, pad, "H"),
        output_size(x_shape[3], w_shape[3], stride, pad, "W"),
    )


_ARRAY = (np.ndarray,)
_ARRAY_OR_NONE = (np.ndarray, type(None))
_DICT = (dict,)


def _check_cache(layer, cache, forward, layout):
    """A cache whose layout the template fixes (the forward pass builds it after the student's code): a tuple
    of the names and types in ``layout``, ``((name, tuple of types), ...)``. Anything else (a cache of one's
    own, returned early from the forward pass) is named as a break of that contract, before it surfaces as an
    error about strings or dtypes deeper down."""
    names = ", ".join(name for name, _ in layout)
    rule = f"{layer}: cache must be ({names}), as {forward} returns it"
    if not isinstance(cache, tuple) or len(cache) != len(layout):
        got = _a(type(cache).__name__) + (f" of {len(cache)} items" if isinstance(cache, (tuple, list)) else "")
        raise ValueError(
            f"{rule}; got {got}: let {forward} end with its own return line, which builds this cache, "
            f"instead of returning early with a cache of your own"
        )
    for (name, kinds), value in zip(layout, cache):
        if not isinstance(value, kinds):
            want = " or ".join(_a(k.__name__) for k in kinds)
            raise ValueError(f"{rule}; its {name} is {_a(type(value).__name__)}, not {want}")


def _a(type_name):
    """``'dict'`` -> 'a dict', ``'ndarray'`` -> 'a NumPy array', ``'NoneType'`` -> 'None'."""
    noun = {"ndarray": "NumPy array", "NoneType": "None"}.get(type_name, type_name)
    return noun if noun == "None" else f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _check_conv_backward(dout, cache):
    _check_cache(
        "conv_backward_naive",
        cache,
        "conv_forward_naive",
        (("x", _ARRAY), ("w", _ARRAY), ("b", _ARRAY), ("conv_param", _DICT)),
    )
    x, w, _, conv_param = cache
    _check_dout(dout, _conv_out_shape(x.shape, w.shape, conv_param))


def _check_pool(x, pool_param):
    """x (N, C, H, W); pool_param {'pool_height', 'pool_width', 'stride'} integers whose windows tile x evenly."""
    _check_x(x, 4, "(N, C, H, W)")
    _check_keys("pool_param", pool_param, ("pool_height", "pool_width", "stride"))
    _pool_out_shape(x.shape, pool_param)


def _pool_out_shape(x_shape, pool_param):
    """(N, C, H', W') of a max pool (a ValueError naming H or W when the geometry does not divide evenly)."""
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    return (*x_shape[:2], output_size(x_shape[2], ph, stride, 0, "H"), output_size(x_shape[3], pw, stride, 0, "W"))


def _check_pool_backward(dout, cache):
    _check_cache("max_pool_backward_naive", cache, "max_pool_forward_naive", (("x", _ARRAY), ("pool_param", _DICT)))
    x, pool_param = cache
    _check_dout(dout, _pool_out_shape(x.shape, pool_param))


def _check_spatial_bn(x, gamma, beta):
    _check_x(x, 4, "(N, C, H, W)")
    for name, arr in (("gamma", gamma), ("beta", beta)):
        _check_shape(name, arr, (x.shape[1],), "(C,)", x.shape)


def _check_gn(x, gamma, beta, G):
    _check_x(x, 4, "(N, C, H, W)")
    C = x.shape[1]
    if isinstance(G, bool) or not isinstance(G, (int, np.integer)) or G < 1 or C % G != 0:
        raise ValueError(f"G (number of groups) must be a positive integer dividing C={C}, got {G!r}")
    for name, arr in (("gamma", gamma), ("beta", beta)):
        _check_shape(name, arr, (1, C, 1, 1), "(1, C, 1, 1)", x.shape)
