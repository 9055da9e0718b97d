"""Module-style NumPy MLP (CS324 style): Linear, activations, SoftMax, CrossEntropy with forward/backward, and training.

Every module keeps what its backward pass needs from the last ``forward`` call, so a training
step is ``probs = model.forward(X); loss = ce.forward(probs, y); model.backward(ce.backward(probs, y))``.
Parameters and their gradients live in the dicts ``params`` / ``grads`` of each ``Linear``.
"""

from __future__ import annotations

import time

import numpy as np

__all__ = [
    "Module",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "SoftMax",
    "CrossEntropy",
    "MLP",
    "ACTIVATIONS",
    "INITS",
    "init_std",
    "penalty",
    "sgd_step",
    "train_step",
    "evaluate_mlp",
    "train_mlp",
    "layer_statistics",
]

#: Initialisation schemes of ``Linear`` (see ``init_std``).
INITS = ("naive", "xavier", "he")


def init_std(init: str, fan_in: int, fan_out: int, naive_scale: float = 1e-2) -> float:
    """Standard deviation of the Gaussian weight initialisation.

    - 'naive': a fixed small scale, ``naive_scale`` (CS231n's ``weight_scale``), whatever the layer size;
    - 'xavier' (Glorot): ``sqrt(2 / (fan_in + fan_out))``, keeps the variance of signals and gradients
      for activations that are linear around 0 (tanh, and sigmoid's slope 1/4 up to a factor);
    - 'he' (Kaiming): ``sqrt(2 / fan_in)``, compensates for ReLU zeroing half of its inputs.
    """
    if init == "naive":
        return float(naive_scale)
    if init == "xavier":
        return float(np.sqrt(2.0 / (fan_in + fan_out)))
    if init == "he":
        return float(np.sqrt(2.0 / fan_in))
    raise ValueError(f"init must be one of {INITS}, got {init!r}")


