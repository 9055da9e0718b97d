"""Style-transfer losses against direct NumPy computations, and a short transfer run."""

import numpy as np
import pytest
import torch

from common.diagnose import assert_close
from common.experiments.style_transfer import content_loss, gram_matrix, style_loss, style_transfer, tv_loss

RTOL, ATOL = 1e-10, 1e-12  # float64 throughout


def _rng():
    return np.random.default_rng(0)


def _gram_np(F, normalize=True):
    """Explicit loops over channel pairs: G[n, c, d] = sum_{h, w} F[n, c, h, w] F[n, d, h, w]."""
    N, C, H, W = F.shape
    G = np.zeros((N, C, C))
    for n in range(N):
        for c in range(C):
            for d in range(C):
                G[n, c, d] = np.sum(F[n, c] * F[n, d])
    return G / (H * W * C) if normalize else G


def test_content_loss_matches_numpy():
    a, b = _rng().normal(size=(2, 1, 5, 4, 3))
    got = content_loss(0.7, torch.from_numpy(a), torch.from_numpy(b))
    context = {"C*H*W": a.size, "content_weight": 0.7}
    assert_close("content_loss: loss", float(got), 0.7 * np.sum((a - b) ** 2), rtol=RTOL, context=context)
    with pytest.raises(ValueError, match="same shape"):
        content_loss(1.0, torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 4, 4))


@pytest.mark.parametrize("normalize", [True, False])
def test_gram_matrix_matches_numpy(normalize):
    F = _rng().normal(size=(2, 4, 3, 5))
    got = gram_matrix(torch.from_numpy(F), normalize=normalize).numpy()
    N, C, H, W = F.shape
    context = {"C": C, "H*W": H * W, "C*H*W": C * H * W, "axes": ("N", "C", "C")}
    assert_close("gram_matrix: gram", got, _gram_np(F, normalize), rtol=RTOL, atol=ATOL, context=context)


def test_style_loss_matches_numpy_with_dict_and_list_features():
    rng = _rng()
    feats = [rng.normal(size=(1, C, S, S)) for C, S in [(3, 6), (4, 5), (6, 3)]]
    targets = [rng.normal(size=(1, C, C)) for C in (3, 6)]
    weights = [2.0, 0.5]
    expected = sum(w * np.sum((_gram_np(feats[layer]) - A) ** 2) for layer, A, w in zip([0, 2], targets, weights))
    as_list = [torch.from_numpy(f) for f in feats]
    got = style_loss(as_list, [0, 2], [torch.from_numpy(t) for t in targets], weights)
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)
    as_dict = {"a": as_list[0], "b": as_list[1], "c": as_list[2]}
    got = style_loss(as_dict, ["a", "c"], [torch.from_numpy(t) for t in targets], weights)
    np.testing.assert_allclose(float(got), expected, rtol=RTOL)
    with pytest.raises(ValueError, match="one entry per style layer"):
        style_loss(as_list, [0, 2], targets, [1.0])


def test_tv_loss_matches_numpy():
    img = _rng().normal(size=(1, 3, 6, 7))
    vertical = horizontal = 0.0
    for c in range(3):  # explicit neighbour differences
        for i in range(6):
            for j in range(7):
                if i + 1 < 6:
                    vertical += (img[0, c, i + 1, j] - img[0, c, i, j]) ** 2
                if j + 1 < 7:
                    horizontal += (img[0, c, i, j + 1] - img[0, c, i, j]) ** 2
    one_direction = {
        "only the vertical differences (the horizontal ones, along W, are missing)": 0.3 * vertical,
        "only the horizontal differences (the vertical ones, along H, are missing)": 0.3 * horizontal,
    }
    got = float(tv_loss(torch.from_numpy(img), 0.3))
    context = {"tv_weight": 0.3, "suspects": one_direction}
    assert_close("tv_loss: loss", got, 0.3 * (vertical + horizontal), rtol=RTOL, context=context)


def _gradcheck(loss):
    """Autograd through ``loss`` (a function of one (1, 2, 3, 3) image) agrees with central differences in
    float64: every operation in it is differentiable and nothing is detached."""
    x = torch.from_numpy(_rng().normal(size=(1, 2, 3, 3))).requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (x,), eps=1e-6, atol=1e-6, rtol=1e-5)


# one test per loss: a loss not written yet fails only its own
def test_style_loss_gradients_match_numeric_gradients():
    target = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 2, 2)))
    _gradcheck(lambda t: style_loss([t], [0], [target], [3.0]))


def test_tv_loss_gradients_match_numeric_gradients():
    _gradcheck(lambda t: tv_loss(t, 0.2))


def test_content_loss_gradients_match_numeric_gradients():
    _gradcheck(lambda t: content_loss(0.5, t, 0 * t + 1))


def test_style_transfer_runs_and_reduces_the_loss():
    rng = np.random.default_rng(1)
    content = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:40, :40]
    style = np.stack([(np.sin(xx / 2.0) > 0) * 255, (np.sin(yy / 3.0) > 0) * 255, 0 * xx], -1).astype(np.uint8)
    img, hist = style_transfer(
        content,
        style,
        image_size=32,
        style_size=32,
        num_iters=15,
        style_layers=("stem", "block0"),
        style_weights=(1e3, 1e3),
        content_layer="block2",
        progress=False,
        snapshot_every=5,
    )
    assert img.shape == (32, 38, 3) and img.min() >= 0 and img.max() <= 1
    assert len(hist["loss"]) == 15 and len(hist["snapshots"]) == 3
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    with pytest.raises(ValueError, match="optimizer"):
        style_transfer(content, style, optimizer="sgd", progress=False)


def test_style_transfer_on_a_given_device_leaves_global_rng_alone():
    rng = np.random.default_rng(2)
    content = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    style = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    kwargs = dict(
        image_size=32,
        style_size=32,
        num_iters=2,
        style_layers=("stem",),
        style_weights=(1e3,),
        content_layer="block0",
        init_random=True,
        progress=False,
        device=torch.device("cpu"),
    )
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    img, _ = style_transfer(content, style, generator=3, **kwargs)
    style_transfer(content, style, **kwargs)  # no generator: a fresh seed, not the global generator
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), np_state))
    assert isinstance(img, np.ndarray) and img.shape == (32, 32, 3)
    again, _ = style_transfer(content, style, generator=torch.Generator().manual_seed(3), **kwargs)
    np.testing.assert_allclose(again, img, atol=1e-6)  # an int seed is the same as a generator seeded with it
