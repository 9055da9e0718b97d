"""Neural style transfer (Gatys et al. 2016) on the pretrained EfficientNet-Lite0: losses and the loop.

Losses keep CS231n's / CS182's signatures. ``feats`` may be a list (indexed by int) or a dict
(indexed by layer name); ``style_layers`` and ``content_layer`` index into it.
"""

from __future__ import annotations

import torch

from common.config import LoadAwareThreads, make_generator
from common.torch_models.pretrained import block_features, deprocess, model_and_device, pixel_bounds, preprocess

# Layer choice for EfficientNet-Lite0 (tuned in StyleTransfer.ipynb, see there for the pictures).
# Style: the stem and four block outputs spread over strides 2..16, so colour/fine texture (stem,
# block0) and larger motifs (block2, block4, block7) both enter; deeper blocks (7x7 at 224 px) add
# little but cost. Weights shrink with depth because deeper Gram matrices are larger in value.
# Content: block4 (stride 8, 40 channels) keeps object layout and edges while leaving texture free;
# block7 or deeper lets the layout dissolve, block0-2 copies the photo almost pixel for pixel.
DEFAULT_CONTENT_LAYER = "block4"
DEFAULT_CONTENT_WEIGHT = 3e-2
DEFAULT_STYLE_LAYERS = ("stem", "block0", "block2", "block4", "block7")
DEFAULT_STYLE_WEIGHTS = (2e3, 1e3, 5e2, 2e2, 1e2)
DEFAULT_TV_WEIGHT = 1.0
#: L-BFGS runs in rounds of this many iterations (each with a line search), clamping pixels between rounds.
LBFGS_ROUND = 10


def content_loss(content_weight: float, content_current: torch.Tensor, content_original: torch.Tensor) -> torch.Tensor:
    """``content_weight * sum_{c,i,j} (F_cij - P_cij)^2``.

    ``content_current``, ``content_original``: features ``(1, C_l, H_l, W_l)`` of the current image
    and of the content image. Returns a scalar tensor.
    """
    if content_current.shape != content_original.shape:
        raise ValueError(
            f"content_current {tuple(content_current.shape)} and content_original "
            f"{tuple(content_original.shape)} must have the same shape (same image size and layer)"
        )
    # The weighted sum over channels and positions of the squared feature differences (a scalar tensor).
    ### BEGIN SOLUTION
    loss = content_weight * ((content_current - content_original) ** 2).sum()
    ### END SOLUTION
    return loss


