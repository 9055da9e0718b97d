"""Say what a wrong result most likely means, from the result alone.

A check that compares an output with the expected one calls :func:`assert_close` (or :func:`assert_all_close`
for the several outputs of one call). When they differ, the ``AssertionError`` names the function, what
differs, the likely mistake and where to look, in a line or two and without array dumps::

    affine_backward: db is 1/3 of the expected value (N = 3): did you average over the batch instead of summing?

The diagnosis looks at the two outputs only, never at the code: a constant factor (matched against the sizes
the check knows: N, p, H*W, ...), a sign flip, a transpose or axes in another order, a shape that keeps the
right values, the right values in the wrong places, an offset shared along some axes (a bias), a shift by one
step, blocks (gates) in another order, a square or a missing square root, a difference confined to a named
region or to some indices of one axis, or the output that a known mistake would give (a *suspect*). What the
check knows goes in ``context``:

- sizes by name, ``{"N": 3, "p": 0.25, "H*W": 20}``: a constant factor is matched against them (and their
  inverses; ``(N-1)/N`` and its square root for integer sizes);
- ``"axes"``: the axes' names, ``("N", "T", "H")``, used to say where a difference lies;
- ``"regions"``: ``{"where x < 0": boolean mask}``: a difference confined to one of them is named;
- ``"suspects"``: ``{"what the mistake is": the output it would give}``;
- ``"blocks"``: ``("i", "f", "o", "g")``: the last axis is these blocks, in this order;
- ``"start"``: where an update started (the weights before an optimiser's steps): the steps taken from it are
  compared too, for a factor or a sign;
- ``"terms"``: ``{"reg * W": array}``: a difference that is a small multiple of one of them is named;
- ``"hints"``: ``{finding key: text}``: what a finding means for this function (the keys are listed in
  :class:`Finding`); it replaces the general hint;
- ``"expected_as"``: how to call the expected value, e.g. ``"the numeric gradient of your forward pass"``.

NumPy arrays, numbers and PyTorch tensors are accepted (tensors are compared as float64 arrays).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Finding", "assert_all_close", "assert_close", "describe_shape", "diagnose", "explain"]

#: Context keys that are not sizes.
_RESERVED = {"axes", "regions", "suspects", "blocks", "hints", "expected_as", "start", "terms"}


@dataclass
class Finding:
    """What differs and what it most likely means.

    ``key`` says which kind of finding it is, and selects the hint a check may give in ``context["hints"]``:
    ``nonfinite``, ``shape``, ``shape:transposed``, ``shape:reshaped``, ``shape:padded``, ``suspect:<label>``,
    ``step:sign``, ``step:factor``, ``term:<name>``, ``zeros``, ``sign``, ``factor:<symbol>`` (``factor:1/N``,
    ``factor:N``, ``factor:p``, ``factor:2``, ``factor:sqrt((N-1)/N)``, ...), ``factor``, ``transposed``, ``axes``,
    ``blocks``, ``shift:<axis>``, ``square``, ``sqrt``, ``offset``, ``offset:<axis>``, ``shuffled``,
    ``region:<name>``, ``partial:<axis>``, ``unexplained``. A hint given for the part before the colon
    (``factor``, ``region``, ...) serves every finding of that kind.
    """

    key: str
    text: str  # what differs, as it reads after the name: "is 1/3 of the expected value (N = 3)"
    hint: str  # the likely mistake: "did you average over the batch instead of summing?"
    rank: int  # how specific the finding is: lower is more telling (to choose among several outputs)

    def message(self, name: str) -> str:
        return f"{name} {self.text}: {self.hint}" if self.hint else f"{name} {self.text}"


# ---------------------------------------------------------------------------------------------------
# Hints: what a finding usually means. A check's context["hints"] replaces them for its function.
# ---------------------------------------------------------------------------------------------------

_FACTOR_HINTS = {
    "1/N": "did you average over the batch instead of summing?",
    "N": "did you forget to divide by N (the loss and its gradient are averages over the batch)?",
    "p": "inverted dropout scales the kept units by 1/p (p is the keep probability): is the 1/p missing?",
    "1/p": "is the 1/p applied twice, or where it does not belong?",
    "2": "twice the expected value: a factor 1/2 (0.5) left out, or a term counted twice?",
    "1/2": "half the expected value: a factor 2 missing (d/dx x**2 = 2x; the gradient of reg * sum(W**2) is "
    "2 * reg * W)?",
}
_VARIANCE_HINT = (
    "the variance divided by {n} - 1 (unbiased, ddof=1) where it is divided by {n} (biased, np.var's default), "
    "or the other way round?"
)
_GENERIC_HINTS = {
    "nonfinite": "an overflow or a division by zero? (exp of large scores overflows: shift them by their max first)",
    "shape": "every output has a fixed shape (a gradient has the shape of what it is the gradient of): "
    "a sum or mean over the wrong axis, or a reshape missing?",
    "shape:transposed": "a transpose too many or too few (x.T @ dout against dout.T @ x)?",
    "shape:reshaped": "the right values in another shape: reshape to the expected shape (or keepdims=True)",
    "shape:padded": "the padding is still there: crop it off at the end",
    "zeros": "nothing was computed, or the gradient never reaches it",
    "sign": "a sign flipped: a minus left out or added (a descent step goes against the gradient)?",
    "transposed": "a transpose too many or too few (x.T @ dout against dout.T @ x)?",
    "axes": "the axes are in another order: a transpose or reshape that mixes them up?",
    "blocks": "the blocks (gates) are in another order than the documented one",
    "shift": "off by one step: each step stores the value of its neighbour (stored before instead of after "
    "the update, or the wrong index)?",
    "square": "the square root is missing?",
    "sqrt": "a square root too many?",
    "offset": "a constant added or left out (a bias, a margin)?",
    "shuffled": "the right values in the wrong places: a reshape that regroups axes without moving them first "
    "(transpose, then reshape)?",
    "region": "only these entries are wrong: look at how the function treats them",
    "partial": "only some positions are wrong: look at what is special about them",
    "unexplained": "",
}


def _factor_hint(symbol: str, name: str = "") -> str:
    """The general hint for a factor ``symbol`` built from the size ``name`` (empty for 2 and 1/2)."""
    if symbol in _FACTOR_HINTS:
        return _FACTOR_HINTS[symbol]
    variance = (f"sqrt(({name}-1)/{name})", f"({name}-1)/{name}", f"sqrt({name}/({name}-1))", f"{name}/({name}-1)")
    if name and symbol in variance:
        return _VARIANCE_HINT.format(n=name)
    if name and symbol == f"1/{name}":
        return f"divided by {name} where it must not be: a mean over {name} where the formula sums?"
    if name and symbol == name:
        return f"a division by {name} missing: a sum where the formula takes a mean, or a normalisation left out?"
    return f"a constant factor {symbol} too many or missing"


# ---------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------


def _as_array(a) -> np.ndarray:
    """A float64 (or integer/bool) NumPy array from an array, a number or a torch tensor."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # a torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.dtype.kind in "fc" or a.dtype == object:
        return a.astype(np.float64)
    return a


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v - round(v)) < 1e-9 * max(1.0, abs(v)):
        return str(int(round(v)))
    return f"{v:.3g}"


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-5) -> bool:
    """``a`` equals ``b`` up to round-off and the noise of numeric gradients, relative to the size of ``b``."""
    if a.shape != b.shape:
        return False
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    scale = max(np.max(np.abs(b), initial=0.0), np.max(np.abs(a), initial=0.0), 1e-12)
    return float(np.max(np.abs(a - b), initial=0.0)) <= rel * scale


