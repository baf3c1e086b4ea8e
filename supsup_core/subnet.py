"""Binary masks from real-valued scores, with straight-through gradients.

Two ways to turn a score tensor ``S`` into a {0, 1} mask ``M`` (REFERENCE §2.2):

- **threshold** (``FastMultitaskMaskConv``): ``M = 1[S >= 0]``; the backward pass is
  the identity, ``dL/dS = dL/dM``;
- **top-k** (edge-popup, ``MultitaskMaskConv``): keep the ``n - floor((1 - rho) n)``
  largest ``|S|``; the backward pass copies ``dL/dM`` onto ``|S|`` and autograd
  carries it through the absolute value, so ``dL/dS = sign(S) * dL/dM``.

:func:`er_density` is the reference's per-layer Erdős–Rényi kept fraction.

Examples
--------
>>> import torch
>>> s = torch.tensor([-0.5, 0.0, 0.2, -0.1], requires_grad=True)
>>> m = threshold_mask(s)
>>> m
tensor([0., 1., 1., 0.], grad_fn=<ThresholdMaskBackward>)
>>> (m * torch.tensor([1., 2., 3., 4.])).sum().backward()
>>> s.grad
tensor([1., 2., 3., 4.])
>>> topk_mask(torch.tensor([-0.5, 0.05, 0.2, -0.1]), 0.5)
tensor([1., 0., 1., 0.])
"""

from __future__ import annotations

import math

import torch

from .errors import ConfigError

__all__ = ["ThresholdMask", "TopKMask", "threshold_mask", "topk_mask", "kept_count", "er_density"]


class ThresholdMask(torch.autograd.Function):
    """``M = 1[S >= 0]`` in the scores' dtype; straight-through (identity) backward."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor) -> torch.Tensor:
        """``1[scores >= 0]`` in the scores' dtype."""
        # ">= 0" (not "> 0") so a zero score means "on": BNNet's unit scores start at 0 = all-on
        return (scores >= 0).to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_mask: torch.Tensor) -> torch.Tensor:
        """Identity: the mask's gradient is the scores' gradient."""
        return grad_mask


def kept_count(n: int, density: float) -> int:
    """Entries a top-k mask keeps out of ``n``: ``n - floor((1 - density) * n)`` as the reference.

    Examples
    --------
    >>> kept_count(10, 0.25), kept_count(7, 0.5), kept_count(0, 0.5)
    (3, 4, 0)
    """
    return n - math.floor((1.0 - density) * n)


class TopKMask(torch.autograd.Function):
    """Keep the ``kept_count(n, density)`` largest entries of a (non-negative) magnitude tensor.

    Ties are broken by flat index (a stable sort: the later entry wins among equal
    magnitudes), so the mask is a deterministic function of its input.  Backward is
    straight-through onto the magnitudes; feed it ``scores.abs()`` so autograd applies
    ``sign(scores)``.
    """

    @staticmethod
    def forward(ctx, magnitudes: torch.Tensor, density: float) -> torch.Tensor:
        """0/1 tensor shaped like ``magnitudes`` keeping its ``kept_count`` largest entries."""
        flat = magnitudes.reshape(-1)  # (n,)
        n_drop = flat.numel() - kept_count(flat.numel(), density)
        if n_drop == 0:
            return torch.ones_like(magnitudes)
        # The n_drop-th smallest value in linear time; when it is unique, "above it" is exactly the kept set.
        threshold = torch.kthvalue(flat.cpu() if flat.device.type == "mps" else flat, n_drop).values.to(flat.device)
        out = (flat > threshold).to(flat.dtype)
        if int(out.sum()) == flat.numel() - n_drop:
            return out.view_as(magnitudes)
        order = torch.argsort(flat, stable=True)  # ties at the threshold: ascending, equal values keep index order
        out = torch.ones_like(flat)
        out[order[:n_drop]] = 0
        return out.view_as(magnitudes)

    @staticmethod
    def backward(ctx, grad_mask: torch.Tensor):
        """Straight-through onto the magnitudes; no gradient for ``density``."""
        return grad_mask, None


def threshold_mask(scores: torch.Tensor) -> torch.Tensor:
    """Threshold mask ``1[scores >= 0]`` with an identity straight-through gradient."""
    return ThresholdMask.apply(scores)


def topk_mask(scores: torch.Tensor, density: float) -> torch.Tensor:
    """Top-k mask on ``|scores|`` keeping ``kept_count(n, density)`` entries; STE through the abs.

    Raises
    ------
    ConfigError
        ``density`` is not in (0, 1].
    """
    if isinstance(density, bool) or not isinstance(density, (int, float)) or not 0 < density <= 1:
        raise ConfigError("density", "a number in (0, 1]", repr(density))
    return TopKMask.apply(scores.abs(), float(density))


def er_density(c_in: int, c_out: int, k_h: int = 1, k_w: int = 1, *, sigma: float) -> float:
    """Erdős–Rényi kept fraction ``min(0.5, sigma (c_in + c_out) / (c_in c_out k_h k_w))``.

    The numerator has no kernel-size term: this is the reference's plain ER, not ERK.

    Raises
    ------
    ConfigError
        A size is not a positive integer or ``sigma`` is not positive.

    Examples
    --------
    >>> er_density(100, 100, sigma=1.0)
    0.02
    >>> er_density(16, 32, 3, 3, sigma=8.0)
    0.08333333333333333
    >>> er_density(4, 4, sigma=8.0)  # capped at half
    0.5
    """
    for name, value in (("c_in", c_in), ("c_out", c_out), ("k_h", k_h), ("k_w", k_w)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(name, "a positive integer", repr(value))
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ConfigError("sigma", "a positive number", repr(sigma))
    return min(0.5, sigma * (c_in + c_out) / (c_in * c_out * k_h * k_w))
