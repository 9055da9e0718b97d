"""Tests for the training-dynamics CNN (common.torch_models.mnist.MNISTCNN: dropout on in training mode only,
seeded construction) and its experiment (common.experiments.dynamics.mnist_cnn.cnn_trajectories)."""

import numpy as np
import pytest
import torch
from torch import nn

from common.experiments.dynamics import TensorData, TrainConfig, cnn_trajectories, train_model
from common.torch_models.mnist import MNISTCNN, MNISTCNNConfig, build_mnist_cnn
from common.training.params import count_parameters, flat_params

CPU = torch.device("cpu")


def digit_like(N=96, seed=0):
    """Images (N, 1, 28, 28) whose class (0..3) is a bright quadrant, plus noise; train and test halves."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(4, (2 * N,), generator=g)
    X = 0.3 * torch.randn(2 * N, 1, 28, 28, generator=g)
    for c in range(4):
        r, k = divmod(c, 2)
        X[y == c, :, 14 * r : 14 * r + 14, 14 * k : 14 * k + 14] += 1.5
    return TensorData(X[:N], y[:N], X[N:], y[N:])


def test_cnn_shapes_parameters_and_seeded_build():
    state = torch.get_rng_state()
    a, b = build_mnist_cnn(seed=1), build_mnist_cnn(seed=1)
    c = build_mnist_cnn(MNISTCNNConfig(channels=(4, 6), hidden=10, dropout=0.5), seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(flat_params(a), flat_params(b)) and not torch.equal(
        flat_params(a), flat_params(build_mnist_cnn())
    )
    assert a(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert count_parameters(c) == (9 * 4 + 4) + (4 * 9 * 6 + 6) + (6 * 49 * 10 + 10) + (10 * 10 + 10)
    names = [n for n, _ in a.named_parameters()]
    assert names[:2] == ["conv.0.weight", "conv.0.bias"]
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        a(torch.zeros(3, 784))


def test_cnn_config_rejects_bad_values():
    with pytest.raises(ValueError, match="dropout"):
        MNISTCNNConfig(dropout=1.0)
    with pytest.raises(ValueError, match="channels"):
        MNISTCNNConfig(channels=(8,))


def test_dropout_is_on_in_train_mode_and_off_in_eval_mode():
    model = build_mnist_cnn(MNISTCNNConfig(dropout=0.5), seed=0)
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    x = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.eval()
        a, b = model(x), model(x)
        model.train()
        c, d = model(x), model(x)
        model.eval()
        e = model(x)
    assert torch.equal(a, b) and torch.equal(a, e)
    assert (c - d).abs().max() > 1e-2
    plain = build_mnist_cnn(MNISTCNNConfig(dropout=0.0), seed=0).train()
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    with torch.no_grad():
        assert torch.equal(plain(x), plain(x))
        model.load_state_dict(plain.state_dict())  # same parameter names with and without dropout
        assert torch.allclose(model.eval()(x), plain(x))


def test_training_with_dropout_is_reproducible_and_leaves_global_rng_alone():
    data = digit_like()
    cfg = TrainConfig(epochs=2, batch_size=32, lr=2e-3, data_seed=3)
    state = torch.get_rng_state()
    runs = [train_model(build_mnist_cnn(seed=0), data, cfg, device=CPU, progress=False) for _ in range(2)]
    assert torch.equal(torch.get_rng_state(), state)
    assert runs[0]["step_loss"] == runs[1]["step_loss"]
    other = train_model(
        build_mnist_cnn(seed=0),
        data,
        TrainConfig(epochs=2, batch_size=32, lr=2e-3, data_seed=4),
        device=CPU,
        progress=False,
    )
    assert other["step_loss"] != runs[0]["step_loss"]


def test_cnn_trajectories_learns_and_keeps_snapshots():
    data = digit_like()
    cnn = MNISTCNNConfig(channels=(4, 8), hidden=16, dropout=0.25)
    cfg = TrainConfig(epochs=3, batch_size=8, lr=3e-3, optimizer="adamw", weight_decay=0.01, snapshot_every=1)
    state = torch.get_rng_state()
    res = cnn_trajectories(data, cnn, cfg, num_runs=2, device=CPU, progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    P = count_parameters(MNISTCNN(cnn))
    assert res["snapshots"].shape == (2, 4, P) and list(res["epochs"]) == [0, 1, 2, 3]
    assert res["first_layer"] == slice(0, 9 * 4 + 4)
    np.testing.assert_array_equal(res["snapshots"][1, 0], flat_params(build_mnist_cnn(cnn, seed=1)).numpy())
    assert np.all(res["acc"][:, -1] > 0.9) and np.all(res["loss"][:, -1] < 0.5 * res["loss"][:, 0])
    assert len(res["histories"][0]["val_acc"]) == 3
    with pytest.raises(ValueError, match="images=True"):
        cnn_trajectories(TensorData(data.X_train.flatten(1), data.y_train, data.X_test, data.y_test), progress=False)
