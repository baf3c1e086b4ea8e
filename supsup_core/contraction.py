"""Contraction of gradient rows with byte-major packed masks on CPU: fixed point, kernel choice, reduction.

``contract_packed(packed, ntasks, planes, abs_sums)`` returns ``out[r, t] =
<planes[r], M_t>`` for the ``ntasks`` masks packed in ``packed`` (``(nbytes,
capacity)`` uint8, byte-major, see :mod:`supsup_core.layers.base`).  Every
gradient row is scaled by its own power of two (:func:`fixed_point_shifts`, from
the row's float64 sum of magnitudes, :func:`row_abs_sums`) and rounded to
int64, and the kernels of :mod:`supsup_core._kernels` sum those integers
exactly: the result does not depend on the kernel, the thread count or the
summation order.  Which kernel runs is a speed decision only
(:func:`use_row_vector_kernel`).

Precision is relative to each row's sum of magnitudes, not to each output: a
coefficient made only of entries far smaller than the row's largest ones keeps
fewer significant digits than a float64 sum would give it.

No validation happens here: :meth:`MaskedLayer.contract` checks shapes and
routes non-finite gradients to the float reference first.
"""

from __future__ import annotations

import sys

import numpy as np


__all__ = ["contract_packed", "fixed_point_shifts", "row_abs_sums", "scale_factors", "uint64_words", "use_row_vector_kernel"]

N_BLOCKS = 16  # fixed parallel blocks of byte rows (a fixed split keeps the superposition's float sums thread-count independent)
SCRATCH_ENTRIES = 4_000_000  # cap on the per-block int64 accumulators of one kernel call (32 MB)
# Few tasks per gradient row favour the nibble-table kernel vectorised over rows.  Crossovers
# measured on the 2-core development machine (LeNet 300-100's layers): R=1 about T=10 (equal
# there, tables 1.4x faster at T=30); R=4 between T=30 and T=100; R=32 above T=100 (rows 13 ms
# against 31 ms) and below T=1000.  Rule: the row kernel when T + 12 < 24 R.
TASKS_PER_ROW_FOR_ROW_KERNEL = 24


def fixed_point_shifts(abs_sums: np.ndarray) -> np.ndarray:
    """Per-row binary exponents ``s`` that put gradients in int64 fixed point, ``q = floor(g * 2**s + 1/2)``.

    ``2**s`` is the power of two with ``2**60 <= abs_sums * 2**s < 2**61``, so no
    partial sum of rounded entries can reach ``2**62`` (no int64 overflow), while
    the rounding error of the whole contraction stays below ``8 nbytes * 2**-61 *
    abs_sums`` (about 1e-13 relative to ``sum |g|`` for LeNet's first layer).
    ``s`` ranges over about [-963, 1134]: apply it with :func:`scale_factors`.

    Examples
    --------
    >>> fixed_point_shifts(np.array([1.0, 3.0, 0.0])).tolist()
    [60, 59, 61]
    """
    exponents = np.frexp(np.asarray(abs_sums, dtype=np.float64))[1]  # abs_sums < 2**exponents
    return (61 - exponents).astype(np.int64)


def scale_factors(shifts: np.ndarray) -> np.ndarray:
    """``(R, 2)`` float64 powers of two whose product is ``2**shifts[r]``, each a normal number.

    Examples
    --------
    >>> f = scale_factors(np.array([1100, -3]))  # 2.0**1100 itself is not a float64
    >>> bool((f[0] == 2.0**550).all()), f[1].tolist()
    (True, [0.25, 0.5])
    """
    first = np.asarray(shifts, dtype=np.int64) // 2
    return np.ldexp(1.0, np.stack([first, shifts - first], axis=1))


