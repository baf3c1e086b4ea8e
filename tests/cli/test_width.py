"""Every command's output read at 80 columns: no line wider than the terminal, no table header cut with '…', every
refusal one ``Error:`` line (the terminal wraps it) with exit code 2.

Each command really runs on tiny banks (train, evaluate, encode, recall, info, verify, capacity); the demo's
training is replaced by a result of real recall rows (``tests/cli/test_demo.py``'s ``tiny_result``).
"""

from __future__ import annotations

import json
import shutil

import pytest
from rich.console import Console
from typer.testing import CliRunner

import supsup_core.demo as demo_module
from hopfield_masks.backends import open_bank
from supsup_core.recall.report import TaskRecall
from supsup_store_cli import _app
from supsup_store_cli._render import fits, recall_table
from supsup_store_cli.app import app

from .test_demo import tiny_result  # noqa: F401 - the fixture, shared

runner = CliRunner()
WIDTH = 80
TINY_LENET = ["--tasks", "2", "--batches-per-task", "2", "--hidden", "16,8", "--lr", "0.01", "--device", "cpu"]
TINY_BNNET = ["--model", "bnnet", "--benchmark", "split-mnist", "--hidden", "32,32", "--batches-per-task", "2",
              "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def terminal_80():
    """The commands' consoles, and any console made while they run, 80 columns wide."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COLUMNS", str(WIDTH))
        for console in (_app.console, _app.err_console):
            mp.setattr(console, "_width", WIDTH)
        yield


def _run(*args: str):
    return runner.invoke(app, list(args))


def check_output(result) -> None:
    """Exit 0, every line of stdout and stderr within 80 columns, and no table header cut short."""
    assert result.exit_code == 0, result.output
    for stream in (result.stdout, result.stderr):
        lines = stream.splitlines()
        too_wide = [line for line in lines if len(line) > WIDTH]
        assert not too_wide, too_wide
        header = False
        for line in lines:
            header = line.startswith("┏") or (header and not line.startswith("┡"))
            assert not (header and "…" in line), line


def check_refusal(result, *needles: str) -> str:
    """Exit 2 and one line on stderr, ``Error: ...`` (one logical line: the terminal wraps it), holding the needles."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """A LeNet bank of 2 permuted tasks (weight masks, 3 layers) written by train, and train's result."""
    path = tmp_path_factory.mktemp("lenet") / "lenet.h5"
    return path, _run("train", "--out", str(path), *TINY_LENET)


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """A BNNet bank of the 5 SplitMNIST tasks (unit masks) written by train, with a 20 kB reservoir."""
    path = tmp_path_factory.mktemp("units") / "units.h5"
    trained = _run("train", "--out", str(path), *TINY_BNNET)
    return path, trained, _run("encode", str(path), "--budget", "20kB")


class TestEveryCommandAt80Columns:
    def test_train(self, lenet, units):
        """train's start line, progress and accuracy table."""
        check_output(lenet[1])
        check_output(units[1])

    @pytest.mark.parametrize("options", [[], ["--method", "one-shot", "--protocol", "per-image"],
                                         ["--json"], ["--method", "binary", "--no-task-inference",
                                                      "--batch-size", "500"]],
                             ids=["default", "one-shot-per-image", "json", "binary-warning"])
    def test_evaluate(self, lenet, options):
        """evaluate's table and summary line (and binary's cost warning on stderr)."""
        check_output(_run("evaluate", str(lenet[0]), "--device", "cpu", *options))

    def test_encode(self, units):
        """encode's reservoir table."""
        check_output(units[2])

    def test_recall(self, units, tmp_path):
        """recall's table with accuracies, and its summary line."""
        path = tmp_path / "units.h5"
        shutil.copy(units[0], path)
        result = _run("recall", str(path), "--budget", "20kB", "--steps", "2", "--device", "cpu")
        check_output(result)
        assert "bits wrong unit1" in " ".join(result.stdout.replace("┃", " ").split()) or "unit1" in result.stdout

    def test_recall_unguided_with_its_note(self, units, tmp_path):
        """recall --unguided of a bank whose data is elsewhere: the note is wrapped too."""
        path = tmp_path / "units.h5"
        shutil.copy(units[0], path)
        with open_bank(path, "a") as bank:
            metadata = dict(bank.metadata)
            metadata["benchmark"] = {**metadata["benchmark"], "data_source": f"idx:{tmp_path / 'elsewhere'}"}
            bank.set_metadata(metadata)
        check_output(_run("recall", str(path), "--budget", "20kB", "--steps", "2", "--unguided"))

    @pytest.mark.parametrize("command", ["info", "verify"])
    def test_inspection(self, units, command):
        """info's and verify's tables of a bank with a reservoir."""
        check_output(_run(command, str(units[0])))

    def test_capacity(self):
        """capacity's table."""
        check_output(_run("capacity", "--size", "32", "--loads", "0.05,0.1"))

    def test_demo(self, monkeypatch, tmp_path, tiny_result):  # noqa: F811 - the imported fixture
        """demo's reservoir table, task table and summary (its training replaced by real recall rows)."""
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(demo_module, "run_demo", lambda *a, **k: tiny_result)
        check_output(_run("demo", "--device", "cpu"))

    def test_help(self):
        """Every command's --help."""
        for command in ("info", "verify", "capacity", "train", "evaluate", "encode", "recall", "demo"):
            check_output(_run(command, "--help"))


class TestNarrowTables:
    def test_recall_of_many_layers_shows_bits_wrong_in_all(self):
        """A bank of 12 masked layers cannot show a column per layer in 80 columns: the table shows their total."""
        layers = [f"layer{i}.weight" for i in range(12)]
        rows = [TaskRecall(task=str(t), method="keyed", guided=True, cue="key", bits_wrong=dict.fromkeys(layers, 3),
                           exact=False, steps_run=5, steps_to_final=5, guidance_calls=5, true_accuracy=0.9,
                           recalled_accuracy=0.85) for t in range(3)]
        table = recall_table(rows, title="recall", layers=layers, width=WIDTH)
        assert fits(table, WIDTH) and [c.header for c in table.columns][1] == "bits wrong"
        console = Console(width=WIDTH, record=True)
        console.print(table)
        assert "36" in console.export_text() and "…" not in console.export_text()
        assert [c.header for c in recall_table(rows, title="r", layers=layers[:2]).columns][1:3] == \
            ["bits wrong layer0.weight", "bits wrong layer1.weight"]


class TestRefusalsAt80Columns:
    def test_budget_too_small_suggests_one_that_fits(self, units):
        """encode --budget 100: the smallest budget, and a budget to try."""
        line = check_refusal(_run("encode", str(units[0]), "--budget", "100"), "Error: --budget: expected at least",
                             "(try --budget ")
        assert line.endswith(")")

    @pytest.mark.parametrize(
        "args, needles",
        [(["evaluate", "{lenet}", "--method", "guess"], ["--method: expected one of rerank, one-shot, binary"]),
         (["evaluate", "{lenet}", "--plot", "/nonexistent/folder/x.png"], ["--plot: expected a file in an existing"]),
         (["recall", "{units}", "--method", "guess"], ["--method: expected one of keyed"]),
         (["recall", "{units}", "--guided", "--data", "idx:/nonexistent/mnist"], ["nonexistent"]),
         (["train", "--out", "{tmp}/x.h5", "--tasks", "0"], ["--tasks: expected an integer in 1..4294967295"]),
         (["train", "--out", "{tmp}/x.h5", "--model", "guess"], ["--model: expected one of lenet"]),
         (["train", "--out", "{tmp}/x.h5", "--benchmark", "split-mnist", "--tasks", "9"], ["--tasks:"]),
         (["capacity", "--rule", "guess"], ["--rule: expected one of"]),
         (["info", "{tmp}/missing.h5"], ["missing.h5"]),
         (["demo", "--budget", "lots"], ["--budget"]),
         (["encode"], ["Missing argument"])],
        ids=["evaluate-method", "evaluate-plot", "recall-method", "recall-data", "train-tasks", "train-model",
             "train-split-tasks", "capacity-rule", "info-missing", "demo-budget", "usage"],
    )
    def test_refusals_are_one_line_naming_the_option(self, lenet, units, tmp_path, args, needles):
        """Each refusal is one line naming the option as typed (never a library argument) and exits 2."""
        filled = [a.format(lenet=lenet[0], units=units[0], tmp=tmp_path) for a in args]
        line = check_refusal(_run(*filled), *needles)
        assert not any(f"Error: {name}:" in line for name in ("name", "n_tasks", "budget", "factory", "data_dir"))

    def test_recall_without_its_data_names_what_it_needs(self, units, tmp_path):
        """recall of a bank whose recorded data is not here refuses (exit 2) naming --data and --unguided, and
        --json prints the error object with the argument --data."""
        path = tmp_path / "units.h5"
        shutil.copy(units[0], path)
        with open_bank(path, "a") as bank:
            metadata = dict(bank.metadata)
            metadata["benchmark"] = {**metadata["benchmark"], "data_source": f"idx:{tmp_path / 'elsewhere'}"}
            bank.set_metadata(metadata)
        result = _run("recall", str(path), "--json")
        check_refusal(result, "Error: --data:", "--unguided", "elsewhere")
        assert json.loads(result.stdout)["error"]["argument"] == "--data"
