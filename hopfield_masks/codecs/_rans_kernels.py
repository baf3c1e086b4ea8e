"""Numba kernels of the ``hdf5-entropy`` coder of format version 4 (private; :mod:`.entropy` describes the format).

Kernels compute only: they take arrays of fixed dtypes that the wrappers in :mod:`.entropy`
validated and allocated (scratch included, sized as each kernel's docstring says: a kernel trusts
those sizes), never raise and never allocate; a damaged code is reported through the returned
status (:data:`OK` or one of the ``ERR_*`` codes).  Every loop is bounded by the layout
(entries, layers, the chain's length) or by the code's own length.  Each kernel has a plain Python
reference in ``tests/hopfield_masks/entropy_reference.py`` and a Hypothesis property that they agree.

The coder is rANS with 24-bit frequencies, a 64-bit state kept in ``[2**39, 2**63)`` and 24-bit
words; the state starts at 1 (not at ``2**39``), so the code carries no initial state.  A symbol is
a byte of 8 entries (the first entry in the most significant bit) or a single entry, coded with the
tables of a probability *level* (:func:`level_of`); the 769 levels' tables (:data:`CUM`, :data:`BIT0`,
:data:`COARSE`) are the same for every task, built when this module is imported (:func:`_make_tables`)
and compiled into the decoder as constants (measured: about 15 % faster than passing them).  Hot loops
index with unsigned integers (Numba then skips the negative-index wrap-around) where the index is known
to be in range.

Timings that chose the design (this machine, LeNet 300-100 masks): a byte symbol decodes in about
6.5 ns, a chain entry's routing to its class costs about 1 ns; the rows model's levels are remembered
per block of rows, the chain's classes take batches of 32 entries (fewer refills) and, in large layers,
split even and odd entries (two independent chains of loads and stores).

"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "PRECISION", "WORD_BITS", "STATE_LOW", "N_LEVELS", "COARSE_BITS", "BATCH", "LARGE_LAYER", "MEMO", "OK",
    "ERR_START",
    "ERR_END", "ERR_COUNTS", "ERR_PADDING", "ERR_HISTORY", "KIND_STATIC", "KIND_LAYERS", "KIND_ROWS",
    "KIND_CHAIN", "CUM", "BIT0", "COARSE", "level_of", "level_prob", "count_ones", "model_costs", "symbol_count",
    "encode_task", "encode_best", "decode_task",
]

PRECISION = 24  # frequencies sum to 2**24
WORD_BITS = 24  # the coder moves 24-bit words (3 bytes) between its state and the code
STATE_LOW = 1 << 39  # the rANS state stays in [STATE_LOW, STATE_LOW << WORD_BITS) = [2**39, 2**63)
N_LEVELS = 1 + 32 * 24  # level 0: p = 1/2; then 32 levels per octave of min(q, 1 - q), down to 2**-25
COARSE_BITS = 10  # the decoder's first guess of a byte symbol: a table over a slot's top 10 bits
BATCH = 32  # chain model, layers of LARGE_LAYER entries or more: batches of 32 entries (4 byte symbols) ...
LARGE_LAYER = 1 << 14  # ... per count and parity; smaller layers: batches of 8 entries (1 symbol) per count
MEMO = 1024  # rows model: the levels of column counts below this are remembered per block of rows

_TOTAL = 1 << PRECISION
_MASK = _TOTAL - 1
_WORD_MASK = (1 << WORD_BITS) - 1
_RENORM_SHIFT = 39 - PRECISION + WORD_BITS  # the encoder emits a word when x >= f << 39
_COARSE_SHIFT = PRECISION - COARSE_BITS
_LOWEST = N_LEVELS - 1
_TAKEN = -(1 << 63)  # a chain context's batch with every entry taken: only the marker bit (bit 63) is left
_ONE = np.uint64(1)
_POPCOUNT = np.array([bin(s).count("1") for s in range(256)], dtype=np.int32)  # ones in each byte

# decode_task statuses
OK = 0
ERR_START = 1  # the code's first byte is zero, a task with coded entries has no code, or one without has some
ERR_END = 2  # the coder does not end in its initial state with every byte consumed
ERR_COUNTS = 3  # a layer decodes to a number of ones other than its stored count
ERR_PADDING = 4  # a chain class's last batch has ones in its padding
ERR_HISTORY = 5  # a chain count outside [0, n_before] (never from the bank)

# kinds of model (the model code without its prior weight)
KIND_STATIC, KIND_LAYERS, KIND_ROWS, KIND_CHAIN = 0, 1, 2, 3


@numba.njit(cache=True, inline="always")
def _chain_shape(size):  # pragma: no cover - compiled
    """A chain layer's batch (entries) and number of classes per count (1, or 2: even and odd entries)."""
    return (BATCH, 2) if size >= LARGE_LAYER else (8, 1)


