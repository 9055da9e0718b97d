"""Training the GANs of assignment3/GAN_MNIST.ipynb: the alternating loop, weight averaging, checkpoints and cache."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from tqdm.auto import tqdm

from common.config import (
    LoadAwareThreads,
    get_device,
    make_generator,
    training_autocast_dtype,
    training_precision,
)
from common.torch_models import gan as gan_models
from common.torch_models.gan import LOSSES, generate, latent_dim_of, sample_noise
from common.training.checkpoint import CacheEntry, CacheWarning, cache_entry, cache_key, code_version, model_state
from common.training.optimizers import make_optimizer

__all__ = [
    "GANTrainConfig",
    "ema_generator",
    "recalibrate_batchnorm",
    "train_gan",
    "train_gan_cached",
    "gan_cache_entry",
]

#: Keys of a finished run's cache file and, in addition, of a work-in-progress checkpoint.
_FINAL_KEYS = ("G", "D", "G_ema", "history", "step", "model_config")
_PARTIAL_KEYS = _FINAL_KEYS + (
    "opt_g",
    "opt_d",
    "data_gen",
    "noise_gen",
    "window",
    "num_in_window",
    "elapsed",
    "overhead",
)
_WINDOW_KEYS = ("d_loss", "g_loss", "d_real", "d_fake")


@dataclass
class GANTrainConfig:
    """How to train a GAN with ``train_gan``: Adam (lr, betas), batch size, steps, loss, weight averaging
    and what to record.

    The learning rate is CS231n's 1e-3 rather than the DCGAN paper's 2e-4: on MNIST, for the same number of
    steps, 1e-3 gave a clearly higher Inception Score for both the MLP and the conv GAN (bench/RESULTS.md).
    """

    num_steps: int = 5000
    batch_size: int = 64
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    loss: str = "nonsaturating"  # 'nonsaturating' | 'least_squares'
    ema_decay: float | None = 0.999  # also keep an exponential moving average of G's weights; None: off
    num_samples: int = 25  # images in each recorded sample grid (drawn from one fixed noise batch)
    sample_steps: tuple[int, ...] | None = None  # steps at which to record samples; None: start, middle, end
    decay_from: float | None = None  # fraction of the steps after which both lrs fall linearly to 0; None: constant
    log_every: int = 10  # record mean losses every this many steps
    checkpoint_every: int = 1000  # steps between callbacks and (with a cache entry) checkpoints
    seed: int = 0  # seeds the minibatches, the noise and the fixed sample noise

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        for name in ("num_steps", "batch_size", "num_samples", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) (e.g. 0.999) or be None, got {self.ema_decay}")
        if self.decay_from is not None and not 0 <= self.decay_from < 1:
            raise ValueError(f"decay_from must lie in [0, 1) (e.g. 0.5) or be None, got {self.decay_from}")

    def lr_scale(self, step: int) -> float:
        """The factor on both learning rates for step ``step`` (0-based): 1, then with ``decay_from`` a linear
        fall to 0 over the last steps, which lets the two players settle instead of circling."""
        if self.decay_from is None:
            return 1.0
        start = self.decay_from * self.num_steps
        return 1.0 if step < start else max(0.0, (self.num_steps - step) / (self.num_steps - start))


# ----------------------------------------------------------------------------------------------------------
# Weight averaging
# ----------------------------------------------------------------------------------------------------------


def ema_generator(G: nn.Module, decay: float = 0.999) -> AveragedModel:
    """An exponential moving average of G's weights (``torch.optim.swa_utils.AveragedModel``).

    After each G step, ``ema.update_parameters(G)`` does ``w_ema <- d w_ema + (1 - d) w`` with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates: the warm-up lets a short run forget the
    random initialisation (the average spans roughly the last tenth of the steps until ``d`` reaches
    ``decay``, after about 9000 steps for 0.999). ``ema.module`` is the averaged generator; its BatchNorm
    statistics are not averaged, so call ``recalibrate_batchnorm(ema.module)`` before sampling from it.
    """
    if decay is None or not 0 < decay < 1:
        raise ValueError(f"decay must lie in (0, 1), got {decay}")

    def lerp_all(averaged: list, current: list, num_averaged) -> None:
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return AveragedModel(G, multi_avg_fn=lerp_all)


def recalibrate_batchnorm(
    G: nn.Module, num_batches: int = 10, batch_size: int = 500, seed: int = 0, device: torch.device | None = None
) -> nn.Module:
    """Re-estimate G's BatchNorm running statistics on ``num_batches`` batches of fresh noise
    (``torch.optim.swa_utils.update_bn``) and return G. An averaged generator needs this: its weights never
    produced the statistics it holds. The noise comes from its own seeded generator (global RNG untouched)
    and each batch is moved to ``device`` (default: G's device).
    """
    gen = make_generator(seed)
    batches = [sample_noise(batch_size, latent_dim_of(G), gen) for _ in range(num_batches)]
    update_bn(batches, G, device=device or next(G.parameters()).device)
    return G


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------


class _Run:
    """Everything a GAN run changes as it trains, so that a checkpoint holds (and restores) all of it."""

    def __init__(self, G: nn.Module, D: nn.Module, config: GANTrainConfig):
        self.G, self.D, self.config = G, D, config
        # fused Adam: a GAN step is short, and the per-tensor update ops are a visible share of it on a CPU
        self.opt_g = make_optimizer(G.parameters(), "adam", lr=config.lr_g, betas=config.betas, fused=True)
        self.opt_d = make_optimizer(D.parameters(), "adam", lr=config.lr_d, betas=config.betas, fused=True)
        self.G_ema = None if config.ema_decay is None else ema_generator(G, config.ema_decay)
        self.data_gen = make_generator(config.seed)  # minibatch indices
        self.noise_gen = make_generator(config.seed + 1)  # training noise
        fixed_noise = sample_noise(config.num_samples, latent_dim_of(G), make_generator(config.seed + 2))
        self.history = {
            "step": [],
            **{k: [] for k in _WINDOW_KEYS},
            "time": [],
            "train_time": 0.0,
            "samples": {},
            "callback": [],
            "fixed_noise": fixed_noise,
            "config": asdict(config),
        }
        self.window = dict.fromkeys(_WINDOW_KEYS, 0.0)  # sums over the steps since the last logged one
        self.num_in_window = 0
        self.step = 0  # steps done
        self.elapsed = 0.0  # seconds since the start of training, as of the last checkpoint
        self.overhead = 0.0  # of those, seconds spent sampling, in the callback and checkpointing

    def evaluated(self) -> nn.Module:
        """The generator we sample from and score: the recalibrated average if there is one, else G."""
        return self.G if self.G_ema is None else recalibrate_batchnorm(self.G_ema.module)

    def final_payload(self) -> dict:
        return {
            "G": model_state(self.G),
            "D": model_state(self.D),
            "G_ema": None if self.G_ema is None else model_state(self.G_ema),
            "history": self.history,
            "step": self.step,
            "model_config": asdict(self.G.config),
        }

    def partial_payload(self) -> dict:
        return {
            **self.final_payload(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "noise_gen": self.noise_gen.get_state(),
            "window": {k: float(v) for k, v in self.window.items()},
            "num_in_window": self.num_in_window,
            "elapsed": self.elapsed,
            "overhead": self.overhead,
        }

    def restore(self, payload: dict) -> None:
        """Load a ``partial_payload``; on failure G and D are left as they were and the error is raised."""
        before = model_state(self.G), model_state(self.D)
        try:
            self.G.load_state_dict(payload["G"])
            self.D.load_state_dict(payload["D"])
            if self.G_ema is not None:
                self.G_ema.load_state_dict(payload["G_ema"])
            self.opt_g.load_state_dict(payload["opt_g"])
            self.opt_d.load_state_dict(payload["opt_d"])
            self.data_gen.set_state(payload["data_gen"])
            self.noise_gen.set_state(payload["noise_gen"])
        except Exception:
            self.G.load_state_dict(before[0])
            self.D.load_state_dict(before[1])
            raise
        self.history, self.step = payload["history"], int(payload["step"])
        self.window, self.num_in_window = dict(payload["window"]), int(payload["num_in_window"])
        self.elapsed, self.overhead = float(payload["elapsed"]), float(payload["overhead"])


def _check_images(X, config: GANTrainConfig) -> None:
    if not isinstance(X, torch.Tensor) or X.ndim != 4 or X.dtype != torch.float32:
        raise ValueError("X must be a float32 tensor of images (N, C, H, W) in [-1, 1]; use to_gan_range(X_uint8)")
    if X.min() < -1.0001 or X.max() > 1.0001:
        raise ValueError(f"X must lie in [-1, 1] (the range of Tanh), got [{X.min():.3g}, {X.max():.3g}]")
    if len(X) < config.batch_size:
        raise ValueError(f"X has {len(X)} images, fewer than batch_size={config.batch_size}")


def _sample_steps(config: GANTrainConfig) -> list[int]:
    if config.sample_steps is None:
        return sorted({0, config.num_steps // 2, config.num_steps})
    bad = [s for s in config.sample_steps if not 0 <= s <= config.num_steps]
    if bad:
        raise ValueError(f"sample_steps must lie in [0, num_steps={config.num_steps}], got {bad}")
    return sorted(set(config.sample_steps))


def _unusable(entry: CacheEntry, why: str) -> None:
    warnings.warn(f"ignoring the cache file {entry.path}: {why}; it will be rebuilt", CacheWarning, stacklevel=3)
    entry.discard()


def _resume(run: _Run, partial: CacheEntry) -> _Run:
    """``run`` continued from the checkpoint at ``partial`` if there is a usable one, else ``run`` as it was."""
    payload = partial.load(required=_PARTIAL_KEYS)
    if payload is None:
        return run
    if payload["history"].get("config") != asdict(run.config) or payload["model_config"] != asdict(run.G.config):
        raise ValueError(
            f"checkpoint {partial.path} was written for another model or training config; "
            "key the entry by both (as train_gan_cached does) or delete the file"
        )
    if not 0 < payload["step"] < run.config.num_steps:
        _unusable(partial, f"its step {payload['step']} is outside (0, {run.config.num_steps})")
        return run
    try:
        run.restore(payload)
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        _unusable(partial, f"it does not fit the models ({type(err).__name__}: {str(err)[:120]})")
        return _Run(run.G, run.D, run.config)  # G and D were put back; optimisers and EMA start afresh
    return run


def _gan_step(
    run: _Run, X: torch.Tensor, device: torch.device, to_score: Callable, autocast: torch.dtype | None = None
) -> None:
    """One D step on a real batch and a detached fake batch, one G step on the same fakes through the updated D,
    one EMA update. With ``autocast`` the networks run under ``torch.autocast`` and the losses are taken on float32
    logits.

    G runs forward once per step (its graph is kept from the D step to the G step), and in the G step D's
    weights are frozen so that backpropagation computes only the gradient that reaches G: the update is the same
    as with D's gradients accumulated and discarded, for less work."""
    G, D, config = run.G, run.D, run.config
    loss_d_fn, loss_g_fn = LOSSES[config.loss]
    scale = config.lr_scale(run.step)
    for opt, lr in ((run.opt_d, config.lr_d), (run.opt_g, config.lr_g)):
        for group in opt.param_groups:
            group["lr"] = lr * scale
    B = config.batch_size
    idx = torch.randint(len(X), (B,), generator=run.data_gen)
    x_real = X[idx].to(device, non_blocking=True)  # (B, 1, 28, 28)
    z = sample_noise(B, latent_dim_of(G), run.noise_gen, device)  # (B, latent_dim)
    reduced = torch.autocast(torch.device(device).type, dtype=autocast, enabled=autocast is not None)
    # --- discriminator step: real vs fakes detached from G's graph
    with reduced:
        fake = G(z)  # (B, 1, 28, 28)
        logits_real, logits_fake = D(x_real).float(), D(fake.detach()).float()  # (B,), (B,)
    loss_d = loss_d_fn(logits_real, logits_fake)
    run.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    run.opt_d.step()
    # --- generator step: the same fakes through the updated D, gradients flow through D into G only
    trainable = [p for p in D.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        with reduced:
            logits_g = D(fake).float()
        loss_g = loss_g_fn(logits_g)
        run.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
    finally:
        for p in trainable:
            p.requires_grad_(True)
    run.opt_g.step()
    if run.G_ema is not None:
        run.G_ema.update_parameters(G)
    for key, value in (
        ("d_loss", loss_d),
        ("g_loss", loss_g),
        ("d_real", to_score(logits_real.detach()).mean()),
        ("d_fake", to_score(logits_fake.detach()).mean()),
    ):
        run.window[key] = run.window[key] + value.detach()  # tensors: no device sync per step
    run.num_in_window += 1
    run.step += 1


def _log(run: _Run, seconds: float) -> None:
    """Append the window's means at the current step, and the seconds since the start of training."""
    run.history["step"].append(run.step)
    for key in _WINDOW_KEYS:
        run.history[key].append(float(run.window[key]) / run.num_in_window)
        run.window[key] = 0.0
    run.history["time"].append(seconds)
    run.num_in_window = 0


def _run_callback(callback, run: _Run, G_eval: nn.Module) -> None:
    if callback is None:
        return
    was_training = G_eval.training
    value = callback(run.step, G_eval)
    G_eval.train(was_training)
    if value is not None:
        run.history["callback"].append((run.step, value))


def train_gan(
    G: nn.Module,
    D: nn.Module,
    X: torch.Tensor,
    config: GANTrainConfig | None = None,
    device: torch.device | None = None,
    entry: CacheEntry | None = None,
    callback: Callable[[int, nn.Module], object] | None = None,
    progress: bool = True,
) -> dict:
    """Alternate one D step and one G step, ``config.num_steps`` times; returns the history dict.

    ``X``: real images ``(N, 1, 28, 28)`` in [-1, 1] (see ``to_gan_range``), on any device; each minibatch
    is moved to ``device`` (default ``get_device()``), where G and D are trained. Minibatches and noise come
    from private generators seeded by ``config.seed`` (global random state is never used):

    - D step: minimise ``loss_D(D(x), D(G(z).detach()))``,
    - G step: minimise ``loss_G(D(G(z)))`` on the same z, through the updated D.

    History (NumPy and Python values): ``step`` (the logged steps) with, per logged step, ``d_loss``,
    ``g_loss`` (means over each ``log_every`` window), ``d_real``, ``d_fake`` (mean D score on real and on
    fake: a probability for the non-saturating loss) and ``time`` (seconds since the start of training, as
    in ``common.training.loop``); ``train_time`` (seconds spent in training steps, without sampling, the
    callback and checkpoints); ``samples`` (step -> ``(num_samples, 1, 28, 28)`` in [0, 1], all from one
    fixed noise batch), ``fixed_noise``, ``callback``, ``config``; ``resumed_from`` (the step this call
    started at) and ``G_ema``: with ``config.ema_decay`` the weight-averaged generator (see
    ``ema_generator``; BatchNorm recalibrated, eval mode), else None.

    ``callback(step, generator)`` (e.g. a scorer) runs every ``checkpoint_every`` steps and at the end, on
    ``G_ema`` if there is one, else on G; what it returns, if not None, is appended to ``history['callback']``
    as ``(step, value)`` (store numbers, arrays or tuples of them). With ``entry`` (a ``CacheEntry``), after
    each callback G, D, the average, both optimisers, the generators' states and the history are
    checkpointed to ``entry.partial``, and a usable checkpoint there is resumed exactly; the finished run is
    saved to ``entry`` and the partial checkpoint discarded.

    On a CPU the loop uses every core while the machine is otherwise idle (``common.config.LoadAwareThreads``);
    with ``$COURSE_THREADS`` set the thread count stays fixed, which makes runs repeat bit for bit. On a CPU with
    native bfloat16 the networks' forward passes run in it (``common.config.training_autocast_dtype``); weights,
    optimisers, the weight average and sampling stay in float32.
    """
    config = config or GANTrainConfig()
    _check_images(X, config)
    sample_steps = _sample_steps(config)
    device = device or get_device()
    G.to(device)
    D.to(device)
    run = _Run(G, D, config)
    if entry is not None:
        run = _resume(run, entry.partial)
    start_step = run.step
    to_score = torch.sigmoid if config.loss == "nonsaturating" else (lambda s: s)
    autocast = training_autocast_dtype(device)
    t0 = time.perf_counter()

    def seconds() -> float:  # since the start of training, across resumptions
        return run.elapsed + time.perf_counter() - t0

    def aside(fn, *args):  # run work that is not training, counting its time as overhead
        begin = time.perf_counter()
        try:
            return fn(*args)
        finally:
            run.overhead += time.perf_counter() - begin

    def record_samples(G_eval=None):
        if run.step in sample_steps and run.step not in run.history["samples"]:

            def sample():
                return generate(G_eval if G_eval is not None else run.evaluated(), run.history["fixed_noise"])

            run.history["samples"][run.step] = aside(sample)

    G.train()
    D.train()
    bar = tqdm(
        range(start_step, config.num_steps),
        desc="GAN steps",
        disable=not progress,
        initial=start_step,
        total=config.num_steps,
    )
    with LoadAwareThreads(device) as threads:
        for _ in bar:
            threads.poll()
            record_samples()
            _gan_step(run, X, device, to_score, autocast)
            if run.num_in_window == config.log_every or run.step == config.num_steps:
                _log(run, seconds())
                bar.set_postfix(d_loss=f"{run.history['d_loss'][-1]:.3f}", g_loss=f"{run.history['g_loss'][-1]:.3f}")
            if run.step % config.checkpoint_every == 0 and run.step < config.num_steps:
                aside(lambda: _run_callback(callback, run, run.evaluated()))
                if entry is not None:
                    run.elapsed, t0 = seconds(), time.perf_counter()
                    run.history["train_time"] = run.elapsed - run.overhead
                    aside(lambda: entry.partial.save(run.partial_payload()))
    final = aside(run.evaluated)  # recalibrated once for the last samples, the last callback and the result
    record_samples(final)
    aside(_run_callback, callback, run, final)
    run.elapsed, t0 = seconds(), time.perf_counter()
    run.history["train_time"] = run.elapsed - run.overhead
    if entry is not None:
        entry.save(run.final_payload())
        entry.partial.discard()
    return {**run.history, "resumed_from": start_step, "G_ema": None if run.G_ema is None else final.eval()}


# ----------------------------------------------------------------------------------------------------------
# Cache
# ----------------------------------------------------------------------------------------------------------


def gan_cache_entry(
    name: str, model_config, config: GANTrainConfig, X: torch.Tensor, root=None, precision: str = "float32"
) -> CacheEntry:
    """The cache file of a run: ``cache_dir()/gan/<name>-<key>.pt`` (``root`` replaces ``cache_dir()``), the
    key hashing the model config, the training config, the images, the precision it trains in
    (``common.config.training_precision``) and the code of the networks and of this module, so a stale result
    is never used."""
    code = code_version(gan_models, sys.modules[__name__])
    key = cache_key(model=model_config, train=config, data=X, precision=precision, code=code)
    return cache_entry("gan", name, key, root=root)


def _load_finished(
    entry: CacheEntry, G: nn.Module, D: nn.Module, config: GANTrainConfig, device: torch.device
) -> dict | None:
    """The history of the finished run at ``entry`` with G and D loaded, or None (then G, D are unchanged)."""
    payload = entry.load(required=_FINAL_KEYS)
    if payload is None:
        return None
    if payload["step"] != config.num_steps or payload["history"].get("config") != asdict(config):
        return _unusable(entry, f"it holds {payload['step']} steps of another training config")
    before = model_state(G), model_state(D)
    try:
        G.load_state_dict(payload["G"])
        D.load_state_dict(payload["D"])
        G.to(device)
        D.to(device)
        G_ema = None
        if payload["G_ema"] is not None:
            G_ema = ema_generator(G, config.ema_decay)
            G_ema.load_state_dict(payload["G_ema"])  # saved after the final BatchNorm recalibration
    except (RuntimeError, KeyError, TypeError, ValueError) as err:
        G.load_state_dict(before[0])
        D.load_state_dict(before[1])
        return _unusable(entry, f"it does not fit the models ({type(err).__name__}: {str(err)[:120]})")
    history = payload["history"]
    return {**history, "resumed_from": config.num_steps, "G_ema": None if G_ema is None else G_ema.module.eval()}


def train_gan_cached(
    G: nn.Module,
    D: nn.Module,
    X: torch.Tensor,
    config: GANTrainConfig | None = None,
    name: str = "gan",
    device: torch.device | None = None,
    callback: Callable[[int, nn.Module], object] | None = None,
    progress: bool = True,
    cache: bool = True,
    root=None,
) -> dict:
    """``train_gan`` whose result is cached at ``gan_cache_entry(name, G.config, config, X, root)``.

    A finished run is loaded into G and D without training (``history['from_cache']`` True; its
    ``callback`` values are those recorded when it was trained); an unfinished one (killed or interrupted)
    resumes from its last checkpoint; an unreadable file is warned about and rebuilt. ``cache=False``
    trains without reading or writing anything; ``root`` (for tests) replaces ``cache_dir()``.
    """
    config = config or GANTrainConfig()
    latent_dim_of(G)  # a clear error for a module that is not one of our generators
    device = device or get_device()
    entry = gan_cache_entry(name, G.config, config, X, root, training_precision(device)) if cache else None
    if entry is not None:
        history = _load_finished(entry, G, D, config, device)
        if history is not None:
            if progress:
                print(f"loaded from cache: {entry.path} (delete it to retrain)")
            return {**history, "from_cache": True}
    return {
        **train_gan(G, D, X, config, device=device, entry=entry, callback=callback, progress=progress),
        "from_cache": False,
    }
