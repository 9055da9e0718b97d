"""Fast conv/pool (im2col, Cython and NumPy backends) against the naive layers, and the fallback warning."""

import warnings

import numpy as np
import pytest

from common import fast_layers, layers
from common.gradient_check import rel_error
from common.im2col import col2im, im2col

FAST_TOL = 1e-8  # API contract: fast == naive to relative error < 1e-8 (float64)

needs_cython = pytest.mark.skipif(
    not fast_layers.HAVE_CYTHON, reason="common.im2col_cython not built (run `make build`)"
)
BACKENDS = ["numpy", pytest.param("cython", marks=needs_cython)]

CONV_GEOMETRIES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1),
    ((3, 2, 7, 9), (3, 2, 3, 3), 2, 1),
    ((2, 3, 6, 8), (2, 3, 2, 4), 2, 0),
    ((2, 1, 5, 6), (3, 1, 3, 5), 1, 2),
    ((1, 3, 32, 32), (5, 3, 7, 7), 1, 3),
]
POOL_GEOMETRIES = [
    ((2, 3, 8, 8), 2, 2, 2),  # tiles: reshape trick
    ((2, 2, 6, 9), 3, 3, 3),  # tiles with a 3x3 window
    ((2, 2, 7, 9), 3, 3, 2),  # overlapping: im2col
    ((1, 2, 6, 9), 2, 3, 1),  # non-square, stride 1
    ((2, 3, 4, 6), 2, 2, 1),
]


def _conv_case(x_shape, w_shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape,w_shape,stride,pad", CONV_GEOMETRIES)
def test_conv_fast_equals_naive(backend, x_shape, w_shape, stride, pad):
    x, w, b = _conv_case(x_shape, w_shape)
    conv_param = {"stride": stride, "pad": pad}
    out_naive, cache_naive = layers.conv_forward_naive(x, w, b, conv_param)
    out_fast, cache_fast = fast_layers.conv_forward_fast(x, w, b, conv_param, backend=backend)
    assert out_fast.shape == out_naive.shape
    assert rel_error(out_fast, out_naive) < FAST_TOL
    dout = np.random.default_rng(1).standard_normal(out_naive.shape)
    for got, want in zip(
        fast_layers.conv_backward_fast(dout, cache_fast), layers.conv_backward_naive(dout, cache_naive)
    ):
        assert got.shape == want.shape
        assert rel_error(got, want) < FAST_TOL


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape,ph,pw,stride", POOL_GEOMETRIES)
def test_max_pool_fast_equals_naive(backend, x_shape, ph, pw, stride):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape)
    pool_param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out_naive, cache_naive = layers.max_pool_forward_naive(x, pool_param)
    out_fast, cache_fast = fast_layers.max_pool_forward_fast(x, pool_param, backend=backend)
    assert rel_error(out_fast, out_naive) == 0.0
    dout = rng.standard_normal(out_naive.shape)
    dx_fast = fast_layers.max_pool_backward_fast(dout, cache_fast)
    assert rel_error(dx_fast, layers.max_pool_backward_naive(dout, cache_naive)) < FAST_TOL


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_fast_ties_match_naive(backend):
    # ReLU outputs are full of zeros: every path must send each window's gradient to the same (first) maximum
    x = np.maximum(0, np.random.default_rng(3).standard_normal((2, 3, 6, 6)))
    x[0, 0] = 0.0
    for pool_param in (
        {"pool_height": 2, "pool_width": 2, "stride": 2},
        {"pool_height": 2, "pool_width": 2, "stride": 1},
    ):
        out, cache = layers.max_pool_forward_naive(x, pool_param)
        dout = np.random.default_rng(4).standard_normal(out.shape)
        out_f, cache_f = fast_layers.max_pool_forward_fast(x, pool_param, backend=backend)
        assert np.array_equal(out, out_f)
        dx, dx_f = layers.max_pool_backward_naive(dout, cache), fast_layers.max_pool_backward_fast(dout, cache_f)
        assert rel_error(dx, dx_f) < FAST_TOL  # a tie routed elsewhere would be an O(1) error


