"""The one checkpoint and cache scheme of the course.

Every cached result (a trained model, a sweep, extracted features, a Solver's epoch) is one file holding
one dict, written by ``CacheEntry.save`` and read by ``CacheEntry.load``:

- **Where.** ``cache_dir()/<kind>/<name>-<key>.pt`` (``COURSE_CACHE_DIR``, default ``<repo>/.cache``);
  ``kind`` groups the files of one experiment (``cnn``, ``gan``, ``palindrome``, ...).
- **Key.** ``cache_key(**parts)`` hashes everything that determines the result: configs (dataclasses),
  data sizes, seeds, and ``code_version(...)`` of the code that computes it. A changed recipe or edited
  code gets a new file; a stale result is never used.
- **Atomic.** A file is written under a unique temporary name in the same folder and renamed when
  complete, so an interrupted write never leaves a truncated file and parallel writers never mix.
- **Work in progress** (periodic checkpoints of a training run) lives under ``entry.partial``
  (``<name>-<key>.partial.pt``), never under the finished result's name; the next call resumes from it
  or starts again.
- **Safe to read.** Files are read with ``torch.load(weights_only=True)``: tensors, NumPy arrays (stored
  as tensors), numbers, strings, lists, tuples and dicts only; nothing read from disk can run code.
- **Self-healing.** A file that cannot be read (empty, truncated, garbage, another format version, keys
  missing) gives a ``CacheWarning`` that names it and is treated as absent, so the result is rebuilt.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

import numpy as np
import torch

from common.config import cache_dir

__all__ = [
    "FORMAT_VERSION",
    "CacheWarning",
    "CacheEntry",
    "cache_key",
    "code_version",
    "cache_entry",
    "cached",
    "model_state",
]

#: Version of the payload layout; a file of another version is rebuilt.
FORMAT_VERSION = 2

_NDARRAY = "__ndarray__"
_UMASK = os.umask(0)
os.umask(_UMASK)


class CacheWarning(UserWarning):
    """A cache file could not be used (unreadable, old format, incomplete) and will be rebuilt."""


def _jsonable(obj):
    if is_dataclass(obj) and not isinstance(obj, type):
        return {"__class__": type(obj).__name__, **asdict(obj)}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        array = np.ascontiguousarray(obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj)
        # the dtype too: equal bytes in another dtype are other numbers
        return {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            "sha256": hashlib.sha256(array.tobytes()).hexdigest(),
        }
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"cache_key cannot hash a {type(obj).__name__}; pass numbers, strings, lists, dicts, dataclasses or arrays"
    )


def cache_key(**parts) -> str:
    """A 16-hex-digit hash of everything that determines a cached result.

    ``parts`` may hold numbers, strings, lists, tuples, dicts, dataclasses (hashed field by field) and
    arrays (hashed by content). Equal parts give equal keys; the format version is part of every key.
    """
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_version(*objects) -> str:
    """A hash of the source of ``objects`` (modules, classes, functions) and of the torch version: the
    version of the code that computes a result. Part of a cache key, it retires results of edited code."""
    if not objects:
        raise ValueError("code_version needs at least one module, class or function")
    sources = [inspect.getsource(obj) for obj in objects]
    text = "\n".join(sources) + f"\ntorch {torch.__version__}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _to_storable(obj):
    """Payload -> what ``torch.load(weights_only=True)`` accepts: arrays become tagged tensors, dataclasses
    dicts, NumPy scalars Python numbers."""
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError("object arrays cannot be cached; store lists or numeric arrays")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, (np.integer, np.floating, np.bool_, np.str_, np.bytes_)):
        return obj.item()
    if is_dataclass(obj) and not isinstance(obj, type):
        return _to_storable(asdict(obj))
    if isinstance(obj, dict):  # keys too: a NumPy-scalar key would save but never load
        return {_to_storable(k): _to_storable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_storable(v) for v in obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(
        f"cannot cache a {type(obj).__name__}: store tensors, arrays, numbers, strings, lists, "
        f"tuples, dicts or dataclasses (state_dict() for modules and optimisers)"
    )


def _from_storable(obj):
    if isinstance(obj, dict):
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].numpy()
        return {k: _from_storable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_storable(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_from_storable(v) for v in obj)
    return obj


def model_state(module: torch.nn.Module) -> dict:
    """``module.state_dict()`` detached and on the CPU, ready to store."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


