"""Damaged cache files for the tests of every cache: empty, truncated, garbage, and a crafted pickle whose
unpickling would run code (it would create a marker file)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch


class _Payload:
    """Unpickling this object calls ``os.system`` (here: ``touch marker``). A safe loader refuses it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def write_crafted_pickle(path: Path, marker: Path) -> Path:
    """A torch-format file at ``path`` whose loading with ``weights_only=False`` would create ``marker``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": 2, "payload": _Payload(marker)}, path)
    return path


def write_raw_crafted_pickle(path: Path, marker: Path) -> Path:
    """A plain pickle file (as ``pickle.load`` reads) that would create ``marker`` when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"data": _Payload(marker)}, f, protocol=2)
    return path


def damage(path: Path, how: str) -> Path:
    """Damage an existing file in place: 'empty', 'truncated' (first half kept) or 'garbage'."""
    data = path.read_bytes() if path.exists() else b""
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[: max(1, len(data) // 2)])
    elif how == "garbage":
        path.write_bytes(b"this is not a checkpoint\x00\xff" * 10)
    else:
        raise ValueError(f"how must be 'empty', 'truncated' or 'garbage', got {how!r}")
    return path


DAMAGE_KINDS = ("empty", "truncated", "garbage")
