"""Masked layers: per-task packed masks over a frozen base network, and the layers around them.

- :class:`MaskedLayer` -- the base (storage, scores, selection, contraction);
- :class:`MaskedLinear`, :class:`MaskedConv` (``MaskedConv1d/2d/3d``) -- weight supermasks;
- :class:`UnitMask` -- per-unit masks on batch-normalised activations (BNNet);
- :class:`FixedLinear`, :class:`FixedConv` -- unmasked frozen layers;
- :mod:`.norm` -- per-task (:class:`TaskBatchNorm`), batch-statistics and frozen normalisation.
"""

from .base import MaskedLayer, init_base_weight
from .conv import FixedConv, MaskedConv, MaskedConv1d, MaskedConv2d, MaskedConv3d
from .linear import FixedLinear, MaskedLinear
from .norm import BatchStatNorm, FrozenNorm, TaskBatchNorm
from .unit import UnitMask

__all__ = [
    "MaskedLayer",
    "MaskedLinear",
    "MaskedConv",
    "MaskedConv1d",
    "MaskedConv2d",
    "MaskedConv3d",
    "UnitMask",
    "FixedLinear",
    "FixedConv",
    "TaskBatchNorm",
    "BatchStatNorm",
    "FrozenNorm",
    "init_base_weight",
]
