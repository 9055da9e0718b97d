"""Tests for common.torch_models.gan (shapes and layouts, losses against closed forms, sampling) and
common.experiments.gan (training loop, weight averaging, checkpoints, cache)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from common.config import training_precision
from common.diagnose import assert_close
from common.experiments.gan import (
    GANTrainConfig,
    _gan_step,
    _Run,
    ema_generator,
    gan_cache_entry,
    recalibrate_batchnorm,
    train_gan,
    train_gan_cached,
)
from common.torch_models.gan import (
    LOSSES,
    DCDiscriminator,
    DCGANConfig,
    DCGenerator,
    Discriminator,
    GANConfig,
    Generator,
    build_gan,
    discriminator_loss,
    from_gan_range,
    generate,
    generator_loss,
    interpolate_latents,
    latent_dim_of,
    ls_discriminator_loss,
    ls_generator_loss,
    sample_noise,
    to_gan_range,
)
from common.training.checkpoint import cache_entry

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fixed_threads(monkeypatch):
    """Runs compared bit for bit need a fixed thread count: on an idle machine the training loop would switch
    between one and two threads at load-dependent steps (``LoadAwareThreads``), and two runs would differ in
    the last bits. ``make unit`` sets it too; this covers a bare ``pytest``."""
    monkeypatch.setenv("COURSE_THREADS", "1")


def _output_of(module: nn.Module, run):
    """What ``module`` returned during ``run()`` (a forward hook), and what ``run()`` returned."""
    seen = []
    handle = module.register_forward_hook(lambda m, inputs, output: seen.append(output))
    try:
        result = run()
    finally:
        handle.remove()
    return seen[-1], result


# Each network is an exercise of its own, built directly (not through build_gan, which builds a pair) in tests
# of its own: a discriminator not written yet fails only its own tests, and it is fed images in [-1, 1] that
# do not come from a generator.
def _seeded(cls, config, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(config)


def _images(n=3, seed=0):
    """``n`` images in [-1, 1], the range of a generator's output."""
    return 2 * torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) - 1


def test_generator_layout_matches_cs324():
    G = _seeded(Generator, GANConfig())
    g_linears = [m for m in G.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in g_linears] == [
        (100, 128),
        (128, 256),
        (256, 512),
        (512, 1024),
        (1024, 784),
    ]
    # BatchNorm on every hidden layer but the first
    assert [m.num_features for m in G.modules() if isinstance(m, nn.BatchNorm1d)] == [256, 512, 1024]
    assert all(m.negative_slope == 0.2 for m in G.modules() if isinstance(m, nn.LeakyReLU))
    # the images are tanh of the last linear layer, reshaped
    z = sample_noise(3, 100, torch.Generator().manual_seed(0))
    last, images = _output_of(g_linears[-1], lambda: G.eval()(z))
    torch.testing.assert_close(images, torch.tanh(last).view(3, 1, 28, 28))


def test_discriminator_layout_matches_cs324():
    D = _seeded(Discriminator, GANConfig())
    d_linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in d_linears] == [(784, 512), (512, 256), (256, 1)]
    # the logits are the last linear layer's output itself (no sigmoid), one per image
    last, logits = _output_of(d_linears[-1], lambda: D(_images()))
    torch.testing.assert_close(logits, last.squeeze(1))


def test_dcgenerator_layout_matches_its_docstring():
    C, H = 8, 48
    G = _seeded(DCGenerator, DCGANConfig(channels=C, g_hidden=H))
    linears = [m for m in G.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, H), (H, 2 * C * 7 * 7)]
    ups = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in ups] == [
        (2 * C, C, (4, 4), (2, 2)),
        (C, 1, (4, 4), (2, 2)),
    ]
    norms = [m.num_features for m in G.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert norms == [H, 2 * C * 49, C]
    z = sample_noise(3, 100, torch.Generator().manual_seed(0))
    last, images = _output_of(ups[-1], lambda: G.eval()(z))
    assert last.shape == (3, 1, 28, 28)  # 7 -> 14 -> 28
    torch.testing.assert_close(images, torch.tanh(last))


def test_dcdiscriminator_layout_matches_its_docstring():
    C, H = 8, 24
    D = _seeded(DCDiscriminator, DCGANConfig(channels=C, d_hidden=H))
    convs = [m for m in D.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in convs] == [
        (1, C, (4, 4), (2, 2)),
        (C, 2 * C, (4, 4), (2, 2)),
    ]
    assert [m.num_features for m in D.modules() if isinstance(m, nn.BatchNorm2d)] == [2 * C]
    assert all(m.negative_slope == 0.2 for m in D.modules() if isinstance(m, nn.LeakyReLU))
    features, _ = _output_of(convs[-1], lambda: D(_images()))
    assert features.shape == (3, 2 * C, 7, 7)  # 28 -> 14 -> 7
    linears = [m for m in D.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2 * C * 49, H), (H, 1)]
    # the logits are the last linear layer's output itself (no sigmoid), one per image
    last, logits = _output_of(linears[-1], lambda: D(_images()))
    torch.testing.assert_close(logits, last.squeeze(1))


