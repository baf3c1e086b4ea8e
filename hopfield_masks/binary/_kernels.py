"""Numba kernels of the learned ±1 couplings (private).

Kernels compute only: they take validated, C-contiguous arrays of fixed dtypes, update their output
arrays in place and never raise.  :mod:`hopfield_masks.binary.learning` validates, allocates and calls
them; :mod:`hopfield_masks.binary.reference` computes the same results with plain NumPy, and the tests
check that both agree bit for bit.

Bit layout: a ±1 vector of ``n`` spins (``n`` a multiple of 64) is ``n / 64`` little-endian ``uint64``
words, spin ``j`` in bit ``j % 64`` of word ``j // 64``, bit 1 for +1 (``numpy.packbits(...,
bitorder="little")`` viewed as ``uint64``).  A coupling row of block ``b`` and mask unit ``i`` has
``K + M`` inputs: the ``K`` key units first, then the block's ``M`` mask units; its input ``K + i``
(the unit itself) is never used.  ``sum_j w_j x_j = 2 * agree - n`` where ``agree`` counts equal bits.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["fit_rows", "recall_rows", "xorshift"]

_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@numba.njit(inline="always", cache=True)
def _popcount(x):  # pragma: no cover - compiled
    x = x - ((x >> np.uint64(1)) & _M1)
    x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
    x = (x + (x >> np.uint64(4))) & _M4
    return int((x * _H01) >> np.uint64(56))


@numba.njit(inline="always", cache=True)
def _agree(w, x, x_offset, lo, hi):  # pragma: no cover - compiled
    """Equal bits of ``w[lo:hi]`` and ``x[lo - x_offset : hi - x_offset]``."""
    a = 0
    for k in range(lo, hi):
        a += _popcount(~(w[k] ^ x[k - x_offset]))
    return a


@numba.njit(inline="always", cache=True)
def _bit(words, j):  # pragma: no cover - compiled
    return (words[j >> 6] >> np.uint64(j & 63)) & np.uint64(1)


@numba.njit(inline="always", cache=True)
def xorshift(s):  # pragma: no cover - compiled
    """Marsaglia's xorshift64 (13, 7, 17): the next state of a nonzero ``uint64``."""
    s ^= s << np.uint64(13)
    s ^= s >> np.uint64(7)
    s ^= s << np.uint64(17)
    return s


@numba.njit(inline="always", cache=True)
def _move(h, w, spins, offset, y, lo, hi, skip, agreeing, bound):  # pragma: no cover - compiled
    """``h_j += 2 y x_j`` for inputs ``j`` in ``[lo, hi)`` but ``skip`` (clipped to ``±bound``), then ``w = sign(h)``.

    ``spins[j - offset]`` is input ``j``.  ``agreeing``: only where ``h_j`` already has the sign of
    ``y x_j`` (reinforcement; no sign changes, so ``w`` is left as it is).  ``lo`` and ``hi`` are
    multiples of 64.
    """
    two = 2 * y
    for j in range(lo, hi):
        if j == skip:
            continue
        d = two * spins[j - offset]
        v = h[j]
        if agreeing and v * d <= 0:
            continue
        v += d
        if v > bound:
            v = bound
        elif v < -bound:
            v = -bound
        h[j] = v
    if agreeing:
        return
    for k in range(lo >> 6, hi >> 6):
        word = np.uint64(0)
        base = k << 6
        for b in range(64):
            if h[base + b] > 0:
                word |= np.uint64(1) << np.uint64(b)
        w[k] = word