class Module:
    """Base class: ``forward(x) -> out`` caches what ``backward(dout) -> dx`` needs."""

    params: dict
    grads: dict

    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Module):
    """Affine map ``out = x @ W + b``; ``W (D, M)``, ``b (M,)`` stored in ``params['weight']``, ``params['bias']``.

    Weights are drawn from ``N(0, init_std(init, D, M)^2)`` with ``rng``; biases start at zero.
    Backward: ``dW = x^T dout``, ``db = sum_n dout_n``, ``dx = dout W^T``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        init: str = "he",
        naive_scale: float = 1e-2,
        rng: np.random.Generator | None = None,
    ):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"in_features and out_features must be positive, got {in_features}, {out_features}")
        rng = rng if rng is not None else np.random.default_rng()
        std = init_std(init, in_features, out_features, naive_scale)
        self.params = {"weight": rng.normal(0.0, std, size=(in_features, out_features)), "bias": np.zeros(out_features)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.x = None

    def forward(self, x):
        """``x (N, D)`` -> ``(N, M)``."""
        if x.ndim != 2 or x.shape[1] != self.params["weight"].shape[0]:
            raise ValueError(f"Linear expects x of shape (N, {self.params['weight'].shape[0]}), got {x.shape}")
        # out (N, M) from self.params; keep on self whatever backward will need.
        ### BEGIN SOLUTION
        self.x = x
        out = x @ self.params["weight"] + self.params["bias"]  # (N, D) @ (D, M) + (M,) -> (N, M)
        ### END SOLUTION
        return out

    def backward(self, dout):
        """``dout (N, M)`` -> ``dx (N, D)``; fills ``grads['weight'] (D, M)`` and ``grads['bias'] (M,)``."""
        # Store dL/dW and dL/db in self.grads['weight'], self.grads['bias'] (shapes of the params); dx (N, D).
        ### BEGIN SOLUTION
        self.grads["weight"] = self.x.T @ dout  # (D, N) @ (N, M) -> (D, M)
        self.grads["bias"] = dout.sum(axis=0)  # (M,)
        dx = dout @ self.params["weight"].T  # (N, M) @ (M, D) -> (N, D)
        ### END SOLUTION
        return dx

    def __repr__(self) -> str:
        D, M = self.params["weight"].shape
        return f"Linear({D}, {M})"


class ReLU(Module):
    """``out = max(0, x)``; ``dx = dout * [x > 0]``."""

    def forward(self, x):
        # out in the shape of x; remember where the unit was active for backward.
        ### BEGIN SOLUTION
        self.mask = x > 0
        out = x * self.mask
        ### END SOLUTION
        return out

    def backward(self, dout):
        # dx in the shape of dout: the upstream gradient where the input was positive, 0 elsewhere.
        ### BEGIN SOLUTION
        dx = dout * self.mask
        ### END SOLUTION
        return dx


class LeakyReLU(Module):
    """``out = x if x > 0 else alpha * x``; ``dx = dout * (1 if x > 0 else alpha)``."""

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = alpha

    def forward(self, x):
        # out in the shape of x, with slope self.alpha for negative inputs; remember what backward needs.
        ### BEGIN SOLUTION
        self.mask = x > 0
        out = np.where(self.mask, x, self.alpha * x)
        ### END SOLUTION
        return out

    def backward(self, dout):
        # dx in the shape of dout: the local slope (1 or self.alpha) times the upstream gradient.
        ### BEGIN SOLUTION
        dx = np.where(self.mask, dout, self.alpha * dout)
        ### END SOLUTION
        return dx

    def __repr__(self) -> str:
        return f"LeakyReLU(alpha={self.alpha})"


class Sigmoid(Module):
    """``out = 1 / (1 + exp(-x))``; ``dx = dout * out * (1 - out)`` (at most ``dout / 4``)."""

    def forward(self, x):
        # out in the shape of x; exp must not overflow for large |x| (e.g. x = -1000 gives 0, not a warning).
        ### BEGIN SOLUTION
        e = np.exp(-np.abs(x))  # exp of a non-positive number only, so neither branch overflows
        self.out = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        out = self.out
        ### END SOLUTION
        return out

    def backward(self, dout):
        # dx in the shape of dout, from the sigmoid's output of the last forward call.
        ### BEGIN SOLUTION
        dx = dout * self.out * (1.0 - self.out)
        ### END SOLUTION
        return dx


class Tanh(Module):
    """``out = tanh(x)``; ``dx = dout * (1 - out^2)``."""

    def forward(self, x):
        # out in the shape of x (np.tanh); remember what backward needs.
        ### BEGIN SOLUTION
        self.out = np.tanh(x)
        out = self.out
        ### END SOLUTION
        return out

    def backward(self, dout):
        # dx in the shape of dout, from tanh's output of the last forward call.
        ### BEGIN SOLUTION
        dx = dout * (1.0 - self.out**2)
        ### END SOLUTION
        return dx


class SoftMax(Module):
    """Row-wise softmax ``p_ij = exp(x_ij - max_k x_ik) / sum_k exp(x_ik - max_k x_ik)``, ``x (N, C)``.

    Backward is the Jacobian-vector product ``dx_i = p_i * (dout_i - <dout_i, p_i>)``.
    """

    def forward(self, x):
        # out (N, C), each row summing to 1; shift each row by its max first so that exp cannot overflow.
        ### BEGIN SOLUTION
        shifted = x - x.max(axis=1, keepdims=True)  # stable: the largest exponent is 0
        e = np.exp(shifted)
        self.out = e / e.sum(axis=1, keepdims=True)
        out = self.out
        ### END SOLUTION
        return out

    def backward(self, dout):
        # dx (N, C): the Jacobian-vector product of the docstring, row by row, from the last forward's output.
        ### BEGIN SOLUTION
        p = self.out
        dx = p * (dout - np.sum(dout * p, axis=1, keepdims=True))
        ### END SOLUTION
        return dx


def _one_hot(y: np.ndarray, C: int) -> np.ndarray:
    """Integer labels ``(N,)`` or one-hot targets ``(N, C)`` -> float one-hot ``(N, C)``."""
    y = np.asarray(y)
    if y.ndim == 2:
        if y.shape[1] != C:
            raise ValueError(f"one-hot targets must have {C} columns, got shape {y.shape}")
        return y.astype(np.float64)
    if y.ndim != 1:
        raise ValueError(f"y must be integer labels (N,) or one-hot (N, C), got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= C):
        raise ValueError(f"labels must lie in [0, {C - 1}], got range [{y.min()}, {y.max()}]")
    out = np.zeros((len(y), C))
    out[np.arange(len(y)), y.astype(np.int64)] = 1.0
    return out


class CrossEntropy:
    """Mean cross-entropy ``L = -(1/N) sum_n sum_c t_nc log p_nc`` of probabilities ``p (N, C)``.

    Targets ``t`` are integer labels ``(N,)`` or one-hot ``(N, C)``. Probabilities are clipped at
    ``eps`` so that a confident mistake gives a large, finite loss. ``backward`` returns
    ``dL/dp = -t / (N p)``; chained through ``SoftMax.backward`` it becomes ``(p - t) / N``.
    """

    def __init__(self, eps: float = 1e-12):
        self.eps = eps

    def forward(self, p: np.ndarray, y) -> float:
        if p.ndim != 2 or p.shape[0] == 0:
            raise ValueError(f"p must be probabilities of shape (N, C) with N >= 1, got shape {p.shape}")
        t = _one_hot(y, p.shape[1])  # (N, C)
        if t.shape[0] != p.shape[0]:
            raise ValueError(f"p has {p.shape[0]} rows but y has {t.shape[0]}")
        # loss: a Python float, the mean over the N rows of -sum_c t log p, with p clipped below at self.eps.
        ### BEGIN SOLUTION
        loss = float(-np.sum(t * np.log(np.maximum(p, self.eps))) / p.shape[0])
        ### END SOLUTION
        return loss

    def backward(self, p: np.ndarray, y) -> np.ndarray:
        t = _one_hot(y, p.shape[1])  # (N, C)
        # dp = dL/dp (N, C) of the mean loss, with the same clipping of p as in forward.
        ### BEGIN SOLUTION
        dp = -t / (np.maximum(p, self.eps) * p.shape[0])
        ### END SOLUTION
        return dp


#: Activation names accepted by ``MLP`` and the modules they build.
ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "sigmoid": Sigmoid, "tanh": Tanh}


class MLP:
    """Multi-layer perceptron ``Linear -> act -> ... -> Linear -> SoftMax`` built from the modules above.

    Args:
        n_inputs: input features D.
        n_hidden: list of hidden-layer widths (any length; ``[]`` gives softmax regression).
        n_classes: number of classes C.
        activation: 'relu', 'leaky_relu', 'sigmoid' or 'tanh'.
        init: 'naive', 'xavier' or 'he' (see ``init_std``).
        naive_scale: weight standard deviation of the 'naive' init.
        seed: seeds the local generator of the initialisation.

    ``forward(X (N, D))`` returns class probabilities ``(N, C)``; ``backward(dprobs)`` fills every
    ``Linear``'s ``grads`` and returns ``dX``.
    """

    def __init__(
        self,
        n_inputs: int,
        n_hidden,
        n_classes: int,
        activation: str = "relu",
        init: str = "he",
        naive_scale: float = 1e-2,
        seed: int | None = None,
    ):
        if isinstance(n_hidden, int):
            n_hidden = [n_hidden]
        n_hidden = list(n_hidden)
        if n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {n_classes}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if any(h < 1 for h in n_hidden):
            raise ValueError(f"every hidden width must be positive, got {n_hidden}")
        self.n_inputs, self.n_hidden, self.n_classes = n_inputs, n_hidden, n_classes
        self.activation, self.init = activation, init
        rng = np.random.default_rng(seed)
        sizes = [n_inputs] + n_hidden + [n_classes]
        self.layers: list[Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            self.layers.append(Linear(fan_in, fan_out, init=init, naive_scale=naive_scale, rng=rng))
            if i < len(sizes) - 2:
                self.layers.append(ACTIVATIONS[activation]())
        self.layers.append(SoftMax())

    @property
    def linear_layers(self) -> list[Linear]:
        """The ``Linear`` modules, input to output."""
        return [layer for layer in self.layers if isinstance(layer, Linear)]

    def forward(self, X: np.ndarray) -> np.ndarray:
        """``X (N, D)`` -> probabilities ``(N, C)``."""
        out = np.asarray(X, dtype=np.float64)
        if out.ndim != 2 or out.shape[0] == 0:
            raise ValueError(f"X must have shape (N, {self.n_inputs}) with N >= 1, got shape {out.shape}")
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """``dout = dL/dprobs (N, C)`` -> ``dL/dX (N, D)``; gradients land in each ``Linear.grads``."""
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        return dout

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class indices ``(N,)``."""
        return self.forward(X).argmax(axis=1)

    def num_params(self) -> int:
        return sum(v.size for layer in self.linear_layers for v in layer.params.values())

    def __repr__(self) -> str:
        return "MLP(" + " -> ".join(repr(layer) for layer in self.layers) + ")"