def test_pool_reshape_and_im2col_paths_agree():
    x = np.random.default_rng(5).standard_normal((3, 2, 8, 6))
    pool_param = {"pool_height": 2, "pool_width": 2, "stride": 2}
    out_r, cache_r = fast_layers.max_pool_forward_reshape(x, pool_param)
    out_i, cache_i = fast_layers.max_pool_forward_im2col(x, pool_param, backend="numpy")
    assert np.array_equal(out_r, out_i)
    dout = np.random.default_rng(6).standard_normal(out_r.shape)
    assert np.array_equal(
        fast_layers.max_pool_backward_reshape(dout, cache_r), fast_layers.max_pool_backward_im2col(dout, cache_i)
    )
    with pytest.raises(ValueError, match="reshape"):
        fast_layers.max_pool_forward_reshape(x, {"pool_height": 3, "pool_width": 3, "stride": 1})


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fast_layers_keep_the_dtype(dtype, backend):
    x, w, b = (a.astype(dtype) for a in _conv_case((2, 3, 6, 6), (4, 3, 3, 3)))
    out, cache = fast_layers.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1}, backend=backend)
    dx, dw, db = fast_layers.conv_backward_fast(np.ones_like(out), cache)
    assert out.dtype == dx.dtype == dw.dtype == db.dtype == dtype
    out_ref, _ = layers.conv_forward_naive(
        x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), {"stride": 1, "pad": 1}
    )
    assert rel_error(out, out_ref) < (1e-4 if dtype == np.float32 else FAST_TOL)
    pooled, pcache = fast_layers.max_pool_forward_fast(
        out, {"pool_height": 3, "pool_width": 3, "stride": 3}, backend=backend
    )
    assert pooled.dtype == fast_layers.max_pool_backward_fast(np.ones_like(pooled), pcache).dtype == dtype


# ---------------------------------------------------------------------------- im2col backends
@pytest.mark.parametrize(
    "x_shape,fh,fw,pad,stride", [((2, 3, 7, 5), 3, 3, 1, 2), ((3, 2, 8, 8), 2, 2, 0, 2), ((2, 1, 6, 9), 3, 2, 2, 1)]
)
def test_col2im_is_the_adjoint_of_im2col(x_shape, fh, fw, pad, stride):
    # <im2col(x), c> == <x, col2im(c)> for all x, c: col2im is exactly the backward pass of im2col
    rng = np.random.default_rng(7)
    x = rng.standard_normal(x_shape)
    cols = im2col(x, fh, fw, pad, stride)
    c = rng.standard_normal(cols.shape)
    assert abs(np.sum(cols * c) - np.sum(x * col2im(c, x_shape, fh, fw, pad, stride))) < 1e-10 * np.abs(cols * c).sum()
    # a column is a window: the first column is the top-left window of image 0, channel-major
    x_pad = np.pad(x, [(0, 0)] * 2 + [(pad, pad)] * 2)  # zeros around H and W
    assert np.array_equal(cols[:, 0], x_pad[0, :, :fh, :fw].ravel())


@needs_cython
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "x_shape,fh,fw,pad,stride", [((2, 3, 7, 5), 3, 3, 1, 2), ((2, 1, 6, 9), 3, 2, 2, 1), ((4, 3, 31, 31), 3, 3, 1, 2)]
)
def test_numpy_fallback_equals_cython(dtype, x_shape, fh, fw, pad, stride):
    from common.im2col_cython import col2im_cython, im2col_cython

    rng = np.random.default_rng(8)
    x = rng.standard_normal(x_shape).astype(dtype)
    cols = im2col(x, fh, fw, pad, stride)
    cols_cy = im2col_cython(x, fh, fw, pad, stride)
    assert cols_cy.dtype == dtype and np.array_equal(cols, cols_cy)
    c = rng.standard_normal(cols.shape).astype(dtype)
    rtol = 1e-6 if dtype == np.float32 else 1e-14  # the sums of overlapping windows run in a different order
    np.testing.assert_allclose(
        col2im_cython(c, *x_shape, fh, fw, pad, stride), col2im(c, x_shape, fh, fw, pad, stride), rtol=rtol, atol=rtol
    )


def test_missing_extension_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(fast_layers, "HAVE_CYTHON", False)
    monkeypatch.setattr(fast_layers, "_warned", False)
    x, w, b = _conv_case((2, 3, 6, 6), (2, 3, 3, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, cache = fast_layers.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1})
        fast_layers.conv_backward_fast(np.ones_like(out), cache)
        fast_layers.max_pool_forward_fast(x, {"pool_height": 3, "pool_width": 3, "stride": 1})
    ours = [c for c in caught if issubclass(c.category, fast_layers.CythonNotBuiltWarning)]
    assert len(ours) == 1
    assert "pip install -e ." in str(ours[0].message) and "make build" in str(ours[0].message)
    assert cache[-1] == "numpy"
    with pytest.raises(ImportError, match="make build"):
        fast_layers.conv_forward_fast(x, w, b, {"stride": 1, "pad": 1}, backend="cython")


def test_fast_layers_reject_impossible_geometry():
    with pytest.raises(ValueError, match="dimension W"):
        fast_layers.conv_forward_fast(
            np.zeros((1, 1, 4, 5)), np.zeros((1, 1, 2, 2)), np.zeros(1), {"stride": 2, "pad": 0}
        )
    with pytest.raises(ValueError, match="dimension H"):
        fast_layers.max_pool_forward_fast(np.zeros((1, 1, 5, 4)), {"pool_height": 2, "pool_width": 2, "stride": 2})
    with pytest.raises(ValueError, match="backend"):
        fast_layers.conv_forward_fast(
            np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), np.zeros(1), {"stride": 1, "pad": 1}, backend="fortran"
        )
