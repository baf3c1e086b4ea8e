"""The HDF5 mask-bank files: atomic writes, damaged files, task isolation, sparse indices, compact tasks."""

from __future__ import annotations

import gc
import json
import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hopfield_masks.backends import (
    HDF5MaskBank,
    create_bank,
    describe_file,
    open_bank,
)
from hopfield_masks.backends import hdf5 as hdf5_bank
from hopfield_masks.codecs import PackedCodec, SparseCodec
from hopfield_masks.codecs.sparse import csc_decode, csc_encode
from hopfield_masks.backends.fileformat import FORMAT_VERSION
from hopfield_masks.errors import BankFileNotFoundError, InvalidArgumentError, StorageFormatError
from hopfield_masks.safety.integrity import record_group_checksum, seal_tree
from tests.strategies import masks as mask_arrays

FILE_BACKENDS = ["hdf5-packed", "hdf5-sparse"]
each_file_backend = pytest.mark.parametrize("backend", FILE_BACKENDS)


def make_bank(path: Path, backend: str, n_tasks: int = 3, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Write a small bank of ``n_tasks`` tasks; return the masks written."""
    rng = np.random.default_rng(seed)
    written = {}
    with create_bank(path, backend, metadata={"seed": seed}, overwrite=True) as bank:
        for i in range(n_tasks):
            written[f"t{i}"] = {"fc1": rng.random((30, 17)) < 0.3, "fc2": rng.random(11) < 0.5}
            bank.write_task(f"t{i}", written[f"t{i}"], attrs={"i": i})
    return written


def leftovers(folder: Path) -> list[str]:
    """Temporary files the atomic writer might have left behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


class TestAtomicity:
    @each_file_backend
    def test_exception_in_append_session_leaves_file_identical(self, tmp_path, backend):
        """An exception inside a 'with open_bank(..., "a")' block discards every change, byte for byte."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend)
        before = path.read_bytes()
        with pytest.raises(RuntimeError, match="boom"):
            with open_bank(path, "a") as bank:
                bank.write_task("new", {"x": np.ones(5, bool)})
                bank.delete_task("t0")
                bank.set_metadata({"changed": True})
                raise RuntimeError("boom")
        assert path.read_bytes() == before
        assert leftovers(tmp_path) == []

    @each_file_backend
    def test_failure_mid_write_leaves_file_identical(self, tmp_path, backend, monkeypatch):
        """An I/O error while encoding the third new task leaves the published file untouched."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend)
        before = path.read_bytes()
        cls = PackedCodec if backend == "hdf5-packed" else SparseCodec
        real, calls = cls.encode, []

        def failing(self, flat, layout, context):
            calls.append(1)
            if len(calls) == 3:
                raise OSError("disk full")
            return real(self, flat, layout, context)

        monkeypatch.setattr(cls, "encode", failing)
        with pytest.raises(OSError, match="disk full"):
            with open_bank(path, "a") as bank:
                for i in range(5):
                    bank.write_task(f"n{i}", {"x": np.ones(9, bool)})
        assert path.read_bytes() == before and leftovers(tmp_path) == []

    def test_failure_while_publishing_leaves_file_identical(self, tmp_path, monkeypatch):
        """If rewriting the file at close() fails, close() raises and the old file stays as it was."""
        path = tmp_path / "bank.h5"
        make_bank(path, "hdf5-packed")
        before = path.read_bytes()

        def broken_repack(tmp):
            raise OSError("repack failed")

        monkeypatch.setattr(hdf5_bank, "repack", broken_repack)
        bank = open_bank(path, "a")
        bank.delete_task("t1")  # a deletion makes close() repack
        with pytest.raises(OSError, match="repack failed"):
            bank.close()
        assert path.read_bytes() == before and leftovers(tmp_path) == []

    def test_failed_overwrite_keeps_old_bank(self, tmp_path):
        """create_bank(overwrite=True) replaces the old file only when the new bank closes cleanly."""
        path = tmp_path / "bank.h5"
        make_bank(path, "hdf5-sparse")
        before = path.read_bytes()
        with pytest.raises(RuntimeError):
            with create_bank(path, "hdf5-packed", overwrite=True) as bank:
                bank.write_task("x", {"x": np.ones(2, bool)})
                raise RuntimeError
        assert path.read_bytes() == before
        with create_bank(path, "hdf5-packed", overwrite=True) as bank:
            bank.write_task("x", {"x": np.ones(2, bool)})
        with open_bank(path) as bank:
            assert bank.backend_id == "hdf5-packed" and bank.tasks() == ["x"]

    def test_existing_file_needs_overwrite(self, tmp_path):
        """create_bank refuses to replace an existing file unless overwrite=True, naming the path."""
        path = tmp_path / "bank.h5"
        make_bank(path, "hdf5-packed")
        before = path.read_bytes()
        with pytest.raises(InvalidArgumentError, match=re.escape(str(path))):
            create_bank(path)
        assert path.read_bytes() == before

    def test_unclosed_bank_publishes_nothing(self, tmp_path):
        """A writable bank dropped without close() neither changes the file nor leaves a temporary file."""
        path = tmp_path / "bank.h5"
        make_bank(path, "hdf5-packed")
        before = path.read_bytes()
        bank = open_bank(path, "a")
        bank.write_task("lost", {"x": np.ones(2, bool)})
        del bank
        gc.collect()
        assert path.read_bytes() == before and leftovers(tmp_path) == []

    @each_file_backend
    def test_deleting_gives_space_back(self, tmp_path, backend):
        """After deleting tasks the published file is rewritten compactly (HDF5 would keep the holes)."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend, n_tasks=2)
        small = path.stat().st_size
        with open_bank(path, "a") as bank:
            for i in range(20):
                bank.write_task(f"big{i}", {"x": np.ones((100, 100), bool)})
        with open_bank(path, "a") as bank:
            for i in range(20):
                bank.delete_task(f"big{i}")
        assert path.stat().st_size <= small + 512
        with open_bank(path) as bank:
            assert bank.tasks() == ["t0", "t1"] and bank.metadata == {"seed": 0}


class TestDamagedFiles:
    @pytest.mark.parametrize("call", [open_bank, describe_file, lambda p: open_bank(p, "a")])
    def test_missing_file(self, tmp_path, call):
        """A missing file raises BankFileNotFoundError (a FileNotFoundError) naming the path."""
        path = tmp_path / "nope.h5"
        with pytest.raises(BankFileNotFoundError, match=re.escape(str(path))) as info:
            call(path)
        assert isinstance(info.value, FileNotFoundError)

    @pytest.mark.parametrize("content", [b"", b"not an hdf5 file\n" * 10])
    def test_not_hdf5(self, tmp_path, content):
        """An empty or non-HDF5 file raises StorageFormatError naming the path."""
        path = tmp_path / "bank.h5"
        path.write_bytes(content)
        for call in (open_bank, describe_file):
            with pytest.raises(StorageFormatError, match=re.escape(str(path))):
                call(path)

    @each_file_backend
    def test_truncated(self, tmp_path, backend):
        """A bank cut to half its bytes raises StorageFormatError naming the path."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend, n_tasks=5)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(StorageFormatError, match=re.escape(str(path))):
            with open_bank(path) as bank:
                for task in bank.tasks():
                    bank.read_task(task)

    def test_hdf5_but_not_a_bank(self, tmp_path):
        """An HDF5 file without a 'kind' attribute is refused as not a supsup-store file."""
        path = tmp_path / "other.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=np.arange(3))
        for call in (open_bank, describe_file):
            with pytest.raises(StorageFormatError, match="not a supsup-store file"):
                call(path)

    def test_reservoir_is_not_a_bank(self, tmp_path):
        """open_bank on a reservoir file says it is a reservoir file, not a mask bank."""
        path = tmp_path / "res.h5"
        with h5py.File(path, "w") as f:
            f.attrs["kind"] = "reservoir"
            f.attrs["format_version"] = 1
        with pytest.raises(StorageFormatError, match="is a reservoir file, not a mask bank"):
            open_bank(path)

    def test_newer_version_is_refused(self, tmp_path):
        """A bank with a format_version newer than this code reads is refused, naming the version."""
        path = tmp_path / "bank.h5"
        make_bank(path, "hdf5-packed", n_tasks=1)
        with h5py.File(path, "r+") as f:
            f.attrs["format_version"] = FORMAT_VERSION + 1
            record_group_checksum(f)  # a consistent file of a newer writer, not a damaged one
        with pytest.raises(StorageFormatError, match=f"format_version {FORMAT_VERSION + 1}; .* versions 1 to {FORMAT_VERSION}"):
            open_bank(path)

    def test_wrong_codec(self, tmp_path):
        """Opening a packed bank asking for the sparse codec is refused and points to open_bank()."""
        path = tmp_path / "bank.h5"
        make_bank(path, "hdf5-packed", n_tasks=1)
        with pytest.raises(StorageFormatError, match="open_bank"):
            HDF5MaskBank(path, codec="hdf5-sparse")

    @each_file_backend
    def test_damaged_task_attributes(self, tmp_path, backend):
        """A task whose layout attribute is not JSON, or whose data has the wrong size, raises StorageFormatError."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend, n_tasks=2)
        with h5py.File(path, "r+") as f:
            f["tasks/t0"].attrs["layout"] = "{not json"
            f["tasks/t1"].attrs["layout"] = json.dumps({"names": ["fc1"], "shapes": [[70000, 2]]})
        with open_bank(path) as bank:
            with pytest.raises(StorageFormatError, match="layout"):
                bank.read_task("t0")
            with pytest.raises(StorageFormatError, match="damaged"):
                bank.read_task("t1")

    def test_missing_folder(self, tmp_path):
        """Creating a bank in a folder that does not exist raises BankFileNotFoundError."""
        with pytest.raises(BankFileNotFoundError, match="no_folder"):
            create_bank(tmp_path / "no_folder" / "bank.h5")


class TestTaskIsolation:
    @each_file_backend
    def test_only_the_task_dataset_is_read(self, tmp_path, backend, monkeypatch):
        """Reading one task reads the data of that task's dataset only."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend, n_tasks=4)
        read = []
        real = h5py.Dataset.__getitem__

        def spy(self, args, *rest, **kw):
            read.append(self.name)
            return real(self, args, *rest, **kw)

        monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
        with open_bank(path) as bank:
            bank.read_task("t2")
        assert read == ["/tasks/t2"]

    @each_file_backend
    def test_corrupting_another_task_does_not_matter(self, tmp_path, backend):
        """Overwriting another task's bytes on disk leaves this task's masks exact."""
        path = tmp_path / "bank.h5"
        written = make_bank(path, backend, n_tasks=3)
        with h5py.File(path, "r") as f:
            offset, size = f["tasks/t1"].id.get_offset(), f["tasks/t1"].id.get_storage_size()
        with open(path, "r+b") as fh:
            fh.seek(offset)
            fh.write(b"\xff" * size)
        with open_bank(path) as bank:
            for task in ("t0", "t2"):
                got = bank.read_task(task)
                assert all(np.array_equal(got[k], v) for k, v in written[task].items())
            try:  # the corruption really hit t1: it reads differently or is reported as damaged
                damaged = bank.read_task("t1")
                assert not all(np.array_equal(damaged[k], v) for k, v in written["t1"].items())
            except StorageFormatError:
                pass


class TestSparseIndices:
    def test_tall_layer_keeps_16_bit_indices(self, tmp_path):
        """A (70000, 1) layer is stored with uint16 indices (columns are 65536 rows tall) and reads back."""
        path = tmp_path / "bank.h5"
        mask = np.zeros((70000, 1), bool)
        mask[[0, 1, 65535, 65536, 69999]] = True
        with create_bank(path, "hdf5-sparse") as bank:
            bank.write_task("t", {"tall": mask})
        with h5py.File(path, "r") as f:
            assert f["tasks/t"].dtype == np.uint16 and int(f.attrs["csc_rows"]) == 65536
            assert f["tasks/t"].attrs["indptr"].tolist() == [0, 3, 5]
        with open_bank(path) as bank:
            np.testing.assert_array_equal(bank.read_task("t")["tall"], mask)
            assert bank.task_nbytes("t") == 5 * 2 + 3 * 4

    def test_taller_columns_need_32_bit_indices(self, tmp_path):
        """With csc_rows above 65536 the indices are uint32, recorded in the file, and append keeps the rows."""
        path = tmp_path / "bank.h5"
        mask = np.zeros((70000, 1), bool)
        mask[[3, 69999]] = True
        with create_bank(path, "hdf5-sparse", csc_rows=100_000) as bank:
            bank.write_task("t", {"tall": mask})
        with open_bank(path, "a") as bank:
            bank.write_task("u", {"tall": mask})
        with h5py.File(path, "r") as f:
            assert f["tasks/t"].dtype == np.uint32 and f["tasks/u"].dtype == np.uint32
            assert int(f.attrs["csc_rows"]) == 100_000
        with open_bank(path) as bank:
            np.testing.assert_array_equal(bank.read_task("u")["tall"], mask)

    @pytest.mark.parametrize("options", [{"csc_rows": 0}, {"csc_rows": 2.5}, {"csc_rows": 2**33}, {"rows": 8}])
    def test_bad_options(self, tmp_path, options):
        """Bad or unknown backend options are refused naming the option."""
        with pytest.raises(InvalidArgumentError, match="csc_rows|options"):
            create_bank(tmp_path / "b.h5", "hdf5-sparse", **options)
        assert list(tmp_path.iterdir()) == []

    def test_options_only_when_creating(self, tmp_path):
        """Codec options are fixed when a bank is created (an append keeps the bank's), and the packed codec has
        none."""
        path = tmp_path / "b.h5"
        make_bank(path, "hdf5-sparse", n_tasks=1)
        with HDF5MaskBank(path, "a", codec=SparseCodec(csc_rows=8)) as bank:
            assert bank.codec.csc_rows == 65536
        with pytest.raises(InvalidArgumentError, match="options"):
            create_bank(tmp_path / "p.h5", "hdf5-packed", csc_rows=8)

    @given(flat=mask_arrays().map(np.ravel), rows=st.integers(1, 40))
    def test_csc_matches_a_reference(self, flat, rows):
        """csc_encode agrees with a column-by-column NumPy reference and csc_decode inverts it."""
        indices, indptr = csc_encode(flat, rows)
        n_cols = -(-flat.size // rows)
        padded = np.zeros(n_cols * rows, bool)
        padded[: flat.size] = flat
        columns = padded.reshape(n_cols, rows)  # row c = column c of the CSC matrix
        ref_indices = [r for c in range(n_cols) for r in np.flatnonzero(columns[c])]
        ref_indptr = [0] + np.cumsum([columns[c].sum() for c in range(n_cols)]).tolist()
        assert indices.tolist() == ref_indices and indptr.tolist() == ref_indptr
        np.testing.assert_array_equal(csc_decode(indices, indptr, rows=rows, length=flat.size), flat)

    @pytest.mark.parametrize(
        "indices, indptr",
        [([0], [0, 2, 2]), ([0, 1], [1, 1, 2]), ([5], [0, 1, 1]), ([0], [0, 1]), ([3, 0], [0, 0, 2]), ([0], [0, 2, 1])],
    )
    def test_csc_decode_rejects_inconsistent_arrays(self, indices, indptr):
        """Pointers that do not match the indices, or indices past the rows/entries, raise ValueError."""
        with pytest.raises(ValueError):
            csc_decode(np.array(indices, np.uint16), np.array(indptr, np.uint32), rows=4, length=6)


def overhead_per_task(folder: Path, backend: str, tasks: list[dict[str, np.ndarray]]) -> float:
    """Bytes per task on disk beyond the mask data (task_nbytes): (bank - empty bank - data) / T."""
    empty, path = folder / f"empty-{backend}.h5", folder / f"full-{backend}.h5"
    create_bank(empty, backend).close()
    with create_bank(path, backend) as bank:
        for i, masks in enumerate(tasks):
            bank.write_task(str(i), masks)
    with open_bank(path) as bank:
        data = sum(bank.task_nbytes(t) for t in bank.tasks())
    return (path.stat().st_size - empty.stat().st_size - data) / len(tasks)


class TestCompactTasks:
    @each_file_backend
    def test_layout_is_stored_once(self, tmp_path, backend):
        """Tasks of the first task's layout rely on the root shared_layout; a different layout is stored per task."""
        path = tmp_path / "bank.h5"
        same = {"a": np.eye(3, dtype=bool), "b": np.ones(2, bool)}
        other = {"b": np.ones(2, bool), "a": np.eye(3, dtype=bool)}  # same layers, other order: another layout
        with create_bank(path, backend) as bank:
            for task, masks in [("t0", same), ("t1", other), ("t2", same)]:
                bank.write_task(task, masks)
        with h5py.File(path, "r") as f:
            assert json.loads(f.attrs["shared_layout"]) == {"names": ["a", "b"], "shapes": [[3, 3], [2]]}
            assert [("layout" in f["tasks"][t].attrs) for t in ("t0", "t1", "t2")] == [False, True, False]
        with open_bank(path) as bank:
            for task, masks in [("t0", same), ("t1", other), ("t2", same)]:
                got = bank.read_task(task)
                assert list(got) == list(masks) and all(np.array_equal(got[k], masks[k]) for k in masks)

    @each_file_backend
    def test_empty_attrs_are_not_stored(self, tmp_path, backend):
        """A task with attrs {} has no 'attrs' attribute and reads back {}; other attrs are stored."""
        path = tmp_path / "bank.h5"
        with create_bank(path, backend) as bank:
            bank.write_task("plain", {"x": np.ones(3, bool)})
            bank.write_task("rich", {"x": np.ones(3, bool)}, attrs={"acc": 0.5})
        with h5py.File(path, "r") as f:
            assert "attrs" not in f["tasks/plain"].attrs and "attrs" in f["tasks/rich"].attrs
        with open_bank(path) as bank:
            assert bank.task_attrs("plain") == {} and bank.task_attrs("rich") == {"acc": 0.5}

    @pytest.mark.parametrize("how", ["delete", "overwrite"])
    def test_shared_layout_moves_only_when_no_task_uses_it(self, tmp_path, how):
        """Once the bank is empty again the next task's layout becomes the shared one; until then it stays."""
        path = tmp_path / "bank.h5"
        first, second = {"x": np.ones(4, bool)}, {"y": np.zeros((2, 2), bool)}
        with create_bank(path, "hdf5-sparse") as bank:
            bank.write_task("a", first)
            bank.write_task("b", second)  # the bank holds a task of the shared layout: b keeps its own
            bank.delete_task("b")
            if how == "delete":
                bank.delete_task("a")
                bank.write_task("c", second)
            else:
                bank.write_task("a", second, overwrite=True)
        task = "c" if how == "delete" else "a"
        with h5py.File(path, "r") as f:
            assert json.loads(f.attrs["shared_layout"])["names"] == ["y"]
            assert list(f["tasks"]) == [task] and "layout" not in f["tasks"][task].attrs
        with open_bank(path) as bank:
            assert bank.read_task(task)["y"].shape == (2, 2)

    @each_file_backend
    def test_missing_or_bad_shared_layout(self, tmp_path, backend):
        """A task without a layout anywhere, or a damaged shared_layout, raises StorageFormatError naming the file."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend, n_tasks=2)
        with h5py.File(path, "r+") as f:
            f["tasks/t1"].attrs["layout"] = json.dumps({"names": ["fc1", "fc2"], "shapes": [[30, 17], [11]]})
            f.attrs["shared_layout"] = "[1, 2]"
            seal_tree(f["tasks"])  # re-sealed: this test is about the layout logic, not the checksums
            record_group_checksum(f)
        with open_bank(path) as bank:
            with pytest.raises(StorageFormatError, match=re.escape(str(path)) + ".*shared_layout"):
                bank.read_task("t0")
            assert bank.read_task("t1")["fc2"].shape == (11,)  # its own layout does not need the root one
        with h5py.File(path, "r+") as f:
            del f.attrs["shared_layout"]
            record_group_checksum(f)
        with open_bank(path) as bank, pytest.raises(StorageFormatError, match="no 'layout' attribute"):
            bank.task_layout("t0")

    @each_file_backend
    def test_task_headers_are_exact(self, tmp_path, backend):
        """A task dataset's object header holds only its messages: well under HDF5's 256-byte default."""
        path = tmp_path / "bank.h5"
        make_bank(path, backend, n_tasks=2)
        with h5py.File(path, "r") as f:
            for task in ("t0", "t1"):
                info = h5py.h5o.get_info(f["tasks"][task].id)
                assert info.hdr.space.free == 0 and info.hdr.space.total < 280  # incl. the 2 x uint32 crc32

    def test_task_order_survives_a_repack(self, tmp_path):
        """/tasks tracks creation order without an index, lists in insertion order, and keeps both after a repack."""
        path = tmp_path / "bank.h5"
        names = [f"task-{(i * 7) % 12}" for i in range(12)]  # more than 8 links: HDF5's dense link storage
        with create_bank(path, "hdf5-packed") as bank:
            for name in names:
                bank.write_task(name, {"x": np.ones(2, bool)})
        with open_bank(path, "a") as bank:
            bank.delete_task(names[3])
        with h5py.File(path, "r") as f:
            assert f["tasks"].id.get_create_plist().get_link_creation_order() == h5py.h5p.CRT_ORDER_TRACKED
            assert list(f["tasks"]) == names[:3] + names[4:]

    @each_file_backend
    def test_per_task_overhead_is_small(self, tmp_path, backend):
        """20 LeNet 300-100 masks at 2 % density cost under 300 bytes each beyond their data (was about 450)."""
        rng = np.random.default_rng(0)
        shapes = [(300, 784), (100, 300), (10, 100)]
        tasks = [{f"fc{i}": rng.random(s) < 0.02 for i, s in enumerate(shapes)} for _ in range(20)]
        assert overhead_per_task(tmp_path, backend, tasks) < 300
