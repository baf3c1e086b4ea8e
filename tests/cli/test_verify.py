"""``supsup-store verify``: every object checked, damage listed, exit code 2 when anything is damaged."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
from typer.testing import CliRunner

from supsup_store_cli.app import app

FIXTURES = Path(__file__).parents[1] / "fixtures"
runner = CliRunner()


def test_clean_v2_bank_is_ok():
    """A golden version-2 bank: every object 'ok', exit 0."""
    result = runner.invoke(app, ["verify", str(FIXTURES / "golden_v2_hdf5-sparse.h5"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["format_version"] == 2
    assert {item["status"] for item in report["items"]} == {"ok"}
    assert [item["object"] for item in report["items"]][:2] == ["/ (root attributes)", "task 'dense'"]


def test_v1_bank_has_no_checksums_but_is_not_damaged():
    """A version-1 bank verifies as 'no checksum' (structure checked, masks decoded), exit 0."""
    result = runner.invoke(app, ["verify", str(FIXTURES / "golden_v1_hdf5-packed.h5"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["ok"] and report["format_version"] == 1
    assert {item["status"] for item in report["items"]} == {"no checksum"}


def test_flipped_bit_in_a_task_is_named(tmp_path):
    """One flipped bit in a task's bytes: that task is 'damaged', the others 'ok', exit 2 with a one-line error."""
    path = tmp_path / "bank.h5"
    shutil.copyfile(FIXTURES / "golden_v2_hdf5-packed.h5", path)
    with h5py.File(path, "r") as f:
        offset = f["tasks"]["sparse"].id.get_offset()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(path), "--json"])
    assert result.exit_code == 2
    report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    damaged = [item for item in report["items"] if item["status"] == "damaged"]
    assert [item["object"] for item in damaged] == ["task 'sparse'"] and "CRC-32" in damaged[0]["detail"]
    assert "1 of 7 objects damaged" in result.output


def test_not_a_bank_is_exit_2(tmp_path):
    """A file that is not HDF5: one line naming it, exit 2."""
    path = tmp_path / "x.h5"
    path.write_bytes(b"not hdf5 at all")
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 2 and str(path.name) in result.output and "Traceback" not in result.output


def test_attachment_damage_is_found(tmp_path):
    """A flipped bit in an attachment array is reported against that attachment."""
    path = tmp_path / "bank.h5"
    shutil.copyfile(FIXTURES / "golden_v2_hdf5-sparse.h5", path)
    with h5py.File(path, "r") as f:
        offset = f["attachments"]["notes"]["values"].id.get_offset()
        assert np.array_equal(f["attachments"]["notes"]["values"][()], np.arange(5))
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x80
    path.write_bytes(bytes(data))
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 2 and "attachment 'notes'" in result.output
