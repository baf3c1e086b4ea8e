"""Many task inferences at once: one decision per group of images (evaluation at scale).

Evaluating a bank asks thousands of independent questions -- "which task is
this test batch from?", decided by its first image, by the whole batch, or by
every image alone -- and :func:`infer_groups` answers them together.  ``x``
holds the groups' images one group after another and ``sizes`` how many images
each group has (``None``: every image is its own group).  A group's decision is
the one :func:`~supsup_core.inference.infer_task` would take for its images
with ``per="batch"``: the mean objective over the group.

For MLPs (:func:`~supsup_core.inference.supports_rank_one`) one-shot and
rerank take one batched rank-one pass over all images
(:mod:`supsup_core.inference.rank_one`); a group's coefficient gradient is the
mean of its images' rows, since no layer couples the images of a batch.  That
pass reads each mask once per :func:`~supsup_core.inference.rank_one.images_per_pass`
images instead of once per decision, holds a bounded amount of memory, and
needs neither Numba nor a per-image gradient: evaluating 250 FC 1024-1024 tasks
stays in PyTorch.  The float32 products agree with the exact packed contraction
to about 1e-6 relative, so a near-tie between two tasks can resolve the other
way than :func:`~supsup_core.inference.infer_task`'s.  Re-ranking scores each
candidate mask once for every group that ranks it
(:func:`~supsup_core.inference.rerank.rerank_groups`).

Other models and binary search decide group by group through
:func:`~supsup_core.inference.infer_task`, exactly as one call per group would.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import ConfigError
from ..validate import is_int
from ..models import SupSupNet
from .binary import DEFAULT_METHOD, METHODS, infer_task
from .objectives import check_objective
from .oneshot import _check_model
from .rank_one import rank_one_coefficient_gradients, supports_rank_one
from .rerank import rerank_groups

__all__ = ["infer_groups", "check_sizes"]


def check_sizes(sizes: Sequence[int] | None, n_images: int) -> list[int]:
    """The group sizes as a list of positive ints summing to ``n_images`` (``None``: ``n_images`` ones).

    >>> check_sizes([2, 1], 3), check_sizes(None, 2)
    ([2, 1], [1, 1])
    """
    if sizes is None:
        return [1] * n_images
    out = list(sizes)
    if any(not is_int(s) or s < 1 for s in out) or sum(out) != n_images:
        shown = out if len(out) <= 8 else f"{len(out)} sizes summing to {sum(int(s) for s in out)}"
        raise ConfigError("sizes", f"positive group sizes summing to the {n_images} images of x", shown)
    return out


def infer_groups(
    model: SupSupNet,
    x: torch.Tensor,
    sizes: Sequence[int] | None = None,
    method: str = DEFAULT_METHOD,
    objective: str = "H",
    *,
    real_classes: int = 10,
) -> torch.Tensor:
    """One inferred task per group of consecutive images of ``x``: LongTensor ``(G,)`` on CPU.

    Parameters
    ----------
    model : SupSupNet
        A model with at least one finished task.
    x : torch.Tensor
        The images of every group, group after group: ``(B, 1, 28, 28)`` or ``(B, 784)``.
    sizes : sequence of int, optional
        Images per group (positive, summing to ``B``); ``None``: one group per image.
    method, objective, real_classes
        As :func:`~supsup_core.inference.infer_task`.

    Examples
    --------
    >>> import torch
    >>> from supsup_core.config import ModelConfig
    >>> from supsup_core.models import build_model
    >>> model = build_model(ModelConfig(hidden=(6,), output_size=4, in_features=16, image=4))
    >>> for _ in range(3):
    ...     _ = model.add_task(), model.finish_task()
    >>> x = torch.randn(5, 16, generator=torch.Generator().manual_seed(0))
    >>> infer_groups(model, x, [2, 3]).shape, infer_groups(model, x).shape
    (torch.Size([2]), torch.Size([5]))
    """
    if method not in METHODS:
        raise ConfigError("method", f"one of {METHODS}", repr(method))
    _check_model(model)
    check_objective(objective, real_classes, model.output_size)
    if not isinstance(x, torch.Tensor) or x.ndim < 2:
        raise ConfigError("x", "a batch tensor (B, ...)", getattr(x, "shape", type(x).__name__))
    groups = check_sizes(sizes, x.shape[0])
    if sizes is None and model.has_batch_statistics:
        raise ConfigError("sizes", "groups of a test batch for models with batch-statistics unit masks (bnnet)", None)
    if not groups:  # no images, no decisions
        return torch.zeros(0, dtype=torch.long)
    if method != "binary" and supports_rank_one(model):
        g = rank_one_coefficient_gradients(model, x, objective, real_classes=real_classes).cpu()  # (B, k)
        if sizes is not None:
            owner = torch.repeat_interleave(torch.arange(len(groups)), torch.as_tensor(groups, dtype=torch.long))  # (B,)
            g = torch.zeros((len(groups), g.shape[1]), dtype=torch.float64).index_add_(0, owner, g)
            g /= torch.as_tensor(groups, dtype=torch.float64).unsqueeze(1)  # (G, k): each group's mean row
        if method == "oneshot":
            return torch.argmin(g, dim=1)
        return rerank_groups(model, x, g, groups, objective, real_classes)
    if sizes is None:
        return torch.as_tensor(infer_task(model, x, method, objective, real_classes, per="image"), dtype=torch.long).cpu()
    parts = x.split(groups)
    return torch.tensor([int(infer_task(model, part, method, objective, real_classes)) for part in parts], dtype=torch.long)
