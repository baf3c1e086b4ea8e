"""Hostile bank files, crafted with plain h5py: every read path must refuse them clearly, within a memory bound.

Each crafted file is read by ``hostile_worker.py`` in a subprocess limited to ``MEMORY_LIMIT`` of address
space (``resource.setrlimit(RLIMIT_AS)``): describe_file (``info``), verify_file (``verify``), open_bank and
every task and attachment read, and copy_to.  The outcome must be a HopfieldMasksError (one line, naming the
file) -- never another exception, never a MemoryError -- and the other file a link points to stays unchanged.
A seeded sample of single-bit flips of a small bank's HDF5 metadata must each read exactly as before or fail
with such an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.backends.fileformat import write_str_attr
from hopfield_masks.encoding import encode_bank
from hopfield_masks.errors import StorageFormatError
from hopfield_masks.safety.integrity import record_group_checksum, seal_tree, write_checksums

WORKER = Path(__file__).with_name("hostile_worker.py")
ROOT = Path(__file__).parents[2]
#: Address-space limit of the reading process: the library plus h5py/NumPy need about 0.4 GiB.
MEMORY_LIMIT = 1536 << 20
N_FLIPS = 48  # single-bit flips sampled from the metadata region in the default run


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def read_all(paths: list[Path]) -> dict[str, dict]:
    """Outcomes of every read path for each file, from a memory-limited subprocess."""
    proc = subprocess.run(
        [sys.executable, str(WORKER), *map(str, paths)], capture_output=True, text=True, timeout=600,
        preexec_fn=_limit_memory, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {row["file"]: row for row in rows}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_bank(path: Path, n_tasks: int = 2, backend: str = "hdf5-packed") -> None:
    rng = np.random.default_rng(0)
    with create_bank(path, backend, metadata={"seed": 0}) as bank:
        for i in range(n_tasks):
            bank.write_task(str(i), {"fc": rng.random((12, 10)) < 0.3, "out": rng.random(7) < 0.5}, attrs={"i": i})
        bank.write_attachment("notes", lambda g: g.create_dataset("values", data=np.arange(16, dtype=np.float32)))


def other_file(folder: Path) -> Path:
    """An innocent HDF5 file that hostile links point into."""
    path = folder / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_group("grp").create_dataset("data", data=np.full(15, 255, np.uint8))
    return path


# ------------------------------------------------------------------------------------------------ crafted files
def craft_external_attachments(folder: Path) -> Path:
    path, other = folder / "ext_attachments.h5", other_file(folder)
    make_bank(path)
    with h5py.File(path, "r+") as f:
        del f["attachments"]
        f["attachments"] = h5py.ExternalLink(str(other), "/grp")
    return path


def craft_external_task_link(folder: Path) -> Path:
    path, other = folder / "ext_task.h5", other_file(folder)
    make_bank(path)
    with h5py.File(path, "r+") as f:
        f["tasks"]["evil"] = h5py.ExternalLink(str(other), "/grp/data")
    return path


def craft_external_storage(folder: Path) -> Path:
    """A task whose bytes live in another file, with a correct checksum over them (a careful attacker)."""
    path = folder / "ext_storage.h5"
    raw = folder / "secret.bin"
    raw.write_bytes(bytes(range(16)))
    make_bank(path)
    with h5py.File(path, "r+") as f:
        ds = f["tasks"].create_dataset("evil", shape=(16,), dtype=np.uint8, external=[(str(raw), 0, 16)])
        write_str_attr(ds.attrs, "layout", json.dumps({"names": ["x"], "shapes": [[128]]}))
        write_checksums(ds)
    return path


def craft_soft_link_loop(folder: Path) -> Path:
    path = folder / "soft_loop.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        f["tasks"]["loop"] = h5py.SoftLink("/tasks/loop")
    return path


def craft_hard_link_loop(folder: Path) -> Path:
    path = folder / "hard_loop.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        group = f["attachments"]["notes"]
        group["again"] = group  # the group contains itself
    return path


def craft_virtual_dataset(folder: Path) -> Path:
    path, other = folder / "virtual.h5", other_file(folder)
    make_bank(path)
    layout = h5py.VirtualLayout(shape=(15,), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(other), "/grp/data", shape=(15,))
    with h5py.File(path, "r+") as f:
        group = f["attachments"].create_group("virt")
        group.create_virtual_dataset("data", layout)
        seal_tree(group)
    return path


def craft_declared_size(folder: Path, entries: int) -> Path:
    """A task dataset declaring ``entries`` bytes without storing them, with a layout to match."""
    path = folder / f"declared_{entries:.0e}.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        ds = f["tasks"].create_dataset("huge", shape=(entries,), dtype=np.uint8)  # nothing written: no storage
        write_str_attr(ds.attrs, "layout", json.dumps({"names": ["x"], "shapes": [[8 * entries]]}))
        ds.attrs.create("crc32", np.array([0, 0], np.uint32))
    return path


def craft_unwritten_gzip_chunks(folder: Path, entries: int = 1_500_000_000) -> Path:
    """An attachment dataset, gzip-chunked, of ``entries`` bytes with no chunk written and a correct checksum (of the
    fill values): reading it would make a reader allocate ``entries`` bytes for a 2 kB file."""
    path = folder / "unwritten_gzip.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        group = f["attachments"].create_group("zeros")
        group.create_dataset("data", shape=(entries,), dtype=np.uint8, chunks=(1 << 20,), compression="gzip")
        seal_tree(group)
    return path


def craft_reservoir_declaring_huge_couplings(folder: Path) -> Path:
    """An attachment like a reservoir: couplings (1, 275200, 275200) int8 declared in a 2 kB file."""
    path = folder / "huge_reservoir.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        group = f["attachments"].create_group("reservoir-1000")
        group.attrs.update({"kind": "reservoir", "network_size": 275200})
        ds = group.create_dataset("couplings", shape=(1, 275200, 275200), dtype=np.int8)
        ds.attrs.create("crc32", np.array([0, 0], np.uint32))  # the size check must come before any checksum
        group.attrs.create("crc32", np.array([0], np.uint32))
    return path


def craft_layout_dimension(folder: Path, dimension: int) -> Path:
    path = folder / f"layout_{len(str(dimension))}.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        ds = f["tasks"]["1"]
        write_str_attr(ds.attrs, "layout", json.dumps({"names": ["x"], "shapes": [[dimension]]}))
        write_checksums(ds)  # a consistent checksum: the layout check must catch it
    return path


def craft_root_metadata(folder: Path, text: str, name: str) -> Path:
    path = folder / f"metadata_{name}.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        write_str_attr(f.attrs, "metadata", text)
        record_group_checksum(f)
    return path


def craft_task_attrs(folder: Path, text: str, name: str) -> Path:
    path = folder / f"attrs_{name}.h5"
    make_bank(path)
    with h5py.File(path, "r+") as f:
        ds = f["tasks"]["0"]
        write_str_attr(ds.attrs, "attrs", text)
        write_checksums(ds)
    return path


CRAFTED = {
    "external link at /attachments": craft_external_attachments,
    "external link in /tasks": craft_external_task_link,
    "external storage": craft_external_storage,
    "soft-link loop": craft_soft_link_loop,
    "hard-link loop": craft_hard_link_loop,
    "virtual dataset": craft_virtual_dataset,
    "declared 1e9 B": lambda d: craft_declared_size(d, 10**9),
    "declared 1e12 B": lambda d: craft_declared_size(d, 10**12),
    "declared 1e15 B": lambda d: craft_declared_size(d, 10**15),
    "reservoir of 275200^2 couplings": craft_reservoir_declaring_huge_couplings,
    "gzip chunks never written, 1.5 GB declared": craft_unwritten_gzip_chunks,
    "layout dimension 1e9": lambda d: craft_layout_dimension(d, 10**9),
    "layout dimension 1e29": lambda d: craft_layout_dimension(d, 10**29),
    "metadata not JSON": lambda d: craft_root_metadata(d, "{not json", "notjson"),
    "metadata a list": lambda d: craft_root_metadata(d, "[1, 2]", "list"),
    "metadata deeply nested": lambda d: craft_root_metadata(d, "[" * 100000 + "]" * 100000, "nested"),
    "task attrs not JSON": lambda d: craft_task_attrs(d, "nope", "notjson"),
    "task attrs a string": lambda d: craft_task_attrs(d, '"text"', "string"),
}


class TestCraftedFiles:
    def test_every_crafted_file_is_refused_clearly_within_the_memory_limit(self, tmp_path):
        """All crafted files: a one-line HopfieldMasksError naming the file, no crash, no allocation beyond the limit."""
        paths = {}
        for i, (name, craft) in enumerate(CRAFTED.items()):
            folder = tmp_path / f"c{i}"
            folder.mkdir()
            paths[name] = craft(folder)
        others = {p: sha(p) for p in tmp_path.glob("c*/other.h5")}
        outcomes = read_all(list(paths.values()))
        for name, path in paths.items():
            row = outcomes[str(path)]
            assert row["outcome"] == "error", (name, row)
            assert str(path) in row["message"] and "\n" not in row["message"], (name, row)
        assert {p: sha(p) for p in others} == others  # nothing written through a link

    def test_chunked_datasets_are_bounded_by_what_the_file_holds(self, tmp_path):
        """check_dataset refuses a chunked (gzip or plain) dataset declaring more than its stored chunks can expand to,
        before anything is read; one whose chunks are all written passes."""
        from hopfield_masks.safety.integrity import check_dataset

        path = tmp_path / "chunks.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("gzip_empty", shape=(2_500_000_000,), dtype=np.uint8, chunks=(1 << 20,), compression="gzip")
            f.create_dataset("plain_empty", shape=(10**8,), dtype=np.uint8, chunks=(1 << 16,))
            part = f.create_dataset("plain_part", shape=(10**7,), dtype=np.uint8, chunks=(1 << 16,))
            part[: 1 << 16] = 1
            f.create_dataset("gzip_full", data=np.zeros(1 << 20, np.uint8), chunks=(1 << 16,), compression="gzip")
            f.create_dataset("plain_full", data=np.arange(1000, dtype=np.int32), chunks=(64,))
        with h5py.File(path, "r") as f:
            file_bytes = path.stat().st_size
            for name in ("gzip_empty", "plain_empty", "plain_part"):
                with pytest.raises(StorageFormatError, match=f"dataset /{name} declares"):
                    check_dataset(f[name], path, file_bytes=file_bytes)
            assert check_dataset(f["gzip_full"], path, file_bytes=file_bytes) == 1 << 20
            assert check_dataset(f["plain_full"], path, file_bytes=file_bytes) == 4000

    def test_encode_never_writes_through_an_external_attachments_link(self, tmp_path):
        """encode on a bank whose /attachments links into another file refuses; both files stay unchanged."""
        path = craft_external_attachments(tmp_path)
        other = tmp_path / "other.h5"
        before = sha(path), sha(other)
        with pytest.raises(StorageFormatError, match="external link"):
            encode_bank(path, "64KB")
        assert (sha(path), sha(other)) == before

    def test_copy_to_refuses_external_storage(self, tmp_path):
        """copy_to would embed another file's bytes in a normal bank: it refuses instead."""
        path = craft_external_storage(tmp_path)
        with open_bank(path) as bank, create_bank(tmp_path / "copy.h5") as copy:
            with pytest.raises(StorageFormatError, match="external files"):
                bank.copy_to(copy)

    @pytest.mark.parametrize("command", ["info", "verify"])
    def test_cli_gives_one_line_and_exit_2(self, tmp_path, command):
        """The CLI on hostile files: exit code 2 and a one-line error naming the file, under the memory limit."""
        crafts = (craft_external_attachments, craft_reservoir_declaring_huge_couplings) if command == "info" else (
            lambda d: craft_layout_dimension(d, 10**29), lambda d: craft_root_metadata(d, "[1]", "l"))
        for craft in crafts:  # (every read path sees all of them in-process, above)
            folder = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
            folder.mkdir()
            path = craft(folder)
            proc = subprocess.run([sys.executable, "-m", "supsup_store_cli", command, str(path)], capture_output=True,
                                  text=True, timeout=300, preexec_fn=_limit_memory, cwd=ROOT)
            assert proc.returncode == 2, proc.stderr
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            assert lines and lines[-1].startswith("Error:") and str(path.name) in proc.stderr
            assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ bit flips
