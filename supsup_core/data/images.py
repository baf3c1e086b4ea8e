"""The in-memory container for a labelled train/test split of images: :class:`ImageData`.

Every dataset that fits in memory (the embedded MNIST subset, full MNIST, IDX
folders, scikit-learn's digits, CIFAR-10/100) is loaded into one
:class:`ImageData`: ``uint8`` images ``(n, C, H, W)``, ``int64`` labels, the
per-channel normalisation that goes with the data, and ``source``, the data
spec that loads the same data again (see :func:`supsup_core.data.sources.load_data`).
ImageNet-scale folders are not held in memory; they have their own lazy
container, :class:`~supsup_core.data.imagefolder.ImageFolderData`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..validate import check_int
from .transforms import MNIST_MEAN, MNIST_STD, normalize_images

__all__ = ["ImageData", "SPLITS", "MAX_FITTED_SIDE", "MAX_FITTED_VALUES", "MAX_LABEL", "split_fitted_spec"]

SPLITS = ("train", "test")
"""The two splits every :class:`ImageData` holds."""
MAX_FITTED_SIDE = 4096
"""Largest channel count, height or width of a fitted shape (``SPEC@CxHxW``)."""
MAX_FITTED_VALUES = 2**31
"""Most pixel values (images x C x H x W, both splits) that :meth:`ImageData.fitted_to` allocates (2 GiB)."""
MAX_LABEL = 999_999
"""Largest class label any dataset or stream accepts (a million classes: ImageNet-21k has 21,841)."""


def split_fitted_spec(spec: str) -> tuple[str, tuple[int, int, int] | None]:
    """``(base, (C, H, W))`` for a fitted data spec ``"base@CxHxW"``, else ``(spec, None)``; no range check.

    Only ASCII digits count (``"²"`` is not a digit here); a side of more than 18 digits reads as 10**18.

    >>> split_fitted_spec("digits@3x32x32"), split_fitted_spec("cifar10:/data/a@b")
    (('digits', (3, 32, 32)), ('cifar10:/data/a@b', None))
    """
    base, _, shape = spec.rpartition("@")
    parts = shape.split("x")
    if not base or len(parts) != 3 or not all(p.isascii() and p.isdecimal() for p in parts):
        return spec, None
    return base, tuple(int(p) if len(p) <= 18 else 10**18 for p in parts)


def _describe(value: object) -> str:
    """``dtype shape`` of an array, or the type name of anything else (for error messages)."""
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def _channel_values(name: str, value: object) -> tuple[float, ...]:
    """A non-empty sequence of finite real numbers as a tuple of floats, or ConfigError naming ``name``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ConfigError(name, "a tuple of floats, one per channel", repr(value))
    values = []
    for item in value:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, float, np.integer, np.floating)):
            raise ConfigError(name, "a tuple of floats, one per channel", repr(value))
        if not math.isfinite(float(item)):
            raise ConfigError(name, "finite values", repr(value))
        values.append(float(item))
    if not values:
        raise ConfigError(name, "at least one value (one per channel)", repr(value))
    return tuple(values)