def penalty(model: MLP, l1: float = 0.0, l2: float = 0.0, add_grads: bool = False) -> float:
    """Weight penalty ``l1 * sum|W| + 0.5 * l2 * sum W^2`` over the weights (not the biases).

    With ``add_grads`` the penalty's gradient ``l1 * sign(W) + l2 * W`` is added to ``grads['weight']``.
    """
    total = 0.0
    for layer in model.linear_layers:
        W = layer.params["weight"]
        if l1:
            total += l1 * np.abs(W).sum()
        if l2:
            total += 0.5 * l2 * np.sum(W * W)
        if add_grads and (l1 or l2):
            layer.grads["weight"] = layer.grads["weight"] + l1 * np.sign(W) + l2 * W
    return float(total)


def sgd_step(model: MLP, learning_rate: float) -> None:
    """Vanilla gradient descent on every parameter: ``theta <- theta - learning_rate * dL/dtheta``."""
    for layer in model.linear_layers:
        for name in layer.params:
            layer.params[name] -= learning_rate * layer.grads[name]


def train_step(
    model: MLP,
    X: np.ndarray,
    y: np.ndarray,
    learning_rate: float,
    l1: float = 0.0,
    l2: float = 0.0,
    loss_fn: CrossEntropy | None = None,
) -> float:
    """Forward, loss, backward, penalty and one SGD update on the batch ``X (B, D)``, ``y (B,)``.

    Returns the batch's total objective (data loss + penalty) before the update.
    """
    loss_fn = loss_fn or CrossEntropy()
    probs = model.forward(X)
    loss = loss_fn.forward(probs, y)
    model.backward(loss_fn.backward(probs, y))
    loss += penalty(model, l1, l2, add_grads=True)
    sgd_step(model, learning_rate)
    return loss


