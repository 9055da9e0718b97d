"""PyTorch MLP: config validation, shapes, init scales, and agreement with the NumPy MLP given the same weights."""
import numpy as np
import pytest
import torch

from common.classifiers.mlp import MLP as NumpyMLP
from common.classifiers.mlp import CrossEntropy
from common.torch_models.mlp import MLP, MLPConfig


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
