"""Module-style NumPy MLP: every module against numeric gradients (float64) and PyTorch autograd."""

import numpy as np
import pytest
import torch

from common.classifiers.mlp import (
    MLP,
    CrossEntropy,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    SoftMax,
    Tanh,
    evaluate_mlp,
    init_std,
    layer_statistics,
    penalty,
    train_mlp,
)
from common.data.generators import make_moons
from common.gradient_check import eval_numerical_gradient, rel_error

RTOL, ATOL = 1e-6, 1e-8  # agreement with torch autograd in float64
NUM_TOL = 1e-6  # max relative error against central differences


def numeric_grad(f, x, h=1e-6):
    """Central differences of the scalar ``f()`` w.r.t. the array ``x`` (perturbed in place)."""
    return eval_numerical_gradient(lambda _: f(), x, verbose=False, h=h)


def check_module(module, torch_fn, x, rng):
    """Forward against torch_fn; backward against numeric gradients of sum(out * dout) and against autograd."""
    out = module.forward(x)
    dout = rng.normal(size=out.shape)
    dx = module.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    out_t = torch_fn(xt)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    dx_num = numeric_grad(lambda: np.sum(module.forward(x) * dout), x)
    assert rel_error(dx, dx_num) < NUM_TOL


# shift inputs away from 0 so that ReLU's kink is never inside the finite-difference step
def _x(rng, shape=(4, 5)):
    x = rng.normal(size=shape)
    return x + 0.1 * np.sign(x)


# one test per module: a module not written yet fails only its own
def _check_elementwise(module, torch_fn):
    rng = np.random.default_rng(0)
    check_module(module, torch_fn, _x(rng), rng)


def test_relu_module():
    _check_elementwise(ReLU(), torch.relu)


def test_leaky_relu_module():
    _check_elementwise(LeakyReLU(0.1), lambda t: torch.nn.functional.leaky_relu(t, 0.1))


def test_sigmoid_module():
    _check_elementwise(Sigmoid(), torch.sigmoid)


def test_tanh_module():
    _check_elementwise(Tanh(), torch.tanh)


def test_softmax_module():
    _check_elementwise(SoftMax(), lambda t: torch.softmax(t, dim=1))


def test_sigmoid_extreme_inputs_finite():
    out = Sigmoid().forward(np.array([[-1000.0, 0.0, 1000.0]]))
    np.testing.assert_allclose(out, [[0.0, 0.5, 1.0]], atol=1e-12)


def test_softmax_stable_for_large_scores():
    p = SoftMax().forward(np.array([[1000.0, 1000.0, -1000.0]]))
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]], atol=1e-12)


def test_linear_against_torch_and_numeric():
    rng = np.random.default_rng(1)
    layer = Linear(5, 3, rng=rng)
    layer.params["bias"] = rng.normal(size=3)
    x = rng.normal(size=(4, 5))
    out = layer.forward(x)
    dout = rng.normal(size=out.shape)
    dx = layer.backward(dout)
    xt = torch.tensor(x, requires_grad=True)
    Wt = torch.tensor(layer.params["weight"], requires_grad=True)
    bt = torch.tensor(layer.params["bias"], requires_grad=True)
    out_t = xt @ Wt + bt
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, out_t.detach().numpy(), rtol=RTOL, atol=ATOL)
    for ours, theirs in [(dx, xt.grad), (layer.grads["weight"], Wt.grad), (layer.grads["bias"], bt.grad)]:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=RTOL, atol=ATOL)
    for name in ("weight", "bias"):
        num = numeric_grad(lambda: np.sum(layer.forward(x) * dout), layer.params[name])
        assert rel_error(layer.grads[name], num) < NUM_TOL, name


def test_linear_rejects_wrong_shape():
    with pytest.raises(ValueError, match="Linear expects"):
        Linear(3, 2).forward(np.zeros((4, 5)))


