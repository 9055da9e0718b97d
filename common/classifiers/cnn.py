"""ThreeLayerConvNet: conv - relu - 2x2 max pool - affine - relu - affine - softmax, in NumPy."""

from __future__ import annotations

import numpy as np

from common.layer_utils import conv_relu_pool_backward, conv_relu_pool_forward
from common.layers import affine_backward, affine_forward, relu_backward, relu_forward, softmax_loss


class ThreeLayerConvNet:
    """A three-layer convolutional network for images of shape (C, H, W).

    conv (F filters of ``filter_size x filter_size``, stride 1, padding that keeps H and W) - relu -
    2x2 max pool (stride 2) - affine (hidden_dim) - relu - affine (num_classes) - softmax.

    Parameters in ``self.params``: ``W1`` (F, C, fs, fs), ``b1`` (F,), ``W2`` (F * H/2 * W/2, hidden_dim),
    ``b2`` (hidden_dim,), ``W3`` (hidden_dim, num_classes), ``b3`` (num_classes,). Weights are drawn from
    ``N(0, weight_scale**2)``, biases start at zero. ``seed`` seeds the local generator used for the weights.
    """

    def __init__(
        self,
        input_dim=(3, 32, 32),
        num_filters=32,
        filter_size=7,
        hidden_dim=100,
        num_classes=10,
        weight_scale=1e-3,
        reg=0.0,
        dtype=np.float32,
        seed=None,
    ):
        _check_args(input_dim, num_filters, filter_size, hidden_dim, num_classes, dtype)
        C, H, W = input_dim
        self.reg = reg
        self.dtype = dtype
        rng = np.random.default_rng(seed)
        F, fs = num_filters, filter_size
        pooled_dim = F * (H // 2) * (W // 2)
        self.params = {
            "W1": weight_scale * rng.standard_normal((F, C, fs, fs)),
            "b1": np.zeros(F),
            "W2": weight_scale * rng.standard_normal((pooled_dim, hidden_dim)),
            "b2": np.zeros(hidden_dim),
            "W3": weight_scale * rng.standard_normal((hidden_dim, num_classes)),
            "b3": np.zeros(num_classes),
        }
        for k, v in self.params.items():
            self.params[k] = v.astype(dtype)

    def loss(self, X, y=None):
        """Class scores (N, num_classes) when ``y`` is None, else ``(loss, grads)``.

        X: (N, C, H, W); y: (N,) integer labels. The loss is the mean softmax cross-entropy plus
        ``0.5 * reg * sum(W**2)`` over W1, W2, W3; ``grads`` has the keys of ``self.params``.
        """
        p = self.params
        X = np.asarray(X).astype(self.dtype, copy=False)
        filter_size = p["W1"].shape[2]
        conv_param = {"stride": 1, "pad": (filter_size - 1) // 2}
        pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}

        # Forward: conv_relu_pool_forward (the fast sandwich layer) with W1, b1, then affine - relu with W2, b2,
        # then affine with W3, b3 to the class scores (N, num_classes). Keep every layer's cache.
        ### BEGIN SOLUTION
        h1, cache1 = conv_relu_pool_forward(X, p["W1"], p["b1"], conv_param, pool_param)  # (N, F, H/2, W/2)
        a2, cache2 = affine_forward(h1, p["W2"], p["b2"])  # (N, hidden_dim)
        h2, cache_relu2 = relu_forward(a2)
        scores, cache3 = affine_forward(h2, p["W3"], p["b3"])  # (N, num_classes)
        ### END SOLUTION
        if y is None:
            return scores

        # Softmax loss plus the L2 penalty of the docstring; then the backward passes in reverse order, one
        # gradient per parameter (the penalty adds reg * W to the gradient of each weight).
        ### BEGIN SOLUTION
        loss, dscores = softmax_loss(scores, y)
        loss += 0.5 * self.reg * sum(np.sum(p[k] ** 2) for k in ("W1", "W2", "W3"))
        grads = {}
        dh2, grads["W3"], grads["b3"] = affine_backward(dscores, cache3)
        da2 = relu_backward(dh2, cache_relu2)
        dh1, grads["W2"], grads["b2"] = affine_backward(da2, cache2)
        _, grads["W1"], grads["b1"] = conv_relu_pool_backward(dh1, cache1)
        for k in ("W1", "W2", "W3"):
            grads[k] += self.reg * p[k]
        ### END SOLUTION
        return loss, grads


def _check_args(input_dim, num_filters, filter_size, hidden_dim, num_classes, dtype):
    """ValueError naming the first argument of ``ThreeLayerConvNet`` that cannot build the network."""

    def positive_int(value):
        return not isinstance(value, bool) and isinstance(value, (int, np.integer)) and value > 0

    if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3 or not all(map(positive_int, input_dim)):
        raise ValueError(f"input_dim must be (C, H, W), three positive integers, got {input_dim!r}")
    for name, value in (
        ("num_filters", num_filters),
        ("filter_size", filter_size),
        ("hidden_dim", hidden_dim),
        ("num_classes", num_classes),
    ):
        if not positive_int(value):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    _, H, W = input_dim
    if filter_size % 2 != 1:
        raise ValueError(
            f"filter_size must be odd so that padding (filter_size - 1) // 2 keeps H and W, got {filter_size}"
        )
    if H % 2 or W % 2:
        raise ValueError(
            f"the 2x2 max pool needs even H and W, got input_dim {input_dim!r}; crop or pad the images to an even size"
        )
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise ValueError(
            f"dtype must be a floating-point type (np.float32, or np.float64 for gradient checks), "
            f"got {np.dtype(dtype)}: small initial weights would all round to 0"
        )
