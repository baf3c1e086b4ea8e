"""Task streams over ``torch.utils.data`` datasets: a user's own data, and data too large for memory.

- :func:`stream_from_datasets` -- one ``(train, test)`` pair of datasets per task;
- :func:`split_dataset_stream` -- a class-incremental split of one pair of datasets (any
  dataset with a ``targets`` attribute is split without reading its items; others are read
  once for their labels);
- :func:`stream_from_tensors` -- tensors ``x_train, y_train, x_test, y_test``, split by class.

Items are ``(x, y)`` with ``x`` a tensor and ``y`` an integer label; batches are made by a
``DataLoader`` (``num_workers`` processes if asked) in an order drawn from ``(seed, task)``,
so they are the same in every run and process.  A dataset with ``set_epoch(seed, epoch)``
(:class:`~supsup_core.data.imagefolder.ImageFolderDataset`) is told the epoch first, so its
per-item augmentation is reproducible too.  ``transform`` turns each batch's ``x`` into the
model's input (e.g. ``ImageFolderData.normalize``).

Examples
--------
>>> import torch
>>> x, y = torch.randn(40, 3), torch.arange(40) % 4
>>> stream = stream_from_tensors(x, y, x, y, classes_per_task=2)
>>> stream.n_tasks, stream.output_classes, stream.train_size(1)
(2, 2, 20)
>>> xb, yb, tb = next(stream.train_batches(1, batch_size=8))
>>> xb.shape, sorted(set(yb.tolist())) <= [0, 1], tb[0].item()
(torch.Size([8, 3]), True, 1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from ..errors import ConfigError
from ..validate import check_bool, check_int
from .images import MAX_LABEL
from .streams import Batch, TaskStream, _shuffle_generator, class_order, eval_order

__all__ = ["DatasetStream", "DatasetTask", "stream_from_datasets", "split_dataset_stream", "stream_from_tensors",
           "dataset_targets"]

#: Most items read one by one to find a dataset's labels when it has no ``targets``.
MAX_LABEL_SCAN = 10_000_000


@dataclass(frozen=True)
class DatasetTask:
    """One task of a :class:`DatasetStream`: its datasets and, for class splits, the map from data labels to task labels."""

    train: Dataset
    test: Dataset
    label_map: torch.Tensor | None = None


def _length(dataset: object, name: str) -> int:
    try:
        return check_int(name, len(dataset), low=0)
    except TypeError:
        raise ConfigError(name, "a map-style dataset (with len())", type(dataset).__name__) from None


def dataset_targets(dataset: Dataset, name: str = "dataset") -> np.ndarray:
    """The integer labels of every item: ``dataset.targets`` when present, else read item by item.

    Refused (ConfigError naming ``name``): ``targets`` whose length is not ``len(dataset)``, labels
    that are not integers in ``[0, MAX_LABEL]`` (a million classes), a ``Subset`` index out of range.
    """
    n = _length(dataset, name)
    targets = getattr(dataset, "targets", None)
    if targets is None and isinstance(dataset, Subset):
        parent = dataset_targets(dataset.dataset, name)
        indices = np.asarray(dataset.indices)
        if indices.size and (indices.dtype.kind not in "iu" or indices.min() < -parent.size
                             or indices.max() >= parent.size):
            raise ConfigError(name, f"a Subset whose indices lie within its dataset of {parent.size} items",
                              f"indices of {indices.dtype} in [{indices.min()}, {indices.max()}]")
        return parent[indices.astype(np.int64)]
    if targets is None:
        if n > MAX_LABEL_SCAN:
            raise ConfigError(name, f"a 'targets' attribute (reading {n:,} items for their labels is too slow)", "none")
        targets = [dataset[i][1] for i in range(n)]
    labels = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if labels.shape == (0,):  # no items: np.asarray([]) is float64
        labels = labels.astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise ConfigError(name, "non-negative integer class labels", f"{labels.dtype} labels of shape {labels.shape}")
    if labels.shape[0] != n:
        raise ConfigError(name, f"one target per item ({n} items)", f"{labels.shape[0]} targets")
    if labels.size and labels.max() > MAX_LABEL:  # before anything is sized by the largest label
        big = np.unique(labels[labels > MAX_LABEL])
        shown = ", ".join(str(v) for v in big[:3].tolist()) + (", ..." if big.size > 3 else "")
        raise ConfigError(name, f"class labels in [0, {MAX_LABEL:,}] (MAX_LABEL)",
                          f"{big.size} larger label(s): {shown}")
    return labels.astype(np.int64)


def _check_tasks_have_samples(labels: np.ndarray, name: str, what: str, groups: list[np.ndarray], n_classes: int) -> None:
    """Every task's classes have at least one sample in ``labels``; else ConfigError naming the task and its classes."""
    present = np.zeros(n_classes, dtype=bool)
    present[np.unique(labels)] = True
    for task, classes in enumerate(groups):
        if not present[classes].any():
            raise ConfigError(name, f"{what} samples of every task's classes",
                              f"none for task {task} (classes {tuple(int(c) for c in classes)})")


