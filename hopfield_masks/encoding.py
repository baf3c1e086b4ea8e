"""Encode a mask bank into a Hopfield reservoir stored inside the bank, and read it back.

The reservoir for a byte budget is an *attachment* of the bank named
``reservoir-<bytes>`` (for example ``reservoir-1000000`` for ``--budget 1MB``),
so one file holds the exact masks and every reservoir made from them.
Encoding reads the tasks one at a time, keeping them only in the compact
form the rule learns from (the perceptron rule: int8 spins cut into the
reservoir's blocks; a Hopfield rule: packed bits, an eighth of the masks'
bools), builds the reservoir a chunk of coupling rows or one network at a
time (so what a write needs beyond the reservoir and the masks is a small
fraction of the reservoir, :attr:`EncodeReport.write_accumulator_bytes`),
then appends the reservoir to the bank in place under its rollback journal:
the bank grows by about the reservoir's size, and a failure or a crash
leaves it as it was.  The bank's
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
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .backends import create_bank, open_bank
from .budget import parse_budget
from .errors import BudgetError, CapacityWarning, InvalidArgumentError, StorageFormatError, UnknownRuleError
from .safety.locking import bank_lock
from .patterns import pack_bits, packed_nbytes
from .binary import KIND as BINARY_KIND, BinaryReservoir, PerceptronRule
from .binary.format import read_binary_reservoir, write_binary_reservoir
from .blocks import split_blocks
from .reservoir import Reservoir, read_reservoir, write_reservoir
from .reservoir_sizing import ITEMSIZE, MAX_KEY_UNITS
from .rules import available_rules
from .safety.integrity import check_tree, max_array_bytes
from .validate import check_choice, check_int

__all__ = [
    "EncodeSettings", "plan_reservoir", "bank_digest", "reservoir_is_current", "exact_storage_cost", "EncodeReport",
    "reservoir_name", "encode_bank", "read_bank_reservoir", "bank_reservoirs", "read_any_reservoir", "AnyReservoir",
]

#: Either kind of reservoir a bank may hold.
AnyReservoir = Reservoir | BinaryReservoir

_PREFIX = "reservoir-"
_EXTRA_COPIES = 32  # tasks added to measure the per-task file cost
_DIGEST_ATTR = "bank_digest"  # reservoir attribute: bank_digest() of the masks it was encoded from


@dataclass(frozen=True)
class EncodeSettings:
    """How a bank's masks are encoded into a reservoir, checked once at construction.

    Parameters
    ----------
    rule : str
        ``"auto"`` (the default: ``"perceptron"`` when the budget holds its smallest reservoir, else
        ``"pseudo-inverse"``), ``"perceptron"`` (±1 couplings learnt as ±1, recalled by key,
        :class:`~hopfield_masks.binary.BinaryReservoir`) or a Hopfield learning rule id
        (:func:`~hopfield_masks.rules.available_rules`).
    dtype : str
        Coupling precision of a Hopfield rule (``"auto"``: see :meth:`Reservoir.from_budget`);
        ``"auto"`` for the perceptron rule, whose couplings are bits.
    key_units : int or "auto"
        Task-key units (``"auto"``: sized from the budget and the number of tasks; 0: no keys,
        Hopfield rules only).

    Examples
    --------
    >>> EncodeSettings().rule
    'auto'
    >>> EncodeSettings(rule="perceptron", key_units=0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hopfield_masks.errors.InvalidArgumentError: key_units: expected 'auto' or a multiple of 64 ... received 0
    """

    rule: str = "auto"
    dtype: str = "auto"
    key_units: int | str = "auto"

    def __post_init__(self) -> None:
        rules = ("auto", PerceptronRule.rule_id, *available_rules())
        if not isinstance(self.rule, str) or self.rule not in rules:
            raise UnknownRuleError(self.rule, list(rules)) if isinstance(self.rule, str) else \
                InvalidArgumentError("rule", f"one of {', '.join(rules)}", repr(self.rule))
        check_choice("dtype", self.dtype, ("auto", *ITEMSIZE))
        if self.key_units != "auto":
            check_int("key_units", self.key_units, low=0, high=MAX_KEY_UNITS)
        if self.rule == PerceptronRule.rule_id:  # "auto" falls back to pseudo-inverse for settings like these
            if self.dtype != "auto":
                raise InvalidArgumentError("dtype", "'auto' for the perceptron rule (its couplings are bits)",
                                           repr(self.dtype))
            if self.key_units != "auto" and (self.key_units < 64 or self.key_units % 64):
                raise InvalidArgumentError("key_units", "'auto' or a multiple of 64 of at least 64 for the "
                                                        "perceptron rule", repr(self.key_units))


def plan_reservoir(budget: str | int | float, layout, settings: EncodeSettings, n_tasks: int | None = None):
    """The empty reservoir ``settings`` make for ``budget`` and masks of ``layout`` (sized, nothing learnt).

    Raises
    ------
    BudgetError
        The budget is too small (the message gives the smallest that works) or builds a reservoir this
        process cannot hold.
    """
    if not isinstance(settings, EncodeSettings):
        raise InvalidArgumentError("settings", "an EncodeSettings", type(settings).__name__)
    rule = settings.rule
    if rule == "auto":
        keys = settings.key_units
        if settings.dtype == "auto" and (keys == "auto" or (keys >= 64 and keys % 64 == 0)):
            try:
                return plan_reservoir(budget, layout, replace(settings, rule=PerceptronRule.rule_id), n_tasks)
            except BudgetError:  # below the perceptron rule's smallest reservoir: the projection rule's
                pass
        rule = "pseudo-inverse"
    if rule != PerceptronRule.rule_id:
        return Reservoir.from_budget(budget, layout, rule=rule, dtype=settings.dtype, key_units=settings.key_units)
    if settings.key_units == "auto":
        return BinaryReservoir.from_budget(budget, layout, n_tasks=n_tasks)
    nbytes = parse_budget(budget)
    reservoir = BinaryReservoir(layout, settings.key_units, budget=nbytes)
    if reservoir.nbytes > nbytes:
        raise BudgetError("key_units", f"a key length whose couplings fit the budget of {nbytes:,} bytes",
                          f"{settings.key_units} ({reservoir.nbytes:,} bytes)")
    return reservoir


def reservoir_name(budget: str | int | float) -> str:
    """Attachment name of the reservoir for ``budget`` (parsed to bytes).

    >>> reservoir_name("1MB")
    'reservoir-1000000'
    """
    return f"{_PREFIX}{parse_budget(budget)}"


@dataclass(frozen=True)
class EncodeReport:
    """What :func:`encode_bank` built, for people (``print(report)``: one line) and for ``--json`` (:meth:`to_dict`).

    Examples
    --------
    >>> report = EncodeReport("masks.h5", "reservoir-8000000", 8_000_000, 6_365_184, "perceptron", "bit", 4144,
    ...                       192, 265_200, 3, 70.4, 3 / 70.4, False, 33_150, 33_372, 860, 239, key_units=128)
    >>> print(report)
    perceptron reservoir masks.h5:reservoir-8000000, 6,365,184 B of the 8,000,000 B budget (4,144 blocks, 128 key \
units): 3 tasks of 265,200 bits, load 0.04 of capacity 70.4; every task is recalled exactly by its key
    """

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
    rows_unconverged: int = 0

    def to_dict(self) -> dict:
        """JSON-safe dict of the fields."""
        return asdict(self)

    @property
    def exact(self) -> bool | None:
        """Whether every stored task is known to be recalled exactly: for the perceptron rule, True when every
        coupling row met its constraints (each task's key then lands on its mask in one step, and the mask is a
        fixed point); None for the Hopfield rules, whose recall depends on the cue (recall to find out)."""
        return self.rows_unconverged == 0 if self.rule == PerceptronRule.rule_id else None

    def __str__(self) -> str:
        if self.rule == PerceptronRule.rule_id:
            shape = f"{self.n_networks:,} blocks, {self.key_units} key units"
        else:
            keys = f", {self.key_units} key units" if self.key_units else ""
            shape = f"{self.n_networks:,} networks of {self.network_size:,} units{keys}, {self.dtype} couplings"
        load = f"load {self.load:.2f} of capacity {self.capacity_tasks:.1f}" + (" (over capacity)" if self.over_capacity else "")
        if self.exact is None:
            outcome = "exact recall is not known before recalling (it depends on the cue)"
        elif self.exact:
            outcome = "every task is recalled exactly by its key"
        else:
            outcome = (f"{self.rows_unconverged:,} coupling rows missed a constraint, so some tasks may not be "
                       "recalled exactly (a larger budget gives longer keys)")
        return (f"{self.rule} reservoir {self.path}:{self.attachment}, {self.reservoir_bytes:,} B of the "
                f"{self.budget_bytes:,} B budget ({shape}): {self.n_tasks:,} tasks of {self.pattern_length:,} bits, "
                f"{load}; {outcome}")


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


def read_any_reservoir(group) -> AnyReservoir:
    """Read the reservoir in ``group``, of whichever kind its ``kind`` attribute names (untrusted input)."""
    check_tree(group, group.file.filename, file_bytes=int(group.file.id.get_filesize()))  # before any attribute
    kind = group.attrs.get("kind") if "kind" in group.attrs else None
    if isinstance(kind, (bytes, np.bytes_)):
        kind = kind.decode("utf-8", "replace")
    return read_binary_reservoir(group) if kind == BINARY_KIND else read_reservoir(group)


def read_bank_reservoir(path: str | Path, budget: str | int | float) -> AnyReservoir | None:
    """The reservoir stored in the bank for ``budget``, or None when it has none."""
    name = reservoir_name(budget)
    with open_bank(path, "r") as bank:
        if name not in bank.attachments():
            return None
        return bank.read_attachment(name, read_any_reservoir)


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
    settings: EncodeSettings | None = None,
    *,
    overwrite: bool = True,
    progress=None,
) -> tuple[AnyReservoir, EncodeReport]:
    """Store every task of the bank at ``path`` in a reservoir sized from ``budget`` and attach it to the bank.

    Parameters
    ----------
    path : path-like
        A mask bank file (any file backend).
    budget : str or int
        Byte budget of the reservoir ("1MB", "512KiB", "2e6", ...).
    settings : EncodeSettings, optional
        Rule, precision and key units (default: ``EncodeSettings()``: the perceptron rule where the budget
        holds it).
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
    settings = EncodeSettings() if settings is None else settings
    if not isinstance(settings, EncodeSettings):
        raise InvalidArgumentError("settings", "an EncodeSettings", type(settings).__name__)
    with bank_lock(path, exclusive=True):  # no other writer between reading the masks and attaching the reservoir
        return _encode_locked(path, budget, settings, overwrite=overwrite, progress=progress)


def _encode_locked(path, budget, settings: EncodeSettings, *, overwrite, progress) -> tuple[AnyReservoir, EncodeReport]:
    parse_budget(budget)  # a bad budget is refused before any work
    with open_bank(path, "r") as bank:
        tasks = bank.tasks()
        if not tasks:
            raise StorageFormatError(path, "holds no masks to encode (write tasks into the bank first)")
        layout = bank.task_layout(tasks[0])
        for task in tasks[1:]:
            if bank.task_layout(task) != layout:
                raise StorageFormatError(path, f"task {task!r} has a different layer layout from task {tasks[0]!r}")
        digest = bank_digest(bank)
        # sized (and refused when this process cannot hold it) before any mask is read
        reservoir = plan_reservoir(budget, layout, settings, n_tasks=len(tasks))
        if isinstance(reservoir, BinaryReservoir):
            _learn_bank(bank, path, tasks, reservoir, progress)
        else:
            # every task's packed bits (an eighth of the masks' bools), then the networks one at a time
            bits = _packed_tasks(bank, path, tasks, layout, progress)
            with warnings.catch_warnings():
                # over capacity is reported in the EncodeReport (and by the CLI), not as a warning per task
                warnings.simplefilter("ignore", CapacityWarning)
                reservoir.store_packed(bits)
            del bits
        header_bytes, file_bytes_per_task = exact_storage_cost(bank.read_task(tasks[0]))
    name = reservoir_name(budget)
    with open_bank(path, "a") as bank:
        def write(group) -> None:
            if isinstance(reservoir, BinaryReservoir):
                write_binary_reservoir(group, reservoir)
            else:
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
        write_accumulator_bytes=int(reservoir.write_nbytes if isinstance(reservoir, BinaryReservoir)
                                    else 4 * reservoir.network_size ** 2 if reservoir.dtype == "sign" else 0),
        rows_unconverged=int(reservoir.last_fit.rows_unconverged) if isinstance(reservoir, BinaryReservoir) else 0,
    )
    return reservoir, report


