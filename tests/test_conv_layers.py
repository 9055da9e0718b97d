"""Naive conv/pool and spatial batch/group norm against float64 numeric gradients and PyTorch."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common import layers
from common.diagnose import assert_all_close, assert_close
from common.gradient_check import eval_numerical_gradient_array, rel_error

# Tolerances: numeric gradients (h=1e-5, float64) rel_error < 1e-7 (the piecewise-linear pool gets 1e-8
# inputs far from ties); PyTorch (float64, same maths, different summation order) rel_error < 1e-9.
NUM_TOL = 1e-7
TORCH_TOL = 1e-9

# (x shape, w shape, stride, pad): square and non-square, stride 1 and 2, pad 0..2
CONV_GEOMETRIES = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
    ((2, 2, 7, 5), (3, 2, 3, 3), 2, 1),
    ((1, 3, 6, 8), (2, 3, 2, 4), 2, 0),
    ((2, 1, 4, 6), (3, 1, 3, 5), 1, 2),
    ((3, 2, 5, 7), (2, 2, 5, 3), 2, 2),
]
# (x shape, pool_height, pool_width, stride): tiling, overlapping, non-square
POOL_GEOMETRIES = [
    ((2, 3, 4, 4), 2, 2, 2),
    ((2, 2, 5, 7), 3, 3, 2),
    ((1, 2, 6, 9), 2, 3, 1),
    ((2, 1, 7, 5), 3, 1, 2),
]


def _torch_grads(fn, arrays, dout):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def _conv_data(x_shape, w_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])


def _conv_context(x, w, b, stride, pad):
    """What the diagnosis of a convolution knows: the sizes and axes, and the output of a flipped kernel."""
    flipped = F.conv2d(*(torch.tensor(a) for a in (x, w[:, :, ::-1, ::-1].copy(), b)), stride=stride, padding=pad)
    N, F_, H_out, W_out = flipped.shape
    return {
        "N": N,
        "H'*W'": H_out * W_out,
        "N*H'*W'": N * H_out * W_out,
        "pad": pad,
        "axes": ("N", "F", "H'", "W'"),
        "suspects": {"a true convolution, the kernel flipped (DL libraries cross-correlate)": flipped.numpy()},
    }


_GRAD_AXES = {"dx": ("N", "C", "H", "W"), "dw": ("F", "C", "HH", "WW"), "db": ("F",)}


# ---------------------------------------------------------------------------- convolution
def test_conv_forward_matches_cs231n_values():
    x = np.linspace(-0.1, 0.5, num=96).reshape(2, 3, 4, 4)
    w = np.linspace(-0.2, 0.3, num=144).reshape(3, 3, 4, 4)
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = layers.conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    context = _conv_context(x, w, b, 2, 1)
    expected = np.array(
        [
            [
                [[-0.08759809, -0.10987781], [-0.18387192, -0.2109216]],
                [[0.21027089, 0.21661097], [0.22847626, 0.23004637]],
                [[0.50813986, 0.54309974], [0.64082444, 0.67101435]],
            ],
            [
                [[-0.98053589, -1.03143541], [-1.19128892, -1.24695841]],
                [[0.69108355, 0.66880383], [0.59480972, 0.56776003]],
                [[2.36270298, 2.36904306], [2.38090835, 2.38247847]],
            ],
        ]
    )
    assert_close("conv_forward_naive: out", out, expected, 1e-7, context=context)


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CONV_GEOMETRIES)
def test_conv_naive_matches_torch(x_shape, w_shape, stride, pad):
    x, w, b = _conv_data(x_shape, w_shape)
    conv_param = {"stride": stride, "pad": pad}
    out, cache = layers.conv_forward_naive(x, w, b, conv_param)
    dout = np.random.default_rng(1).standard_normal(out.shape)
    t_out, t_grads = _torch_grads(lambda a, c, d: F.conv2d(a, c, d, stride=stride, padding=pad), [x, w, b], dout)
    context = _conv_context(x, w, b, stride, pad)
    assert_close("conv_forward_naive: out", out, t_out, TORCH_TOL, context=context)
    grads = layers.conv_backward_naive(dout, cache)
    outputs = {k: (got, want, {"axes": _GRAD_AXES[k]}) for k, got, want in zip(_GRAD_AXES, grads, t_grads)}
    assert_all_close("conv_backward_naive", outputs, TORCH_TOL, context=context)


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CONV_GEOMETRIES[:3])
def test_conv_naive_numeric_gradients(x_shape, w_shape, stride, pad):
    x, w, b = _conv_data(x_shape, w_shape, seed=2)
    conv_param = {"stride": stride, "pad": pad}
    out, cache = layers.conv_forward_naive(x, w, b, conv_param)
    dout = np.random.default_rng(3).standard_normal(out.shape)
    dx, dw, db = layers.conv_backward_naive(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda v: layers.conv_forward_naive(v, w, b, conv_param)[0], x, dout)
    dw_num = eval_numerical_gradient_array(lambda v: layers.conv_forward_naive(x, v, b, conv_param)[0], w, dout)
    db_num = eval_numerical_gradient_array(lambda v: layers.conv_forward_naive(x, w, v, conv_param)[0], b, dout)
    context = _conv_context(x, w, b, stride, pad)
    outputs = {
        k: (got, num, {"axes": _GRAD_AXES[k]})
        for k, got, num in zip(_GRAD_AXES, (dx, dw, db), (dx_num, dw_num, db_num))
    }
    assert_all_close("conv_backward_naive", outputs, NUM_TOL, context=context)


@pytest.mark.parametrize(
    "x_shape,w_shape,conv_param,match",
    [
        ((1, 1, 5, 5), (1, 1, 2, 2), {"stride": 2, "pad": 0}, "dimension H"),  # (5 - 2) % 2 != 0
        ((1, 1, 4, 5), (1, 1, 2, 2), {"stride": 2, "pad": 0}, "dimension W"),
        ((1, 1, 3, 3), (1, 1, 5, 5), {"stride": 1, "pad": 0}, "does not fit"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"stride": 0, "pad": 1}, "stride"),
        ((1, 1, 4, 4), (1, 1, 3, 3), {"stride": 1, "pad": -1}, "pad"),
        ((1, 2, 4, 4), (1, 3, 3, 3), {"stride": 1, "pad": 1}, "channels"),
        ((2, 4, 4), (1, 1, 3, 3), {"stride": 1, "pad": 1}, "x must have shape"),
    ],
)
def test_conv_impossible_geometry_is_a_value_error(x_shape, w_shape, conv_param, match):
    with pytest.raises(ValueError, match=match):
        layers.conv_forward_naive(np.zeros(x_shape), np.zeros(w_shape), np.zeros(w_shape[0]), conv_param)


# ---------------------------------------------------------------------------- max pooling
def _pool_context(dx_expected):
    """Max pooling's gradient is 0 away from the windows' maxima: a difference only there is named."""
    return {
        "axes": ("N", "C", "H", "W"),
        "regions": {"where the gradient is 0 (not the maximum of any window)": dx_expected == 0},
        "hints": {"region": "a window's gradient goes to its maximum only, not to the whole window"},
    }


def test_max_pool_forward_matches_cs231n_values():
    x = np.linspace(-0.3, 0.4, num=96).reshape(2, 3, 4, 4)
    out, _ = layers.max_pool_forward_naive(x, {"pool_width": 2, "pool_height": 2, "stride": 2})
    expected = np.array(
        [
            [
                [[-0.26315789, -0.24842105], [-0.20421053, -0.18947368]],
                [[-0.14526316, -0.13052632], [-0.08631579, -0.07157895]],
                [[-0.02736842, -0.01263158], [0.03157895, 0.04631579]],
            ],
            [
                [[0.09052632, 0.10526316], [0.14947368, 0.16421053]],
                [[0.20842105, 0.22315789], [0.26736842, 0.28210526]],
                [[0.32631579, 0.34105263], [0.38526316, 0.4]],
            ],
        ]
    )
    assert rel_error(out, expected) < 1e-7


@pytest.mark.parametrize("x_shape,ph,pw,stride", POOL_GEOMETRIES)
def test_max_pool_naive_matches_torch(x_shape, ph, pw, stride):
    x = np.random.default_rng(4).standard_normal(x_shape)
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = layers.max_pool_forward_naive(x, pool_param)
    dout = np.random.default_rng(5).standard_normal(out.shape)
    t_out, (t_dx,) = _torch_grads(lambda a: F.max_pool2d(a, (ph, pw), stride=stride), [x], dout)
    assert_close("max_pool_forward_naive: out", out, t_out, rtol=0, atol=0, context={"axes": ("N", "C", "H'", "W'")})
    assert_close(
        "max_pool_backward_naive: dx",
        layers.max_pool_backward_naive(dout, cache),
        t_dx,
        1e-12,
        context=_pool_context(t_dx),
    )


@pytest.mark.parametrize("x_shape,ph,pw,stride", POOL_GEOMETRIES[:2])
def test_max_pool_naive_numeric_gradient(x_shape, ph, pw, stride):
    # a permutation of well-separated values: no ties, and no window max changes under +-h
    rng = np.random.default_rng(6)
    x = rng.permutation(np.prod(x_shape)).reshape(x_shape) * 0.1
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = layers.max_pool_forward_naive(x, pool_param)
    dout = rng.standard_normal(out.shape)
    dx = layers.max_pool_backward_naive(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda v: layers.max_pool_forward_naive(v, pool_param)[0], x, dout)
    assert_close("max_pool_backward_naive: dx", dx, dx_num, 1e-8, context=_pool_context(dx_num))


def test_max_pool_ties_go_to_the_first_maximum():
    x = np.zeros((1, 1, 2, 2))
    out, cache = layers.max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})
    dx = layers.max_pool_backward_naive(np.ones_like(out), cache)
    assert dx.tolist() == [[[[1.0, 0.0], [0.0, 0.0]]]]


@pytest.mark.parametrize(
    "x_shape,pool_param,match",
    [
        ((1, 1, 5, 4), {"pool_height": 2, "pool_width": 2, "stride": 2}, "dimension H"),
        ((1, 1, 4, 4), {"pool_height": 2, "pool_width": 5, "stride": 1}, "does not fit"),
        ((1, 4, 4), {"pool_height": 2, "pool_width": 2, "stride": 2}, "x must have shape"),
    ],
)
def test_max_pool_impossible_geometry_is_a_value_error(x_shape, pool_param, match):
    with pytest.raises(ValueError, match=match):
        layers.max_pool_forward_naive(np.zeros(x_shape), pool_param)


# ---------------------------------------------------------------------------- spatial batchnorm
def test_spatial_batchnorm_train_matches_torch():
    rng = np.random.default_rng(7)
    N, C, H, W = 4, 3, 5, 6
    x = 3.0 * rng.standard_normal((N, C, H, W)) + 2.0
    gamma, beta = rng.standard_normal(C), rng.standard_normal(C)
    bn_param = {"mode": "train"}
    out, cache = layers.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    dout = rng.standard_normal(out.shape)
    t_out, t_grads = _torch_grads(
        lambda a, g, bt: F.batch_norm(a, None, None, g, bt, training=True, eps=1e-5), [x, gamma, beta], dout
    )
    context = {"N*H*W": N * H * W, "axes": ("N", "C", "H", "W")}
    assert_close("spatial_batchnorm_forward: out", out, t_out, TORCH_TOL, context=context)
    # per-channel statistics over (N, H, W)
    means = ((out - beta[None, :, None, None]) / gamma[None, :, None, None]).mean(axis=(0, 2, 3))
    name = "spatial_batchnorm_forward: the mean of (out - beta) / gamma per channel"
    assert_close(name, means, np.zeros(C), atol=1e-10, context=context)
    grads = layers.spatial_batchnorm_backward(dout, cache)
    outputs = {k: (got, want) for k, got, want in zip(("dx", "dgamma", "dbeta"), grads, t_grads)}
    assert_all_close("spatial_batchnorm_backward", outputs, 1e-8, context=context)
    # running averages: momentum 0.9 from zeros
    assert np.allclose(bn_param["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)))
    assert np.allclose(bn_param["running_var"], 0.1 * x.var(axis=(0, 2, 3)))


def test_spatial_batchnorm_numeric_gradients_and_test_mode():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 4, 5))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    dout = rng.standard_normal(x.shape)

    def f(v, g=gamma, bt=beta):
        return layers.spatial_batchnorm_forward(v, g, bt, {"mode": "train"})[0]

    out, cache = layers.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    expected = F.batch_norm(
        torch.tensor(x), None, None, torch.tensor(gamma), torch.tensor(beta), training=True, eps=1e-5
    )
    dx, dgamma, dbeta = layers.spatial_batchnorm_backward(dout, cache)
    context = {"N*H*W": 2 * 4 * 5, "axes": ("N", "C", "H", "W")}
    assert_close("spatial_batchnorm_forward: out", out, expected.numpy(), TORCH_TOL, context=context)
    assert_close("spatial_batchnorm_backward: dx", dx, eval_numerical_gradient_array(f, x, dout), 1e-6, context=context)
    dgamma_num = eval_numerical_gradient_array(lambda g: f(x, g=g), gamma, dout)
    assert_close("spatial_batchnorm_backward: dgamma", dgamma, dgamma_num, NUM_TOL, context=context)
    dbeta_num = eval_numerical_gradient_array(lambda bt: f(x, bt=bt), beta, dout)
    assert_close("spatial_batchnorm_backward: dbeta", dbeta, dbeta_num, NUM_TOL, context=context)

    bn_param = {"mode": "test", "running_mean": np.array([1.0, 2.0, 3.0]), "running_var": np.array([4.0, 1.0, 9.0])}
    out, _ = layers.spatial_batchnorm_forward(x, gamma, beta, bn_param)
    rm, rv = bn_param["running_mean"], bn_param["running_var"]
    expected = gamma[:, None, None] * (x - rm[:, None, None]) / np.sqrt(rv[:, None, None] + 1e-5) + beta[:, None, None]
    assert rel_error(out, expected) < 1e-12


def test_spatial_batchnorm_rejects_wrong_gamma_shape():
    with pytest.raises(ValueError, match="gamma"):
        layers.spatial_batchnorm_forward(np.zeros((2, 3, 4, 4)), np.ones(4), np.zeros(3), {"mode": "train"})


# ---------------------------------------------------------------------------- spatial groupnorm
def _groupnorm_suspects(x, gamma, beta, G):
    """Group norm with the wrong number of groups: one per sample (layer norm), one per channel (instance norm)."""
    out = {}
    for groups, label in (
        (1, "one group per sample (layer norm), whatever G is"),
        (x.shape[1], "one group per channel (instance norm), whatever G is"),
    ):
        if groups != G:
            t = F.group_norm(
                torch.tensor(x), groups, torch.tensor(gamma.reshape(-1)), torch.tensor(beta.reshape(-1)), eps=1e-5
            )
            out[label] = t.numpy()
    return out


@pytest.mark.parametrize("C,G", [(6, 2), (4, 4), (6, 1)])
def test_spatial_groupnorm_matches_torch(C, G):
    rng = np.random.default_rng(9)
    x = 2.0 * rng.standard_normal((3, C, 4, 5)) - 1.0
    gamma, beta = rng.standard_normal((1, C, 1, 1)), rng.standard_normal((1, C, 1, 1))
    out, cache = layers.spatial_groupnorm_forward(x, gamma, beta, G, {})
    dout = rng.standard_normal(out.shape)
    t_out, t_grads = _torch_grads(
        lambda a, g, bt: F.group_norm(a, G, g.reshape(-1), bt.reshape(-1), eps=1e-5), [x, gamma, beta], dout
    )
    context = {"C": C, "G": G, "axes": ("N", "C", "H", "W"), "suspects": _groupnorm_suspects(x, gamma, beta, G)}
    assert_close("spatial_groupnorm_forward: out", out, t_out, TORCH_TOL, context=context)
    grads = layers.spatial_groupnorm_backward(dout, cache)
    outputs = {k: (got, want) for k, got, want in zip(("dx", "dgamma", "dbeta"), grads, t_grads)}
    assert_all_close("spatial_groupnorm_backward", outputs, 1e-8, context=context)


def test_spatial_groupnorm_numeric_gradients():
    rng = np.random.default_rng(10)
    N, C, H, W, G = 2, 6, 4, 5, 2
    x = 5 * rng.standard_normal((N, C, H, W)) + 12
    gamma, beta = rng.standard_normal((1, C, 1, 1)), rng.standard_normal((1, C, 1, 1))
    dout = rng.standard_normal(x.shape)

    def f(v, g=gamma, bt=beta):
        return layers.spatial_groupnorm_forward(v, g, bt, G, {})[0]

    _, cache = layers.spatial_groupnorm_forward(x, gamma, beta, G, {})
    dx, dgamma, dbeta = layers.spatial_groupnorm_backward(dout, cache)
    context = {"C": C, "G": G, "axes": ("N", "C", "H", "W")}
    assert_close("spatial_groupnorm_backward: dx", dx, eval_numerical_gradient_array(f, x, dout), 1e-6, context=context)
    dgamma_num = eval_numerical_gradient_array(lambda g: f(x, g=g), gamma, dout)
    assert_close("spatial_groupnorm_backward: dgamma", dgamma, dgamma_num, NUM_TOL, context=context)
    dbeta_num = eval_numerical_gradient_array(lambda bt: f(x, bt=bt), beta, dout)
    assert_close("spatial_groupnorm_backward: dbeta", dbeta, dbeta_num, NUM_TOL, context=context)


@pytest.mark.parametrize("G,gamma_shape,match", [(4, (1, 6, 1, 1), "G"), (2, (6,), "gamma")])
def test_spatial_groupnorm_bad_arguments(G, gamma_shape, match):
    with pytest.raises(ValueError, match=match):
        layers.spatial_groupnorm_forward(np.zeros((2, 6, 3, 3)), np.ones(gamma_shape), np.zeros((1, 6, 1, 1)), G, {})
