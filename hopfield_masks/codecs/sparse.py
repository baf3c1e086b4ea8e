"""``hdf5-sparse``: compressed sparse columns (CSC) of the kept entries.

Each task's flat pattern of ``P`` entries (as in ``hdf5-packed``) is viewed as a
matrix of ``R = csc_rows`` rows and ``ceil(P / R)`` columns filled column by
column, so flat position ``i`` is row ``i % R`` of column ``i // R``.  The task
dataset ``/tasks/<task>`` holds the row indices of the ones (the *kept*
entries), column by column in increasing order; its attribute ``indptr``
(``ceil(P / R) + 1`` entries) says where each column starts, as in
``scipy.sparse.csc_matrix``::

    flat position of indices[k] = column(k) * R + indices[k],
    column(k) = the c with indptr[c] <= k < indptr[c + 1]

Why a fixed column height instead of the layer's own first dimension: with
``R = 65536`` every row index fits in 16 bits whatever the layer shapes (a
``(70000, 1)`` layer would otherwise need 32-bit indices), and the column
pointers cost only 4 bytes per 65536 entries, where one pointer per weight
column (784 for LeNet's first layer) would add 7 bits per kept entry at 2 %
density.  So a kept entry costs 16 bits, the paper's accounting, at any shape;
with the HDF5 metadata of the task (about 250 bytes, see
:mod:`hopfield_masks.backends.hdf5`) a LeNet 300-100 mask at 2 % density
costs 16.4 bits per kept entry on disk.

The index dtype is recorded by the dataset itself: ``uint16`` when ``R <= 2**16``
(the default ``R = 65536``), else ``uint32``.  ``indptr`` is ``uint32``, or ``uint64``
for tasks with ``2**32`` or more kept entries.  ``R`` is the root attribute
``csc_rows``, chosen when the bank is created.

Examples
--------
>>> import numpy as np
>>> from hopfield_masks.blocks import MaskLayout
>>> encoded = SparseCodec(csc_rows=3).encode(np.eye(3, dtype=bool).ravel(), MaskLayout(("fc",), ((3, 3),)),
...                                          CodingContext(2))
>>> encoded.data.tolist(), encoded.attrs["indptr"].tolist()
([0, 1, 2], [0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..blocks import MaskLayout
from ..errors import InvalidArgumentError, StorageFormatError
from .base import CodecError, CodingContext, Encoded, MaskCodec, Stored

__all__ = ["SparseCodec", "DEFAULT_CSC_ROWS", "csc_encode", "csc_decode"]

#: The tallest column whose row indices all fit in 16 bits.
DEFAULT_CSC_ROWS = 2**16


def index_dtype(rows: int) -> np.dtype:
    """Narrowest unsigned dtype holding row indices ``0 .. rows - 1`` (16 bits at least)."""
    return np.dtype(np.uint16 if rows <= 2**16 else np.uint32)


def csc_encode(flat: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and column pointers of the ones of a flat bool pattern viewed as ``rows``-tall columns.

    Examples
    --------
    >>> flat = np.array([0, 1, 0, 0, 1, 1, 0], dtype=bool)   # 7 entries -> 3 columns of height 3
    >>> indices, indptr = csc_encode(flat, 3)
    >>> indices.tolist(), indptr.tolist()
    ([1, 1, 2], [0, 1, 3, 3])
    >>> bool((csc_decode(indices, indptr, rows=3, length=7) == flat).all())
    True
    """
    length = flat.shape[0]
    n_cols = -(-length // rows)
    pos = np.flatnonzero(flat)  # (nnz,) int64, increasing
    cols, rem = np.divmod(pos, rows)  # (nnz,) each
    indices = rem.astype(index_dtype(rows))  # (nnz,)
    counts = np.bincount(cols, minlength=n_cols)  # (n_cols,)
    indptr = np.zeros(n_cols + 1, dtype=np.uint32 if pos.size < 2**32 else np.uint64)  # (n_cols + 1,)
    np.cumsum(counts, out=indptr[1:])
    return indices, indptr


def csc_decode(indices: np.ndarray, indptr: np.ndarray, *, rows: int, length: int) -> np.ndarray:
    """Inverse of :func:`csc_encode`; raises ``ValueError`` (with the reason) for inconsistent arrays."""
    n_cols = -(-length // rows)
    indptr = np.asarray(indptr)
    if indptr.ndim != 1 or indptr.shape[0] != n_cols + 1 or indptr.dtype.kind not in "ui":
        raise ValueError(f"indptr should be {n_cols + 1} integers, found {indptr.dtype} {indptr.shape}")
    ptr = indptr.astype(np.int64)
    if ptr[0] != 0 or ptr[-1] != indices.shape[0] or np.any(np.diff(ptr) < 0):
        raise ValueError(f"indptr is not a non-decreasing run from 0 to {indices.shape[0]}")
    cols = np.repeat(np.arange(n_cols, dtype=np.int64), np.diff(ptr))  # (nnz,) column of each index
    pos = cols * rows + indices.astype(np.int64)  # (nnz,) flat positions
    if pos.size and (indices.max() >= rows or pos.max() >= length):
        raise ValueError(f"row indices exceed the {rows} rows or the {length} entries")
    flat = np.zeros(length, dtype=bool)  # (P,)
    flat[pos] = True
    return flat


class SparseCodec(MaskCodec):
    """Each task's kept entries in CSC form (16-bit row indices by default).

    Parameters
    ----------
    csc_rows : int, optional
        Column height ``R`` (default ``2**16``); a taller column needs 32-bit indices.  Recorded in the
        bank's root attribute ``csc_rows`` when it is created.
    """

    codec_id = "hdf5-sparse"

    def __init__(self, csc_rows: int = DEFAULT_CSC_ROWS) -> None:
        if isinstance(csc_rows, bool) or not isinstance(csc_rows, (int, np.integer)) or not 1 <= csc_rows <= 2**32:
            raise InvalidArgumentError("csc_rows", "an integer from 1 to 2**32", repr(csc_rows))
        self.csc_rows = int(csc_rows)

    def options(self) -> dict[str, int]:
        return {"csc_rows": self.csc_rows}

    @classmethod
    def from_options(cls, stored: Mapping[str, Any], where: str) -> SparseCodec:
        rows = stored.get("csc_rows")
        if isinstance(rows, (bool, np.bool_)) or not isinstance(rows, (int, np.integer)) or not 1 <= rows <= 2**32:
            raise StorageFormatError(where, f"has a bad or missing 'csc_rows' root attribute ({rows!r})")
        return cls(int(rows))

    def encode(self, flat: np.ndarray, layout: MaskLayout, context: CodingContext) -> Encoded:
        indices, indptr = csc_encode(flat, self.csc_rows)
        return Encoded(indices, {"indptr": indptr})

    def decode(self, stored: Stored, layout: MaskLayout, context: CodingContext) -> np.ndarray:
        if len(stored.shape) != 1 or stored.dtype.kind != "u":
            raise CodecError(f"expected a 1-D unsigned integer dataset, found {stored.dtype} {stored.shape}")
        n_cols = -(-layout.length // self.csc_rows)
        indptr = stored.attr("indptr", (n_cols + 1,), "u")  # its declared shape checked before it is read
        try:
            return csc_decode(stored.data, indptr, rows=self.csc_rows, length=layout.length)
        except ValueError as exc:
            raise CodecError(str(exc)) from None
