"""The CS324 reduced VGG for CIFAR-10 (and 1x28x28 Fashion-MNIST), configured by ``VGGConfig``."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["VGGConfig", "VGG", "VGG_LAYOUT", "CONV_NAMES", "pooled_size", "layer_shapes", "format_layer_shapes"]

#: The CS324 layout: numbers are 3x3 conv widths (at width 1), 'M' a 3x3 / stride-2 / pad-1 max pool.
VGG_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
#: Names of the conv blocks in ``VGG.features``, in layer order (the pools are ``maxpool1`` ... ``maxpool5``).
CONV_NAMES = ("conv0", "conv1", "conv2_a", "conv2_b", "conv3_a", "conv3_b", "conv4_a", "conv4_b")


def pooled_size(size: int, num_pools: int = 5) -> int:
    """Spatial size after ``num_pools`` 3x3 / stride-2 / pad-1 pools: ``s -> (s + 2 - 3) // 2 + 1 = ceil(s / 2)``.

    32 -> 16 -> 8 -> 4 -> 2 -> 1 and 28 -> 14 -> 7 -> 4 -> 2 -> 1.
    """
    for _ in range(num_pools):
        size = (size + 2 * 1 - 3) // 2 + 1
    return size


@dataclass
class VGGConfig:
    """Configuration of the reduced VGG.

    ``width`` multiplies every conv width (64 * width, ...; at least 1 channel each);
    ``in_channels`` and ``image_size`` describe the input (3 and 32 for CIFAR-10, 1 and 28 for
    Fashion-MNIST); ``batchnorm`` puts a BatchNorm2d after each conv (then the conv has no bias).
    """

    in_channels: int = 3
    image_size: int = 32
    num_classes: int = 10
    width: float = 1.0
    batchnorm: bool = True

    def __post_init__(self):
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1 (3 for CIFAR-10, 1 for Fashion-MNIST), got {self.in_channels}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be >= 1 (32 for CIFAR-10, 28 for Fashion-MNIST), got {self.image_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if not self.width > 0:
            raise ValueError(f"width must be a positive multiplier (e.g. 0.25, 0.5, 1.0), got {self.width}")

    @property
    def channels(self) -> list[int]:
        """Conv widths in layer order, after the width multiplier."""
        return [max(1, round(c * self.width)) for c in VGG_LAYOUT if c != "M"]

    @property
    def final_size(self) -> int:
        """Spatial size of the last feature map (1 for both 32x32 and 28x28 inputs)."""
        return pooled_size(self.image_size, VGG_LAYOUT.count("M"))

    @classmethod
    def for_data(cls, X, **kwargs) -> VGGConfig:
        """A config whose ``in_channels``/``image_size`` match images ``X (N, C, H, W)`` (H must equal W)."""
        if X.ndim != 4 or X.shape[2] != X.shape[3]:
            raise ValueError(f"X must be square images (N, C, H, W), got shape {tuple(X.shape)}")
        return cls(in_channels=int(X.shape[1]), image_size=int(X.shape[2]), **kwargs)

    def to_dict(self) -> dict:
        return asdict(self)


def _conv_block(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    """3x3 conv (pad 1, keeps H and W) -> [BatchNorm] -> ReLU: ``(N, c_in, H, W) -> (N, c_out, H, W)``.

    An ``nn.Sequential`` whose layers are named ``conv``, ``bn`` (only with ``batchnorm``) and ``relu``.
    With BatchNorm right after it the conv has no bias: BN subtracts the mean, and its beta is the bias.
    """
    # A 3x3 nn.Conv2d that keeps H and W (bias only without BN), then nn.BatchNorm2d if batchnorm, then nn.ReLU;
    # pass an OrderedDict to nn.Sequential to name them.
    ### BEGIN SOLUTION
    layers = [("conv", nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batchnorm))]
    if batchnorm:
        layers.append(("bn", nn.BatchNorm2d(c_out)))
    layers.append(("relu", nn.ReLU(inplace=True)))
    block = nn.Sequential(OrderedDict(layers))
    ### END SOLUTION
    return block


class VGG(nn.Module):
    """conv64-pool-conv128-pool-conv256x2-pool-conv512x2-pool-conv512x2-pool-linear (CS324 names).

    Input ``(N, in_channels, image_size, image_size)``, output logits ``(N, num_classes)``.
    ``self.features``: an ``nn.Sequential`` that follows ``VGG_LAYOUT`` in order, its conv blocks
    (``_conv_block``, widths ``config.channels``) named ``CONV_NAMES`` and its 3x3 / stride-2 / pad-1 max pools
    ``maxpool1`` ... ``maxpool5`` (``layer_shapes`` reads these names); ``self.classifier``: one ``nn.Linear``
    from the flattened last feature map (``channels[-1] * final_size**2`` values) to the class scores.
    """

    def __init__(self, config: VGGConfig):
        super().__init__()
        if not isinstance(config, VGGConfig):
            raise TypeError(f"config must be a VGGConfig, got {type(config).__name__}")
        self.config = config
        # Walk VGG_LAYOUT, tracking the current channel count (config.in_channels first): a number adds the next
        # conv block (width from config.channels, name from CONV_NAMES), an 'M' the next max pool. Then the classifier.
        ### BEGIN SOLUTION
        names, widths = iter(CONV_NAMES), iter(config.channels)
        blocks, c_in, num_pools = [], config.in_channels, 0
        for item in VGG_LAYOUT:
            if item == "M":
                num_pools += 1
                blocks.append((f"maxpool{num_pools}", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)))
            else:
                c_out = next(widths)
                blocks.append((next(names), _conv_block(c_in, c_out, config.batchnorm)))
                c_in = c_out
        self.features = nn.Sequential(OrderedDict(blocks))
        self.classifier = nn.Linear(c_in * config.final_size**2, config.num_classes)
        ### END SOLUTION
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """He (Kaiming) init for convs, PyTorch's default for the linear layer, BN at gamma=1, beta=0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, s = self.config.in_channels, self.config.image_size
        if x.ndim != 4 or x.shape[1] != c or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(
                f"VGG expects input (N, {c}, {s}, {s}) as set in its VGGConfig, "
                f"got {tuple(x.shape)}; build the config with VGGConfig.for_data(X)"
            )
        # The conv stack, then each sample's last feature map flattened to one vector, then the classifier.
        ### BEGIN SOLUTION
        features = self.features(x)  # (N, C_last, final_size, final_size)
        scores = self.classifier(features.flatten(1))  # (N, C_last * final_size**2) -> (N, num_classes)
        ### END SOLUTION
        return scores


