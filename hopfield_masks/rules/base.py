"""The learning-rule contract: how a weight matrix changes when patterns are stored.

A learning rule is a small, stateless object (its only state is its
configuration, e.g. a tolerance) that updates a Hopfield coupling matrix
**in place**.  The network (:class:`~hopfield_masks.network.HopfieldNetwork`)
owns the matrix; the rule only knows how to add patterns to it.

What :meth:`LearningRule.store` receives
----------------------------------------
- ``weights``: an ``(N, N)`` ``float32`` or ``float64`` array, C-contiguous and
  writeable.  It is updated in place; nothing is returned.  Lower precisions
  (``float16``, ``int8``) are the network's business: it dequantises to a
  float32 work copy, calls the rule, and requantises.
- ``patterns``: one state ``(N,)`` or a batch ``(k, N)`` of ``int8`` spins in
  {-1, +1} (anything :func:`~hopfield_masks.patterns.validate_states` accepts).
  Patterns are stored **one at a time, in row order**: a rule is incremental,
  so storing ``[a, b]`` equals storing ``a`` then ``b`` and never needs the
  earlier patterns.

What every rule guarantees
--------------------------
- Symmetry is kept: a symmetric ``weights`` stays *exactly* symmetric (the
  kernels compute one increment per pair ``(i, j)`` and add it to both
  entries).  Rules assume the matrix they are handed is symmetric, which is
  true of every matrix built by a rule from zeros; they do not check it
  (that would cost a transposed pass over ``N**2`` entries per call).
- Validation happens before any update, so bad input leaves ``weights``
  untouched.
- :meth:`capacity` returns the rule's theoretical number of storable random
  patterns for ``N`` units (a float; the network warns beyond it).
- :meth:`to_dict` returns JSON-safe values including ``"id"``;
  ``LearningRule.from_dict(d)`` rebuilds an equal rule through the registry
  (:func:`hopfield_masks.rules.get_rule`), ``SomeRule.from_dict(d)`` checks
  the id and rebuilds that class.  ``eval(repr(rule)) == rule`` when the class
  name is in scope.

How to add a rule
-----------------
Subclass :class:`LearningRule`, set ``rule_id`` (lower-case words joined by
``-``), implement :meth:`_update` (validated arrays in, in-place update, no
checks needed) and :meth:`capacity`, override :meth:`_params` when the
constructor takes arguments, put any Numba kernel in ``rules/_kernels.py``
and call :func:`hopfield_masks.rules.register_rule` on the class.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidArgumentError
from ..patterns import validate_states
from ..validate import check_int

__all__ = ["LearningRule", "validate_weights", "check_units"]


def validate_weights(weights: object, *, name: str = "weights") -> np.ndarray:
    """Check that ``weights`` is a writeable, C-contiguous, square float32/float64 matrix.

    The rule updates the array in place, so it is returned as is (never copied).

    Raises
    ------
    InvalidArgumentError
        Not an ndarray, wrong dtype, not square 2-D, not C-contiguous or read-only.

    Examples
    --------
    >>> validate_weights(np.zeros((3, 3), np.float32)).shape
    (3, 3)
    """
    if not isinstance(weights, np.ndarray):
        raise InvalidArgumentError(name, "a NumPy array", type(weights).__name__)
    if weights.dtype not in (np.float32, np.float64):
        raise InvalidArgumentError(name, "dtype float32 or float64", f"dtype {weights.dtype}")
    if weights.ndim != 2 or weights.shape[0] != weights.shape[1] or weights.shape[0] == 0:
        raise InvalidArgumentError(name, "a non-empty square (N, N) matrix", f"shape {weights.shape}")
    if not weights.flags.c_contiguous:
        raise InvalidArgumentError(name, "a C-contiguous array (updated in place)", "a non-contiguous array")
    if not weights.flags.writeable:
        raise InvalidArgumentError(name, "a writeable array (updated in place)", "a read-only array")
    return weights


def check_units(n: object, *, name: str = "n") -> int:
    """Return ``n`` as an int after checking it is a unit count >= 2 (the capacity formulas need ``ln n > 0``).

    Examples
    --------
    >>> check_units(8)
    8
    """
    return check_int(name, n, low=2)


class LearningRule(ABC):
    """Base class of the learning rules; the module docstring is the contract.

    Examples
    --------
    >>> from hopfield_masks.rules import get_rule
    >>> rule = get_rule("hebbian")
    >>> w = np.zeros((4, 4), np.float64)
    >>> rule.store(w, np.array([[1, -1, 1, -1]], np.int8))
    >>> w[0]
    array([ 0.  , -0.25,  0.25, -0.25])
    >>> LearningRule.from_dict(rule.to_dict()) == rule
    True
    """

    #: Registry id, e.g. ``"hebbian"``.
    rule_id: ClassVar[str] = ""

    def store(self, weights: np.ndarray, patterns: object) -> None:
        """Store ``patterns`` (``(N,)`` or ``(k, N)`` ±1) into ``weights`` in place, one pattern at a time.

        Raises
        ------
        InvalidArgumentError
            ``weights`` is not a writeable C-contiguous square float32/float64 matrix.
        PatternError, PatternShapeError
            ``patterns`` is not ±1 or its length is not ``N``.
        """
        w = validate_weights(weights)
        p = validate_states(patterns, size=w.shape[0], name="patterns")
        p = p.reshape(-1, w.shape[0])  # (N,) -> (1, N); (k, N) unchanged
        if p.shape[0]:
            self._update(w, p)

    @abstractmethod
    def _update(self, weights: np.ndarray, patterns: np.ndarray) -> None:
        """Apply the rule for each row of ``patterns`` ((k, N) int8 ±1, k >= 1) to ``weights``, in place."""

    @abstractmethod
    def capacity(self, n: int) -> float:
        """Theoretical number of random patterns storable in ``n`` units."""

    def _params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-safe); rules without arguments keep the empty default."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description: ``{"id": rule_id, **constructor arguments}``."""
        return {"id": self.rule_id, **self._params()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LearningRule:
        """Rebuild a rule from :meth:`to_dict` output.

        On :class:`LearningRule` itself the id is looked up in the registry; on
        a subclass the id must be that subclass's ``rule_id``.
        """
        if not isinstance(d, dict) or not isinstance(d.get("id"), str):
            raise InvalidArgumentError("d", "a dict with a string 'id'", repr(d))
        params = {k: v for k, v in d.items() if k != "id"}
        if cls is LearningRule:
            from . import _rule_class  # the registry imports this module, so import it lazily

            target = _rule_class(d["id"])
        else:
            if d["id"] != cls.rule_id:
                raise InvalidArgumentError("d['id']", repr(cls.rule_id), repr(d["id"]))
            target = cls
        try:
            return target(**params)
        except TypeError as exc:  # unknown or missing constructor arguments
            raise InvalidArgumentError("d", f"the arguments of {target.__name__}", repr(params)) from exc

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._params() == other._params()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self._params().items()))))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def _log_capacity(n: int) -> float:
    """``ln n`` after validating ``n`` (shared by the capacity formulas)."""
    return math.log(check_units(n))


def _field(weights: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Full local field ``weights @ x`` as float64 (N,), computed with BLAS at the weights' precision."""
    return (weights @ x.astype(weights.dtype)).astype(np.float64)  # (N, N) @ (N,) -> (N,)
