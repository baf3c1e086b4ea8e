"""Masked 2-D convolution over a frozen base kernel (no bias).

Examples
--------
>>> import torch
>>> layer = MaskedConv2d(torch.ones(2, 1, 3, 3), padding=1)
>>> layer(torch.ones(1, 1, 4, 4), mask=torch.ones(2, 1, 3, 3)).shape
torch.Size([1, 2, 4, 4])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import MaskedLayer
from .linear import _check_weight

__all__ = ["MaskedConv2d"]


class MaskedConv2d(MaskedLayer):
    """``y = conv2d(x, W * M)`` with a per-task kernel mask ``M`` over a frozen base kernel.

    Parameters
    ----------
    weight : torch.Tensor
        Base kernel ``(out_channels, in_channels, k_h, k_w)``; a buffer, never trained.
    stride, padding : int
        As :func:`torch.nn.functional.conv2d`.
    mask_mode, density
        See :class:`~supsup_core.layers.base.MaskedLayer`.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        *,
        stride: int = 1,
        padding: int = 0,
        mask_mode: str = "threshold",
        density: float = 0.5,
    ):
        weight = _check_weight(weight, 4)
        for name, value, low in (("stride", stride, 1), ("padding", padding, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(name, f"an integer >= {low}", repr(value))
        fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
        super().__init__(tuple(weight.shape), fan_in, mask_mode=mask_mode, density=density)
        self.register_buffer("weight", weight)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``(B, C_in, H, W)``; returns ``(B, C_out, H', W')``."""
        return F.conv2d(x, self.masked_weight(mask), stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        o, i, kh, kw = self.mask_shape
        return f"{i}, {o}, kernel_size=({kh}, {kw}), stride={self.stride}, padding={self.padding}"
