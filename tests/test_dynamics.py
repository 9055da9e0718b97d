"""Tests for common.experiments.dynamics: models, batching, training records, sensitivity, sharpness, PCA,
interpolation."""

import numpy as np
import pytest
import torch
from torch import nn

import common.experiments.dynamics.training as training_module
from common.data.torch_data import TensorBatches
from common.experiments.dynamics import (
    TensorData,
    TrainConfig,
    add_outliers,
    batch_size_sweep,
    compare_depths,
    damped_sine,
    equal_size_architectures,
    fit_function,
    full_gradient_norm,
    function_data,
    gradient_norm,
    hessian_top_eigenvalue,
    input_gradient_norm,
    interpolate_models,
    jacobian_norm,
    layer_slices,
    loss_function,
    make_mlp,
    mlp_param_count,
    param_count_sweep,
    pca_project,
    random_label_experiment,
    shuffle_labels,
    snapshot_gradient_norms,
    train_model,
    trajectory_distances,
    weight_trajectories,
    width_for_param_count,
)
from common.torch_models.mlp import MLP
from common.training.loop import evaluate
from common.training.params import count_parameters, flat_params, set_flat_params

CPU = torch.device("cpu")


def blobs(N=200, D=5, C=3, seed=0, random_labels=False):
    """Well separated Gaussian blobs as TensorData (train and test from the same distribution)."""
    g = torch.Generator().manual_seed(seed)
    centers = 4 * torch.randn(C, D, generator=g)
    y = torch.randint(C, (2 * N,), generator=g)
    X = centers[y] + torch.randn(2 * N, D, generator=g)
    y_train = shuffle_labels(y[:N], seed) if random_labels else y[:N]
    return TensorData(X[:N], y_train, X[N:], y[N:])


