"""Solver: overfits a small set, follows its keywords, rejects unknown ones, reproducible with a seed."""

import numpy as np
import pytest

from common.classifiers.fc_net import FullyConnectedNet
from common.solver import Solver
from common.training.checkpoint import CacheEntry


def _small_data(num_train=50, D=20, C=5, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "X_train": rng.standard_normal((num_train, D)),
        "y_train": rng.integers(C, size=num_train),
        "X_val": rng.standard_normal((30, D)),
        "y_val": rng.integers(C, size=30),
    }


def _model(normalization=None, seed=0):
    return FullyConnectedNet(
        [100], input_dim=20, num_classes=5, weight_scale=0.1, normalization=normalization, dtype=np.float64, seed=seed
    )


@pytest.mark.parametrize("update_rule,lr", [("sgd", 0.3), ("sgd_momentum", 0.05), ("rmsprop", 3e-3), ("adam", 1e-2)])
def test_solver_overfits_50_samples(update_rule, lr):
    data = _small_data()
    solver = Solver(
        _model(),
        data,
        update_rule=update_rule,
        optim_config={"learning_rate": lr},
        batch_size=25,
        num_epochs=40,
        verbose=False,
        seed=0,
    )
    solver.train()
    assert solver.train_acc_history[-1] == 1.0
    assert np.mean(solver.loss_history[-5:]) < 0.2 * solver.loss_history[0]
    assert len(solver.loss_history) == 40 * 2
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 41  # epoch 0 plus one per epoch
    assert solver.best_val_acc == max(solver.val_acc_history)


def test_solver_keeps_best_params_and_decays_lr():
    data = _small_data()
    solver = Solver(
        _model("batchnorm"),
        data,
        update_rule="sgd",
        optim_config={"learning_rate": 0.1},
        lr_decay=0.5,
        batch_size=10,
        num_epochs=3,
        verbose=False,
        seed=1,
    )
    solver.train()
    assert all(c["learning_rate"] == pytest.approx(0.1 * 0.5**3) for c in solver.optim_configs.values())
    for k, v in solver.best_params.items():
        assert np.array_equal(solver.model.params[k], v)
    val_acc = solver.check_accuracy(data["X_val"], data["y_val"])
    assert val_acc == pytest.approx(solver.best_val_acc)


def test_solver_seed_reproducible_and_verbose(capsys):
    histories = []
    for _ in range(2):
        solver = Solver(
            _model(),
            _small_data(),
            optim_config={"learning_rate": 0.1},
            batch_size=10,
            num_epochs=2,
            print_every=3,
            verbose=True,
            seed=7,
        )
        solver.train()
        histories.append(solver.loss_history)
    assert histories[0] == histories[1]
    out = capsys.readouterr().out
    assert "(Epoch 2 / 2)" in out and "(Iteration 4 / 10)" in out


def test_solver_checkpoints(tmp_path):
    prefix = tmp_path / "ckpt" / "fc"
    solver = Solver(
        _model("batchnorm"),
        _small_data(),
        update_rule="adam",
        optim_config={"learning_rate": 1e-3},
        batch_size=25,
        num_epochs=2,
        checkpoint_name=str(prefix),
        verbose=False,
        seed=0,
    )
    solver.train()
    for epoch in (1, 2):
        checkpoint = CacheEntry(tmp_path / "ckpt" / f"fc_epoch_{epoch}.pt").load(
            required=("params", "bn_params", "optim_configs", "epoch", "val_acc_history")
        )
        assert checkpoint["epoch"] == epoch and len(checkpoint["val_acc_history"]) == epoch + 1
        assert checkpoint["update_rule"] == "adam" and checkpoint["optim_config"] == {"learning_rate": 1e-3}
        assert checkpoint["batch_size"] == 25 and checkpoint["lr_decay"] == 1.0
        assert set(checkpoint["params"]) == set(solver.model.params)
        assert checkpoint["optim_configs"]["W1"]["t"] == 2 * epoch  # two iterations per epoch
        assert checkpoint["bn_params"][0]["running_var"].shape == (100,)
    last = CacheEntry(tmp_path / "ckpt" / "fc_epoch_2.pt").load()
    assert last["loss_history"] == solver.loss_history
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["fc_epoch_1.pt", "fc_epoch_2.pt"]


def test_solver_relative_checkpoint_name_goes_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    Solver(
        _model(), _small_data(), batch_size=25, num_epochs=1, checkpoint_name="run/fc", verbose=False, seed=0
    ).train()
    assert CacheEntry(tmp_path / "solver" / "run" / "fc_epoch_1.pt").load(required=("params",)) is not None


def test_check_accuracy_subsample_and_batches():
    data = _small_data(num_train=250)
    solver = Solver(_model(), data, verbose=False, seed=0)
    full = solver.check_accuracy(data["X_train"], data["y_train"], batch_size=7)
    scores = solver.model.loss(data["X_train"])
    assert full == pytest.approx(np.mean(scores.argmax(axis=1) == data["y_train"]))
    sub = solver.check_accuracy(data["X_train"], data["y_train"], num_samples=40)
    assert sub * 40 == pytest.approx(round(sub * 40))


def test_solver_bad_args_raise():
    data = _small_data()
    with pytest.raises(ValueError, match="learning_rat"):
        Solver(_model(), data, learning_rat=1e-3)
    with pytest.raises(ValueError, match="update_rule"):
        Solver(_model(), data, update_rule="sgd_nesterov")
    bad = dict(data)
    del bad["y_val"]
    with pytest.raises(ValueError, match="y_val"):
        Solver(_model(), bad)
    bad = dict(data, y_train=data["y_train"][:10])
    with pytest.raises(ValueError, match="y_train"):
        Solver(_model(), bad)
    with pytest.raises(ValueError, match="batch_size"):
        Solver(_model(), data, batch_size=0)


def test_solver_progress_bar_and_fractional_epochs(capsys):
    solver = Solver(_model(), _small_data(), batch_size=10, num_epochs=0.4, verbose=False, progress=True, seed=0)
    solver.train()
    assert len(solver.loss_history) == 2  # 0.4 epochs of 5 iterations
    assert "Solver" in capsys.readouterr().err  # the tqdm bar writes to stderr
