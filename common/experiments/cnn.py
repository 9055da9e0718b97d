"""The CNN_CIFAR10 notebook's experiment: training recipes for the reduced VGG (Adam baseline, SGD + Nesterov +
one-cycle), a cached and resumable training run, one-row runs for its grids and ablations, and the metrics and
checks it reports."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

import common.training.loop as training_loop
from common.config import LoadAwareThreads, get_device, training_autocast_dtype, training_precision
from common.data.augment import Augment
from common.data.torch_data import TensorBatches
from common.torch_models import vgg as vgg_module
from common.torch_models.vgg import VGG, VGGConfig
from common.training.checkpoint import CacheEntry, cache_entry, cache_key, code_version, model_state
from common.training.optimizers import OPTIMIZERS, make_optimizer
from common.training.params import count_parameters

__all__ = [
    "Recipe",
    "ADAM_BASELINE",
    "SGD_ONE_CYCLE",
    "one_cycle_scheduler",
    "vgg_cache_entry",
    "train_vgg",
    "train_and_score",
    "match_crop_flip",
    "confusion_matrix",
    "per_class_accuracy",
    "time_train_steps",
    "predict_with_flips",
]

#: Keys of a finished run's cache file (``train_vgg``); a file without one of them is rebuilt.
RESULT_KEYS = ("model", "history", "train_time", "images_per_s", "best_epoch", "val_acc")
#: Keys of a run's per-epoch checkpoint (``entry.partial``), enough to resume it.
PARTIAL_KEYS = (
    "model",
    "best_model",
    "best_epoch",
    "val_acc",
    "optimizer",
    "scheduler",
    "history",
    "batch_generator",
    "augment_generator",
)


@dataclass
class Recipe:
    """How to train: optimiser, learning rate and schedule, regularisation, augmentation, batches, seed.

    ``optimizer``: a name ``common.training.optimizers.make_optimizer`` knows ('adam', 'sgd', ...);
    ``one_cycle``: a one-cycle schedule peaking at ``lr`` (stepped per batch), else a constant ``lr``.
    ``padding``/``flip``/``rotation``: random crop padding, flip probability and largest rotation in degrees
    (``padding=None`` means 2 for images smaller than 32 pixels, else 4; ``rotation=0`` no rotation).
    ``seed`` fixes the initial weights, batch order and augmentation.
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
    rotation: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise ValueError(
                f"epochs, batch_size and lr must be positive, got {self.epochs}, {self.batch_size}, {self.lr}"
            )


#: The assignment's baseline: Adam at a constant 1e-3.
ADAM_BASELINE = Recipe(name="adam")
#: The improved recipe: SGD with Nesterov momentum, a one-cycle schedule, weight decay, label smoothing.
SGD_ONE_CYCLE = Recipe(
    name="sgd_one_cycle", optimizer="sgd", lr=0.1, weight_decay=5e-4, nesterov=True, one_cycle=True, label_smoothing=0.1
)


def one_cycle_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int):
    """The recipe's per-batch schedule: one-cycle peaking at ``recipe.lr`` after a quarter of the steps, or
    None for a constant learning rate."""
    if not recipe.one_cycle:
        return None
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )


