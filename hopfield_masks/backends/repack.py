"""Repacking: a bank rewritten into a compact new file.

HDF5 never reclaims the space of deleted objects, so a session that deleted or
overwrote something rewrites the bank into a temporary file renamed over it
(mode and owner kept; hard links to the old file then keep the old bytes).  The
copy keeps every order and group: root attributes, ``/tasks`` in insertion
order, the attachments, and groups other tools added.

The bank is untrusted input like any file: everything the copy would take is
checked first (:func:`check_repackable`, the whole tree with
:func:`hopfield_masks.safety.integrity.check_tree`: only hard links, no
external or virtual storage, no declared size the file does not store, no
attribute larger than the file).  A copy would otherwise follow an external or
soft link -- or read external storage -- and embed another file's content in
the bank; such a bank is refused, naming it and the object, before anything is
written, and the session's changes are rolled back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import h5py

from ..safety.files import fsync_folder, keep_owner_and_mode
from ..safety.integrity import check_link, check_tree, h5_errors
from ..safety.journal import PlainFile
from .fileformat import ATTACHMENTS, LIBVER, TASKS, create_tasks_group

__all__ = ["repack", "repack_into", "check_repackable"]


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for key in src.attrs:
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)


def _open(src_path: Path) -> h5py.File:
    with h5_errors(src_path):
        return h5py.File(src_path, "r", locking=False)


def _check_tree(src: h5py.File, src_path: Path) -> None:
    with h5_errors(src_path):
        check_tree(src, src_path, file_bytes=int(src.id.get_filesize()))


def check_repackable(src_path: Path) -> None:
    """Refuse a bank whose copy would take anything from outside it (a link, external storage) or allocate what
    its file cannot hold; every object under the root is checked, groups inside attachments included.

    Raises
    ------
    StorageFormatError
        Naming the bank and the first offending object.
    """
    with _open(src_path) as src:
        _check_tree(src, src_path)


def repack_into(src_path: Path, dst_path: Path) -> None:
    """Write a compact copy of the bank ``src_path`` into the new file ``dst_path``, keeping every order and group.

    The bank is checked (:func:`check_repackable`) before ``dst_path`` is written.
    """
    with _open(src_path) as src:
        _check_tree(src, src_path)  # before the destination is touched
        out = PlainFile(dst_path, "w+b")  # written through Python: a full disk is an OSError naming the cause
        try:
            with h5py.File(out, "w", libver=LIBVER) as dst:
                _copy_group_contents(src, dst, src_path)
            if out.error is not None:
                raise out.error
        finally:
            out.close()


def _copy_group_contents(src: h5py.File, dst: h5py.File, src_path: Path) -> None:
    """Copy root attributes and children of ``src`` into ``dst`` (groups other tools added are kept too)."""
    _copy_attrs(src, dst)
    for key in src:
        check_link(src, key, src_path)
        if key == TASKS:  # an old file's indexed /tasks group becomes the current kind: the order is the same
            out = create_tasks_group(dst)
        elif key == ATTACHMENTS:
            out = dst.create_group(key, track_order=True)
        else:
            src.copy(src[key], dst, name=key)
            continue
        _copy_attrs(src[key], out)
        for child in src[key]:  # one by one: the creation order of the copy is ours
            check_link(src[key], child, src_path)
            src.copy(src[key][child], out, name=child)  # copies get exact object headers


def repack(bank: Path) -> None:
    """Replace ``bank`` by a compact copy (temporary file, fsync, rename, folder fsync); mode and owner kept.

    A bank that cannot be copied safely (:func:`check_repackable`) is refused before the temporary file exists.
    """
    check_repackable(bank)
    fd, name = tempfile.mkstemp(prefix=f".{bank.name}.", suffix=".repack", dir=bank.parent)
    os.close(fd)
    try:
        repack_into(bank, Path(name))
        with open(name, "rb+") as fh:
            os.fsync(fh.fileno())
        keep_owner_and_mode(os.stat(bank), Path(name))
        os.replace(name, bank)
        fsync_folder(bank.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise
