"""The HDF5 layout of a binary reservoir, and reading it back as untrusted input.

Layout (format version 1): attributes ``kind="binary-reservoir"``, ``format_version=1``, ``rule``
(JSON of :meth:`PerceptronRule.to_dict`), ``mask_layout`` (JSON), ``key_units``, ``block_size``,
``key_seed``, ``n_tasks``, ``budget`` (bytes, 0 when none); datasets ``couplings`` ``(B, M, (K+M)/64)``
uint64 (row ``(b, i)``: the couplings into mask unit ``i`` of block ``b``, key units first, bit
``j % 64`` of word ``j // 64``, 1 = +1) and ``spin_sums`` ``(P,)`` int32.

Reading checks the group's tree first (only hard links, no external or virtual storage, no declared
size above what the file stores or the per-array ceiling), then every attribute and both datasets'
shapes against each other, before a single coupling is read.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from ..blocks import MaskLayout
from ..errors import HopfieldMasksError, StorageFormatError
from ..safety.integrity import check_tree
from .learning import WORD_BITS, PerceptronRule
from .reservoir import KIND, BinaryReservoir

__all__ = ["FORMAT_VERSION", "write_binary_reservoir", "read_binary_reservoir"]

FORMAT_VERSION = 1
_ATTRS = ("kind", "format_version", "rule", "mask_layout", "key_units", "block_size", "key_seed", "n_tasks", "budget")
_DATASETS = ("couplings", "spin_sums")


def write_binary_reservoir(group: h5py.Group, reservoir: BinaryReservoir) -> None:
    """Write ``reservoir`` into ``group`` (binary-reservoir datasets already there are replaced)."""
    for key in _DATASETS:
        if key in group:
            del group[key]
    group.create_dataset("couplings", data=reservoir.couplings)
    group.create_dataset("spin_sums", data=reservoir.spin_sums.astype(np.int32))
    group.attrs.update({
        "kind": KIND, "format_version": FORMAT_VERSION, "rule": json.dumps(reservoir.rule.to_dict()),
        "mask_layout": json.dumps(reservoir.layout.to_dict()), "key_units": int(reservoir.key_units),
        "block_size": int(reservoir.mask_units), "key_seed": int(reservoir.key_seed),
        "n_tasks": int(reservoir.n_tasks), "budget": int(reservoir.budget or 0),
    })


def _where(group: h5py.Group) -> str:
    return f"{group.file.filename}:{group.name}" if group.name != "/" else str(group.file.filename)


def read_binary_reservoir(group: h5py.Group) -> BinaryReservoir:
    """Rebuild a binary reservoir written by :func:`write_binary_reservoir`.

    Raises
    ------
    StorageFormatError
        Not a binary reservoir of a supported version, or missing, malformed or inconsistent
        attributes or datasets, links or storage a reservoir may not have; the message names the file.
    """
    where = _where(group)
    check_tree(group, where, file_bytes=int(group.file.id.get_filesize()))
    attrs = group.attrs
    missing = [a for a in _ATTRS if a not in attrs] + [d for d in _DATASETS if not isinstance(group.get(d), h5py.Dataset)]
    if missing:
        raise StorageFormatError(where, f"is not a complete binary reservoir: missing {', '.join(missing)}")
    if str(attrs["kind"]) != KIND:
        raise StorageFormatError(where, f"is not a binary reservoir (kind={str(attrs['kind'])[:80]!r})")
    try:
        version = int(attrs["format_version"])
        rule = PerceptronRule.from_dict(json.loads(attrs["rule"]))
        layout = MaskLayout.from_dict(json.loads(attrs["mask_layout"]))
        key_units, block = int(attrs["key_units"]), int(attrs["block_size"])
        key_seed, n_tasks, budget = int(attrs["key_seed"]), int(attrs["n_tasks"]), int(attrs["budget"])
        if version != FORMAT_VERSION:
            raise StorageFormatError(where, f"binary reservoir format_version {version} is not supported "
                                            f"(this version reads {FORMAT_VERSION})")
        reservoir = BinaryReservoir(layout, key_units, block, rule, key_seed, budget=budget or None)
    except StorageFormatError:
        raise
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError, HopfieldMasksError) as exc:
        reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:300]
        raise StorageFormatError(where, f"has malformed binary reservoir attributes ({reason})") from None
    words = (key_units + block) // WORD_BITS
    expected = {"couplings": ((reservoir.n_blocks, block, words), "uint64"),
                "spin_sums": ((layout.length,), "int32")}
    problems = [f"dataset {name} is {group[name].shape} {group[name].dtype}, expected {shape} {dtype}"
                for name, (shape, dtype) in expected.items()
                if group[name].shape != shape or str(group[name].dtype) != dtype]
    if n_tasks < 0 or budget < 0:
        problems.append(f"n_tasks {n_tasks} and budget {budget} must not be negative")
    if problems:
        raise StorageFormatError(where, "is an inconsistent binary reservoir: " + "; ".join(problems))
    spin_sums = group["spin_sums"][()]
    if spin_sums.size and int(np.abs(spin_sums.astype(np.int64)).max()) > n_tasks:
        raise StorageFormatError(where, "is an inconsistent binary reservoir: spin sums above n_tasks")
    reservoir._restore(np.ascontiguousarray(group["couplings"][()]), spin_sums, n_tasks)
    return reservoir
