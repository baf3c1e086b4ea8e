"""Tests for hopfield_masks.safety.files: atomic writes and checked opening."""

from __future__ import annotations

import os

import h5py
import pytest

from hopfield_masks.safety import files
from hopfield_masks.safety.files import atomic_path, open_h5_read, open_sidecar
from hopfield_masks.errors import BankFileNotFoundError, FileWriteError, StorageFormatError


class TestAtomicPath:
    def test_success_replaces_destination(self, tmp_path):
        """A completed write replaces the destination and leaves no temporary file."""
        dest = tmp_path / "a.bin"
        dest.write_bytes(b"old")
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"new")
        assert dest.read_bytes() == b"new"
        assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]

    def test_failure_keeps_existing_file(self, tmp_path):
        """An exception inside the write leaves the old file byte-identical and removes the temporary file."""
        dest = tmp_path / "a.bin"
        dest.write_bytes(b"old")
        with pytest.raises(RuntimeError):
            with atomic_path(dest, copy_existing=True) as tmp:
                assert tmp.read_bytes() == b"old"
                tmp.write_bytes(b"half-writ")
                raise RuntimeError("disk full")
        assert dest.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]

    def test_new_file_gets_umask_permissions(self, tmp_path):
        """A newly created file is readable by others as umask allows, not 0600 like a raw temporary file."""
        import os
        import stat

        umask = os.umask(0o022)
        try:
            with atomic_path(tmp_path / "new.bin") as tmp:
                tmp.write_bytes(b"x")
        finally:
            os.umask(umask)
        assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644

    def test_unwritable_folder_is_a_clear_error(self, tmp_path, monkeypatch):
        """An OS error while creating the temporary file becomes FileWriteError naming the destination."""
        import tempfile

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        with pytest.raises(FileWriteError, match=r"a\.h5: cannot be written \(Permission denied\)"):
            with atomic_path(tmp_path / "a.h5"):
                pass

    def test_failed_rename_keeps_the_old_file(self, tmp_path, monkeypatch):
        """If publishing fails, the error names the destination, the old file is intact and no temporary is left."""
        dest = tmp_path / "a.bin"
        dest.write_bytes(b"old")

        def refuse(src, dst):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr("hopfield_masks.safety.files.os.replace", refuse)
        with pytest.raises(FileWriteError, match="No space left"):
            with atomic_path(dest) as tmp:
                tmp.write_bytes(b"new")
        assert dest.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]

    def test_missing_folder(self, tmp_path):
        """Writing into a folder that does not exist names the folder."""
        with pytest.raises(BankFileNotFoundError, match="nope"):
            with atomic_path(tmp_path / "nope" / "a.h5"):
                pass


class TestOpenH5Read:
    def test_missing(self, tmp_path):
        """A missing file raises BankFileNotFoundError naming the path."""
        with pytest.raises(BankFileNotFoundError, match="missing.h5"):
            open_h5_read(tmp_path / "missing.h5")

    def test_not_hdf5(self, tmp_path):
        """A text file raises StorageFormatError naming the path."""
        p = tmp_path / "x.h5"
        p.write_text("hello")
        with pytest.raises(StorageFormatError, match=r"x\.h5: is not an HDF5 file"):
            open_h5_read(p)

    def test_truncated(self, tmp_path):
        """A truncated HDF5 file raises StorageFormatError naming the path."""
        p = tmp_path / "t.h5"
        with h5py.File(p, "w") as f:
            f["x"] = list(range(10000))
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 3])
        with pytest.raises(StorageFormatError, match=r"t\.h5"):
            with open_h5_read(p) as f:
                f["x"][...]

    def test_empty_and_folder(self, tmp_path):
        """Empty files and folders are refused with a clear reason."""
        (tmp_path / "e.h5").write_bytes(b"")
        with pytest.raises(StorageFormatError, match="empty"):
            open_h5_read(tmp_path / "e.h5")
        with pytest.raises(StorageFormatError, match="folder"):
            open_h5_read(tmp_path)


