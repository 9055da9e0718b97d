"""PyTorch MLP: config validation, shapes, init scales, and agreement with the NumPy MLP given the same weights."""

import numpy as np
import pytest
import torch

from common.classifiers.mlp import MLP as NumpyMLP
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
    """The weights of a NumPy MLP, loaded with ``load_numpy``, give the same logits, loss and weight gradients as
    those weights applied directly (float64). The oracle is written out here: the NumPy MLP's modules are
    exercises of their own, not this one's judges."""
    rng = np.random.default_rng(0)
    np_model = NumpyMLP(3, [8, 5], 3, activation=activation, seed=1)
    for lin in np_model.linear_layers:
        lin.params["bias"] = rng.normal(scale=0.1, size=lin.params["bias"].shape)
    model = MLP(MLPConfig(3, [8, 5], 3, activation=activation)).double().load_numpy(np_model)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 3, size=10)
    weights = [
        (torch.tensor(lin.params["weight"], requires_grad=True), torch.tensor(lin.params["bias"], requires_grad=True))
        for lin in np_model.linear_layers
    ]
    expected, act = torch.tensor(X), ACTIVATIONS[activation]()
    for i, (W, b) in enumerate(weights):  # (N, fan_in) @ (fan_in, fan_out): the NumPy layout
        expected = expected @ W + b
        if i < len(weights) - 1:
            expected = act(expected)
    expected_loss = torch.nn.functional.cross_entropy(expected, torch.tensor(y))
    expected_loss.backward()
    logits = model(torch.tensor(X))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(y))
    loss.backward()
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(expected_loss.item(), rel=1e-10)
    for lin, (W, b) in zip(model.linear_layers, weights):
        np.testing.assert_allclose(lin.weight.grad.numpy().T, W.grad.numpy(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(lin.bias.grad.numpy(), b.grad.numpy(), rtol=1e-8, atol=1e-12)


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
    # stable flat order: layer by layer, weight before bias, input to output (whatever the layers are named)
    in_order = [p for lin in a.linear_layers for p in (lin.weight, lin.bias)]
    assert [id(p) for p in a.parameters()] == [id(p) for p in in_order], (
        "MLP's parameters must come layer by layer, input to output, each weight before its bias"
    )


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
