"""Saliency maps, fooling images, class visualisation helpers and DeepDream on the pretrained network."""

import numpy as np
import pytest
import torch
from torch import nn

from common.diagnose import assert_close
from common.experiments.network_visualization import (
    blur_image,
    class_visualization_update_step,
    compute_saliency_maps,
    create_class_visualization,
    deepdream,
    deepdream_step,
    jitter,
    make_fooling_image,
    random_shift_scale,
)
from common.torch_models.pretrained import block_features, load_pretrained, preprocess


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def cat():
    import skimage.data

    return preprocess(skimage.data.chelsea(), size=128)  # (1, 3, 128, 128)


def _tiny_net(seed=0):
    """A small float64 CNN (3 x 6 x 6 images -> 5 scores) with weights from its own generator."""
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    return net


def _numeric_input_gradient(f, X, h=1e-6):
    """Central differences of the scalar ``f(X)`` with respect to every entry of ``X`` (float64)."""
    grad = torch.zeros_like(X)
    for idx in np.ndindex(*X.shape):
        Xp, Xm = X.clone(), X.clone()
        Xp[idx] += h
        Xm[idx] -= h
        grad[idx] = (f(Xp) - f(Xm)) / (2 * h)
    return grad


def test_saliency_matches_central_differences():
    net = _tiny_net()
    X = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = torch.tensor([1, 3])
    S = compute_saliency_maps(X, y, net)
    assert S.shape == (2, 6, 6)
    for n in range(2):  # the saliency definition, from the score of image n alone
        with torch.no_grad():
            g = _numeric_input_gradient(lambda x: float(net(x[None])[0, y[n]]), X[n])  # (3, 6, 6)
        other_maps = {  # other ways of reducing the three channels' gradients
            "the largest signed gradient over the channels instead of the largest absolute value": g.amax(dim=0),
            "the sum of |gradient| over the channels instead of its maximum": g.abs().sum(dim=0),
        }
        context = {"axes": ("H", "W"), "suspects": other_maps}
        name = f"compute_saliency_maps: saliency of image {n}"
        assert_close(name, S[n], g.abs().amax(dim=0), rtol=1e-6, atol=1e-9, check_dtype=True, context=context)


def test_saliency_on_the_pretrained_network(model, cat):
    X = torch.cat([cat, cat.flip(-1)])
    y = torch.tensor([285, 285])
    S = compute_saliency_maps(X, y, model)
    assert S.shape == (2, 128, 128)
    assert (S >= 0).all() and S.max() > 0
    # each map belongs to its own image: the batched map of image 1 equals its map computed alone
    torch.testing.assert_close(S[1:], compute_saliency_maps(X[1:], y[1:], model))


def test_fooling_succeeds_on_a_photo(model, cat):
    target = 6  # stingray
    X_fool, hist = make_fooling_image(cat, target, model, max_iters=60)
    assert hist["success"] and int(model(X_fool).argmax()) == target
    assert hist["target_prob"][-1] > hist["target_prob"][0]
    # a small change: every pixel moved by well under 10% of the 0-255 range
    assert float((X_fool - cat).abs().max()) * 0.229 < 0.1


def test_fooling_steps_ascend_with_normalised_length(model, cat):
    # two steps, too few to fool: each step raises the target score and moves the image by learning_rate (L2)
    X_fool, hist = make_fooling_image(cat, 6, model, learning_rate=0.5, max_iters=2)
    assert not hist["success"] and hist["iterations"] == 2
    assert hist["target_score"][0] < hist["target_score"][1] < hist["target_score"][2]
    moved = float((X_fool - cat).norm())
    assert 0.5 * 2 * 0.5 < moved <= 2 * 0.5 * (1 + 1e-4)  # two steps of length 0.5, roughly aligned


