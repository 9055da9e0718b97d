"""Fast convolution and max pooling: im2col + one GEMM (col2im in Cython), and a reshape trick for pools that tile.

Same signatures and results as the naive layers in ``common.layers`` (relative error < 1e-8). Each function
also takes an optional ``backend``: ``'cython'`` (the compiled ``common.im2col_cython``), ``'numpy'`` (the
pure-NumPy ``common.im2col``) or None (Cython when it is built, else NumPy with one warning saying how to
build it). Both backends give the same numbers; only the speed differs.
"""

from __future__ import annotations

import warnings

import numpy as np

from common.im2col import col2im, im2col
from common.layers import (
    _check_conv,
    _check_dout,
    _check_pool,
    _conv_out_shape,
    _pool_out_shape,
)

try:
    from common.im2col_cython import col2im_cython, im2col_cython
except ImportError:  # not compiled yet: the NumPy path below gives the same results
    col2im_cython = im2col_cython = None

#: True when the Cython extension ``common.im2col_cython`` is built and importable.
HAVE_CYTHON = im2col_cython is not None

BUILD_HINT = (
    "the Cython extension common.im2col_cython is not built, so the fast layers use the "
    "pure-NumPy im2col/col2im (same results, slower). Build it from the repository root with "
    "`pip install -e .` or `make build` (= `python setup.py build_ext --inplace`)."
)


class CythonNotBuiltWarning(UserWarning):
    """Warned once when the fast layers fall back to NumPy because the extension is missing."""


_warned = False


def _backend(backend: str | None) -> str:
    """Resolve ``backend`` (None | 'cython' | 'numpy') to 'cython' or 'numpy'; warns once on fallback."""
    global _warned
    if backend is None:
        if HAVE_CYTHON:
            return "cython"
        if not _warned:
            warnings.warn(BUILD_HINT, CythonNotBuiltWarning, stacklevel=3)
            _warned = True
        return "numpy"
    if backend == "cython" and not HAVE_CYTHON:
        raise ImportError("backend='cython' was requested but " + BUILD_HINT)
    if backend not in ("cython", "numpy"):
        raise ValueError(f"backend must be 'cython', 'numpy' or None, got {backend!r}")
    return backend


def _im2col(x, field_height, field_width, padding, stride, backend):
    if backend == "cython":
        return im2col_cython(x, field_height, field_width, padding, stride)
    return im2col(x, field_height, field_width, padding, stride)


def _col2im(cols, x_shape, field_height, field_width, padding, stride, backend):
    if backend == "cython":
        N, C, H, W = x_shape
        return col2im_cython(cols, N, C, H, W, field_height, field_width, padding, stride)
    return col2im(cols, x_shape, field_height, field_width, padding, stride)


def _float(a):
    """float32/float64 arrays stay as they are; anything else becomes float64."""
    a = np.asarray(a)
    return a if a.dtype in (np.float32, np.float64) else a.astype(np.float64)


# ---------------------------------------------------------------------------- convolution
def conv_forward_fast(x, w, b, conv_param, backend=None):
    """Convolution as one matrix multiply: ``out = w.reshape(F, -1) @ im2col(x) + b``.

    Inputs: x (N, C, H, W); w (F, C, HH, WW); b (F,); conv_param {'stride', 'pad'} (checked as in
    ``conv_forward_naive``).
    Returns (out, cache): out (N, F, H', W') with ``H' = 1 + (H + 2*pad - HH) // stride`` (same for W'),
    a transposed view of the GEMM result (not C-contiguous, like CS231n's).
    """
    _check_conv(x, w, b, conv_param)
    backend = _backend(backend)
    N, F, H_out, W_out = _conv_out_shape(x.shape, w.shape, conv_param)
    _, _, HH, WW = w.shape
    stride, pad = conv_param["stride"], conv_param["pad"]

    x_cols = _im2col(x, HH, WW, pad, stride, backend)  # (C*HH*WW, N*H'*W')
    out = w.reshape(F, -1) @ x_cols  # (F, C*HH*WW) @ (C*HH*WW, N*H'*W') -> (F, N*H'*W')
    out += b[:, None]
    # (F, N*H'*W') -> (N, F, H', W') as a view: a copy would cost a pass over memory, and backward's
    # transpose back to (F, N*H'*W') is then free when dout has the same layout (as ReLU/pool outputs do)
    out = out.reshape(F, N, H_out, W_out).transpose(1, 0, 2, 3)
    cache = (x.shape, w, b, conv_param, x_cols, backend)
    return out, cache


