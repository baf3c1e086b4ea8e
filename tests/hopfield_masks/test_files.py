"""Tests for hopfield_masks._files: atomic writes and checked opening."""

from __future__ import annotations

import h5py
import pytest

from hopfield_masks._files import atomic_path, open_h5_read
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

        monkeypatch.setattr("hopfield_masks._files.os.replace", refuse)
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
