"""A lazy ImageFolder for ImageNet-scale data (data spec ``"imagefolder:PATH"``): nothing is loaded up front.

:class:`ImageFolderData` scans ``root/train/<class>/<image>`` and
``root/val/<class>/<image>`` once (class names sorted, label = index in that
order; image files picked by extension, ``.jpeg .jpg .png .bmp .ppm .webp`` in
any case, sorted by name; sub-folders of a class folder are not searched) and
keeps only the file names, packed into NumPy arrays so that DataLoader worker
processes share them without copying.  Images are decoded on demand with PIL
(converted to RGB) by the ``torch.utils.data.Dataset`` objects that
:meth:`ImageFolderData.train_dataset` and :meth:`ImageFolderData.test_dataset`
return; their items are ``(uint8 tensor (3, size, size), int label)``,
normalised later on the batch (:meth:`ImageFolderData.normalize`, ImageNet's
:data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`).

The transforms are the reference's ImageNet ones, written here without
torchvision:

* **train** — a random resized crop: up to 10 attempts draw an area fraction
  uniformly in ``scale`` (0.08, 1) and a log-uniform aspect ratio in ``ratio``
  (3/4, 4/3), and take the first crop that fits at a uniformly drawn position;
  after 10 misses, the largest centred crop whose aspect ratio lies in ``ratio``.
  The crop is resized to ``size`` × ``size`` (bilinear), then flipped
  left-right with probability 1/2.
* **test** — the shorter side resized to ``resize`` (bilinear; the longer side
  scaled in proportion and rounded down), then the centred ``size`` × ``size`` crop.

Randomness is per item and independent of the DataLoader's workers: item ``i``
in epoch ``e`` draws from
``numpy.random.Generator(numpy.random.PCG64(numpy.random.SeedSequence([seed, e, i])))``.
Call ``dataset.set_epoch(seed, epoch)`` before each epoch's iterator is created
(workers copy the dataset when they start).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import ConfigError, DataError
from ..validate import check_int
from ._text import one_line
from .transforms import normalize_images

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_EXTENSIONS",
    "ImageFolderData",
    "ImageFolderDataset",
    "MAX_CLASSES",
    "MAX_FILES",
    "MAX_PIXELS",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet's per-channel mean on the [0, 1] scale (R, G, B)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet's per-channel standard deviation on the [0, 1] scale."""
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".webp")
"""File name endings that count as images (compared case-insensitively)."""
MAX_FILES = 20_000_000
"""Default ceiling on image files over both splits (ImageNet-21k has about 14 million)."""
MAX_CLASSES = 100_000
"""Default ceiling on class folders."""
MAX_PIXELS = 89_478_485
"""Default ceiling on pixels per image, checked before decoding (PIL's own decompression-bomb threshold)."""

_SPLIT_FOLDERS = {"train": "train", "test": "val"}


def _check_range(name: str, value: object, low: float, high: float) -> tuple[float, float]:
    """A pair ``(a, b)`` of finite floats with ``low < a <= b <= high``."""
    try:
        a, b = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(name, "a pair of numbers (low, high)", repr(value)) from None
    if not (math.isfinite(a) and math.isfinite(b) and low < a <= b <= high):
        raise ConfigError(name, f"a pair with {low} < low <= high <= {high}", repr(value))
    return a, b


class _Names:
    """File names packed into one byte array and offsets (no per-name Python objects to copy into workers)."""

    def __init__(self, names: Sequence[str]) -> None:
        encoded = [os.fsencode(n) for n in names]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return self.offsets.size - 1

    def __getitem__(self, index: int) -> str:
        return os.fsdecode(self.blob[self.offsets[index] : self.offsets[index + 1]].tobytes())


@dataclass(frozen=True)
class _TrainTransform:
    size: int
    scale: tuple[float, float]
    ratio: tuple[float, float]

    def __call__(self, image, rng: np.random.Generator, max_pixels: int):
        from PIL import Image

        left, top, right, bottom = random_crop_box(image.width, image.height, self.scale, self.ratio, rng)
        out = image.crop((left, top, right, bottom)).resize((self.size, self.size), Image.Resampling.BILINEAR)
        if rng.random() < 0.5:
            out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return out


