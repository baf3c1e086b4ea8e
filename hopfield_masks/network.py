"""A fixed-size Hopfield network: couplings at a chosen precision, a learning rule, energy and recall.

Precision and bytes
-------------------
The couplings are *stored* at the requested precision, so a byte budget buys
more neurons at lower precision:

=========  ==========================  ==================================================
dtype      bytes                       representation
=========  ==========================  ==================================================
float32    ``4 N²``                    the rule updates the stored matrix in place
float16    ``2 N²``                    rounded to half precision after each ``store``
int8       ``N² + 4`` (a float32       symmetric quantisation: ``W ≈ scale * q``,
           scale)                      ``scale = max|W| / 127``, ``q`` in [-127, 127]
sign       ``ceil(N(N-1)/16) + 4``     one bit per coupling: ``W ≈ scale * sign(W)``,
           (upper triangle, 1 bit)     zero diagonal, ``scale = mean |W_ij|`` (i ≠ j)
=========  ==========================  ==================================================

For float16 and int8, :meth:`HopfieldNetwork.store` dequantises to a float32
work copy, applies the rule to all the new patterns, and requantises once, so
storing many patterns per call loses less than storing them one call at a
time.  Recall, energies and fields never build a float copy of the whole
matrix: the kernels read the stored dtype and multiply by the scale.

**Sign couplings need a write-time accumulator.**  The sign of a matrix cannot
be updated incrementally, so a ``"sign"`` network keeps a float32 accumulator
(``4 N²`` bytes, :attr:`HopfieldNetwork.accumulator_nbytes`) while patterns are
being stored and requantises after each ``store``.  :attr:`nbytes` (and every
budget) counts what is *kept*: the bits, stored on disk as the packed upper
triangle (:func:`pack_sign_couplings`); in memory recall reads them as an int8
matrix (``N²`` bytes).  A sign network rebuilt from its bits (:meth:`from_arrays`,
a saved reservoir) has no accumulator and is *frozen*: :meth:`store` refuses,
and new tasks are added by encoding again from the exact masks.

**Sizes are checked before anything is allocated.**  A network's matrices
(couplings, and the float32 accumulator of a sign network) must fit the
per-array ceiling and this process's memory
(:func:`~hopfield_masks.budget.check_memory`), whether the size comes from the
caller or from a file; :meth:`HopfieldNetwork.from_arrays` checks the shape of
the couplings against ``size`` before building anything, and its checks of a
matrix (symmetry, sign values) run over row blocks, without temporaries the
size of the matrix.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> patterns = rng.choice(np.array([-1, 1], np.int8), size=(3, 64))
>>> net = HopfieldNetwork(64, rule="storkey", dtype="int8")
>>> net.store(patterns)
>>> net.nbytes, net.n_stored
(4100, 3)
>>> cue = patterns[1].copy(); cue[:6] *= -1
>>> result = net.recall(cue, seed=0)
>>> bool((result.states == patterns[1]).all()), bool(result.converged)
(True, True)
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .budget import check_memory
from .errors import CapacityWarning, InvalidArgumentError
from .patterns import validate_states
from .recall import dynamics as _dynamics
from .recall.dynamics import RecallResult
from .recall.energy import _products
from .rules import LearningRule, get_rule
from .rules.base import check_units

__all__ = [
    "HopfieldNetwork", "NETWORK_DTYPES", "coupling_nbytes", "memory_nbytes", "check_network_memory",
    "pack_sign_couplings", "unpack_sign_couplings",
]

#: Storage precisions of the couplings.
NETWORK_DTYPES = ("float32", "float16", "int8", "sign")
_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1}
_BLOCK_ENTRIES = 1 << 22  # matrix entries checked per row block (about 4 MiB of int8)


def coupling_nbytes(size: int, dtype: str) -> int:
    """Bytes kept for the couplings of a network of ``size`` units (scale included).

    Examples
    --------
    >>> coupling_nbytes(64, "int8"), coupling_nbytes(64, "sign")   # 64*63/2 bits = 252 bytes
    (4100, 256)
    """
    if dtype == "sign":
        return -(-size * (size - 1) // 16) + 4
    return size * size * _ITEMSIZE[dtype] + (4 if dtype == "int8" else 0)


def memory_nbytes(size: int, dtype: str, *, building: bool = False) -> int:
    """Bytes of the matrices a network of ``size`` units holds in memory: the couplings at their storage
    precision (sign: an int8 matrix), plus the float32 accumulator of a sign network while it is being built
    (``building``).

    Examples
    --------
    >>> memory_nbytes(100, "float32"), memory_nbytes(100, "sign"), memory_nbytes(100, "sign", building=True)
    (40000, 10000, 50000)
    """
    n = int(size)
    return n * n * (_ITEMSIZE.get(dtype, 1) + (4 if building and dtype == "sign" else 0))


def check_network_memory(size: int, dtype: str, *, count: int = 1, building: bool = True,
                         argument: str = "size", error: type[InvalidArgumentError] = InvalidArgumentError) -> None:
    """Refuse ``count`` networks of ``size`` units whose matrices would not fit (before any is allocated).

    Each network's largest matrix must fit the per-array ceiling and all of them together this process's
    memory (:func:`~hopfield_masks.budget.check_memory`); ``building`` counts the float32 matrix a network
    is built in (a sign network's accumulator, the work copy of float16 and int8 networks).
    """
    n, count = int(size), int(count)
    largest = n * n * max(_ITEMSIZE.get(dtype, 1), 4 if building else 0)
    work = 4 * n * n if building and dtype in ("float16", "int8") else 0  # one float32 work copy at a time
    check_memory(argument, f"{n:,} units", largest_array=largest,
                 working_set=count * memory_nbytes(n, dtype, building=building) + work,
                 what=f"{count:,} {dtype} network{'s' if count != 1 else ''} of {n:,} units", error=error)


def pack_sign_couplings(couplings: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a ±1 matrix as packed bits (1 = +1), uint8 ``(ceil(N(N-1)/16),)``.

    Memory: one byte per coupling of the triangle before packing (no index arrays).
    """
    n = couplings.shape[0]
    upper = np.empty(n * (n - 1) // 2, bool)  # (N(N-1)/2,) row by row
    start = 0
    for i in range(n - 1):
        np.greater(couplings[i, i + 1:], 0, out=upper[start:start + n - 1 - i])
        start += n - 1 - i
    return np.packbits(upper)


def unpack_sign_couplings(bits: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`pack_sign_couplings`: the symmetric int8 ±1 matrix with a zero diagonal, ``(N, N)``.

    Memory: the matrix and one byte per stored bit, nothing more (no index arrays); the caller bounds
    ``size`` (:func:`check_network_memory`) before calling.

    Examples
    --------
    >>> q = np.array([[0, 1, -1], [1, 0, 1], [-1, 1, 0]], np.int8)
    >>> bool((unpack_sign_couplings(pack_sign_couplings(q), 3) == q).all())
    True
    """
    size = int(size)
    count = size * (size - 1) // 2
    bits = np.asarray(bits, dtype=np.uint8).reshape(-1)
    if bits.size * 8 < count:
        raise InvalidArgumentError("bits", f"at least {count} bits for {size} units", f"{bits.size * 8} bits")
    upper = np.unpackbits(bits, count=count).view(np.int8)  # (count,) 0/1, row by row
    upper *= 2
    upper -= 1  # ±1, in place
    q = np.zeros((size, size), np.int8)
    start = 0
    for i in range(size - 1):  # row i of the strict upper triangle
        q[i, i + 1:] = upper[start:start + size - 1 - i]
        start += size - 1 - i
    del upper
    step = max(1, _BLOCK_ENTRIES // max(size, 1))
    for r0 in range(0, size, step):  # the lower triangle mirrors the upper one, a block of rows at a time
        r1 = min(size, r0 + step)
        q[r0:r1, :r0] = q[:r0, r0:r1].T
        diag = q[r0:r1, r0:r1]
        diag += np.tril(diag.T, -1)
    return q


def _check_matrix(c: np.ndarray, sign: bool) -> None:
    """Symmetric (and, for ``sign``, ±1 off the diagonal with a zero diagonal), checked a row block at a time."""
    n = c.shape[0]
    step = max(1, _BLOCK_ENTRIES // max(n, 1))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        rows = c[r0:r1]
        if rows.dtype.kind == "f" and not np.isfinite(rows).all():  # inf would reach recall's fields
            raise InvalidArgumentError("arrays['couplings']", "finite couplings", "inf or NaN entries")
        if not np.array_equal(rows, c[:, r0:r1].T):
            raise InvalidArgumentError("arrays['couplings']", "a symmetric matrix", "an asymmetric matrix")
        if sign:
            off = np.abs(rows.astype(np.int16)) != 1  # (rows, N): True where not ±1
            if int(np.count_nonzero(off)) != r1 - r0 or np.diagonal(rows, offset=r0).any():
                raise InvalidArgumentError("arrays['couplings']", "±1 off the diagonal and 0 on it (sign couplings)",
                                           "other values")


def _check_dtype(dtype: object) -> str:
    try:
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name  # type: ignore[arg-type]
    except TypeError:
        name = None
    if name not in NETWORK_DTYPES:
        raise InvalidArgumentError("dtype", f"one of {list(NETWORK_DTYPES)}", repr(dtype))
    return name


class HopfieldNetwork:
    """A Hopfield network of ``size`` ±1 units with symmetric couplings learned by a :class:`LearningRule`.

    Parameters
    ----------
    size : int
        Number of units ``N`` (>= 2).
    rule : str, dict or LearningRule
        A registered rule id (``"hebbian"``, ``"storkey"``, ``"storkey-reference"``,
        ``"pseudo-inverse"``), a rule dict, or an instance.
    dtype : {"float32", "float16", "int8"}
        Storage precision of the couplings (see the module docstring).

    Raises
    ------
    InvalidArgumentError
        Bad size or dtype.
    UnknownRuleError
        No rule with that id.
    """

    def __init__(self, size: int, rule: str | LearningRule | Mapping = "storkey", dtype: str = "float32") -> None:
        size, rule, dtype = check_units(size, name="size"), get_rule(rule), _check_dtype(dtype)
        check_network_memory(size, dtype)  # before anything is allocated
        storage = np.int8 if dtype == "sign" else dtype
        # sign couplings: the float32 matrix the rule updates (None once frozen, see the module docstring)
        accumulator = np.zeros((size, size), np.float32) if dtype == "sign" else None
        self._assign(size, rule, dtype, np.zeros((size, size), storage), 1.0, 0, accumulator)

    def _assign(self, size: int, rule: LearningRule, dtype: str, couplings: np.ndarray, scale: float,
                n_stored: int, accumulator: np.ndarray | None) -> None:
        """Set every field (the constructor and :meth:`from_arrays` share it)."""
        self._size = size
        self._rule = rule
        self._dtype = dtype
        self._q = couplings  # (N, N) couplings at the storage precision
        self._stale = False  # sign: the accumulator changed since the bits were last taken
        self._scale = np.float32(scale)  # real couplings = scale * stored; 1 except for int8 and sign
        self._n_stored = n_stored
        self._accumulator = accumulator

    @property
    def _couplings(self) -> np.ndarray:
        """The stored matrix; a sign network takes its bits from the accumulator first when they are stale."""
        if self._stale:
            self._stale = False
            self._set_couplings(self._accumulator)
        return self._q

    @_couplings.setter
    def _couplings(self, value: np.ndarray) -> None:
        self._q = value

    # -- description -----------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of units ``N``."""
        return self._size

    @property
    def rule(self) -> LearningRule:
        """The learning rule."""
        return self._rule

    @property
    def dtype(self) -> str:
        """Storage precision of the couplings."""
        return self._dtype

    @property
    def n_stored(self) -> int:
        """Patterns stored so far (dependent patterns skipped by the pseudo-inverse rule included)."""
        return self._n_stored

    @property
    def nbytes(self) -> int:
        """Bytes kept for the couplings (plus the float32 scale for int8 and sign; see :func:`coupling_nbytes`)."""
        return coupling_nbytes(self._size, self._dtype)

    @property
    def accumulator_nbytes(self) -> int:
        """Bytes of the write-time float32 accumulator a sign network holds while storing (0 otherwise)."""
        return 0 if self._accumulator is None else int(self._accumulator.nbytes)

    @property
    def frozen(self) -> bool:
        """True for a sign network without its accumulator (rebuilt from bits): it cannot store more."""
        return self._dtype == "sign" and self._accumulator is None

    @property
    def capacity(self) -> float:
        """The rule's theoretical capacity for ``N`` units; sign couplings: at most ``0.1 N``.

        ``0.1 N`` is the figure for clipped (sign) Hebbian couplings; no rule
        stores more than ``0.83 N`` random patterns in ±1 couplings (REFERENCE.md §8).
        """
        theory = float(self._rule.capacity(self._size))
        return min(theory, 0.1 * self._size) if self._dtype == "sign" else theory

    @property
    def load(self) -> float:
        """``n_stored / capacity``."""
        return self._n_stored / self.capacity

    @property
    def scale(self) -> float:
        """Quantisation step: real couplings are ``scale * couplings`` (1.0 for float storage)."""
        self._couplings  # noqa: B018 - a sign network's scale is set when its bits are taken
        return float(self._scale)

    @property
    def couplings(self) -> np.ndarray:
        """The stored ``(N, N)`` matrix at its storage precision (a read-only view)."""
        view = self._couplings.view()
        view.flags.writeable = False
        return view

    @property
    def weights(self) -> np.ndarray:
        """A dequantised float32 copy of the couplings, ``scale * couplings`` (allocates ``4 N²`` bytes)."""
        w = self._couplings.astype(np.float32)  # (N, N)
        if self._dtype in ("int8", "sign"):
            w *= self._scale
        return w

    def __repr__(self) -> str:
        return (
            f"HopfieldNetwork(size={self._size}, rule={self._rule!r}, dtype={self._dtype!r}, "
            f"n_stored={self._n_stored})"
        )

    # -- learning --------------------------------------------------------------------------------
    def store(self, patterns: object) -> None:
        """Store one pattern ``(N,)`` or a batch ``(k, N)`` of ±1 spins, in row order.

        Warns
        -----
        CapacityWarning
            When the number of stored patterns exceeds :attr:`capacity`.

        Raises
        ------
        PatternError, PatternShapeError
            Values not ±1, or a length other than ``N``; nothing is stored.
        """
        p = validate_states(patterns, size=self._size, name="patterns")
        p = p.reshape(-1, self._size)  # (N,) -> (1, N)
        if p.shape[0] == 0:
            return
        if self.frozen:
            raise InvalidArgumentError(
                "network", "a network that can still store (sign couplings keep their accumulator only while "
                           "being built; encode again from the exact masks)", "a frozen sign network")
        if self._dtype == "float32":
            self._rule.store(self._couplings, p)  # in place, no copy
        elif self._dtype == "sign":
            self._rule.store(self._accumulator, p)  # the float32 accumulator, in place
            self._stale = True  # requantised when the couplings are next read, not after every store
        else:
            work = self.weights  # (N, N) float32 work copy
            self._rule.store(work, p)
            self._set_couplings(work)
        self._n_stored += p.shape[0]
        if self._n_stored > self.capacity:
            warnings.warn(
                CapacityWarning(
                    f"{self._n_stored} patterns stored in a {self._rule.rule_id} network of {self._size} units, "
                    f"beyond its capacity of {self.capacity:.1f}"
                ),
                stacklevel=2,
            )

    def _set_couplings(self, work: np.ndarray) -> None:
        """Requantise a float32 work matrix into the storage dtype (int8: symmetric, scale = max|W| / 127)."""
        if self._dtype == "sign":
            q = np.where(work >= 0, 1, -1).astype(np.int8)  # (N, N); a zero coupling counts as +1
            np.fill_diagonal(q, 0)
            off = np.abs(work).sum(dtype=np.float64) - float(np.abs(np.diagonal(work)).sum(dtype=np.float64))
            mean = off / max(1, self._size * (self._size - 1))
            self._scale = np.float32(mean) if mean > 0.0 else np.float32(1.0)
            self._couplings = q
        elif self._dtype == "float16":
            self._couplings = work.astype(np.float16)
        elif self._dtype == "int8":
            peak = float(np.abs(work).max())
            self._scale = np.float32(peak / 127.0) if peak > 0.0 else np.float32(1.0)
            q = np.rint(work / self._scale)  # (N, N) float32 steps
            self._couplings = np.clip(q, -127, 127).astype(np.int8)
        else:  # pragma: no cover - float32 is updated in place
            self._couplings = work

    # -- energy landscape ------------------------------------------------------------------------
    def local_field(self, states: object) -> np.ndarray:
        """``h = W s`` (real couplings) for ``(N,)`` or ``(k, N)`` states; float64, same shape."""
        s = validate_states(states, size=self._size)
        h = _products(self._couplings, s.reshape(-1, self._size)) * float(self._scale)  # (k, N)
        return h.reshape(s.shape)

    def energy(self, states: object) -> float | np.ndarray:
        """``E = -1/2 sᵀ W s``: a float for ``(N,)``, float64 ``(k,)`` for ``(k, N)``."""
        s = validate_states(states, size=self._size)
        sb = s.reshape(-1, self._size)  # (k, N)
        h = _products(self._couplings, sb) * float(self._scale)  # (k, N)
        e = -0.5 * np.einsum("kn,kn->k", sb.astype(np.float64), h)  # (k,)
        return float(e[0]) if s.ndim == 1 else e

    def energy_gradient(self, state: object) -> np.ndarray:
        """``dE/ds = -1/2 (W + Wᵀ) s = -W s`` (the couplings are symmetric); float64, shape of ``state``."""
        return -self.local_field(state)

    def is_fixed_point(self, states: object) -> bool | np.ndarray:
        """True where no unit would flip: ``s_i h_i >= 0`` for every unit (a zero field keeps its spin)."""
        s = validate_states(states, size=self._size)
        stable = (s.astype(np.float64) * self.local_field(s) >= 0.0).all(axis=-1)  # (k,) or ()
        return bool(stable) if s.ndim == 1 else stable

    # -- recall ----------------------------------------------------------------------------------
    def recall(
        self,
        cues: object,
        mode: str = "async",
        max_steps: int = 100,
        seed: int = 0,
        external_field: object = None,
        *,
        warn: bool = False,
    ) -> RecallResult:
        """Run the dynamics from ``cues`` (``(N,)`` or ``(k, N)``); see :func:`hopfield_masks.recall.recall`."""
        return _dynamics._recall_trusted(
            self._couplings, float(self._scale), cues, mode=mode, max_steps=max_steps, seed=seed,
            external_field=external_field, warn=warn,
        )

    def sweep(
        self, state: object, external_field: object = None, rng_or_seed: object = 0
    ) -> tuple[np.ndarray, int]:
        """One asynchronous sweep of one state ``(N,)`` in a random order; returns ``(new_state, n_flips)``.

        ``rng_or_seed`` is a :class:`numpy.random.Generator` (advanced by one
        permutation) or an int seed; ``external_field`` ``(N,)`` is added to the
        fields.  ``state`` is not modified.
        """
        return _dynamics._sweep_trusted(self._couplings, float(self._scale), state, external_field, rng_or_seed)

    # -- persistence -----------------------------------------------------------------------------
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``({"couplings": copy}, attrs)`` with JSON-safe attrs: rule (dict), dtype, size, n_stored, scale."""
        couplings = self._couplings.copy()  # first: a sign network's scale is set when its bits are taken
        attrs = {
            "rule": self._rule.to_dict(),
            "dtype": self._dtype,
            "size": self._size,
            "n_stored": self._n_stored,
            "scale": float(self._scale),
        }
        return {"couplings": couplings}, attrs

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> HopfieldNetwork:
        """Rebuild a network from :meth:`to_arrays` output (``attrs["rule"]`` may also be a JSON string).

        Raises
        ------
        InvalidArgumentError
            A key is missing, or a value does not fit (shape, dtype, asymmetric couplings, bad scale).
        """
        for name, mapping, keys in (("arrays", arrays, ("couplings",)),
                                    ("attrs", attrs, ("rule", "dtype", "size", "n_stored", "scale"))):
            if not isinstance(mapping, Mapping):
                raise InvalidArgumentError(name, "a mapping", type(mapping).__name__)
            missing = [k for k in keys if k not in mapping]
            if missing:
                raise InvalidArgumentError(name, f"keys {list(keys)}", f"no {missing}")
        rule = attrs["rule"]
        if isinstance(rule, (str, bytes)):
            try:
                rule = json.loads(rule)
            except (ValueError, RecursionError):
                raise InvalidArgumentError("attrs['rule']", "a rule dict or its JSON", "text that is not JSON") from None
        size, rule, dtype = check_units(attrs["size"], name="attrs['size']"), get_rule(rule), _check_dtype(attrs["dtype"])
        # nothing is allocated before the couplings are known to have the declared shape
        c = np.asarray(arrays["couplings"])
        storage = np.dtype(np.int8) if dtype == "sign" else np.dtype(dtype)
        if c.shape != (size, size) or c.dtype != storage:
            raise InvalidArgumentError(
                "arrays['couplings']", f"shape {(size, size)} and dtype {storage}",
                f"shape {c.shape} and dtype {c.dtype}",
            )
        check_network_memory(size, dtype, building=False, argument="attrs['size']")
        _check_matrix(c, sign=dtype == "sign")
        n_stored = attrs["n_stored"]
        if isinstance(n_stored, bool) or not isinstance(n_stored, (int, np.integer)) or n_stored < 0:
            raise InvalidArgumentError("attrs['n_stored']", "an integer >= 0", repr(n_stored))
        scale = attrs["scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not (
            math.isfinite(float(scale)) and float(scale) > 0.0
        ):
            raise InvalidArgumentError("attrs['scale']", "a finite number > 0", repr(scale))
        net = cls.__new__(cls)
        # a sign network rebuilt from its bits has no accumulator: it is frozen
        net._assign(size, rule, dtype, np.array(c, dtype=storage, order="C", copy=True), float(scale), int(n_stored),
                    None)
        return net
