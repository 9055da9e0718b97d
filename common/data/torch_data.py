"""PyTorch adapters for the NumPy datasets: a ``Dataset`` over arrays, a seeded ``DataLoader``, and
``TensorBatches``, the course's one mini-batch iterator over in-memory tensors."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from common.config import make_generator

__all__ = ["ArrayDataset", "make_loader", "TensorBatches"]


class ArrayDataset(Dataset):
    """A torch ``Dataset`` over in-memory arrays ``X (N, ...)`` and optional labels ``y (N,)``.

    Arrays are converted to tensors once (float32 for floating or uint8 images scaled to [0, 1] when
    ``scale_uint8``; int64 labels). ``transform`` is applied to each ``x`` tensor on access.
    """

    def __init__(self, X, y=None, transform: Callable | None = None, scale_uint8: bool = True):
        X = np.asarray(X)
        if y is not None and len(y) != len(X):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
        if X.dtype == np.uint8 and scale_uint8:
            self.X = torch.from_numpy(X.astype(np.float32) / 255.0)
        else:
            self.X = torch.as_tensor(X, dtype=torch.float32)
        self.y = None if y is None else torch.as_tensor(np.asarray(y), dtype=torch.long)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, idx):
        x = self.X[idx]
        if self.transform is not None:
            x = self.transform(x)
        return x if self.y is None else (x, self.y[idx])


def make_loader(
    X,
    y=None,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int | None = None,
    transform: Callable | None = None,
    **kwargs,
) -> DataLoader:
    """A ``DataLoader`` over arrays; shuffling draws from its own generator seeded with ``seed``
    (``None``: a fresh seed from the operating system; global random state is never used)."""
    generator = make_generator(seed) if shuffle else None
    return DataLoader(
        ArrayDataset(X, y, transform), batch_size=batch_size, shuffle=shuffle, generator=generator, **kwargs
    )


class TensorBatches:
    """Mini-batches ``(x, y)`` straight from in-memory tensors, far faster than a ``DataLoader``.

    ``X (N, ...)`` float tensor (already normalised), ``y (N,)`` class labels (int64) or regression
    targets (float, any trailing shape). With ``shuffle`` each pass draws a new permutation from the
    iterator's own generator seeded with ``seed`` (``None``: a fresh seed from the operating system), so
    epochs differ but a run is reproducible. ``transform(x_batch, generator)`` (e.g. ``Augment``) is applied
    per batch; ``memory_format=torch.channels_last`` returns batches in that layout; ``drop_last`` skips a
    last incomplete batch. ``len()`` is the number of batches per pass.
    """

    def __init__(
        self,
        X,
        y,
        batch_size: int = 128,
        shuffle: bool = False,
        seed: int | None = 0,
        transform: Callable | None = None,
        drop_last: bool = False,
        memory_format: torch.memory_format | None = None,
    ):
        X, y = torch.as_tensor(X), torch.as_tensor(y)
        if len(X) != len(y):
            raise ValueError(f"X has {len(X)} samples but y has {len(y)}")
        if len(X) == 0:
            raise ValueError("X is empty: there is nothing to iterate over")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not X.is_floating_point():
            raise ValueError(
                f"X must be a float tensor (normalise uint8 images first with "
                f"common.data.augment.normalize), got {X.dtype}"
            )
        self.X = X
        self.y = y if y.is_floating_point() else y.long()
        self.batch_size, self.shuffle, self.drop_last = int(batch_size), shuffle, drop_last
        self.transform, self.memory_format = transform, memory_format
        self.generator = make_generator(seed)

    def __len__(self) -> int:
        N = len(self.X)
        return N // self.batch_size if self.drop_last else -(-N // self.batch_size)

    def __iter__(self):
        N = len(self.X)
        order = torch.randperm(N, generator=self.generator) if self.shuffle else None
        for k in range(len(self)):
            if order is None:
                sl = slice(k * self.batch_size, (k + 1) * self.batch_size)
                x, y = self.X[sl], self.y[sl]
            else:
                idx = order[k * self.batch_size : (k + 1) * self.batch_size]
                x, y = self.X[idx], self.y[idx]  # copies
            if self.transform is not None:
                x = self.transform(x, self.generator)
            if self.memory_format is not None:
                x = x.contiguous(memory_format=self.memory_format)
            yield x, y
