"""GAN networks for 28x28 digits: the CS324 MLP generator/discriminator, a DCGAN-style conv pair, their
losses, noise, and sampling. Training lives in ``common.experiments.gan``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.config import make_generator

__all__ = [
    "GANConfig",
    "DCGANConfig",
    "Generator",
    "Discriminator",
    "DCGenerator",
    "DCDiscriminator",
    "build_gan",
    "sample_noise",
    "discriminator_loss",
    "generator_loss",
    "ls_discriminator_loss",
    "ls_generator_loss",
    "LOSSES",
    "to_gan_range",
    "from_gan_range",
    "generate",
    "interpolate_latents",
    "latent_dim_of",
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
    """A DCGAN-style conv pair for 28x28 with one fully connected hidden layer on each side (as in CS231n's):
    G maps z through a hidden layer to (2C, 7, 7) and upsamples twice with transposed convolutions; D mirrors
    it with strided convolutions and a hidden layer before its logit."""

    latent_dim: int = 100
    channels: int = 32  # C: width of the 14x14 stage; the 7x7 stage has 2C
    g_hidden: int = 256  # G: width of the fully connected layer between z and the (2C, 7, 7) projection
    d_hidden: int = 256  # D: width of the fully connected layer between the conv features and the logit
    negative_slope: float = 0.2
    img_shape: tuple[int, int, int] = (1, 28, 28)


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
        # One hidden layer per width in config.g_hidden: nn.Linear, nn.BatchNorm1d (all but the first),
        # nn.LeakyReLU(config.negative_slope); then nn.Linear to prod(config.img_shape) = 784 and nn.Tanh.
        # Register them as submodules (e.g. one nn.Sequential), in this order.
        ### BEGIN SOLUTION
        layers, in_dim = [], config.latent_dim
        for i, width in enumerate(config.g_hidden):
            layers.append(nn.Linear(in_dim, width))
            if i > 0:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.LeakyReLU(config.negative_slope))
            in_dim = width
        layers += [nn.Linear(in_dim, int(np.prod(config.img_shape))), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        ### END SOLUTION

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # z (N, latent_dim) through the layers, then reshaped to images (N, *config.img_shape).
        ### BEGIN SOLUTION
        images = self.net(z).view(z.shape[0], *self.config.img_shape)  # (N, 784) -> (N, 1, 28, 28)
        ### END SOLUTION
        return images


class Discriminator(nn.Module):
    """MLP discriminator: images ``(N, 1, 28, 28)`` -> logits ``(N,)`` (no sigmoid: losses take logits)."""

    def __init__(self, config: GANConfig | None = None):
        super().__init__()
        self.config = config = config or GANConfig()
        # From prod(config.img_shape) = 784 inputs: nn.Linear + nn.LeakyReLU(config.negative_slope) per width
        # in config.d_hidden, then nn.Linear to 1 output (no sigmoid: the losses take logits).
        ### BEGIN SOLUTION
        layers, in_dim = [], int(np.prod(config.img_shape))
        for width in config.d_hidden:
            layers += [nn.Linear(in_dim, width), nn.LeakyReLU(config.negative_slope)]
            in_dim = width
        layers.append(nn.Linear(in_dim, 1))
        self.net = nn.Sequential(*layers)
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flatten each image to a row of 784 pixels, apply the layers, and drop the last axis: logits (N,).
        ### BEGIN SOLUTION
        logits = self.net(x.flatten(1)).squeeze(1)  # (N, 1, 28, 28) -> (N, 784) -> (N, 1) -> (N,)
        ### END SOLUTION
        return logits


class DCGenerator(nn.Module):
    """DCGAN-style generator: ``z (N, latent_dim)`` -> ``(N, 1, 28, 28)`` in [-1, 1].

    A fully connected hidden layer, then a linear projection to (2C, 7, 7), then two stride-2 4x4 transposed
    convolutions (7 -> 14 -> 28); BatchNorm and ReLU after every layer but the last, Tanh at the end. The
    hidden layer lets the layout of the 7x7 map (which digit, where its strokes go) be a non-linear function
    of z; without it, a single linear map from z has to place every stroke. The kernel size is a multiple of
    the stride, so every output pixel gets the same number of kernel taps (no checkerboard from uneven
    overlap). Nearest-neighbour upsampling followed by a 3x3 conv does the same job but is slower on the CPU
    (bench/RESULTS.md).
    """

    def __init__(self, config: DCGANConfig | None = None):
        super().__init__()
        self.config = config = config or DCGANConfig()
        C = config.channels
        # z through nn.Linear to config.g_hidden and on to 2C*7*7 values, each followed by nn.BatchNorm1d and
        # nn.ReLU (no bias: BatchNorm's shift replaces it); then two nn.ConvTranspose2d with kernel 4 and
        # stride 2 (2C -> C -> img_shape[0] channels; pick the padding that doubles the side, 7 -> 14 -> 28),
        # nn.BatchNorm2d and nn.ReLU between them, nn.Tanh at the end.
        ### BEGIN SOLUTION
        self.project = nn.Sequential(
            nn.Linear(config.latent_dim, config.g_hidden, bias=False),
            nn.BatchNorm1d(config.g_hidden),
            nn.ReLU(),
            nn.Linear(config.g_hidden, 2 * C * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * C * 7 * 7),
            nn.ReLU(),
        )
        self.up = nn.Sequential(
            nn.ConvTranspose2d(2 * C, C, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(C),
            nn.ReLU(),
            nn.ConvTranspose2d(C, config.img_shape[0], 4, stride=2, padding=1),
            nn.Tanh(),
        )
        ### END SOLUTION

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        # Project z (N, latent_dim), reshape to (N, 2C, 7, 7), upsample to images (N, 1, 28, 28).
        ### BEGIN SOLUTION
        h = self.project(z).view(z.shape[0], 2 * self.config.channels, 7, 7)  # (N, H) -> (N, 2C*49) -> (N, 2C, 7, 7)
        images = self.up(h)  # (N, 2C, 7, 7) -> (N, C, 14, 14) -> (N, 1, 28, 28)
        ### END SOLUTION
        return images


class DCDiscriminator(nn.Module):
    """DCGAN-style discriminator: ``(N, 1, 28, 28)`` -> logits ``(N,)``; strided 4x4 convs, then a fully
    connected hidden layer that sees the whole image before the logit, LeakyReLU throughout.

    The convolutions judge strokes locally; the hidden layer lets D judge their arrangement (is this a whole
    digit?) non-linearly, which a single linear read-out of the conv features cannot.
    """

    def __init__(self, config: DCGANConfig | None = None):
        super().__init__()
        self.config = config = config or DCGANConfig()
        C, slope = config.channels, config.negative_slope
        # Two nn.Conv2d with kernel 4 and stride 2 (img_shape[0] -> C -> 2C channels; the padding that halves
        # the side, 28 -> 14 -> 7), nn.LeakyReLU(slope) after each and nn.BatchNorm2d before the second
        # LeakyReLU; then a head on the flattened 2C*7*7 features: nn.Linear to config.d_hidden,
        # nn.LeakyReLU(slope), nn.Linear to 1 logit.
        ### BEGIN SOLUTION
        self.features = nn.Sequential(
            nn.Conv2d(config.img_shape[0], C, 4, stride=2, padding=1),
            nn.LeakyReLU(slope),
            nn.Conv2d(C, 2 * C, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * C),
            nn.LeakyReLU(slope),
        )
        hidden = config.d_hidden
        self.head = nn.Sequential(nn.Linear(2 * C * 7 * 7, hidden), nn.LeakyReLU(slope), nn.Linear(hidden, 1))
        ### END SOLUTION

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Convolutions, flatten each sample, the fully connected head, drop the last axis: logits (N,).
        ### BEGIN SOLUTION
        h = self.features(x)  # (N, 1, 28, 28) -> (N, C, 14, 14) -> (N, 2C, 7, 7)
        logits = self.head(h.flatten(1)).squeeze(1)  # (N, 2C*49) -> (N, H) -> (N, 1) -> (N,)
        ### END SOLUTION
        return logits


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


def sample_noise(
    batch_size: int, dim: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """Latent codes ``z ~ N(0, I)`` of shape ``(batch_size, dim)``, drawn on the CPU from ``generator``
    (``None``: a fresh generator seeded from the operating system; global random state is never used) and
    then moved to ``device``, so the codes for a seed are the same on every device."""
    if batch_size < 1 or dim < 1:
        raise ValueError(f"batch_size and dim must be positive, got batch_size={batch_size}, dim={dim}")
    z = torch.randn(batch_size, dim, generator=generator if generator is not None else make_generator(None))
    return z if device is None else z.to(device)


def discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of D: ``-mean log D(x) - mean log(1 - D(G(z)))``, with ``D = sigmoid(logits)``.

    ``logits_real (N,)``, ``logits_fake (M,)``; computed from logits for numerical stability. Returns a
    scalar tensor.
    """
    # Real images should be classified 1, fakes 0: one mean binary cross-entropy per batch, summed. Work on
    # the logits (F.binary_cross_entropy_with_logits), never log(sigmoid(...)), which overflows.
    ### BEGIN SOLUTION
    loss = F.binary_cross_entropy_with_logits(logits_real, torch.ones_like(logits_real))
    loss = loss + F.binary_cross_entropy_with_logits(logits_fake, torch.zeros_like(logits_fake))
    ### END SOLUTION
    return loss


def generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss ``-mean log D(G(z))`` (instead of minimising ``mean log(1 - D(G(z)))``).

    ``logits_fake (M,)``: D's logits on generated images. Returns a scalar tensor.
    """
    # The generator wants its fakes classified as real (1): a mean binary cross-entropy on the logits.
    ### BEGIN SOLUTION
    loss = F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake))
    ### END SOLUTION
    return loss


def ls_discriminator_loss(scores_real: torch.Tensor, scores_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of D: ``0.5 mean (D(x) - 1)^2 + 0.5 mean D(G(z))^2`` on raw scores.

    ``scores_real (N,)``, ``scores_fake (M,)``: D's raw outputs (no sigmoid). Returns a scalar tensor.
    """
    # Squared distance of the real scores to 1 and of the fake scores to 0, each a mean over its batch.
    ### BEGIN SOLUTION
    loss = 0.5 * ((scores_real - 1) ** 2).mean() + 0.5 * (scores_fake**2).mean()
    ### END SOLUTION
    return loss


def ls_generator_loss(scores_fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of G: ``0.5 mean (D(G(z)) - 1)^2``.

    ``scores_fake (M,)``: D's raw outputs on generated images. Returns a scalar tensor.
    """
    # The generator pulls the scores of its fakes towards 1 (the target of real images).
    ### BEGIN SOLUTION
    loss = 0.5 * ((scores_fake - 1) ** 2).mean()
    ### END SOLUTION
    return loss


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
def generate(
    G: nn.Module,
    z: torch.Tensor | None = None,
    num: int | None = None,
    seed: int = 0,
    batch_size: int = 500,
    device: torch.device | None = None,
) -> np.ndarray:
    """Images ``(N, 1, 28, 28)`` in [0, 1] from G in eval mode, for given codes ``z`` or ``num`` fresh ones.

    Fresh codes come from a ``torch.Generator`` seeded with ``seed``. Each batch of codes is moved to
    ``device`` (default: G's device); the images come back as NumPy. G's train/eval mode is restored.
    """
    if (z is None) == (num is None):
        raise ValueError("pass exactly one of z (latent codes) or num (how many images to draw)")
    latent_dim = latent_dim_of(G)
    if z is None:
        z = sample_noise(num, latent_dim, make_generator(seed))
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"z must have shape (N, {latent_dim}), got {tuple(z.shape)}")
    device = device or next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        out = [from_gan_range(G(chunk.to(device))) for chunk in z.split(batch_size)]  # (B, 1, 28, 28) each
    finally:
        G.train(was_training)
    return np.concatenate(out)


def interpolate_latents(
    z0: torch.Tensor, z1: torch.Tensor, num_steps: int = 7, spherical: bool = False
) -> torch.Tensor:
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


def latent_dim_of(G: nn.Module) -> int:
    """The latent size of a ``Generator`` or ``DCGenerator`` (a clear error for any other module)."""
    config = getattr(G, "config", None)
    if config is None or not hasattr(config, "latent_dim"):
        raise ValueError("G must be a Generator or DCGenerator (a module with config.latent_dim)")
    return config.latent_dim
