"""CIFAR-10 and CIFAR-100 from the files the official CIFAR page distributes, read offline.

Nothing is downloaded: download the archive yourself and pass its path, the
folder it extracts to, or that folder's parent.  Both versions the page offers
are read, extracted or as the ``.tar.gz`` itself (members are read with
:mod:`tarfile` without extracting; only regular-file members with the expected
names are read, and their declared sizes are checked before reading):

===========  ====================================  ===========================================================
dataset      binary version                        python version
===========  ====================================  ===========================================================
CIFAR-10     ``cifar-10-binary.tar.gz`` →          ``cifar-10-python.tar.gz`` → ``cifar-10-batches-py/``:
             ``cifar-10-batches-bin/``:            ``data_batch_1`` … ``data_batch_5``, ``test_batch``,
             ``data_batch_1.bin`` …                ``batches.meta``
             ``data_batch_5.bin``,
             ``test_batch.bin``, ``batches.meta.txt``
CIFAR-100    ``cifar-100-binary.tar.gz`` →         ``cifar-100-python.tar.gz`` → ``cifar-100-python/``:
             ``cifar-100-binary/``: ``train.bin``,  ``train``, ``test``, ``meta``
             ``test.bin``, ``fine_label_names.txt``
===========  ====================================  ===========================================================

A binary file is a run of records: one label byte (CIFAR-10) or a coarse then a
fine label byte (CIFAR-100), then 3,072 pixel bytes, the 32×32 red plane, then
green, then blue, each row by row.  A python-version file is a Python 2 pickle
of a dict (``b"data"``: ``uint8 (n, 3072)`` in the same pixel order,
``b"labels"`` or ``b"fine_labels"``: a list of ints); it is decoded with
:mod:`~supsup_core.data.safe_pickle`, which never executes anything.
CIFAR-100 is loaded with its 100 fine labels.  When a folder holds both versions
the binary one is read.

The loaders return :class:`~supsup_core.data.images.ImageData` with images
``(n, 3, 32, 32)``, the class names from the meta file, and the reference's
normalisation (:data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`, :data:`CIFAR100_MEAN` /
:data:`CIFAR100_STD`).  :func:`write_cifar_binary`, :func:`write_cifar_python`
and :func:`pack_cifar_archive` write small datasets in exactly these layouts
(the tests use them).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hopfield_masks.safety.files import atomic_path

from ..errors import ConfigError, DataError
from ._text import one_line
from . import safe_pickle
from .untrusted import describe_path, read_regular
from .images import ImageData

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR_KINDS",
    "load_cifar",
    "load_cifar10",
    "load_cifar100",
    "pack_cifar_archive",
    "write_cifar_binary",
    "write_cifar_python",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
"""Per-channel mean of CIFAR-10's training images on the [0, 1] scale (R, G, B)."""
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
"""Per-channel standard deviation of CIFAR-10's training images on the [0, 1] scale."""
CIFAR100_MEAN = (0.491, 0.482, 0.447)
"""The reference's CIFAR-100 normalisation mean (R, G, B)."""
CIFAR100_STD = (0.247, 0.243, 0.262)
"""The reference's CIFAR-100 normalisation standard deviation."""
CIFAR_KINDS = ("cifar10", "cifar100")
"""The ``kind`` arguments of the writers (and the data spec prefixes)."""

_SIDE = 32
_PIXELS = 3 * _SIDE * _SIDE  # 3,072 bytes per image: R plane, G plane, B plane
_MAX_DATA_BYTES = 256 << 20  # a data file (CIFAR-100's train.bin is 153,700,000 bytes)
_MAX_META_BYTES = 1 << 20
_COARSE_CLASSES = 20  # CIFAR-100's superclasses (the coarse label byte of the binary records)


