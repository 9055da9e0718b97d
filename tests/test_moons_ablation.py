"""common.experiments.moons.ablation: shapes, reproducibility, the setting really varies, bad input."""

import warnings

import numpy as np
import pytest

from common.classifiers.mlp import MLP, evaluate_mlp, train_mlp
from common.data.generators import make_moons
from common.experiments.moons import ablation


@pytest.fixture(scope="module")
def moons():
    X, y = make_moons(200, noise=0.15, seed=0)
    return X[:140], y[:140], X[140:], y[140:]


def test_shapes_and_one_run_matches_train_mlp(moons):
    X_tr, y_tr, X_va, y_va = moons
    res = ablation(X_tr, y_tr, X_va, y_va, "learning_rate", [0.01, 0.3], [0, 1], n_hidden=[8], epochs=3, progress=False)
    for key in ("val_acc", "train_loss", "seconds"):
        assert res[key].shape == (2, 2), key
    assert res["values"] == [0.01, 0.3] and res["seeds"] == [0, 1] and res["epochs"] == 3
    assert np.all(res["seconds"] > 0)
    # the (lr 0.3, seed 1) entry is exactly the run one would do by hand
    model = MLP(2, [8], 2, seed=1)
    hist = train_mlp(model, X_tr, y_tr, X_va, y_va, batch_size=32, learning_rate=0.3, epochs=3, seed=1, progress=False)
    assert res["val_acc"][1, 1] == evaluate_mlp(model, X_va, y_va)[1] == hist["val_acc"][-1]
    assert res["train_loss"][1, 1] == hist["train_loss"][-1]


def test_the_setting_matters_and_runs_repeat(moons):
    X_tr, y_tr, X_va, y_va = moons
    a = ablation(X_tr, y_tr, X_va, y_va, "batch_size", [4, 140], [0], epochs=10, progress=False)
    b = ablation(X_tr, y_tr, X_va, y_va, "batch_size", [4, 140], [0], epochs=10, progress=False)
    np.testing.assert_array_equal(a["val_acc"], b["val_acc"])
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])
    # 35 steps per epoch against 1: the small batch gets much further in the same epochs
    assert a["train_loss"][0, 0] < 0.8 * a["train_loss"][1, 0]


def test_divergence_is_recorded_not_raised(moons):
    X_tr, y_tr, X_va, y_va = moons
    with warnings.catch_warnings():  # the ablation itself silences overflow: no RuntimeWarning reaches the caller
        warnings.simplefilter("error")
        res = ablation(X_tr, y_tr, X_va, y_va, "learning_rate", [1e4], [0], epochs=3, progress=False)
    assert res["val_acc"].shape == (1, 1) and 0 <= res["val_acc"][0, 0] <= 1


def test_bad_input(moons):
    X_tr, y_tr, X_va, y_va = moons
    with pytest.raises(ValueError, match="setting must be one of"):
        ablation(X_tr, y_tr, X_va, y_va, "momentum", [0.9], [0], progress=False)
    with pytest.raises(ValueError, match="at least one value and one seed"):
        ablation(X_tr, y_tr, X_va, y_va, "learning_rate", [0.1], [], progress=False)


def test_worker_processes_give_the_same_results(moons):
    X_tr, y_tr, X_va, y_va = moons
    args = (X_tr, y_tr, X_va, y_va, "batch_size", [4, 32, 140], [0, 1])
    serial = ablation(*args, epochs=3, progress=False, workers=1)
    parallel = ablation(*args, epochs=3, progress=False, workers=2)
    for key in ("val_acc", "train_loss"):
        np.testing.assert_array_equal(serial[key], parallel[key])
    assert np.all(parallel["seconds"] > 0)
    with pytest.raises(ValueError, match="workers"):
        ablation(*args, epochs=1, progress=False, workers=0)