@pytest.mark.parametrize("one_hot", [False, True])
def test_cross_entropy_against_torch(one_hot):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, size=6)
    p = torch.softmax(torch.tensor(logits), dim=1).numpy()  # probabilities, not from SoftMax (its own exercise)
    target = np.eye(4)[y] if one_hot else y
    ce = CrossEntropy()
    loss = ce.forward(p, target)
    dp = ce.backward(p, target)
    pt = torch.tensor(p, requires_grad=True)
    loss_t = torch.nn.functional.nll_loss(torch.log(pt), torch.tensor(y))
    loss_t.backward()
    assert abs(loss - loss_t.item()) < 1e-12
    np.testing.assert_allclose(dp, pt.grad.numpy(), rtol=RTOL, atol=ATOL)
    assert rel_error(dp, numeric_grad(lambda: ce.forward(p, target), p)) < NUM_TOL


def test_softmax_backward_of_the_cross_entropy_gradient_is_p_minus_t():
    # SoftMax.backward given the gradient of the mean cross-entropy, -t / (N p), gives (p - t) / N
    rng = np.random.default_rng(3)
    logits, y = rng.normal(size=(5, 3)), np.array([0, 2, 1, 1, 0])
    sm, t = SoftMax(), np.eye(3)[y]
    p = sm.forward(logits)
    dlogits = sm.backward(-t / (5 * p))
    np.testing.assert_allclose(dlogits, (p - t) / 5, rtol=1e-10, atol=1e-12)


def test_cross_entropy_bad_labels():
    with pytest.raises(ValueError, match="labels must lie"):
        CrossEntropy().forward(np.full((2, 3), 1 / 3), np.array([0, 3]))


def _cross_entropy(probs, y):
    """The mean cross-entropy of ``probs (N, C)`` and its gradient, from PyTorch: the whole-model checks below
    judge the modules and the model, not CrossEntropy (an exercise of its own, with tests of its own)."""
    pt = torch.tensor(probs, requires_grad=True)
    loss = torch.nn.functional.nll_loss(torch.log(pt), torch.tensor(y))
    loss.backward()
    return loss.item(), pt.grad.numpy()