def _axis_names(context: dict, ndim: int) -> list[str]:
    names = list(context.get("axes") or [])
    if len(names) != ndim:
        names = [f"axis {k}" for k in range(ndim)]
    return names


def _sizes(context: dict) -> dict[str, float]:
    out = {}
    for k, v in context.items():
        if k in _RESERVED or isinstance(v, bool):
            continue
        if isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v not in (0, 1):
            out[k] = float(v)
    return out


def _factor_candidates(context: dict) -> list[tuple[str, float, str, int]]:
    """``(symbol, value, size name, preference)``: the constant factors worth naming (lower preference first)."""
    cands = []
    for name, v in _sizes(context).items():
        cands += [(name, v, name, 0), (f"1/{name}", 1 / v, name, 0)]
        if v >= 2 and float(v).is_integer():
            r = (v - 1) / v
            cands += [
                (f"({name}-1)/{name}", r, name, 1),
                (f"{name}/({name}-1)", 1 / r, name, 1),
                (f"sqrt(({name}-1)/{name})", math.sqrt(r), name, 1),
                (f"sqrt({name}/({name}-1))", math.sqrt(1 / r), name, 1),
                (f"sqrt({name})", math.sqrt(v), name, 2),
                (f"1/sqrt({name})", 1 / math.sqrt(v), name, 2),
            ]
    cands += [("2", 2.0, "", 3), ("1/2", 0.5, "", 3)]
    return cands


