"""Conventions between *masks*, *states* and *packed bits*.

Vocabulary (used across the package):

- a **mask** is a boolean array, any shape; ``True`` means "kept";
- a **state** (or *pattern*, when it is stored) is a flat ``int8`` vector of
  spins in ``{-1, +1}``; the spin convention is ``s = 2*m - 1``, so a kept
  entry is ``+1``;
- **packed bits** are a ``uint8`` vector holding 8 mask entries per byte,
  most significant bit first (``numpy.packbits``' default and bitarray's
  ``"big"`` endianness, so files can be read with either tool).

Validation accepts bool, integer and floating arrays whose values are exactly
0/1 (masks) or -1/+1 (states) and raises :class:`~hopfield_masks.errors.PatternError`
naming the argument otherwise.

Examples
--------
>>> import numpy as np
>>> m = np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=bool)
>>> to_spins(m)
array([ 1, -1,  1,  1, -1, -1, -1, -1,  1], dtype=int8)
>>> packed = pack_bits(m)
>>> packed
array([176, 128], dtype=uint8)
>>> bool((unpack_bits(packed, m.size) == m).all())
True
"""

from __future__ import annotations

import numpy as np

from .errors import PatternError, PatternShapeError

__all__ = [
    "validate_mask",
    "validate_states",
    "to_spins",
    "from_spins",
    "pack_bits",
    "unpack_bits",
    "packed_nbytes",
]


def _describe_bad_value(arr: np.ndarray, bad: np.ndarray) -> str:
    """Say which value was wrong and where, for error messages."""
    idx = int(np.flatnonzero(bad.ravel())[0])
    pos = tuple(int(i) for i in np.unravel_index(idx, arr.shape)) if arr.ndim > 1 else idx
    return f"value {arr.ravel()[idx].item()!r} at index {pos}"


def _check_numeric(arr: np.ndarray, name: str) -> None:
    if arr.dtype == object or not (
        arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise PatternError(name, "a bool, integer or floating array", f"dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and arr.size and np.isnan(arr).any():
        raise PatternError(name, "no NaN values", _describe_bad_value(arr, np.isnan(arr)))


def validate_mask(mask: object, *, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean array after checking every value is 0 or 1.

    Parameters
    ----------
    mask : array_like
        Bool, integer or floating values, any shape.
    name : str
        Argument name used in error messages.

    Raises
    ------
    PatternError
        The dtype is not numeric, a value is NaN, or a value is neither 0 nor 1.

    Examples
    --------
    >>> validate_mask([0, 1, 1.0])
    array([False,  True,  True])
    """
    arr = np.asarray(mask)
    _check_numeric(arr, name)
    if arr.dtype == np.bool_:
        return arr
    bad = (arr != 0) & (arr != 1)
    if bad.any():
        raise PatternError(name, "values in {0, 1}", _describe_bad_value(arr, bad))
    return arr.astype(bool)


def validate_states(states: object, *, size: int | None = None, name: str = "states") -> np.ndarray:
    """Return ``states`` as a C-contiguous ``int8`` array of ±1 spins.

    Accepts one state of shape ``(N,)`` or a batch of shape ``(k, N)``; the
    input's dimensionality is kept.

    Raises
    ------
    PatternError
        A value is not -1 or +1 (or is NaN, or the dtype is not numeric).
    PatternShapeError
        The array is not 1-D or 2-D, or its last axis is not ``size``.

    Examples
    --------
    >>> validate_states([[1, -1], [-1, -1]], size=2)
    array([[ 1, -1],
           [-1, -1]], dtype=int8)
    """
    arr = np.asarray(states)
    _check_numeric(arr, name)
    if arr.ndim not in (1, 2):
        raise PatternShapeError(name, "a 1-D state or a 2-D batch of states", f"shape {arr.shape}")
    if size is not None and arr.shape[-1] != size:
        raise PatternShapeError(name, f"last axis of length {size}", f"shape {arr.shape}")
    bad = (arr != 1) & (arr != -1)
    if bad.any():
        raise PatternError(name, "spins in {-1, +1}", _describe_bad_value(arr, bad))
    return np.ascontiguousarray(arr, dtype=np.int8)


def to_spins(mask: object, *, name: str = "mask") -> np.ndarray:
    """Convert a {0,1} mask (any shape) to a flat ``int8`` state, ``s = 2*m - 1``."""
    m = validate_mask(mask, name=name)
    return (m.ravel().astype(np.int8) * 2 - 1).astype(np.int8)


def from_spins(states: object, *, name: str = "states") -> np.ndarray:
    """Convert ±1 states to a boolean mask of the same shape (``+1`` -> ``True``)."""
    s = validate_states(states, name=name)
    return s > 0


def packed_nbytes(n: int) -> int:
    """Bytes needed to pack ``n`` mask entries at one bit each."""
    return (int(n) + 7) // 8


def pack_bits(mask: object, *, name: str = "mask") -> np.ndarray:
    """Pack a mask (flattened in C order) into ``uint8`` bytes, most significant bit first.

    The last byte is padded with zero bits; keep the entry count to unpack.
    """
    m = validate_mask(mask, name=name)
    return np.packbits(m.ravel(), bitorder="big")


def unpack_bits(packed: object, n: int, *, name: str = "packed") -> np.ndarray:
    """Unpack ``n`` entries from bytes written by :func:`pack_bits` into a flat bool mask.

    Raises
    ------
    PatternShapeError
        ``packed`` does not hold exactly ``ceil(n / 8)`` bytes.
    """
    arr = np.asarray(packed)
    if arr.dtype != np.uint8:
        raise PatternError(name, "a uint8 array", f"dtype {arr.dtype}")
    if n < 0:
        raise PatternShapeError("n", "a non-negative entry count", n)
    if arr.ndim != 1 or arr.size != packed_nbytes(n):
        raise PatternShapeError(name, f"{packed_nbytes(n)} bytes for {n} entries", f"shape {arr.shape}")
    return np.unpackbits(arr, count=n, bitorder="big").astype(bool)