def _loss_with_penalty(model, X, y, l1, l2):
    return _cross_entropy(model.forward(X), y)[0] + penalty(model, l1, l2)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_whole_mlp_gradients(activation):
    """All parameter gradients of a 2-hidden-layer MLP (with L1 + L2) vs numeric and vs torch autograd."""
    rng = np.random.default_rng(4)
    model = MLP(3, [6, 5], 4, activation=activation, init="xavier", seed=0)
    for layer in model.linear_layers:
        layer.params["bias"] = rng.normal(scale=0.1, size=layer.params["bias"].shape)
    X, y = rng.normal(size=(7, 3)), rng.integers(0, 4, size=7)
    l1, l2 = 0.01, 0.1
    dX = model.backward(_cross_entropy(model.forward(X), y)[1])
    penalty(model, l1, l2, add_grads=True)

    # torch oracle
    act = {
        "relu": torch.relu,
        "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.01),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
    }[activation]
    params = [
        (torch.tensor(lin.params["weight"], requires_grad=True), torch.tensor(lin.params["bias"], requires_grad=True))
        for lin in model.linear_layers
    ]
    Xt = torch.tensor(X, requires_grad=True)
    h = Xt
    for i, (W, b) in enumerate(params):
        h = h @ W + b
        if i < len(params) - 1:
            h = act(h)
    loss_t = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    loss_t = loss_t + sum(l1 * W.abs().sum() + 0.5 * l2 * (W**2).sum() for W, _ in params)
    loss_t.backward()
    assert abs(_loss_with_penalty(model, X, y, l1, l2) - loss_t.item()) < 1e-10
    np.testing.assert_allclose(dX, Xt.grad.numpy(), rtol=RTOL, atol=ATOL)
    for lin, (W, b) in zip(model.linear_layers, params):
        np.testing.assert_allclose(lin.grads["weight"], W.grad.numpy(), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(lin.grads["bias"], b.grad.numpy(), rtol=RTOL, atol=ATOL)
    # numeric oracle
    for lin in model.linear_layers:
        for name in ("weight", "bias"):
            num = numeric_grad(lambda: _loss_with_penalty(model, X, y, l1, l2), lin.params[name])
            assert rel_error(lin.grads[name], num) < 1e-5, (activation, name)


@pytest.mark.parametrize("init, expected", [("naive", 0.01), ("xavier", np.sqrt(2 / 500)), ("he", np.sqrt(2 / 300))])
def test_init_scales(init, expected):
    assert init_std(init, 300, 200) == pytest.approx(expected)
    W = Linear(300, 200, init=init, rng=np.random.default_rng(0)).params["weight"]
    assert W.std() == pytest.approx(expected, rel=0.02)


def test_mlp_rejects_bad_config():
    with pytest.raises(ValueError, match="activation"):
        MLP(2, [4], 2, activation="swish")
    with pytest.raises(ValueError, match="init"):
        MLP(2, [4], 2, init="orthogonal")


@pytest.mark.parametrize("method", ["batch", "sgd", "minibatch"])
def test_training_learns_moons(method):
    X, y = make_moons(300, noise=0.1, seed=0)
    model = MLP(2, [16, 16], 2, seed=0)
    epochs = {"batch": 150, "sgd": 15, "minibatch": 40}[method]
    hist = train_mlp(
        model,
        X,
        y,
        X,
        y,
        method=method,
        batch_size=16,
        learning_rate=0.5 if method == "batch" else 0.05,
        epochs=epochs,
        seed=0,
        progress=False,
    )
    assert len(hist["train_loss"]) == epochs == len(hist["val_acc"]) == len(hist["time"])
    assert np.all(np.diff(hist["time"]) >= 0)
    assert hist["steps_per_epoch"] == {"batch": 1, "sgd": 300, "minibatch": 19}[method]
    assert hist["train_loss"][-1] < 0.5 * hist["train_loss"][0] + 1e-9 or hist["train_loss"][-1] < 0.1
    assert evaluate_mlp(model, X, y)[1] > 0.95


def test_l2_shrinks_weights():
    X, y = make_moons(200, noise=0.2, seed=1)
    norms = []
    for l2 in (0.0, 0.05):
        model = MLP(2, [32], 2, seed=0)
        train_mlp(model, X, y, epochs=30, learning_rate=0.1, l2=l2, seed=0, progress=False)
        norms.append(sum(np.sum(lin.params["weight"] ** 2) for lin in model.linear_layers))
    assert norms[1] < 0.7 * norms[0]


def test_l1_makes_weights_sparse():
    X, y = make_moons(200, noise=0.2, seed=1)
    small = []
    for l1 in (0.0, 0.01):
        model = MLP(2, [32], 2, seed=0)
        train_mlp(model, X, y, epochs=40, learning_rate=0.1, l1=l1, seed=0, progress=False)
        W = np.concatenate([lin.params["weight"].ravel() for lin in model.linear_layers])
        small.append(np.mean(np.abs(W) < 1e-2))
    assert small[1] > small[0] + 0.1


def test_layer_statistics_show_vanishing_with_sigmoid_naive():
    X, y = make_moons(200, seed=0)
    bad = layer_statistics(MLP(2, [32] * 6, 2, activation="sigmoid", init="naive", seed=0), X, y)
    good = layer_statistics(MLP(2, [32] * 6, 2, activation="tanh", init="xavier", seed=0), X, y)
    assert len(bad["act_std"]) == 6 and bad["activations"][0].shape == (200, 32)
    # sigmoid + tiny weights: every sample maps to the same ~0.5 vector, and the first layer's gradient is
    # orders of magnitude smaller
    assert bad["act_std"][-1] < 1e-6 * bad["act_std"][0] and abs(bad["act_mean"][-1] - 0.5) < 1e-2
    assert bad["weight_grad_std"][0] < 1e-4 * bad["weight_grad_std"][-1]
    assert good["weight_grad_std"][0] > 1e-2 * good["weight_grad_std"][-1]
    assert good["act_std"][-1] > 0.1
