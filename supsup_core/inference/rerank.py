"""One-shot, then re-rank: score the one-shot's ``k`` best candidates by their own output objective.

The one-shot gradient (REFERENCE §2.4) ranks all learned tasks from a single
forward/backward through the *superposed* network: a first-order estimate of how
the objective changes when the weight moves towards each task.  It is cheap but
first-order; its top choice is wrong now and then although the right task is
almost always among its first few.  ``rerank`` keeps the one-shot ranking's
``k`` best candidates and asks each of them directly: a forward pass of the
images with that candidate's own mask, and the candidate whose output has the
lowest objective (entropy H, or G) wins.  Ties go to the better one-shot rank.

Cost: the one-shot pass plus ``k`` forward passes (no backward) -- for the
paper's first-image protocol ``k`` forwards of a single image.  ``k = 1`` is the
one-shot answer; ``k = num_tasks`` is the exhaustive "lowest entropy of every
mask" search.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError
from ..models import SupSupNet
from .objectives import check_objective, objective_values
from .oneshot import _check_model, coefficient_gradients, per_image_coefficient_gradients
from .rank_one import unpack_tasks

__all__ = ["rerank_task", "DEFAULT_CANDIDATES"]

DEFAULT_CANDIDATES = 8  # chosen by benchmarks/bench_scale.py's k sweep (results/scale.md)


def _task_masks(model: SupSupNet, task: int) -> dict[str, torch.Tensor]:
    return {name: unpack_tasks(layer, task, task + 1)[0] for name, layer in model.masked_layers().items()}


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
    k = _check_model(model)
    check_objective(objective, real_classes, model.config.output_size)
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ConfigError("candidates", "an integer >= 1", candidates)
    n = min(candidates, k)
    if per == "batch":
        g = coefficient_gradients(model, x, objective, real_classes=real_classes).cpu()  # (k,)
        ranked = torch.sort(g, stable=True).indices[:n].tolist()
        if n == 1:
            return int(ranked[0])
        with torch.no_grad():
            scores = [float(objective_values(model(x, masks=_task_masks(model, t)), objective, real_classes).mean())
                      for t in ranked]
        best = min(range(n), key=lambda i: (scores[i], i))
        return int(ranked[best])
    if per != "image":
        raise ConfigError("per", "'batch' or 'image'", repr(per))
    g = per_image_coefficient_gradients(model, x, objective, real_classes=real_classes)  # (B, k)
    ranked = torch.sort(g.cpu(), dim=1, stable=True).indices[:, :n]  # (B, n)
    if n == 1:
        return ranked[:, 0].to(torch.long)
    scores = torch.full(ranked.shape, float("inf"), dtype=torch.float64)  # (B, n)
    with torch.no_grad():
        for task in torch.unique(ranked).tolist():
            rows, slots = (ranked == task).nonzero(as_tuple=True)  # images with this candidate, and its rank there
            values = objective_values(model(x[rows.to(x.device)], masks=_task_masks(model, task)), objective, real_classes)
            scores[rows, slots] = values.to(torch.float64).cpu()
    best = torch.argmin(scores, dim=1)  # first minimum: ties go to the better one-shot rank
    return ranked.gather(1, best.unsqueeze(1)).squeeze(1).to(torch.long)