def test_make_mlp_seeded_counts_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a, b, c = make_mlp(4, [7, 5], 3, seed=1), make_mlp(4, [7, 5], 3, seed=1), make_mlp(4, [7, 5], 3, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(flat_params(a), flat_params(b)) and not torch.equal(flat_params(a), flat_params(c))
    assert count_parameters(a) == mlp_param_count(4, [7, 5], 3) == 4 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3
    assert isinstance(a, MLP) and a.config.init == "default"
    assert a(torch.zeros(2, 1, 2, 2)).shape == (2, 3)  # flattens image-shaped input
    bound = 1 / np.sqrt(4)
    assert a.net[0].weight.abs().max() <= bound
    assert make_mlp(3, [4], 1, seed=0)(torch.zeros(5, 3)).shape == (5, 1)  # one output: regression
    with pytest.raises(ValueError, match="activation"):
        make_mlp(4, [3], 2, activation="swish")


def test_width_for_param_count_is_closest():
    for depth, target in [(1, 600), (2, 600), (4, 600), (3, 5000)]:
        w = width_for_param_count(depth, target)
        err = abs(mlp_param_count(1, [w] * depth, 1) - target)
        for other in (w - 1, w + 1):
            if other >= 1:
                assert err <= abs(mlp_param_count(1, [other] * depth, 1) - target)
    archs = equal_size_architectures(600, depths=(1, 4))
    assert list(archs.values()) == [[200], [13] * 4]
    with pytest.raises(ValueError, match="num_hidden_layers"):
        width_for_param_count(0, 100)


def test_flat_params_roundtrip_and_layer_slices():
    model = make_mlp(3, [4], 2, seed=0)
    theta = torch.arange(count_parameters(model), dtype=torch.float32)
    set_flat_params(model, theta)
    assert torch.equal(flat_params(model), theta)
    sl = layer_slices(model)
    assert list(sl) == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias"]
    assert torch.equal(model.net[0].weight.reshape(-1), theta[sl["net.0.weight"]])
    assert torch.equal(model.net[2].bias, theta[sl["net.2.bias"]])
    with pytest.raises(ValueError, match="parameter count"):
        set_flat_params(model, theta[:-1])


def test_shuffle_labels_is_a_permutation():
    y = torch.randint(10, (1000,), generator=torch.Generator().manual_seed(0))
    z = shuffle_labels(y, seed=3)
    assert torch.equal(torch.bincount(y, minlength=10), torch.bincount(z, minlength=10))
    assert (z != y).float().mean() > 0.8


def test_train_model_records_steps_and_snapshots():
    data = blobs()
    model = make_mlp(5, [16], 3, seed=0)
    before = evaluate(model, TensorBatches(data.X_train, data.y_train, 1000))["loss"]
    cfg = TrainConfig(epochs=4, batch_size=50, lr=1e-2, snapshot_every=2)
    hist = train_model(model, data, cfg, device=CPU, progress=False)
    assert len(hist["step_loss"]) == len(hist["grad_norm"]) == 4 * 4
    assert hist["snapshot_epoch"] == [0, 2, 4] and len(hist["snapshots"]) == 3
    assert hist["snapshots"][0].shape == (count_parameters(model),)
    np.testing.assert_allclose(hist["snapshots"][-1], flat_params(model).numpy())
    # the loop's keys: every epoch, the test split as val_*, time since the start per epoch
    assert hist["epoch"] == hist["val_epoch"] == [1, 2, 3, 4]
    assert len(hist["train_loss"]) == len(hist["val_loss"]) == len(hist["time"]) == 4
    assert hist["time"] == sorted(hist["time"])
    assert hist["val_loss"][-1] == pytest.approx(hist["final"]["test_loss"])
    assert hist["final"]["train_loss"] < 0.5 * before and hist["final"]["test_acc"] > 0.9
    assert all(g > 0 for g in hist["grad_norm"])


def test_grad_norm_matches_manual_first_step():
    data = blobs(N=40)
    model = make_mlp(5, [8], 3, seed=0)
    reference = make_mlp(5, [8], 3, seed=0)
    hist = train_model(model, data, TrainConfig(epochs=1, batch_size=40, lr=1e-3), device=CPU, progress=False)
    loss = nn.CrossEntropyLoss()(reference(data.X_train), data.y_train)  # full batch: same order, same batch
    loss.backward()
    manual = torch.sqrt(sum((p.grad**2).sum() for p in reference.parameters()))
    assert hist["step_loss"][0] == pytest.approx(loss.item(), rel=1e-5)
    assert hist["grad_norm"][0] == pytest.approx(manual.item(), rel=1e-5)


def test_train_config_rejects_bad_values():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(ValueError, match="loss"):
        TrainConfig(loss="l1")
    with pytest.raises(ValueError, match="loss"):
        loss_function("huber")
    assert isinstance(loss_function("mae"), nn.L1Loss) and TrainConfig(loss="mae").loss == "mae"


def _backward_once(model, X, y, loss="ce"):
    model.zero_grad(set_to_none=True)
    loss_function(loss)(model(X), y).backward()


def test_gradient_norm_is_the_global_l2_norm():
    g = torch.Generator().manual_seed(0)
    model = make_mlp(6, [5, 4], 3, seed=0).double()
    X, y = torch.randn(20, 6, generator=g, dtype=torch.float64), torch.randint(3, (20,), generator=g)
    assert gradient_norm(model) == 0.0  # no backward pass yet: no gradient anywhere
    _backward_once(model, X, y)
    grads = [p.grad for p in model.parameters()]
    expected = torch.linalg.vector_norm(torch.cat([t.reshape(-1) for t in grads])).item()
    result = gradient_norm(model)
    assert isinstance(result, float) and result == pytest.approx(expected, rel=1e-10)
    assert result == pytest.approx(nn.utils.get_total_norm(grads).item(), rel=1e-10)
    # a frozen first layer has no gradient: skipped, not an error
    model.net[0].weight.requires_grad_(False)
    _backward_once(model, X, y)
    rest = [p.grad for p in model.parameters() if p.grad is not None]
    assert model.net[0].weight.grad is None and len(rest) == 5
    assert gradient_norm(model) == pytest.approx(nn.utils.get_total_norm(rest).item(), rel=1e-10)


def test_gradient_norm_matches_the_loops_record():
    data = blobs(N=40)
    model, reference = make_mlp(5, [8], 3, seed=0), make_mlp(5, [8], 3, seed=0)
    hist = train_model(model, data, TrainConfig(epochs=1, batch_size=40, lr=1e-3), device=CPU, progress=False)
    _backward_once(reference, data.X_train, data.y_train)
    assert gradient_norm(reference) == pytest.approx(hist["grad_norm"][0], rel=1e-5)


def test_full_gradient_norm_accumulates_over_batches_and_restores_state():
    data = blobs(N=50)
    model = make_mlp(5, [8], 3, seed=0).double()
    X = data.X_train.double()
    _backward_once(model, X[:7], data.y_train[:7])
    saved = [p.grad.clone() for p in model.parameters()]
    model.train()
    result = full_gradient_norm(model, X, data.y_train, batch_size=7, device=CPU)  # 8 batches, the last of 1
    reference = make_mlp(5, [8], 3, seed=0).double()
    _backward_once(reference, X, data.y_train)  # the mean loss over all 50 in one pass
    expected = nn.utils.get_total_norm([p.grad for p in reference.parameters()]).item()
    assert result == pytest.approx(expected, rel=1e-10)
    assert model.training and all(torch.equal(p.grad, s) for p, s in zip(model.parameters(), saved))
    fn = function_data(num_train=30, num_test=5)
    reg = make_mlp(1, [4], 1, seed=0)
    _backward_once(reg, fn.X_train, fn.y_train, "mse")
    expected = gradient_norm(reg)
    assert full_gradient_norm(reg, fn.X_train, fn.y_train, loss="mse", batch_size=8) == pytest.approx(
        expected, rel=1e-5
    )


def test_snapshot_gradient_norms_loads_each_snapshot_and_restores_weights():
    data = blobs(N=60)
    model = make_mlp(5, [8], 3, seed=0)
    hist = train_model(model, data, TrainConfig(epochs=2, batch_size=20, lr=1e-2, snapshot_every=1), progress=False)
    probe = make_mlp(5, [8], 3, seed=5)
    own = flat_params(probe)
    norms = snapshot_gradient_norms(probe, hist["snapshots"], data.X_train, data.y_train)
    assert norms.shape == (3,) and torch.equal(flat_params(probe), own)
    set_flat_params(model, torch.from_numpy(hist["snapshots"][1]))
    assert norms[1] == pytest.approx(full_gradient_norm(model, data.X_train, data.y_train), rel=1e-6)
    assert norms[0] > norms[-1]  # training on separable blobs flattens the loss


def test_add_outliers_moves_only_the_chosen_training_targets():
    data = function_data(num_train=50, num_test=20, seed=0)
    noisy, idx = add_outliers(data, 5, magnitude=3.0, seed=1)
    assert len(idx) == len(set(idx.tolist())) == 5
    diff = (noisy.y_train - data.y_train)[:, 0]
    np.testing.assert_allclose(diff[idx].numpy(), 3.0)
    assert (
        (diff != 0).sum() == 5 and torch.equal(noisy.y_test, data.y_test) and torch.equal(noisy.X_train, data.X_train)
    )
    assert add_outliers(data, 5, seed=1)[1].tolist() == idx.tolist() and add_outliers(data, 0)[1].size == 0
    with pytest.raises(ValueError, match="num_outliers"):
        add_outliers(data, 51)


def test_mae_fit_ignores_outliers_that_pull_the_mse_fit():
    data, _ = add_outliers(function_data(lambda x: 0.8 * x + 0.3, num_train=40, num_test=50, seed=1), 4, 3.0, seed=1)
    err = {}
    for loss in ("mse", "mae"):
        cfg = TrainConfig(epochs=1000, batch_size=40, lr=1e-2, loss=loss, eval_every=1000)
        res = fit_function([], data, cfg, device=CPU, progress=False)
        err[loss] = np.mean((res["prediction"] - data.y_test[:, 0].numpy()) ** 2)
    # the MSE line is shifted by the mean of the outliers' offsets (4 * 3 / 40 = 0.3): error about 0.1
    assert err["mse"] > 0.05 and err["mae"] < 0.01


def test_function_data_and_fit_reduces_loss():
    data = function_data(num_train=64, num_test=50, seed=0)
    assert data.X_train.shape == (64, 1) and data.y_test.shape == (50, 1)
    np.testing.assert_allclose(damped_sine(np.array([0.0, 0.2, 0.1])), [1.0, 0.0, 1 / (0.5 * np.pi)], atol=1e-7)
    cfg = TrainConfig(epochs=300, batch_size=64, lr=1e-2, loss="mse", eval_every=100)
    res = fit_function([32], data, cfg, progress=False)
    var = data.y_train.var().item()
    assert res["final"]["train_loss"] < 0.5 * var
    assert res["prediction"].shape == (50,) and res["num_params"] == 3 * 32 + 1
    assert np.isnan(res["final"]["test_acc"])
    with pytest.raises(ValueError, match="mse"):
        fit_function([4], data, TrainConfig(loss="ce"))


def test_random_labels_are_memorised_not_generalised():
    data = blobs(N=100, D=50, C=4, random_labels=True)
    cfg = TrainConfig(epochs=100, batch_size=100, lr=1e-2, record_steps=False, eval_every=50)
    hist = random_label_experiment(data, hidden_dims=(64,), config=cfg, progress=False)
    assert hist["num_params"] == 50 * 64 + 64 + 64 * 4 + 4
    assert hist["val_epoch"] == [50, 100] and len(hist["train_acc"]) == 100
    assert hist["final"]["train_acc"] > 0.9
    assert hist["final"]["test_acc"] < 0.5  # chance is 0.25


def test_param_count_sweep_shapes_and_capacity():
    data = blobs(N=150, D=10, C=3)
    res = param_count_sweep(
        [1, 8], data, TrainConfig(epochs=30, batch_size=50, lr=1e-2, record_steps=False), progress=False
    )
    np.testing.assert_array_equal(res["num_params"], [10 + 1 + 1 * 3 + 3, 10 * 8 + 8 + 8 * 3 + 3])
    assert res["train_acc"][1] > 0.95 and res["train_loss"][1] < res["train_loss"][0]
    with pytest.raises(ValueError, match="widths"):
        param_count_sweep([], data)


def test_jacobian_norm_of_linear_net_is_frobenius_of_weights():
    model = make_mlp(6, [], 4, seed=0)  # f(x) = W x + b
    X = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    assert jacobian_norm(model, X, batch_size=7) == pytest.approx(model.net[0].weight.norm().item(), rel=1e-5)


def test_jacobian_and_input_gradient_match_autograd_per_sample():
    model = make_mlp(5, [7], 3, activation="tanh", seed=0)
    X, y = torch.randn(6, 5, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0, 1, 2])
    jac = [torch.autograd.functional.jacobian(lambda x: model(x[None])[0], X[i]).norm() for i in range(6)]
    assert jacobian_norm(model, X, batch_size=4) == pytest.approx(torch.stack(jac).mean().item(), rel=1e-5)
    grads = [
        torch.autograd.functional.jacobian(
            lambda x: nn.functional.cross_entropy(model(x[None]), y[i : i + 1]), X[i]
        ).norm()
        for i in range(6)
    ]
    assert input_gradient_norm(model, X, y, batch_size=4) == pytest.approx(torch.stack(grads).mean().item(), rel=1e-5)


