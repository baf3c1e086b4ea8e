"""Recall as one typed object: :class:`RecallConfig` says how, :class:`Recaller` holds what is needed.

A :class:`Recaller` opens a mask bank once — its reservoir for a byte budget
(encoded first when missing, refused when stale), the model its metadata
describes and the task stream its data came from — and recalls every task's
mask under one validated :class:`RecallConfig`.  The CLI's ``recall`` and
``demo`` and :func:`supsup_core.demo.run_demo` only build the config, call
:meth:`Recaller.recall_all` and render the rows.

Methods
-------
``"keyed"`` (the default)
    The reservoir stores a seeded *task key* beside every block of a task's
    mask (:meth:`hopfield_masks.reservoir.Reservoir.recall_keyed`), so clamping
    task ``t``'s key makes every network settle into task ``t``'s attractor:
    one candidate mask per stored task, recalled once and shared by all
    queries.  Which task a query needs is decided as in SupSup's one-shot task
    inference (REFERENCE.md §2.4), by the output objective on the unlabeled
    adaptation images: every candidate is screened on the first ``screen_images``
    images (in bfloat16 where the hardware computes it natively), and the
    ``shortlist`` best are scored on the first ``score_images`` of them in float32; the lowest wins.  (The
    one-shot gradient over the superposition of the candidates is available as
    ``selection="one-shot"``; on BNNet unit masks it ranked the true candidate
    first for only 6 of 14 tasks in a 40-task bank, where screening finds 14
    of 14, so screening is the default.)  Unguided, the candidate nearest to
    the cue is returned (no task identity is given either way).
``"dynamics"`` and ``"score-descent"``
    The earlier procedures of :mod:`hopfield_masks.recall.guided` over the
    blocks independently (guided discrete dynamics, and the reference's score
    descent), with optional noisy restarts ranked by the objective.
"""

from .blockwise import BLOCK_METHODS, recall_task, restart_cues
from .config import MAX_RESTARTS, MAX_STEPS, RECALL_METHODS, SELECTIONS, RecallConfig, encode_settings_for
from .data import TaskData, task_data
from .recaller import Recaller
from .report import TaskRecall, masks_accuracy, summarise
from .selection import rank_candidates, select_candidate

__all__ = [
    "Recaller", "RecallConfig", "encode_settings_for", "RECALL_METHODS", "SELECTIONS", "MAX_STEPS", "MAX_RESTARTS",
    "select_candidate", "rank_candidates", "BLOCK_METHODS", "recall_task", "restart_cues", "TaskData", "task_data",
    "TaskRecall", "masks_accuracy", "summarise",
]
