"""Ablations of the NumPy MLP on make_moons (MLP_Moons notebook): one training setting varied, several seeds."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from common.classifiers.mlp import MLP, train_mlp
from common.parallel import run_jobs

__all__ = ["ABLATION_SETTINGS", "ablation"]

#: The ``train_mlp`` keywords an ablation can vary.
ABLATION_SETTINGS = ("learning_rate", "batch_size")


def ablation(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    setting: str,
    values,
    seeds,
    n_hidden=(20, 20),
    epochs: int = 30,
    learning_rate: float = 0.1,
    batch_size: int = 32,
    activation: str = "relu",
    init: str = "he",
    progress: bool = True,
    workers: int | None = None,
) -> dict:
    """Train one MLP per ``(value, seed)`` with ``setting`` (``'learning_rate'`` or ``'batch_size'``) set to the value.

    Every run gets the same budget of ``epochs`` passes over ``X_train (N, D)``, ``y_train (N,)``, mini-batch
    gradient descent, and the other setting at its given default; the seed sets both the initialisation and the
    batch order. Returns arrays of shape ``(len(values), len(seeds))``: ``val_acc`` and ``train_loss`` at the end
    of training (``nan`` loss when training diverged), ``seconds`` of training; plus ``values``, ``seeds``,
    ``setting``, ``epochs``.

    The runs are independent, so they are spread over ``workers`` processes (``common.parallel.run_jobs``; default:
    every CPU while the machine is otherwise idle, one process next to other work); each run is seeded, so the
    results are the same for any number of workers. ``seconds`` is each run's own training time.
    """
    if setting not in ABLATION_SETTINGS:
        raise ValueError(f"setting must be one of {ABLATION_SETTINGS}, got {setting!r}")
    values, seeds = list(values), list(seeds)
    if not values or not seeds:
        raise ValueError(f"need at least one value and one seed, got values={values}, seeds={seeds}")
    X_train = np.asarray(X_train, dtype=np.float64)
    C = int(max(np.max(y_train), np.max(y_val))) + 1
    shape = (len(values), len(seeds))
    out = {"val_acc": np.zeros(shape), "train_loss": np.zeros(shape), "seconds": np.zeros(shape)}
    jobs = {}  # (value index, seed index) -> the arguments of _one_run
    for i, value in enumerate(values):
        for j, seed in enumerate(seeds):
            net = dict(hidden_dims=list(n_hidden), num_classes=C, activation=activation, init=init, seed=seed)
            train = {"learning_rate": learning_rate, "batch_size": batch_size, setting: value}
            jobs[i, j] = X_train, y_train, X_val, y_val, net, dict(train, epochs=epochs, seed=seed)
    bar = tqdm(total=len(jobs), desc=f"{setting} ablation", disable=not progress, leave=False)
    results = {}
    for key, result in run_jobs(_one_run, jobs, workers):
        results[key] = result
        bar.update()
    bar.close()
    for (i, j), (val_acc, loss, seconds) in results.items():
        out["val_acc"][i, j] = val_acc
        out["train_loss"][i, j] = loss if np.isfinite(loss) else np.nan
        out["seconds"][i, j] = seconds
    return {**out, "values": values, "seeds": seeds, "setting": setting, "epochs": epochs}


def _one_run(X_train, y_train, X_val, y_val, net: dict, train: dict) -> tuple[float, float, float]:
    """Train one ablation model (``MLP`` keywords ``net``, ``train_mlp`` keywords ``train``); returns
    ``(validation accuracy, final training loss, training seconds)``."""
    net = dict(net)
    model = MLP(X_train.shape[1], net.pop("hidden_dims"), net.pop("num_classes"), **net)
    # a learning rate too large may overflow: the run is recorded (nan loss), not warned about
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        hist = train_mlp(model, X_train, y_train, X_val, y_val, progress=False, **train)
    return hist["val_acc"][-1], hist["train_loss"][-1], hist["time"][-1]