class DatasetStream(TaskStream):
    """A stream whose tasks are ``torch.utils.data`` datasets (module docstring).

    Parameters
    ----------
    tasks : sequence of DatasetTask
        Each task's datasets.
    output_classes : int
        Distinct labels over all tasks (what a model needs outputs for).
    classes_per_task : int
        Distinct labels inside one task.
    transform : callable, optional
        Applied to each batch's ``x`` (after collation, before moving to ``device``).
    num_workers : int
        ``DataLoader`` worker processes (0: load in this process).
    description : mapping, optional
        Extra JSON-safe keys for :meth:`describe`; with a ``data_source`` that loads the same
        data again the stream is :attr:`rebuildable`.
    """

    name = "datasets"

    def __init__(self, tasks: Sequence[DatasetTask], *, output_classes: int, classes_per_task: int,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None, num_workers: int = 0,
                 description: Mapping[str, Any] | None = None) -> None:
        if not tasks or not all(isinstance(t, DatasetTask) for t in tasks):
            raise ConfigError("tasks", "a non-empty sequence of DatasetTask", type(tasks).__name__)
        self.tasks = list(tasks)
        self.n_tasks = len(self.tasks)
        self.output_classes = check_int("output_classes", output_classes, low=1)
        self.classes_per_task = check_int("classes_per_task", classes_per_task, low=1)
        if transform is not None and not callable(transform):
            raise ConfigError("transform", "None or a callable on a batch", type(transform).__name__)
        self.transform = transform
        self.num_workers = check_int("num_workers", num_workers, low=0)
        self._description = dict(description or {})
        self.rebuildable = "data_source" in self._description
        self.seed = self._description.get("seed")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_tasks={self.n_tasks}, output_classes={self.output_classes})"

    def _check_task(self, task: object) -> int:
        return check_int("task", task, low=0, high=self.n_tasks - 1)

    def train_size(self, task: int) -> int:
        """Number of training samples of ``task``."""
        return len(self.tasks[self._check_task(task)].train)

    def test_size(self, task: int) -> int:
        """Number of test samples of ``task``."""
        return len(self.tasks[self._check_task(task)].test)

    def _loader(self, dataset: Dataset, batches: list[list[int]]) -> DataLoader:
        return DataLoader(dataset, batch_sampler=batches, num_workers=self.num_workers)

    def _batch(self, task: int, x: Any, y: Any, device) -> Batch:
        if not isinstance(x, torch.Tensor):
            raise ConfigError("dataset", "items (x, y) whose x is a tensor", type(x).__name__)
        y = torch.as_tensor(y, dtype=torch.int64)
        label_map = self.tasks[task].label_map
        if label_map is not None:
            inside = y.numel() == 0 or (int(y.min()) >= 0 and int(y.max()) < label_map.numel())
            mapped = label_map[y] if inside else y
            if not inside or bool((mapped < 0).any()):
                raise ConfigError("dataset", f"items whose labels are task {task}'s classes (as its targets say)",
                                  f"labels {sorted(set(y.tolist()))[:8]}")
            y = mapped
        if self.transform is not None:
            x = self.transform(x)
        x = x if x.is_floating_point() else x.to(torch.float32)
        t = torch.full((y.shape[0],), task, dtype=torch.int64)
        if device is not None:
            x, y, t = (v.to(device, non_blocking=True) for v in (x, y, t))
        return x, y, t

    def train_batches(self, task: int, batch_size: int = 128, seed: int = 0, n_batches: int | None = None, *,
                      drop_last: bool = False, device: torch.device | str | None = None) -> Iterator[Batch]:
        """Shuffled training batches of ``task`` (order from ``(seed, task)``); ``n_batches`` across epochs."""
        task = self._check_task(task)
        batch_size = check_int("batch_size", batch_size, low=1)
        seed = check_int("seed", seed, low=0)
        limit = None if n_batches is None else check_int("n_batches", n_batches, low=1)
        check_bool("drop_last", drop_last)
        n = len(self.tasks[task].train)
        per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        if per_epoch == 0:
            raise ConfigError("batch_size", f"at most {n} (task {task}'s training samples)", batch_size)
        return self._train_iter(task, batch_size, seed, limit, per_epoch, device)

    def _train_iter(self, task, batch_size, seed, limit, per_epoch, device) -> Iterator[Batch]:
        dataset = self.tasks[task].train
        generator = _shuffle_generator(seed, task)
        produced, epoch = 0, 0
        while limit is None or produced < limit:
            order = torch.randperm(len(dataset), generator=generator).tolist()  # a fresh shuffle every epoch
            take = per_epoch if limit is None else min(per_epoch, limit - produced)
            batches = [order[b * batch_size : (b + 1) * batch_size] for b in range(take)]
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(int(np.random.SeedSequence([seed, task]).generate_state(1)[0]), epoch)
            for x, y in self._loader(dataset, batches):
                yield self._batch(task, x, y, device)
                produced += 1
            epoch += 1
            if limit is None:
                return

    def test_batches(self, task: int, batch_size: int = 128, *, device: torch.device | str | None = None) -> Iterator[Batch]:
        """Test batches of ``task`` in one fixed shuffled order (classes mixed in every batch)."""
        task = self._check_task(task)
        batch_size = check_int("batch_size", batch_size, low=1)
        dataset = self.tasks[task].test
        order = eval_order(len(dataset)).tolist()
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        return (self._batch(task, x, y, device) for x, y in self._loader(dataset, batches))

    def describe(self) -> dict:
        """JSON-safe metadata: the kind, task count, classes, and the description given at construction."""
        return {"stream": self.name, "n_tasks": self.n_tasks, "classes_per_task": self.classes_per_task,
                "output_classes": self.output_classes, **self._description}


