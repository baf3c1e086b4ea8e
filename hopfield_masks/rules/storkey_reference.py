"""The reference code's simplified Storkey variant (REFERENCE.md §2.8), kept for parity.

For each new pattern ``x`` (``d`` units), starting from ``Ψ = 0``::

    h = Ψ x                                   # the FULL field, self term included
    Ψ += (x xᵀ - I - x hᵀ - h xᵀ) / d

Two differences from :mod:`~hopfield_masks.rules.storkey` (Storkey 1997):
the field is not corrected for the excluded units ``i`` and ``j``, and the
diagonal is never zeroed, so each pattern adds ``-2 x_i h_i / d`` to it (the
``- I`` cancels ``x_i x_i = 1``).  Diagonal entries can become negative, in which case asynchronous
dynamics may occasionally raise the energy; use ``storkey`` unless you need
bit-level agreement with masks stored by the reference code.
"""

from __future__ import annotations

import math

import numpy as np

from .base import LearningRule, _field, _log_capacity

__all__ = ["StorkeyReferenceRule"]


class StorkeyReferenceRule(LearningRule):
    """Storkey-type rule exactly as written in the reference implementation (full field, diagonal kept).

    Examples
    --------
    >>> rule = StorkeyReferenceRule()
    >>> w = np.zeros((3, 3))
    >>> x = np.array([1, -1, 1], np.int8)
    >>> rule.store(w, x)
    >>> bool(np.allclose(w, (np.outer(x, x) - np.eye(3)) / 3))
    True
    """

    rule_id = "storkey-reference"

    def _update(self, weights: np.ndarray, patterns: np.ndarray) -> None:
        from . import _kernels  # Numba (and LLVM) load on first use, not on import
        inv_d = 1.0 / weights.shape[0]
        for x in patterns:
            _kernels.storkey_reference_update(weights, x, _field(weights, x), inv_d)

    def capacity(self, n: int) -> float:
        """``n / sqrt(2 ln n)`` (quoted for the reference's variant as for Storkey's rule)."""
        return n / math.sqrt(2.0 * _log_capacity(n))
