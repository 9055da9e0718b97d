"""Numerical gradients by centred differences, and the relative error used by every check in the course."""

import numpy as np


def rel_error(x, y):
    """Maximum relative error ``max |x - y| / max(1e-8, |x| + |y|)``, elementwise.

    The shapes must be equal (a scalar may be compared with an array): a silent broadcast of
    (N,) against (N, 1) would compare the wrong entries.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape and x.ndim and y.ndim:
        raise ValueError(f"rel_error needs equal shapes, got x {x.shape} and y {y.shape}")
    if x.size == 0:
        return 0.0
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def _check_x(x):
    """x is a floating-point array: it is perturbed in place by +-h, which an integer array would truncate."""
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"x must be a floating-point NumPy array (float64 for gradient checks), got "
            f"{type(x).__name__} of dtype {getattr(x, 'dtype', None)}; convert it with "
            f"x.astype(np.float64)"
        )


def eval_numerical_gradient(f, x, verbose=True, h=1e-5):
    """Gradient of a scalar function ``f(x)`` at ``x`` by centred differences.

    ``df/dx_i ~ (f(x + h e_i) - f(x - h e_i)) / (2h)``. ``x`` is modified in place during the
    evaluation and restored afterwards. Returns an array shaped like ``x``.
    Use float64 arrays: in float32 the round-off of ``f`` swamps the difference.
    """
    _check_x(x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
        it.iternext()
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Gradient of ``sum(f(x) * df)`` with respect to ``x``: backpropagates the upstream gradient ``df``.

    ``f`` maps an array to an array shaped like ``df``. Returns an array shaped like ``x``.
    """
    _check_x(x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), copy=True)
        x[ix] = old - h
        neg = np.array(f(x), copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def grad_check_sparse(f, x, analytic_grad, num_checks=10, h=1e-5, rng=None, verbose=True):
    """Compare ``analytic_grad`` with centred differences of ``f`` at ``num_checks`` random entries of ``x``.

    ``rng``: a ``np.random.Generator`` or seed for picking the entries (a fresh one when None).
    Returns the list of relative errors (and prints one line per entry when ``verbose``).
    """
    _check_x(x)
    if np.shape(analytic_grad) != np.shape(x):
        raise ValueError(f"analytic_grad has shape {np.shape(analytic_grad)} but x has shape {np.shape(x)}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    errors = []
    for _ in range(num_checks):
        ix = tuple(int(rng.integers(m)) for m in x.shape)
        old = x[ix]
        x[ix] = old + h
        fxph = f(x)
        x[ix] = old - h
        fxmh = f(x)
        x[ix] = old
        grad_numerical = (fxph - fxmh) / (2 * h)
        grad_analytic = analytic_grad[ix]
        err = abs(grad_numerical - grad_analytic) / max(1e-12, abs(grad_numerical) + abs(grad_analytic))
        errors.append(float(err))
        if verbose:
            print(f"numerical: {grad_numerical:f} analytic: {grad_analytic:f}, relative error: {err:e}")
    return errors
