"""im2col / col2im in pure NumPy: unroll convolution windows into columns so a convolution is one GEMM.

Layout shared with the Cython version (``common/im2col_cython.pyx``), for ``x`` of shape ``(N, C, H, W)``
and a ``field_height x field_width`` window:

    cols[(c * field_height + i) * field_width + j, (n * H_out + y) * W_out + x]
        = x_padded[n, c, y * stride + i, x * stride + j]

so ``cols`` is ``(C * field_height * field_width, N * H_out * W_out)``: one row per filter tap, one
column per output position. ``col2im`` is the adjoint: it scatters columns back and SUMS where windows
overlap (that sum is exactly the backward pass of ``im2col``).
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.lib.stride_tricks import as_strided


def output_size(size: int, field: int, stride: int, pad: int, name: str = "H") -> int:
    """Output length ``1 + (size + 2 * pad - field) // stride`` along one spatial dimension.

    Raises ``ValueError`` (naming the dimension ``name``) when ``stride``/``field`` are not integers >= 1
    or ``pad`` not an integer >= 0 (a float such as 1.0 is refused too), when the window does not fit in
    the padded input, or when the geometry does not divide evenly (some input rows would be dropped).
    """
    for arg, value, low in (("stride", stride, 1), ("pad", pad, 0), ("filter/pool size", field, 1)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            hint = f"; write {int(value)}, not {value!r}" if isinstance(value, float) and value.is_integer() else ""
            raise ValueError(f"{arg} must be an int, got {value!r} of type {type(value).__name__}{hint}")
        if value < low:
            raise ValueError(f"{arg} must be an integer >= {low}, got {value}")
    padded = size + 2 * pad
    if field > padded:
        raise ValueError(
            f"dimension {name}: window of size {field} does not fit in the input of size "
            f"{size} (padded to {padded}); use a smaller window or more padding"
        )
    if (padded - field) % stride != 0:
        raise ValueError(
            f"dimension {name}: {name} + 2*pad - window = {size} + 2*{pad} - {field} = "
            f"{padded - field} is not divisible by stride {stride}; change pad or stride "
            f"so that it divides evenly"
        )
    return 1 + (padded - field) // stride


def im2col(x: np.ndarray, field_height: int, field_width: int, padding: int = 0, stride: int = 1) -> np.ndarray:
    """Unroll every ``field_height x field_width`` window of zero-padded ``x`` into a column.

    x: ``(N, C, H, W)``. Returns ``cols``: ``(C * field_height * field_width, N * H_out * W_out)``
    (layout in the module docstring). Implemented with a strided view of the padded input and one copy.
    """
    N, C, H, W = x.shape
    H_out = output_size(H, field_height, stride, padding, "H")
    W_out = output_size(W, field_width, stride, padding, "W")
    x_padded = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding))) if padding else x
    x_padded = np.ascontiguousarray(x_padded)
    sN, sC, sH, sW = x_padded.strides
    # a view (C, fh, fw, N, H_out, W_out) of the windows; nothing is copied until ascontiguousarray
    windows = as_strided(
        x_padded,
        shape=(C, field_height, field_width, N, H_out, W_out),
        strides=(sC, sH, sW, sN, stride * sH, stride * sW),
        writeable=False,
    )
    return np.ascontiguousarray(windows).reshape(C * field_height * field_width, N * H_out * W_out)


def col2im(
    cols: np.ndarray, x_shape: tuple, field_height: int, field_width: int, padding: int = 0, stride: int = 1
) -> np.ndarray:
    """Adjoint of ``im2col``: add each column back into its window; overlapping windows sum.

    cols: ``(C * field_height * field_width, N * H_out * W_out)``; returns an array of shape ``x_shape``
    ``(N, C, H, W)``. One vectorised add per filter tap (``field_height * field_width`` of them).
    """
    N, C, H, W = x_shape
    H_out = output_size(H, field_height, stride, padding, "H")
    W_out = output_size(W, field_width, stride, padding, "W")
    expected = (C * field_height * field_width, N * H_out * W_out)
    if cols.shape != expected:
        raise ValueError(f"cols must have shape {expected} for x_shape {tuple(x_shape)}, got {cols.shape}")
    x_padded = np.zeros((N, C, H + 2 * padding, W + 2 * padding), dtype=cols.dtype)
    cols6 = cols.reshape(C, field_height, field_width, N, H_out, W_out)
    for i in range(field_height):
        for j in range(field_width):
            # (C, N, H_out, W_out) -> (N, C, H_out, W_out), added at the strided window positions
            x_padded[:, :, i : i + stride * H_out : stride, j : j + stride * W_out : stride] += cols6[
                :, i, j
            ].transpose(1, 0, 2, 3)
    if padding == 0:
        return x_padded
    return x_padded[:, :, padding:-padding, padding:-padding]  # a view: no second pass over memory