def _check_images_in_the_tanh_range(G, latent_dim):
    x = G(sample_noise(5, latent_dim, torch.Generator().manual_seed(0)))
    assert x.shape == (5, 1, 28, 28)
    assert x.min() >= -1 and x.max() <= 1


def test_generator_gives_images_in_the_tanh_range():
    _check_images_in_the_tanh_range(_seeded(Generator, GANConfig()), GANConfig().latent_dim)


def test_dcgenerator_gives_images_in_the_tanh_range():
    config = DCGANConfig(channels=8)
    _check_images_in_the_tanh_range(_seeded(DCGenerator, config), config.latent_dim)


def test_discriminator_gives_one_logit_per_image():
    assert _seeded(Discriminator, GANConfig())(_images(5)).shape == (5,)


def test_dcdiscriminator_gives_one_logit_per_image():
    assert _seeded(DCDiscriminator, DCGANConfig(channels=8))(_images(5)).shape == (5,)


def test_build_gan_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    G1, _ = build_gan(GANConfig(), seed=3)
    G2, _ = build_gan(GANConfig(), seed=3)
    G3, _ = build_gan(GANConfig(), seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    p1, p2, p3 = (next(G.parameters()) for G in (G1, G2, G3))
    assert torch.equal(p1, p2) and not torch.equal(p1, p3)
    with pytest.raises(TypeError, match="GANConfig or DCGANConfig"):
        build_gan({"latent_dim": 100})


def test_sample_noise_uses_its_generator():
    a = sample_noise(4, 10, torch.Generator().manual_seed(1))
    b = sample_noise(4, 10, torch.Generator().manual_seed(1))
    assert a.shape == (4, 10) and torch.equal(a, b)
    with pytest.raises(ValueError, match="batch_size"):
        sample_noise(0, 10)


# Logits with N != M (6 real, 5 fake), and the losses on them computed once with
# torch.nn.functional.binary_cross_entropy_with_logits (BCE) and, for least squares, from the formula.
REF_REAL = [0.5, -1.2, 2.0, 0.1, -0.3, 3.5]
REF_FAKE = [-2.0, 0.7, -0.4, 1.5, -3.0]
REF_LOSSES = {
    "discriminator_loss": 1.2974242859396137,
    "generator_loss": 1.3386259883769753,
    "ls_discriminator_loss": 2.8266666666666667,
    "ls_generator_loss": 2.7299999999999995,
}


def _bce(logits, target):
    logits = torch.tensor(logits, dtype=torch.float64)
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target)).item()


# what two classic mistakes give on the same logits
REF_SUSPECTS = {
    "discriminator_loss": {
        "the targets swapped (real images labelled 0, fakes 1)": _bce(REF_REAL, 0.0) + _bce(REF_FAKE, 1.0),
    },
    "generator_loss": {
        "the saturating minimax loss mean log(1 - D(G(z))) instead of -mean log D(G(z))": -_bce(REF_FAKE, 0.0),
    },
}


# Each loss is an exercise of its own, with tests of its own: one not written yet fails only its own.
def _check_reference_value(name, value, dtype):
    """``value``, the loss ``name`` computed on REF_REAL / REF_FAKE in ``dtype``, against REF_LOSSES."""
    assert value.shape == () and value.dtype == dtype, name
    context = {"suspects": REF_SUSPECTS.get(name, {})}
    assert_close(f"{name}: loss", value.item(), REF_LOSSES[name], rtol=1e-6, atol=1e-12, context=context)


