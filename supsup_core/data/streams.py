"""Task streams over MNIST: PermutedMNIST, RotatedMNIST and SplitMNIST.

A stream turns one :class:`~supsup_core.data.mnist.MNISTData` into a sequence
of tasks.  Batches are ``(x, y, t)``: ``x`` float32 ``(B, 1, 28, 28)``
normalised with (0.1307, 0.3081), ``y`` int64 ``(B,)`` digit labels, ``t`` int64
``(B,)`` the task index of every sample.

Per-task tensors are built lazily and kept in a small LRU cache (``cache_size``
tasks per stream): training touches one task at a time and evaluation sweeps
all tasks, so an unbounded cache would hold every task (250 permuted copies of
MNIST) for no gain; rebuilding an evicted task costs one gather or one rotation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import torch

from ..errors import ConfigError
from .mnist import MNISTData, load_mnist
from .transforms import normalize_images, permutation_for_task, permute_pixels, rotate_images

__all__ = [
    "eval_order", "TaskStream", "PermutedMNIST", "RotatedMNIST", "SplitMNIST", "STREAM_NAMES", "make_stream", "Batch"]

_TEST_ORDER_SEED = 20201207  # seeds the one fixed test order (any constant works; never the global RNG)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""One batch ``(x, y, t)``."""

