"""GANs for 28x28 digits: the CS324 MLP generator/discriminator, a DCGAN-style conv pair, losses, training loop."""
from __future__ import annotations

import inspect
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn
from tqdm.auto import tqdm

from common.checkpoint import atomic_torch_save, checkpoint_key
from common.config import get_device

__all__ = [
    "GANConfig", "DCGANConfig", "GANTrainConfig",
    "Generator", "Discriminator", "DCGenerator", "DCDiscriminator", "build_gan",
    "sample_noise", "discriminator_loss", "generator_loss", "ls_discriminator_loss", "ls_generator_loss",
    "LOSSES", "to_gan_range", "from_gan_range", "generate", "interpolate_latents",
    "ema_generator", "recalibrate_batchnorm", "train_gan", "train_gan_cached", "config_key",
]


# ----------------------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------------------

@dataclass
class GANConfig:
    """The CS324 MLP GAN: G is latent_dim -> 128 -> 256 -> 512 -> 1024 -> 784, D is 784 -> 512 -> 256 -> 1."""

    latent_dim: int = 100
    g_hidden: tuple[int, ...] = (128, 256, 512, 1024)
    d_hidden: tuple[int, ...] = (512, 256)
    negative_slope: float = 0.2  # LeakyReLU slope in both networks
    img_shape: tuple[int, int, int] = (1, 28, 28)


@dataclass
class DCGANConfig:
    """A DCGAN-style conv pair for 28x28: G projects z to (2C, 7, 7) and upsamples twice with transposed
    convolutions; D mirrors it with strided convolutions."""

    latent_dim: int = 100
    channels: int = 32  # C: width of the 14x14 stage; the 7x7 stage has 2C
    negative_slope: float = 0.2
    img_shape: tuple[int, int, int] = (1, 28, 28)


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
    log_every: int = 10  # record mean losses every this many steps
    checkpoint_every: int = 1000  # steps between checkpoints (when a checkpoint path is given)
    seed: int = 0  # seeds the parameter init, the minibatches, the noise and the fixed sample noise

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        for name in ("num_steps", "batch_size", "num_samples", "log_every", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) (e.g. 0.999) or be None, got {self.ema_decay}")


# ----------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------

class Generator(nn.Module):
    """MLP generator: ``z (N, latent_dim)`` -> images ``(N, 1, 28, 28)`` in [-1, 1].

    Each hidden layer is Linear -> BatchNorm1d -> LeakyReLU(0.2) (no BatchNorm on the first, as in
    CS324 and the DCGAN paper's advice not to normalise the input layer); the output is Linear -> Tanh.
    """

    def __init__(self, config: GANConfig | None = None):
        super().__init__()
        self.config = config = config or GANConfig()
        layers, in_dim = [], config.latent_dim
        for i, width in enumerate(config.g_hidden):
            layers.append(nn.Linear(in_dim, width))
            if i > 0:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(config.negative_slope))
            in_dim = width
        layers += [nn.Linear(in_dim, int(np.prod(config.img_shape))), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.config.img_shape)  # (N, D) -> (N, 1, 28, 28)


