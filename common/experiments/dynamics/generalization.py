"""Generalisation experiments on MNIST: parameter count vs train/test loss, random-label memorisation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from common.config import get_device
from common.experiments.dynamics.training import TensorData, TrainConfig, make_mlp, train_model
from common.training.params import count_parameters

__all__ = ["param_count_sweep", "random_label_experiment"]


def param_count_sweep(
    widths,
    data: TensorData,
    config: TrainConfig | None = None,
    num_hidden_layers: int = 1,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Train an MLP ``784 -> [w] * num_hidden_layers -> 10`` for every width ``w``; same data, config, seed.

    Returns arrays over widths: ``width``, ``num_params``, ``train_loss``, ``train_acc``, ``test_loss``,
    ``test_acc`` (clean evaluations after training) and ``time`` (training seconds per model).
    """
    widths = [int(w) for w in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"widths must be a non-empty list of positive ints, got {widths}")
    config = config or TrainConfig(epochs=10, batch_size=128, lr=1e-3, record_steps=False)
    device = device or get_device()
    in_dim, num_classes = data.X_train.shape[1], int(data.y_train.max()) + 1
    rows = []
    for w in tqdm(widths, desc="widths", disable=not progress):
        model = make_mlp(in_dim, [w] * num_hidden_layers, num_classes, seed=seed)
        hist = train_model(model, data, replace(config, eval_every=config.epochs), device=device, progress=False)
        rows.append(dict(width=w, num_params=count_parameters(model), time=hist["time"][-1], **hist["final"]))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]}


def random_label_experiment(
    data: TensorData,
    hidden_dims=(512, 512),
    config: TrainConfig | None = None,
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Train an MLP on ``data`` (whose training labels the caller has shuffled, e.g. with
    ``mnist_tensors(..., random_labels=True)``) and return the ``train_model`` history (the test split as the
    loop's ``val_*``, evaluated every ``config.eval_every`` epochs) plus ``num_params``.

    A net with enough parameters drives the training loss towards zero while test accuracy stays at chance:
    it memorises, because nothing in the labels can be generalised.
    """
    config = config or TrainConfig(epochs=50, batch_size=128, lr=1e-3)
    num_classes = int(max(data.y_train.max(), data.y_test.max())) + 1
    model = make_mlp(data.X_train.shape[1], list(hidden_dims), num_classes, seed=seed)
    hist = train_model(model, data, config, device=device or get_device(), progress=progress, desc="random labels")
    hist["num_params"] = count_parameters(model)
    return hist
