"""Masked 1-D, 2-D and 3-D convolutions over a frozen base kernel, and their unmasked frozen twin.

The geometry (stride, padding, dilation, groups, padding mode) is the wrapped
``nn.ConvNd``'s; a bias, when a pretrained base keeps one, is frozen and never masked.

Examples
--------
>>> import torch
>>> layer = MaskedConv2d(torch.ones(2, 1, 3, 3), padding=1)
>>> layer(torch.ones(1, 1, 4, 4), mask=torch.ones(2, 1, 3, 3)).shape
torch.Size([1, 2, 4, 4])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..validate import is_int
from .base import MaskedLayer
from .linear import _check_bias, _check_weight

__all__ = ["ConvGeometry", "MaskedConv", "MaskedConv1d", "MaskedConv2d", "MaskedConv3d", "FixedConv", "PADDING_MODES"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
#: ``padding_mode`` values of ``nn.ConvNd``.
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _tuple(name: str, value: object, dims: int, low: int) -> tuple[int, ...]:
    values = (value,) * dims if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(values, (tuple, list)) or len(values) != dims
            or any(not is_int(v) or v < low for v in values)):
        raise ConfigError(name, f"an integer >= {low} or a tuple of {dims}", repr(value))
    return tuple(int(v) for v in values)


class ConvGeometry:
    """Stride, padding, dilation, groups and padding mode of an N-D convolution, validated once.

    ``padding`` may be an int, a tuple, ``"valid"`` or ``"same"`` (as ``nn.ConvNd``).
    """

    def __init__(self, dims: int, kernel: tuple[int, ...], *, stride=1, padding=0, dilation=1, groups=1,
                 padding_mode: str = "zeros"):
        if dims not in _CONV:
            raise ConfigError("dims", "1, 2 or 3", repr(dims))
        self.dims = dims
        self.stride = _tuple("stride", stride, dims, 1)
        self.dilation = _tuple("dilation", dilation, dims, 1)
        if padding in ("valid", "same"):
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ConfigError("padding", "'same' only with stride 1 (as nn.ConvNd)", repr(padding))
            self.padding: tuple[int, ...] | str = padding
        else:
            self.padding = _tuple("padding", padding, dims, 0)
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
            raise ConfigError("groups", "an integer >= 1", repr(groups))
        self.groups = groups
        if padding_mode not in PADDING_MODES:
            raise ConfigError("padding_mode", f"one of {', '.join(PADDING_MODES)}", repr(padding_mode))
        self.padding_mode = padding_mode
        # what F.pad takes for a non-zero padding mode: per dimension, last first, both sides
        if padding_mode != "zeros" and self.padding not in ("valid", "same"):
            self._pad = tuple(p for size in reversed(self.padding) for p in (size, size))
        elif padding_mode != "zeros" and self.padding == "same":
            pads = []
            for d, k in zip(reversed(self.dilation), reversed(kernel)):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            self._pad = tuple(pads)
        else:
            self._pad = None

    def __call__(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int | None = None) -> torch.Tensor:
        """The convolution of ``x`` with ``weight`` (``groups`` overrides the layer's, for task-stacked kernels)."""
        conv = _CONV[self.dims]
        groups = self.groups if groups is None else groups
        if self._pad is not None:
            x = F.pad(x, self._pad, mode=self.padding_mode)
            return conv(x, weight, bias, self.stride, 0, self.dilation, groups)
        return conv(x, weight, bias, self.stride, self.padding, self.dilation, groups)

    def describe(self) -> str:
        """The geometry as ``repr`` shows it."""
        return (f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, groups={self.groups}"
                + (f", padding_mode={self.padding_mode!r}" if self.padding_mode != "zeros" else ""))


class MaskedConv(MaskedLayer):
    """``y = conv(x, W * M) (+ b)`` with a per-task kernel mask ``M`` over a frozen base kernel.

    Parameters
    ----------
    weight : torch.Tensor
        Base kernel ``(out_channels, in_channels / groups, *kernel)``; a buffer, never trained.
        Its number of dimensions sets the convolution's (3-D weight: ``conv1d`` ...).
    bias : torch.Tensor, optional
        A frozen bias (pretrained bases); never masked.
    stride, padding, dilation, groups, padding_mode
        As ``nn.ConvNd``.
    mask_mode, density, score_init
        See :class:`~supsup_core.layers.base.MaskedLayer`.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        mask_mode: str = "threshold",
        density: float = 0.5,
        score_init: str = "kaiming-uniform",
    ):
        weight = _check_weight(weight, (3, 4, 5))
        kernel = tuple(weight.shape[2:])
        geometry = ConvGeometry(weight.ndim - 2, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups,
                                padding_mode=padding_mode)
        fan_in = weight.shape[1] * math.prod(kernel)
        super().__init__(tuple(weight.shape), fan_in, mask_mode=mask_mode, density=density, score_init=score_init)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", _check_bias(bias, weight.shape[0]))
        self.geometry = geometry

    @property
    def stride(self) -> tuple[int, ...]:
        """The convolution's stride."""
        return self.geometry.stride

    @property
    def padding(self) -> tuple[int, ...] | str:
        """The convolution's padding."""
        return self.geometry.padding

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``(B, C_in, *spatial)``; returns ``(B, C_out, *spatial')``."""
        if self._stack is not None:
            return self._forward_stacked(x)
        return self.geometry(x, self.masked_weight(mask), self.bias)

    def _forward_stacked(self, x: torch.Tensor) -> torch.Tensor:
        """K tasks' kernels at once as one grouped convolution: the K tasks' batches become channel groups."""
        w = self.weight * self._stack  # (K, O, C/g, *kernel)
        n_tasks = w.shape[0]
        batch = x.shape[0] // n_tasks
        h = x.reshape(n_tasks, batch, *x.shape[1:])  # (K, B, C, *spatial)
        grouped = h.transpose(0, 1).reshape(batch, n_tasks * x.shape[1], *x.shape[2:])  # (B, K C, *spatial)
        bias = None if self.bias is None else self.bias.repeat(n_tasks)
        out = self.geometry(grouped, w.flatten(0, 1), bias, groups=n_tasks * self.geometry.groups)  # (B, K O, *spatial')
        out = out.unflatten(1, (n_tasks, w.shape[1])).transpose(0, 1)  # (K, B, O, *spatial')
        return out.reshape(n_tasks * batch, *out.shape[2:])

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        o, i, *kernel = self.mask_shape
        return f"{i * self.geometry.groups}, {o}, kernel_size={tuple(kernel)}, {self.geometry.describe()}, bias={self.bias is not None}"


class MaskedConv1d(MaskedConv):
    """A :class:`MaskedConv` whose base kernel is ``(out, in / groups, k)``."""


class MaskedConv2d(MaskedConv):
    """A :class:`MaskedConv` whose base kernel is ``(out, in / groups, k_h, k_w)``."""


class MaskedConv3d(MaskedConv):
    """A :class:`MaskedConv` whose base kernel is ``(out, in / groups, k_d, k_h, k_w)``."""


class FixedConv(nn.Module):
    """An unmasked frozen convolution (the kernels of a unit-mask model)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None, *, stride=1, padding=0, dilation=1,
                 groups: int = 1, padding_mode: str = "zeros"):
        super().__init__()
        weight = _check_weight(weight, (3, 4, 5))
        self.register_buffer("weight", weight)
        self.register_buffer("bias", _check_bias(bias, weight.shape[0]))
        self.geometry = ConvGeometry(weight.ndim - 2, tuple(weight.shape[2:]), stride=stride, padding=padding,
                                     dilation=dilation, groups=groups, padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(B, C_in, *spatial)``."""
        return self.geometry(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        o, i, *kernel = self.weight.shape
        return f"{i * self.geometry.groups}, {o}, kernel_size={tuple(kernel)}, {self.geometry.describe()}"
