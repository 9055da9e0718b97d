"""Sandwich layers: common forward/backward combinations (affine-relu, conv-relu-pool, ...)."""

from common.fast_layers import (
    conv_backward_fast,
    conv_forward_fast,
    max_pool_backward_fast,
    max_pool_forward_fast,
)
from common.layers import (
    affine_backward,
    affine_forward,
    batchnorm_backward_alt,
    batchnorm_forward,
    dropout_backward,
    dropout_forward,
    layernorm_backward,
    layernorm_forward,
    relu_backward,
    relu_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)


# ============================================================================ fully connected
def affine_relu_forward(x, w, b):
    """Affine then ReLU. x (N, d_1, ..., d_k), w (D, M), b (M,) -> out (N, M), cache."""
    a, fc_cache = affine_forward(x, w, b)
    out, relu_cache = relu_forward(a)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Backward pass of ``affine_relu_forward``: dout (N, M) -> (dx, dw, db)."""
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return affine_backward(da, fc_cache)


def affine_norm_relu_forward(x, w, b, gamma, beta, norm_param, normalization="batchnorm", dropout_param=None):
    """Affine, then batchnorm or layernorm (or none), then ReLU, then optional dropout.

    Inputs: x (N, d_1, ..., d_k), w (D, M), b (M,), gamma and beta (M,);
    norm_param: the bn_param / ln_param dict; normalization: 'batchnorm' | 'layernorm' | None;
    dropout_param: a dropout_param dict or None (no dropout).
    Returns (out, cache): out (N, M).
    """
    a, fc_cache = affine_forward(x, w, b)
    if normalization == "batchnorm":
        a, norm_cache = batchnorm_forward(a, gamma, beta, norm_param)
    elif normalization == "layernorm":
        a, norm_cache = layernorm_forward(a, gamma, beta, norm_param)
    elif normalization is None:
        norm_cache = None
    else:
        raise ValueError(f"normalization must be 'batchnorm', 'layernorm' or None, got {normalization!r}")
    out, relu_cache = relu_forward(a)
    drop_cache = None
    if dropout_param is not None:
        out, drop_cache = dropout_forward(out, dropout_param)
    return out, (fc_cache, normalization, norm_cache, relu_cache, drop_cache)


def affine_norm_relu_backward(dout, cache):
    """Backward pass of ``affine_norm_relu_forward``: dout (N, M) -> (dx, dw, db, dgamma, dbeta).

    dgamma and dbeta are None when there was no normalization.
    """
    fc_cache, normalization, norm_cache, relu_cache, drop_cache = cache
    if drop_cache is not None:
        dout = dropout_backward(dout, drop_cache)
    da = relu_backward(dout, relu_cache)
    dgamma = dbeta = None
    if normalization == "batchnorm":
        da, dgamma, dbeta = batchnorm_backward_alt(da, norm_cache)
    elif normalization == "layernorm":
        da, dgamma, dbeta = layernorm_backward(da, norm_cache)
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, dgamma, dbeta


# ============================================================================ convolutional
def conv_relu_forward(x, w, b, conv_param):
    """Convolution (fast layer) then ReLU. x (N, C, H, W), w (F, C, HH, WW), b (F,) -> out (N, F, H', W')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Backward pass of ``conv_relu_forward``: dout (N, F, H', W') -> (dx, dw, db)."""
    conv_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)
    return conv_backward_fast(da, conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """Convolution, spatial batchnorm, ReLU. gamma, beta (F,) -> out (N, F, H', W')."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache):
    """Backward pass of ``conv_bn_relu_forward`` -> (dx, dw, db, dgamma, dbeta)."""
    conv_cache, bn_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)
    da, dgamma, dbeta = spatial_batchnorm_backward(dan, bn_cache)
    dx, dw, db = conv_backward_fast(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """Convolution, ReLU, max pool. x (N, C, H, W) -> out (N, F, H'', W'') after pooling."""
    a, conv_cache = conv_forward_fast(x, w, b, conv_param)
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward_fast(s, pool_param)
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Backward pass of ``conv_relu_pool_forward``: dout (N, F, H'', W'') -> (dx, dw, db)."""
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward_fast(dout, pool_cache)
    da = relu_backward(ds, relu_cache)
    return conv_backward_fast(da, conv_cache)
