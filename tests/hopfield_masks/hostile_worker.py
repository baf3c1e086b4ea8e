"""Run every read path of hopfield_masks over the files named on the command line; print one JSON line per file.

Started by ``test_hostile_files.py`` in a subprocess under a memory limit (``RLIMIT_AS``), so a file that
makes the library allocate gigabytes fails the test instead of the machine.  For each file the outcome is
``{"file": ..., "outcome": "ok" | "error" | "crash", "message": ..., "digest": ...}``: ``error`` is a
:class:`~hopfield_masks.errors.HopfieldMasksError` (the promised clear error), ``crash`` anything else
(with the traceback's last line), ``digest`` a hash of everything read when all paths succeeded.
"""

from __future__ import annotations

import hashlib
import json
import sys
import traceback

import h5py
import numpy as np

from hopfield_masks.backends import create_bank, describe_file, open_bank, verify_file
from hopfield_masks.errors import HopfieldMasksError


def _read_group(group: h5py.Group) -> bytes:
    out = []
    group.visititems(lambda name, obj: out.append(name.encode() + np.asarray(obj[()]).tobytes())
                     if isinstance(obj, h5py.Dataset) else None)
    return b"".join(out)


def every_read_path(path: str) -> str:
    """describe_file, verify_file, open_bank + every task/attachment read, copy_to: a digest of what was read."""
    digest = hashlib.sha256()
    describe_file(path)
    report = verify_file(path)
    if not report.ok:
        raise HopfieldMasksError(f"verify: {report.damaged[0]}")
    with open_bank(path) as bank:
        digest.update(json.dumps(bank.metadata, sort_keys=True).encode())
        for task in bank.tasks():
            for name, mask in bank.read_task(task).items():
                digest.update(name.encode() + np.packbits(mask).tobytes() + repr(mask.shape).encode())
            digest.update(json.dumps(bank.task_attrs(task), sort_keys=True).encode())
        for name in bank.attachments():
            digest.update(bank.read_attachment(name, _read_group))
        with create_bank(None) as copy:
            bank.copy_to(copy)
    return digest.hexdigest()


def main(paths: list[str]) -> None:
    for path in paths:
        try:
            result = {"outcome": "ok", "digest": every_read_path(path), "message": ""}
        except HopfieldMasksError as exc:
            result = {"outcome": "error", "message": str(exc), "digest": ""}
        except BaseException as exc:  # noqa: BLE001 - the point is to report it
            last = traceback.format_exception(exc)[-1].strip()
            result = {"outcome": "crash", "message": last, "digest": ""}
        print(json.dumps({"file": path, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
