"""Training recipes for the image CNN (Adam baseline, SGD + Nesterov + one-cycle), cached best checkpoints, metrics."""
from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from common.checkpoint import (BestCheckpoint, StaleCheckpointError, checkpoint_key, checkpoint_path, load_checkpoint,
                               save_checkpoint)
from common.data.augment import Augment, TensorBatches
from common.torch_models import vgg as vgg_module
from common.torch_models.vgg import VGG, VGGConfig
from common.train import evaluate, fit

__all__ = ["Recipe", "ADAM_BASELINE", "SGD_ONE_CYCLE", "make_optimizer", "train_vgg", "predict",
           "confusion_matrix", "per_class_accuracy", "time_train_steps"]


@dataclass
class Recipe:
    """How to train: optimiser, learning rate and schedule, regularisation, augmentation, batches, seed.

    ``optimizer``: 'adam' or 'sgd'; ``one_cycle``: a one-cycle schedule peaking at ``lr`` (stepped per
    batch), else a constant ``lr``. ``padding``/``flip``: random crop padding and flip probability
    (``padding=None`` means 2 for images smaller than 32 pixels, else 4).
    """

    name: str = "adam"
    optimizer: str = "adam"
    lr: float = 1e-3
    epochs: int = 8
    batch_size: int = 128
    weight_decay: float = 0.0
    momentum: float = 0.9
    nesterov: bool = False
    one_cycle: bool = False
    label_smoothing: float = 0.0
    padding: int | None = None
    flip: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(f"epochs, batch_size and lr must be positive, got {self.epochs}, "
                             f"{self.batch_size}, {self.lr}")


#: The assignment's baseline: Adam at a constant 1e-3.
ADAM_BASELINE = Recipe(name="adam")
#: The improved recipe: SGD with Nesterov momentum, a one-cycle schedule, weight decay, label smoothing.
SGD_ONE_CYCLE = Recipe(name="sgd_one_cycle", optimizer="sgd", lr=0.1, weight_decay=5e-4, nesterov=True,
                       one_cycle=True, label_smoothing=0.1)


def make_optimizer(model: nn.Module, recipe: Recipe, steps_per_epoch: int):
    """``(optimizer, scheduler)`` for ``recipe``; the scheduler (None without one-cycle) steps per batch."""
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                              nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    scheduler = None
    if recipe.one_cycle:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, epochs=recipe.epochs,
                                                        steps_per_epoch=steps_per_epoch, pct_start=0.25)
    return opt, scheduler


def _code_version() -> str:
    """A hash of the model's source, so a checkpoint of an edited model is never reused."""
    return checkpoint_key(vgg=inspect.getsource(vgg_module))


def train_vgg(config: VGGConfig, recipe: Recipe, X_train: torch.Tensor, y_train, X_val: torch.Tensor, y_val,
              data_tag: str = "", use_cache: bool = True, channels_last: bool = False,
              progress: bool = True, cache_dir=None) -> tuple[VGG, dict]:
    """Train ``VGG(config)`` with ``recipe`` on normalised tensors; returns the best model (by val accuracy) and info.

    ``X_* (N, C, H, W)`` float tensors, ``y_* (N,)``. The best epoch is checkpointed under
    ``cache_dir`` (default ``<repo>/.cache/checkpoints``) with a key of config, recipe, ``data_tag`` (name the data and its
    size), sizes and the model's source; with ``use_cache`` an existing checkpoint with that key is
    loaded instead of training (and says so). ``info``: ``history``, ``train_time`` (s), ``images_per_s``
    (training), ``best_epoch``, ``val_acc``, ``path``, ``cached``.
    """
    fmt = torch.channels_last if channels_last else None
    key = checkpoint_key(config=config, recipe=recipe, data=data_tag, n_train=len(X_train), n_val=len(X_val),
                         code=_code_version())
    path = checkpoint_path(f"vgg_{recipe.name}", key, root=cache_dir)
    model = VGG(config)
    if use_cache and path.is_file():
        try:
            payload = load_checkpoint(path, model, key=key)
        except StaleCheckpointError as err:  # cannot happen with the key in the name, but never silently
            print(f"ignoring {path}: {err}")
        else:
            extra = payload["extra"]
            print(f"loaded cached checkpoint {path.name} (trained in {extra['train_time']:.0f} s, "
                  f"best epoch {extra['epoch'] + 1}); delete it or pass use_cache=False to retrain")
            model = model.to(memory_format=fmt) if fmt else model
            return model.eval(), {**extra["info"], "history": extra["history"], "path": path, "cached": True}

    padding = recipe.padding if recipe.padding is not None else (2 if config.image_size < 32 else 4)
    torch.manual_seed(recipe.seed)  # the weight init; the notebook's own seed is reset by seed_everything
    model = VGG(config)
    if fmt:
        model = model.to(memory_format=fmt)
    train = TensorBatches(X_train, y_train, recipe.batch_size, shuffle=True, seed=recipe.seed,
                          transform=Augment(padding, recipe.flip, seed=recipe.seed + 1), memory_format=fmt)
    val = TensorBatches(X_val, y_val, 512, shuffle=False, memory_format=fmt)
    opt, scheduler = make_optimizer(model, recipe, len(train))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    best = BestCheckpoint(path, model, config, key, monitor="val_acc")
    history = fit(model, train, opt, recipe.epochs, val_loader=val, loss_fn=loss_fn,
                  device=torch.device("cpu"), scheduler=scheduler, progress=progress, on_epoch_end=best)
    train_time = float(sum(history["epoch_time"]))
    info = {"train_time": train_time, "images_per_s": recipe.epochs * len(X_train) / train_time,
            "best_epoch": best.best_epoch, "val_acc": best.best, "recipe": asdict(recipe), "config": asdict(config)}
    # re-save the best weights with the timing info, then load them
    payload = load_checkpoint(path, model, key=key)
    save_checkpoint(path, model, config, key, epoch=payload["extra"]["epoch"], history=history,
                    train_time=train_time, info=info)
    return model.eval(), {**info, "history": history, "path": path, "cached": False}


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits ``(N, num_classes)`` of ``model`` in eval mode for normalised images ``X (N, C, H, W)``."""
    model.eval()
    weights = [p for p in model.parameters() if p.ndim == 4 and p.shape[1] > 1]
    weight = weights[-1] if weights else None  # a conv weight with several input channels shows the layout
    channels_last = weight is not None and weight.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = [model(X[i:i + batch_size].contiguous(memory_format=fmt)) for i in range(0, len(X), batch_size)]
    return torch.cat(out)


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``M (num_classes, num_classes)`` with ``M[i, j]`` = number of class-``i`` samples predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {y_true.shape} and {y_pred.shape}")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) for num_classes={num_classes}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix: ``diag(M) / M.sum(1)`` (NaN for an absent class)."""
    cm = np.asarray(cm, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(axis=1)


def time_train_steps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 3) -> float:
    """Training images/s of ``model`` on one batch ``x (B, C, H, W)``: best of ``steps`` SGD steps after a warm-up.

    The model's weights change (plain SGD, lr 1e-3): use a throwaway model.
    """
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    best = float("inf")
    for k in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if k:
            best = min(best, time.perf_counter() - t0)
    return len(x) / best
