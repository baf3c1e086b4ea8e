"""Plain Python references of the ``hdf5-entropy`` kernels, written from the format's description.

``hopfield_masks/codecs/_rans_kernels.py`` (format version 4) and ``_range_kernels.py`` (versions 1-3,
constriction's range coder) are Numba; these are what they must compute, with Python integers (no
overflow) and one entry or symbol at a time, for the property tests of ``test_entropy_coder.py``.
Slow: meant for tasks of a few thousand entries.
"""

from __future__ import annotations

import math

import numpy as np

PRECISION, TOTAL, STATE_LOW, N_LEVELS, BATCH, LARGE_LAYER = 24, 1 << 24, 1 << 39, 769, 32, 1 << 14
OK, ERR_START, ERR_END, ERR_COUNTS, ERR_PADDING, ERR_HISTORY = 0, 1, 2, 3, 4, 5
STATIC, LAYERS, ROWS, CHAIN = 0, 1, 2, 3


# ---------------------------------------------------------------------------------------------- version 4
def level_of(q: float) -> tuple[int, int]:
    """``(level, inverted)`` of a probability, as the module docstring of ``codecs.entropy`` defines it."""
    inverted = int(q > 0.5)
    u = 1.0 - q if inverted else q
    if u == 0.5:
        return 0, 0
    if not u > 0.0:
        return N_LEVELS - 1, inverted
    f, e = math.frexp(u)
    if e < -24:
        return N_LEVELS - 1, inverted
    return 1 + 32 * (-1 - e) + 31 - math.floor(64 * (f - 0.5)), inverted


def level_prob(level: int) -> float:
    if level == 0:
        return 0.5
    e, m = -1 - (level - 1) // 32, 31 - (level - 1) % 32
    return (65 + 2 * m) * 2.0 ** (e - 7)


def tables() -> tuple[np.ndarray, np.ndarray]:
    """``cum`` (N_LEVELS, 257) and ``bit0`` (N_LEVELS,): the byte and bit tables of every level."""
    cum = np.zeros((N_LEVELS, 257), dtype=np.int64)
    bit0 = np.zeros(N_LEVELS, dtype=np.int64)
    for level in range(N_LEVELS):
        r = level_prob(level)
        freq = []
        for s in range(256):
            p = 1.0
            for _ in range(bin(s).count("1")):
                p *= r
            for _ in range(8 - bin(s).count("1")):
                p *= 1.0 - r
            freq.append(max(1, math.floor(p * TOTAL)))
        freq[0] += TOTAL - sum(freq)
        cum[level, 1:] = np.cumsum(freq)
        bit0[level] = TOTAL - max(1, math.floor(r * TOTAL))
    return cum, bit0


def _coded(ones: int, size: int) -> bool:
    return 0 < ones < size


def chain_shape(size: int) -> tuple[int, int]:
    """Batch entries and classes per count of a chain layer: (32, 2) from LARGE_LAYER entries on, else (8, 1)."""
    return (BATCH, 2) if size >= LARGE_LAYER else (8, 1)