# ---------------------------------------------------------------------------------------------- levels
@numba.njit(cache=True, inline="always")
def level_of(q):  # pragma: no cover - compiled
    """``2 * level + inverted`` of probability ``q`` (float64): ``u = min(q, 1 - q)`` bucketed, 32 per octave.

    ``u = 1/2``: level 0.  Otherwise ``u = f * 2**e`` with ``f`` in ``[1/2, 1)`` (``frexp``); for ``e >= -24``
    the level is ``1 + 32 * (-1 - e) + 31 - floor(64 * (f - 1/2))``, below that (and for ``u = 0``) the last
    level.  ``inverted`` is 1 when ``q > 1/2`` (the entries are coded as ``1 - x``).
    """
    inv = 0
    u = q
    if q > 0.5:
        u = 1.0 - q
        inv = 1
    if u == 0.5:
        return 0
    if not (u > 0.0):
        return 2 * _LOWEST + inv
    f, e = math.frexp(u)
    if e < -24:
        return 2 * _LOWEST + inv
    k = int((f - 0.5) * 64.0)
    return 2 * (1 + 32 * (-1 - e) + 31 - k) + inv


@numba.njit(cache=True, inline="always")
def _row_level(c, t, den, stamp, memo):  # pragma: no cover - compiled
    """``level_of((c + t) / den)``, remembered in ``memo`` (2 * MEMO int64) under ``stamp`` (one per denominator)."""
    if c < MEMO:
        at = np.uint64(2 * c)
        if memo[at] == stamp:
            return memo[at + _ONE]
        code2 = level_of((c + t) / den)
        memo[at] = stamp
        memo[at + _ONE] = code2
        return code2
    return level_of((c + t) / den)


@numba.njit(cache=True)
def level_prob(level):  # pragma: no cover - compiled
    """The probability ``r <= 1/2`` a level's tables are built for: the middle of its bucket, exactly
    ``(65 + 2 k) * 2**(e - 7)`` (``e``, ``k`` of :func:`level_of`); ``1/2`` for level 0."""
    if level == 0:
        return 0.5
    i = level - 1
    e = -1 - i // 32
    k = 31 - i % 32
    return math.ldexp(65.0 + 2.0 * k, e - 7)