def _build_model(config: VGGConfig, seed: int) -> VGG:
    """``VGG(config)`` with weights drawn from ``seed``; the global generator is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return VGG(config)


def vgg_cache_entry(
    config: VGGConfig, recipe: Recipe, data_tag: str, n_train: int, n_val: int, precision: str = "float32"
) -> CacheEntry:
    """Where ``train_vgg`` caches this run: keyed by config, recipe, data, the precision it trains in
    (``"float32"`` or ``"bfloat16"``) and the code that trains it."""
    code = code_version(
        vgg_module,
        Augment,
        TensorBatches,
        training_loop.train_epoch,
        training_loop.fit,
        _build_model,
        one_cycle_scheduler,
        train_vgg,
        _train,
    )
    key = cache_key(
        config=config, recipe=recipe, data=data_tag, n_train=n_train, n_val=n_val, precision=precision, code=code
    )
    return cache_entry("cnn", f"vgg_{recipe.name}", key)


def train_vgg(
    config: VGGConfig,
    recipe: Recipe,
    X_train: torch.Tensor,
    y_train,
    X_val: torch.Tensor,
    y_val,
    data_tag: str = "",
    use_cache: bool = True,
    channels_last: bool = False,
    progress: bool = True,
    device: torch.device | None = None,
) -> tuple[VGG, dict]:
    """Train ``VGG(config)`` with ``recipe`` on normalised tensors; returns the best model (by validation
    accuracy, on ``device``, in eval mode) and ``info``.

    ``X_* (N, C, H, W)`` float tensors, ``y_* (N,)``, kept on the CPU; batches move to ``device`` (default
    ``get_device()``). The run is cached under ``vgg_cache_entry(...)`` (name the data and its size in
    ``data_tag``): with ``use_cache`` a finished run is loaded instead of trained, and a run interrupted
    after some epochs resumes from its last one; without it training starts afresh (and is cached).
    ``info``: ``history`` (``common.training.loop`` keys), ``train_time`` (s, training and per-epoch
    validation), ``images_per_s`` (training images over that time), ``best_epoch`` (1-based), ``val_acc``,
    ``resumed_from`` (epochs loaded from an interrupted run), ``path``, ``cached``, ``precision`` (``"bfloat16"``
    where the CPU trains in it, see ``common.config.training_autocast_dtype``, else ``"float32"``). On a CPU the
    run uses every core while the machine is otherwise idle (``common.config.LoadAwareThreads``).
    """
    device = device or get_device()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = training_autocast_dtype(device)
    precision = training_precision(device)
    entry = vgg_cache_entry(config, recipe, data_tag, len(X_train), len(X_val), precision)
    model = _build_model(config, recipe.seed)
    payload = entry.load(required=RESULT_KEYS) if use_cache else None
    if payload is not None:
        model.load_state_dict(payload["model"])
        print(
            f"loaded {entry.path} (trained in {payload['train_time']:.0f} s, best epoch "
            f"{payload['best_epoch']}); delete it or pass use_cache=False to retrain"
        )
        cached = True
    else:
        payload = _train(
            model, entry, recipe, X_train, y_train, X_val, y_val, use_cache, fmt, progress, device, autocast
        )
        entry.save(payload)
        entry.partial.discard()
        cached = False
    model = model.to(device, memory_format=fmt).eval()
    info = {k: payload[k] for k in RESULT_KEYS[1:]}
    return model, {
        **info,
        "resumed_from": payload.get("resumed_from", 0),
        "path": entry.path,
        "cached": cached,
        "precision": precision,
    }


def _train(
    model: VGG,
    entry: CacheEntry,
    recipe: Recipe,
    X_train,
    y_train,
    X_val,
    y_val,
    resume: bool,
    fmt: torch.memory_format,
    progress: bool,
    device: torch.device,
    autocast: torch.dtype | None,
) -> dict:
    """Train ``model`` in place (ending with the best epoch's weights), checkpointing every epoch to
    ``entry.partial`` (and resuming from it when ``resume``); returns the finished run's payload."""
    model.to(device, memory_format=fmt)
    size = model.config.image_size
    padding = recipe.padding if recipe.padding is not None else (2 if size < 32 else 4)
    augment = Augment(padding, recipe.flip, seed=recipe.seed + 1, rotation=recipe.rotation)
    train = TensorBatches(
        X_train, y_train, recipe.batch_size, shuffle=True, seed=recipe.seed, transform=augment, memory_format=fmt
    )
    val = TensorBatches(X_val, y_val, 512, memory_format=fmt)
    opt = make_optimizer(
        model.parameters(),
        recipe.optimizer,
        recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    scheduler = one_cycle_scheduler(opt, recipe, len(train))
    best = {"best_model": model_state(model), "best_epoch": 0, "val_acc": -1.0}
    history = None
    partial = entry.partial.load(required=PARTIAL_KEYS) if resume else None
    if partial is not None:
        model.load_state_dict(partial["model"])
        opt.load_state_dict(partial["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(partial["scheduler"])
        train.generator.set_state(partial["batch_generator"])
        augment.generator.set_state(partial["augment_generator"])
        best = {k: partial[k] for k in best}
        history = partial["history"]
        print(f"resuming {entry.partial.path.name} after epoch {len(history['epoch'])} of {recipe.epochs}")
    resumed_from = len(history["epoch"]) if history else 0

    def checkpoint(epoch: int, hist: dict) -> None:
        """Keep the best weights so far and save everything needed to resume after this epoch."""
        if hist["val_acc"][-1] > best["val_acc"]:
            best.update(best_model=model_state(model), best_epoch=epoch, val_acc=hist["val_acc"][-1])
        entry.partial.save(
            {
                **best,
                "model": model_state(model),
                "optimizer": opt.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": hist,
                "batch_generator": train.generator.get_state(),
                "augment_generator": augment.generator.get_state(),
            }
        )

    if resumed_from < recipe.epochs:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
        history = training_loop.fit(
            model,
            train,
            opt,
            recipe.epochs - resumed_from,
            val_loader=val,
            loss_fn=loss_fn,
            device=device,
            scheduler=scheduler,
            progress=progress,
            on_epoch_end=checkpoint,
            history=history,
            adapt_threads=True,
            autocast=autocast,
        )
    model.load_state_dict(best["best_model"])
    train_time = float(history["time"][-1])
    return {
        "model": best["best_model"],
        "history": history,
        "train_time": train_time,
        "images_per_s": len(history["epoch"]) * len(X_train) / train_time,
        "best_epoch": best["best_epoch"],
        "val_acc": best["val_acc"],
        "resumed_from": resumed_from,
        "config": asdict(model.config),
        "recipe": asdict(recipe),
    }


def train_and_score(
    config: VGGConfig,
    recipe: Recipe,
    train: tuple,
    val: tuple,
    test: tuple,
    data_tag: str = "",
    use_cache: bool = True,
    channels_last: bool = False,
    device: torch.device | None = None,
) -> dict:
    """One row of a grid or an ablation: ``train_vgg`` on ``train = (X, y)`` (quietly), then its test accuracy.

    Returns ``test_acc``, ``val_acc`` (best epoch), ``best_epoch``, ``train_s``, ``img_s``, ``params``,
    ``n_train`` and ``history``; the model is dropped.
    """
    (X_train, y_train), (X_val, y_val), (X_test, y_test) = train, val, test
    model, info = train_vgg(
        config,
        recipe,
        X_train,
        y_train,
        X_val,
        y_val,
        data_tag=data_tag,
        use_cache=use_cache,
        channels_last=channels_last,
        progress=False,
        device=device,
    )
    with LoadAwareThreads(device or get_device()):  # right after training: its reading of the load carries over
        logits = training_loop.predict(model, X_test, device=device)
    return {
        "test_acc": float((logits.argmax(1) == torch.as_tensor(y_test)).float().mean()),
        "val_acc": info["val_acc"],
        "best_epoch": info["best_epoch"],
        "train_s": info["train_time"],
        "img_s": info["images_per_s"],
        "params": count_parameters(model),
        "n_train": len(X_train),
        "history": info["history"],
    }


def predict_with_flips(model: nn.Module, X: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """Test-time augmentation: the mean of ``model``'s logits for each image ``X (N, C, H, W)`` and for its
    mirror image (flipped left to right), as a CPU tensor ``(N, num_classes)``.

    A mirrored photograph or garment keeps its label, so the two views are two honest guesses about one
    image and their average makes fewer mistakes than either; the model was trained on both (random flips).
    """
    if X.ndim != 4:
        raise ValueError(f"X must be a batch of images (N, C, H, W), got shape {tuple(X.shape)}")
    with LoadAwareThreads(device or next(model.parameters()).device):
        return (
            training_loop.predict(model, X, device=device) + training_loop.predict(model, X.flip(3), device=device)
        ) / 2


@torch.no_grad()
def match_crop_flip(originals: torch.Tensor, augmented: torch.Tensor, padding: int) -> tuple[np.ndarray, np.ndarray]:
    """Explain each augmented image as a crop of its zero-padded original, flipped or not, by trying them all.

    ``originals``, ``augmented``: ``(N, C, H, W)``. Returns ``offsets (N, 2)``, the (row, column) of the crop's
    top-left corner in the padded image (``(-1, -1)`` where no crop and flip reproduces the image exactly),
    and ``flipped (N,)`` bool.
    """
    if originals.shape != augmented.shape or originals.ndim != 4:
        raise ValueError(f"need two (N, C, H, W) batches of one shape, got {originals.shape} and {augmented.shape}")
    N, _, H, W = originals.shape
    padded = nn.functional.pad(originals, (padding, padding, padding, padding))  # (N, C, H + 2p, W + 2p)
    offsets, flipped = np.full((N, 2), -1), np.zeros(N, dtype=bool)
    for flip in (False, True):
        for i in range(2 * padding + 1):
            for j in range(2 * padding + 1):
                window = padded[:, :, i : i + H, j : j + W]
                window = window.flip(3) if flip else window
                hit = (window == augmented).flatten(1).all(1).cpu().numpy() & (offsets[:, 0] < 0)  # (N,)
                offsets[hit], flipped[hit] = (i, j), flip
    return offsets, flipped


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
    """``M (num_classes, num_classes)`` with ``M[i, j]`` = number of class-``i`` samples predicted as ``j``."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {y_true.shape} and {y_pred.shape}")
    if len(y_true) and (min(y_true.min(), y_pred.min()) < 0 or max(y_true.max(), y_pred.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}) for num_classes={num_classes}")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix: ``diag(M) / M.sum(1)`` (NaN for an absent class)."""
    cm = np.asarray(cm, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(axis=1)


def _synchronize(device: torch.device) -> None:
    """Wait for queued kernels, so that a clock read after it measures finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def time_train_steps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 3, device: torch.device | None = None
) -> float:
    """Training images/s of ``model`` on one batch ``x (B, C, H, W)``: best of ``steps`` SGD steps after a warm-up.

    The model moves to ``device`` (default ``get_device()``) and its weights change (plain SGD, lr 1e-3):
    use a throwaway model.
    """
    device = device or get_device()
    model.to(device).train()
    x, y = x.to(device), y.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    best = float("inf")
    for k in range(steps + 1):
        _synchronize(device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        _synchronize(device)
        if k:
            best = min(best, time.perf_counter() - t0)
    return len(x) / best
