"""Recurrent NumPy layers against numeric gradients (float64) and PyTorch (nn.RNN, nn.LSTM, autograd).

Tolerances: numeric checks rel_error < 1e-7 (centred differences, h=1e-5, float64); PyTorch comparisons
in float64 with rtol=1e-10, atol=1e-12.
"""

import itertools

import numpy as np
import pytest
import torch

from common.diagnose import assert_all_close, assert_close
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


def _torch_rnn_h(x, h0, Wx, Wh, b):
    """nn.RNN's hidden states (N, T, H) with our weights: the oracle of rnn_forward."""
    rnn = torch.nn.RNN(Wx.shape[0], Wx.shape[1], batch_first=True).double()
    with torch.no_grad():  # torch computes x W_ih^T + b_ih + h W_hh^T + b_hh
        for p, v in zip(rnn.parameters(), (Wx.T, Wh.T, b, 0 * b)):
            p.copy_(torch.from_numpy(v))
        return rnn(torch.from_numpy(x), torch.from_numpy(h0)[None])[0].numpy()


def _torch_lstm(x, h0, c0, Wx, Wh, b, order="ifog"):
    """nn.LSTM's hidden states (N, T, H) and last cell state (N, H) with our weights, whose gate blocks are
    (i, f, o, g) (torch's are (i, f, g, o)); with ``order``, what a step gives that reads its blocks as these
    gates instead."""
    H = h0.shape[1]
    # our layout keeps gate k of "ifog" in block k; torch's keeps it in block "ifgo".index(k)
    source = {gate: block for block, gate in enumerate(order)}
    columns = np.concatenate([np.arange(source[g] * H, (source[g] + 1) * H) for g in "ifgo"])
    lstm = torch.nn.LSTM(Wx.shape[0], H, batch_first=True).double()
    with torch.no_grad():
        for p, v in zip(lstm.parameters(), (Wx[:, columns].T, Wh[:, columns].T, b[columns], 0 * b)):
            p.copy_(torch.from_numpy(v))
        h, (_, c) = lstm(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    return h.numpy(), c[0].numpy()


def _gate_order_suspects(x, h0, c0, Wx, Wh, b):
    """The hidden and cell states a step gives when it reads the four blocks in another order."""
    hs, cs = {}, {}
    for order in itertools.permutations("ifog"):
        if order != tuple("ifog"):
            label = f"the gates read in the order {', '.join(order)} instead of i, f, o, g"
            hs[label], cs[label] = _torch_lstm(x, h0, c0, Wx, Wh, b, order)
    return hs, cs


# a difference confined to the earlier steps of a sequence: what the backward pass carries between steps
CARRY = "the gradient that reaches step t from step t+1 (dprev_h, and dprev_c for an LSTM) must be added in"
_SEQUENCE_AXES = {"dx": ("N", "T", "D"), "dh0": ("N", "H")}


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_rnn_step_numeric(N, T, D, H):
    rng = np.random.default_rng(0)
    x, h = rng.standard_normal((N, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 1)
    out, cache = rnn_step_forward(x, h, Wx, Wh, b)
    dout = rng.standard_normal(out.shape)
    grads = rnn_step_backward(dout, cache)
    numeric = {}
    for name, arg, g in zip(("dx", "dprev_h", "dWx", "dWh", "db"), (x, h, Wx, Wh, b), grads):
        numeric[name] = (g, eval_numerical_gradient_array(lambda _: rnn_step_forward(x, h, Wx, Wh, b)[0], arg, dout))
    assert_all_close("rnn_step_backward", numeric, 1e-7, context={"N": N, "D": D, "H": H})


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_rnn_sequence_numeric(N, T, D, H):
    rng = np.random.default_rng(1)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 1)
    out, cache = rnn_forward(x, h0, Wx, Wh, b)
    # the forward pass first: the gradients below are those of the states it computes
    assert_close("rnn_forward: h", out, _torch_rnn_h(x, h0, Wx, Wh, b), **TOL, context={"axes": ("N", "T", "H")})
    dout = rng.standard_normal(out.shape)
    grads = rnn_backward(dout, cache)
    numeric = {}
    for name, arg, g in zip(("dx", "dh0", "dWx", "dWh", "db"), (x, h0, Wx, Wh, b), grads):
        num = eval_numerical_gradient_array(lambda _: rnn_forward(x, h0, Wx, Wh, b)[0], arg, dout)
        numeric[name] = (g, num, {"axes": _SEQUENCE_AXES.get(name)})
    assert_all_close("rnn_backward", numeric, 1e-7, context={"T": T, "hints": {"partial:T": CARRY}})


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_lstm_step_numeric(N, T, D, H):
    rng = np.random.default_rng(2)
    x, h, c = rng.standard_normal((N, D)), rng.standard_normal((N, H)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 4)
    next_h, next_c, cache = lstm_step_forward(x, h, c, Wx, Wh, b)
    # the forward pass first, against nn.LSTM (one step): the gradients below are those of what it computes
    want_h, want_c = _torch_lstm(x[:, None], h, c, Wx, Wh, b)
    suspects_h, suspects_c = _gate_order_suspects(x[:, None], h, c, Wx, Wh, b)
    states = {
        "next_h": (next_h, want_h[:, 0], {"suspects": {k: v[:, 0] for k, v in suspects_h.items()}}),
        "next_c": (next_c, want_c, {"suspects": suspects_c}),
    }
    assert_all_close("lstm_step_forward", states, **TOL)
    dh, dc = rng.standard_normal(next_h.shape), rng.standard_normal(next_c.shape)
    grads = lstm_step_backward(dh, dc, cache)

    def both(_):  # the loss sum(next_h * dh) + sum(next_c * dc), as one array paired with [dh, dc]
        out_h, out_c, _c = lstm_step_forward(x, h, c, Wx, Wh, b)
        return np.stack([out_h, out_c])

    numeric = {}
    for name, arg, g in zip(("dx", "dprev_h", "dprev_c", "dWx", "dWh", "db"), (x, h, c, Wx, Wh, b), grads):
        numeric[name] = (g, eval_numerical_gradient_array(both, arg, np.stack([dh, dc])))
    # dWx, dWh and db hold the four gates' blocks side by side
    assert_all_close("lstm_step_backward", numeric, 1e-7, context={"blocks": ("i", "f", "o", "g")})


@pytest.mark.parametrize("N, T, D, H", SHAPES)
def test_lstm_sequence_numeric(N, T, D, H):
    rng = np.random.default_rng(3)
    x, h0 = rng.standard_normal((N, T, D)), rng.standard_normal((N, H))
    Wx, Wh, b = params(rng, D, H, 4)
    out, cache = lstm_forward(x, h0, Wx, Wh, b)
    # the forward pass first (c0 = 0): the gradients below are those of the states it computes
    want, _ = _torch_lstm(x, h0, np.zeros_like(h0), Wx, Wh, b)
    assert_close("lstm_forward: h", out, want, **TOL, context={"axes": ("N", "T", "H")})
    dout = rng.standard_normal(out.shape)
    grads = lstm_backward(dout, cache)
    numeric = {}
    for name, arg, g in zip(("dx", "dh0", "dWx", "dWh", "db"), (x, h0, Wx, Wh, b), grads):
        num = eval_numerical_gradient_array(lambda _: lstm_forward(x, h0, Wx, Wh, b)[0], arg, dout)
        numeric[name] = (g, num, {"axes": _SEQUENCE_AXES.get(name)})
    context = {"T": T, "blocks": ("i", "f", "o", "g"), "hints": {"partial:T": CARRY}}
    assert_all_close("lstm_backward", numeric, 1e-7, context=context)


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
    assert_close("rnn_forward: h", out, ht.detach().numpy(), **TOL, context={"axes": ("N", "T", "H")})
    dout = rng.standard_normal(out.shape)
    ht.backward(torch.from_numpy(dout))
    dx, dh0, dWx, dWh, db = rnn_backward(dout, cache)
    grads = {
        "dx": (dx, xt.grad.numpy(), {"axes": ("N", "T", "D")}),
        "dh0": (dh0, h0t.grad.numpy()),
        "dWx": (dWx, rnn.weight_ih_l0.grad.numpy().T),
        "dWh": (dWh, rnn.weight_hh_l0.grad.numpy().T),
        "db": (db, rnn.bias_ih_l0.grad.numpy()),
    }
    assert_all_close("rnn_backward", grads, **TOL, context={"T": T, "hints": {"partial:T": CARRY}})


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
    suspects, _ = _gate_order_suspects(x, h0, np.zeros_like(h0), Wx, Wh, b)
    context = {"axes": ("N", "T", "H"), "suspects": suspects}
    assert_close("lstm_forward: h", out, ht.detach().numpy(), **TOL, context=context)
    dout = rng.standard_normal(out.shape)
    ht.backward(torch.from_numpy(dout))
    dx, dh0, dWx, dWh, db = lstm_backward(dout, cache)
    torch_to_ours = np.argsort(ours_to_torch)
    grads = {
        "dx": (dx, xt.grad.numpy(), {"axes": ("N", "T", "D")}),
        "dh0": (dh0, h0t.grad.numpy()),
        "dWx": (dWx, lstm.weight_ih_l0.grad.numpy().T[:, torch_to_ours]),
        "dWh": (dWh, lstm.weight_hh_l0.grad.numpy().T[:, torch_to_ours]),
        "db": (db, lstm.bias_ih_l0.grad.numpy()[torch_to_ours]),
    }
    context = {"T": T, "blocks": ("i", "f", "o", "g"), "hints": {"partial:T": CARRY}}
    assert_all_close("lstm_backward", grads, **TOL, context=context)


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
    repeated = (np.bincount(x.ravel(), minlength=V) > 1)[:, None]  # (V, 1)
    every = "a word used several times gets every contribution: dW[x] += dout keeps only one (np.add.at adds all)"
    context = {"axes": ("V", "D"), "regions": {"in the rows of words used more than once": repeated}}
    context["hints"] = {"region": every}
    assert_close("word_embedding_backward: dW", dW, num, 1e-8, context=context)
    Wt = t64(W)
    torch.nn.functional.embedding(torch.from_numpy(x), Wt).backward(torch.from_numpy(dout))
    assert_close("word_embedding_backward: dW", dW, Wt.grad.numpy(), **TOL, context=context)
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


def test_rnn_step_cs231n_published_forward_values():
    """The expected output printed in CS231n's RNN notebook (8 decimals), for linspace inputs."""
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


def test_lstm_cs231n_published_forward_values():
    """The expected output printed in CS231n's LSTM notebook (8 decimals), for linspace inputs."""
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