def _make_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The tables of every level: ``CUM`` (N_LEVELS, 257) uint32, ``BIT0`` (N_LEVELS,) int64, ``COARSE``
    (N_LEVELS, 1024) uint8 (built once, when this module is imported: a few milliseconds).

    Byte table of level ``l`` (``r = level_prob(l)``): symbol ``s`` with ``j`` one bits has
    ``P = 1.0 * r * ... (j times) * (1 - r) * ... (8 - j times)`` (float64, in that order) and frequency
    ``max(1, floor(P * 2**24))``; symbol 0 then takes what makes the sum ``2**24``.  ``CUM[l, s]`` is the
    sum of the frequencies below ``s``.  Bit table: ``f1 = max(1, floor(r * 2**24))``, ``BIT0[l] = 2**24 - f1``
    (a 0 is ``[0, BIT0)``, a 1 ``[BIT0, 2**24)``).  ``COARSE[l, b]``: the byte symbol whose interval holds
    ``b << 14`` (the decoder's first guess).  Each table is under 1 MB, so the decoding kernels read them as
    constants compiled in (Numba freezes global arrays of up to 1 MB, and caches what uses them).
    """
    i = np.arange(N_LEVELS - 1)
    r = np.concatenate([[0.5], np.ldexp(65.0 + 2.0 * (31 - i % 32), -1 - i // 32 - 7)])  # level_prob, every level
    ones = np.array([bin(v).count("1") for v in range(256)])
    by_ones = np.empty((9, N_LEVELS))
    for j in range(9):  # the same float64 products, in the same order, as level by level
        p = np.ones(N_LEVELS)
        for _ in range(j):
            p = p * r
        for _ in range(8 - j):
            p = p * (1.0 - r)
        by_ones[j] = p
    freq = np.maximum(1, np.floor(by_ones[ones].T * _TOTAL).astype(np.int64))  # (N_LEVELS, 256)
    freq[:, 0] += _TOTAL - freq.sum(axis=1)
    cum = np.zeros((N_LEVELS, 257), dtype=np.int64)
    cum[:, 1:] = np.cumsum(freq, axis=1)
    bit0 = _TOTAL - np.maximum(1, np.floor(r * _TOTAL).astype(np.int64))
    starts = np.arange(1 << COARSE_BITS, dtype=np.int64) << _COARSE_SHIFT
    coarse = np.array([np.searchsorted(row, starts, side="right") - 1 for row in cum], dtype=np.uint8)
    return cum.astype(np.uint32), bit0, coarse


CUM, BIT0, COARSE = _make_tables()


# ---------------------------------------------------------------------------------------------- model costs
@numba.njit(cache=True, inline="always")
def _bernoulli_bits(ones, zeros, q):  # pragma: no cover - compiled
    bits = 0.0
    if ones:
        bits -= ones * math.log2(q)
    if zeros:
        bits -= zeros * math.log2(1.0 - q)
    return bits


@numba.njit(cache=True, inline="always")
def _polya_bits(k, rows, one, zero):  # pragma: no cover - compiled
    """-log2 P of a column of ``rows`` entries with ``k`` ones coded row by row with pseudo-counts ``one``, ``zero``."""
    log_p = (math.lgamma(k + one) - math.lgamma(one) + math.lgamma(rows - k + zero) - math.lgamma(zero)
             - math.lgamma(rows + one + zero) + math.lgamma(one + zero))
    return -log_p / math.log(2.0)


@numba.njit(cache=True)
def model_costs(flat, geom, history, n_before, weights, colcount, hist, chain, costs):  # pragma: no cover
    """Estimated code lengths (bits) of the models, for choosing one; returns OK, or ERR_HISTORY.

    ``costs[0]`` static, ``[1]`` layers, ``[2 + i]`` rows and ``[2 + W + i]`` chain with prior weight
    ``weights[i]`` (``inf`` when ``n_before == 0``).  ``geom`` (L, 4) int64: start, size, rows, ones per
    layer.  Ideal lengths (-log2 of the model's probabilities), but: rows is the closed form of updating
    the column counts at every row (the format updates them every 8 rows; the difference is far below
    what separates models), and chain includes the padding of each batch class's last batch.  Scratch:
    ``colcount`` int32 (the largest column count of a layer of 2 rows or more), ``hist`` float64
    (``>= min(cols, rows + 1)`` of those), ``chain`` int64 (``8 * (n_before + 1)``).
    """
    n_w = weights.shape[0]
    n = flat.shape[0]
    total = 0
    for layer in range(geom.shape[0]):
        total += geom[layer, 3]
    for m in range(costs.shape[0]):
        costs[m] = 0.0
    if 0 < total < n:
        costs[0] = _bernoulli_bits(total, n - total, total / n)
    for m in range(2 + n_w, 2 + 2 * n_w):
        costs[m] = 0.0 if n_before > 0 else np.inf
    for layer in range(geom.shape[0]):
        start, size, rows, ones = geom[layer, 0], geom[layer, 1], geom[layer, 2], geom[layer, 3]
        if not 0 < ones < size:
            continue
        x = flat[start:start + size]
        p = ones / size
        own = _bernoulli_bits(ones, size - ones, p)
        costs[1] += own
        if rows < 2:
            for i in range(n_w):
                costs[2 + i] += own
        else:
            cols = size // rows
            counts = colcount[:cols]
            counts[:] = 0
            if cols == 1:  # a 1-D layer: one column, holding all the ones
                counts[0] = ones
            else:
                at = 0
                for _ in range(rows):
                    for j in range(cols):
                        counts[j] += x[at]
                        at += 1
            if cols <= rows + 1:
                for i in range(n_w):
                    one, zero = weights[i] * p, weights[i] * (1.0 - p)
                    bits = 0.0
                    for j in range(cols):
                        bits += _polya_bits(counts[j], rows, one, zero)
                    costs[2 + i] += bits
            else:
                hk = hist[:rows + 1]
                hk[:] = 0.0
                for j in range(cols):
                    hk[np.uint64(counts[j])] += 1.0
                for i in range(n_w):
                    one, zero = weights[i] * p, weights[i] * (1.0 - p)
                    bits = 0.0
                    for k in range(rows + 1):
                        if hk[k] > 0.0:
                            bits += hk[k] * _polya_bits(k, rows, one, zero)
                    costs[2 + i] += bits
        if n_before > 0:
            width = 2 * (n_before + 1)
            batch, lanes = _chain_shape(size)
            table = chain[:4 * width]
            table[:] = 0
            h = history[start:start + size]
            for j in range(size):  # four interleaved histograms of (count, entry): no store waits on the last
                c = h[j]
                if c < 0 or c > n_before:
                    return ERR_HISTORY
                table[np.uint64((j & 3) * width + 2 * c + x[j])] += 1
            for c in range(width):  # even entries in histograms 0 and 2, odd ones in 1 and 3
                table[c] += table[2 * width + c]
                table[width + c] += table[3 * width + c]
            for i in range(n_w):
                t = weights[i] * p
                den = n_before + weights[i]
                bits = 0.0
                for c in range(n_before + 1):
                    even, odd = table[2 * c] + table[2 * c + 1], table[width + 2 * c] + table[width + 2 * c + 1]
                    if even + odd:
                        hit = table[2 * c + 1] + table[width + 2 * c + 1]
                        q = (c + t) / den
                        bits += _bernoulli_bits(hit, even + odd - hit, q)
                        pad = -even % batch + -odd % batch if lanes == 2 else -(even + odd) % batch
                        bits -= pad * math.log2(max(q, 1.0 - q))  # the padding of the last batches
                costs[2 + n_w + i] += bits
    return OK


# ---------------------------------------------------------------------------------------------- encoding
@numba.njit(cache=True)
def count_ones(flat, geom):  # pragma: no cover - compiled
    """Fill ``geom[:, 3]`` with the ones of each layer of ``flat`` (uint8 view of the pattern)."""
    for layer in range(geom.shape[0]):
        x = flat[geom[layer, 0]:geom[layer, 0] + geom[layer, 1]]
        ones = 0
        for j in range(x.shape[0]):
            ones += x[j]
        geom[layer, 3] = ones


@numba.njit(cache=True)
def symbol_count(kind, geom, n_before):  # pragma: no cover - compiled
    """An upper bound on the symbols of a task under a model kind (exact but for the chain)."""
    count = 0
    if kind == KIND_STATIC:
        n = 0
        total = 0
        for layer in range(geom.shape[0]):
            n += geom[layer, 1]
            total += geom[layer, 3]
        return n // 8 + n % 8 if 0 < total < n else 0
    for layer in range(geom.shape[0]):
        size, rows, ones = geom[layer, 1], geom[layer, 2], geom[layer, 3]
        if not 0 < ones < size:
            continue
        if kind == KIND_LAYERS or (kind == KIND_ROWS and rows < 2):
            count += size // 8 + size % 8
        elif kind == KIND_ROWS:
            cols = size // rows
            count += (rows // 8) * cols + (rows % 8) * cols
        else:
            batch, lanes = _chain_shape(size)
            count += batch // 8 * (size // batch + min(size, lanes * (n_before + 1)))
    return count


@numba.njit(cache=True, inline="always")
def _put_run(x, code2, sym, tab, count):  # pragma: no cover - compiled
    """Symbols of the entries ``x`` under one level: bytes of 8, then single entries."""
    level, inv = code2 >> 1, code2 & 1
    flip = 255 * inv
    size = x.shape[0]
    for g in range(size // 8):
        s = 0
        for b in range(8 * g, 8 * g + 8):
            s = (s << 1) | x[b]
        sym[count] = s ^ flip
        tab[count] = level
        count += 1
    for b in range(size // 8 * 8, size):
        sym[count] = x[b] ^ inv
        tab[count] = N_LEVELS + level
        count += 1
    return count


@numba.njit(cache=True)
def _symbols(flat, kind, weight, geom, history, n_before, colcount, memo, chain, sym, tab):  # pragma: no cover
    """The task's symbols in decoding order: ``sym`` (the coded byte or entry) and ``tab`` (the level, plus
    N_LEVELS for a single entry); returns how many, or -1 for a chain count outside ``[0, n_before]``."""
    count = 0
    n = flat.shape[0]
    if kind == KIND_STATIC:
        total = 0
        for layer in range(geom.shape[0]):
            total += geom[layer, 3]
        if 0 < total < n:
            count = _put_run(flat, level_of(total / n), sym, tab, count)
        return count
    for layer in range(geom.shape[0]):
        start, size, rows, ones = geom[layer, 0], geom[layer, 1], geom[layer, 2], geom[layer, 3]
        if not 0 < ones < size:
            continue
        x = flat[start:start + size]
        p = ones / size
        if kind == KIND_LAYERS or (kind == KIND_ROWS and rows < 2):
            count = _put_run(x, level_of(p), sym, tab, count)
        elif kind == KIND_ROWS:
            cols = size // rows
            t = weight * p
            counts = colcount[:cols]
            counts[:] = 0
            memo[:] = 0
            for b in range(rows // 8):
                den = 8.0 * b + weight
                block = x[8 * b * cols:8 * (b + 1) * cols]
                for j in range(cols):
                    code2 = _row_level(counts[j], t, den, b + 1, memo)
                    s = 0
                    for i in range(8):
                        s = (s << 1) | block[i * cols + j]
                    counts[j] += _POPCOUNT[s]
                    sym[count] = s ^ (255 * (code2 & 1))
                    tab[count] = code2 >> 1
                    count += 1
            for r in range(rows // 8 * 8, rows):
                den = r + weight
                row = x[r * cols:(r + 1) * cols]
                for j in range(cols):
                    code2 = _row_level(counts[j], t, den, rows + r + 1, memo)
                    e = row[j]
                    counts[j] += e
                    sym[count] = e ^ (code2 & 1)
                    tab[count] = N_LEVELS + (code2 >> 1)
                    count += 1
        else:  # chain: each class's entries (a count, and a parity in large layers) in batches, placed at their first
            t = weight * p
            den = n_before + weight
            width = n_before + 1
            batch, lanes = _chain_shape(size)
            state = chain[:3 * lanes * width]  # per class (lane * width + count): 2 * level + inverted, left, first symbol
            for c in range(lanes * width):
                state[3 * c] = level_of((c % width + t) / den)
                state[3 * c + 1] = 0
                state[3 * c + 2] = 0
            h = history[start:start + size]
            for j in range(size):
                c = h[j]
                if c < 0 or c > n_before:
                    return -1
                at = np.uint64(3 * ((j & (lanes - 1)) * width + c))
                left = state[at + _ONE]
                if left == 0:
                    state[at + np.uint64(2)] = count
                    for _ in range(batch // 8):
                        sym[count] = 0
                        tab[count] = state[at] >> 1
                        count += 1
                    left = batch
                left -= 1
                state[at + _ONE] = left
                k = batch - 1 - left  # the entry's place in the batch, 0 first
                sym[np.uint64(state[at + np.uint64(2)] + k // 8)] |= (x[j] ^ (state[at] & 1)) << (7 - k % 8)
    return count


@numba.njit(cache=True)
def _rans_encode(sym, tab, count, cum, bit0, out):  # pragma: no cover - compiled
    """rANS-encode ``count`` symbols, last first, into the end of ``out``; returns where the code starts."""
    x = 1
    pos = out.shape[0]
    for i in range(count - 1, -1, -1):
        t = tab[i]
        s = sym[i]
        if t < N_LEVELS:
            c = np.int64(cum[t, s])
            f = np.int64(cum[t, s + 1]) - c
        else:
            f0 = bit0[t - N_LEVELS]
            if s == 0:
                c, f = 0, f0
            else:
                c, f = f0, _TOTAL - f0
        if x >= f << _RENORM_SHIFT:
            out[pos - 1] = x & 255
            out[pos - 2] = (x >> 8) & 255
            out[pos - 3] = (x >> 16) & 255
            pos -= 3
            x >>= WORD_BITS
        x = ((x // f) << PRECISION) + x % f + c
    while x > _WORD_MASK:  # the final state: 24-bit words, then what is left in 1 to 3 bytes
        out[pos - 1] = x & 255
        out[pos - 2] = (x >> 8) & 255
        out[pos - 3] = (x >> 16) & 255
        pos -= 3
        x >>= WORD_BITS
    while x:
        pos -= 1
        out[pos] = x & 255
        x >>= 8
    return pos


@numba.njit(cache=True)
def encode_task(flat, kind, weight, geom, history, n_before, cum, bit0, colcount, memo, chain, sym, tab, out):  # pragma: no cover
    """Encode a task (``flat`` the uint8 view of its pattern): its symbols (:func:`_symbols`) rANS-coded.

    Returns where the code starts in ``out`` (it is ``out[start:]``; ``out.shape[0]`` when the task has no
    symbols), or -1 for a chain count outside ``[0, n_before]``.  Scratch as in :func:`decode_task`, with
    ``chain`` of ``6 * (n_before + 1)``; ``sym`` uint8 and ``tab`` int16 of :func:`symbol_count` symbols,
    ``out`` uint8 of ``3 * symbols + 9``.
    """
    count = _symbols(flat, kind, weight, geom, history, n_before, colcount, memo, chain, sym, tab)
    if count < 0:
        return -1
    if count == 0:
        return out.shape[0]
    return _rans_encode(sym, tab, count, cum, bit0, out)


@numba.njit(cache=True)
def encode_best(flat, geom, history, n_before, weights, kinds, cum, bit0, colcount, hist, memo, chain, costs, sym,
                tab, out):  # pragma: no cover - compiled
    """Count the ones per layer (into ``geom[:, 3]``), estimate every model (``costs``), encode the task with the
    first of the cheapest.  Returns ``(model, start)``: the code is ``out[start:]``; ``start`` is -1 for a chain
    count outside ``[0, n_before]``.  ``kinds[m]`` is model ``m``'s kind; ``sym``, ``tab`` and ``out`` are sized
    for the largest :func:`symbol_count` of any kind; scratch as in :func:`model_costs`, plus ``memo``.
    """
    count_ones(flat, geom)
    if model_costs(flat, geom, history, n_before, weights, colcount, hist, chain, costs) != OK:
        return 0, -1
    model = 0
    for m in range(1, costs.shape[0]):
        if costs[m] < costs[model]:
            model = m
    n_w = weights.shape[0]
    weight = weights[(model - 2) % n_w] if model >= 2 else 0.0
    return model, encode_task(flat, kinds[model], weight, geom, history, n_before, cum, bit0, colcount, memo, chain,
                              sym, tab, out)


# ---------------------------------------------------------------------------------------------- decoding
@numba.njit(cache=True, inline="always")
def _refill(x, pos, code):  # pragma: no cover - compiled
    if x < STATE_LOW and pos + 3 <= code.shape[0]:
        at = np.uint64(pos)
        x = (x << WORD_BITS) | (np.int64(code[at]) << 16) | (np.int64(code[at + _ONE]) << 8) | \
            np.int64(code[at + np.uint64(2)])
        pos += 3
    return x, pos


@numba.njit(cache=True, inline="always")
def _byte(x, pos, code, level):  # pragma: no cover - compiled
    slot = x & _MASK
    lv = np.uint64(level)
    s = np.uint64(COARSE[lv, np.uint64(slot >> _COARSE_SHIFT)])
    while CUM[lv, s + _ONE] <= slot:
        s += _ONE
    c = np.int64(CUM[lv, s])
    x = (np.int64(CUM[lv, s + _ONE]) - c) * (x >> PRECISION) + slot - c
    x, pos = _refill(x, pos, code)
    return np.int64(s), x, pos


@numba.njit(cache=True, inline="always")
def _bit(x, pos, code, level):  # pragma: no cover - compiled
    slot = x & _MASK
    f0 = BIT0[np.uint64(level)]
    if slot < f0:
        x = f0 * (x >> PRECISION) + slot
        s = 0
    else:
        x = (_TOTAL - f0) * (x >> PRECISION) + slot - f0
        s = 1
    x, pos = _refill(x, pos, code)
    return s, x, pos


@numba.njit(cache=True, inline="always")
def _get_run(x, pos, code, code2, out):  # pragma: no cover - compiled
    """Decode the entries ``out`` under one level: bytes of 8, then single entries."""
    level, inv = code2 >> 1, code2 & 1
    flip = 255 * inv
    size = out.shape[0]
    for g in range(size // 8):
        s, x, pos = _byte(x, pos, code, level)
        s ^= flip
        at = np.uint64(8 * g)
        out[at] = (s >> 7) & 1
        out[at + _ONE] = (s >> 6) & 1
        out[at + np.uint64(2)] = (s >> 5) & 1
        out[at + np.uint64(3)] = (s >> 4) & 1
        out[at + np.uint64(4)] = (s >> 3) & 1
        out[at + np.uint64(5)] = (s >> 2) & 1
        out[at + np.uint64(6)] = (s >> 1) & 1
        out[at + np.uint64(7)] = s & 1
    for b in range(size // 8 * 8, size):
        s, x, pos = _bit(x, pos, code, level)
        out[b] = s ^ inv
    return x, pos


@numba.njit(cache=True, inline="always")
def _batch(code2, symbols, x, pos, code):  # pragma: no cover - compiled
    """A chain batch of ``symbols`` byte symbols, inverted back if need be, from bit 63 down, then the marker bit."""
    d = 0
    for _ in range(symbols):
        s, x, pos = _byte(x, pos, code, code2 >> 1)
        d = (d << 8) | s
    if code2 & 1:
        d ^= (1 << (8 * symbols)) - 1
    return (d << (64 - 8 * symbols)) | (1 << (63 - 8 * symbols)), x, pos


@numba.njit(cache=True, inline="always")
def _ones(x):  # pragma: no cover - compiled
    got = 0
    for j in range(x.shape[0]):
        got += x[j]
    return got


@numba.njit  # compiled into decode_task, whose cache holds it (with the tables: one copy of them)
def _rows_layer(coder, code, y, rows, t, weight, colcount, memo):  # pragma: no cover - compiled
    """Decode a layer of ``rows >= 2`` rows under the rows model into ``y``; the coder's state ``(x, pos)`` goes in
    and out through ``coder`` (int64 (2,))."""
    x, pos = coder[0], coder[1]
    cols = y.shape[0] // rows
    counts = colcount[:cols]
    counts[:] = 0
    memo[:] = 0
    for b in range(rows // 8):
        den = 8.0 * b + weight
        block = y[8 * b * cols:8 * (b + 1) * cols]
        for j in range(cols):
            code2 = _row_level(counts[j], t, den, b + 1, memo)
            s, x, pos = _byte(x, pos, code, code2 >> 1)
            s ^= 255 * (code2 & 1)
            at = np.uint64(j)
            for i in range(8):
                block[at] = (s >> (7 - i)) & 1
                at += np.uint64(cols)
            counts[j] += _POPCOUNT[s]
    for r in range(rows // 8 * 8, rows):
        den = r + weight
        row = y[r * cols:(r + 1) * cols]
        for j in range(cols):
            code2 = _row_level(counts[j], t, den, rows + r + 1, memo)
            s, x, pos = _bit(x, pos, code, code2 >> 1)
            e = s ^ (code2 & 1)
            row[j] = e
            counts[j] += e
    coder[0], coder[1] = x, pos


@numba.njit(cache=True, inline="always")
def _route(coder, code, y, h, top, odd, symbols, batches, levels):  # pragma: no cover - compiled
    """Give each entry of a chain layer the next bit of its class's batch (``odd`` and ``symbols`` are constants
    where this is inlined: the batch's decoding unrolls); returns ERR_HISTORY or OK."""
    x, pos = coder[0], coder[1]
    for j in range(y.shape[0]):  # even and odd entries in separate classes: two chains of loads and stores
        c = np.uint64(h[j])  # a negative count becomes huge: one comparison checks both ends
        if c > top:
            return ERR_HISTORY
        k = c + (np.uint64(j) & _ONE) * odd
        r = batches[k]
        if r == _TAKEN:
            r, x, pos = _batch(levels[c], symbols, x, pos, code)
        y[j] = (r >> 63) & 1
        batches[k] = r << 1
    coder[0], coder[1] = x, pos
    return OK


@numba.njit  # compiled into decode_task, whose cache holds it
def _chain_layer(coder, code, y, h, n_before, t, weight, chain):  # pragma: no cover - compiled
    """Decode a layer under the chain model into ``y`` (``h``: its counts); returns a status, the coder's state
    ``(x, pos)`` going in and out through ``coder`` (int64 (2,))."""
    den = n_before + weight
    top = np.uint64(n_before)
    width = n_before + 1
    batch, lanes = _chain_shape(y.shape[0])
    batches = chain[:lanes * width]  # per class (lane * width + count): untaken entries from bit 63 down, a marker
    levels = chain[2 * width:3 * width]
    for c in range(lanes * width):
        batches[c] = _TAKEN
    for c in range(width):
        levels[c] = level_of((c + t) / den)
    if lanes == 2:
        status = _route(coder, code, y, h, top, np.uint64(width), BATCH // 8, batches, levels)
    else:
        status = _route(coder, code, y, h, top, np.uint64(0), 1, batches, levels)
    if status != OK:
        return status
    for c in range(lanes * width):  # the untaken entries (the padding) are coded zeros
        r = batches[c]
        marker = r & -r
        if r != (marker if levels[c % width] & 1 == 0 else -marker):
            return ERR_PADDING
    return OK


@numba.njit(cache=True)
def decode_task(code, kind, weight, geom, history, n_before, colcount, memo, chain, coder, out):  # pragma: no cover
    """Decode a task into ``out`` (the uint8 view of its flat pattern; every entry is written); returns a status.

    ``geom`` (L, 4) int64: start, size, rows, ones per layer (sizes and counts already checked against the
    layout).  Scratch: ``colcount`` int32 (rows model: the largest column count of a layer of 2 rows or
    more), ``memo`` int64 (``2 * MEMO``), ``chain`` int64 (chain model: ``3 * (n_before + 1)``), ``coder`` int64
    (2,).
    """
    n = out.shape[0]
    n_code = code.shape[0]
    total = 0
    coded = 0
    for layer in range(geom.shape[0]):
        total += geom[layer, 3]
        if 0 < geom[layer, 3] < geom[layer, 1]:
            coded += 1
    has_symbols = (0 < total < n) if kind == KIND_STATIC else coded > 0
    if not has_symbols:
        if n_code:
            return ERR_START
        for layer in range(geom.shape[0]):
            out[geom[layer, 0]:geom[layer, 0] + geom[layer, 1]] = 1 if geom[layer, 3] else 0
        return OK
    if n_code == 0 or code[0] == 0:
        return ERR_START
    head = (n_code - 1) % 3 + 1  # the final state's first 1 to 3 bytes; the rest is 24-bit words
    x = 0
    for i in range(head):
        x = (x << 8) | np.int64(code[i])
    pos = head
    x, pos = _refill(x, pos, code)
    x, pos = _refill(x, pos, code)
    if kind == KIND_STATIC:
        x, pos = _get_run(x, pos, code, level_of(total / n), out)
        for layer in range(geom.shape[0]):
            if _ones(out[geom[layer, 0]:geom[layer, 0] + geom[layer, 1]]) != geom[layer, 3]:
                return ERR_COUNTS
    else:
        for layer in range(geom.shape[0]):
            start, size, rows, ones = geom[layer, 0], geom[layer, 1], geom[layer, 2], geom[layer, 3]
            y = out[start:start + size]
            if not 0 < ones < size:
                y[:] = 1 if ones else 0
                continue
            p = ones / size
            if kind == KIND_LAYERS or (kind == KIND_ROWS and rows < 2):
                x, pos = _get_run(x, pos, code, level_of(p), y)
            elif kind == KIND_ROWS:
                coder[0], coder[1] = x, pos
                _rows_layer(coder, code, y, rows, weight * p, weight, colcount, memo)
                x, pos = coder[0], coder[1]
            else:
                coder[0], coder[1] = x, pos
                status = _chain_layer(coder, code, y, history[start:start + size], n_before, weight * p, weight, chain)
                if status != OK:
                    return status
                x, pos = coder[0], coder[1]
            if _ones(y) != ones:
                return ERR_COUNTS
    if x != 1 or pos != n_code:
        return ERR_END
    return OK

