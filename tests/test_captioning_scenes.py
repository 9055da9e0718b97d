"""The captioning notebooks' scenes dataset: pretrained scene features and their cache (common.training.checkpoint)."""

import warnings

import numpy as np
import pytest
import torch

from common.data import captions as cap
from common.experiments import captioning
from common.training.checkpoint import CacheWarning
from tests.cache_faults import DAMAGE_KINDS, damage, write_crafted_pickle

CONFIG = cap.SceneConfig(num_train=20, num_val=5, num_test=5, image_size=32, seed=1)


@pytest.fixture
def fake_features(monkeypatch, tmp_path):
    """The network replaced by a fixed function of the pixels, counting calls; caches under tmp_path."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    calls = []

    def fake(images, device=None, progress=True):
        calls.append(len(images))
        flat = images.reshape(len(images), -1).astype(np.float32)
        return flat[:, :40] + flat[:, -40:]

    monkeypatch.setattr(captioning, "scene_features", fake)
    return calls


def _cache_files(tmp_path):
    return sorted((tmp_path / "captioning").glob("scenes-*.pt"))


def test_scenes_dataset_features_are_cached(fake_features, tmp_path):
    data = captioning.load_scenes_data(CONFIG, feature_dim=8, progress=False)
    assert fake_features == [20, 5, 5]
    assert data["train_features"].shape == (20, 8) and data["val_features"].shape == (5, 8)
    assert data["train_features"].dtype == np.float32 and data["source"] == "scenes"
    assert data["train_captions"].shape[1] == cap.MAX_LENGTH
    assert data["train_image_idxs"].max() == 19 and len(data["train_references"]) == 20
    again = captioning.load_scenes_data(CONFIG, feature_dim=8, progress=False)
    assert fake_features == [20, 5, 5]  # read from the cache
    np.testing.assert_array_equal(again["val_features"], data["val_features"])
    other = cap.SceneConfig(num_train=20, num_val=5, num_test=5, image_size=32, seed=2)
    captioning.load_scenes_data(other, feature_dim=8, progress=False)
    assert fake_features == [20, 5, 5] * 2  # another config never reuses the cache
    captioning.load_scenes_data(CONFIG, feature_dim=6, progress=False)
    captioning.load_scenes_data(CONFIG, feature_dim=6, captions_per_image=2, progress=False)
    assert fake_features == [20, 5, 5] * 4  # nor another feature size or caption count
    assert len(_cache_files(tmp_path)) == 4
    with pytest.raises(ValueError, match="feature_dim"):
        captioning.load_scenes_data(CONFIG, feature_dim=50)


def test_scenes_cache_key_follows_the_code(fake_features, monkeypatch):
    before = captioning.scenes_cache_entry(CONFIG, 8, 4).path

    def scene_features(images, device=None, progress=True):  # an edited feature function
        return np.zeros((len(images), 40), dtype=np.float32)

    monkeypatch.setattr(captioning, "scene_features", scene_features)
    assert captioning.scenes_cache_entry(CONFIG, 8, 4).path != before
    assert before.parent.name == "captioning" and before.name.startswith("scenes-")


@pytest.mark.parametrize("how", DAMAGE_KINDS)
def test_damaged_scenes_cache_is_rebuilt(fake_features, tmp_path, how):
    data = captioning.load_scenes_data(CONFIG, feature_dim=8, progress=False)
    (path,) = _cache_files(tmp_path)
    damage(path, how)
    with pytest.warns(CacheWarning, match=str(path)):
        again = captioning.load_scenes_data(CONFIG, feature_dim=8, progress=False)
    assert fake_features == [20, 5, 5] * 2  # recomputed
    np.testing.assert_allclose(again["test_features"], data["test_features"], rtol=1e-5, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # the rebuilt file is good
        captioning.load_scenes_data(CONFIG, feature_dim=8, progress=False)
    assert fake_features == [20, 5, 5] * 2


def test_crafted_pickle_in_the_scenes_cache_never_runs(fake_features, tmp_path):
    path = captioning.scenes_cache_entry(CONFIG, 8, 4).path
    marker = tmp_path / "pwned"
    write_crafted_pickle(path, marker)
    with pytest.warns(CacheWarning, match=str(path)):
        data = captioning.load_scenes_data(CONFIG, feature_dim=8, progress=False)
    assert not marker.exists()
    assert fake_features == [20, 5, 5] and data["train_features"].shape == (20, 8)


def test_captioning_data_is_scenes_without_coco(fake_features, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "no_data"))
    data = captioning.load_captioning_data("auto", config=CONFIG, feature_dim=8, progress=False)
    assert data["source"] == "scenes" and "--coco" in capsys.readouterr().out


def test_real_pretrained_features_see_colour_and_place():
    """With the real network: a red circle on the left is nearer to another red one on the left than to a
    blue one there, or to a red one on the right. Runs on the device asked for and leaves the global
    random state alone."""
    images = np.full((4, 96, 96, 3), 240, dtype=np.uint8)
    for img, colour, col, dy in zip(images, ["red", "red", "blue", "red"], [16, 16, 16, 80], [0, 4, 0, 0]):
        cap._draw(img, "circle", (48 + dy, col), 12, cap.COLOURS[colour])
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    f = captioning.scene_features(images, batch_size=3, device=torch.device("cpu"), progress=False)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert f.shape == (4, 1280 * 9) and f.dtype == np.float32
    d = lambda i, j: np.linalg.norm(f[i] - f[j])  # noqa: E731
    assert d(0, 1) < d(0, 2) and d(0, 1) < d(0, 3)