class Discriminator(nn.Module):
    """MLP discriminator: images ``(N, 1, 28, 28)`` -> logits ``(N,)`` (no sigmoid: losses take logits)."""

    def __init__(self, config: GANConfig | None = None):
        super().__init__()
        self.config = config = config or GANConfig()
        layers, in_dim = [], int(np.prod(config.img_shape))
        for width in config.d_hidden:
            layers += [nn.Linear(in_dim, width), nn.LeakyReLU(config.negative_slope)]
            in_dim = width
        layers.append(nn.Linear(in_dim, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).squeeze(1)  # (N, 1, 28, 28) -> (N, 784) -> (N,)


class DCGenerator(nn.Module):
    """DCGAN-style generator: ``z (N, latent_dim)`` -> ``(N, 1, 28, 28)`` in [-1, 1].

    Linear to (2C, 7, 7), then two stride-2 4x4 transposed convolutions (7 -> 14 -> 28), BatchNorm and
    ReLU in between, Tanh at the end. The kernel size is a multiple of the stride, so every output pixel
    gets the same number of kernel taps (no checkerboard from uneven overlap). Nearest-neighbour
    upsampling followed by a 3x3 conv does the same job but was twice as slow on the CPU.
    """

    def __init__(self, config: DCGANConfig | None = None):
        super().__init__()
        self.config = config = config or DCGANConfig()
        C = config.channels
        self.project = nn.Sequential(nn.Linear(config.latent_dim, 2 * C * 7 * 7, bias=False),
                                     nn.BatchNorm1d(2 * C * 7 * 7), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * C, C, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(C), nn.ReLU(),
            nn.ConvTranspose2d(C, config.img_shape[0], 4, stride=2, padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.project(z).view(z.shape[0], 2 * self.config.channels, 7, 7)  # (N, 2C, 7, 7)
        return self.up(h)  # (N, 2C, 7, 7) -> (N, C, 14, 14) -> (N, 1, 28, 28)


class DCDiscriminator(nn.Module):
    """DCGAN-style discriminator: ``(N, 1, 28, 28)`` -> logits ``(N,)``; strided 4x4 convs, LeakyReLU."""

    def __init__(self, config: DCGANConfig | None = None):
        super().__init__()
        self.config = config = config or DCGANConfig()
        C, slope = config.channels, config.negative_slope
        self.features = nn.Sequential(
            nn.Conv2d(config.img_shape[0], C, 4, stride=2, padding=1), nn.LeakyReLU(slope),
            nn.Conv2d(C, 2 * C, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * C), nn.LeakyReLU(slope),
        )
        self.head = nn.Linear(2 * C * 7 * 7, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x)  # (N, 1, 28, 28) -> (N, C, 14, 14) -> (N, 2C, 7, 7)
        return self.head(h.flatten(1)).squeeze(1)  # (N, 2C*49) -> (N,)


def build_gan(config: GANConfig | DCGANConfig, seed: int | None = None) -> tuple[nn.Module, nn.Module]:
    """``(generator, discriminator)`` for an MLP (``GANConfig``) or conv (``DCGANConfig``) configuration.

    With ``seed``, the parameters are initialised from a forked RNG, leaving global state untouched.
    """
    if isinstance(config, DCGANConfig):
        classes = (DCGenerator, DCDiscriminator)
    elif isinstance(config, GANConfig):
        classes = (Generator, Discriminator)
    else:
        raise TypeError(f"config must be a GANConfig or DCGANConfig, got {type(config).__name__}")
    if seed is None:
        return classes[0](config), classes[1](config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return classes[0](config), classes[1](config)


# ----------------------------------------------------------------------------------------------------------
# Noise and losses
# ----------------------------------------------------------------------------------------------------------

def sample_noise(batch_size: int, dim: int, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """Latent codes ``z ~ N(0, I)`` of shape ``(batch_size, dim)``, drawn from ``generator`` if given."""
    if batch_size < 1 or dim < 1:
        raise ValueError(f"batch_size and dim must be positive, got batch_size={batch_size}, dim={dim}")
    z = torch.randn(batch_size, dim, generator=generator)
    return z if device is None else z.to(device)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D: ``-mean log D(x) - mean log(1 - D(G(z)))``, with ``D = sigmoid(logits)``.

    ``logits_real (N,)``, ``logits_fake (M,)``; computed from logits for numerical stability.
    """
    return (F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
            + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake)))


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-mean log D(G(z))`` (instead of minimising ``mean log(1 - D(G(z)))``)."""
    return F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))


def ls_discriminator_loss(scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of D: ``0.5 mean (D(x) - 1)^2 + 0.5 mean D(G(z))^2`` on raw scores."""
    return 0.5 * ((scores_real - 1) ** 2).mean() + 0.5 * (scores_fake ** 2).mean()


def ls_generator_loss(scores_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of G: ``0.5 mean (D(G(z)) - 1)^2``."""
    return 0.5 * ((scores_fake - 1) ** 2).mean()


#: loss name -> (discriminator loss, generator loss)
LOSSES = {
    "nonsaturating": (discriminator_loss, generator_loss),
    "least_squares": (ls_discriminator_loss, ls_generator_loss),
}


# ----------------------------------------------------------------------------------------------------------
# Data range, sampling, interpolation
# ----------------------------------------------------------------------------------------------------------

def to_gan_range(X: np.ndarray) -> torch.Tensor:
    """uint8 images ``(N, 1, 28, 28)`` in [0, 255] -> float32 tensor in [-1, 1] (the range of Tanh)."""
    X = np.asarray(X)
    if X.dtype != np.uint8:
        raise ValueError(f"X must be uint8 images in [0, 255] (as load_mnist returns), got dtype {X.dtype}")
    return torch.from_numpy(X.astype(np.float32) / 127.5 - 1.0)


def from_gan_range(x: torch.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] -> float32 NumPy images in [0, 1] for plotting and the classifier."""
    return ((x.detach().cpu().float() + 1) / 2).clamp(0, 1).numpy()


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor | None = None, num: int | None = None, seed: int = 0,
             batch_size: int = 500) -> np.ndarray:
    """Images ``(N, 1, 28, 28)`` in [0, 1] from G in eval mode, for given codes ``z`` or ``num`` fresh ones.

    Fresh codes come from a ``torch.Generator`` seeded with ``seed``. G's train/eval mode is restored.
    """
    if (z is None) == (num is None):
        raise ValueError("pass exactly one of z (latent codes) or num (how many images to draw)")
    latent_dim = _latent_dim(G)
    if z is None:
        z = sample_noise(num, latent_dim, torch.Generator().manual_seed(seed))
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"z must have shape (N, {latent_dim}), got {tuple(z.shape)}")
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        out = [from_gan_range(G(chunk.to(device))) for chunk in z.split(batch_size)]
    finally:
        G.train(was_training)
    return np.concatenate(out)


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, num_steps: int = 7,
                        spherical: bool = False) -> torch.Tensor:
    """``num_steps + 2`` codes from ``z0`` to ``z1`` inclusive: ``z_t = (1 - t) z0 + t z1``, t evenly spaced.

    ``z0, z1``: ``(D,)``. Returns ``(num_steps + 2, D)``. With ``spherical``, slerp instead, which keeps
    the norm typical of a Gaussian code: ``z_t = sin((1-t)w)/sin(w) z0 + sin(tw)/sin(w) z1``.
    """
    if z0.shape != z1.shape or z0.ndim != 1:
        raise ValueError(f"z0 and z1 must be 1-D codes of the same shape, got {tuple(z0.shape)}, {tuple(z1.shape)}")
    if num_steps < 0:
        raise ValueError(f"num_steps (codes strictly between z0 and z1) must be >= 0, got {num_steps}")
    t = torch.linspace(0, 1, num_steps + 2, dtype=z0.dtype, device=z0.device)[:, None]  # (S, 1)
    if not spherical:
        return (1 - t) * z0 + t * z1  # (S, D)
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm())
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def _latent_dim(G: nn.Module) -> int:
    config = getattr(G, "config", None)
    if config is None or not hasattr(config, "latent_dim"):
        raise ValueError("G must be a Generator or DCGenerator (a module with config.latent_dim)")
    return config.latent_dim


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
    if not 0 < decay < 1:
        raise ValueError(f"decay must lie in (0, 1), got {decay}")

    def lerp_all(averaged: list, current: list, num_averaged) -> None:
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1 - min(decay, (1 + n) / (10 + n)))

    return AveragedModel(G, multi_avg_fn=lerp_all)


def recalibrate_batchnorm(G: nn.Module, num_batches: int = 10, batch_size: int = 500, seed: int = 0) -> nn.Module:
    """Re-estimate G's BatchNorm running statistics on ``num_batches`` batches of fresh noise
    (``torch.optim.swa_utils.update_bn``) and return G. An averaged generator needs this: its weights never
    produced the statistics it holds. The noise comes from its own seeded generator (global RNG untouched).
    """
    gen = torch.Generator().manual_seed(seed)
    batches = [sample_noise(batch_size, _latent_dim(G), gen) for _ in range(num_batches)]
    update_bn(batches, G, device=next(G.parameters()).device)
    return G


# ----------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------

def _sample_steps(config: GANTrainConfig) -> list[int]:
    if config.sample_steps is None:
        return sorted({0, config.num_steps // 2, config.num_steps})
    bad = [s for s in config.sample_steps if not 0 <= s <= config.num_steps]
    if bad:
        raise ValueError(f"sample_steps must lie in [0, num_steps={config.num_steps}], got {bad}")
    return sorted(set(config.sample_steps))


def train_gan(G: nn.Module, D: nn.Module, X: torch.Tensor, config: GANTrainConfig | None = None,
              device: torch.device | None = None, checkpoint_path: str | Path | None = None,
              callback: Callable[[int, nn.Module], object] | None = None, progress: bool = True) -> dict:
    """Alternate one D step and one G step, ``config.num_steps`` times; returns the history dict.

    ``X``: real images ``(N, 1, 28, 28)`` in [-1, 1] (see ``to_gan_range``). Each step draws a minibatch
    of X and a batch of noise from generators seeded by ``config.seed``:

    - D step: minimise ``loss_D(D(x), D(G(z).detach()))``,
    - G step: minimise ``loss_G(D(G(z)))`` with fresh z.

    History: ``step`` (the logged steps), ``d_loss``, ``g_loss`` (means over each ``log_every`` window),
    ``d_real``, ``d_fake`` (mean D score on real and on fake: a probability for the non-saturating loss),
    ``samples`` (step -> ``(num_samples, 1, 28, 28)`` in [0, 1], all from one fixed noise batch),
    ``fixed_noise``, ``time`` (seconds of training) and ``G_ema``: with ``config.ema_decay`` the
    weight-averaged generator (see ``ema_generator``; BatchNorm recalibrated, eval mode), else None.
    The samples and the callback use ``G_ema`` when there is one, G otherwise. With ``checkpoint_path``,
    G, D, the average, both optimisers and the history are saved there every ``checkpoint_every`` steps
    and at the end, and an unfinished checkpoint at that path is resumed (its config must match).
    ``callback(step, generator)`` (e.g. a scorer) runs at the same steps; what it returns, if not None,
    is appended to ``history['callback']`` as ``(step, value)``.
    """
    config = config or GANTrainConfig()
    if not isinstance(X, torch.Tensor) or X.ndim != 4 or X.dtype != torch.float32:
        raise ValueError("X must be a float32 tensor of images (N, C, H, W) in [-1, 1]; use to_gan_range(X_uint8)")
    if X.min() < -1.0001 or X.max() > 1.0001:
        raise ValueError(f"X must lie in [-1, 1] (the range of Tanh), got [{X.min():.3g}, {X.max():.3g}]")
    if len(X) < config.batch_size:
        raise ValueError(f"X has {len(X)} images, fewer than batch_size={config.batch_size}")
    device = device or get_device()
    G.to(device)
    D.to(device)
    latent_dim = _latent_dim(G)
    loss_d_fn, loss_g_fn = LOSSES[config.loss]
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr_g, betas=config.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr_d, betas=config.betas)
    G_ema = None if config.ema_decay is None else ema_generator(G, config.ema_decay)
    data_gen = torch.Generator().manual_seed(config.seed)
    noise_gen = torch.Generator().manual_seed(config.seed + 1)
    fixed_noise = sample_noise(config.num_samples, latent_dim, torch.Generator().manual_seed(config.seed + 2))
    history = {"step": [], "d_loss": [], "g_loss": [], "d_real": [], "d_fake": [], "samples": {},
               "callback": [], "fixed_noise": fixed_noise, "time": 0.0, "config": asdict(config)}
    start_step = 0
    if checkpoint_path is not None and Path(checkpoint_path).is_file():
        state = torch.load(checkpoint_path, map_location=device, weights_only=False)
        if state["history"]["config"] != asdict(config):
            raise ValueError(f"checkpoint {checkpoint_path} was written with another training config; "
                             "delete it or pass another checkpoint_path")
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if G_ema is not None:
            G_ema.load_state_dict(state["G_ema"])
        data_gen.set_state(state["data_gen"])
        noise_gen.set_state(state["noise_gen"])
        history, start_step = state["history"], state["step"]
    sample_steps = _sample_steps(config)

    def evaluated() -> nn.Module:  # the generator we sample from and score
        return G if G_ema is None else recalibrate_batchnorm(G_ema.module)

    to_score = torch.sigmoid if config.loss == "nonsaturating" else (lambda s: s)
    window = {"d_loss": 0.0, "g_loss": 0.0, "d_real": 0.0, "d_fake": 0.0}
    num_in_window = 0
    G.train()
    D.train()
    begin = time.perf_counter() - history["time"]
    bar = tqdm(range(start_step, config.num_steps), desc="GAN steps", disable=not progress,
               initial=start_step, total=config.num_steps)
    for step in bar:
        if step in sample_steps and step not in history["samples"]:
            history["samples"][step] = generate(evaluated(), fixed_noise)
        idx = torch.randint(len(X), (config.batch_size,), generator=data_gen)
        x_real = X[idx].to(device)  # (B, 1, 28, 28)
        z = sample_noise(2 * config.batch_size, latent_dim, noise_gen, device)
        # --- discriminator step: real vs detached fakes
        x_fake = G(z[:config.batch_size])
        logits_real, logits_fake = D(x_real), D(x_fake.detach())
        loss_d = loss_d_fn(logits_real, logits_fake)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # --- generator step: fresh fakes, gradients flow through D into G
        logits_gen = D(G(z[config.batch_size:]))
        loss_g = loss_g_fn(logits_gen)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if G_ema is not None:
            G_ema.update_parameters(G)
        window["d_loss"] += loss_d.item()
        window["g_loss"] += loss_g.item()
        window["d_real"] += to_score(logits_real.detach()).mean().item()
        window["d_fake"] += to_score(logits_fake.detach()).mean().item()
        num_in_window += 1
        if num_in_window == config.log_every or step == config.num_steps - 1:
            history["step"].append(step + 1)
            for key in window:
                history[key].append(window[key] / num_in_window)
                window[key] = 0.0
            num_in_window = 0
            bar.set_postfix(d_loss=f"{history['d_loss'][-1]:.3f}", g_loss=f"{history['g_loss'][-1]:.3f}")
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.num_steps:
            history["time"] = time.perf_counter() - begin
            if checkpoint_path is not None:
                _save_checkpoint(checkpoint_path, G, D, G_ema, opt_g, opt_d, data_gen, noise_gen, history, step + 1)
            _run_callback(callback, step + 1, evaluated(), history)
            begin = time.perf_counter() - history["time"]  # the callback's time is not training time
    final = evaluated()  # recalibrated once for the last samples, the last callback and the return value
    if config.num_steps in sample_steps and config.num_steps not in history["samples"]:
        history["samples"][config.num_steps] = generate(final, fixed_noise)
    history["time"] = time.perf_counter() - begin
    if start_step < config.num_steps:
        _run_callback(callback, config.num_steps, final, history)
    if checkpoint_path is not None:
        _save_checkpoint(checkpoint_path, G, D, G_ema, opt_g, opt_d, data_gen, noise_gen, history, config.num_steps)
    return {**history, "G_ema": None if G_ema is None else final.eval()}


def _run_callback(callback, step: int, G: nn.Module, history: dict) -> None:
    if callback is None:
        return
    was_training = G.training
    value = callback(step, G)
    G.train(was_training)
    if value is not None:
        history["callback"].append((step, value))


def _save_checkpoint(path, G, D, G_ema, opt_g, opt_d, data_gen, noise_gen, history, step) -> None:
    """Everything needed to resume, written atomically (an interrupted save never leaves a bad file)."""
    atomic_torch_save({"G": G.state_dict(), "D": D.state_dict(), "G_ema": None if G_ema is None else G_ema.state_dict(),
                       "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "data_gen": data_gen.get_state(),
                       "noise_gen": noise_gen.get_state(), "history": history, "step": step}, path)


def config_key(*configs, extra: str = "") -> str:
    """A short hash of dataclass configs, this module's source and ``extra``: a cache key that changes
    whenever the models, the training loop or the settings change."""
    return checkpoint_key(configs=list(configs), extra=extra, source=inspect.getsource(inspect.getmodule(config_key)))


def train_gan_cached(G: nn.Module, D: nn.Module, X: torch.Tensor, config: GANTrainConfig,
                     cache_dir: str | Path | None, name: str, device: torch.device | None = None,
                     callback: Callable[[int, nn.Module], object] | None = None, progress: bool = True) -> dict:
    """``train_gan`` with its checkpoint at ``cache_dir/<name>-<key>.pt``, the key hashing the model
    config, the training config, the data size and this module's source, so a stale cache is never used.

    A finished checkpoint is loaded (no training; ``history['from_cache']`` is True); an unfinished one
    is resumed. ``cache_dir=None`` trains without any cache (``history['from_cache']`` False).
    """
    if cache_dir is None:
        history = train_gan(G, D, X, config, device=device, callback=callback, progress=progress)
        history["from_cache"] = False
        return history
    key = config_key(G.config, config, extra=f"{tuple(X.shape)}")
    path = Path(cache_dir) / f"{name}-{key}.pt"
    device = device or get_device()
    if path.is_file():
        state = torch.load(path, map_location=device, weights_only=False)
        if state["step"] == config.num_steps:
            G.load_state_dict(state["G"])
            D.load_state_dict(state["D"])
            G.to(device)
            D.to(device)
            history = state["history"]
            history["G_ema"] = None
            if state["G_ema"] is not None:
                G_ema = ema_generator(G, config.ema_decay)
                G_ema.load_state_dict(state["G_ema"])  # saved after the final BatchNorm recalibration
                history["G_ema"] = G_ema.module.eval()
            history["from_cache"] = True
            return history
    history = train_gan(G, D, X, config, device=device, checkpoint_path=path, callback=callback, progress=progress)
    history["from_cache"] = False
    return history