def gram_matrix(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Gram matrices ``G_n = F_n F_n^T`` with ``F_n`` the ``(C, H*W)`` feature matrix of image n.

    ``features``: ``(N, C, H, W)``. Returns ``(N, C, C)``, divided by ``H * W * C`` when ``normalize``.
    """
    if features.ndim != 4:
        raise ValueError(f"features must have shape (N, C, H, W), got {tuple(features.shape)}")
    N, C, H, W = features.shape
    # Flatten each image's maps into a (C, H*W) matrix F_n and form every F_n F_n^T in one batched product:
    # gram (N, C, C); divide by H * W * C when normalize.
    ### BEGIN SOLUTION
    flat = features.reshape(N, C, H * W)  # (N, C, H*W)
    gram = flat @ flat.transpose(1, 2)  # (N, C, H*W) @ (N, H*W, C) -> (N, C, C)
    if normalize:
        gram = gram / (H * W * C)
    ### END SOLUTION
    return gram


def style_loss(feats, style_layers, style_targets, style_weights) -> torch.Tensor:
    """``sum_l w_l * sum_{i,j} (G^l_ij - A^l_ij)^2`` over the style layers.

    ``feats``: features of the current image (list or dict); ``style_layers``: indices/names into
    ``feats``; ``style_targets``: Gram matrices of the style image, one per style layer;
    ``style_weights``: one weight per style layer. Returns a scalar tensor.
    """
    if not len(style_layers) == len(style_targets) == len(style_weights):
        raise ValueError(
            f"style_layers ({len(style_layers)}), style_targets ({len(style_targets)}) and "
            f"style_weights ({len(style_weights)}) need one entry per style layer"
        )
    if len(style_layers) == 0:
        return torch.tensor(0.0)
    # For each style layer: the Gram matrix (gram_matrix) of feats[layer] against its target, squared
    # differences summed, times the layer's weight; `loss` is the sum over the layers (a scalar tensor).
    ### BEGIN SOLUTION
    loss = 0.0
    for layer, target, weight in zip(style_layers, style_targets, style_weights):
        loss = loss + weight * ((gram_matrix(feats[layer]) - target) ** 2).sum()
    ### END SOLUTION
    return loss


def tv_loss(img: torch.Tensor, tv_weight: float) -> torch.Tensor:
    """Total variation ``tv_weight * (sum (x_{i+1,j} - x_ij)^2 + sum (x_{i,j+1} - x_ij)^2)``, all channels.

    ``img``: ``(1, 3, H, W)`` (any N works: the sums run over all images). Returns a scalar tensor.
    """
    if img.ndim != 4:
        raise ValueError(f"img must have shape (N, C, H, W), got {tuple(img.shape)}")
    # Differences of vertical neighbours (N, C, H-1, W) and of horizontal ones (N, C, H, W-1), by slicing
    # (no loops); `loss` = tv_weight * (sum of both squared).
    ### BEGIN SOLUTION
    dh = img[..., 1:, :] - img[..., :-1, :]  # (N, C, H-1, W)
    dw = img[..., :, 1:] - img[..., :, :-1]  # (N, C, H, W-1)
    loss = tv_weight * ((dh**2).sum() + (dw**2).sum())
    ### END SOLUTION
    return loss


def style_transfer(
    content_image,
    style_image,
    image_size: int = 256,
    style_size: int = 256,
    content_layer=DEFAULT_CONTENT_LAYER,
    content_weight: float = DEFAULT_CONTENT_WEIGHT,
    style_layers=DEFAULT_STYLE_LAYERS,
    style_weights=DEFAULT_STYLE_WEIGHTS,
    tv_weight: float = DEFAULT_TV_WEIGHT,
    init_random: bool = False,
    num_iters: int = 200,
    optimizer: str = "adam",
    learning_rate: float | None = None,
    decay_at: float = 0.8,
    snapshot_every: int | None = None,
    model=None,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    device=None,
):
    """Optimise an image so its content features match ``content_image``'s and its Gram matrices ``style_image``'s.

    ``content_image``, ``style_image``: photos (uint8 ``(H, W, 3)``); resized so the shorter side is
    ``image_size`` / ``style_size`` (aspect kept). ``init_random`` starts from noise, uniform on
    [0, 1] in normalised units, instead of the content photo; the noise comes from ``generator`` (a
    ``torch.Generator``, an int seed, or None for a seed from the operating system), never from the global
    generator. ``optimizer``: 'adam' (learning rate default 0.2 in normalised-pixel units, divided by 10
    after ``decay_at * num_iters`` steps) or 'lbfgs' (``num_iters`` iterations in rounds of ``LBFGS_ROUND``
    with a strong-Wolfe line search, so several loss evaluations per iteration; snapshots after every
    round). After each step the image is clamped to valid pixels. Set ``content_weight=0`` for style
    synthesis (texture) and ``style_weights`` all zero for feature inversion. ``model``, ``device``: the
    network and where it runs (None: ``model``'s device, else ``get_device()``; see
    ``pretrained.model_and_device``).

    Returns ``(image, history)``: ``image`` float NumPy ``(H, W, 3)`` in [0, 1]; ``history`` has lists
    ``loss``, ``content``, ``style``, ``tv`` (one entry per evaluation) and ``snapshots``
    (``(iteration, image)`` pairs every ``snapshot_every`` steps).
    """
    if optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"optimizer must be 'adam' or 'lbfgs', got {optimizer!r}")
    if len(style_layers) != len(style_weights):
        raise ValueError(
            f"style_layers ({len(style_layers)}) and style_weights ({len(style_weights)}) need one weight per layer"
        )
    model, device = model_and_device(model, device)
    content = preprocess(content_image, size=image_size, crop=False, device=device)  # (1, 3, H, W)
    style = preprocess(style_image, size=style_size, crop=False, device=device)  # (1, 3, H_s, W_s)
    layers = list(dict.fromkeys([content_layer, *style_layers]))
    with torch.no_grad():
        content_target = block_features(content, [content_layer], model)[0]
        style_targets = (
            [gram_matrix(f) for f in block_features(style, style_layers, model)] if len(style_layers) else []
        )

    low, high = pixel_bounds(device)
    if init_random:
        # as in CS231n: uniform on [0, 1] in normalised units, i.e. a mid-grey image with mild noise
        # (full-range noise saturates the ReLU6 units of the stem and the optimisation crawls)
        if not isinstance(generator, torch.Generator):
            generator = make_generator(generator)
        img = torch.rand(content.shape, generator=generator).to(device)
    else:
        img = content.clone()
    img.requires_grad_(True)
    history = {"loss": [], "content": [], "style": [], "tv": [], "snapshots": []}

    def closure():
        opt.zero_grad()
        feats = dict(zip(layers, block_features(img, layers, model)))
        c = content_loss(content_weight, feats[content_layer], content_target)
        s = style_loss(feats, style_layers, style_targets, style_weights)
        t = tv_loss(img, tv_weight)
        loss = c + s + t
        loss.backward()
        for key, value in (("loss", loss), ("content", c), ("style", s), ("tv", t)):
            history[key].append(float(value.detach()) if isinstance(value, torch.Tensor) else float(value))
        return loss

    if optimizer == "adam":
        opt = torch.optim.Adam([img], lr=learning_rate or 0.2)
    else:
        # rounds of LBFGS_ROUND iterations with a line search; the image is clamped between rounds
        opt = torch.optim.LBFGS(
            [img], lr=learning_rate or 1.0, max_iter=LBFGS_ROUND, history_size=20, line_search_fn="strong_wolfe"
        )
    steps = range(num_iters) if optimizer == "adam" else range(LBFGS_ROUND, num_iters + 1, LBFGS_ROUND)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"style transfer ({optimizer})", unit="step")
    with LoadAwareThreads(device) as threads:
        for t in steps:
            threads.poll()  # every CPU while the machine is otherwise idle
            if optimizer == "lbfgs":
                t -= 1  # rounds end at iterations LBFGS_ROUND, 2 * LBFGS_ROUND, ...
            if optimizer == "adam" and t == int(decay_at * num_iters):
                for group in opt.param_groups:
                    group["lr"] *= 0.1
            opt.step(closure)
            with torch.no_grad():
                img.data = torch.max(torch.min(img.data, high), low)  # keep pixels in [0, 1]
            if snapshot_every and ((t + 1) % snapshot_every == 0 or optimizer == "lbfgs"):
                history["snapshots"].append((t + 1, deprocess(img[0])))
    return deprocess(img[0]), history
