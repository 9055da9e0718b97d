"""Fully connected NumPy classifiers: TwoLayerNet and FullyConnectedNet (any depth, batch/layer norm, dropout)."""

import numpy as np

from common.layer_utils import (
    affine_norm_relu_backward,
    affine_norm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)
from common.layers import affine_backward, affine_forward, softmax_loss


def _check_input(X, input_dim, y=None):
    """ValueError naming X (or y) when X does not flatten to ``input_dim`` features or y does not match."""
    D = int(np.prod(X.shape[1:])) if X.ndim >= 2 else None
    if input_dim != D:
        raise ValueError(
            f"X must have shape (N, ...) flattening to input_dim={input_dim} features, got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"X has no samples (N=0, shape {X.shape}): pass a batch with at least one sample")
    if y is not None and np.shape(y) != (X.shape[0],):
        raise ValueError(f"y must have shape (N,) = ({X.shape[0]},) to match X, got {np.shape(y)}")


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_fc_args(hidden_dims, input_dim, num_classes, dropout_keep_ratio, normalization, dtype):
    """ValueError naming the first argument of ``FullyConnectedNet`` that cannot build a network."""
    if isinstance(hidden_dims, (int, np.integer)) or not hasattr(hidden_dims, "__iter__"):
        raise ValueError(
            f"hidden_dims must be a list of hidden-layer sizes, e.g. [{hidden_dims!r}] for one "
            f"hidden layer (or [] for none), got {hidden_dims!r}"
        )
    hidden_dims = list(hidden_dims)
    if any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h <= 0 for h in hidden_dims):
        raise ValueError(f"hidden_dims must be a list of positive integers, got {hidden_dims!r}")
    _check_positive_int("input_dim", input_dim)
    _check_positive_int("num_classes", num_classes)
    if normalization not in (None, "batchnorm", "layernorm"):
        raise ValueError(f"normalization must be None, 'batchnorm' or 'layernorm', got {normalization!r}")
    if not 0 < dropout_keep_ratio <= 1:
        raise ValueError(f"dropout_keep_ratio is a keep probability in (0, 1], got {dropout_keep_ratio!r}")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(
            f"dtype must be a floating-point type (np.float32, or np.float64 for gradient checks), "
            f"got {np.dtype(dtype)}: small initial weights would all round to 0"
        )


class TwoLayerNet:
    """affine - relu - affine - softmax, with L2 regularisation ``0.5 * reg * (|W1|^2 + |W2|^2)``.

    Params: W1 (D, H), b1 (H,), W2 (H, C), b2 (C,); weights ~ N(0, weight_scale^2), biases zero.
    ``seed`` (an addition to CS231n's signature) seeds the local generator used for the weights.
    """

    def __init__(self, input_dim=3 * 32 * 32, hidden_dim=100, num_classes=10, weight_scale=1e-3, reg=0.0, seed=None):
        for name, value in (("input_dim", input_dim), ("hidden_dim", hidden_dim), ("num_classes", num_classes)):
            _check_positive_int(name, value)
        rng = np.random.default_rng(seed)
        self.input_dim = int(input_dim)
        self.reg = reg
        self.params = {
            "W1": weight_scale * rng.standard_normal((input_dim, hidden_dim)),
            "b1": np.zeros(hidden_dim),
            "W2": weight_scale * rng.standard_normal((hidden_dim, num_classes)),
            "b2": np.zeros(num_classes),
        }

    def loss(self, X, y=None):
        """Scores (N, C) when y is None; else (loss, grads) with grads keyed like params.

        X: (N, d_1, ..., d_k) with d_1 * ... * d_k = input_dim; y: (N,) labels.
        """
        _check_input(X, self.input_dim, y)
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        # Forward pass with the layers of common.layers / common.layer_utils: affine - relu - affine gives
        # the class scores (N, C). Keep the caches: the backward pass below needs them.
        ### BEGIN SOLUTION
        hidden, cache1 = affine_relu_forward(X, W1, b1)  # (N, H)
        scores, cache2 = affine_forward(hidden, W2, b2)  # (N, C)
        ### END SOLUTION
        if y is None:
            return scores

        # The softmax loss plus 0.5 * reg * (sum of squared W1 and W2 entries); then the backward pass
        # through the same layers in reverse, into grads[name] for every name in params, adding the
        # penalty's gradient reg * W to each weight's.
        ### BEGIN SOLUTION
        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
        grads = {}
        dhidden, grads["W2"], grads["b2"] = affine_backward(dscores, cache2)
        _, grads["W1"], grads["b1"] = affine_relu_backward(dhidden, cache1)
        grads["W1"] += self.reg * W1
        grads["W2"] += self.reg * W2
        ### END SOLUTION
        return loss, grads


