"""VanillaRNN, LSTM and GRU from their equations, checked against torch.nn.RNN / LSTM / GRU and gradcheck."""

import copy
import itertools

import pytest
import torch
from torch import nn

from common.diagnose import assert_close
from common.torch_models.rnn import GRU, KINDS, LSTM, RNNConfig, VanillaRNN, build_model

RTOL, ATOL = 1e-10, 1e-12  # float64 throughout: the two implementations differ only by rounding


def _model(cls, D=3, H=5, C=4, seed=0):
    return cls(
        RNNConfig(input_dim=D, hidden_dim=H, num_classes=C), generator=torch.Generator().manual_seed(seed)
    ).double()


def _x(N=2, T=6, D=3, seed=1):
    return torch.randn(N, T, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _randomise(model, seed=2):
    """Non-trivial biases too, so a wrong gate or bias mapping cannot pass."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.5 * torch.randn(param.shape, generator=gen, dtype=param.dtype))


def test_rnn_matches_torch_rnn():
    model = _model(VanillaRNN)
    _randomise(model)
    ref = nn.RNN(3, 5, nonlinearity="tanh", batch_first=True).double()
    with torch.no_grad():  # torch: h_t = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)
        ref.weight_ih_l0.copy_(model.W_hx.T)
        ref.weight_hh_l0.copy_(model.W_hh.T)
        ref.bias_ih_l0.copy_(model.b_h)
        ref.bias_hh_l0.zero_()
    x = _x()
    logits, states = model(x, return_states=True)
    out, h_n = ref(x)
    torch.testing.assert_close(states["h"], out, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(logits, h_n[0] @ model.W_ph + model.b_p, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(model(x), logits, rtol=0, atol=0)


def _reference_lstm(model, H, reads="ifog"):
    """nn.LSTM with the weights of ``model``, whose blocks are i, f, o, g (row-vector W (D, 4H); torch: i, f, g, o,
    W (4H, D)); with ``reads``, the LSTM of a cell that takes its four chunks as these gates instead."""
    order = [reads.index(gate) for gate in "ifgo"]  # torch's block k comes from our block order[k]

    def remap(w):  # (..., 4H) in our blocks -> torch's order
        blocks = w.split(H, dim=-1)
        return torch.cat([blocks[k] for k in order], dim=-1)

    ref = nn.LSTM(model.W_x.shape[0], H, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(remap(model.W_x).T)
        ref.weight_hh_l0.copy_(remap(model.W_h).T)
        ref.bias_ih_l0.copy_(remap(model.b))
        ref.bias_hh_l0.zero_()
    return ref


def test_lstm_matches_torch_lstm_with_gate_order_mapped():
    model = _model(LSTM)
    _randomise(model)
    H = 5
    ref = _reference_lstm(model, H)
    x = _x()
    h0 = torch.randn(2, H, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    c0 = torch.randn(2, H, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    logits, states = model(x, state=(h0, c0), return_states=True)
    out, (h_n, c_n) = ref(x, (h0[None], c0[None]))
    with torch.no_grad():  # what a cell gives that takes the chunks in another order
        other_orders = {
            f"the chunks taken as the gates in the order {', '.join(p)}, not i, f, o, g": _reference_lstm(model, H, p)(
                x, (h0[None], c0[None])
            )[0]
            for p in map("".join, itertools.permutations("ifog"))
            if p != "ifog"
        }
    context = {"axes": ("N", "T", "H"), "suspects": other_orders}
    assert_close("LSTM.forward: h", states["h"], out, rtol=RTOL, atol=ATOL, check_dtype=True, context=context)
    torch.testing.assert_close(states["c"][:, -1], c_n[0], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(logits, h_n[0] @ model.W_ph + model.b_p, rtol=RTOL, atol=ATOL)


def test_gru_matches_torch_gru():
    """Same block order (r, z, n) and the same two biases as nn.GRU: a transpose is the whole mapping."""
    model = _model(GRU)
    _randomise(model)
    ref = nn.GRU(3, 5, batch_first=True).double()
    with torch.no_grad():  # torch: W_ih (3H, D), W_hh (3H, H), blocks r, z, n
        ref.weight_ih_l0.copy_(model.W_x.T)
        ref.weight_hh_l0.copy_(model.W_h.T)
        ref.bias_ih_l0.copy_(model.b_x)
        ref.bias_hh_l0.copy_(model.b_h)
    x = _x()
    h0 = torch.randn(2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    logits, states = model(x, h0=h0, return_states=True)
    out, h_n = ref(x, h0[None])
    # z and 1 - z swapped is nn.GRU with the z block's weights negated, as 1 - sigmoid(a) = sigmoid(-a)
    negated = copy.deepcopy(ref)
    with torch.no_grad():
        for p in negated.parameters():
            p[5:10].neg_()
        swapped = negated(x, h0[None])[0]
    context = {
        "axes": ("N", "T", "H"),
        "suspects": {"the update h = z * n + (1 - z) * h_prev (z and 1 - z swapped)": swapped},
    }
    assert_close("GRU.forward: h", states["h"], out, rtol=RTOL, atol=ATOL, check_dtype=True, context=context)
    torch.testing.assert_close(logits, h_n[0] @ model.W_ph + model.b_p, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(model(x, h0=h0), logits, rtol=0, atol=0)
    # gradients agree too (the same function, so autograd must give the same numbers)
    target = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (g_ours,) = torch.autograd.grad((states["h"] * target).sum(), model.W_h)
    (g_ref,) = torch.autograd.grad((out * target).sum(), ref.weight_hh_l0)
    torch.testing.assert_close(g_ours, g_ref.T, rtol=1e-9, atol=1e-12)


def test_gru_gate_states_obey_the_cell_equations():
    model = _model(GRU)
    _, s = model(_x(), return_states=True)
    for k in "rz":
        assert ((s[k] > 0) & (s[k] < 1)).all(), k
    assert (s["n"].abs() < 1).all()
    h_prev = torch.cat([torch.zeros_like(s["h"][:, :1]), s["h"][:, :-1]], dim=1)
    swapped = {"the update h = z * n + (1 - z) * h_prev (z and 1 - z swapped)": s["z"] * s["n"] + (1 - s["z"]) * h_prev}
    expected = (1 - s["z"]) * s["n"] + s["z"] * h_prev
    context = {"axes": ("N", "T", "H"), "suspects": swapped}
    assert_close("GRU.forward: h", s["h"], expected, rtol=RTOL, atol=ATOL, check_dtype=True, context=context)


def test_lstm_gate_states_obey_the_cell_equations():
    model = _model(LSTM)
    _, s = model(_x(), return_states=True)
    for k in "ifo":
        assert ((s[k] > 0) & (s[k] < 1)).all(), k
    assert (s["g"].abs() < 1).all()
    c_prev = torch.cat([torch.zeros_like(s["c"][:, :1]), s["c"][:, :-1]], dim=1)
    torch.testing.assert_close(s["c"], s["f"] * c_prev + s["i"] * s["g"], rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(s["h"], s["o"] * torch.tanh(s["c"]), rtol=RTOL, atol=ATOL)


# one test per cell (each forward pass is an exercise of its own): a cell not written yet fails only its own
def _check_gradients_reach_every_parameter(cls):
    model = _model(cls, seed=5)
    x = _x(N=4, T=8)
    y = torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"


def test_rnn_gradients_reach_every_parameter():
    _check_gradients_reach_every_parameter(VanillaRNN)


def test_lstm_gradients_reach_every_parameter():
    _check_gradients_reach_every_parameter(LSTM)


def test_gru_gradients_reach_every_parameter():
    _check_gradients_reach_every_parameter(GRU)


def _gradcheck_against_finite_differences(cls):
    model = _model(cls, D=2, H=3, C=2, seed=6)
    x = _x(N=2, T=4, D=2).requires_grad_(True)
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def f(x, *ps):  # logits as a function of the input and every parameter
        return torch.func.functional_call(model, dict(zip(names, ps)), (x,))

    assert torch.autograd.gradcheck(f, (x, *params), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_rnn_gradcheck_against_finite_differences():
    _gradcheck_against_finite_differences(VanillaRNN)


def test_lstm_gradcheck_against_finite_differences():
    _gradcheck_against_finite_differences(LSTM)


def test_gru_gradcheck_against_finite_differences():
    _gradcheck_against_finite_differences(GRU)


def test_initialisation_orthogonal_and_forget_bias():
    H = 16
    rnn = VanillaRNN(RNNConfig(hidden_dim=H), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(rnn.W_hh.T @ rnn.W_hh, torch.eye(H), rtol=0, atol=1e-5)
    lstm = LSTM(RNNConfig(hidden_dim=H, forget_bias=1.0), generator=torch.Generator().manual_seed(0))
    for k in range(4):
        block = lstm.W_h[:, k * H : (k + 1) * H]
        torch.testing.assert_close(block.T @ block, torch.eye(H), rtol=0, atol=1e-5)
    assert torch.all(lstm.b[H : 2 * H] == 1.0) and torch.all(lstm.b[:H] == 0) and torch.all(lstm.b[2 * H :] == 0)
    gru = GRU(RNNConfig(hidden_dim=H, forget_bias=1.0), generator=torch.Generator().manual_seed(0))
    for k in range(3):
        block = gru.W_h[:, k * H : (k + 1) * H]
        torch.testing.assert_close(block.T @ block, torch.eye(H), rtol=0, atol=1e-5)
    assert torch.all(gru.b_x[H : 2 * H] == 1.0) and torch.all(gru.b_x[:H] == 0) and torch.all(gru.b_x[2 * H :] == 0)
    assert torch.all(gru.b_h == 0)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_init_is_reproducible_per_generator(kind):
    a = build_model(kind, RNNConfig(), torch.Generator().manual_seed(7))
    b = build_model(kind, RNNConfig(), torch.Generator().manual_seed(7))
    c = build_model(kind, RNNConfig(), torch.Generator().manual_seed(8))
    assert torch.equal(a.W_h, b.W_h) and not torch.equal(a.W_h, c.W_h)


def test_build_model_kinds():
    assert KINDS == ("rnn", "lstm", "gru")
    for kind, cls in zip(KINDS, (VanillaRNN, LSTM, GRU)):
        assert type(build_model(kind, RNNConfig(hidden_dim=4))) is cls


def test_no_builtin_recurrent_modules():
    for kind in KINDS:
        model = build_model(kind, RNNConfig())
        assert not any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in model.modules())


def test_bad_input_is_a_clear_error():
    model = VanillaRNN(RNNConfig(input_dim=10))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="kind"):
        build_model("transformer", RNNConfig())
    with pytest.raises(ValueError, match="x must have shape"):
        GRU(RNNConfig(input_dim=10))(torch.zeros(2, 5, 1))
    with pytest.raises(ValueError, match="hidden_dim"):
        RNNConfig(hidden_dim=0)


@pytest.mark.parametrize("kind", KINDS)
def test_init_without_generator_leaves_global_rng_alone(kind):
    before = torch.get_rng_state().clone()
    a, b = build_model(kind, RNNConfig(hidden_dim=6)), build_model(kind, RNNConfig(hidden_dim=6))
    assert torch.equal(torch.get_rng_state(), before)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))  # fresh seeds from the OS
