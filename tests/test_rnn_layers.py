"""Recurrent NumPy layers against numeric gradients (float64) and PyTorch (nn.RNN, nn.LSTM, autograd).

Tolerances: numeric checks rel_error < 1e-7 (centred differences, h=1e-5, float64); PyTorch comparisons
in float64 with rtol=1e-10, atol=1e-12.
"""

import numpy as np
import pytest
import torch

from common.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error
from common.rnn_layers import (
    lstm_backward,
    lstm_forward,
    lstm_step_backward,
    lstm_step_forward,
    rnn_backward,
    rnn_forward,
    rnn_step_backward,
    rnn_step_forward,
    temporal_affine_backward,
    temporal_affine_forward,
    temporal_softmax_loss,
    word_embedding_backward,
    word_embedding_forward,
)

TOL = dict(rtol=1e-10, atol=1e-12)
SHAPES = [(2, 3, 4, 5), (3, 1, 2, 3), (4, 6, 3, 2)]  # (N, T, D, H)


def params(rng, D, H, gates):
    return (
        rng.standard_normal((D, gates * H)) * 0.5,
        rng.standard_normal((H, gates * H)) * 0.5,
        rng.standard_normal(gates * H) * 0.5,
    )


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_rnn_step_numeric(N, T, D, H):
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((N, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 1)
    out, cache = rnn_step_forward(x, h, Wx, Wh, b)
    dout = rng.standard_normal(out.shape)
    grads = rnn_step_backward(dout, cache)
    for arg, g in zip((x, h, Wx, Wh, b), grads):
        num = eval_numerical_gradient_array(lambda _: rnn_step_forward(x, h, Wx, Wh, b)[0], arg, dout)
        assert rel_error(num, g) < 1e-7


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_rnn_sequence_numeric(N, T, D, H):
    rng = np.random.default_rng(1)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 1)
    out, cache = rnn_forward(x, h0, Wx, Wh, b)
    dout = rng.standard_normal(out.shape)
    grads = rnn_backward(dout, cache)
    for arg, g in zip((x, h0, Wx, Wh, b), grads):
        num = eval_numerical_gradient_array(lambda _: rnn_forward(x, h0, Wx, Wh, b)[0], arg, dout)
        assert rel_error(num, g) < 1e-7


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_lstm_step_numeric(N, T, D, H):
    rng = np.random.default_rng(2)
    x, h, c = rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 4)
    next_h, next_c, cache = lstm_step_forward(x, h, c, Wx, Wh, b)
    dh, dc = rng.standard_normal(next_h.shape), rng.standard_normal(next_c.shape)
    grads = lstm_step_backward(dh, dc, cache)

    def both(_):  # the loss sum(next_h * dh) + sum(next_c * dc), as one array paired with [dh, dc]
        out_h, out_c, _c = lstm_step_forward(x, h, c, Wx, Wh, b)
        return np.stack([out_h, out_c])

    for arg, g in zip((x, h, c, Wx, Wh, b), grads):
        num = eval_numerical_gradient_array(both, arg, np.stack([dh, dc]))
        assert rel_error(num, g) < 1e-7


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_lstm_sequence_numeric(N, T, D, H):
    rng = np.random.default_rng(3)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 4)
    out, cache = lstm_forward(x, h0, Wx, Wh, b)
    dout = rng.standard_normal(out.shape)
    grads = lstm_backward(dout, cache)
    for arg, g in zip((x, h0, Wx, Wh, b), grads):
        num = eval_numerical_gradient_array(lambda _: lstm_forward(x, h0, Wx, Wh, b)[0], arg, dout)
        assert rel_error(num, g) < 1e-7


