"""Bank write amplification (bytes written per byte appended) and the cost of checksum verification on read.

    python benchmarks/bench_bank_writes.py [--bank-mb 100] [--seed 0]

Builds an ``hdf5-packed`` bank of about ``--bank-mb`` MB (tasks of 8,388,608 entries = 1 MiB packed each),
then measures, each in a fresh session (``open_bank(path, "a")`` ... ``close()``, as resumable training does):

- appending one task, and appending a reservoir (a real :class:`~hopfield_masks.reservoir.Reservoir` of a
  1 MB budget written with ``write_reservoir`` through ``write_attachment``): **bytes written** by the
  process (``wchar`` of ``/proc/self/io``: every write() and pwrite(), the rollback journal included)
  divided by the bytes the bank grew;
- replacing that reservoir (``overwrite=True``: HDF5 cannot reuse the space, so the bank is repacked);
- the previous design's cost for comparison: copying the bank (what every append used to do);
- reading every task with and without CRC-32 verification (MB/s of mask data), ``verify_file`` MB/s,
  and raw ``zlib.crc32`` throughput.

Writes ``benchmarks/results/bank_writes.json`` and ``bank_writes.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENTRIES = 8 * 1024 * 1024  # one task: 1 MiB packed


def written_bytes() -> int:
    """Bytes this process has passed to write-like system calls so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


def measure(path: Path, action) -> dict:
    size0, w0, t0 = path.stat().st_size, written_bytes(), time.perf_counter()
    action()
    seconds, written, grown = time.perf_counter() - t0, written_bytes() - w0, path.stat().st_size - size0
    return {"bytes_written": written, "bank_growth": grown, "seconds": round(seconds, 3),
            "amplification": round(written / grown, 3) if grown > 0 else None}


