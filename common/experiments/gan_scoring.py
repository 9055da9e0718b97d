"""Scoring generated digits with a small cached MNIST classifier: class histogram, Inception Score, Frechet distance."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from common.config import get_device
from common.data.images import load_mnist
from common.data.torch_data import TensorBatches
from common.torch_models.mnist import MNISTClassifier, MNISTClassifierConfig, build_mnist_classifier
from common.training.checkpoint import (
    CacheEntry,
    CacheWarning,
    cache_entry,
    cache_key,
    cached,
    code_version,
    model_state,
)
from common.training.loop import evaluate, fit
from common.training.optimizers import make_optimizer

__all__ = [
    "ClassifierTrainConfig",
    "train_classifier",
    "classifier_cache_entry",
    "get_mnist_classifier",
    "predict_proba",
    "extract_features",
    "class_histogram",
    "inception_score",
    "frechet_distance",
    "score_samples",
]

#: What a cached classifier file holds.
_KEYS = ("model", "test_acc", "train_time", "history")


@dataclass
class ClassifierTrainConfig:
    """How the scoring CNN is trained: Adam with a one-cycle learning rate, ``epochs`` passes over the first
    ``num_train`` MNIST training images (None: all of them) in shuffled batches of ``batch_size``."""

    epochs: int = 6
    batch_size: int = 128
    lr: float = 2e-3
    num_train: int | None = None
    seed: int = 0  # seeds the parameter init and the shuffling

    def __post_init__(self):
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.num_train is not None and self.num_train < 1:
            raise ValueError(f"num_train must be a positive number of images or None (all), got {self.num_train}")


def _as_unit_tensor(images) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] images ``(N, 1, 28, 28)`` (or ``(N, 28, 28)``) -> float32 tensor in [0, 1]."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]  # (N, 28, 28) -> (N, 1, 28, 28)
    if images.ndim != 4 or images.shape[1:] != (1, 28, 28):
        raise ValueError(f"images must have shape (N, 1, 28, 28) or (N, 28, 28), got {images.shape}")
    if images.dtype == np.uint8:
        return torch.from_numpy(images.astype(np.float32) / 255.0)
    images = images.astype(np.float32)
    if images.size and (images.min() < -1e-3 or images.max() > 1 + 1e-3):
        raise ValueError(
            f"float images must lie in [0, 1], got [{images.min():.3g}, {images.max():.3g}]; "
            "map generator output with common.torch_models.gan.from_gan_range"
        )
    return torch.from_numpy(images)


def train_classifier(
    X_train,
    y_train,
    X_test=None,
    y_test=None,
    config: ClassifierTrainConfig | None = None,
    model_config: MNISTClassifierConfig | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> tuple[MNISTClassifier, dict]:
    """Train the scoring CNN with ``common.training.loop.fit``; returns ``(model in eval mode, info)``.

    ``X_*``: images ``(N, 1, 28, 28)`` (uint8, or float in [0, 1]), ``y_*`` labels ``(N,)``. Batches are
    moved to ``device`` (default ``get_device()``). ``info``: ``history`` (from ``fit``), ``test_acc`` (when
    a test set is given), ``train_time`` (s). The parameter init and the shuffling are seeded by
    ``config.seed`` without touching global random state. On a CPU, training uses every core while the machine
    is otherwise idle (``common.config.LoadAwareThreads``; ``$COURSE_THREADS`` fixes the count instead).
    """
    config = config or ClassifierTrainConfig()
    if config.num_train is not None:
        X_train, y_train = X_train[: config.num_train], y_train[: config.num_train]
    device = device or get_device()
    model = build_mnist_classifier(model_config, seed=config.seed)
    train = TensorBatches(
        _as_unit_tensor(X_train),
        torch.as_tensor(np.asarray(y_train)),
        config.batch_size,
        shuffle=True,
        seed=config.seed,
    )
    optimizer = make_optimizer(model.parameters(), "adam", lr=config.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.epochs * len(train))
    start = time.perf_counter()
    history = fit(
        model,
        train,
        optimizer,
        config.epochs,
        device=device,
        scheduler=scheduler,
        progress=progress,
        adapt_threads=True,
    )
    info = {"history": history, "train_time": time.perf_counter() - start}
    if X_test is not None:
        test = TensorBatches(_as_unit_tensor(X_test), torch.as_tensor(np.asarray(y_test)), batch_size=500)
        info["test_acc"] = evaluate(model, test, device=device)["acc"]
    return model.eval(), info


def classifier_cache_entry(
    model_config: MNISTClassifierConfig, config: ClassifierTrainConfig, data, root=None
) -> CacheEntry:
    """The cache file ``cache_dir()/gan/mnist_classifier-<key>.pt`` (``root`` replaces ``cache_dir()``), the
    key hashing both configs, the images and labels it learns from and is tested on, and the code."""
    n = config.num_train
    arrays = (data.X_train[:n], data.y_train[:n], data.X_test, data.y_test)
    key = cache_key(
        model=model_config,
        train=config,
        data=[np.asarray(a) for a in arrays],
        code=code_version(MNISTClassifier, build_mnist_classifier, train_classifier, _as_unit_tensor),
    )
    return cache_entry("gan", "mnist_classifier", key, root=root)


def _model_from(payload: dict, model_config: MNISTClassifierConfig) -> MNISTClassifier | None:
    model = build_mnist_classifier(model_config)
    try:
        model.load_state_dict(payload["model"])
    except (RuntimeError, KeyError, TypeError):
        return None
    return model


def get_mnist_classifier(
    model_config: MNISTClassifierConfig | None = None,
    config: ClassifierTrainConfig | None = None,
    data=None,
    device: torch.device | None = None,
    progress: bool = True,
    cache: bool = True,
    root=None,
) -> tuple[MNISTClassifier, dict]:
    """The scoring classifier, trained once and cached at ``classifier_cache_entry(...)``.

    ``data``: an ``ImageData`` with ``X_train, y_train, X_test, y_test`` (default ``load_mnist()``).
    Returns ``(model on device in eval mode, info)`` with ``test_acc``, ``train_time``, ``history``,
    ``from_cache`` and ``path`` (None with ``cache=False``, which neither reads nor writes a file). An
    unreadable cache file is warned about and rebuilt; ``root`` (for tests) replaces ``cache_dir()``.
    """
    model_config = model_config or MNISTClassifierConfig()
    config = config or ClassifierTrainConfig()
    device = device or get_device()
    data = data if data is not None else load_mnist()
    entry = classifier_cache_entry(model_config, config, data, root) if cache else None

    def compute() -> dict:
        model, info = train_classifier(
            data.X_train, data.y_train, data.X_test, data.y_test, config, model_config, device=device, progress=progress
        )
        return {"model": model_state(model), **{k: info[k] for k in ("test_acc", "train_time", "history")}}

    payload, from_cache = cached(entry, compute, required=_KEYS, verbose=progress)
    model = _model_from(payload, model_config)
    if model is None:  # a readable file whose weights do not fit this model
        warnings.warn(
            f"ignoring the cache file {entry.path}: its weights do not fit the classifier; it will be rebuilt",
            CacheWarning,
            stacklevel=2,
        )
        entry.discard()
        payload, from_cache = cached(entry, compute, required=_KEYS, verbose=progress)
        model = _model_from(payload, model_config)
    info = {k: payload[k] for k in ("test_acc", "train_time", "history")}
    info.update(from_cache=from_cache, path=None if entry is None else entry.path)
    return model.to(device).eval(), info


@torch.no_grad()
def _batched(model: MNISTClassifier, fn, images, batch_size: int, device: torch.device | None) -> np.ndarray:
    """``fn`` applied in eval mode to batches of ``images`` moved to ``device`` (default: the model's), as NumPy."""
    x = _as_unit_tensor(images)
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return np.concatenate([fn(chunk.to(device)).cpu().numpy() for chunk in x.split(batch_size)])
    finally:
        model.train(was_training)


def predict_proba(
    model: MNISTClassifier, images, batch_size: int = 1000, device: torch.device | None = None
) -> np.ndarray:
    """Class probabilities ``p(y|x)`` ``(N, 10)`` for images ``(N, 1, 28, 28)`` (uint8 or float in [0, 1])."""
    probs = _batched(model, lambda x: torch.softmax(model(x), dim=1), images, batch_size, device)
    return probs.astype(np.float64)


def extract_features(
    model: MNISTClassifier, images, batch_size: int = 1000, device: torch.device | None = None
) -> np.ndarray:
    """The classifier's penultimate features ``(N, hidden)`` (what the Frechet distance compares)."""
    return _batched(model, model.features, images, batch_size, device).astype(np.float64)


def class_histogram(probs: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """How many samples the classifier assigns to each class: counts ``(num_classes,)`` of ``argmax p(y|x)``."""
    probs = np.asarray(probs)
    if probs.ndim != 2 or probs.shape[1] != num_classes:
        raise ValueError(f"probs must have shape (N, {num_classes}), got {probs.shape}")
    return np.bincount(probs.argmax(axis=1), minlength=num_classes)


def inception_score(probs: np.ndarray, num_splits: int = 1, eps: float = 1e-12) -> tuple[float, float]:
    """``IS = exp( E_x KL(p(y|x) || p(y)) )`` with ``p(y)`` the mean of ``p(y|x)`` over the samples.

    ``probs``: ``(N, C)`` rows of ``p(y|x)``. It lies in [1, C]: C when every sample is confidently one
    class and the classes are balanced, 1 when every sample gets the same distribution. With
    ``num_splits > 1`` the score is computed on that many disjoint chunks; returns ``(mean, std)`` over them.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) < num_splits:
        raise ValueError(f"probs must be (N, C) with N >= num_splits={num_splits}, got {probs.shape}")
    if np.any(probs < 0) or not np.allclose(probs.sum(axis=1), 1, atol=1e-4):
        raise ValueError("each row of probs must be a probability distribution (non-negative, summing to 1)")
    scores = []
    for part in np.array_split(probs, num_splits):
        p_y = part.mean(axis=0, keepdims=True)  # (1, C)
        kl = np.sum(part * (np.log(part + eps) - np.log(p_y + eps)), axis=1)  # (n,)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N1, F)``, ``(N2, F)``:

    ``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (FID when the features come from Inception).
    """
    from scipy import linalg

    feats1, feats2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if feats1.ndim != 2 or feats2.ndim != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"features must be (N1, F) and (N2, F), got {feats1.shape} and {feats2.shape}")
    if min(len(feats1), len(feats2)) < 2:
        raise ValueError("need at least 2 samples in each feature set to estimate a covariance")
    mu1, mu2 = feats1.mean(axis=0), feats2.mean(axis=0)
    S1, S2 = np.cov(feats1, rowvar=False), np.cov(feats2, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", linalg.LinAlgWarning)
        try:
            covmean = linalg.sqrtm(S1 @ S2)
            singular = not np.all(np.isfinite(covmean))
        except linalg.LinAlgWarning:
            singular = True
    if singular:  # e.g. dead ReLU features: regularise, as the FID reference code does
        offset = 1e-6 * np.eye(len(S1))
        covmean = linalg.sqrtm((S1 + offset) @ (S2 + offset))
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(S1) + np.trace(S2) - 2 * np.trace(covmean))


def score_samples(
    model: MNISTClassifier,
    images,
    real_features: np.ndarray | None = None,
    num_splits: int = 1,
    device: torch.device | None = None,
) -> dict:
    """All scores for a batch of images: ``inception_score``, ``is_std``, ``histogram`` (class counts),
    ``confidence`` (mean max probability) and, when ``real_features`` is given, ``frechet`` distance."""
    probs = predict_proba(model, images, device=device)
    mean, std = inception_score(probs, num_splits=num_splits)
    result = {
        "inception_score": mean,
        "is_std": std,
        "histogram": class_histogram(probs),
        "confidence": float(probs.max(axis=1).mean()),
    }
    if real_features is not None:
        result["frechet"] = frechet_distance(extract_features(model, images, device=device), real_features)
    return result
