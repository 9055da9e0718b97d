"""First-order update rules: each is ``update(w, dw, config=None) -> (next_w, config)``.

``config`` holds the hyperparameters and the per-parameter state (velocity, moments); defaults are
filled in with ``config.setdefault``, so the same dict is passed back in at the next step.
"""

import numpy as np


def sgd(w, dw, config=None):
    """Vanilla stochastic gradient descent: ``w -= learning_rate * dw``.

    config: 'learning_rate' (1e-2). The worked example of the protocol: defaults with ``setdefault``, a new
    array for the next weights, the config returned.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    w = w - config["learning_rate"] * dw
    return w, config


def sgd_momentum(w, dw, config=None):
    """SGD with momentum: ``v = momentum * v - learning_rate * dw``, ``w = w + v``.

    config: 'learning_rate' (1e-2), 'momentum' (0.9), state 'velocity' (zeros like w).
    (torch.optim.SGD keeps ``b = momentum * b + dw`` and steps ``w -= lr * b``: the same trajectory
    when the learning rate is constant, since then ``v = -lr * b``.)
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("momentum", 0.9)
    v = config.get("velocity", np.zeros_like(w))
    # Update the velocity v from the gradient, then step the weights along it: next_w.
    ### BEGIN SOLUTION
    v = config["momentum"] * v - config["learning_rate"] * dw
    next_w = w + v
    ### END SOLUTION
    config["velocity"] = v
    return next_w, config


def rmsprop(w, dw, config=None):
    """RMSProp: ``cache = decay_rate * cache + (1 - decay_rate) * dw**2``,
    ``w -= learning_rate * dw / (sqrt(cache) + epsilon)``.

    config: 'learning_rate' (1e-2), 'decay_rate' (0.99), 'epsilon' (1e-8), state 'cache'.
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-2)
    config.setdefault("decay_rate", 0.99)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("cache", np.zeros_like(w))
    # Move the moving average of squared gradients (store it back in config['cache']), then divide the
    # step elementwise by its square root: next_w.
    ### BEGIN SOLUTION
    cache = config["decay_rate"] * config["cache"] + (1 - config["decay_rate"]) * dw**2
    next_w = w - config["learning_rate"] * dw / (np.sqrt(cache) + config["epsilon"])
    config["cache"] = cache
    ### END SOLUTION
    return next_w, config


def adam(w, dw, config=None):
    """Adam with bias correction (Kingma and Ba, 2015).

    ``t += 1``; ``m = beta1 * m + (1 - beta1) * dw``; ``v = beta2 * v + (1 - beta2) * dw**2``;
    ``w -= learning_rate * (m / (1 - beta1**t)) / (sqrt(v / (1 - beta2**t)) + epsilon)``.
    config: 'learning_rate' (1e-3), 'beta1' (0.9), 'beta2' (0.999), 'epsilon' (1e-8),
    state 'm', 'v' (uncorrected moments) and 't' (steps taken, 0 at the start).
    """
    config = {} if config is None else config
    config.setdefault("learning_rate", 1e-3)
    config.setdefault("beta1", 0.9)
    config.setdefault("beta2", 0.999)
    config.setdefault("epsilon", 1e-8)
    config.setdefault("m", np.zeros_like(w))
    config.setdefault("v", np.zeros_like(w))
    config.setdefault("t", 0)
    beta1, beta2 = config["beta1"], config["beta2"]
    # Increment config['t'] first; update the moments config['m'] and config['v'] (stored uncorrected);
    # bias-correct copies of them for this step only, and compute next_w.
    ### BEGIN SOLUTION
    config["t"] += 1
    t = config["t"]
    config["m"] = beta1 * config["m"] + (1 - beta1) * dw
    config["v"] = beta2 * config["v"] + (1 - beta2) * dw**2
    m_hat = config["m"] / (1 - beta1**t)
    v_hat = config["v"] / (1 - beta2**t)
    next_w = w - config["learning_rate"] * m_hat / (np.sqrt(v_hat) + config["epsilon"])
    ### END SOLUTION
    return next_w, config


#: The settings each built-in rule reads from ``config`` (what a Solver's ``optim_config`` may hold; the
#: per-parameter state a rule keeps there, such as 'velocity' or 'm', is not a setting).
HYPERPARAMETERS = {
    "sgd": ("learning_rate",),
    "sgd_momentum": ("learning_rate", "momentum"),
    "rmsprop": ("learning_rate", "decay_rate", "epsilon"),
    "adam": ("learning_rate", "beta1", "beta2", "epsilon"),
}
UPDATE_RULES = tuple(HYPERPARAMETERS)


def get_update_rule(update_rule):
    """The rule named ``update_rule`` (one of ``UPDATE_RULES``), or ``update_rule`` itself when it is callable."""
    if callable(update_rule):
        return update_rule
    if update_rule in UPDATE_RULES:
        return globals()[update_rule]
    raise ValueError(f"update_rule must be one of {UPDATE_RULES} or a callable, got {update_rule!r}")


def check_config(update_rule, config):
    """Raise ValueError naming every key of ``config`` that the built-in rule ``update_rule`` does not read
    (a typo such as 'learning_rte' would otherwise be ignored silently). A callable rule is not checked."""
    if callable(update_rule):
        return
    get_update_rule(update_rule)  # an unknown name is a ValueError listing the rules
    known = HYPERPARAMETERS[update_rule]
    unknown = [k for k in config if k not in known]
    if unknown:
        raise ValueError(
            f"optim_config has unknown key(s) {', '.join(map(repr, unknown))} for update_rule "
            f"{update_rule!r}; the keys it knows are {', '.join(map(repr, known))}"
        )
