"""Seeing what a pretrained CNN looks at: saliency maps, fooling images, class visualisation, DeepDream.

Images are preprocessed tensors ``(N, 3, H, W)`` (see ``common.torch_models.pretrained.preprocess``);
the iterative methods return ``(image, history)`` and never draw. Signatures follow CS231n's
``NetworkVisualization`` where it has them.

Every function that runs the network takes ``device``: None means the device of ``model`` when one is given,
else ``get_device()`` (``pretrained.model_and_device``). Inputs are moved there and results come back on the
CPU. Random jitter is drawn from ``generator`` (a ``torch.Generator``, an int seed, or None for a fresh
seed from the operating system); the global random state is never read or changed.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from common.config import make_generator
from common.torch_models.pretrained import block_features, deprocess, model_and_device, pixel_bounds, resize


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="step")


def as_generator(generator: torch.Generator | int | None) -> torch.Generator:
    """``generator`` itself, or a private generator seeded with it (None: a seed from the operating system)."""
    return generator if isinstance(generator, torch.Generator) else make_generator(generator)


def _clamp_pixels(img: torch.Tensor) -> torch.Tensor:
    """Clamp a preprocessed image in place to the normalised range of pixels in [0, 1]."""
    low, high = pixel_bounds(img.device)
    img.data = torch.max(torch.min(img.data, high), low)
    return img


def compute_saliency_maps(
    X: torch.Tensor, y: torch.Tensor, model: torch.nn.Module | None = None, device=None
) -> torch.Tensor:
    """Saliency ``S_ij = max_c |d s_y / d X_cij|`` (Simonyan et al. 2014) of the unnormalised class score.

    ``X``: ``(N, 3, H, W)`` preprocessed images; ``y``: ``(N,)`` class ids. Returns a CPU tensor
    ``(N, H, W)``, >= 0.
    """
    if X.ndim != 4 or len(y) != len(X):
        raise ValueError(f"X must be (N, 3, H, W) and y (N,), got {tuple(X.shape)} and {tuple(y.shape)}")
    model, device = model_and_device(model, device)
    X, y = X.detach().to(device), torch.as_tensor(y, device=device).long()
    # Let autograd track X, backpropagate the correct-class scores s_y (N,) of one forward pass (images are
    # independent), then take the largest |gradient| over the 3 channels: saliency (N, H, W) on the CPU.
    ### BEGIN SOLUTION
    X = X.clone().requires_grad_(True)
    scores = model(X)  # (N, 1000)
    # summing the correct-class scores: each image's gradient depends only on its own score
    scores.gather(1, y.view(-1, 1)).sum().backward()
    saliency = X.grad.abs().amax(dim=1).cpu()  # (N, 3, H, W) -> (N, H, W)
    ### END SOLUTION
    return saliency


def make_fooling_image(
    X: torch.Tensor,
    target_y: int,
    model: torch.nn.Module | None = None,
    learning_rate: float = 1.0,
    max_iters: int = 100,
    progress: bool = False,
    device=None,
):
    """Targeted gradient ascent on the class score until the network predicts ``target_y``.

    Each step: ``X <- X + learning_rate * g / ||g||_2`` with ``g = d s_target / d X``. Stops at the
    first iteration where the prediction is ``target_y``.
    ``X``: ``(1, 3, H, W)``. Returns ``(X_fooling, history)``: ``X_fooling`` ``(1, 3, H, W)`` detached, on the CPU;
    ``history`` with lists ``target_score``, ``target_prob`` and int ``iterations`` (steps taken)
    and bool ``success``.
    """
    if X.ndim != 4 or X.shape[0] != 1:
        raise ValueError(f"X must be one image (1, 3, H, W), got {tuple(X.shape)}")
    model, device = model_and_device(model, device)
    X_fooling = X.detach().to(device).clone().requires_grad_(True)
    history = {"target_score": [], "target_prob": [], "iterations": 0, "success": False}
    for it in _progress(range(max_iters + 1), progress, f"fooling -> {target_y}"):
        scores = model(X_fooling)  # (1, 1000)
        history["target_score"].append(float(scores[0, target_y].detach()))
        history["target_prob"].append(float(scores.detach().softmax(1)[0, target_y]))
        if int(scores.argmax(1)) == target_y:
            history.update(iterations=it, success=True)
            break
        if it == max_iters:
            history["iterations"] = it
            break
        X_fooling.grad = None  # a fresh gradient every step
        # One ascent step on the target score: backpropagate scores[0, target_y] into X_fooling.grad, then
        # move X_fooling in place (under torch.no_grad()) by learning_rate along the L2-normalised gradient.
        ### BEGIN SOLUTION
        scores[0, target_y].backward()
        with torch.no_grad():
            g = X_fooling.grad
            X_fooling += learning_rate * g / g.norm().clamp_min(1e-12)
        ### END SOLUTION
    return X_fooling.detach().cpu(), history


def jitter(X: torch.Tensor, ox: int, oy: int) -> torch.Tensor:
    """Roll ``X`` ``(N, C, H, W)`` by ``ox`` pixels along W and ``oy`` along H (wrapping round)."""
    return torch.roll(X, shifts=(int(oy), int(ox)), dims=(2, 3))


def blur_image(X: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Gaussian blur of ``X`` ``(N, C, H, W)`` with standard deviation ``sigma`` pixels (reflect padding)."""
    if sigma <= 0:
        return X
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=X.dtype, device=X.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()  # (K,)
    C = X.shape[1]
    out = F.pad(X, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(C, 1, 1, 1), groups=C)  # along W
    out = F.conv2d(out, k.view(1, 1, -1, 1).repeat(C, 1, 1, 1), groups=C)  # along H
    return out