@dataclass(frozen=True)
class CacheEntry:
    """One cache file: ``load`` it (None when absent or unusable), ``save`` a payload dict atomically."""

    path: Path

    @property
    def partial(self) -> CacheEntry:
        """Where work in progress of this entry is checkpointed (``<name>-<key>.partial.pt``)."""
        return CacheEntry(self.path.with_name(self.path.name.removesuffix(".pt") + ".partial.pt"))

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self, required=(), map_location="cpu") -> dict | None:
        """The payload dict, or None when there is no file. A file that cannot be used (unreadable,
        another format version, or missing one of the ``required`` keys) gives a ``CacheWarning`` naming
        it, is deleted, and counts as absent."""
        if not self.path.is_file():
            return None
        try:
            payload = torch.load(self.path, map_location=map_location, weights_only=True)
        except PermissionError as err:  # another user's file: leave it, compute without it
            warnings.warn(
                f"cannot read the cache file {self.path} ({err.strerror}); computing the result instead",
                CacheWarning,
                stacklevel=2,
            )
            return None
        except Exception as err:  # empty, truncated, garbage, or a pickle that asks for code
            first_line = next(iter(str(err).splitlines()), "")  # an empty file raises a bare EOFError()
            return self._unusable(f"it cannot be read ({type(err).__name__}: {first_line[:120]})")
        if not isinstance(payload, dict):
            return self._unusable(f"it holds a {type(payload).__name__}, not a checkpoint dict")
        if payload.get("format") != FORMAT_VERSION:
            return self._unusable(f"it has format version {payload.get('format')!r}, this code writes {FORMAT_VERSION}")
        missing = [k for k in required if k not in payload]
        if missing:
            return self._unusable(f"it lacks {', '.join(map(repr, missing))}")
        return _from_storable(payload)

    def _unusable(self, why: str) -> None:
        warnings.warn(f"ignoring the cache file {self.path}: {why}; it will be rebuilt", CacheWarning, stacklevel=3)
        self.discard()
        return None

    def save(self, payload: dict) -> Path:
        """Write ``payload`` (a dict; modules as ``model_state(m)``) atomically; returns the path."""
        if not isinstance(payload, dict):
            raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
        storable = {**_to_storable(payload), "format": FORMAT_VERSION}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; a cache follows the umask like any file
            with os.fdopen(fd, "wb") as f:
                torch.save(storable, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path

    def discard(self) -> None:
        """Delete the file if it is there."""
        self.path.unlink(missing_ok=True)


def cache_entry(kind: str, name: str, key: str, root: str | Path | None = None) -> CacheEntry:
    """The entry ``<root>/<kind>/<name>-<key>.pt``; ``root`` defaults to ``cache_dir()``."""
    for label, value in (("kind", kind), ("name", name), ("key", key)):
        if not value or "/" in value or os.sep in value or value.startswith("."):
            raise ValueError(f"{label} must be a plain file-name part such as 'vgg_adam', got {value!r}")
    root = Path(root) if root is not None else cache_dir()
    return CacheEntry(root / kind / f"{name}-{key}.pt")


def cached(
    entry: CacheEntry | None, compute: Callable[[], dict], required=(), verbose: bool = True
) -> tuple[dict, bool]:
    """``(payload, from_cache)``: the payload stored at ``entry`` if usable, else ``compute()``, saved there.

    ``entry=None`` always computes and stores nothing.
    """
    if entry is not None:
        payload = entry.load(required)
        if payload is not None:
            if verbose:
                print(f"loaded from cache: {entry.path} (delete it to recompute)")
            return payload, True
    payload = compute()
    if entry is not None:
        entry.save(payload)
    return payload, False
