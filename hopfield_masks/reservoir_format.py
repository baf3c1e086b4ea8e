"""The HDF5 layout of a reservoir: writing it into a group, and reading it back as untrusted input.

Layout of an HDF5 group holding a reservoir (format version 2; version 1 has no key attributes):

- attributes ``kind="reservoir"``, ``format_version=2``, ``rule`` (JSON of
  ``LearningRule.to_dict()``), ``dtype``, ``network_size``, ``mask_layout``
  (JSON), ``block_layout`` (JSON: the mask entries per network,
  ``network_size - key_units``), ``n_tasks``, ``budget`` (bytes, 0 when the
  reservoir was built from an explicit network size), ``key_units`` and
  ``key_seed`` (task keys, regenerated from the seed);
- datasets ``couplings`` ``(B, N, N)`` of the stored dtype (``"sign"``: uint8
  ``(B, ceil(N(N-1)/16))``, each network's strict upper triangle packed row by
  row, most significant bit first, 1 = +1; the diagonal is 0), ``scales``
  ``(B,)`` float32 (the int8 / sign dequantisation scale, 1 for float
  couplings) and ``spin_sums`` ``(P,)`` int32.

**Reading** treats the group as untrusted (the house rule for every file):
:func:`read_parts` first checks the group's tree
(:func:`hopfield_masks.safety.integrity.check_tree`: only hard links, no
external or virtual storage, no declared size above what the file stores or
the per-array ceiling, no attribute larger than the file), then the attributes
and the datasets' shapes against each other, and bounds what the couplings
become in memory before unpacking them: sign couplings unpack to an int8 matrix
16 times their stored size, which must fit the per-array ceiling and this
process's memory like any declared array.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from .blocks import BlockLayout, MaskLayout
from .budget import format_bytes, memory_limit
from .errors import StorageFormatError
from .network import HopfieldNetwork, coupling_nbytes, memory_nbytes, pack_sign_couplings, unpack_sign_couplings
from .reservoir_sizing import ITEMSIZE
from .rules.base import LearningRule
from .safety.integrity import check_tree, max_array_bytes

__all__ = ["FORMAT_VERSION", "DATASETS", "ReservoirParts", "read_parts", "write_group"]

#: Version of the on-disk layout (2 adds ``key_units`` and ``key_seed``; version 1 files read as ``key_units=0``).
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)
_ATTRS = ("kind", "format_version", "rule", "dtype", "network_size", "mask_layout", "block_layout", "n_tasks", "budget")
DATASETS = ("couplings", "scales", "spin_sums")


def write_group(group: h5py.Group, reservoir: Any) -> None:
    """Write a reservoir's datasets and attributes into ``group``, replacing reservoir datasets already there."""
    for key in DATASETS:
        if key in group:
            del group[key]
    n, b = reservoir.network_size, reservoir.n_blocks
    if reservoir.dtype == "sign":  # the packed upper triangle, 1 bit per coupling
        shape, dtype = (b, coupling_nbytes(n, "sign") - 4), np.dtype(np.uint8)
    else:
        shape, dtype = (b, n, n), np.dtype(reservoir.dtype)
    couplings = group.create_dataset("couplings", shape=shape, dtype=dtype)
    scales = np.empty(b, dtype=np.float32)
    kept = reservoir.packed_sign_couplings()  # sign couplings kept packed are written as they are
    if kept is not None:
        couplings[...], scales[...] = kept
    for i, net in enumerate(() if kept is not None else reservoir.networks):
        arrays, attrs = net.to_arrays()
        # one block at a time: no (B, N, N) copy in memory
        couplings[i] = pack_sign_couplings(arrays["couplings"]) if reservoir.dtype == "sign" else arrays["couplings"]
        scales[i] = attrs["scale"]
    group.create_dataset("scales", data=scales)
    group.create_dataset("spin_sums", data=reservoir.spin_sums.astype(np.int32))
    group.attrs.update(
        {
            "kind": "reservoir",
            "format_version": FORMAT_VERSION,
            "rule": json.dumps(reservoir.rule.to_dict()),
            "dtype": reservoir.dtype,
            "network_size": int(n),
            "mask_layout": json.dumps(reservoir.layout.to_dict()),
            "block_layout": json.dumps(reservoir.block_layout.to_dict()),
            "n_tasks": int(reservoir.n_tasks),
            "budget": int(reservoir.budget or 0),
            "key_units": int(reservoir.key_units),
            "key_seed": int(reservoir.key_seed),
        }
    )


@dataclass
class ReservoirParts:
    """Everything :func:`read_parts` read and checked, networks included."""

    rule: LearningRule
    layout: MaskLayout
    block_layout: BlockLayout
    dtype: str
    n_tasks: int
    budget: int | None
    networks: tuple[HopfieldNetwork, ...]  # one per block
    spin_sums: np.ndarray  # (P,) int32
    key_units: int = 0
    key_seed: int = 0


def _file_bytes(group: h5py.Group) -> int:
    """Size of the file holding ``group`` (what its attributes' declared sizes are checked against)."""
    try:
        return int(group.file.id.get_filesize())
    except (OSError, RuntimeError, ValueError):
        return 1 << 16