@dataclass(frozen=True)
class _Layout:
    """One of the four official layouts."""

    kind: str  # "cifar10" | "cifar100"
    version: str  # "binary" | "python"
    folder: str  # the folder the archive extracts to
    archive: str  # the archive's name on the CIFAR page
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    n_classes: int

    @property
    def title(self) -> str:
        return f"{'CIFAR-10' if self.kind == 'cifar10' else 'CIFAR-100'} {self.version} version"

    @property
    def label_bytes(self) -> int:  # binary records: label byte(s) before the pixels
        return 1 if self.kind == "cifar10" else 2

    @property
    def label_key(self) -> bytes:  # python version: the label list's key
        return b"labels" if self.kind == "cifar10" else b"fine_labels"

    @property
    def names_key(self) -> bytes:  # python version: the class names' key in the meta file
        return b"label_names" if self.kind == "cifar10" else b"fine_label_names"

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.meta)


_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_LAYOUTS = {
    ("cifar10", "binary"): _Layout("cifar10", "binary", "cifar-10-batches-bin", "cifar-10-binary.tar.gz",
                                   tuple(f"{b}.bin" for b in _BATCHES), ("test_batch.bin",), "batches.meta.txt", 10),
    ("cifar10", "python"): _Layout("cifar10", "python", "cifar-10-batches-py", "cifar-10-python.tar.gz",
                                   _BATCHES, ("test_batch",), "batches.meta", 10),
    ("cifar100", "binary"): _Layout("cifar100", "binary", "cifar-100-binary", "cifar-100-binary.tar.gz",
                                    ("train.bin",), ("test.bin",), "fine_label_names.txt", 100),
    ("cifar100", "python"): _Layout("cifar100", "python", "cifar-100-python", "cifar-100-python.tar.gz",
                                    ("train",), ("test",), "meta", 100),
}
_VERSIONS = ("binary", "python")  # the order in which a folder holding both is read


def _layout(kind: str, version: str) -> _Layout:
    return _LAYOUTS[kind, version]


# ---------------------------------------------------------------------------------------------
# finding the files: a folder of the layout, its parent, or the archive


@dataclass(frozen=True)
class _Found:
    """Where a layout's files are: ``folder`` (extracted) or ``archive`` (a tar, members under ``layout.folder``)."""

    layout: _Layout
    folder: Path | None = None
    archive: Path | None = None


def _find(path: str | os.PathLike, kind: str) -> _Found:
    """Locate the CIFAR files of ``kind`` at ``path`` (see the module docstring for what is accepted)."""
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError("path", "a folder or archive path", type(path).__name__)
    root = Path(path).expanduser()
    layouts = [_layout(kind, version) for version in _VERSIONS]
    name = "CIFAR-10" if kind == "cifar10" else "CIFAR-100"
    if root.is_file():
        return _Found(layouts[0], archive=root)  # the archive's members decide the version
    if not root.is_dir():  # missing, a link loop, a FIFO, a device ...: say which
        raise DataError(f"{root}: expected a {name} folder or downloaded archive, received {describe_path(root)}")
    for layout in layouts:
        if (root / layout.folder).is_dir():
            return _Found(layout, folder=root / layout.folder)
    for layout in layouts:
        if root.name == layout.folder or (root / layout.train[0]).is_file():
            return _Found(layout, folder=root)
    for layout in layouts:
        if (root / layout.archive).is_file():
            return _Found(layout, archive=root / layout.archive)
    wanted = ", ".join(f"{layout.folder}/ or {layout.archive}" for layout in layouts)
    raise DataError(f"{root}: expected a {name} folder ({wanted}), the extracted folder itself or the archive, "
                    "received none of them")


def _read_folder(found: _Found, files: tuple[str, ...]) -> Iterator[tuple[str, str, bytes]]:
    """``(name, display, bytes)`` of each file of an extracted layout, in order; sizes checked before reading."""
    layout, folder = found.layout, found.folder
    for name in files:
        path = folder / name
        limit = _MAX_META_BYTES if name == layout.meta else _MAX_DATA_BYTES
        # a regular file (links followed), size checked before reading; a FIFO, device or link loop is named as such
        raw = read_regular(path, limit=limit, what=f"the {layout.title}'s {name} (from {layout.archive})",
                           missing="no such file")
        yield name, str(path), raw


