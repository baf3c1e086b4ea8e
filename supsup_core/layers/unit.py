"""Unit masks: the reference's non-affine, batch-statistics BatchNorm whose scale is the mask.

``y = m * (h - mean_B(h)) / sqrt(var_B(h) + 1e-5)`` with statistics of the
current batch at train *and* test time (``affine=False``,
``track_running_stats=False``) and ``m = 1[u >= 0]`` per unit (REFERENCE §2.8).
Scores start at zero, so a new task's mask starts all-on.  A unit is a feature of
a ``(B, units)`` input or a channel of a ``(B, units, *spatial)`` one (statistics
over the batch and the spatial positions, as ``BatchNorm1d/2d/3d``).

Examples
--------
>>> import torch
>>> layer = UnitMask(3)
>>> y = layer(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), mask=torch.tensor([1.0, 1.0, 0.0]))
>>> y[:, 0].round(decimals=3), bool((y[:, 2] == 0).all())
(tensor([-1.,  1.]), True)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .base import MaskedLayer

__all__ = ["UnitMask", "batch_statistics_norm"]


def batch_statistics_norm(x: torch.Tensor, eps: float, n_tasks: int = 1) -> torch.Tensor:
    """Normalise each channel of ``x`` ``(R, C, ...)`` with the statistics of its own batch.

    ``n_tasks > 1``: ``x`` holds ``n_tasks`` batches one after another, each normalised with
    its own statistics (one ``batch_norm`` over ``n_tasks * C`` channels).
    """
    if n_tasks == 1:
        return F.batch_norm(x, None, None, training=True, momentum=0.0, eps=eps)
    batch = x.shape[0] // n_tasks
    h = x.reshape(n_tasks, batch, *x.shape[1:])  # (K, B, C, ...)
    columns = h.transpose(0, 1).reshape(batch, n_tasks * x.shape[1], *x.shape[2:])  # (B, K C, ...): per task and unit
    normed = F.batch_norm(columns, None, None, training=True, momentum=0.0, eps=eps)
    normed = normed.unflatten(1, (n_tasks, x.shape[1])).transpose(0, 1)  # (K, B, C, ...)
    return normed.reshape(x.shape)


def _check_input(x: torch.Tensor, units: int) -> None:
    samples = x.shape[0] * math.prod(x.shape[2:]) if x.ndim >= 2 else 0
    if x.ndim < 2 or x.shape[1] != units or samples < 2:
        raise ConfigError(
            "x", f"a batch (B, {units}, ...) with at least 2 values per unit (batch statistics)", f"shape {tuple(x.shape)}"
        )


class UnitMask(MaskedLayer):
    """Per-unit mask applied to batch-normalised pre-activations of ``units`` features or channels.

    Parameters
    ----------
    units : int
        Number of features ``d``; one task's mask has shape ``(d,)``.
    eps : float
        Added to the batch variance (1e-5, PyTorch's and the reference's default).
    weight, bias : torch.Tensor, optional
        A frozen affine transform applied before the mask (a pretrained BatchNorm's); None as the reference.
    """

    def __init__(self, units: int, eps: float = 1e-5, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ConfigError("units", "a positive integer", repr(units))
        super().__init__((units,), units, mask_mode="threshold", score_init="zeros")
        self.eps = float(eps)
        for name, value in (("weight", weight), ("bias", bias)):
            if value is not None and (not isinstance(value, torch.Tensor) or tuple(value.shape) != (units,)):
                raise ConfigError(name, f"None or a tensor of shape ({units},)", getattr(value, "shape", type(value).__name__))
            self.register_buffer(name, None if value is None else value.detach().clone().to(torch.float32))
        if (self.weight is None) != (self.bias is None):
            raise ConfigError("bias", "given together with weight", "one of the two")

    def _normed(self, x: torch.Tensor, n_tasks: int = 1) -> torch.Tensor:
        normed = batch_statistics_norm(x, self.eps, n_tasks)
        if self.weight is None:
            return normed
        spatial = (1,) * (x.ndim - 2)
        return normed * self.weight.reshape(-1, *spatial) + self.bias.reshape(-1, *spatial)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``(B, units, ...)`` with at least two values per unit; returns the same shape."""
        _check_input(x, self.mask_shape[0])
        spatial = (1,) * (x.ndim - 2)
        if self._stack is not None:
            n_tasks = self._stack.shape[0]
            normed = self._normed(x, n_tasks)
            m = self._stack.reshape(n_tasks, 1, -1, *spatial)  # (K, 1, units, 1...)
            return (normed.reshape(n_tasks, -1, *x.shape[1:]) * m).reshape(x.shape)
        m = self.forward_mask(mask)
        return self._normed(x) * m.reshape(-1, *spatial)

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"units={self.mask_shape[0]}, eps={self.eps}"
