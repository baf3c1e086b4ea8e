"""Untrusted HDF5 input: structural checks before anything is read, and CRC-32 checksums of what was written.

A bank file may come from anywhere, so nothing in it is followed or allocated
before it is checked:

- **links**: only hard links are followed; a soft link, an external link (which
  would read -- or, for a writer, *write* -- another file) or a hard link back to
  an object already seen (a loop) is refused;
- **storage**: a dataset with HDF5 external storage (raw data in another file) or
  a virtual dataset (data mapped from other files) is refused; so are
  variable-length and object dtypes in datasets;
- **sizes**: a dataset's declared size (shape × item size, computed with Python
  integers, so ``1e29`` never overflows) may not exceed what the file stores for
  it -- its bytes for a contiguous or compact dataset, its written chunks for a
  chunked one (chunks never written would read as fill values: a 2 kB file could
  declare gigabytes), at most :data:`MAX_EXPANSION` times them when a filter
  (compression) is applied -- nor :data:`MAX_ARRAY_BYTES`, the per-array
  ceiling, which names itself in the error; an attribute may not declare more
  bytes than the whole file holds.

**Checksums** (mask-bank format version 2, ``docs/FORMAT.md``).  Every dataset a
writer creates gets the attribute ``crc32``: two ``uint32`` values, the CRC-32
of the dataset's raw bytes (C order) and the CRC-32 of its other attributes
(names sorted, each as ``name NUL canonical-bytes``, see :func:`attrs_crc`).
Every checksummed group (the root, each attachment group) gets a one-value
``crc32`` of its attributes.  CRC-32 detects every burst of up to 32 flipped bits
and random damage with probability ``1 - 2**-32``; it is a bit-rot check, not
a signature (anyone can recompute it).  Measured at about 850 MiB/s on one core
(``benchmarks/bench_bank_writes.py``), so it stays on for every read.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import zlib
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np

from ..errors import HopfieldMasksError, InvalidArgumentError, StorageFormatError

__all__ = [
    "MAX_ARRAY_BYTES", "MAX_EXPANSION", "CHECKSUM_ATTR", "max_array_bytes", "check_tree", "check_dataset", "check_link",
    "check_attribute", "attrs_crc", "data_crc", "write_checksums", "verify_dataset", "verify_group_attrs",
    "record_group_checksum", "seal_tree", "verify_tree", "h5_errors",
]

#: Default per-array ceiling (bytes) on what any one dataset may declare; the
#: environment variable ``HOPFIELD_MASKS_MAX_ARRAY_BYTES`` overrides it (a byte size: ``160MB``, ``2GiB``, ``1e9``).
MAX_ARRAY_BYTES = 8 << 30
#: How many times its stored bytes a filtered (compressed) dataset may declare: deflate, the strongest
#: standard HDF5 filter, expands at most about 1032-fold.
MAX_EXPANSION = 1032
#: The checksum attribute written on datasets and groups.
CHECKSUM_ATTR = "crc32"
_CHUNK = 16 << 20  # bytes read per slice when checksumming a large dataset
_MAX_DEPTH = 32  # deepest group nesting accepted under an attachment
_DATASET_KINDS = "biufcS"  # numeric, bool and fixed-length byte strings


#: What h5py raises when HDF5 meets damaged metadata (its own checksums, bad addresses, odd messages).
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, OverflowError, SystemError)


@contextlib.contextmanager
def h5_errors(path: object, what: str = "cannot be read") -> Iterator[None]:
    """Turn what h5py raises on a damaged file into one :class:`StorageFormatError` naming ``path``."""
    try:
        yield
    except HopfieldMasksError:
        raise
    except H5_ERRORS as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageFormatError(path, f"{what}: HDF5 reports {text!r} (damaged file)") from None


_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")
# the units of hopfield_masks.budget.parse_budget (decimal: powers of 1000, binary: powers of 1024; case ignored)
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def max_array_bytes() -> int:
    """The per-array ceiling in force: ``HOPFIELD_MASKS_MAX_ARRAY_BYTES`` if set, else :data:`MAX_ARRAY_BYTES`.

    The variable holds a positive byte size, written as :func:`hopfield_masks.budget.parse_budget` reads
    budgets: ``4096``, ``1e9``, ``160MB`` (decimal units), ``160MiB`` (binary units).

    Raises
    ------
    InvalidArgumentError
        The variable holds anything else (named, with what was expected and what it holds).
    """
    text = os.environ.get("HOPFIELD_MASKS_MAX_ARRAY_BYTES")
    if text is None or not text.strip():
        return MAX_ARRAY_BYTES
    match = _SIZE.match(text)
    value = float(match.group(1)) * _UNITS[match.group(2).lower()] if match and match.group(2).lower() in _UNITS else 0.0
    if not math.isfinite(value) or value < 1:
        raise InvalidArgumentError("HOPFIELD_MASKS_MAX_ARRAY_BYTES",
                                   "a positive byte size such as 8GiB, 160MB or 1e9", repr(text))
    return int(value)


def _ceiling_text(limit: int) -> str:
    return (f"the per-array ceiling hopfield_masks.safety.integrity.MAX_ARRAY_BYTES = {limit:,} B (raise it with "
            "HOPFIELD_MASKS_MAX_ARRAY_BYTES)")


def _declared_bytes(shape: tuple[int, ...] | None, itemsize: int) -> int:
    total = int(itemsize)
    for dim in shape or ():
        total *= int(dim)
    return total


def check_link(group: h5py.Group, name: str, path: object) -> None:
    """Refuse ``group[name]`` unless it is a hard link."""
    try:
        link = group.get(name, getlink=True)
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise StorageFormatError(path, f"link {group.name.rstrip('/')}/{name} cannot be read ({exc})") from None
    if isinstance(link, h5py.ExternalLink):
        raise StorageFormatError(
            path, f"{group.name.rstrip('/')}/{name} is an external link to {link.filename}:{link.path} "
                  "(links to other files are refused)"
        )
    if isinstance(link, h5py.SoftLink):
        raise StorageFormatError(path, f"{group.name.rstrip('/')}/{name} is a soft link to {link.path} (links are refused)")
    if not isinstance(link, h5py.HardLink):
        raise StorageFormatError(path, f"{group.name.rstrip('/')}/{name} is a link of unknown kind (refused)")


def check_attribute(obj: h5py.HLObject, name: str, path: object, file_bytes: int) -> None:
    """Refuse an attribute whose declared size exceeds what the file can hold, before it is read."""
    try:
        aid = obj.attrs.get_id(name)
        shape, dtype = aid.shape, aid.dtype
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise StorageFormatError(path, f"attribute {name!r} of {obj.name} cannot be read ({exc})") from None
    declared = _declared_bytes(shape, dtype.itemsize)
    if declared > max(file_bytes, 1 << 16):
        raise StorageFormatError(
            path, f"attribute {name!r} of {obj.name} declares {declared:,} B, more than the {file_bytes:,} B file holds"
        )


def check_dataset(ds: h5py.Dataset, path: object, *, file_bytes: int | None = None) -> int:
    """Refuse external storage, virtual layouts, odd dtypes and declared sizes the file cannot back; return the size."""
    where = ds.name
    try:
        dcpl = ds.id.get_create_plist()
        layout = dcpl.get_layout()
        n_external = dcpl.get_external_count()
        n_filters = dcpl.get_nfilters()
        shape, dtype = ds.id.shape, ds.id.dtype
        stored = int(ds.id.get_storage_size())
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
        raise StorageFormatError(path, f"dataset {where} cannot be read ({exc})") from None
    if layout == h5py.h5d.VIRTUAL:
        raise StorageFormatError(path, f"dataset {where} is a virtual dataset (data mapped from other files is refused)")
    if n_external:
        raise StorageFormatError(path, f"dataset {where} keeps its data in external files (refused)")
    if dtype.kind not in _DATASET_KINDS or dtype.hasobject or dtype.subdtype is not None:
        raise StorageFormatError(path, f"dataset {where} has dtype {dtype}, expected a fixed-size numeric or byte type")
    declared = _declared_bytes(shape, dtype.itemsize)
    limit = max_array_bytes()
    if declared > limit:
        raise StorageFormatError(path, f"dataset {where} declares {declared:,} B, above {_ceiling_text(limit)}")
    if file_bytes is not None and stored > file_bytes and layout != h5py.h5d.COMPACT:
        raise StorageFormatError(path, f"dataset {where} claims {stored:,} B of storage in a {file_bytes:,} B file")
    # what the stored bytes can hold: themselves, or MAX_EXPANSION times them once decompressed; a chunk never
    # written reads as fill values, so it counts for nothing
    capacity = stored * (MAX_EXPANSION if n_filters else 1)
    if declared > capacity:
        how = f" (compressed: at most {MAX_EXPANSION} times that is accepted)" if n_filters else ""
        raise StorageFormatError(
            path, f"dataset {where} declares {declared:,} B but the file stores only {stored:,} B for it{how} "
                  "(damaged or crafted)"
        )
    return declared


def _walk(group: h5py.Group, path: object, seen: set[int], depth: int) -> Iterator[h5py.HLObject]:
    if depth > _MAX_DEPTH:
        raise StorageFormatError(path, f"{group.name} is nested more than {_MAX_DEPTH} groups deep (refused)")
    try:
        names = list(group)
    except (OSError, KeyError, RuntimeError, ValueError) as exc:
        raise StorageFormatError(path, f"group {group.name} cannot be listed ({exc})") from None
    for name in names:
        check_link(group, name, path)
        try:
            obj = group[name]
            key = hash(obj.id)
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            raise StorageFormatError(path, f"{group.name.rstrip('/')}/{name} cannot be opened ({exc})") from None
        if key in seen:
            raise StorageFormatError(path, f"{obj.name or name} is reached twice (a hard-link loop or alias; refused)")
        seen.add(key)
        if isinstance(obj, h5py.Group):
            yield obj
            yield from _walk(obj, path, seen, depth + 1)
        elif isinstance(obj, h5py.Dataset):
            yield obj
        else:
            raise StorageFormatError(path, f"{group.name.rstrip('/')}/{name} is a {type(obj).__name__}, not a group or dataset")


def check_tree(group: h5py.Group, path: object, *, file_bytes: int) -> list[h5py.HLObject]:
    """Check ``group`` and everything under it (links, storage, declared sizes, attribute sizes); return the objects.

    The list holds ``group`` first, then every group and dataset below it in visiting order.
    """
    seen = {hash(group.id)}
    objects: list[h5py.HLObject] = [group, *_walk(group, path, seen, 0)]
    for obj in objects:
        try:
            names = list(obj.attrs)
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise StorageFormatError(path, f"the attributes of {obj.name} cannot be listed ({exc})") from None
        for name in names:
            check_attribute(obj, name, path, file_bytes)
        if isinstance(obj, h5py.Dataset):
            check_dataset(obj, path, file_bytes=file_bytes)
    return objects


# ---------------------------------------------------------------------------------------------- checksums
def _canonical(value: Any) -> bytes:
    """Deterministic bytes of an attribute value as h5py returns it."""
    if isinstance(value, (bytes, np.bytes_)):
        return b"S" + bytes(value)
    if isinstance(value, str):
        return b"U" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, np.ndarray) and value.dtype.hasobject:
        return b"O" + repr(value.shape).encode() + b"\0".join(_canonical(v) for v in value.ravel().tolist())
    arr = np.asarray(value)
    return b"A" + arr.dtype.str.encode() + repr(arr.shape).encode() + np.ascontiguousarray(arr).tobytes()


def attrs_crc(obj: h5py.HLObject) -> int:
    """CRC-32 of ``obj``'s attributes other than ``crc32`` (names sorted; ``name NUL bytes`` each)."""
    crc = 0
    for name in sorted(obj.attrs):
        if name == CHECKSUM_ATTR:
            continue
        crc = zlib.crc32(name.encode("utf-8") + b"\0", crc)
        crc = zlib.crc32(_canonical(obj.attrs[name]) + b"\0", crc)
    return crc & 0xFFFFFFFF


