"""Bytes on disk per mask and encode/decode throughput of the two HDF5 mask-bank backends.

Masks have the LeNet 300-100 weight count, ``n = 266,200`` entries in three
layers of shapes ``(300, 784)``, ``(100, 300)``, ``(10, 100)``, with exactly
``round(p * size)`` kept entries per layer at random positions, for densities
``p`` = 0.5, 0.1 and 0.02.  For each density and backend:

- **bytes per mask** = (size of a bank holding ``T = 20`` tasks - size of an
  empty bank) / ``T``; the empty-bank size is reported as the fixed header.
  Compared with ``n / 8`` (one bit per entry) and with ``n * H(p) / 8`` (the
  entropy bound for masks of density ``p``).  ``data_*`` fields count the task's
  encoded mask data only (``MaskBank.task_nbytes``); ``overhead_bytes_per_mask``
  is the difference, HDF5's per-task metadata (object header and link: about
  170 bytes packed, 250 sparse; 400-450 before the shared layout and exact
  headers of ``hopfield_masks/backends/_hdf5.py``);
- **bits per kept entry** (the sparse format's measure);
- **encode / decode throughput** in MB/s of mask data (``n / 8`` bytes per
  mask): writing ``T`` tasks into a new bank including the close (fsync and
  atomic rename), and reading them all back from a freshly opened bank; median
  of ``repeats`` runs.

Targets: packed <= 1.02 x n/8 per mask (plus the fixed header); sparse <= 16.5
bits per kept entry where 16-bit indices fit (always, with the default column
height of 65536 rows).  Temporary bank files live in a temporary folder that is
removed afterwards; nothing else is written (``bench_storage.py`` stores the
returned dict).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from hopfield_masks.backends import create_bank, open_bank

__all__ = ["run", "markdown_rows", "TARGETS", "SHAPES", "DENSITIES"]

#: LeNet 300-100 weight shapes (out, in): 266,200 entries.
SHAPES = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}
DENSITIES = (0.5, 0.1, 0.02)
BACKENDS = ("hdf5-packed", "hdf5-sparse")
TARGETS = {"packed_max_ratio_vs_n_over_8": 1.02, "sparse_max_bits_per_kept": 16.5}


def entropy_bits(p: float) -> float:
    """Binary entropy ``H(p)`` in bits per entry."""
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def random_masks(rng: np.random.Generator, density: float) -> dict[str, np.ndarray]:
    """One task: every layer with exactly ``round(density * size)`` kept entries (as top-k supermasks have)."""
    masks = {}
    for name, shape in SHAPES.items():
        size = math.prod(shape)
        flat = np.zeros(size, dtype=bool)
        flat[rng.choice(size, size=round(density * size), replace=False)] = True
        masks[name] = flat.reshape(shape)
    return masks


def _write_all(path: Path, backend: str, tasks: list[dict[str, np.ndarray]]) -> float:
    """Write ``tasks`` into a new bank at ``path``; return the seconds taken, close included."""
    t0 = time.perf_counter()
    with create_bank(path, backend, overwrite=True) as bank:
        for i, masks in enumerate(tasks):
            bank.write_task(str(i), masks)
    return time.perf_counter() - t0


def _read_all(path: Path, n_tasks: int) -> float:
    t0 = time.perf_counter()
    with open_bank(path) as bank:
        for i in range(n_tasks):
            bank.read_task(str(i))
    return time.perf_counter() - t0


def run(seed: int = 0, *, n_tasks: int = 20, repeats: int = 5) -> dict:
    """Measure sizes and throughputs; returns a JSON-safe dict with the rows, targets and pass/fail flags."""
    rng = np.random.default_rng(seed)
    n = sum(math.prod(s) for s in SHAPES.values())
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for density in DENSITIES:
            tasks = [random_masks(rng, density) for _ in range(n_tasks)]
            kept = sum(int(m.sum()) for m in tasks[0].values())  # the same in every task
            for backend in BACKENDS:
                empty_path, path = Path(folder) / f"empty-{backend}.h5", Path(folder) / f"bank-{backend}.h5"
                _write_all(empty_path, backend, [])
                write_s = statistics.median(_write_all(path, backend, tasks) for _ in range(repeats))
                read_s = statistics.median(_read_all(path, n_tasks) for _ in range(repeats))
                with open_bank(path) as bank:
                    data_bytes = statistics.mean(bank.task_nbytes(t) for t in bank.tasks())
                with h5py.File(path, "r") as f:  # the stored dtype: uint8 packed bytes or uint16 sparse indices
                    index_dtype = str(f["tasks/0"].dtype)
                header = empty_path.stat().st_size
                per_mask = (path.stat().st_size - header) / n_tasks
                mask_mb = n_tasks * n / 8 / 1e6
                row = {
                    "density": density, "backend": backend, "kept_per_mask": kept,
                    "fixed_header_bytes": header, "bytes_per_mask": per_mask, "data_bytes_per_mask": data_bytes,
                    "overhead_bytes_per_mask": per_mask - data_bytes,
                    "n_over_8_bytes": n / 8, "entropy_bytes": n * entropy_bits(density) / 8,
                    "ratio_vs_n_over_8": per_mask / (n / 8), "ratio_vs_entropy": per_mask / (n * entropy_bits(density) / 8),
                    "bits_per_kept": 8 * per_mask / kept, "data_bits_per_kept": 8 * data_bytes / kept,
                    "stored_dtype": index_dtype,
                    "encode_mb_s": mask_mb / write_s, "decode_mb_s": mask_mb / read_s,
                }
                if backend == "hdf5-packed":
                    row["passes"] = row["ratio_vs_n_over_8"] <= TARGETS["packed_max_ratio_vs_n_over_8"]
                else:
                    row["passes"] = row["bits_per_kept"] <= TARGETS["sparse_max_bits_per_kept"]
                    row["data_passes"] = row["data_bits_per_kept"] <= TARGETS["sparse_max_bits_per_kept"]
                rows.append(row)
    return {
        "n_entries": n, "shapes": {k: list(v) for k, v in SHAPES.items()}, "n_tasks": n_tasks, "repeats": repeats,
        "seed": seed, "targets": TARGETS, "rows": rows,
        "packed_passes": all(r["passes"] for r in rows if r["backend"] == "hdf5-packed"),
        "sparse_passes": all(r["passes"] for r in rows if r["backend"] == "hdf5-sparse"),
    }


def markdown_rows(result: dict) -> list[str]:
    """Markdown table lines (header included) for a :func:`run` result."""
    t = result["targets"]
    lines = [
        f"n = {result['n_entries']:,} entries per mask (LeNet 300-100), T = {result['n_tasks']} tasks per bank; "
        f"targets: packed <= {t['packed_max_ratio_vs_n_over_8']} x n/8, sparse <= {t['sparse_max_bits_per_kept']} "
        "bits per kept entry (on disk; data-only in brackets).",
        "",
        "| density | backend | bytes/mask | per-task overhead (B) | vs n/8 | vs n·H(p)/8 | bits/kept | header (B) "
        "| encode MB/s | decode MB/s | target met |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in result["rows"]:
        bits = f"{r['bits_per_kept']:.2f} [{r['data_bits_per_kept']:.2f}]"
        met = "yes" if r["passes"] else ("data only" if r.get("data_passes") else "no")
        lines.append(
            f"| {r['density']} | {r['backend']} | {r['bytes_per_mask']:,.0f} | {r['overhead_bytes_per_mask']:.0f} "
            f"| {r['ratio_vs_n_over_8']:.4f} "
            f"| {r['ratio_vs_entropy']:.3f} | {bits} | {r['fixed_header_bytes']:,} | {r['encode_mb_s']:.0f} "
            f"| {r['decode_mb_s']:.0f} | {met} |"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(markdown_rows(run())))
