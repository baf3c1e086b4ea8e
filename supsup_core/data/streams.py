"""Task streams: the contract every stream keeps, and the in-memory streams over an :class:`ImageData`.

A **task stream** turns data into a sequence of tasks and yields ``(x, y, t)``
batches: ``x`` float32 inputs (images ``(B, C, H, W)`` normalised per channel),
``y`` int64 ``(B,)`` labels, ``t`` int64 ``(B,)`` the task of every sample.
Every stream (:class:`TaskStream`) offers:

- ``n_tasks``, ``classes_per_task`` and ``output_classes`` (distinct labels over all tasks);
- ``train_batches(task, batch_size, seed, n_batches, *, drop_last, device)``: shuffled
  training batches, reproducible from ``(seed, task)``, ``n_batches`` of them across epochs;
- ``test_batches(task, batch_size, *, device)``: the task's test set in one fixed order;
- ``train_size(task)``, ``test_size(task)``, ``release_cache()``;
- ``describe()``: JSON-safe metadata (recorded in banks) and ``rebuildable``: whether that
  description is enough to build the same stream in another process (a data spec names its data).

The in-memory streams (:class:`ImageStream` and its kinds) hold an :class:`ImageData`:

- :class:`PermutedStream` -- each task permutes the pixels with its own seeded permutation;
- :class:`RotatedStream` -- task ``i`` rotates every image by ``i * degrees_per_task``;
- :class:`SplitStream` -- class-incremental splits: ``classes_per_task`` classes per task, in
  sorted or seeded order (the reference's ``np.random.permutation`` with the seed, as
  SplitCIFAR100), relabelled ``0 .. classes_per_task - 1`` or kept;
- ``PermutedMNIST``, ``RotatedMNIST``, ``SplitMNIST``: the paper's MNIST streams under their
  names (SplitMNIST: five digit pairs, labels kept).

Any of them can augment training batches with the paper's crop-and-flip (:class:`Augment`,
seeded per task).  Streams over ``torch.utils.data`` datasets live in :mod:`.dataset_streams`.

Per-task tensors are built lazily and kept in a small LRU cache (``cache_size``
tasks per stream): training touches one task at a time and evaluation sweeps
all tasks, so an unbounded cache would hold every task (250 permuted copies of
MNIST) for no gain; rebuilding an evicted task costs one gather or one rotation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from ..validate import check_int
from .images import MAX_LABEL, SPLITS, ImageData
from .mnist import load_mnist
from .transforms import normalize_images, permutation_for_task, permute_pixels, rotate_images

__all__ = [
    "eval_order", "TaskStream", "ImageStream", "PermutedStream", "RotatedStream", "SplitStream", "PermutedMNIST",
    "RotatedMNIST", "SplitMNIST", "STREAM_NAMES", "STREAM_KINDS", "CLASS_ORDERS", "Augment", "class_order",
    "make_stream", "Batch",
]

_TEST_ORDER_SEED = 20201207  # seeds the one fixed test order (any constant works; never the global RNG)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One batch ``(x, y, t)``."""

_ROTATE_CHUNK = 4096  # images per grid_sample call: bounds the (n, 28, 28, 2) sampling grid to ~25 MB
#: How the classes of a class-incremental split are ordered before they are cut into tasks.
CLASS_ORDERS = ("sorted", "seeded")


def _shuffle_generator(seed: int, task: int) -> torch.Generator:
    """A torch generator seeded from (seed, task): each task gets its own reproducible order."""
    # SeedSequence mixes the pair well, so (seed, task) and (seed + 1, task - 1) do not collide.
    state = np.random.SeedSequence([seed, task]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))  # < 2**63


def eval_order(n: int) -> torch.Tensor:
    """The fixed shuffled order in which every stream yields a task's ``n`` test samples.

    Test batches mix classes (models that normalise with batch statistics need it) yet
    are identical on every call, machine and run.

    >>> sorted(eval_order(5).tolist())
    [0, 1, 2, 3, 4]
    """
    return torch.randperm(n, generator=torch.Generator().manual_seed(_TEST_ORDER_SEED))


