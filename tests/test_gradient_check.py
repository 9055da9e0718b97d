"""gradient_check helpers against functions whose gradients are known in closed form."""

import numpy as np
import pytest

from common.gradient_check import (
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    grad_check_sparse,
    rel_error,
)


def test_rel_error_values_and_shapes():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    assert rel_error(0.0, 0.0) == 0.0  # guarded by the 1e-8 floor, no division by zero
    assert rel_error(2.0, np.array([2.0, 2.0])) == 0.0  # a scalar against an array is allowed
    with pytest.raises(ValueError, match="shape"):
        rel_error(np.zeros(3), np.zeros((3, 1)))


def test_eval_numerical_gradient_quadratic_and_restores_x():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 4))
    x = rng.standard_normal(4)
    x0 = x.copy()
    grad = eval_numerical_gradient(lambda v: 0.5 * v @ A @ v + np.sin(v).sum(), x, verbose=False)
    expected = 0.5 * (A + A.T) @ x0 + np.cos(x0)
    assert rel_error(grad, expected) < 1e-8
    assert np.array_equal(x, x0), "x must be restored after the evaluation"


def test_eval_numerical_gradient_multidimensional_and_verbose(capsys):
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    grad = eval_numerical_gradient(lambda v: np.sum(v**3), x, verbose=True)
    assert rel_error(grad, 3 * x**2) < 1e-8
    assert "(1, 2)" in capsys.readouterr().out


def test_eval_numerical_gradient_array_backpropagates_df():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((3, 5))
    x = rng.standard_normal((2, 3))
    df = rng.standard_normal((2, 5))
    grad = eval_numerical_gradient_array(lambda v: np.tanh(v @ W), x, df)
    expected = (df * (1 - np.tanh(x @ W) ** 2)) @ W.T
    assert rel_error(grad, expected) < 1e-8


def test_grad_check_sparse_separates_right_from_wrong(capsys):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 6))

    def f(v):
        return np.sum(v**2)

    good = grad_check_sparse(f, x, 2 * x, num_checks=8, rng=0)
    assert len(good) == 8 and max(good) < 1e-8
    assert "relative error" in capsys.readouterr().out
    bad = grad_check_sparse(f, x, 3 * x, num_checks=8, rng=0, verbose=False)
    assert min(bad) > 0.1
    with pytest.raises(ValueError, match="analytic_grad"):
        grad_check_sparse(f, x, np.zeros(3))


@pytest.mark.parametrize(
    "check",
    [
        lambda x: eval_numerical_gradient(lambda v: np.sum(v**2), x, verbose=False),
        lambda x: eval_numerical_gradient_array(lambda v: v**2, x, np.ones(3)),
        lambda x: grad_check_sparse(lambda v: np.sum(v**2), x, 2 * x, verbose=False),
    ],
)
def test_integer_x_is_a_value_error(check):
    # x is perturbed in place by +-h: an integer array would truncate that to 0 and report a zero gradient
    with pytest.raises(ValueError, match="floating-point"):
        check(np.arange(3))
