"""SupSup inside Avalanche: a multi-task model, a plugin and a strategy in the shape of Avalanche's PackNet.

Needs the ``avalanche`` extra (``pip install "supsup-store[avalanche]"``; see the README for the
torch build it needs).  Without Avalanche this module still imports, but every class here refuses
to be built with one line that says what to install.

Pieces (Avalanche's PackNet has the same three: ``PackNetModel``, ``PackNetPlugin``, ``PackNet``):

:class:`SupSupModel`
    an Avalanche ``MultiTaskModule`` around a :class:`~supsup_core.models.SupSupNet`.
    ``forward(x, task_labels)`` uses each task label's mask; with ``task_labels=None`` in eval
    mode it infers the task (:func:`supsup_core.inference.infer_task`; by default ``"rerank"``, the best
    measured, or the paper's ``"oneshot"`` and ``"binary"``) among the finished masks, per image or per batch.
:class:`SupSupPlugin`
    before each training experience: checks its labels fit the head, opens a new mask
    (``SupSupNet.add_task``) and points the strategy's optimiser at that mask's scores only;
    stops after ``batches_per_task`` steps; after the experience: packs the mask
    (``finish_task``) and rewrites the mask bank (:func:`supsup_core.persistence.save_masks`).
:class:`SupSupStrategy`
    a ``SupervisedTemplate`` with the plugin attached and the mini-batch size of the
    :class:`~supsup_core.training.TrainConfig`.

:func:`avalanche_benchmark` turns a supsup_core task stream (the embedded MNIST data) into an
Avalanche benchmark with Avalanche's own generators, and :class:`MaskBankBytes` is an
evaluation-plugin metric that reports the bank's size on disk next to accuracy and forgetting.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..inference import DEFAULT_METHOD, METHODS, OBJECTIVES, infer_task
from ..models import SupSupNet
from ..training.config import TrainConfig
from ..training.trainer import make_optimizer

try:
    with warnings.catch_warnings():
        # Avalanche imports optional solvers at import time; one of them (jaxopt) announces its own deprecation.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import avalanche
        from avalanche.benchmarks import (
            benchmark_from_datasets,
            class_incremental_benchmark,
            task_incremental_benchmark,
            with_classes_timeline,
        )
        from avalanche.benchmarks.scenarios.generic_scenario import CLScenario, EagerCLStream
        from avalanche.benchmarks.utils.classification_dataset import ClassificationDataset
        from avalanche.benchmarks.utils.data_attribute import DataAttribute
        from avalanche.benchmarks.utils.data_loader import TaskBalancedDataLoader
        from avalanche.core import SupervisedPlugin
        from avalanche.evaluation import PluginMetric
        from avalanche.evaluation.metric_results import MetricValue
        from avalanche.models import MultiTaskModule
        from avalanche.training.plugins.evaluation import default_evaluator
        from avalanche.training.templates import SupervisedTemplate
except ImportError as exc:  # the extra is not installed: keep the module importable, refuse to build anything
    _MISSING: ImportError | None = exc
    avalanche = None
    MultiTaskModule = nn.Module
    SupervisedPlugin = SupervisedTemplate = PluginMetric = object
    default_evaluator = None
else:
    _MISSING = None

__all__ = [
    "AVALANCHE_INSTALL",
    "TASK_FREE_STREAM",
    "AvalancheOptions",
    "MaskBankBytes",
    "SupSupModel",
    "SupSupPlugin",
    "SupSupStrategy",
    "avalanche_benchmark",
    "experience_metric",
]

AVALANCHE_INSTALL = 'pip install torch==2.14.1 torchvision==0.29.1 "supsup-store[avalanche]"'
"""The install line that makes this module work (PyPI's torchvision wheel needs PyPI's CUDA build of torch)."""

TASK_FREE_STREAM = "test_task_free"
"""Name of the benchmark stream whose experiences carry no task labels (the model infers the task)."""

_INFERENCE = ("auto", "image", "batch")


def _require_avalanche() -> None:
    if _MISSING is not None:
        raise ConfigError(
            "avalanche", f"the avalanche-lib package (install: {AVALANCHE_INSTALL})", f"ImportError: {_MISSING}"
        )


def _label_range(labels: set[int] | list[int]) -> str:
    low, high = min(labels), max(labels)
    return f"{low}" if low == high else f"{low}..{high}"


@dataclass(frozen=True)
class AvalancheOptions:
    """How :class:`SupSupPlugin` trains each experience's mask and where it keeps the masks.

    Attributes
    ----------
    train : TrainConfig
        Optimiser, learning rate, mini-batch size, steps per experience (``batches_per_task``;
        None = one epoch) -- the same object ``supsup-store train`` builds.
    bank : path or None
        Mask bank rewritten after every training experience (None: keep the masks in memory only).
    backend : str
        ``"hdf5-packed"`` or ``"hdf5-sparse"``.
    overwrite : bool
        Allow ``bank`` to exist before the first experience.
    benchmark : mapping or None
        JSON-safe description of the data, stored in the bank's ``benchmark`` metadata (for a stream
        of supsup_core use :func:`supsup_core.persistence.benchmark_metadata`, then
        ``supsup-store evaluate`` can rebuild it).

    >>> AvalancheOptions(TrainConfig(), backend="zip")
    Traceback (most recent call last):
    ...
    supsup_core.errors.ConfigError: backend: expected one of ['hdf5-packed', 'hdf5-sparse'], received 'zip'
    """

    train: TrainConfig
    bank: str | os.PathLike | None = None
    backend: str = "hdf5-packed"
    overwrite: bool = False
    benchmark: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.train, TrainConfig):
            raise ConfigError("train", "a TrainConfig", type(self.train).__name__)
        if self.backend not in ("hdf5-packed", "hdf5-sparse"):
            raise ConfigError("backend", "one of ['hdf5-packed', 'hdf5-sparse']", repr(self.backend))
        if not isinstance(self.overwrite, bool):
            raise ConfigError("overwrite", "True or False", repr(self.overwrite))
        if self.benchmark is not None and not isinstance(self.benchmark, Mapping):
            raise ConfigError("benchmark", "None or a mapping", type(self.benchmark).__name__)
        if self.bank is not None:
            path = Path(self.bank).expanduser()
            if not path.parent.is_dir():
                raise ConfigError("bank", "a file in an existing folder", f"{path} (folder {path.parent} does not exist)")
            if path.exists() and not self.overwrite:
                raise ConfigError("bank", "a new file (or overwrite=True)", f"existing file {path}")


class SupSupModel(MultiTaskModule):
    """An Avalanche multi-task module whose task labels select SupSup supermasks.

    Parameters
    ----------
    net : SupSupNet
        The base network; its finished masks are tasks this module can serve.
    inference : {"auto", "image", "batch"}
        How ``forward(x, None)`` infers the task in eval mode: each image alone, or the whole
        batch at once ("auto": per image unless the net normalises with batch statistics).
    method : {"rerank", "oneshot", "binary"}
        Task inference of ``forward(x, None)``: ``"rerank"``, the default
        (:data:`~supsup_core.inference.DEFAULT_METHOD`, the best measured), or the paper's
        ``"oneshot"`` and ``"binary"``.
    objective : {"H", "G"}
        Task-inference objective (entropy, or the superfluous-neuron objective).
    real_classes : int
        Labelled outputs (objective G treats the rest as superfluous).

    Notes
    -----
    ``task_to_mask`` maps an Avalanche task label to the net's mask index; masks already in
    ``net`` when it is wrapped keep labels ``0..k-1``.
    """

    def __init__(self, net: SupSupNet, *, inference: str = "auto", objective: str = "H", real_classes: int = 10,
                 method: str = DEFAULT_METHOD):
        _require_avalanche()
        if not isinstance(net, SupSupNet):
            raise ConfigError("net", "a SupSupNet (supsup_core.models.build_model)", type(net).__name__)
        if net.training_task is not None:
            raise ConfigError("net", "a net with no task in training", f"task {net.training_task} in training")
        if inference not in _INFERENCE:
            raise ConfigError("inference", f"one of {list(_INFERENCE)}", repr(inference))
        if inference == "image" and net.has_batch_statistics:
            raise ConfigError("inference", "'batch' or 'auto' for a net with batch-statistics unit masks", "'image'")
        if objective not in OBJECTIVES:
            raise ConfigError("objective", f"one of {list(OBJECTIVES)}", repr(objective))
        if method not in METHODS:
            raise ConfigError("method", f"one of {list(METHODS)}", repr(method))
        super().__init__()
        self.net = net
        self.per = ("batch" if net.has_batch_statistics else "image") if inference == "auto" else inference
        self.objective = objective
        self.method = method
        self.real_classes = real_classes
        self.task_to_mask: dict[int, int] = {t: t for t in range(net.num_tasks)}
        self._open_label: int | None = None

    @property
    def output_size(self) -> int:
        """Outputs of the head (real classes plus superfluous neurons)."""
        return self.net.output_size

    @property
    def open_label(self) -> int | None:
        """Task label of the mask in training, or None."""
        return self._open_label

    def open_task(self, task_label: int) -> int:
        """Start a new mask for ``task_label`` (fresh scores, selected); return its mask index."""
        if task_label in self.task_to_mask or task_label == self._open_label:
            raise ConfigError(
                "task label", f"a task label without a mask (SupSup learns one mask per task; known {sorted(self.task_to_mask)})",
                task_label,
            )
        index = self.net.add_task()
        self._open_label = int(task_label)
        return index

    def close_task(self) -> int:
        """Binarise and pack the mask in training (its scores are freed); return its mask index."""
        if self._open_label is None:
            raise ConfigError("close_task", "a task in training (open_task first)", "none")
        index = self.net.finish_task()
        self.task_to_mask[self._open_label] = index
        self._open_label = None
        return index

    def _mask_of(self, label: int) -> int:
        if label == self._open_label:
            return self.net.training_task
        if label not in self.task_to_mask:
            known = sorted(self.task_to_mask) + ([self._open_label] if self._open_label is not None else [])
            raise ConfigError(
                "task_labels", f"labels of tasks with a mask {known} (evaluate the experiences trained so far)", label
            )
        return self.task_to_mask[label]

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        """Logits ``(B, output_size)`` of ``x`` under ``task_label``'s mask."""
        self.net.set_task(self._mask_of(int(task_label)))
        return self.net(x)

    def forward(self, x: torch.Tensor, task_labels: torch.Tensor | int | None = None) -> torch.Tensor:
        """Logits ``(B, output_size)``; ``task_labels`` is an int, a ``(B,)`` tensor or None.

        None: in training mode the mask in training is used; in eval mode the task is inferred
        (``method``) from the finished masks (per image or per batch, see ``inference``).
        """
        if task_labels is None:
            if self.training and self._open_label is not None:
                return self.forward_single_task(x, self._open_label)
            return self._forward_inferred(x)
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        if not isinstance(task_labels, torch.Tensor) or task_labels.shape != (x.shape[0],):
            got = tuple(task_labels.shape) if isinstance(task_labels, torch.Tensor) else type(task_labels).__name__
            raise ConfigError("task_labels", f"None, an int or a tensor of shape ({x.shape[0]},)", got)
        labels = torch.unique(task_labels).tolist()
        if len(labels) == 1:
            return self.forward_single_task(x, labels[0])
        out = x.new_empty((x.shape[0], self.output_size))
        for label in labels:
            rows = task_labels == label  # (B,) bool
            out[rows] = self.forward_single_task(x[rows], label)
        return out

    def _forward_inferred(self, x: torch.Tensor) -> torch.Tensor:
        if self.net.num_tasks == 0:
            raise ConfigError("task_labels", "task labels (no finished mask to infer a task from yet)", None)
        chosen = infer_task(self.net, x, method=self.method, objective=self.objective, real_classes=self.real_classes,
                            per=self.per)
        self.net.set_alphas(None)  # inference superposed the masks; predictions use one mask each
        if self.per == "batch":
            self.net.set_task(int(chosen))
            return self.net(x)
        chosen = torch.as_tensor(chosen, device=x.device)  # (B,) mask indices
        out = x.new_empty((x.shape[0], self.output_size))
        for mask in torch.unique(chosen).tolist():
            rows = chosen == mask
            self.net.set_task(int(mask))
            out[rows] = self.net(x[rows])
        return out


