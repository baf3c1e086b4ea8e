"""The Storkey (1997) rule, exact form.

For each new pattern ``x`` (``N`` units)::

    w_ij += (1/N) (x_i x_j - x_i h_ji - h_ij x_j),    h_ij = Σ_{k≠i,j} w_ik x_k

with a zero diagonal.  The rule is local and incremental like Hebb's, but the
``h`` terms subtract the part of the new pattern the network already
predicts, which raises the capacity to about ``N / sqrt(2 ln N)`` and widens
the basins of attraction.  Unlike Hebb's rule the result depends on the
storage order.

Cost: ``O(N²)`` per pattern.  The full field ``h = W x`` is computed once with
BLAS; the kernel then removes the excluded ``i`` and ``j`` terms per pair
(``h_ij = h_i - w_ii x_i - w_ij x_j``) instead of re-summing ``N`` terms per pair.
"""

from __future__ import annotations

import math

import numpy as np

from .base import LearningRule, _field, _log_capacity

__all__ = ["StorkeyRule"]


class StorkeyRule(LearningRule):
    """Storkey's 1997 palimpsest rule with the field that excludes units ``i`` and ``j``.

    Examples
    --------
    >>> rule = StorkeyRule()
    >>> w = np.zeros((4, 4))
    >>> x = np.array([1, -1, 1, 1], np.int8)
    >>> rule.store(w, x)              # from zeros, the first pattern is Hebbian
    >>> bool(np.allclose(w, (np.outer(x, x) - np.eye(4)) / 4))
    True
    >>> round(rule.capacity(2048), 1)
    524.5
    """

    rule_id = "storkey"

    def _update(self, weights: np.ndarray, patterns: np.ndarray) -> None:
        from . import _kernels  # Numba (and LLVM) load on first use, not on import
        inv_n = 1.0 / weights.shape[0]
        for x in patterns:  # incremental: each pattern sees the weights left by the previous one
            _kernels.storkey_update(weights, x, _field(weights, x), inv_n)

    def capacity(self, n: int) -> float:
        """``n / sqrt(2 ln n)``."""
        return n / math.sqrt(2.0 * _log_capacity(n))
