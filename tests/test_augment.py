"""Tensor augmentation and the DataLoader-free batch iterator, checked against direct NumPy computations."""

import numpy as np
import pytest
import torch

from common.data.augment import (
    Augment,
    channel_stats,
    denormalize,
    normalize,
    random_crop,
    random_flip,
    random_rotation,
    rotate,
    to_tensor,
)
from common.data.torch_data import TensorBatches


def test_channel_stats_match_numpy():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(50, 3, 8, 8), dtype=np.uint8)
    mean, std = channel_stats(X)
    Xf = X.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean.numpy(), Xf.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(std.numpy(), Xf.transpose(1, 0, 2, 3).reshape(3, -1).std(axis=1, ddof=1), rtol=1e-5)
    assert mean.shape == (3,) and mean.dtype == torch.float32


def test_normalize_standardises_each_channel_and_round_trips():
    rng = np.random.default_rng(1)
    X = (rng.random((40, 3, 6, 6)) * np.array([50, 120, 250]).reshape(1, 3, 1, 1)).astype(np.uint8)
    mean, std = channel_stats(X)
    Xn = normalize(X, mean, std)
    np.testing.assert_allclose(Xn.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(Xn.std(dim=(0, 2, 3)).numpy(), 1, atol=1e-4)
    torch.testing.assert_close(denormalize(Xn, mean, std), to_tensor(X), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(X, [0.5], [0.2, 0.2])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        to_tensor(np.zeros((3, 28, 28), np.uint8))


def test_random_crop_is_a_shifted_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 2, 7, 9)
    p = 2
    out = random_crop(x, p, generator=g)
    assert out.shape == x.shape
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (p, p), (p, p)))  # the oracle: zero padding in NumPy
    offsets = []
    for n in range(len(x)):
        hits = [
            (i, j)
            for i in range(2 * p + 1)
            for j in range(2 * p + 1)
            if np.array_equal(padded[n, :, i : i + 7, j : j + 9], out[n].numpy())
        ]
        assert hits, f"image {n} is not a crop of its padded version"
        offsets.append(hits[0])
    assert len(set(offsets)) == (2 * p + 1) ** 2  # 300 draws hit all 25 offsets
    # the centre offset leaves an image unchanged
    assert any(torch.equal(out[n], x[n]) for n in range(len(x)))
    # reproducible with the same seed
    torch.testing.assert_close(random_crop(x, p, torch.Generator().manual_seed(0)), out, rtol=0, atol=0)
    assert random_crop(x, 0) is x
    with pytest.raises(ValueError, match="padding"):
        random_crop(x, -1)


def test_random_flip():
    x = torch.randn(1000, 1, 4, 5)
    assert torch.equal(random_flip(x, 0.0), x)
    assert torch.equal(random_flip(x, 1.0), x.flip(3))
    out = random_flip(x, 0.5, torch.Generator().manual_seed(0))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all())  # each image is exactly one of the two
    assert 0.45 < flipped.float().mean().item() < 0.55
    with pytest.raises(ValueError, match="p must be"):
        random_flip(x, 1.5)


def test_augment_preserves_pixel_values_and_is_seeded():
    x = torch.arange(64 * 3 * 5 * 5, dtype=torch.float32).reshape(64, 3, 5, 5)
    a = Augment(padding=1, flip=0.5, seed=3)(x)
    b = Augment(padding=1, flip=0.5, seed=3)(x)
    assert torch.equal(a, b)
    for n in range(len(x)):  # every value comes from the same image (or is padding)
        values = set(a[n].flatten().tolist()) - {0.0}
        assert values <= set(x[n].flatten().tolist())
    assert not torch.equal(a, x)


def test_rotation_by_zero_is_the_identity():
    x = torch.randn(5, 3, 8, 11, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rotate(x, 0.0), x, rtol=0, atol=1e-5)  # float32 round-off of the sampling grid
    torch.testing.assert_close(rotate(x, torch.zeros(5)), x, rtol=0, atol=1e-5)
    assert random_rotation(x, 0.0) is x


def test_rotation_by_right_angles_on_square_images_is_rot90():
    x = torch.randn(4, 2, 9, 9, generator=torch.Generator().manual_seed(1))
    # counter-clockwise as displayed, like torch.rot90 over (H, W); exact but for interpolation round-off
    torch.testing.assert_close(rotate(x, 90.0), torch.rot90(x, 1, (2, 3)), rtol=0, atol=1e-5)
    torch.testing.assert_close(rotate(x, -90.0), torch.rot90(x, -1, (2, 3)), rtol=0, atol=1e-5)
    torch.testing.assert_close(rotate(x, 180.0), x.flip(2, 3), rtol=0, atol=1e-5)
    # one angle per image
    out = rotate(x, torch.tensor([0.0, 90.0, 180.0, -90.0]))
    for k, n in zip((0, 1, 2, -1), range(4)):
        torch.testing.assert_close(out[n], torch.rot90(x[n], k, (1, 2)), rtol=0, atol=1e-5)


def test_rotation_is_in_pixel_units_on_non_square_images():
    """A dot right of the centre goes above it after +90 degrees, at the same pixel distance (no shear)."""
    for H, W, (r, c), (r90, c90) in [(9, 15, (4, 9), (2, 7)), (15, 9, (7, 6), (5, 4))]:
        x = torch.zeros(1, 1, H, W)
        x[0, 0, r, c] = 1.0
        out = rotate(x, 90.0)[0, 0]
        assert (out > 0.5).nonzero().tolist() == [[r90, c90]]