def _experience_label(experience: Any) -> int:
    """The one task label of a training experience (its index when the benchmark has no task labels)."""
    labels = getattr(experience, "task_labels", None)
    if labels is None:
        return int(experience.current_experience)
    labels = [int(t) for t in labels]
    if len(labels) != 1:
        raise ConfigError(
            f"experience {experience.current_experience}", "one task label per training experience", f"task labels {labels}"
        )
    return labels[0]


def _experience_classes(experience: Any) -> set[int]:
    classes = getattr(experience, "classes_in_this_experience", None)
    if classes is None:
        classes = experience.dataset.targets.uniques
    return {int(c) for c in classes}


class SupSupPlugin(SupervisedPlugin):
    """Opens a mask before each training experience, trains only its scores, packs and stores it after.

    Parameters
    ----------
    options : AvalancheOptions
        Optimiser settings, steps per experience and the mask bank.
    """

    def __init__(self, options: AvalancheOptions):
        _require_avalanche()
        if not isinstance(options, AvalancheOptions):
            raise ConfigError("options", "an AvalancheOptions", type(options).__name__)
        super().__init__()
        self.options = options
        self._steps = 0

    @staticmethod
    def _model(strategy: Any) -> SupSupModel:
        if not isinstance(strategy.model, SupSupModel):
            raise ConfigError("model", "a SupSupModel (supsup_core.interop.avalanche)", type(strategy.model).__name__)
        return strategy.model

    def check_experience(self, model: SupSupModel, experience: Any) -> int:
        """The experience's task label after checking its labels fit the head and the label is new.

        Raises
        ------
        ConfigError
            Class labels outside ``0..output_size-1``, several task labels, or a task label that
            already has a mask.  Nothing is modified.
        """
        classes = _experience_classes(experience)
        size = model.output_size
        if not classes or min(classes) < 0 or max(classes) >= size:
            received = f"labels {_label_range(classes)}" if classes else "no labels"
            raise ConfigError(
                f"experience {experience.current_experience}",
                f"class labels in 0..{size - 1} (the head has {size} outputs)",
                received,
            )
        label = _experience_label(experience)
        if label in model.task_to_mask:
            raise ConfigError(
                f"experience {experience.current_experience}",
                f"a task label without a mask (known: {sorted(model.task_to_mask)}; SupSup learns one mask per task)",
                f"task label {label}",
            )
        return label

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        model = self._model(strategy)
        label = self.check_experience(model, strategy.experience)
        model.open_task(label)
        train = self.options.train
        # As PackNet's plugin does: a fresh optimiser for this experience -- here over the new scores only.
        strategy.optimizer = make_optimizer(model.net.score_parameters(), train)
        strategy.optimized_param_id = dict(model.named_parameters())  # Avalanche's record of what it optimises
        per_epoch = max(1, math.ceil(len(strategy.adapted_dataset) / strategy.train_mb_size))
        strategy.train_epochs = math.ceil(train.task_steps(per_epoch) / per_epoch)
        self._steps = 0

    def after_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self._steps += 1
        limit = self.options.train.batches_per_task
        if limit is not None and self._steps >= limit:
            strategy.stop_training()

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        model = self._model(strategy)
        model.close_task()
        self.write_bank(model)

    def write_bank(self, model: SupSupModel) -> dict[str, Any] | None:
        """Rewrite the bank with every finished mask of ``model`` (atomically); return its metadata."""
        if self.options.bank is None:
            return None
        from ..persistence import save_masks  # local: persistence pulls in the storage layer

        labels = {str(mask): label for label, mask in model.task_to_mask.items()}
        training = {
            "framework": "avalanche",
            "avalanche_version": getattr(avalanche, "__version__", "unknown"),
            "strategy": "SupSupStrategy",
            "config": self.options.train.to_dict(),
            "task_labels": labels,  # bank task (mask index) -> Avalanche task label
        }
        return save_masks(
            model.net, self.options.bank, backend=self.options.backend, benchmark=self.options.benchmark,
            overwrite=True, training=training,
        )


