"""PyTorch training as plain functions: ``train_epoch``, ``evaluate``, ``fit`` (with a history dict) and ``predict``.

Every function takes ``device`` (default: the model's own device for ``train_epoch``/``evaluate``/``predict``,
``get_device()`` for ``fit``), moves each batch there, and returns Python numbers, lists or CPU tensors.

History keys, the same wherever a loop of the course records them:
``epoch`` (1-based), ``train_loss``, ``train_acc`` (means over the epoch's samples), ``val_loss``, ``val_acc``
(at the epochs listed in ``val_epoch``), ``time`` (seconds since the start of training, at the end of each
epoch), and with ``record_steps`` the per-step ``step_loss`` and ``grad_norm`` (global L2 norm of the
gradient before clipping). Accuracies are NaN when the targets are not class labels (regression).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
from torch import nn
from tqdm.auto import tqdm

from common.config import LoadAwareThreads, get_device

__all__ = ["train_epoch", "evaluate", "fit", "predict", "accuracy"]


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``logits (N, C)`` whose arg-max equals ``y (N,)``."""
    return (logits.argmax(dim=1) == y).float().mean().item()


def _is_classification(out: torch.Tensor, y: torch.Tensor) -> bool:
    return out.ndim == 2 and y.ndim == 1 and not y.is_floating_point()


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def train_epoch(
    model: nn.Module,
    loader: Iterable,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable | None = None,
    device: torch.device | None = None,
    scheduler=None,
    clip_grad_norm: float | None = None,
    record_steps: bool = False,
    progress: bool = True,
    desc: str = "train",
    threads: LoadAwareThreads | None = None,
    autocast: torch.dtype | None = None,
) -> dict:
    """One pass over ``loader`` of ``(x, y)`` batches; returns ``{'loss', 'acc'}`` averaged over samples.

    ``scheduler`` (if given) is stepped after every batch, as one-cycle schedules expect;
    ``clip_grad_norm`` clips the global gradient norm before each step. With ``record_steps`` the result
    also holds ``step_loss`` and ``grad_norm`` (before clipping), one value per batch. ``threads`` (an entered
    ``LoadAwareThreads``) is polled before each batch. ``autocast`` (e.g. ``torch.bfloat16``, see
    ``common.config.training_autocast_dtype``) runs the forward pass and the loss under ``torch.autocast``;
    parameters, gradients and the optimiser stay in float32.
    """
    device = device or _model_device(model)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model.train()
    losses, sizes, norms, correct, total, classify = [], [], [], 0, 0, True
    bar = tqdm(loader, desc=desc, leave=False, disable=not progress)
    for x, y in bar:
        if threads is not None:
            threads.poll()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(torch.device(device).type, dtype=autocast, enabled=autocast is not None):
            out = model(x)
            loss = loss_fn(out, y)
        loss.backward()
        if clip_grad_norm is not None or record_steps:
            max_norm = clip_grad_norm if clip_grad_norm is not None else math.inf
            norms.append(nn.utils.clip_grad_norm_(model.parameters(), max_norm).detach())
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n = y.shape[0]
        losses.append(loss.detach() * n)  # kept as tensors: no device sync per step
        sizes.append(n)
        classify = classify and _is_classification(out, y)
        if classify:
            correct += (out.argmax(dim=1) == y).sum()
        total += n
        if progress and len(losses) % 20 == 1:
            bar.set_postfix(loss=f"{float(sum(losses)) / total:.4f}")
    if total == 0:
        raise ValueError("the loader yielded no batches; check the dataset size and batch_size")
    step_losses = torch.stack(losses).cpu()
    stats = {"loss": float(step_losses.sum()) / total, "acc": float(correct) / total if classify else math.nan}
    if record_steps:
        stats["step_loss"] = (step_losses / torch.tensor(sizes, dtype=step_losses.dtype)).tolist()
        stats["grad_norm"] = torch.stack(norms).cpu().tolist()
    return stats


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    loss_fn: Callable | None = None,
    device: torch.device | None = None,
    progress: bool = False,
) -> dict:
    """Mean loss and accuracy of ``model`` over ``loader`` in eval mode: ``{'loss', 'acc'}``.

    The model's train/eval mode is restored afterwards. ``acc`` is NaN for non-class targets.
    """
    device = device or _model_device(model)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    was_training = model.training
    model.eval()
    total_loss, correct, total, classify = 0.0, 0, 0, True
    try:
        for x, y in tqdm(loader, desc="eval", leave=False, disable=not progress):
            x, y = x.to(device), y.to(device)
            out = model(x)
            n = y.shape[0]
            total_loss += loss_fn(out, y).item() * n
            classify = classify and _is_classification(out, y)
            if classify:
                correct += (out.argmax(dim=1) == y).sum().item()
            total += n
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("the loader yielded no batches: cannot evaluate on an empty set")
    return {"loss": total_loss / total, "acc": correct / total if classify else math.nan}


