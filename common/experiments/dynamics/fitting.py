"""Fitting a 1-D function with shallow and deep nets of equal parameter count."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from common.config import get_device
from common.experiments.dynamics.training import TensorData, TrainConfig, make_mlp, train_model, width_for_param_count
from common.training.loop import predict
from common.training.params import count_parameters

__all__ = ["damped_sine", "function_data", "add_outliers", "equal_size_architectures", "fit_function", "compare_depths"]


def damped_sine(x: np.ndarray) -> np.ndarray:
    """``sin(5 pi x) / (5 pi x)`` (1 at ``x = 0``), i.e. ``np.sinc(5 x)``."""
    return np.sinc(5.0 * np.asarray(x, dtype=np.float64))


def function_data(
    fn: Callable[[np.ndarray], np.ndarray] = damped_sine,
    num_train: int = 256,
    num_test: int = 1000,
    x_range=(-1.0, 1.0),
    noise: float = 0.0,
    seed: int = 0,
) -> TensorData:
    """Regression data ``y = fn(x) (+ noise)``: train ``x`` uniform in ``x_range``, test ``x`` an even grid.

    Returns ``TensorData`` with ``X_* (N, 1)`` and ``y_* (N, 1)`` float32 (the test targets are noiseless).
    """
    if num_train < 1 or num_test < 2:
        raise ValueError(f"num_train must be >= 1 and num_test >= 2, got {num_train}, {num_test}")
    lo, hi = x_range
    if not lo < hi:
        raise ValueError(f"x_range must be (low, high) with low < high, got {x_range}")
    rng = np.random.default_rng(seed)
    x_train = np.sort(rng.uniform(lo, hi, size=num_train))
    y_train = fn(x_train) + noise * rng.standard_normal(num_train)
    x_test = np.linspace(lo, hi, num_test)

    def col(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float32).reshape(-1, 1))  # (N, 1)

    return TensorData(col(x_train), col(y_train), col(x_test), col(fn(x_test)))


def add_outliers(
    data: TensorData, num_outliers: int, magnitude: float = 2.0, seed: int = 0
) -> tuple[TensorData, np.ndarray]:
    """A copy of regression ``data`` in which ``num_outliers`` training targets, chosen at random, are moved up
    by ``magnitude`` (gross errors, all on one side, as from a faulty sensor); the test targets stay clean.

    Returns ``(data, idx)`` with ``idx`` the indices of the outliers in ``data.X_train``.
    """
    N = len(data.y_train)
    if not 0 <= num_outliers <= N:
        raise ValueError(f"num_outliers must be between 0 and {N} (the training set size), got {num_outliers}")
    idx = np.sort(np.random.default_rng(seed).choice(N, size=num_outliers, replace=False))
    y_train = data.y_train.clone()
    y_train[torch.from_numpy(idx)] += magnitude
    return TensorData(data.X_train, y_train, data.X_test, data.y_test), idx


def equal_size_architectures(
    target_params: int, depths=(1, 2, 4), in_dim: int = 1, out_dim: int = 1
) -> dict[str, list[int]]:
    """Hidden-layer sizes with ``len(depths)`` different depths and about ``target_params`` parameters each.

    Returns ``{'1 x 200': [200], '2 x 23': [23, 23], ...}``.
    """
    archs = {}
    for depth in depths:
        w = width_for_param_count(depth, target_params, in_dim, out_dim)
        archs[f"{depth} x {w}"] = [w] * depth
    return archs


def fit_function(
    hidden_dims,
    data: TensorData,
    config: TrainConfig | None = None,
    activation: str = "relu",
    seed: int = 0,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Train one MLP ``1 -> hidden_dims -> 1`` on ``data`` with a regression loss (``config.loss``: 'mse' or
    'mae'; default config: full-batch Adam on the MSE); returns the ``train_model`` history plus
    ``num_params``, ``hidden_dims``, ``prediction`` (the net on ``data.X_test``, a NumPy ``(N_test,)``) and
    ``model`` (the trained net, on ``device``). ``hidden_dims`` empty: a straight line ``a x + b``."""
    config = config or TrainConfig(epochs=2000, batch_size=len(data.X_train), lr=3e-3, loss="mse", eval_every=50)
    if config.loss not in ("mse", "mae"):
        raise ValueError(f"fit_function needs a regression loss, config.loss='mse' or 'mae', got {config.loss!r}")
    device = device or get_device()
    model = make_mlp(data.X_train.shape[1], hidden_dims, data.y_train.shape[1], activation, seed=seed)
    hist = train_model(model, data, config, device=device, progress=progress, desc=f"{list(hidden_dims)}")
    hist["prediction"] = predict(model, data.X_test, device=device).squeeze(1).numpy()  # (N_test,)
    hist["num_params"] = count_parameters(model)
    hist["hidden_dims"] = list(hidden_dims)
    hist["model"] = model
    return hist


def compare_depths(
    architectures: dict[str, list[int]],
    data: TensorData,
    config: TrainConfig | None = None,
    activation: str = "relu",
    seeds=(0,),
    device: torch.device | None = None,
    progress: bool = True,
) -> dict[str, list[dict]]:
    """``fit_function`` for every architecture and seed: ``{name: [history per seed]}``."""
    device = device or get_device()
    results = {}
    jobs = [(name, dims, s) for name, dims in architectures.items() for s in seeds]
    for name, dims, s in tqdm(jobs, desc="architectures", disable=not progress):
        results.setdefault(name, []).append(
            fit_function(dims, data, config, activation, seed=s, device=device, progress=False)
        )
    return results
