"""Small MLPs, in-memory MNIST tensors and a training loop that records per-step loss, gradient norm and weights."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from common.train import evaluate

__all__ = ["make_mlp", "count_parameters", "width_for_param_count", "flat_params", "set_flat_params",
           "TensorBatches", "TensorData", "mnist_tensors", "shuffle_labels", "TrainConfig", "train_model"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "leaky_relu": nn.LeakyReLU}

#: MNIST pixel mean and standard deviation (of [0, 1] pixels) used to standardise inputs.
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def make_mlp(in_dim: int, hidden_dims, out_dim: int, activation: str = "relu",
             seed: int | None = None) -> nn.Sequential:
    """A fully connected net ``in_dim -> hidden_dims... -> out_dim`` (Linear, activation, ..., Linear).

    Weights and biases are drawn from PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with a
    private generator seeded by ``seed``, so the same seed gives the same net and global state is untouched.
    Input ``(N, in_dim)`` (or ``(N, C, H, W)``, flattened), output ``(N, out_dim)``.
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    hidden_dims = list(hidden_dims)
    if any(int(h) < 1 for h in hidden_dims) or in_dim < 1 or out_dim < 1:
        raise ValueError(f"all layer sizes must be >= 1, got in_dim={in_dim}, hidden_dims={hidden_dims}, "
                         f"out_dim={out_dim}")
    dims = [in_dim] + [int(h) for h in hidden_dims] + [out_dim]
    layers: list[nn.Module] = [nn.Flatten()]
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws globally; keep global state as it was
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(d_in, d_out))
            if i < len(dims) - 2:
                layers.append(_ACTIVATIONS[activation]())
    net = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(2**31, (1,))))
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.uniform_(-bound, bound, generator=g)
                m.bias.uniform_(-bound, bound, generator=g)
    return net


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` concatenated into one detached 1-D tensor ``(P,)``."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).clone()


def set_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a 1-D tensor ``(P,)`` (as from ``flat_params``) back into ``model``'s parameters, in place."""
    total = count_parameters(model)
    if flat.numel() != total:
        raise ValueError(f"flat has {flat.numel()} values but the model has {total} parameters")
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[offset: offset + p.numel()].view_as(p))
            offset += p.numel()


class TensorBatches:
    """Iterable of ``(x, y)`` mini-batches from in-memory tensors, reshuffled each pass by its own generator.

    Far faster than a ``DataLoader`` for data that fits in memory; plugs into ``common.train``.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
                 seed: int | None = None):
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.X, self.y, self.batch_size, self.shuffle = X, y, int(batch_size), shuffle
        self.generator = torch.Generator().manual_seed(seed if seed is not None else 0)

    def __len__(self) -> int:
        return math.ceil(len(self.X) / self.batch_size)

    def __iter__(self):
        N = len(self.X)
        order = torch.randperm(N, generator=self.generator) if self.shuffle else torch.arange(N)
        for start in range(0, N, self.batch_size):
            idx = order[start: start + self.batch_size]
            yield self.X[idx], self.y[idx]


@dataclass
class TensorData:
    """A train/test split as tensors: ``X_* (N, D)`` float32, ``y_* (N,)`` int64 (or float for regression)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    def __repr__(self) -> str:
        return f"TensorData(train {tuple(self.X_train.shape)}, test {tuple(self.X_test.shape)})"


def shuffle_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random permutation of the labels ``y (N,)``: same class counts, no relation to the inputs."""
    g = torch.Generator().manual_seed(seed)
    return y[torch.randperm(len(y), generator=g)].clone()


def mnist_tensors(num_train: int | None = None, num_test: int | None = None, seed: int = 0,
                  random_labels: bool = False, dataset=None) -> TensorData:
    """MNIST as standardised, flattened tensors ``(N, 784)``; optional random subsets of the sizes given.

    ``random_labels=True`` replaces the training labels by a permutation of themselves (the test labels
    stay true). ``dataset``: an ``ImageData`` already loaded (default: ``common.data.load_mnist()``).
    """
    if dataset is None:
        from common.data import load_mnist
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

    def to_tensor(X):
        X = torch.from_numpy(X.reshape(len(X), -1).astype(np.float32) / 255.0)  # (N, 784)
        return (X - MNIST_MEAN) / MNIST_STD

    y_train = torch.from_numpy(ytr.astype(np.int64))
    if random_labels:
        y_train = shuffle_labels(y_train, seed=seed + 1)
    return TensorData(to_tensor(Xtr), y_train, to_tensor(Xte), torch.from_numpy(yte.astype(np.int64)))


@dataclass
class TrainConfig:
    """How to train: optimiser ('adam' | 'sgd'), learning rate, epochs, batch size, seeds and what to record."""

    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9  # used by 'sgd'
    weight_decay: float = 0.0
    loss: str = "ce"  # 'ce' (classification) | 'mse' (regression)
    data_seed: int = 0  # order of the mini-batches
    eval_every: int = 1  # epochs between test evaluations (the last epoch is always evaluated)
    snapshot_every: int = 0  # epochs between weight snapshots; 0 = none
    record_steps: bool = True  # per-step loss and gradient norm

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse', got {self.loss!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")


def loss_function(name: str):
    """``nn.CrossEntropyLoss()`` for 'ce', ``nn.MSELoss()`` for 'mse'."""
    return nn.CrossEntropyLoss() if name == "ce" else nn.MSELoss()


def _grad_norm(model: nn.Module) -> torch.Tensor:
    """Global L2 norm of all parameter gradients, as a 0-d tensor (no sync with Python)."""
    return nn.utils.get_total_norm([p.grad.detach() for p in model.parameters() if p.grad is not None])


def train_model(model: nn.Module, data: TensorData, config: TrainConfig | None = None,
                progress: bool = True, desc: str = "train") -> dict:
    """Train ``model`` on ``data`` and return a history dict of plain lists.

    Keys: ``epoch`` (1-based epochs at which test stats were taken), ``train_loss``/``train_acc`` (running
    mean over that epoch's batches), ``test_loss``/``test_acc``; with ``record_steps``: ``step_loss`` and
    ``grad_norm`` (global L2 norm of the mini-batch gradient, before each step); with ``snapshot_every``:
    ``snapshots`` (list of flat parameter arrays ``(P,)``, the first at initialisation) and ``snapshot_epoch``;
    ``final``: clean evaluation of train and test after training; ``time`` in seconds.
    For ``loss='mse'`` the accuracies are NaN.
    """
    config = config or TrainConfig()
    loss_fn = loss_function(config.loss)
    if config.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                              weight_decay=config.weight_decay)
    batches = TensorBatches(data.X_train, data.y_train, config.batch_size, shuffle=True, seed=config.data_seed)
    classify = config.loss == "ce"
    hist = {k: [] for k in ("epoch", "train_loss", "train_acc", "test_loss", "test_acc",
                            "step_loss", "grad_norm", "snapshots", "snapshot_epoch")}
    if config.snapshot_every:
        hist["snapshots"].append(flat_params(model).numpy())
        hist["snapshot_epoch"].append(0)
    start = time.perf_counter()
    bar = tqdm(range(1, config.epochs + 1), desc=desc, disable=not progress, leave=False)
    for epoch in bar:
        model.train()
        losses, norms, correct, seen = [], [], 0, 0
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            if config.record_steps:
                norms.append(_grad_norm(model))
            opt.step()
            losses.append(loss.detach() * len(y))
            if classify:
                correct += int((out.argmax(1) == y).sum())
            seen += len(y)
        sizes = [min(config.batch_size, seen - i * config.batch_size) for i in range(len(losses))]
        losses = torch.stack(losses)
        total_loss = float(losses.sum())
        if config.record_steps:
            hist["step_loss"].extend((losses / torch.tensor(sizes)).tolist())
            hist["grad_norm"].extend(torch.stack(norms).tolist())
        if epoch % config.eval_every == 0 or epoch == config.epochs:
            test = evaluate(model, TensorBatches(data.X_test, data.y_test, 2048), loss_fn)
            hist["epoch"].append(epoch)
            hist["train_loss"].append(total_loss / seen)
            hist["train_acc"].append(correct / seen if classify else float("nan"))
            hist["test_loss"].append(test["loss"])
            hist["test_acc"].append(test["acc"] if classify else float("nan"))
            bar.set_postfix(loss=f"{total_loss / seen:.3g}", test_loss=f"{test['loss']:.3g}")
        if config.snapshot_every and epoch % config.snapshot_every == 0:
            hist["snapshots"].append(flat_params(model).numpy())
            hist["snapshot_epoch"].append(epoch)
    hist["time"] = time.perf_counter() - start
    train = evaluate(model, TensorBatches(data.X_train, data.y_train, 2048), loss_fn)
    test = evaluate(model, TensorBatches(data.X_test, data.y_test, 2048), loss_fn)
    nan = float("nan")
    hist["final"] = {"train_loss": train["loss"], "train_acc": train["acc"] if classify else nan,
                     "test_loss": test["loss"], "test_acc": test["acc"] if classify else nan}
    return hist
