"""scikit-learn's 8×8 handwritten digits as an :class:`~supsup_core.data.images.ImageData` (data spec ``"digits"``).

The 1,797 images ship inside scikit-learn (an existing dependency) and are read
through :func:`sklearn.datasets.load_digits`: 8×8 pixels with values 0–16
(``max_value=16``), one channel, digits 0–9.  The split is fixed and
documented: **for each digit, the first 80 % of its images in file order
(``floor(4 n / 5)`` of its ``n`` images) train, the rest test** — 1,433 training
and 364 test images; both splits keep file order.  :data:`DIGITS_MEAN` and
:data:`DIGITS_STD` were computed once from the training split on the [0, 1]
scale (all pixels together, population standard deviation); a test checks them
against the data.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DataError
from ._text import one_line
from .images import ImageData
from .mnist import DIGIT_NAMES

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "DIGITS_SPEC", "DIGITS_TRAIN_FRACTION", "load_digits", "split_mask"]

DIGITS_SPEC = "digits"
"""The data spec (:attr:`ImageData.source`) of this dataset."""
DIGITS_TRAIN_FRACTION = (4, 5)
"""Each digit's first ``4/5`` of its images (rounded down) train; kept as a fraction so the split is exact."""
DIGITS_MEAN = (0.3053,)
"""Mean of the training pixels divided by 16 (0.30533 before rounding)."""
DIGITS_STD = (0.3755,)
"""Standard deviation of the training pixels divided by 16 (0.37549 before rounding)."""

_MAX_VALUE = 16


def split_mask(labels: np.ndarray) -> np.ndarray:
    """``True`` for the rows that train: each label's first ``floor(4 n / 5)`` rows in order.

    >>> split_mask(np.array([0, 1, 0, 0, 0, 0, 1])).tolist()
    [True, True, True, True, True, False, False]
    """
    numerator, denominator = DIGITS_TRAIN_FRACTION
    counts = np.bincount(labels, minlength=1)
    rank = np.empty(labels.shape[0], dtype=np.int64)  # position of each row among the rows of its label
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        rank[rows] = np.arange(rows.size)
    return rank < (numerator * counts[labels]) // denominator


@functools.lru_cache(maxsize=1)
def _load() -> ImageData:
    from sklearn.datasets import load_digits as sklearn_digits  # local: scikit-learn takes a second to import

    try:
        bunch = sklearn_digits()
    except (OSError, ValueError) as exc:  # a damaged scikit-learn install
        raise DataError(f"digits: expected scikit-learn's bundled digits data, could not read it ({one_line(exc)})") from exc
    images, labels = np.asarray(bunch.images), np.asarray(bunch.target)
    if images.ndim != 3 or images.shape[1:] != (8, 8) or labels.shape != images.shape[:1]:
        raise DataError(f"digits: expected images (n, 8, 8) with one label each, received {images.shape} and {labels.shape}")
    if not np.array_equal(images, np.rint(images)) or images.min() < 0 or images.max() > _MAX_VALUE:
        raise DataError("digits: expected whole pixel values 0-16, received other values")
    if labels.min() < 0 or labels.max() > 9:
        raise DataError(f"digits: expected labels 0-9, received values in [{labels.min()}, {labels.max()}]")
    pixels = images.astype(np.uint8)[:, np.newaxis]  # (n, 8, 8) -> (n, 1, 8, 8)
    labels = labels.astype(np.int64)
    train = split_mask(labels)
    parts = [pixels[train], labels[train], pixels[~train], labels[~train]]
    for array in parts:
        array.setflags(write=False)  # shared through the cache
    return ImageData(*parts, source=DIGITS_SPEC, mean=DIGITS_MEAN, std=DIGITS_STD, max_value=_MAX_VALUE,
                     class_names=DIGIT_NAMES)


def load_digits() -> ImageData:
    """Load scikit-learn's 8×8 digits with the fixed 80 % / 20 % per-digit split.

    The result is cached (its arrays are shared and read-only).

    Returns
    -------
    ImageData
        1,433 training and 364 test images ``uint8 (n, 1, 8, 8)`` with values 0–16,
        ``max_value=16``, normalisation :data:`DIGITS_MEAN` / :data:`DIGITS_STD`, source ``"digits"``.

    Raises
    ------
    DataError
        If scikit-learn's bundled file cannot be read or is not what it should be.

    Examples
    --------
    >>> d = load_digits()
    >>> d.n_train, d.n_test, d.image_shape, d.max_value
    (1433, 364, (1, 8, 8), 16)
    """
    return _load()
