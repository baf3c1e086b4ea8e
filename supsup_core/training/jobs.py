"""One task's training as a self-contained job: what a worker needs, what it sends back.

GG/GNu tasks are independent given the base network: task ``t``'s scores come
from ``task_seed(model seed, t)`` and its data order from ``(train seed, t)``,
both through ``numpy.random.SeedSequence``, and training never reads the masks
of other tasks.  So any process that rebuilds the same base network and stream
can train task ``t`` and get the same mask, bit for bit, as the sequential loop.

- :class:`TrainingSetup` (frozen, picklable, JSON-safe): the model config, the
  stream description, the :class:`~supsup_core.training.config.TrainConfig` and
  evaluation settings -- everything a worker needs, nothing else.
- :class:`TaskWorker`: builds the base network and the stream once, then
  :meth:`TaskWorker.run` trains one task on a *scratch* model that holds no
  finished masks (so the cost of a task does not grow with the tasks learned),
  measures its GG accuracy once and returns a :class:`TaskOutcome`.

Torch runs each task with one intra-op thread (parallelism is across tasks):
the same arithmetic for any worker count.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import ModelConfig
from ..errors import ConfigError
from ..heap import release_free_memory
from ..models import SupSupNet, model_from_spec, spec_kind
from ..wrapping import WrapConfig
from .callbacks import attach_callbacks
from .config import TrainConfig, steps_per_epoch
from .evaluation import gg_accuracy_of_masks
from .trainer import Trainer

__all__ = ["TrainingSetup", "TaskOutcome", "TaskWorker", "single_thread"]


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch CPU ops on one intra-op thread inside the block (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(frozen=True)
class TrainingSetup:
    """Everything needed to train any task of a stream from scratch (validated, JSON-safe).

    Parameters
    ----------
    model : dict
        The model's description, as banks record it: a built-in's :meth:`ModelConfig.to_dict`,
        ``{"factory": "MODULE:FACTORY", "wrap": {...}}`` (rebuilt by calling the factory the
        user named), or ``{"module": ..., "wrap": {...}}`` for a module wrapped in Python (not
        rebuildable: workers are then forked from the driver, which has the model).
    benchmark : dict
        ``stream.describe()`` (rebuilt with :func:`supsup_core.persistence.stream_from_metadata`).
    train : dict
        :meth:`TrainConfig.to_dict`.
    drop_last : bool
        Skip partial training batches (batch-statistics models).
    eval_batch_size : int
        Test batch size of the GG accuracy measured after each task.
    data_dir : str or None
        MNIST IDX folder overriding the recorded data source.

    Examples
    --------
    >>> s = TrainingSetup.from_objects(ModelConfig(hidden=(4,), output_size=3),
    ...     {"stream": "permuted-mnist", "n_tasks": 2, "seed": 1}, TrainConfig())
    >>> TrainingSetup.from_dict(s.to_dict()) == s
    True
    """

    model: dict
    benchmark: dict
    train: dict
    drop_last: bool = False
    eval_batch_size: int = 128
    data_dir: str | None = None

    def __post_init__(self) -> None:
        kind = spec_kind(self.model)
        if kind == "builtin":
            ModelConfig.from_dict(dict(self.model))  # raises ConfigError naming the field
        else:
            WrapConfig.from_dict(self.model.get("wrap") or {})
        TrainConfig.from_dict(dict(self.train))
        if not isinstance(self.benchmark, Mapping) or "stream" not in self.benchmark or "n_tasks" not in self.benchmark:
            raise ConfigError("benchmark", "a stream description with 'stream' and 'n_tasks'", self.benchmark)
        if not isinstance(self.drop_last, bool):
            raise ConfigError("drop_last", "a bool", self.drop_last)
        b = self.eval_batch_size
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError("eval_batch_size", "an integer >= 1", b)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ConfigError("data_dir", "None or a folder path string", type(self.data_dir).__name__)

    @classmethod
    def from_objects(
        cls,
        model: ModelConfig | SupSupNet,
        benchmark: Mapping[str, Any],
        train: TrainConfig,
        *,
        drop_last: bool = False,
        eval_batch_size: int = 128,
        data_dir: str | None = None,
    ) -> TrainingSetup:
        """Build from the config objects (``model`` a built-in's config or a wrapped model; ``benchmark`` is
        ``stream.describe()``)."""
        spec = model.to_dict() if isinstance(model, ModelConfig) else dict(getattr(model, "spec", {}))
        if not isinstance(model, (ModelConfig, SupSupNet)):
            raise ConfigError("model", "a ModelConfig or a wrapped model (SupSupNet)", type(model).__name__)
        return cls(spec, dict(benchmark), train.to_dict(), drop_last, eval_batch_size, data_dir)

    @property
    def model_config(self) -> ModelConfig | None:
        """The :class:`ModelConfig` of a built-in network (None for other models)."""
        return ModelConfig.from_dict(dict(self.model)) if spec_kind(self.model) == "builtin" else None

    @property
    def wrap_config(self) -> WrapConfig:
        """How the model is wrapped."""
        config = self.model_config
        return config.wrap_config() if config is not None else WrapConfig.from_dict(self.model.get("wrap") or {})

    @property
    def train_config(self) -> TrainConfig:
        """The :class:`TrainConfig`."""
        return TrainConfig.from_dict(dict(self.train))

    def build_model(self) -> SupSupNet:
        """A fresh model of this setup (a factory the user named is called again; a Python-wrapped one cannot be)."""
        return model_from_spec(self.model, self.model.get("factory"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return {
            "model": dict(self.model),
            "benchmark": dict(self.benchmark),
            "train": dict(self.train),
            "drop_last": self.drop_last,
            "eval_batch_size": self.eval_batch_size,
            "data_dir": self.data_dir,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainingSetup:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, Mapping):
            raise ConfigError("setup", "a mapping", type(data).__name__)
        return cls(**dict(data))


@dataclass(frozen=True)
class TaskOutcome:
    """One trained task: its masks ``{layer: bool ndarray}``, its per-task batch-norm statistics ``{norm: float32
    (2, C)}`` (empty without task norms), GG accuracy on its test set, timings (seconds)."""

    task: int
    masks: dict[str, np.ndarray] = field(repr=False)
    gg_accuracy: float
    n_test: int
    train_seconds: float
    eval_seconds: float
    statistics: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


class TaskWorker:
    """Trains single tasks of one :class:`TrainingSetup` (base network and stream built once).

    Parameters
    ----------
    setup : TrainingSetup
        What to train.
    device : str
        Torch device of the scratch model.
    callbacks : iterable
        Trainer callbacks attached to every task's trainer (in-process use only).
    model : SupSupNet, optional
        A base network of ``setup``'s description holding no finished tasks, to train on
        instead of building one (the driver shares its own: one copy of the weights).
    stream : TaskStream, optional
        The stream to train on instead of rebuilding it from ``setup.benchmark`` (a stream
        made in Python from the user's own data).
    """

    def __init__(
        self, setup: TrainingSetup, device: str | torch.device = "cpu", callbacks: tuple = (), model: SupSupNet | None = None,
        stream: Any = None,
    ) -> None:
        from ..persistence import stream_from_metadata  # local: persistence imports models, not training

        if not isinstance(setup, TrainingSetup):
            raise ConfigError("setup", "a TrainingSetup", type(setup).__name__)
        self.setup = setup
        self.config = setup.train_config
        self.stream = stream if stream is not None else stream_from_metadata({"benchmark": dict(setup.benchmark)}, setup.data_dir)
        if model is None:
            model = setup.build_model().to(device)
        elif not isinstance(model, SupSupNet) or model.spec != setup.model or model.num_tasks:
            got = type(model).__name__ if not isinstance(model, SupSupNet) else f"a model with {model.num_tasks} tasks"
            raise ConfigError("model", "a SupSupNet of the setup's description with no finished tasks", got)
        self.model = model
        self.callbacks = tuple(callbacks)

    def run(self, task: int) -> TaskOutcome:
        """Train stream task ``task`` from its own seeds, measure its GG accuracy once, return the masks."""
        if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < self.stream.n_tasks:
            raise ConfigError("task", f"a stream task in 0..{self.stream.n_tasks - 1}", task)
        model, cfg = self.model, self.config
        with single_thread():
            start = time.perf_counter()
            epoch_steps = (steps_per_epoch(self.stream.train_size(task), cfg.batch_size, self.setup.drop_last)
                           if cfg.schedule != "constant" or cfg.epochs is not None else None)
            trainer = Trainer(model, model.begin_task(task), cfg, epoch_steps=epoch_steps)
            attach_callbacks(trainer, self.callbacks)
            batches = self.stream.train_batches(
                task, batch_size=cfg.batch_size, seed=cfg.seed,
                n_batches=cfg.batches_per_task if epoch_steps is None else cfg.task_steps(epoch_steps),
                drop_last=self.setup.drop_last,
            )
            trainer.run(batches)
            masks, statistics = model.end_task().numpy()
            trained = time.perf_counter()
            accuracy, n = gg_accuracy_of_masks(model, self.stream, task, masks, self.setup.eval_batch_size, statistics)
            self.stream.release_cache()  # the next task builds its own tensors: hold one task's data at a time
            release_free_memory()  # this task's temporaries go back to the OS (supsup_core.heap)
            done = time.perf_counter()
        return TaskOutcome(task, masks, accuracy, n, trained - start, done - trained, statistics)
