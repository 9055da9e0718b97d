"""Batch-wise image augmentation on tensors: normalise, random crop, flip, rotation."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from common.config import make_generator

__all__ = [
    "channel_stats",
    "to_tensor",
    "normalize",
    "denormalize",
    "random_crop",
    "random_flip",
    "rotate",
    "random_rotation",
    "Augment",
]


def channel_stats(X) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of images ``X (N, C, H, W)`` (uint8 is scaled to [0, 1] first).

    Returns ``mean, std``, each ``(C,)`` float32. Compute them on the training set only.
    """
    X = to_tensor(X)
    dims = (0, 2, 3)
    mean = X.mean(dim=dims, dtype=torch.float64)
    std = X.to(torch.float64).std(dim=dims)
    return mean.float(), std.clamp_min(1e-8).float()


def to_tensor(X, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images ``X (N, C, H, W)`` as a float tensor; uint8 pixels are scaled to [0, 1]."""
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X if X.flags.writeable else X.copy())  # read-only arrays (np.frombuffer) are copied
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a NumPy array or a torch tensor, got {type(X).__name__}")
    if X.ndim != 4:
        raise ValueError(f"X must be images of shape (N, C, H, W), got shape {tuple(X.shape)}")
    if X.dtype == torch.uint8:
        return X.to(dtype) / 255.0
    return X.to(dtype)


def _check_stats(x: torch.Tensor, mean, std) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.as_tensor(mean, dtype=x.dtype, device=x.device).reshape(-1)
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device).reshape(-1)
    C = x.shape[1]
    if mean.numel() != C or std.numel() != C:
        raise ValueError(f"mean and std must have one value per channel ({C}), got {mean.numel()} and {std.numel()}")
    return mean.view(1, C, 1, 1), std.view(1, C, 1, 1)


def normalize(X, mean, std) -> torch.Tensor:
    """``(x - mean[c]) / std[c]`` per channel; ``X (N, C, H, W)`` (uint8 scaled to [0, 1] first), mean/std ``(C,)``."""
    x = to_tensor(X)
    mean, std = _check_stats(x, mean, std)
    return (x - mean) / std


def denormalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Inverse of ``normalize``: back to [0, 1] pixels (for display), ``(N, C, H, W)``."""
    mean, std = _check_stats(x, mean, std)
    return x * std + mean


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """Random ``H x W`` crop of each image zero-padded (``fill``) by ``padding`` on every side.

    ``x (N, C, H, W)`` -> ``(N, C, H, W)``; one offset pair per image, drawn from ``generator`` (None: a
    fresh one seeded by the operating system; the global generator is never used).
    Batch-wise: the images that share an offset are copied with one slice, so there are at most
    ``(2 * padding + 1) ** 2`` copies per batch whatever its size.
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if padding == 0:
        return x
    N, C, H, W = x.shape
    padded = x.new_full((N, C, H + 2 * padding, W + 2 * padding), fill)
    padded[:, :, padding : padding + H, padding : padding + W] = x
    generator = generator if generator is not None else make_generator(None)
    offsets = torch.randint(0, 2 * padding + 1, (2, N), generator=generator)  # (2, N): rows, cols
    code = offsets[0] * (2 * padding + 1) + offsets[1]  # (N,) one code per offset pair
    out = torch.empty_like(x)
    for c in torch.unique(code).tolist():
        idx = (code == c).nonzero(as_tuple=True)[0]
        i, j = divmod(c, 2 * padding + 1)
        out[idx] = padded[idx, :, i : i + H, j : j + W]
    return out


def random_flip(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image of ``x (N, C, H, W)`` left-right with probability ``p`` (one draw per image, from
    ``generator``; None: a fresh one seeded by the operating system, never the global generator)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p}")
    generator = generator if generator is not None else make_generator(None)
    flip = torch.rand(x.shape[0], generator=generator) < p  # (N,)
    return torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)


def rotate(x: torch.Tensor, degrees, fill: float = 0.0) -> torch.Tensor:
    """Rotate each image of ``x (N, C, H, W)`` counter-clockwise (as displayed, row 0 at the top) by
    ``degrees`` (a number, or one angle per image ``(N,)``) about its centre; bilinear interpolation, and
    ``fill`` where the rotated image does not cover the frame. Returns ``(N, C, H, W)``.

    One ``affine_grid`` + ``grid_sample`` for the whole batch. The rotation is in pixel units, so a
    non-square image is rotated, not sheared; 90 degrees on a square image is ``torch.rot90(x, 1, (2, 3))``
    up to interpolation.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"x must be float images (N, C, H, W), got {x.dtype} of shape {tuple(x.shape)}")
    N, C, H, W = x.shape
    angles = torch.as_tensor(degrees, dtype=x.dtype, device=x.device) * (math.pi / 180.0)
    if angles.ndim == 0:
        angles = angles.expand(N)
    if angles.shape != (N,):
        raise ValueError(f"degrees must be a number or one angle per image ({N},), got shape {tuple(angles.shape)}")
    cos, sin = angles.cos(), angles.sin()  # (N,) each
    # theta maps output to input positions in [-1, 1] coordinates (x right, y down); rotating in pixel units
    # means scaling the off-diagonal terms by the aspect ratio.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * (H / W), torch.zeros_like(cos)], dim=1),
            torch.stack([sin * (W / H), cos, torch.zeros_like(cos)], dim=1),
        ],
        dim=1,
    )  # (N, 2, 3)
    grid = F.affine_grid(theta, [N, C, H, W], align_corners=False)  # (N, H, W, 2)
    if fill == 0.0:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # Rotate a channel of ones along with the image: its value says how much of each pixel was covered.
    ones = torch.ones_like(x[:, :1])
    out = F.grid_sample(torch.cat([x, ones], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    covered = out[:, C:]  # (N, 1, H, W)
    return out[:, :C] + (1.0 - covered) * fill


def random_rotation(
    x: torch.Tensor, max_degrees: float, generator: torch.Generator | None = None, fill: float = 0.0
) -> torch.Tensor:
    """Rotate each image of ``x (N, C, H, W)`` by an angle drawn uniformly from ``[-max_degrees, max_degrees]``
    (one per image, from ``generator``; None: a fresh one seeded by the operating system, never the global
    generator). ``max_degrees=0`` returns ``x`` itself. See ``rotate``.
    """
    if not 0.0 <= max_degrees <= 180.0:
        raise ValueError(f"max_degrees must lie in [0, 180], got {max_degrees}")
    if max_degrees == 0:
        return x
    generator = generator if generator is not None else make_generator(None)
    angles = (2.0 * torch.rand(x.shape[0], generator=generator, dtype=torch.float64) - 1.0) * max_degrees  # (N,)
    return rotate(x, angles.to(x.device), fill)


class Augment:
    """Callable batch transform: random rotation by up to ``rotation`` degrees (0: none), then a random crop
    with ``padding``, then a horizontal flip with probability ``flip``.

    Apply it to normalised batches (zero padding is then the channel mean). Randomness comes from
    the generator passed at call time (``TensorBatches`` passes its own), else from ``self.generator``,
    seeded with ``seed`` (None: by the operating system).
    """

    def __init__(self, padding: int = 4, flip: float = 0.5, seed: int | None = None, rotation: float = 0.0):
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        if not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip must be a probability in [0, 1], got {flip}")
        if not 0.0 <= rotation <= 180.0:
            raise ValueError(f"rotation must be a maximum angle in degrees in [0, 180], got {rotation}")
        self.padding, self.flip, self.rotation = padding, flip, rotation
        self.generator = make_generator(seed)

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        g = generator if generator is not None else self.generator
        if self.rotation > 0:
            x = random_rotation(x, self.rotation, g)
        x = random_crop(x, self.padding, g)
        return random_flip(x, self.flip, g) if self.flip > 0 else x

    def __repr__(self) -> str:
        return f"Augment(padding={self.padding}, flip={self.flip}, rotation={self.rotation})"
