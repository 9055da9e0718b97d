"""Saliency maps, fooling images, class visualisation helpers and DeepDream on the pretrained network."""

import numpy as np
import pytest
import torch

from common.experiments.network_visualization import (
    blur_image,
    class_visualization_update_step,
    compute_saliency_maps,
    create_class_visualization,
    deepdream,
    jitter,
    make_fooling_image,
    random_shift_scale,
)
from common.torch_models.pretrained import load_pretrained, preprocess


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def cat():
    import skimage.data

    return preprocess(skimage.data.chelsea(), size=128)  # (1, 3, 128, 128)


def test_saliency_shape_sign_and_value(model, cat):
    X = torch.cat([cat, cat.flip(-1)])
    y = torch.tensor([285, 285])
    S = compute_saliency_maps(X, y, model)
    assert S.shape == (2, 128, 128)
    assert (S >= 0).all() and S.max() > 0
    # value: the max over channels of |d score / d pixel|, against autograd on one image
    x0 = cat.clone().requires_grad_(True)
    model(x0)[0, 285].backward()
    torch.testing.assert_close(S[0], x0.grad.abs().amax(dim=1)[0])
    # each map belongs to its own image: the batched map of image 1 equals its map computed alone
    torch.testing.assert_close(S[1:], compute_saliency_maps(X[1:], y[1:], model))


def test_fooling_succeeds_on_a_photo(model, cat):
    target = 6  # stingray
    X_fool, hist = make_fooling_image(cat, target, model, max_iters=60)
    assert hist["success"] and int(model(X_fool).argmax()) == target
    assert hist["target_prob"][-1] > hist["target_prob"][0]
    # a small change: every pixel moved by well under 10% of the 0-255 range
    assert float((X_fool - cat).abs().max()) * 0.229 < 0.1


def test_gradients_reach_the_input(model, cat):
    img = cat.clone().requires_grad_(True)
    before = img.detach().clone()
    score = class_visualization_update_step(img, model, 1, l2_reg=1e-3, learning_rate=5.0)
    assert np.isfinite(score)
    step = img.detach() - before
    np.testing.assert_allclose(float(step.norm()), 5.0, rtol=1e-4)  # normalised step of length lr
    # the step raised the score
    with torch.no_grad():
        assert float(model(img)[0, 1]) > score


def test_jitter_and_blur():
    X = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6)
    J = jitter(X, 2, -1)
    assert J[0, 0, 0, 2] == X[0, 0, 1, 0]
    torch.testing.assert_close(jitter(J, -2, 1), X)
    B = blur_image(torch.ones(1, 3, 8, 8), sigma=1.0)
    torch.testing.assert_close(B, torch.ones(1, 3, 8, 8))  # a constant image stays constant
    impulse = torch.zeros(1, 1, 9, 9)
    impulse[0, 0, 4, 4] = 1
    b = blur_image(impulse, sigma=1.0)
    assert abs(float(b.sum()) - 1) < 1e-5 and float(b[0, 0, 4, 4]) < 0.2


def test_class_visualisation_raises_the_class_score(model):
    gen = torch.Generator().manual_seed(0)
    img, hist = create_class_visualization(
        130,
        model,
        size=64,
        start_size=None,
        num_iterations=12,
        max_jitter=2,
        scale_jitter=0.0,
        blur_every=0,
        generator=gen,
        progress=False,
        snapshot_every=6,
    )
    assert img.shape == (64, 64, 3)
    assert hist["score"][-1] > hist["score"][0] + 1
    assert [t for t, _ in hist["snapshots"]] == [6, 12]


def test_deepdream_increases_the_objective(model, cat):
    img, hist = deepdream(
        cat[..., :96, :96],
        "block2",
        model,
        num_octaves=2,
        iterations=4,
        generator=torch.Generator().manual_seed(0),
        progress=False,
    )
    assert img.shape == (96, 96, 3) and len(hist["octaves"]) == 2
    first_octave = hist["objective"][:4]
    assert first_octave[-1] > first_octave[0]


class GlobalRNGUntouched:
    """Asserts on exit that neither torch's nor NumPy's global generator was drawn from or reseeded."""

    def __enter__(self):
        self.torch_state, self.np_state = torch.get_rng_state(), np.random.get_state()
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            assert torch.equal(torch.get_rng_state(), self.torch_state), "torch's global generator was used"
            assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), self.np_state)), (
                "NumPy's global generator was used"
            )


def test_every_method_runs_on_the_given_device_and_leaves_global_rng_alone(model, cat):
    cpu = torch.device("cpu")
    small = cat[..., :64, :64]
    with GlobalRNGUntouched():
        S = compute_saliency_maps(small, torch.tensor([285]), model, device=cpu)
        X_fool, _ = make_fooling_image(small, 6, model, max_iters=2, device=cpu)
        img, _ = create_class_visualization(
            1, model, size=64, start_size=32, num_iterations=4, blur_every=2, generator=0, progress=False, device=cpu
        )
        dream, _ = deepdream(
            small, "block1", model, num_octaves=2, iterations=2, generator=0, progress=False, device=cpu
        )
        create_class_visualization(1, size=32, start_size=None, num_iterations=1, progress=False, device=cpu)
    assert S.device == cpu and X_fool.device == cpu and not X_fool.requires_grad
    assert isinstance(img, np.ndarray) and isinstance(dream, np.ndarray) and dream.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="device"):
        compute_saliency_maps(small, torch.tensor([285]), model, device="meta")


def test_randomness_comes_from_the_generator_or_seed(model):
    run = lambda g: create_class_visualization(
        3,
        model,
        size=32,
        start_size=None,
        num_iterations=3,  # noqa: E731
        max_jitter=4,
        generator=g,
        progress=False,
    )[0]
    np.testing.assert_array_equal(run(5), run(torch.Generator().manual_seed(5)))  # an int seeds a generator
    assert not np.array_equal(run(5), run(6))
    x = torch.arange(2 * 3 * 40 * 40, dtype=torch.float32).view(2, 3, 40, 40)
    with GlobalRNGUntouched():
        a = random_shift_scale(x, 8, 0.2, generator=1)
        random_shift_scale(x, 8, 0.2)  # None: a fresh seed from the operating system, not the global generator
    torch.testing.assert_close(a, random_shift_scale(x, 8, 0.2, generator=1))
