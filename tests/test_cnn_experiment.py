"""The CNN experiment (common.experiments.cnn): recipes, train_vgg (device, global RNG, its cache: damaged
files, crafted pickles, interrupted runs, two processes at once) and the metrics."""

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from common.config import REPO_ROOT, training_precision
from common.data.augment import Augment
from common.experiments.cnn import (
    ADAM_BASELINE,
    SGD_ONE_CYCLE,
    Recipe,
    confusion_matrix,
    match_crop_flip,
    one_cycle_scheduler,
    per_class_accuracy,
    predict_with_flips,
    time_train_steps,
    train_and_score,
    train_vgg,
    vgg_cache_entry,
)
from common.torch_models.vgg import VGG, VGGConfig
from common.training.checkpoint import CacheEntry, CacheWarning
from common.training.loop import predict
from common.training.optimizers import make_optimizer
from tests.cache_faults import DAMAGE_KINDS, damage, write_crafted_pickle

CPU = torch.device("cpu")
#: A VGG small enough that an epoch over 96 images takes a few milliseconds.
TINY = VGGConfig(in_channels=1, image_size=16, num_classes=4, width=0.0625)
TINY_RECIPE = dataclasses.replace(SGD_ONE_CYCLE, name="tiny", epochs=3, batch_size=32, padding=1)


