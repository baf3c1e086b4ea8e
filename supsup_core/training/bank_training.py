"""Training a stream straight into a mask bank: linear time, every task committed as it finishes, resumable.

:func:`train_to_bank` is the loop behind ``supsup-store train`` for the GG/GNu/GNs
and HopSupSup scenarios:

1. an :class:`~supsup_core.training.engines.Engine` trains tasks (inline, local
   processes or Ray) and returns masks plus the GG accuracy measured **once**,
   right after training (SupSup cannot forget: a finished mask never changes);
2. the driver commits each task to the bank **in task order** as soon as it and
   all earlier tasks are done -- open the bank in append mode, ``write_task``,
   update ``n_tasks`` in the metadata, close -- so a crash loses at most the tasks
   in flight;
3. at the checkpoints ``eval_at`` (default: after the last task) the driver
   measures GG accuracy on **every** task learned so far (a row of the accuracy
   matrix, stored in the attrs of the checkpoint task); ``full_matrix=True`` does
   so after every task (the O(T^2) check).

The cost of a task does not grow with the tasks learned: workers train on a
scratch model holding no finished masks; the driver appends O(P/8) bytes and
holds no finished masks either (checkpoints read them back from the bank one
task at a time), so memory does not grow with the tasks learned.

**Resume.** ``resume=True`` on an existing bank checks that it was made with the
same settings (base network and its fingerprint, benchmark, scenario, training
configuration, device) and continues with the first missing task.  Tasks are
trained from their own SeedSequence seeds, so the resumed bank equals an
uninterrupted run's.  The worker count and engine are not part of the settings:
they do not change the masks.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from hopfield_masks.safety.files import fsync_folder
from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.safety.locking import bank_lock

from ..config import ModelConfig
from ..errors import ConfigError, SupSupError
from ..models import SupSupNet
from .engines import check_workers, make_engine
from .evaluation import gg_accuracy_of_masks
from .jobs import TaskOutcome, TrainingSetup

__all__ = ["BankTrainingConfig", "BankTrainingResult", "TaskProgress", "train_to_bank", "ResumeMismatchError"]

_BACKENDS = ("hdf5-packed", "hdf5-sparse", "hdf5-entropy")


class ResumeMismatchError(SupSupError, ValueError):
    """``--resume`` on a bank made with other settings (the message names what differs)."""

    def __init__(self, path: str, differences: Sequence[str]) -> None:
        self.path, self.differences = path, list(differences)
        super().__init__(f"--resume: {path} was trained with other settings ({'; '.join(differences)})")

    def __reduce__(self):
        return (type(self), (self.path, self.differences))


@dataclass(frozen=True)
class BankTrainingConfig:
    """How :func:`train_to_bank` runs (validated on construction).

    Parameters
    ----------
    n_tasks : int
        Tasks the bank holds at the end (stream tasks ``0 .. n_tasks - 1``).
    eval_at : tuple of int, optional
        Task counts after which GG accuracy of every learned task is measured; None =
        after the last task only; ``()`` = never (each task's own accuracy is still measured).
    full_matrix : bool
        Measure every learned task after every task (the whole accuracy matrix, O(T^2)).
    workers : int
        Tasks trained at once (local processes, or Ray actors with ``ray``): at most
        :func:`~supsup_core.training.engines.max_workers`; no more are started than there are tasks to train.
    ray : bool
        Train on Ray (``ray_address`` or a local instance).
    ray_address : str, optional
        An existing Ray cluster.
    resume : bool
        Continue an existing bank made with the same settings.
    overwrite : bool
        Replace an existing bank instead (ignored with ``resume``).
    batched : int
        Tasks trained at once in one batched step on the device (1: one task per step).
    backend : str
        ``hdf5-packed`` (1 bit per entry), ``hdf5-sparse`` (16-bit indices of the kept entries) or
        ``hdf5-entropy`` (range-coded, within 1 % of ``n * H(p)``; each append first decodes the tasks
        already in the bank, about 4 ms per LeNet 300-100 task here, so its commits grow with the bank).
        Used when the bank is created; ``resume`` continues the bank's own backend.

    Examples
    --------
    >>> BankTrainingConfig(n_tasks=10, eval_at=(5, 10)).checkpoints()
    (5, 10)
    >>> BankTrainingConfig(n_tasks=10, eval_at=(11,))
    Traceback (most recent call last):
    ...
    supsup_core.errors.ConfigError: --eval-at: expected task counts in 1..10, received (11,)
    """

    n_tasks: int
    eval_at: tuple[int, ...] | None = None
    full_matrix: bool = False
    workers: int = 1
    ray: bool = False
    ray_address: str | None = None
    resume: bool = False
    overwrite: bool = False
    backend: str = "hdf5-packed"
    batched: int = 1

    def __post_init__(self) -> None:
        n = self.n_tasks
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("--tasks", "an integer >= 1", n)
        if self.eval_at is not None:
            at = tuple(self.eval_at)
            if any(isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= n for c in at):
                raise ConfigError("--eval-at", f"task counts in 1..{n}", at)
            object.__setattr__(self, "eval_at", tuple(sorted(set(at))))
        w = self.workers
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ConfigError("--workers", "an integer >= 1", w)
        check_workers(w, ray=self.ray is True, address=self.ray_address, argument="--workers")  # the machine's bound
        for name in ("full_matrix", "ray", "resume", "overwrite"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, "a bool", getattr(self, name))
        b = self.batched
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError("--batched", "an integer >= 1", b)
        if b > 1 and (self.ray or self.workers > 1):
            raise ConfigError("--batched", "1 with --workers or --ray (a batched step already fills one device)", b)
        if self.ray_address is not None and not self.ray:
            raise ConfigError("ray_address", "None unless ray=True", repr(self.ray_address))
        if self.backend not in _BACKENDS:
            raise ConfigError("--backend", f"one of {', '.join(_BACKENDS)}", repr(self.backend))

    def checkpoints(self) -> tuple[int, ...]:
        """Task counts after which every learned task is evaluated."""
        if self.full_matrix:
            return tuple(range(1, self.n_tasks + 1))
        return (self.n_tasks,) if self.eval_at is None else self.eval_at


@dataclass(frozen=True)
class TaskProgress:
    """What the progress callback receives after each committed task."""

    done: int
    total: int
    started_at: int
    outcome: TaskOutcome
    elapsed: float


@dataclass(frozen=True)
class BankTrainingResult:
    """What :func:`train_to_bank` did.

    Attributes
    ----------
    gg : dict[int, float]
        Each task's GG accuracy measured right after training it (all tasks of the bank).
    rows : dict[int, dict[int, float]]
        Accuracy-matrix rows measured at checkpoints: ``{task count: {task: accuracy}}``.
    resumed_from : int
        Tasks already in the bank at the start.
    train_seconds, eval_seconds : dict[int, float]
        Per task trained in this call: training and own-accuracy time in the worker.
    commit_seconds : dict[int, float]
        Per task trained in this call: time to append it to the bank.
    checkpoint_seconds : dict[int, float]
        Per checkpoint reached in this call: time to evaluate every task.
    wall_seconds : float
        Whole call.
    notes : list[str]
        What the call changed besides adding tasks (a resumed bank's unknown-input threshold dropped).
    """

    path: str
    n_tasks: int
    gg: dict[int, float]
    rows: dict[int, dict[int, float]]
    resumed_from: int
    train_seconds: dict[int, float] = field(default_factory=dict)
    eval_seconds: dict[int, float] = field(default_factory=dict)
    commit_seconds: dict[int, float] = field(default_factory=dict)
    checkpoint_seconds: dict[int, float] = field(default_factory=dict)
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def forgetting(self) -> float:
        """Mean over tasks of (accuracy right after training - accuracy at the last checkpoint); NaN without one.

        SupSup masks never change, so this is exactly 0 unless something is broken.
        """
        if not self.rows:
            return float("nan")
        last = self.rows[max(self.rows)]
        drops = [self.gg[t] - a for t, a in last.items() if t in self.gg]
        return float(sum(drops) / len(drops)) if drops else float("nan")


def _settings(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a bank's metadata that must match for ``--resume`` (entries of the wrong type never match)."""
    bench = metadata.get("benchmark")
    bench = dict(bench) if isinstance(bench, Mapping) else {"benchmark": repr(bench)[:80]}
    bench.pop("n_tasks", None)  # a resumed run may extend the stream; task i is the same task
    training = metadata.get("training")
    training = training if isinstance(training, Mapping) else {}
    model = metadata.get("model")
    if isinstance(model, Mapping) and "arch" in model:  # a built-in's config: fields added since have their defaults
        try:
            model = ModelConfig.from_dict(dict(model)).to_dict()
        except ConfigError:
            pass  # reported as a difference below
    out = {
        "model": model,
        "base_fingerprint": metadata.get("base_fingerprint"),
        "benchmark": bench,
        "scenario": training.get("scenario"),
        "config": training.get("config"),
        "drop_last": training.get("drop_last"),
        "device": training.get("device"),
    }
    if "architecture" in metadata:  # banks written before the architecture was recorded are checked without it
        out["architecture"] = metadata["architecture"]
    return out


def _differences(stored: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    out = []
    for key in wanted:
        if key not in stored and key == "architecture":
            continue
        a, b = stored.get(key), wanted.get(key)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b)):
                if a.get(k) != b.get(k):
                    out.append(f"{key}.{k}: bank has {a.get(k)!r}, this run has {b.get(k)!r}")
        elif key == "base_fingerprint":
            out.append(f"base_fingerprint: bank has {str(a)[:16]}..., this run has {str(b)[:16]}...")
        elif key == "architecture":
            from ..persistence import _first_layer_difference

            out.append(f"architecture: {_first_layer_difference(a, b)}")
        else:
            out.append(f"{key}: bank has {a!r}, this run has {b!r}")
    return out


def _metadata(model: Any, setup: TrainingSetup, benchmark: Mapping[str, Any], scenario: str, device: str,
              n_tasks: int, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The bank metadata, in the layout :func:`supsup_core.persistence.save_masks` writes."""
    from ..persistence import model_metadata

    return {
        **model_metadata(model),
        "n_tasks": n_tasks,
        "benchmark": dict(benchmark),
        "training": {
            "scenario": scenario,
            "config": dict(setup.train),
            "drop_last": setup.drop_last,
            "device": device,
            **(dict(extra) if extra else {}),
        },
    }


def _checkpoint_row(model: Any, stream: Any, path: Path, latest: TaskOutcome, batch_size: int) -> dict[int, float]:
    """GG accuracy of every task up to ``latest``: earlier masks read back from the bank one task at a time.

    The driver never holds the finished masks (memory O(one task)); reading them back
    from the file also checks what was committed, not a copy in memory.
    """
    from ..persistence import read_bank_statistics

    norms = {name: norm.num_features for name, norm in model.norm_layers().items()}
    row = {}
    with open_bank(path, "r") as bank:
        for t in range(latest.task):
            stats = read_bank_statistics(bank, str(t), norms, str(path))
            row[t] = gg_accuracy_of_masks(model, stream, t, bank.read_task(str(t)), batch_size, stats)[0]
    row[latest.task] = gg_accuracy_of_masks(model, stream, latest.task, latest.masks, batch_size, latest.statistics)[0]
    return row


def _accuracy(attrs: Any, key: str) -> float | None:
    """A stored accuracy from task attributes, or None when absent or not a number in [0, 1]."""
    acc = attrs.get("accuracy") if isinstance(attrs, Mapping) else None
    value = acc.get(key) if isinstance(acc, Mapping) else None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value <= 1.0
    return float(value) if ok else None


def _resumable(path: Path, run: BankTrainingConfig, setup: TrainingSetup, metadata: dict[str, Any],
               gg: dict[int, float], rows: dict[int, dict[int, float]], notes: list[str]) -> int:
    """Check the bank at ``path`` can be continued by this run (nothing written); fill ``gg``/``rows`` from its tasks,
    ``metadata`` with what its first run recorded and ``notes`` with what resuming drops; return the number of tasks
    it holds."""
    from ..persistence import check_declared_model

    if not path.exists():
        raise ConfigError("--resume", "an existing bank to continue", f"{path} does not exist")
    with open_bank(path, "r") as bank:
        stored = dict(bank.metadata)
        names = list(bank.tasks())
        attrs = [bank.task_attrs(n) for n in names]
    differences = _differences(_settings(stored), _settings(metadata))
    if stored.get("producer") != "supsup_core":
        differences.insert(0, f"producer: bank has {stored.get('producer')!r}, this run has 'supsup_core'")
    if differences:
        raise ResumeMismatchError(str(path), differences)
    if len(names) > run.n_tasks:
        raise ConfigError("--tasks", f"at least the {len(names)} tasks the bank already holds", run.n_tasks)
    if names != [str(i) for i in range(len(names))]:
        raise ConfigError(str(path), f"tasks named 0..{len(names) - 1} in order", names[:5])
    if setup.model_config is not None:
        check_declared_model(setup.model_config, path)  # the stored masks' layers are this model's
    with open_bank(path, "r") as bank:
        for name in names:  # every committed task reads back (checksums), one at a time
            bank.read_task(name)
    for i, a in enumerate(attrs):
        value = _accuracy(a, "gg")
        if value is not None:
            gg[i] = value
        row = a.get("gg_row") if isinstance(a, Mapping) else None
        if isinstance(row, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row):
            rows[i + 1] = {t: float(v) for t, v in enumerate(row)}
    metadata["n_tasks"] = len(names)
    if "unknown_threshold" in stored and len(names) < run.n_tasks:
        notes.append(f"{path}: its unknown-input threshold was calibrated on {len(names)} tasks and is dropped; "
                     "calibrate it again (supsup_core.inference.calibrate_unknown) once the new tasks are in")
    training = stored.get("training") if isinstance(stored.get("training"), Mapping) else {}
    metadata["training"].update({k: v for k, v in training.items() if k not in metadata["training"]})
    return len(names)


def check_training_data(model: Any, stream: Any, task: int, setup: TrainingSetup) -> None:
    """Refuse, before anything is written, a model that cannot take the stream's inputs or labels.

    One small training batch of ``task`` (at least two images, for batch statistics) goes through the model
    with every mask on (:meth:`SupSupNet.check_input`); its labels must index the model's outputs.
    """
    config = setup.train_config
    size = max(2, min(config.batch_size, 16))
    size = min(size, stream.train_size(task)) if not setup.drop_last else size
    batches = stream.train_batches(task, batch_size=size, seed=config.seed, n_batches=1, drop_last=setup.drop_last)
    x, y, _ = next(iter(batches))
    with model.preserving_selection():
        model.eval()
        model.check_input(x.to(model.device), "stream")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= model.output_size):
        raise ConfigError("labels", f"class indices in 0..{model.output_size - 1} (the model's outputs)",
                          f"labels {int(y.min())}..{int(y.max())} in task {task}")


def train_to_bank(
    path: str | os.PathLike,
    setup: TrainingSetup,
    run: BankTrainingConfig,
    *,
    benchmark: Mapping[str, Any],
    scenario: str,
    device: str = "cpu",
    extra_training: Mapping[str, Any] | None = None,
    on_task: Callable[[TaskProgress], Any] | None = None,
    on_checkpoint: Callable[[int], Any] | None = None,
    batch_callbacks: tuple = (),
    model: Any = None,
    stream: Any = None,
) -> BankTrainingResult:
    """Train stream tasks into the bank at ``path``, committing each one as it finishes (module docstring).

    Parameters
    ----------
    path : path-like
        The bank: created (``run.overwrite`` replaces one), or continued with ``run.resume``.
    setup : TrainingSetup
        Base network, stream, training configuration.
    run : BankTrainingConfig
        Tasks, checkpoints, workers, resume.
    benchmark : mapping
        The bank's ``benchmark`` metadata (:func:`supsup_core.persistence.benchmark_metadata`).
    scenario : str
        Recorded in the metadata and checked on resume.
    device : str
        Where the driver evaluates (and, inline, trains).
    extra_training : mapping, optional
        More JSON-safe keys for the ``training`` metadata (checked on resume only through the fields above).
    on_task : callable, optional
        ``on_task(TaskProgress)`` after each committed task.
    on_checkpoint : callable, optional
        ``on_checkpoint(task_count)`` before a checkpoint's evaluation starts.
    batch_callbacks : tuple
        Trainer callbacks (inline engine only, e.g. a per-batch progress bar).
    model : SupSupNet, optional
        The wrapped model to train (with no finished tasks), instead of one rebuilt from
        ``setup.model``: what a module wrapped in Python needs.
    stream : TaskStream, optional
        The stream, instead of one rebuilt from ``setup.benchmark`` (a stream of the user's own data).
        Without rebuildable descriptions, worker processes are forked from this one (Linux), and
        Ray cannot be used.

    Raises
    ------
    ResumeMismatchError
        ``run.resume`` on a bank made with other settings; nothing is modified.
    ConfigError
        The bank exists without ``resume``/``overwrite``, holds more tasks than ``run.n_tasks``,
        or is not a supsup_core bank.
    """
    from ..persistence import stream_from_metadata, write_bank_task  # local: no import cycle

    start_time = time.perf_counter()
    path = Path(path)
    if not isinstance(setup, TrainingSetup):
        raise ConfigError("setup", "a TrainingSetup", type(setup).__name__)
    if not isinstance(run, BankTrainingConfig):
        raise ConfigError("run", "a BankTrainingConfig", type(run).__name__)
    if stream is None:
        stream = stream_from_metadata({"benchmark": dict(setup.benchmark)}, setup.data_dir)
    if run.n_tasks > stream.n_tasks:
        raise ConfigError("--tasks", f"at most the stream's {stream.n_tasks} tasks", run.n_tasks)
    if model is None:
        model = setup.build_model()
    elif not isinstance(model, SupSupNet) or model.num_tasks or model.spec != setup.model:
        got = type(model).__name__ if not isinstance(model, SupSupNet) else f"a model with {model.num_tasks} tasks"
        raise ConfigError("model", "a wrapped model of the setup's description with no finished tasks", got)
    model = model.to(device)
    if model.wrap_config.transfer and (run.workers > 1 or run.ray or run.batched > 1 or run.resume):
        raise ConfigError("transfer", "False with workers, Ray, batched steps or resume (each task starts from the "
                          "scores of every earlier task: they train one after another, in one run)", True)
    metadata = _metadata(model, setup, benchmark, scenario, device, 0, extra_training)

    gg: dict[int, float] = {}
    rows: dict[int, dict[int, float]] = {}
    notes: list[str] = []
    start = 0
    if run.resume:
        start = _resumable(path, run, setup, metadata, gg, rows, notes)
    elif path.exists() and not run.overwrite:
        raise ConfigError("--out", "a new file (or pass --overwrite, or --resume to continue it)", f"existing file {path}")
    if start < run.n_tasks:
        check_training_data(model, stream, start, setup)  # the model fits its data: refused before the bank is touched
    checkpoints = set(run.checkpoints())
    result = BankTrainingResult(str(path), run.n_tasks, gg, rows, start, notes=notes)
    engine = make_engine(run.workers, run.ray, run.ray_address, device=device, callbacks=batch_callbacks, model=model,
                         batched=run.batched, scenario=scenario, stream=stream)
    # The bank's writer lock for the whole run: a second writer (another train, even with --overwrite) waits, then
    # fails, instead of replacing the file between two of this run's commits.
    with engine, bank_lock(path, exclusive=True):
        if start < run.n_tasks:
            engine.prepare()  # an unreachable cluster fails here, before the bank is touched
        target = path
        if not run.resume:
            # a new bank is built beside the destination and moved over it once its first task is in: a run that
            # fails before that leaves the destination as it was (an existing bank, or nothing)
            target = path.parent / f".{path.name}.{os.getpid()}.train.tmp"
            with create_bank(target, backend=run.backend, metadata=metadata, overwrite=True):
                pass
        try:
            for outcome in engine.outcomes(setup, range(start, run.n_tasks)):
                t = outcome.task
                gg[t] = outcome.gg_accuracy
                task_attrs: dict[str, Any] = {"accuracy": {"gg": outcome.gg_accuracy}}
                if t + 1 in checkpoints:
                    if on_checkpoint is not None:
                        on_checkpoint(t + 1)
                    c0 = time.perf_counter()
                    row = _checkpoint_row(model, stream, target, outcome, setup.eval_batch_size)
                    result.checkpoint_seconds[t + 1] = time.perf_counter() - c0
                    rows[t + 1] = dict(row)
                    task_attrs["gg_row"] = [row[j] for j in range(t + 1)]
                c0 = time.perf_counter()
                metadata["n_tasks"] = t + 1
                with open_bank(target, "a") as bank:
                    write_bank_task(bank, str(t), outcome.masks, outcome.statistics, attrs=task_attrs)
                    bank.set_metadata(metadata)
                if target != path:  # the first task is in: the new bank takes the destination's name
                    os.replace(target, path)
                    fsync_folder(path.parent)
                    target = path
                result.commit_seconds[t] = time.perf_counter() - c0
                result.train_seconds[t] = outcome.train_seconds
                result.eval_seconds[t] = outcome.eval_seconds
                if on_task is not None:
                    on_task(TaskProgress(t + 1, run.n_tasks, start, outcome, time.perf_counter() - start_time))
            if target != path:  # nothing was trained (no task to train): the empty bank is the result
                os.replace(target, path)
                fsync_folder(path.parent)
        finally:
            if target != path:
                with contextlib.suppress(OSError):
                    target.unlink()
    object.__setattr__(result, "wall_seconds", time.perf_counter() - start_time)
    return result