def run(bank_mb: int, seed: int) -> dict:
    from hopfield_masks.safety import integrity
    from hopfield_masks.backends import create_bank, open_bank, verify_file
    from hopfield_masks.blocks import MaskLayout
    from hopfield_masks.reservoir import Reservoir, write_reservoir

    rng = np.random.default_rng(np.random.SeedSequence(seed))
    n_tasks = max(1, bank_mb)
    folder = Path(tempfile.mkdtemp(prefix="bench_bank_writes_"))
    try:
        path = folder / "bank.h5"
        t0 = time.perf_counter()
        with create_bank(path, metadata={"benchmark": "bank_writes"}) as bank:
            for i in range(n_tasks):
                bank.write_task(str(i), {"w": rng.random(ENTRIES) < 0.5})
        build_s = time.perf_counter() - t0
        bank_bytes = path.stat().st_size
        results: dict = {"bank_bytes": bank_bytes, "n_tasks": n_tasks, "task_entries": ENTRIES,
                         "build_seconds": round(build_s, 2)}

        new_task = {"w": rng.random(ENTRIES) < 0.5}

        def append_task() -> None:
            with open_bank(path, "a") as bank:
                bank.write_task("appended", new_task)

        results["append_task"] = measure(path, append_task)

        layout = MaskLayout.from_masks({"w": np.zeros(4096, bool)})
        reservoir = Reservoir.from_budget("1MB", layout, rule="hebbian")
        for _ in range(3):
            reservoir.store({"w": rng.random(4096) < 0.5})

        def append_reservoir(overwrite: bool = False) -> None:
            with open_bank(path, "a") as bank:
                bank.write_attachment("reservoir-1000000", lambda g: write_reservoir(g, reservoir), overwrite=overwrite)

        results["append_reservoir"] = measure(path, append_reservoir)
        results["append_reservoir"]["reservoir_bytes"] = int(reservoir.nbytes)
        size_before = path.stat().st_size
        w0 = written_bytes()
        append_reservoir(overwrite=True)
        results["replace_reservoir"] = {"bytes_written": written_bytes() - w0,
                                        "bank_bytes_after": path.stat().st_size, "bank_bytes_before": size_before,
                                        "note": "replacing frees HDF5 space that cannot be reused: the bank is repacked"}
        copy = folder / "copy.h5"
        w0 = written_bytes()
        shutil.copyfile(path, copy)
        results["previous_design_copy_per_append"] = {"bytes_written": written_bytes() - w0}
        copy.unlink()

        # ---- reading: checksum verification on / off
        def read_all() -> float:
            t = time.perf_counter()
            with open_bank(path) as bank:
                for task in bank.tasks():
                    bank.read_task(task)
            return time.perf_counter() - t

        with open_bank(path) as bank:
            data_bytes = sum(bank.task_nbytes(t) for t in bank.tasks())
        read_all()  # warm the page cache
        verified = min(read_all() for _ in range(3))
        real_verify = integrity.verify_dataset
        import hopfield_masks.backends.hdf5 as hdf5_module
        hdf5_module.verify_dataset = lambda *a, **k: "ok"
        try:
            unverified = min(read_all() for _ in range(3))
        finally:
            hdf5_module.verify_dataset = real_verify
        t = time.perf_counter()
        report = verify_file(path)
        verify_s = time.perf_counter() - t
        assert report.ok
        block = rng.integers(0, 256, 64 << 20, dtype=np.uint8)
        t = time.perf_counter()
        zlib.crc32(block)
        crc_s = time.perf_counter() - t
        mb = 1e6
        results["read"] = {
            "mask_data_bytes": data_bytes,
            "read_tasks_verified_MBps": round(data_bytes / verified / mb, 1),
            "read_tasks_unverified_MBps": round(data_bytes / unverified / mb, 1),
            "verification_overhead_pct": round(100 * (verified - unverified) / unverified, 1),
            "verify_file_MBps": round(report.bytes_checked / verify_s / mb, 1),
            "crc32_MBps": round(block.nbytes / crc_s / mb, 1),
        }
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def markdown(result: dict) -> list[str]:
    r = result["results"]
    a, b = r["append_task"], r["append_reservoir"]
    rows = [
        "# Bank writes: amplification and checksum cost", "",
        f"`{result['command']}` on {result['machine']['platform']} (h5py {result['machine']['h5py']}, "
        f"HDF5 {result['machine']['hdf5']}); bank of {r['n_tasks']} tasks, {r['bank_bytes']:,} B.", "",
        "Bytes written = `wchar` of `/proc/self/io` (every write/pwrite of the process, rollback journal included).", "",
        "| operation | bytes written | bank growth | written / growth | seconds |",
        "|---|---:|---:|---:|---:|",
        f"| append one task (1 MiB packed) | {a['bytes_written']:,} | {a['bank_growth']:,} | {a['amplification']} | {a['seconds']} |",
        f"| append a reservoir ({b['reservoir_bytes']:,} B) | {b['bytes_written']:,} | {b['bank_growth']:,} | "
        f"{b['amplification']} | {b['seconds']} |",
        f"| replace that reservoir (repack) | {r['replace_reservoir']['bytes_written']:,} | "
        f"{r['replace_reservoir']['bank_bytes_after'] - r['replace_reservoir']['bank_bytes_before']:,} | - | - |",
        f"| previous design: copy the bank per append | {r['previous_design_copy_per_append']['bytes_written']:,} | - | - | - |",
        "", "## Reading with CRC-32 verification", "",
        "| measure | value |", "|---|---:|",
        f"| read every task, verified | {r['read']['read_tasks_verified_MBps']} MB/s |",
        f"| read every task, verification off | {r['read']['read_tasks_unverified_MBps']} MB/s |",
        f"| verification overhead on read | {r['read']['verification_overhead_pct']} % |",
        f"| `verify_file` (whole bank) | {r['read']['verify_file_MBps']} MB/s |",
        f"| `zlib.crc32` alone | {r['read']['crc32_MBps']} MB/s |",
    ]
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank-mb", type=int, default=100, help="bank size in MiB of packed masks")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import h5py

    started = time.time()
    result = {
        "benchmark": "bank_writes",
        "command": f"python benchmarks/bench_bank_writes.py --bank-mb {args.bank_mb} --seed {args.seed}",
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version},
        "results": run(args.bank_mb, args.seed),
    }
    result["wall_s"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bank_writes.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = markdown(result)
    (args.out / "bank_writes.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
