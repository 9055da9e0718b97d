"""PyTorch adapters for the NumPy datasets: a ``Dataset`` over arrays and a seeded ``DataLoader``."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


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


def make_loader(X, y=None, batch_size: int = 128, shuffle: bool = False, seed: int | None = None,
                transform: Callable | None = None, **kwargs) -> DataLoader:
    """A ``DataLoader`` over arrays; shuffling draws from its own generator seeded with ``seed``."""
    generator = None
    if shuffle:
        generator = torch.Generator()
        generator.manual_seed(seed if seed is not None else torch.seed())
    return DataLoader(ArrayDataset(X, y, transform), batch_size=batch_size, shuffle=shuffle,
                      generator=generator, **kwargs)