def evaluate_mlp(model: MLP, X: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """``(mean cross-entropy, accuracy)`` of ``model`` on ``X (N, D)``, ``y (N,)``."""
    probs = model.forward(X)
    return CrossEntropy().forward(probs, y), float(np.mean(probs.argmax(axis=1) == y))


def train_mlp(
    model: MLP,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val=None,
    y_val=None,
    method: str = "minibatch",
    batch_size: int = 32,
    learning_rate: float = 0.1,
    epochs: int = 100,
    l1: float = 0.0,
    l2: float = 0.0,
    seed: int | None = None,
    progress: bool = True,
    desc: str | None = None,
) -> dict:
    """Train ``model`` with gradient descent and record one history entry per epoch.

    ``method``: 'batch' (full-batch GD, one step per epoch), 'sgd' (batch size 1, N steps per
    epoch) or 'minibatch' (``batch_size`` samples per step). Samples are reshuffled every epoch by
    a local generator seeded with ``seed``.

    History keys (lists of length ``epochs``): ``train_loss``, ``train_acc`` (on the whole training
    set at the end of the epoch; loss without the penalty), ``val_loss``, ``val_acc`` (when a
    validation set is given), ``time`` (cumulative training wall-clock in seconds, evaluation
    excluded), ``penalty``; plus ``steps_per_epoch``.
    """
    from tqdm.auto import tqdm

    if method not in ("batch", "sgd", "minibatch"):
        raise ValueError(f"method must be 'batch', 'sgd' or 'minibatch', got {method!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    X_train = np.asarray(X_train, dtype=np.float64)
    y_train = np.asarray(y_train)
    N = len(X_train)
    B = {"batch": N, "sgd": 1, "minibatch": batch_size}[method]
    if B < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    rng = np.random.default_rng(seed)
    loss_fn = CrossEntropy()
    history = {
        "train_loss": [],
        "train_acc": [],
        "val_loss": [],
        "val_acc": [],
        "time": [],
        "penalty": [],
        "steps_per_epoch": int(np.ceil(N / B)),
    }
    elapsed = 0.0
    bar = tqdm(range(epochs), desc=desc or method, disable=not progress, leave=False)
    for _ in bar:
        start = time.perf_counter()
        order = rng.permutation(N) if B < N else np.arange(N)
        for i in range(0, N, B):
            idx = order[i : i + B]
            train_step(model, X_train[idx], y_train[idx], learning_rate, l1, l2, loss_fn)
        elapsed += time.perf_counter() - start
        history["time"].append(elapsed)
        loss, acc = evaluate_mlp(model, X_train, y_train)
        history["train_loss"].append(loss)
        history["train_acc"].append(acc)
        history["penalty"].append(penalty(model, l1, l2))
        if X_val is not None:
            val_loss, val_acc = evaluate_mlp(model, X_val, y_val)
            history["val_loss"].append(val_loss)
            history["val_acc"].append(val_acc)
        bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
    return history


def layer_statistics(model: MLP, X: np.ndarray, y: np.ndarray) -> dict:
    """Per-hidden-layer statistics of one forward/backward pass on ``X (N, D)``, ``y (N,)`` (no update).

    For hidden layer ``l = 1..L`` (the output of its activation, ``h_l (N, H_l)``):
    ``act_mean`` (over all entries of ``h_l``), ``act_std`` (std over the samples, averaged over the
    units: how much the layer's output still depends on the input), ``act_grad_std`` (std of ``dL/dh_l``),
    ``weight_grad_std`` (std of ``dL/dW_l``, the weights feeding ``h_l``), ``weight_std``, and
    ``activations`` / ``act_grads`` (the arrays themselves, for histograms). Vanishing signals show up as
    ``act_std`` shrinking with depth, vanishing gradients as ``weight_grad_std`` shrinking towards the input.
    """
    outputs, douts = [], {}
    out = np.asarray(X, dtype=np.float64)
    for layer in model.layers:
        out = layer.forward(out)
        outputs.append(out)
    loss_fn = CrossEntropy()
    dout = loss_fn.backward(outputs[-1], y)
    for i in reversed(range(len(model.layers))):
        douts[i] = dout  # gradient w.r.t. the output of layer i
        dout = model.layers[i].backward(dout)
    stats = {
        k: []
        for k in ("act_mean", "act_std", "act_grad_std", "weight_grad_std", "weight_std", "activations", "act_grads")
    }
    linears = []
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Linear):
            linears.append(layer)
        elif not isinstance(layer, SoftMax):  # an activation: the output of a hidden layer
            h, dh, W = outputs[i], douts[i], linears[-1]
            stats["act_mean"].append(float(h.mean()))
            stats["act_std"].append(float(h.std(axis=0).mean()))
            stats["act_grad_std"].append(float(dh.std()))
            stats["weight_grad_std"].append(float(W.grads["weight"].std()))
            stats["weight_std"].append(float(W.params["weight"].std()))
            stats["activations"].append(h)
            stats["act_grads"].append(dh)
    stats["loss"] = loss_fn.forward(outputs[-1], y)
    return stats
