"""Recall: how a cue evolves into a stored pattern.

- :mod:`~hopfield_masks.recall.energy`: energy, local field and energy gradient on plain arrays;
- :mod:`~hopfield_masks.recall.dynamics`: synchronous / asynchronous loops and :class:`RecallResult`;
- guided recall (an external objective steering the dynamics) is exported below.
"""

from __future__ import annotations

from .dynamics import RecallResult, async_sweep, recall, recall_async, recall_sync
from .energy import energy_gradient, local_field

# The function ``energy`` is deliberately NOT re-exported: it would shadow the submodule
# ``hopfield_masks.recall.energy`` (breaking ``mock.patch`` paths); call ``recall.energy.energy``.

__all__ = [
    "RecallResult",
    "async_sweep",
    "recall",
    "recall_async",
    "recall_sync",
    "energy_gradient",
    "local_field",
]

# guided recall exports below
from .guidance import FieldGuidance, Guidance, HammingGuidance, guidance_gradient, validate_guidance  # noqa: E402
from .guided import (  # noqa: E402
    BIAS_PER_RMS,
    RAMPS,
    EnergyLandscape,
    GuidedRecallResult,
    NetworkLandscape,
    as_landscape,
    guided_dynamics,
    score_descent,
)

__all__ += [
    "Guidance",
    "HammingGuidance",
    "FieldGuidance",
    "guidance_gradient",
    "validate_guidance",
    "EnergyLandscape",
    "NetworkLandscape",
    "GuidedRecallResult",
    "RAMPS",
    "BIAS_PER_RMS",
    "as_landscape",
    "guided_dynamics",
    "score_descent",
]
