"""The captioning data: scene grammar and rendering, splits, encoding, COCO format, BLEU."""

import json

import numpy as np
import pytest

from common.data import captions as cap


def test_scenes_are_deterministic_and_captions_fit():
    imgs, refs = cap.generate_scenes(30, image_size=48, seed=3)
    imgs2, refs2 = cap.generate_scenes(30, image_size=48, seed=3)
    assert imgs.shape == (30, 48, 48, 3) and imgs.dtype == np.uint8
    np.testing.assert_array_equal(imgs, imgs2)
    assert refs == refs2
    vocab = set(cap.scene_vocabulary())
    for r in refs:
        assert 1 <= len(r) <= 4 and len({tuple(w) for w in r}) == len(r)  # distinct references
        for words in r:
            assert set(words) <= vocab and len(words) + 2 <= cap.MAX_LENGTH


def test_captions_describe_what_is_drawn():
    rng = np.random.default_rng(0)
    for _ in range(50):
        img, objects = cap.render_scene(rng, 96)
        refs = cap.scene_captions(objects, rng, k=5)
        for obj in objects:  # every object's colour and shape is named by some reference
            assert any(obj["colour"] in words and obj["shape"] in words for words in refs)
        for obj in objects:  # and is drawn in its cell, in its colour
            r0, c0 = obj["row"] * 32, obj["col"] * 32
            patch = img[r0 : r0 + 32, c0 : c0 + 32].reshape(-1, 3).astype(int)
            dist = np.abs(patch - np.array(cap.COLOURS[obj["colour"]])).sum(axis=1)
            assert (dist < 40).sum() > 30


def test_relations_follow_the_grid():
    a = {"shape": "circle", "colour": "red", "size": "small", "row": 1, "col": 0}
    b = {"shape": "square", "colour": "blue", "size": "large", "row": 1, "col": 2}
    c = {"shape": "square", "colour": "orange", "size": "large", "row": 2, "col": 0}
    assert cap._relation(a, b) == ["to", "the", "left", "of"] and cap._relation(b, a)[2] == "right"
    assert cap._relation(a, c) == ["above"] and cap._relation(c, a) == ["below"]
    assert cap._phrase(c, False) == ["an", "orange", "square"]


def test_encode_decode_round_trip():
    vocab = cap.scene_vocabulary()
    w2i = {w: i for i, w in enumerate(vocab)}
    refs = [[["a", "red", "circle"], ["there", "is", "a", "red", "circle"]], [["a", "blue", "square"]]]
    captions, idxs = cap.encode_captions(refs, w2i)
    assert captions.shape == (3, cap.MAX_LENGTH) and idxs.tolist() == [0, 0, 1]
    assert captions[0, 0] == w2i["<START>"] and captions[0, 4] == w2i["<END>"] and captions[0, 5] == w2i["<NULL>"]
    assert cap.decode_captions(captions, vocab) == ["a red circle", "there is a red circle", "a blue square"]
    assert cap.decode_captions(captions[2], vocab) == "a blue square"
    with pytest.raises(ValueError, match="at most 17"):
        cap.encode_captions([[["a"] * 16]], w2i)


def test_scene_splits_are_distinct_and_validated():
    config = cap.SceneConfig(num_train=6, num_val=3, num_test=2, image_size=32, seed=1)
    images, references = cap.generate_scene_splits(config, captions_per_image=2)
    assert {k: len(v) for k, v in images.items()} == {"train": 6, "val": 3, "test": 2}
    assert all(len(r) <= 2 for refs in references.values() for r in refs)
    assert not np.array_equal(images["train"][:2], images["val"][:2])  # each split has its own seed
    again, _ = cap.generate_scene_splits(config, captions_per_image=2)
    np.testing.assert_array_equal(again["test"], images["test"])
    with pytest.raises(ValueError, match="num_val"):
        cap.generate_scene_splits(cap.SceneConfig(num_val=0))


def test_data_module_does_not_import_models():
    """Data must not depend on models: the captions module imports only common.config and common.data."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cap))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    ours = {m for m in imported if m and m.startswith("common")}
    assert all(m == "common.config" or m.startswith("common.data") for m in ours), ours
    assert not any(m and m.startswith("torch") for m in imported)


def test_sample_minibatch_and_bleu():
    data = {
        "train_captions": np.arange(12).reshape(6, 2),
        "train_image_idxs": np.array([0, 0, 1, 1, 2, 2]),
        "train_features": np.arange(9.0).reshape(3, 3),
    }
    caps, feats, idxs = cap.sample_minibatch(data, batch_size=4, rng=0)
    assert caps.shape == (4, 2) and feats.shape == (4, 3)
    np.testing.assert_array_equal(feats, data["train_features"][idxs])
    refs = [
        [["a", "red", "circle", "on", "the", "left"]],
        [["two", "shapes", "a", "red", "circle", "and", "a", "blue", "square"]],
    ]
    assert cap.bleu(refs, [r[0] for r in refs]) == pytest.approx(1.0)
    assert cap.bleu(refs, [["a", "blue", "square"], ["three"]]) < 0.2
    with pytest.raises(ValueError, match="hypotheses"):
        cap.bleu(refs, [["a"]])


def test_coco_format_is_read(tmp_path, monkeypatch):
    h5py = pytest.importorskip("h5py")
    base = tmp_path / "coco_captioning"
    base.mkdir()
    with h5py.File(base / "coco2014_captions.h5", "w") as f:
        f["train_captions"] = np.array([[1, 4, 2, 0], [1, 5, 2, 0]])
        f["train_image_idxs"] = np.array([0, 1])
        f["val_captions"] = np.array([[1, 5, 2, 0]])
        f["val_image_idxs"] = np.array([0])
    for split, n in (("train", 2), ("val", 1)):
        with h5py.File(base / f"{split}2014_vgg16_fc7_pca.h5", "w") as f:
            f["features"] = np.ones((n, 512), dtype=np.float32)
        (base / f"{split}2014_urls.txt").write_text("\n".join(f"http://x/{i}.jpg" for i in range(n)))
    vocab = ["<NULL>", "<START>", "<END>", "<UNK>", "cat", "dog"]
    (base / "coco2014_vocab.json").write_text(
        json.dumps({"idx_to_word": vocab, "word_to_idx": {w: i for i, w in enumerate(vocab)}})
    )
    data = cap.load_coco_data(base)
    assert data["train_features"].shape == (2, 512) and data["val_urls"].tolist() == ["http://x/0.jpg"]
    assert cap.decode_captions(data["train_captions"], data["idx_to_word"]) == ["cat", "dog"]
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path))
    from common.experiments.captioning import load_captioning_data

    assert load_captioning_data("auto")["source"] == "coco"


def test_missing_coco_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="get_datasets.sh --coco"):
        cap.load_coco_data(tmp_path)
    from common.experiments.captioning import load_captioning_data

    with pytest.raises(ValueError, match="source"):
        load_captioning_data("flickr")