def test_hessian_top_eigenvalue_matches_full_hessian():
    model = make_mlp(3, [4], 2, activation="tanh", seed=0).double()
    g = torch.Generator().manual_seed(1)
    X, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randint(2, (20,), generator=g)
    theta = flat_params(model)

    def loss_of(flat):
        offset, out = 0, X
        params = []
        for p in model.parameters():
            params.append(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        W1, b1, W2, b2 = params
        return nn.functional.cross_entropy(torch.tanh(out @ W1.T + b1) @ W2.T + b2, y)

    H = torch.autograd.functional.hessian(loss_of, theta)
    eig = torch.linalg.eigvalsh(H)
    top = eig[eig.abs().argmax()].item()
    est = hessian_top_eigenvalue(model, X, y, num_iters=500, tol=1e-10)
    assert est == pytest.approx(top, rel=1e-3)


def test_pca_project_recovers_a_plane():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((50, 2)))[0].T  # (2, 50) orthonormal
    coords = rng.standard_normal((3, 10, 2)) * [5.0, 1.0]
    snaps = coords @ basis + 7.0  # (3, 10, 50): on an affine plane
    proj, ratio = pca_project(snaps)
    assert proj.shape == (3, 10, 2) and ratio.sum() == pytest.approx(1.0, abs=1e-8)
    # distances within the plane are preserved by the projection
    d_true = np.linalg.norm(snaps[0, 0] - snaps[2, 9])
    assert np.linalg.norm(proj[0, 0] - proj[2, 9]) == pytest.approx(d_true, rel=1e-8)
    _, ratio1 = pca_project(snaps, columns=slice(0, 10))
    assert ratio1.shape == (2,)
    with pytest.raises(ValueError, match="snapshots"):
        pca_project(snaps[0])


