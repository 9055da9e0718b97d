"""The LinearClassifiers notebook's experiments: data as rows with a bias column, timing, cross-validation of
kNN's k, the learning-rate/regularisation grid search of a linear classifier, and weights as class templates."""

from __future__ import annotations

import itertools
import time

import numpy as np
from sklearn.model_selection import KFold
from tqdm.auto import tqdm

from common.classifiers.k_nearest_neighbor import KNearestNeighbor

__all__ = ["as_rows", "time_function", "cross_validate_k", "grid_search", "class_templates"]


def as_rows(X, bias: bool = False) -> np.ndarray:
    """Images ``(N, C, H, W)`` flattened row-major to ``(N, C*H*W)``; with ``bias`` a column of ones is
    appended, ``(N, C*H*W + 1)``, so that the last row of a weight matrix acts as the bias (the bias trick)."""
    X = np.asarray(X)
    rows = X.reshape(len(X), -1)  # (N, D)
    if bias:
        rows = np.hstack([rows, np.ones((len(X), 1), dtype=rows.dtype)])  # (N, D + 1)
    return rows


def time_function(f, *args, repeat: int = 1) -> float:
    """Best wall-clock time in seconds of ``f(*args)`` over ``repeat`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - start)
    return best


def cross_validate_k(X, y, k_choices, num_folds: int = 5, progress: bool = False) -> dict[int, np.ndarray]:
    """Accuracy of kNN for every k in ``k_choices`` on each of ``num_folds`` folds of ``(X, y)``.

    The folds are consecutive slices (no shuffling); each fold is held out once while the classifier trains
    on the others. The distances of a fold are computed once (no-loop version) and reused for every k.
    Returns ``{k: accuracies (num_folds,)}``.
    """
    X, y = np.asarray(X), np.asarray(y)
    if num_folds < 2 or num_folds > len(X):
        raise ValueError(f"num_folds must be in [2, {len(X)}] (the number of samples), got {num_folds}")
    accuracies = {k: np.zeros(num_folds) for k in k_choices}
    folds = KFold(n_splits=num_folds).split(X)
    for fold, (train_idx, val_idx) in enumerate(tqdm(folds, total=num_folds, desc="folds", disable=not progress)):
        knn = KNearestNeighbor()
        knn.train(X[train_idx], y[train_idx])
        dists = knn.compute_distances_no_loops(X[val_idx])  # (fold size, num_train - fold size)
        for k in k_choices:
            accuracies[k][fold] = np.mean(knn.predict_labels(dists, k=k) == y[val_idx])
    return accuracies


def grid_search(
    make_model,
    data: dict,
    learning_rates,
    regs,
    num_iters: int,
    batch_size: int = 200,
    progress: bool = True,
):
    """Train ``make_model()`` (a fresh ``LinearClassifier``) for every (learning rate, reg) pair of the grid.

    ``data`` holds ``X_train, y_train, X_val, y_val`` as rows. Returns ``(results, best_model, histories)``:
    ``results[(lr, reg)] = (train_accuracy, val_accuracy)`` (CS231n's layout), the model with the best
    validation accuracy, and ``histories[(lr, reg)]`` the minibatch losses of each run.
    """
    results, histories, best_model, best_val = {}, {}, None, -1.0
    grid = list(itertools.product(learning_rates, regs))
    for lr, reg in tqdm(grid, desc="lr x reg", disable=not progress):
        model = make_model()
        histories[(lr, reg)] = model.train(
            data["X_train"], data["y_train"], learning_rate=lr, reg=reg, num_iters=num_iters, batch_size=batch_size
        )
        train_acc = float(np.mean(model.predict(data["X_train"]) == data["y_train"]))
        val_acc = float(np.mean(model.predict(data["X_val"]) == data["y_val"]))
        results[(lr, reg)] = (train_acc, val_acc)
        if val_acc > best_val:
            best_model, best_val = model, val_acc
    return results, best_model, histories


def class_templates(W, image_shape) -> np.ndarray:
    """The columns of a linear classifier's ``W (D [+1], C)`` as images ``(C, H, W, channels)`` in [0, 1].

    ``image_shape`` is ``(channels, H, W)``, the layout the rows were flattened from; a bias row (when W has
    one more row than the image has pixels) is dropped. Each template is rescaled to [0, 1] on its own.
    """
    W = np.asarray(W, dtype=np.float64)
    num_pixels = int(np.prod(image_shape))
    if W.ndim != 2 or W.shape[0] not in (num_pixels, num_pixels + 1):
        raise ValueError(f"W must have {num_pixels} (+1 bias) rows for images {tuple(image_shape)}, got {W.shape}")
    templates = W[:num_pixels].T.reshape(W.shape[1], *image_shape).transpose(0, 2, 3, 1)  # (C, H, W, channels)
    low = templates.min(axis=(1, 2, 3), keepdims=True)
    high = templates.max(axis=(1, 2, 3), keepdims=True)
    return (templates - low) / np.maximum(high - low, 1e-12)
