"""Shared fixtures and Hypothesis profiles.

Profiles: ``dev`` (default, few examples) and ``ci`` (more examples; CI sets
``HYPOTHESIS_PROFILE=ci``).  Both disable the deadline because the first call
of a Numba function includes its compilation.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

try:  # torch is optional here: hopfield_masks' tests must run without it
    import torch
except ImportError:  # pragma: no cover - storage-only environment
    torch = None
if torch is not None:
    # The test models are tiny: one intra-op thread is faster than two fighting over a small, shared machine.
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator (the same numbers in every run)."""
    return np.random.default_rng(12345)
