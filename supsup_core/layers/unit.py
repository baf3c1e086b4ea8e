"""Unit masks: the reference's non-affine, batch-statistics BatchNorm whose scale is the mask.

``y = m * (h - mean_B(h)) / sqrt(var_B(h) + 1e-5)`` with statistics of the
current batch at train *and* test time (``affine=False``,
``track_running_stats=False``) and ``m = 1[u >= 0]`` per unit (REFERENCE §2.8).
Scores start at zero, so a new task's mask starts all-on.

Examples
--------
>>> import torch
>>> layer = UnitMask(3)
>>> y = layer(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), mask=torch.tensor([1.0, 1.0, 0.0]))
>>> y[:, 0].round(decimals=3), bool((y[:, 2] == 0).all())
(tensor([-1.,  1.]), True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import MaskedLayer

__all__ = ["UnitMask"]


class UnitMask(MaskedLayer):
    """Per-unit mask applied to batch-normalised pre-activations of ``units`` features.

    Parameters
    ----------
    units : int
        Number of features ``d``; one task's mask has shape ``(d,)``.
    eps : float
        Added to the batch variance (1e-5, PyTorch's and the reference's default).
    """

    def __init__(self, units: int, eps: float = 1e-5):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ConfigError("units", "a positive integer", repr(units))
        super().__init__((units,), units, mask_mode="threshold")
        self.eps = float(eps)

    def init_scores(self, generator: torch.Generator) -> torch.Tensor:
        """Zeros, as the reference: ``1[0 >= 0]`` makes a new task start with every unit on."""
        return torch.zeros(self.mask_shape, dtype=torch.float32)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``(B, units)`` with ``B >= 2`` (batch statistics); returns ``(B, units)``."""
        if x.ndim != 2 or x.shape[1] != self.mask_shape[0] or x.shape[0] < 2:
            raise ConfigError(
                "x",
                f"a batch of at least 2 rows of {self.mask_shape[0]} features (batch statistics)",
                f"shape {tuple(x.shape)}",
            )
        m = mask if mask is not None else self.effective_mask()
        normed = F.batch_norm(x, None, None, training=True, momentum=0.0, eps=self.eps)  # (B, units)
        return normed * m

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"units={self.mask_shape[0]}, eps={self.eps}"