def test_weight_trajectories_shapes_and_loss_at_snapshots():
    data = function_data(num_train=32, num_test=20)
    cfg = TrainConfig(epochs=20, batch_size=32, lr=1e-2, loss="mse", snapshot_every=5, record_steps=False)
    res = weight_trajectories([6], data, cfg, num_runs=2, progress=False)
    assert res["snapshots"].shape == (2, 5, 3 * 6 + 1) and list(res["epochs"]) == [0, 5, 10, 15, 20]
    assert res["loss"].shape == (2, 5) and np.all(res["loss"][:, -1] < res["loss"][:, 0])
    assert res["acc"].shape == (2, 5) and np.all(np.isnan(res["acc"]))
    assert not np.allclose(res["snapshots"][0, 0], res["snapshots"][1, 0])  # different inits
    with pytest.raises(ValueError, match="snapshot_every"):
        weight_trajectories([6], data, TrainConfig(loss="mse"), progress=False)


def test_weight_trajectories_with_a_model_factory_and_accuracy():
    data = blobs(N=60)
    cfg = TrainConfig(epochs=4, batch_size=20, lr=1e-2, snapshot_every=2, record_steps=False)
    seeds = []

    def build(seed):
        seeds.append(seed)
        return make_mlp(5, [4, 4], 3, activation="tanh", seed=seed)

    res = weight_trajectories(None, data, cfg, num_runs=2, model_fn=build, progress=False)
    assert seeds == [0, 1] and res["snapshots"].shape == (2, 3, mlp_param_count(5, [4, 4], 3))
    assert list(res["slices"]) == [
        "net.0.weight",
        "net.0.bias",
        "net.2.weight",
        "net.2.bias",
        "net.4.weight",
        "net.4.bias",
    ]
    assert np.all((res["acc"] >= 0) & (res["acc"] <= 1)) and res["acc"][0, -1] > res["acc"][0, 0]
    model = build(0)
    set_flat_params(model, torch.from_numpy(res["snapshots"][0, -1]))
    ref = evaluate(model, TensorBatches(data.X_train, data.y_train, 1000))
    assert res["acc"][0, -1] == pytest.approx(ref["acc"]) and res["loss"][0, -1] == pytest.approx(ref["loss"], rel=1e-5)