def _describe_factor(s: float) -> str:
    if abs(s) >= 1:
        return f"{_fmt(s)} times"
    inv = 1 / s
    if abs(inv - round(inv)) < 1e-6 * abs(inv):
        return f"1/{int(round(inv))} of"
    return f"{_fmt(s)} times"


def _fit_factor(a: np.ndarray, e: np.ndarray) -> float | None:
    """The constant s with a = s * e (least squares), when it fits every entry; else None."""
    denom = float(np.sum(e * e))
    if denom == 0:
        return None
    s = float(np.sum(a * e)) / denom
    scale = max(np.max(np.abs(a)), abs(s) * np.max(np.abs(e)), 1e-12)
    if float(np.max(np.abs(a - s * e))) > 1e-4 * scale:
        return None
    return s


def _index_list(idx) -> str:
    idx = [int(i) for i in idx]
    if len(idx) > 4:
        return f"{idx[0]}, {idx[1]}, ..., {idx[-1]}"
    return ", ".join(map(str, idx))


# ---------------------------------------------------------------------------------------------------
# The diagnosis
# ---------------------------------------------------------------------------------------------------


def diagnose(actual, expected, context: dict | None = None, differs: np.ndarray | None = None) -> Finding:
    """The most likely explanation of why ``actual`` is not ``expected`` (see the module docstring).

    ``differs`` marks the entries the check finds wrong (same shape as ``expected``); without it, entries
    that are not close in the sense of :func:`_close` entry by entry.
    """
    context = dict(context or {})
    a, e = _as_array(actual), _as_array(expected)
    of = context.get("expected_as") or "the expected value"
    hints = context.get("hints") or {}

    def finding(key, text, rank, general=None):
        base = key.split(":")[0]
        hint = hints.get(key, hints.get(base))
        if hint is None:
            hint = general if general is not None else _GENERIC_HINTS.get(key, _GENERIC_HINTS.get(base, ""))
        return Finding(key, text, hint, rank)

    numeric = a.dtype.kind == "f" and e.dtype.kind == "f"

    # 1. NaN or infinity where the expected value is finite
    if numeric and a.shape == e.shape and not np.all(np.isfinite(a)) and np.all(np.isfinite(e)):
        bad = int(np.sum(~np.isfinite(a)))
        return finding("nonfinite", f"has {bad} NaN or infinite value{'s' * (bad > 1)} where {of} is finite", 1)

    # 2. shapes
    if a.shape != e.shape:
        return _diagnose_shape(a, e, context, finding, of)

    # 3. the output a known mistake gives
    for label, value in (context.get("suspects") or {}).items():
        s = _as_array(value)
        if s.shape == a.shape and not _close(s, e, 1e-6) and (_close(a, s) or np.array_equal(a, s)):
            return finding(f"suspect:{label}", f"is what a known mistake gives: {label}", 0, "")

    if not numeric:
        return _diagnose_positions(a, e, context, finding, differs, of)

    # 4. an update's steps: the same up to a sign or a factor
    start = context.get("start")
    if start is not None and _as_array(start).shape == a.shape:
        s0 = _as_array(start)
        step = _fit_factor(a - s0, e - s0)
        if step is not None and np.any(e != s0) and math.isclose(step, -1.0, rel_tol=1e-4):
            return finding(
                "step:sign",
                f"moved the opposite way to {of}: each step has the opposite sign",
                1,
                _GENERIC_HINTS["sign"],
            )
        if step is not None and not math.isclose(step, 1.0, rel_tol=1e-4):
            return finding(
                "step:factor",
                f"took steps {_fmt(step)} times as long as those of {of}",
                2,
                "a constant factor in the step (the learning rate applied twice or not at all?)",
            )

    # 5. a known term missing, doubled or with the wrong sign
    for label, term in (context.get("terms") or {}).items():
        t = _as_array(term)
        if t.shape == a.shape and np.any(t != 0):
            k = _fit_factor(a - e, t)
            if k is not None and any(math.isclose(k, c, rel_tol=1e-4) for c in (1, -1, 2, -2, 0.5, -0.5)):
                return finding(
                    f"term:{label}",
                    f"is off by {_fmt(k)} * {label}",
                    1,
                    f"the term {label} is missing, doubled or has the wrong sign or factor",
                )

    if np.all(a == 0) and np.any(e != 0):
        return finding("zeros", f"is all zeros where {of} is not", 2)

    # 6. a constant factor (or a sign flip)
    s = _fit_factor(a, e)
    if s is not None and not math.isclose(s, 1.0, rel_tol=1e-4):
        if math.isclose(s, -1.0, rel_tol=1e-4):
            return finding("sign", f"has the opposite sign of {of}", 1)
        tight = 1e-6 if a.size == 1 else 1e-3
        matches = [c for c in _factor_candidates(context) if math.isclose(abs(s), c[1], rel_tol=tight)]
        if matches:
            best = min(c[3] for c in matches)
            matches = [c for c in matches if c[3] == best]
            symbol, _, name, _ = matches[0]
            sizes = _sizes(context)
            says = " or ".join(f"{c[2]} = {_fmt(sizes[c[2]])}" for c in matches if c[2])
            paren = ""
            if says:
                paren = f" ({says})" if symbol in (name, f"1/{name}") else f" ({symbol}, {says})"
            key = f"factor:{'-' if s < 0 else ''}{symbol}"
            general = _factor_hint(symbol, name)
            if s < 0:
                general = f"a sign flipped, and {general}"
            sign = "minus " if s < 0 else ""
            return finding(key, f"is {sign}{_describe_factor(abs(s))} {of}{paren}", 1, general)
        if a.size > 1:
            return finding("factor", f"is {_fmt(s)} times {of} everywhere", 3, "a constant factor too many or missing")

    # 7. axes: a transpose or another order of axes
    if a.ndim >= 2:
        for perm in itertools.permutations(range(a.ndim)):
            if perm == tuple(range(a.ndim)) or e.transpose(perm).shape != a.shape:
                continue
            if _close(a, e.transpose(perm)) and not _close(e, e.transpose(perm)):
                if a.ndim == 2:
                    return finding("transposed", f"is the transpose of {of}", 1)
                names = _axis_names(context, a.ndim)
                order = ", ".join(names[p] for p in perm)
                return finding("axes", f"has its axes in the order ({order}), not ({', '.join(names)})", 1)

    # 8. blocks (gates) in another order along the last axis
    blocks = context.get("blocks")
    if blocks and a.ndim >= 1 and a.shape[-1] % len(blocks) == 0:
        k = len(blocks)
        ab, eb = np.split(a, k, axis=-1), np.split(e, k, axis=-1)
        order = []
        for j in range(k):
            hit = [m for m in range(k) if m not in order and _close(ab[j], eb[m])]
            if not hit:
                break
            order.append(hit[0])
        if len(order) == k and order != list(range(k)):
            got = ", ".join(blocks[m] for m in order)
            return finding("blocks", f"has its blocks in the order {got}, not {', '.join(blocks)}", 1)

    # 9. shifted by one step along an axis
    names = _axis_names(context, a.ndim)
    for axis in range(a.ndim):
        n = a.shape[axis]
        if n < 2:
            continue
        later, earlier = np.take(a, range(1, n), axis=axis), np.take(e, range(n - 1), axis=axis)
        if _close(later, earlier) and not _close(later, np.take(e, range(1, n), axis=axis)):
            return finding(
                f"shift:{names[axis]}",
                f"is shifted one step along {names[axis]}: at index t it holds what {of} has at t - 1",
                1,
                _GENERIC_HINTS["shift"],
            )
        if _close(np.take(a, range(n - 1), axis=axis), np.take(e, range(1, n), axis=axis)) and not _close(
            np.take(a, range(n - 1), axis=axis), np.take(e, range(n - 1), axis=axis)
        ):
            return finding(
                f"shift:{names[axis]}",
                f"is shifted one step along {names[axis]}: at index t it holds what {of} has at t + 1",
                1,
                _GENERIC_HINTS["shift"],
            )

    # 10. a square or a square root
    if np.any(np.abs(e) > 1e-6) and not _close(e, e * e) and _close(a, e * e):
        return finding("square", f"is the square of {of}", 1)
    if np.all(e >= 0) and np.all(a >= 0) and not _close(e, np.sqrt(e)) and _close(a, np.sqrt(e)):
        return finding("sqrt", f"is the square root of {of}", 1)

    # 11. an offset: the same difference everywhere, or one that depends on a single axis only
    d = a - e
    if a.size > 1 and _close(d, np.full_like(d, d.mean())) and abs(d.mean()) > 0:
        return finding("offset", f"is off by {_fmt(d.mean())} everywhere", 2)
    if a.size == 1 and abs(d.item()) > 0.5 and abs(d.item() - round(d.item())) < 1e-9 * abs(d.item()):
        word = "larger" if d.item() > 0 else "smaller"
        return finding("offset", f"is {word} than {of} by exactly {_fmt(abs(d.item()))}", 2)
    if a.ndim >= 2:
        for axis in range(a.ndim):
            others = tuple(k for k in range(a.ndim) if k != axis)
            if all(a.shape[k] == 1 for k in others):
                continue
            m = d.mean(axis=others, keepdims=True)
            if np.max(np.abs(m)) > 0 and _close(d, np.broadcast_to(m, d.shape).copy(), 1e-6):
                rest = ", ".join(names[k] for k in others)
                return finding(
                    f"offset:{names[axis]}",
                    f"differs from {of} by an amount that depends only on {names[axis]} (the same for every {rest})",
                    2,
                    f"a term per {names[axis]} (a bias?) left out, added twice, or not summed over {rest}?",
                )

    # 12. the right values in the wrong places
    distinct = a.size >= 4 and len(np.unique(np.round(e, 12))) >= a.size // 2
    if distinct and _close(np.sort(a, axis=None), np.sort(e, axis=None)):
        return finding("shuffled", f"holds the values of {of} in other places", 1)

    return _diagnose_positions(a, e, context, finding, differs, of)


