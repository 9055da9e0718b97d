"""Small MNIST CNNs: the classifier that scores generated digits (class probabilities and penultimate
features) and a CNN with dropout for the training-dynamics experiments."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.config import MNIST_MEAN, MNIST_STD

__all__ = [
    "MNISTClassifierConfig",
    "MNISTClassifier",
    "build_mnist_classifier",
    "MNISTCNNConfig",
    "MNISTCNN",
    "build_mnist_cnn",
]


def _check_widths(channels: tuple[int, int], hidden: int) -> None:
    if len(channels) != 2 or min(channels) < 1 or hidden < 1:
        raise ValueError(
            f"channels must be two positive widths and hidden positive, got channels={channels}, hidden={hidden}"
        )


def _conv_stages(c1: int, c2: int) -> nn.Sequential:
    """conv3x3 -> ReLU -> pool -> conv3x3 -> ReLU -> pool: (N, 1, 28, 28) -> (N, c2, 7, 7); the first
    convolution is ``[0]``."""
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


@dataclass
class MNISTClassifierConfig:
    """The architecture: two conv stages of ``channels`` and a feature layer of size ``hidden``."""

    channels: tuple[int, int] = (16, 32)
    hidden: int = 128  # size of the feature layer used by the Frechet distance

    def __post_init__(self):
        _check_widths(self.channels, self.hidden)


class MNISTClassifier(nn.Module):
    """conv3x3 -> ReLU -> pool -> conv3x3 -> ReLU -> pool -> FC(hidden) -> ReLU -> FC(10).

    Takes images ``(N, 1, 28, 28)`` in [0, 1] (it normalises them itself with the MNIST mean and standard
    deviation); returns logits ``(N, 10)``.
    """

    def __init__(self, config: MNISTClassifierConfig | None = None):
        super().__init__()
        self.config = config = config or MNISTClassifierConfig()
        c1, c2 = config.channels
        self.conv = _conv_stages(c1, c2)
        self.fc = nn.Sequential(nn.Linear(c2 * 7 * 7, config.hidden), nn.ReLU())
        self.out = nn.Linear(config.hidden, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate activations ``(N, hidden)``."""
        h = self.conv((x - MNIST_MEAN) / MNIST_STD)  # (N, 1, 28, 28) -> (N, c2, 7, 7)
        return self.fc(h.flatten(1))  # (N, c2*49) -> (N, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))  # (N, hidden) -> (N, 10)


def build_mnist_classifier(config: MNISTClassifierConfig | None = None, seed: int = 0) -> MNISTClassifier:
    """``MNISTClassifier(config)`` with its parameters initialised from a forked RNG seeded with ``seed``
    (the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MNISTClassifier(config)


@dataclass
class MNISTCNNConfig:
    """The training-dynamics CNN: two conv stages of ``channels``, a hidden layer of ``hidden`` units, and
    dropout with probability ``dropout`` before each fully connected layer (0: no dropout layers)."""

    channels: tuple[int, int] = (8, 16)
    hidden: int = 64
    dropout: float = 0.25

    def __post_init__(self):
        _check_widths(self.channels, self.hidden)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a probability in [0, 1), got {self.dropout}")


class MNISTCNN(nn.Module):
    """conv3x3 -> ReLU -> pool -> conv3x3 -> ReLU -> pool -> dropout -> FC(hidden) -> ReLU -> dropout -> FC(10).

    Takes standardised images ``(N, 1, 28, 28)`` (e.g. from ``mnist_tensors(..., images=True)``); returns
    logits ``(N, 10)``. ``nn.Dropout`` zeroes units only in training mode: ``model.eval()`` turns it off.
    The first convolution is ``conv[0]`` (parameters ``conv.0.weight``, ``conv.0.bias``).
    """

    def __init__(self, config: MNISTCNNConfig | None = None):
        super().__init__()
        self.config = config = config or MNISTCNNConfig()
        c1, c2 = config.channels
        self.conv = _conv_stages(c1, c2)
        drop = (lambda: nn.Dropout(config.dropout)) if config.dropout > 0 else nn.Identity
        self.head = nn.Sequential(
            nn.Flatten(), drop(), nn.Linear(c2 * 7 * 7, config.hidden), nn.ReLU(), drop(), nn.Linear(config.hidden, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != (1, 28, 28):
            raise ValueError(f"MNISTCNN takes images (N, 1, 28, 28), got shape {tuple(x.shape)}")
        h = self.conv(x)  # (N, 1, 28, 28) -> (N, c2, 7, 7)
        return self.head(h)  # (N, c2*49) -> (N, hidden) -> (N, 10)


def build_mnist_cnn(config: MNISTCNNConfig | None = None, seed: int = 0) -> MNISTCNN:
    """``MNISTCNN(config)`` with its parameters initialised from a forked RNG seeded with ``seed`` (the global
    random state is left as it was): same seed, same initial weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MNISTCNN(config)