def _check_held_bytes(where: str, blocks: int, size: int, dtype: str) -> None:
    """Refuse couplings that would take more memory than a declared array may (sign couplings unpack 16-fold).

    Held in memory, the ``B`` networks' couplings are one ``(B, N, N)`` array at the in-memory precision
    (int8 for sign couplings): like a declared dataset it must fit the per-array ceiling, and with the
    copy each network is rebuilt from, this process's memory.
    """
    held = blocks * memory_nbytes(size, dtype)
    ceiling, limit = max_array_bytes(), memory_limit()
    what = f"couplings take {held:,} B in memory ({blocks:,} {dtype} network(s) of {size:,} units)"
    if held > ceiling:
        raise StorageFormatError(where, f"is a reservoir whose {what}, above the per-array ceiling {ceiling:,} B "
                                        "(hopfield_masks.safety.integrity.MAX_ARRAY_BYTES; raise it with "
                                        "HOPFIELD_MASKS_MAX_ARRAY_BYTES)")
    if limit is not None and held + memory_nbytes(size, dtype) > limit:
        raise StorageFormatError(where, f"is a reservoir whose {what}, more than this process can hold "
                                        f"({limit:,} B, {format_bytes(limit)})")


def _where(group: h5py.Group) -> str:
    """The file (and group, when not the root) for error messages."""
    name = group.file.filename
    return name if group.name == "/" else f"{name}:{group.name}"


def read_parts(group: h5py.Group) -> ReservoirParts:
    """Read and check a reservoir group and rebuild its networks.

    Raises
    ------
    StorageFormatError
        Not a reservoir, unsupported format version, missing or malformed
        attributes or datasets, shapes that disagree, a link, external or
        virtual storage, a declared size the file does not store, or
        couplings larger in memory than the per-array ceiling or this
        process allows; the message names the file (and group).
    """
    where = _where(group)
    # links, external or virtual storage, declared sizes and attribute sizes: before anything is read
    check_tree(group, where, file_bytes=_file_bytes(group))
    attrs = group.attrs
    if "kind" in attrs and attrs["kind"] != "reservoir":
        raise StorageFormatError(where, f"is not a reservoir (kind={attrs['kind']!r})")
    missing = [a for a in _ATTRS if a not in attrs]
    missing += [d for d in DATASETS if not isinstance(group.get(d), h5py.Dataset)]
    if missing:
        raise StorageFormatError(where, f"is not a complete reservoir: missing {', '.join(missing)}")
    try:
        version = int(attrs["format_version"])
        rule = LearningRule.from_dict(json.loads(attrs["rule"]))
        layout = MaskLayout.from_dict(json.loads(attrs["mask_layout"]))
        block_layout = BlockLayout.from_dict(json.loads(attrs["block_layout"]))
        dtype, size = str(attrs["dtype"]), int(attrs["network_size"])
        n_tasks, budget = int(attrs["n_tasks"]), int(attrs["budget"])
        key_units = int(attrs.get("key_units", 0)) if version >= 2 else 0
        key_seed = int(attrs.get("key_seed", 0)) if version >= 2 else 0
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:  # bad JSON, unknown rule, types
        reason = "JSON nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0][:300]
        raise StorageFormatError(where, f"has malformed reservoir attributes ({reason})") from None
    if version not in _READABLE_VERSIONS:
        raise StorageFormatError(where, f"reservoir format_version {version} is not supported "
                                        f"(this version reads {', '.join(map(str, _READABLE_VERSIONS))})")
    b, p = block_layout.n_blocks, layout.length
    problems = []
    if dtype not in ITEMSIZE:
        problems.append(f"dtype {dtype!r} is not one of {list(ITEMSIZE)}")
    if size < 2 or not 0 <= key_units <= size - 2 or not 0 <= key_seed < 2**63 or block_layout.block_size != size - key_units \
            or block_layout.length != p or p < 1 or n_tasks < 0:
        problems.append(f"network_size {size}, key_units {key_units}, key_seed {key_seed}, block_layout "
                        f"{block_layout.to_dict()}, mask length {p} and n_tasks {n_tasks} disagree")
    couplings_shape = ((b, coupling_nbytes(size, "sign") - 4), "uint8") if dtype == "sign" else ((b, size, size), dtype)
    expected = {"couplings": couplings_shape, "scales": ((b,), "float32"), "spin_sums": ((p,), "int32")}
    for name, (shape, want) in expected.items():
        ds = group[name]
        dtype_ok = str(ds.dtype) == want or name == "couplings" and dtype not in ITEMSIZE  # already reported
        if ds.shape != shape or not dtype_ok:
            problems.append(f"dataset {name} is {ds.shape} {ds.dtype}, expected {shape} {want}")
    if problems:
        raise StorageFormatError(where, "is an inconsistent reservoir: " + "; ".join(problems))
    _check_held_bytes(where, b, size, dtype)  # what the couplings become in memory, before unpacking them
    scales, spin_sums = group["scales"][()], group["spin_sums"][()]
    if not np.isfinite(scales).all() or (spin_sums.size and int(np.abs(spin_sums.astype(np.int64)).max()) > n_tasks):
        raise StorageFormatError(where, "is an inconsistent reservoir: non-finite scales or spin sums above n_tasks")
    try:
        networks = tuple(
            HopfieldNetwork.from_arrays(
                # one block at a time: no (B, N, N) copy in memory
                {"couplings": unpack_sign_couplings(group["couplings"][i], size) if dtype == "sign"
                 else group["couplings"][i]},
                {"rule": rule.to_dict(), "dtype": dtype, "size": size, "n_stored": n_tasks, "scale": float(scales[i])},
            )
            for i in range(b)
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise StorageFormatError(where, f"holds couplings that do not make a network ({str(exc)[:300]})") from None
    return ReservoirParts(rule, layout, block_layout, dtype, n_tasks, budget or None, networks, spin_sums,
                          key_units, key_seed)