def t64(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_rnn_matches_torch_rnn(N, T, D, H):
    rng = np.random.default_rng(4)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 1)
    rnn = torch.nn.RNN(D, H, batch_first=True, nonlinearity="tanh").double()
    with torch.no_grad():  # torch computes x W_ih^T + b_ih + h W_hh^T + b_hh
        rnn.weight_ih_l0.copy_(torch.from_numpy(Wx.T))
        rnn.weight_hh_l0.copy_(torch.from_numpy(Wh.T))
        rnn.bias_ih_l0.copy_(torch.from_numpy(b))
        rnn.bias_hh_l0.zero_()
    xt, h0t = t64(x), t64(h0)
    ht, _ = rnn(xt, h0t[None])
    out, cache = rnn_forward(x, h0, Wx, Wh, b)
    np.testing.assert_allclose(out, ht.detach().numpy(), **TOL)
    dout = rng.standard_normal(out.shape)
    ht.backward(torch.from_numpy(dout))
    dx, dh0, dWx, dWh, db = rnn_backward(dout, cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), **TOL)
    np.testing.assert_allclose(dWx, rnn.weight_ih_l0.grad.numpy().T, **TOL)
    np.testing.assert_allclose(dWh, rnn.weight_hh_l0.grad.numpy().T, **TOL)
    np.testing.assert_allclose(db, rnn.bias_ih_l0.grad.numpy(), **TOL)


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_lstm_matches_torch_lstm(N, T, D, H):
    """Our gate blocks are (i, f, o, g); torch's are (i, f, g, o): permute when copying."""
    rng = np.random.default_rng(5)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 4)
    ours_to_torch = np.concatenate([np.arange(0, 2 * H), np.arange(3 * H, 4 * H), np.arange(2 * H, 3 * H)])
    lstm = torch.nn.LSTM(D, H, batch_first=True).double()
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(Wx[:, ours_to_torch].T))
        lstm.weight_hh_l0.copy_(torch.from_numpy(Wh[:, ours_to_torch].T))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b[ours_to_torch]))
        lstm.bias_hh_l0.zero_()
    xt, h0t = t64(x), t64(h0)
    ht, _ = lstm(xt, (h0t[None], torch.zeros(1, N, H, dtype=torch.float64)))
    out, cache = lstm_forward(x, h0, Wx, Wh, b)
    np.testing.assert_allclose(out, ht.detach().numpy(), **TOL)
    dout = rng.standard_normal(out.shape)
    ht.backward(torch.from_numpy(dout))
    dx, dh0, dWx, dWh, db = lstm_backward(dout, cache)
    torch_to_ours = np.argsort(ours_to_torch)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    np.testing.assert_allclose(dh0, h0t.grad.numpy(), **TOL)
    np.testing.assert_allclose(dWx, lstm.weight_ih_l0.grad.numpy().T[:, torch_to_ours], **TOL)
    np.testing.assert_allclose(dWh, lstm.weight_hh_l0.grad.numpy().T[:, torch_to_ours], **TOL)
    np.testing.assert_allclose(db, lstm.bias_ih_l0.grad.numpy()[torch_to_ours], **TOL)


def test_word_embedding_accumulates_repeated_words():
    rng = np.random.default_rng(6)
    V, D = 5, 3
    W = rng.standard_normal((V, D))
    x = np.array([[0, 3, 3, 1], [3, 0, 4, 4]])
    out, cache = word_embedding_forward(x, W)
    np.testing.assert_array_equal(out[1, 0], W[3])
    dout = rng.standard_normal(out.shape)
    dW = word_embedding_backward(dout, cache)
    num = eval_numerical_gradient_array(lambda w: word_embedding_forward(x, w)[0], W, dout)
    assert rel_error(num, dW) < 1e-8
    Wt = t64(W)
    torch.nn.functional.embedding(torch.from_numpy(x), Wt).backward(torch.from_numpy(dout))
    np.testing.assert_allclose(dW, Wt.grad.numpy(), **TOL)
    with pytest.raises(ValueError, match="only 5 rows"):
        word_embedding_forward(np.array([[5]]), W)


@pytest.mark.parametrize("N, T, D, M", [(2, 3, 4, 5), (1, 1, 2, 2)])
def test_temporal_affine(N, T, D, M):
    rng = np.random.default_rng(7)
    x, w, b = rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    out, cache = temporal_affine_forward(x, w, b)
    dout = rng.standard_normal(out.shape)
    grads = temporal_affine_backward(dout, cache)
    for arg, g in zip((x, w, b), grads):
        num = eval_numerical_gradient_array(lambda _: temporal_affine_forward(x, w, b)[0], arg, dout)
        assert rel_error(num, g) < 1e-8


