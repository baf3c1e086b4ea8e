"""One-shot, then re-rank: score the one-shot's ``k`` best candidates by their own output objective.

The one-shot gradient (REFERENCE §2.4) ranks all learned tasks from a single
forward/backward through the *superposed* network: a first-order estimate of how
the objective changes when the weight moves towards each task.  It is cheap but
first-order; its top choice is wrong now and then although the right task is
almost always among its first few.  ``rerank`` keeps the one-shot ranking's
``k`` best candidates and asks each of them directly: a forward pass of the
images with that candidate's own mask, and the candidate whose output has the
lowest entropy wins.  Ties go to the better one-shot rank.  With objective G the
ranking is G's and the candidates are still scored by their entropy: G's value
(a logsumexp of the logits) measures their scale, not which mask fits, and
comparing it across masks picks whichever mask makes the smallest logits.

Cost: the one-shot pass plus ``k`` forward passes (no backward) -- for the
paper's first-image protocol ``k`` forwards of a single image.  ``k = 1`` is the
one-shot answer; ``k = num_tasks`` is the exhaustive "lowest entropy of every
mask" search.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..heap import release_free_memory
from ..models import SupSupNet
from .objectives import check_objective, objective_values
from .oneshot import _check_model, coefficient_gradients, per_image_coefficient_gradients
from .rank_one import packed_rows, unpack_rows

__all__ = ["rerank_task", "rerank_groups", "check_candidates", "DEFAULT_CANDIDATES"]

DEFAULT_CANDIDATES = 8  # chosen by benchmarks/bench_scale.py's k sweep (results/scale.md)
_BYTES_PER_GATHER = 4 << 20  # packed bytes of the candidate masks gathered at once, per layer


def rerank_task(
    model: SupSupNet,
    x: torch.Tensor,
    objective: str = "H",
    *,
    real_classes: int = 10,
    per: str = "batch",
    candidates: int = DEFAULT_CANDIDATES,
) -> int | torch.Tensor:
    """The task among the one-shot's ``candidates`` best whose own mask gives ``x`` the lowest objective.

    ``per="batch"``: one task for the mean objective over ``x`` (an int); ``per="image"``:
    one task per image (LongTensor ``(B,)``; not for batch-statistics models).

    Examples
    --------
    >>> import torch
    >>> from supsup_core.config import ModelConfig
    >>> from supsup_core.models import build_model
    >>> model = build_model(ModelConfig(hidden=(6,), output_size=4, in_features=16, image=4))
    >>> for _ in range(3):
    ...     _ = model.add_task(), model.finish_task()
    >>> x = torch.randn(2, 16, generator=torch.Generator().manual_seed(0))
    >>> rerank_task(model, x, candidates=1) == int(torch.argmin(coefficient_gradients(model, x)))
    True
    """
    _check_model(model)
    check_objective(objective, real_classes, model.output_size)
    check_candidates(candidates)
    if per == "batch":
        g = coefficient_gradients(model, x, objective, real_classes=real_classes)  # (k,)
        return int(rerank_groups(model, x, g.unsqueeze(0), [x.shape[0]], objective, real_classes, candidates)[0])
    if per != "image":
        raise ConfigError("per", "'batch' or 'image'", repr(per))
    g = per_image_coefficient_gradients(model, x, objective, real_classes=real_classes)  # (B, k)
    return rerank_groups(model, x, g, [1] * x.shape[0], objective, real_classes, candidates)


def check_candidates(candidates: object) -> int:
    """``candidates`` as a positive int, or ConfigError naming it."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ConfigError("candidates", "an integer >= 1", candidates)
    return candidates


def rerank_groups(
    model: SupSupNet,
    x: torch.Tensor,
    g: torch.Tensor,
    sizes: list[int],
    objective: str,
    real_classes: int,
    candidates: int = DEFAULT_CANDIDATES,
) -> torch.Tensor:
    """Re-rank each group's one-shot ranking; LongTensor ``(G,)``, one task per group.

    ``x`` holds the groups' images one group after the other (``sizes[j]`` images
    for group ``j``) and ``g`` ``(G, k)`` their coefficient gradients.  A group's
    candidates are the ``candidates`` lowest entries of its row (stable: ties go
    to the lower task); each candidate is scored by the group's mean objective
    under its own mask, and the lowest score wins (ties: the better one-shot rank).
    Every candidate mask is unpacked once, for all the groups that rank it.
    """
    if model.has_batch_statistics and len(sizes) > 1:  # one forward would mix the groups' batch statistics
        raise ConfigError("sizes", "one group for a model with batch-statistics unit masks (bnnet)", f"{len(sizes)} groups")
    n = min(candidates, g.shape[1])
    ranked = torch.sort(g.cpu(), dim=1, stable=True).indices[:, :n]  # (G, n)
    if n == 1:
        return ranked[:, 0].to(torch.long)
    counts = torch.as_tensor(sizes, dtype=torch.long)  # (G,)
    owner = torch.repeat_interleave(torch.arange(len(sizes)), counts)  # (B,) the group of each image
    scores = torch.full(ranked.shape, float("inf"), dtype=torch.float64)  # (G, n)
    layers, norms = model.masked_layers(), model.norm_layers()
    buffers = {  # one mask buffer per layer, reused by every candidate (no heap churn)
        name: torch.empty((1, *layer.mask_shape), dtype=torch.float32, device=layer.packed.device)
        for name, layer in layers.items()
    }
    step = max(1, _BYTES_PER_GATHER // max(layer.packed.shape[0] for layer in layers.values()))
    unique = torch.unique(ranked)  # ascending
    with torch.no_grad():
        for c0 in range(0, unique.numel(), step):
            block = unique[c0 : c0 + step]
            packed = {name: packed_rows(layer, block) for name, layer in layers.items()}  # {name: (c, nbytes)}
            for j, task in enumerate(block.tolist()):
                masks = {name: unpack_rows(layers[name], rows[j : j + 1], out=buffers[name])[0] for name, rows in packed.items()}
                masks.update({name: norm.task_override(task) for name, norm in norms.items()})  # the task's own statistics
                groups, slots = (ranked == task).nonzero(as_tuple=True)  # groups ranking this task, at which rank
                member = torch.zeros(len(sizes), dtype=torch.bool)
                member[groups] = True
                rows_of = member[owner]  # (B,) images of those groups
                values = objective_values(model(x[rows_of.to(x.device)], masks=masks), "H")  # module docstring: always H
                sums = torch.zeros(len(sizes), dtype=torch.float64).index_add_(0, owner[rows_of], values.to(torch.float64).cpu())
                scores[groups, slots] = sums[groups] / counts[groups]
            del packed
            release_free_memory()  # candidates' masked weights come and go: hand the holes back to the OS
    best = torch.argmin(scores, dim=1)  # first minimum: ties go to the better one-shot rank
    return ranked.gather(1, best.unsqueeze(1)).squeeze(1).to(torch.long)
