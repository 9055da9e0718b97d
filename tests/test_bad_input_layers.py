"""Bad input to the NumPy core: each case fails with a ValueError that says what is wrong, before any state changes."""

import os
import threading

import numpy as np
import pytest

from common import fast_layers, layers, optim, rnn_layers
from common.classifiers.cnn import ThreeLayerConvNet
from common.classifiers.fc_net import FullyConnectedNet
from common.diagnose import assert_close
from common.solver import Solver
from common.training.checkpoint import CacheEntry

needs_cython = pytest.mark.skipif(
    not fast_layers.HAVE_CYTHON, reason="common.im2col_cython not built (run `make build`)"
)
BACKENDS = ["numpy", pytest.param("cython", marks=needs_cython)]
CONV = {"stride": 1, "pad": 1}
POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _data(num_train=40, num_val=20, D=6, C=3, seed=0):
    rng = _rng(seed)
    return {
        "X_train": rng.standard_normal((num_train, D)),
        "y_train": rng.integers(C, size=num_train),
        "X_val": rng.standard_normal((num_val, D)),
        "y_val": rng.integers(C, size=num_val),
    }


def _model(normalization=None):
    return FullyConnectedNet([8], input_dim=6, num_classes=3, normalization=normalization, dtype=np.float64, seed=0)


# ---------------------------------------------------------------------------- empty batches
def _empty(*shape):
    return np.zeros((0, *shape))


W43, B3 = np.ones((4, 3)), np.zeros(3)
CONV_W, CONV_B = np.ones((2, 3, 3, 3)), np.zeros(2)
RNN = (np.ones((4, 5)), np.ones((5, 5)), np.zeros(5))
LSTM = (np.ones((4, 20)), np.ones((5, 20)), np.zeros(20))
EMPTY_BATCH_CALLS = {
    "affine": lambda: layers.affine_forward(_empty(2, 2), W43, B3),
    "relu": lambda: layers.relu_forward(_empty(3)),
    "leaky_relu": lambda: layers.leaky_relu_forward(_empty(3)),
    "sigmoid": lambda: layers.sigmoid_forward(_empty(3)),
    "tanh": lambda: layers.tanh_forward(_empty(3)),
    "softmax_loss": lambda: layers.softmax_loss(_empty(3), np.zeros(0, dtype=int)),
    "svm_loss": lambda: layers.svm_loss(_empty(3), np.zeros(0, dtype=int)),
    "batchnorm": lambda: layers.batchnorm_forward(_empty(3), np.ones(3), B3, {"mode": "train"}),
    "layernorm": lambda: layers.layernorm_forward(_empty(3), np.ones(3), B3, {}),
    "dropout": lambda: layers.dropout_forward(_empty(3), {"mode": "train", "p": 0.5, "seed": 0}),
    "conv_naive": lambda: layers.conv_forward_naive(_empty(3, 4, 4), CONV_W, CONV_B, CONV),
    "conv_fast": lambda: fast_layers.conv_forward_fast(_empty(3, 4, 4), CONV_W, CONV_B, CONV),
    "max_pool_naive": lambda: layers.max_pool_forward_naive(_empty(3, 4, 4), POOL),
    "max_pool_fast": lambda: fast_layers.max_pool_forward_fast(_empty(3, 4, 4), POOL),
    "spatial_batchnorm": lambda: layers.spatial_batchnorm_forward(_empty(3, 4, 4), np.ones(3), B3, {"mode": "train"}),
    "spatial_groupnorm": lambda: layers.spatial_groupnorm_forward(
        _empty(4, 2, 2), np.ones((1, 4, 1, 1)), np.zeros((1, 4, 1, 1)), 2, {}
    ),
    "rnn_step": lambda: rnn_layers.rnn_step_forward(_empty(4), _empty(5), *RNN),
    "rnn": lambda: rnn_layers.rnn_forward(_empty(3, 4), _empty(5), *RNN),
    "lstm_step": lambda: rnn_layers.lstm_step_forward(_empty(4), _empty(5), _empty(5), *LSTM),
    "lstm": lambda: rnn_layers.lstm_forward(_empty(3, 4), _empty(5), *LSTM),
    "word_embedding": lambda: rnn_layers.word_embedding_forward(np.zeros((0, 3), dtype=int), np.ones((5, 4))),
    "temporal_affine": lambda: rnn_layers.temporal_affine_forward(_empty(3, 4), np.ones((4, 2)), np.zeros(2)),
    "temporal_softmax_loss": lambda: rnn_layers.temporal_softmax_loss(
        _empty(3, 5), np.zeros((0, 3), dtype=int), np.zeros((0, 3), dtype=bool)
    ),
    "fc_net": lambda: _model().loss(_empty(6), np.zeros(0, dtype=int)),
}


