"""Scenario evaluation: GG (task given) and GNs / GNu (task inferred), REFERENCE.md §2.3–2.4.

Model task ``i`` is the mask trained on stream task ``i``.  A prediction is the
argmax over **all** outputs, superfluous neurons included (the reference does the
same; an s-neuron prediction is simply wrong).

Inferred-task protocols (``protocol=``):

``"first-image"``
    the paper's: the first image of each test batch (128) infers the task, the
    whole batch is scored with that mask;
``"per-image"``
    every image infers its own task and is scored with its own mask;
``"batch"``
    the whole batch infers one task (the reference's "full batch").

Scenarios (``scenario=``): **GNu** counts an image wrong whenever its inferred
task is not its true task (labels are unshared, so a wrong task is a wrong
ℓ·k-way answer); **GNs** scores the image with whatever mask was inferred.

Besides the scenario accuracy, :func:`evaluate_inferred` reports the
*task-inference accuracy*: the fraction of test images for which single-image
inference picks the right task (independent of the protocol).

Inferred-task evaluation goes through the tasks in *windows* of consecutive
tasks holding about :data:`DECISION_IMAGES_PER_WINDOW` deciding images: first
every decision of the window is taken in one
:func:`~supsup_core.inference.groups.infer_groups` call (for MLPs batched
rank-one passes without Numba, each reading every mask once), then its tasks
are scored.  Memory stays bounded by one window, whatever the number of
tasks; with single-image inference measured, a first-image decision is its first
image's single-image decision.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..validate import is_int
from ..heap import release_free_memory
from ..inference import DEFAULT_METHOD, METHODS, OBJECTIVES
from ..inference.groups import infer_groups
from ..layers.norm import TaskStatistics

__all__ = ["GGResult", "InferredResult", "evaluate_gg", "gg_accuracy_of_masks", "explicit_state", "evaluate_inferred",
           "PROTOCOLS", "METHODS", "OBJECTIVES"]

PROTOCOLS = ("first-image", "per-image", "batch")
_SCENARIOS = ("gnu", "gns")


def _mean(values: Mapping[int, float]) -> float:
    return float(sum(values.values()) / len(values)) if values else float("nan")


@dataclass(frozen=True)
class GGResult:
    """GG accuracy per task (``{task: accuracy}``) and the number of test images per task.

    >>> GGResult({0: 0.5, 1: 1.0}, {0: 10, 1: 10}).mean_accuracy
    0.75
    """

    accuracy: dict[int, float]
    n_images: dict[int, int]

    @property
    def mean_accuracy(self) -> float:
        """Accuracy averaged over tasks (the paper's headline number)."""
        return _mean(self.accuracy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (task keys become strings)."""
        return {
            "accuracy": {str(t): a for t, a in self.accuracy.items()},
            "n_images": {str(t): n for t, n in self.n_images.items()},
            "mean_accuracy": self.mean_accuracy,
        }


@dataclass(frozen=True)
class InferredResult:
    """Accuracy with inferred tasks, per task.

    Attributes
    ----------
    scenario, method, objective, protocol : str
        How it was measured.
    accuracy : dict[int, float]
        Scenario accuracy per true task.
    decision_accuracy : dict[int, float]
        Fraction of the protocol's decisions (batches, or images for ``per-image``) that picked the right task.
    task_inference_accuracy : dict[int, float]
        Fraction of test images whose single-image inference picks the right task (empty if not measured).
    n_images : dict[int, int]
        Test images per task.
    """

    scenario: str
    method: str
    objective: str
    protocol: str
    accuracy: dict[int, float]
    decision_accuracy: dict[int, float]
    task_inference_accuracy: dict[int, float] = field(default_factory=dict)
    n_images: dict[int, int] = field(default_factory=dict)

    @property
    def mean_accuracy(self) -> float:
        """Scenario accuracy averaged over tasks."""
        return _mean(self.accuracy)

    @property
    def mean_task_inference_accuracy(self) -> float:
        """Single-image task-inference accuracy averaged over tasks (NaN if not measured)."""
        return _mean(self.task_inference_accuracy)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (task keys become strings; NaN means become None)."""
        tia = self.mean_task_inference_accuracy
        return {
            "scenario": self.scenario,
            "method": self.method,
            "objective": self.objective,
            "protocol": self.protocol,
            "accuracy": {str(t): a for t, a in self.accuracy.items()},
            "decision_accuracy": {str(t): a for t, a in self.decision_accuracy.items()},
            "task_inference_accuracy": {str(t): a for t, a in self.task_inference_accuracy.items()},
            "n_images": {str(t): n for t, n in self.n_images.items()},
            "mean_accuracy": self.mean_accuracy,
            "mean_task_inference_accuracy": None if tia != tia else tia,
        }


def _device_of(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if device is not None:
        return torch.device(device)
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _check_tasks(
    model: Any, stream: Any, tasks: Iterable[int] | None, task_to_mask: Mapping[int, int] | None, need_mask: bool
) -> tuple[list[int], dict[int, int | None]]:
    """Validate the stream tasks to evaluate; return them and each one's expected mask (None if it has none)."""
    mapping = dict(task_to_mask) if task_to_mask is not None else None
    if tasks is not None:
        chosen = list(tasks)
    elif mapping is not None:
        chosen = sorted(mapping)
    else:
        chosen = list(range(min(model.num_tasks, stream.n_tasks)))
    if not chosen:
        raise ConfigError("tasks", "at least one task the model has learned", "no tasks")
    expected: dict[int, int | None] = {}
    for t in chosen:
        if not is_int(t) or not 0 <= t < stream.n_tasks:
            raise ConfigError("tasks", f"stream task indices in 0..{stream.n_tasks - 1}", t)
        mask = mapping.get(t) if mapping is not None else t
        if mask is not None and not 0 <= mask < model.num_tasks:
            mask = None
        if mask is None and need_mask:
            raise ConfigError(
                "tasks", f"tasks with a learned mask (the model has {model.num_tasks}; see task_to_mask)", t
            )
        expected[t] = mask
    return chosen, expected


@contextlib.contextmanager
def _evaluating(model: Any) -> Iterator[None]:
    """Put ``model`` in eval mode, restore its mode and drop any superposition afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.set_alphas(None)
        model.train(was_training)


def evaluate_gg(
    model: Any,
    stream: Any,
    tasks: Iterable[int] | None = None,
    *,
    task_to_mask: Mapping[int, int] | None = None,
    batch_size: int = 128,
    progress: Callable[[int], Any] | None = None,
) -> GGResult:
    """GG accuracy: each task's test set classified with its own (given) mask.

    Parameters
    ----------
    model : SupSupNet
        Holds the finished masks; model task ``i`` belongs to stream task ``i``.
    stream : TaskStream
        Provides ``test_batches``.
    tasks : iterable of int, optional
        Which stream tasks (default: every task the model has learned that the stream has).
    task_to_mask : mapping, optional
        The mask of each stream task when it is not the identity (e.g. after NNs training).
    batch_size : int
        Test batch size (does not change the result, only memory and speed).
    progress : callable, optional
        Called with ``1`` after each task (e.g. to advance a progress bar).
    """
    chosen, expected = _check_tasks(model, stream, tasks, task_to_mask, need_mask=True)
    device = _device_of(model)
    accuracy: dict[int, float] = {}
    n_images: dict[int, int] = {}
    with _evaluating(model):
        for t in chosen:
            correct = torch.zeros((), dtype=torch.int64, device=device)
            n = 0
            model.set_task(int(expected[t]))  # once per task: the masked weights stay cached across its batches
            for x, y, _ in stream.test_batches(t, batch_size, device=device):
                with torch.no_grad():
                    correct += (model(x).argmax(dim=1) == y).sum()
                n += y.shape[0]
            accuracy[t] = int(correct) / n if n else float("nan")
            n_images[t] = n
            release_free_memory()
            if progress is not None:
                progress(1)
    return GGResult(accuracy, n_images)


def _mask_tensor(mask: Any, device: Any) -> torch.Tensor:
    """``mask`` as a float32 tensor on ``device``; NumPy arrays are copied (they may be read-only, e.g. from Ray)."""
    if isinstance(mask, torch.Tensor):
        return mask.to(device, torch.float32)
    return torch.from_numpy(np.array(mask, dtype=np.float32)).to(device)


def explicit_state(model: Any, masks: Mapping[str, Any], statistics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One task's masks (and per-task batch-norm statistics ``(2, C)`` mean and variance) as the explicit overrides
    ``model(x, masks=...)`` takes: it then computes exactly what selecting that task computes."""
    device = _device_of(model)
    explicit: dict[str, Any] = {name: _mask_tensor(m, device) for name, m in masks.items()}
    norms = model.norm_layers() if hasattr(model, "norm_layers") else {}
    if norms:
        if statistics is None or set(statistics) != set(norms):
            raise ConfigError("statistics", f"the statistics of the batch norms {list(norms)}", sorted(statistics or {}))
        for name in norms:
            stats = _mask_tensor(statistics[name], device)  # (2, C)
            explicit[name] = TaskStatistics(stats[0], stats[1])
    return explicit


def gg_accuracy_of_masks(
    model: Any, stream: Any, task: int, masks: Mapping[str, Any], batch_size: int = 128,
    statistics: Mapping[str, Any] | None = None,
) -> tuple[float, int]:
    """GG accuracy of explicit ``masks`` (``{layer: 0/1 array}``) on stream task ``task``'s test set, and its size.

    The model's own finished tasks and selection are not used or changed, so this
    evaluates a mask the model does not hold (a task just trained, or one read from a bank).
    A model with per-task batch norms also needs the task's ``statistics``.
    """
    device = _device_of(model)
    explicit = explicit_state(model, masks, statistics)
    was_training = model.training
    model.eval()
    correct, n = 0, 0
    try:
        with torch.no_grad():
            for x, y, _ in stream.test_batches(task, batch_size, device=device):
                correct += int((model(x, masks=explicit).argmax(dim=1) == y).sum())
                n += y.shape[0]
    finally:
        model.train(was_training)
    return (correct / n if n else float("nan")), n


#: Test images whose decisions one window of tasks gathers before it scores them: with the embedded 1,000-image
#: test sets, per-image decisions cover about one task, first-image ones about 64 tasks' test batches (8 each).
DECISION_IMAGES_PER_WINDOW = 512


@dataclass(frozen=True)
class _Decisions:
    """A task's inferred tasks: per test image (single-image inference) and per test batch (the protocol's)."""

    per_image: torch.Tensor | None
    per_batch: torch.Tensor | None


@dataclass(frozen=True)
class _Window:
    """Consecutive tasks, the images that decide for them (``x``, one after another) and each task's batch sizes."""

    tasks: list[int]
    x: torch.Tensor
    sizes: dict[int, list[int]]


def _windows(stream: Any, tasks: list[int], batch_size: int, every_image: bool, device: torch.device) -> Iterator[_Window]:
    """Runs of ``tasks`` with their deciding images (every image, or each batch's first), each run holding at least
    :data:`DECISION_IMAGES_PER_WINDOW` of them (the last run may hold fewer).

    One buffer, allocated for the first window and grown only for an unusually large task, holds the images: small
    per-batch copies between the per-task tensors would fragment the heap.
    """
    buffer: torch.Tensor | None = None
    window: list[int] = []
    sizes: dict[int, list[int]] = {}
    rows = 0
    for t in tasks:
        n = stream.test_size(t)  # builds the task's test set once: test_batches below reuses it
        need = n if every_image else -(-n // batch_size)
        window.append(t)
        sizes[t] = []
        for x, _, _ in stream.test_batches(t, batch_size, device=device):
            part = x if every_image else x[:1]
            if buffer is None or rows + need > buffer.shape[0]:
                grown = torch.empty((max(rows + need, DECISION_IMAGES_PER_WINDOW - 1 + need), *x.shape[1:]),
                                    dtype=x.dtype, device=x.device)
                if buffer is not None:
                    grown[:rows] = buffer[:rows]
                buffer = grown
            buffer[rows : rows + part.shape[0]] = part
            rows += part.shape[0]
            need -= part.shape[0]
            sizes[t].append(x.shape[0])
        if rows >= DECISION_IMAGES_PER_WINDOW:
            yield _Window(window, buffer[:rows], sizes)
            window, sizes, rows = [], {}, 0
    if window:
        yield _Window(window, buffer[:rows] if buffer is not None else torch.empty(0), sizes)


def _decide(
    window: _Window, protocol: str, per_image: bool, infer: Callable[[torch.Tensor, list[int] | None], torch.Tensor]
) -> dict[int, _Decisions]:
    """Every decision about the window's tasks, from one ``infer(x, sizes)`` call per kind of decision."""
    tasks, sizes = window.tasks, window.sizes
    if window.x.shape[0] == 0:  # no test images at all
        none = torch.zeros(0, dtype=torch.long)
        return {t: _Decisions(none if per_image else None, none) for t in tasks}
    batch_sizes = [b for t in tasks for b in sizes[t]]
    singles = infer(window.x, None) if per_image else None  # (images,)
    if protocol == "batch":
        by_batch = infer(window.x, batch_sizes)
    elif protocol == "first-image":
        # the first image decides its batch: with single-image inference at hand, that is its own decision
        starts = torch.cumsum(torch.tensor([0, *batch_sizes[:-1]]), dim=0)
        by_batch = singles[starts] if singles is not None else infer(window.x, None)
    else:
        by_batch = None  # per-image: every image decides for itself
    out: dict[int, _Decisions] = {}
    image_at = batch_at = 0
    for t in tasks:
        n, n_batches = sum(sizes[t]), len(sizes[t])
        out[t] = _Decisions(
            None if singles is None else singles[image_at : image_at + n],
            None if by_batch is None else by_batch[batch_at : batch_at + n_batches],
        )
        image_at, batch_at = image_at + n, batch_at + n_batches
    return out


def evaluate_inferred(
    model: Any,
    stream: Any,
    tasks: Iterable[int] | None = None,
    method: str = DEFAULT_METHOD,
    objective: str = "H",
    protocol: str = "first-image",
    scenario: str = "gnu",
    *,
    real_classes: int | None = None,
    task_to_mask: Mapping[int, int] | None = None,
    batch_size: int = 128,
    measure_task_inference: bool | None = None,
    progress: Callable[[int], Any] | None = None,
) -> InferredResult:
    """Accuracy when the task must be inferred at test time (GNu or GNs), per task.

    Parameters
    ----------
    model, stream, tasks, batch_size
        As :func:`evaluate_gg` (``batch_size`` matters here: it is the group a first-image or batch decision covers).
        The stream also needs ``test_size`` and ``release_cache`` (each task's cached tensors are dropped once it
        is scored).
    method : {"rerank", "oneshot", "binary"}
        Task-inference algorithm (:func:`supsup_core.inference.infer_task`): ``"rerank"``, the default
        (:data:`~supsup_core.inference.DEFAULT_METHOD`, the best measured), or the paper's ``"oneshot"`` and
        ``"binary"``.
    objective : {"H", "G"}
        Entropy, or the superfluous-neuron objective G.
    protocol : {"first-image", "per-image", "batch"}
        Which images decide the task for which (module docstring).
    scenario : {"gnu", "gns"}
        GNu: a wrong inferred task makes the answer wrong; GNs: scored with the inferred mask.
    real_classes : int, optional
        Real (labelled) outputs for objective G; default ``stream.output_classes``.
    task_to_mask : mapping, optional
        The right mask of each stream task when it is not the identity (NNs). GNs tasks may
        lack one (their decision and task-inference accuracies are then NaN).
    measure_task_inference : bool, optional
        Also run single-image inference on every test image (the task-inference accuracy).
        Default: yes, except for models with batch statistics (BNNet), where a lone image
        has no statistics; those models also need ``protocol="batch"``.
    progress : callable, optional
        Called with ``1`` after each task.
    """
    for name, value, allowed in (
        ("method", method, METHODS),
        ("objective", objective, OBJECTIVES),
        ("protocol", protocol, PROTOCOLS),
        ("scenario", scenario, _SCENARIOS),
    ):
        if value not in allowed:
            raise ConfigError(name, f"one of {list(allowed)}", repr(value))
    chosen, expected = _check_tasks(model, stream, tasks, task_to_mask, need_mask=scenario == "gnu")
    batch_stats = bool(getattr(model, "has_batch_statistics", False))
    if batch_stats and protocol != "batch":
        raise ConfigError("protocol", "'batch' for a model with batch-statistics unit masks (bnnet)", repr(protocol))
    if measure_task_inference is None:
        measure_task_inference = not batch_stats
    real = stream.output_classes if real_classes is None else real_classes
    device = _device_of(model)
    per_image = measure_task_inference or protocol == "per-image"

    def infer(x: torch.Tensor, sizes: list[int] | None) -> torch.Tensor:
        return infer_groups(model, x, sizes, method, objective, real_classes=real)

    accuracy: dict[int, float] = {}
    decisions: dict[int, float] = {}
    inference: dict[int, float] = {}
    n_images: dict[int, int] = {}
    with _evaluating(model):
        unique = list(dict.fromkeys(chosen))  # a task asked twice is evaluated once (results are keyed by task)
        for window in _windows(stream, unique, batch_size, per_image or protocol == "batch", device):
            decided = _decide(window, protocol, per_image, infer)
            selected = None  # the mask selected for scoring (inference may use the model: select again)
            release_free_memory()
            for t in window.tasks:
                right = -1 if expected[t] is None else expected[t]  # -1 matches no inferred task
                correct = right_decisions = n_decisions = right_images = n = 0
                made = decided.pop(t)
                for b, (x, y, _) in enumerate(stream.test_batches(t, batch_size, device=device)):
                    size = y.shape[0]
                    singles_b = None if made.per_image is None else made.per_image[n : n + size].to(device)
                    chosen_tasks = singles_b if protocol == "per-image" else made.per_batch[b].to(device).expand(size)  # (B,)
                    pred = torch.empty_like(y)
                    for task_hat in torch.unique(chosen_tasks).tolist():
                        rows = chosen_tasks == task_hat  # (B,) bool
                        if task_hat != selected:  # consecutive batches mostly pick the same mask: keep its W * M
                            model.set_task(int(task_hat))
                            selected = task_hat
                        with torch.no_grad():
                            pred[rows] = model(x[rows]).argmax(dim=1)
                    hit = pred == y
                    if scenario == "gnu":
                        hit &= chosen_tasks == right
                    correct += int(hit.sum())
                    if protocol == "per-image":
                        right_decisions += int((chosen_tasks == right).sum())
                        n_decisions += size
                    else:
                        right_decisions += int(chosen_tasks[0] == right)
                        n_decisions += 1
                    if singles_b is not None:
                        right_images += int((singles_b == right).sum())
                    n += size
                accuracy[t] = correct / n if n else float("nan")
                known = n and expected[t] is not None
                decisions[t] = right_decisions / n_decisions if known else float("nan")
                if measure_task_inference:
                    inference[t] = right_images / n if known else float("nan")
                n_images[t] = n
                stream.release_cache()
                release_free_memory()
                if progress is not None:
                    progress(1)
    return InferredResult(scenario, method, objective, protocol, accuracy, decisions, inference, n_images)
