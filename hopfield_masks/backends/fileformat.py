"""The mask-bank HDF5 file format: its constants, the ``/tasks`` group, attribute and header helpers.

Strings are stored as fixed-length UTF-8 attributes: a variable-length string
would need a global heap collection, whose first allocation costs 4 kB in a
file whose empty size is under 1 kB.  h5py reads them back as ``bytes``; the
readers here accept both kinds (and turn every failure into a
:class:`~hopfield_masks.errors.StorageFormatError` naming the file).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import h5py
import numpy as np

from ..errors import StorageFormatError
from ..safety.integrity import CHECKSUM_ATTR, check_attribute, check_link, verify_group_attrs

__all__ = [
    "FORMAT_VERSION", "KIND", "TASKS", "ATTACHMENTS", "write_str_attr", "read_str_attr", "read_json_attr",
    "json_safe", "read_header", "check_mask_bank", "file_bytes", "LIBVER", "create_tasks_group",
]

#: Newest mask-bank format version read (2: CRC-32 checksums; 3: ``hdf5-entropy`` tasks as byte strings;
#: 4: ``hdf5-entropy`` tasks as rANS codes, ``docs/FORMAT.md``).  Each backend writes its own ``write_version``
#: (hdf5-packed and hdf5-sparse: 2, hdf5-entropy: 4).
FORMAT_VERSION = 4
#: The root ``kind`` attribute of a mask bank.
KIND = "mask-bank"
#: Group holding one dataset per task.
TASKS = "tasks"
#: Group holding the attachment groups.
ATTACHMENTS = "attachments"
# Object formats of HDF5 1.8 (readable by any h5py of the last decade), never newer than 1.10's.
LIBVER = ("v108", "v110")


def create_tasks_group(parent: h5py.Group) -> h5py.Group:
    """Create ``/tasks``: link creation order tracked (insertion-order listing) but not indexed."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_link_creation_order(h5py.h5p.CRT_ORDER_TRACKED)
    gcpl.set_obj_track_times(False)  # no timestamps: same content, same bytes
    return h5py.Group(h5py.h5g.create(parent.id, TASKS.encode(), gcpl=gcpl))


def write_str_attr(attrs: h5py.AttributeManager, name: str, text: str) -> None:
    """Store ``text`` as a fixed-length UTF-8 string attribute (no global heap)."""
    raw = text.encode("utf-8")
    attrs.create(name, np.array(raw, dtype=h5py.string_dtype("utf-8", max(len(raw), 1))))


def read_str_attr(obj: h5py.HLObject, name: str, path: object) -> str:
    """Read a string attribute (fixed or variable length), raising a format error naming ``path``."""
    try:
        if name not in obj.attrs:
            raise KeyError(name)
        check_attribute(obj, name, path, file_bytes(obj))  # never allocate what the file cannot hold
        value = obj.attrs[name]
    except KeyError:
        raise StorageFormatError(path, f"attribute {name!r} is missing on {obj.name}") from None
    except (OSError, RuntimeError, TypeError, ValueError) as exc:
        raise StorageFormatError(path, f"attribute {name!r} of {obj.name} cannot be read ({exc})") from None
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise StorageFormatError(path, f"attribute {name!r} of {obj.name} is not UTF-8 text") from None
    if isinstance(value, str):
        return value
    raise StorageFormatError(path, f"attribute {name!r} of {obj.name} is not a string (found {type(value).__name__})")


def file_bytes(obj: h5py.HLObject) -> int:
    """Size of the file holding ``obj`` (what any attribute's declared size is checked against)."""
    try:
        return int(obj.file.id.get_filesize())
    except (OSError, RuntimeError, ValueError):
        return 1 << 16


def read_json_attr(obj: h5py.HLObject, name: str, path: object) -> Any:
    """Read a JSON string attribute."""
    text = read_str_attr(obj, name, path)
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise StorageFormatError(path, f"attribute {name!r} of {obj.name} is not valid JSON") from None


def json_safe(value: Any) -> Any:
    """Turn an HDF5 attribute value into plain JSON-safe Python (JSON text is parsed).

    Examples
    --------
    >>> json_safe(np.bytes_(b'{"a": 1}')), json_safe(np.arange(3)), json_safe(np.float32(0.5))
    ({'a': 1}, [0, 1, 2], 0.5)
    """
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        if value[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value
    if isinstance(value, np.ndarray):
        value = value.tolist()  # nested lists of Python scalars (bytes for fixed-length strings)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    return str(value)


def read_header(f: h5py.File, path: object) -> dict[str, Any]:
    """The root identification attributes: ``kind`` and ``format_version`` (both required).

    Raises
    ------
    StorageFormatError
        The file has no ``kind`` attribute (not written by this toolkit) or a bad version.
    """
    if "kind" not in f.attrs:
        raise StorageFormatError(
            path, "is an HDF5 file but not a supsup-store file (no 'kind' attribute on the root group)"
        )
    kind = read_str_attr(f, "kind", path)
    try:
        if "format_version" not in f.attrs:
            raise KeyError("format_version")
        check_attribute(f, "format_version", path, file_bytes(f))
        version = f.attrs["format_version"]
        if isinstance(version, np.ndarray) or not isinstance(version, (int, np.integer)):
            raise TypeError
    except (KeyError, TypeError, OSError, RuntimeError, ValueError):
        raise StorageFormatError(path, f"is a {kind!r} file without an integer 'format_version' attribute") from None
    return {"kind": kind, "format_version": int(version)}


def check_mask_bank(f: h5py.File, path: object) -> str:
    """Check the file is a mask bank this library reads; return its backend id."""
    header = read_header(f, path)
    if header["kind"] != KIND:
        raise StorageFormatError(path, f"is a {header['kind']} file, not a mask bank")
    if not 1 <= header["format_version"] <= FORMAT_VERSION:
        raise StorageFormatError(
            path,
            f"has mask-bank format_version {header['format_version']}; this hopfield_masks reads versions "
            f"1 to {FORMAT_VERSION} (upgrade the package)",
        )
    for group in (TASKS, ATTACHMENTS):
        check_link(f, group, path)
        if not isinstance(f.get(group), h5py.Group):
            raise StorageFormatError(path, f"is a mask bank without its '/{group}' group (damaged file)")
    if header["format_version"] >= 2 or CHECKSUM_ATTR in f.attrs:
        for name in f.attrs:
            check_attribute(f, name, path, file_bytes(f))
        verify_group_attrs(f, path, required=header["format_version"] >= 2)
    return read_str_attr(f, "backend", path)