def _read_archive(archive: Path, kind: str) -> Iterator[tuple[_Layout, str, str, bytes]]:
    """``(layout, name, display, bytes)`` of each wanted member, in archive order, in one pass over the archive.

    The layout (binary or python version) is the one whose folder the first CIFAR member sits in;
    members elsewhere are skipped.  Missing members are reported after the pass.
    """
    try:
        tar = tarfile.open(archive, mode="r:*")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: expected a tar archive (.tar.gz) of CIFAR files, could not open it ({one_line(exc)})") from exc
    candidates = {_layout(kind, v).folder: _layout(kind, v) for v in _VERSIONS}
    layout: _Layout | None = None
    seen: set[str] = set()
    with tar:
        for member in _members(tar, archive):
            folder, _, name = member.name.partition("/")
            if layout is None:
                layout = candidates.get(folder)
            if layout is None or folder != layout.folder or name not in layout.files:
                continue
            display = f"{archive}/{member.name}"
            if name in seen:
                raise DataError(f"{display}: expected one member of this name, received it twice")
            seen.add(name)
            if not member.isreg():
                raise DataError(f"{display}: expected a regular file member, received a link or special member")
            limit = _MAX_META_BYTES if name == layout.meta else _MAX_DATA_BYTES
            if member.size > limit:
                raise DataError(f"{display}: expected at most {limit:,} bytes, received a member of {member.size:,}")
            try:
                raw = tar.extractfile(member).read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise DataError(f"{display}: expected {member.size:,} readable bytes, could not read them ({one_line(exc)})") from exc
            if len(raw) != member.size:
                raise DataError(f"{display}: expected {member.size:,} bytes, received {len(raw):,} (truncated archive)")
            yield layout, name, display, raw
    if layout is None:
        raise DataError(f"{archive}: expected members under {' or '.join(f + '/' for f in candidates)}, received none")
    missing = [name for name in layout.files if name not in seen]
    if missing:
        raise DataError(f"{archive}/{layout.folder}/{missing[0]}: expected the {layout.title}'s {missing[0]} "
                        f"in the archive, received no such member (missing: {', '.join(missing)})")


def _members(tar: tarfile.TarFile, archive: Path) -> Iterator[tarfile.TarInfo]:
    """The archive's members one by one (never all at once), with ``./`` prefixes dropped; read errors named."""
    while True:
        try:
            member = tar.next()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{archive}: expected a complete tar archive, could not read it ({one_line(exc)})") from exc
        if member is None:
            return
        while member.name.startswith("./"):
            member.name = member.name[2:]
        yield member


# ---------------------------------------------------------------------------------------------
# parsing one file


def _looks_like_pickle(raw: bytes) -> bool:
    return len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5


