"""Learned ±1 couplings: a reservoir whose every stored bit is a coupling learnt as ±1.

- :mod:`~hopfield_masks.binary.learning`: the rule (:class:`PerceptronRule`, SBPI with margins) and the
  validated wrappers around its Numba kernels (:func:`fit_couplings`, :func:`recall_couplings`);
- :mod:`~hopfield_masks.binary.reservoir`: :class:`BinaryReservoir`, blocks of mask units recalled by key;
- :mod:`~hopfield_masks.binary.format`: its HDF5 layout, read as untrusted input;
- :mod:`~hopfield_masks.binary.reference`: plain NumPy versions of the kernels, for the tests.
"""

from .learning import FitResult, PerceptronRule, fit_couplings, recall_couplings
from .reservoir import KIND, BinaryReservoir, binary_size_for_budget

__all__ = ["BinaryReservoir", "PerceptronRule", "FitResult", "fit_couplings", "recall_couplings",
           "binary_size_for_budget", "KIND"]
