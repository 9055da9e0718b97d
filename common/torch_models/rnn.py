"""A vanilla RNN, an LSTM and a GRU written from their equations (no nn.RNN/LSTM/GRU), classifying from the end."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from common.config import make_generator

__all__ = ["KINDS", "RNNConfig", "VanillaRNN", "LSTM", "GRU", "build_model"]

#: Model kinds ``build_model`` knows.
KINDS = ("rnn", "lstm", "gru")


@dataclass
class RNNConfig:
    """Sizes and initialisation of ``VanillaRNN``, ``LSTM`` and ``GRU``.

    ``input_dim`` D (10 for one-hot digits, 1 for scalar ones), ``hidden_dim`` H, ``num_classes`` C;
    ``forget_bias`` is the LSTM's initial forget-gate bias (1.0 keeps the cell open at the start) and the
    GRU's initial update-gate bias, its counterpart (``z`` near 1 keeps the old state).
    """

    input_dim: int = 10
    hidden_dim: int = 128
    num_classes: int = 10
    forget_bias: float = 1.0

    def __post_init__(self):
        for name in ("input_dim", "hidden_dim", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"RNNConfig.{name} must be a positive int, got {value!r}")


def _check_input(x: torch.Tensor, input_dim: int) -> None:
    if x.ndim != 3 or x.shape[-1] != input_dim:
        raise ValueError(
            f"x must have shape (N, T, D={input_dim}), got {tuple(x.shape)}; "
            f"scalar sequences (N, T) need x.unsqueeze(-1)"
        )


def _orthogonal_blocks(H: int, num_blocks: int, generator: torch.Generator | None) -> torch.Tensor:
    """``(H, num_blocks*H)``: ``num_blocks`` independent random orthogonal ``(H, H)`` matrices side by side."""
    blocks = []
    for _ in range(num_blocks):
        q, r = torch.linalg.qr(torch.randn(H, H, generator=generator))
        blocks.append(q * torch.sign(torch.diagonal(r)))  # sign fix: uniform over orthogonal matrices
    return torch.cat(blocks, dim=1)


def _xavier(fan_in: int, fan_out: int, generator: torch.Generator | None) -> torch.Tensor:
    bound = (6.0 / (fan_in + fan_out)) ** 0.5
    return (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound


class VanillaRNN(nn.Module):
    """Elman RNN, row-vector convention (a batch of rows ``x_t (N, D)``):

        h_t = tanh(x_t W_hx + h_{t-1} W_hh + b_h),   h_0 = 0
        p   = h_T W_ph + b_p                          (logits from the last step only)

    Parameters: ``W_hx (D, H)`` Xavier, ``W_hh (H, H)`` orthogonal, ``b_h (H,)`` zero,
    ``W_ph (H, C)`` Xavier, ``b_p (C,)`` zero, all drawn from ``generator`` (None: one seeded by the
    operating system; global random state is never used).
    """

    def __init__(self, config: RNNConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        generator = generator if generator is not None else make_generator(None)
        D, H, C = config.input_dim, config.hidden_dim, config.num_classes
        self.W_hx = nn.Parameter(_xavier(D, H, generator))
        self.W_hh = nn.Parameter(_orthogonal_blocks(H, 1, generator))
        self.b_h = nn.Parameter(torch.zeros(H))
        self.W_ph = nn.Parameter(_xavier(H, C, generator))
        self.b_p = nn.Parameter(torch.zeros(C))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, return_states: bool = False):
        """``x (N, T, D)`` -> logits ``(N, C)``; with ``return_states`` also ``{'h': (N, T, H)}``."""
        _check_input(x, self.config.input_dim)
        N, T, _ = x.shape
        h = x.new_zeros(N, self.config.hidden_dim) if h0 is None else h0  # (N, H)
        hs = []
        # The recurrence of the class docstring for t = 0..T-1: append every h_t (N, H) to hs and leave the
        # last one in h. The input terms of all steps do not depend on h: one matmul can compute them all.
        ### BEGIN SOLUTION
        xw = x @ self.W_hx + self.b_h  # (N, T, H)
        for t in range(T):
            h = torch.tanh(xw[:, t] + h @ self.W_hh)  # (N, H)
            hs.append(h)
        ### END SOLUTION
        logits = h @ self.W_ph + self.b_p  # (N, C)
        if return_states:
            return logits, {"h": torch.stack(hs, dim=1)}  # (N, T, H)
        return logits


class LSTM(nn.Module):
    """LSTM cell from its gate equations, row-vector convention, logits from the last hidden state:

        i_t = sigmoid(x_t W_ix + h_{t-1} W_ih + b_i)    input gate
        f_t = sigmoid(x_t W_fx + h_{t-1} W_fh + b_f)    forget gate
        o_t = sigmoid(x_t W_ox + h_{t-1} W_oh + b_o)    output gate
        g_t = tanh(x_t W_gx + h_{t-1} W_gh + b_g)       candidate cell input
        c_t = f_t * c_{t-1} + i_t * g_t                 h_t = o_t * tanh(c_t),   h_0 = c_0 = 0
        p   = h_T W_ph + b_p

    For speed the four gates share one matmul: ``W_x (D, 4H)``, ``W_h (H, 4H)``, ``b (4H,)`` hold the
    blocks in the order **i, f, o, g** (the course's ``lstm_step_forward`` convention). ``W_h`` is four
    orthogonal blocks, ``W_x`` Xavier, ``b_f = forget_bias`` and the other biases zero; weights are drawn from
    ``generator`` as in ``VanillaRNN``.
    """

    def __init__(self, config: RNNConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        generator = generator if generator is not None else make_generator(None)
        D, H, C = config.input_dim, config.hidden_dim, config.num_classes
        self.W_x = nn.Parameter(torch.cat([_xavier(D, H, generator) for _ in range(4)], dim=1))  # (D, 4H)
        self.W_h = nn.Parameter(_orthogonal_blocks(H, 4, generator))  # (H, 4H)
        b = torch.zeros(4 * H)
        b[H : 2 * H] = config.forget_bias  # the f block
        self.b = nn.Parameter(b)
        self.W_ph = nn.Parameter(_xavier(H, C, generator))
        self.b_p = nn.Parameter(torch.zeros(C))

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None, return_states: bool = False
    ):
        """``x (N, T, D)`` -> logits ``(N, C)``.

        ``state`` is an optional ``(h0, c0)``, each ``(N, H)``. With ``return_states`` also returns a dict
        of ``(N, T, H)`` tensors: ``'i', 'f', 'o', 'g'`` (gate activations), ``'c'`` and ``'h'``.
        """
        _check_input(x, self.config.input_dim)
        N, T, _ = x.shape
        H = self.config.hidden_dim
        if state is None:
            h, c = x.new_zeros(N, H), x.new_zeros(N, H)  # (N, H) each
        else:
            h, c = state
        xw = x @ self.W_x + self.b  # (N, T, 4H): input terms of all gates and steps in one matmul
        record = {k: [] for k in "ifogch"} if return_states else None
        for t in range(T):
            # One step of the class docstring's equations: xw[:, t] already holds x_t W_x + b for the four
            # gates (N, 4H, blocks i, f, o, g); set the gates i, f, o, g and the new c and h, each (N, H).
            ### BEGIN SOLUTION
            a = xw[:, t] + h @ self.W_h  # (N, 4H)
            a_i, a_f, a_o, a_g = a.chunk(4, dim=1)  # 4 x (N, H)
            i = torch.sigmoid(a_i)
            f = torch.sigmoid(a_f)
            o = torch.sigmoid(a_o)
            g = torch.tanh(a_g)
            c = f * c + i * g
            h = o * torch.tanh(c)
            ### END SOLUTION
            if record is not None:
                for k, v in zip("ifogch", (i, f, o, g, c, h)):
                    record[k].append(v)
        logits = h @ self.W_ph + self.b_p  # (N, C)
        if return_states:
            return logits, {k: torch.stack(v, dim=1) for k, v in record.items()}  # each (N, T, H)
        return logits


class GRU(nn.Module):
    """Gated recurrent unit from its gate equations, row-vector convention, logits from the last hidden state:

        r_t = sigmoid(x_t W_rx + b_rx + h_{t-1} W_rh + b_rh)          reset gate
        z_t = sigmoid(x_t W_zx + b_zx + h_{t-1} W_zh + b_zh)          update gate
        n_t = tanh(x_t W_nx + b_nx + r_t * (h_{t-1} W_nh + b_nh))     candidate state
        h_t = (1 - z_t) * n_t + z_t * h_{t-1},   h_0 = 0
        p   = h_T W_ph + b_p

    This is ``nn.GRU``'s convention: the reset gate multiplies the recurrent term *with its bias*,
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, and ``h' = (1 - z) * n + z * h``, so ``z`` near 1 keeps
    the old state (the role of the LSTM's forget gate) and there is no separate cell state. Because of
    ``b_nh`` inside the product there are two bias vectors. The three gates share one matmul per side:
    ``W_x (D, 3H)``, ``W_h (H, 3H)``, ``b_x (3H,)``, ``b_h (3H,)`` hold the blocks in ``nn.GRU``'s order
    **r, z, n**. ``W_h`` is three orthogonal blocks, ``W_x`` Xavier, ``b_zx = forget_bias`` and the other
    biases zero; weights are drawn from ``generator`` as in ``VanillaRNN``.
    """

    def __init__(self, config: RNNConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        generator = generator if generator is not None else make_generator(None)
        D, H, C = config.input_dim, config.hidden_dim, config.num_classes
        self.W_x = nn.Parameter(torch.cat([_xavier(D, H, generator) for _ in range(3)], dim=1))  # (D, 3H)
        self.W_h = nn.Parameter(_orthogonal_blocks(H, 3, generator))  # (H, 3H)
        b_x = torch.zeros(3 * H)
        b_x[H : 2 * H] = config.forget_bias  # the z block
        self.b_x = nn.Parameter(b_x)
        self.b_h = nn.Parameter(torch.zeros(3 * H))
        self.W_ph = nn.Parameter(_xavier(H, C, generator))
        self.b_p = nn.Parameter(torch.zeros(C))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, return_states: bool = False):
        """``x (N, T, D)`` -> logits ``(N, C)``; ``h0 (N, H)`` optional. With ``return_states`` also returns
        a dict of ``(N, T, H)`` tensors: ``'r', 'z', 'n'`` (gate activations and candidate) and ``'h'``."""
        _check_input(x, self.config.input_dim)
        N, T, _ = x.shape
        h = x.new_zeros(N, self.config.hidden_dim) if h0 is None else h0  # (N, H)
        xw = x @ self.W_x + self.b_x  # (N, T, 3H): input terms of all gates and steps in one matmul
        record = {k: [] for k in "rznh"} if return_states else None
        for t in range(T):
            # One step of the class docstring's equations: xw[:, t] holds x_t W_x + b_x for the three blocks
            # r, z, n (N, 3H); the recurrent side h W_h + b_h splits the same way. Set r, z, n and the new h.
            ### BEGIN SOLUTION
            x_r, x_z, x_n = xw[:, t].chunk(3, dim=1)  # 3 x (N, H)
            h_r, h_z, h_n = (h @ self.W_h + self.b_h).chunk(3, dim=1)  # 3 x (N, H)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
            h = (1 - z) * n + z * h
            ### END SOLUTION
            if record is not None:
                for k, v in zip("rznh", (r, z, n, h)):
                    record[k].append(v)
        logits = h @ self.W_ph + self.b_p  # (N, C)
        if return_states:
            return logits, {k: torch.stack(v, dim=1) for k, v in record.items()}  # each (N, T, H)
        return logits


def build_model(kind: str, config: RNNConfig, generator: torch.Generator | None = None) -> nn.Module:
    """``'rnn'`` -> ``VanillaRNN``, ``'lstm'`` -> ``LSTM``, ``'gru'`` -> ``GRU``, built from ``config`` and
    initialised from ``generator``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return {"rnn": VanillaRNN, "lstm": LSTM, "gru": GRU}[kind](config, generator=generator)
