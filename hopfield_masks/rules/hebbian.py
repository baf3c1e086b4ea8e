"""The Hebbian rule: ``W += (1/N) x xᵀ`` per pattern, zero diagonal.

Order does not matter (the result is a sum), weights stay symmetric with a
zero diagonal, and the classical capacity for random patterns recalled
almost without error is ``N / (2 ln N)`` (Amit, Gutfreund & Sompolinsky;
McEliece et al. 1987).

Why the ``1/N`` factor: it keeps the couplings of order ``k/N`` whatever the
size, so fields (and energies) of networks of different sizes are comparable
and the quantised (``int8``) scale stays meaningful.  Why a zero diagonal:
self-couplings ``w_ii = k/N`` would add the same constant to every unit's
field in the direction of its current spin, stabilising spurious states.

This is the paper's main-text rule for HopSupSup (``Ψ += z zᵀ / d``, REFERENCE.md
§2.8), here with the diagonal removed.
"""

from __future__ import annotations

import numpy as np

from .base import LearningRule, _log_capacity

__all__ = ["HebbianRule"]


class HebbianRule(LearningRule):
    """Outer-product (Hebbian) learning with a zero diagonal.

    Each pattern ``x`` adds ``x_i x_j / N`` to every off-diagonal coupling.

    Examples
    --------
    >>> rule = HebbianRule()
    >>> w = np.zeros((3, 3))
    >>> rule.store(w, np.array([[1, 1, -1], [1, -1, 1]], np.int8))
    >>> np.round(w * 3).astype(int)
    array([[ 0,  0,  0],
           [ 0,  0, -2],
           [ 0, -2,  0]])
    >>> round(rule.capacity(1000), 1)
    72.4
    """

    rule_id = "hebbian"

    def _update(self, weights: np.ndarray, patterns: np.ndarray) -> None:
        from . import _kernels  # Numba (and LLVM) load on first use, not on import
        _kernels.hebbian_update(weights, patterns, 1.0 / weights.shape[0])

    def capacity(self, n: int) -> float:
        """``n / (2 ln n)``."""
        return n / (2.0 * _log_capacity(n))
