"""Numba kernels of the range coder of ``hdf5-entropy`` format versions 1 to 3 (private).

Those versions were written with ``constriction`` 0.4/0.5 (``constriction.stream.queue``: a range coder
with 32-bit words and a 64-bit state, every entry a ``Bernoulli(p, perfect=False)`` symbol at 24-bit
precision).  These kernels do the same arithmetic, so old banks are read (and appended to, in their own
encoding) without that package, in compiled code bounded by the layout: no Python loop per row, no
per-entry probability array.  The Bernoulli model of ``p`` splits ``[0, 2**24)`` at
``c1 = trunc((1 - p) * ((2**24 - 2) / ((1 - p) + p))) + 1``: a 0 is ``[0, c1)``, a 1 ``[c1, 2**24)``.

Kernels compute only (validated inputs, no raising, no allocation but the coder's few words of state); one walk
over the entries serves both directions; each has a plain Python reference
in ``tests/hopfield_masks/entropy_reference.py``, and the tests check both against ``constriction`` where
it is installed.  Entry probabilities follow the old models exactly (float64, the same operations in
the same order): static ``k / n``; layers ``k_l / n_l``; rows ``(c + a * d) / (r + a)`` with ``c`` the
ones above in the column, ``r`` the row; chain ``(c_j + a * d) / (N + a)``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["OK", "ERR_INVALID", "decode_words", "encode_words"]

OK = 0
ERR_INVALID = 1  # the decoder's point left the coder's interval: not a code of these models

_KIND_STATIC, _KIND_LAYERS, _KIND_ROWS, _KIND_CHAIN = 0, 1, 2, 3
_U = np.uint64
_PRECISION = _U(24)
_WORD = _U(32)
_TOP = _U(1) << _U(24)
_LOW_RANGE = _U(1) << _U(32)
_FULL = _U(0xFFFFFFFFFFFFFFFF)
_WORD_MASK = _U(0xFFFFFFFF)
_SLACK = _U((1 << 32) - 1)
_FREE_WEIGHT = float((1 << 24) - 2)


@numba.njit(cache=True, inline="always")
def _split(p):  # pragma: no cover - compiled
    """Where ``Bernoulli(p, perfect=False)`` at 24 bits splits ``[0, 2**24)`` between 0 and 1."""
    q0 = 1.0 - p
    scale = _FREE_WEIGHT / (q0 + p)
    return _U(int(q0 * scale)) + _U(1)


# ---------------------------------------------------------------------------------------------- one symbol
@numba.njit(cache=True, inline="always")
def _decode_bit(c1, st, words):  # pragma: no cover - compiled
    """Decode one symbol with the coder's state ``st`` = (lower, range, point, pos); 2 when the point is outside."""
    lower, rng, point, pos = st[0], st[1], st[2], st[3]
    scale = rng >> _PRECISION
    quantile = (point - lower) // scale
    if quantile >= _TOP:
        return 2
    if quantile < c1:
        bit = 0
        rng = scale * c1
    else:
        bit = 1
        lower = lower + scale * c1
        rng = scale * (_TOP - c1)
    if rng < _LOW_RANGE:
        lower = lower << _WORD
        rng = rng << _WORD
        point = point << _WORD
        if pos < _U(words.shape[0]):
            point = point | _U(words[pos])
            pos += _U(1)
    st[0], st[1], st[2], st[3] = lower, rng, point, pos
    return bit


@numba.njit(cache=True, inline="always")
def _emit_held(st, carry, out):  # pragma: no cover - compiled
    """Write the words held back while a carry could reach them (``st`` = lower, range, held, first, pos)."""
    pos = st[4]
    if carry:
        out[pos] = (st[3] + _U(1)) & _WORD_MASK
        filler = _U(0)
    else:
        out[pos] = st[3]
        filler = _WORD_MASK
    pos += _U(1)
    for _ in range(st[2] - _U(1)):
        out[pos] = filler
        pos += _U(1)
    st[2] = _U(0)
    st[4] = pos


@numba.njit(cache=True, inline="always")
def _encode_bit(bit, c1, st, out):  # pragma: no cover - compiled
    """Encode one symbol with the coder's state ``st`` = (lower, range, held words, first held word, pos)."""
    lower, rng = st[0], st[1]
    scale = rng >> _PRECISION
    if bit:
        left = c1
        rng = scale * (_TOP - c1)
    else:
        left = _U(0)
        rng = scale * c1
    new_lower = lower + scale * left
    if st[2] > _U(0) and new_lower + rng > new_lower:  # the held-back words are settled
        _emit_held(st, new_lower < lower, out)
    lower = new_lower
    if rng < _LOW_RANGE:
        rng = rng << _WORD
        word = lower >> _WORD
        lower = lower << _WORD
        if st[2] > _U(0):
            st[2] += _U(1)
        elif lower + rng > lower:
            out[st[4]] = word
            st[4] += _U(1)
        else:
            st[2] = _U(1)
            st[3] = word
    st[0], st[1] = lower, rng