def data_crc(ds: h5py.Dataset) -> int:
    """CRC-32 of a dataset's raw bytes in C order, read in C-order slices of at most about 16 MiB (bounded memory)."""
    shape = ds.shape
    if shape is None or ds.size == 0:
        return 0
    if len(shape) == 0:
        return zlib.crc32(np.ascontiguousarray(ds[()]).tobytes()) & 0xFFFFFFFF
    itemsize = ds.dtype.itemsize
    # split = the axis sliced in steps; the axes before it are walked one index at a time
    split, inner = len(shape) - 1, itemsize
    while split > 0 and inner * shape[split] <= _CHUNK:
        inner *= shape[split]
        split -= 1
    step = max(1, _CHUNK // max(inner, 1))
    crc = 0
    for lead in np.ndindex(*shape[:split]):
        for start in range(0, shape[split], step):
            block = ds[lead + (slice(start, start + step),)]
            crc = zlib.crc32(np.ascontiguousarray(block), crc)
    return crc & 0xFFFFFFFF


def write_checksums(obj: h5py.HLObject) -> None:
    """Record ``crc32`` on ``obj``: ``[data, attrs]`` for a dataset, ``[attrs]`` for a group."""
    if isinstance(obj, h5py.Dataset):
        value = np.array([data_crc(obj), attrs_crc(obj)], dtype=np.uint32)
    else:
        value = np.array([attrs_crc(obj)], dtype=np.uint32)
    obj.attrs.create(CHECKSUM_ATTR, value)


def record_group_checksum(group: h5py.Group) -> None:
    """(Re)compute a group's attribute checksum (after its attributes changed)."""
    group.attrs.create(CHECKSUM_ATTR, np.array([attrs_crc(group)], dtype=np.uint32))


def _stored(obj: h5py.HLObject, size: int, path: object) -> np.ndarray | None:
    if CHECKSUM_ATTR not in obj.attrs:
        return None
    value = obj.attrs[CHECKSUM_ATTR]
    if not isinstance(value, np.ndarray) or value.dtype != np.uint32 or value.shape != (size,):
        raise StorageFormatError(path, f"{obj.name} has a malformed {CHECKSUM_ATTR!r} attribute (damaged file)")
    return value


def verify_dataset(ds: h5py.Dataset, path: object, *, data: np.ndarray | None = None, attrs_only: bool = False,
                   required: bool = False) -> str:
    """Check a dataset against its ``crc32``; ``data`` is its content when already read (no second read).

    Returns ``"ok"`` or ``"none"`` (no checksum: a format-1 file); raises naming the dataset on a mismatch,
    or when ``required`` and the checksum is missing.
    """
    stored = _stored(ds, 2, path)
    if stored is None:
        if required:
            raise StorageFormatError(path, f"dataset {ds.name} has no {CHECKSUM_ATTR!r} checksum (format 2 requires one)")
        return "none"
    if int(stored[1]) != attrs_crc(ds):
        raise StorageFormatError(path, f"dataset {ds.name}: its attributes fail their CRC-32 check (damaged file)")
    if attrs_only:
        return "ok"
    actual = data_crc(ds) if data is None else zlib.crc32(np.ascontiguousarray(data)) & 0xFFFFFFFF
    if data is not None and data.size == 0:
        actual = 0
    if int(stored[0]) != actual:
        raise StorageFormatError(path, f"dataset {ds.name}: its data fail their CRC-32 check (damaged file)")
    return "ok"


def verify_group_attrs(group: h5py.Group, path: object, *, required: bool = False) -> str:
    """Check a group's attributes against its ``crc32``; ``"ok"`` or ``"none"``, raises on a mismatch."""
    stored = _stored(group, 1, path)
    if stored is None:
        if required:
            raise StorageFormatError(path, f"{group.name} has no {CHECKSUM_ATTR!r} checksum (format 2 requires one)")
        return "none"
    if int(stored[0]) != attrs_crc(group):
        raise StorageFormatError(path, f"the attributes of {group.name} fail their CRC-32 check (damaged file)")
    return "ok"


def seal_tree(group: h5py.Group) -> None:
    """Record checksums on every dataset and group under ``group``, and on ``group`` itself (after a writer filled it)."""
    objects: list[h5py.HLObject] = []
    group.visititems(lambda _name, obj: objects.append(obj))
    for obj in objects:
        if isinstance(obj, h5py.Dataset):
            write_checksums(obj)
    for obj in reversed(objects):  # groups after their datasets; attributes are what a group's checksum covers
        if isinstance(obj, h5py.Group):
            write_checksums(obj)
    write_checksums(group)


def verify_tree(group: h5py.Group, path: object, *, file_bytes: int, required: bool) -> dict[str, int]:
    """:func:`check_tree`, then every checksum under ``group``; ``{"ok": n, "none": m}`` objects, raises on damage.

    ``required``: a missing checksum is damage (format-2 files), not ``"none"``.
    """
    counts = {"ok": 0, "none": 0}
    for obj in check_tree(group, path, file_bytes=file_bytes):
        try:
            if isinstance(obj, h5py.Dataset):
                state = verify_dataset(obj, path, required=required)
            else:
                state = verify_group_attrs(obj, path, required=required)
        except (OSError, KeyError, RuntimeError, TypeError) as exc:
            raise StorageFormatError(path, f"{obj.name} cannot be read ({exc})") from None
        counts[state] += 1
    return counts
