"""PyTorch MLP: config validation, shapes, init scales, and agreement with the NumPy MLP given the same weights."""

import numpy as np
import pytest
import torch

from common.classifiers.mlp import MLP as NumpyMLP
from common.classifiers.mlp import CrossEntropy
from common.torch_models.mlp import ACTIVATIONS, MLP, MLPConfig


def test_config_validation():
    with pytest.raises(ValueError, match="activation"):
        MLPConfig(activation="gelu")
    with pytest.raises(ValueError, match="init"):
        MLPConfig(init="lecun")
    assert MLPConfig(n_hidden=8).n_hidden == [8]


def test_forward_shape_and_layers():
    model = MLP(MLPConfig(n_inputs=5, n_hidden=[7, 3], n_classes=4, activation="tanh"))
    assert model(torch.zeros(6, 5)).shape == (6, 4)
    assert [tuple(m.weight.shape) for m in model.linear_layers] == [(7, 5), (3, 7), (4, 3)]
    assert sum(isinstance(m, torch.nn.Tanh) for m in model.net) == 2
    images = torch.randn(6, 1, 5, 1)  # (N, ...) inputs are flattened to (N, D)
    torch.testing.assert_close(model(images), model(images.reshape(6, 5)))


@pytest.mark.parametrize("init, std", [("naive", 0.01), ("xavier", np.sqrt(2 / 700)), ("he", np.sqrt(2 / 400))])
def test_init_scales_and_generator(init, std):
    cfg = MLPConfig(n_inputs=400, n_hidden=[300], n_classes=2, init=init)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = MLP(cfg, generator=g1), MLP(cfg, generator=g2)
    W = a.linear_layers[0].weight
    assert W.std().item() == pytest.approx(std, rel=0.02)
    assert torch.equal(W, b.linear_layers[0].weight)
    assert torch.count_nonzero(a.linear_layers[0].bias) == 0


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh"])
def test_matches_numpy_mlp(activation):
    """Same weights -> same probabilities, loss and weight gradients as the NumPy MLP (float64)."""
    rng = np.random.default_rng(0)
    np_model = NumpyMLP(3, [8, 5], 3, activation=activation, seed=1)
    for lin in np_model.linear_layers:
        lin.params["bias"] = rng.normal(scale=0.1, size=lin.params["bias"].shape)
    model = MLP(MLPConfig(3, [8, 5], 3, activation=activation)).double().load_numpy(np_model)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 3, size=10)
    probs = np_model.forward(X)
    ce = CrossEntropy()
    np_model.backward(ce.backward(probs, y))
    logits = model(torch.tensor(X))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    np.testing.assert_allclose(torch.softmax(logits, 1).detach().numpy(), probs, rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(ce.forward(probs, y), rel=1e-10)
    for lin, np_lin in zip(model.linear_layers, np_model.linear_layers):
        np.testing.assert_allclose(lin.weight.grad.numpy().T, np_lin.grads["weight"], rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(lin.bias.grad.numpy(), np_lin.grads["bias"], rtol=1e-8, atol=1e-12)


def test_load_numpy_rejects_other_shapes():
    with pytest.raises(ValueError, match="layer count"):
        MLP(MLPConfig(2, [4, 4], 2)).load_numpy(NumpyMLP(2, [4], 2))
    with pytest.raises(ValueError, match="shape mismatch"):
        MLP(MLPConfig(2, [5], 2)).load_numpy(NumpyMLP(2, [4], 2))


def test_activation_table_is_the_one_used():
    assert sorted(ACTIVATIONS) == ["leaky_relu", "relu", "sigmoid", "tanh"]
    leaky = MLP(MLPConfig(2, [3], 2, activation="leaky_relu")).net[1]
    assert isinstance(leaky, torch.nn.LeakyReLU) and leaky.negative_slope == 0.01


def test_default_init_from_generator_matches_pytorch_scheme_and_leaves_global_rng_alone():
    cfg = MLPConfig(n_inputs=50, n_hidden=[40, 30], n_classes=1, init="default")  # one output: regression
    before = torch.get_rng_state().clone()
    a = MLP(cfg, generator=torch.Generator().manual_seed(3))
    b = MLP(cfg, generator=torch.Generator().manual_seed(3))
    c = MLP(cfg)  # no generator: seeded from the operating system
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.linear_layers[0].weight, c.linear_layers[0].weight)
    for lin in a.linear_layers:  # PyTorch's nn.Linear bounds: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        bound = 1 / np.sqrt(lin.in_features)
        assert lin.weight.abs().max() <= bound and lin.bias.abs().max() <= bound
        assert lin.weight.abs().max() > 0.9 * bound and torch.count_nonzero(lin.bias) == lin.out_features
    assert a(torch.zeros(4, 50)).shape == (4, 1)
    # stable flat order: layer by layer, weight before bias, input to output
    assert [n for n, _ in a.named_parameters()] == [
        "net.0.weight",
        "net.0.bias",
        "net.2.weight",
        "net.2.bias",
        "net.4.weight",
        "net.4.bias",
    ]


def test_default_init_draws_weight_then_bias_per_layer():
    g = torch.Generator().manual_seed(0)
    model = MLP(MLPConfig(3, [2], 2, init="default"), generator=torch.Generator().manual_seed(0))
    first_weight = torch.empty(2, 3).uniform_(-1 / np.sqrt(3), 1 / np.sqrt(3), generator=g)
    first_bias = torch.empty(2).uniform_(-1 / np.sqrt(3), 1 / np.sqrt(3), generator=g)
    assert torch.equal(model.net[0].weight, first_weight) and torch.equal(model.net[0].bias, first_bias)


def test_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_classes"):
        MLPConfig(n_classes=0)
    with pytest.raises(ValueError, match="hidden"):
        MLPConfig(n_hidden=[4, 0])
    assert len(MLP(MLPConfig(3, [], 2)).linear_layers) == 1  # no hidden layer: a linear model
