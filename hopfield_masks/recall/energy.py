"""Energy, local field and energy gradient of a Hopfield network, on plain arrays.

Conventions (shared by the whole package):

- couplings ``W`` are an ``(N, N)`` array of ``float64``, ``float32``,
  ``float16`` or ``int8``; the real coupling is ``scale * W`` (``scale`` is 1
  for float storage and the recorded quantisation step for ``int8``);
- the local field of a state ``s`` is ``h = scale * W s`` (self-coupling
  included, no bias);
- the energy is ``E(s) = -1/2 sᵀ (scale W) s`` and its gradient with respect
  to the spins is ``dE/ds = -1/2 (W + Wᵀ) s * scale`` (``-h`` when ``W`` is
  symmetric, as every learning rule keeps it).

Low-precision couplings are never expanded to a full float copy: products
with ``float16``/``int8`` matrices are computed block of rows by block of rows
with BLAS, casting at most an eighth of the rows (and at most ``2**20``
entries) to ``float32`` at a time.  ``int8``
products are exact: ``float32`` represents every integer sum ``|Σ q s| <= 127 N``
exactly for ``N < 132 000``.

Examples
--------
>>> import numpy as np
>>> w = np.array([[0, 1], [1, 0]], np.float32)
>>> local_field(w, np.array([1, -1], np.int8))
array([-1.,  1.])
>>> energy(w, np.array([[1, 1], [1, -1]], np.int8))
array([-1.,  1.])
"""

from __future__ import annotations


import numpy as np

from ..errors import InvalidArgumentError
from ..patterns import validate_states
from ..validate import check_float

__all__ = ["local_field", "energy", "energy_gradient", "validate_couplings", "validate_scale", "COUPLING_DTYPES"]

#: Storage dtypes accepted for couplings.
COUPLING_DTYPES = ("float64", "float32", "float16", "int8")

#: Entries of a low-precision matrix cast to float32 at once (4 MiB of float32).
_CHUNK_ENTRIES = 1 << 20


def validate_couplings(weights: object, *, name: str = "weights", check_symmetric: bool = False) -> np.ndarray:
    """Return ``weights`` as a C-contiguous square matrix of an accepted coupling dtype.

    Parameters
    ----------
    weights : ndarray
        ``(N, N)`` of float64, float32, float16 or int8 (never converted: the
        dtype chooses the kernel).
    check_symmetric : bool
        Also require ``W == Wᵀ`` exactly (the asynchronous kernels read row
        ``i`` in place of column ``i``).

    Raises
    ------
    InvalidArgumentError
        Wrong type, dtype or shape; non-finite entries; asymmetric when checked.
    """
    if not isinstance(weights, np.ndarray):
        raise InvalidArgumentError(name, "a NumPy array", type(weights).__name__)
    if weights.dtype.name not in COUPLING_DTYPES:
        raise InvalidArgumentError(name, f"dtype in {list(COUPLING_DTYPES)}", f"dtype {weights.dtype}")
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] == 0:
        raise InvalidArgumentError(name, "a non-empty square (N, N) matrix", f"shape {weights.shape}")
    w = np.ascontiguousarray(weights)
    if w.dtype.kind == "f" and not np.isfinite(w).all():
        raise InvalidArgumentError(name, "finite entries", "NaN or infinity")
    if check_symmetric and not np.array_equal(w, w.T):
        raise InvalidArgumentError(name, "a symmetric matrix (W == W.T)", "an asymmetric matrix")
    return w


def validate_scale(scale: object, *, name: str = "scale") -> float:
    """Return ``scale`` as a float after checking it is finite and > 0.

    Examples
    --------
    >>> validate_scale(0.5)
    0.5
    """
    return check_float(name, scale, low=0, low_open=True)


