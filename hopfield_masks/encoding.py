"""Encode a mask bank into a Hopfield reservoir stored inside the bank, and read it back.

The reservoir for a byte budget is an *attachment* of the bank named
``reservoir-<bytes>`` (for example ``reservoir-1000000`` for ``--budget 1MB``),
so one file holds the exact masks and every reservoir made from them.
Encoding reads the tasks one at a time and writes each into the reservoir
(storing a mask never needs the earlier ones), then appends the reservoir to
the bank in place under its rollback journal: the bank grows by about the
reservoir's size, and a failure or a crash leaves it as it was.  The bank's
exclusive writer lock is held for the whole read-compute-write cycle, so a task
appended meanwhile by another process waits instead of being left out of (or
made stale by) the reservoir.

The report always includes the honest alternative: how many masks the same
budget holds *exactly* in an ``hdf5-packed`` bank file, measured with the file's
own header and per-task overhead (:func:`exact_storage_cost`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .backends import create_bank, open_bank
from .budget import parse_budget
from .errors import CapacityWarning, StorageFormatError
from .safety.locking import bank_lock
from .patterns import pack_bits, packed_nbytes
from .reservoir import Reservoir, read_reservoir, write_reservoir

__all__ = [
    "bank_digest", "reservoir_is_current", "exact_storage_cost", "EncodeReport", "reservoir_name", "encode_bank",
    "read_bank_reservoir", "bank_reservoirs",
]

_PREFIX = "reservoir-"
_EXTRA_COPIES = 32  # tasks added to measure the per-task file cost
_DIGEST_ATTR = "bank_digest"  # reservoir attribute: bank_digest() of the masks it was encoded from


def reservoir_name(budget: str | int | float) -> str:
    """Attachment name of the reservoir for ``budget`` (parsed to bytes).

    >>> reservoir_name("1MB")
    'reservoir-1000000'
    """
    return f"{_PREFIX}{parse_budget(budget)}"


@dataclass(frozen=True)
class EncodeReport:
    """What :func:`encode_bank` built, for people and for ``--json``."""

    path: str
    attachment: str
    budget_bytes: int
    reservoir_bytes: int
    rule: str
    dtype: str
    n_networks: int
    network_size: int
    pattern_length: int
    n_tasks: int
    capacity_tasks: float
    load: float
    over_capacity: bool
    exact_bytes_per_task: int
    exact_file_bytes_per_task: int
    exact_file_header_bytes: int
    exact_tasks_in_budget: int
    key_units: int = 0
    write_accumulator_bytes: int = 0

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return asdict(self)


def bank_reservoirs(path: str | Path) -> list[str]:
    """Names of the reservoir attachments in the bank at ``path``."""
    with open_bank(path, "r") as bank:
        return [name for name in bank.attachments() if name.startswith(_PREFIX)]


def bank_digest(bank) -> str:
    """sha256 (hex) of an open bank's task names and masks, in task order.

    Stored with each reservoir when it is encoded, so a reservoir made from
    other masks (tasks added, deleted or overwritten since) is recognised.
    """
    digest = hashlib.sha256()
    for task in bank.tasks():
        layout = bank.task_layout(task)
        digest.update(task.encode("utf-8") + b"\0" + json.dumps(layout.to_dict()).encode("utf-8"))
        digest.update(pack_bits(layout.flatten(bank.read_task(task))).tobytes())
    return digest.hexdigest()


def reservoir_is_current(path: str | Path, budget: str | int | float) -> bool | None:
    """Whether the bank's reservoir for ``budget`` was encoded from the bank's present masks.

    None when the bank has no such reservoir, or the reservoir predates digests.
    """
    name = reservoir_name(budget)
    with open_bank(path, "r") as bank:
        if name not in bank.attachments():
            return None
        stored = bank.read_attachment(name, lambda group: group.attrs.get(_DIGEST_ATTR))
        if stored is None:
            return None
        stored = stored.decode("ascii") if isinstance(stored, (bytes, np.bytes_)) else str(stored)
        return stored == bank_digest(bank)


def read_bank_reservoir(path: str | Path, budget: str | int | float) -> Reservoir | None:
    """The reservoir stored in the bank for ``budget``, or None when it has none."""
    name = reservoir_name(budget)
    with open_bank(path, "r") as bank:
        if name not in bank.attachments():
            return None
        return bank.read_attachment(name, read_reservoir)


def exact_storage_cost(masks: Mapping[str, np.ndarray]) -> tuple[int, int]:
    """``(header_bytes, bytes_per_task)`` of an ``hdf5-packed`` bank file holding masks like ``masks``.

    Measured, not estimated: two throw-away banks with 1 and 33 copies of the
    task are written and their file sizes compared, so the per-task figure
    includes HDF5's own bookkeeping, not only the packed bits (HDF5 allocates
    metadata in 2 kB blocks, so one extra task alone can look free).
    """
    with tempfile.TemporaryDirectory() as tmp:
        sizes = []
        for copies in (1, 1 + _EXTRA_COPIES):
            path = Path(tmp) / f"exact{copies}.h5"
            with create_bank(path, backend="hdf5-packed") as bank:
                for i in range(copies):
                    bank.write_task(str(i), masks)
            sizes.append(path.stat().st_size)
    per_task = -(-(sizes[1] - sizes[0]) // _EXTRA_COPIES)  # rounded up
    return max(0, sizes[0] - per_task), per_task


def encode_bank(
    path: str | Path,
    budget: str | int | float = "1MB",
    *,
    rule: str = "pseudo-inverse",
    dtype: str = "auto",
    key_units: int | str = "auto",
    overwrite: bool = True,
    progress=None,
) -> tuple[Reservoir, EncodeReport]:
    """Store every task of the bank at ``path`` in a reservoir sized from ``budget`` and attach it to the bank.

    Parameters
    ----------
    path : path-like
        A mask bank file (any file backend).
    budget : str or int
        Byte budget of the reservoir ("1MB", "512KiB", "2e6", ...).
    rule, dtype : str
        Learning rule id and coupling precision (``"auto"``: see :meth:`Reservoir.from_budget`).
    key_units : int or "auto"
        Units per network that hold a task key (``"auto"``: a keyed reservoir sized by
        :func:`~hopfield_masks.reservoir.keyed_size_for_budget`; 0: no keys).
    overwrite : bool
        Replace an existing reservoir of the same budget.
    progress : callable, optional
        ``progress(done, total)`` after each task.

    Raises
    ------
    StorageFormatError
        The bank holds no masks, or its tasks do not share one layout.
    BudgetError
        The budget is too small for even one network (the message gives the smallest that works).
    """
    with bank_lock(path, exclusive=True):  # no other writer between reading the masks and attaching the reservoir
        return _encode_locked(path, budget, rule=rule, dtype=dtype, key_units=key_units, overwrite=overwrite,
                              progress=progress)


def _encode_locked(path, budget, *, rule, dtype, key_units, overwrite, progress) -> tuple[Reservoir, EncodeReport]:
    parse_budget(budget)  # a bad budget is refused before any work
    with open_bank(path, "r") as bank:
        tasks = bank.tasks()
        if not tasks:
            raise StorageFormatError(path, "holds no masks to encode (write tasks into the bank first)")
        layout = bank.task_layout(tasks[0])
        for task in tasks[1:]:
            if bank.task_layout(task) != layout:
                raise StorageFormatError(path, f"task {task!r} has a different layer layout from task {tasks[0]!r}")
        # sized (and refused when this process cannot hold it) before any mask is read
        reservoir = Reservoir.from_budget(budget, layout, rule=rule, dtype=dtype, key_units=key_units)
        digest = bank_digest(bank)
        with warnings.catch_warnings():
            # over capacity is reported in the EncodeReport (and by the CLI), not as a warning per task
            warnings.simplefilter("ignore", CapacityWarning)
            for i, task in enumerate(tasks):
                reservoir.store(bank.read_task(task))
                if progress is not None:
                    progress(i + 1, len(tasks))
        header_bytes, file_bytes_per_task = exact_storage_cost(bank.read_task(tasks[0]))
    name = reservoir_name(budget)
    with open_bank(path, "a") as bank:
        def write(group) -> None:
            write_reservoir(group, reservoir)
            group.attrs[_DIGEST_ATTR] = np.bytes_(digest)  # fixed-length ASCII: no global heap

        bank.write_attachment(name, write, overwrite=overwrite)
    budget_bytes = parse_budget(budget)
    report = EncodeReport(
        path=str(path),
        attachment=name,
        budget_bytes=budget_bytes,
        reservoir_bytes=int(reservoir.nbytes),
        rule=reservoir.rule.rule_id,
        dtype=reservoir.dtype,
        n_networks=reservoir.n_blocks,
        network_size=reservoir.network_size,
        pattern_length=layout.length,
        n_tasks=reservoir.n_tasks,
        capacity_tasks=float(reservoir.capacity),
        load=float(reservoir.n_tasks / reservoir.capacity),
        over_capacity=bool(reservoir.n_tasks > reservoir.capacity),
        exact_bytes_per_task=packed_nbytes(layout.length),
        exact_file_bytes_per_task=int(file_bytes_per_task),
        exact_file_header_bytes=int(header_bytes),
        exact_tasks_in_budget=max(0, (budget_bytes - header_bytes) // file_bytes_per_task),
        key_units=int(reservoir.key_units),
        write_accumulator_bytes=int(sum(net.accumulator_nbytes for net in reservoir.networks)),
    )
    return reservoir, report