class SupSupStrategy(SupervisedTemplate):
    """Task-incremental SupSup in Avalanche: one supermask per experience on a frozen random network.

    Parameters
    ----------
    model : SupSupModel
        The wrapped network.
    options : AvalancheOptions
        Training settings and mask bank (``options.train.batch_size`` is the mini-batch size).
    eval_mb_size : int
        Evaluation mini-batch size (also the group one ``inference="batch"`` decision covers).
    device, plugins, evaluator, eval_every, **base_kwargs
        As Avalanche's ``SupervisedTemplate``.  The criterion is cross-entropy over all outputs,
        as in ``supsup-store train``.
    """

    def __init__(
        self,
        *,
        model: SupSupModel,
        options: AvalancheOptions,
        eval_mb_size: int = 128,
        device: str | torch.device = "cpu",
        plugins: list[Any] | None = None,
        evaluator: Any = default_evaluator,
        eval_every: int = -1,
        **base_kwargs: Any,
    ):
        _require_avalanche()
        if not isinstance(model, SupSupModel):
            raise ConfigError("model", "a SupSupModel (supsup_core.interop.avalanche)", type(model).__name__)
        self.supsup = SupSupPlugin(options)
        super().__init__(
            model=model,
            optimizer=None,  # SupSupPlugin builds one per experience, over that experience's scores
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=options.train.batch_size,
            train_epochs=1,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=[*(plugins or []), self.supsup],
            evaluator=evaluator,
            eval_every=eval_every,
            **base_kwargs,
        )

    def make_optimizer(self, **kwargs: Any) -> None:
        """Nothing to adapt: the optimiser is made by :class:`SupSupPlugin` when an experience's mask opens."""
        self.optimized_param_id = dict(self.model.named_parameters())

    def make_train_dataloader(
        self, num_workers: int = 0, shuffle: bool = True, pin_memory: bool | None = None,
        persistent_workers: bool = False, drop_last: bool = False, **kwargs: Any,
    ) -> None:
        """Avalanche's task-balanced loader, shuffled by a generator seeded from ``(train seed, experience)``."""
        args = self._obtain_common_dataloader_parameters(
            batch_size=self.train_mb_size, num_workers=num_workers, shuffle=shuffle, pin_memory=pin_memory,
            persistent_workers=persistent_workers, drop_last=drop_last,
        )
        args["generator"] = torch.Generator().manual_seed(
            _loader_seed(self.supsup.options.train.seed, self.experience.current_experience)
        )
        self.dataloader = TaskBalancedDataLoader(self.adapted_dataset, oversample_small_groups=True, **args)


