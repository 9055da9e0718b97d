"""The contract every NumPy layer keeps (``common.layers`` and ``common.rnn_layers`` say so in their docstrings):
the arrays passed in are left as they are; every output and gradient has the shape and the floating dtype of
what it belongs to (float32 stays float32); a cache whose layout the template fixes is named when it is
broken. Each failure message says which rule was broken.

One test per exercise, each calling only its own functions: a layer not written yet fails only its own.
"""

import numpy as np
import pytest

from common import layers, rnn_layers
from common.diagnose import describe_shape

DTYPES = [np.float32, np.float64]


def _arrays(dtype, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in shapes]


def _unchanged(function, inputs, before):
    """Every array of ``inputs`` still equals its copy in ``before``."""
    for name, value in inputs.items():
        if isinstance(value, np.ndarray) and not np.array_equal(value, before[name], equal_nan=True):
            raise AssertionError(
                f"{function} changed its argument {name}: a layer must leave its inputs as they are (write results "
                f"into new arrays; `{name} -= ...`, `{name} *= ...` or `{name}[...] = ...` change the caller's array)"
            )


def _like(function, what, value, reference, reference_name, dtype):
    """``value`` (an output or gradient) has the shape of ``reference`` and the dtype of the inputs."""
    shape, want = np.shape(value), np.shape(reference)
    # the shapes alone say what kind of mistake it is: a transpose, a sum over the wrong axis, a lost axis
    assert shape == want, describe_shape(f"{function}: {what}", shape, want, {"expected_as": reference_name})
    got = np.asarray(value).dtype
    assert got == dtype, (
        f"{function}: {what} is {got} for {np.dtype(dtype)} inputs; outputs and gradients keep the dtype of the "
        f"inputs (float32 stays float32: np.zeros(shape) is float64, np.zeros_like(x) or dtype=x.dtype is not)"
    )


def _check_pair(forward, backward, inputs, extra=(), grads=None, out_like="x"):
    """Call ``forward(*inputs.values(), *extra)`` and ``backward(dout, cache)``; check the contract on both.

    ``grads``: the names of the inputs whose gradients ``backward`` returns, in order (default: every input).
    ``out_like``: the input whose dtype the output has (its shape is checked by the layer's own tests)."""
    dtype = inputs[out_like].dtype
    before = {k: v.copy() for k, v in inputs.items() if isinstance(v, np.ndarray)}
    out, cache = forward(*inputs.values(), *extra)
    _unchanged(forward.__name__, inputs, before)
    assert np.asarray(out).dtype == dtype, (
        f"{forward.__name__}: out is {np.asarray(out).dtype} for {np.dtype(dtype)} inputs; outputs keep the dtype "
        f"of the inputs (float32 stays float32: np.zeros(shape) is float64, np.zeros_like(x) or dtype=x.dtype is not)"
    )
    dout = _arrays(dtype, np.shape(out), seed=1)[0]
    dout_before = dout.copy()
    result = backward(dout, cache)
    _unchanged(backward.__name__, {"dout": dout}, {"dout": dout_before})
    names = list(inputs) if grads is None else grads
    result = result if isinstance(result, tuple) else (result,)
    assert len(result) == len(names), (
        f"{backward.__name__} returned {len(result)} values; it returns the gradients of {', '.join(names)}"
    )
    for name, grad in zip(names, result):
        _like(backward.__name__, f"d{name}", grad, inputs[name], name, dtype)


def _check_loss(loss_fn, dtype):
    x = _arrays(dtype, (5, 4))[0]
    y = np.array([0, 3, 1, 1, 2])
    before = {"x": x.copy(), "y": y.copy()}
    loss, dx = loss_fn(x, y)
    _unchanged(loss_fn.__name__, {"x": x, "y": y}, before)
    assert np.ndim(loss) == 0, f"{loss_fn.__name__}: the loss must be one number, got shape {np.shape(loss)}"
    _like(loss_fn.__name__, "dx", dx, x, "x", dtype)


# ---------------------------------------------------------------------------- affine and activations
@pytest.mark.parametrize("dtype", DTYPES)
def test_affine_contract(dtype):
    x, w, b = _arrays(dtype, (4, 3, 2), (6, 5), (5,))
    _check_pair(layers.affine_forward, layers.affine_backward, {"x": x, "w": w, "b": b})


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_contract(dtype):
    _check_pair(layers.relu_forward, layers.relu_backward, {"x": _arrays(dtype, (4, 5))[0]})


@pytest.mark.parametrize("dtype", DTYPES)
def test_leaky_relu_contract(dtype):
    _check_pair(layers.leaky_relu_forward, layers.leaky_relu_backward, {"x": _arrays(dtype, (4, 5))[0]})


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_contract(dtype):
    _check_pair(layers.sigmoid_forward, layers.sigmoid_backward, {"x": _arrays(dtype, (4, 5))[0]})


