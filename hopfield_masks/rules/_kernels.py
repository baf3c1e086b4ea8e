"""Numba kernels of the learning rules (private).

Kernels compute only: they take validated, C-contiguous arrays of fixed dtypes,
update ``w`` in place, never raise and never allocate Python objects.  The
wrappers in the rule modules validate, compute the local field with BLAS and
call these.  Each kernel has a plain NumPy reference in
``tests/hopfield_masks/test_rules.py`` and a Hypothesis property that they agree.

Exact symmetry: every kernel walks the matrix row by row (contiguous,
vectorisable) and computes the new ``w_ij`` from an expression that is
bitwise the same as the one for ``w_ji`` when the input is symmetric (IEEE
multiplication and addition are commutative, and ``x_i h_j + h_i x_j`` adds
the same two products in either order), so a symmetric matrix stays exactly
symmetric.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["hebbian_update", "storkey_update", "storkey_reference_update", "rank_one_update"]

@numba.njit(cache=True)
def hebbian_update(w, patterns, inv_n):  # pragma: no cover - compiled
    """``w += inv_n * x xᵀ`` for each row ``x`` of ``patterns`` ((k, N) int8), then zero the diagonal."""
    k, n = patterns.shape
    for p in range(k):
        x = patterns[p]
        for i in range(n):
            xi = x[i]
            for j in range(n):
                w[i, j] += (xi * x[j]) * inv_n
    for i in range(n):
        w[i, i] = 0.0


@numba.njit(cache=True)
def storkey_update(w, x, h, inv_n):  # pragma: no cover - compiled
    """One exact Storkey (1997) step for pattern ``x`` (int8 (N,)) given the full field ``h = w @ x`` (float64).

    ``Δw_ij = inv_n * (x_i x_j - x_i h_ji - h_ij x_j)`` with ``h_ij = Σ_{k≠i,j} w_ik x_k``.
    Writing ``g_i = h_i - w_ii x_i`` (the field without the self term),
    ``h_ij = g_i - w_ij x_j`` and ``h_ji = g_j - w_ji x_i``; with ``x_i² = 1`` and a
    symmetric ``w`` this is ``Δw_ij = inv_n * (x_i x_j - (x_i g_j + g_i x_j) + 2 w_ij)``:
    one contiguous row-by-row pass, O(N²).  The diagonal is then set to zero.
    """
    n = x.shape[0]
    # Work at the weights' precision: the result is rounded to it anyway, and float32 vectorises twice as wide.
    xf = np.empty(n, w.dtype)
    g = np.empty(n, w.dtype)  # field at each unit without its self term
    for i in range(n):
        xf[i] = x[i]
        g[i] = h[i] - w[i, i] * x[i]
    c = w.dtype.type(inv_n)
    two = w.dtype.type(2.0)
    for i in range(n):
        xi = xf[i]
        gi = g[i]
        row = w[i]
        for j in range(n):
            wij = row[j]
            row[j] = wij + (xi * xf[j] - (xi * g[j] + gi * xf[j]) + two * wij) * c
    for i in range(n):
        w[i, i] = 0.0


@numba.njit(cache=True)
def storkey_reference_update(w, x, h, inv_n):  # pragma: no cover - compiled
    """The reference code's step: ``w += inv_n * (x xᵀ - I - x hᵀ - h xᵀ)`` with ``h = w @ x``; diagonal kept."""
    n = x.shape[0]
    xf = np.empty(n, w.dtype)  # at the weights' precision, as in storkey_update
    hf = np.empty(n, w.dtype)
    for i in range(n):
        xf[i] = x[i]
        hf[i] = h[i]
    c = w.dtype.type(inv_n)
    for i in range(n):
        xi = xf[i]
        hi = hf[i]
        row = w[i]
        for j in range(n):
            row[j] += (xi * xf[j] - (xi * hf[j] + hi * xf[j])) * c
        w[i, i] -= c  # the -I term, on the diagonal only


@numba.njit(cache=True)
def rank_one_update(w, r, inv_norm2):  # pragma: no cover - compiled
    """``w += inv_norm2 * r rᵀ`` (the projection rule's step; ``r`` float64 (N,))."""
    n = r.shape[0]
    for i in range(n):
        ri = r[i]
        for j in range(n):
            w[i, j] += (ri * r[j]) * inv_norm2