def stream_from_datasets(tasks: Sequence[tuple[Dataset, Dataset]], *, output_classes: int | None = None,
                         transform: Callable[[torch.Tensor], torch.Tensor] | None = None, num_workers: int = 0
                         ) -> DatasetStream:
    """A stream with one ``(train, test)`` pair of datasets per task (labels as the datasets give them).

    ``output_classes`` defaults to the largest label of any task plus one.
    """
    if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence) or not tasks:
        raise ConfigError("tasks", "a non-empty list of (train dataset, test dataset) pairs", type(tasks).__name__)
    pairs = []
    for i, pair in enumerate(tasks):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ConfigError(f"tasks[{i}]", "a (train dataset, test dataset) pair", type(pair).__name__)
        for j, (dataset, split) in enumerate(((pair[0], "training"), (pair[1], "test"))):
            if _length(dataset, f"tasks[{i}][{j}]") == 0:
                raise ConfigError(f"tasks[{i}][{j}]", f"a {split} dataset with at least one item (task {i})",
                                  "an empty dataset")
        pairs.append(DatasetTask(pair[0], pair[1]))
    labels = [np.unique(dataset_targets(p.train, f"tasks[{i}][0]")) for i, p in enumerate(pairs)]
    test_highest = [int(dataset_targets(p.test, f"tasks[{i}][1]").max(initial=0)) for i, p in enumerate(pairs)]
    highest = max(int(lab.max(initial=0)) for lab in labels)
    per = max(len(lab) for lab in labels)
    if output_classes is None:
        output_classes = highest + 1
    elif check_int("output_classes", output_classes, low=1) <= highest:
        raise ConfigError("output_classes", f"more than the largest label {highest}", output_classes)
    for i, high in enumerate(test_highest):  # a test label the model has no output for cannot be scored
        if high >= output_classes:
            raise ConfigError(f"tasks[{i}][1]", f"test labels below output_classes {output_classes} "
                              "(the largest training label + 1 unless given)", f"a label {high}")
    return DatasetStream(pairs, output_classes=output_classes, classes_per_task=per, transform=transform,
                         num_workers=num_workers)


