"""The assignment-1 MLP rebuilt in PyTorch: ``MLPConfig`` (a dataclass) and ``MLP`` (an ``nn.Module`` returning logits)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["MLPConfig", "MLP"]

_ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
_INITS = ("naive", "xavier", "he", "default")


@dataclass
class MLPConfig:
    """Architecture of the MLP.

    ``activation``: 'relu' | 'leaky_relu' | 'sigmoid' | 'tanh'. ``init``: 'naive' (N(0, naive_scale^2)),
    'xavier' (std sqrt(2 / (fan_in + fan_out))), 'he' (std sqrt(2 / fan_in)) -- the same Gaussian schemes
    as ``common.classifiers.mlp`` -- or 'default' (PyTorch's own ``nn.Linear`` init). Biases start at zero
    except with 'default'.
    """

    n_inputs: int = 2
    n_hidden: list[int] = field(default_factory=lambda: [20])
    n_classes: int = 2
    activation: str = "relu"
    init: str = "he"
    naive_scale: float = 1e-2

    def __post_init__(self):
        if isinstance(self.n_hidden, int):
            self.n_hidden = [self.n_hidden]
        self.n_hidden = list(self.n_hidden)
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in _INITS:
            raise ValueError(f"init must be one of {_INITS}, got {self.init!r}")
        if self.n_inputs < 1 or self.n_classes < 2 or any(h < 1 for h in self.n_hidden):
            raise ValueError(f"need n_inputs >= 1, n_classes >= 2 and positive hidden widths, got {self}")


class MLP(nn.Module):
    """``Linear -> act -> ... -> Linear``; ``forward(x (N, D)) -> logits (N, C)``.

    The softmax is left to the loss (``nn.CrossEntropyLoss`` takes logits), which is both cheaper and
    numerically safer than the NumPy version's separate SoftMax + CrossEntropy modules.
    ``generator`` (a ``torch.Generator``) makes the initialisation reproducible without global seeding.
    """

    def __init__(self, config: MLPConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        sizes = [config.n_inputs] + config.n_hidden + [config.n_classes]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            linear = nn.Linear(fan_in, fan_out)
            self._init_linear(linear, generator)
            layers.append(linear)
            if i < len(sizes) - 2:
                layers.append(_ACTIVATIONS[config.activation]())
        self.net = nn.Sequential(*layers)

    def _init_linear(self, linear: nn.Linear, generator: torch.Generator | None) -> None:
        init = self.config.init
        if init == "default":
            return
        fan_out, fan_in = linear.weight.shape  # nn.Linear stores W as (out, in)
        std = {"naive": self.config.naive_scale, "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
               "he": math.sqrt(2.0 / fan_in)}[init]
        with torch.no_grad():
            linear.weight.normal_(0.0, std, generator=generator)
            linear.bias.zero_()

    @property
    def linear_layers(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))  # (N, D) -> (N, C)

    @torch.no_grad()
    def load_numpy(self, np_model) -> "MLP":
        """Copy the weights of a ``common.classifiers.mlp.MLP`` of the same shape (its ``W`` is ``(in, out)``)."""
        ours, theirs = self.linear_layers, np_model.linear_layers
        if len(ours) != len(theirs):
            raise ValueError(f"layer count differs: {len(ours)} torch Linear vs {len(theirs)} NumPy Linear")
        for lin, np_lin in zip(ours, theirs):
            W, b = np_lin.params["weight"], np_lin.params["bias"]
            if tuple(lin.weight.shape) != W.T.shape:
                raise ValueError(f"shape mismatch: torch weight {tuple(lin.weight.shape)} vs NumPy {W.shape} transposed")
            lin.weight.copy_(torch.as_tensor(W.T))
            lin.bias.copy_(torch.as_tensor(b))
        return self