@numba.njit(parallel=True, cache=True)
def fit_rows(key_bits, key_spins, mask_bits, mask_spins, hidden, couplings, states, kappa_key, kappa_full,
             theta, reinforce, bound, max_epochs, order, epochs):  # pragma: no cover - compiled
    """Clipped-perceptron learning with stochastic reinforcement (SBPI) of every coupling row.

    Shapes: ``key_bits`` (T, K/64) uint64 and ``key_spins`` (T, K) int8, shared by all blocks;
    ``mask_bits`` (T, B, M/64) uint64 and ``mask_spins`` (T, B, M) int8; ``hidden`` (B, M, K+M) int16,
    odd, ``|h| <= bound``; ``couplings`` (B, M, (K+M)/64) uint64 = sign(hidden), updated together;
    ``states`` (B*M,) uint64 nonzero generator states; ``order`` (B*M, T) int32 scratch; ``epochs``
    (B*M,) int64 out: epochs run, ``max_epochs + 1`` when the row never met every constraint.

    Row ``(b, i)`` must give target ``y = x[K + i]`` of every pattern ``x`` a field of the right
    sign with a margin: ``y * field_key > kappa_key`` (the key units alone, the first step of keyed
    recall; skipped when K = 0) and ``y * field_full > kappa_full`` (key and the other mask units,
    the fixed point).  A violated constraint moves the hidden states of its inputs by ``2 y x_j``;
    a constraint met by at most ``theta`` more than its margin reinforces, with probability
    ``reinforce / 2**53`` (``learning.REINFORCE_BITS``), the hidden states that already agree.
    Patterns are visited in a shuffled order each epoch; a row stops after an epoch with no violation.
    """
    T = key_bits.shape[0]
    n_blocks, m = mask_spins.shape[1], mask_spins.shape[2]
    k_units = key_spins.shape[1]
    wk = k_units // 64
    wm = m // 64
    for r in prange(n_blocks * m):
        b = r // m
        i = r % m
        h = hidden[b, i]
        w = couplings[b, i]
        s = states[r]
        idx = order[r]
        for t in range(T):
            idx[t] = t
        self_j = k_units + i
        self_w = 1 if _bit(w, self_j) else -1
        ran = max_epochs + 1
        for epoch in range(max_epochs):
            for t in range(T - 1, 0, -1):
                s = xorshift(s)
                u = int(s % np.uint64(t + 1))
                tmp = idx[t]
                idx[t] = idx[u]
                idx[u] = tmp
            violations = 0
            for q in range(T):
                t = idx[q]
                kb = key_bits[t]
                mb = mask_bits[t, b]
                ks = key_spins[t]
                ms = mask_spins[t, b]
                y = int(ms[i])
                f_key = 2 * _agree(w, kb, 0, 0, wk) - k_units
                f_mask = 2 * _agree(w, mb, wk, wk, wk + wm) - m - self_w * y
                d_key = y * f_key
                d_full = y * (f_key + f_mask)
                key_moved = False
                if k_units > 0:
                    if d_key <= kappa_key:
                        violations += 1
                        _move(h, w, ks, 0, y, 0, k_units, -1, False, bound)
                        key_moved = True
                    elif d_key <= kappa_key + theta:
                        s = xorshift(s)
                        if (s >> np.uint64(11)) < reinforce:  # the top REINFORCE_BITS = 53 bits
                            _move(h, w, ks, 0, y, 0, k_units, -1, True, bound)
                if d_full <= kappa_full:
                    violations += 1
                    _move(h, w, ms, k_units, y, k_units, k_units + m, self_j, False, bound)
                    if k_units > 0 and not key_moved:
                        _move(h, w, ks, 0, y, 0, k_units, -1, False, bound)
                elif d_full <= kappa_full + theta:
                    s = xorshift(s)
                    if (s >> np.uint64(11)) < reinforce:  # the top REINFORCE_BITS = 53 bits
                        _move(h, w, ms, k_units, y, k_units, k_units + m, self_j, True, bound)
            if violations == 0:
                ran = epoch + 1
                break
        states[r] = s
        epochs[r] = ran


@numba.njit(parallel=True, cache=True)
def recall_rows(couplings, key_bits, start_bits, from_key, max_sweeps, out, sweeps, converged):  # pragma: no cover
    """Keyed recall of each query in every block: the key clamped, the mask units settling under the couplings.

    Shapes: ``couplings`` (B, M, (K+M)/64) uint64; ``key_bits`` (Q, K/64) uint64; ``start_bits``
    (Q, B, M/64) uint64 (ignored when ``from_key``); ``out`` (Q, B, M/64) uint64; ``sweeps`` (Q, B)
    int64 and ``converged`` (Q, B) bool out.  Start: each mask unit takes the sign of the field of the
    key alone (``from_key``; 0 gives +1) or the start bits.  Then sweeps of unit ``0 .. M-1`` in order,
    each unit taking the sign of its whole field (0 keeps it), until a sweep flips nothing or
    ``max_sweeps`` ran.
    """
    n_queries = key_bits.shape[0]
    n_blocks, m = couplings.shape[0], couplings.shape[1]
    wk = key_bits.shape[1]
    wm = m // 64
    k_units = wk * 64
    for r in prange(n_queries * n_blocks):
        q = r // n_blocks
        b = r % n_blocks
        x = out[q, b]
        kb = key_bits[q]
        for k in range(wm):
            x[k] = np.uint64(0) if from_key else start_bits[q, b, k]
        if from_key:
            for i in range(m):
                if 2 * _agree(couplings[b, i], kb, 0, 0, wk) - k_units >= 0:
                    x[i >> 6] |= np.uint64(1) << np.uint64(i & 63)
        done = False
        ran = 0
        while ran < max_sweeps and not done:
            ran += 1
            flips = 0
            for i in range(m):
                w = couplings[b, i]
                xi = 1 if _bit(x, i) else -1
                wi = 1 if _bit(w, k_units + i) else -1
                f = 2 * (_agree(w, kb, 0, 0, wk) + _agree(w, x, wk, wk, wk + wm)) - k_units - m - wi * xi
                if f * xi < 0:
                    x[i >> 6] ^= np.uint64(1) << np.uint64(i & 63)
                    flips += 1
            done = flips == 0
        sweeps[q, b] = ran
        converged[q, b] = done