def _ref_logits(dtype):
    return torch.tensor(REF_REAL, dtype=dtype), torch.tensor(REF_FAKE, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discriminator_loss_against_reference_values(dtype):
    real, fake = _ref_logits(dtype)
    _check_reference_value("discriminator_loss", discriminator_loss(real, fake), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generator_loss_against_reference_values(dtype):
    _, fake = _ref_logits(dtype)
    _check_reference_value("generator_loss", generator_loss(fake), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ls_discriminator_loss_against_reference_values(dtype):
    real, fake = _ref_logits(dtype)
    _check_reference_value("ls_discriminator_loss", ls_discriminator_loss(real, fake), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ls_generator_loss_against_reference_values(dtype):
    _, fake = _ref_logits(dtype)
    _check_reference_value("ls_generator_loss", ls_generator_loss(fake), dtype)


def test_discriminator_loss_against_its_closed_form():
    # D(x) = sigmoid(logit): BCE loss = -log D(real) - log(1 - D(fake)), averaged per term
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 3.0])
    sig = torch.sigmoid
    expected_d = -(torch.log(sig(real)).mean() + torch.log(1 - sig(fake)).mean())
    assert torch.allclose(discriminator_loss(real, fake), expected_d, atol=1e-6)
    # at D = 1/2 everywhere (logits 0) the BCE loss is 2 log 2, the value at the game's equilibrium
    zeros = torch.zeros(4)
    assert math.isclose(discriminator_loss(zeros, zeros).item(), 2 * math.log(2), rel_tol=1e-6)
    # extreme logits stay finite (computed from logits, not from probabilities), with finite gradients
    big = torch.tensor([100.0, -100.0], requires_grad=True)
    loss = discriminator_loss(big, -big)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()


def test_generator_loss_against_its_closed_form():
    fake = torch.tensor([-1.0, 3.0])
    assert torch.allclose(generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean(), atol=1e-6)
    # extreme logits stay finite (computed from logits, not from probabilities), with finite gradients
    big = torch.tensor([100.0, -100.0], requires_grad=True)
    loss = generator_loss(-big)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    assert generator_loss(torch.tensor([-100.0])).item() == pytest.approx(100.0, rel=1e-6)


def test_ls_discriminator_loss_against_its_closed_form():
    assert math.isclose(
        ls_discriminator_loss(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0])).item(),
        0.5 * (0 + 4) / 2 + 0.5 * (0 + 4) / 2,
    )


def test_ls_generator_loss_against_its_closed_form():
    assert math.isclose(ls_generator_loss(torch.tensor([1.0, -1.0])).item(), 0.5 * (0 + 4) / 2)


def test_nonsaturating_loss_keeps_gradient_when_discriminator_wins():
    # D confidently rejects the fakes: the minimax loss log(1 - D) has a vanishing gradient, the NS one does not
    logits = torch.tensor([-8.0], requires_grad=True)
    torch.log(1 - torch.sigmoid(logits)).mean().backward()
    minimax_grad = logits.grad.abs().item()
    logits.grad = None
    generator_loss(logits).backward()
    assert logits.grad.abs().item() > 100 * minimax_grad


