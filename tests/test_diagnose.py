"""common.diagnose: the checks' pass/fail decision is exactly their criterion, and each kind of difference is
named from the outputs alone."""

import numpy as np
import pytest
import torch

from common.diagnose import assert_all_close, assert_close, describe_shape, diagnose
from common.gradient_check import rel_error


def _rng(seed=0):
    return np.random.default_rng(seed)


def _message(*args, **kwargs):
    with pytest.raises(AssertionError) as info:
        assert_close(*args, **kwargs)
    return str(info.value)


# ---------------------------------------------------------------------------- the criterion
@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-7, 1e-5, 1e-3])
def test_tol_is_the_relative_error_bound(scale):
    rng = _rng(1)
    e = rng.standard_normal((4, 5))
    a = e * (1 + scale * rng.standard_normal(e.shape))
    passes = rel_error(a, e) < 1e-7
    if passes:
        assert_close("f: x", a, e, 1e-7)
    else:
        with pytest.raises(AssertionError, match="^f: x "):
            assert_close("f: x", a, e, 1e-7)


@pytest.mark.parametrize("shift", [0.0, 5e-7, 2e-6, 1e-3])
def test_rtol_atol_is_the_allclose_bound(shift):
    e = _rng(2).standard_normal(6)
    a = e + shift
    if np.allclose(a, e, rtol=1e-6, atol=1e-6):
        assert_close("f: x", a, e, rtol=1e-6, atol=1e-6)
    else:
        with pytest.raises(AssertionError):
            assert_close("f: x", a, e, rtol=1e-6, atol=1e-6)


def test_shapes_dtypes_tensors_and_missing_tolerance():
    with pytest.raises(AssertionError, match=r"shape \(3, 1\)"):
        assert_close("f: x", np.zeros((3, 1)), np.zeros(3), 1e-7)  # no silent broadcast
    assert_close("f: loss", 2.0, np.float64(2.0), atol=0, rtol=0)
    assert_close("f: x", torch.ones(3, dtype=torch.float64), np.ones(3), 1e-12)
    with pytest.raises(AssertionError, match="dtype float32"):
        assert_close("f: x", torch.ones(3), torch.ones(3, dtype=torch.float64), rtol=0, atol=0, check_dtype=True)
    with pytest.raises(ValueError, match="tol"):
        assert_close("f: x", 1.0, 1.0)


# ---------------------------------------------------------------------------- what is named
def test_a_factor_named_after_a_size_with_its_hint():
    dout = _rng(3).standard_normal((3, 5))
    msg = _message("affine_backward: db", dout.mean(axis=0), dout.sum(axis=0), 1e-7, context={"N": 3})
    assert msg == (
        "affine_backward: db is 1/3 of the expected value (N = 3): did you average over the batch instead of summing?"
    )
    assert "5 times" in _message("softmax_loss: loss", 5 * 0.7, 0.7, atol=1e-12, context={"N": 5})
    assert "(sqrt((N-1)/N), N = 4)" in _message("bn: std", np.full(3, 0.75**0.5), np.ones(3), 1e-7, context={"N": 4})
    assert "opposite sign" in _message("f: x", -dout, dout, 1e-7)
    # a number that matches no size is not a diagnosis (any two numbers have some ratio)
    assert "times" not in _message("f: loss", 1.37, 1.0, 1e-7, context={"N": 5})


def test_shape_transpose_reshape_padding():
    w = _rng(4).standard_normal((4, 5))
    assert "transpose" in _message("f: dw", w.T, w, 1e-7)
    assert "right values" in _message("f: dgamma", w[0], w[:1].reshape(1, 5, 1, 1), 1e-7)
    assert "2 * pad" in _message("f: dx", np.zeros((2, 3, 7, 7)), np.ones((2, 3, 5, 5)), 1e-7, context={"pad": 1})
    assert "(4,) = (N,)" in _message("f: dgamma", np.ones(4), np.ones(5), 1e-7, context={"N": 4, "D": 5})


