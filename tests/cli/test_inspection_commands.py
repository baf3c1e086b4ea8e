"""``info``, ``verify``, ``encode``, ``capacity`` and ``recall`` on hostile files and outsized arguments.

File content is printed as written (never Rich markup, control characters escaped); a bank whose attachment is a
dataset is a ``damaged`` row, not a traceback; task names are kept as data (a backslash or tab in a name is not
damage); a ``--size`` or ``--budget`` no process can hold is one line naming the option, exit code 2, before any
work.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hopfield_masks.backends import create_bank
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.reservoir import Reservoir
from supsup_store_cli.app import app

runner = CliRunner()
ROOT = Path(__file__).parents[2]
MEMORY_LIMIT = 1536 << 20


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def masks(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fc": rng.random((12, 10)) < 0.3, "out": rng.random(7) < 0.5}


@pytest.fixture(autouse=True)
def _here(tmp_path, monkeypatch):
    """Short relative paths: a table title then fits on one line."""
    monkeypatch.chdir(tmp_path)


def one_line_error(result) -> str:
    """The single 'Error:' line of a command that ended with exit code 2 and no other exception."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# ------------------------------------------------------------------------------------------------ verify
class TestVerify:
    def test_an_attachment_that_is_a_dataset_is_a_damaged_row(self):
        """verify on a bank whose attachment is a dataset: a 'damaged' row naming it, exit 2, no traceback."""
        with create_bank("bank.h5", "hdf5-packed") as bank:
            bank.write_task("a", masks(0))
        with h5py.File("bank.h5", "r+") as f:
            f["attachments"].create_dataset("oops", data=np.arange(5))
        result = runner.invoke(app, ["verify", "bank.h5", "--json"])
        assert result.exit_code == 2 and not isinstance(result.exception, AttributeError), result.output
        report = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
        damaged = [item for item in report["items"] if item["status"] == "damaged"]
        assert [item["object"] for item in damaged] == ["attachment 'oops'"]
        assert "is a dataset, expected an attachment group" in damaged[0]["detail"]
        assert [item["status"] for item in report["items"][:2]] == ["ok", "ok"]  # the task is still checked

    def test_names_with_backslashes_tabs_and_quotes_are_intact(self):
        """Task names are data, not parsed back from their repr: such names verify 'ok', exit 0."""
        names = ["a\\b", "t\tab", "q'uote\"", "new\nline", "[bold]x"]
        with create_bank("bank.h5", "hdf5-packed") as bank:
            for i, name in enumerate(names):
                bank.write_task(name, masks(i))
        result = runner.invoke(app, ["verify", "bank.h5", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert [item["object"] for item in report["items"][1:]] == [f"task {name!r}" for name in names]
        assert {item["status"] for item in report["items"]} == {"ok"}

    def test_names_are_printed_as_written(self):
        """The table shows '[bold]t' as text, not as bold 't'."""
        with create_bank("[b]bank.h5", "hdf5-packed") as bank:
            bank.write_task("[bold]t", masks(0))
            bank.write_task("x\x1b[2J", masks(1))
        result = runner.invoke(app, ["verify", "[b]bank.h5"])
        assert result.exit_code == 0, result.output
        assert "task '[bold]t'" in result.stdout and "[b]bank.h5" in result.stdout
        assert "\x1b" not in result.stdout and "task 'x\\x1b[2J'" in result.stdout


# ------------------------------------------------------------------------------------------------ info
class TestInfo:
    @pytest.fixture
    def markup_bank(self):
        with create_bank("bank.h5", "hdf5-packed", metadata={"x": "[/]"}) as bank:
            bank.write_task("[bold]t", masks(0), attrs={"note": "[/]"})
            bank.write_task("[red]x", masks(1), attrs={"note": "[bold]b[/bold]"})
            bank.write_attachment("[i]a", lambda g: g.attrs.__setitem__("k", "[/]"))
        return Path("bank.h5")

    def test_markup_in_names_attrs_and_metadata_is_printed_as_written(self, markup_bank):
        """Rich markup in task names, attrs, metadata and attachments (valid input to write_task): no MarkupError,
        the text shown as written."""
        result = runner.invoke(app, ["info", str(markup_bank)])
        assert result.exit_code == 0 and result.exception is None, (result.output, result.exception)
        out = result.stdout
        assert "[bold]t" in out and "[red]x" in out and '{"note": "[/]"}' in out and '[bold]b[/bold]' in out
        assert 'metadata: {"x": "[/]"}' in out and "[i]a" in out

    def test_control_characters_are_escaped(self):
        """An escape sequence in a task or layer name never reaches the terminal."""
        with create_bank("bank.h5", "hdf5-packed") as bank:
            bank.write_task("x\x1b[2J", {"f\x1b[31m": np.ones(3, bool)})
        result = runner.invoke(app, ["info", "bank.h5"])
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.stdout and "x\\x1b[2J" in result.stdout and "f\\x1b[31m" in result.stdout

    def test_markup_in_a_reservoir_file(self):
        """A reservoir file's attributes and the path are shown as written too."""
        res = Reservoir(MaskLayout(("w",), ((10,),)), 8, "hebbian")
        res.save("[i]res.h5")
        with h5py.File("[i]res.h5", "r+") as f:
            f.attrs["note"] = "[/]"
        result = runner.invoke(app, ["info", "[i]res.h5"])
        assert result.exit_code == 0 and result.exception is None, (result.output, result.exception)
        assert "[i]res.h5" in result.stdout and '"[/]"' in result.stdout


# ------------------------------------------------------------------------------------------------ encode
def test_encode_prints_a_bracketed_path_as_written():
    """The bank path in the encode table's title is text, not markup."""
    with create_bank("[red]b.h5", "hdf5-packed") as bank:
        for i in range(3):
            bank.write_task(str(i), masks(i))
    result = runner.invoke(app, ["encode", "[red]b.h5", "--budget", "20kB", "--rule", "hebbian"])
    assert result.exit_code == 0, result.output
    assert "[red]b.h5" in result.stdout


# ------------------------------------------------------------------------------------------------ outsized arguments
@pytest.mark.parametrize("size", [str(2**64), "100000"])
def test_capacity_size_the_process_cannot_hold(size):
    """--size 2**64 or 100000 (37 GiB of couplings): one line naming --size, exit 2, no allocation (1.5 GiB limit)."""
    proc = subprocess.run([sys.executable, "-m", "supsup_store_cli", "capacity", "--size", size], capture_output=True,
                          text=True, timeout=120, preexec_fn=_limit_memory, cwd=ROOT)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("Error: --size: expected"), proc.stderr


@pytest.mark.parametrize("command", ["encode", "recall"])
def test_budget_no_process_can_hold(command):
    """--budget 1e30: one line naming --budget, exit 2, before any work (the bank is not touched)."""
    with create_bank("bank.h5", "hdf5-packed") as bank:
        for i in range(3):
            bank.write_task(str(i), masks(i))
    before = Path("bank.h5").read_bytes()
    result = runner.invoke(app, [command, "bank.h5", "--budget", "1e30"])
    line = one_line_error(result)
    assert line.startswith("Error: --budget: expected a byte budget this process can hold in memory"), line
    assert Path("bank.h5").read_bytes() == before
