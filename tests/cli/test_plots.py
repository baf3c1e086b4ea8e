"""``--plot FILE`` of ``evaluate`` (accuracy per task) and ``recall`` (recall quality per task): a PNG written after
the results, or, without matplotlib or with a folder that does not exist, one line naming --plot before any work."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from typer.testing import CliRunner

from supsup_store_cli.app import app

runner = CliRunner()
PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def lenet(tmp_path_factory):
    """A LeNet bank of 2 permuted tasks written by train."""
    path = tmp_path_factory.mktemp("lenet") / "lenet.h5"
    result = runner.invoke(app, ["train", "--out", str(path), "--tasks", "2", "--batches-per-task", "2", "--hidden",
                                 "16,8", "--lr", "0.01", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def units(tmp_path_factory):
    """A BNNet bank of the 5 SplitMNIST tasks with a 20 kB reservoir."""
    path = tmp_path_factory.mktemp("units") / "units.h5"
    for args in (["train", "--out", str(path), "--model", "bnnet", "--benchmark", "split-mnist", "--hidden", "32,32",
                  "--batches-per-task", "2", "--device", "cpu"], ["encode", str(path), "--budget", "20kB"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return path


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make matplotlib look uninstalled to importlib (the check the CLI makes)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))


class TestPlots:
    @pytest.mark.parametrize("json_too", [False, True])
    def test_evaluate_plots_accuracy_per_task(self, lenet, tmp_path, json_too):
        """evaluate --plot writes a PNG (with or without --json) and says where on stderr."""
        pytest.importorskip("matplotlib")
        out = tmp_path / "accuracy.png"
        result = runner.invoke(app, ["evaluate", str(lenet), "--device", "cpu", "--plot", str(out),
                                     *(["--json"] if json_too else [])])
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:4] == PNG and f"wrote {out}" in " ".join(result.stderr.split())
        if json_too:
            assert json.loads(result.stdout)["gg"]

    def test_recall_plots_recall_quality_per_task(self, units, tmp_path):
        """recall --plot writes a PNG of bits wrong and accuracies per task."""
        pytest.importorskip("matplotlib")
        bank, out = tmp_path / "units.h5", tmp_path / "recall.png"
        shutil.copy(units, bank)
        result = runner.invoke(app, ["recall", str(bank), "--budget", "20kB", "--steps", "2", "--device", "cpu",
                                     "--plot", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes()[:4] == PNG and f"wrote {out}" in " ".join(result.stderr.split())

    @pytest.mark.parametrize("command", ["evaluate", "recall"])
    def test_without_matplotlib_the_plot_is_refused_first(self, lenet, units, tmp_path, no_matplotlib, command):
        """Without the plot extra: exit 2, one line naming --plot and the install line, nothing written."""
        bank = lenet if command == "evaluate" else units
        before = bank.read_bytes()
        result = runner.invoke(app, [command, str(bank), "--device", "cpu", "--plot", str(tmp_path / "p.png")])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines == ["Error: --plot: expected matplotlib for plots (pip install 'supsup-store[plot]'), received an "
                         "environment without matplotlib"]
        assert not (tmp_path / "p.png").exists() and bank.read_bytes() == before

    @pytest.mark.parametrize("command", ["evaluate", "recall"])
    def test_a_folder_that_does_not_exist_is_refused_first(self, lenet, units, tmp_path, command):
        """--plot into a missing folder: exit 2 naming --plot, before any evaluation or recall."""
        bank = lenet if command == "evaluate" else units
        result = runner.invoke(app, [command, str(bank), "--device", "cpu", "--plot", str(tmp_path / "no" / "p.png")])
        assert result.exit_code == 2 and result.stderr.startswith("Error: --plot: expected a file in an existing folder")
