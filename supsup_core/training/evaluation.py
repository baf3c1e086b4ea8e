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
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..heap import release_free_memory
from ..inference import METHODS, OBJECTIVES, infer_task

__all__ = ["GGResult", "InferredResult", "evaluate_gg", "gg_accuracy_of_masks", "evaluate_inferred", "PROTOCOLS", "METHODS", "OBJECTIVES"]

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
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < stream.n_tasks:
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


def _predict(model: Any, x: torch.Tensor, task: int) -> torch.Tensor:
    """Class predictions ``(B,)`` of ``x`` with task ``task``'s mask."""
    model.set_task(int(task))
    with torch.no_grad():
        return model(x).argmax(dim=1)  # (B, s) -> (B,)


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


def gg_accuracy_of_masks(
    model: Any, stream: Any, task: int, masks: Mapping[str, Any], batch_size: int = 128
) -> tuple[float, int]:
    """GG accuracy of explicit ``masks`` (``{layer: 0/1 array}``) on stream task ``task``'s test set, and its size.

    The model's own finished tasks and selection are not used or changed, so this
    evaluates a mask the model does not hold (a task just trained, or one read from a bank).
    """
    device = _device_of(model)
    explicit = {name: _mask_tensor(m, device) for name, m in masks.items()}
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


def evaluate_inferred(
    model: Any,
    stream: Any,
    tasks: Iterable[int] | None = None,
    method: str = "oneshot",
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
    method : {"oneshot", "binary"}
        Task-inference algorithm (:func:`supsup_core.inference.infer_task`).
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

    def infer(x: torch.Tensor, per: str) -> torch.Tensor:
        out = infer_task(model, x, method=method, objective=objective, real_classes=real, per=per)
        return torch.as_tensor(out, device=device).reshape(-1)  # int or (B,) -> (1,) or (B,)

    accuracy: dict[int, float] = {}
    decisions: dict[int, float] = {}
    inference: dict[int, float] = {}
    n_images: dict[int, int] = {}
    with _evaluating(model):
        for t in chosen:
            right = -1 if expected[t] is None else expected[t]  # -1 matches no inferred task
            correct = right_decisions = n_decisions = right_images = n = 0
            batches = list(stream.test_batches(t, batch_size, device=device))
            all_images: torch.Tensor | None = None
            if (measure_task_inference or protocol == "per-image") and batches:
                # single-image inference over the whole test set at once: one batched pass (rank-one for MLPs)
                all_images = infer(torch.cat([x for x, _, _ in batches]), "image")  # (n,)
            offset = 0
            for x, y, _ in batches:
                b = y.shape[0]
                per_image = None if all_images is None else all_images[offset : offset + b]
                offset += b
                if protocol == "per-image":
                    chosen_tasks = per_image  # (B,)
                else:
                    decider = x[:1] if protocol == "first-image" else x
                    chosen_tasks = infer(decider, "batch").expand(b)  # (1,) -> (B,)
                model.set_alphas(None)
                pred = torch.empty_like(y)
                for task_hat in torch.unique(chosen_tasks).tolist():
                    rows = chosen_tasks == task_hat  # (B,) bool
                    pred[rows] = _predict(model, x[rows], task_hat)
                hit = pred == y
                if scenario == "gnu":
                    hit &= chosen_tasks == right
                correct += int(hit.sum())
                if protocol == "per-image":
                    right_decisions += int((chosen_tasks == right).sum())
                    n_decisions += b
                else:
                    right_decisions += int(chosen_tasks[0] == right)
                    n_decisions += 1
                if per_image is not None:
                    right_images += int((per_image == right).sum())
                n += b
            accuracy[t] = correct / n if n else float("nan")
            known = n and expected[t] is not None
            decisions[t] = right_decisions / n_decisions if known else float("nan")
            if measure_task_inference:
                inference[t] = right_images / n if known else float("nan")
            n_images[t] = n
            release_free_memory()
            if progress is not None:
                progress(1)
    return InferredResult(scenario, method, objective, protocol, accuracy, decisions, inference, n_images)