def class_visualization_update_step(
    img: torch.Tensor, model: torch.nn.Module, target_y: int, l2_reg: float, learning_rate: float, transform=None
) -> float:
    """One ascent step on ``s_y(T(I)) - l2_reg * ||I||^2`` in place: ``I <- I + lr * g / ||g||_2``.

    ``img``: ``(1, 3, H, W)`` leaf tensor with ``requires_grad``, on ``model``'s device (a building block of
    ``create_class_visualization``: it moves nothing); ``transform``: an optional differentiable ``T`` (e.g.
    a random shift and rescale), identity when None.
    Returns the class score before the step.
    """
    x = transform(img) if transform is not None else img  # (1, 3, H', W'), differentiable in img
    img.grad = None  # a fresh gradient every step
    # score = s_y of the transformed image x; objective = score - l2_reg * ||img||^2 (the penalty on the image
    # itself); backpropagate it and step img in place (under torch.no_grad()) along the L2-normalised gradient.
    ### BEGIN SOLUTION
    score = model(x)[0, target_y]
    objective = score - l2_reg * (img**2).sum()
    objective.backward()
    with torch.no_grad():
        g = img.grad
        img += learning_rate * g / g.norm().clamp_min(1e-12)
    ### END SOLUTION
    return float(score.detach())


def random_shift_scale(
    img: torch.Tensor, max_jitter: int, scale_jitter: float, generator: torch.Generator | int | None = None
) -> torch.Tensor:
    """Differentiably roll ``img`` ``(N, C, H, W)`` by up to ``max_jitter`` pixels and rescale it by a
    random factor in ``[1 - scale_jitter, 1 + scale_jitter]`` (the output size changes with it).
    The shift and factor are drawn from ``generator`` (see ``as_generator``)."""
    generator = as_generator(generator)
    ox, oy = torch.randint(-max_jitter, max_jitter + 1, (2,), generator=generator).tolist()
    out = jitter(img, ox, oy)
    if scale_jitter > 0:
        factor = 1 + scale_jitter * (2 * float(torch.rand((), generator=generator)) - 1)
        H, W = img.shape[-2:]
        out = F.interpolate(
            out, size=(max(32, round(H * factor)), max(32, round(W * factor))), mode="bilinear", align_corners=False
        )
    return out


def create_class_visualization(
    target_y: int,
    model: torch.nn.Module | None = None,
    size: int = 224,
    l2_reg: float = 1e-3,
    learning_rate: float = 25.0,
    num_iterations: int = 200,
    blur_every: int = 4,
    blur_sigma: float = 1.0,
    max_jitter: int = 16,
    scale_jitter: float = 0.1,
    start_size: int | None = 112,
    snapshot_every: int | None = None,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    device=None,
):
    """An image the network scores highly as ``target_y``, grown from noise.

    (Simonyan et al. 2014; Yosinski et al. 2015.)

    Gradient ascent on ``s_y(I) - l2_reg ||I||^2`` with, as regularisers, a random roll of up to
    ``max_jitter`` pixels and a random rescale by up to ``scale_jitter`` before each step (the
    image must be a cat from every shift and zoom, not one adversarial pixel pattern), a Gaussian
    blur of ``blur_sigma`` every ``blur_every`` steps and clamping to valid pixels. ``start_size``: optimise first
    at this side length and upsample to ``size`` half-way (coarse-to-fine gives larger, smoother shapes;
    None: ``size`` only).
    The start noise and the jitter come from ``generator`` (a generator, an int seed, or None).
    Returns ``(image, history)``: ``image`` float NumPy ``(size, size, 3)`` in [0, 1]; ``history`` with
    ``score`` (one per step), ``prob`` (of the final image) and ``snapshots`` (``(iteration, image)``).
    """
    model, device = model_and_device(model, device)
    generator = as_generator(generator)
    sizes = [start_size, size] if start_size and start_size < size else [size]
    switch = num_iterations // 2 if len(sizes) == 2 else num_iterations + 1
    img = 1.0 * torch.randn((1, 3, sizes[0], sizes[0]), generator=generator).to(device)  # (1, 3, S, S)
    img.requires_grad_(True)
    history = {"score": [], "prob": [], "snapshots": []}
    for t in _progress(range(num_iterations), progress, f"class {target_y}"):
        if t == switch:
            img = resize(img.detach(), (size, size)).requires_grad_(True)  # (1, 3, size, size)
        # a partial of a library function rather than a closure, so that it can also travel as data (to the
        # process that runs a student's step when grading)
        transform = functools.partial(
            random_shift_scale, max_jitter=max_jitter, scale_jitter=scale_jitter, generator=generator
        )
        score = class_visualization_update_step(img, model, target_y, l2_reg, learning_rate, transform)
        with torch.no_grad():
            _clamp_pixels(img)
            if blur_every and t % blur_every == blur_every - 1 and t < num_iterations - 1:
                img.data = blur_image(img.data, sigma=blur_sigma)
        history["score"].append(score)
        if snapshot_every and ((t + 1) % snapshot_every == 0 or t == num_iterations - 1):
            history["snapshots"].append((t + 1, deprocess(img[0])))
    with torch.no_grad():
        history["prob"] = [float(model(img).softmax(1)[0, target_y])]
    return deprocess(img[0]), history


