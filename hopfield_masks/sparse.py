"""Layer masks as ``scipy.sparse.csc_array``: the paper's sparse format, and its byte accounting.

The paper stores sparse supermasks "in scipy csc format with 16-bit integers".
Here a layer mask becomes a CSC matrix of its 2-D view: a weight of shape
``(out, in, *kernel)`` is viewed as ``(out, in * prod(kernel))`` (the torch
layout: rows are output units), a 1-D mask ``(n,)`` as ``(n, 1)`` and a 0-d one as
``(1, 1)``; the stored values are the kept entries (``True``).

- :func:`to_csc` / :func:`from_csc`: one layer, both ways (scipy builds and
  expands the matrices);
- :func:`read_task_csc` / :func:`write_task_csc`: a whole bank task through the
  public :class:`~hopfield_masks.backends.MaskBank` API, so any backend works; an
  ``"hdf5-sparse"`` bank is the one that stores them sparsely on disk;
- :func:`narrow_csc` and :func:`paper_nbytes`: the index arrays at 16 bits where
  they fit (row indices when the matrix has at most ``2**16`` rows, column
  pointers when it has fewer than ``2**16`` kept entries; else 32 bits) and the
  bytes that makes, the paper's accounting.  In memory scipy keeps 32-bit
  indices at least, so the narrow arrays are what a file would hold.

Examples
--------
>>> import numpy as np
>>> mask = np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)
>>> matrix = to_csc(mask)
>>> matrix.nnz, matrix.indices.tolist(), matrix.indptr.tolist()
(2, [0, 1], [0, 1, 1, 2])
>>> bool((from_csc(matrix, mask.shape) == mask).all())
True
>>> indices, indptr = narrow_csc(matrix)
>>> indices.dtype, indptr.dtype, paper_nbytes({"w": matrix})
(dtype('uint16'), dtype('uint16'), {'indices': 4, 'indptr': 8, 'data': 0, 'total': 12})
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse

from .backends.base import MaskBank
from .errors import InvalidArgumentError, PatternError
from .patterns import validate_mask

__all__ = ["matrix_shape", "to_csc", "from_csc", "narrow_csc", "paper_nbytes", "read_task_csc", "write_task_csc"]

_U16 = 2**16


def matrix_shape(shape: tuple[int, ...]) -> tuple[int, int]:
    """The 2-D shape a layer mask of ``shape`` is stored as (rows = first axis).

    Examples
    --------
    >>> matrix_shape((64, 3, 3, 3)), matrix_shape((100,)), matrix_shape(())
    ((64, 27), (100, 1), (1, 1))
    """
    if len(shape) == 0:
        return (1, 1)
    return (int(shape[0]), math.prod(shape[1:]) if len(shape) > 1 else 1)


def to_csc(mask: object, *, name: str = "mask") -> scipy.sparse.csc_array:
    """The CSC matrix (``bool`` values, canonical: sorted, no duplicates) of one layer mask."""
    arr = validate_mask(mask, name=name)  # raises PatternError on values other than 0/1
    return scipy.sparse.csc_array(arr.reshape(matrix_shape(arr.shape)), dtype=bool)


def from_csc(matrix: object, shape: tuple[int, ...], *, name: str = "matrix") -> np.ndarray:
    """The bool layer mask of ``shape`` a CSC (or any scipy sparse) matrix holds.

    Raises
    ------
    InvalidArgumentError
        ``matrix`` is not a scipy sparse matrix, or its shape is not the 2-D view of ``shape``.
    PatternError
        A stored value other than 0 or 1 (duplicate entries are summed first, as scipy does).
    """
    if not (scipy.sparse.issparse(matrix)):
        raise InvalidArgumentError(name, "a scipy.sparse matrix or array", type(matrix).__name__)
    expected = matrix_shape(tuple(shape))
    if tuple(matrix.shape) != expected:
        raise InvalidArgumentError(name, f"shape {expected} (the 2-D view of {tuple(shape)})", tuple(matrix.shape))
    csc = scipy.sparse.csc_array(matrix)
    csc.sum_duplicates()
    data = csc.data
    if data.dtype != np.bool_ and np.any((data != 0) & (data != 1)):
        raise PatternError(name, "stored values in {0, 1}", f"{int(np.sum((data != 0) & (data != 1)))} other values")
    return (csc.toarray() != 0).reshape(shape)


def narrow_csc(matrix: scipy.sparse.csc_array) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and column pointers of ``matrix`` at 16 bits where they fit, else 32 (unsigned)."""
    rows, _ = matrix.shape
    index_dtype = np.uint16 if rows <= _U16 else np.uint32
    pointer_dtype = np.uint16 if matrix.nnz < _U16 else np.uint32
    return matrix.indices.astype(index_dtype), matrix.indptr.astype(pointer_dtype)


def paper_nbytes(matrices: Mapping[str, scipy.sparse.csc_array], *, data_bytes: int = 0) -> dict[str, int]:
    """Bytes of a task's CSC matrices with narrow indices (:func:`narrow_csc`).

    ``data_bytes`` per kept entry counts a stored value array too (1 for scipy's
    ``bool`` data); a mask's values are all ones, so the default leaves it out.
    """
    total = {"indices": 0, "indptr": 0, "data": 0}
    for matrix in matrices.values():
        indices, indptr = narrow_csc(matrix)
        total["indices"] += indices.nbytes
        total["indptr"] += indptr.nbytes
        total["data"] += data_bytes * matrix.nnz
    return {**total, "total": sum(total.values())}


def read_task_csc(bank: MaskBank, task: str) -> dict[str, scipy.sparse.csc_array]:
    """Task ``task`` of ``bank`` as one CSC matrix per layer (layer order kept)."""
    if not isinstance(bank, MaskBank):
        raise InvalidArgumentError("bank", "an open MaskBank", type(bank).__name__)
    return {name: to_csc(mask, name=name) for name, mask in bank.read_task(task).items()}


def write_task_csc(
    bank: MaskBank,
    task: str,
    matrices: Mapping[str, object],
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> None:
    """Store CSC matrices (one per layer) as task ``task``; ``shapes`` gives layer shapes other than 2-D.

    Every matrix is checked before the bank is touched.
    """
    if not isinstance(bank, MaskBank):
        raise InvalidArgumentError("bank", "an open MaskBank", type(bank).__name__)
    if not isinstance(matrices, Mapping):
        raise InvalidArgumentError("matrices", "a mapping of layer name -> scipy.sparse matrix", type(matrices).__name__)
    shapes = {} if shapes is None else dict(shapes)
    unknown = sorted(set(shapes) - set(matrices))
    if unknown:
        raise InvalidArgumentError("shapes", f"shapes for the layers {list(matrices)}", f"shapes for {unknown}")
    masks = {}
    for name, matrix in matrices.items():
        shape = tuple(shapes.get(name, getattr(matrix, "shape", ())))
        masks[name] = from_csc(matrix, shape, name=f"matrices[{name!r}]")
    bank.write_task(task, masks, attrs=attrs, overwrite=overwrite)