@torch.no_grad()
def layer_shapes(model: VGG, batch_size: int = 1) -> list[tuple[str, tuple[int, ...], int]]:
    """``(block name, output shape, parameter count)`` for each block of ``model``, on a zero input.

    Parameter counts leave out BatchNorm's running statistics (buffers, not parameters).
    Runs in eval mode and restores the previous mode.
    """
    cfg = model.config
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(batch_size, cfg.in_channels, cfg.image_size, cfg.image_size, device=device)
    rows = [("input", tuple(x.shape), 0)]
    for name, block in model.features.named_children():
        x = block(x)
        rows.append((name, tuple(x.shape), sum(p.numel() for p in block.parameters())))
    x = torch.flatten(x, 1)
    rows.append(("flatten", tuple(x.shape), 0))
    x = model.classifier(x)
    rows.append(("linear", tuple(x.shape), sum(p.numel() for p in model.classifier.parameters())))
    model.train(was_training)
    return rows


def format_layer_shapes(rows) -> str:
    """A text table of ``layer_shapes`` rows with a total parameter count."""
    lines = [f"{'block':<10} {'output shape':<22} {'params':>10}"]
    lines += [f"{name:<10} {str(shape):<22} {n:>10,}" for name, shape, n in rows]
    lines.append(f"{'total':<10} {'':<22} {sum(n for _, _, n in rows):>10,}")
    return "\n".join(lines)
