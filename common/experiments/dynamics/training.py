"""Shared pieces of the training-dynamics experiments: MLPs by seed, in-memory MNIST tensors, and
``train_model``, a thin wrapper over ``common.training.loop.fit`` that also keeps weight snapshots."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from common.config import MNIST_MEAN, MNIST_STD, get_device, make_generator
from common.data.torch_data import TensorBatches
from common.torch_models.mlp import MLP, MLPConfig
from common.training.loop import evaluate, fit
from common.training.optimizers import OPTIMIZERS, make_optimizer
from common.training.params import flat_params

__all__ = [
    "make_mlp",
    "mlp_param_count",
    "width_for_param_count",
    "TensorData",
    "mnist_tensors",
    "shuffle_labels",
    "TrainConfig",
    "loss_function",
    "private_global_rng",
    "train_model",
]

#: Batch size of the evaluation passes (no gradients, so larger than training batches).
EVAL_BATCH = 2048
#: Loss names of ``TrainConfig.loss``: cross-entropy for classes, squared or absolute error for regression.
LOSSES = {"ce": nn.CrossEntropyLoss, "mse": nn.MSELoss, "mae": nn.L1Loss}


def make_mlp(in_dim: int, hidden_dims, out_dim: int, activation: str = "relu", seed: int | None = None) -> MLP:
    """``MLP`` ``in_dim -> hidden_dims... -> out_dim`` with PyTorch's default initialisation drawn from a
    private generator seeded with ``seed`` (None: from the operating system): same seed, same net."""
    config = MLPConfig(in_dim, list(hidden_dims), out_dim, activation=activation, init="default")
    return MLP(config, generator=make_generator(seed))


def mlp_param_count(in_dim: int, hidden_dims, out_dim: int) -> int:
    """Parameters of ``make_mlp(in_dim, hidden_dims, out_dim)``: sum of ``d_in * d_out + d_out`` per layer."""
    dims = [in_dim] + list(hidden_dims) + [out_dim]
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def width_for_param_count(num_hidden_layers: int, target: int, in_dim: int = 1, out_dim: int = 1) -> int:
    """The width ``w`` whose MLP with ``num_hidden_layers`` hidden layers of ``w`` units has closest to ``target``
    parameters (used to compare shallow and deep nets of equal size)."""
    if num_hidden_layers < 1:
        raise ValueError(f"num_hidden_layers must be >= 1, got {num_hidden_layers}")
    if target < mlp_param_count(in_dim, [1] * num_hidden_layers, out_dim):
        raise ValueError(f"target={target} is smaller than the smallest net with {num_hidden_layers} hidden layers")
    best, w = 1, 1
    while True:
        n = mlp_param_count(in_dim, [w] * num_hidden_layers, out_dim)
        if abs(n - target) < abs(mlp_param_count(in_dim, [best] * num_hidden_layers, out_dim) - target):
            best = w
        if n > target:
            return best
        w += 1


@dataclass
class TensorData:
    """A train/test split as tensors: ``X_* (N, D)`` (or images ``(N, 1, 28, 28)``) float32, ``y_* (N,)``
    int64 (or float ``(N, 1)`` for regression)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    def __repr__(self) -> str:
        return f"TensorData(train {tuple(self.X_train.shape)}, test {tuple(self.X_test.shape)})"