_ROTATE_CHUNK = 4096  # images per grid_sample call: bounds the (n, 28, 28, 2) sampling grid to ~25 MB


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """Validate an integer argument in [low, high] and return it as a Python int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(name, "an integer", repr(value))
    if value < low or (high is not None and value > high):
        expected = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ConfigError(name, expected, value)
    return int(value)


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
    """A sequence of MNIST tasks yielding ``(x, y, t)`` batches.

    Subclasses set :attr:`name` and :attr:`classes_per_task` and implement
    :meth:`_build`, which returns one task's whole split.

    Attributes
    ----------
    name : str
        Stream identifier used by :func:`make_stream` (``"permuted-mnist"`` ...).
    n_tasks : int
        Number of tasks.
    classes_per_task : int
        Distinct labels inside one task.
    output_classes : int
        Distinct labels over all tasks (10 for the three MNIST streams; labels are never remapped).
    seed : int or None
        The seed that defines the tasks (PermutedMNIST), ``None`` when tasks involve no randomness.
    data : MNISTData
        The underlying images.
    """

    name: ClassVar[str]
    classes_per_task: ClassVar[int]
    output_classes: ClassVar[int] = 10

    def __init__(self, data: MNISTData, n_tasks: int, *, seed: int | None = None, cache_size: int = 4) -> None:
        if not isinstance(data, MNISTData):
            raise ConfigError("data", "an MNISTData (see load_mnist)", type(data).__name__)
        self.data = data
        self.n_tasks = _check_int("n_tasks", n_tasks, 1)
        self.seed = seed
        self._cache_size = _check_int("cache_size", cache_size, 1)
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
            images, labels = self._images(split)
            self._base[split] = (normalize_images(images), torch.from_numpy(labels.copy()))  # (n, 1, 28, 28), (n,)
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
        return _check_int("task", task, 0, self.n_tasks - 1)

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
        batch_size = _check_int("batch_size", batch_size, 1)
        seed = _check_int("seed", seed, 0)
        limit = None if n_batches is None else _check_int("n_batches", n_batches, 1)
        x, y = self._task_tensors(task, "train")
        n = y.shape[0]
        per_epoch = n // batch_size if drop_last else -(-n // batch_size)
        if per_epoch == 0:
            raise ConfigError("batch_size", f"at most {n} (task {task}'s training samples) with drop_last", batch_size)
        return self._train_iter(x, y, task, batch_size, seed, limit, per_epoch, device)

    def _train_iter(self, x, y, task, batch_size, seed, limit, per_epoch, device) -> Iterator[Batch]:
        """The generator behind :meth:`train_batches` (split out so argument errors raise at call time)."""
        generator = _shuffle_generator(seed, task)
        produced = 0
        while limit is None or produced < limit:
            order = torch.randperm(y.shape[0], generator=generator)  # a fresh shuffle every epoch
            for b in range(per_epoch):
                index = order[b * batch_size : (b + 1) * batch_size]
                yield self._batch(x[index], y[index], task, device)
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
        batch_size = _check_int("batch_size", batch_size, 1)
        x, y = self._task_tensors(task, "test")
        return (
            self._batch(x[i : i + batch_size], y[i : i + batch_size], task, device)
            for i in range(0, y.shape[0], batch_size)
        )

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
        return {
            "stream": self.name,
            "n_tasks": self.n_tasks,
            "seed": self.seed,
            "classes_per_task": self.classes_per_task,
            "output_classes": self.output_classes,
            "data_source": self.data.source,
            "n_train": self.data.n_train,
            "n_test": self.data.n_test,
        }


class PermutedMNIST(TaskStream):
    """Each task permutes the pixels with its own seeded permutation (task ``i`` uses seed ``i + seed``).

    The permutation is applied to the flattened normalised pixels and reshaped
    back, as in the reference; the default ``seed=1`` matches it (task 0 is
    already permuted).
    """

    name = "permuted-mnist"
    classes_per_task = 10

    def __init__(self, data: MNISTData, n_tasks: int, seed: int = 1, *, cache_size: int = 4) -> None:
        seed = _check_int("seed", seed, 0)
        super().__init__(data, n_tasks, seed=seed, cache_size=cache_size)
        permutation_for_task(self.n_tasks - 1, seed)  # fail now, not mid-training, if task + seed overflows

    def permutation(self, task: int) -> np.ndarray:
        """The pixel permutation of ``task`` (``int64 (784,)``)."""
        return permutation_for_task(self._check_task(task), self.seed)

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._normalized(split)
        return permute_pixels(x, self.permutation(task)), y


class RotatedMNIST(TaskStream):
    """Task ``i`` rotates every image by ``i * degrees_per_task`` degrees counter-clockwise.

    Images are rotated in [0, 1] (zero padding = black, like the reference's PIL
    rotation) and normalised afterwards; the whole split is rotated once per task.
    """

    name = "rotated-mnist"
    classes_per_task = 10

    def __init__(self, data: MNISTData, n_tasks: int, degrees_per_task: float = 10.0, *, cache_size: int = 4) -> None:
        if isinstance(degrees_per_task, bool) or not isinstance(degrees_per_task, (int, float, np.number)):
            raise ConfigError("degrees_per_task", "a number of degrees", repr(degrees_per_task))
        if not np.isfinite(degrees_per_task):
            raise ConfigError("degrees_per_task", "a finite number of degrees", degrees_per_task)
        super().__init__(data, n_tasks, seed=None, cache_size=cache_size)
        self.degrees_per_task = float(degrees_per_task)

    def angle(self, task: int) -> float:
        """Rotation of ``task`` in degrees."""
        return self._check_task(task) * self.degrees_per_task

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        angle = self.angle(task)
        if angle % 360.0 == 0.0:  # no interpolation at all: task 0 is exactly plain MNIST
            return self._normalized(split)
        images, labels = self._images(split)
        chunks = []
        for start in range(0, images.shape[0], _ROTATE_CHUNK):
            raw = torch.from_numpy(images[start : start + _ROTATE_CHUNK].astype(np.float32) / 255.0)
            chunks.append(rotate_images(raw.unsqueeze(1), angle))  # (c, 28, 28) -> (c, 1, 28, 28)
        x = torch.cat(chunks) if chunks else torch.empty(0, 1, 28, 28)  # (n, 1, 28, 28)
        return normalize_images(x), torch.from_numpy(labels.copy())

    def describe(self) -> dict:
        """As :meth:`TaskStream.describe`, plus ``degrees_per_task``."""
        return {**super().describe(), "degrees_per_task": self.degrees_per_task}


class SplitMNIST(TaskStream):
    """Five tasks of two digits, (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), with the original labels kept.

    Labels are unshared, as in the reference's ``PartitionMNISTV2``: task ``i``
    has labels ``{2i, 2i + 1}`` and a model needs all 10 outputs.
    """

    name = "split-mnist"
    classes_per_task = 2
    TASK_DIGITS: ClassVar[tuple[tuple[int, int], ...]] = ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))

    def __init__(self, data: MNISTData, n_tasks: int = 5, *, cache_size: int = 4) -> None:
        n_tasks = _check_int("n_tasks", n_tasks, 1, len(self.TASK_DIGITS))
        super().__init__(data, n_tasks, seed=None, cache_size=cache_size)

    def digits(self, task: int) -> tuple[int, int]:
        """The two digits of ``task``."""
        return self.TASK_DIGITS[self._check_task(task)]

    def _build(self, task: int, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self._normalized(split)
        keep = torch.isin(y, torch.tensor(self.digits(task)))  # (n,) bool
        return x[keep], y[keep]  # (n_task, 1, 28, 28), (n_task,)


STREAM_NAMES = ("permuted-mnist", "rotated-mnist", "split-mnist")
"""Names accepted by :func:`make_stream`."""


def make_stream(
    name: str,
    n_tasks: int,
    data: MNISTData | None = None,
    seed: int = 1,
    *,
    degrees_per_task: float = 10.0,
) -> TaskStream:
    """Build a task stream by name.

    Parameters
    ----------
    name : {"permuted-mnist", "rotated-mnist", "split-mnist"}
        Which stream.
    n_tasks : int
        Number of tasks (split-mnist: 1 to 5).
    data : MNISTData, optional
        The images; default the embedded subset (:func:`~supsup_core.data.mnist.load_mnist`).
    seed : int
        Permutation seed for permuted-mnist (ignored by the other streams, which have no randomness).
    degrees_per_task : float
        Rotation step for rotated-mnist.

    Examples
    --------
    >>> make_stream("split-mnist", 2).digits(1)
    (2, 3)
    """
    if name not in STREAM_NAMES:
        raise ConfigError("name", f"one of {', '.join(STREAM_NAMES)}", repr(name))
    seed = _check_int("seed", seed, 0)
    if data is None:
        data = load_mnist()
    if name == "permuted-mnist":
        return PermutedMNIST(data, n_tasks, seed=seed)
    if name == "rotated-mnist":
        return RotatedMNIST(data, n_tasks, degrees_per_task=degrees_per_task)
    return SplitMNIST(data, n_tasks)
