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
    # word embedding: np.take and a dict cache; the backward pass an explicit loop instead of np.add.at
    "common/rnn_layers.py::word_embedding_forward": """\
out = np.take(W, x, axis=0)
cache = {"idx": x, "V": W.shape[0]}
""",
    "common/rnn_layers.py::word_embedding_backward": """\
x, V = cache["idx"], cache["V"]
dW = np.zeros((V, dout.shape[2]), dtype=dout.dtype)
N, T = x.shape
for n in range(N):
    for t in range(T):
        dW[x[n, t]] += dout[n, t]
""",
}

# Every other exercise family, each written differently from the reference as a student might: caches and state
# of their own (dicts, other attributes), einsum or library functions (scipy, torch.func-free autograd.grad) where
# the reference spells it out, other loop orders, other but equivalent formulas, other module layouts that keep
# what the docstrings fix.
ALTERNATIVES.update(
    {
        # ------------------------------------------------------------------ NumPy layers
        # leaky ReLU: a dict cache holding the sign pattern
        "common/layers.py::leaky_relu_forward": """\
cache = {"positive": x > 0, "alpha": alpha}
out = np.where(cache["positive"], x, x * alpha)
""",
        "common/layers.py::leaky_relu_backward": """\
dx = np.where(cache["positive"], dout, dout * cache["alpha"])
""",
        # tanh: the cache holds the local derivative itself
        "common/layers.py::tanh_forward": """\
out = np.tanh(x)
cache = 1.0 - out * out
""",
        "common/layers.py::tanh_backward": """\
dx = dout * cache
""",
        # PReLU: max(x, 0) + alpha * min(x, 0), einsum for the per-feature slope gradient
        "common/layers.py::prelu_forward": """\
negative = np.minimum(x, 0)
out = np.maximum(x, 0) + alpha * negative
cache = (negative, x > 0, alpha)
""",
        "common/layers.py::prelu_backward": """\
negative, positive, alpha = cache
dx = np.where(positive, dout, dout * alpha).astype(dout.dtype, copy=False)
dalpha = np.einsum("nd,nd->d", dout, negative) if np.ndim(alpha) == 1 else np.vdot(dout, negative)
""",
        # spatial batch norm: np.moveaxis, and the graph backward pass instead of the closed form
        "common/layers.py::spatial_batchnorm_forward": """\
rows = np.moveaxis(x, 1, -1).reshape(-1, C)
out_rows, cache = batchnorm_forward(rows, gamma, beta, bn_param)
out = np.moveaxis(out_rows.reshape(N, H, W, C), -1, 1)
""",
        "common/layers.py::spatial_batchnorm_backward": """\
rows = np.moveaxis(dout, 1, -1).reshape(-1, C)
dx_rows, dgamma, dbeta = batchnorm_backward(rows, cache)
dx = np.moveaxis(dx_rows.reshape(N, H, W, C), -1, 1)
""",
        # group norm: a 5-d view (N, G, C/G, H, W), np.var, a dict cache, the mean form of the backward pass
        "common/layers.py::spatial_groupnorm_forward": """\
grouped = x.reshape(N, G, C // G, H, W)
mean = grouped.mean(axis=(2, 3, 4), keepdims=True)
std = np.sqrt(grouped.var(axis=(2, 3, 4), keepdims=True) + eps)
xhat = ((grouped - mean) / std).reshape(N, C, H, W)
out = xhat * gamma + beta
cache = {"xhat": xhat, "std": std.reshape(N, G, 1), "gamma": gamma, "G": G}
""",
        "common/layers.py::spatial_groupnorm_backward": """\
xhat, std, gamma, G = cache["xhat"], cache["std"], cache["gamma"], cache["G"]
dbeta = dout.sum(axis=(0, 2, 3)).reshape(1, C, 1, 1)
dgamma = (dout * xhat).sum(axis=(0, 2, 3)).reshape(1, C, 1, 1)
g = (dout * gamma).reshape(N, G, -1)
xh = xhat.reshape(N, G, -1)
dx = ((g - g.mean(axis=2, keepdims=True) - xh * (g * xh).mean(axis=2, keepdims=True)) / std).reshape(N, C, H, W)
""",
        # ------------------------------------------------------------------ update rules
        # Adam in the paper's efficient form: the bias corrections folded into the step size
        "common/optim.py::adam": """\
t = config["t"] = config["t"] + 1
m = config["m"] = beta1 * config["m"] + (1 - beta1) * dw
v = config["v"] = beta2 * config["v"] + (1 - beta2) * (dw * dw)
correction = np.sqrt(1 - beta2**t)
step = config["learning_rate"] * correction / (1 - beta1**t)
next_w = w - step * m / (np.sqrt(v) + config["epsilon"] * correction)
""",
        # ------------------------------------------------------------------ recurrent NumPy layers
        # RNN over a sequence: np.stack of the states, a dict cache, a None-started sum of weight gradients
        "common/rnn_layers.py::rnn_forward": """\
states, steps = [], []
h_t = h0
for t in range(x.shape[1]):
    h_t, step = rnn_step_forward(x[:, t, :], h_t, Wx, Wh, b)
    states.append(h_t)
    steps.append(step)
h = np.stack(states, axis=1)
cache = {"steps": steps, "D": x.shape[2]}
""",
        "common/rnn_layers.py::rnn_backward": """\
N, T, H = dh.shape
dx = np.zeros((N, T, cache["D"]), dtype=dh.dtype)
dWx = dWh = db = None
carry = np.zeros_like(dh[:, 0])
for t in range(T - 1, -1, -1):
    dx[:, t], carry, gWx, gWh, gb = rnn_step_backward(dh[:, t] + carry, cache["steps"][t])
    dWx, dWh, db = (gWx, gWh, gb) if dWx is None else (dWx + gWx, dWh + gWh, db + gb)
dh0 = carry
""",
        # LSTM step: one stacked weight matrix [Wx; Wh] on [x, h], a dict cache
        "common/rnn_layers.py::lstm_step_forward": """\
H = prev_h.shape[1]
xh = np.hstack([x, prev_h])  # (N, D + H)
a = xh @ np.vstack([Wx, Wh]) + b  # (N, 4H)
i, f, o = (_sigmoid(a[:, k * H : (k + 1) * H]) for k in range(3))
g = np.tanh(a[:, 3 * H :])
next_c = i * g + f * prev_c
next_h = o * np.tanh(next_c)
cache = {"xh": xh, "W": np.vstack([Wx, Wh]), "D": x.shape[1], "prev_c": prev_c, "gates": (i, f, o, g), "c": next_c}
""",
        "common/rnn_layers.py::lstm_step_backward": """\
i, f, o, g = cache["gates"]
tc = np.tanh(cache["c"])
dc = dnext_c + dnext_h * o * (1.0 - tc * tc)
di, df, do, dg = dc * g, dc * cache["prev_c"], dnext_h * tc, dc * i
da = np.hstack([di * i * (1 - i), df * f * (1 - f), do * o * (1 - o), dg * (1 - g * g)])
dxh = da @ cache["W"].T
D = cache["D"]
dx, dprev_h = dxh[:, :D], dxh[:, D:]
dW = cache["xh"].T @ da
dWx, dWh = dW[:D], dW[D:]
db = da.sum(axis=0)
dprev_c = dc * f
""",
        # LSTM over a sequence: as the RNN alternative
        "common/rnn_layers.py::lstm_forward": """\
states, steps = [], []
h_t, c_t = h0, np.zeros_like(h0)
for t in range(x.shape[1]):
    h_t, c_t, step = lstm_step_forward(x[:, t, :], h_t, c_t, Wx, Wh, b)
    states.append(h_t)
    steps.append(step)
h = np.stack(states, axis=1)
cache = {"steps": steps, "D": x.shape[2]}
""",
        "common/rnn_layers.py::lstm_backward": """\
N, T, H = dh.shape
dx = np.zeros((N, T, cache["D"]), dtype=dh.dtype)
grads = None
carry_h, carry_c = np.zeros_like(dh[:, 0]), np.zeros_like(dh[:, 0])
for t in range(T - 1, -1, -1):
    dx[:, t], carry_h, carry_c, *step_grads = lstm_step_backward(dh[:, t] + carry_h, carry_c, cache["steps"][t])
    grads = step_grads if grads is None else [a + b for a, b in zip(grads, step_grads)]
dWx, dWh, db = grads
dh0 = carry_h
""",
        # ------------------------------------------------------------------ NumPy models
        # ThreeLayerConvNet: the affine-relu sandwich for the hidden layer, caches in a dict, vdot penalty
        "common/classifiers/cnn.py::ThreeLayerConvNet.loss": """\
from common.layer_utils import affine_relu_forward

h1, conv_cache = conv_relu_pool_forward(X, p["W1"], p["b1"], conv_param, pool_param)
h2, hidden_cache = affine_relu_forward(h1, p["W2"], p["b2"])
scores, out_cache = affine_forward(h2, p["W3"], p["b3"])
caches = {"conv": conv_cache, "hidden": hidden_cache, "out": out_cache}
""",
        "common/classifiers/cnn.py::ThreeLayerConvNet.loss#2": """\
from common.layer_utils import affine_relu_backward

weights = ("W1", "W2", "W3")
loss, dscores = softmax_loss(scores, y)
loss += 0.5 * self.reg * sum(float(np.vdot(p[k], p[k])) for k in weights)
grads = {}
dh2, grads["W3"], grads["b3"] = affine_backward(dscores, caches["out"])
dh1, grads["W2"], grads["b2"] = affine_relu_backward(dh2, caches["hidden"])
_, grads["W1"], grads["b1"] = conv_relu_pool_backward(dh1, caches["conv"])
grads = {k: g + self.reg * p[k] if k in weights else g for k, g in grads.items()}
""",
        # TwoLayerNet: the single layers instead of the sandwich, grads built at the end
        "common/classifiers/fc_net.py::TwoLayerNet.loss": """\
from common.layers import relu_forward

a1, fc1 = affine_forward(X, W1, b1)
hidden, relu1 = relu_forward(a1)
scores, fc2 = affine_forward(hidden, W2, b2)
""",
        "common/classifiers/fc_net.py::TwoLayerNet.loss#2": """\
from common.layers import relu_backward

data_loss, dscores = softmax_loss(scores, y)
loss = data_loss + 0.5 * self.reg * (np.sum(np.square(W1)) + np.sum(np.square(W2)))
dhidden, dW2, db2 = affine_backward(dscores, fc2)
_, dW1, db1 = affine_backward(relu_backward(dhidden, relu1), fc1)
grads = {"W1": dW1 + self.reg * W1, "b1": db1, "W2": dW2 + self.reg * W2, "b2": db2}
""",
        # FullyConnectedNet: every layer by hand (no sandwich), dict caches, the graph batchnorm backward pass
        "common/classifiers/fc_net.py::FullyConnectedNet.loss": """\
from common.layers import batchnorm_forward, dropout_forward, layernorm_forward, relu_forward

norms = {"batchnorm": batchnorm_forward, "layernorm": layernorm_forward}
caches = []
h = X
for i in range(1, L):
    h, fc = affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
    norm = None
    if self.normalization in norms:
        h, norm = norms[self.normalization](h, self.params[f"gamma{i}"], self.params[f"beta{i}"], self.bn_params[i - 1])
    h, act = relu_forward(h)
    drop = None
    if self.use_dropout:
        h, drop = dropout_forward(h, self.dropout_param)
    caches.append({"fc": fc, "norm": norm, "relu": act, "drop": drop})
scores, last = affine_forward(h, self.params[f"W{L}"], self.params[f"b{L}"])
""",
        "common/classifiers/fc_net.py::FullyConnectedNet.loss#2": """\
from common.layers import batchnorm_backward, dropout_backward, layernorm_backward, relu_backward

norms = {"batchnorm": batchnorm_backward, "layernorm": layernorm_backward}
loss, dscores = softmax_loss(scores, y)
loss += 0.5 * self.reg * sum(np.sum(self.params[f"W{i}"] ** 2) for i in range(1, L + 1))
grads = {}
dh, grads[f"W{L}"], grads[f"b{L}"] = affine_backward(dscores, last)
for i in range(L - 1, 0, -1):
    c = caches[i - 1]
    if c["drop"] is not None:
        dh = dropout_backward(dh, c["drop"])
    dh = relu_backward(dh, c["relu"])
    if self.normalization in norms:
        dh, grads[f"gamma{i}"], grads[f"beta{i}"] = norms[self.normalization](dh, c["norm"])
    dh, grads[f"W{i}"], grads[f"b{i}"] = affine_backward(dh, c["fc"])
for i in range(1, L + 1):
    grads[f"W{i}"] = grads[f"W{i}"] + self.reg * self.params[f"W{i}"]
""",
        # captioning: no sandwich layers (einsum for the vocabulary scores, np.add.at for the embedding)
        "common/classifiers/rnn.py::CaptioningRNN.loss": """\
h0 = features @ p["W_proj"] + p["b_proj"]
embedded = p["W_embed"][captions_in]  # (N, T, W)
sequence = {"rnn": (rnn_forward, rnn_backward), "lstm": (lstm_forward, lstm_backward)}[self.cell_type]
h, cache_seq = sequence[0](embedded, h0, p["Wx"], p["Wh"], p["b"])
scores = np.einsum("nth,hv->ntv", h, p["W_vocab"]) + p["b_vocab"]
loss, dscores = temporal_softmax_loss(scores, captions_out, mask)
grads["W_vocab"] = np.einsum("nth,ntv->hv", h, dscores)
grads["b_vocab"] = dscores.sum(axis=(0, 1))
dh = np.einsum("ntv,hv->nth", dscores, p["W_vocab"])
dembedded, dh0, grads["Wx"], grads["Wh"], grads["b"] = sequence[1](dh, cache_seq)
grads["W_embed"] = np.zeros_like(p["W_embed"])
np.add.at(grads["W_embed"], captions_in, dembedded)
grads["W_proj"] = features.T @ dh0
grads["b_proj"] = dh0.sum(axis=0)
""",
        # greedy sampling without an early exit: finished captions keep writing <NULL>
        "common/classifiers/rnn.py::CaptioningRNN.sample": """\
h = np.einsum("nd,dh->nh", features, p["W_proj"]) + p["b_proj"]
c = np.zeros_like(h)
previous = np.full(N, self._start)
finished = np.zeros(N, dtype=bool)
for t in range(max_length):
    x = p["W_embed"][previous]
    if self.cell_type == "lstm":
        h, c, _ = lstm_step_forward(x, h, c, p["Wx"], p["Wh"], p["b"])
    else:
        h, _ = rnn_step_forward(x, h, p["Wx"], p["Wh"], p["b"])
    previous = (h @ p["W_vocab"] + p["b_vocab"]).argmax(axis=1)
    captions[:, t] = np.where(finished, self._null, previous)
    finished |= previous == self._end
""",
        # ------------------------------------------------------------------ kNN
        # two loops with the training points outermost and np.linalg.norm
        "common/classifiers/k_nearest_neighbor.py::KNearestNeighbor.compute_distances_two_loops": """\
for j in range(self.X_train.shape[0]):
    for i in range(X.shape[0]):
        dists[i, j] = np.linalg.norm(X[i] - self.X_train[j])
""",
        # one loop over the training points (a column at a time) instead of the test points
        "common/classifiers/k_nearest_neighbor.py::KNearestNeighbor.compute_distances_one_loop": """\
for j, t in enumerate(self.X_train):
    dists[:, j] = np.sqrt(((X - t) ** 2).sum(axis=1))
""",
        "common/classifiers/k_nearest_neighbor.py::KNearestNeighbor.compute_distances_no_loops": """\
squared = (X**2).sum(axis=1)[:, None] + (self.X_train**2).sum(axis=1)[None, :] - 2 * X @ self.X_train.T
dists = np.sqrt(np.clip(squared, 0, None))
""",
        # np.unique's sorted labels and counts: the first of the most frequent is the smallest label
        "common/classifiers/k_nearest_neighbor.py::KNearestNeighbor.predict_labels": """\
for i, row in enumerate(dists):
    labels = self.y_train[np.argsort(row, kind="stable")[:k]]
    values, counts = np.unique(labels, return_counts=True)
    y_pred[i] = values[np.argmax(counts)]
""",
        # ------------------------------------------------------------------ linear classifiers
        "common/classifiers/linear_classifier.py::LinearClassifier.train": """\
rows = self.rng.choice(num_train, size=batch_size, replace=True)
loss, dW = self.loss(X[rows], y[rows], reg)
self.W = self.W - learning_rate * dW
""",
        "common/classifiers/linear_classifier.py::LinearClassifier.predict": """\
y_pred = np.argmax(np.einsum("nd,dc->nc", X, self.W), axis=1)
""",
        # SVM with loops over the positive margins only, the scores computed once
        "common/classifiers/linear_svm.py::svm_loss_naive": """\
scores = X @ W
loss = 0.0
dW = np.zeros(W.shape, dtype=W.dtype)
for i in range(N):
    correct = scores[i, y[i]]
    for j in np.flatnonzero(scores[i] - correct + 1.0 > 0):
        if j != y[i]:
            loss += scores[i, j] - correct + 1.0
            dW[:, j] += X[i]
            dW[:, y[i]] -= X[i]
loss /= N
loss += reg * np.sum(W**2)
dW /= N
dW += 2 * reg * W
""",
        "common/classifiers/linear_svm.py::svm_loss_vectorized": """\
scores = X @ W
margins = scores - np.take_along_axis(scores, y[:, None], axis=1) + 1.0
margins[np.arange(N), y] = 0.0
active = margins > 0
loss = np.sum(margins * active) / N + reg * np.vdot(W, W)
coef = active.astype(W.dtype)
coef[np.arange(N), y] = -active.sum(axis=1)
dW = np.einsum("nd,nc->dc", X, coef) / N + 2 * reg * W
""",
        # softmax per sample through log-sum-exp and an outer product
        "common/classifiers/softmax.py::softmax_loss_naive": """\
loss = 0.0
dW = np.zeros_like(W)
for i in range(N):
    s = X[i] @ W
    top = s.max()
    log_norm = top + np.log(np.exp(s - top).sum())
    loss += log_norm - s[y[i]]
    p = np.exp(s - log_norm)
    p[y[i]] -= 1.0
    dW += np.outer(X[i], p)
loss = loss / N + reg * np.sum(W * W)
dW = dW / N + 2 * reg * W
""",
        "common/classifiers/softmax.py::softmax_loss_vectorized": """\
from scipy.special import log_softmax

log_p = log_softmax(X @ W, axis=1)
onehot = np.zeros_like(log_p)
onehot[np.arange(N), y] = 1.0
loss = -(onehot * log_p).sum() / N + reg * (W**2).sum()
dW = X.T @ ((np.exp(log_p) - onehot) / N) + 2 * reg * W
""",
        # ------------------------------------------------------------------ NumPy modules
        "common/classifiers/mlp.py::Linear.forward": """\
self.inputs = x.copy()
out = np.einsum("nd,dm->nm", x, self.params["weight"]) + self.params["bias"]
""",
        "common/classifiers/mlp.py::Linear.backward": """\
self.grads["weight"] = np.einsum("nd,nm->dm", self.inputs, dout)
self.grads["bias"] = np.einsum("nm->m", dout)
dx = dout @ self.params["weight"].T
""",
        "common/classifiers/mlp.py::ReLU.forward": """\
self.inputs = x
out = np.maximum(x, 0)
""",
        "common/classifiers/mlp.py::ReLU.backward": """\
dx = np.where(self.inputs > 0, dout, 0.0)
""",
        "common/classifiers/mlp.py::LeakyReLU.forward": """\
self.slope = np.where(x > 0, 1.0, self.alpha)
out = x * self.slope
""",
        "common/classifiers/mlp.py::LeakyReLU.backward": """\
dx = dout * self.slope
""",
        "common/classifiers/mlp.py::Sigmoid.forward": """\
from scipy.special import expit

self.s = expit(x)
out = self.s
""",
        "common/classifiers/mlp.py::Sigmoid.backward": """\
dx = dout * self.s * (1 - self.s)
""",
        "common/classifiers/mlp.py::Tanh.forward": """\
self.derivative = 1.0 - np.tanh(x) ** 2
out = np.tanh(x)
""",
        "common/classifiers/mlp.py::Tanh.backward": """\
dx = dout * self.derivative
""",
        # softmax with scipy, its backward pass with the full (N, C, C) Jacobian
        "common/classifiers/mlp.py::SoftMax.forward": """\
from scipy.special import softmax

self.p = softmax(x, axis=1)
out = self.p
""",
        "common/classifiers/mlp.py::SoftMax.backward": """\
p = self.p
jacobian = np.einsum("nc,cd->ncd", p, np.eye(p.shape[1])) - np.einsum("nc,nd->ncd", p, p)
dx = np.einsum("ncd,nd->nc", jacobian, dout)
""",
        "common/classifiers/mlp.py::CrossEntropy.forward": """\
loss = float(np.mean(-np.einsum("nc,nc->n", t, np.log(np.clip(p, self.eps, None)))))
""",
        "common/classifiers/mlp.py::CrossEntropy.backward": """\
dp = np.where(t != 0, -t / np.maximum(p, self.eps), 0.0) / len(p)
""",
        # ------------------------------------------------------------------ perceptron
        "common/classifiers/perceptron.py::Perceptron.decision_function": """\
scores = np.einsum("nd,d->n", X, self.w) + self.b
""",
        "common/classifiers/perceptron.py::Perceptron.forward": """\
labels = 2 * (self.decision_function(X) > 0).astype(int) - 1
""",
        "common/classifiers/perceptron.py::Perceptron.update": """\
score = float(np.dot(self.w, x)) + self.b
mistake = y * score <= 0
if mistake:
    step = self.learning_rate * y
    self.w = self.w + step * x
    self.b += step
""",
        # ------------------------------------------------------------------ training dynamics
        "common/experiments/dynamics/gradients.py::gradient_norm": """\
norms = [torch.linalg.vector_norm(p.grad.detach().double()).cpu() for p in model.parameters() if p.grad is not None]
norm = float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0
""",
        "common/experiments/dynamics/landscape.py::hessian_top_eigenvalue": """\
def length(vectors):
    return torch.sqrt(sum(t.pow(2).sum() for t in vectors))


v = [t / length(v) for t in v]
eig, previous = 0.0, None
for _ in range(num_iters):
    Hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
    estimate = sum(float(torch.dot(a.flatten(), b.flatten())) for a, b in zip(v, Hv))
    size = length(Hv)
    if size == 0:
        eig = 0.0
        break
    v = [t.detach() / size for t in Hv]
    done = previous is not None and abs(estimate - previous) <= tol * abs(estimate)
    eig = previous = estimate
    if done:
        break
""",
        "common/experiments/dynamics/landscape.py::interpolate_models": """\
set_flat_params(probe, theta_a + float(alpha) * (theta_b - theta_a))
for split in ("train", "test"):
    result = evaluate(probe, splits[split], loss_fn, device)
    out[split + "_loss"].append(result["loss"])
    out[split + "_acc"].append(result["acc"])
""",
        # ------------------------------------------------------------------ network visualisation
        # torch.autograd.grad instead of .backward(), indexing instead of gather, in-place add_
        "common/experiments/network_visualization.py::compute_saliency_maps": """\
X = X.clone().requires_grad_(True)
scores = model(X)
correct = scores[torch.arange(len(y), device=scores.device), y]
(grad,) = torch.autograd.grad(correct.sum(), X)
saliency = grad.abs().max(dim=1).values.cpu()
""",
        "common/experiments/network_visualization.py::make_fooling_image": """\
(g,) = torch.autograd.grad(scores[0, target_y], X_fooling)
with torch.no_grad():
    X_fooling.add_(g, alpha=learning_rate / max(float(torch.linalg.vector_norm(g)), 1e-12))
""",
        "common/experiments/network_visualization.py::class_visualization_update_step": """\
score = model(x)[0, target_y]
(g,) = torch.autograd.grad(score - l2_reg * img.pow(2).sum(), img)
with torch.no_grad():
    img.add_(learning_rate * g / torch.clamp(g.norm(), min=1e-12))
""",
        "common/experiments/network_visualization.py::deepdream_step": """\
acts = block_features(shifted, [layer], model)[0]
if channels is not None:
    acts = acts[:, list(channels)]
objective = acts.pow(2).sum() / (2 * acts.numel())
(g,) = torch.autograd.grad(objective, img)
with torch.no_grad():
    img.add_(g * (learning_rate / g.abs().mean().clamp_min(1e-12)))
""",
        # ------------------------------------------------------------------ style transfer
        "common/experiments/style_transfer.py::content_loss": """\
loss = content_weight * torch.nn.functional.mse_loss(content_current, content_original, reduction="sum")
""",
        "common/experiments/style_transfer.py::gram_matrix": """\
gram = torch.einsum("nchw,ndhw->ncd", features, features)
if normalize:
    gram = gram / (C * H * W)
""",
        "common/experiments/style_transfer.py::style_loss": """\
layers = zip(style_layers, style_targets, style_weights)
loss = sum(w * torch.sum((gram_matrix(feats[name]) - a).pow(2)) for name, a, w in layers)
""",
        "common/experiments/style_transfer.py::tv_loss": """\
loss = tv_weight * (torch.diff(img, dim=2).pow(2).sum() + torch.diff(img, dim=3).pow(2).sum())
""",
        # ------------------------------------------------------------------ GANs
        # other module layouts: nn.Sequential.append, one Sequential with Unflatten / Flatten, other names
        "common/torch_models/gan.py::Generator.__init__": """\
widths = [config.latent_dim, *config.g_hidden]
self.layers = nn.Sequential()
for k, (w_in, w_out) in enumerate(zip(widths, widths[1:])):
    self.layers.append(nn.Linear(w_in, w_out))
    if k > 0:
        self.layers.append(nn.BatchNorm1d(w_out))
    self.layers.append(nn.LeakyReLU(config.negative_slope))
self.layers.append(nn.Linear(widths[-1], int(np.prod(config.img_shape))))
self.layers.append(nn.Tanh())
""",
        "common/torch_models/gan.py::Generator.forward": """\
images = self.layers(z).reshape(-1, *self.config.img_shape)
""",
        "common/torch_models/gan.py::Discriminator.__init__": """\
widths = [int(np.prod(config.img_shape)), *config.d_hidden]
pairs = zip(widths, widths[1:])
hidden = [m for w_in, w_out in pairs for m in (nn.Linear(w_in, w_out), nn.LeakyReLU(config.negative_slope))]
self.body = nn.Sequential(*hidden, nn.Linear(widths[-1], 1))
""",
        "common/torch_models/gan.py::Discriminator.forward": """\
logits = self.body(x.reshape(x.shape[0], -1))[:, 0]
""",
        "common/torch_models/gan.py::DCGenerator.__init__": """\
self.net = nn.Sequential(
    nn.Linear(config.latent_dim, config.g_hidden, bias=False),
    nn.BatchNorm1d(config.g_hidden),
    nn.ReLU(),
    nn.Linear(config.g_hidden, 2 * C * 49, bias=False),
    nn.BatchNorm1d(2 * C * 49),
    nn.ReLU(),
    nn.Unflatten(1, (2 * C, 7, 7)),
    nn.ConvTranspose2d(2 * C, C, kernel_size=4, stride=2, padding=1, bias=False),
    nn.BatchNorm2d(C),
    nn.ReLU(),
    nn.ConvTranspose2d(C, config.img_shape[0], kernel_size=4, stride=2, padding=1),
    nn.Tanh(),
)
""",
        "common/torch_models/gan.py::DCGenerator.forward": """\
images = self.net(z)
""",
        "common/torch_models/gan.py::DCDiscriminator.__init__": """\
self.net = nn.Sequential(
    nn.Conv2d(config.img_shape[0], C, kernel_size=4, stride=2, padding=1),
    nn.LeakyReLU(slope),
    nn.Conv2d(C, 2 * C, kernel_size=4, stride=2, padding=1, bias=False),
    nn.BatchNorm2d(2 * C),
    nn.LeakyReLU(slope),
    nn.Flatten(),
    nn.Linear(2 * C * 49, config.d_hidden),
    nn.LeakyReLU(slope),
    nn.Linear(config.d_hidden, 1),
)
""",
        "common/torch_models/gan.py::DCDiscriminator.forward": """\
logits = self.net(x).view(-1)
""",
        # the binary cross-entropy with logits written as softplus; least squares with mse_loss
        "common/torch_models/gan.py::discriminator_loss": """\
loss = F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean()
""",
        "common/torch_models/gan.py::generator_loss": """\
loss = F.softplus(-logits_fake).mean()
""",
        "common/torch_models/gan.py::ls_discriminator_loss": """\
real = F.mse_loss(scores_real, torch.ones_like(scores_real))
fake = F.mse_loss(scores_fake, torch.zeros_like(scores_fake))
loss = 0.5 * (real + fake)
""",
        "common/torch_models/gan.py::ls_generator_loss": """\
loss = 0.5 * torch.mean(torch.square(1 - scores_fake))
""",
        # ------------------------------------------------------------------ PyTorch models
        "common/torch_models/mlp.py::MLP.__init__": """\
self.net = nn.Sequential()
pairs = list(zip(sizes, sizes[1:]))
for k, (fan_in, fan_out) in enumerate(pairs):
    self.net.add_module(f"linear{k}", nn.Linear(fan_in, fan_out))
    if k < len(pairs) - 1:
        self.net.add_module(f"act{k}", ACTIVATIONS[config.activation]())
""",
        "common/torch_models/mlp.py::MLP.forward": """\
scores = self.net(x.reshape(len(x), -1))
""",
        # the recurrences step by step (no input terms precomputed), addmm / addcmul / split
        "common/torch_models/rnn.py::VanillaRNN.forward": """\
for t in range(T):
    h = torch.tanh(torch.addmm(self.b_h, x[:, t], self.W_hx) + h @ self.W_hh)
    hs.append(h)
""",
        "common/torch_models/rnn.py::LSTM.forward": """\
a = torch.addmm(xw[:, t], h, self.W_h)
i, f, o = torch.sigmoid(a[:, : 3 * H]).split(H, dim=1)
g = torch.tanh(a[:, 3 * H :])
c = torch.addcmul(i * g, f, c)
h = o * c.tanh()
""",
        "common/torch_models/rnn.py::GRU.forward": """\
H = h.shape[1]
gx, gh = xw[:, t], torch.addmm(self.b_h, h, self.W_h)
r, z = torch.sigmoid(gx[:, : 2 * H] + gh[:, : 2 * H]).split(H, dim=1)
n = torch.tanh(gx[:, 2 * H :] + r * gh[:, 2 * H :])
h = n + z * (h - n)
""",
        "common/torch_models/vgg.py::_conv_block": """\
block = nn.Sequential()
block.add_module("conv", nn.Conv2d(c_in, c_out, 3, stride=1, padding=1, bias=not batchnorm))
if batchnorm:
    block.add_module("bn", nn.BatchNorm2d(c_out))
block.add_module("relu", nn.ReLU())
""",
        "common/torch_models/vgg.py::VGG.__init__": """\
layers = OrderedDict()
channels = [config.in_channels, *config.channels]
convs = pools = 0
for item in VGG_LAYOUT:
    if item == "M":
        pools += 1
        layers[f"maxpool{pools}"] = nn.MaxPool2d(3, 2, 1)
    else:
        layers[CONV_NAMES[convs]] = _conv_block(channels[convs], channels[convs + 1], config.batchnorm)
        convs += 1
self.features = nn.Sequential(layers)
self.classifier = nn.Linear(channels[-1] * config.final_size * config.final_size, config.num_classes)
""",
        "common/torch_models/vgg.py::VGG.forward": """\
scores = self.classifier(torch.flatten(self.features(x), start_dim=1))
""",
    }
)