def metadata_offsets(path: Path) -> list[int]:
    """Byte offsets of the file that are HDF5 metadata: everything but the raw data of contiguous datasets."""
    raw = np.zeros(path.stat().st_size, dtype=bool)
    with h5py.File(path, "r") as f:
        def mark(_name, obj):
            if isinstance(obj, h5py.Dataset) and obj.id.get_offset() is not None:
                start = obj.id.get_offset()
                raw[start:start + obj.id.get_storage_size()] = True

        f.visititems(mark)
    return np.flatnonzero(~raw).tolist()


def flipped_copies(path: Path, folder: Path, n: int, seed: int) -> list[Path]:
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    offsets = metadata_offsets(path)
    data = path.read_bytes()
    chosen = rng.choice(len(offsets) * 8, size=n, replace=False)
    out = []
    for k in chosen:
        byte, bit = offsets[k // 8], k % 8
        damaged = bytearray(data)
        damaged[byte] ^= 1 << bit
        target = folder / f"flip_{byte}_{bit}.h5"
        target.write_bytes(bytes(damaged))
        out.append(target)
    return out


def check_flips(tmp_path: Path, n: int, seed: int, backend: str = "hdf5-packed") -> dict[str, int]:
    original = tmp_path / "bank.h5"
    make_bank(original, backend=backend)
    flips = tmp_path / "flips"
    flips.mkdir()
    paths = flipped_copies(original, flips, n, seed)
    outcomes = read_all([original, *paths])
    reference = outcomes[str(original)]
    assert reference["outcome"] == "ok", reference
    counts = {"ok": 0, "error": 0}
    for path in paths:
        row = outcomes[str(path)]
        assert row["outcome"] in ("ok", "error"), row  # never a crash or a MemoryError
        if row["outcome"] == "ok":  # a flip in unused bytes: the bank must read exactly as before
            assert row["digest"] == reference["digest"], row
        else:
            assert str(path) in row["message"] and "\n" not in row["message"], row
        counts[row["outcome"]] += 1
    return counts


class TestBitFlips:
    def test_sampled_metadata_flips_read_exactly_or_fail_clearly(self, tmp_path):
        """48 seeded single-bit flips of the metadata region: each reads identically or raises a one-line error."""
        counts = check_flips(tmp_path, N_FLIPS, seed=20261201)
        assert counts["error"] >= N_FLIPS // 2  # most metadata bytes matter (HDF5 checksums plus ours)

    def test_entropy_bank_flips_read_exactly_or_fail_clearly(self, tmp_path):
        """The same for an hdf5-entropy bank (its counts attribute is metadata too): 24 seeded flips."""
        pytest.importorskip("constriction")
        counts = check_flips(tmp_path, 24, seed=20261202, backend="hdf5-entropy")
        assert counts["error"] >= 12

    @pytest.mark.slow
    def test_many_metadata_flips(self, tmp_path):
        """400 more flips (slow)."""
        check_flips(tmp_path, 400, seed=7)

    @pytest.mark.parametrize("backend", ["hdf5-packed", "hdf5-entropy"])
    def test_flips_in_task_data_and_attachment_arrays_are_caught_by_every_read_path(self, tmp_path, backend):
        """A flipped bit in a task's bytes or an attachment array: read_task, read_attachment, copy_to and verify."""
        if backend == "hdf5-entropy":
            pytest.importorskip("constriction")
        path = tmp_path / "bank.h5"
        make_bank(path, backend=backend)
        with h5py.File(path, "r") as f:
            task_at = f["tasks"]["1"].id.get_offset()
            array_at = f["attachments"]["notes"]["values"].id.get_offset() + 5
        for where, offset in (("/tasks/1", task_at), ("/attachments/notes/values", array_at)):
            damaged = tmp_path / f"d{offset}.h5"
            data = bytearray(path.read_bytes())
            data[offset] ^= 0x10
            damaged.write_bytes(bytes(data))
            row = read_all([damaged])[str(damaged)]
            assert row["outcome"] == "error" and where in row["message"] and "CRC-32" in row["message"], row
            with open_bank(damaged) as bank:
                with pytest.raises(StorageFormatError, match="CRC-32"):
                    if where.startswith("/tasks"):
                        bank.read_task("1")
                    else:
                        bank.read_attachment("notes", lambda g: g["values"][()])
                with pytest.raises(StorageFormatError, match="CRC-32"), create_bank(None) as copy:
                    bank.copy_to(copy)


def test_flipped_coupling_bit_in_a_real_reservoir_is_caught(tmp_path):
    """A bank encoded with encode_bank, one bit of its couplings flipped: every reader and verify say CRC-32."""
    from hopfield_masks.backends import verify_file
    from hopfield_masks.encoding import read_bank_reservoir

    path = tmp_path / "bank.h5"
    make_bank(path, n_tasks=3)
    encode_bank(path, "64KB")
    assert read_bank_reservoir(path, "64KB") is not None
    with h5py.File(path, "r") as f:
        group = f["attachments"]["reservoir-64000"]
        name = max((k for k in group if isinstance(group[k], h5py.Dataset)), key=lambda k: group[k].nbytes)
        offset = group[name].id.get_offset() + group[name].id.get_storage_size() // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x04
    path.write_bytes(bytes(data))
    with pytest.raises(StorageFormatError, match=f"reservoir-64000/{name}.*CRC-32"):
        read_bank_reservoir(path, "64KB")
    report = verify_file(path)
    assert [item[0] for item in report.damaged] == ["attachment 'reservoir-64000'"]
    row = read_all([path])[str(path)]
    assert row["outcome"] == "error" and "CRC-32" in row["message"]


# ------------------------------------------------------------------------------------------------ links in a chain
@pytest.mark.parametrize("where", ["last", "middle"])
def test_entropy_bank_never_follows_a_task_link_to_a_fifo(tmp_path, where):
    """hdf5-entropy lists its chain tasks by their attributes: a /tasks link to a FIFO once made every read path (and
    ``info``/``verify``) block forever opening the FIFO.  Now each refuses naming the link, and reads of chain tasks
    before the link still succeed."""
    path = tmp_path / f"entropy_{where}.h5"
    make_bank(path, n_tasks=3, backend="hdf5-entropy")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    if where == "middle":  # tasks 0, 1 (the link), 2: task 2 was coded against task 1
        make_bank(tmp_path / "source.h5", n_tasks=3, backend="hdf5-entropy")
    with h5py.File(path, "r+") as f:
        if where == "middle":
            del f["tasks"]["1"], f["tasks"]["2"]
        f["tasks"]["1" if where == "middle" else "evil"] = h5py.ExternalLink(str(fifo), "/grp")
        if where == "middle":
            with h5py.File(tmp_path / "source.h5", "r") as source:
                source.copy(source["tasks"]["2"], f["tasks"], name="2")
    proc = subprocess.run([sys.executable, str(WORKER), str(path)], capture_output=True, text=True, timeout=120,
                          preexec_fn=_limit_memory, cwd=ROOT)
    row = json.loads(proc.stdout.splitlines()[-1])
    assert row["outcome"] == "error" and "external link" in row["message"], row
    with open_bank(path) as bank:
        assert bank.read_task("0")["out"].shape == (7,)
        with pytest.raises(StorageFormatError, match="external link"):
            bank.read_task("2" if where == "middle" else "evil")
    for command in ("info", "verify"):
        proc = subprocess.run([sys.executable, "-m", "supsup_store_cli", command, str(path)], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 2 and "external link" in proc.stdout + proc.stderr, proc.stderr