def test_positions_offsets_shifts_blocks_and_squares():
    rng = _rng(5)
    e = rng.standard_normal((3, 4, 5))
    shifted = e.copy()
    shifted[:, 1:] = e[:, :-1]
    assert "shifted one step along T" in _message("f: h", shifted, e, 1e-7, context={"axes": ("N", "T", "H")})
    partial = e.copy()
    partial[:, :2] += rng.standard_normal((3, 2, 5))
    ctx = {"axes": ("N", "T", "D"), "hints": {"partial:T": "the carry from step t+1?"}}
    assert _message("f: dx", partial, e, 1e-7, context=ctx).endswith("right at T = 2, 3: the carry from step t+1?")
    b = rng.standard_normal(5)
    assert "depends only on M" in _message("f: out", e[0] + b, e[0], 1e-7, context={"axes": ("N", "M")})
    gates = rng.standard_normal((2, 8))
    swapped = np.concatenate([gates[:, :4], gates[:, 6:], gates[:, 4:6]], axis=1)
    assert "order i, f, g, o" in _message("f: db", swapped, gates, 1e-7, context={"blocks": "ifog"})
    assert "square of" in _message("f: d", np.abs(e) ** 2, np.abs(e), 1e-7)
    assert "other places" in _message("f: out", e.transpose(0, 2, 1).reshape(e.shape), e, 1e-7)


def test_regions_suspects_steps_terms_and_non_finite():
    rng = _rng(6)
    x, dout = rng.standard_normal(20), rng.standard_normal(20)
    leaky = dout * np.where(x > 0, 1.0, 0.01)
    relu = dout * (x > 0)
    assert "only where x < 0" in _message("f: dx", relu, leaky, 1e-7, context={"regions": {"where x < 0": x < 0}})
    ctx = {"suspects": {"the mask taken from dout > 0": dout * (dout > 0)}}
    assert "a known mistake gives: the mask taken from dout > 0" in _message(
        "f: dx", dout * (dout > 0), relu, 1e-7, context=ctx
    )
    w0, step = rng.standard_normal(5), rng.standard_normal(5)
    assert "opposite way" in _message("f: w", w0 - step, w0 + step, 1e-12, context={"start": w0})
    W, dW = rng.standard_normal((3, 4)), x[:12].reshape(3, 4)
    assert "off by -1 * reg * W" in _message("f: dW", dW, dW + 0.3 * W, 1e-7, context={"terms": {"reg * W": 0.3 * W}})
    assert "NaN" in _message("f: loss", np.nan, 1.0, 1e-7)


def test_all_close_reports_the_most_telling_output():
    rng = _rng(7)
    dx, db = rng.standard_normal((3, 4)), rng.standard_normal(4)
    with pytest.raises(AssertionError) as info:
        assert_all_close(
            "affine_backward",
            {"dx": (dx + rng.standard_normal((3, 4)), dx), "db": (db / 3, db)},
            1e-7,
            context={"N": 3},
        )
    assert str(info.value).startswith("affine_backward: db is 1/3 of the expected value (N = 3)")
    assert str(info.value).endswith("(dx also differs)")
    assert_all_close("affine_backward", {"dx": (dx, dx), "db": (db, db)}, 1e-7)


def test_a_shape_alone_is_described():
    assert describe_shape("f: dw", (5, 6), (6, 5), {"expected_as": "w"}).startswith(
        "f: dw has shape (5, 6) where w has (6, 5), the transpose of its shape"
    )
    assert "wrong axis" in describe_shape("f: dgamma", (6,), (5,))


def test_unexplained_differences_say_how_far_and_where_without_arrays():
    e = _rng(8).standard_normal((50, 50))
    msg = _message("f: out", e + _rng(9).standard_normal(e.shape), e, 1e-7)
    assert "relative error" in msg and "[" not in msg and len(msg) < 200
    assert diagnose(np.array([7, 5, 5]), np.array([2, 5, 5])).key == "partial:axis 0"
