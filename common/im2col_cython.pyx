# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""im2col / col2im in Cython (float32 and float64), same column layout as ``common/im2col.py``.

    cols[(c * field_height + i) * field_width + j, (n * H_out + y) * W_out + x]
        = x_padded[n, c, y * stride + i, x * stride + j]

Built by ``pip install -e .`` (setup.py cythonizes this file) or ``make build``.
"""
import numpy as np

from cython cimport floating
from libc.string cimport memcpy

from common.im2col import output_size


cdef void _im2col_fill(const floating[:, :, :, ::1] x_padded, floating[:, ::1] cols,
                       int field_height, int field_width, int stride, int H_out, int W_out) noexcept nogil:
    """cols[row, col] = x_padded[n, c, y*stride + i, x*stride + j].

    Each (row, n, y) step copies one output row of W_out values: a memcpy when stride == 1.
    """
    cdef Py_ssize_t N = x_padded.shape[0]
    cdef Py_ssize_t C = x_padded.shape[1]
    cdef Py_ssize_t c, i, j, n, y, xx, row
    cdef floating* dst
    cdef const floating* src
    for c in range(C):
        for i in range(field_height):
            for j in range(field_width):
                row = (c * field_height + i) * field_width + j
                dst = &cols[row, 0]
                for n in range(N):
                    for y in range(H_out):
                        src = &x_padded[n, c, y * stride + i, j]
                        if stride == 1:
                            memcpy(dst, src, W_out * sizeof(floating))
                        else:
                            for xx in range(W_out):
                                dst[xx] = src[xx * stride]
                        dst += W_out


cdef void _col2im_add(const floating[:, ::1] cols, floating[:, :, :, ::1] x_padded,
                      int field_height, int field_width, int stride, int H_out, int W_out) noexcept nogil:
    """x_padded[n, c, y*stride + i, x*stride + j] += cols[row, col] (the adjoint of _im2col_fill)."""
    cdef Py_ssize_t N = x_padded.shape[0]
    cdef Py_ssize_t C = x_padded.shape[1]
    cdef Py_ssize_t c, i, j, n, y, xx, row
    cdef const floating* src
    cdef floating* dst
    for c in range(C):
        for i in range(field_height):
            for j in range(field_width):
                row = (c * field_height + i) * field_width + j
                src = &cols[row, 0]
                for n in range(N):
                    for y in range(H_out):
                        dst = &x_padded[n, c, y * stride + i, j]
                        for xx in range(W_out):
                            dst[xx * stride] += src[xx]
                        src += W_out


def _float_array(a):
    """A C-contiguous float32/float64 array (other dtypes become float64)."""
    a = np.asarray(a)
    if a.dtype != np.float32 and a.dtype != np.float64:
        a = a.astype(np.float64)
    return np.ascontiguousarray(a)


def im2col_cython(x, int field_height, int field_width, int padding, int stride):
    """x: (N, C, H, W) -> cols: (C * field_height * field_width, N * H_out * W_out)."""
    cdef const float[:, :, :, ::1] x32
    cdef const double[:, :, :, ::1] x64
    cdef float[:, ::1] cols32
    cdef double[:, ::1] cols64
    cdef int H_out, W_out
    x = _float_array(x)
    N, C, H, W = x.shape
    H_out = output_size(H, field_height, stride, padding, "H")
    W_out = output_size(W, field_width, stride, padding, "W")
    if padding > 0:
        x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    cols = np.empty((C * field_height * field_width, N * H_out * W_out), dtype=x.dtype)
    if cols.size == 0:
        return cols
    if x.dtype == np.float32:
        x32, cols32 = x, cols
        with nogil:
            _im2col_fill(x32, cols32, field_height, field_width, stride, H_out, W_out)
    else:
        x64, cols64 = x, cols
        with nogil:
            _im2col_fill(x64, cols64, field_height, field_width, stride, H_out, W_out)
    return cols


def col2im_cython(cols, int N, int C, int H, int W, int field_height, int field_width, int padding, int stride):
    """cols: (C * field_height * field_width, N * H_out * W_out) -> (N, C, H, W), overlapping windows summed."""
    cdef const float[:, ::1] cols32
    cdef const double[:, ::1] cols64
    cdef float[:, :, :, ::1] x32
    cdef double[:, :, :, ::1] x64
    cdef int H_out, W_out
    cols = _float_array(cols)
    H_out = output_size(H, field_height, stride, padding, "H")
    W_out = output_size(W, field_width, stride, padding, "W")
    expected = (C * field_height * field_width, N * H_out * W_out)
    if cols.shape != expected:
        raise ValueError(f"cols must have shape {expected} for x of shape {(N, C, H, W)}, got {cols.shape}")
    x_padded = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    if cols.size > 0 and cols.dtype == np.float32:
        cols32, x32 = cols, x_padded
        with nogil:
            _col2im_add(cols32, x32, field_height, field_width, stride, H_out, W_out)
    elif cols.size > 0:
        cols64, x64 = cols, x_padded
        with nogil:
            _col2im_add(cols64, x64, field_height, field_width, stride, H_out, W_out)
    if padding > 0:
        return x_padded[:, :, padding:-padding, padding:-padding]  # a view: no second pass over memory
    return x_padded