def test_class_visualization_step_is_the_normalised_gradient_of_the_regularised_score():
    # a linear "network" s = x.flatten() @ W: the gradient of s_y - l2 ||I||^2 is W[:, y] - 2 l2 I in closed form
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(3 * 4 * 4, 5, generator=gen, dtype=torch.float64)
    linear = nn.Sequential(nn.Flatten(), nn.Linear(48, 5, bias=False)).double()
    with torch.no_grad():
        linear[1].weight.copy_(W.T)
    img = torch.randn(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    # the score is of the transformed image: a 1x1 convolution that doubles the image, a differentiable T
    double = nn.Conv2d(3, 3, 1, bias=False).double().requires_grad_(False)
    with torch.no_grad():
        double.weight.copy_(2 * torch.eye(3, dtype=torch.float64).view(3, 3, 1, 1))
    for transform, scale in ((None, 1.0), (double, 2.0)):
        x = img.clone().requires_grad_(True)
        score = class_visualization_update_step(x, linear, 2, l2_reg=0.3, learning_rate=0.7, transform=transform)
        assert score == pytest.approx(scale * float(img.flatten() @ W[:, 2]), rel=1e-12)
        g = scale * W[:, 2].view(1, 3, 4, 4) - 2 * 0.3 * img
        torch.testing.assert_close(x.detach(), img + 0.7 * g / g.norm(), rtol=1e-10, atol=1e-12)


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


def test_deepdream_step_objective_and_step_size(model, cat):
    small = cat[..., :64, :64]
    with torch.no_grad():
        (act,) = block_features(jitter(small, 3, -2), ["block2"], model)  # (1, 24, 16, 16)
    img = small.clone().requires_grad_(True)
    objective = deepdream_step(img, "block2", model, learning_rate=0.02, shift=(3, -2))
    assert objective == pytest.approx(0.5 * float((act.double() ** 2).mean()), rel=1e-5)  # of the shifted image
    step = img.detach() - small
    assert float(step.abs().mean()) == pytest.approx(0.02, rel=1e-4)  # normalised by the mean |gradient|
    again = deepdream_step(img, "block2", model, learning_rate=0.02, shift=(3, -2))
    assert again > objective  # the step went uphill
    img = small.clone().requires_grad_(True)
    only = deepdream_step(img, "block2", model, learning_rate=0.02, shift=(3, -2), channels=[0, 5])
    assert only == pytest.approx(0.5 * float((act[:, [0, 5]].double() ** 2).mean()), rel=1e-5)


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


# one test per exercise (saliency, fooling) and one for the given drivers: one not written yet fails only its own
def test_saliency_runs_on_the_given_device_and_leaves_global_rng_alone(model, cat):
    cpu = torch.device("cpu")
    small = cat[..., :64, :64]
    with GlobalRNGUntouched():
        S = compute_saliency_maps(small, torch.tensor([285]), model, device=cpu)
    assert S.device == cpu
    with pytest.raises(ValueError, match="device"):
        compute_saliency_maps(small, torch.tensor([285]), model, device="meta")


def test_fooling_runs_on_the_given_device_and_leaves_global_rng_alone(model, cat):
    cpu = torch.device("cpu")
    small = cat[..., :64, :64]
    with GlobalRNGUntouched():
        X_fool, _ = make_fooling_image(small, 6, model, max_iters=2, device=cpu)
    assert X_fool.device == cpu and not X_fool.requires_grad


def test_class_visualization_and_deepdream_run_on_the_given_device_and_leave_global_rng_alone(model, cat):
    cpu = torch.device("cpu")
    small = cat[..., :64, :64]
    with GlobalRNGUntouched():
        img, _ = create_class_visualization(
            1, model, size=64, start_size=32, num_iterations=4, blur_every=2, generator=0, progress=False, device=cpu
        )
        dream, _ = deepdream(
            small, "block1", model, num_octaves=2, iterations=2, generator=0, progress=False, device=cpu
        )
        create_class_visualization(1, size=32, start_size=None, num_iterations=1, progress=False, device=cpu)
    assert isinstance(img, np.ndarray) and isinstance(dream, np.ndarray) and dream.shape == (64, 64, 3)


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
