"""Loaders on fixtures in the real on-disk formats, the substitution banner, generators, torch adapters."""

import numpy as np
import pytest
import torch

from common.data.generators import make_blobs, make_circles, make_gaussian_clouds, make_moons
from common.data.images import (
    DatasetNotFoundError,
    get_classification_data,
    load_cifar10,
    load_fashion_mnist,
    load_image_classification,
    load_mnist,
    read_idx,
)
from common.data.torch_data import ArrayDataset, make_loader
from tests.conftest import write_cifar_batches, write_idx, write_idx_dataset


def test_read_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a.idx", "a.idx.gz"):
        np.testing.assert_array_equal(read_idx(write_idx(tmp_path / name, array)), array)


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")  # 0x0d = float, not unsigned byte
    with pytest.raises(ValueError, match="magic"):
        read_idx(bad)
    truncated = tmp_path / "short.idx"
    truncated.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 10]) + b"abc")
    with pytest.raises(ValueError, match="truncated.*get_datasets.sh"):
        read_idx(truncated)


@pytest.mark.parametrize(
    "loader, folder, first_class", [(load_mnist, "mnist", "0"), (load_fashion_mnist, "fashion-mnist", "T-shirt/top")]
)
def test_idx_loaders_shapes_and_values(data_root, loader, folder, first_class):
    arrays = write_idx_dataset(data_root / folder, n_train=12, n_test=6)
    data = loader()
    assert data.X_train.shape == (12, 1, 28, 28) and data.X_train.dtype == np.uint8
    assert data.X_test.shape == (6, 1, 28, 28)
    assert data.y_train.dtype == np.int64 and data.y_train.shape == (12,)
    np.testing.assert_array_equal(data.X_train[:, 0], arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(data.y_test, arrays["t10k-labels-idx1-ubyte.gz"])
    assert data.class_names[0] == first_class and len(data.class_names) == 10


def test_cifar10_loader_channel_layout(data_root):
    written = write_cifar_batches(data_root / "cifar-10-batches-py", n_per_batch=4)
    data = load_cifar10()
    assert data.X_train.shape == (20, 3, 32, 32) and data.X_test.shape == (4, 3, 32, 32)
    row, labels = written["data_batch_2"][0][1], written["data_batch_2"][1]
    # A CIFAR row is the red plane, then green, then blue, each 32x32 row-major.
    np.testing.assert_array_equal(data.X_train[5, 1], row[1024:2048].reshape(32, 32))
    assert data.y_train[5] == labels[1]
    assert data.class_names[3] == "cat"


@pytest.mark.parametrize(
    "loader, name", [(load_mnist, "mnist"), (load_fashion_mnist, "fashion_mnist"), (load_cifar10, "cifar10")]
)
def test_missing_dataset_names_the_command(data_root, loader, name):
    with pytest.raises(DatasetNotFoundError) as info:
        loader()
    message = str(info.value)
    assert "bash get_datasets.sh" in message and f"--only {name}" in message and str(data_root) in message


def test_fallback_prints_a_banner_naming_the_substitute(data_root, capsys):
    write_idx_dataset(data_root / "fashion-mnist")
    data = load_image_classification(prefer="cifar10")
    out = capsys.readouterr().out
    assert data.name == "fashion_mnist"
    assert "CIFAR-10 is not available" in out and "runs on Fashion-MNIST" in out and "get_datasets.sh" in out


def test_no_banner_when_the_preferred_dataset_is_there(data_root, capsys):
    write_idx_dataset(data_root / "fashion-mnist")
    write_cifar_batches(data_root / "cifar-10-batches-py")
    assert load_image_classification(prefer="cifar10").name == "cifar10"
    assert capsys.readouterr().out == ""


def test_no_silent_swap_when_both_are_missing(data_root):
    with pytest.raises(DatasetNotFoundError, match="Fashion-MNIST"):
        load_image_classification(prefer="cifar10")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_image_classification(prefer="imagenet")


def test_get_classification_data_splits_like_cs231n(data_root, capsys):
    write_idx_dataset(data_root / "fashion-mnist", n_train=30, n_test=8)
    raw = load_fashion_mnist()
    d = get_classification_data(num_training=20, num_validation=5, num_test=4, dtype=np.float64)
    assert d["dataset"] == "fashion_mnist" and "Fashion-MNIST" in capsys.readouterr().out
    assert d["X_train"].shape == (20, 1, 28, 28) and d["X_val"].shape == (5, 1, 28, 28)
    assert d["X_test"].shape == (4, 1, 28, 28) and d["X_train"].dtype == np.float64
    np.testing.assert_allclose(d["X_train"].mean(axis=0), 0, atol=1e-9)
    np.testing.assert_array_equal(d["y_val"], raw.y_train[25:])  # the last 5 of the official train set
    np.testing.assert_allclose(d["X_val"] + d["mean_image"], raw.X_train[25:].astype(np.float64))
    with pytest.raises(ValueError, match="num_training"):
        get_classification_data(num_training=26, num_validation=5)


def test_gaussian_clouds_are_seeded_and_labelled():
    X, y = make_gaussian_clouds(n_per_class=50, seed=3)
    X2, y2 = make_gaussian_clouds(n_per_class=50, seed=3)
    assert X.shape == (100, 2) and set(np.unique(y)) == {-1, 1}
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, make_gaussian_clouds(n_per_class=50, seed=4)[0])
    # With std 0 every point sits on its class mean.
    X0, y0 = make_gaussian_clouds(n_per_class=5, std=0.0, seed=0)
    np.testing.assert_array_equal(X0[y0 == 1], np.full((5, 2), 2.0))
    with pytest.raises(ValueError, match="n_per_class"):
        make_gaussian_clouds(n_per_class=0)


@pytest.mark.parametrize("make, classes", [(make_moons, 2), (make_circles, 2), (make_blobs, 3)])
def test_sklearn_generators_are_seeded(make, classes):
    X, y = make(n_samples=60, seed=1)
    assert X.shape == (60, 2) and y.dtype == np.int64 and len(np.unique(y)) == classes
    np.testing.assert_array_equal(X, make(n_samples=60, seed=1)[0])


def test_array_dataset_scales_uint8_and_checks_lengths():
    X = np.full((4, 1, 2, 2), 255, dtype=np.uint8)
    ds = ArrayDataset(X, np.arange(4))
    x, y = ds[2]
    assert x.dtype == torch.float32 and torch.all(x == 1.0) and y.item() == 2 and len(ds) == 4
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        ArrayDataset(X, np.arange(3))


def test_make_loader_shuffles_reproducibly():
    X, y = np.arange(20, dtype=np.float32)[:, None], np.arange(20)
    order = lambda seed: torch.cat([yb for _, yb in make_loader(X, y, batch_size=5, shuffle=True, seed=seed)])
    assert torch.equal(order(0), order(0))
    assert not torch.equal(order(0), order(1))
    assert sorted(order(0).tolist()) == list(range(20))
    assert torch.equal(torch.cat([yb for _, yb in make_loader(X, y, batch_size=7)]), torch.arange(20))