@dataclass(frozen=True, eq=False)
class ImageData:
    """A labelled train/test split of images held as NumPy arrays.

    Parameters
    ----------
    train_images, test_images : numpy.ndarray
        ``uint8`` images ``(n, C, H, W)``.  ``(n, H, W)`` is accepted and stored as
        ``(n, 1, H, W)`` (a view of the same memory, no copy).  Both splits have the same ``(C, H, W)``.
    train_labels, test_labels : numpy.ndarray
        Integer labels ``(n,)``, one per image, in ``[0, n_classes)``; stored as ``int64``.
    source : str
        The data spec that loads the same data again (``"mnist"``, ``"mnist-full"``, ``"digits"``,
        ``"cifar10:/abs/path"``, ``"idx:/abs/path"`` ...); recorded in stream and bank metadata.
    mean, std : tuple of float
        Per-channel normalisation on the [0, 1] scale, one entry per channel, ``std > 0``.
        The defaults are MNIST's (one channel): data with several channels must give its own.
    max_value : int
        The pixel value that maps to 1.0 (255 for 8-bit images, 16 for scikit-learn's digits).
    class_names : tuple of str, optional
        One name per class; when given it fixes :attr:`n_classes`.

    Raises
    ------
    DataError
        Images or labels of the wrong type, shape or range (naming the field).
    ConfigError
        ``mean``, ``std``, ``max_value``, ``source`` or ``class_names`` invalid (naming the field).

    Notes
    -----
    Loaders that cache their arrays share them between calls and make them
    read-only; copy them before modifying.

    Examples
    --------
    >>> import numpy as np
    >>> d = ImageData(np.zeros((3, 28, 28), np.uint8), np.array([0, 1, 2]),
    ...               np.zeros((1, 28, 28), np.uint8), np.array([9]), "toy")
    >>> d.n_train, d.n_test, d.image_shape, d.n_classes, d.train_labels.dtype
    (3, 1, (1, 28, 28), 10, dtype('int64'))
    >>> rgb = ImageData(np.full((2, 3, 4, 4), 255, np.uint8), np.array([0, 1]),
    ...                 np.zeros((1, 3, 4, 4), np.uint8), np.array([1]), "toy-rgb",
    ...                 mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0), class_names=("cat", "dog"))
    >>> rgb.normalized("train")[0, :, 0, 0].tolist()
    [2.0, 1.0, 0.5]
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str
    mean: tuple[float, ...] = (MNIST_MEAN,)
    std: tuple[float, ...] = (MNIST_STD,)
    max_value: int = 255
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # frozen: object.__setattr__ is the dataclass way to normalise a field
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError("source", "a non-empty data spec string", repr(self.source))
        value = self.max_value
        object.__setattr__(self, "max_value", check_int("max_value", value, low=1, high=255))
        shape = None
        for split in SPLITS:
            images = getattr(self, f"{split}_images")
            if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim not in (3, 4):
                raise DataError(f"{split}_images: expected uint8 images of shape (n, C, H, W) or (n, H, W), "
                                f"received {_describe(images)}")
            if images.ndim == 3:
                images = images[:, np.newaxis]  # (n, H, W) -> (n, 1, H, W), a view
                object.__setattr__(self, f"{split}_images", images)
            if min(images.shape[1:]) < 1:
                raise DataError(f"{split}_images: expected at least one channel and one pixel, received shape {images.shape}")
            if shape is not None and images.shape[1:] != shape:
                raise DataError(f"{split}_images: expected images of shape {shape} like train_images, "
                                f"received {images.shape[1:]}")
            shape = images.shape[1:]
        channels = shape[0]
        for name in ("mean", "std"):
            values = _channel_values(name, getattr(self, name))
            if len(values) != channels:
                raise ConfigError(name, f"{channels} value(s), one per channel of the images", repr(values))
            object.__setattr__(self, name, values)
        if min(self.std) <= 0:
            raise ConfigError("std", "values > 0", repr(self.std))
        if self.class_names is not None:
            names = self.class_names
            if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not names \
                    or not all(isinstance(n, str) for n in names):
                raise ConfigError("class_names", "None or a non-empty tuple of str", repr(names))
            if len(set(names)) != len(names):
                raise ConfigError("class_names", "distinct names", repr(tuple(names)))
            object.__setattr__(self, "class_names", tuple(names))
        for split in SPLITS:
            n, labels = getattr(self, f"{split}_images").shape[0], getattr(self, f"{split}_labels")
            if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.ndim != 1:
                raise DataError(f"{split}_labels: expected a 1-D integer array, received {_describe(labels)}")
            if labels.shape[0] != n:
                raise DataError(f"{split}_labels: expected {n} labels (one per image), received {labels.shape[0]}")
            low, high = int(labels.min(initial=0)), int(labels.max(initial=0))
            if low < 0:
                raise DataError(f"{split}_labels: expected labels >= 0, received {low}")
            if high > MAX_LABEL:
                raise DataError(f"{split}_labels: expected labels in [0, {MAX_LABEL:,}] (MAX_LABEL), received {high}")
            if labels.dtype != np.int64:
                object.__setattr__(self, f"{split}_labels", labels.astype(np.int64))
        if self.class_names is not None:
            for split in SPLITS:
                high = int(getattr(self, f"{split}_labels").max(initial=0))
                if high >= len(self.class_names):
                    raise DataError(f"{split}_labels: expected labels in [0, {len(self.class_names)}) "
                                    f"({len(self.class_names)} class_names), received {high}")

    # -- shape -----------------------------------------------------------------------------

    @property
    def n_train(self) -> int:
        """Number of training images."""
        return int(self.train_images.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test images."""
        return int(self.test_images.shape[0])

    @property
    def n_classes(self) -> int:
        """``len(class_names)`` when names are given, else the largest label (over both splits) + 1."""
        if self.class_names is not None:
            return len(self.class_names)
        return int(max(self.train_labels.max(initial=-1), self.test_labels.max(initial=-1))) + 1

    @property
    def channels(self) -> int:
        """Channels per image (``C``)."""
        return int(self.train_images.shape[1])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        c, h, w = self.train_images.shape[1:]
        return int(c), int(h), int(w)

    # -- access ----------------------------------------------------------------------------

    def images(self, split: str) -> np.ndarray:
        """The ``uint8 (n, C, H, W)`` images of ``"train"`` or ``"test"``."""
        return getattr(self, f"{_check_split(split)}_images")

    def labels(self, split: str) -> np.ndarray:
        """The ``int64 (n,)`` labels of ``"train"`` or ``"test"``."""
        return getattr(self, f"{_check_split(split)}_labels")

    def normalized(self, split: str) -> torch.Tensor:
        """The whole ``split`` as float32 ``(n, C, H, W)``: ``(x / max_value - mean_c) / std_c``.

        A new tensor (the arrays themselves are left alone).  For one-channel 8-bit data
        with MNIST's statistics this is bit for bit what the MNIST streams have always used
        (:func:`~supsup_core.data.transforms.normalize_images`).
        """
        return normalize_images(self.images(split), self.mean, self.std, max_value=self.max_value)

    def fitted_to(self, shape: Sequence[int]) -> ImageData:
        """The same images fitted to a model's input ``(C, H, W)``: padded with black around the centre, and a
        one-channel image repeated over ``C`` channels (8x8 digits or 28x28 MNIST into a 3x32x32 network).

        The normalisation statistics follow (repeated per channel; padding changes them a little, which the
        model does not mind: every task sees the same inputs).  ``source`` records the fit, as
        ``"<source>@CxHxW"``, and :func:`~supsup_core.data.sources.load_data` reads it back.

        Examples
        --------
        >>> from supsup_core.data import load_digits
        >>> d = load_digits().fitted_to((3, 32, 32))
        >>> d.image_shape, d.source
        ((3, 32, 32), 'digits@3x32x32')
        """
        if isinstance(shape, (str, bytes)) or not isinstance(shape, (Sequence, np.ndarray)) or len(shape) != 3:
            raise ConfigError("shape", "(channels, height, width)", repr(shape))
        c, h, w = (check_int("shape", v, low=1, high=MAX_FITTED_SIDE) for v in shape)
        channels, height, width = self.image_shape
        if (channels != c and channels != 1) or height > h or width > w:
            raise ConfigError("shape", f"at least {height}x{width} pixels and 1 or {channels} channels", (c, h, w))
        if (c, h, w) == self.image_shape:
            return self
        source = split_fitted_spec(self.source)[0] + f"@{c}x{h}x{w}"
        n = self.n_train + self.n_test
        if n * c * h * w > MAX_FITTED_VALUES:  # checked before anything is allocated
            raise DataError(f"{source}: expected at most {MAX_FITTED_VALUES:,} pixel values (images x C x H x W, "
                            f"MAX_FITTED_VALUES), received {n:,} images x {c}x{h}x{w} = {n * c * h * w:,}")
        top, left = (h - height) // 2, (w - width) // 2
        fitted = {}
        for split in SPLITS:
            images = self.images(split)
            out = np.zeros((images.shape[0], c, h, w), dtype=np.uint8)
            out[:, :, top : top + height, left : left + width] = images  # broadcasts one channel over c
            fitted[split] = out
        mean = self.mean if channels == c else self.mean * c
        std = self.std if channels == c else self.std * c
        return ImageData(fitted["train"], self.train_labels, fitted["test"], self.test_labels, source=source, mean=mean,
                         std=std, max_value=self.max_value, class_names=self.class_names)


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise ConfigError("split", "'train' or 'test'", repr(split))
    return str(split)