def _diagnose_shape(a, e, context, finding, of) -> Finding:
    names = {int(v): k for k, v in _sizes(context).items() if float(v).is_integer()}

    def shown(shape):
        sym = [names.get(int(n)) for n in shape]
        if shape and all(sym):
            return f"{tuple(shape)} = ({', '.join(sym)}{',' if len(shape) == 1 else ''})"
        return str(tuple(shape))

    what = f"has shape {shown(a.shape)} where {of} has {shown(e.shape)}"
    if a.ndim == 2 and e.ndim == 2 and a.shape == e.shape[::-1] and a.shape != e.shape:
        if a.dtype.kind == "f" and _close(a, e.T):
            return finding("shape:transposed", f"{what}: it is the transpose", 1)
        return finding("shape:transposed", f"{what}, the transpose of its shape", 1)
    if a.size == e.size:
        if a.dtype.kind == "f" and _close(a.reshape(e.shape), e):
            return finding("shape:reshaped", f"{what}, with the right values", 1)
        return finding("shape", f"{what} (the same number of entries)", 2)
    if a.ndim == e.ndim:
        extra = {a.shape[k] - e.shape[k] for k in range(a.ndim) if a.shape[k] != e.shape[k]}
        pad = context.get("pad")
        if len(extra) == 1 and pad and extra == {2 * pad}:
            return finding("shape:padded", f"{what}: larger by 2 * pad = {2 * pad} along the padded axes", 1)
    return finding("shape", what, 2)