def deepdream_step(
    img: torch.Tensor, layer, model: torch.nn.Module, learning_rate: float, shift=(0, 0), channels=None
) -> float:
    """One DeepDream ascent step in place: ``I <- I + learning_rate * g / mean|g|``, ``g = d objective / d I``.

    The objective is ``0.5 * mean(A^2)`` over the activations ``A`` ``(1, C_l, H_l, W_l)`` of ``layer`` (a name
    or block index, see ``block_features``; only the channels ``channels`` of it when given) for the image
    rolled by ``shift = (ox, oy)`` pixels (``jitter``). ``img``: ``(1, 3, h, w)`` leaf tensor with
    ``requires_grad``, on ``model``'s device (a building block of ``deepdream``: it moves and clamps nothing).
    Returns the objective before the step.
    """
    shifted = jitter(img, *shift)  # (1, 3, h, w), differentiable in img
    img.grad = None  # a fresh gradient every step
    # objective = 0.5 * mean(A^2) of the layer's activations A for `shifted` (block_features; keep only
    # `channels` when given); backpropagate it and step img in place (under torch.no_grad()) by
    # learning_rate * g / mean|g|: the mean absolute gradient sets the scale, whatever the layer.
    ### BEGIN SOLUTION
    (act,) = block_features(shifted, [layer], model)  # (1, C_l, H_l, W_l)
    if channels is not None:
        act = act[:, list(channels)]
    objective = 0.5 * (act**2).mean()
    objective.backward()
    with torch.no_grad():
        g = img.grad
        img += learning_rate * g / g.abs().mean().clamp_min(1e-12)
    ### END SOLUTION
    return float(objective.detach())


def deepdream(
    image: torch.Tensor,
    layer,
    model: torch.nn.Module | None = None,
    num_octaves: int = 4,
    octave_scale: float = 1.4,
    iterations: int = 10,
    learning_rate: float = 0.02,
    max_jitter: int = 16,
    channels=None,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    device=None,
):
    """DeepDream (Mordvintsev et al. 2015): amplify whatever ``layer`` already sees in ``image``.

    Objective ``0.5 * mean(A^2)`` of the activations ``A`` of ``layer`` (a name or block index; only
    ``channels`` of it when given). Each step, normalised: ``I <- I + lr * g / mean|g|``. Octaves:
    start at ``image`` shrunk by ``octave_scale ** (num_octaves - 1)``, ascend ``iterations`` steps,
    carry the added detail up to the next, larger scale.
    ``image``: ``(1, 3, H, W)`` preprocessed; the jitter comes from ``generator`` (a generator, an int seed,
    or None). Returns ``(image, history)``: ``image`` float NumPy ``(H, W, 3)`` in [0, 1]; ``history`` with
    ``objective`` (per step) and ``octaves`` (the image at the end of each octave).
    """
    model, device = model_and_device(model, device)
    generator = as_generator(generator)
    base = image.detach().to(device)
    H, W = base.shape[-2:]
    shapes = [
        (max(32, round(H / octave_scale**k)), max(32, round(W / octave_scale**k))) for k in reversed(range(num_octaves))
    ]  # small -> large
    detail = torch.zeros_like(resize(base, shapes[0]))
    history = {"objective": [], "octaves": []}
    steps = _progress(range(num_octaves * iterations), progress, "deepdream")
    step_iter = iter(steps)
    img = base
    for shape in shapes:
        octave_base = resize(base, shape)  # (1, 3, h, w)
        img = (octave_base + resize(detail, shape)).requires_grad_(True)
        for _ in range(iterations):
            next(step_iter, None)
            shift = torch.randint(-max_jitter, max_jitter + 1, (2,), generator=generator).tolist()
            history["objective"].append(deepdream_step(img, layer, model, learning_rate, shift, channels))
            with torch.no_grad():
                _clamp_pixels(img)
        detail = img.detach() - octave_base
        history["octaves"].append(deprocess(img[0]))
    return deprocess(img[0]), history
