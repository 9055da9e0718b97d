"""Random digit palindromes (CS324 style): predict the last digit from all the digits before it."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["PalindromeDataset", "make_palindromes", "all_palindromes", "encode_digits"]

NUM_DIGITS = 10
#: Exhaustive mode refuses to enumerate more palindromes than this (10**6 = length 11 or 12).
MAX_EXHAUSTIVE = 10**6


def _check_length(seq_length) -> int:
    if not isinstance(seq_length, (int, np.integer)) or seq_length < 2:
        raise ValueError(
            f"seq_length must be an int >= 2 (the palindrome has an input and a last digit), got {seq_length!r}"
        )
    return int(seq_length)


def _mirror(left: torch.Tensor, seq_length: int) -> torch.Tensor:
    """Left halves ``(N, ceil(T/2))`` -> full palindromes ``(N, T)``; odd T shares the middle digit."""
    right = left[:, : seq_length // 2].flip(1)  # (N, floor(T/2))
    return torch.cat([left, right], dim=1)  # (N, T)


def make_palindromes(num_samples: int, seq_length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``num_samples`` random digit palindromes of total length ``seq_length``: int64 ``(N, T)``.

    The first ``ceil(T/2)`` digits are uniform in 0..9 (drawn from ``generator``); the rest mirror them,
    so ``digits[:, t] == digits[:, T - 1 - t]``.
    """
    seq_length = _check_length(seq_length)
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    left = torch.randint(0, NUM_DIGITS, (num_samples, math.ceil(seq_length / 2)), generator=generator)
    return _mirror(left, seq_length)


def all_palindromes(seq_length: int) -> torch.Tensor:
    """Every digit palindrome of length ``seq_length`` in lexicographic order: int64 ``(10**ceil(T/2), T)``."""
    seq_length = _check_length(seq_length)
    half = math.ceil(seq_length / 2)
    if NUM_DIGITS**half > MAX_EXHAUSTIVE:
        raise ValueError(
            f"exhaustive mode would enumerate 10**{half} palindromes for seq_length={seq_length}; "
            f"use seq_length <= 12 or the random mode (exhaustive=False)"
        )
    idx = torch.arange(NUM_DIGITS**half)
    powers = NUM_DIGITS ** torch.arange(half - 1, -1, -1)  # most significant digit first
    left = (idx[:, None] // powers) % NUM_DIGITS  # (N, half)
    return _mirror(left, seq_length)


def encode_digits(digits: torch.Tensor, one_hot: bool = True) -> torch.Tensor:
    """Digits ``(N, L)`` int -> float32 inputs: one-hot ``(N, L, 10)`` or the raw digit value ``(N, L, 1)``."""
    if one_hot:
        return torch.nn.functional.one_hot(digits, NUM_DIGITS).float()  # (N, L, 10)
    return digits.float().unsqueeze(-1)  # (N, L, 1)


class PalindromeDataset(Dataset):
    """Digit palindromes of total length ``seq_length``; input: the first ``T-1`` digits, target: the last.

    The target equals the first digit, so a model must carry it across ``T-2`` steps.

    Two ways to use it:

    - as a map-style ``Dataset``: ``ds[i] -> (x (T-1, D), y)``. In random mode item ``i`` depends only on
      ``(seed, i)``; ``len(ds) == num_samples``. With ``exhaustive=True`` the items are all
      ``10**ceil(T/2)`` palindromes in lexicographic order (short lengths only).
    - as a fast batch source for CPU training: ``ds.sample(N) -> (x (N, T-1, D), y (N,))`` draws fresh
      palindromes from the dataset's own ``torch.Generator`` (seeded with ``seed``), so a run is
      reproducible and never touches global random state; ``ds.all()`` returns the whole exhaustive set.

    ``D`` is 10 with ``one_hot=True`` (default) and 1 otherwise (the digit value as a float, as in CS324).
    """

    def __init__(
        self, seq_length: int, seed: int = 0, one_hot: bool = True, num_samples: int = 100_000, exhaustive: bool = False
    ):
        self.seq_length = _check_length(seq_length)
        self.seed = int(seed)
        self.one_hot = bool(one_hot)
        self.exhaustive = bool(exhaustive)
        self._all = all_palindromes(self.seq_length) if self.exhaustive else None
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = len(self._all) if self.exhaustive else int(num_samples)
        self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def input_length(self) -> int:
        """Number of input steps, ``T - 1``."""
        return self.seq_length - 1

    @property
    def input_dim(self) -> int:
        """Features per input step: 10 for one-hot, 1 for scalar inputs."""
        return NUM_DIGITS if self.one_hot else 1

    @property
    def num_classes(self) -> int:
        return NUM_DIGITS

    def split(self, digits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Palindromes ``(N, T)`` -> inputs ``(N, T-1, D)`` float32 and targets ``(N,)`` int64."""
        return encode_digits(digits[:, :-1], self.one_hot), digits[:, -1].clone()

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int):
        if not -self.num_samples <= idx < self.num_samples:
            raise IndexError(f"index {idx} out of range for {self.num_samples} samples")
        idx = idx % self.num_samples
        if self.exhaustive:
            digits = self._all[idx : idx + 1]
        else:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + idx)  # depends on (seed, idx) only
            digits = make_palindromes(1, self.seq_length, gen)
        x, y = self.split(digits)
        return x[0], y[0]

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh batch ``x (N, T-1, D)``, ``y (N,)`` from the dataset's generator (random in both modes)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if self.exhaustive:
            idx = torch.randint(0, self.num_samples, (batch_size,), generator=self.generator)
            return self.split(self._all[idx])
        return self.split(make_palindromes(batch_size, self.seq_length, self.generator))

    def all(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every palindrome of this length as ``(x, y)`` (exhaustive mode only)."""
        if not self.exhaustive:
            raise ValueError("all() needs exhaustive=True (and seq_length <= 12)")
        return self.split(self._all)

    def reset(self) -> None:
        """Restart the batch stream of ``sample`` from ``seed``."""
        self.generator.manual_seed(self.seed)

    def __repr__(self) -> str:
        mode = "exhaustive" if self.exhaustive else f"random, seed={self.seed}"
        return (
            f"PalindromeDataset(seq_length={self.seq_length}, {mode}, "
            f"{'one-hot' if self.one_hot else 'scalar'} inputs, {self.num_samples} samples)"
        )
