"""Core NumPy layers against two oracles: float64 centred differences and PyTorch autograd."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common import layers
from common.diagnose import assert_all_close, assert_close
from common.gradient_check import eval_numerical_gradient, eval_numerical_gradient_array, rel_error

# Tolerances. Numeric gradients (h=1e-5, float64): rel_error < 1e-7 for smooth layers; torch autograd
# (float64, same maths): rel_error < 1e-10 unless stated.
NUM_TOL = 1e-7
TORCH_TOL = 1e-10

SHAPES_2D = [(2, 3), (5, 7), (16, 4)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _torch_grads(fn, arrays, dout):
    """Autograd gradients of sum(fn(*tensors) * dout) for every array; also returns the forward output."""
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(dout, dtype=torch.float64))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


# ---------------------------------------------------------------------------- affine
def test_affine_forward_matches_cs231n_values():
    x = np.linspace(-0.1, 0.5, num=240).reshape(2, 4, 5, 6)
    w = np.linspace(-0.2, 0.3, num=360).reshape(120, 3)
    b = np.linspace(-0.3, 0.1, num=3)
    out, _ = layers.affine_forward(x, w, b)
    expected = np.array([[1.49834967, 1.70660132, 1.91485297], [3.25553199, 3.5141327, 3.77273342]])
    assert_close("affine_forward: out", out, expected, 1e-8, context={"axes": ("N", "M")})


@pytest.mark.parametrize("x_shape,M", [((3, 4), 5), ((2, 3, 4), 6), ((4, 2, 3, 2), 3)])
def test_affine_backward(x_shape, M):
    rng = _rng(1)
    x = rng.standard_normal(x_shape)
    D = int(np.prod(x_shape[1:]))
    w, b = rng.standard_normal((D, M)), rng.standard_normal(M)
    dout = rng.standard_normal((x_shape[0], M))
    out, cache = layers.affine_forward(x, w, b)
    dx, dw, db = layers.affine_backward(dout, cache)
    t_out, (tdx, tdw, tdb) = _torch_grads(lambda x, w, b: x.reshape(x.shape[0], -1) @ w + b, [x, w, b], dout)
    sizes = {"N": x_shape[0], "D": D, "M": M}
    # the forward pass first: the gradients below are those of the output it computes
    assert_close("affine_forward: out", out, t_out, TORCH_TOL, context={**sizes, "axes": ("N", "M")})
    f = layers.affine_forward
    numeric = {
        "dx": (dx, eval_numerical_gradient_array(lambda x: f(x, w, b)[0], x, dout)),
        "dw": (dw, eval_numerical_gradient_array(lambda w: f(x, w, b)[0], w, dout)),
        "db": (db, eval_numerical_gradient_array(lambda b: f(x, w, b)[0], b, dout)),
    }
    # each gradient has the shape of its input, and the values of centred differences and of autograd
    assert_all_close("affine_backward", numeric, NUM_TOL, context=sizes)
    assert_all_close("affine_backward", {"dx": (dx, tdx), "dw": (dw, tdw), "db": (db, tdb)}, TORCH_TOL, context=sizes)


def test_affine_bad_shapes_raise():
    x = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="w"):
        layers.affine_forward(x, np.zeros((11, 5)), np.zeros(5))
    with pytest.raises(ValueError, match="b"):
        layers.affine_forward(x, np.zeros((12, 5)), np.zeros(4))
    with pytest.raises(ValueError, match="w"):
        layers.affine_forward(x, np.zeros(12), np.zeros(5))


# ---------------------------------------------------------------------------- activations
# (each activation has its own tests: one that is not started or wrong fails only its own)
ACTIVATION_SHAPES = [(4, 5), (2, 3, 4), (7,)]


def test_relu_forward_matches_cs231n_values():
    x = np.linspace(-0.5, 0.5, num=12).reshape(3, 4)
    out, _ = layers.relu_forward(x)
    expected = np.array(
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.04545455, 0.13636364], [0.22727273, 0.31818182, 0.40909091, 0.5]]
    )
    assert rel_error(out, expected) < 5e-8


def _check_activation_pair(fwd, bwd, torch_fn, shape):
    """The forward output against PyTorch; the backward pass, given the forward pass's cache, against
    centred differences of the forward pass and against autograd."""
    rng = _rng(2)
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the ReLU kink, where centred differences disagree
    dout = rng.standard_normal(shape)
    out, cache = fwd(x)
    dx = bwd(dout, cache)
    t_out, (tdx,) = _torch_grads(torch_fn, [x], dout)
    context = {
        "regions": {"where x < 0": x < 0},
        "hints": {"region": "the local slope for x < 0 is 0 for ReLU and alpha for leaky ReLU: look at that branch"},
        # two classic mistakes, by the outputs they give
        "suspects": {
            "relu_backward": {"the mask taken from dout > 0 instead of x > 0": dout * (dout > 0)},
            "sigmoid_backward": {"the derivative without its (1 - s) factor (dout * s)": dout * t_out},
        }.get(bwd.__name__, {}),
    }
    assert_close(f"{fwd.__name__}: out", out, t_out, TORCH_TOL, context=context)
    dx_num = eval_numerical_gradient_array(lambda x: fwd(x)[0], x, dout)
    assert_close(f"{bwd.__name__}: dx", dx, dx_num, NUM_TOL, context=context)
    assert_close(f"{bwd.__name__}: dx", dx, tdx, TORCH_TOL, context=context)


@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_relu_pair(shape):
    _check_activation_pair(layers.relu_forward, layers.relu_backward, torch.relu, shape)


@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_leaky_relu_pair(shape):
    _check_activation_pair(
        layers.leaky_relu_forward, layers.leaky_relu_backward, lambda t: F.leaky_relu(t, 0.01), shape
    )


@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_sigmoid_pair(shape):
    _check_activation_pair(layers.sigmoid_forward, layers.sigmoid_backward, torch.sigmoid, shape)


@pytest.mark.parametrize("shape", ACTIVATION_SHAPES)
def test_tanh_pair(shape):
    _check_activation_pair(layers.tanh_forward, layers.tanh_backward, torch.tanh, shape)


def test_leaky_relu_alpha():
    x = np.array([-2.0, 3.0])
    out, cache = layers.leaky_relu_forward(x, alpha=0.2)
    assert np.allclose(out, [-0.4, 3.0])
    assert np.allclose(layers.leaky_relu_backward(np.ones(2), cache), [0.2, 1.0])


def test_sigmoid_does_not_overflow():
    with np.errstate(over="raise"):
        s, _ = layers.sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    assert np.allclose(s, [0.0, 0.5, 1.0])


# PReLU: (x shape, alpha) with one slope per feature (D,) or one shared scalar slope
PRELU_CASES = [((6, 4), "per_feature"), ((1, 3), "per_feature"), ((5, 3), "scalar"), ((2, 3, 4), "scalar")]


def _prelu_args(shape, kind, seed=13):
    rng = _rng(seed)
    x = rng.standard_normal(shape)
    x[np.abs(x) < 1e-3] = 0.5  # off the kink
    alpha = rng.uniform(0.05, 0.5, size=shape[1]) if kind == "per_feature" else 0.3
    return x, alpha, rng.standard_normal(shape)


@pytest.mark.parametrize("shape,kind", PRELU_CASES)
def test_prelu_numeric_gradients(shape, kind):
    x, alpha, dout = _prelu_args(shape, kind)
    out, cache = layers.prelu_forward(x, alpha)
    dx, dalpha = layers.prelu_backward(dout, cache)
    context = {"N": shape[0], "regions": {"where x < 0": x < 0}}
    assert_close("prelu_forward: out", out, np.where(x > 0, x, alpha * x), 1e-15, context=context)
    dx_num = eval_numerical_gradient_array(lambda x: layers.prelu_forward(x, alpha)[0], x, dout)
    assert_close("prelu_backward: dx", dx, dx_num, NUM_TOL, context=context)
    assert np.shape(dalpha) == np.shape(alpha), (
        f"prelu_backward: dalpha has shape {np.shape(dalpha)}; it must have the shape of alpha, {np.shape(alpha)}"
    )
    if kind == "per_feature":
        dalpha_num = eval_numerical_gradient_array(lambda a: layers.prelu_forward(x, a)[0], alpha.copy(), dout)
    else:  # a scalar slope: one centred difference
        h = 1e-5
        f = layers.prelu_forward
        dalpha_num = np.sum((f(x, alpha + h)[0] - f(x, alpha - h)[0]) * dout) / (2 * h)
    assert_close("prelu_backward: dalpha", np.asarray(dalpha), dalpha_num, NUM_TOL, context=context)


@pytest.mark.parametrize("shape,kind", PRELU_CASES)
def test_prelu_matches_torch(shape, kind):
    x, alpha, dout = _prelu_args(shape, kind)
    out, cache = layers.prelu_forward(x, alpha)
    dx, dalpha = layers.prelu_backward(dout, cache)
    weight = np.atleast_1d(alpha)  # torch takes a (1,) weight for a shared slope, (D,) for dim 1 of x
    t_out, (tdx, tdalpha) = _torch_grads(F.prelu, [x, weight], dout)
    context = {"N": shape[0], "regions": {"where x < 0": x < 0}}
    assert_close("prelu_forward: out", out, t_out, TORCH_TOL, context=context)
    assert_close("prelu_backward: dx", dx, tdx, TORCH_TOL, context=context)
    assert_close("prelu_backward: dalpha", np.atleast_1d(dalpha), tdalpha, TORCH_TOL, context=context)


def test_prelu_special_slopes_and_bad_alpha():
    x = _rng(14).standard_normal((8, 5))
    assert np.array_equal(layers.prelu_forward(x, 0.0)[0], np.maximum(x, 0))  # slope 0: ReLU
    assert np.allclose(layers.prelu_forward(x, np.full(5, 0.01))[0], np.where(x > 0, x, 0.01 * x))  # leaky ReLU
    assert np.array_equal(layers.prelu_forward(x, 1.0)[0], x)  # slope 1: the identity
    with pytest.raises(ValueError, match="alpha"):
        layers.prelu_forward(x, np.ones(4))  # one slope per feature: D = 5
    with pytest.raises(ValueError, match="alpha"):
        layers.prelu_forward(x.reshape(8, 5, 1), np.ones(5))
    with pytest.raises(ValueError, match="alpha"):
        layers.prelu_forward(x, np.ones((1, 5)))
    with pytest.raises(ValueError, match="no samples"):
        layers.prelu_forward(np.zeros((0, 5)), np.ones(5))


# ---------------------------------------------------------------------------- losses
@pytest.mark.parametrize("N,C", [(1, 2), (5, 3), (50, 10)])
def test_softmax_loss(N, C):
    rng = _rng(3)
    x = rng.standard_normal((N, C))
    y = rng.integers(C, size=N)
    loss, dx = layers.softmax_loss(x, y)
    xt = torch.tensor(x, requires_grad=True)
    t_loss = F.cross_entropy(xt, torch.tensor(y))
    t_loss.backward()
    context = {"N": N, "C": C}
    assert_close("softmax_loss: loss", loss, t_loss.item(), atol=1e-12, context=context)
    # entries of dx are as small as 1e-5 here, so the numeric check is relative to a tiny value: 1e-6
    dx_num = eval_numerical_gradient(lambda x: layers.softmax_loss(x, y)[0], x, verbose=False)
    assert_close("softmax_loss: dx", dx, dx_num, 1e-6, context={**context, "expected_as": "the slope of your loss"})
    assert_close("softmax_loss: dx", dx, xt.grad.numpy(), TORCH_TOL, context=context)


def test_softmax_loss_small_scores_is_log_c_and_stable():
    x = 1e-3 * _rng(4).standard_normal((100, 10))
    loss, _ = layers.softmax_loss(x, np.arange(100) % 10)
    assert abs(loss - np.log(10)) < 0.01
    loss, dx = layers.softmax_loss(np.array([[1000.0, 0.0, -1000.0]]), np.array([0]))
    assert np.isfinite(loss) and loss < 1e-12 and np.all(np.isfinite(dx))


@pytest.mark.parametrize("N,C", [(1, 2), (5, 3), (50, 10)])
def test_svm_loss(N, C):
    rng = _rng(5)
    x = rng.standard_normal((N, C))
    y = rng.integers(C, size=N)
    loss, dx = layers.svm_loss(x, y)
    xt = torch.tensor(x, requires_grad=True)
    t_loss = F.multi_margin_loss(xt, torch.tensor(y), margin=1.0) * C  # torch also divides by C
    t_loss.backward()
    margin = "is the correct class's own margin (x_y - x_y + 1 = 1) counted? The sum skips j = y_i"
    context = {"N": N, "C": C, "hints": {"offset": margin}}
    assert_close("svm_loss: loss", loss, t_loss.item(), atol=1e-12, context=context)
    dx_num = eval_numerical_gradient(lambda x: layers.svm_loss(x, y)[0], x, verbose=False)
    assert_close("svm_loss: dx", dx, dx_num, 1e-7, context={**context, "expected_as": "the slope of your loss"})
    assert_close("svm_loss: dx", dx, xt.grad.numpy(), TORCH_TOL, context=context)


@pytest.mark.parametrize("loss_fn", [layers.softmax_loss, layers.svm_loss])
def test_losses_bad_labels_raise(loss_fn):
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="y"):
        loss_fn(x, np.array([0, 1]))
    with pytest.raises(ValueError, match="y"):
        loss_fn(x, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match="x"):
        loss_fn(np.zeros(3), np.array([0, 1, 2]))


# ---------------------------------------------------------------------------- batchnorm
@pytest.mark.parametrize("N,D", [(4, 3), (10, 5), (64, 2)])
def test_batchnorm_forward_train_statistics_and_torch(N, D):
    rng = _rng(6)
    x = 3 * rng.standard_normal((N, D)) + 5
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    bn_param = {"mode": "train"}
    out, _ = layers.batchnorm_forward(x, gamma, beta, bn_param)
    xhat = (out - beta) / gamma
    context = {"N": N, "D": D, "axes": ("N", "D")}
    column = "of each column of (out - beta) / gamma"
    assert_close(f"batchnorm_forward: the mean {column}", xhat.mean(axis=0), np.zeros(D), atol=1e-10, context=context)
    # eps=1e-5 makes it slightly below 1
    std = xhat.std(axis=0)
    assert_close(f"batchnorm_forward: the std {column}", std, np.ones(D), rtol=1e-5, atol=1e-3, context=context)
    rm, rv = torch.zeros(D, dtype=torch.float64), torch.zeros(D, dtype=torch.float64)
    t_out = F.batch_norm(
        torch.tensor(x), rm, rv, torch.tensor(gamma), torch.tensor(beta), training=True, momentum=0.1, eps=1e-5
    )
    assert_close("batchnorm_forward: out", out, t_out.numpy(), TORCH_TOL, context=context)
    # running averages: momentum 0.9 (torch's 0.1), but the BIASED batch variance (torch keeps the unbiased one)
    swapped = {"momentum and 1 - momentum swapped in the running average": 0.9 * x.mean(axis=0)}
    running_mean = bn_param["running_mean"]
    assert_close("batchnorm_forward: running_mean", running_mean, rm.numpy(), TORCH_TOL, context={"suspects": swapped})
    biased = rv.numpy() * (N - 1) / N
    assert_close("batchnorm_forward: running_var", bn_param["running_var"], biased, TORCH_TOL, context=context)
    assert rel_error(bn_param["running_var"], 0.1 * x.var(axis=0)) < TORCH_TOL


def test_batchnorm_test_mode_uses_running_averages():
    rng = _rng(7)
    D = 3
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, -1.0, -2.0])
    bn_param = {"mode": "train", "momentum": 0.9}
    for _ in range(200):
        layers.batchnorm_forward(2 * rng.standard_normal((50, D)) + 1, gamma, beta, bn_param)
    assert np.allclose(bn_param["running_mean"], 1, atol=0.25)
    assert np.allclose(bn_param["running_var"], 4, atol=1.0)
    bn_param["mode"] = "test"
    x = 2 * rng.standard_normal((2000, D)) + 1
    out, cache = layers.batchnorm_forward(x, gamma, beta, bn_param)
    assert cache is None
    assert np.allclose(out.mean(axis=0), beta, atol=0.3)
    assert np.allclose(out.std(axis=0), gamma, atol=0.3 * gamma)
    expected = gamma * (x - bn_param["running_mean"]) / np.sqrt(bn_param["running_var"] + 1e-5) + beta
    batch = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5) + beta
    context = {"suspects": {"batch statistics in test mode instead of the running averages": batch}}
    assert_close("batchnorm_forward: out (test mode)", out, expected, 1e-12, context=context)


# N >= 3: with N = 2 the normalised values are +-1 whatever x is, dx ~ 0 and a relative error means nothing
BATCHNORM_BACKWARD_SHAPES = [(4, 5), (3, 2), (16, 7)]


def _check_batchnorm_backward(backward, N, D):
    """``backward`` given the cache of ``batchnorm_forward`` in train mode: centred differences and autograd."""
    rng = _rng(8)
    x = 5 * rng.standard_normal((N, D)) + 12
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    dout = rng.standard_normal((N, D))

    def f(x, gamma, beta):
        return layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})[0]

    _, cache = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dx, dgamma, dbeta = backward(dout, cache)
    name = backward.__name__
    # a difference the same in every row is a path through the batch statistics (shared by the rows)
    path = "a path through the batch mean or variance is missing: mu and var depend on every x_n"
    context = {"N": N, "D": D, "axes": ("N", "D"), "hints": {"offset:D": path}}
    dx_num = eval_numerical_gradient_array(lambda x: f(x, gamma, beta), x, dout)
    assert_close(f"{name}: dx", dx, dx_num, 1e-6, context=context)
    dgamma_num = eval_numerical_gradient_array(lambda g: f(x, g, beta), gamma, dout)
    assert_close(f"{name}: dgamma", dgamma, dgamma_num, NUM_TOL, context=context)
    dbeta_num = eval_numerical_gradient_array(lambda b: f(x, gamma, b), beta, dout)
    assert_close(f"{name}: dbeta", dbeta, dbeta_num, NUM_TOL, context=context)
    _, (tdx, tdg, tdb) = _torch_grads(
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True, eps=1e-5), [x, gamma, beta], dout
    )
    assert_close(f"{name}: dx", dx, tdx, 1e-8, context=context)
    assert_all_close(name, {"dgamma": (dgamma, tdg), "dbeta": (dbeta, tdb)}, TORCH_TOL, context=context)


@pytest.mark.parametrize("N,D", BATCHNORM_BACKWARD_SHAPES)
def test_batchnorm_backward(N, D):
    _check_batchnorm_backward(layers.batchnorm_backward, N, D)


# The closed form is an exercise of its own: it is checked against the oracles, never against
# batchnorm_backward (which may not be written yet), and batchnorm_backward's checks never call it.
@pytest.mark.parametrize("N,D", BATCHNORM_BACKWARD_SHAPES)
def test_batchnorm_backward_alt(N, D):
    _check_batchnorm_backward(layers.batchnorm_backward_alt, N, D)


def test_batchnorm_backward_alt_on_a_large_batch_matches_torch():
    rng = _rng(9)
    x, dout = rng.standard_normal((100, 50)), rng.standard_normal((100, 50))
    gamma, beta = np.ones(50), np.zeros(50)
    _, cache = layers.batchnorm_forward(x, gamma, beta, {"mode": "train"})
    _, expected = _torch_grads(
        lambda x, g, b: F.batch_norm(x, None, None, g, b, training=True, eps=1e-5), [x, gamma, beta], dout
    )
    grads = layers.batchnorm_backward_alt(dout, cache)
    outputs = {name: (got, want) for name, got, want in zip(("dx", "dgamma", "dbeta"), grads, expected)}
    assert_all_close("batchnorm_backward_alt", outputs, 1e-8, context={"N": 100, "D": 50, "axes": ("N", "D")})


def test_batchnorm_bad_args_raise():
    x = np.zeros((4, 3))
    with pytest.raises(ValueError, match="mode"):
        layers.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "eval"})
    with pytest.raises(ValueError, match="gamma"):
        layers.batchnorm_forward(x, np.ones(4), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match="x"):
        layers.batchnorm_forward(np.zeros((4, 3, 2)), np.ones(3), np.zeros(3), {"mode": "train"})


# ---------------------------------------------------------------------------- layernorm
@pytest.mark.parametrize("N,D", [(4, 5), (2, 3), (8, 16)])  # D >= 3, see batchnorm
def test_layernorm(N, D):
    rng = _rng(10)
    x = 5 * rng.standard_normal((N, D)) + 12
    gamma, beta = rng.standard_normal(D), rng.standard_normal(D)
    dout = rng.standard_normal((N, D))

    def f(x, gamma, beta):
        return layers.layernorm_forward(x, gamma, beta, {})[0]

    out, cache = layers.layernorm_forward(x, gamma, beta, {})
    t_out, (tdx, tdg, tdb) = _torch_grads(lambda x, g, b: F.layer_norm(x, (D,), g, b, eps=1e-5), [x, gamma, beta], dout)
    by_column = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5) + beta  # batch norm
    wrong_axis = "statistics over the batch (axis 0) instead of each sample's features (axis 1)"
    context = {"N": N, "D": D, "axes": ("N", "D"), "suspects": {wrong_axis: by_column}}
    assert_close("layernorm_forward: out", out, t_out, TORCH_TOL, context=context)
    xhat = (out - beta) / gamma
    row_means = xhat.mean(axis=1)
    assert_close("layernorm_forward: the mean of each row of (out - beta) / gamma", row_means, np.zeros(N), atol=1e-10)
    dx, dgamma, dbeta = layers.layernorm_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda x: f(x, gamma, beta), x, dout)
    assert_close("layernorm_backward: dx", dx, dx_num, 1e-6, context=context)
    dgamma_num = eval_numerical_gradient_array(lambda g: f(x, g, beta), gamma, dout)
    assert_close("layernorm_backward: dgamma", dgamma, dgamma_num, NUM_TOL, context=context)
    dbeta_num = eval_numerical_gradient_array(lambda b: f(x, gamma, b), beta, dout)
    assert_close("layernorm_backward: dbeta", dbeta, dbeta_num, NUM_TOL, context=context)
    assert_close("layernorm_backward: dx", dx, tdx, 1e-8, context=context)
    assert_all_close("layernorm_backward", {"dgamma": (dgamma, tdg), "dbeta": (dbeta, tdb)}, TORCH_TOL, context=context)


# ---------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("p", [0.25, 0.5, 0.9])
def test_dropout_forward_statistics(p):
    x = _rng(11).standard_normal((500, 500)) + 10
    out, (_, mask) = layers.dropout_forward(x, {"mode": "train", "p": p, "seed": 123})
    kept = out != 0
    assert abs(kept.mean() - p) < 0.01, (
        f"kept a fraction {kept.mean():.3f} of the units; p={p} is the probability of KEEPING one"
    )
    # np.allclose's tolerances
    assert_close("dropout_forward: out (kept units)", out[kept], x[kept] / p, rtol=1e-5, atol=1e-8, context={"p": p})
    assert abs(out.mean() - x.mean()) < 0.05 * x.mean(), "in train mode the expected output must equal the input"
    assert np.array_equal(out, x * mask)
    out_test, _ = layers.dropout_forward(x, {"mode": "test", "p": p})
    assert np.array_equal(out_test, x)


def test_dropout_backward_and_local_rng():
    rng = _rng(12)
    x, dout = rng.standard_normal((10, 10)) + 10, rng.standard_normal((10, 10))
    param = {"mode": "train", "p": 0.2, "seed": 123}
    state = np.random.get_state()[1].copy()
    out, cache = layers.dropout_forward(x, param)
    out2, _ = layers.dropout_forward(x, param)
    assert np.array_equal(state, np.random.get_state()[1]), "dropout touched NumPy's global RNG"
    assert np.array_equal(out, out2), "the same seed must give the same mask"
    dx = layers.dropout_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda x: layers.dropout_forward(x, param)[0], x, dout)
    same_mask = "the backward pass multiplies by the forward pass's mask, 1/p included: is the 1/p missing?"
    context = {"p": 0.2, "regions": {"where the unit was dropped": out == 0}, "hints": {"factor:p": same_mask}}
    assert_close("dropout_backward: dx", dx, dx_num, 1e-9, context=context)
    _, cache = layers.dropout_forward(x, {"mode": "test", "p": 0.2})
    assert np.array_equal(layers.dropout_backward(dout, cache), dout)
    # an explicit generator is consumed: consecutive masks differ
    gen = {"mode": "train", "p": 0.5, "rng": np.random.default_rng(0)}
    assert not np.array_equal(layers.dropout_forward(x, gen)[0], layers.dropout_forward(x, gen)[0])


def test_dropout_bad_args_raise():
    x = np.ones((2, 2))
    with pytest.raises(ValueError, match="p"):
        layers.dropout_forward(x, {"mode": "train", "p": 0.0})
    with pytest.raises(ValueError, match="p"):
        layers.dropout_forward(x, {"mode": "train", "p": 1.5})
    with pytest.raises(ValueError, match="mode"):
        layers.dropout_forward(x, {"mode": "eval", "p": 0.5})