def test_trajectory_distances():
    starts = np.array([[0.0, 0.0], [3.0, 4.0]])
    steps = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.0]])  # (S - 1, P): the same path from each start
    snaps = np.stack([np.vstack([s, s + np.cumsum(steps, axis=0)]) for s in starts])  # (2, 4, 2)
    d = trajectory_distances(snaps)
    np.testing.assert_allclose(d["travel"], [2.5, 2.5])
    np.testing.assert_allclose(d["path"], [[1.0, 1.0, 0.5]] * 2)
    assert d["start_gap"] == pytest.approx(5.0) and d["end_gap"] == pytest.approx(5.0)
    only_x = trajectory_distances(snaps, columns=slice(0, 1))
    assert only_x["start_gap"] == pytest.approx(3.0) and only_x["travel"][0] == pytest.approx(2.5)
    with pytest.raises(ValueError, match="two runs"):
        trajectory_distances(snaps[:1])


def test_interpolate_models_endpoints_and_linearity():
    data = blobs(N=60)
    a, b = make_mlp(5, [], 3, seed=0), make_mlp(5, [], 3, seed=1)
    res = interpolate_models(a, b, data, alphas=[0.0, 0.5, 1.0], progress=False)
    for alpha, model in ((0, a), (2, b)):
        ref = evaluate(model, TensorBatches(data.X_test, data.y_test, 100))
        assert res["test_loss"][alpha] == pytest.approx(ref["loss"], rel=1e-5)
        assert res["test_acc"][alpha] == pytest.approx(ref["acc"])
    # a linear net's logits are linear in alpha, so the midpoint's logits are the average
    mid = make_mlp(5, [], 3, seed=2)
    set_flat_params(mid, 0.5 * (flat_params(a) + flat_params(b)))
    ref = nn.functional.cross_entropy(0.5 * (a(data.X_train) + b(data.X_train)), data.y_train).item()
    assert res["train_loss"][1] == pytest.approx(ref, rel=1e-5)
    with pytest.raises(ValueError, match="same architecture"):
        interpolate_models(a, make_mlp(5, [2], 3, seed=0), data)


