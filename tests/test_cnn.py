"""ThreeLayerConvNet and the conv sandwich layers: shapes, initial loss, numeric gradients, overfitting."""

import numpy as np
import pytest

from common import fast_layers, layers
from common.classifiers.cnn import ThreeLayerConvNet
from common.diagnose import explain
from common.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from common.layer_utils import (
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)


def test_three_layer_convnet_shapes_and_initial_loss():
    model = ThreeLayerConvNet(input_dim=(3, 8, 6), num_filters=4, filter_size=3, hidden_dim=7, num_classes=5, seed=0)
    assert model.params["W1"].shape == (4, 3, 3, 3)
    assert model.params["W2"].shape == (4 * 4 * 3, 7)
    assert model.params["W3"].shape == (7, 5)
    assert all(np.all(model.params[k] == 0) for k in ("b1", "b2", "b3"))
    assert all(v.dtype == np.float32 for v in model.params.values())
    X = np.random.default_rng(0).standard_normal((10, 3, 8, 6))
    y = np.arange(10) % 5
    assert model.loss(X).shape == (10, 5)
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    assert abs(loss - np.log(5)) < 1e-3  # tiny weights: uniform scores
    model.reg = 0.5
    loss_reg, _ = model.loss(X, y)
    assert loss_reg > loss


def test_three_layer_convnet_weights_follow_the_seed():
    a, b = ThreeLayerConvNet(seed=3, dtype=np.float64), ThreeLayerConvNet(seed=3, dtype=np.float64)
    c = ThreeLayerConvNet(seed=4, dtype=np.float64)
    assert np.array_equal(a.params["W2"], b.params["W2"])
    assert not np.array_equal(a.params["W2"], c.params["W2"])
    assert abs(a.params["W1"].std() - 1e-3) < 1e-4


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_three_layer_convnet_numeric_gradients(reg):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 3, 6, 6))
    y = np.array([0, 2])
    model = ThreeLayerConvNet(
        input_dim=(3, 6, 6),
        num_filters=3,
        filter_size=3,
        hidden_dim=5,
        num_classes=3,
        weight_scale=0.5,
        reg=reg,
        dtype=np.float64,
        seed=2,
    )
    loss, grads = model.loss(X, y)
    for name in sorted(model.params):
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-6)
        assert rel_error(num, grads[name]) < 1e-5, name


def test_three_layer_convnet_rejects_bad_geometry():
    with pytest.raises(ValueError, match="even"):
        ThreeLayerConvNet(input_dim=(1, 7, 8))
    with pytest.raises(ValueError, match="odd"):
        ThreeLayerConvNet(filter_size=4)


def test_three_layer_convnet_overfits_a_tiny_set():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 1, 8, 8))
    y = rng.integers(0, 4, 20)
    model = ThreeLayerConvNet(
        input_dim=(1, 8, 8),
        num_filters=8,
        filter_size=3,
        hidden_dim=32,
        num_classes=4,
        weight_scale=0.1,
        dtype=np.float64,
        seed=0,
    )
    # plain Adam, written out so that the test needs nothing but the model
    m = {k: np.zeros_like(v) for k, v in model.params.items()}
    v = {k: np.zeros_like(p) for k, p in model.params.items()}
    for t in range(1, 101):
        _, grads = model.loss(X, y)
        for k in model.params:
            m[k] = 0.9 * m[k] + 0.1 * grads[k]
            v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
            model.params[k] -= 1e-2 * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
    assert np.mean(model.loss(X).argmax(axis=1) == y) == 1.0


# ---------------------------------------------------------------------------- sandwich layers
def _check_sandwich(forward, backward, arrays, extra, tol=1e-7):
    """Numeric gradients of sum(forward(*arrays, *extra) * dout) against backward, for every array."""
    out, cache = forward(*arrays, *extra)
    dout = np.random.default_rng(4).standard_normal(out.shape)
    grads = backward(dout, cache)
    for i, (arr, grad) in enumerate(zip(arrays, grads)):

        def f(v, i=i):
            args = list(arrays)
            args[i] = v
            return forward(*args, *extra)[0]

        num = eval_numerical_gradient_array(f, arr, dout)
        # an identically-zero gradient (a bias before batchnorm) has no meaningful relative error
        assert rel_error(grad, num) < tol or np.max(np.abs(grad - num)) < 1e-9 * np.max(np.abs(dout)), i
    return out


def test_conv_relu_and_conv_relu_pool_gradients():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((3, 3, 3, 3)), rng.standard_normal(3)
    conv_param = {"stride": 1, "pad": 1}
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out = _check_sandwich(conv_relu_forward, conv_relu_backward, [x, w, b], [conv_param])
    naive = layers.conv_forward_naive(x, w, b, conv_param)[0]
    if not rel_error(out, np.maximum(0, naive)) < 1e-10:
        # the sandwich runs the fast layers; a mistake in the naive one shows whole before the ReLU
        fast = fast_layers.conv_forward_fast(x, w, b, conv_param)[0]
        flipped = fast_layers.conv_forward_fast(x, w[:, :, ::-1, ::-1].copy(), b, conv_param)[0]
        context = {"axes": ("N", "F", "H'", "W'"), "suspects": {"a true convolution, the kernel flipped": flipped}}
        raise AssertionError(explain("conv_forward_naive: out", naive, fast, context))
    out = _check_sandwich(conv_relu_pool_forward, conv_relu_pool_backward, [x, w, b], [conv_param, pool_param])
    assert out.shape == (2, 3, 4, 4)


def test_conv_bn_relu_gradients():
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    out = _check_sandwich(
        conv_bn_relu_forward,
        conv_bn_relu_backward,
        [x, w, b, gamma, beta],
        [{"stride": 1, "pad": 1}, {"mode": "train"}],
        tol=1e-6,
    )
    assert out.shape == (2, 4, 5, 5) and out.min() == 0.0


def test_sandwiches_use_the_fast_layers():
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((2, 3, 3, 3)), rng.standard_normal(2)
    _, (conv_cache, _, pool_cache) = conv_relu_pool_forward(
        x, w, b, {"stride": 1, "pad": 1}, {"pool_height": 2, "pool_width": 2, "stride": 2}
    )
    # the caches are the fast layers' caches (backend recorded last; the reshape trick for tiling 2x2 pools)
    assert conv_cache[-1] == ("cython" if fast_layers.HAVE_CYTHON else "numpy")
    assert pool_cache[0] == "reshape"
