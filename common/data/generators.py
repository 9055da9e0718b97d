"""Small generated 2-D datasets (moons, circles, blobs, Gaussian clouds), each reproducible from a seed."""

from __future__ import annotations

import numpy as np
from sklearn import datasets as skdatasets


def make_moons(n_samples: int = 1000, noise: float = 0.1, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: ``X (N, 2)`` float64, ``y (N,)`` int64 in {0, 1}."""
    X, y = skdatasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return X, y.astype(np.int64)


def make_circles(
    n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A small circle inside a large one: ``X (N, 2)``, ``y (N,)`` in {0, 1}."""
    X, y = skdatasets.make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    return X, y.astype(np.int64)


def make_blobs(
    n_samples: int = 1000, centers: int = 3, cluster_std: float = 1.0, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Isotropic Gaussian blobs, one per class: ``X (N, 2)``, ``y (N,)`` in {0, ..., centers-1}."""
    X, y = skdatasets.make_blobs(
        n_samples=n_samples, centers=centers, cluster_std=cluster_std, n_features=2, random_state=seed
    )
    return X, y.astype(np.int64)


def make_gaussian_clouds(
    n_per_class: int = 100,
    mean_pos=(2.0, 2.0),
    mean_neg=(-2.0, -2.0),
    std: float = 1.0,
    labels=(1, -1),
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian point clouds in 2-D (the perceptron's data), shuffled.

    ``n_per_class`` points around ``mean_pos`` get ``labels[0]``, as many around ``mean_neg`` get
    ``labels[1]``; both clouds have standard deviation ``std`` in each direction. Moving the means
    together or raising ``std`` makes the clouds overlap. Returns ``X (2n, 2)`` float64, ``y (2n,)`` int64.
    """
    if n_per_class <= 0:
        raise ValueError(f"n_per_class must be positive, got {n_per_class}")
    if std < 0:
        raise ValueError(f"std must be non-negative, got {std}")
    rng = np.random.default_rng(seed)
    pos = rng.normal(mean_pos, std, size=(n_per_class, 2))
    neg = rng.normal(mean_neg, std, size=(n_per_class, 2))
    X = np.concatenate([pos, neg])
    y = np.concatenate([np.full(n_per_class, labels[0]), np.full(n_per_class, labels[1])]).astype(np.int64)
    order = rng.permutation(len(X))
    return X[order], y[order]
