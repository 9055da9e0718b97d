"""Parameter helpers: count them, flatten them into one vector and write such a vector back."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["count_parameters", "flat_params", "set_flat_params"]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of scalars in ``model``'s parameters (only those with ``requires_grad`` by default)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def flat_params(model: nn.Module) -> torch.Tensor:
    """All parameters of ``model`` concatenated into one detached CPU tensor ``(P,)``."""
    return torch.cat([p.detach().reshape(-1).cpu() for p in model.parameters()]).clone()


def set_flat_params(model: nn.Module, flat: torch.Tensor) -> None:
    """Copy a 1-D tensor ``(P,)`` (as from ``flat_params``) back into ``model``'s parameters, in place."""
    total = count_parameters(model, trainable_only=False)
    if flat.ndim != 1 or flat.numel() != total:
        raise ValueError(
            f"flat must be a 1-D tensor of {total} values (the model's parameter count), got shape {tuple(flat.shape)}"
        )
    offset = 0
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