# Every case above is caught by the given argument checks, before any student code runs; so this test passes
# whatever the state of the exercises it names, and never fails one for another.
@pytest.mark.parametrize("family", sorted(EMPTY_BATCH_CALLS))
def test_empty_batch_is_a_value_error_for_every_layer_family(family):
    with pytest.raises(ValueError, match=r"no samples \(N=0"):
        EMPTY_BATCH_CALLS[family]()


def test_empty_batch_is_a_value_error_for_the_three_layer_convnet():
    # caught by the checks of the layers the network calls: a test of its own, as it runs the student's loss
    model = ThreeLayerConvNet(input_dim=(3, 4, 4), num_filters=2, filter_size=3, hidden_dim=5, num_classes=3)
    with pytest.raises(ValueError, match=r"no samples \(N=0"):
        model.loss(_empty(3, 4, 4))


def test_empty_sequence_is_a_value_error():
    with pytest.raises(ValueError, match="every dimension must be at least 1"):
        rnn_layers.rnn_forward(np.zeros((2, 0, 4)), np.zeros((2, 5)), *RNN)


@pytest.mark.parametrize("loss_fn", [layers.softmax_loss, layers.svm_loss])
def test_losses_on_an_empty_batch_raise_instead_of_returning_nan(loss_fn):
    with pytest.raises(ValueError, match=r"x has no samples \(N=0"):
        loss_fn(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))


def test_batchnorm_empty_batch_leaves_the_running_averages_intact():
    rng = _rng(1)
    gamma, beta = np.ones(3), np.zeros(3)
    bn_param = {"mode": "train"}
    layers.batchnorm_forward(rng.standard_normal((8, 3)), gamma, beta, bn_param)
    before = {k: bn_param[k].copy() for k in ("running_mean", "running_var")}
    with pytest.raises(ValueError, match=r"no samples \(N=0"):
        layers.batchnorm_forward(np.zeros((0, 3)), gamma, beta, bn_param)
    for k, v in before.items():
        assert np.array_equal(bn_param[k], v), f"{k} changed by a rejected batch"
    for _ in range(5):
        layers.batchnorm_forward(rng.standard_normal((8, 3)), gamma, beta, bn_param)
    assert np.all(np.isfinite(bn_param["running_mean"])) and np.all(np.isfinite(bn_param["running_var"]))


# ---------------------------------------------------------------------------- batchnorm test mode before training
def test_batchnorm_test_mode_before_training_is_the_identity_normalisation():
    x = _rng(2).standard_normal((5, 3))
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.0, -0.5])
    bn_param = {"mode": "test"}
    out, cache = layers.batchnorm_forward(x, gamma, beta, bn_param)
    assert cache is None
    batch = gamma * (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-5) + beta
    context = {"suspects": {"batch statistics in test mode instead of the running averages": batch}}
    expected = gamma * x / np.sqrt(1 + 1e-5) + beta  # not x * 316
    assert_close("batchnorm_forward: out (test mode, before training)", out, expected, rtol=1e-12, context=context)
    assert "running_mean" not in bn_param and "running_var" not in bn_param
    bn_param["mode"] = "train"  # training still starts from zeros, as in CS231n
    layers.batchnorm_forward(x, gamma, beta, bn_param)
    running_var = bn_param["running_var"]
    assert_close("batchnorm_forward: running_var", running_var, 0.1 * x.var(axis=0), rtol=1e-12, context={"N": 5})


