"""supsup_core.training: the model-agnostic trainer, per-task mask training, scenarios, NNs and metrics.

- :class:`Trainer` (``trainer.py``): optimiser loop with ``on_task_start`` / ``on_batch_end`` /
  ``on_task_end`` callbacks; knows nothing about masks.
- :func:`train_task`, :func:`train_stream` (``tasks.py``): one new supermask per stream task.
- :func:`evaluate_gg`, :func:`evaluate_inferred` (``evaluation.py``): GG, GNs and GNu accuracy.
- :func:`train_nns` (``nns.py``): no task identity; allocate a mask when none fits.
- :class:`AccuracyMatrix` (``metrics.py``): accuracy matrix, average accuracy, forgetting, BWT.
- :class:`TrainConfig` (``config.py``): hyperparameters, schedules and the paper's presets per scenario.
- :func:`recipe` (``recipes.py``): the reference's SplitCIFAR100 and SplitImageNet experiments, one object each.
- :func:`train_to_bank` (``bank_training.py``): linear-time, resumable training straight into a
  mask bank, each task committed as it finishes; tasks trained by an engine (``engines.py``:
  inline, local processes, Ray) from self-contained jobs (``jobs.py``).
"""

from .bank_training import (BankTrainingConfig, BankTrainingResult, ResumeMismatchError, TaskProgress, check_training_data,
                            train_to_bank)
from .callbacks import LossHistory, ProgressCallback, StopAfter, attach_callbacks
from .config import OPTIMIZERS, SCENARIOS, TrainConfig
from .batched import BatchedTaskTrainer
from .engines import ENGINES, BatchedEngine, Engine, InlineEngine, ProcessEngine, RayEngine, RayUnavailableError, make_engine
from .evaluation import GGResult, InferredResult, evaluate_gg, evaluate_inferred
from .jobs import TaskOutcome, TaskWorker, TrainingSetup
from .metrics import AccuracyMatrix, accuracy_table, results_table
from .nns import NNsDecision, NNsResult, decision_gradients, nns_batches, train_nns
from .recipes import RECIPES, Recipe, recipe
from .tasks import train_stream, train_task
from .trainer import EVENTS, RunSummary, Trainer, make_optimizer

__all__ = [
    "RECIPES",
    "Recipe",
    "recipe",
    "BatchedTaskTrainer",
    "BatchedEngine",
    "AccuracyMatrix",
    "BankTrainingConfig",
    "BankTrainingResult",
    "ENGINES",
    "Engine",
    "InlineEngine",
    "ProcessEngine",
    "RayEngine",
    "RayUnavailableError",
    "ResumeMismatchError",
    "TaskOutcome",
    "TaskProgress",
    "TaskWorker",
    "TrainingSetup",
    "make_engine",
    "train_to_bank",
    "check_training_data",
    "EVENTS",
    "GGResult",
    "InferredResult",
    "LossHistory",
    "NNsDecision",
    "NNsResult",
    "OPTIMIZERS",
    "ProgressCallback",
    "RunSummary",
    "SCENARIOS",
    "StopAfter",
    "TrainConfig",
    "Trainer",
    "accuracy_table",
    "attach_callbacks",
    "decision_gradients",
    "evaluate_gg",
    "evaluate_inferred",
    "make_optimizer",
    "nns_batches",
    "results_table",
    "train_nns",
    "train_stream",
    "train_task",
]