def conv_backward_fast(dout, cache):
    """Backward pass of ``conv_forward_fast``: two GEMMs and one col2im.

    ``dw = dout_2d @ x_cols.T``, ``dx = col2im(w_2d.T @ dout_2d)``, ``db = sum over (N, H', W') of dout``.
    Inputs: dout (N, F, H', W'). Returns (dx, dw, db) with the shapes of x, w, b; dx has the dtype of x
    and dw that of w (as in ``conv_backward_naive``), whatever the dtype of dout.
    """
    x_shape, w, b, conv_param, x_cols, backend = cache
    _check_dout(dout, _conv_out_shape(x_shape, w.shape, conv_param))
    F, C, HH, WW = w.shape
    stride, pad = conv_param["stride"], conv_param["pad"]
    dout_2d = dout.transpose(1, 0, 2, 3).reshape(F, -1)  # (N, F, H', W') -> (F, N*H'*W')
    db = dout_2d.sum(axis=1)  # (F,)
    dw = (dout_2d @ x_cols.T).reshape(w.shape).astype(w.dtype, copy=False)  # (F, N*H'*W') @ (N*H'*W', C*HH*WW)
    dx_cols = (w.reshape(F, -1).T @ dout_2d).astype(x_cols.dtype, copy=False)  # (C*HH*WW, F) @ (F, N*H'*W')
    dx = _col2im(dx_cols, x_shape, HH, WW, pad, stride, backend)  # (N, C, H, W)
    return dx, dw, db


# ---------------------------------------------------------------------------- max pooling
# A NaN counts as the maximum of its window, as in np.max and np.argmax and so in the naive layers: the
# output is NaN there and the window's gradient goes to its first NaN.
def _tiles(x, ph, pw, stride):
    """True when the pooling windows tile the input exactly (no overlap, no gaps)."""
    return ph == pw == stride and x.shape[2] % ph == 0 and x.shape[3] % pw == 0


def _first_max_masks(taps, out):
    """For each tap (row-major order) of the windows whose maxima are ``out``: where it holds the window's
    first maximum. ``taps`` yields arrays shaped like ``out``; a NaN maximum matches the first NaN."""
    nan_out = np.isnan(out).any()
    free = np.ones(out.shape, dtype=bool)  # windows whose maximum has not been found yet
    for tap in taps:
        is_max = tap == out
        if nan_out:
            is_max |= np.isnan(tap)  # only windows whose maximum is NaN hold a NaN
        hit = free & is_max
        free &= ~hit
        yield hit


def max_pool_forward_fast(x, pool_param, backend=None):
    """Max pooling: the reshape trick when the windows tile the input, im2col otherwise.

    Inputs: x (N, C, H, W); pool_param {'pool_height', 'pool_width', 'stride'} (no padding).
    Returns (out, cache): out (N, C, H', W'), ``H' = 1 + (H - pool_height) // stride``.
    """
    _check_pool(x, pool_param)
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    if _tiles(x, ph, pw, stride):
        return max_pool_forward_reshape(x, pool_param)
    return max_pool_forward_im2col(x, pool_param, backend=backend)


def max_pool_backward_fast(dout, cache):
    """Backward pass of ``max_pool_forward_fast``: each window's gradient goes to its (first) maximum."""
    method = cache[0]
    if method == "reshape":
        return max_pool_backward_reshape(dout, cache)
    return max_pool_backward_im2col(dout, cache)


