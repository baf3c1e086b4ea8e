"""What is in a bank file, and whether it is intact: :func:`describe_file` (what ``supsup-store info`` prints) and
:func:`verify_file` (what ``supsup-store verify`` prints)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from ..errors import HopfieldMasksError, StorageFormatError
from ..safety.integrity import CHECKSUM_ATTR, check_dataset, check_link, check_tree, h5_errors, verify_dataset, verify_tree
from .fileformat import ATTACHMENTS, KIND, TASKS, check_mask_bank, file_bytes, json_safe, read_header
from .hdf5 import HDF5MaskBank, open_shared

__all__ = ["describe_file", "verify_file", "VerifyReport"]


def _density(count: int, size: int) -> float | None:
    """Fraction of kept entries; None for an empty mask (0/0)."""
    return None if size == 0 else count / size


def _datasets(group: h5py.Group) -> list[dict[str, Any]]:
    """Every dataset under ``group``: name, shape, dtype and bytes (metadata only, no data read)."""
    found: list[dict[str, Any]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found.append(
                {"name": name, "shape": list(obj.shape), "dtype": str(obj.dtype), "bytes": int(obj.id.get_storage_size())}
            )

    group.visititems(visit)
    return found


def _describe_bank(path: Path) -> dict[str, Any]:
    with HDF5MaskBank(path) as bank:
        tasks = []
        for task in bank.tasks():
            masks = bank.read_task(task)
            layers = [
                {"name": name, "shape": list(m.shape), "entries": int(m.size), "density": _density(int(m.sum()), m.size)}
                for name, m in masks.items()
            ]
            entries = sum(layer["entries"] for layer in layers)
            kept = sum(int(m.sum()) for m in masks.values())
            tasks.append({
                "name": task, "entries": entries, "density": _density(kept, entries),
                "bytes": bank.task_nbytes(task), "attrs": bank.task_attrs(task), "layers": layers,
            })
        attachments = [
            bank.read_attachment(name, lambda g, name=name: {
                "name": name, "attrs": {k: json_safe(v) for k, v in g.attrs.items() if k != CHECKSUM_ATTR},
                "datasets": _datasets(g),
            })
            for name in bank.attachments()
        ]
        return {"backend": bank.backend_id, "metadata": bank.metadata, "n_tasks": len(tasks), "tasks": tasks,
                "attachments": attachments}


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-safe summary of a mask bank or reservoir file.

    Always: ``path``, ``kind``, ``format_version``, ``file_bytes``.  A mask bank adds
    ``backend``, ``metadata``, ``n_tasks``, ``tasks`` (per task: ``name``, ``entries``,
    ``density``, ``bytes``, ``attrs`` and ``layers`` with ``name``/``shape``/``entries``/
    ``density``) and ``attachments`` (``name``, ``attrs``, ``datasets``).  Any other kind
    (a reservoir) adds its root ``attrs`` (JSON text parsed) and ``datasets`` (name, shape,
    dtype, bytes).  Densities of empty masks are ``None``.

    Raises
    ------
    BankFileNotFoundError, StorageFormatError
        As :func:`~hopfield_masks.backends.open_bank`; also for an HDF5 file without a ``kind`` attribute.
    """
    p = Path(path).expanduser()
    with h5_errors(p):
        return _describe(p)


