"""The one optimiser factory of the course: ``make_optimizer(params, name, lr, ...)``."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["OPTIMIZERS", "make_optimizer"]

#: Names ``make_optimizer`` accepts.
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


def make_optimizer(
    params: Iterable,
    name: str = "adam",
    lr: float = 1e-3,
    momentum: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool = False,
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimiser over ``params`` (e.g. ``model.parameters()``).

    ``name``: 'sgd' (with ``momentum`` and ``nesterov``), 'adam' / 'adamw' (with ``betas``) or 'rmsprop'
    (with ``momentum``). ``weight_decay`` is L2 for sgd, adam and rmsprop, decoupled for adamw. ``fused``
    (adam / adamw): update all parameters in one fused kernel per step instead of a few vectorised ops per
    tensor; the same update up to rounding, and cheaper when each step is short (many small tensors, a CPU).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if fused and name not in ("adam", "adamw"):
        raise ValueError(f"fused applies to 'adam' and 'adamw' only, got optimizer {name!r}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused or None)
    return torch.optim.RMSprop(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
