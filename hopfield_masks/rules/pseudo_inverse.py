"""The pseudo-inverse (projection) rule, incremental form.

After storing patterns ``x¹..xᵏ`` the weight matrix is the orthogonal
projector onto their span, so every stored pattern satisfies ``W x = x`` and
is a fixed point of the dynamics (``sign(W x) = x``).  It is built one pattern
at a time with a Gram-Schmidt step, never needing the earlier patterns::

    r = x - W x                    # the part of x outside the stored span
    if ||r|| > tol * ||x||:  W += r rᵀ / (rᵀ r)

The matrix is symmetric, its diagonal is not zeroed (``0 <= W_ii <= 1``), and
any ``N - 1`` linearly independent patterns are stored exactly (capacity
``N - 1``; with ``N`` of them ``W`` becomes the identity and every state is a
fixed point, so no information is left).

**Linearly dependent patterns.** A pattern that lies (up to ``tol``) in the
span of the stored ones has ``r ≈ 0``: the update is skipped and ``W`` is left
unchanged.  Nothing is lost, since ``W x = x`` already holds for it: it is a
fixed point without being added.  The network still counts it as stored.
"""

from __future__ import annotations

import math

import numpy as np

from ..validate import check_float
from .base import LearningRule, _field, check_units

__all__ = ["PseudoInverseRule"]


class PseudoInverseRule(LearningRule):
    """Incremental projection learning.

    Parameters
    ----------
    tol : float
        Relative residual below which a pattern counts as already in the
        stored span: the update is skipped when ``||x - W x|| <= tol * sqrt(N)``.
        The default leaves room for float32 rounding in ``W``.

    Examples
    --------
    >>> rule = PseudoInverseRule()
    >>> w = np.zeros((4, 4))
    >>> xs = np.array([[1, 1, -1, -1], [1, -1, 1, -1]], np.int8)
    >>> rule.store(w, xs)
    >>> bool(np.allclose(w @ xs.T, xs.T))     # both are fixed points: W x = x
    True
    >>> rule.store(w, -xs[0])                 # dependent pattern: nothing changes
    >>> bool(np.allclose(w @ xs.T, xs.T))
    True
    >>> PseudoInverseRule(tol=1e-6)
    PseudoInverseRule(tol=1e-06)
    """

    rule_id = "pseudo-inverse"

    def __init__(self, tol: float = 1e-4) -> None:
        self.tol = check_float("tol", tol, low=0, high=1, low_open=True, high_open=True)

    def _params(self) -> dict[str, float]:
        return {"tol": self.tol}

    def _update(self, weights: np.ndarray, patterns: np.ndarray) -> None:
        from . import _kernels  # Numba (and LLVM) load on first use, not on import
        n = weights.shape[0]
        threshold2 = (self.tol * math.sqrt(n)) ** 2
        for x in patterns:
            r = x.astype(np.float64) - _field(weights, x)  # (N,) residual outside the stored span
            norm2 = float(r @ r)
            if norm2 > threshold2:  # dependent patterns are already fixed points: skip
                _kernels.rank_one_update(weights, r, 1.0 / norm2)

    def capacity(self, n: int) -> float:
        """``n - 1``."""
        return float(check_units(n) - 1)
