"""Which stored task's candidate a query needs: the output objective on unlabeled images (screen, shortlist)."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from hopfield_masks.blocks import MaskLayout

from ..errors import ConfigError
from ..guidance import model_layout
from ..inference.objectives import objective_values
from ..models import SupSupNet
from .config import SELECTIONS


def _unflatten(layout: MaskLayout, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split a flat ``(P,)`` float tensor into the layout's named layer masks (views)."""
    out, start = {}, 0
    for name, shape in zip(layout.names, layout.shapes):
        size = int(np.prod(shape))
        out[name] = flat[start:start + size].reshape(shape)
        start += size
    return out


def _mean_objective(model: SupSupNet, masks: dict[str, torch.Tensor], batches: list[torch.Tensor],
                    objective: str, real_classes: int) -> torch.Tensor:
    """Mean objective over every image of ``batches`` (a scalar tensor, differentiable in ``masks``)."""
    total = sum(objective_values(model(x, masks=masks), objective, real_classes).sum() for x in batches)
    return total / sum(len(x) for x in batches)


def rank_candidates(model: SupSupNet, candidates: np.ndarray, batches: list[torch.Tensor], *,
                    objective: str = "H", real_classes: int = 10) -> np.ndarray:
    """One-shot scores of candidate masks: ``d objective / d alpha_t`` at the uniform superposition, ``(T,)``.

    The superposed mask is ``sum_t alpha_t m_t`` with ``alpha_t = 1/T`` (the mean
    candidate), so the derivative for candidate ``t`` is ``m_t . g`` with ``g``
    the objective's gradient with respect to the mask; the most negative score
    is the candidate whose weight lowers the objective fastest (REFERENCE.md §2.4).
    """
    layout = model_layout(model)
    masks01 = torch.from_numpy((np.asarray(candidates, np.float32) + 1.0) / 2.0).to(model.device)  # (T, P)
    mean = masks01.mean(0).clone().requires_grad_(True)  # (P,)
    with torch.enable_grad():
        value = _mean_objective(model, _unflatten(layout, mean), batches, objective, real_classes)
        (grad,) = torch.autograd.grad(value, [mean])
    return (masks01 @ grad).double().cpu().numpy()  # (T,)


def _exact_objectives(model: SupSupNet, candidates: np.ndarray, rows: list[int], batches: list[torch.Tensor],
                      objective: str, real_classes: int) -> dict[int, float]:
    """Mean objective on every image of ``batches`` of each candidate row in ``rows`` (float32, vectorised)."""
    picked = np.asarray(candidates)[rows]
    total = np.zeros(len(rows))
    for x in batches:
        total += len(x) * _screen_objectives(model, picked, x.to(model.device), objective, real_classes)
    total /= sum(len(x) for x in batches)
    return dict(zip(rows, total.tolist()))


def _low_precision(device: torch.device) -> torch.autocast | contextlib.nullcontext:
    """bfloat16 autocast where the hardware computes it natively (a CUDA device, or a CPU with AVX512-BF16)."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if device.type == "cpu" and torch.cpu._is_avx512_bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _screen_objectives(model: SupSupNet, candidates: np.ndarray, x: torch.Tensor, objective: str,
                       real_classes: int, chunk: int = 256, fast: bool = False) -> np.ndarray:
    """Mean objective on one batch ``x`` of every candidate, ``(T,)``: vectorised over candidates with ``vmap``.

    What does not depend on the mask (the first layer's pre-activations) is
    computed once per chunk.  A model whose forward cannot be vectorised is
    scored one candidate at a time, with the same result.  ``fast``: in bfloat16
    where the hardware has it (a screen: the shortlist is then scored in float32).
    """
    layout = model_layout(model)

    def one(flat: torch.Tensor) -> torch.Tensor:
        return objective_values(model(x, masks=_unflatten(layout, flat)), objective, real_classes).float().mean()

    masks01 = torch.from_numpy((np.asarray(candidates, np.float32) + 1.0) / 2.0).to(model.device)  # (T, P)
    out = []
    with torch.no_grad(), (_low_precision(masks01.device) if fast else contextlib.nullcontext()):
        for part in torch.split(masks01, chunk):
            try:
                out.append(torch.func.vmap(one)(part))
            except RuntimeError:  # an op without a batching rule: score one by one
                out.append(torch.stack([one(m) for m in part]))
    return torch.cat(out).double().cpu().numpy()


def first_images(batches: list[torch.Tensor], n: int | None) -> list[torch.Tensor]:
    """The first ``n`` images of ``batches`` (all of them for ``None``), batch by batch; a cut batch keeps at least
    two images (batch-statistics models need two)."""
    if n is None:
        return list(batches)
    out: list[torch.Tensor] = []
    left = n
    for x in batches:
        if left < 2:
            break
        out.append(x[:left])
        left -= len(out[-1])
    return out or list(batches[:1])


def select_candidate(model: SupSupNet, candidates: np.ndarray, batches: list[torch.Tensor], *,
                     objective: str = "H", real_classes: int = 10, shortlist: int = 8,
                     selection: str = "screen", screen_images: int = 8,
                     score_images: int | None = None) -> tuple[int, dict[int, float]]:
    """The candidate with the lowest mean objective on ``batches``, among a shortlist when there are many.

    With more than ``shortlist`` candidates they are first narrowed down:
    ``"screen"`` scores every candidate on the first ``screen_images`` images of the first batch,
    ``"one-shot"`` ranks them by :func:`rank_candidates` (one gradient);
    the ``shortlist`` best are then scored on the first ``score_images`` images of ``batches`` (all of them
    for ``None``).  Returns the chosen row and the objective of every candidate scored so.
    """
    if selection not in SELECTIONS:
        raise ConfigError("selection", f"one of {SELECTIONS}", repr(selection))
    t = len(candidates)
    rows = list(range(t))
    if t > shortlist:
        if selection == "one-shot":
            scores = rank_candidates(model, candidates, batches, objective=objective, real_classes=real_classes)
        else:
            x = batches[0][:max(2, screen_images)].to(model.device)  # batch statistics need two images
            scores = _screen_objectives(model, candidates, x, objective, real_classes, fast=True)
        rows = np.argsort(scores, kind="stable")[:shortlist].tolist()
    exact = _exact_objectives(model, candidates, rows, first_images(batches, score_images), objective, real_classes)
    best = min(exact, key=lambda i: (exact[i], i))
    return best, exact