class TestNoDestructiveSurprises:
    def _bank(self, path):
        import numpy as np

        from hopfield_masks.backends import create_bank

        with create_bank(path, overwrite=True) as bank:
            bank.write_task("0", {"x": np.ones(5, bool)})

    def test_symlink_is_followed_and_kept(self, tmp_path):
        """Writing through a symlink replaces its target; the link stays a link."""
        from hopfield_masks.backends import open_bank

        target, link = tmp_path / "real.h5", tmp_path / "link.h5"
        self._bank(target)
        link.symlink_to(target)
        self._bank(link)  # create_bank(overwrite=True) through the link
        with open_bank(link, "a") as bank:
            bank.write_task("1", {"x": __import__("numpy").zeros(3, bool)})
        assert link.is_symlink() and link.resolve() == target
        with open_bank(target) as bank:
            assert bank.tasks() == ["0", "1"]

    @pytest.mark.parametrize("kind", ["fifo", "folder"])
    def test_special_files_are_never_replaced(self, tmp_path, kind):
        """A FIFO or a folder at the path: a clear error, the thing left as it was."""
        import stat

        from hopfield_masks.backends import create_bank, open_bank
        from hopfield_masks.errors import HopfieldMasksError

        path = tmp_path / "bank.h5"
        os.mkfifo(path) if kind == "fifo" else path.mkdir()
        with pytest.raises(HopfieldMasksError, match="special file|folder"):
            create_bank(path, overwrite=True)
        with pytest.raises(HopfieldMasksError, match="special file|folder"):
            open_bank(path)  # never blocks on the FIFO
        mode = path.stat().st_mode
        assert stat.S_ISFIFO(mode) if kind == "fifo" else stat.S_ISDIR(mode)

    def test_read_only_bank_is_not_changed(self, tmp_path):
        """A 0444 bank is refused for appending and for replacing (even for root), byte-identical after."""
        from hopfield_masks.backends import create_bank, open_bank
        from hopfield_masks.errors import FileWriteError

        path = tmp_path / "bank.h5"
        self._bank(path)
        path.chmod(0o444)
        before = path.read_bytes()
        with pytest.raises(FileWriteError, match="read-only"):
            open_bank(path, "a")
        with pytest.raises(FileWriteError, match="read-only"):
            create_bank(path, overwrite=True)
        assert path.read_bytes() == before and oct(path.stat().st_mode & 0o777) == "0o444"

    def test_repack_keeps_mode_and_foreign_groups(self, tmp_path):
        """A session that deletes (and so rewrites the file) keeps its mode and a group another tool added."""
        import h5py

        from hopfield_masks.backends import open_bank

        path = tmp_path / "bank.h5"
        self._bank(path)
        with h5py.File(path, "r+") as f:
            f.create_group("provenance").attrs["tool"] = "other"
        path.chmod(0o640)
        with open_bank(path, "a") as bank:
            bank.write_task("1", {"x": __import__("numpy").zeros(3, bool)})
            bank.delete_task("0")
        assert oct(path.stat().st_mode & 0o777) == "0o640"
        with h5py.File(path, "r") as f:
            assert f["provenance"].attrs["tool"] == "other"

    def test_output_precheck(self, tmp_path):
        """check_output_file: refuses folders, existing files without overwrite, missing folders; accepts the rest."""
        from hopfield_masks.safety.files import check_output_file
        from hopfield_masks.errors import InvalidArgumentError

        with pytest.raises(InvalidArgumentError, match="--out: .*is a folder"):
            check_output_file(tmp_path, overwrite=True, argument="--out")
        (tmp_path / "old.h5").write_bytes(b"x")
        with pytest.raises(InvalidArgumentError, match="pass --overwrite"):
            check_output_file(tmp_path / "old.h5", overwrite=False, argument="--out")
        with pytest.raises(InvalidArgumentError, match="does not exist"):
            check_output_file(tmp_path / "no" / "b.h5", overwrite=False, argument="--out")
        with pytest.raises(InvalidArgumentError, match="B free"):
            check_output_file(tmp_path / "b.h5", overwrite=False, expected_bytes=1 << 62, argument="--out")
        assert check_output_file(tmp_path / "no" / "b.h5", overwrite=False, folder_may_be_created=True).name == "b.h5"
        assert check_output_file(tmp_path / "old.h5", overwrite=True) == (tmp_path / "old.h5").resolve()


def test_a_sidecar_deleted_between_lstat_and_open_is_looked_up_again(tmp_path, monkeypatch):
    """A writer releasing the bank deletes its lock file; another writer that had just lstat-ed it then opened a file
    with no name left (st_nlink 0) and was refused ("has 0 names (a hard link to another file)"; 2 sessions in 33
    with two processes of two threads each appending).  It must look again and create the lock file anew."""
    lock = tmp_path / ".bank.h5.lock"
    lock.write_bytes(b"123\n")
    real_open, raced = os.open, []

    def open_then_released(path, flags, *args):
        fd = real_open(path, flags, *args)
        if not flags & os.O_CREAT and not raced:
            raced.append(path)
            os.unlink(path)  # the holder's release, just after our open
        return fd

    monkeypatch.setattr(files.os, "open", open_then_released)
    fd, created = open_sidecar(lock, frozenset({os.geteuid()}), writable=True, create=True, max_bytes=64)
    try:
        assert raced and created and os.fstat(fd).st_nlink == 1 and lock.exists()
    finally:
        os.close(fd)