def fit(
    model: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    val_loader: Iterable | None = None,
    loss_fn: Callable | None = None,
    device: torch.device | None = None,
    scheduler=None,
    epoch_scheduler=None,
    clip_grad_norm: float | None = None,
    record_steps: bool = False,
    eval_every: int = 1,
    progress: bool = True,
    desc: str = "epochs",
    on_epoch_end: Callable[[int, dict], bool | None] | None = None,
    history: dict | None = None,
    adapt_threads: bool = False,
    autocast: torch.dtype | None = None,
) -> dict:
    """Train for ``epochs`` epochs; returns the history dict (keys in the module docstring).

    ``scheduler`` steps per batch, ``epoch_scheduler`` per epoch. ``val_loader`` is evaluated every
    ``eval_every`` epochs and after the last. ``on_epoch_end(epoch, history)`` (``epoch`` 1-based) runs
    after each epoch, e.g. to checkpoint; returning True stops training early. ``history``: a history of
    an earlier run to continue (resuming from a checkpoint); its epochs and times carry on. With
    ``adapt_threads`` a CPU run uses every CPU while the machine is otherwise idle (``LoadAwareThreads``): for
    models large enough to gain from a second thread, such as the CNN notebook's VGG. ``autocast``: see
    ``train_epoch``; validation runs in float32, so reported accuracies do not depend on the CPU.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be at least 1, got {eval_every}")
    device = device or get_device()
    model.to(device)
    keys = ("epoch", "train_loss", "train_acc", "val_epoch", "val_loss", "val_acc", "time")
    history = {k: list(v) for k, v in (history or {}).items()}
    for k in keys + (("step_loss", "grad_norm") if record_steps else ()):
        history.setdefault(k, [])
    first = len(history["epoch"]) + 1
    offset = history["time"][-1] if history["time"] else 0.0
    start = time.perf_counter()
    epoch_bar = tqdm(range(first, first + epochs), desc=desc, disable=not progress)
    with LoadAwareThreads(device) if adapt_threads else nullcontext() as threads:
        for epoch in epoch_bar:
            stats = train_epoch(
                model,
                train_loader,
                optimizer,
                loss_fn,
                device,
                scheduler,
                clip_grad_norm,
                record_steps=record_steps,
                progress=progress,
                desc=f"epoch {epoch}",
                threads=threads,
                autocast=autocast,
            )
            if epoch_scheduler is not None:
                epoch_scheduler.step()
            history["epoch"].append(epoch)
            history["train_loss"].append(stats["loss"])
            history["train_acc"].append(stats["acc"])
            if record_steps:
                history["step_loss"].extend(stats["step_loss"])
                history["grad_norm"].extend(stats["grad_norm"])
            postfix = {"loss": f"{stats['loss']:.3f}"}
            last = epoch == first + epochs - 1
            if val_loader is not None and ((epoch - first + 1) % eval_every == 0 or last):
                val = evaluate(model, val_loader, loss_fn, device)
                history["val_epoch"].append(epoch)
                history["val_loss"].append(val["loss"])
                history["val_acc"].append(val["acc"])
                postfix["val_acc"] = f"{val['acc']:.3f}"
            history["time"].append(offset + time.perf_counter() - start)
            epoch_bar.set_postfix(postfix)
            if on_epoch_end is not None and on_epoch_end(epoch, history):
                break
    return history


@torch.no_grad()
def predict(
    model: nn.Module,
    X: torch.Tensor,
    batch_size: int = 512,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Outputs of ``model`` in eval mode for inputs ``X (N, ...)``, in batches, as a CPU tensor ``(N, ...)``.

    Batches keep the memory format of the model's 4-D weights (channels-last models get channels-last input).
    """
    device = device or _model_device(model)
    was_training = model.training
    model.eval()
    weights = [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1]
    channels_last = bool(weights) and weights[-1].is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    try:
        out = [
            model(
                X[i : i + batch_size].to(device).contiguous(memory_format=fmt)
                if X.ndim == 4
                else X[i : i + batch_size].to(device)
            ).cpu()
            for i in range(0, len(X), batch_size)
        ]
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("X is empty: nothing to predict")
    return torch.cat(out)
