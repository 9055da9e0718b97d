"""PyTorch training as plain functions: ``train_epoch``, ``evaluate`` and ``fit`` with a history dict."""
from __future__ import annotations

import time
from typing import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from common.config import get_device

__all__ = ["get_device", "train_epoch", "evaluate", "fit", "accuracy"]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``logits (N, C)`` whose arg-max equals ``y (N,)``."""
    return (logits.argmax(dim=1) == y).float().mean().item()


def _batches(loader: Iterable, desc: str, progress: bool):
    return tqdm(loader, desc=desc, leave=False, disable=not progress)


def train_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer,
                loss_fn: Callable | None = None, device: torch.device | None = None,
                scheduler=None, clip_grad_norm: float | None = None, progress: bool = True,
                desc: str = "train") -> dict:
    """One pass over ``loader`` of ``(x, y)`` batches; returns ``{'loss', 'acc'}`` averaged over samples.

    ``scheduler`` (if given) is stepped after every batch, as one-cycle schedules expect;
    ``clip_grad_norm`` clips the global gradient norm before each step.
    """
    device = device or next(model.parameters()).device
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
    total_loss, total_correct, total = 0.0, 0, 0
    bar = _batches(loader, desc, progress)
    for x, y in bar:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, y)
        loss.backward()
        if clip_grad_norm is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = y.shape[0]
        total_loss += loss.item() * n
        if out.ndim == 2 and y.ndim == 1:
            total_correct += (out.argmax(dim=1) == y).sum().item()
        total += n
        bar.set_postfix(loss=f"{total_loss / total:.4f}")
    return {"loss": total_loss / max(total, 1), "acc": total_correct / max(total, 1)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: Callable | None = None,
             device: torch.device | None = None, progress: bool = False) -> dict:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode: ``{'loss', 'acc'}``."""
    device = device or next(model.parameters()).device
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.eval()
    total_loss, total_correct, total = 0.0, 0, 0
    for x, y in _batches(loader, "eval", progress):
        x, y = x.to(device), y.to(device)
        out = model(x)
        n = y.shape[0]
        total_loss += loss_fn(out, y).item() * n
        if out.ndim == 2 and y.ndim == 1:
            total_correct += (out.argmax(dim=1) == y).sum().item()
        total += n
    return {"loss": total_loss / max(total, 1), "acc": total_correct / max(total, 1)}


def fit(model: nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer, epochs: int,
        val_loader: Iterable | None = None, loss_fn: Callable | None = None,
        device: torch.device | None = None, scheduler=None, epoch_scheduler=None,
        clip_grad_norm: float | None = None, progress: bool = True,
        on_epoch_end: Callable[[int, dict], None] | None = None) -> dict:
    """Train for ``epochs`` epochs; returns the history dict.

    History keys: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (when ``val_loader``),
    ``epoch_time`` (seconds of training per epoch). ``scheduler`` steps per batch, ``epoch_scheduler``
    per epoch. ``on_epoch_end(epoch, history)`` runs after each epoch (e.g. to checkpoint).
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    device = device or get_device()
    model.to(device)
    history = {"train_loss": [], "train_acc": [], "val_loss": [], "val_acc": [], "epoch_time": []}
    epoch_bar = tqdm(range(epochs), desc="epochs", disable=not progress)
    for epoch in epoch_bar:
        start = time.perf_counter()
        stats = train_epoch(model, train_loader, optimizer, loss_fn, device, scheduler, clip_grad_norm,
                            progress=progress, desc=f"epoch {epoch + 1}")
        history["epoch_time"].append(time.perf_counter() - start)
        history["train_loss"].append(stats["loss"])
        history["train_acc"].append(stats["acc"])
        if epoch_scheduler is not None:
            epoch_scheduler.step()
        postfix = {"loss": f"{stats['loss']:.3f}", "acc": f"{stats['acc']:.3f}"}
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, device)
            history["val_loss"].append(val["loss"])
            history["val_acc"].append(val["acc"])
            postfix["val_acc"] = f"{val['acc']:.3f}"
        epoch_bar.set_postfix(postfix)
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history