def _diagnose_positions(a, e, context, finding, differs, of) -> Finding:
    """Where the differences are: a named region, or some indices of one axis."""
    if differs is None:
        if a.dtype.kind == "f" and e.dtype.kind == "f":
            scale = max(np.max(np.abs(e), initial=0.0), 1e-12)
            differs = np.abs(a - e) > 1e-6 * scale
        else:
            differs = a != e
    differs = np.broadcast_to(differs, e.shape)
    count, total = int(differs.sum()), differs.size
    if 0 < count < total:
        for label, mask in (context.get("regions") or {}).items():
            region = np.broadcast_to(np.asarray(mask, dtype=bool), e.shape)
            inside = int((differs & region).sum())
            if inside == count and inside >= 0.5 * region.sum():
                return finding(
                    f"region:{label}", f"differs only {label} ({count} of {total} entries)", 1, _GENERIC_HINTS["region"]
                )
        names = _axis_names(context, e.ndim)
        best = None
        for axis in range(e.ndim):
            others = tuple(k for k in range(e.ndim) if k != axis)
            wrong = np.flatnonzero(differs.any(axis=others)) if others else np.flatnonzero(differs)
            n = e.shape[axis]
            if 0 < len(wrong) < n and (best is None or len(wrong) / n < best[2]):
                best = (axis, wrong, len(wrong) / n)
        if best is not None:
            axis, wrong, _ = best
            right = sorted(set(range(e.shape[axis])) - set(wrong.tolist()))
            name = names[axis]
            return finding(
                f"partial:{name}",
                f"differs only at {name} = {_index_list(wrong)} (of {e.shape[axis]}); it is right at "
                f"{name} = {_index_list(right)}",
                2,
                _GENERIC_HINTS["partial"],
            )
        where = np.unravel_index(int(np.argmax(differs)), e.shape) if e.ndim else ()
        return finding("unexplained", f"differs from {of} in {count} of {total} entries (first at {where})", 9)
    if a.dtype.kind == "f" and e.dtype.kind == "f" and e.size:
        k = int(np.argmax(np.abs(a - e)))
        where = np.unravel_index(k, e.shape) if e.ndim else ()
        at = f" at {tuple(int(i) for i in where)}" if e.ndim else ""
        return finding("unexplained", f"differs from {of} (largest difference{at}: {_fmt(float((a - e).flat[k]))})", 9)
    return finding("unexplained", f"differs from {of}", 9)


