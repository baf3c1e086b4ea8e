"""The guidance contract: how an external objective steers recall, NumPy in and NumPy out.

Guided recall (:mod:`hopfield_masks.recall.guided`) pulls a candidate pattern
towards the stored attractor that *also* makes some external objective small
(for SupSup, the entropy of a model's output when the candidate is used as its
mask).  The recall loops know nothing about that objective; they only ask a
:class:`Guidance` object for its gradient.

What an implementation must do
------------------------------
- Provide ``gradient(state) -> ndarray``.
- ``state`` is a flat ``int8`` vector of spins in {-1, +1} of length ``P``:
  the **whole** candidate pattern (all layers of one task, in the
  :class:`~hopfield_masks.blocks.MaskLayout` order), never one block.  The
  spin convention is ``s = 2*m - 1`` (a kept mask entry is +1).
- Return a ``float64`` array of shape ``(P,)`` (anything convertible is
  accepted and converted): ``d(objective)/d(state)`` for an objective to be
  **minimised**.  Every entry must be finite.

What an implementation must not do
----------------------------------
- Modify ``state`` (the loops hand over a copy anyway, but do not rely on it).
- Keep a reference to ``state`` and read it later.
- Import torch into :mod:`hopfield_masks`: torch implementations (such as
  ``supsup_core.guidance.OutputGuidance``) live on the torch side and convert
  to NumPy themselves.

Invariants the tests check
--------------------------
- The recall loops call ``gradient`` at most once per step or sweep (guidance
  may run a model forward and backward pass, so it is the expensive part).
- :func:`guidance_gradient` rejects outputs of the wrong shape, non-numeric
  dtype or non-finite values with a :class:`~hopfield_masks.errors.PatternShapeError`
  or :class:`~hopfield_masks.errors.InvalidArgumentError` naming the guidance.
- :class:`HammingGuidance` and :class:`FieldGuidance` are the exact gradients
  of their ``objective`` (checked by finite differences over spin flips).

Examples
--------
>>> import numpy as np
>>> target = np.array([1, -1, 1, 1], dtype=np.int8)
>>> g = HammingGuidance(target)
>>> isinstance(g, Guidance)
True
>>> g.gradient(np.ones(4, dtype=np.int8))
array([-0.5,  0.5, -0.5, -0.5])
>>> g.objective(np.ones(4, dtype=np.int8))
1.0
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InvalidArgumentError, PatternShapeError
from ..patterns import to_spins, validate_states
from ..validate import check_float

__all__ = ["Guidance", "HammingGuidance", "FieldGuidance", "validate_guidance", "guidance_gradient"]


@runtime_checkable
class Guidance(Protocol):
    """Anything with a ``gradient(state)`` method following the module's contract."""

    def gradient(self, state: np.ndarray) -> np.ndarray:
        """Return ``d(objective)/d(state)``, float64 ``(P,)``, for a flat int8 ±1 ``state`` of length ``P``."""
        ...  # pragma: no cover - protocol


class HammingGuidance:
    """Pull recall towards ``target``: the objective is the number of entries that differ from it.

    With ±1 spins, ``objective(s) = scale * sum_i (1 - t_i s_i) / 2``, which is
    linear in ``s``, so the gradient is the constant ``-scale * t / 2``.  Tests
    and diagnostics use it as a torch-free stand-in for a model's entropy.

    Parameters
    ----------
    target : array_like
        Flat state of ±1 spins (use :meth:`from_mask` for a {0,1} mask).
    scale : float
        Positive weight of the objective.  The size of the gradient matters to
        :func:`~hopfield_masks.recall.guided.score_descent`: with the
        reference's knobs a gradient far larger than the energy's
        (``gamma * |local field|``, about 1e-3) makes the scores overshoot
        (see its Notes); with those knobs a scale between about 3e-4 and 1e-2
        brings recall to the target.  :func:`~hopfield_masks.recall.guided.guided_dynamics`
        normalises the gradient, so the scale does not matter there.

    Examples
    --------
    >>> HammingGuidance.from_mask([True, False]).gradient(np.array([-1, -1], dtype=np.int8))
    array([-0.5,  0.5])
    """

    def __init__(self, target: object, scale: float = 1.0) -> None:
        t = validate_states(target, name="target")
        if t.ndim != 1:
            raise PatternShapeError("target", "one flat state (1-D)", f"shape {t.shape}")
        self.target = t
        self.scale = check_float("scale", scale, low=0, low_open=True)
        self._gradient = (-0.5 * self.scale) * t.astype(np.float64)  # (P,); the objective is linear: computed once

    @classmethod
    def from_mask(cls, mask: object, scale: float = 1.0) -> "HammingGuidance":
        """Guidance towards a {0,1} mask (any shape, flattened in C order)."""
        return cls(to_spins(mask, name="mask"), scale)

    def objective(self, state: np.ndarray) -> float:
        """``scale`` times the number of entries of ``state`` that differ from the target."""
        s = validate_states(state, size=self.target.size, name="state")
        return self.scale * int(np.count_nonzero(s != self.target))

    def gradient(self, state: np.ndarray) -> np.ndarray:
        """The constant gradient ``-scale * target / 2`` (a new array each call)."""
        validate_states(state, size=self.target.size, name="state")
        return self._gradient.copy()

    def __repr__(self) -> str:
        return f"HammingGuidance(<{self.target.size} spins>, scale={self.scale!r})"


