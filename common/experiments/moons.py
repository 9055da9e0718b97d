"""Ablations of the NumPy MLP on make_moons (MLP_Moons notebook): one training setting varied, several seeds."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from common.classifiers.mlp import MLP, train_mlp

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
) -> dict:
    """Train one MLP per ``(value, seed)`` with ``setting`` (``'learning_rate'`` or ``'batch_size'``) set to the value.

    Every run gets the same budget of ``epochs`` passes over ``X_train (N, D)``, ``y_train (N,)``, mini-batch
    gradient descent, and the other setting at its given default; the seed sets both the initialisation and the
    batch order. Returns arrays of shape ``(len(values), len(seeds))``: ``val_acc`` and ``train_loss`` at the end
    of training (``nan`` loss when training diverged), ``seconds`` of training; plus ``values``, ``seeds``,
    ``setting``, ``epochs``.
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
    runs = [(i, j) for i in range(len(values)) for j in range(len(seeds))]
    for i, j in tqdm(runs, desc=f"{setting} ablation", disable=not progress, leave=False):
        kwargs = {"learning_rate": learning_rate, "batch_size": batch_size, setting: values[i]}
        model = MLP(X_train.shape[1], list(n_hidden), C, activation=activation, init=init, seed=seeds[j])
        # a learning rate too large may overflow: the run is recorded (nan loss), not warned about
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            hist = train_mlp(
                model, X_train, y_train, X_val, y_val, epochs=epochs, seed=seeds[j], progress=False, **kwargs
            )
        loss = hist["train_loss"][-1]
        out["val_acc"][i, j] = hist["val_acc"][-1]
        out["train_loss"][i, j] = loss if np.isfinite(loss) else np.nan
        out["seconds"][i, j] = hist["time"][-1]
    return {**out, "values": values, "seeds": seeds, "setting": setting, "epochs": epochs}
