"""Masked and fixed linear layers over a frozen base weight (no bias, REFERENCE §2.1).

Examples
--------
>>> import torch
>>> w = torch.tensor([[1.0, -1.0], [2.0, 0.5]])
>>> layer = MaskedLinear(w)
>>> layer(torch.ones(1, 2), mask=torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
tensor([[1.0000, 2.5000]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import MaskedLayer

__all__ = ["MaskedLinear", "FixedLinear"]


def _check_weight(weight: object, ndim: int) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor) or weight.ndim != ndim or not weight.is_floating_point():
        raise ConfigError("weight", f"a {ndim}-D floating torch.Tensor", getattr(weight, "shape", type(weight).__name__))
    return weight.detach().clone()


class MaskedLinear(MaskedLayer):
    """``y = x (W * M)^T`` with a per-task weight mask ``M`` over a frozen base weight.

    Parameters
    ----------
    weight : torch.Tensor
        Base weight ``(out_features, in_features)``; stored as a buffer, never trained.
    mask_mode, density
        See :class:`~supsup_core.layers.base.MaskedLayer`.
    """

    def __init__(self, weight: torch.Tensor, *, mask_mode: str = "threshold", density: float = 0.5):
        weight = _check_weight(weight, 2)
        super().__init__(tuple(weight.shape), weight.shape[1], mask_mode=mask_mode, density=density)
        self.register_buffer("weight", weight)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``(B, in_features)``; returns ``(B, out_features)``."""
        return F.linear(x, self.masked_weight(mask))

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"in_features={self.in_features}, out_features={self.out_features}, mask_mode={self.mask_mode!r}"


class FixedLinear(nn.Module):
    """An unmasked frozen linear layer (BNNet's weight layers): ``y = x W^T``, no bias."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.register_buffer("weight", _check_weight(weight, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(B, in_features)``; returns ``(B, out_features)``."""
        return F.linear(x, self.weight)

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}"
