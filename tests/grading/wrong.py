"""Realistic wrong implementations, each the body of one solution block: block id -> (code, the exercise it
must cost). Each is a mistake students make; each must lose its own exercise and nothing else."""

WRONG = {
    # the loss is summed over the batch, not averaged (dx likewise)
    "common/layers.py::softmax_loss": (
        """\
shifted = x - x.max(axis=1, keepdims=True)
log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
loss = -log_probs[np.arange(N), y].sum()
dx = np.exp(log_probs)
dx[np.arange(N), y] -= 1
""",
        "common/layers.py::softmax_loss",
    ),
    # the bias gradient summed over the features instead of the batch
    "common/layers.py::affine_backward": (
        """\
x, w, _ = cache
dx = (dout @ w.T).reshape(x.shape)
dw = x.reshape(x.shape[0], -1).T @ dout
db = dout.sum(axis=1)
""",
        "common/layers.py::affine",
    ),
    # the kept units are not rescaled by 1/p
    "common/layers.py::dropout_forward": (
        """\
if mode == "train":
    mask = (rng.random(x.shape) < p).astype(x.dtype)
    out = x * mask
else:
    mask = None
    out = x
""",
        "common/layers.py::dropout",
    ),
    # test mode normalises with the batch's own statistics instead of the running averages
    "common/layers.py::batchnorm_forward": (
        """\
mu = x.mean(axis=0)
xc = x - mu
var = (xc**2).mean(axis=0)
std = np.sqrt(var + eps)
inv_std = 1.0 / std
xhat = xc * inv_std
out = gamma * xhat + beta
if mode == "train":
    cache = (xhat, xc, inv_std, std, gamma)
    running_mean = momentum * running_mean + (1 - momentum) * mu
    running_var = momentum * running_var + (1 - momentum) * var
else:
    cache = None
""",
        "common/layers.py::batchnorm",
    ),
    # Adam without bias correction
    "common/optim.py::adam": (
        """\
config["t"] += 1
config["m"] = beta1 * config["m"] + (1 - beta1) * dw
config["v"] = beta2 * config["v"] + (1 - beta2) * dw**2
next_w = w - config["learning_rate"] * config["m"] / (np.sqrt(config["v"]) + config["epsilon"])
""",
        "common/optim.py::adam",
    ),
    # the RNN backward pass forgets the gradient that reaches h_t from step t+1
    "common/rnn_layers.py::rnn_backward": (
        """\
N, T, H = dh.shape
dx_steps = [None] * T
dWx = dWh = db = 0.0
dprev_h = np.zeros((N, H), dtype=dh.dtype)
for t in reversed(range(T)):
    dx_steps[t], dprev_h, dWx_t, dWh_t, db_t = rnn_step_backward(dh[:, t], cache[t])
    dWx, dWh, db = dWx + dWx_t, dWh + dWh_t, db + db_t
dx = np.stack(dx_steps, axis=1)
dh0 = dprev_h
""",
        "common/rnn_layers.py::rnn",
    ),
}
