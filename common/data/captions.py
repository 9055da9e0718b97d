"""Captioning data: generated scenes of coloured shapes with their captions, the vocabulary, caption
encoding/decoding, CS231n's COCO files, minibatches and BLEU.

CS231n's dictionary: ``{split}_captions (N, 17)`` word indices, ``{split}_image_idxs (N,)``,
``{split}_features (M, D)``, ``word_to_idx``, ``idx_to_word`` (a list). ``load_coco_data`` reads it from
the COCO files; the scenes' image features need the pretrained network, so the scenes dataset is
assembled in ``common.experiments.captioning`` (``load_scenes_data``, ``load_captioning_data``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.config import data_dir
from common.data.fetch import FETCH_COMMAND

SPECIAL = ["<NULL>", "<START>", "<END>", "<UNK>"]
MAX_LENGTH = 17  # tokens per caption, <START> and <END> included (as in CS231n's COCO files)

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
    "purple": (140, 60, 180),
    "orange": (245, 130, 20),
}
SIZES = {"small": 0.24, "large": 0.42}  # radius as a fraction of a grid cell (a third of the canvas)
#: Added to ``SceneConfig.seed`` for each split, so the splits never share a scene.
SPLIT_SEED_OFFSETS = {"train": 0, "val": 10_000, "test": 20_000}


@dataclass(frozen=True)
class SceneConfig:
    """How many scenes of each split, their size in pixels, and the seed that draws them."""

    num_train: int = 4000
    num_val: int = 500
    num_test: int = 500
    image_size: int = 96
    seed: int = 0


# ---------------------------------------------------------------------------- rendering


def _draw(canvas: np.ndarray, shape: str, centre: tuple[float, float], radius: float, colour) -> None:
    from skimage.draw import disk, polygon

    r, c = centre
    if shape == "circle":
        rr, cc = disk((r, c), radius, shape=canvas.shape[:2])
    else:
        if shape == "square":
            d = radius * 0.9
            rows, cols = [r - d, r - d, r + d, r + d], [c - d, c + d, c + d, c - d]
        elif shape == "triangle":
            rows, cols = [r - radius, r + 0.8 * radius, r + 0.8 * radius], [c, c + radius, c - radius]
        elif shape == "diamond":
            rows, cols = [r - radius, r, r + radius, r], [c, c + radius, c, c - radius]
        else:
            raise ValueError(f"unknown shape {shape!r}; choose from {SHAPES}")
        rr, cc = polygon(rows, cols, shape=canvas.shape[:2])
    canvas[rr, cc] = colour


def _phrase(obj: dict, with_size: bool) -> list[str]:
    """'a small red circle' (with_size) or 'an orange square' as a word list."""
    words = ([obj["size"]] if with_size else []) + [obj["colour"], obj["shape"]]
    return ["an" if words[0][0] in "aeiou" else "a"] + words


def _relation(a: dict, b: dict) -> list[str]:
    """How ``a`` stands relative to ``b``, from their grid cells."""
    if a["col"] != b["col"]:
        return ["to", "the", "left" if a["col"] < b["col"] else "right", "of"]
    return ["above"] if a["row"] < b["row"] else ["below"]


def _place(obj: dict) -> list[str]:
    row = ["at", "the", "top"] if obj["row"] == 0 else ["at", "the", "bottom"] if obj["row"] == 2 else []
    col = ["on", "the", "left"] if obj["col"] == 0 else ["on", "the", "right"] if obj["col"] == 2 else []
    return row or col or ["in", "the", "middle"]


def scene_captions(objects: list[dict], rng: np.random.Generator, k: int = 4) -> list[list[str]]:
    """``k`` different reference captions (word lists) for a scene, from a small grammar."""
    objs = sorted(objects, key=lambda o: (o["col"], o["row"]))  # left to right
    options: list[list[str]] = []
    if len(objs) == 1:
        (a,) = objs
        options += [
            _phrase(a, True),
            _phrase(a, False),
            ["there", "is"] + _phrase(a, True),
            _phrase(a, False) + _place(a),
            _phrase(a, True) + _place(a),
        ]
    elif len(objs) == 2:
        a, b = objs
        options += [
            _phrase(a, True) + _relation(a, b) + _phrase(b, True),
            _phrase(b, False) + _relation(b, a) + _phrase(a, False),
            _phrase(a, False) + ["and"] + _phrase(b, False),
            ["two", "shapes"] + _phrase(a, True) + ["and"] + _phrase(b, True),
            _phrase(a, True) + _relation(a, b) + _phrase(b, False),
        ]
    else:
        a, b, c = objs[:3]
        options += [
            _phrase(a, False) + _phrase(b, False) + ["and"] + _phrase(c, False),
            ["three", "shapes"] + _phrase(a, True) + _phrase(b, True) + ["and"] + _phrase(c, True),
            _phrase(a, False) + _relation(a, b) + _phrase(b, False) + ["and"] + _phrase(c, False),
            ["three", "shapes"] + _phrase(a, False) + _phrase(b, False) + ["and"] + _phrase(c, False),
        ]
    options = [o for o in options if len(o) + 2 <= MAX_LENGTH]
    picks = rng.choice(len(options), size=min(k, len(options)), replace=False)
    return [options[i] for i in sorted(picks)]


def render_scene(rng: np.random.Generator, image_size: int = 96) -> tuple[np.ndarray, list[dict]]:
    """One scene: 1-3 shapes in distinct cells of a 3x3 grid on a light, slightly noisy background.

    Returns the image ``(S, S, 3)`` uint8 and its objects (shape, colour, size, row, col).
    """
    S = image_size
    background = rng.integers(225, 250)
    canvas = np.full((S, S, 3), background, dtype=np.float64)
    canvas += rng.normal(0, 4, size=canvas.shape)
    n_objects = int(rng.choice([1, 2, 3], p=[0.3, 0.45, 0.25]))
    cells = rng.choice(9, size=n_objects, replace=False)
    colours = rng.choice(list(COLOURS), size=n_objects, replace=n_objects > len(COLOURS))
    objects = []
    cell = S / 3
    for cell_id, colour in zip(cells, colours):
        row, col = divmod(int(cell_id), 3)
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size] * cell * (1 + rng.uniform(-0.08, 0.08))
        jitter = (cell / 2 - radius) * 0.6
        centre = ((row + 0.5) * cell + rng.uniform(-jitter, jitter), (col + 0.5) * cell + rng.uniform(-jitter, jitter))
        obj = {"shape": str(rng.choice(SHAPES)), "colour": str(colour), "size": size, "row": row, "col": col}
        _draw(canvas, obj["shape"], centre, radius, COLOURS[obj["colour"]])
        objects.append(obj)
    return np.clip(canvas, 0, 255).astype(np.uint8), objects


def generate_scenes(n: int, image_size: int = 96, seed: int = 0, captions_per_image: int = 4):
    """``n`` scenes: images ``(n, S, S, 3)`` uint8 and, per image, a list of reference word lists."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    references = []
    for i in range(n):
        images[i], objects = render_scene(rng, image_size)
        references.append(scene_captions(objects, rng, captions_per_image))
    return images, references