@dataclass(frozen=True)
class _TestTransform:
    size: int
    resize: int

    def __call__(self, image, rng: np.random.Generator | None, max_pixels: int):
        from PIL import Image

        width, height = image.size
        if width <= height:
            new = (self.resize, int(self.resize * height / width))
        else:
            new = (int(self.resize * width / height), self.resize)
        if new[0] * new[1] > max(max_pixels, self.resize * self.resize):  # a 1 x 100,000 strip would explode
            raise DataError(f"an image whose resize to {new[0]} x {new[1]} stays within {max_pixels:,} pixels "
                            f"(max_pixels), received {width} x {height}")
        if new != image.size:
            image = image.resize(new, Image.Resampling.BILINEAR)
        left = int(round((new[0] - self.size) / 2.0))
        top = int(round((new[1] - self.size) / 2.0))
        return image.crop((left, top, left + self.size, top + self.size))


def random_crop_box(width: int, height: int, scale: tuple[float, float], ratio: tuple[float, float],
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """The ``(left, top, right, bottom)`` box of a random resized crop of a ``width`` × ``height`` image.

    Up to 10 attempts: an area ``width * height * U(scale)`` and an aspect ratio
    ``exp(U(log ratio))`` give a ``w × h`` crop (rounded); the first that fits is placed
    at a uniform position.  After 10 misses, the largest centred crop whose aspect ratio
    lies within ``ratio``.

    Examples
    --------
    >>> rng = np.random.Generator(np.random.PCG64(0))
    >>> left, top, right, bottom = random_crop_box(64, 48, (0.08, 1.0), (3 / 4, 4 / 3), rng)
    >>> 0 <= left < right <= 64 and 0 <= top < bottom <= 48
    True
    >>> random_crop_box(100, 10, (0.9, 1.0), (1.0, 1.0), rng)   # never fits: centred 10 x 10
    (45, 0, 55, 10)
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        w, h = int(round(height * ratio[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def _decode_rgb(path: Path, max_pixels: int):
    """Open ``path`` with PIL and return it as an RGB image; DataError naming the file on any failure."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's remarks on palettes and EXIF data are not the caller's business
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise DataError(f"{path}: expected at most {max_pixels:,} pixels (max_pixels), "
                                    f"received {width} x {height} (a decompression bomb?)")
                return image.convert("RGB")
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"{path}: expected an image of reasonable size, received a decompression bomb ({one_line(exc)})") from exc
        except FileNotFoundError:
            raise DataError(f"{path}: expected an image file, received a path that no longer exists") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
            raise DataError(f"{path}: expected a readable image, could not decode it ({one_line(exc)})") from exc