@pytest.mark.parametrize("dtype", DTYPES)
def test_tanh_contract(dtype):
    _check_pair(layers.tanh_forward, layers.tanh_backward, {"x": _arrays(dtype, (4, 5))[0]})


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_contract(dtype):
    x, alpha = _arrays(dtype, (4, 5), (5,))
    _check_pair(layers.prelu_forward, layers.prelu_backward, {"x": x, "alpha": np.abs(alpha) / 10})
    # one shared slope, a Python float: dx still has the dtype of x
    before = x.copy()
    out, cache = layers.prelu_forward(x, 0.2)
    _unchanged("prelu_forward", {"x": x}, {"x": before})
    dx, _ = layers.prelu_backward(np.ones_like(out), cache)
    _like("prelu_backward", "dx (alpha a Python float)", dx, x, "x", dtype)


# ---------------------------------------------------------------------------- losses
@pytest.mark.parametrize("dtype", DTYPES)
def test_svm_loss_contract(dtype):
    _check_loss(layers.svm_loss, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_loss_contract(dtype):
    _check_loss(layers.softmax_loss, dtype)


# ---------------------------------------------------------------------------- normalisation and dropout
def _norm_inputs(dtype, shape=(6, 5)):
    x, gamma, beta = _arrays(dtype, shape, shape[1:], shape[1:])
    return {"x": 3 * x + 1, "gamma": gamma, "beta": beta}


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_contract(dtype):
    inputs = _norm_inputs(dtype)
    _check_pair(layers.batchnorm_forward, layers.batchnorm_backward, inputs, extra=({"mode": "train"},))
    bn_param = {"mode": "train"}
    layers.batchnorm_forward(*inputs.values(), bn_param)
    for name in ("running_mean", "running_var"):
        _like("batchnorm_forward", f"bn_param[{name!r}]", bn_param[name], inputs["gamma"], "gamma", dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_backward_alt_contract(dtype):
    _check_pair(
        layers.batchnorm_forward, layers.batchnorm_backward_alt, _norm_inputs(dtype), extra=({"mode": "train"},)
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_layernorm_contract(dtype):
    _check_pair(layers.layernorm_forward, layers.layernorm_backward, _norm_inputs(dtype), extra=({},))


@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_contract(dtype):
    x = _arrays(dtype, (6, 5))[0]
    param = {"mode": "train", "p": 0.5, "seed": 0}
    _check_pair(layers.dropout_forward, layers.dropout_backward, {"x": x}, extra=(param,))
    assert param == {"mode": "train", "p": 0.5, "seed": 0}, "dropout_forward changed its dropout_param"


# ---------------------------------------------------------------------------- convolution and pooling
@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_contract(dtype):
    x, w, b = _arrays(dtype, (2, 3, 5, 5), (4, 3, 3, 3), (4,))
    param = {"stride": 2, "pad": 1}
    _check_pair(layers.conv_forward_naive, layers.conv_backward_naive, {"x": x, "w": w, "b": b}, extra=(param,))
    assert param == {"stride": 2, "pad": 1}, "conv_forward_naive changed its conv_param"


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool_contract(dtype):
    param = {"pool_height": 2, "pool_width": 2, "stride": 1}
    _check_pair(
        layers.max_pool_forward_naive, layers.max_pool_backward_naive, {"x": _arrays(dtype, (2, 3, 4, 4))[0]}, (param,)
    )
    assert param == {"pool_height": 2, "pool_width": 2, "stride": 1}, "max_pool_forward_naive changed its pool_param"


@pytest.mark.parametrize("dtype", DTYPES)
def test_spatial_batchnorm_contract(dtype):
    x, gamma, beta = _arrays(dtype, (2, 3, 4, 4), (3,), (3,))
    inputs = {"x": x, "gamma": gamma, "beta": beta}
    _check_pair(layers.spatial_batchnorm_forward, layers.spatial_batchnorm_backward, inputs, extra=({"mode": "train"},))


@pytest.mark.parametrize("dtype", DTYPES)
def test_spatial_groupnorm_contract(dtype):
    x, gamma, beta = _arrays(dtype, (2, 4, 3, 3), (1, 4, 1, 1), (1, 4, 1, 1))

    def forward(x, gamma, beta):  # G sits between the arrays and the param dict
        return layers.spatial_groupnorm_forward(x, gamma, beta, 2, {})

    forward.__name__ = "spatial_groupnorm_forward"
    _check_pair(forward, layers.spatial_groupnorm_backward, {"x": x, "gamma": gamma, "beta": beta})


# ---------------------------------------------------------------------------- recurrent layers
def _rnn_inputs(dtype, gates, sequence):
    N, T, D, H = 3, 4, 5, 6
    shapes = [(N, T, D) if sequence else (N, D), (N, H), (D, gates * H), (H, gates * H), (gates * H,)]
    x, h, Wx, Wh, b = _arrays(dtype, *shapes)
    return {"x": x, "h0" if sequence else "prev_h": h, "Wx": 0.3 * Wx, "Wh": 0.3 * Wh, "b": b}


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_step_contract(dtype):
    _check_pair(rnn_layers.rnn_step_forward, rnn_layers.rnn_step_backward, _rnn_inputs(dtype, 1, False))


@pytest.mark.parametrize("dtype", DTYPES)
def test_rnn_contract(dtype):
    _check_pair(rnn_layers.rnn_forward, rnn_layers.rnn_backward, _rnn_inputs(dtype, 1, True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_step_contract(dtype):
    x, prev_h, Wx, Wh, b = _rnn_inputs(dtype, 4, False).values()
    inputs = {"x": x, "prev_h": prev_h, "prev_c": prev_h[::-1].copy(), "Wx": Wx, "Wh": Wh, "b": b}
    before = {k: v.copy() for k, v in inputs.items()}
    next_h, next_c, cache = rnn_layers.lstm_step_forward(*inputs.values())
    _unchanged("lstm_step_forward", inputs, before)
    _like("lstm_step_forward", "next_h", next_h, inputs["prev_h"], "prev_h", dtype)
    _like("lstm_step_forward", "next_c", next_c, inputs["prev_c"], "prev_c", dtype)
    dnext_h, dnext_c = _arrays(dtype, next_h.shape, next_c.shape, seed=1)
    douts = {"dnext_h": dnext_h, "dnext_c": dnext_c}
    douts_before = {k: v.copy() for k, v in douts.items()}
    grads = rnn_layers.lstm_step_backward(dnext_h, dnext_c, cache)
    _unchanged("lstm_step_backward", douts, douts_before)
    assert len(grads) == 6, "lstm_step_backward returns (dx, dprev_h, dprev_c, dWx, dWh, db)"
    for name, grad in zip(inputs, grads):
        _like("lstm_step_backward", f"d{name}", grad, inputs[name], name, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lstm_contract(dtype):
    _check_pair(rnn_layers.lstm_forward, rnn_layers.lstm_backward, _rnn_inputs(dtype, 4, True))


@pytest.mark.parametrize("dtype", DTYPES)
def test_word_embedding_contract(dtype):
    inputs = {"x": np.array([[0, 3, 3], [1, 0, 2]]), "W": _arrays(dtype, (4, 5))[0]}
    _check_pair(
        rnn_layers.word_embedding_forward, rnn_layers.word_embedding_backward, inputs, grads=["W"], out_like="W"
    )


# ---------------------------------------------------------------------------- caches of a fixed layout
# The template builds these caches after the student's code; a cache of another layout (returned early from
# the forward pass) is named as such by the backward pass, not left to fail deeper down.
def _dict_cache_is_named(backward, dout, cache, match):
    with pytest.raises(ValueError, match=match):
        backward(dout, cache)


def test_conv_backward_names_a_cache_of_another_layout():
    x, w, b = _arrays(np.float64, (1, 2, 4, 4), (3, 2, 3, 3), (3,))
    dout = np.ones((1, 3, 4, 4))
    rule = r"conv_backward_naive: cache must be \(x, w, b, conv_param\), as conv_forward_naive returns it; "
    _dict_cache_is_named(layers.conv_backward_naive, dout, {"x": x, "w": w, "b": b, "p": 1}, rule + "got a dict")
    _dict_cache_is_named(layers.conv_backward_naive, dout, (x, w, b), rule + "got a tuple of 3 items")
    _dict_cache_is_named(layers.conv_backward_naive, dout, (x, w, b, "pad"), rule + "its conv_param is a str")


def test_max_pool_backward_names_a_cache_of_another_layout():
    x = _arrays(np.float64, (1, 2, 4, 4))[0]
    rule = r"max_pool_backward_naive: cache must be \(x, pool_param\), as max_pool_forward_naive returns it; "
    _dict_cache_is_named(layers.max_pool_backward_naive, np.ones((1, 2, 2, 2)), {"x": x}, rule + "got a dict")
    _dict_cache_is_named(layers.max_pool_backward_naive, np.ones((1, 2, 2, 2)), x, rule + "got a NumPy array")


def test_dropout_backward_names_a_cache_of_another_layout():
    x = _arrays(np.float64, (3, 4))[0]
    rule = r"dropout_backward: cache must be \(dropout_param, mask\), as dropout_forward returns it; "
    param = {"mode": "train", "p": 0.5}
    _dict_cache_is_named(layers.dropout_backward, x, {"p": 0.5, "mask": x}, rule + "got a dict")
    _dict_cache_is_named(layers.dropout_backward, x, x, rule + "got a NumPy array")
    _dict_cache_is_named(layers.dropout_backward, x, (param, "mask"), rule + "its mask is a str")
