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

import numpy as np
import torch

from .errors import ConfigError
from .validate import check_float

__all__ = ["ThresholdMask", "TopKMask", "threshold_mask", "topk_mask", "kept_count", "er_density", "select_smallest", "topk_keep",
           "bucket_counts_reference"]


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


_KERNEL_FROM = 1 << 16  # entries from which a CPU selection runs the Numba kernels (smaller: kthvalue)
_BUCKET_SHIFT = 19  # a bucket is the top 13 bits of a non-negative float32: sign (always 0), exponent, 4 mantissa bits
_BUCKETS = 1 << (32 - 1 - _BUCKET_SHIFT)


def _kernel_blocks(n: int) -> int:
    """Blocks the selection kernels split ``n`` entries into (fixed by ``n``: results never depend on threads)."""
    return max(1, min(8, n >> 17))


def bucket_counts_reference(values: np.ndarray) -> np.ndarray:
    """NumPy reference of the counting kernel: how many of the non-negative float32 ``values`` fall in each bucket
    of their top 13 bits (``(4096,)`` int64; -0.0 counts as +0.0)."""
    return np.bincount((values.view(np.int32) >> _BUCKET_SHIFT) & (_BUCKETS - 1), minlength=_BUCKETS).astype(np.int64)


def _select_on_cpu(values: np.ndarray, rank: int) -> tuple[np.float32, int, int]:
    """The ``rank``-th smallest of non-negative float32 ``values``, how many values are smaller, how many equal it.

    Three linear passes (the kernels of :mod:`supsup_core._kernels`): count per bucket, gather the bucket
    holding the answer, then a partial sort of that bucket only.
    """
    from . import _kernels  # Numba (and LLVM) load on first use, never for threshold masks

    bits = values.view(np.int32)
    nblocks = _kernel_blocks(values.size)
    counts = np.zeros((nblocks, _BUCKETS), dtype=np.int64)
    _kernels.bucket_counts_kernel(bits, counts)
    cumulative = np.cumsum(counts.sum(axis=0))  # entries in buckets up to each one
    bucket = int(np.searchsorted(cumulative, rank))  # the first bucket reaching the rank
    below = int(cumulative[bucket - 1]) if bucket else 0
    per_block = counts[:, bucket]
    offsets = np.concatenate([[0], np.cumsum(per_block)[:-1]]).astype(np.int64)
    window = np.empty(int(per_block.sum()), dtype=np.float32)
    _kernels.gather_bucket_kernel(values, bits, bucket, offsets, window)
    value = np.partition(window, rank - below - 1)[rank - below - 1]
    return value, below + int(np.count_nonzero(window < value)), int(np.count_nonzero(window == value))


def select_smallest(flat: torch.Tensor, rank: int) -> torch.Tensor:
    """The ``rank``-th smallest (1-based) of the non-negative float32 ``flat``: ``torch.kthvalue(flat, rank).values``.

    On CPU and for large inputs through two parallel passes and a small sort (:func:`_select_on_cpu`):
    non-negative floats order like their bit patterns, so a histogram of the top 13 bits finds the bucket
    holding the answer and only that bucket is sorted.  The value is exactly ``kthvalue``'s.

    >>> x = torch.rand(100_000, generator=torch.Generator().manual_seed(0))
    >>> bool(select_smallest(x, 777) == torch.kthvalue(x, 777).values)
    True
    """
    if not _uses_kernels(flat):
        source = flat.cpu() if flat.device.type == "mps" else flat  # MPS has no kthvalue
        return torch.kthvalue(source, rank).values.to(flat.device)
    values = np.ascontiguousarray(flat.detach().reshape(-1).numpy())
    if not values.min() >= 0:  # also refuses NaN: the buckets follow the order of non-negative values only
        raise ConfigError("flat", "non-negative values", f"minimum {values.min()}")
    return torch.tensor(_select_on_cpu(values, rank)[0])


def _uses_kernels(flat: torch.Tensor) -> bool:
    return flat.device.type == "cpu" and flat.dtype == torch.float32 and flat.numel() >= _KERNEL_FROM


def _topk_threshold(flat: torch.Tensor, n_drop: int) -> tuple[torch.Tensor, int, int]:
    """The ``n_drop``-th smallest of the magnitudes ``flat`` (``|scores|``), how many are smaller, how many equal it."""
    if _uses_kernels(flat):
        threshold, less, equal = _select_on_cpu(np.ascontiguousarray(flat.detach().reshape(-1).numpy()), n_drop)
        return torch.tensor(threshold), less, equal
    t = torch.kthvalue(flat.cpu() if flat.device.type == "mps" else flat, n_drop).values.to(flat.device)
    less = int(torch.count_nonzero(flat < t))
    return t, less, flat.numel() - less - int(torch.count_nonzero(flat > t))


def topk_keep(magnitudes: torch.Tensor, density: float) -> torch.Tensor:
    """Bool tensor shaped like ``magnitudes``: its ``kept_count(n, density)`` largest entries (no gradient).

    The entries above the ``n - keep``-th smallest value ``t`` (:func:`select_smallest`), plus, when
    several entries equal ``t``, the later-indexed of those: a stable ascending sort's choice (its
    ``n - keep`` first entries are dropped), without sorting.
    """
    flat = magnitudes.reshape(-1)  # (n,)
    n_drop = flat.numel() - kept_count(flat.numel(), density)
    if n_drop == 0:
        return torch.ones_like(magnitudes, dtype=torch.bool)
    t, less, equal = _topk_threshold(flat, n_drop)
    above = flat > t.to(flat.device)
    if equal > 1:  # ties at the threshold: the first (n_drop - less) of them by index are dropped, the rest kept
        ties = torch.nonzero(flat == t.to(flat.device)).flatten()  # ascending indices
        above[ties[n_drop - less :]] = True
    if int(above.sum()) != flat.numel() - n_drop:  # NaN compares false: fewer kept than asked, silently otherwise
        raise ConfigError("scores", "finite scores (NaN ones have no order to keep the largest by)",
                          f"{int(torch.isnan(flat).sum())} NaN of {flat.numel()}")
    return above.view_as(magnitudes)


class TopKMask(torch.autograd.Function):
    """Keep the ``kept_count(n, density)`` largest entries of a (non-negative) magnitude tensor.

    Ties are broken by flat index (a stable sort: the later entry wins among equal
    magnitudes), so the mask is a deterministic function of its input.  Backward is
    straight-through onto the magnitudes; feed it ``scores.abs()`` so autograd applies
    ``sign(scores)``.

    The kept set is found by selection, not sorting (:func:`topk_keep`).
    """

    @staticmethod
    def forward(ctx, magnitudes: torch.Tensor, density: float) -> torch.Tensor:
        """0/1 tensor shaped like ``magnitudes`` keeping its ``kept_count`` largest entries."""
        return topk_keep(magnitudes, density).to(magnitudes.dtype)

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
    density = check_float("density", density, low=0, high=1, low_open=True)
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
    sigma = check_float("sigma", sigma, low=0, low_open=True)
    return min(0.5, sigma * (c_in + c_out) / (c_in * c_out * k_h * k_w))
