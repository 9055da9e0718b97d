"""Training RNNs, LSTMs and GRUs on palindromes with ``common.training.loop.fit`` (fresh batches, clipping, early
stop at the target accuracy), cached accuracy-vs-length sweeps, and input-gradient norms."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

import common.data.palindrome as palindrome_data
import common.torch_models.rnn as rnn_models
import common.training.loop as training_loop
from common.config import get_device, make_generator
from common.data.palindrome import PalindromeDataset
from common.data.torch_data import TensorBatches
from common.parallel import run_jobs
from common.torch_models.rnn import KINDS, RNNConfig, build_model
from common.training.checkpoint import CacheEntry, cache_entry, cache_key, cached, code_version
from common.training.loop import evaluate, fit
from common.training.optimizers import make_optimizer

__all__ = [
    "SampledBatches",
    "palindrome_accuracy",
    "train_palindrome",
    "accuracy_vs_length",
    "input_gradient_norms",
    "plot_accuracy_vs_length",
]

#: Offset added to a dataset's seed for the held-out test stream, so test palindromes are not training ones.
TEST_SEED_OFFSET = 10_007
#: Arrays of an accuracy-vs-length sweep, each ``(L, S)`` over lengths and seeds.
SWEEP_ARRAYS = ("acc", "steps", "seconds")


class SampledBatches:
    """Fresh ``(x, y)`` batches of ``batch_size`` from ``dataset.sample``: ``steps`` batches per pass over it,
    and at most ``total`` over all passes (None: no limit).

    The batches come from the dataset's own generator, so the stream carries on from pass to pass and a run
    is reproducible from the dataset's seed. With ``steps = eval_every`` one pass is one "epoch" of ``fit``.
    """

    def __init__(self, dataset: PalindromeDataset, batch_size: int, steps: int, total: int | None = None):
        if batch_size < 1 or steps < 1 or (total is not None and total < 1):
            raise ValueError(f"batch_size, steps and total must be >= 1, got {batch_size}, {steps}, {total}")
        self.dataset, self.batch_size, self.steps, self.total = dataset, int(batch_size), int(steps), total
        self.drawn = 0

    def __len__(self) -> int:
        return self.steps if self.total is None else max(0, min(self.steps, self.total - self.drawn))

    def __iter__(self):
        for _ in range(len(self)):
            self.drawn += 1
            yield self.dataset.sample(self.batch_size)  # x (N, T-1, D), y (N,)


def palindrome_accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096, device: torch.device | None = None
) -> float:
    """Fraction of ``x (N, T-1, D)`` whose predicted last digit equals ``y (N,)``; batches are moved to
    ``device`` (None: the model's device)."""
    device = device or next(model.parameters()).device
    return evaluate(model, TensorBatches(x, y, batch_size), device=device)["acc"]


def train_palindrome(
    model: nn.Module,
    dataset: PalindromeDataset,
    optimizer: str = "rmsprop",
    lr: float = 1e-3,
    batch_size: int = 128,
    max_steps: int = 3000,
    clip_grad_norm: float | None = 10.0,
    eval_every: int = 50,
    eval_samples: int = 1000,
    target_acc: float = 1.0,
    test_samples: int = 2000,
    device: torch.device | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> dict:
    """Train on fresh batches from ``dataset.sample`` for at most ``max_steps`` steps, stopping early.

    One ``fit`` epoch is ``eval_every`` steps; after each, the accuracy on ``eval_samples`` fresh palindromes
    is measured and training stops as soon as it reaches ``target_acc`` (100% by default). The gradient's
    global norm is clipped to ``clip_grad_norm`` before each step (None: no clipping). ``optimizer``: a name
    for ``common.training.optimizers.make_optimizer`` ('rmsprop' is CS324's choice).

    Returns the loop's history (``common.training.loop``): per step ``step_loss`` and ``grad_norm`` (before
    clipping); per epoch ``epoch``, ``train_loss``, ``train_acc``, ``time``; the fresh-sample evaluations as
    ``val_epoch``, ``val_loss``, ``val_acc``. Two summary numbers are added: ``steps`` (taken) and
    ``test_acc``, the accuracy on ``test_samples`` palindromes of a separate stream (seed
    ``dataset.seed + TEST_SEED_OFFSET``).
    """
    if max_steps < 1 or eval_every < 1:
        raise ValueError(f"max_steps and eval_every must be >= 1, got {max_steps} and {eval_every}")
    device = device or get_device()
    opt = make_optimizer(model.parameters(), optimizer, lr)
    train = SampledBatches(dataset, batch_size, eval_every, total=max_steps)
    fresh = SampledBatches(dataset, eval_samples, 1)
    history = fit(
        model,
        train,
        opt,
        math.ceil(max_steps / eval_every),
        val_loader=fresh,
        device=device,
        clip_grad_norm=clip_grad_norm,
        record_steps=True,
        progress=progress,
        desc=desc or f"T={dataset.seq_length}",
        on_epoch_end=lambda epoch, hist: hist["val_acc"][-1] >= target_acc,
    )
    test = PalindromeDataset(dataset.seq_length, seed=dataset.seed + TEST_SEED_OFFSET, one_hot=dataset.one_hot)
    history["steps"] = len(history["step_loss"])
    history["test_acc"] = palindrome_accuracy(model, *test.sample(test_samples), device=device)
    return history


def _run_sweep(
    kind: str,
    lengths: list[int],
    seeds: list[int],
    config: RNNConfig,
    one_hot: bool,
    device: torch.device,
    progress: bool,
    train_kwargs: dict,
    partial: CacheEntry | None,
) -> dict:
    """Train one model per (length, seed) cell, on a CPU spread over the idle CPUs (``common.parallel``); after
    each cell the arrays so far are saved to ``partial``, from which an interrupted sweep resumes."""
    shape = (len(lengths), len(seeds))
    state = partial.load(required=SWEEP_ARRAYS + ("done",)) if partial is not None else None
    if state is None or state["done"].shape != shape:
        state = {**{k: np.zeros(shape) for k in SWEEP_ARRAYS}, "done": np.zeros(shape, dtype=bool)}
    elif state["done"].any():
        print(f"{kind} sweep: resuming, {int(state['done'].sum())} of {state['done'].size} runs done")
    todo = [(a, b) for a in range(shape[0]) for b in range(shape[1]) if not state["done"][a, b]]
    jobs = {(a, b): (kind, config, lengths[a], seeds[b], one_hot, device, train_kwargs) for a, b in todo}
    # the runs are independent and seeded: on a CPU they are spread over the CPUs nothing else is using
    workers = None if device.type == "cpu" else 1
    bar = tqdm(total=len(todo), desc=f"{kind} sweep", disable=not progress)
    for (a, b), values in run_jobs(_sweep_run, jobs, workers):
        for name, value in zip(SWEEP_ARRAYS, values):
            state[name][a, b] = value
        state["done"][a, b] = True
        if partial is not None:
            partial.save(state)
        bar.update()
        bar.set_postfix(T=lengths[a], acc=f"{state['acc'][a, b]:.3f}")
    bar.close()
    return {"kind": kind, "lengths": np.array(lengths), "seeds": np.array(seeds), **{k: state[k] for k in SWEEP_ARRAYS}}


def _sweep_run(kind, config, T, seed, one_hot, device, train_kwargs) -> tuple[float, int, float]:
    """One cell of a sweep: ``(test accuracy, steps, training seconds)`` of a fresh model trained on length ``T``."""
    model = build_model(kind, config, generator=make_generator(seed))
    hist = train_palindrome(
        model, PalindromeDataset(T, seed=seed, one_hot=one_hot), device=device, progress=False, **train_kwargs
    )
    return hist["test_acc"], hist["steps"], hist["time"][-1]


def accuracy_vs_length(
    kind: str,
    lengths,
    seeds,
    config: RNNConfig | None = None,
    one_hot: bool = True,
    device: torch.device | None = None,
    progress: bool = True,
    cache: bool = True,
    root=None,
    **train_kwargs,
) -> dict:
    """Train a fresh ``kind`` ('rnn' | 'lstm' | 'gru') model per (length, seed) and measure its test accuracy.

    Model initialisation and data both come from ``seed``. ``train_kwargs`` go to ``train_palindrome``.
    Returns ``{'kind', 'lengths' (L,), 'seeds' (S,), 'acc' (L, S), 'steps' (L, S), 'seconds' (L, S)}``
    (``seconds``: training time of each run).

    With ``cache`` the result is stored with ``common.training.checkpoint`` under ``<cache>/palindrome/``
    (``root`` replaces ``cache_dir()``), keyed by every argument, the device type and the source of the code
    it depends on, so it is reused only for the same settings and code; an interrupted sweep resumes from
    the runs it had finished.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    lengths, seeds = [int(t) for t in lengths], [int(s) for s in seeds]
    if not lengths or not seeds:
        raise ValueError("lengths and seeds must each hold at least one value")
    config = config or RNNConfig(input_dim=10 if one_hot else 1)
    device = device or get_device()
    entry = None
    if cache:
        code = code_version(
            palindrome_data,
            rnn_models,
            training_loop,
            make_optimizer,
            SampledBatches,
            palindrome_accuracy,
            train_palindrome,
            _run_sweep,
            _sweep_run,
        )
        key = cache_key(
            lengths=lengths,
            seeds=seeds,
            config=config,
            one_hot=one_hot,
            train=train_kwargs,
            device=device.type,
            code=code,
        )
        entry = cache_entry("palindrome", f"sweep_{kind}", key, root=root)
    result, from_cache = cached(
        entry,
        lambda: _run_sweep(
            kind, lengths, seeds, config, one_hot, device, progress, train_kwargs, entry.partial if entry else None
        ),
        required=("kind", "lengths", "seeds") + SWEEP_ARRAYS,
    )
    if entry is not None and not from_cache:
        entry.partial.discard()  # the finished result is saved: the work in progress has served
    return {k: result[k] for k in ("kind", "lengths", "seeds") + SWEEP_ARRAYS}


def input_gradient_norms(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device | None = None
) -> np.ndarray:
    """``||dL/dx_t||`` for each input step t, averaged over the batch: a NumPy ``(T,)``.

    ``L`` is the summed cross-entropy of the batch, so each row's gradient is that sample's own.
    Small values at early t mean the loss barely feels the first digits: vanishing gradients.
    ``device``: where the batch goes (None: the model's device).
    """
    device = device or next(model.parameters()).device
    x = x.detach().to(device, copy=True).requires_grad_(True)  # (N, T, D)
    loss = nn.functional.cross_entropy(model(x), y.to(device), reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)  # (N, T, D)
    return grad.norm(dim=2).mean(dim=0).cpu().numpy()  # (T,)


def plot_accuracy_vs_length(result: dict, ax=None, label: str | None = None, color=None):
    """Mean test accuracy over seeds against length, a min-max band, and each seed as a dot."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    lengths, acc = result["lengths"], result["acc"]
    (line,) = ax.plot(
        lengths, acc.mean(axis=1), "o-", color=color, label=label or f"{result['kind']} (mean of {acc.shape[1]} seeds)"
    )
    ax.fill_between(lengths, acc.min(axis=1), acc.max(axis=1), color=line.get_color(), alpha=0.2)
    for b in range(acc.shape[1]):
        ax.plot(lengths, acc[:, b], ".", color=line.get_color(), alpha=0.5)
    ax.axhline(0.1, color="gray", ls=":", lw=1)
    ax.set_xlabel("palindrome length T")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend()
    return ax
