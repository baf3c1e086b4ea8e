"""Numba kernels of the recall dynamics (private).

Kernels compute only: validated C-contiguous arrays in, in-place updates and
counts out, no raising, no Python objects.  :mod:`hopfield_masks.recall.dynamics`
validates, allocates and calls them; each kernel has a plain NumPy reference
in ``tests/hopfield_masks/test_dynamics.py`` and a property that they agree.

Both kernels are generic over the coupling dtype: Numba compiles one version
per dtype (float64, float32, int8 read directly; float16, which Numba's CPU
target cannot load, is passed as its ``uint16`` bit patterns plus a 65 536-entry
``float32`` decoding table).  Fields are kept *unscaled* (``W s`` in float64);
the decision uses ``scale * field + external``, so ``int8`` couplings are
never dequantised.

Tie rule: a unit whose total field is exactly 0 keeps its spin.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["async_sweep", "sync_update", "FLOAT16_TABLE", "kernel_couplings"]

#: float32 value of every float16 bit pattern (index = the pattern as uint16).
FLOAT16_TABLE = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
_EMPTY_TABLE = np.zeros(0, np.float32)


def kernel_couplings(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``(couplings, table)`` pair the kernels take: float16 as uint16 codes plus the decoding table."""
    if weights.dtype == np.float16:
        return weights.view(np.uint16), FLOAT16_TABLE
    return weights, _EMPTY_TABLE


def _add_row(field, w, table, i, d):
    """``field[j] += d * W[i, j]`` for every j (pure-Python version, used with ``NUMBA_DISABLE_JIT=1``)."""
    row = table[w[i]] if w.dtype == np.uint16 else w[i]  # uint16 = float16 codes
    field += d * row


@overload(_add_row)
def _add_row_impl(field, w, table, i, d):  # pragma: no cover - compiled
    # Chosen at compile time from the coupling dtype: uint16 means float16 codes.
    if isinstance(w.dtype, types.Integer) and w.dtype.bitwidth == 16 and not w.dtype.signed:

        def impl(field, w, table, i, d):
            for j in range(field.shape[0]):
                field[j] += d * table[w[i, j]]

    else:

        def impl(field, w, table, i, d):
            for j in range(field.shape[0]):
                field[j] += d * w[i, j]

    return impl


@numba.njit(cache=True)
def async_sweep(w, table, scale, state, field, ext, order):  # pragma: no cover - compiled
    """One asynchronous sweep over the units in ``order``; returns the number of flips.

    ``state`` (int8 (N,)) and ``field`` (float64 (N,), the unscaled ``W state``)
    are updated in place.  A flip of unit i changes ``s_i`` by ``2 s_i_new`` and
    every field by that times ``W[:, i]``, read as row ``i`` (``W`` is symmetric):
    O(N) per flip, not O(N²) per sweep.
    """
    n_flips = 0
    for t in range(order.shape[0]):
        i = order[t]
        total = scale * field[i] + ext[i]
        if total > 0.0:
            new = 1
        elif total < 0.0:
            new = -1
        else:
            continue  # tie: keep the current spin
        if new != state[i]:
            state[i] = new
            _add_row(field, w, table, i, 2.0 * new)
            n_flips += 1
    return n_flips


@numba.njit(cache=True)
def sync_update(fields, scale, ext, states, changed):  # pragma: no cover - compiled
    """Synchronous update of every row of ``states`` ((k, N) int8, in place) from precomputed unscaled ``fields``.

    ``ext`` is (k, N) or (1, N) (shared by all rows); ``changed[c]`` receives the
    number of spins of row c that flipped.
    """
    k, n = states.shape
    shared = ext.shape[0] == 1
    for c in range(k):
        e = ext[0] if shared else ext[c]
        count = 0
        for i in range(n):
            total = scale * fields[c, i] + e[i]
            if total > 0.0:
                new = 1
            elif total < 0.0:
                new = -1
            else:
                continue  # tie: keep the current spin
            if new != states[c, i]:
                states[c, i] = new
                count += 1
        changed[c] = count