class ImageFolderDataset(Dataset):
    """One split of an :class:`ImageFolderData`: items ``(uint8 tensor (3, size, size), int label)``, decoded lazily.

    Built by :meth:`ImageFolderData.train_dataset` / :meth:`ImageFolderData.test_dataset`.

    Attributes
    ----------
    class_names : tuple of str
        Class ``k``'s folder name is ``class_names[k]``.
    seed, epoch : int
        Select the random draws (train transform); see :meth:`set_epoch`.
    """

    def __init__(self, folder: Path, class_names: tuple[str, ...], targets: np.ndarray, names: _Names,
                 transform: _TrainTransform | _TestTransform, max_pixels: int) -> None:
        self.folder = folder
        self.class_names = class_names
        self._targets = targets
        self._names = names
        self.transform = transform
        self.max_pixels = max_pixels
        self.seed = 0
        self.epoch = 0

    def __len__(self) -> int:
        return int(self._targets.size)

    @property
    def targets(self) -> list[int]:
        """The label of every item, in order, without decoding anything."""
        return self._targets.tolist()

    def set_epoch(self, seed: int, epoch: int) -> None:
        """Select the random draws: item ``i`` uses ``SeedSequence([seed, epoch, i])``."""
        self.seed = check_int("seed", seed, low=0)
        self.epoch = check_int("epoch", epoch, low=0)

    def path(self, index: int) -> Path:
        """The file of item ``index``."""
        return self.folder / self.class_names[int(self._targets[index])] / self._names[index]

    def generator(self, index: int) -> np.random.Generator:
        """The generator item ``index`` draws from in the current seed and epoch."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch, index])))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index: expected an int, received {type(index).__name__}")
        if not 0 <= index < len(self):
            raise IndexError(f"index: expected 0 <= index < {len(self)}, received {index}")
        index = int(index)
        path = self.path(index)
        try:
            image = self.transform(_decode_rgb(path, self.max_pixels), self.generator(index), self.max_pixels)
        except DataError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise DataError(f"{path}: expected {exc}") from None
        pixels = np.asarray(image, dtype=np.uint8)  # (size, size, 3)
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy()), int(self._targets[index])  # -> (3, size, size)


class ImageFolderData:
    """A folder of images in ``train/<class>/`` and ``val/<class>/``, scanned once, decoded lazily.

    Parameters
    ----------
    root : path-like
        The folder holding ``train`` and ``val``.
    max_files : int
        Refuse more image files than this over both splits.
    max_classes : int
        Refuse more class folders than this.
    max_pixels : int
        Refuse, when decoding, images with more pixels than this (checked before decoding).

    Raises
    ------
    DataError
        Naming the folder: ``root``, ``train`` or ``val`` missing; no class folder; a class
        folder without images; a ``val`` class that ``train`` lacks; more files or classes
        than allowed.

    Examples
    --------
    >>> import tempfile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as root:
    ...     for split, cls in [("train", "cat"), ("train", "dog"), ("val", "dog")]:
    ...         os.makedirs(f"{root}/{split}/{cls}")
    ...         Image.new("RGB", (40, 30), "red").save(f"{root}/{split}/{cls}/a.png")
    ...     data = ImageFolderData(root)
    ...     x, y = data.train_dataset(size=16)[1]
    ...     z, _ = data.test_dataset(size=8, resize=10)[0]
    >>> data.class_names, data.n_train, data.n_test, tuple(x.shape), x.dtype, y, tuple(z.shape)
    (('cat', 'dog'), 2, 1, (3, 16, 16), torch.uint8, 1, (3, 8, 8))
    """

    mean = IMAGENET_MEAN
    std = IMAGENET_STD
    max_value = 255
    channels = 3

    def __init__(self, root: str | os.PathLike, *, max_files: int = MAX_FILES, max_classes: int = MAX_CLASSES,
                 max_pixels: int = MAX_PIXELS) -> None:
        if not isinstance(root, (str, os.PathLike)):
            raise ConfigError("root", "a folder path", type(root).__name__)
        self.max_files = check_int("max_files", max_files, low=1)
        self.max_classes = check_int("max_classes", max_classes, low=1)
        self.max_pixels = check_int("max_pixels", max_pixels, low=1)
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(f"{self.root}: expected a folder holding train/<class>/ and val/<class>/, "
                            "received a path that is not a folder")
        folders = {split: self.root / name for split, name in _SPLIT_FOLDERS.items()}
        for split, folder in folders.items():
            if not folder.is_dir():
                raise DataError(f"{folder}: expected the {split} split's folder of class folders, received no such folder")
        self.class_names = tuple(self._class_folders(folders["train"]))
        if not self.class_names:
            raise DataError(f"{folders['train']}: expected at least one class folder, received none")
        extra = sorted(set(self._class_folders(folders["test"])) - set(self.class_names))
        if extra:
            raise DataError(f"{folders['test'] / extra[0]}: expected only classes that train/ has, "
                            f"received {len(extra)} more ({', '.join(extra[:5])})")
        self._scanned = 0
        self._splits = {split: self._scan(folder) for split, folder in folders.items()}

    def _class_folders(self, folder: Path) -> list[str]:
        try:
            with os.scandir(folder) as entries:
                names = sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))
        except OSError as exc:
            raise DataError(f"{folder}: expected a readable folder, could not list it ({one_line(exc)})") from exc
        if len(names) > self.max_classes:
            raise DataError(f"{folder}: expected at most {self.max_classes:,} class folders (max_classes), "
                            f"received {len(names):,}")
        return names

    def _scan(self, folder: Path) -> tuple[np.ndarray, _Names]:
        """Labels and file names of one split, class by class, names sorted within a class."""
        targets: list[np.ndarray] = []
        names: list[str] = []
        for label, name in enumerate(self.class_names):
            class_folder = folder / name
            if not class_folder.is_dir():
                continue  # a class may be absent from val/ (never from train/, where the names come from)
            try:
                with os.scandir(class_folder) as entries:
                    files = sorted(e.name for e in entries
                                   if e.name.lower().endswith(IMAGE_EXTENSIONS) and e.is_file())
            except OSError as exc:
                raise DataError(f"{class_folder}: expected a readable folder, could not list it ({one_line(exc)})") from exc
            if not files:
                raise DataError(f"{class_folder}: expected at least one image ({' '.join(IMAGE_EXTENSIONS)}), "
                                "received none")
            self._scanned += len(files)
            if self._scanned > self.max_files:
                raise DataError(f"{self.root}: expected at most {self.max_files:,} image files (max_files), "
                                f"received more (reached in {class_folder})")
            names.extend(files)
            targets.append(np.full(len(files), label, dtype=np.int64))
        labels = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
        labels.setflags(write=False)
        return labels, _Names(names)

    def __repr__(self) -> str:
        return f"ImageFolderData({str(self.root)!r}: {self.n_classes} classes, {self.n_train} train, {self.n_test} val)"

    @property
    def source(self) -> str:
        """The data spec that loads this folder again: ``"imagefolder:<absolute root>"``."""
        return f"imagefolder:{self.root}"

    @property
    def n_classes(self) -> int:
        """Number of classes (class folders under ``train/``)."""
        return len(self.class_names)

    @property
    def n_train(self) -> int:
        """Images under ``train/``."""
        return int(self._splits["train"][0].size)

    @property
    def n_test(self) -> int:
        """Images under ``val/``."""
        return int(self._splits["test"][0].size)

    def targets(self, split: str = "train") -> list[int]:
        """The labels of ``"train"`` or ``"test"`` (``val/``) in item order, without decoding anything."""
        if split not in _SPLIT_FOLDERS:
            raise ConfigError("split", "'train' or 'test'", repr(split))
        return self._splits[split][0].tolist()

    def _dataset(self, split: str, transform) -> ImageFolderDataset:
        labels, names = self._splits[split]
        return ImageFolderDataset(self.root / _SPLIT_FOLDERS[split], self.class_names, labels, names, transform,
                                  self.max_pixels)

    def train_dataset(self, size: int = 224, *, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), seed: int = 0) -> ImageFolderDataset:
        """The training split with the random-resized-crop + flip transform.

        Parameters
        ----------
        size : int
            Output side in pixels.
        scale : (float, float)
            Range of the crop's area as a fraction of the image, within (0, 1].
        ratio : (float, float)
            Range of the crop's aspect ratio (width / height), drawn log-uniformly.
        seed : int
            The seed of epoch 0 (change both with :meth:`ImageFolderDataset.set_epoch`).
        """
        transform = _TrainTransform(check_int("size", size, low=1), _check_range("scale", scale, 0.0, 1.0),
                                    _check_range("ratio", ratio, 0.0, math.inf))
        dataset = self._dataset("train", transform)
        dataset.set_epoch(seed, 0)
        return dataset

    def test_dataset(self, size: int = 224, resize: int = 256) -> ImageFolderDataset:
        """The ``val/`` split: shorter side resized to ``resize``, then the centred ``size`` crop (no randomness)."""
        size = check_int("size", size, low=1)
        resize = check_int("resize", resize, low=1)
        if resize < size:
            raise ConfigError("resize", f"at least size ({size}): the centred crop must fit", resize)
        return self._dataset("test", _TestTransform(size, resize))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """A batch of ``uint8 (B, 3, H, W)`` items as float32, normalised with ImageNet's mean and std."""
        return normalize_images(images, self.mean, self.std, max_value=self.max_value)
