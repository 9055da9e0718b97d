"""Hidden checks: they run in the instructor's test command and when grading, and never ship to students.

They try the layers on shapes and values the public tests do not use (one sample, non-square images, kernels
and windows, strides other than 1 and 2, huge logits), so a solution fitted to the public tests' cases
still has to be right in general. Each compares with PyTorch (float64) on the same inputs."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common import layers


def _t(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def _close(a, b, tol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shape {a.shape}, expected {b.shape}"
    assert np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))) < tol


@pytest.mark.parametrize("x_shape", [(1, 7), (1, 2, 3, 1), (5, 1)])
def test_affine_on_single_samples_and_features(x_shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape)
    D = int(np.prod(x_shape[1:]))
    w, b, dout = rng.standard_normal((D, 3)), rng.standard_normal(3), rng.standard_normal((x_shape[0], 3))
    out, cache = layers.affine_forward(x, w, b)
    dx, dw, db = layers.affine_backward(dout, cache)
    tx, tw, tb = _t(x), _t(w), _t(b)
    ref = tx.reshape(x_shape[0], -1) @ tw + tb
    ref.backward(torch.tensor(dout))
    _close(out, ref.detach().numpy())
    for got, want in ((dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        _close(got, want.numpy())


def test_softmax_loss_is_stable_for_huge_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 999.0]])
    y = np.array([0, 2])
    loss, dx = layers.softmax_loss(x, y)
    tx = _t(x)
    ref = F.cross_entropy(tx, torch.tensor(y))
    ref.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(dx))
    _close(loss, ref.item())
    _close(dx, tx.grad.numpy())


@pytest.mark.parametrize(("stride", "pad", "kernel"), [(2, 0, (2, 3)), (3, 2, (3, 2)), (1, 1, (1, 1))])
def test_naive_convolution_on_odd_geometry(stride, pad, kernel):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 8, 7))
    w, b = rng.standard_normal((4, 3, *kernel)), rng.standard_normal(4)
    param = {"stride": stride, "pad": pad}
    out, cache = layers.conv_forward_naive(x, w, b, param)
    tx, tw, tb = _t(x), _t(w), _t(b)
    ref = F.conv2d(tx, tw, tb, stride=stride, padding=pad)
    dout = rng.standard_normal(ref.shape)
    ref.backward(torch.tensor(dout))
    _close(out, ref.detach().numpy())
    dx, dw, db = layers.conv_backward_naive(dout, cache)
    for got, want in ((dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        _close(got, want.numpy())


@pytest.mark.parametrize(("ph", "pw", "stride"), [(3, 2, 1), (3, 2, 2), (1, 1, 1)])
def test_naive_max_pool_on_odd_windows(ph, pw, stride):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))  # distinct values: the maximum of each window is unique
    out, cache = layers.max_pool_forward_naive(x, {"pool_height": ph, "pool_width": pw, "stride": stride})
    tx = _t(x)
    ref = F.max_pool2d(tx, (ph, pw), stride=stride)
    dout = rng.standard_normal(ref.shape)
    ref.backward(torch.tensor(dout))
    _close(out, ref.detach().numpy())
    _close(layers.max_pool_backward_naive(dout, cache), tx.grad.numpy())