class TaskStream(ABC):
    """What every stream offers (the module docstring); :class:`ImageStream` and
    :class:`~supsup_core.data.dataset_streams.DatasetStream` implement it."""

    name: ClassVar[str] = "stream"
    n_tasks: int
    classes_per_task: int
    output_classes: int
    #: Whether :meth:`describe` is enough to build this stream again elsewhere (a worker process, a later run).
    rebuildable: ClassVar[bool] = True

    @abstractmethod
    def train_batches(self, task: int, batch_size: int = 128, seed: int = 0, n_batches: int | None = None, *,
                      drop_last: bool = False, device: torch.device | str | None = None) -> Iterator[Batch]:
        """Shuffled training batches of ``task`` (reproducible from ``(seed, task)``)."""

    @abstractmethod
    def test_batches(self, task: int, batch_size: int = 128, *, device: torch.device | str | None = None) -> Iterator[Batch]:
        """The test batches of ``task``, in one fixed order."""

    @abstractmethod
    def train_size(self, task: int) -> int:
        """Number of training samples of ``task``."""

    @abstractmethod
    def test_size(self, task: int) -> int:
        """Number of test samples of ``task``."""

    @abstractmethod
    def describe(self) -> dict:
        """JSON-safe metadata (recorded in banks)."""

    def release_cache(self) -> None:  # noqa: B027 - optional hook
        """Drop cached per-task data (a worker done with a task calls it)."""