def test_spatial_batchnorm_test_mode_before_training_is_the_identity_normalisation():
    x4 = _rng(3).standard_normal((2, 3, 4, 4))
    out4, _ = layers.spatial_batchnorm_forward(x4, np.ones(3), np.zeros(3), {"mode": "test"})
    context = {"axes": ("N", "C", "H", "W")}
    name = "spatial_batchnorm_forward: out (test mode, before training)"
    assert_close(name, out4, x4 / np.sqrt(1 + 1e-5), rtol=1e-12, context=context)


def test_batchnorm_model_predicts_before_training_and_then_trains_from_zero_averages():
    model = _model("batchnorm")
    X, y = _rng(4).standard_normal((10, 6)), np.arange(10) % 3
    scores = model.loss(X)  # what Solver's epoch-0 accuracy does
    assert np.all(np.isfinite(scores)) and np.abs(scores).max() < 10
    model.loss(X, y)
    hidden = X @ model.params["W1"]  # the batchnorm input of the first layer (b1 = 0)
    np.testing.assert_allclose(model.bn_params[0]["running_var"], 0.1 * hidden.var(axis=0), rtol=1e-10)


# ---------------------------------------------------------------------------- conv/pool parameters
@pytest.mark.parametrize("conv", [layers.conv_forward_naive, fast_layers.conv_forward_fast])
def test_conv_param_missing_pad_names_it(conv):
    x, w, b = np.zeros((1, 3, 4, 4)), CONV_W, CONV_B
    with pytest.raises(ValueError, match="conv_param is missing 'pad'"):
        conv(x, w, b, {"stride": 1})


@pytest.mark.parametrize("conv", [layers.conv_forward_naive, fast_layers.conv_forward_fast])
@pytest.mark.parametrize(
    "conv_param,match",
    [
        ({"stride": 1.0, "pad": 1}, "stride must be an int, got 1.0"),
        ({"stride": 1, "pad": 1.0}, "pad must be an int, got 1.0"),
    ],
)
def test_conv_param_float_is_a_value_error(conv, conv_param, match):
    with pytest.raises(ValueError, match=match):
        conv(np.zeros((1, 3, 4, 4)), CONV_W, CONV_B, conv_param)


@pytest.mark.parametrize("pool", [layers.max_pool_forward_naive, fast_layers.max_pool_forward_fast])
def test_pool_param_float_stride_or_missing_key(pool):
    with pytest.raises(ValueError, match="stride must be an int"):
        pool(np.zeros((1, 1, 4, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2.0})
    with pytest.raises(ValueError, match="pool_param is missing 'pool_width'"):
        pool(np.zeros((1, 1, 4, 4)), {"pool_height": 2, "stride": 2})


def test_conv_integer_input_is_a_value_error():
    with pytest.raises(ValueError, match="x must hold floating-point numbers"):
        layers.conv_forward_naive(np.zeros((1, 3, 4, 4), dtype=int), CONV_W, CONV_B, CONV)


# ---------------------------------------------------------------------------- dout in the wrong layout
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_backward_rejects_dout_with_n_and_f_swapped(backend):
    x, w, b = _rng(5).standard_normal((2, 3, 5, 5)), _rng(6).standard_normal((4, 3, 3, 3)), np.zeros(4)
    out, cache = fast_layers.conv_forward_fast(x, w, b, CONV, backend=backend)
    _, naive_cache = layers.conv_forward_naive(x, w, b, CONV)
    swapped = np.ones((4, 2, 5, 5))  # (F, N, H', W') instead of (N, F, H', W'): same size
    for backward, cache_ in ((fast_layers.conv_backward_fast, cache), (layers.conv_backward_naive, naive_cache)):
        with pytest.raises(ValueError, match=r"dout has shape \(4, 2, 5, 5\).*\(2, 4, 5, 5\)"):
            backward(swapped, cache_)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_backward_rejects_dout_with_n_and_c_swapped(backend):
    x = _rng(7).standard_normal((2, 3, 6, 6))
    overlapping = {"pool_height": 3, "pool_width": 3, "stride": 1}
    _, cache = fast_layers.max_pool_forward_im2col(x, overlapping, backend=backend)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2, 4, 4\)"):
        fast_layers.max_pool_backward_im2col(np.ones((3, 2, 4, 4)), cache)
    _, cache = fast_layers.max_pool_forward_reshape(x, POOL)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2, 3, 3\)"):
        fast_layers.max_pool_backward_reshape(np.ones((3, 2, 3, 3)), cache)
    _, cache = layers.max_pool_forward_naive(x, POOL)
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2, 3, 3\)"):
        layers.max_pool_backward_naive(np.ones((3, 2, 3, 3)), cache)