def test_rotation_fill_covers_the_uncovered_corners():
    x = torch.full((2, 1, 12, 12), 3.0)
    out = rotate(x, 45.0, fill=-1.0)
    assert out[:, :, 0, 0].eq(-1.0).all() and out[:, :, -1, -1].eq(-1.0).all()  # corners: nothing rotated there
    torch.testing.assert_close(out[:, :, 4:8, 4:8], x[:, :, 4:8, 4:8])  # the centre stays covered
    assert rotate(x, 45.0)[:, :, 0, 0].eq(0.0).all()  # default fill: zero (the mean of normalised images)


def test_random_rotation_draws_uniform_angles_from_its_generator():
    """Recover each image's angle from where a dot ends up: uniform in [-max, max], reproducible by seed."""
    S, radius, max_degrees = 41, 14, 30.0
    yy, xx = torch.meshgrid(torch.arange(S, dtype=torch.float32), torch.arange(S, dtype=torch.float32), indexing="ij")
    c = S // 2
    dot = torch.exp(-((yy - c) ** 2 + (xx - c - radius) ** 2) / 2.0)  # a blob right of the centre
    x = dot.expand(2000, 1, S, S)
    out = random_rotation(x, max_degrees, torch.Generator().manual_seed(0))
    mass = out.sum(dim=(1, 2, 3))
    cy = (out[:, 0] * yy).sum(dim=(1, 2)) / mass
    cx = (out[:, 0] * xx).sum(dim=(1, 2)) / mass
    angles = torch.rad2deg(torch.atan2(-(cy - c), cx - c))  # counter-clockwise as displayed (y points down)
    assert angles.min() > -max_degrees - 0.5 and angles.max() < max_degrees + 0.5
    assert angles.min() < -max_degrees + 1 and angles.max() > max_degrees - 1  # the whole range is used
    assert abs(angles.mean().item()) < 1.5 and angles.std().item() == pytest.approx(max_degrees / np.sqrt(3), rel=0.05)
    again = random_rotation(x, max_degrees, torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    assert not torch.equal(out, random_rotation(x, max_degrees, torch.Generator().manual_seed(1)))


def test_rotation_rejects_bad_input():
    x = torch.zeros(3, 1, 5, 5)
    with pytest.raises(ValueError, match="max_degrees"):
        random_rotation(x, -5.0)
    with pytest.raises(ValueError, match="one angle per image"):
        rotate(x, torch.zeros(2))
    with pytest.raises(ValueError, match="float images"):
        rotate(torch.zeros(3, 5, 5), 10.0)
    with pytest.raises(ValueError, match="rotation"):
        Augment(rotation=200.0)


def test_augment_with_rotation_is_seeded_and_keeps_the_layout():
    x = torch.randn(32, 3, 10, 10, generator=torch.Generator().manual_seed(2))
    a = Augment(padding=1, flip=0.5, rotation=20.0, seed=5)(x)
    b = Augment(padding=1, flip=0.5, rotation=20.0, seed=5)(x)
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, Augment(padding=1, flip=0.5, seed=5)(x))  # rotation changes the images
    # rotation only: the same as random_rotation with the same generator
    only = Augment(padding=0, flip=0.0, rotation=20.0)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(only, random_rotation(x, 20.0, torch.Generator().manual_seed(0)), rtol=0, atol=0)
    assert "rotation=20.0" in repr(Augment(rotation=20.0))


def test_augmentation_never_touches_the_global_generators():
    x = torch.randn(16, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a, b = random_crop(x, 2), random_crop(x, 2)  # generator=None: fresh OS-seeded draws
    random_flip(x, 0.5)
    r1, r2 = random_rotation(x, 30.0), random_rotation(x, 30.0)
    Augment(padding=1, rotation=10.0)(x)
    for _ in TensorBatches(x, torch.zeros(16), batch_size=4, shuffle=True, seed=None, transform=Augment(1)):
        pass
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    assert not torch.equal(a, b) and not torch.equal(r1, r2)  # unseeded calls still differ


def test_tensor_batches_cover_every_sample_once_per_epoch():
    X = torch.arange(103, dtype=torch.float32).reshape(103, 1, 1, 1)
    y = torch.arange(103)
    batches = TensorBatches(X, y, batch_size=10, shuffle=True, seed=0)
    assert len(batches) == 11
    epochs = []
    for _ in range(2):
        seen = []
        for xb, yb in batches:
            assert torch.equal(xb.flatten().long(), yb)  # images stay paired with their labels
            seen.append(yb)
        order = torch.cat(seen)
        assert sorted(order.tolist()) == list(range(103))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1])  # a new permutation each epoch
    again = torch.cat([yb for _, yb in TensorBatches(X, y, batch_size=10, shuffle=True, seed=0)])
    assert torch.equal(again, epochs[0])  # same seed, same first epoch
    assert len(TensorBatches(X, y, batch_size=10, drop_last=True)) == 10
    ordered = torch.cat([yb for _, yb in TensorBatches(X, y, batch_size=7)])  # in order by default
    assert torch.equal(ordered, y)


def test_tensor_batches_transform_layout_and_errors():
    X, y = torch.randn(20, 3, 8, 8), torch.zeros(20, dtype=torch.long)
    batches = TensorBatches(X, y, batch_size=8, transform=Augment(padding=2), memory_format=torch.channels_last)
    xb, _ = next(iter(batches))
    assert xb.shape == (8, 3, 8, 8) and xb.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="samples"):
        TensorBatches(X, y[:5])
    with pytest.raises(ValueError, match="normalise"):
        TensorBatches(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), y[:4])
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatches(X, y, batch_size=0)
