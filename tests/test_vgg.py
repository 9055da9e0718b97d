"""The reduced VGG: shapes per block, parameter count against a closed form, learning, and checkpoints."""
import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from common.checkpoint import (BestCheckpoint, StaleCheckpointError, checkpoint_key, checkpoint_path,
                               load_checkpoint, save_checkpoint)
from common.torch_models.vgg import VGG, VGGConfig, count_parameters, layer_shapes, pooled_size

CS324_WIDTHS = [64, 128, 256, 256, 512, 512, 512, 512]


def expected_params(in_channels, widths, batchnorm, num_classes=10, final_size=1):
    """Closed form: 3x3 conv weights (+ bias without BN, + gamma/beta with BN) and the linear layer."""
    total, c_in = 0, in_channels
    for c in widths:
        total += 9 * c_in * c + 2 * c if batchnorm else 9 * c_in * c + c
        c_in = c
    return total + c_in * final_size ** 2 * num_classes + num_classes


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
    rows = dict((name, shape) for name, shape, _ in layer_shapes(model, batch_size=2))
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
    torch.manual_seed(0)
    model = VGG(VGGConfig(in_channels=3, image_size=32, width=0.125)).eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_memorises_a_small_batch():
    """A working net (forward, init, BN, gradients) fits 32 random labels; a broken one does not."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
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


def test_checkpoint_round_trip(tmp_path):
    cfg = VGGConfig(in_channels=1, image_size=28, width=0.125)
    torch.manual_seed(1)
    model = VGG(cfg).eval()
    key = checkpoint_key(config=cfg, epochs=3, lr=0.1)
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, key, val_acc=0.9)
    payload = load_checkpoint(path, key=key, config_class=VGGConfig)
    assert payload["config"] == cfg and payload["extra"]["val_acc"] == 0.9
    clone = VGG(payload["config"]).eval()
    load_checkpoint(path, clone)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    with pytest.raises(StaleCheckpointError):
        load_checkpoint(path, key=checkpoint_key(config=cfg, epochs=4, lr=0.1))
    with pytest.raises(FileNotFoundError, match="train"):
        load_checkpoint(tmp_path / "missing.pt")
    assert not list(tmp_path.glob("*.tmp*"))


def test_checkpoint_key_and_path(tmp_path):
    a = checkpoint_key(config=VGGConfig(width=0.5), epochs=3)
    assert a == checkpoint_key(epochs=3, config=VGGConfig(width=0.5))
    assert a != checkpoint_key(config=VGGConfig(width=0.25), epochs=3)
    assert checkpoint_path("vgg", a, root=tmp_path) == tmp_path / f"vgg-{a}.pt"
    with pytest.raises(ValueError, match="name"):
        checkpoint_path("a/b", a, root=tmp_path)


def test_best_checkpoint_keeps_the_best_epoch(tmp_path):
    cfg = VGGConfig(in_channels=1, image_size=28, width=0.125)
    model = VGG(cfg)
    best = BestCheckpoint(tmp_path / "best.pt", model, cfg, key="k")
    history = {"val_acc": []}
    snapshots = []
    for epoch, acc in enumerate([0.5, 0.7, 0.6]):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        history["val_acc"].append(acc)
        best(epoch, history)
    assert best.best == 0.7 and best.best_epoch == 1
    payload = best.restore()
    assert payload["extra"]["epoch"] == 1 and payload["extra"]["history"]["val_acc"] == [0.5, 0.7]
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, snapshots[1][k])
    with pytest.raises(KeyError, match="val_loader"):
        BestCheckpoint(tmp_path / "x.pt", model)(0, {"train_loss": [1.0]})


# --- training recipes and metrics (common.train_cnn) ---

def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    from common.train_cnn import confusion_matrix, per_class_accuracy
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm = confusion_matrix(y_true, y_pred, 4)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(y_true, y_pred, labels=range(4)))
    acc = per_class_accuracy(cm)
    for c in range(4):
        assert acc[c] == pytest.approx(np.mean(y_pred[y_true == c] == c))
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([0, 5], [0, 1], 4)


def _bands(N, seed):
    """1x16x16 images whose class (0-3) is which horizontal band of 4 rows is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (N,), generator=g)
    X = 0.3 * torch.randn(N, 1, 16, 16, generator=g)
    for c in range(4):
        X[y == c, :, 4 * c:4 * c + 4, :] += 1.5
    return X, y


def test_make_optimizer_recipes():
    from common.train_cnn import ADAM_BASELINE, SGD_ONE_CYCLE, Recipe, make_optimizer
    model = VGG(VGGConfig(in_channels=1, image_size=16, width=0.125))
    opt, sched = make_optimizer(model, ADAM_BASELINE, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.Adam) and sched is None and opt.param_groups[0]["lr"] == 1e-3
    opt, sched = make_optimizer(model, SGD_ONE_CYCLE, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    lrs = []
    for _ in range(10 * SGD_ONE_CYCLE.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert max(lrs) == pytest.approx(SGD_ONE_CYCLE.lr) and 0.2 < peak / len(lrs) < 0.3  # warm-up = 25 %
    assert lrs[0] < 0.1 * max(lrs) and lrs[-1] < 1e-3 * max(lrs)
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="rmsprop")


def test_train_vgg_learns_and_caches(tmp_path):
    from common.train_cnn import SGD_ONE_CYCLE, predict, train_vgg
    recipe = dataclasses.replace(SGD_ONE_CYCLE, epochs=3, batch_size=32, padding=1)
    cfg = VGGConfig(in_channels=1, image_size=16, num_classes=4, width=0.125)
    X, y = _bands(480, seed=0)
    X_val, y_val = _bands(200, seed=1)
    model, info = train_vgg(cfg, recipe, X, y, X_val, y_val, data_tag="bands", progress=False, cache_dir=tmp_path)
    acc = (predict(model, X_val).argmax(1) == y_val).float().mean().item()
    assert acc > 0.9, acc
    assert acc == pytest.approx(info["val_acc"])  # the returned model is the best checkpoint
    assert not info["cached"] and info["images_per_s"] > 0 and len(info["history"]["val_acc"]) == 3
    again, info2 = train_vgg(cfg, recipe, X, y, X_val, y_val, data_tag="bands", progress=False, cache_dir=tmp_path)
    assert info2["cached"] and info2["path"] == info["path"]
    torch.testing.assert_close(predict(again, X_val), predict(model, X_val))
    other = dataclasses.replace(recipe, epochs=4)
    from common.checkpoint import checkpoint_key
    assert checkpoint_key(recipe=other) != checkpoint_key(recipe=recipe)