def _parse_binary(raw: bytes, display: str, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Records -> ``uint8 (n, 3, 32, 32)`` images and ``int64 (n,)`` (fine) labels."""
    record = layout.label_bytes + _PIXELS
    if _looks_like_pickle(raw):
        raise DataError(f"{display}: expected {layout.title} records of {record} bytes, received a Python pickle "
                        "(the python version's format)")
    if raw[:2] == b"\x1f\x8b":
        raise DataError(f"{display}: expected {layout.title} records of {record} bytes, received gzip-compressed data")
    if not raw or len(raw) % record:
        raise DataError(f"{display}: expected a whole number of {record}-byte records ({layout.label_bytes} label "
                        f"byte(s) + {_PIXELS} pixels), received {len(raw):,} bytes "
                        f"({len(raw) // record} records and {len(raw) % record} bytes over: truncated?)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)  # (n, label bytes + 3072)
    if layout.kind == "cifar100":
        _check_labels(records[:, 0], _COARSE_CLASSES, display, "coarse labels")
    labels = records[:, layout.label_bytes - 1].astype(np.int64)
    _check_labels(labels, layout.n_classes, display, "labels")
    images = np.ascontiguousarray(records[:, layout.label_bytes :]).reshape(-1, 3, _SIDE, _SIDE)  # one copy, -> (n, 3, 32, 32)
    return images, labels


def _check_labels(labels: np.ndarray, n_classes: int, display: str, what: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        raise DataError(f"{display}: expected {what} in [0, {n_classes}), received {int(labels[bad[0]])} "
                        f"(record {int(bad[0])})")


def _entry(table: dict, key: bytes, display: str) -> object:
    """``table[key]``, accepting the key as bytes (Python 2 pickles) or str."""
    for candidate in (key, key.decode("ascii")):
        if candidate in table:
            return table[candidate]
    keys = ", ".join(repr(k) for k in list(table)[:8])
    raise DataError(f"{display}: expected a dict with the key {key!r}, received keys {keys or 'none'}")


def _unpickle(raw: bytes, display: str, layout: _Layout) -> dict:
    if not _looks_like_pickle(raw):
        record = layout.label_bytes + _PIXELS
        hint = " (it has the size of binary-version records)" if raw and len(raw) % record == 0 else ""
        raise DataError(f"{display}: expected a Python pickle (the {layout.title}, starting with bytes 0x80 0x02), "
                        f"received data starting with {raw[:4].hex(' ') or 'nothing'}{hint}")
    table = safe_pickle.loads(raw, source=display, max_bytes=_MAX_DATA_BYTES)
    if not isinstance(table, dict):
        raise DataError(f"{display}: expected a pickled dict, received a {type(table).__name__}")
    return table


def _parse_python(raw: bytes, display: str, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    table = _unpickle(raw, display, layout)
    data = _entry(table, b"data", display)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{display}: expected b'data' as a uint8 array of shape (n, {_PIXELS}), received {found}")
    raw_labels = _entry(table, layout.label_key, display)
    if isinstance(raw_labels, np.ndarray) and raw_labels.dtype.kind in "iu" and raw_labels.ndim == 1:
        labels = raw_labels.astype(np.int64)
    elif isinstance(raw_labels, list) and all(type(v) is int for v in raw_labels):
        try:
            labels = np.array(raw_labels, dtype=np.int64)
        except OverflowError:
            raise DataError(f"{display}: expected {layout.label_key!r} in [0, {layout.n_classes}), "
                            "received an integer beyond int64") from None
    else:
        raise DataError(f"{display}: expected {layout.label_key!r} as a list of ints, received {type(raw_labels).__name__}")
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"{display}: expected {data.shape[0]} labels (one per row of b'data'), received {labels.shape[0]}")
    _check_labels(labels, layout.n_classes, display, f"{layout.label_key!r}")
    return data.reshape(-1, 3, _SIDE, _SIDE).copy(), labels  # (n, 3072) -> (n, 3, 32, 32), writable


def _parse_meta(raw: bytes, display: str, layout: _Layout) -> tuple[str, ...]:
    """The class names of the meta file, as ``str``."""
    if layout.version == "binary":
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DataError(f"{display}: expected UTF-8 text, one class name per line, received other bytes") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        listed = _entry(_unpickle(raw, display, layout), layout.names_key, display)
        if not isinstance(listed, list) or not all(isinstance(n, (bytes, str)) for n in listed):
            raise DataError(f"{display}: expected {layout.names_key!r} as a list of names, received {type(listed).__name__}")
        names = [n.decode("utf-8", "replace") if isinstance(n, bytes) else n for n in listed]
    if len(names) != layout.n_classes or len(set(names)) != len(names):
        raise DataError(f"{display}: expected {layout.n_classes} distinct class names, received {len(names)} "
                        f"({len(set(names))} distinct)")
    return tuple(names)


# ---------------------------------------------------------------------------------------------
# loading


def load_cifar(path: str | os.PathLike, kind: str) -> ImageData:
    """Load CIFAR-10 (``kind="cifar10"``) or CIFAR-100 (``"cifar100"``) from ``path``; see :func:`load_cifar10`."""
    if kind not in CIFAR_KINDS:
        raise ConfigError("kind", f"one of {', '.join(CIFAR_KINDS)}", repr(kind))
    found = _find(path, kind)
    if found.archive is not None:
        files = _read_archive(found.archive, kind)
    else:
        files = ((found.layout, name, display, raw) for name, display, raw in _read_folder(found, found.layout.files))
    parsed: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: tuple[str, ...] = ()
    layout = found.layout
    for layout, name, display, raw in files:  # archive order for archives; each file parsed as soon as it is read
        if name == layout.meta:
            names = _parse_meta(raw, display, layout)
        else:
            parse = _parse_binary if layout.version == "binary" else _parse_python
            parsed[name] = parse(raw, display, layout)
        del raw
    def joined(split: str, item: int) -> np.ndarray:  # the split's files in order (one file: no copy)
        arrays = [parsed[name][item] for name in getattr(layout, split)]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if kind == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    return ImageData(
        joined("train", 0), joined("train", 1), joined("test", 0), joined("test", 1),
        source=f"{kind}:{Path(path).expanduser().resolve()}",
        mean=mean, std=std, max_value=255, class_names=names,
    )


def load_cifar10(path: str | os.PathLike) -> ImageData:
    """Load CIFAR-10 from the official binary or python version, extracted or as the ``.tar.gz``.

    Parameters
    ----------
    path : path-like
        ``cifar-10-batches-bin/`` or ``cifar-10-batches-py/``, the folder holding one of
        them (or holding ``cifar-10-binary.tar.gz`` / ``cifar-10-python.tar.gz``), or the archive itself.

    Returns
    -------
    ImageData
        50,000 training images (``data_batch_1`` … ``data_batch_5`` in order) and 10,000
        test images, ``uint8 (n, 3, 32, 32)``, the ten class names of the meta file,
        normalisation :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD`, source ``"cifar10:<absolute path>"``.

    Raises
    ------
    DataError
        One line naming the file: missing, truncated, a pickle where records belong (or the
        other way round), a label out of range, an unreadable archive.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> toy = ImageData(rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8), np.arange(5),
    ...                 rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8), np.array([9, 0]), "toy",
    ...                 mean=CIFAR10_MEAN, std=CIFAR10_STD)
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     back = load_cifar10(write_cifar_binary(folder, toy, "cifar10"))
    >>> bool((back.train_images == toy.train_images).all()), back.test_labels.tolist(), back.n_classes
    (True, [9, 0], 10)
    """
    return load_cifar(path, "cifar10")


def load_cifar100(path: str | os.PathLike) -> ImageData:
    """Load CIFAR-100 (its 100 fine labels) from the official binary or python version.

    Parameters
    ----------
    path : path-like
        ``cifar-100-binary/`` or ``cifar-100-python/``, the folder holding one of them (or
        holding ``cifar-100-binary.tar.gz`` / ``cifar-100-python.tar.gz``), or the archive itself.

    Returns
    -------
    ImageData
        50,000 training and 10,000 test images ``uint8 (n, 3, 32, 32)`` with fine labels
        0–99, the fine class names, the reference's normalisation :data:`CIFAR100_MEAN` /
        :data:`CIFAR100_STD`, source ``"cifar100:<absolute path>"``.

    Raises
    ------
    DataError
        As :func:`load_cifar10`; coarse labels (binary version) must lie in [0, 20) too.
    """
    return load_cifar(path, "cifar100")


# ---------------------------------------------------------------------------------------------
# writing the official layouts (small datasets for tests and examples)


def _check_writable(data: object, kind: str) -> tuple[str, ...]:
    if kind not in CIFAR_KINDS:
        raise ConfigError("kind", f"one of {', '.join(CIFAR_KINDS)}", repr(kind))
    if not isinstance(data, ImageData):
        raise ConfigError("data", "an ImageData", type(data).__name__)
    n_classes = 10 if kind == "cifar10" else 100
    if data.image_shape != (3, _SIDE, _SIDE) or data.max_value != 255:
        raise ConfigError("data", "8-bit images of shape (3, 32, 32)", f"{data.image_shape}, max_value {data.max_value}")
    if data.n_classes > n_classes:
        raise ConfigError("data", f"labels in [0, {n_classes}) for {kind}", f"{data.n_classes} classes")
    if data.class_names is not None and len(data.class_names) != n_classes:
        raise ConfigError("data", f"None or {n_classes} class_names for {kind}", f"{len(data.class_names)} names")
    names = data.class_names or tuple(f"class_{i}" for i in range(n_classes))
    if any("\n" in name or "\r" in name or not name.strip() for name in names):
        raise ConfigError("data", "class names that are non-blank single lines", repr(names))
    return names


def _train_batches(data: ImageData, layout: _Layout) -> list[np.ndarray]:
    """Row indices of the training images in each training file (CIFAR-10: five consecutive batches)."""
    if data.n_train < len(layout.train):
        raise ConfigError("data", f"at least {len(layout.train)} training images (one per {layout.train[0]} file)",
                          data.n_train)
    return np.array_split(np.arange(data.n_train), len(layout.train))


def _coarse(labels: np.ndarray) -> np.ndarray:
    """The coarse label the writers store for CIFAR-100: ``fine // 5`` (a placeholder, not CIFAR's superclasses)."""
    return labels // 5


def _write(path: Path, payload: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)


def write_cifar_binary(folder: str | os.PathLike, data: ImageData, kind: str) -> Path:
    """Write ``data`` in the official binary layout under ``folder``; return the layout folder.

    CIFAR-10: ``cifar-10-batches-bin/`` with the training images split into five consecutive
    ``data_batch_<i>.bin`` files, ``test_batch.bin`` and ``batches.meta.txt``.  CIFAR-100:
    ``cifar-100-binary/`` with ``train.bin``, ``test.bin``, ``fine_label_names.txt`` and
    ``coarse_label_names.txt``; the coarse label byte is ``fine // 5`` (the reader ignores it
    beyond its range check).  Class names default to ``class_<i>``.  Files are written atomically.

    Parameters
    ----------
    folder : path-like
        Where the layout folder is created (it may exist).
    data : ImageData
        ``uint8 (n, 3, 32, 32)`` images with labels below 10 (CIFAR-10) or 100; CIFAR-10 needs
        at least five training images.
    kind : {"cifar10", "cifar100"}
    """
    names = _check_writable(data, kind)
    layout = _layout(kind, "binary")
    out = Path(folder).expanduser() / layout.folder
    out.mkdir(parents=True, exist_ok=True)

    def records(split: str, rows: np.ndarray) -> bytes:
        images = data.images(split)[rows].reshape(rows.size, _PIXELS)  # (k, 3, 32, 32) -> (k, 3072)
        labels = data.labels(split)[rows].astype(np.uint8)[:, None]  # (k, 1)
        columns = [labels] if kind == "cifar10" else [_coarse(labels), labels]
        return np.concatenate([*columns, images], axis=1).tobytes()

    for name, rows in zip(layout.train, _train_batches(data, layout)):
        _write(out / name, records("train", rows))
    _write(out / layout.test[0], records("test", np.arange(data.n_test)))
    _write(out / layout.meta, ("\n".join(names) + "\n\n").encode("utf-8"))
    if kind == "cifar100":
        _write(out / "coarse_label_names.txt", "".join(f"superclass_{i}\n" for i in range(_COARSE_CLASSES)).encode())
    return out


def write_cifar_python(folder: str | os.PathLike, data: ImageData, kind: str) -> Path:
    """Write ``data`` in the official python layout under ``folder``; return the layout folder.

    The files are pickles (protocol 2) of dicts with ``bytes`` keys, as the official
    Python 2 files decode: CIFAR-10 ``cifar-10-batches-py/`` (``data_batch_1`` …
    ``data_batch_5``, ``test_batch``: ``b"batch_label"``, ``b"labels"``, ``b"data"``
    ``uint8 (n, 3072)``, ``b"filenames"``; ``batches.meta``: ``b"label_names"``,
    ``b"num_cases_per_batch"``, ``b"num_vis"``); CIFAR-100 ``cifar-100-python/``
    (``train``, ``test``: ``b"fine_labels"``, ``b"coarse_labels"`` = ``fine // 5`` ...;
    ``meta``: ``b"fine_label_names"``, ``b"coarse_label_names"``).  Writing uses
    :mod:`pickle`; reading never does.  Parameters as :func:`write_cifar_binary`.
    """
    names = _check_writable(data, kind)
    layout = _layout(kind, "python")
    out = Path(folder).expanduser() / layout.folder
    out.mkdir(parents=True, exist_ok=True)

    def batch(split: str, rows: np.ndarray, title: bytes) -> bytes:
        labels = data.labels(split)[rows]
        table = {b"batch_label": title}
        if kind == "cifar10":
            table[b"labels"] = labels.tolist()
        else:
            table[b"fine_labels"] = labels.tolist()
            table[b"coarse_labels"] = _coarse(labels).tolist()
        table[b"data"] = np.ascontiguousarray(data.images(split)[rows].reshape(rows.size, _PIXELS))
        table[b"filenames"] = [f"{split}_{i:05d}.png".encode() for i in rows.tolist()]
        return pickle.dumps(table, protocol=2)

    train = list(zip(layout.train, _train_batches(data, layout)))
    for i, (name, rows) in enumerate(train, start=1):
        _write(out / name, batch("train", rows, f"training batch {i} of {len(train)}".encode()))
    _write(out / layout.test[0], batch("test", np.arange(data.n_test), b"testing batch 1 of 1"))
    encoded = [n.encode("utf-8") for n in names]
    if kind == "cifar10":
        meta = {b"num_cases_per_batch": int(max(len(rows) for _, rows in train)), b"label_names": encoded,
                b"num_vis": _PIXELS}
    else:
        meta = {b"fine_label_names": encoded,
                b"coarse_label_names": [f"superclass_{i}".encode() for i in range(_COARSE_CLASSES)]}
    _write(out / layout.meta, pickle.dumps(meta, protocol=2))
    return out


def pack_cifar_archive(folder: str | os.PathLike, archive: str | os.PathLike | None = None) -> Path:
    """Pack a layout folder written above into a ``.tar.gz`` like the official download.

    Members are ``<folder name>/<file>`` (the folder itself first), sorted, with zero
    timestamps and owners, so the same files give the same bytes.

    Parameters
    ----------
    folder : path-like
        A layout folder (``cifar-10-batches-bin`` ...).
    archive : path-like, optional
        The archive to write; default the official archive name next to ``folder``.

    Returns
    -------
    pathlib.Path
        The archive.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"{folder}: expected a folder to pack, received a path that is not a folder")
    if archive is None:
        official = {layout.folder: layout.archive for layout in _LAYOUTS.values()}
        if folder.name not in official:
            raise ConfigError("archive", f"a path (the folder {folder.name!r} has no official archive name)", None)
        archive = folder.parent / official[folder.name]
    archive = Path(archive).expanduser()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [folder, *sorted(p for p in folder.iterdir() if p.is_file())]
        for path in entries:
            info = tar.gettarinfo(str(path), arcname=folder.name if path == folder else f"{folder.name}/{path.name}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_file():
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
            else:
                tar.addfile(info)
    with atomic_path(archive) as tmp:
        tmp.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return archive