def _learn_bank(bank, path, tasks, reservoir: BinaryReservoir, progress) -> None:
    """Teach ``reservoir`` every task of the open bank, all together.

    Each task is cut into the reservoir's blocks as it is read: the tasks' blocks (one int8 per mask
    entry and padding copy) are the only copy of the masks held while the couplings are learnt.
    """
    layout, block_layout = reservoir.layout, reservoir.block_layout
    per_task = block_layout.n_blocks * block_layout.block_size
    if len(tasks) * per_task > max_array_bytes():
        raise StorageFormatError(path, f"holds {len(tasks):,} tasks of {layout.length:,} entries, more than one "
                                       f"array of their spins may hold ({max_array_bytes():,} B)")
    blocks = np.empty((len(tasks), block_layout.n_blocks, block_layout.block_size), np.int8)
    sums = np.zeros(layout.length, np.int32)
    for i, task in enumerate(tasks):
        spins = layout.flatten_spins(bank.read_task(task))  # (P,) int8
        sums += spins
        blocks[i] = split_blocks(spins, block_layout)
        if progress is not None:
            progress(i + 1, len(tasks))
    reservoir._learn_blocks(blocks, sums)


def _packed_tasks(bank, path, tasks, layout, progress) -> np.ndarray:
    """Every task's flat mask as packed bits, uint8 ``(T, ceil(P / 8))``, read one task at a time."""
    width = packed_nbytes(layout.length)
    if len(tasks) * width > max_array_bytes():
        raise StorageFormatError(path, f"holds {len(tasks):,} tasks of {layout.length:,} entries, more than one "
                                       f"array of their packed bits may hold ({max_array_bytes():,} B)")
    bits = np.empty((len(tasks), width), np.uint8)
    for i, task in enumerate(tasks):
        bits[i] = pack_bits(layout.flatten(bank.read_task(task)))
        if progress is not None:
            progress(i + 1, len(tasks))
    return bits