def test_temporal_softmax_loss_value_gradient_and_mask():
    rng = np.random.default_rng(8)
    N, T, V = 4, 5, 7
    x = rng.standard_normal((N, T, V))
    y = rng.integers(V, size=(N, T))
    mask = rng.random((N, T)) > 0.3
    loss, dx = temporal_softmax_loss(x, y, mask)
    xt = t64(x)
    ref = torch.nn.functional.cross_entropy(xt.reshape(-1, V), torch.from_numpy(y).reshape(-1), reduction="none")
    ref = (ref * torch.from_numpy(mask.reshape(-1)).double()).sum() / N
    ref.backward()
    assert abs(loss - ref.item()) < 1e-12
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL)
    num = eval_numerical_gradient(lambda z: temporal_softmax_loss(z, y, mask)[0], x.copy(), verbose=False)
    assert rel_error(num, dx) < 1e-7
    assert np.all(dx[~mask] == 0)  # masked positions get no gradient
    # Uniform scores: loss is (number of unmasked targets) * log V / N.
    loss_u, _ = temporal_softmax_loss(np.zeros((N, T, V)), y, mask)
    assert abs(loss_u - mask.sum() * np.log(V) / N) < 1e-12
    # Stable for huge scores.
    big_loss, big_dx = temporal_softmax_loss(x * 1e4, y, mask)
    assert np.isfinite(big_loss) and np.all(np.isfinite(big_dx))


def test_shape_errors_name_the_argument():
    x, h = np.zeros((2, 3)), np.zeros((2, 4))
    with pytest.raises(ValueError, match="Wx"):
        rnn_step_forward(x, h, np.zeros((3, 5)), np.zeros((4, 4)), np.zeros(4))
    with pytest.raises(ValueError, match="prev_c"):
        lstm_step_forward(x, h, np.zeros((2, 3)), np.zeros((3, 16)), np.zeros((4, 16)), np.zeros(16))
    with pytest.raises(ValueError, match=r"\(N, T, D\)"):
        rnn_forward(x, h, np.zeros((3, 4)), np.zeros((4, 4)), np.zeros(4))


def test_cs231n_published_forward_values():
    """The expected outputs printed in CS231n's RNN/LSTM notebooks (8 decimals), for linspace inputs."""
    N, D, H = 3, 10, 4
    x = np.linspace(-0.4, 0.7, num=N * D).reshape(N, D)
    prev_h = np.linspace(-0.2, 0.5, num=N * H).reshape(N, H)
    Wx, Wh = np.linspace(-0.1, 0.9, num=D * H).reshape(D, H), np.linspace(-0.3, 0.7, num=H * H).reshape(H, H)
    b = np.linspace(-0.2, 0.4, num=H)
    expected = [
        [-0.58172089, -0.50182032, -0.41232771, -0.31410098],
        [0.66854692, 0.79562378, 0.87755553, 0.92795967],
        [0.97934501, 0.99144213, 0.99646691, 0.99854353],
    ]
    assert rel_error(rnn_step_forward(x, prev_h, Wx, Wh, b)[0], np.array(expected)) < 1e-7

    N, D, H, T = 2, 5, 4, 3
    x = np.linspace(-0.4, 0.6, num=N * T * D).reshape(N, T, D)
    h0 = np.linspace(-0.4, 0.8, num=N * H).reshape(N, H)
    Wx = np.linspace(-0.2, 0.9, num=4 * D * H).reshape(D, 4 * H)
    Wh = np.linspace(-0.3, 0.6, num=4 * H * H).reshape(H, 4 * H)
    b = np.linspace(0.2, 0.7, num=4 * H)
    expected = [
        [
            [0.01764008, 0.01823233, 0.01882671, 0.0194232],
            [0.11287491, 0.12146228, 0.13018446, 0.13902939],
            [0.31358768, 0.33338627, 0.35304453, 0.37250975],
        ],
        [
            [0.45767879, 0.4761092, 0.4936887, 0.51041945],
            [0.6704845, 0.69350089, 0.71486014, 0.7346449],
            [0.81733511, 0.83677871, 0.85403753, 0.86935314],
        ],
    ]
    assert rel_error(lstm_forward(x, h0, Wx, Wh, b)[0], np.array(expected)) < 1e-6
