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

from .errors import CapacityWarning, InvalidArgumentError
from .patterns import validate_states
from .recall import dynamics as _dynamics
from .recall.dynamics import RecallResult
from .recall.energy import _products
from .rules import LearningRule, get_rule
from .rules.base import check_units

__all__ = ["HopfieldNetwork", "NETWORK_DTYPES", "coupling_nbytes", "pack_sign_couplings", "unpack_sign_couplings"]

#: Storage precisions of the couplings.
NETWORK_DTYPES = ("float32", "float16", "int8", "sign")
_ITEMSIZE = {"float32": 4, "float16": 2, "int8": 1}


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


def pack_sign_couplings(couplings: np.ndarray) -> np.ndarray:
    """The strict upper triangle of a ±1 matrix as packed bits (1 = +1), uint8 ``(ceil(N(N-1)/16),)``."""
    n = couplings.shape[0]
    upper = couplings[np.triu_indices(n, 1)] > 0  # (N(N-1)/2,) row by row
    return np.packbits(upper)


def unpack_sign_couplings(bits: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`pack_sign_couplings`: the symmetric int8 ±1 matrix with a zero diagonal, ``(N, N)``.

    Examples
    --------
    >>> q = np.array([[0, 1, -1], [1, 0, 1], [-1, 1, 0]], np.int8)
    >>> bool((unpack_sign_couplings(pack_sign_couplings(q), 3) == q).all())
    True
    """
    count = size * (size - 1) // 2
    upper = np.unpackbits(np.asarray(bits, dtype=np.uint8), count=count).astype(np.int8) * 2 - 1  # (count,)
    q = np.zeros((size, size), np.int8)
    rows, cols = np.triu_indices(size, 1)
    q[rows, cols] = upper
    q[cols, rows] = upper
    return q


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
        self._size = check_units(size, name="size")
        self._rule = get_rule(rule)
        self._dtype = _check_dtype(dtype)
        storage = np.int8 if self._dtype == "sign" else self._dtype
        self._q = np.zeros((self._size, self._size), storage)  # (N, N) couplings at the storage precision
        self._stale = False  # sign: the accumulator changed since the bits were last taken
        self._scale = np.float32(1.0)  # real couplings = scale * stored; 1 except for int8 and sign
        self._n_stored = 0
        # sign couplings: the float32 matrix the rule updates (None once frozen, see the module docstring)
        self._accumulator = np.zeros((self._size, self._size), np.float32) if self._dtype == "sign" else None

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
            except ValueError:
                raise InvalidArgumentError("attrs['rule']", "a rule dict or its JSON", repr(rule)) from None
        net = cls(attrs["size"], rule, attrs["dtype"])
        c = np.asarray(arrays["couplings"])
        storage = np.dtype(np.int8) if net.dtype == "sign" else np.dtype(net.dtype)
        if c.shape != (net.size, net.size) or c.dtype != storage:
            raise InvalidArgumentError(
                "arrays['couplings']", f"shape {(net.size, net.size)} and dtype {storage}",
                f"shape {c.shape} and dtype {c.dtype}",
            )
        if not np.array_equal(c, c.T):
            raise InvalidArgumentError("arrays['couplings']", "a symmetric matrix", "an asymmetric matrix")
        if net.dtype == "sign" and ((np.abs(c) != 1).sum() != net.size or (np.diagonal(c) != 0).any()):
            raise InvalidArgumentError("arrays['couplings']", "±1 off the diagonal and 0 on it (sign couplings)",
                                       "other values")
        n_stored = attrs["n_stored"]
        if isinstance(n_stored, bool) or not isinstance(n_stored, (int, np.integer)) or n_stored < 0:
            raise InvalidArgumentError("attrs['n_stored']", "an integer >= 0", repr(n_stored))
        scale = attrs["scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not (
            math.isfinite(float(scale)) and float(scale) > 0.0
        ):
            raise InvalidArgumentError("attrs['scale']", "a finite number > 0", repr(scale))
        net._couplings = np.array(c, dtype=storage, order="C", copy=True)
        net._scale = np.float32(scale)
        net._n_stored = int(n_stored)
        net._accumulator = None  # a sign network rebuilt from its bits is frozen
        net._stale = False
        return net