# ---------------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------------


def _rel_error(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """The course's relative error entry by entry (``common.gradient_check.rel_error`` is its maximum)."""
    return np.abs(a - e) / np.maximum(1e-8, np.abs(a) + np.abs(e))


def _dtype_of(x) -> str:
    return str(getattr(x, "dtype", type(x).__name__)).replace("torch.", "")


def _compare(actual, expected, tol, rtol, atol, check_dtype) -> tuple[bool, np.ndarray | None, str]:
    """(passes, the entries that fail, how far off) under the check's own criterion."""
    if check_dtype and _dtype_of(actual) != _dtype_of(expected):
        return False, None, f"dtype {_dtype_of(actual)}, expected {_dtype_of(expected)}"
    a, e = _as_array(actual), _as_array(expected)
    if a.shape != e.shape and not (a.ndim == 0 or e.ndim == 0):
        return False, None, "shape"
    a, e = np.broadcast_arrays(a, e)
    if a.dtype.kind not in "fiub" or e.dtype.kind not in "fiub":
        differs = a != e
        return not differs.any(), differs, f"{int(differs.sum())} of {differs.size} entries differ"
    a, e = a.astype(np.float64), e.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    if tol is not None:
        with np.errstate(invalid="ignore"):
            err = _rel_error(a, e)
        differs = ~(err < tol) & ~both_nan
        worst = float(np.nanmax(err)) if err.size and not np.all(np.isnan(err)) else float("nan")
        return not differs.any(), differs, f"relative error {worst:.1e}, allowed < {tol:g}"
    rtol = 0.0 if rtol is None else rtol
    atol = 0.0 if atol is None else atol
    with np.errstate(invalid="ignore"):
        differs = ~(np.abs(a - e) <= atol + rtol * np.abs(e)) & ~both_nan
    worst = float(np.nanmax(np.abs(a - e))) if a.size else 0.0
    return not differs.any(), differs, f"largest difference {worst:.1e}, allowed {atol:g} + {rtol:g} * |expected|"


def explain(name: str, actual, expected, context: dict | None = None, differs=None) -> str:
    """The one- or two-line message naming the likely mistake (``name`` starts it: ``"affine_backward: db"``)."""
    return diagnose(actual, expected, context, differs).message(name)


def describe_shape(name: str, shape, expected_shape, context: dict | None = None) -> str:
    """The message for an output of the wrong shape, from the two shapes alone (a check of a contract that has
    no expected values): ``describe_shape("affine_backward: dw", (5, 6), (6, 5), {"expected_as": "w"})``."""
    empty = np.empty(tuple(shape), dtype=object), np.empty(tuple(expected_shape), dtype=object)
    return diagnose(*empty, context).message(name)


def _check(name, actual, expected, tol, rtol, atol, context, check_dtype):
    if tol is None and rtol is None and atol is None:
        raise ValueError(f"{name}: give tol (relative error, as rel_error) or rtol/atol (as np.allclose)")
    ok, differs, how = _compare(actual, expected, tol, rtol, atol, check_dtype)
    if ok:
        return None
    if how.startswith("dtype"):
        return Finding("dtype", f"has {how}", "keep the dtype the docstring gives", 1), how
    if differs is not None and differs.shape != _as_array(expected).shape:
        differs = None
    return diagnose(actual, expected, context, differs), how


def assert_close(name, actual, expected, tol=None, *, rtol=None, atol=None, context=None, check_dtype=False):
    """Fail with a message that names the likely mistake unless ``actual`` matches ``expected``.

    The criterion is the check's own: ``tol`` is a bound on the course's relative error
    (``rel_error(actual, expected) < tol``); ``rtol``/``atol`` bound ``|actual - expected| <= atol + rtol *
    |expected|`` entry by entry (``np.allclose``, ``torch.testing.assert_close``). Shapes must be equal (a
    number may be compared with a number or an array of one); ``check_dtype`` also requires the same dtype.
    ``name`` starts the message, e.g. ``"affine_backward: db"``; ``context`` is described in the module docstring.
    """
    result = _check(name, actual, expected, tol, rtol, atol, context, check_dtype)
    if result is not None:
        found, how = result
        message = found.message(name)
        if found.key == "unexplained":
            message += f" ({how})"
        raise AssertionError(message)


def assert_all_close(function, outputs, tol=None, *, rtol=None, atol=None, context=None, check_dtype=False):
    """:func:`assert_close` for several outputs of one call, diagnosed together.

    ``outputs``: ``{name: (actual, expected)}`` or ``{name: (actual, expected, context)}`` (that output's own
    context, on top of ``context``). When some differ, the message starts with ``function``, explains the
    most telling difference (a named mistake before an unexplained one) and lists the others that differ.
    """
    failed = []
    for what, item in outputs.items():
        actual, expected = item[0], item[1]
        ctx = {**(context or {}), **(item[2] if len(item) > 2 and item[2] else {})}
        result = _check(f"{function}: {what}", actual, expected, tol, rtol, atol, ctx, check_dtype)
        if result is not None:
            failed.append((result[0].rank, len(failed), what, *result))
    if not failed:
        return
    _, _, what, found, how = min(failed)
    message = found.message(f"{function}: {what}")
    if found.key == "unexplained":
        message += f" ({how})"
    others = [f[2] for f in failed if f[2] != what]
    if others:
        message += f" ({', '.join(others)} also differ{'s' if len(others) == 1 else ''})"
    raise AssertionError(message)
