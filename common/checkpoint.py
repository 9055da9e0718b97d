"""Save and load model checkpoints with their config, keyed so that a stale checkpoint is never used silently."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path

import torch
from torch import nn

from common.config import REPO_ROOT

__all__ = ["StaleCheckpointError", "checkpoint_key", "checkpoint_path", "atomic_torch_save", "save_checkpoint",
           "load_checkpoint", "BestCheckpoint"]

#: Bumped when the checkpoint layout changes; part of every key.
FORMAT_VERSION = 1


class StaleCheckpointError(RuntimeError):
    """A checkpoint exists but was made with a different key (config, recipe or data) than asked for."""


def _jsonable(obj):
    if is_dataclass(obj) and not isinstance(obj, type):
        return {"__class__": type(obj).__name__, **asdict(obj)}
    return str(obj)


def checkpoint_key(**parts) -> str:
    """A 12-hex-digit hash of everything that determines the weights (config, recipe, data, seed).

    ``parts`` may hold dataclasses, numbers, strings, lists and dicts. Equal parts give equal keys.
    """
    text = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=_jsonable)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def checkpoint_path(name: str, key: str, root: str | Path | None = None) -> Path:
    """``<root>/<name>-<key>.pt``; ``root`` defaults to ``<repo>/.cache/checkpoints`` (created on demand)."""
    if not name or "/" in name or os.sep in name:
        raise ValueError(f"name must be a plain file stem such as 'vgg_adam', got {name!r}")
    root = Path(root) if root is not None else REPO_ROOT / ".cache" / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    return root / f"{name}-{key}.pt"


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save(obj)`` to a temporary name beside ``path`` (unique to this process), then moved into place:
    an interrupted save never leaves a truncated file, and parallel writers never mix. Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def save_checkpoint(path: str | Path, model: nn.Module, config=None, key: str | None = None, **extra) -> Path:
    """Write ``model``'s weights, its ``config`` (a dataclass, stored as a dict), ``key`` and ``extra``.

    The file is written to a temporary name and then moved into place, so an interrupted save never
    leaves a truncated checkpoint behind. Returns the path.
    """
    payload = {
        "format": FORMAT_VERSION,
        "key": key,
        "config_class": type(config).__name__ if config is not None else None,
        "config": asdict(config) if is_dataclass(config) else config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": extra,
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path, model: nn.Module | None = None, key: str | None = None,
                    config_class=None) -> dict:
    """Read a checkpoint written by ``save_checkpoint``; returns its payload dict.

    ``key``: when given, a checkpoint saved under another key raises ``StaleCheckpointError``.
    ``config_class``: rebuilds ``payload['config']`` as that dataclass. ``model``: its weights are
    loaded in place (strictly: every name and shape must match).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train the model first (or check the name and key)")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT_VERSION:
        raise StaleCheckpointError(f"{path} has checkpoint format {payload.get('format')}, expected "
                                   f"{FORMAT_VERSION}; delete it and train again")
    if key is not None and payload.get("key") != key:
        raise StaleCheckpointError(f"{path} was saved with key {payload.get('key')!r}, not {key!r}: its config, "
                                   f"recipe or data differ; delete it or train again")
    if config_class is not None and payload.get("config") is not None:
        payload["config"] = config_class(**payload["config"])
    if model is not None:
        model.load_state_dict(payload["state_dict"])
    return payload


class BestCheckpoint:
    """``fit(..., on_epoch_end=BestCheckpoint(...))``: saves the model whenever ``history[monitor][-1]`` improves.

    ``mode`` is 'max' (accuracy) or 'min' (loss). ``best`` and ``best_epoch`` (0-based) track the
    best value; ``restore(model)`` loads the best weights back. The history so far is saved as extra.
    """

    def __init__(self, path: str | Path, model: nn.Module, config=None, key: str | None = None,
                 monitor: str = "val_acc", mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.path, self.model, self.config, self.key = Path(path), model, config, key
        self.monitor, self.mode = monitor, mode
        self.best, self.best_epoch = None, None

    def __call__(self, epoch: int, history: dict) -> None:
        values = history.get(self.monitor) or []
        if not values:
            raise KeyError(f"history has no values for monitor={self.monitor!r} (keys: {sorted(history)}); "
                           f"pass a val_loader to fit or monitor another key")
        value = values[-1]
        better = self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        if better:
            self.best, self.best_epoch = value, epoch
            save_checkpoint(self.path, self.model, self.config, self.key, epoch=epoch,
                            history={k: list(v) for k, v in history.items()}, **{self.monitor: value})

    def restore(self, model: nn.Module | None = None) -> dict:
        """Load the best weights into ``model`` (default: the monitored one); returns the payload."""
        return load_checkpoint(self.path, model or self.model, key=self.key)