@numba.njit(cache=True, inline="always")
def _code(encode, c1, x, j, st, words):  # pragma: no cover - compiled
    """Entry ``j`` of ``x``: encoded into ``words``, or decoded from them into ``x``; False when not a code."""
    if encode:
        _encode_bit(x[j], c1, st, words)
        return True
    bit = _decode_bit(c1, st, words)
    x[j] = bit
    return bit != 2


# ---------------------------------------------------------------------------------------------- the models
@numba.njit(cache=True)
def _walk(encode, x, kind, weight, geom, history, n_before, colcount, st, words):  # pragma: no cover - compiled
    """Every entry of ``x`` in coding order at its model's probability; False as soon as one is not a code."""
    n = x.shape[0]
    total = 0
    for layer in range(geom.shape[0]):
        total += geom[layer, 3]
    if kind == _KIND_STATIC:
        c1 = _split(np.float64(total) / np.float64(n))
        for j in range(n):
            if not _code(encode, c1, x, j, st, words):
                return False
        return True
    for layer in range(geom.shape[0]):
        start, size, rows, ones = geom[layer, 0], geom[layer, 1], geom[layer, 2], geom[layer, 3]
        y = x[start:start + size]
        if not 0 < ones < size:
            if not encode:
                y[:] = 1 if ones else 0
            continue
        density = np.float64(ones) / np.float64(size)
        t = weight * density
        if kind == _KIND_LAYERS or (kind == _KIND_ROWS and rows < 2):
            # one row has nothing above it: (0 + t) / (0 + a), computed as the old coder did
            c1 = _split(density if kind == _KIND_LAYERS else (np.float64(0) + t) / (np.float64(0) + weight))
            for j in range(size):
                if not _code(encode, c1, y, j, st, words):
                    return False
        elif kind == _KIND_ROWS:
            cols = size // rows
            above = colcount[:cols]
            above[:] = 0
            for r in range(rows):
                den = np.float64(r) + weight
                for j in range(cols):
                    if not _code(encode, _split((np.float64(above[j]) + t) / den), y, r * cols + j, st, words):
                        return False
                    above[j] += y[r * cols + j]
        else:
            den = np.float64(n_before) + weight
            h = history[start:start + size]
            for j in range(size):
                if not _code(encode, _split((np.float64(h[j]) + t) / den), y, j, st, words):
                    return False
    return True


@numba.njit(cache=True)
def decode_words(words, kind, weight, geom, history, n_before, colcount, out):  # pragma: no cover - compiled
    """Decode a task from the coder's ``uint32`` words into ``out`` (uint8 view of the flat pattern).

    Returns ``(status, exhausted)``: ``exhausted`` is constriction's ``maybe_exhausted()`` at the end
    (every word read and the point within a word of the interval's start).  ``geom`` (L, 4) int64:
    start, size, rows, ones per layer.  Scratch: ``colcount`` int32 (rows model: the largest column count
    of a layer of 2 rows or more).
    Every entry of ``out`` is written unless the status is ``ERR_INVALID``.
    """
    st = np.zeros(4, np.uint64)  # lower, range, point, pos
    st[1] = _FULL
    for _ in range(2):
        st[2] = st[2] << _WORD
        if st[3] < _U(words.shape[0]):
            st[2] = st[2] | _U(words[st[3]])
            st[3] += _U(1)
    if not _walk(False, out, kind, weight, geom, history, n_before, colcount, st, words):
        return ERR_INVALID, False
    lower, rng, point, pos = st[0], st[1], st[2], st[3]
    exhausted = pos >= _U(words.shape[0]) and (rng == _FULL or point - lower < (_U(1) << _U(33)) - _U(1))
    return OK, exhausted


@numba.njit(cache=True)
def encode_words(flat, kind, weight, geom, history, n_before, colcount, out):  # pragma: no cover - compiled
    """Encode a task (``flat`` the uint8 view of its pattern) as ``get_compressed()`` would; returns how many
    words of ``out`` (uint32, at least one per coded entry plus 3) hold the code."""
    st = np.zeros(5, np.uint64)  # lower, range, held words, first held word, pos
    st[1] = _FULL
    _walk(True, flat, kind, weight, geom, history, n_before, colcount, st, out)
    lower, rng = st[0], st[1]
    if rng == _FULL:  # nothing was encoded: no words
        return int(st[4])
    point = lower + _SLACK
    if st[2] > _U(0):
        _emit_held(st, point < lower, out)
    point_word = point >> _WORD
    out[st[4]] = point_word
    st[4] += _U(1)
    if (lower + rng) >> _WORD == point_word:
        out[st[4]] = 0
        st[4] += _U(1)
    return int(st[4])
