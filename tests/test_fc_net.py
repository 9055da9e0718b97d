"""TwoLayerNet, FullyConnectedNet and the affine sandwiches: numeric gradients, a PyTorch twin, bad arguments."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.classifiers.fc_net import FullyConnectedNet, TwoLayerNet
from common.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from common.layer_utils import (
    affine_norm_relu_backward,
    affine_norm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
)


def _data(N=3, D=15, C=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((N, D)), rng.integers(C, size=N)


def _close(analytic, numeric, rtol, atol=1e-8):
    """rel_error below rtol, or every entry within atol: gradients that are ~0 (a bias before batchnorm)
    have a meaningless relative error, their numeric estimate is round-off of size ~1e-10."""
    return rel_error(analytic, numeric) < rtol or np.max(np.abs(analytic - numeric)) < atol


def _check_model_grads(model, X, y, tol):
    loss, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for name in sorted(grads):
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], verbose=False, h=1e-5)
        assert _close(grads[name], num, tol), f"{name}: relative error {rel_error(num, grads[name]):.2e}"
    return loss


# ---------------------------------------------------------------------------- sandwiches
def test_affine_relu_sandwich():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((12, 10)), rng.standard_normal(10)
    dout = rng.standard_normal((2, 10))
    out, cache = affine_relu_forward(x, w, b)
    assert np.allclose(out, np.maximum(0, x.reshape(2, -1) @ w + b))
    dx, dw, db = affine_relu_backward(dout, cache)
    assert rel_error(dx, eval_numerical_gradient_array(lambda x: affine_relu_forward(x, w, b)[0], x, dout)) < 1e-7
    assert rel_error(dw, eval_numerical_gradient_array(lambda w: affine_relu_forward(x, w, b)[0], w, dout)) < 1e-7


@pytest.mark.parametrize("normalization", ["batchnorm", "layernorm"])
def test_affine_norm_relu_sandwich(normalization):
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal(4)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal((6, 4))

    def f(x, w, b, gamma, beta):
        return affine_norm_relu_forward(x, w, b, gamma, beta, {"mode": "train"}, normalization)[0]

    _, cache = affine_norm_relu_forward(x, w, b, gamma, beta, {"mode": "train"}, normalization)
    dx, dw, db, dgamma, dbeta = affine_norm_relu_backward(dout, cache)
    args = [x, w, b, gamma, beta]
    for i, analytic in enumerate([dx, dw, db, dgamma, dbeta]):

        def fi(v, i=i):
            return f(*[v if j == i else a for j, a in enumerate(args)])

        assert _close(analytic, eval_numerical_gradient_array(fi, args[i], dout), 1e-6)
    with pytest.raises(ValueError, match="normalization"):
        affine_norm_relu_forward(x, w, b, gamma, beta, {}, "groupnorm")


# ---------------------------------------------------------------------------- TwoLayerNet
def test_two_layer_net_cs231n_values_and_grads():
    N, D, H, C = 3, 5, 50, 7
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-3, seed=0)
    assert np.all(model.params["b1"] == 0) and np.all(model.params["b2"] == 0)
    assert abs(model.params["W1"].std() - 1e-3) < 3e-4 and abs(model.params["W2"].std() - 1e-3) < 3e-4
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    scores = model.loss(X)
    correct_scores = np.array(
        [
            [11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
            [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
            [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319],
        ]
    )
    assert rel_error(scores, correct_scores) < 1e-6
    y = np.array([0, 5, 1])
    assert abs(model.loss(X, y)[0] - 3.4702243556) < 1e-10
    model.reg = 1.0
    assert abs(model.loss(X, y)[0] - 26.5948426952) < 1e-10

    for reg in (0.0, 0.7):
        model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-2, reg=reg, seed=1)
        X, y = _data(N, D, C)
        _check_model_grads(model, X, y, tol=1e-6)


# ---------------------------------------------------------------------------- FullyConnectedNet
@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
@pytest.mark.parametrize("reg", [0.0, 3.14])
def test_fc_net_numeric_gradients(normalization, reg):
    N, D, C = 4, 15, 10
    X, y = _data(N, D, C)
    model = FullyConnectedNet(
        [20, 30],
        input_dim=D,
        num_classes=C,
        normalization=normalization,
        reg=reg,
        weight_scale=5e-2,
        dtype=np.float64,
        seed=0,
    )
    loss = _check_model_grads(model, X, y, tol=1e-5)
    if reg == 0 and normalization is None:
        assert abs(loss - np.log(C)) < 0.5  # small weights: roughly uniform predictions


def test_fc_net_dropout_gradients_with_fixed_seed():
    N, D, C = 3, 15, 10
    X, y = _data(N, D, C)
    model = FullyConnectedNet(
        [20, 30], input_dim=D, num_classes=C, dropout_keep_ratio=0.5, weight_scale=5e-2, dtype=np.float64, seed=123
    )
    _check_model_grads(model, X, y, tol=1e-5)
    assert np.array_equal(model.loss(X), model.loss(X)), "test mode must be deterministic"


@pytest.mark.parametrize("hidden_dims", [[], [7], [6, 5, 4]])
def test_fc_net_matches_torch_twin(hidden_dims):
    """Loss and every gradient equal a PyTorch model built from the same parameters (float64)."""
    N, D, C, reg = 5, 12, 4, 0.3
    X, y = _data(N, D, C, seed=3)
    X = X.reshape(N, 3, 2, 2)  # any input shape that flattens to D
    model = FullyConnectedNet(
        hidden_dims, input_dim=D, num_classes=C, reg=reg, weight_scale=0.3, dtype=np.float64, seed=4
    )
    loss, grads = model.loss(X, y)
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    h = torch.tensor(X).reshape(N, -1)
    L = len(hidden_dims) + 1
    for i in range(1, L):
        h = torch.relu(h @ tp[f"W{i}"] + tp[f"b{i}"])
    scores = h @ tp[f"W{L}"] + tp[f"b{L}"]
    t_loss = F.cross_entropy(scores, torch.tensor(y)) + 0.5 * reg * sum(
        (tp[f"W{i}"] ** 2).sum() for i in range(1, L + 1)
    )
    t_loss.backward()
    assert abs(loss - t_loss.item()) < 1e-12
    assert rel_error(model.loss(X), scores.detach().numpy()) < 1e-12
    for k in model.params:
        assert rel_error(grads[k], tp[k].grad.numpy()) < 1e-10, k


def test_fc_net_params_dtype_and_batchnorm_running_stats():
    model = FullyConnectedNet([8, 6], input_dim=10, num_classes=3, normalization="batchnorm", seed=0)
    assert sorted(model.params) == sorted(["W1", "b1", "W2", "b2", "W3", "b3", "gamma1", "beta1", "gamma2", "beta2"])
    assert all(v.dtype == np.float32 for v in model.params.values())
    assert model.params["W1"].shape == (10, 8) and model.params["gamma2"].shape == (6,)
    X, y = _data(20, 10, 3)
    loss, grads = model.loss(X, y)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert "running_mean" in model.bn_params[0] and model.bn_params[1]["running_var"].shape == (6,)
    scores = model.loss(X)  # test mode: uses the running averages, does not update them
    rm = model.bn_params[0]["running_mean"].copy()
    model.loss(X)
    assert np.array_equal(rm, model.bn_params[0]["running_mean"]) and scores.shape == (20, 3)
    same = FullyConnectedNet([8, 6], input_dim=10, num_classes=3, normalization="batchnorm", seed=0)
    assert all(np.array_equal(same.params[k], model.params[k]) for k in model.params)  # seed fixes init


def test_fc_net_bad_args_raise():
    with pytest.raises(ValueError, match="normalization"):
        FullyConnectedNet([5], input_dim=4, normalization="batch")
    with pytest.raises(ValueError, match="dropout_keep_ratio"):
        FullyConnectedNet([5], input_dim=4, dropout_keep_ratio=0)
    with pytest.raises(ValueError, match="hidden_dims"):
        FullyConnectedNet([5, -1], input_dim=4)
    model = FullyConnectedNet([5], input_dim=4, num_classes=3)
    with pytest.raises(ValueError, match="input_dim=4"):
        model.loss(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="y"):
        model.loss(np.zeros((2, 4)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="hidden_dim"):
        TwoLayerNet(input_dim=4, hidden_dim=0)