def generate_scene_splits(config: SceneConfig = SceneConfig(), captions_per_image: int = 4):
    """The train, val and test scenes of ``config``: ``(images, references)``, two dicts keyed by split."""
    sizes = {"train": config.num_train, "val": config.num_val, "test": config.num_test}
    for split, n in sizes.items():
        if n < 1:
            raise ValueError(f"num_{split} must be at least 1, got {n}")
    images, references = {}, {}
    for split, n in sizes.items():
        seed = config.seed + SPLIT_SEED_OFFSETS[split]
        images[split], references[split] = generate_scenes(n, config.image_size, seed, captions_per_image)
    return images, references


# ---------------------------------------------------------------------------- vocabulary and encoding


def scene_vocabulary() -> list[str]:
    """Every word the scene grammar can produce, after the special tokens (fixed order)."""
    words = [
        "a",
        "an",
        "there",
        "is",
        "and",
        "two",
        "three",
        "shapes",
        "to",
        "the",
        "left",
        "right",
        "of",
        "above",
        "below",
        "at",
        "top",
        "bottom",
        "on",
        "in",
        "middle",
    ]
    return SPECIAL + sorted(set(words) | set(SHAPES) | set(COLOURS) | set(SIZES))


def encode_captions(references: list[list[list[str]]], word_to_idx: dict) -> tuple[np.ndarray, np.ndarray]:
    """All captions as ``(N_captions, MAX_LENGTH)`` indices (``<START> ... <END> <NULL>...``) and their image index."""
    rows, image_idxs = [], []
    unk = word_to_idx["<UNK>"]
    for i, refs in enumerate(references):
        for words in refs:
            tokens = ["<START>"] + words + ["<END>"]
            if len(tokens) > MAX_LENGTH:
                raise ValueError(f"caption {' '.join(words)!r} has {len(tokens)} tokens; at most {MAX_LENGTH}")
            row = np.full(MAX_LENGTH, word_to_idx["<NULL>"], dtype=np.int64)
            row[: len(tokens)] = [word_to_idx.get(w, unk) for w in tokens]
            rows.append(row)
            image_idxs.append(i)
    return np.stack(rows), np.asarray(image_idxs, dtype=np.int64)


