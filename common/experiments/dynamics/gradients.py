"""Gradient norms: of the gradient a backward pass left in a model, and of the loss on a whole data set."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from common.experiments.dynamics.training import EVAL_BATCH, loss_function
from common.training.params import flat_params, set_flat_params

__all__ = ["gradient_norm", "full_gradient_norm", "snapshot_gradient_norms"]


def gradient_norm(model: nn.Module) -> float:
    """The global L2 norm of the gradient stored in ``model`` by the last backward pass,
    ``sqrt(sum over parameters p of ||p.grad||^2)``, as a Python float. Parameters without a gradient
    (``p.grad is None``, e.g. frozen ones) are skipped; 0.0 when none has one."""
    # Add up the squared entries of every parameter's .grad (skip those that are None), then take the square
    # root of the total: one number for the whole model, not one per layer.
    ### BEGIN SOLUTION
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    norm = float(torch.sqrt(sum(g.double().square().sum().cpu() for g in grads))) if grads else 0.0
    ### END SOLUTION
    return norm


def full_gradient_norm(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    batch_size: int = EVAL_BATCH,
    device: torch.device | None = None,
) -> float:
    """``gradient_norm`` of the mean loss over all of ``(X, y)`` at the model's current weights: the gradient
    full-batch descent would follow, without the sampling noise of a mini-batch.

    Computed in eval mode (no dropout) and accumulated over batches of ``batch_size``; ``device``: where to
    compute (None: the model's device). The model's ``.grad`` and train/eval mode are left as they were.
    """
    param = next(model.parameters())
    device = device or param.device
    model.to(device)
    saved = [None if p.grad is None else p.grad.clone() for p in model.parameters()]
    was_training = model.training
    model.eval()
    model.zero_grad(set_to_none=True)
    loss_fn = loss_function(loss, reduction="sum")  # summed, divided by N below: the mean over all samples
    try:
        for start in range(0, len(X), batch_size):
            xb, yb = X[start : start + batch_size].to(device), y[start : start + batch_size].to(device)
            (loss_fn(model(xb), yb) / len(X)).backward()
        return gradient_norm(model)
    finally:
        for p, g in zip(model.parameters(), saved):
            p.grad = g
        model.train(was_training)


def snapshot_gradient_norms(
    model: nn.Module,
    snapshots,
    X: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    device: torch.device | None = None,
) -> np.ndarray:
    """``full_gradient_norm`` at each weight snapshot ``(S, P)`` (as ``train_model`` keeps them), loaded into
    ``model`` in turn; returns ``(S,)``. The model's own weights are restored afterwards."""
    own = flat_params(model)
    try:
        out = []
        for w in snapshots:
            set_flat_params(model, torch.as_tensor(np.asarray(w)))
            out.append(full_gradient_norm(model, X, y, loss, device=device))
    finally:
        set_flat_params(model, own)
    return np.array(out)
