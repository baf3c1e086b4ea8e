"""What recall of one task reports (:class:`TaskRecall`), scoring masks, and the summary of many."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..models import SupSupNet
from .data import chunks


@dataclass
class TaskRecall:
    """The outcome of recalling one task's mask (one row of the recall table).

    With restarts, ``steps_run``, ``steps_to_final`` and ``history`` describe the
    chosen start (``chosen_start``: 0 is the cue itself) and ``guidance_calls``
    counts the gradients of every start.
    """

    task: str
    method: str
    guided: bool
    cue: str
    bits_wrong: dict[str, int]
    exact: bool
    steps_run: int
    steps_to_final: int
    guidance_calls: int
    true_accuracy: float | None = None
    recalled_accuracy: float | None = None
    history: dict[str, list[float]] = field(default_factory=dict)
    restarts: int = 0
    chosen_start: int = 0
    chosen_task: int | None = None  # keyed recall: the stored task whose candidate was returned
    candidates: int = 0  # keyed recall: candidates recalled (one per stored task)

    @property
    def total_bits_wrong(self) -> int:
        """Bits wrong over all layers."""
        return int(sum(self.bits_wrong.values()))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (history included)."""
        out = asdict(self)
        out["total_bits_wrong"] = self.total_bits_wrong
        return out


def masks_accuracy(model: SupSupNet, masks: Mapping[str, np.ndarray], x: torch.Tensor, y: torch.Tensor,
                   batch_size: int = 256) -> float:
    """Accuracy of ``model`` with explicit layer ``masks`` on ``(x, y)`` (argmax over all outputs).

    Images go through in chunks of ``batch_size`` (a trailing single image joins the chunk before
    it, since batch-statistics models need two), so a BNNet's score depends on ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size", "a positive integer", repr(batch_size))
    device = model.device
    mt = {name: torch.from_numpy(np.asarray(m, dtype=np.float32)).to(device) for name, m in masks.items()}
    correct = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for part in chunks(len(y), batch_size):
                logits = model(x[part].to(device), masks=mt)  # (b, s)
                correct += int((logits.argmax(dim=1).cpu() == y[part]).sum())
    finally:
        model.train(was_training)
    return correct / max(1, len(y))


def summarise(rows: list[TaskRecall]) -> dict[str, float | None]:
    """Exact-recall count, mean bits wrong, mean accuracy drop and the largest steps-to-final over rows.

    A value that was not measured (no rows, no accuracies) is ``None``, not NaN, so the
    summary stays strict JSON for ``--json``.

    Examples
    --------
    >>> row = TaskRecall("0", "dynamics", False, "mean", {"fc1": 3}, False, 5, 4, 0)
    >>> summarise([row])
    {'tasks': 1, 'exact': 0, 'mean_bits_wrong': 3.0, 'mean_accuracy_drop': None, 'max_accuracy_drop': None, 'max_steps_to_final': 4}
    """
    drops = [r.true_accuracy - r.recalled_accuracy for r in rows
             if r.true_accuracy is not None and r.recalled_accuracy is not None]
    return {
        "tasks": len(rows),
        "exact": sum(r.exact for r in rows),
        "mean_bits_wrong": float(np.mean([r.total_bits_wrong for r in rows])) if rows else None,
        "mean_accuracy_drop": float(np.mean(drops)) if drops else None,
        "max_accuracy_drop": float(np.max(drops)) if drops else None,
        "max_steps_to_final": max((r.steps_to_final for r in rows), default=0),
    }
