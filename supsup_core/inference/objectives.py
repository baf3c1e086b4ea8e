"""Task-inference objectives: entropy H and the superfluous-neuron objective G (REFERENCE §2.6).

Both return one value per image; the caller averages for a batch.

- **H**: entropy of ``softmax(z)`` over **all** ``s`` outputs (superfluous neurons included).
- **G**: ``logsumexp(z_bar)`` with ``z_bar_j = stopgrad(z_j)`` for the ``real_classes``
  first logits and ``z_j`` otherwise.  Same value as ``logsumexp(z)``; the gradient
  is ``softmax(z)_j`` on superfluous logits and 0 on real ones.

Examples
--------
>>> import torch
>>> z = torch.zeros(1, 4)
>>> entropy(z)
tensor([1.3863])
>>> superfluous_logsumexp(z, real_classes=2)
tensor([1.3863])
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

__all__ = ["OBJECTIVES", "entropy", "superfluous_logsumexp", "objective_values", "check_objective"]

OBJECTIVES = ("H", "G")
"""Objective names accepted by :func:`objective_values`."""


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of ``softmax(logits)`` per row: ``(B, s) -> (B,)``."""
    log_p = torch.log_softmax(logits, dim=-1)  # (B, s)
    return -(log_p.exp() * log_p).sum(dim=-1)  # (B,)


def superfluous_logsumexp(logits: torch.Tensor, real_classes: int) -> torch.Tensor:
    """``G``: logsumexp with the gradient stopped on the first ``real_classes`` logits, ``(B, s) -> (B,)``."""
    z = torch.cat([logits[..., :real_classes].detach(), logits[..., real_classes:]], dim=-1)  # (B, s)
    return torch.logsumexp(z, dim=-1)  # (B,)


def check_objective(objective: str, real_classes: int, output_size: int) -> None:
    """Raise :class:`ConfigError` unless ``objective`` and ``real_classes`` make sense for ``output_size``.

    G needs at least one superfluous output (``real_classes < output_size``),
    otherwise its gradient is identically zero.
    """
    if objective not in OBJECTIVES:
        raise ConfigError("objective", f"one of {OBJECTIVES}", repr(objective))
    if isinstance(real_classes, bool) or not isinstance(real_classes, int) or real_classes < 1:
        raise ConfigError("real_classes", "a positive integer", repr(real_classes))
    if objective == "G" and real_classes >= output_size:
        raise ConfigError(
            "real_classes", f"fewer than the {output_size} outputs so that G has superfluous neurons", real_classes
        )


def objective_values(logits: torch.Tensor, objective: str, real_classes: int = 10) -> torch.Tensor:
    """Per-image objective ``(B, s) -> (B,)`` for ``objective`` in ``{"H", "G"}``."""
    check_objective(objective, real_classes, logits.shape[-1])
    if objective == "H":
        return entropy(logits)
    return superfluous_logsumexp(logits, real_classes)
