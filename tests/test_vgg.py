"""The reduced VGG: shapes per block, parameter count against a closed form, learning. Its training recipes
and cache are tested in test_cnn_experiment.py."""

import pytest
import torch
from torch import nn

from common.torch_models.vgg import VGG, VGGConfig, _conv_block, layer_shapes, pooled_size
from common.training.params import count_parameters

CS324_WIDTHS = [64, 128, 256, 256, 512, 512, 512, 512]


def expected_params(in_channels, widths, batchnorm, num_classes=10, final_size=1):
    """Closed form: 3x3 conv weights (+ bias without BN, + gamma/beta with BN) and the linear layer."""
    total, c_in = 0, in_channels
    for c in widths:
        total += 9 * c_in * c + 2 * c if batchnorm else 9 * c_in * c + c
        c_in = c
    return total + c_in * final_size**2 * num_classes + num_classes


@pytest.mark.parametrize("in_channels,size,batchnorm", [(3, 32, True), (1, 28, True), (3, 32, False)])
def test_parameter_count_matches_closed_form(in_channels, size, batchnorm):
    model = VGG(VGGConfig(in_channels=in_channels, image_size=size, batchnorm=batchnorm))
    assert count_parameters(model) == expected_params(in_channels, CS324_WIDTHS, batchnorm)
    # the well-known figure for the CIFAR-10 net with BatchNorm
    if (in_channels, batchnorm) == (3, True):
        assert count_parameters(model) == 9_228_362


def test_width_multiplier_scales_channels():
    cfg = VGGConfig(in_channels=1, image_size=28, width=0.25)
    assert cfg.channels == [16, 32, 64, 64, 128, 128, 128, 128]
    assert count_parameters(VGG(cfg)) == expected_params(1, cfg.channels, True)


@pytest.mark.parametrize("size,spatial", [(28, [28, 14, 7, 4, 2, 1]), (32, [32, 16, 8, 4, 2, 1])])
def test_block_output_shapes(size, spatial):
    model = VGG(VGGConfig(in_channels=1 if size == 28 else 3, image_size=size, width=0.125))
    rows = {name: shape for name, shape, _ in layer_shapes(model, batch_size=2)}
    assert [rows["input"][2]] + [rows[f"maxpool{k}"][2] for k in range(1, 6)] == spatial
    assert rows["conv0"] == (2, 8, size, size)  # 3x3 pad-1 convs keep H and W
    assert rows["conv4_b"] == (2, 64, 2, 2)
    assert rows["flatten"] == (2, 64) and rows["linear"] == (2, 10)
    assert sum(n for _, _, n in layer_shapes(model)) == count_parameters(model)


def test_pooled_size_and_larger_images():
    assert pooled_size(28) == 1 and pooled_size(32) == 1 and pooled_size(64) == 2 and pooled_size(20) == 1
    model = VGG(VGGConfig(in_channels=3, image_size=64, width=0.125))
    assert model.classifier.in_features == 64 * 2 * 2
    assert model(torch.zeros(3, 3, 64, 64)).shape == (3, 10)


def test_batchnorm_switch():
    with_bn = VGG(VGGConfig(width=0.125))
    without = VGG(VGGConfig(width=0.125, batchnorm=False))
    assert sum(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules()) == 8
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    assert all(m.bias is None for m in with_bn.modules() if isinstance(m, nn.Conv2d))
    assert all(m.bias is not None for m in without.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("batchnorm", [True, False])
def test_conv_block_follows_its_docstring(batchnorm):
    """_conv_block on its own (an exercise apart from VGG): named layers, 3x3 conv that keeps H and W, a bias
    only without batch norm, non-negative output."""
    block = _conv_block(3, 8, batchnorm)
    assert isinstance(block, nn.Sequential)
    assert [name for name, _ in block.named_children()] == (["conv", "bn", "relu"] if batchnorm else ["conv", "relu"])
    conv = block.conv
    assert isinstance(conv, nn.Conv2d) and (conv.in_channels, conv.out_channels) == (3, 8)
    assert conv.kernel_size == (3, 3) and conv.stride == (1, 1)
    assert (conv.bias is None) == batchnorm, "the conv has a bias exactly when no batch norm follows it"
    if batchnorm:
        assert isinstance(block.bn, nn.BatchNorm2d) and block.bn.num_features == 8
    assert isinstance(block.relu, nn.ReLU)
    out = block(torch.randn(2, 3, 5, 7, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 8, 5, 7) and out.min() >= 0


def test_each_conv_block_is_batchnorm_then_relu():
    """In training mode a block's output is a ReLU of per-channel standardised maps: non-negative, half zeros."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGG(VGGConfig(in_channels=3, image_size=32, width=0.25)).train()
    x = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for name, block in model.features.named_children():
            x = block(x)
            if name.startswith("conv"):
                assert x.min() >= 0, name
                assert 0.35 < (x == 0).float().mean() < 0.65, name
    assert x.shape == (64, 128, 1, 1)


def test_bad_config_and_input_are_clear_errors():
    with pytest.raises(ValueError, match="width"):
        VGGConfig(width=0)
    with pytest.raises(ValueError, match="in_channels"):
        VGGConfig(in_channels=0)
    model = VGG(VGGConfig(in_channels=3, image_size=32, width=0.125))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        model(torch.zeros(2, 1, 28, 28))
    cfg = VGGConfig.for_data(torch.zeros(5, 1, 28, 28), width=0.5)
    assert (cfg.in_channels, cfg.image_size, cfg.width) == (1, 28, 0.5)


def test_channels_last_gives_the_same_logits():
    model = VGG(VGGConfig(in_channels=3, image_size=32, width=0.125)).eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_memorises_a_small_batch():
    """A working net (forward, init, BN, gradients) fits 32 random labels; a broken one does not."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VGG(VGGConfig(in_channels=1, image_size=28, width=0.25))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc == 1.0, acc
