"""Numba kernels over byte-major packed masks (compute only: no checks, no raising).

A layer's finished masks are stored *byte-major*: ``packed[j, t]`` is byte ``j`` of
task ``t``'s packed mask (MSB first), so the bytes of one position across all
tasks are contiguous.  The mask kernels walk ``j`` (split into a fixed number of
blocks run in parallel) and, for each ``j``, touch the row ``packed[j, :ntasks]``
once:

- :func:`contract_kernel` -- ``out[r, t] = sum_p q[r, p] * bit_p(mask_t)`` in
  int64 fixed point, ``q = floor(grads * 2**s + 0.5)``.  For each ``j`` it
  builds a 256-entry table of the partial sums of the 8 gradient values (255
  additions), then adds ``lut[packed[j, t]]`` for every task: one lookup per
  task and byte instead of eight multiply-adds.  Eight byte rows are handled per
  pass over the tasks, reading eight tasks per 64-bit load.  Integer sums are
  exact, so the result does not depend on the order of summation at all, and
  integer additions leave the floating-point ports free (2.6 against 3.2 ms for
  the same loop in float64 on LeNet's largest layer at T=1000, development machine).
- :func:`contract_rows_kernel` -- the same integer result, vectorised over the
  R gradient rows with two 16-entry nibble tables of R-vectors per byte: the
  faster one when there are few tasks per row (a batch of per-image gradients
  over ten tasks, say).
- :func:`abs_sums_kernel` -- each gradient row's sum of magnitudes in float64, in
  fixed blocks (it picks the row's fixed-point scale).
- :func:`superpose_kernel` -- ``out[p] = sum_t alphas[t] * bit_p(mask_t)``.  For
  each ``j`` it builds a weighted histogram of the high and low nibbles (two
  additions per task), then reads the 8 bit sums off the two 16-bin histograms.

- :func:`bucket_counts_kernel`, :func:`gather_bucket_kernel` -- a top-k mask's threshold in two
  parallel passes (:func:`supsup_core.subnet.select_smallest`): count the magnitudes per bucket of
  their top 13 bits (non-negative floats order like their bit patterns), then gather the one bucket
  that holds the threshold, which alone is sorted.

The contraction's wrapper is :mod:`supsup_core.contraction` (scaling, kernel
choice, fixed-order reduction of the per-block integer sums); the
superposition's is :meth:`supsup_core.layers.base.MaskedLayer.superposed_mask`,
which sums per-block float results in a fixed order.  Neither result depends on
the number of threads.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

__all__ = ["abs_sums_kernel", "contract_kernel", "contract_rows_kernel", "superpose_kernel", "bucket_counts_kernel",
           "gather_bucket_kernel"]


@numba.njit(cache=True, parallel=True)
def contract_kernel(packed, words, ntasks, grads, scales, acc):  # pragma: no cover - compiled
    """Accumulate per-block fixed-point contractions into ``acc``.

    packed : (nbytes, capacity) uint8, byte-major; columns ``[0, ntasks)`` are used.
    words : (nbytes, nwords) uint64, the same buffer read 8 tasks at a time (byte
        ``k`` of word ``w`` is task ``8 w + k``, little-endian), or ``nwords = 0``
        to read bytes only.
    grads : (R, nbytes, 8) float32 or float64, entry ``8 j + b`` of row ``r`` at ``grads[r, j, b]``.
    scales : (R, 2) float64 powers of two whose product is the row's ``2**s``
        (two factors keep ``2**s`` representable for very small or large rows);
        entry ``g`` of row ``r`` counts as ``floor(g * scales[r, 0] * scales[r, 1] + 0.5)``.
    acc : (nblocks, R, ntasks) int64 zeros; block ``b`` covers bytes
        ``[b nbytes // nblocks, (b + 1) nbytes // nblocks)``.
    """
    nbytes = packed.shape[0]
    n_rhs = grads.shape[0]
    nblocks = acc.shape[0]
    nw = min(ntasks // 8, words.shape[1])
    for blk in prange(nblocks):
        lo = blk * nbytes // nblocks
        hi = (blk + 1) * nbytes // nblocks
        lut = np.zeros((8, 256), np.int64)  # entry 0 (no bit set) stays 0
        for r in range(n_rhs):
            a = acc[blk, r]
            scale0, scale1 = scales[r, 0], scales[r, 1]
            for j0 in range(lo, hi, 8):
                m = min(8, hi - j0)
                for q in range(m):
                    # lut[q, v] = sum of the (fixed-point) gradients at the set bits of v;
                    # bit value 2**p is entry 7 - p of the byte
                    lq = lut[q]
                    for p in range(8):
                        g = np.int64(math.floor(np.float64(grads[r, j0 + q, 7 - p]) * scale0 * scale1 + 0.5))
                        base = 1 << p
                        for i in range(base):
                            lq[base + i] = lq[i] + g
                if m < 8:  # the block's last few byte rows: one row per pass
                    for q in range(m):
                        rq, lq = packed[j0 + q], lut[q]
                        for t in range(ntasks):
                            a[t] += lq[rq[t]]
                    continue
                l0, l1, l2, l3 = lut[0], lut[1], lut[2], lut[3]
                l4, l5, l6, l7 = lut[4], lut[5], lut[6], lut[7]
                # eight byte rows per pass, eight tasks per 64-bit load: one accumulator update per
                # 8 lookups and byte extraction by shifts, so the loop is bound by the table loads
                w0, w1, w2, w3 = words[j0], words[j0 + 1], words[j0 + 2], words[j0 + 3]
                w4, w5, w6, w7 = words[j0 + 4], words[j0 + 5], words[j0 + 6], words[j0 + 7]
                for w in range(nw):
                    x0, x1, x2, x3 = w0[w], w1[w], w2[w], w3[w]
                    x4, x5, x6, x7 = w4[w], w5[w], w6[w], w7[w]
                    for k in range(8):
                        sh = np.uint64(8 * k)
                        mk = np.uint64(255)  # defined here: hoisted out of prange it costs ~15 %
                        a[8 * w + k] += ((l0[(x0 >> sh) & mk] + l1[(x1 >> sh) & mk]) + (l2[(x2 >> sh) & mk] + l3[(x3 >> sh) & mk])) + (
                            (l4[(x4 >> sh) & mk] + l5[(x5 >> sh) & mk]) + (l6[(x6 >> sh) & mk] + l7[(x7 >> sh) & mk])
                        )
                r0, r1, r2, r3 = packed[j0], packed[j0 + 1], packed[j0 + 2], packed[j0 + 3]
                r4, r5, r6, r7 = packed[j0 + 4], packed[j0 + 5], packed[j0 + 6], packed[j0 + 7]
                for t in range(8 * nw, ntasks):  # tasks past the last whole word
                    a[t] += ((l0[r0[t]] + l1[r1[t]]) + (l2[r2[t]] + l3[r3[t]])) + ((l4[r4[t]] + l5[r5[t]]) + (l6[r6[t]] + l7[r7[t]]))


@numba.njit(cache=True, parallel=True)
def contract_rows_kernel(packed, ntasks, grads, scales, acc):  # pragma: no cover - compiled
    """The same fixed-point contraction as :func:`contract_kernel`, vectorised over the R rows.

    For each byte row ``j`` it builds two 16-entry tables of R-vectors (the sums
    of the quantised gradients at the set bits of the high and of the low
    nibble, 2 x 15 vector additions), then adds two table rows to task ``t``'s
    R accumulators.  Cheaper than one 256-entry table per row when there are
    few tasks per row; integer sums make the two kernels' results identical.

    packed : (nbytes, capacity) uint8, byte-major; columns ``[0, ntasks)`` are used.
    grads : (R, nbytes, 8) float32 or float64; scales : (R, 2) as for :func:`contract_kernel`.
    acc : (nblocks, ntasks, R) int64 zeros (note: tasks before rows).
    """
    nbytes = packed.shape[0]
    n_rhs = grads.shape[0]
    nblocks = acc.shape[0]
    for blk in prange(nblocks):
        lo = blk * nbytes // nblocks
        hi = (blk + 1) * nbytes // nblocks
        q = np.empty((8, n_rhs), np.int64)  # quantised gradients of one byte row, rows contiguous
        high = np.zeros((16, n_rhs), np.int64)  # entry 0 (no bit set) stays 0
        low = np.zeros((16, n_rhs), np.int64)
        for j in range(lo, hi):
            for b in range(8):
                for r in range(n_rhs):
                    q[b, r] = np.int64(math.floor(np.float64(grads[r, j, b]) * scales[r, 0] * scales[r, 1] + 0.5))
            for p in range(4):
                # nibble value 2**p is bit 3 - p of the high nibble (entry 3 - p) and of the low one (entry 7 - p)
                base = 1 << p
                qh, ql = q[3 - p], q[7 - p]
                for i in range(base):
                    h_new, h_old, l_new, l_old = high[base + i], high[i], low[base + i], low[i]
                    for r in range(n_rhs):
                        h_new[r] = h_old[r] + qh[r]
                        l_new[r] = l_old[r] + ql[r]
            row = packed[j]
            for t in range(ntasks):
                v = row[t]
                a, hv, lv = acc[blk, t], high[v >> 4], low[v & 15]
                for r in range(n_rhs):
                    a[r] += hv[r] + lv[r]


@numba.njit(cache=True, parallel=True)
def abs_sums_kernel(grads, partial):  # pragma: no cover - compiled
    """Write ``partial[r, b] = sum |grads[r, p]|`` over block ``b`` of the flat entries, in float64.

    grads : (R, n) float32 or float64; partial : (R, nblocks) float64, block ``b``
    covering ``[b n // nblocks, (b + 1) n // nblocks)``, each summed in index order.
    """
    n_rhs, n = grads.shape
    nblocks = partial.shape[1]
    for blk in prange(nblocks):
        lo = blk * n // nblocks
        hi = (blk + 1) * n // nblocks
        for r in range(n_rhs):
            s = 0.0
            for p in range(lo, hi):
                s += abs(np.float64(grads[r, p]))
            partial[r, blk] = s


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


@numba.njit(cache=True, parallel=True)
def bucket_counts_kernel(bits, counts):  # pragma: no cover - compiled
    """Count values per bucket of their top 13 bits: ``counts[b, bits[i] >> 19] += 1`` for ``i`` in block ``b``.

    bits : (n,) int32, the bit patterns of non-negative float32 values (so buckets follow value order);
    counts : (nblocks, 4096) int64 zeros, block ``b`` covering ``[b n // nblocks, (b + 1) n // nblocks)``.
    """
    n = bits.shape[0]
    nblocks = counts.shape[0]
    for blk in prange(nblocks):
        lo = blk * n // nblocks
        hi = (blk + 1) * n // nblocks
        row = counts[blk]
        for i in range(lo, hi):
            row[(bits[i] >> 19) & 4095] += 1  # -0.0's sign bit dropped: it counts as +0.0


@numba.njit(cache=True, parallel=True)
def gather_bucket_kernel(values, bits, bucket, offsets, out):  # pragma: no cover - compiled
    """Copy the values whose bucket (``bits >> 19``) is ``bucket`` into ``out``, in index order.

    values : (n,) float32; bits : their (n,) int32 patterns; offsets : (nblocks,) int64, where block
    ``b``'s values start in ``out`` (the running sum of the blocks' counts of ``bucket``).
    """
    n = bits.shape[0]
    nblocks = offsets.shape[0]
    for blk in prange(nblocks):
        lo = blk * n // nblocks
        hi = (blk + 1) * n // nblocks
        pos = offsets[blk]
        for i in range(lo, hi):
            if ((bits[i] >> 19) & 4095) == bucket:
                out[pos] = values[i]
                pos += 1