def split_dataset_stream(train: Dataset, test: Dataset, classes_per_task: int, *, n_tasks: int | None = None,
                         order: str = "sorted", seed: int = 0, relabel: bool = True, n_classes: int | None = None,
                         transform: Callable[[torch.Tensor], torch.Tensor] | None = None, num_workers: int = 0,
                         description: Mapping[str, Any] | None = None) -> DatasetStream:
    """Class-incremental tasks from one pair of datasets, as :class:`~supsup_core.data.streams.SplitStream` makes them
    from in-memory data (the same class order, the same relabelling).

    Refused at construction (ConfigError): an empty dataset, ``targets`` that do not match the
    dataset's length, labels above :data:`~supsup_core.data.images.MAX_LABEL`, and a task whose
    classes have no training or no test sample (naming the task and its classes).
    """
    return _split_stream(("train", "test"), train, test, classes_per_task, n_tasks=n_tasks, order=order, seed=seed,
                         relabel=relabel, n_classes=n_classes, transform=transform, num_workers=num_workers,
                         description=description)


def _split_stream(names: tuple[str, str], train: Dataset, test: Dataset, classes_per_task: int, *,
                  n_tasks: int | None = None, order: str = "sorted", seed: int = 0, relabel: bool = True,
                  n_classes: int | None = None, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  num_workers: int = 0, description: Mapping[str, Any] | None = None) -> DatasetStream:
    """:func:`split_dataset_stream`, naming the two datasets ``names`` in errors (the caller's arguments)."""
    for name, dataset, split in ((names[0], train, "training"), (names[1], test, "test")):
        if _length(dataset, name) == 0:  # refused now, not as a batch_size error mid-training
            raise ConfigError(name, f"a {split} dataset with at least one item", "an empty dataset")
    train_labels, test_labels = dataset_targets(train, names[0]), dataset_targets(test, names[1])
    found = int(max(train_labels.max(initial=0), test_labels.max(initial=0))) + 1
    n_classes = found if n_classes is None else check_int("n_classes", n_classes, low=found, high=MAX_LABEL + 1)
    per = check_int("classes_per_task", classes_per_task, low=1, high=n_classes)
    most = n_classes // per
    n_tasks = most if n_tasks is None else check_int("n_tasks", n_tasks, low=1, high=most)
    check_bool("relabel", relabel)
    ordered = class_order(n_classes, order, seed)
    groups = [ordered[i * per : (i + 1) * per] for i in range(n_tasks)]
    _check_tasks_have_samples(train_labels, names[0], "training", groups, n_classes)
    _check_tasks_have_samples(test_labels, names[1], "test", groups, n_classes)
    tasks = []
    for classes in groups:
        label_map = None
        if relabel:
            label_map = torch.full((n_classes,), -1, dtype=torch.int64)
            label_map[torch.as_tensor(classes)] = torch.arange(per)
        tasks.append(DatasetTask(Subset(train, np.flatnonzero(np.isin(train_labels, classes)).tolist()),
                                 Subset(test, np.flatnonzero(np.isin(test_labels, classes)).tolist()), label_map))
    info = {"stream_kind": "split", "order": order, "relabel": relabel, "seed": seed if order == "seeded" else None,
            **dict(description or {})}
    return DatasetStream(tasks, output_classes=per if relabel else n_classes, classes_per_task=per, transform=transform,
                         num_workers=num_workers, description=info)


def stream_from_tensors(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor, *,
                        classes_per_task: int, **options: Any) -> DatasetStream:
    """Class-incremental tasks from tensors (options as :func:`split_dataset_stream`); ``x_test`` rows have
    ``x_train``'s shape."""
    for name, value in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
        if not isinstance(value, torch.Tensor):
            raise ConfigError(name, "a torch.Tensor", type(value).__name__)
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim == 0:
            raise ConfigError(name, "a tensor with one row per sample (n, ...)", "a 0-dimensional tensor")
    if x_test.shape[1:] != x_train.shape[1:]:
        raise ConfigError("x_test", f"rows of shape {tuple(x_train.shape[1:])} like x_train", tuple(x_test.shape[1:]))
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if y.ndim != 1 or y.shape[0] != x.shape[0] or y.is_floating_point():
            raise ConfigError(f"y_{split}", f"integer labels (n,) for the {x.shape[0]} rows of x_{split}", tuple(y.shape))
    train, test = TensorDataset(x_train, y_train), TensorDataset(x_test, y_test)
    train.targets, test.targets = y_train, y_test  # labels without reading items
    return _split_stream(("y_train", "y_test"), train, test, classes_per_task, **options)