class FullyConnectedNet:
    """{affine - [batch/layer norm] - relu - [dropout]} x (L - 1) - affine - softmax.

    - hidden_dims: list of hidden layer sizes (L - 1 of them; may be empty: a linear softmax classifier).
    - dropout_keep_ratio: keep probability of dropout after every ReLU; 1 means no dropout.
    - normalization: None, 'batchnorm' or 'layernorm' after every hidden affine layer.
    - reg: L2 strength, loss term ``0.5 * reg * sum_l |W_l|^2`` (weights only).
    - weight_scale: std of the N(0, weight_scale^2) initial weights; biases start at 0, gamma at 1, beta at 0.
    - dtype: every parameter and computation uses it (float64 for gradient checks).
    - seed: seeds the weight initialisation and fixes the dropout mask (the same mask on every call,
      as gradient checks need). With ``seed=None``, masks are drawn afresh on every call from the
      model's own generator.

    Params: W1, b1, ..., WL, bL; gamma1, beta1, ..., gamma(L-1), beta(L-1) with normalization.
    """

    def __init__(
        self,
        hidden_dims,
        input_dim=3 * 32 * 32,
        num_classes=10,
        dropout_keep_ratio=1,
        normalization=None,
        reg=0.0,
        weight_scale=1e-2,
        dtype=np.float32,
        seed=None,
    ):
        _check_fc_args(hidden_dims, input_dim, num_classes, dropout_keep_ratio, normalization, dtype)
        hidden_dims = list(hidden_dims)
        self.normalization = normalization
        self.use_dropout = dropout_keep_ratio != 1
        self.reg = reg
        self.num_layers = 1 + len(hidden_dims)
        self.input_dim = int(input_dim)
        self.dtype = dtype
        self.params = {}

        rng = np.random.default_rng(seed)
        dims = [input_dim, *hidden_dims, num_classes]
        for i in range(self.num_layers):
            self.params[f"W{i + 1}"] = weight_scale * rng.standard_normal((dims[i], dims[i + 1]))
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1])
            if normalization is not None and i < self.num_layers - 1:
                self.params[f"gamma{i + 1}"] = np.ones(dims[i + 1])
                self.params[f"beta{i + 1}"] = np.zeros(dims[i + 1])

        self.dropout_param = {}
        if self.use_dropout:
            self.dropout_param = {"mode": "train", "p": dropout_keep_ratio}
            if seed is not None:
                self.dropout_param["seed"] = seed
            else:
                self.dropout_param["rng"] = rng

        # one bn_param / ln_param per normalised layer: batchnorm keeps its running averages there
        self.bn_params = []
        if normalization == "batchnorm":
            self.bn_params = [{"mode": "train"} for _ in range(self.num_layers - 1)]
        elif normalization == "layernorm":
            self.bn_params = [{} for _ in range(self.num_layers - 1)]

        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        """Scores (N, C) when y is None (test mode); else (loss, grads) (train mode).

        X: (N, d_1, ..., d_k) with d_1 * ... * d_k = input_dim; y: (N,) labels.
        """
        _check_input(X, self.input_dim, y)
        X = X.astype(self.dtype, copy=False)
        mode = "test" if y is None else "train"
        if self.use_dropout:
            self.dropout_param["mode"] = mode
        if self.normalization == "batchnorm":
            for bn_param in self.bn_params:
                bn_param["mode"] = mode
        L = self.num_layers

        # Forward pass: for each hidden layer i = 1 .. L-1, affine - [norm] - relu - [dropout] with W{i}, b{i}
        # (gamma{i}, beta{i} and self.bn_params[i - 1] when normalised; self.dropout_param when
        # self.use_dropout): affine_norm_relu_forward does one such layer. Then the last affine layer gives
        # the scores (N, C). Keep every layer's cache for the backward pass.
        ### BEGIN SOLUTION
        caches = []
        out = X
        for i in range(1, L):
            norm_param = self.bn_params[i - 1] if self.normalization else None
            out, cache = affine_norm_relu_forward(
                out,
                self.params[f"W{i}"],
                self.params[f"b{i}"],
                self.params.get(f"gamma{i}"),
                self.params.get(f"beta{i}"),
                norm_param,
                normalization=self.normalization,
                dropout_param=self.dropout_param if self.use_dropout else None,
            )  # (N, H_i)
            caches.append(cache)
        scores, last_cache = affine_forward(out, self.params[f"W{L}"], self.params[f"b{L}"])  # (N, C)
        ### END SOLUTION
        if mode == "test":
            return scores

        # The softmax loss plus 0.5 * reg * sum_l |W_l|^2 (weights only); then the backward pass through the
        # layers in reverse order, into grads[name] for every name in params (gamma/beta too when
        # normalised), adding reg * W to each weight's gradient.
        ### BEGIN SOLUTION
        loss, dscores = softmax_loss(scores, y)
        grads = {}
        dout, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, last_cache)
        for i in range(L - 1, 0, -1):
            dout, dw, db, dgamma, dbeta = affine_norm_relu_backward(dout, caches[i - 1])
            grads[f"W{i}"], grads[f"b{i}"] = dw, db
            if self.normalization is not None:
                grads[f"gamma{i}"], grads[f"beta{i}"] = dgamma, dbeta
        for i in range(1, L + 1):
            W = self.params[f"W{i}"]
            loss += 0.5 * self.reg * np.sum(W * W)
            grads[f"W{i}"] = grads[f"W{i}"] + self.reg * W
        ### END SOLUTION
        return loss, grads
