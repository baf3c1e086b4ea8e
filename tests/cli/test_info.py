"""Tests for the ``supsup-store info`` command (CliRunner on small banks and files)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hopfield_masks.backends import create_bank
from supsup_store_cli.app import app

runner = CliRunner()


@pytest.fixture
def bank_path(tmp_path):
    """A sparse bank of two tasks with metadata, attrs and one attachment."""
    path = tmp_path / "bank.h5"
    with create_bank(path, "hdf5-sparse", metadata={"arch": "lenet", "seed": 7}) as bank:
        bank.write_task("task-a", {"fc1": np.eye(4, dtype=bool), "fc2": np.ones(3, bool)}, attrs={"acc": 0.91})
        bank.write_task("task-b", {"fc1": np.zeros((4, 4), bool), "fc2": np.ones(3, bool)})
        bank.write_attachment("reservoir", lambda g: g.create_dataset("couplings", data=np.zeros((2, 2))))
    return path


class TestInfoCommand:
    def test_bank_summary_and_table(self, bank_path):
        """The command prints the backend, metadata and one table row per task with density and bytes."""
        result = runner.invoke(app, ["info", str(bank_path)])
        assert result.exit_code == 0, result.output
        out = result.stdout
        assert "hdf5-sparse" in out and "lenet" in out and "Tasks" in out
        assert "task-a" in out and "task-b" in out and "fc1 4×4" in out
        assert "36.84%" in out  # task-a: 7 kept of 19 entries
        assert "Attachments" in out and "reservoir" in out

    def test_limit_shortens_the_table(self, bank_path):
        """--limit 1 lists one task and says how many more there are."""
        result = runner.invoke(app, ["info", str(bank_path), "--limit", "1"])
        assert result.exit_code == 0, result.output
        assert "task-a" in result.stdout and "task-b" not in result.stdout and "1 more" in result.stdout

    def test_json_parses(self, bank_path):
        """--json prints describe_file's dict as parseable JSON."""
        result = runner.invoke(app, ["info", str(bank_path), "--json"])
        assert result.exit_code == 0, result.output
        desc = json.loads(result.stdout)
        assert desc["kind"] == "mask-bank" and desc["backend"] == "hdf5-sparse"
        assert [t["name"] for t in desc["tasks"]] == ["task-a", "task-b"]
        assert desc["tasks"][0]["attrs"] == {"acc": 0.91} and desc["metadata"]["seed"] == 7

    def test_missing_file_exit_2(self, tmp_path):
        """A missing file ends with exit code 2 and a message naming the path."""
        path = tmp_path / "missing.h5"
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 2
        assert str(path) in result.stderr and "no such file" in result.stderr

    def test_non_hdf5_exit_2(self, tmp_path):
        """A file that is not HDF5 ends with exit code 2 and a message naming the path."""
        path = tmp_path / "notes.txt"
        path.write_text("hello\n" * 20)
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 2
        assert str(path) in result.stderr and "not an HDF5 file" in result.stderr

    def test_reservoir_file(self, tmp_path):
        """A reservoir file is described by its attributes and datasets."""
        path = tmp_path / "res.h5"
        with h5py.File(path, "w") as f:
            f.attrs.update({"kind": "reservoir", "format_version": 1, "network_size": 16, "dtype": "int8"})
            f.create_dataset("couplings", data=np.zeros((3, 16, 16), np.int8))
        result = runner.invoke(app, ["info", str(path)])
        assert result.exit_code == 0, result.output
        assert "reservoir" in result.stdout and "couplings" in result.stdout and "3×16×16" in result.stdout
        assert json.loads(runner.invoke(app, ["info", str(path), "--json"]).stdout)["attrs"]["network_size"] == 16

    def test_negative_limit_exit_2(self, bank_path):
        """A negative --limit is refused with exit code 2."""
        result = runner.invoke(app, ["info", str(bank_path), "--limit", "-1"])
        assert result.exit_code == 2 and "--limit" in result.stderr
