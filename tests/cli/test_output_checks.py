"""'demo' and 'train' check their output before any training: no destructive surprises, no wasted minutes."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from supsup_store_cli.app import app

runner = CliRunner()


def test_demo_needs_overwrite_to_replace_a_bank(tmp_path):
    """An existing <out>/masks.h5 is kept and the demo refuses at once without --overwrite."""
    bank = tmp_path / "masks.h5"
    bank.write_bytes(b"someone's bank")
    result = runner.invoke(app, ["demo", "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert bank.read_bytes() == b"someone's bank"


def test_train_refuses_a_folder_even_with_overwrite(tmp_path):
    """'train --out FOLDER --overwrite' fails before training, naming --out."""
    result = runner.invoke(app, ["train", "--out", str(tmp_path), "--overwrite", "--tasks", "1"])
    assert result.exit_code == 2 and "--out" in result.output and "folder" in result.output


def test_train_refuses_a_fifo(tmp_path):
    """A FIFO at --out is never replaced by a regular file."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["train", "--out", str(fifo), "--overwrite", "--tasks", "1"])
    assert result.exit_code == 2 and "special file" in result.output
    assert fifo.is_fifo()
