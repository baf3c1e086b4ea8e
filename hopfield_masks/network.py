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
=========  ==========================  ==================================================

For float16 and int8, :meth:`HopfieldNetwork.store` dequantises to a float32
work copy, applies the rule to all the new patterns, and requantises once, so
storing many patterns per call loses less than storing them one call at a
time.  Recall, energies and fields never build a float copy of the whole
matrix: the kernels read the stored dtype and multiply by the scale.

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

__all__ = ["HopfieldNetwork", "NETWORK_DTYPES"]

#: Storage precisions of the couplings.
NETWORK_DTYPES = ("float32", "float16", "int8")


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
        self._couplings = np.zeros((self._size, self._size), self._dtype)  # (N, N) at the storage precision
        self._scale = np.float32(1.0)  # real couplings = scale * stored; 1 except for int8
        self._n_stored = 0

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
        """Bytes of the couplings (plus the float32 scale for int8)."""
        return int(self._couplings.nbytes) + (4 if self._dtype == "int8" else 0)

    @property
    def capacity(self) -> float:
        """The rule's theoretical capacity for ``N`` units."""
        return float(self._rule.capacity(self._size))

    @property
    def load(self) -> float:
        """``n_stored / capacity``."""
        return self._n_stored / self.capacity

    @property
    def scale(self) -> float:
        """Quantisation step: real couplings are ``scale * couplings`` (1.0 for float storage)."""
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
        if self._dtype == "int8":
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
        if self._dtype == "float32":
            self._rule.store(self._couplings, p)  # in place, no copy
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
        if self._dtype == "float16":
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
        attrs = {
            "rule": self._rule.to_dict(),
            "dtype": self._dtype,
            "size": self._size,
            "n_stored": self._n_stored,
            "scale": float(self._scale),
        }
        return {"couplings": self._couplings.copy()}, attrs

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
        if c.shape != (net.size, net.size) or c.dtype != np.dtype(net.dtype):
            raise InvalidArgumentError(
                "arrays['couplings']", f"shape {(net.size, net.size)} and dtype {net.dtype}",
                f"shape {c.shape} and dtype {c.dtype}",
            )
        if not np.array_equal(c, c.T):
            raise InvalidArgumentError("arrays['couplings']", "a symmetric matrix", "an asymmetric matrix")
        n_stored = attrs["n_stored"]
        if isinstance(n_stored, bool) or not isinstance(n_stored, (int, np.integer)) or n_stored < 0:
            raise InvalidArgumentError("attrs['n_stored']", "an integer >= 0", repr(n_stored))
        scale = attrs["scale"]
        if isinstance(scale, bool) or not isinstance(scale, (int, float, np.number)) or not (
            math.isfinite(float(scale)) and float(scale) > 0.0
        ):
            raise InvalidArgumentError("attrs['scale']", "a finite number > 0", repr(scale))
        net._couplings = np.array(c, dtype=net.dtype, order="C", copy=True)
        net._scale = np.float32(scale)
        net._n_stored = int(n_stored)
        return net