# ---------------------------------------------------------------------------- NaN in a pool window
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "pool_param", [POOL, {"pool_height": 3, "pool_width": 3, "stride": 1}], ids=["tiling", "overlapping"]
)
def test_nan_in_a_pool_window_fast_and_naive_agree(backend, pool_param):
    """A NaN counts as the window's maximum (np.max, np.argmax): the output is NaN and the gradient goes
    to the window's first NaN, on every path."""
    x = _rng(8).standard_normal((2, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = np.nan  # two NaNs in the first window: the first one (0, 1) gets it
    x[1, 1, 4, 5] = np.nan
    out, cache = layers.max_pool_forward_naive(x, pool_param)
    out_f, cache_f = fast_layers.max_pool_forward_fast(x, pool_param, backend=backend)
    np.testing.assert_array_equal(out, out_f)  # equal, NaNs in the same places
    assert np.isnan(out[0, 0, 0, 0]) and np.isnan(out).sum() > 0
    dout = _rng(9).standard_normal(out.shape)
    dx, dx_f = layers.max_pool_backward_naive(dout, cache), fast_layers.max_pool_backward_fast(dout, cache_f)
    assert np.all(np.isfinite(dx))
    context = {
        "regions": {"where the gradient is 0 (not the maximum of any window)": dx_f == 0},
        "hints": {"region": "a window's gradient goes to its maximum only (its first one; here its first NaN)"},
    }
    assert_close("max_pool_backward_naive: dx", dx, dx_f, rtol=1e-12, atol=0, context=context)
    if pool_param is POOL:  # one window per position: the first NaN holds the whole gradient of the window
        assert dx[0, 0, 0, 1] == dout[0, 0, 0, 0] and dx[0, 0, 1, 1] == 0
        assert dx[1, 1, 4, 5] == dout[1, 1, 2, 2]


# ---------------------------------------------------------------------------- gradient dtypes
@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_backward_dtypes_follow_their_variables(backend):
    rng = _rng(10)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    w, b = rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)  # float64
    out, cache = fast_layers.conv_forward_fast(x, w, b, CONV, backend=backend)
    dout = np.ones(out.shape, dtype=np.float32)
    dx, dw, db = fast_layers.conv_backward_fast(dout, cache)
    assert dw.dtype == np.float64 and dx.dtype == np.float32
    out_n, cache_n = layers.conv_forward_naive(x, w, b, CONV)
    dx_n, dw_n, _ = layers.conv_backward_naive(dout, cache_n)
    assert dw_n.dtype == np.float64 and dx_n.dtype == np.float32
    np.testing.assert_allclose(dw, dw_n, rtol=1e-5)


# ---------------------------------------------------------------------------- model arguments
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(hidden_dims=100), r"hidden_dims must be a list of hidden-layer sizes, e\.g\. \[100\]"),
        (dict(hidden_dims=[10], input_dim=-5), "input_dim must be a positive integer, got -5"),
        (dict(hidden_dims=[10], input_dim=0), "input_dim must be a positive integer, got 0"),
        (dict(hidden_dims=[10], num_classes=0), "num_classes"),
        (dict(hidden_dims=[10], dtype=np.int64), "dtype must be a floating-point type"),
    ],
)
def test_fully_connected_net_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FullyConnectedNet(**kwargs)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(input_dim=(3, -4, 4)), "input_dim must be"),
        (dict(num_filters=0), "num_filters"),
        (dict(dtype=np.int32), "dtype must be a floating-point type"),
    ],
)
def test_three_layer_convnet_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThreeLayerConvNet(**kwargs)


