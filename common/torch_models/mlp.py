"""The course's one PyTorch MLP: ``MLPConfig`` (a dataclass), ``MLP`` (an ``nn.Module`` returning logits or
regression outputs) and ``ACTIVATIONS``, the one table of torch activation modules."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

import torch
from torch import nn

from common.config import make_generator

__all__ = ["ACTIVATIONS", "INITS", "MLPConfig", "MLP"]

#: Activation name -> a callable that builds the ``nn.Module`` (leaky ReLU with slope 0.01, as in NumPy).
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": partial(nn.LeakyReLU, 0.01), "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
#: Initialisation schemes ``MLPConfig.init`` accepts.
INITS = ("naive", "xavier", "he", "default")


@dataclass
class MLPConfig:
    """Architecture of the MLP.

    ``n_inputs`` D, ``n_hidden`` the hidden widths (an int for one layer; empty for a linear model),
    ``n_classes`` the number of outputs C (1 for a scalar regression).
    ``activation``: a key of ``ACTIVATIONS``. ``init``: 'naive' (N(0, naive_scale^2)), 'xavier'
    (std sqrt(2 / (fan_in + fan_out))), 'he' (std sqrt(2 / fan_in)) -- the same Gaussian schemes as
    ``common.classifiers.mlp``, biases zero -- or 'default' (PyTorch's ``nn.Linear`` scheme: weights and
    biases uniform in +-1/sqrt(fan_in)).
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
        self.n_hidden = [int(h) for h in self.n_hidden]
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {self.init!r}")
        if self.n_inputs < 1 or self.n_classes < 1 or any(h < 1 for h in self.n_hidden):
            raise ValueError(f"need n_inputs >= 1, n_classes >= 1 and positive hidden widths, got {self}")


class MLP(nn.Module):
    """``Linear -> act -> ... -> Linear`` in ``self.net``; ``forward(x (N, D) or (N, ...)) -> (N, C)``.

    The softmax is left to the loss (``nn.CrossEntropyLoss`` takes logits), which is both cheaper and
    numerically safer than the NumPy version's separate SoftMax + CrossEntropy modules.
    All weights are drawn from ``generator`` (a ``torch.Generator``; None: one seeded from the operating
    system), layer by layer, weight before bias, so one seed gives one net; global random state is untouched.
    Parameters are ordered ``net.0.weight, net.0.bias, net.2.weight, ...`` (input to output).
    """

    def __init__(self, config: MLPConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        generator = generator if generator is not None else make_generator(None)
        sizes = [config.n_inputs] + config.n_hidden + [config.n_classes]  # D, hidden widths..., C
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws globally; _init_linear redraws below
            # self.net: an nn.Sequential of one nn.Linear per pair of consecutive sizes, with a fresh activation
            # module from ACTIVATIONS after every Linear except the last (the net returns logits).
            ### BEGIN SOLUTION
            layers: list[nn.Module] = []
            for fan_in, fan_out in zip(sizes, sizes[1:]):
                layers += [nn.Linear(fan_in, fan_out), ACTIVATIONS[config.activation]()]
            self.net = nn.Sequential(*layers[:-1])  # no activation after the output layer: logits
            ### END SOLUTION
        for linear in self.linear_layers:
            self._init_linear(linear, generator)

    @torch.no_grad()
    def _init_linear(self, linear: nn.Linear, generator: torch.Generator) -> None:
        fan_out, fan_in = linear.weight.shape  # nn.Linear stores W as (out, in)
        if self.config.init == "default":
            bound = 1.0 / math.sqrt(fan_in)
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
            return
        std = {
            "naive": self.config.naive_scale,
            "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
            "he": math.sqrt(2.0 / fan_in),
        }[self.config.init]
        linear.weight.normal_(0.0, std, generator=generator)
        linear.bias.zero_()

    @property
    def linear_layers(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, C)`` of ``x (N, D)`` (or ``(N, ...)``, e.g. images, flattened to ``D`` features per sample)."""
        # One row of D features per sample, through the layer stack.
        ### BEGIN SOLUTION
        scores = self.net(x.flatten(1))  # (N, D) -> (N, C)
        ### END SOLUTION
        return scores

    @torch.no_grad()
    def load_numpy(self, np_model) -> MLP:
        """Copy the weights of a ``common.classifiers.mlp.MLP`` of the same shape (its ``W`` is ``(in, out)``)."""
        ours, theirs = self.linear_layers, np_model.linear_layers
        if len(ours) != len(theirs):
            raise ValueError(f"layer count differs: {len(ours)} torch Linear vs {len(theirs)} NumPy Linear")
        for lin, np_lin in zip(ours, theirs):
            W, b = np_lin.params["weight"], np_lin.params["bias"]
            if tuple(lin.weight.shape) != W.T.shape:
                raise ValueError(
                    f"shape mismatch: torch weight {tuple(lin.weight.shape)} vs NumPy {W.shape} transposed"
                )
            lin.weight.copy_(torch.as_tensor(W.T))
            lin.bias.copy_(torch.as_tensor(b))
        return self
