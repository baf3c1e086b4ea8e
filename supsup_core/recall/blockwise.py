"""HopSupSup pieces: per-task adaptation/evaluation data, block-wise guided recall of one task, scoring.

The object that opens a bank and recalls all its tasks is
:class:`supsup_core.recall.Recaller`; its default method (keyed recall) is
described there.  This module holds what every method shares and the
block-wise procedures (``"dynamics"``, ``"score-descent"``).

This joins the storage layer and the core (REFERENCE.md §2.8, and §7's "really
constant memory" version):

1. the reservoir (built by :func:`hopfield_masks.encoding.encode_bank`) holds
   every task's mask as attractors, plus the running ±1 sums used as the
   reference's recovery start (the *mean* cue);
2. for each task, recall starts from the cue and runs one of the two guided
   procedures of :mod:`hopfield_masks.recall.guided`, with the gradient of the
   model's output entropy (:class:`~supsup_core.guidance.OutputGuidance`) computed
   on *unlabeled* batches of that task — no task identity is given to recall;
3. the recalled mask is compared with the true one (bits wrong per layer) and,
   when the bank's metadata names its data, scored on test images.

**Non-transductive by default.**  The reference adapts and scores on the same
test batches.  Here each task's test set is split once (seeded) into an
*adaptation* half, whose images guide recall without their labels, and an
*evaluation* half, on which both the true and the recalled masks are scored.
``transductive=True`` restores the reference's protocol (guide and score on the
whole test set).

**Restarts.**  With ``restarts=k`` guided recall also runs from ``k`` copies of
the cue with a seeded ``restart_noise`` fraction of its signs flipped, and keeps
the final mask with the lowest objective on *all* the adaptation images.  Above a
few tasks one guided run often ends in a spurious state (each network settles in
the attractor of a different task), while among the stored masks the true one
has by far the lowest entropy on its task's images; ranking several endings by
the objective finds the right one more often (BNNet, permuted SplitMNIST, 1MB,
20 tasks: nearest-is-true 0.40 -> 0.90 with 15 restarts, at 16 times the cost).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from hopfield_masks.reservoir import Reservoir

from ..errors import ConfigError
from ..guidance import OutputGuidance
from ..models import SupSupNet
from ..validate import check_int
from .data import TaskData
from .report import TaskRecall, masks_accuracy


#: Procedures over the blocks independently: the reference's score descent, and discrete dynamics biased by the
#: guidance (keyed recall, the default, lives in :mod:`supsup_core.recall.recaller`).
BLOCK_METHODS = ("score-descent", "dynamics")


def _check_restarts(restarts: object, restart_noise: object) -> tuple[int, float]:
    """Validate the restart options: a count ``>= 0`` and a flip fraction in ``(0, 1]``."""
    restarts = check_int("restarts", restarts, low=0)
    ok = isinstance(restart_noise, (int, float, np.integer, np.floating)) and not isinstance(restart_noise, bool)
    if not (ok and 0.0 < float(restart_noise) <= 1.0):
        raise ConfigError("restart_noise", "a fraction of the cue's signs in (0, 1]", repr(restart_noise))
    return int(restarts), float(restart_noise)


def restart_cues(scores: np.ndarray, restarts: int, noise: float, seed: int) -> list[np.ndarray]:
    """``scores`` and ``restarts`` copies of it, each with ``round(noise * P)`` seeded signs flipped.

    A flipped sign toggles the mask entry ``1[u >= 0]``: ``u`` becomes ``-u``, and a
    zero score (kept) becomes ``-1`` (dropped).

    Examples
    --------
    >>> cues = restart_cues(np.array([0.5, -0.5, 0.0, 1.0]), 2, 0.5, seed=0)
    >>> len(cues), [int((np.sign(c) != np.sign(cues[0])).sum()) for c in cues]
    (3, [0, 2, 2])
    """
    rng = np.random.default_rng([seed, 2])  # its own stream: the recall itself draws from seed
    n_flip = int(round(noise * scores.size))
    cues = [scores]
    for _ in range(restarts):
        cue = scores.copy()
        idx = rng.choice(scores.size, size=n_flip, replace=False)  # (n_flip,)
        cue[idx] = np.where(cue[idx] == 0, -1.0, -cue[idx])
        cues.append(cue)
    return cues


def _start_seed(seed: int, start: int) -> int:
    """Seed of start ``start`` (0: ``seed`` itself, so no restart leaves recall unchanged)."""
    return seed if start == 0 else int(np.random.SeedSequence([seed, start]).generate_state(1)[0])


def _adaptation_objective(guidance: OutputGuidance, state: np.ndarray, batches: list[torch.Tensor]) -> float:
    """Mean objective of the masks in ``state`` over every adaptation image (batches weighted by size)."""
    values = [guidance.objective_value(state, batch) for batch in batches]
    return float(np.average(values, weights=[len(batch) for batch in batches]))


def recall_task(
    reservoir: Reservoir,
    true_masks: Mapping[str, np.ndarray],
    *,
    task: str,
    model: SupSupNet | None = None,
    data: TaskData | None = None,
    guided: bool = True,
    method: str = "score-descent",
    cue: str = "mean",
    objective: str = "H",
    seed: int = 0,
    steps: int | None = None,
    restarts: int = 0,
    restart_noise: float = 0.2,
    real_classes: int = 10,
) -> TaskRecall:
    """Recall one task's mask from ``reservoir`` and compare it with ``true_masks``.

    Guidance needs ``model`` and ``data`` (its ``adapt`` batches); accuracies are
    measured when both are given.  ``cue`` is a :meth:`Reservoir.cue` kind
    (``"mean"``, ``"random"``, ``"noisy:0.1"``); noisy cues start from the true mask.
    ``restarts`` (guided only) adds that many recalls from the cue with a
    ``restart_noise`` fraction of its signs flipped (:func:`restart_cues`); the
    final mask with the lowest mean objective over all adaptation images is kept
    (the cue's own on a tie).  ``steps``: steps of score descent or sweeps of the dynamics (``None``: the
    procedure's default).
    """
    if method not in BLOCK_METHODS:
        raise ConfigError("method", f"one of {BLOCK_METHODS}", repr(method))
    if guided and (model is None or data is None):
        raise ConfigError("guided", "a model and unlabeled data for guidance (or guided=False)", "no data")
    restarts, restart_noise = _check_restarts(restarts, restart_noise)
    if restarts and not guided:
        raise ConfigError("restarts", "0 for unguided recall (restarts are ranked by the guidance objective)",
                          repr(restarts))
    start = reservoir.cue(cue, seed=seed, reference=true_masks) if cue.startswith("noisy") else cue
    starts = [start]
    if restarts:
        scores = reservoir.cue(cue, seed=seed, reference=true_masks if cue.startswith("noisy") else None)
        starts = restart_cues(scores, restarts, restart_noise, seed)  # the first is the cue itself
    best = None  # (objective, start index, masks, result)
    calls = 0
    ranked: dict[bytes, float] = {}  # final state -> objective, so a repeated ending is scored once
    for j, begin in enumerate(starts):
        guidance = None
        if guided:  # a fresh guidance per start: each sees the adaptation batches from the first
            guidance = OutputGuidance(model, data.adapt, reservoir.layout, objective=objective,
                                      real_classes=min(real_classes, model.output_size))
        recalled, result = reservoir.recall(cue=begin, guidance=guidance, method=method, seed=_start_seed(seed, j),
                                            steps=steps)
        calls += guidance.calls if guidance else 0
        if len(starts) == 1:
            best = (0.0, 0, recalled, result)
            break
        key = np.asarray(result.state, dtype=np.int8).tobytes()
        if key not in ranked:
            ranked[key] = _adaptation_objective(guidance, result.state, data.adapt)
        if best is None or ranked[key] < best[0]:
            best = (ranked[key], j, recalled, result)
    _, chosen, recalled, result = best
    bits_wrong = {name: int(np.count_nonzero(recalled[name] != np.asarray(true_masks[name], dtype=bool)))
                  for name in reservoir.layout.names}
    row = TaskRecall(
        task=task, method=method, guided=guided, cue=cue, bits_wrong=bits_wrong,
        exact=not any(bits_wrong.values()), steps_run=int(result.steps_run),
        steps_to_final=int(result.steps_to_final), guidance_calls=calls,
        history={k: [float(v) for v in np.asarray(a).ravel()] for k, a in result.history.items()},
        restarts=restarts, chosen_start=chosen,
    )
    if model is not None and data is not None:
        row.true_accuracy = masks_accuracy(model, true_masks, data.eval_x, data.eval_y)
        row.recalled_accuracy = (row.true_accuracy if row.exact
                                 else masks_accuracy(model, recalled, data.eval_x, data.eval_y))
    return row