def _bands(N, seed):
    """1x16x16 images whose class (0-3) is which horizontal band of 4 rows is bright, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (N,), generator=g)
    X = 0.3 * torch.randn(N, 1, 16, 16, generator=g)
    for c in range(4):
        X[y == c, :, 4 * c : 4 * c + 4, :] += 1.5
    return X, y


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty cache root that ``cache_dir()`` points at."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    return tmp_path


def _tiny_run(recipe=TINY_RECIPE, **kwargs):
    X, y = _bands(96, seed=0)
    X_val, y_val = _bands(32, seed=1)
    return train_vgg(TINY, recipe, X, y, X_val, y_val, data_tag="bands", progress=False, device=CPU, **kwargs)


def _entry(recipe=TINY_RECIPE) -> CacheEntry:
    return vgg_cache_entry(TINY, recipe, "bands", 96, 32, training_precision(CPU))


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=name)


# ---------------------------------------------------------------------------- recipes and metrics
def test_confusion_matrix_matches_sklearn():
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    cm = confusion_matrix(y_true, y_pred, 4)
    np.testing.assert_array_equal(cm, sk_confusion_matrix(y_true, y_pred, labels=range(4)))
    acc = per_class_accuracy(cm)
    for c in range(4):
        assert acc[c] == pytest.approx(np.mean(y_pred[y_true == c] == c))
    with pytest.raises(ValueError, match="num_classes"):
        confusion_matrix([0, 5], [0, 1], 4)


def test_recipes_build_their_optimizer_and_schedule():
    model = VGG(TINY)
    opt = make_optimizer(model.parameters(), ADAM_BASELINE.optimizer, ADAM_BASELINE.lr)
    assert isinstance(opt, torch.optim.Adam) and opt.param_groups[0]["lr"] == 1e-3
    assert one_cycle_scheduler(opt, ADAM_BASELINE, steps_per_epoch=10) is None
    r = SGD_ONE_CYCLE
    opt = make_optimizer(
        model.parameters(), r.optimizer, r.lr, momentum=r.momentum, nesterov=r.nesterov, weight_decay=r.weight_decay
    )
    sched = one_cycle_scheduler(opt, r, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["nesterov"]
    lrs = []
    for _ in range(10 * r.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = int(np.argmax(lrs))
    assert max(lrs) == pytest.approx(r.lr) and 0.2 < peak / len(lrs) < 0.3  # warm-up = 25 %
    assert lrs[0] < 0.1 * max(lrs) and lrs[-1] < 1e-3 * max(lrs)
    with pytest.raises(ValueError, match="optimizer"):
        Recipe(optimizer="lbfgs")


def test_match_crop_flip_explains_augment_and_nothing_else():
    x = torch.randn(400, 2, 9, 9, generator=torch.Generator().manual_seed(0))
    offsets, flipped = match_crop_flip(x, Augment(padding=2, flip=0.5, seed=0)(x), 2)
    assert (offsets >= 0).all() and len({tuple(o) for o in offsets}) == 25 and 0.4 < flipped.mean() < 0.6
    offsets, flipped = match_crop_flip(x, x.flip(3), 2)
    assert (offsets == 2).all() and flipped.all()  # a flip alone: centre crop, flipped
    offsets, _ = match_crop_flip(x, x + 1e-3, 2)
    assert (offsets == -1).all()  # changed pixel values: no crop explains them
    with pytest.raises(ValueError, match="one shape"):
        match_crop_flip(x, x[:3], 2)


def test_time_train_steps_on_a_given_device():
    model = VGG(TINY)
    x, y = _bands(16, seed=2)
    rate = time_train_steps(model, x, y, steps=2, device=CPU)
    assert rate > 0 and next(model.parameters()).device == CPU


# ---------------------------------------------------------------------------- train_vgg
def test_train_vgg_learns_and_caches(cache):
    recipe = dataclasses.replace(SGD_ONE_CYCLE, epochs=3, batch_size=32, padding=1)
    cfg = VGGConfig(in_channels=1, image_size=16, num_classes=4, width=0.125)
    X, y = _bands(480, seed=0)
    X_val, y_val = _bands(200, seed=1)
    model, info = train_vgg(cfg, recipe, X, y, X_val, y_val, data_tag="bands", progress=False, device=CPU)
    acc = (predict(model, X_val).argmax(1) == y_val).float().mean().item()
    assert acc > 0.9, acc
    assert acc == pytest.approx(info["val_acc"])  # the returned model is the best epoch's
    h = info["history"]
    assert not info["cached"] and info["resumed_from"] == 0 and info["images_per_s"] > 0
    assert h["epoch"] == [1, 2, 3] and len(h["val_acc"]) == 3 and "epoch_time" not in h
    assert info["best_epoch"] in h["epoch"] and info["val_acc"] == max(h["val_acc"])
    assert info["train_time"] == h["time"][-1]
    assert info["path"].parent == cache / "cnn" and info["path"].is_file()
    assert not list((cache / "cnn").glob("*.partial.pt"))  # work in progress is gone once finished
    again, info2 = train_vgg(cfg, recipe, X, y, X_val, y_val, data_tag="bands", progress=False, device=CPU)
    assert info2["cached"] and info2["path"] == info["path"] and info2["history"] == h
    torch.testing.assert_close(predict(again, X_val), predict(model, X_val))
    other = vgg_cache_entry(cfg, dataclasses.replace(recipe, epochs=4), "bands", 480, 200)
    assert other.path != info["path"]


def test_train_and_score_reports_the_test_accuracy_of_the_cached_run(cache):
    X, y = _bands(96, seed=0)
    val, test = _bands(32, seed=1), _bands(64, seed=2)
    row = train_and_score(TINY, TINY_RECIPE, (X, y), val, test, data_tag="bands", device=CPU)
    model, info = _tiny_run()  # the same run, now from the cache
    assert info["cached"]
    assert row["test_acc"] == pytest.approx((predict(model, test[0]).argmax(1) == test[1]).float().mean().item())
    assert row["val_acc"] == info["val_acc"] and row["history"] == info["history"] and row["n_train"] == 96
    assert row["params"] == sum(p.numel() for p in model.parameters()) and row["img_s"] > 0


def test_a_recipe_with_rotation_trains_on_rotated_images(cache):
    rotating = dataclasses.replace(TINY_RECIPE, rotation=20.0)
    assert vgg_cache_entry(TINY, rotating, "bands", 96, 32).path != _entry().path
    _, plain = _tiny_run(use_cache=False)
    _, rotated = _tiny_run(recipe=rotating, use_cache=False)
    assert rotated["history"]["train_loss"] != plain["history"]["train_loss"]


def test_train_vgg_takes_a_device_and_channels_last(cache):
    model, info = _tiny_run(channels_last=True)
    weight = model.features.conv1.conv.weight
    assert weight.device == CPU and weight.is_contiguous(memory_format=torch.channels_last)
    assert not model.training and isinstance(info["val_acc"], float)


def test_train_vgg_leaves_the_global_rng_untouched(cache):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    _tiny_run()
    _tiny_run()  # and from the cache
    assert torch.equal(torch.get_rng_state(), torch_state)
    after = np.random.get_state()
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1]) and after[2:] == np_state[2:]


def test_train_vgg_is_reproducible_without_global_seeding(cache):
    a, info_a = _tiny_run(use_cache=False)
    torch.manual_seed(123)  # the caller's global state does not matter
    b, info_b = _tiny_run(use_cache=False)
    _same_weights(a, b)
    assert info_a["history"]["train_loss"] == info_b["history"]["train_loss"]


@pytest.mark.parametrize("how", DAMAGE_KINDS)
def test_a_damaged_cache_file_is_rebuilt(cache, how):
    model, info = _tiny_run()
    damage(info["path"], how)
    with pytest.warns(CacheWarning, match=re.escape(str(info["path"]))):
        rebuilt, info2 = _tiny_run()
    assert not info2["cached"] and info2["path"] == info["path"]
    _same_weights(rebuilt, model)
    assert _tiny_run()[1]["cached"]  # and the rebuilt file is good


def test_a_crafted_pickle_never_runs(cache, tmp_path):
    marker = tmp_path / "marker"
    path = write_crafted_pickle(_entry().path, marker)
    with pytest.warns(CacheWarning, match=re.escape(str(path))):
        _, info = _tiny_run()
    assert not marker.exists()
    assert not info["cached"] and _tiny_run()[1]["cached"]


def test_a_damaged_partial_checkpoint_restarts_the_run(cache):
    partial = _entry().partial.path
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half a checkpoint")
    with pytest.warns(CacheWarning, match=re.escape(str(partial))):
        _, info = _tiny_run()
    assert info["resumed_from"] == 0 and info["history"]["epoch"] == [1, 2, 3]


class Killed(Exception):
    """Stands for the process being killed during training."""


def test_an_interrupted_run_resumes_where_it_stopped(cache, monkeypatch):
    reference, ref_info = _tiny_run(use_cache=False)  # the same run, uninterrupted
    _entry().discard()
    save = CacheEntry.save
    partial_saves = []

    def save_then_die_in_epoch_2(self, payload):
        if self.path.name.endswith(".partial.pt"):
            partial_saves.append(self.path)
            if len(partial_saves) == 2:  # the end of epoch 2: killed before its checkpoint is written
                raise Killed
        return save(self, payload)

    monkeypatch.setattr(CacheEntry, "save", save_then_die_in_epoch_2)
    with pytest.raises(Killed):
        _tiny_run()
    monkeypatch.setattr(CacheEntry, "save", save)
    entry = _entry()
    assert not entry.exists() and entry.partial.exists()  # nothing under the final name
    model, info = _tiny_run()
    assert not info["cached"] and info["resumed_from"] == 1 and info["history"]["epoch"] == [1, 2, 3]
    assert not entry.partial.exists() and entry.exists()
    _same_weights(model, reference)  # resuming restored weights, optimiser, schedule and the data order
    for key in ("train_loss", "val_loss", "val_acc"):
        assert info["history"][key] == pytest.approx(ref_info["history"][key], rel=1e-6), key
    assert _tiny_run()[1]["cached"]


_WORKER = """
import json, sys
import torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from tests.test_cnn_experiment import TWO_PROCESS_RECIPE, _tiny_run
model, info = _tiny_run(recipe=TWO_PROCESS_RECIPE)
print(json.dumps({{"val_acc": info["val_acc"], "cached": info["cached"], "path": str(info["path"])}}))
"""
TWO_PROCESS_RECIPE = dataclasses.replace(TINY_RECIPE, name="two_process", epochs=2)


def test_two_processes_training_one_cache_both_succeed(cache):
    env = {**os.environ, "COURSE_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
    code = _WORKER.format(root=str(REPO_ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert results[0]["path"] == results[1]["path"]
    assert results[0]["val_acc"] == results[1]["val_acc"]  # the same deterministic run, whoever wrote last
    _, info = _tiny_run(recipe=TWO_PROCESS_RECIPE)
    assert info["cached"] and info["val_acc"] == results[0]["val_acc"]
    assert not list((cache / "cnn").glob("*.partial.pt")) and not list((cache / "cnn").glob(".*.tmp"))


def test_predict_with_flips_averages_an_image_and_its_mirror():
    X, _ = _bands(20, seed=3)
    X[:, :, :, :8] += 1.0  # left half brighter: the mirror image is a different input
    model = VGG(TINY).eval()
    both = predict_with_flips(model, X)
    torch.testing.assert_close(both, (predict(model, X) + predict(model, X.flip(3))) / 2)
    assert not torch.allclose(both, predict(model, X))  # the mirrored view counts
    torch.testing.assert_close(predict_with_flips(model, X.flip(3)), both)  # and the order of the views does not
    with pytest.raises(ValueError, match="N, C, H, W"):
        predict_with_flips(model, X[0])


def test_the_training_precision_keys_the_cache(cache, monkeypatch):
    monkeypatch.setenv("COURSE_CPU_BF16", "0")
    _, info32 = _tiny_run()
    monkeypatch.setenv("COURSE_CPU_BF16", "1")
    _, info16 = _tiny_run()
    assert (info32["precision"], info16["precision"]) == ("float32", "bfloat16")
    assert not info16["cached"] and info16["path"] != info32["path"]  # never the other precision's weights
    assert info16["history"]["train_loss"] != info32["history"]["train_loss"]
