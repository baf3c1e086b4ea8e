"""Masked and fixed linear layers over a frozen base weight (REFERENCE §2.1: a seeded base has no bias).

A bias, when a pretrained base keeps one, is frozen and never masked.

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

__all__ = ["MaskedLinear", "FixedLinear", "stacked_linear", "BMM_NAIVE_BELOW"]

# ATen's CPU bmm multiplies with a naive triple loop (other rounding than the GEMM of
# F.linear) when rows * inner * cols of one product is below this (bmm_out_or_baddbmm_).
BMM_NAIVE_BELOW = 400


def _check_weight(weight: object, ndim: int | tuple[int, ...], name: str = "weight") -> torch.Tensor:
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if not isinstance(weight, torch.Tensor) or weight.ndim not in dims or not weight.is_floating_point():
        expected = f"a {' or '.join(map(str, dims))}-D floating torch.Tensor"
        raise ConfigError(name, expected, getattr(weight, "shape", type(weight).__name__))
    return weight.detach().clone()


def _check_bias(bias: object, size: int) -> torch.Tensor | None:
    if bias is None:
        return None
    if not isinstance(bias, torch.Tensor) or tuple(bias.shape) != (size,) or not bias.is_floating_point():
        raise ConfigError("bias", f"None or a floating tensor of shape ({size},)", getattr(bias, "shape", type(bias).__name__))
    return bias.detach().clone()


class _BatchedLinear(torch.autograd.Function):
    """``y[k] = h[k] @ w[k]^T`` by ``torch.bmm``, differentiated with the products ``F.linear``'s autograd uses.

    ``F.linear(x, W)`` is ``mm(x, W^T)``, and ``mm``'s backward computes the weight's gradient
    as ``grad^T @ x`` and the input's as ``grad @ W``.  bmm's own backward would give
    ``(x^T @ grad)^T`` instead: the same values in a transposed layout, which makes every
    later elementwise op and the optimiser read the score gradients with strides.
    """

    @staticmethod
    def forward(ctx, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``h`` ``(K, B, in)``, ``w`` ``(K, out, in)`` -> ``(K, B, out)``."""
        ctx.save_for_backward(h, w)
        return torch.bmm(h, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        """``grad @ w`` for ``h`` and ``grad^T @ h`` for ``w`` (contiguous ``(K, out, in)``), each only when needed."""
        h, w = ctx.saved_tensors
        grad_h = torch.bmm(grad, w) if ctx.needs_input_grad[0] else None  # (K, B, in)
        grad_w = torch.bmm(grad.transpose(1, 2), h) if ctx.needs_input_grad[1] else None  # (K, out, in)
        return grad_h, grad_w


def stacked_linear(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None, per_task: bool = False) -> torch.Tensor:
    """K tasks' linear layers at once: rows ``k B .. (k+1) B - 1`` of ``x`` go through ``w[k]``.

    ``x`` is ``(K B, ..., in)`` (the K tasks' batches one after another), ``w`` ``(K, out, in)``.
    On CPU the products round exactly as ``F.linear`` on each task's rows (tiny products, where
    bmm would switch to a naive loop, and ``per_task=True`` call ``F.linear`` per task).
    """
    n_tasks = w.shape[0]
    lead = x.shape[:-1]
    h = x.reshape(n_tasks, -1, x.shape[-1])  # (K, rows, in)
    naive = h.device.type == "cpu" and h.shape[1] * h.shape[2] * w.shape[1] < BMM_NAIVE_BELOW
    if per_task or naive or n_tasks == 1:
        out = torch.stack([F.linear(h[i], w[i]) for i in range(n_tasks)])  # the model's own op per task
    else:
        out = _BatchedLinear.apply(h, w)  # (K, rows, out)
    out = out.reshape(*lead, w.shape[1])
    return out if bias is None else out + bias


class MaskedLinear(MaskedLayer):
    """``y = x (W * M)^T (+ b)`` with a per-task weight mask ``M`` over a frozen base weight.

    Parameters
    ----------
    weight : torch.Tensor
        Base weight ``(out_features, in_features)``; stored as a buffer, never trained.
    bias : torch.Tensor, optional
        A frozen bias (pretrained bases); never masked.
    mask_mode, density, score_init
        See :class:`~supsup_core.layers.base.MaskedLayer`.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None = None,
        *,
        mask_mode: str = "threshold",
        density: float = 0.5,
        score_init: str = "kaiming-uniform",
    ):
        weight = _check_weight(weight, 2)
        super().__init__(tuple(weight.shape), weight.shape[1], mask_mode=mask_mode, density=density, score_init=score_init)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", _check_bias(bias, weight.shape[0]))
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` is ``(B, ..., in_features)``; returns ``(B, ..., out_features)``."""
        if self._stack is not None:
            return stacked_linear(x, self.weight * self._stack, self.bias)
        return F.linear(x, self.masked_weight(mask), self.bias)

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"mask_mode={self.mask_mode!r}")


class FixedLinear(nn.Module):
    """An unmasked frozen linear layer (the weight layers of a unit-mask model such as BNNet): ``y = x W^T (+ b)``."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        weight = _check_weight(weight, 2)
        self.register_buffer("weight", weight)
        self.register_buffer("bias", _check_bias(bias, weight.shape[0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` is ``(B, ..., in_features)``; returns ``(B, ..., out_features)``."""
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, bias={self.bias is not None}"