# ---------------------------------------------------------------------------- Solver
def test_solver_optim_config_typo_names_the_key_and_the_known_ones():
    with pytest.raises(ValueError, match=r"'learning_rte'.*'sgd'.*'learning_rate'"):
        Solver(_model(), _data(), optim_config={"learning_rte": 5})
    with pytest.raises(ValueError, match=r"'momentum'.*'adam'.*'beta1'"):
        Solver(_model(), _data(), update_rule="adam", optim_config={"momentum": 0.9})
    Solver(_model(), _data(), update_rule="adam", optim_config={"learning_rate": 1e-3, "beta2": 0.99})

    def custom(w, dw, config):  # a custom rule's settings are its own business
        return w - config.get("step", 0.1) * dw, config

    Solver(_model(), _data(), update_rule=custom, optim_config={"step": 0.2}, verbose=False, num_epochs=1).train()
    assert set(optim.HYPERPARAMETERS) == set(optim.UPDATE_RULES)


@pytest.mark.parametrize("split", ["train", "val"])
def test_solver_empty_split_is_a_value_error(split):
    data = _data()
    data[f"X_{split}"], data[f"y_{split}"] = data[f"X_{split}"][:0], data[f"y_{split}"][:0]
    with pytest.raises(ValueError, match=rf"data\['X_{split}'\] is empty"):
        Solver(_model(), data)


def test_check_accuracy_on_an_empty_set_is_a_value_error():
    solver = Solver(_model(), _data(), verbose=False)
    with pytest.raises(ValueError, match=r"no samples \(N=0\)"):
        solver.check_accuracy(np.zeros((0, 6)), np.zeros(0, dtype=int))


def test_two_solvers_with_one_checkpoint_name_both_save_readable_files(tmp_path, monkeypatch):
    """Two Solvers writing the same checkpoint names at once: every write goes through its own temporary file,
    and whichever lands last, each final file is a complete, readable checkpoint."""
    replaced = []
    real_replace = os.replace

    def recording_replace(src, dst):
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    name = str(tmp_path / "shared")
    solvers = [
        Solver(
            _model(),
            _data(seed=s),
            optim_config={"learning_rate": 0.1},
            batch_size=10,
            num_epochs=3,
            checkpoint_name=name,
            verbose=False,
            seed=s,
        )
        for s in (0, 1)
    ]
    errors = []

    def train(solver):
        try:
            solver.train()
        except Exception as err:  # surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=train, args=(s,)) for s in solvers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for epoch in (1, 2, 3):
        checkpoint = CacheEntry(tmp_path / f"shared_epoch_{epoch}.pt").load(required=("params", "epoch"))
        assert checkpoint is not None and checkpoint["epoch"] == epoch
        assert set(checkpoint["params"]) == {"W1", "b1", "W2", "b2"}
    sources = [src for src, _ in replaced]
    assert len(replaced) == 6 and len(set(sources)) == 6, "two writers shared a temporary file"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"shared_epoch_{e}.pt" for e in (1, 2, 3)]
