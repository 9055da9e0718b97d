"""Image-classification datasets as NumPy arrays: CIFAR-10, MNIST, Fashion-MNIST and sample photos.

Images come back as ``uint8`` arrays of shape ``(N, C, H, W)``; labels as ``int64`` ``(N,)``.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import data_dir
from common.data.fetch import FETCH_COMMAND, IDX_FILES

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
TITLES = {"cifar10": "CIFAR-10", "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not in the data directory; the message names the command that fetches it."""


class DatasetCorruptError(ValueError):
    """A dataset file is there but unreadable or not what the format holds; the message names the file and
    the command that repairs it (the fetcher replaces every file that fails its checksum)."""


@dataclass
class ImageData:
    """A labelled image dataset with its official train/test split."""

    name: str  # 'cifar10' | 'mnist' | 'fashion_mnist'
    X_train: np.ndarray  # (N, C, H, W) uint8
    y_train: np.ndarray  # (N,) int64
    X_test: np.ndarray  # (N_test, C, H, W) uint8
    y_test: np.ndarray  # (N_test,) int64
    class_names: list[str]

    @property
    def title(self) -> str:
        return TITLES.get(self.name, self.name)

    def __repr__(self) -> str:
        return (
            f"ImageData({self.title}: train {self.X_train.shape}, test {self.X_test.shape}, "
            f"{len(self.class_names)} classes)"
        )


def _not_found(title: str, where: Path, only: str) -> DatasetNotFoundError:
    return DatasetNotFoundError(
        f"{title} is not in {where}. Fetch it from the repository root with `{FETCH_COMMAND}` "
        f"(or `python -m common.data.fetch --only {only}`); set COURSE_DATA_DIR if your data lives elsewhere."
    )


def _corrupt(path: Path, what: str, only: str | None) -> DatasetCorruptError:
    also = f" (or `python -m common.data.fetch --only {only}`)" if only else ""
    return DatasetCorruptError(
        f"{path} is corrupt: {what}. Repair it from the repository root with `{FETCH_COMMAND}`{also}, "
        "which replaces every file that fails its checksum."
    )