def test_gan_range_round_trip():
    X = np.array([0, 128, 255], dtype=np.uint8).reshape(1, 1, 1, 3)
    x = to_gan_range(X)
    assert torch.allclose(x, torch.tensor([-1.0, 128 / 127.5 - 1, 1.0]).view(1, 1, 1, 3), atol=1e-6)
    assert np.allclose(from_gan_range(x), X / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        to_gan_range(X.astype(np.float32))


def test_interpolation_endpoints_and_spacing():
    z0, z1 = torch.randn(6, generator=torch.Generator().manual_seed(0)), torch.zeros(6)
    z1[0] = 3.0
    path = interpolate_latents(z0, z1, num_steps=7)
    assert path.shape == (9, 6)
    assert torch.allclose(path[0], z0) and torch.allclose(path[-1], z1)
    steps = path[1:] - path[:-1]
    assert torch.allclose(steps, steps[0].expand_as(steps), atol=1e-6)  # evenly spaced on a line
    slerp = interpolate_latents(z0, z1 + 1.0, num_steps=7, spherical=True)
    assert torch.allclose(slerp[0], z0, atol=1e-5) and torch.allclose(slerp[-1], z1 + 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="same shape"):
        interpolate_latents(z0, torch.zeros(5))


def test_generate_restores_mode_and_is_deterministic():
    G, _ = build_gan(GANConfig(), seed=0)
    G.train()
    a, b = generate(G, num=7, seed=1), generate(G, num=7, seed=1)
    assert a.shape == (7, 1, 28, 28) and np.array_equal(a, b) and G.training
    assert a.min() >= 0 and a.max() <= 1
    with pytest.raises(ValueError, match="exactly one"):
        generate(G)


def _toy_data(n=256):
    """Images that are all one blurred bar: a GAN should learn to draw it quickly."""
    img = -np.ones((1, 28, 28), np.float32)
    img[:, 10:18, 4:24] = 1.0
    rng = np.random.default_rng(0)
    X = np.clip(img[None] + 0.1 * rng.standard_normal((n, 1, 28, 28)), -1, 1).astype(np.float32)
    return torch.from_numpy(X), torch.from_numpy(img)


@pytest.mark.parametrize("loss", ["nonsaturating", "least_squares"])
def test_training_learns_a_single_mode(loss):
    X, target = _toy_data()
    G, D = build_gan(GANConfig(g_hidden=(32, 64), d_hidden=(64,)), seed=0)
    before = generate(G, num=16)
    config = GANTrainConfig(num_steps=150, batch_size=32, lr_g=2e-3, lr_d=2e-3, loss=loss, num_samples=9, log_every=10)
    history = train_gan(G, D, X, config, device=CPU, progress=False)
    after = generate(G, num=16)
    target01 = (target.numpy() + 1) / 2
    err_before = np.abs(before - target01).mean()
    err_after = np.abs(after - target01).mean()
    assert err_after < 0.6 * err_before, (err_before, err_after)
    assert history["step"][-1] == 150 and len(history["d_loss"]) == 15 == len(history["g_loss"])
    assert sorted(history["samples"]) == [0, 75, 150]
    assert history["samples"][0].shape == (9, 1, 28, 28)
    assert np.all(np.isfinite(history["d_loss"])) and np.all(np.isfinite(history["g_loss"]))
    if loss == "nonsaturating":  # mean D outputs are probabilities
        assert all(0 <= p <= 1 for p in history["d_real"] + history["d_fake"])


def test_training_is_reproducible_and_rejects_bad_input():
    X, _ = _toy_data(64)
    config = GANTrainConfig(num_steps=5, batch_size=16, log_every=5)
    runs = []
    for _ in range(2):
        G, D = build_gan(GANConfig(g_hidden=(16, 32), d_hidden=(16,)), seed=0)
        runs.append(train_gan(G, D, X, config, device=CPU, progress=False)["d_loss"])
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        train_gan(G, D, X * 255, config, device=CPU, progress=False)
    with pytest.raises(ValueError, match="loss must be one of"):
        GANTrainConfig(loss="wasserstein")
    with pytest.raises(ValueError, match="sample_steps"):
        train_gan(G, D, X, GANTrainConfig(num_steps=5, batch_size=16, sample_steps=(9,)), device=CPU, progress=False)


def test_one_step_matches_the_textbook_update_and_leaves_d_trainable():
    """One training step against a plain reference: D on real and detached fakes, then G on the same fakes
    through the updated D, with D's gradients accumulated as usual. Freezing D in the G step must change nothing
    but the work done, and leave every parameter of D as trainable as it was (one of them frozen on purpose).
    Both sides use the losses the step itself looks up, and the same random state, so that only the step's own
    arithmetic is compared, whatever the networks and losses are."""
    X, _ = _toy_data(64)
    config = GANTrainConfig(num_steps=1, batch_size=16, log_every=1, ema_decay=None)
    loss_d_fn, loss_g_fn = LOSSES[config.loss]
    runs = []
    for _ in range(2):
        G, D = build_gan(GANConfig(g_hidden=(16, 32), d_hidden=(16,)), seed=0)
        next(iter(D.parameters())).requires_grad_(False)
        runs.append(_Run(G, D, config))
    step, ref = runs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _gan_step(step, X, CPU, torch.sigmoid)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        B = config.batch_size
        idx = torch.randint(len(X), (B,), generator=ref.data_gen)
        fake = ref.G(sample_noise(B, latent_dim_of(ref.G), ref.noise_gen))
        loss_d = loss_d_fn(ref.D(X[idx]), ref.D(fake.detach()))
        ref.opt_d.zero_grad()
        loss_d.backward()
        ref.opt_d.step()
        loss_g = loss_g_fn(ref.D(fake))
        ref.opt_g.zero_grad()
        loss_g.backward()
        ref.opt_g.step()

    for (name, p), q in zip(step.G.named_parameters(), ref.G.parameters()):
        assert torch.equal(p, q), f"G.{name} differs from the reference update"
    for (name, p), q in zip(step.D.named_parameters(), ref.D.parameters()):
        assert torch.equal(p, q), f"D.{name} differs from the reference update"
    flags = [p.requires_grad for p in step.D.parameters()]
    assert flags == [p.requires_grad for p in ref.D.parameters()] and flags[0] is False and all(flags[1:])


class Stop(Exception):
    """An interruption (as a KeyboardInterrupt or a killed kernel would be) raised from the callback."""


def test_checkpoint_resume_equals_uninterrupted_run(tmp_path):
    X, _ = _toy_data(64)
    small = GANConfig(g_hidden=(16, 32), d_hidden=(16,))
    config = GANTrainConfig(num_steps=6, batch_size=16, log_every=1, checkpoint_every=2)
    G, D = build_gan(small, seed=0)
    seen = []
    full = train_gan(G, D, X, config, device=CPU, progress=False, callback=lambda step, G: seen.append(step) or step)
    assert seen == [2, 4, 6] and full["callback"] == [(2, 2), (4, 4), (6, 6)] and full["resumed_from"] == 0

    def stop_at_4(step, G):
        if step == 4:
            raise Stop  # before the step-4 checkpoint: the step-2 one is the last
        return step

    entry = cache_entry("gan", "toy", "0123456789abcdef", root=tmp_path)
    G2, D2 = build_gan(small, seed=0)
    with pytest.raises(Stop):
        train_gan(G2, D2, X, config, device=CPU, entry=entry, callback=stop_at_4, progress=False)
    assert not entry.exists() and entry.partial.load()["step"] == 2
    with pytest.raises(ValueError, match="another model or training config"):
        train_gan(G2, D2, X, GANTrainConfig(num_steps=7, batch_size=16), device=CPU, entry=entry, progress=False)
    G3, D3 = build_gan(small, seed=5)  # other init: everything must come from the checkpoint
    resumed = train_gan(G3, D3, X, config, device=CPU, entry=entry, progress=False, callback=lambda step, G: step)
    assert resumed["resumed_from"] == 2 and resumed["callback"] == full["callback"]
    assert resumed["step"] == full["step"] and resumed["d_loss"] == full["d_loss"]
    assert resumed["g_loss"] == full["g_loss"] and resumed["d_real"] == full["d_real"]
    assert all(torch.equal(a, b) for a, b in zip(G.state_dict().values(), G3.state_dict().values()))
    # the weight average is checkpointed too (BatchNorm statistics recalibrated the same way at the end)
    assert all(
        torch.equal(a, b) for a, b in zip(full["G_ema"].state_dict().values(), resumed["G_ema"].state_dict().values())
    )
    assert all(np.array_equal(full["samples"][k], resumed["samples"][k]) for k in full["samples"])
    # the time since the start carries on across the interruption
    assert np.all(np.diff(resumed["time"]) >= 0) and 0 < resumed["train_time"] <= resumed["time"][-1]
    assert entry.exists() and not entry.partial.exists()  # finished: the result saved, the partial gone


def test_resume_is_exact_when_checkpoints_split_a_log_window(tmp_path):
    X, _ = _toy_data(64)
    small = GANConfig(g_hidden=(16, 32), d_hidden=(16,))
    config = GANTrainConfig(num_steps=9, batch_size=16, log_every=4, checkpoint_every=3, ema_decay=None)
    full = train_gan(*build_gan(small, seed=0), X, config, device=CPU, progress=False)
    entry = cache_entry("gan", "toy", "0123456789abcdef", root=tmp_path)

    def stop_at_6(step, G):
        if step == 6:
            raise Stop

    with pytest.raises(Stop):
        train_gan(*build_gan(small, seed=0), X, config, device=CPU, entry=entry, callback=stop_at_6, progress=False)
    resumed = train_gan(*build_gan(small, seed=0), X, config, device=CPU, entry=entry, progress=False)
    assert resumed["resumed_from"] == 3 and resumed["step"] == full["step"] == [4, 8, 9]
    assert resumed["d_loss"] == full["d_loss"] and resumed["g_loss"] == full["g_loss"]


def test_cached_training_is_keyed_by_config(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    X, _ = _toy_data(64)
    small = GANConfig(g_hidden=(16, 32), d_hidden=(16,))
    config = GANTrainConfig(num_steps=4, batch_size=16)
    G1, D1 = build_gan(small, seed=0)
    h1 = train_gan_cached(G1, D1, X, config, name="toy", device=CPU, progress=False)
    path = gan_cache_entry("toy", small, config, X, precision=training_precision(CPU)).path
    assert path.parent == tmp_path / "gan" and path.is_file() and not list(tmp_path.rglob("*.partial.pt"))
    calls = []
    G2, D2 = build_gan(small, seed=1)
    h2 = train_gan_cached(
        G2, D2, X, config, name="toy", device=CPU, progress=False, callback=lambda step, G: calls.append(step)
    )
    assert not h1["from_cache"] and h2["from_cache"] and calls == []  # loaded, not trained
    assert h2["d_loss"] == h1["d_loss"] and h2["time"] == h1["time"] and h2["train_time"] == h1["train_time"]
    assert all(torch.equal(a, b) for a, b in zip(G1.state_dict().values(), G2.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(D1.state_dict().values(), D2.state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(h1["G_ema"].state_dict().values(), h2["G_ema"].state_dict().values()))
    assert not h2["G_ema"].training
    G3, D3 = build_gan(small, seed=0)
    h3 = train_gan_cached(
        G3, D3, X, GANTrainConfig(num_steps=4, batch_size=16, lr_g=5e-4), name="toy", device=CPU, progress=False
    )
    assert not h3["from_cache"]
    G4, D4 = build_gan(GANConfig(g_hidden=(16, 16), d_hidden=(16,)), seed=0)
    assert not train_gan_cached(G4, D4, X, config, name="toy", device=CPU, progress=False)["from_cache"]
    G5, D5 = build_gan(small, seed=0)  # other images, same shape: another key
    assert not train_gan_cached(G5, D5, -X, config, name="toy", device=CPU, progress=False)["from_cache"]
    assert len(list((tmp_path / "gan").glob("toy-*.pt"))) == 4


def test_cache_false_reads_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    X, _ = _toy_data(64)
    G, D = build_gan(GANConfig(g_hidden=(16, 32), d_hidden=(16,)), seed=0)
    history = train_gan_cached(
        G, D, X, GANTrainConfig(num_steps=2, batch_size=16), name="toy", device=CPU, progress=False, cache=False
    )
    assert not history["from_cache"] and not any(tmp_path.iterdir())


def test_ema_generator_follows_the_warmed_up_average():
    G, _ = build_gan(GANConfig(g_hidden=(8, 8), d_hidden=(8,)), seed=0)
    ema = ema_generator(G, decay=0.9)
    w = [p.detach().clone() for p in G.parameters()]
    expected = [p.clone() for p in w]
    for n in range(6):
        with torch.no_grad():
            for p in G.parameters():
                p.add_(1.0)
        ema.update_parameters(G)
        current = [p.detach() for p in G.parameters()]
        if n == 0:  # the first update copies the weights
            expected = [c.clone() for c in current]
        else:
            d = min(0.9, (1 + n) / (10 + n))  # warm-up: 0.18, 0.25, ... capped at the decay
            expected = [d * e + (1 - d) * c for e, c in zip(expected, current)]
    for e, p in zip(expected, ema.module.parameters()):
        torch.testing.assert_close(p, e)
    with pytest.raises(ValueError, match="decay"):
        ema_generator(G, decay=1.0)
    with pytest.raises(ValueError, match="ema_decay"):
        GANTrainConfig(ema_decay=0.0)


def test_recalibrate_batchnorm_estimates_statistics_from_noise():
    G, _ = build_gan(GANConfig(g_hidden=(8, 16), d_hidden=(8,)), seed=0)
    bn = next(m for m in G.modules() if isinstance(m, nn.BatchNorm1d))
    assert torch.equal(bn.running_mean, torch.zeros(16))  # fresh: statistics of nothing
    state = torch.random.get_rng_state()
    recalibrate_batchnorm(G, num_batches=4, batch_size=200, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # its own noise generator
    # the running statistics are now those of the layer's input over the same 800 codes
    z = torch.cat([sample_noise(200, 100, g) for g in [torch.Generator().manual_seed(3)] for _ in range(4)])
    inputs = []  # the input of the first BatchNorm, captured in a train-mode pass that does not update it
    handle = bn.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    momentum, bn.momentum = bn.momentum, 0.0
    with torch.no_grad():
        G.train()(z)
    bn.momentum = momentum
    handle.remove()
    h = inputs[0]  # (800, 16)
    torch.testing.assert_close(bn.running_mean, h.mean(0), rtol=1e-4, atol=1e-5)
    batch_vars = torch.stack([chunk.var(0) for chunk in h.split(200)])  # unbiased, per batch, then averaged
    torch.testing.assert_close(bn.running_var, batch_vars.mean(0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1  # restored after the cumulative average


def test_training_without_ema_samples_the_raw_generator():
    X, _ = _toy_data(64)
    G, D = build_gan(GANConfig(g_hidden=(16, 32), d_hidden=(16,)), seed=0)
    seen = []
    config = GANTrainConfig(num_steps=4, batch_size=16, ema_decay=None, checkpoint_every=2)
    history = train_gan(G, D, X, config, device=CPU, progress=False, callback=lambda step, g: seen.append(g))
    assert history["G_ema"] is None and all(g is G for g in seen)
    G2, D2 = build_gan(GANConfig(g_hidden=(16, 32), d_hidden=(16,)), seed=0)
    seen.clear()
    history = train_gan(
        G2,
        D2,
        X,
        GANTrainConfig(num_steps=4, batch_size=16, checkpoint_every=2),
        device=CPU,
        progress=False,
        callback=lambda step, g: seen.append(g),
    )
    assert history["G_ema"] is seen[-1] and seen[-1] is not G2


def test_learning_rates_decay_linearly_to_zero_after_decay_from():
    config = GANTrainConfig(num_steps=100, decay_from=0.5)
    assert [config.lr_scale(s) for s in (0, 49, 50, 75, 99)] == [1.0, 1.0, 1.0, 0.5, 0.02]
    assert GANTrainConfig(num_steps=100).lr_scale(99) == 1.0  # constant without decay_from
    with pytest.raises(ValueError, match="decay_from"):
        GANTrainConfig(decay_from=1.0)
    # the loop uses it: both optimisers end at the last step's rate
    X, _ = _toy_data(64)
    G, D = build_gan(GANConfig(g_hidden=(16, 32), d_hidden=(16,)), seed=0)
    small = GANTrainConfig(num_steps=8, batch_size=16, lr_g=1e-3, lr_d=2e-3, decay_from=0.5, log_every=4)
    seen = []
    original = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim.Adam, "step", spy)
        train_gan(G, D, X, small, device=CPU, progress=False)
    d_rates, g_rates = seen[0::2], seen[1::2]  # D steps first, then G
    assert d_rates == pytest.approx([2e-3 * small.lr_scale(s) for s in range(8)])
    assert g_rates == pytest.approx([1e-3 * small.lr_scale(s) for s in range(8)])


def test_bfloat16_training_is_keyed_apart_and_keeps_float32_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    X, _ = _toy_data(64)
    small = GANConfig(g_hidden=(16, 32), d_hidden=(16,))
    config = GANTrainConfig(num_steps=4, batch_size=16, log_every=1)
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("COURSE_CPU_BF16", flag)
        G, D = build_gan(small, seed=0)
        seen = []
        hook = D.net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        runs[flag] = train_gan_cached(G, D, X, config, name="toy", device=CPU, progress=False)
        hook.remove()
        assert set(seen) == {torch.bfloat16 if flag == "1" else torch.float32}
        assert all(p.dtype == torch.float32 for p in [*G.parameters(), *D.parameters()])
    assert not runs["1"]["from_cache"]  # not the float32 run's weights
    assert runs["1"]["d_loss"] != runs["0"]["d_loss"]
    paths = {gan_cache_entry("toy", small, config, X, precision=p).path for p in ("float32", "bfloat16")}
    assert len(paths) == 2 and all(p.is_file() for p in paths)
