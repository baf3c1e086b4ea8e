"""Masked layers: per-task packed masks over a frozen random base network.

- :class:`MaskedLayer` -- the base (storage, scores, selection, contraction);
- :class:`MaskedLinear`, :class:`MaskedConv2d` -- weight supermasks;
- :class:`UnitMask` -- per-unit masks on batch-normalised activations (BNNet);
- :class:`FixedLinear` -- an unmasked frozen layer.
"""

from .base import MaskedLayer, init_base_weight
from .conv import MaskedConv2d
from .linear import FixedLinear, MaskedLinear
from .unit import UnitMask

__all__ = ["MaskedLayer", "MaskedLinear", "MaskedConv2d", "UnitMask", "FixedLinear", "init_base_weight"]