def _describe(p: Path) -> dict[str, Any]:
    with open_shared(p) as (f, _lock):
        header = read_header(f, p)
        summary: dict[str, Any] = {"path": str(p), **header, "file_bytes": p.stat().st_size}
        if header["kind"] != KIND:
            check_tree(f, p, file_bytes=summary["file_bytes"])  # no links, external storage or impossible sizes
            try:
                summary["attrs"] = {k: json_safe(v) for k, v in f.attrs.items()
                                    if k not in ("kind", "format_version", CHECKSUM_ATTR)}
                summary["datasets"] = _datasets(f)
            except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
                raise StorageFormatError(p, f"cannot be read ({exc})") from None
            return summary
    summary.update(_describe_bank(p))
    return summary


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_file` found: one ``(object, status, detail)`` row per checked object.

    ``status`` is ``"ok"`` (checksum matches), ``"no checksum"`` (format-1 file: structure checked
    and masks decoded, bit rot cannot be seen) or ``"damaged"`` (``detail`` says how).
    """

    path: str
    format_version: int | None
    items: list[tuple[str, str, str]] = field(default_factory=list)
    bytes_checked: int = 0

    @property
    def damaged(self) -> list[tuple[str, str, str]]:
        """The damaged rows."""
        return [item for item in self.items if item[1] == "damaged"]

    @property
    def ok(self) -> bool:
        """True when nothing is damaged."""
        return not self.damaged

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {"path": self.path, "format_version": self.format_version, "ok": self.ok,
                "bytes_checked": self.bytes_checked,
                "items": [{"object": o, "status": st, "detail": d} for o, st, d in self.items]}


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "reason", None) or str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def verify_file(path: str | os.PathLike) -> VerifyReport:
    """Check every object of a mask bank: root attributes, each task (links, storage, sizes, CRC-32, decoding)
    and each attachment (every dataset and group under it).

    A damaged object is reported, not raised, and the others are still checked.

    Raises
    ------
    BankFileNotFoundError, StorageFormatError
        The file is missing, not HDF5, or not a mask bank at all (nothing to verify item by item).
    """
    p = Path(path).expanduser()
    with h5_errors(p):
        return _verify(p)


def _verify(p: Path) -> VerifyReport:
    items: list[tuple[str, str, str]] = []
    checked = 0
    with open_shared(p) as (f, _lock):
        header = read_header(f, p)
        if header["kind"] != KIND:
            raise StorageFormatError(p, f"is a {header['kind']} file, not a mask bank (verify checks mask banks)")
        version = header["format_version"]
        required = version >= 2
        size = file_bytes(f)
        try:
            check_mask_bank(f, p)
            items.append(("/ (root attributes)", "ok" if CHECKSUM_ATTR in f.attrs else "no checksum", ""))
        except HopfieldMasksError as exc:
            items.append(("/ (root attributes)", "damaged", _reason(exc)))
        tasks = f.get(TASKS) if isinstance(f.get(TASKS, getlink=True), h5py.HardLink) else None
        names: list[str] = []
        if isinstance(tasks, h5py.Group):
            try:
                names = list(tasks)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                items.append(("/tasks", "damaged", f"cannot be listed ({exc})"))
        task_rows: list[tuple[int, str]] = []  # (row, task name): names stay data, never parsed back from the label
        for name in names:
            where = f"task {name!r}"
            task_rows.append((len(items), name))
            try:
                check_link(tasks, name, p)
                ds = tasks[name]
                if not isinstance(ds, h5py.Dataset):
                    raise StorageFormatError(p, f"{ds.name} is not a dataset")
                check_dataset(ds, p, file_bytes=size)
                state = verify_dataset(ds, p, required=required)
                checked += int(ds.id.get_storage_size())
                items.append((where, "ok" if state == "ok" else "no checksum", ""))
            except HopfieldMasksError as exc:
                items.append((where, "damaged", _reason(exc)))
            except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
                items.append((where, "damaged", f"HDF5 cannot read it ({_reason(exc)})"))
        attachments = f.get(ATTACHMENTS) if isinstance(f.get(ATTACHMENTS, getlink=True), h5py.HardLink) else None
        for name in list(attachments) if isinstance(attachments, h5py.Group) else []:
            where = f"attachment {name!r}"
            try:
                check_link(attachments, name, p)
                if not isinstance(attachments[name], h5py.Group):
                    kind = "dataset" if isinstance(attachments[name], h5py.Dataset) else "named datatype"
                    raise StorageFormatError(p, f"/{ATTACHMENTS}/{name} is a {kind}, expected an attachment group")
                counts = verify_tree(attachments[name], p, file_bytes=size, required=required)
                checked += sum(int(o.id.get_storage_size()) for o in attachments[name].values()
                               if isinstance(o, h5py.Dataset))
                items.append((where, "ok" if not counts["none"] else "no checksum",
                              f"{counts['ok'] + counts['none']} objects"))
            except HopfieldMasksError as exc:
                items.append((where, "damaged", _reason(exc)))
            except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
                items.append((where, "damaged", f"HDF5 cannot read it ({_reason(exc)})"))
    # the masks must also decode (what a format-1 file without checksums can still show)
    if not any(status == "damaged" for obj, status, _ in items if obj.startswith("/")):
        try:
            with HDF5MaskBank(p) as bank:
                try:
                    _ = bank.metadata  # reading it validates it
                except HopfieldMasksError as exc:
                    items.append(("metadata", "damaged", _reason(exc)))
                for i, task in task_rows:
                    obj, status, _detail = items[i]
                    if status != "damaged":
                        try:
                            bank.read_task(task)
                            bank.task_attrs(task)
                        except HopfieldMasksError as exc:
                            items[i] = (obj, "damaged", _reason(exc))
        except HopfieldMasksError as exc:
            items.append(("bank", "damaged", _reason(exc)))
    return VerifyReport(str(p), version, items, checked)