def test_batch_size_sweep_returns_all_measures():
    data = blobs(N=120, D=8)
    res = batch_size_sweep(
        [10, 120],
        data,
        (8,),
        TrainConfig(epochs=3, lr=1e-2, record_steps=False),
        num_eval=50,
        hessian_iters=5,
        lr_scaling="sqrt",
        base_batch_size=10,
        progress=False,
    )
    np.testing.assert_array_equal(res["steps"], [36, 3])
    np.testing.assert_allclose(res["lr"], [1e-2, 1e-2 * np.sqrt(12)])
    assert len(res["models"]) == 2 and np.all(res["jacobian_norm"] > 0) and np.all(np.isfinite(res["sharpness"]))
    with pytest.raises(ValueError, match="lr_scaling"):
        batch_size_sweep([10], data, lr_scaling="cubic")


def test_mnist_tensors_if_available():
    from common.data.images import DatasetNotFoundError
    from common.experiments.dynamics import mnist_tensors

    try:
        data = mnist_tensors(300, 100, seed=0)
    except DatasetNotFoundError:
        pytest.skip("MNIST not downloaded")
    assert data.X_train.shape == (300, 784) and data.X_test.shape == (100, 784)
    assert abs(data.X_train.mean().item()) < 0.3 and 0.7 < data.X_train.std().item() < 1.3
    shuffled = mnist_tensors(300, 100, seed=0, random_labels=True)
    assert torch.equal(shuffled.X_train, data.X_train)
    assert torch.equal(torch.bincount(shuffled.y_train), torch.bincount(data.y_train))
    assert (shuffled.y_train != data.y_train).float().mean() > 0.7
    with pytest.raises(ValueError, match="num_train"):
        mnist_tensors(0)
    images = mnist_tensors(300, 100, seed=0, images=True)
    assert images.X_train.shape == (300, 1, 28, 28) and torch.equal(images.X_train.reshape(300, -1), data.X_train)


def test_interrupted_training_leaves_nothing_behind(monkeypatch):
    data = blobs(N=60)
    cfg = TrainConfig(epochs=3, batch_size=20, lr=1e-2)
    reference = train_model(make_mlp(5, [8], 3, seed=0), data, cfg, device=CPU, progress=False)
    model, steps = make_mlp(5, [8], 3, seed=0), []

    class FailingMidway(nn.Module):  # a loss that raises in the middle of the second epoch
        def forward(self, out, y):
            steps.append(1)
            if len(steps) == 5:
                raise KeyboardInterrupt("interrupted")
            return nn.functional.cross_entropy(out, y)

    with monkeypatch.context() as patch:
        patch.setattr(training_module, "loss_function", lambda name, reduction="mean": FailingMidway())
        with pytest.raises(KeyboardInterrupt):
            train_model(model, data, cfg, device=CPU, progress=False)
    assert len(steps) == 5
    again = train_model(make_mlp(5, [8], 3, seed=0), data, cfg, device=CPU, progress=False)
    assert again["step_loss"] == pytest.approx(reference["step_loss"], rel=1e-6)
    assert again["final"]["test_loss"] == pytest.approx(reference["final"]["test_loss"], rel=1e-6)


def _global_rng_state():
    return torch.get_rng_state().clone(), np.random.get_state()


def _assert_same_rng(before):
    torch_state, np_state = _global_rng_state()
    assert torch.equal(torch_state, before[0]), "the global torch generator was used"
    assert (
        np_state[0] == before[1][0] and np.array_equal(np_state[1], before[1][1]) and np_state[2:] == before[1][2:]
    ), "NumPy's global generator was used"


def test_entry_points_take_a_device_and_leave_global_rng_alone():
    before = _global_rng_state()
    data, fn_data = blobs(N=40, D=4, C=3), function_data(num_train=16, num_test=8)
    quick = TrainConfig(epochs=2, batch_size=20, lr=1e-2, record_steps=False)
    mse = TrainConfig(epochs=4, batch_size=16, lr=1e-2, loss="mse", snapshot_every=2)
    model = make_mlp(4, [5], 3)  # seed None: a fresh seed from the OS, never the global generator
    hist = train_model(model, data, quick, device=CPU, progress=False)
    fit = fit_function([4], fn_data, mse, device=CPU, progress=False)
    depths = compare_depths({"1 x 4": [4]}, fn_data, mse, device=CPU, progress=False)
    sweep = param_count_sweep([2, 3], data, quick, device=CPU, progress=False)
    rand = random_label_experiment(data, hidden_dims=(6,), config=quick, device=CPU, progress=False)
    traj = weight_trajectories([3], fn_data, mse, num_runs=2, device=CPU, progress=False)
    bs = batch_size_sweep([10, 40], data, (5,), quick, num_eval=20, hessian_iters=3, device=CPU, progress=False)
    jac = jacobian_norm(model, data.X_train, device=CPU)
    full = full_gradient_norm(model, data.X_train, data.y_train, device=CPU)
    grad = input_gradient_norm(model, data.X_train, data.y_train, device=CPU)
    shuffled = shuffle_labels(data.y_train, seed=1)
    _assert_same_rng(before)
    assert len(hist["epoch"]) == 2 and isinstance(fit["prediction"], np.ndarray)
    assert len(depths["1 x 4"]) == 1 and sweep["time"].shape == (2,) and rand["num_params"] > 0
    assert traj["snapshots"].shape[:2] == (2, 3) and len(bs["models"]) == 2
    assert all(np.isfinite(v) for v in (jac, grad, full)) and len(shuffled) == 40
    assert all(p.device.type == "cpu" for p in fit["model"].parameters())


# the two exercises among the entry points, each in a test of its own: one not written yet fails only its own
def test_hessian_top_eigenvalue_takes_a_device_and_leaves_global_rng_alone():
    data = blobs(N=40, D=4, C=3)
    model = make_mlp(4, [5], 3, seed=0)
    before = _global_rng_state()
    sharp = hessian_top_eigenvalue(model, data.X_train, data.y_train, num_iters=3, device=CPU)
    _assert_same_rng(before)
    assert np.isfinite(sharp)


def test_interpolate_models_takes_a_device_and_leaves_global_rng_alone():
    data = blobs(N=40, D=4, C=3)
    model_a, model_b = make_mlp(4, [5], 3, seed=0), make_mlp(4, [5], 3, seed=1)
    before = _global_rng_state()
    interp = interpolate_models(model_a, model_b, data, alphas=[0.0, 1.0], device=CPU, progress=False)
    _assert_same_rng(before)
    assert interp["train_loss"].shape == (2,)
    assert all(p.device.type == "cpu" for p in model_a.parameters())
