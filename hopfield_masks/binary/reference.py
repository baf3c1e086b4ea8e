"""Plain NumPy versions of the kernels in :mod:`hopfield_masks.binary._kernels`, for the tests.

They take and return the same arrays as the kernels (the wrappers' packed words included) but
compute on unpacked ±1 spins, one row and one pattern at a time, with Python integers for the
generator: slow, and written to be read.  The tests check that kernel and reference agree bit for
bit on random problems.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_rows_reference", "recall_rows_reference", "unpack_spins", "xorshift_reference"]

_MASK64 = (1 << 64) - 1


def xorshift_reference(s: int) -> int:
    """Marsaglia's xorshift64 (13, 7, 17) on a Python integer."""
    s ^= (s << 13) & _MASK64
    s ^= s >> 7
    s ^= (s << 17) & _MASK64
    return s


def unpack_spins(words: np.ndarray) -> np.ndarray:
    """int8 ±1 spins of little-endian packed ``uint64`` words (last axis)."""
    bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8), axis=-1, bitorder="little")
    return (2 * bits.astype(np.int8) - 1).astype(np.int8)


def _move(h: np.ndarray, x: np.ndarray, y: int, inputs: np.ndarray, agreeing: bool, bound: int) -> None:
    """``h_j += 2 y x_j`` on ``inputs`` (only where ``h_j`` agrees with ``y x_j`` when ``agreeing``), clipped."""
    step = 2 * y * x[inputs]
    if agreeing:
        keep = h[inputs] * step > 0
        inputs, step = inputs[keep], step[keep]
    h[inputs] = np.clip(h[inputs] + step, -bound, bound)


def fit_rows_reference(key_bits, key_spins, mask_bits, mask_spins, hidden, couplings, states, kappa_key, kappa_full,
                       theta, reinforce, bound, max_epochs, order, epochs) -> None:
    """:func:`~hopfield_masks.binary._kernels.fit_rows` in NumPy (same arguments, same in-place results)."""
    del key_bits, mask_bits, order  # the reference reads the spins
    t_count, k_units = key_spins.shape
    n_blocks, m = mask_spins.shape[1], mask_spins.shape[2]
    reinforce = int(reinforce)
    for r in range(n_blocks * m):
        b, i = divmod(r, m)
        h = hidden[b, i].astype(np.int64)
        s = int(states[r])
        self_j = k_units + i
        self_w = 1 if h[self_j] > 0 else -1
        key_inputs = np.arange(k_units)
        mask_inputs = np.array([j for j in range(k_units, k_units + m) if j != self_j], dtype=np.int64)
        idx = list(range(t_count))
        ran = max_epochs + 1
        for epoch in range(max_epochs):
            for t in range(t_count - 1, 0, -1):
                s = xorshift_reference(s)
                u = s % (t + 1)
                idx[t], idx[u] = idx[u], idx[t]
            violations = 0
            for t in idx:
                x = np.concatenate([key_spins[t], mask_spins[t, b]]).astype(np.int64)
                y = int(x[self_j])
                w = np.where(h > 0, 1, -1)
                f_key = int(w[:k_units] @ x[:k_units])
                f_mask = int(w[k_units:] @ x[k_units:]) - self_w * y
                d_key, d_full = y * f_key, y * (f_key + f_mask)

                key_moved = False
                if k_units > 0:
                    if d_key <= kappa_key:
                        violations += 1
                        _move(h, x, y, key_inputs, False, bound)
                        key_moved = True
                    elif d_key <= kappa_key + theta:
                        s = xorshift_reference(s)
                        if (s >> 11) < reinforce:
                            _move(h, x, y, key_inputs, True, bound)
                if d_full <= kappa_full:
                    violations += 1
                    _move(h, x, y, mask_inputs, False, bound)
                    if k_units > 0 and not key_moved:
                        _move(h, x, y, key_inputs, False, bound)
                elif d_full <= kappa_full + theta:
                    s = xorshift_reference(s)
                    if (s >> 11) < reinforce:
                        _move(h, x, y, mask_inputs, True, bound)
            if violations == 0:
                ran = epoch + 1
                break
        hidden[b, i] = h.astype(hidden.dtype)
        couplings[b, i] = np.packbits(h > 0, bitorder="little").view(np.uint64)
        states[r] = np.uint64(s)
        epochs[r] = ran


def recall_rows_reference(couplings, key_bits, start_bits, from_key, max_sweeps, out, sweeps, converged) -> None:
    """:func:`~hopfield_masks.binary._kernels.recall_rows` in NumPy (same arguments, same in-place results)."""
    n_blocks, m = couplings.shape[0], couplings.shape[1]
    k_units = key_bits.shape[1] * 64
    w_all = unpack_spins(couplings).astype(np.int64)  # (B, M, K+M)
    keys = unpack_spins(key_bits).astype(np.int64)  # (Q, K)
    for q in range(key_bits.shape[0]):
        for b in range(n_blocks):
            w = w_all[b]
            if from_key:
                x = np.where(w[:, :k_units] @ keys[q] >= 0, 1, -1)
            else:
                x = unpack_spins(start_bits[q, b]).astype(np.int64)
            ran, done = 0, False
            while ran < max_sweeps and not done:
                ran += 1
                flips = 0
                for i in range(m):
                    f = int(w[i, :k_units] @ keys[q]) + int(w[i, k_units:] @ x) - int(w[i, k_units + i]) * int(x[i])
                    if f * x[i] < 0:
                        x[i] = -x[i]
                        flips += 1
                done = flips == 0
            out[q, b] = np.packbits(x > 0, bitorder="little").view(np.uint64)
            sweeps[q, b] = ran
            converged[q, b] = done