@dataclass(frozen=True)
class Augment:
    """The paper's training augmentation for images: a random crop after zero padding, and a horizontal flip.

    ``crop_padding`` pixels of black (before normalisation) are added on every side and a crop of
    the original size is taken at a random offset; ``flip`` mirrors half of the images.  Draws come
    from a generator seeded per ``(seed, task)``, so a task's batches are the same in any process.

    >>> Augment().to_dict()
    {'crop_padding': 4, 'flip': True}
    """

    crop_padding: int = 4
    flip: bool = True

    def __post_init__(self) -> None:
        check_int("crop_padding", self.crop_padding, low=0)
        if not isinstance(self.flip, bool):
            raise ConfigError("flip", "True or False", repr(self.flip))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)

    def apply(self, x: torch.Tensor, fill: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch ``x`` ``(B, C, H, W)``; ``fill`` ``(C,)`` is black after normalisation."""
        batch, channels, height, width = x.shape
        p = self.crop_padding
        if p:
            padded = fill.reshape(1, channels, 1, 1).expand(batch, channels, height + 2 * p, width + 2 * p).clone()
            padded[:, :, p : p + height, p : p + width] = x
            dy = torch.randint(0, 2 * p + 1, (batch,), generator=generator)  # (B,) crop offsets
            dx = torch.randint(0, 2 * p + 1, (batch,), generator=generator)
            rows = (dy[:, None] + torch.arange(height))[:, None, :, None]  # (B, 1, H, 1)
            cols = (dx[:, None] + torch.arange(width))[:, None, None, :]  # (B, 1, 1, W)
            x = padded[torch.arange(batch)[:, None, None, None], torch.arange(channels)[None, :, None, None], rows, cols]
        if self.flip:
            flips = torch.rand(batch, generator=generator) < 0.5  # (B,)
            x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        return x


def _augment_generator(seed: int, task: int) -> torch.Generator:
    """The augmentation draws of ``(seed, task)``: their own stream, apart from the shuffling order's."""
    state = np.random.SeedSequence([seed, task, 1]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed((int(state[0]) << 31) ^ int(state[1]))


def class_order(n_classes: int, order: str = "sorted", seed: int = 0) -> np.ndarray:
    """The order classes are cut into tasks: ``arange`` or the reference's ``np.random.permutation`` after
    ``np.random.seed(seed)`` (SplitCIFAR100; SplitImageNet with seed 1), drawn from a private generator.

    >>> class_order(5).tolist(), class_order(100, "seeded", 0)[:5].tolist()
    ([0, 1, 2, 3, 4], [26, 86, 2, 55, 75])
    """
    n_classes = check_int("n_classes", n_classes, low=1, high=MAX_LABEL + 1)
    if order not in CLASS_ORDERS:
        raise ConfigError("order", f"one of {', '.join(CLASS_ORDERS)}", repr(order))
    if order == "sorted":
        return np.arange(n_classes)
    return np.random.RandomState(check_int("seed", seed, low=0, high=2**32 - 1)).permutation(n_classes)


def _check_data(data: object) -> None:
    """``data`` is an ImageData with images in both splits (refused now, not as a batch_size error mid-training)."""
    if not isinstance(data, ImageData):
        raise ConfigError("data", "an ImageData (see supsup_core.data.load_data)", type(data).__name__)
    if data.n_train == 0 or data.n_test == 0:
        raise ConfigError("data", "at least one training and one test image",
                          f"{data.n_train} training and {data.n_test} test images ({data.source})")


class ImageStream(TaskStream):
    """A stream over an :class:`ImageData` held in memory.

    Subclasses set :attr:`name` and :attr:`classes_per_task` and implement
    :meth:`_build`, which returns one task's whole split (normalised).

    Attributes
    ----------
    name : str
        Stream identifier used by :func:`make_stream` (``"permuted-mnist"`` ...).
    n_tasks : int
        Number of tasks.
    classes_per_task : int
        Distinct labels inside one task.
    output_classes : int
        Distinct labels over all tasks (what a model needs outputs for).
    seed : int or None
        The seed that defines the tasks (PermutedMNIST), ``None`` when tasks involve no randomness.
    data : ImageData
        The underlying images.
    """

    name: ClassVar[str]
    classes_per_task: int
    output_classes: int = 10

    def __init__(self, data: ImageData, n_tasks: int, *, seed: int | None = None, cache_size: int = 4,
                 augment: Augment | None = None) -> None:
        _check_data(data)
        if augment is not None and not isinstance(augment, Augment):
            raise ConfigError("augment", "None or an Augment", type(augment).__name__)
        self.data = data
        self.n_tasks = check_int("n_tasks", n_tasks, low=1)
        self.seed = seed
        self.augment = augment
        self._cache_size = check_int("cache_size", cache_size, low=1)
        self._cache: OrderedDict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._base: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_tasks={self.n_tasks}, seed={self.seed}, source={self.data.source!r})"

    # -- building and caching -------------------------------------------------------------

    def _images(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The raw ``uint8`` images and int64 labels of ``"train"`` or ``"test"``."""
        return getattr(self.data, f"{split}_images"), getattr(self.data, f"{split}_labels")

    def _normalized(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split normalised once, shared by every task that only reorders or selects it."""
        if split not in self._base:
            labels = self._images(split)[1]
            self._base[split] = (self.data.normalized(split), torch.from_numpy(labels.copy()))  # (n, 1, 28, 28), (n,)
        return self._base[split]

    @abstractmethod
    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return task ``task``'s whole ``split`` as ``(x (n, 1, 28, 28) float32, y (n,) int64)`` on CPU."""

    def _task_tensors(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Cached :meth:`_build` (LRU over ``cache_size`` (split, task) entries)."""
        key = (split, task)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        tensors = self._build(task, split)
        if split == "test":
            # A fixed shuffle: sources store test images digit by digit, and models that normalise with the
            # batch's own statistics (BNNet) need every test batch to mix classes, as the reference's shuffled
            # test loader does.  The order is the same on every call, machine and run.
            order = eval_order(tensors[1].shape[0])
            tensors = (tensors[0][order], tensors[1][order])
        self._cache[key] = tensors
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return tensors

    def _check_task(self, task: object) -> int:
        return check_int("task", task, low=0, high=self.n_tasks - 1)

    # -- public API ------------------------------------------------------------------------

    def release_cache(self) -> None:
        """Drop the cached per-task tensors (the normalised splits stay): a worker done with a task calls it."""
        self._cache.clear()

    def train_size(self, task: int) -> int:
        """Number of training samples of ``task``."""
        return int(self._task_tensors(self._check_task(task), "train")[1].shape[0])

    def test_size(self, task: int) -> int:
        """Number of test samples of ``task``."""
        return int(self._task_tensors(self._check_task(task), "test")[1].shape[0])

    def train_batches(
        self,
        task: int,
        batch_size: int = 128,
        seed: int = 0,
        n_batches: int | None = None,
        *,
        drop_last: bool = False,
        device: torch.device | str | None = None,
    ) -> Iterator[Batch]:
        """Shuffled training batches of ``task``.

        Parameters
        ----------
        task : int
            Task index in ``[0, n_tasks)``.
        batch_size : int
            Samples per batch.
        seed : int
            Shuffling seed; the order comes from a ``torch.Generator`` seeded from
            ``(seed, task)``, so it is reproducible and differs between tasks.
        n_batches : int, optional
            Yield exactly this many batches, reshuffling at each new epoch (the
            GNu recipe uses 1000 per task).  ``None``: one epoch.
        drop_last : bool
            Skip each epoch's final partial batch (useful for batch-statistics BN).
        device : torch.device or str, optional
            Move ``x, y, t`` there (``non_blocking``); tensors stay on CPU otherwise.
        """
        task = self._check_task(task)
        batch_size = check_int("batch_size", batch_size, low=1)
        seed = check_int("seed", seed, low=0)
        limit = None if n_batches is None else check_int("n_batches", n_batches, low=1)
        x, y = self._task_tensors(task, "train")
        n = y.shape[0]
        per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        if per_epoch == 0:
            raise ConfigError("batch_size", f"at most {n} (task {task}'s training samples) with drop_last", batch_size)
        return self._train_iter(x, y, task, batch_size, seed, limit, per_epoch, device)

    def _train_iter(self, x, y, task, batch_size, seed, limit, per_epoch, device) -> Iterator[Batch]:
        """The generator behind :meth:`train_batches` (split out so argument errors raise at call time)."""
        generator = _shuffle_generator(seed, task)
        augment = None if self.augment is None else (self.augment, self._black(), _augment_generator(seed, task))
        produced = 0
        while limit is None or produced < limit:
            order = torch.randperm(y.shape[0], generator=generator)  # a fresh shuffle every epoch
            for b in range(per_epoch):
                index = order[b * batch_size : (b + 1) * batch_size]
                xb = x[index] if augment is None else augment[0].apply(x[index], augment[1], augment[2])
                yield self._batch(xb, y[index], task, device)
                produced += 1
                if limit is not None and produced == limit:
                    return
            if limit is None:
                return

    def test_batches(
        self, task: int, batch_size: int = 128, *, device: torch.device | str | None = None
    ) -> Iterator[Batch]:
        """Test batches of ``task`` in a fixed shuffled order, the same every call (the last one may be partial)."""
        task = self._check_task(task)
        batch_size = check_int("batch_size", batch_size, low=1)
        x, y = self._task_tensors(task, "test")
        return (
            self._batch(x[i : i + batch_size], y[i : i + batch_size], task, device)
            for i in range(0, y.shape[0], batch_size)
        )

    def _black(self) -> torch.Tensor:
        """A black pixel after normalisation, per channel ``(C,)`` (what crop padding fills with)."""
        return torch.tensor([-m / s for m, s in zip(self.data.mean, self.data.std)], dtype=torch.float32)

    @staticmethod
    def _batch(x: torch.Tensor, y: torch.Tensor, task: int, device) -> Batch:
        t = torch.full((y.shape[0],), task, dtype=torch.int64)  # (B,) the task of every sample
        if device is not None:
            x, y, t = (v.to(device, non_blocking=True) for v in (x, y, t))
        return x, y, t

    def describe(self) -> dict:
        """JSON-safe metadata: stream name, task count, seed, data source and stream options.

        Examples
        --------
        >>> from supsup_core.data import load_mnist
        >>> PermutedMNIST(load_mnist(), n_tasks=3).describe()["stream"]
        'permuted-mnist'
        """
        out = {
            "stream": self.name,
            "n_tasks": self.n_tasks,
            "seed": self.seed,
            "classes_per_task": self.classes_per_task,
            "output_classes": self.output_classes,
            "data_source": self.data.source,
            "n_train": self.data.n_train,
            "n_test": self.data.n_test,
        }
        if self.augment is not None:
            out["augment"] = self.augment.to_dict()
        return out


class PermutedStream(ImageStream):
    """Each task permutes the pixels with its own seeded permutation (task ``i`` uses seed ``i + seed``).

    The permutation is applied to the flattened normalised pixels (``C * H * W``) and
    reshaped back, as in the reference; the default ``seed=1`` matches it (task 0 is
    already permuted).  Labels are the data's, shared by every task.
    """

    name = "permuted"

    def __init__(self, data: ImageData, n_tasks: int, seed: int = 1, *, cache_size: int = 4,
                 augment: Augment | None = None) -> None:
        seed = check_int("seed", seed, low=0)
        super().__init__(data, n_tasks, seed=seed, cache_size=cache_size, augment=augment)
        self.classes_per_task = self.output_classes = data.n_classes
        self._size = int(np.prod(data.image_shape))
        permutation_for_task(self.n_tasks - 1, seed, self._size)  # fail now, not mid-training, if task + seed overflows

    def permutation(self, task: int) -> np.ndarray:
        """The pixel permutation of ``task`` (``int64 (C H W,)``)."""
        return permutation_for_task(self._check_task(task), self.seed, self._size)

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._normalized(split)
        return permute_pixels(x, self.permutation(task)), y


class RotatedStream(ImageStream):
    """Task ``i`` rotates every image by ``i * degrees_per_task`` degrees counter-clockwise.

    Images are rotated in [0, 1] (zero padding = black, like the reference's PIL
    rotation) and normalised afterwards; the whole split is rotated once per task.
    """

    name = "rotated"

    def __init__(self, data: ImageData, n_tasks: int, degrees_per_task: float = 10.0, *, cache_size: int = 4,
                 augment: Augment | None = None) -> None:
        if isinstance(degrees_per_task, bool) or not isinstance(degrees_per_task, (int, float, np.number)):
            raise ConfigError("degrees_per_task", "a number of degrees", repr(degrees_per_task))
        if not np.isfinite(degrees_per_task):
            raise ConfigError("degrees_per_task", "a finite number of degrees", degrees_per_task)
        super().__init__(data, n_tasks, seed=None, cache_size=cache_size, augment=augment)
        self.classes_per_task = self.output_classes = data.n_classes
        self.degrees_per_task = float(degrees_per_task)

    def angle(self, task: int) -> float:
        """Rotation of ``task`` in degrees."""
        return self._check_task(task) * self.degrees_per_task

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        angle = self.angle(task)
        if angle % 360.0 == 0.0:  # no interpolation at all: task 0 is exactly the plain data
            return self._normalized(split)
        images, labels = self._images(split)
        chunks = []
        for start in range(0, images.shape[0], _ROTATE_CHUNK):
            raw = torch.from_numpy(images[start : start + _ROTATE_CHUNK].astype(np.float32) / float(self.data.max_value))
            chunks.append(rotate_images(raw, angle))  # (c, C, H, W)
        x = torch.cat(chunks) if chunks else torch.empty(0, *self.data.image_shape)  # (n, C, H, W)
        return normalize_images(x, self.data.mean, self.data.std), torch.from_numpy(labels.copy())

    def describe(self) -> dict:
        """As :meth:`ImageStream.describe`, plus ``degrees_per_task``."""
        return {**super().describe(), "degrees_per_task": self.degrees_per_task}


class SplitStream(ImageStream):
    """Class-incremental tasks: the classes, in :func:`class_order`, cut into groups of ``classes_per_task``.

    Parameters
    ----------
    data : ImageData
        The images.
    classes_per_task : int
        Classes of each task (SplitCIFAR100: 5; SplitImageNet: 10; SplitMNIST: 2).
    n_tasks : int, optional
        Tasks to make; default every full group (``n_classes // classes_per_task``).
    order : {"sorted", "seeded"}
        Classes in label order, or the reference's seeded permutation (``seed``).
    seed : int
        Seed of the ``"seeded"`` order (the reference's ``args.seed``).
    relabel : bool
        Labels become each class's position in its task, ``0 .. classes_per_task - 1``
        (shared labels, the reference's GG runs); False keeps the data's labels (unshared).

    Examples
    --------
    >>> from supsup_core.data import load_digits
    >>> stream = SplitStream(load_digits(), 2)
    >>> stream.n_tasks, stream.classes(4), stream.output_classes
    (5, (8, 9), 2)
    """

    name = "split"

    def __init__(self, data: ImageData, classes_per_task: int, n_tasks: int | None = None, *, order: str = "sorted",
                 seed: int = 0, relabel: bool = True, cache_size: int = 4, augment: Augment | None = None) -> None:
        _check_data(data)
        per = check_int("classes_per_task", classes_per_task, low=1, high=data.n_classes)
        ordered = class_order(data.n_classes, order, seed)
        most = data.n_classes // per
        n_tasks = most if n_tasks is None else check_int("n_tasks", n_tasks, low=1, high=most)
        if not isinstance(relabel, bool):
            raise ConfigError("relabel", "True or False", repr(relabel))
        super().__init__(data, n_tasks, seed=seed if order == "seeded" else None, cache_size=cache_size, augment=augment)
        self.classes_per_task, self.order, self.relabel = per, order, relabel
        self.output_classes = per if relabel else data.n_classes
        self._groups = [tuple(int(c) for c in ordered[i * per : (i + 1) * per]) for i in range(n_tasks)]
        for split in SPLITS:  # a task whose classes have no images fails now, naming it
            present = np.bincount(data.labels(split), minlength=data.n_classes) > 0
            for task, group in enumerate(self._groups):
                if not present[list(group)].any():
                    raise ConfigError("data", f"{split} images of every task's classes",
                                      f"none for task {task} (classes {group}) in {data.source}")

    def classes(self, task: int) -> tuple[int, ...]:
        """The classes of ``task``, in the order that gives their new labels."""
        return self._groups[self._check_task(task)]

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._normalized(split)
        classes = torch.tensor(self.classes(task))
        keep = torch.isin(y, classes)  # (n,) bool
        labels = y[keep]
        if self.relabel:  # each class becomes its position in the task
            labels = (labels.unsqueeze(1) == classes.unsqueeze(0)).to(torch.int64).argmax(dim=1)
        return x[keep], labels  # (n_task, C, H, W), (n_task,)

    def describe(self) -> dict:
        """As :meth:`ImageStream.describe`, plus the class order and labels."""
        return {**super().describe(), "order": self.order, "relabel": self.relabel}


class PermutedMNIST(PermutedStream):
    """:class:`PermutedStream` under the paper's name (REFERENCE §3.3)."""

    name = "permuted-mnist"


class RotatedMNIST(RotatedStream):
    """:class:`RotatedStream` under the paper's name (REFERENCE §3.3)."""

    name = "rotated-mnist"


class SplitMNIST(SplitStream):
    """Five tasks of two digits, (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), with the original labels kept.

    Labels are unshared, as in the reference's ``PartitionMNISTV2``: task ``i``
    has labels ``{2i, 2i + 1}`` and a model needs all 10 outputs.
    """

    name = "split-mnist"
    TASK_DIGITS: ClassVar[tuple[tuple[int, int], ...]] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))

    def __init__(self, data: ImageData, n_tasks: int = 5, *, cache_size: int = 4, augment: Augment | None = None) -> None:
        n_tasks = check_int("n_tasks", n_tasks, low=1, high=len(self.TASK_DIGITS))
        super().__init__(data, 2, n_tasks, order="sorted", relabel=False, cache_size=cache_size, augment=augment)

    def digits(self, task: int) -> tuple[int, int]:
        """The two digits of ``task``."""
        return self.classes(task)

    def describe(self) -> dict:
        """As :meth:`ImageStream.describe` (the split is fixed by the name)."""
        return ImageStream.describe(self)


STREAM_KINDS = ("permuted", "rotated", "split")
"""The stream kinds over any in-memory data."""
STREAM_NAMES = ("permuted-mnist", "rotated-mnist", "split-mnist", *STREAM_KINDS)
"""Names accepted by :func:`make_stream` (the ``-mnist`` ones are the paper's MNIST streams)."""


def make_stream(
    name: str,
    n_tasks: int | None,
    data: ImageData | None = None,
    seed: int = 1,
    *,
    degrees_per_task: float = 10.0,
    classes_per_task: int | None = None,
    order: str = "sorted",
    relabel: bool = True,
    augment: Augment | Mapping[str, Any] | None = None,
) -> ImageStream:
    """Build a task stream by name.

    Parameters
    ----------
    name : str
        One of :data:`STREAM_NAMES`.
    n_tasks : int or None
        Number of tasks (split-mnist: 1 to 5; split: default every full class group).
    data : ImageData, optional
        The images; default the embedded MNIST subset (:func:`~supsup_core.data.mnist.load_mnist`).
    seed : int
        Permutation seed (permuted streams), or class-order seed (``split`` with ``order="seeded"``).
    degrees_per_task : float
        Rotation step of rotated streams.
    classes_per_task, order, relabel
        The class split of ``split`` (:class:`SplitStream`).
    augment : Augment or dict, optional
        Crop-and-flip augmentation of the training batches.

    Examples
    --------
    >>> make_stream("split-mnist", 2).digits(1)
    (2, 3)
    >>> make_stream("split", None, classes_per_task=5).classes(1)
    (5, 6, 7, 8, 9)
    """
    if name not in STREAM_NAMES:
        raise ConfigError("name", f"one of {', '.join(STREAM_NAMES)}", repr(name))
    seed = check_int("seed", seed, low=0)
    if data is None:
        data = load_mnist()
    if isinstance(augment, Mapping):
        augment = Augment(**augment)
    if name in ("permuted-mnist", "permuted"):
        cls = PermutedMNIST if name == "permuted-mnist" else PermutedStream
        return cls(data, n_tasks, seed=seed, augment=augment)
    if name in ("rotated-mnist", "rotated"):
        cls = RotatedMNIST if name == "rotated-mnist" else RotatedStream
        return cls(data, n_tasks, degrees_per_task=degrees_per_task, augment=augment)
    if name == "split-mnist":
        return SplitMNIST(data, 5 if n_tasks is None else n_tasks, augment=augment)
    if classes_per_task is None:
        raise ConfigError("classes_per_task", "the number of classes of each task for a split stream", None)
    return SplitStream(data, classes_per_task, n_tasks, order=order, seed=seed, relabel=relabel, augment=augment)
