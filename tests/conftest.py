"""Fixtures shared by the tests: small datasets written in the real on-disk formats."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8) as an idx file, gzip-compressed when ``path`` ends in .gz."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_idx_dataset(folder: Path, n_train: int = 12, n_test: int = 6, seed: int = 0) -> dict:
    """Four MNIST-format files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / name, array)
    return arrays


def write_cifar_batches(folder: Path, n_per_batch: int = 4, seed: int = 0) -> dict:
    """CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``) in ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f, protocol=2)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(
            {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]},
            f,
            protocol=2,
        )
    return written


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty data directory that ``common.config.data_dir()`` points at."""
    root = tmp_path / "datasets"
    root.mkdir()
    monkeypatch.setenv("COURSE_DATA_DIR", str(root))
    return root


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests use tiny tensors: one intra-op thread is faster, and far faster when parallel test workers
    share the cores (thread hand-offs then cost more than they save). Restored at the end."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