def row_abs_sums(flat: np.ndarray) -> np.ndarray:
    """``sum |flat[r]|`` per row in float64, summed in fixed blocks (the same for any thread count).

    Examples
    --------
    >>> row_abs_sums(np.array([[1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], dtype=np.float32)).tolist()
    [3.5, 0.0]
    """
    from . import _kernels  # Numba (and LLVM) load on first use, not on import
    partial = np.empty((flat.shape[0], max(1, min(N_BLOCKS, flat.shape[1]))), dtype=np.float64)
    _kernels.abs_sums_kernel(flat, partial)
    total = np.zeros(flat.shape[0], dtype=np.float64)
    for b in range(partial.shape[1]):  # fixed order
        total += partial[:, b]
    return total


def uint64_words(packed: np.ndarray) -> np.ndarray:
    """``packed`` ``(nbytes, capacity)`` uint8 viewed as ``(nbytes, capacity // 8)`` uint64, or ``(nbytes, 0)``.

    The view is only valid when byte ``k`` of a word is column ``8 w + k``: a
    little-endian machine, a C-contiguous buffer and a capacity that is a
    multiple of 8 (``MaskedLayer`` keeps it so).  Otherwise the kernel reads bytes.
    """
    if sys.byteorder != "little" or packed.shape[1] % 8 or not packed.flags.c_contiguous:
        return np.zeros((packed.shape[0], 0), dtype=np.uint64)
    return packed.view(np.uint64)


def use_row_vector_kernel(ntasks: int, n_rhs: int) -> bool:
    """True when :func:`~supsup_core._kernels.contract_rows_kernel` should run (few tasks per row).

    Examples
    --------
    >>> use_row_vector_kernel(10, 1), use_row_vector_kernel(30, 1), use_row_vector_kernel(100, 32)
    (True, False, True)
    """
    return ntasks + 12 < TASKS_PER_ROW_FOR_ROW_KERNEL * n_rhs


def contract_packed(packed: np.ndarray, ntasks: int, planes: np.ndarray, abs_sums: np.ndarray) -> np.ndarray:
    """``out[r, t] = sum_p planes[r, p] * bit_p(M_t)`` as float64 ``(R, ntasks)``.

    Parameters
    ----------
    packed : numpy.ndarray
        ``(nbytes, capacity)`` uint8, byte-major; columns ``[0, ntasks)`` are used.
    ntasks : int
        Number of finished tasks.
    planes : numpy.ndarray
        ``(R, nbytes, 8)`` float32 or float64, C-contiguous, finite.
    abs_sums : numpy.ndarray
        ``(R,)`` float64 ``sum |planes[r]|`` from :func:`row_abs_sums` (it picks the scales).
    """
    from . import _kernels  # Numba (and LLVM) load on first use, not on import
    n_rhs, nbytes = planes.shape[0], planes.shape[1]
    nblocks = max(1, min(N_BLOCKS, nbytes))
    shifts = fixed_point_shifts(abs_sums)  # (R,)
    out = np.empty((n_rhs, ntasks), dtype=np.float64)
    rows_kernel = use_row_vector_kernel(ntasks, n_rhs)
    words = None if rows_kernel else uint64_words(packed)
    step = max(1, SCRATCH_ENTRIES // max(1, nblocks * ntasks))  # rows per kernel call, bounding scratch memory
    for r0 in range(0, n_rhs, step):
        part = planes[r0 : r0 + step]
        part_shifts = shifts[r0 : r0 + step]
        scales = scale_factors(part_shifts)  # (r, 2)
        if rows_kernel:
            acc = np.zeros((nblocks, ntasks, part.shape[0]), dtype=np.int64)  # per-block partial sums
            _kernels.contract_rows_kernel(packed, ntasks, part, scales, acc)
            total = acc.sum(axis=0).T  # (r, ntasks)
        else:
            acc = np.zeros((nblocks, part.shape[0], ntasks), dtype=np.int64)
            _kernels.contract_kernel(packed, words, ntasks, part, scales, acc)
            total = acc.sum(axis=0)
        # exact integer totals (|total| < 2**62 by the choice of shifts), then undo the scaling
        out[r0 : r0 + step] = np.ldexp(total.astype(np.float64), -part_shifts[:, None])
    return out
