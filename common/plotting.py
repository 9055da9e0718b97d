"""Plotting helpers: image grids and training curves. They take data and an optional ``ax``; no ``plt.show()``."""

from __future__ import annotations

from math import ceil, sqrt

import numpy as np


def _to_hwc(images: np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` or ``(N, H, W, C)`` or ``(N, H, W)`` -> ``(N, H, W, C)``."""
    images = np.asarray(images)
    if images.ndim == 3:
        return images[..., None]
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), (N, H, W, C) or (N, H, W), got {images.shape}")
    if images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        return images.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    return images


def visualize_grid(Xs: np.ndarray, ubound: float = 255.0, padding: int = 1) -> np.ndarray:
    """Tile images into one grid image, each rescaled independently to ``[0, ubound]``.

    ``Xs``: ``(N, H, W, C)`` (CS231n's layout) or ``(N, C, H, W)``. Returns ``(G, G, C)`` with
    ``G = ceil(sqrt(N)) * (H + padding) - padding``; useful to look at first-layer filters.
    """
    Xs = _to_hwc(Xs).astype(np.float64)
    N, H, W, C = Xs.shape
    grid_size = int(ceil(sqrt(N)))
    grid = np.zeros((grid_size * (H + padding) - padding, grid_size * (W + padding) - padding, C))
    for i in range(N):
        r, c = divmod(i, grid_size)
        img = Xs[i]
        low, high = img.min(), img.max()
        scaled = ubound * (img - low) / (high - low) if high > low else np.zeros_like(img)
        grid[r * (H + padding) : r * (H + padding) + H, c * (W + padding) : c * (W + padding) + W] = scaled
    return grid


def image_grid(images: np.ndarray, ncols: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tile images (sharing one value range, e.g. [0, 1]) into ``(rows*(H+p)-p, ncols*(W+p)-p, C)``.

    Unlike ``visualize_grid`` the pixel values are kept as they are, so images stay comparable.
    """
    images = _to_hwc(images)
    N, H, W, C = images.shape
    ncols = ncols or int(ceil(sqrt(N)))
    nrows = int(ceil(N / ncols))
    grid = np.full(
        (nrows * (H + padding) - padding, ncols * (W + padding) - padding, C),
        pad_value,
        dtype=np.result_type(images.dtype, np.float32),
    )
    for i in range(N):
        r, c = divmod(i, ncols)
        grid[r * (H + padding) : r * (H + padding) + H, c * (W + padding) : c * (W + padding) + W] = images[i]
    return grid


def show_image_grid(
    images: np.ndarray,
    ax=None,
    ncols: int | None = None,
    title: str | None = None,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
):
    """Draw ``image_grid(images)`` on ``ax`` (a new figure when None); grey images use ``cmap='gray'``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    grid = image_grid(images, ncols=ncols, pad_value=np.max(images) if vmax is None else vmax)
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap=cmap or "gray", vmin=vmin, vmax=vmax)
    else:
        if np.issubdtype(grid.dtype, np.floating) and grid.max() > 1.0:
            grid = grid / 255.0
        ax.imshow(np.clip(grid, 0, 1) if np.issubdtype(grid.dtype, np.floating) else grid)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return ax


def plot_history(
    history: dict,
    keys=("train_loss", "val_loss"),
    ax=None,
    xlabel: str = "epoch",
    title: str | None = None,
    logy: bool = False,
):
    """Plot the lists ``history[k]`` for ``k`` in ``keys`` against their index on ``ax``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for key in keys:
        values = history.get(key) or []
        if len(values):
            ax.plot(np.arange(1, len(values) + 1), values, label=key)
    ax.set_xlabel(xlabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_class_balance(y: np.ndarray, class_names: list[str], ax=None, title: str | None = None):
    """Bar chart of how many samples each class has."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    counts = np.bincount(np.asarray(y), minlength=len(class_names))
    ax.bar(np.arange(len(class_names)), counts, color="tab:blue")
    ax.set_xticks(np.arange(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_ylabel("samples")
    if title:
        ax.set_title(title)
    return ax


def show_class_examples(
    X: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    per_class: int = 8,
    ax=None,
    rng: np.random.Generator | None = None,
    title: str | None = None,
):
    """A grid with one row per class and ``per_class`` random examples in it (raw pixels, uint8 or [0, 1])."""
    import matplotlib.pyplot as plt

    rng = rng if rng is not None else np.random.default_rng(0)
    rows = []
    for c in range(len(class_names)):
        idx = np.flatnonzero(y == c)
        if len(idx) == 0:
            raise ValueError(f"class {c} ({class_names[c]!r}) has no examples in y")
        rows.append(X[rng.choice(idx, size=per_class, replace=len(idx) < per_class)])
    images = np.concatenate(rows)
    if ax is None:
        _, ax = plt.subplots(figsize=(per_class * 0.8, len(class_names) * 0.8))
    show_image_grid(images, ax=ax, ncols=per_class, vmin=0, vmax=255 if images.dtype == np.uint8 else 1)
    H = _to_hwc(images).shape[1]
    ax.set_yticks([(H + 2) * i + H / 2 for i in range(len(class_names))], class_names)
    ax.axis("on")
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    return ax