def _loader_seed(seed: int, experience: int) -> int:
    """A 63-bit torch seed mixed from ``(seed, experience)`` by SeedSequence."""
    words = np.random.SeedSequence([int(seed), int(experience)]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


class MaskBankBytes(PluginMetric):
    """Evaluation-plugin metric: bytes of the mask bank on disk, emitted after each evaluation stream.

    Reported as ``MaskBank_Bytes/eval_phase/<stream>_stream`` next to Avalanche's accuracy and
    forgetting metrics (0 before the first mask is written).
    """

    def __init__(self, bank: str | os.PathLike):
        _require_avalanche()
        super().__init__()
        self.path = Path(bank).expanduser()
        self._value = 0

    def result(self) -> int:
        """Bytes of the bank file at the last emission."""
        return self._value

    def reset(self) -> None:
        """Forget the last size."""
        self._value = 0

    def after_eval(self, strategy: Any) -> list[Any]:
        self._value = self.path.stat().st_size if self.path.is_file() else 0
        stream = strategy.experience.origin_stream.name if strategy.experience is not None else "eval"
        return [MetricValue(self, f"MaskBank_Bytes/eval_phase/{stream}_stream", self._value, strategy.clock.train_iterations)]

    def __str__(self) -> str:
        return "MaskBank_Bytes"


def experience_metric(metrics: Mapping[str, Any], name: str, stream: str = "test") -> dict[int, float]:
    """``{experience: value}`` of one per-experience Avalanche metric in a metrics dict.

    ``metrics`` is what ``strategy.eval(...)`` returns; ``name`` is the metric's prefix, e.g.
    ``"Top1_Acc_Exp"`` or ``"ExperienceForgetting"``; ``stream`` the stream's name (``"test"``,
    :data:`TASK_FREE_STREAM`), which Avalanche writes with a ``_stream`` suffix.  Keys look like
    ``Top1_Acc_Exp/eval_phase/test_stream/Task001/Exp001`` (``TaskNNN`` is absent for streams
    without task labels).

    >>> experience_metric({"Top1_Acc_Exp/eval_phase/test_stream/Task001/Exp001": 0.5}, "Top1_Acc_Exp")
    {1: 0.5}
    """
    prefix = f"{name}/eval_phase/{stream}_stream/"
    out: dict[int, float] = {}
    for key, value in metrics.items():
        if key.startswith(prefix) and key.rsplit("/", 1)[-1].startswith("Exp"):
            out[int(key.rsplit("/", 1)[-1][3:])] = float(value)
    return dict(sorted(out.items()))


def _classification_dataset(x: torch.Tensor, y: torch.Tensor) -> Any:
    """An Avalanche classification dataset over the tensors ``x (n, 1, 28, 28)``, ``y (n,)``."""
    return ClassificationDataset([torch.utils.data.TensorDataset(x, y)], data_attributes=[DataAttribute(y.tolist(), "targets")])


def avalanche_benchmark(stream: Any) -> Any:
    """A task-incremental Avalanche benchmark with the tasks of a supsup_core ``stream``, built by Avalanche.

    Streams: ``train_stream`` and ``test_stream`` (experience ``i`` = stream task ``i``, task label ``i``),
    and ``test_task_free_stream``: the same test data without task labels, so the model infers the task.

    SplitMNIST is split by Avalanche's ``class_incremental_benchmark`` (class order 0..9, five
    experiences of two digits); other streams (PermutedMNIST, RotatedMNIST) give one dataset per
    task to ``benchmark_from_datasets``.  ``task_incremental_benchmark`` adds the task labels and
    ``with_classes_timeline`` the class bookkeeping.  The images are the stream's (normalised,
    permuted or rotated exactly as ``supsup-store train`` sees them); nothing is downloaded.
    """
    _require_avalanche()
    from ..data import SplitMNIST, TaskStream  # local: the data code is only needed here

    if not isinstance(stream, TaskStream):
        raise ConfigError("stream", "a supsup_core TaskStream (supsup_core.data.make_stream)", type(stream).__name__)
    def whole(task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        n = stream.train_size(task) if split == "train" else stream.test_size(task)
        batches = stream.train_batches(task, batch_size=n) if split == "train" else stream.test_batches(task, batch_size=n)
        x, y, _ = next(iter(batches))  # (n, 1, 28, 28), (n,): the task's whole split in one batch
        return x, y

    if isinstance(stream, SplitMNIST):
        # every digit of the stream in one dataset per split; Avalanche's generator splits it by class
        digits = [d for t in range(stream.n_tasks) for d in stream.digits(t)]
        splits = {}
        for split in ("train", "test"):
            parts = [whole(t, split) for t in range(stream.n_tasks)]
            splits[split] = _classification_dataset(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
        base = class_incremental_benchmark(splits, class_order=digits, num_experiences=stream.n_tasks)
    else:
        datasets = {
            split: [_classification_dataset(*whole(t, split)) for t in range(stream.n_tasks)] for split in ("train", "test")
        }
        base = benchmark_from_datasets(**datasets)
    tasks = task_incremental_benchmark(base)
    task_free = EagerCLStream(TASK_FREE_STREAM, list(base.streams["test"]))
    return with_classes_timeline(CLScenario([tasks.streams["train"], tasks.streams["test"], task_free]))