def decode_captions(captions: np.ndarray, idx_to_word) -> list[str] | str:
    """Word indices ``(N, T)`` (or one ``(T,)``) -> strings, stopping at ``<END>``, without special tokens."""
    captions = np.asarray(captions)
    single = captions.ndim == 1
    decoded = []
    for row in np.atleast_2d(captions):
        words = []
        for idx in row:
            word = idx_to_word[int(idx)]
            if word == "<END>":
                break
            if word not in ("<NULL>", "<START>"):
                words.append(word)
        decoded.append(" ".join(words))
    return decoded[0] if single else decoded


# ---------------------------------------------------------------------------- COCO (CS231n's files)


def load_coco_data(
    base_dir: str | Path | None = None, max_train: int | None = None, pca_features: bool = True, seed: int = 0
) -> dict:
    """CS231n's COCO captioning set from ``datasets/coco_captioning`` (fetch with ``--coco``).

    Returns the CS231n dictionary (captions, image indices, fc7 features, vocabulary, image URLs).
    ``max_train`` keeps a random subset of the training captions (drawn with ``seed``).
    """
    import h5py

    base = Path(base_dir) if base_dir else data_dir() / "coco_captioning"
    if not (base / "coco2014_captions.h5").is_file():
        raise FileNotFoundError(
            f"COCO captioning is not in {base}. Fetch it with `{FETCH_COMMAND} --coco` "
            "(about 1 GB), or use the generated scenes "
            "(common.experiments.captioning.load_captioning_data(source='scenes'))."
        )
    data = {"source": "coco"}
    with h5py.File(base / "coco2014_captions.h5", "r") as f:
        for k, v in f.items():
            data[k] = np.asarray(v)
    suffix = "_pca" if pca_features else ""
    for split in ("train", "val"):
        with h5py.File(base / f"{split}2014_vgg16_fc7{suffix}.h5", "r") as f:
            data[f"{split}_features"] = np.asarray(f["features"])
        urls = base / f"{split}2014_urls.txt"
        if urls.is_file():
            data[f"{split}_urls"] = np.asarray(urls.read_text().split())
    vocab = json.loads((base / "coco2014_vocab.json").read_text())
    data["idx_to_word"], data["word_to_idx"] = vocab["idx_to_word"], vocab["word_to_idx"]
    if max_train is not None:
        rng = np.random.default_rng(seed)
        keep = rng.choice(len(data["train_captions"]), size=min(max_train, len(data["train_captions"])), replace=False)
        data["train_captions"], data["train_image_idxs"] = data["train_captions"][keep], data["train_image_idxs"][keep]
    return data


def sample_minibatch(data: dict, batch_size: int = 100, split: str = "train", rng=None):
    """A random minibatch: ``(captions (B, T), features (B, D), image_idxs (B,))``."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n = len(data[f"{split}_captions"])
    mask = rng.choice(n, size=batch_size, replace=n < batch_size)
    captions = data[f"{split}_captions"][mask]
    image_idxs = data[f"{split}_image_idxs"][mask]
    return captions, data[f"{split}_features"][image_idxs], image_idxs


# ---------------------------------------------------------------------------- BLEU


def bleu(references: list[list[list[str]]], hypotheses: list[list[str]], max_n: int = 4) -> float:
    """Corpus BLEU-``max_n`` (NLTK, uniform n-gram weights, smoothing method 1) in [0, 1].

    ``references``: per image, its reference captions as word lists; ``hypotheses``: one word list per image.
    """
    from nltk.translate.bleu_score import SmoothingFunction, corpus_bleu

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference sets but {len(hypotheses)} hypotheses")
    weights = tuple([1.0 / max_n] * max_n)
    return float(corpus_bleu(references, hypotheses, weights=weights, smoothing_function=SmoothingFunction().method1))