def max_pool_forward_reshape(x, pool_param):
    """Max pooling for windows that tile the input: view x as (N, C, H', ph, W', pw), max over the taps.

    The max is taken with one ``np.maximum`` per window tap (ph * pw of them) on strided views of the
    reshaped array: much faster than ``max(axis=(3, 5))``, whose reduction over two short strided axes
    is slow in NumPy. Raises ``ValueError`` unless pool_height == pool_width == stride divide H and W.
    """
    _check_pool(x, pool_param)
    x = _float(x)
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    if not _tiles(x, ph, pw, stride):
        raise ValueError(
            "max_pool_forward_reshape needs pool_height == pool_width == stride dividing H and W, "
            f"got pool_param {pool_param} for x of shape {x.shape}; use max_pool_forward_im2col"
        )
    N, C, H, W = x.shape
    x_r = x.reshape(N, C, H // ph, ph, W // pw, pw)  # a view: window (i, j) is x_r[:, :, i, :, j, :]
    out = x_r[:, :, :, 0, :, 0].copy()  # (N, C, H', W')
    for i in range(ph):
        for j in range(pw):
            np.maximum(out, x_r[:, :, :, i, :, j], out=out)  # propagates NaN
    return out, ("reshape", x, out, pool_param)


def max_pool_backward_reshape(dout, cache):
    """Backward of ``max_pool_forward_reshape``: route dout to the first maximum of each window (like naive)."""
    _, x, out, pool_param = cache
    _check_dout(dout, out.shape)
    N, C, H, W = x.shape
    ph, pw = pool_param["pool_height"], pool_param["pool_width"]
    x_r = x.reshape(N, C, H // ph, ph, W // pw, pw)
    dx_r = np.zeros(x_r.shape, dtype=np.result_type(dout, x))  # (N, C, H', ph, W', pw)
    taps = [(i, j) for i in range(ph) for j in range(pw)]
    hits = _first_max_masks((x_r[:, :, :, i, :, j] for i, j in taps), out)
    for (i, j), hit in zip(taps, hits):
        np.multiply(dout, hit, out=dx_r[:, :, :, i, :, j])
    return dx_r.reshape(N, C, H, W)


def max_pool_forward_im2col(x, pool_param, backend=None):
    """Max pooling for any window/stride: im2col each channel separately and take the max of each column."""
    _check_pool(x, pool_param)
    x = _float(x)
    backend = _backend(backend)
    N, C, H, W = x.shape
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    x_cols = _im2col(x.reshape(N * C, 1, H, W), ph, pw, 0, stride, backend)  # (ph*pw, N*C*H'*W')
    out_flat = x_cols.max(axis=0)  # columns are ordered (n, c, y, x), like the output; propagates NaN
    out = out_flat.reshape(_pool_out_shape(x.shape, pool_param))
    return out, ("im2col", x.shape, x_cols, out_flat, pool_param, backend)


def max_pool_backward_im2col(dout, cache):
    """Backward of ``max_pool_forward_im2col``: dout goes to the first maximal row of each column, then col2im.

    (A loop over the ph*pw rows: ``argmax(axis=0)`` would be several times slower in NumPy.)
    """
    _, x_shape, x_cols, out_flat, pool_param, backend = cache
    _check_dout(dout, _pool_out_shape(x_shape, pool_param))
    N, C, H, W = x_shape
    dout_flat = dout.reshape(-1)  # (N*C*H'*W',), the column order
    dx_cols = np.zeros(x_cols.shape, dtype=np.result_type(dout, x_cols))
    for k, hit in enumerate(_first_max_masks(x_cols, out_flat)):
        np.multiply(dout_flat, hit, out=dx_cols[k])
    dx = _col2im(
        dx_cols, (N * C, 1, H, W), pool_param["pool_height"], pool_param["pool_width"], 0, pool_param["stride"], backend
    )
    return dx.reshape(N, C, H, W)