def _chunk_rows(n: int) -> int:
    """Rows of a low-precision matrix cast at once: at most an eighth of the matrix and ``_CHUNK_ENTRIES`` entries."""
    return max(1, min(_CHUNK_ENTRIES // n, -(-n // 8)))


def _products(
    weights: np.ndarray, states: np.ndarray, *, transpose: bool = False, as_float64: bool = True
) -> np.ndarray:
    """Unscaled ``W s`` (or ``Wᵀ s``) for every row of ``states`` ((k, N) int8); (k, N).

    float32/float64 go straight to BLAS; float16/int8 are cast to float32 a
    block of rows at a time, so no full-size float copy of ``W`` is made.  The
    result is float64 unless ``as_float64=False`` (then the BLAS precision,
    which saves a conversion when only signs are needed).
    """
    k, n = states.shape
    if weights.dtype in (np.float32, np.float64):
        s = states.astype(weights.dtype)  # (k, N) at the coupling precision
        out = s @ (weights if transpose else weights.T)  # (k, N) @ (N, N) -> (k, N)
        return out.astype(np.float64, copy=False) if as_float64 else out
    s = states.astype(np.float32)  # (k, N)
    rows = _chunk_rows(n)
    if transpose:
        acc = np.zeros((k, n), np.float32)
        for start in range(0, n, rows):
            block = weights[start : start + rows].astype(np.float32)  # (b, N)
            acc += s[:, start : start + rows] @ block  # (k, b) @ (b, N) -> (k, N)
        return acc.astype(np.float64) if as_float64 else acc
    out = np.empty((k, n), np.float64 if as_float64 else np.float32)
    for start in range(0, n, rows):
        block = weights[start : start + rows].astype(np.float32)  # (b, N)
        out[:, start : start + rows] = s @ block.T  # (k, N) @ (N, b) -> (k, b)
    return out


def _batch(states: np.ndarray) -> np.ndarray:
    return states.reshape(-1, states.shape[-1])  # (N,) -> (1, N); (k, N) unchanged


def local_field(weights: np.ndarray, states: object, *, scale: float = 1.0) -> np.ndarray:
    """Local field ``h = scale * W s`` of one state ``(N,)`` or a batch ``(k, N)``; float64, same shape.

    Raises
    ------
    InvalidArgumentError, PatternError, PatternShapeError
        Bad couplings, scale or states.
    """
    w = validate_couplings(weights)
    sc = validate_scale(scale)
    s = validate_states(states, size=w.shape[0])
    return (_products(w, _batch(s)) * sc).reshape(s.shape)


def energy(weights: np.ndarray, states: object, *, scale: float = 1.0) -> float | np.ndarray:
    """Energy ``E = -1/2 sᵀ (scale W) s``: a float for one state, float64 ``(k,)`` for a batch.

    Raises
    ------
    InvalidArgumentError, PatternError, PatternShapeError
        Bad couplings, scale or states.
    """
    w = validate_couplings(weights)
    sc = validate_scale(scale)
    s = validate_states(states, size=w.shape[0])
    sb = _batch(s)
    e = -0.5 * sc * np.einsum("kn,kn->k", sb.astype(np.float64), _products(w, sb))  # (k,)
    return float(e[0]) if s.ndim == 1 else e


def energy_gradient(weights: np.ndarray, states: object, *, scale: float = 1.0) -> np.ndarray:
    """Gradient of the energy with respect to the spins, ``-1/2 (W + Wᵀ) s * scale``; float64, shape of ``states``.

    Examples
    --------
    >>> w = np.array([[0.0, 2.0], [0.0, 0.0]])
    >>> energy_gradient(w, np.array([1, 1], np.int8))
    array([-1., -1.])
    """
    w = validate_couplings(weights)
    sc = validate_scale(scale)
    s = validate_states(states, size=w.shape[0])
    sb = _batch(s)
    g = -0.5 * sc * (_products(w, sb) + _products(w, sb, transpose=True))  # (k, N)
    return g.reshape(s.shape)