class FieldGuidance:
    """A constant gradient: the objective is ``field · s``, so recall is pushed towards ``-sign(field)``.

    Parameters
    ----------
    field : array_like
        Finite floats, shape ``(P,)``.

    Examples
    --------
    >>> FieldGuidance([0.5, -2.0]).objective(np.array([1, 1], dtype=np.int8))
    -1.5
    """

    def __init__(self, field: object) -> None:
        f = np.asarray(field)
        if f.dtype == object or not (np.issubdtype(f.dtype, np.number) or f.dtype == np.bool_):
            raise InvalidArgumentError("field", "a numeric array", f"dtype {f.dtype}")
        if f.ndim != 1:
            raise PatternShapeError("field", "a flat (1-D) array", f"shape {f.shape}")
        f = f.astype(np.float64)
        if not np.isfinite(f).all():
            raise InvalidArgumentError("field", "finite values", "NaN or infinity")
        self.field = f

    def objective(self, state: np.ndarray) -> float:
        """``field · state``."""
        s = validate_states(state, size=self.field.size, name="state")
        return float(self.field @ s)

    def gradient(self, state: np.ndarray) -> np.ndarray:
        """The constant ``field`` (a new array each call)."""
        validate_states(state, size=self.field.size, name="state")
        return self.field.copy()

    def __repr__(self) -> str:
        return f"FieldGuidance(<{self.field.size} values>)"


def validate_guidance(guidance: object, *, name: str = "guidance") -> Guidance | None:
    """Return ``guidance`` unchanged if it is ``None`` or follows the :class:`Guidance` protocol.

    Raises
    ------
    InvalidArgumentError
        The object has no callable ``gradient`` method.

    Examples
    --------
    >>> validate_guidance(None) is None
    True
    >>> validate_guidance(3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: guidance: expected None or an object with a gradient(state) ...
    """
    if guidance is None:
        return None
    if not isinstance(guidance, Guidance) or not callable(getattr(guidance, "gradient", None)):
        raise InvalidArgumentError(
            name, "None or an object with a gradient(state) method", f"{type(guidance).__name__} {guidance!r}"
        )
    return guidance


def guidance_gradient(guidance: Guidance, state: np.ndarray, *, name: str = "guidance") -> np.ndarray:
    """Call ``guidance.gradient`` on a copy of ``state`` and check what comes back.

    Parameters
    ----------
    guidance : Guidance
        The guidance to ask.
    state : ndarray
        Flat int8 ±1 state of length ``P``.
    name : str
        How the guidance is called in error messages.

    Returns
    -------
    ndarray
        float64 ``(P,)``.

    Raises
    ------
    PatternShapeError
        The gradient is not of shape ``(P,)``.
    InvalidArgumentError
        The gradient is not numeric or holds NaN or infinite values.

    Examples
    --------
    >>> guidance_gradient(FieldGuidance([1.0, 2.0]), np.array([1, -1], dtype=np.int8))
    array([1., 2.])
    """
    what = f"{name}.gradient(state)"
    grad = np.asarray(guidance.gradient(np.array(state, dtype=np.int8, copy=True)))
    if grad.dtype == object or not (np.issubdtype(grad.dtype, np.number) or grad.dtype == np.bool_):
        raise InvalidArgumentError(what, "a numeric array", f"dtype {grad.dtype}")
    if np.iscomplexobj(grad):
        raise InvalidArgumentError(what, "real values", f"dtype {grad.dtype}")
    if grad.shape != (len(state),):
        raise PatternShapeError(what, f"shape ({len(state)},)", f"shape {grad.shape}")
    grad = grad.astype(np.float64)
    bad = ~np.isfinite(grad)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError(what, "finite values", f"{grad[i]!r} at index {i}")
    return grad
