"""Training RNNs/LSTMs on palindromes: clipped RMSprop/Adam, early stop at 100%, length sweeps, input-gradient norms."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from common.data.palindrome import PalindromeDataset
from common.torch_models.rnn import RNNConfig, build_model

__all__ = ["make_optimizer", "palindrome_accuracy", "train_palindrome", "accuracy_vs_length",
           "input_gradient_norms", "plot_accuracy_vs_length"]

#: Offset added to a dataset's seed for the held-out test stream, so test palindromes are not training ones.
TEST_SEED_OFFSET = 10_007


def make_optimizer(model: nn.Module, name: str = "rmsprop", lr: float = 1e-3) -> torch.optim.Optimizer:
    """``'rmsprop'`` (CS324's choice) or ``'adam'`` over ``model.parameters()``."""
    if name == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {name!r}")


@torch.no_grad()
def palindrome_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> float:
    """Fraction of ``x (N, T-1, D)`` whose predicted last digit equals ``y (N,)``."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start: start + batch_size])  # (n, C)
        correct += (logits.argmax(dim=1) == y[start: start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(x)


def train_palindrome(model: nn.Module, dataset: PalindromeDataset, optimizer: str = "rmsprop", lr: float = 1e-3,
                     batch_size: int = 128, max_steps: int = 3000, clip_grad_norm: float | None = 10.0,
                     eval_every: int = 50, eval_samples: int = 1000, target_acc: float = 1.0,
                     test_samples: int = 2000, progress: bool = True, desc: str | None = None) -> dict:
    """Train on fresh batches from ``dataset.sample`` until ``max_steps`` or early stop.

    Every ``eval_every`` steps the accuracy on ``eval_samples`` fresh palindromes is measured; training
    stops as soon as it reaches ``target_acc`` (100% by default). The gradient's global norm is clipped
    to ``clip_grad_norm`` before each step (None: no clipping). At the end the accuracy on
    ``test_samples`` palindromes from a separate stream (seed ``dataset.seed + TEST_SEED_OFFSET``) is
    measured.

    Returns the history dict: ``loss``, ``train_acc``, ``grad_norm`` (per step, before clipping),
    ``eval_step``, ``eval_acc`` (per evaluation), ``steps`` (taken), ``seconds``, ``test_acc``.
    """
    if max_steps < 1 or eval_every < 1:
        raise ValueError(f"max_steps and eval_every must be >= 1, got {max_steps} and {eval_every}")
    opt = make_optimizer(model, optimizer, lr)
    loss_fn = nn.CrossEntropyLoss()
    history = {"loss": [], "train_acc": [], "grad_norm": [], "eval_step": [], "eval_acc": []}
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(1, max_steps + 1), desc=desc or f"T={dataset.seq_length}", leave=False, disable=not progress)
    step = 0
    for step in bar:
        x, y = dataset.sample(batch_size)  # (N, T-1, D), (N,)
        logits = model(x)  # (N, C)
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = clip_grad_norm if clip_grad_norm is not None else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        opt.step()
        history["loss"].append(loss.item())
        history["train_acc"].append((logits.argmax(dim=1) == y).float().mean().item())
        history["grad_norm"].append(grad_norm.item())
        if step % eval_every == 0 or step == max_steps:
            acc = palindrome_accuracy(model, *dataset.sample(eval_samples))
            history["eval_step"].append(step)
            history["eval_acc"].append(acc)
            bar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc:.3f}")
            if acc >= target_acc:
                break
    history["steps"] = step
    history["seconds"] = time.perf_counter() - start
    test = PalindromeDataset(dataset.seq_length, seed=dataset.seed + TEST_SEED_OFFSET, one_hot=dataset.one_hot)
    history["test_acc"] = palindrome_accuracy(model, *test.sample(test_samples))
    return history


def _sweep_key(kind, lengths, seeds, config, one_hot, train_kwargs) -> str:
    """Hash of every sweep setting and of the source of the modules the result depends on."""
    import common.data.palindrome as data_mod
    import common.torch_models.rnn as model_mod

    source = b"".join(Path(m.__file__).read_bytes() for m in (data_mod, model_mod)) + Path(__file__).read_bytes()
    settings = json.dumps({"kind": kind, "lengths": lengths, "seeds": seeds, "config": asdict(config),
                           "one_hot": one_hot, "train": train_kwargs, "torch": torch.__version__}, sort_keys=True)
    return hashlib.sha256(source + settings.encode()).hexdigest()[:16]


def accuracy_vs_length(kind: str, lengths, seeds, config: RNNConfig | None = None, one_hot: bool = True,
                       progress: bool = True, cache_dir=None, **train_kwargs) -> dict:
    """Train a fresh ``kind`` ('rnn' | 'lstm') model per (length, seed) and measure its test accuracy.

    Model initialisation and data both come from ``seed``. ``train_kwargs`` go to ``train_palindrome``.
    Returns ``{'kind', 'lengths' (L,), 'seeds' (S,), 'acc' (L, S), 'steps' (L, S), 'seconds' (L, S)}``.

    With ``cache_dir`` the result is stored there as ``palindrome_sweep_<key>.npz``, where the key hashes
    every argument and the source of the dataset, model and training modules, so a result is reused only
    for exactly the same settings and code (a reuse is announced with a printed line).
    """
    lengths, seeds = [int(t) for t in lengths], [int(s) for s in seeds]
    if not lengths or not seeds:
        raise ValueError("lengths and seeds must each hold at least one value")
    config = config or RNNConfig(input_dim=10 if one_hot else 1)
    cache_file = None
    if cache_dir is not None:
        key = _sweep_key(kind, lengths, seeds, config, one_hot, train_kwargs)
        cache_file = Path(cache_dir) / f"palindrome_sweep_{kind}_{key}.npz"
        if cache_file.exists():
            print(f"{kind} sweep: loaded from cache {cache_file}")
            with np.load(cache_file) as f:
                return {"kind": kind, **{k: f[k] for k in ("lengths", "seeds", "acc", "steps", "seconds")}}
    acc, steps, seconds = (np.zeros((len(lengths), len(seeds))) for _ in range(3))
    runs = [(a, b) for a in range(len(lengths)) for b in range(len(seeds))]
    bar = tqdm(runs, desc=f"{kind} sweep", disable=not progress)
    for a, b in bar:
        T, seed = lengths[a], seeds[b]
        model = build_model(kind, config, generator=torch.Generator().manual_seed(seed))
        history = train_palindrome(model, PalindromeDataset(T, seed=seed, one_hot=one_hot), progress=progress,
                                   desc=f"{kind} T={T} seed={seed}", **train_kwargs)
        acc[a, b], steps[a, b], seconds[a, b] = history["test_acc"], history["steps"], history["seconds"]
        bar.set_postfix(T=T, acc=f"{acc[a, b]:.3f}")
    result = {"kind": kind, "lengths": np.array(lengths), "seeds": np.array(seeds), "acc": acc, "steps": steps,
              "seconds": seconds}
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{time.time_ns()}.npz")
        np.savez(tmp, **{k: v for k, v in result.items() if k != "kind"})
        tmp.replace(cache_file)  # atomic: a half-written file is never read
    return result


def input_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """``||dL/dx_t||`` for each input step t, averaged over the batch: ``(T,)``.

    ``L`` is the summed cross-entropy of the batch, so each row's gradient is that sample's own.
    Small values at early t mean the loss barely feels the first digits: vanishing gradients.
    """
    x = x.detach().clone().requires_grad_(True)  # (N, T, D)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)  # (N, T, D)
    return grad.norm(dim=2).mean(dim=0).numpy()  # (T,)


def plot_accuracy_vs_length(result: dict, ax=None, label: str | None = None, color=None):
    """Mean test accuracy over seeds against length, a min-max band, and each seed as a dot."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    lengths, acc = result["lengths"], result["acc"]
    line, = ax.plot(lengths, acc.mean(axis=1), "o-", color=color,
                    label=label or f"{result['kind']} (mean of {acc.shape[1]} seeds)")
    ax.fill_between(lengths, acc.min(axis=1), acc.max(axis=1), color=line.get_color(), alpha=0.2)
    for b in range(acc.shape[1]):
        ax.plot(lengths, acc[:, b], ".", color=line.get_color(), alpha=0.5)
    ax.axhline(0.1, color="gray", ls=":", lw=1)
    ax.set_xlabel("palindrome length T")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.05)
    ax.legend()
    return ax
