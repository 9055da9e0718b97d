"""Captioning notebooks' data: the generated scenes with pretrained image features (cached), or COCO.

``load_scenes_data`` renders the scenes (``common.data.captions``), describes every image by the
pretrained EfficientNet-Lite0 (``scene_features``), reduces that to ``feature_dim`` by PCA and caches the
reduced features with ``common.training.checkpoint`` under ``cache_dir()/captioning/``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from common.config import LoadAwareThreads, data_dir
from common.data import captions
from common.data.captions import SceneConfig, encode_captions, generate_scene_splits, load_coco_data, scene_vocabulary
from common.data.fetch import FETCH_COMMAND
from common.torch_models import pretrained
from common.training.checkpoint import cache_entry, cache_key, cached, code_version

SPLITS = ("train", "val", "test")


def scene_features(
    images: np.ndarray,
    size: int = 128,
    grid: int = 3,
    batch_size: int = 64,
    model: torch.nn.Module | None = None,
    device=None,
    progress: bool = True,
) -> np.ndarray:
    """Pretrained features that keep where things are: EfficientNet-Lite0's last feature map
    (1280 channels) average-pooled to a ``grid x grid`` layout, flattened.

    A single global average would say *what* is in the image but not *where*, and captions say
    "to the left of". ``images`` (N, S, S, 3) uint8 are resized to ``size``. ``model``, ``device``: the
    network and where it runs (None: ``model``'s device, else ``get_device()``); each batch is moved there.
    Returns NumPy float32 ``(N, 1280 * grid**2)``.
    """
    model, device = pretrained.model_and_device(model, device)
    out = np.empty((len(images), pretrained.FEATURE_DIM * grid * grid), dtype=np.float32)
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="image features", unit="batch")
    with torch.no_grad(), LoadAwareThreads(device) as threads:
        for s in starts:
            threads.poll()  # every CPU while the machine is otherwise idle
            x = pretrained.preprocess(images[s : s + batch_size], size=size, crop=True, device=device)
            (head,) = pretrained.block_features(x, ["head"], model)  # (B, 1280, size/32, size/32)
            pooled = F.adaptive_avg_pool2d(head, grid)  # (B, 1280, grid, grid)
            out[s : s + len(x)] = pooled.flatten(1).cpu().numpy()
    return out


def reduced_scene_features(images: dict, feature_dim: int, device=None, progress: bool = True) -> dict:
    """``{'<split>_features': (M, feature_dim) float32}``: ``scene_features`` of every split, projected on
    the first ``feature_dim`` principal components of the training split's."""
    from sklearn.decomposition import PCA

    raw = {split: scene_features(images[split], device=device, progress=progress) for split in SPLITS}
    pca = PCA(n_components=feature_dim, random_state=0).fit(raw["train"])
    return {f"{split}_features": pca.transform(raw[split]).astype(np.float32) for split in SPLITS}


def scenes_cache_entry(config: SceneConfig, feature_dim: int, captions_per_image: int):
    """The cache file of the scenes' reduced features: keyed by the config, the sizes, and the code that
    draws the scenes (the whole captions module: its constants shape the pictures too) and computes the
    features."""
    code = code_version(
        captions,
        scene_features,
        reduced_scene_features,
        pretrained.preprocess,
        pretrained.resize,
        pretrained.block_features,
    )
    key = cache_key(config=config, feature_dim=feature_dim, captions_per_image=captions_per_image, code=code)
    return cache_entry("captioning", "scenes", key)


def load_scenes_data(
    config: SceneConfig | None = None,
    feature_dim: int = 256,
    captions_per_image: int = 4,
    device=None,
    progress: bool = True,
) -> dict:
    """The generated scenes-and-captions set with pretrained image features reduced by PCA.

    Images are rendered from ``config.seed``; each image's features are EfficientNet-Lite0's last
    feature map pooled to a 3x3 grid (``scene_features``, run on ``device``), reduced to ``feature_dim``
    by a PCA fitted on the training images, and cached (``scenes_cache_entry``): a changed config or
    edited code computes them afresh, an unreadable cache file is reported and rebuilt.

    Returns CS231n's dictionary for the splits train, val and test, plus ``{split}_images (M, S, S, 3)``
    uint8, every image's reference captions ``{split}_references`` (lists of word lists, for BLEU) and
    ``source='scenes'``.
    """
    config = config if config is not None else SceneConfig()
    if feature_dim > config.num_train:
        raise ValueError(
            f"feature_dim={feature_dim} needs at least as many training images; num_train={config.num_train}"
        )
    images, references = generate_scene_splits(config, captions_per_image)
    entry = scenes_cache_entry(config, feature_dim, captions_per_image)
    features, _ = cached(
        entry,
        lambda: reduced_scene_features(images, feature_dim, device, progress),
        required=[f"{split}_features" for split in SPLITS],
        verbose=progress,
    )

    vocab = scene_vocabulary()
    word_to_idx = {w: i for i, w in enumerate(vocab)}
    data = {"word_to_idx": word_to_idx, "idx_to_word": vocab, "source": "scenes"}
    for split in SPLITS:
        data[f"{split}_captions"], data[f"{split}_image_idxs"] = encode_captions(references[split], word_to_idx)
        data[f"{split}_features"] = features[f"{split}_features"]
        data[f"{split}_images"] = images[split]
        data[f"{split}_references"] = references[split]
    return data


def load_captioning_data(
    source: str = "auto",
    config: SceneConfig | None = None,
    feature_dim: int = 256,
    captions_per_image: int = 4,
    max_train: int | None = None,
    device=None,
    progress: bool = True,
) -> dict:
    """COCO when ``source='coco'`` (or 'auto' and it has been fetched), else the generated scenes.

    'auto' prints which one it uses. ``config`` (default ``SceneConfig()``), ``feature_dim``,
    ``captions_per_image``, ``device`` and ``progress`` go to ``load_scenes_data``; ``max_train`` to ``load_coco_data``.
    """
    if source not in {"auto", "coco", "scenes"}:
        raise ValueError(f"source must be 'auto', 'coco' or 'scenes', got {source!r}")
    coco_there = (data_dir() / "coco_captioning" / "coco2014_captions.h5").is_file()
    if source == "coco" or (source == "auto" and coco_there):
        return load_coco_data(max_train=max_train)
    if source == "auto":
        print(
            "COCO captioning is not downloaded: using the generated scenes-and-captions set "
            f"(`{FETCH_COMMAND} --coco` fetches COCO)."
        )
    return load_scenes_data(config, feature_dim, captions_per_image, device=device, progress=progress)