def symbols(flat, kind, weight, geom, history, n_before) -> list[tuple[int, int, int]]:
    """The task's symbols in decoding order: ``(value, level, is_byte)``, entries already inverted."""
    x = [int(v) for v in np.asarray(flat, dtype=np.uint8)]
    out: list[tuple[int, int, int]] = []

    def run(entries: list[int], q: float) -> None:
        level, inv = level_of(q)
        for g in range(len(entries) // 8):
            byte = 0
            for e in entries[8 * g:8 * g + 8]:
                byte = 2 * byte + (e ^ inv)
            out.append((byte, level, 1))
        for e in entries[len(entries) // 8 * 8:]:
            out.append((e ^ inv, level, 0))

    geom = [tuple(int(v) for v in row) for row in np.asarray(geom)]
    if kind == STATIC:
        total = sum(row[3] for row in geom)
        if _coded(total, len(x)):
            run(x, total / len(x))
        return out
    for start, size, rows, ones in geom:
        if not _coded(ones, size):
            continue
        layer, p = x[start:start + size], ones / size
        t = weight * p
        if kind == LAYERS or (kind == ROWS and rows < 2):
            run(layer, p)
        elif kind == ROWS:
            cols = size // rows
            counts = [0] * cols
            for b in range(rows // 8):
                for j in range(cols):
                    level, inv = level_of((counts[j] + t) / (8.0 * b + weight))
                    column = [layer[(8 * b + i) * cols + j] for i in range(8)]
                    out.append((sum((e ^ inv) << (7 - i) for i, e in enumerate(column)), level, 1))
                    counts[j] += sum(column)
            for r in range(rows // 8 * 8, rows):
                for j in range(cols):
                    level, inv = level_of((counts[j] + t) / (r + weight))
                    e = layer[r * cols + j]
                    out.append((e ^ inv, level, 0))
                    counts[j] += e
        else:
            h = [int(v) for v in history[start:start + size]]
            batch, lanes = chain_shape(size)
            by_class: dict[tuple[int, int], list[int]] = {}  # (count, lane) -> its entries
            for j, c in enumerate(h):
                by_class.setdefault((c, j % lanes), []).append(j)
            batches = {}  # first entry of each batch -> (count, its entries)
            for (c, _), entries in by_class.items():
                for b in range(0, len(entries), batch):
                    batches[entries[b]] = (c, entries[b:b + batch])
            for first in sorted(batches):
                c, entries = batches[first]
                level, inv = level_of((c + t) / (n_before + weight))
                bits = [layer[j] ^ inv for j in entries] + [0] * (batch - len(entries))
                for g in range(batch // 8):
                    out.append((sum(bit << (7 - i) for i, bit in enumerate(bits[8 * g:8 * g + 8])), level, 1))
    return out


def _interval(symbol: tuple[int, int, int], cum, bit0) -> tuple[int, int]:
    value, level, is_byte = symbol
    if is_byte:
        return int(cum[level, value]), int(cum[level, value + 1] - cum[level, value])
    f0 = int(bit0[level])
    return (0, f0) if value == 0 else (f0, TOTAL - f0)


def encode(flat, kind, weight, geom, history, n_before, cum, bit0) -> bytes:
    """The version-4 code of a task."""
    syms = symbols(flat, kind, weight, geom, history, n_before)
    if not syms:
        return b""
    x, words = 1, []
    for symbol in reversed(syms):
        c, f = _interval(symbol, cum, bit0)
        if x >= f << 39:
            words.append(x % (1 << 24))
            x >>= 24
        x = (x // f << 24) + x % f + c
    while x >= 1 << 24:
        words.append(x % (1 << 24))
        x >>= 24
    head = x.to_bytes((x.bit_length() + 7) // 8, "big")
    return head + b"".join(w.to_bytes(3, "big") for w in reversed(words))


def decode(code: bytes, kind, weight, geom, history, n_before, cum, bit0, n: int) -> tuple[int, np.ndarray]:
    """``(status, flat)`` of a version-4 code; the statuses and their order are the kernel's."""
    geom = [tuple(int(v) for v in row) for row in np.asarray(geom)]
    out = [0] * n
    total = sum(row[3] for row in geom)
    has_symbols = _coded(total, n) if kind == STATIC else any(_coded(o, s) for _, s, _, o in geom)
    if not has_symbols:
        if code:
            return ERR_START, np.array(out, dtype=bool)
        for start, size, _, ones in geom:
            out[start:start + size] = [int(ones > 0)] * size
        return OK, np.array(out, dtype=bool)
    if not code or code[0] == 0:
        return ERR_START, np.array(out, dtype=bool)
    head = (len(code) - 1) % 3 + 1
    state = {"x": int.from_bytes(code[:head], "big"), "pos": head}

    def refill() -> None:
        if state["x"] < STATE_LOW and state["pos"] + 3 <= len(code):
            state["x"] = (state["x"] << 24) | int.from_bytes(code[state["pos"]:state["pos"] + 3], "big")
            state["pos"] += 3

    def take(level: int, is_byte: int) -> int:
        slot = state["x"] % TOTAL
        if is_byte:
            s = int(np.searchsorted(cum[level], slot, side="right")) - 1
            c, f = int(cum[level, s]), int(cum[level, s + 1] - cum[level, s])
        else:
            f0 = int(bit0[level])
            s, c, f = (0, 0, f0) if slot < f0 else (1, f0, TOTAL - f0)
        state["x"] = f * (state["x"] >> 24) + slot - c
        refill()
        return s

    refill()
    refill()

    def run(start: int, size: int, q: float) -> None:
        level, inv = level_of(q)
        for g in range(size // 8):
            s = take(level, 1) ^ (255 * inv)
            out[start + 8 * g:start + 8 * g + 8] = [(s >> (7 - i)) & 1 for i in range(8)]
        for j in range(start + size // 8 * 8, start + size):
            out[j] = take(level, 0) ^ inv

    if kind == STATIC:
        run(0, n, total / n)
        for start, size, _, ones in geom:
            if sum(out[start:start + size]) != ones:
                return ERR_COUNTS, np.array(out, dtype=bool)
    else:
        for start, size, rows, ones in geom:
            if not _coded(ones, size):
                out[start:start + size] = [int(ones > 0)] * size
                continue
            p = ones / size
            t = weight * p
            if kind == LAYERS or (kind == ROWS and rows < 2):
                run(start, size, p)
            elif kind == ROWS:
                cols = size // rows
                counts = [0] * cols
                for b in range(rows // 8):
                    for j in range(cols):
                        level, inv = level_of((counts[j] + t) / (8.0 * b + weight))
                        s = take(level, 1) ^ (255 * inv)
                        for i in range(8):
                            out[start + (8 * b + i) * cols + j] = (s >> (7 - i)) & 1
                        counts[j] += bin(s).count("1")
                for r in range(rows // 8 * 8, rows):
                    for j in range(cols):
                        level, inv = level_of((counts[j] + t) / (r + weight))
                        e = take(level, 0) ^ inv
                        out[start + r * cols + j] = e
                        counts[j] += e
            else:
                batch, lanes = chain_shape(size)
                pending: dict[tuple[int, int], list[int]] = {}  # per (count, lane): what is left of its batch
                for j in range(size):
                    c = int(history[start + j])
                    if not 0 <= c <= n_before:
                        return ERR_HISTORY, np.array(out, dtype=bool)
                    level, inv = level_of((c + t) / (n_before + weight))
                    if not pending.get((c, j % lanes)):
                        bits = []
                        for _ in range(batch // 8):
                            s = take(level, 1) ^ (255 * inv)
                            bits += [(s >> (7 - i)) & 1 for i in range(8)]
                        pending[c, j % lanes] = bits
                    out[start + j] = pending[c, j % lanes].pop(0)
                for (c, _), left in pending.items():
                    level, inv = level_of((c + t) / (n_before + weight))
                    if any(bit != inv for bit in left):
                        return ERR_PADDING, np.array(out, dtype=bool)
            if sum(out[start:start + size]) != ones:
                return ERR_COUNTS, np.array(out, dtype=bool)
    if state["x"] != 1 or state["pos"] != len(code):
        return ERR_END, np.array(out, dtype=bool)
    return OK, np.array(out, dtype=bool)


def model_costs(flat, geom, history, n_before, weights) -> np.ndarray:
    """The kernel's estimated lengths (bits): static, layers, rows per weight, chain per weight (with padding)."""
    x = np.asarray(flat, dtype=bool)
    n, total = x.size, int(np.asarray(geom)[:, 3].sum())

    def bern(k: int, m: int, q: float) -> float:
        return -(k * math.log2(q) if k else 0.0) - ((m - k) * math.log2(1 - q) if m - k else 0.0)

    def polya(k: int, rows: int, one: float, zero: float) -> float:
        lg = math.lgamma
        return -(lg(k + one) - lg(one) + lg(rows - k + zero) - lg(zero) - lg(rows + one + zero)
                 + lg(one + zero)) / math.log(2)

    w = len(weights)
    costs = np.zeros(2 + 2 * w)
    costs[0] = bern(total, n, total / n) if _coded(total, n) else 0.0
    costs[2 + w:] = 0.0 if n_before else np.inf
    for start, size, rows, ones in np.asarray(geom).tolist():
        if not _coded(ones, size):
            continue
        layer, p = x[start:start + size], ones / size
        costs[1] += bern(ones, size, p)
        for i, a in enumerate(weights):
            if rows < 2:
                costs[2 + i] += bern(ones, size, p)
            else:
                col = layer.reshape(rows, -1).sum(axis=0)
                costs[2 + i] += sum(polya(int(k), rows, a * p, a * (1 - p)) for k in col)
            if n_before:
                h = np.asarray(history[start:start + size])
                even = np.arange(size) % 2 == 0
                batch, lanes = chain_shape(size)
                for c in range(n_before + 1):
                    sel = h == c
                    m, k = int(sel.sum()), int(layer[sel].sum())
                    if m:
                        q = (c + a * p) / (n_before + a)
                        if lanes == 2:
                            pad = -int((sel & even).sum()) % batch + -int((sel & ~even).sum()) % batch
                        else:
                            pad = -m % batch
                        costs[2 + w + i] += bern(k, m, q) - pad * math.log2(max(q, 1 - q))
    return costs


# ---------------------------------------------------------------------------------------------- versions 1-3
_M64 = (1 << 64) - 1


def split(p: float) -> int:
    """Where constriction's ``Bernoulli(p, perfect=False)`` splits ``[0, 2**24)``: a 0 below, a 1 above."""
    q0 = 1.0 - p
    return int(q0 * (float((1 << 24) - 2) / (q0 + p))) + 1


def legacy_probability(j, kind, weight, geom, history, n_before, x) -> float | None:
    """The probability that entry ``j`` is 1 (None: not coded); the rows model reads the entries above in ``x``."""
    total = int(np.asarray(geom)[:, 3].sum())
    if kind == STATIC:
        return np.float64(total) / np.float64(len(x))
    for start, size, rows, ones in np.asarray(geom).tolist():
        if not start <= j < start + size:
            continue
        if not _coded(ones, size):
            return None
        d = np.float64(ones) / np.float64(size)
        if kind == LAYERS:
            return d
        if kind == ROWS:
            cols = size // rows
            r, col = divmod(j - start, cols)
            above = int(np.asarray(x[start + col:start + r * cols:cols], dtype=np.int64).sum()) if r else 0
            return (np.float64(above) + weight * d) / (np.float64(r) + weight)
        return (np.float64(history[j]) + weight * d) / (np.float64(n_before) + weight)
    return None


def legacy_encode(flat, kind, weight, geom, history, n_before) -> list[int]:
    """The words ``get_compressed()`` of constriction's queue range coder returns for the task."""
    x = np.asarray(flat, dtype=bool)
    lower, rng, words, held = 0, _M64, [], None  # held: [first word, count] while a carry may reach them
    for j in range(x.size):
        p = legacy_probability(j, kind, weight, geom, history, n_before, x)
        if p is None:
            continue
        c1 = split(p)
        left, prob = (c1, (1 << 24) - c1) if x[j] else (0, c1)
        scale = rng >> 24
        rng = scale * prob
        new_lower = (lower + scale * left) & _M64
        if held and ((new_lower + rng) & _M64) > new_lower:
            carry = new_lower < lower
            words += [(held[0] + carry) & 0xFFFFFFFF] + [0 if carry else 0xFFFFFFFF] * (held[1] - 1)
            held = None
        lower = new_lower
        if rng < 1 << 32:
            rng <<= 32
            word = lower >> 32
            lower = (lower << 32) & _M64
            if held:
                held[1] += 1
            elif ((lower + rng) & _M64) > lower:
                words.append(word)
            else:
                held = [word, 1]
    if rng == _M64:
        return words
    point = (lower + (1 << 32) - 1) & _M64
    if held:
        carry = point < lower
        words += [(held[0] + carry) & 0xFFFFFFFF] + [0 if carry else 0xFFFFFFFF] * (held[1] - 1)
    words.append(point >> 32)
    if ((lower + rng) & _M64) >> 32 == point >> 32:
        words.append(0)
    return words


def legacy_decode(words, kind, weight, geom, history, n_before, n) -> tuple[int, np.ndarray, bool]:
    """``(status, flat, maybe_exhausted)`` of constriction's decoder over the task's entries (status 1: invalid)."""
    words = [int(w) for w in words]
    pos, point = 0, 0
    for _ in range(2):
        point <<= 32
        if pos < len(words):
            point |= words[pos]
            pos += 1
    lower, rng = 0, _M64
    out = np.zeros(n, dtype=bool)
    geom_rows = np.asarray(geom).tolist()
    for start, size, _, ones in ([] if kind == STATIC else geom_rows):
        if not _coded(ones, size):
            out[start:start + size] = ones > 0
    for j in range(n):
        p = legacy_probability(j, kind, weight, geom, history, n_before, out)
        if p is None:
            continue
        c1 = split(p)
        scale = rng >> 24
        quantile = ((point - lower) & _M64) // scale
        if quantile >= 1 << 24:
            return 1, out, False
        if quantile < c1:
            out[j], rng = False, scale * c1
        else:
            out[j], lower, rng = True, (lower + scale * c1) & _M64, scale * ((1 << 24) - c1)
        if rng < 1 << 32:
            lower, rng, point = (lower << 32) & _M64, rng << 32, (point << 32) & _M64
            if pos < len(words):
                point |= words[pos]
                pos += 1
    exhausted = pos >= len(words) and (rng == _M64 or ((point - lower) & _M64) < (1 << 33) - 1)
    return 0, out, exhausted