def read_idx(path: str | Path, dataset: str | None = None) -> np.ndarray:
    """Read an idx file (optionally .gz), the format of MNIST and Fashion-MNIST, into an array.

    A damaged file raises ``DatasetCorruptError`` naming it and the fetch command (with ``--only dataset``
    when ``dataset`` is given)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except EOFError:
        raise _corrupt(path, "truncated (the compressed data ends early)", dataset) from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise _corrupt(path, f"its gzip data is damaged ({exc})", dataset) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise _corrupt(path, f"not an unsigned-byte idx file (bad magic number {raw[:4]!r})", dataset)
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=min(4 + 4 * ndim, len(raw)))
    if len(raw) < 4 + 4 * ndim or data.size != int(np.prod(dims)):
        raise _corrupt(path, f"truncated (it holds {data.size} values, its header says {dims})", dataset)
    return data.reshape(dims)


def _load_idx_dataset(name: str, folder: str, classes: list[str], root: Path | None) -> ImageData:
    where = Path(root or data_dir()) / folder
    paths = [where / f for f in IDX_FILES]
    if not all(p.is_file() for p in paths):
        raise _not_found(TITLES[name], where, name)
    X_train, y_train, X_test, y_test = (read_idx(p, name) for p in paths)
    for images, labels, (image_path, label_path) in ((X_train, y_train, paths[:2]), (X_test, y_test, paths[2:])):
        if images.ndim != 3 or labels.ndim != 1:
            bad = image_path if images.ndim != 3 else label_path
            raise _corrupt(bad, "not an image file (N, H, W) and a label file (N,) as the format holds", name)
        if len(images) != len(labels):
            raise _corrupt(label_path, f"{len(labels)} labels for the {len(images)} images of {image_path.name}", name)
    return ImageData(
        name, X_train[:, None], y_train.astype(np.int64), X_test[:, None], y_test.astype(np.int64), list(classes)
    )


def load_mnist(root: str | Path | None = None) -> ImageData:
    """MNIST digits: 60,000 train and 10,000 test images, ``(N, 1, 28, 28)`` uint8."""
    return _load_idx_dataset("mnist", "mnist", MNIST_CLASSES, root)


def load_fashion_mnist(root: str | Path | None = None) -> ImageData:
    """Fashion-MNIST: 60,000 train and 10,000 test images of clothing, ``(N, 1, 28, 28)`` uint8."""
    return _load_idx_dataset("fashion_mnist", "fashion-mnist", FASHION_MNIST_CLASSES, root)


class _Refused(pickle.UnpicklingError):
    """The pickle asks for something a CIFAR-10 batch never holds."""


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles (protocol 2) write bytes: ``_codecs.encode(text, 'latin1')``, nothing else."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise _Refused(f"it calls _codecs.encode with {encoding!r}, which a CIFAR-10 batch never holds")
    return text.encode("latin1")


def _plain_dtype(*args) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _Refused("it holds an array of Python objects, which a CIFAR-10 batch never holds")
    return dtype


class _CifarUnpickler(pickle.Unpickler):
    """Reads only what a CIFAR-10 python batch holds: dicts, lists, str/bytes, numbers and NumPy arrays of
    numbers. Any other global (a function to call, a class to build) is refused before it is looked up."""

    _reconstruct = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, wherever this NumPy keeps it
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # the published files (NumPy 1 pickles)
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # the same pickled by NumPy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_bytes,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"it references {module}.{name}, which a CIFAR-10 batch never holds") from None


def _load_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(f, encoding="latin1").load()
        data, y = batch["data"], np.asarray(batch["labels"], dtype=np.int64)
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
            raise ValueError(f"its 'data' is {type(data).__name__} {getattr(data, 'dtype', '')}, not a uint8 array")
        X = data.reshape(-1, 3, 32, 32)  # rows are R, G, B planes
    except OSError:
        raise
    except _Refused as exc:
        raise _corrupt(path, f"not a CIFAR-10 batch, so it was not loaded: {exc}", "cifar10") from None
    except Exception as exc:  # a damaged pickle fails in many ways (EOFError, KeyError, ValueError, ...)
        raise _corrupt(path, f"not a readable CIFAR-10 batch ({type(exc).__name__}: {exc})", "cifar10") from None
    if y.shape != (len(X),) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise _corrupt(path, f"{y.size} labels for {len(X)} images, or labels outside 0-9", "cifar10")
    return X, y


def load_cifar10(root: str | Path | None = None) -> ImageData:
    """CIFAR-10: 50,000 train and 10,000 test colour images, ``(N, 3, 32, 32)`` uint8."""
    where = Path(root or data_dir()) / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((where / n).is_file() for n in names):
        raise _not_found("CIFAR-10", where, "cifar10")
    train = [_load_cifar_batch(where / n) for n in names[:5]]
    X_test, y_test = _load_cifar_batch(where / "test_batch")
    X_train = np.concatenate([X for X, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return ImageData("cifar10", X_train, y_train, X_test, y_test, list(CIFAR10_CLASSES))


LOADERS = {"cifar10": load_cifar10, "fashion_mnist": load_fashion_mnist, "mnist": load_mnist}


def substitution_banner(wanted: str, got: str) -> str:
    """The banner printed when a notebook runs on a substitute dataset."""
    lines = [
        f"NOTE: {TITLES[wanted]} is not available here, so this notebook runs on {TITLES[got]}.",
        f"Results and targets below are the {TITLES[got]} ones. To use {TITLES[wanted]}, run",
        f"`{FETCH_COMMAND}` with internet access (or with --mirror DIR) and restart the notebook.",
    ]
    width = max(map(len, lines))
    bar = "#" * (width + 4)
    return "\n".join([bar, *(f"# {line:<{width}} #" for line in lines), bar])


def load_image_classification(
    prefer: str = "cifar10", root: str | Path | None = None, fallback: str = "fashion_mnist", verbose: bool = True
) -> ImageData:
    """The ``prefer``red dataset if present, else ``fallback`` with a printed banner naming the swap.

    Never swaps silently: the banner says which dataset is used and how to get the preferred one.
    Raises ``DatasetNotFoundError`` when neither is present, and ``DatasetCorruptError`` when the preferred
    one is there but damaged (no swap then: repair it).
    """
    for name in (prefer, fallback):
        if name not in LOADERS:
            raise ValueError(f"unknown dataset {name!r}; choose from {sorted(LOADERS)}")
    try:
        return LOADERS[prefer](root)
    except DatasetNotFoundError:
        if fallback == prefer:
            raise
    data = LOADERS[fallback](root)
    if verbose:
        print(substitution_banner(prefer, fallback))
    return data


def get_classification_data(
    num_training: int | None = None,
    num_validation: int = 1000,
    num_test: int | None = 1000,
    subtract_mean: bool = True,
    prefer: str = "cifar10",
    dtype=np.float32,
    root: str | Path | None = None,
    verbose: bool = True,
) -> dict:
    """Train/val/test split, preprocessed like CS231n's ``get_CIFAR10_data``.

    The last ``num_validation`` of the official training images form the validation set (as in
    CS231n: train is the first 49,000 of CIFAR-10); ``num_training`` of those before them are kept
    (all when None); ``num_test`` test images. The mean training image is subtracted when
    ``subtract_mean``. Pixels stay on the 0-255 scale (minus the mean), as in CS231n.

    Returns a dict with ``X_train, y_train, X_val, y_val, X_test, y_test`` (images ``(N, C, H, W)``
    in ``dtype``), ``mean_image`` ``(C, H, W)``, ``class_names`` and ``dataset`` (the name used).
    """
    data = load_image_classification(prefer, root, verbose=verbose)
    n_total = len(data.X_train)
    if num_validation < 0 or num_validation >= n_total:
        raise ValueError(f"num_validation must be in [0, {n_total}), got {num_validation}")
    available = n_total - num_validation
    num_training = available if num_training is None else num_training
    if not 0 < num_training <= available:
        raise ValueError(
            f"num_training must be in (0, {available}] for {data.title} with "
            f"num_validation={num_validation}, got {num_training}"
        )
    num_test = len(data.X_test) if num_test is None else min(num_test, len(data.X_test))
    X_train = data.X_train[:num_training].astype(dtype)
    X_val = data.X_train[available:].astype(dtype)
    X_test = data.X_test[:num_test].astype(dtype)
    mean_image = X_train.mean(axis=0) if subtract_mean else np.zeros(X_train.shape[1:], dtype)
    return {
        "X_train": X_train - mean_image,
        "y_train": data.y_train[:num_training],
        "X_val": X_val - mean_image,
        "y_val": data.y_train[available:],
        "X_test": X_test - mean_image,
        "y_test": data.y_test[:num_test],
        "mean_image": mean_image,
        "class_names": data.class_names,
        "dataset": data.name,
    }


def load_sample_photos() -> dict[str, np.ndarray]:
    """Photographs shipped inside scikit-image and scikit-learn, as ``(H, W, 3)`` uint8 RGB arrays.

    Content and style images for style transfer, seeds for DeepDream, inputs for the pretrained net.
    """
    import skimage.data
    from sklearn.datasets import load_sample_images

    photos = {
        name: getattr(skimage.data, name)()
        for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina")
    }
    photos["motorcycle_left"] = skimage.data.stereo_motorcycle()[0]
    for name in ("brick", "grass", "gravel"):  # grey textures, as RGB
        photos[name] = np.repeat(getattr(skimage.data, name)()[..., None], 3, axis=2)
    sk = load_sample_images()
    for fname, image in zip(sk.filenames, sk.images):
        photos[Path(fname).stem] = image
    return photos
