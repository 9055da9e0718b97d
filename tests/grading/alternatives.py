"""Correct implementations written differently from the reference: other caches (dicts), other
vectorisations (einsum, logsumexp), loops where the reference broadcasts, other loop orders, a helper
function of the student's own. Each is the body of one solution block; all must get full marks.

These are solutions: they live in tests/grading/, which never ships to students."""

#: helper functions a student adds to a file (kept by the grader), appended to that file
HELPERS = {
    "common/layers.py": '''

def _positive_part_mask(x):
    """A student's helper: 1.0 where x > 0, else 0.0, in the dtype of x."""
    return (x > 0).astype(x.dtype)
''',
}

ALTERNATIVES = {
    # affine: a dict cache and einsum
    "common/layers.py::affine_forward": """\
rows = x.reshape(N, D)
out = np.einsum("nd,dm->nm", rows, w) + b
cache = {"x_shape": x.shape, "rows": rows, "w": w}
""",
    "common/layers.py::affine_backward": """\
dx = np.einsum("nm,dm->nd", dout, cache["w"]).reshape(cache["x_shape"])
dw = np.einsum("nd,nm->dm", cache["rows"], dout)
db = np.einsum("nm->m", dout)
""",
    # relu: a boolean mask as the cache, and the student's own helper
    "common/layers.py::relu_forward": """\
cache = x > 0
out = np.where(cache, x, 0).astype(x.dtype, copy=False)
""",
    "common/layers.py::relu_backward": """\
dx = dout * _positive_part_mask(cache.astype(dout.dtype))
""",
    # sigmoid: scipy's overflow-safe expit, and (s, 1 - s) in the cache
    "common/layers.py::sigmoid_forward": """\
from scipy.special import expit

out = expit(x).astype(np.result_type(x, np.float32), copy=False)
cache = (out, 1 - out)
""",
    "common/layers.py::sigmoid_backward": """\
s, one_minus_s = cache
dx = dout * s * one_minus_s
""",
    # softmax loss through logsumexp and a one-hot matrix
    "common/layers.py::softmax_loss": """\
from scipy.special import logsumexp

log_probs = x - logsumexp(x, axis=1, keepdims=True)
onehot = np.eye(x.shape[1], dtype=x.dtype)[y]
loss = -(onehot * log_probs).sum() / N
dx = (np.exp(log_probs) - onehot) / N
""",
    # SVM loss with a loop over the samples
    "common/layers.py::svm_loss": """\
loss = 0.0
dx = np.zeros_like(x)
for i in range(N):
    for j in range(x.shape[1]):
        if j == y[i]:
            continue
        margin = x[i, j] - x[i, y[i]] + 1
        if margin > 0:
            loss += margin
            dx[i, j] += 1
            dx[i, y[i]] -= 1
loss /= N
dx /= N
""",
    # batchnorm: a dict cache shared by both backward passes, written in another order
    "common/layers.py::batchnorm_forward": """\
if mode == "train":
    var = x.var(axis=0)
    mu = x.mean(axis=0)
    sigma = np.sqrt(var + eps)
    xhat = (x - mu) / sigma
    running_var = momentum * running_var + (1 - momentum) * var
    running_mean = momentum * running_mean + (1 - momentum) * mu
    out = xhat * gamma + beta
    cache = {"xhat": xhat, "sigma": sigma, "gamma": gamma, "x_minus_mu": x - mu}
else:
    out = (x - running_mean) / np.sqrt(running_var + eps) * gamma + beta
    cache = None
""",
    "common/layers.py::batchnorm_backward": """\
N = dout.shape[0]
xhat, sigma, gamma, xmu = cache["xhat"], cache["sigma"], cache["gamma"], cache["x_minus_mu"]
dgamma = np.sum(dout * xhat, axis=0)
dbeta = np.sum(dout, axis=0)
dxhat = dout * gamma
dvar = np.sum(dxhat * xmu, axis=0) * -0.5 * sigma**-3
dmu = np.sum(-dxhat / sigma, axis=0) + dvar * np.mean(-2.0 * xmu, axis=0)
dx = dxhat / sigma + dvar * 2.0 * xmu / N + dmu / N
""",
    "common/layers.py::batchnorm_backward_alt": """\
N = dout.shape[0]
dbeta = dout.sum(axis=0)
dgamma = np.einsum("nd,nd->d", dout, cache["xhat"])
dx = cache["gamma"] / (N * cache["sigma"]) * (N * dout - dbeta - cache["xhat"] * dgamma)
""",
    # layer norm: batchnorm's maths on the transpose, with a dict cache
    "common/layers.py::layernorm_forward": """\
xt = x.T  # (D, N): each sample is a column
mu = xt.mean(axis=0)
sigma = np.sqrt(xt.var(axis=0) + eps)
xhat = ((xt - mu) / sigma).T
out = xhat * gamma + beta
cache = {"xhat": xhat, "sigma": sigma, "gamma": gamma}
""",
    "common/layers.py::layernorm_backward": """\
xhat, sigma, gamma = cache["xhat"], cache["sigma"], cache["gamma"]
D = dout.shape[1]
dbeta = dout.sum(axis=0)
dgamma = (dout * xhat).sum(axis=0)
g = (dout * gamma).T  # (D, N)
ht = xhat.T
dx = ((D * g - g.sum(axis=0) - ht * (g * ht).sum(axis=0)) / (D * sigma)).T
""",
    # dropout: the mask built with np.where
    "common/layers.py::dropout_forward": """\
mask = None
out = x
if mode == "train":
    keep = rng.random(x.shape) < p
    mask = np.where(keep, 1.0 / p, 0.0).astype(x.dtype)
    out = x * mask
""",
    "common/layers.py::dropout_backward": """\
dx = dout if mask is None else np.multiply(dout, mask)
""",
    # naive convolution with the filter loop outermost and tensordot for each window
    "common/layers.py::conv_forward_naive": """\
H_out = (H + 2 * pad - HH) // stride + 1
W_out = (W + 2 * pad - WW) // stride + 1
xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
out = np.empty((N, F, H_out, W_out), dtype=np.result_type(x, w, b))
for f in range(F):
    for i in range(H_out):
        for j in range(W_out):
            patch = xp[:, :, i * stride : i * stride + HH, j * stride : j * stride + WW]  # (N, C, HH, WW)
            out[:, f, i, j] = np.tensordot(patch, w[f], axes=3) + b[f]
""",
    "common/layers.py::conv_backward_naive": """\
xp = np.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)], mode="constant")
dxp = np.zeros(xp.shape, dtype=x.dtype)
dw = np.zeros(w.shape, dtype=w.dtype)
db = np.zeros(F, dtype=np.result_type(dout, b))
for f in range(F):
    db[f] = dout[:, f].sum()
    for i in range(H_out):
        for j in range(W_out):
            rs, cs = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            g = dout[:, f, i, j]  # (N,)
            dw[f] += np.tensordot(g, xp[:, :, rs, cs], axes=1)
            dxp[:, :, rs, cs] += g[:, None, None, None] * w[f]
dx = dxp[:, :, pad : H + pad, pad : W + pad]
""",
    # max pooling over all samples and channels at once per window, ties to the first maximum
    "common/layers.py::max_pool_forward_naive": """\
H_out = (H - ph) // stride + 1
W_out = (W - pw) // stride + 1
out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
for i in range(H_out):
    for j in range(W_out):
        out[:, :, i, j] = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw].max(axis=(2, 3))
""",
    "common/layers.py::max_pool_backward_naive": """\
dx = np.zeros(x.shape, dtype=np.result_type(dout, x))
for i in range(H_out):
    for j in range(W_out):
        window = x[:, :, i * stride : i * stride + ph, j * stride : j * stride + pw].reshape(N, C, -1)
        first = window.argmax(axis=2)  # (N, C): the first maximum (a NaN counts as the maximum)
        rows, cols = np.unravel_index(first, (ph, pw))
        for n in range(N):
            for c in range(C):
                dx[n, c, i * stride + rows[n, c], j * stride + cols[n, c]] += dout[n, c, i, j]
""",
    # update rules: in-place style and other spellings
    "common/optim.py::sgd_momentum": """\
v *= config["momentum"]
v -= config["learning_rate"] * dw
next_w = w + v
""",
    "common/optim.py::rmsprop": """\
config["cache"] = config["decay_rate"] * config["cache"] + (1 - config["decay_rate"]) * np.square(dw)
next_w = w - np.divide(config["learning_rate"] * dw, np.sqrt(config["cache"]) + config["epsilon"])
""",
    # RNN step with a dict cache (the sequence functions must not look inside it)
    "common/rnn_layers.py::rnn_step_forward": """\
a = prev_h @ Wh + x @ Wx + b
next_h = np.tanh(a)
cache = {"x": x, "h": prev_h, "Wx": Wx, "Wh": Wh, "out": next_h}
""",
    "common/rnn_layers.py::rnn_step_backward": """\
da = dnext_h * (1.0 - cache["out"] ** 2)
dx = da @ cache["Wx"].T
dprev_h = da @ cache["Wh"].T
dWx = cache["x"].T @ da
dWh = cache["h"].T @ da
db = da.sum(axis=0)
""",
    # word embedding backward with an explicit loop instead of np.add.at
    "common/rnn_layers.py::word_embedding_backward": """\
x, W_shape = cache
dW = np.zeros(W_shape, dtype=dout.dtype)
N, T = x.shape
for n in range(N):
    for t in range(T):
        dW[x[n, t]] += dout[n, t]
""",
}
