"""Update rules against their formulas and against torch.optim where the two coincide."""

import numpy as np
import torch

from common import optim
from common.diagnose import assert_close
from common.gradient_check import rel_error


def _grads(num_steps, shape=(4, 5), seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(num_steps)]


def _run_ours(rule, w0, grads, config):
    w = w0.copy()
    for g in grads:
        w, config = rule(w, g, config)
    return w, config


def _run_torch(opt_cls, w0, grads, **kwargs):
    p = torch.nn.Parameter(torch.tensor(w0))
    opt = opt_cls([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g)
        opt.step()
    return p.detach().numpy()


def test_sgd_formula_and_torch():
    w0 = np.random.default_rng(1).standard_normal((4, 5))
    grads = _grads(5)
    w, config = _run_ours(optim.sgd, w0, grads, {"learning_rate": 0.1})
    assert rel_error(w, w0 - 0.1 * sum(grads)) < 1e-12
    assert rel_error(w, _run_torch(torch.optim.SGD, w0, grads, lr=0.1)) < 1e-12
    assert optim.sgd(w0, grads[0])[1]["learning_rate"] == 1e-2  # default


def test_sgd_momentum_formula_and_torch():
    w0 = np.random.default_rng(2).standard_normal((4, 5))
    grads = _grads(6)
    w, config = _run_ours(optim.sgd_momentum, w0, grads, {"learning_rate": 0.05})
    v, w_ref = np.zeros_like(w0), w0.copy()
    for g in grads:  # the contract: v = mu v - lr g; w = w + v
        v = 0.9 * v - 0.05 * g
        w_ref = w_ref + v
    # the weights are compared with the start in mind: a step the wrong way or of the wrong size is named
    assert_close("sgd_momentum: w after 6 steps", w, w_ref, 1e-12, context={"start": w0})
    assert_close("sgd_momentum: config['velocity']", config["velocity"], v, 1e-12)
    # torch keeps b = mu b + g and steps w -= lr b: the same trajectory at a constant learning rate
    w_torch = _run_torch(torch.optim.SGD, w0, grads, lr=0.05, momentum=0.9)
    assert_close("sgd_momentum: w after 6 steps", w, w_torch, 1e-12, context={"start": w0})


def test_sgd_momentum_cs231n_values():
    N, D = 4, 5
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    v = np.linspace(0.6, 0.9, num=N * D).reshape(N, D)
    expected = w + 0.9 * v - 1e-3 * dw  # before the call: an update rule may update its state in place
    next_w, config = optim.sgd_momentum(w, dw, {"learning_rate": 1e-3, "velocity": v})
    assert rel_error(next_w, expected) < 1e-12
    assert rel_error(next_w[0, :3], np.array([0.1406, 0.20738947, 0.27417895])) < 1e-6


def _cs231n_w_dw():
    N, D = 4, 5
    w = np.linspace(-0.4, 0.6, num=N * D).reshape(N, D)
    dw = np.linspace(-0.6, 0.4, num=N * D).reshape(N, D)
    return w, dw


def test_rmsprop_cs231n_values():
    w, dw = _cs231n_w_dw()
    cache = np.linspace(0.6, 0.9, num=20).reshape(4, 5)
    next_w, config = optim.rmsprop(w, dw, {"learning_rate": 1e-2, "cache": cache})
    new_cache = 0.99 * cache + 0.01 * dw**2
    no_sqrt = w - 1e-2 * dw / (new_cache + 1e-8)
    context = {"start": w, "suspects": {"the step divided by the cache instead of its square root": no_sqrt}}
    expected_next_w = np.array(
        [
            [-0.39223849, -0.34037513, -0.28849239, -0.23659121, -0.18467247],
            [-0.132737, -0.08078555, -0.02881884, 0.02316247, 0.07515774],
            [0.12716641, 0.17918792, 0.23122175, 0.28326742, 0.33532447],
            [0.38739248, 0.43947102, 0.49155973, 0.54365823, 0.59576619],
        ]
    )
    expected_cache = np.array(
        [
            [0.5976, 0.6126277, 0.6277108, 0.64284931, 0.65804321],
            [0.67329252, 0.68859723, 0.70395734, 0.71937285, 0.73484377],
            [0.75037008, 0.7659518, 0.78158892, 0.79728144, 0.81302936],
            [0.82883269, 0.84469141, 0.86060554, 0.87657507, 0.8926],
        ]
    )
    # the published values have 8 decimals
    assert_close("rmsprop: next_w", next_w, expected_next_w, 1e-6, context=context)
    assert_close("rmsprop: config['cache']", config["cache"], expected_cache, 1e-6)


def test_adam_cs231n_values():
    w, dw = _cs231n_w_dw()
    m = np.linspace(0.6, 0.9, num=20).reshape(4, 5)
    v = np.linspace(0.7, 0.5, num=20).reshape(4, 5)
    m_new, v_new = 0.9 * m + 0.1 * dw, 0.999 * v + 0.001 * dw**2
    uncorrected = w - 1e-2 * m_new / (np.sqrt(v_new) + 1e-8)
    context = {"start": w, "suspects": {"no bias correction (m and v not divided by 1 - beta**t)": uncorrected}}
    next_w, config = optim.adam(w, dw, {"learning_rate": 1e-2, "m": m, "v": v, "t": 5})
    expected_next_w = np.array(
        [
            [-0.40094747, -0.34836187, -0.29577703, -0.24319299, -0.19060977],
            [-0.1380274, -0.08544591, -0.03286534, 0.01971428, 0.0722929],
            [0.1248705, 0.17744702, 0.23002243, 0.28259667, 0.33516969],
            [0.38774145, 0.44031188, 0.49288093, 0.54544852, 0.59801459],
        ]
    )
    expected_v = np.array(
        [
            [0.69966, 0.68908382, 0.67851319, 0.66794809, 0.65738853],
            [0.64683452, 0.63628604, 0.6257431, 0.61520571, 0.60467385],
            [0.59414753, 0.58362676, 0.57311152, 0.56260183, 0.55209767],
            [0.54159906, 0.53110598, 0.52061845, 0.51013645, 0.49966],
        ]
    )
    expected_m = np.array(
        [
            [0.48, 0.49947368, 0.51894737, 0.53842105, 0.55789474],
            [0.57736842, 0.59684211, 0.61631579, 0.63578947, 0.65526316],
            [0.67473684, 0.69421053, 0.71368421, 0.73315789, 0.75263158],
            [0.77210526, 0.79157895, 0.81105263, 0.83052632, 0.85],
        ]
    )
    assert config["t"] == 6  # t is incremented before it is used
    assert_close("adam: next_w", next_w, expected_next_w, 1e-6, context=context)
    assert_close("adam: config['v']", config["v"], expected_v, 1e-6)
    assert_close("adam: config['m']", config["m"], expected_m, 1e-6)


def test_rmsprop_formula_and_torch():
    w0 = np.random.default_rng(3).standard_normal((4, 5))
    grads = _grads(6)
    w, config = _run_ours(optim.rmsprop, w0, grads, {"learning_rate": 1e-2})
    cache, w_ref = np.zeros_like(w0), w0.copy()
    for g in grads:
        cache = 0.99 * cache + 0.01 * g**2
        w_ref = w_ref - 1e-2 * g / (np.sqrt(cache) + 1e-8)
    assert rel_error(w, w_ref) < 1e-12 and rel_error(config["cache"], cache) < 1e-12
    # torch.optim.RMSprop: square_avg = alpha sa + (1 - alpha) g^2; w -= lr g / (sqrt(sa) + eps): identical
    assert rel_error(w, _run_torch(torch.optim.RMSprop, w0, grads, lr=1e-2, alpha=0.99, eps=1e-8)) < 1e-10


def test_adam_formula_and_torch():
    w0 = np.random.default_rng(4).standard_normal((4, 5))
    grads = _grads(7)
    w, config = _run_ours(optim.adam, w0, grads, {"learning_rate": 1e-2})
    m, v, w_ref = np.zeros_like(w0), np.zeros_like(w0), w0.copy()
    for t, g in enumerate(grads, start=1):
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g**2
        w_ref = w_ref - 1e-2 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    assert config["t"] == len(grads)
    assert rel_error(config["m"], m) < 1e-12 and rel_error(config["v"], v) < 1e-12  # uncorrected moments
    assert rel_error(w, w_ref) < 1e-12
    assert rel_error(w, _run_torch(torch.optim.Adam, w0, grads, lr=1e-2, betas=(0.9, 0.999), eps=1e-8)) < 1e-9


def test_adam_first_step_is_lr_times_sign():
    # after one bias-corrected step, m_hat / sqrt(v_hat) = g / |g|
    w0 = np.zeros(5)
    g = np.array([3.0, -0.2, 1e-3, -7.0, 0.5])
    w, _ = optim.adam(w0, g, None)
    assert rel_error(w, -1e-3 * np.sign(g)) < 1e-4


def _minimise_a_quadratic(rule):
    """300 steps of ``rule`` on ``|w|^2`` from (3, -2): a working rule ends near the minimum at 0."""
    w = np.array([3.0, -2.0])
    config = {"learning_rate": 0.05}
    for _ in range(300):
        w, config = rule(w, 2 * w, config)
    assert np.linalg.norm(w) < 0.1


# one test per rule: a rule not written yet fails only its own
def test_sgd_decreases_a_quadratic():
    _minimise_a_quadratic(optim.sgd)


def test_sgd_momentum_decreases_a_quadratic():
    _minimise_a_quadratic(optim.sgd_momentum)


def test_rmsprop_decreases_a_quadratic():
    _minimise_a_quadratic(optim.rmsprop)


def test_adam_decreases_a_quadratic():
    _minimise_a_quadratic(optim.adam)