def shuffle_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random permutation of the labels ``y (N,)``: same class counts, no relation to the inputs."""
    return y[torch.randperm(len(y), generator=make_generator(seed))].clone()


def mnist_tensors(
    num_train: int | None = None,
    num_test: int | None = None,
    seed: int = 0,
    random_labels: bool = False,
    dataset=None,
    images: bool = False,
) -> TensorData:
    """MNIST as standardised, flattened tensors ``(N, 784)`` (``images=True``: ``(N, 1, 28, 28)``, for a CNN);
    optional random subsets of the sizes given.

    ``random_labels=True`` replaces the training labels by a permutation of themselves (the test labels
    stay true). ``dataset``: an ``ImageData`` already loaded (default: ``common.data.images.load_mnist()``).
    """
    if dataset is None:
        from common.data.images import load_mnist

        dataset = load_mnist()
    rng = np.random.default_rng(seed)

    def subset(X, y, n, what):
        if n is None:
            return X, y
        if not 1 <= n <= len(X):
            raise ValueError(f"{what} must be between 1 and {len(X)}, got {n}")
        idx = np.sort(rng.choice(len(X), size=n, replace=False))
        return X[idx], y[idx]

    Xtr, ytr = subset(dataset.X_train, dataset.y_train, num_train, "num_train")
    Xte, yte = subset(dataset.X_test, dataset.y_test, num_test, "num_test")

    shape = (1, 28, 28) if images else (-1,)

    def to_tensor(X):
        X = torch.from_numpy(X.reshape(len(X), *shape).astype(np.float32) / 255.0)  # (N, 784) or (N, 1, 28, 28)
        return (X - MNIST_MEAN) / MNIST_STD

    y_train = torch.from_numpy(ytr.astype(np.int64))
    if random_labels:
        y_train = shuffle_labels(y_train, seed=seed + 1)
    return TensorData(to_tensor(Xtr), y_train, to_tensor(Xte), torch.from_numpy(yte.astype(np.int64)))


@dataclass
class TrainConfig:
    """How to train: optimiser (a name of ``common.training.optimizers.OPTIMIZERS``), learning rate, epochs,
    batch size, seeds and what to record."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # used by 'sgd' and 'rmsprop'
    weight_decay: float = 0.0
    loss: str = "ce"  # 'ce' (classification) | 'mse' or 'mae' (regression)
    data_seed: int = 0  # order of the mini-batches and dropout masks
    eval_every: int = 1  # epochs between test evaluations (the last epoch is always evaluated)
    snapshot_every: int = 0  # epochs between weight snapshots; 0 = none
    record_steps: bool = True  # per-step loss and gradient norm

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")


def loss_function(name: str, reduction: str = "mean") -> nn.Module:
    """``nn.CrossEntropyLoss`` for 'ce', ``nn.MSELoss`` for 'mse', ``nn.L1Loss`` (mean absolute error) for 'mae'."""
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name](reduction=reduction)


@contextmanager
def private_global_rng(seed: int, device: torch.device):
    """Run a block with torch's global generators (CPU and ``device``'s) seeded with ``seed`` and restored
    afterwards: layers that draw from them, such as dropout, become reproducible and the caller's random
    state is left as it was."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def train_model(
    model: nn.Module,
    data: TensorData,
    config: TrainConfig | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
) -> dict:
    """Train ``model`` on ``data`` with ``common.training.loop.fit``; returns its history (plain lists).

    The loop's keys (``common.training.loop``): ``epoch``, ``train_loss``/``train_acc`` per epoch,
    ``val_epoch``/``val_loss``/``val_acc`` on the test split every ``config.eval_every`` epochs, ``time``
    (seconds since the start, per epoch), and with ``record_steps`` ``step_loss`` and ``grad_norm``.
    Added here: with ``snapshot_every``, ``snapshots`` (flat parameter arrays ``(P,)``, the first at
    initialisation) and ``snapshot_epoch``; ``final``: a clean evaluation after training,
    ``{'train_loss', 'train_acc', 'test_loss', 'test_acc'}``. Accuracies are NaN for regression losses.
    Dropout masks (if the model has dropout) are drawn from the global generators seeded with
    ``config.data_seed`` inside a fork, so the caller's random state is untouched.
    """
    config = config or TrainConfig()
    device = device or get_device()
    loss_fn = loss_function(config.loss)
    opt = make_optimizer(
        model.parameters(), config.optimizer, config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    train = TensorBatches(data.X_train, data.y_train, config.batch_size, shuffle=True, seed=config.data_seed)
    test = TensorBatches(data.X_test, data.y_test, EVAL_BATCH)
    snapshots, snapshot_epochs = [], []

    def snapshot(epoch: int, _history=None) -> None:
        if config.snapshot_every and epoch % config.snapshot_every == 0:
            snapshots.append(flat_params(model).numpy())
            snapshot_epochs.append(epoch)

    snapshot(0)
    with private_global_rng(config.data_seed, torch.device(device)):  # dropout masks, if the model has dropout
        hist = fit(
            model,
            train,
            opt,
            config.epochs,
            val_loader=test,
            loss_fn=loss_fn,
            device=device,
            record_steps=config.record_steps,
            eval_every=config.eval_every,
            progress=progress,
            desc=desc,
            on_epoch_end=snapshot,
        )
    if config.snapshot_every:
        hist["snapshots"], hist["snapshot_epoch"] = snapshots, snapshot_epochs
    final_train = evaluate(model, TensorBatches(data.X_train, data.y_train, EVAL_BATCH), loss_fn, device)
    final_test = evaluate(model, test, loss_fn, device)
    hist["final"] = {
        "train_loss": final_train["loss"],
        "train_acc": final_train["acc"],
        "test_loss": final_test["loss"],
        "test_acc": final_test["acc"],
    }
    return hist
