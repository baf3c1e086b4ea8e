"""Numba kernels over byte-major packed masks (compute only: no checks, no raising).

A layer's finished masks are stored *byte-major*: ``packed[j, t]`` is byte ``j`` of
task ``t``'s packed mask (MSB first), so the bytes of one position across all
tasks are contiguous.  Both kernels walk ``j`` (split into a fixed number of
blocks run in parallel) and, for each ``j``, touch the row ``packed[j, :ntasks]``
once:

- :func:`contract_kernel` -- ``out[r, t] = sum_p grads[r, p] * bit_p(mask_t)``.
  For each ``j`` it builds a 256-entry table of the partial sums of the 8
  gradient values (255 additions), then adds ``lut[packed[j, t]]`` for every
  task: one lookup per task and byte instead of eight multiply-adds.  Four byte
  rows are handled per pass over the tasks.
- :func:`superpose_kernel` -- ``out[p] = sum_t alphas[t] * bit_p(mask_t)``.  For
  each ``j`` it builds a weighted histogram of the high and low nibbles (two
  additions per task), then reads the 8 bit sums off the two 16-bin histograms.

The Python wrappers in :mod:`supsup_core.layers.base` validate, allocate and
sum the per-block partial results in a fixed order, so results do not depend
on the number of threads.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

__all__ = ["contract_kernel", "superpose_kernel"]


@numba.njit(cache=True, parallel=True)
def contract_kernel(packed, ntasks, grads, acc):  # pragma: no cover - compiled
    """Accumulate per-block contractions into ``acc``.

    packed : (nbytes, capacity) uint8, byte-major; columns ``[0, ntasks)`` are used.
    grads : (R, nbytes, 8) float64, entry ``8 j + b`` of row ``r`` at ``grads[r, j, b]``.
    acc : (nblocks, R, ntasks) float64 zeros; block ``b`` covers bytes
        ``[b nbytes // nblocks, (b + 1) nbytes // nblocks)``.
    """
    nbytes = packed.shape[0]
    n_rhs = grads.shape[0]
    nblocks = acc.shape[0]
    for blk in prange(nblocks):
        lo = blk * nbytes // nblocks
        hi = (blk + 1) * nbytes // nblocks
        lut = np.zeros((4, 256), np.float64)  # entry 0 (no bit set) stays 0
        for r in range(n_rhs):
            a = acc[blk, r]
            # four byte rows per pass: one load/store of the accumulator per 4 lookups (~20 % faster)
            for j0 in range(lo, hi, 4):
                m = min(4, hi - j0)
                for q in range(m):
                    # lut[q, v] = sum of the gradients at the set bits of v; bit value 2**p is entry 7 - p
                    lq = lut[q]
                    for p in range(8):
                        g = grads[r, j0 + q, 7 - p]
                        base = 1 << p
                        for i in range(base):
                            lq[base + i] = lq[i] + g
                if m == 4:
                    r0, r1, r2, r3 = packed[j0], packed[j0 + 1], packed[j0 + 2], packed[j0 + 3]
                    l0, l1, l2, l3 = lut[0], lut[1], lut[2], lut[3]
                    for t in range(ntasks):
                        a[t] += (l0[r0[t]] + l1[r1[t]]) + (l2[r2[t]] + l3[r3[t]])
                else:
                    for q in range(m):
                        rq, lq = packed[j0 + q], lut[q]
                        for t in range(ntasks):
                            a[t] += lq[rq[t]]


@numba.njit(cache=True, parallel=True)
def superpose_kernel(packed, ntasks, alphas, out, nblocks):  # pragma: no cover - compiled
    """Write ``out[j, b] = sum_t alphas[t] * bit b of packed[j, t]`` (b = 0 is the MSB).

    packed : (nbytes, capacity) uint8; alphas : (ntasks,) float64; out : (nbytes, 8) float64;
    nblocks : number of parallel blocks of bytes (each byte row is written by one block only).
    """
    nbytes = packed.shape[0]
    for blk in prange(nblocks):
        lo = blk * nbytes // nblocks
        hi = (blk + 1) * nbytes // nblocks
        hist_hi = np.empty(16, np.float64)
        hist_lo = np.empty(16, np.float64)
        for j in range(lo, hi):
            hist_hi[:] = 0.0
            hist_lo[:] = 0.0
            row = packed[j]
            for t in range(ntasks):
                a = alphas[t]
                if a != 0.0:
                    v = row[t]
                    hist_hi[v >> 4] += a
                    hist_lo[v & 15] += a
            for q in range(4):
                # bit q of a nibble counted from its MSB has value 2**(3 - q)
                bit = 1 << (3 - q)
                s_hi = 0.0
                s_lo = 0.0
                for v in range(16):
                    if v & bit:
                        s_hi += hist_hi[v]
                        s_lo += hist_lo[v]
                out[j, q] = s_hi
                out[j, 4 + q] = s_lo
