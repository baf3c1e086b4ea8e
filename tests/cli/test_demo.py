"""Tests of ``supsup-store demo``: the CLI wiring with run_demo patched out, and one real small run (slow)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import supsup_core.demo as demo_module
from hopfield_masks.encoding import encode_bank, read_bank_reservoir
from hopfield_masks.errors import BudgetError
from supsup_core.config import ModelConfig
from supsup_core.data import load_mnist, make_stream
from supsup_core.demo import DEMO_BATCHES_PER_TASK, DemoResult, run_demo
from supsup_core.errors import ConfigError
from supsup_core.guidance import model_layout
from hopfield_masks.encoding import EncodeSettings
from supsup_core.recall import RecallConfig, Recaller
from supsup_core.models import build_model
from supsup_core.persistence import save_masks
from supsup_store_cli.app import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Drop rich's table borders and collapse whitespace (rich wraps at the terminal width)."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


@pytest.fixture(scope="module")
def tiny_result(tmp_path_factory) -> DemoResult:
    """A DemoResult made of real recall rows: a tiny BNNet with 5 random masks, encoded under 1 MB, recalled twice."""
    stream = make_stream("split-mnist", 5, load_mnist("embedded"))
    model = build_model(ModelConfig(arch="bnnet", hidden=(16, 16), output_size=10))
    rng = np.random.default_rng(0)
    layout = model_layout(model)
    model.import_masks([{n: rng.random(s) < 0.5 for n, s in zip(layout.names, layout.shapes)} for _ in range(5)])
    model.eval()
    path = tmp_path_factory.mktemp("demo") / "masks.h5"
    save_masks(model, path, benchmark=stream.describe())
    _, report = encode_bank(path, "1MB")
    configs = {True: RecallConfig(method="keyed", guided=True),
               False: RecallConfig(method="keyed", guided=False)}
    rows = {guided: Recaller(path, "1MB", config, model=model, stream=stream).recall_all()
            for guided, config in configs.items()}
    return DemoResult(bank_path=str(path), device="cpu", encode=report, true_accuracy={t: 0.5 for t in range(5)},
                      guided=rows[True], unguided=rows[False], recall=configs[True], timings={"train": 1.0})


@pytest.fixture
def fake_run_demo(monkeypatch, tiny_result, tmp_path):
    """Replace supsup_core.demo.run_demo by a fake that records its arguments and reports progress; run in a scratch
    folder (the default ``demo_out`` of an earlier real demo in the checkout must not matter)."""
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[tuple, dict]] = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        for stage in ("train", "encode", "recall (guided)"):
            kwargs["progress"](stage, 1, 2)
            kwargs["progress"](stage, 2, 2)
        return tiny_result

    monkeypatch.setattr(demo_module, "run_demo", fake)
    return calls


def _arguments(calls) -> tuple[tuple, dict]:
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert callable(kwargs.pop("progress"))
    return args, kwargs


class TestDemoCommand:
    def test_defaults_are_forwarded(self, fake_run_demo):
        """No options: run_demo gets demo_out, 1MB, 50 batches, seed 0, keyed non-transductive recall, embedded data."""
        result = runner.invoke(app, ["demo"])
        assert result.exit_code == 0, result.output
        args, kwargs = _arguments(fake_run_demo)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        assert args == (Path("demo_out"),)
        assert kwargs == {"budget": 1_000_000, "batches_per_task": DEMO_BATCHES_PER_TASK, "seed": 0, "device": device,
                          "recall": RecallConfig(method="keyed", guided=True), "data_dir": None}

    def test_every_option_is_forwarded(self, fake_run_demo, tmp_path):
        """--out, --budget, --batches-per-task, --method, --transductive, --seed, --device and --data-dir arrive."""
        result = runner.invoke(app, ["demo", "--out", str(tmp_path / "o"), "--budget", "512KiB",
                                     "--batches-per-task", "7", "--method", "score-descent", "--transductive",
                                     "--seed", "3", "--device", "cpu", "--data-dir", str(tmp_path / "idx")])
        assert result.exit_code == 0, result.output
        args, kwargs = _arguments(fake_run_demo)
        assert args == (tmp_path / "o",)
        assert kwargs == {"budget": 524_288, "batches_per_task": 7, "seed": 3, "device": "cpu",
                          "recall": RecallConfig(method="score-descent", guided=True, transductive=True, seed=3),
                          "data_dir": tmp_path / "idx"}

    def test_table_and_summary(self, fake_run_demo, tiny_result):
        """The output has the reservoir table, one row per task with its digits, and the guided/unguided summary."""
        result = runner.invoke(app, ["demo", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        out = _flat(result.stdout)
        assert "exact alternative" in out and "HopSupSup on SplitMNIST" in out
        for t in range(5):
            assert f"{2 * t},{2 * t + 1}" in out
        exact = sum(r.exact for r in tiny_result.guided)
        assert f"Guided recall (keyed): exact for {exact} of 5 masks" in out
        assert "Unguided recall: exact for" in out and "held-out test images" in out
        assert f"Reservoir {tiny_result.encode.reservoir_bytes:,} B for 5 masks" in out

    def test_transductive_is_said(self, fake_run_demo):
        """With --transductive the summary says accuracies were scored on the images that guided recall."""
        result = runner.invoke(app, ["demo", "--device", "cpu", "--transductive"])
        assert result.exit_code == 0
        assert "the same test images that guided recall (transductive)" in _flat(result.stdout)

    def test_json(self, fake_run_demo, tiny_result):
        """--json prints strict JSON with the encode report, both row lists and both summaries."""
        result = runner.invoke(app, ["demo", "--device", "cpu", "--json"])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out == json.loads(json.dumps(tiny_result.to_dict(), allow_nan=False))
        assert len(out["guided"]) == len(out["unguided"]) == 5 and out["summary"]["guided"]["tasks"] == 5

    @pytest.mark.parametrize(
        "options, needle",
        [(["--budget", "lots"], "--budget"), (["--method", "annealing"], "--method"),
         (["--batches-per-task", "0"], "--batches-per-task"), (["--device", "tpu"], "--device")],
    )
    def test_bad_options_fail_before_training(self, fake_run_demo, options, needle):
        """A bad budget, method, batch count or device exits 2 with one line naming it, and run_demo never runs."""
        result = runner.invoke(app, ["demo", *options])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0]
        assert fake_run_demo == []

    def test_library_errors_exit_2(self, monkeypatch, tmp_path):
        """An expected library error raised by run_demo ends the command with exit code 2 and no traceback."""
        monkeypatch.chdir(tmp_path)

        def fail(*args, **kwargs):
            raise BudgetError("budget", "at least 9 bytes", "1", minimum=9)

        monkeypatch.setattr(demo_module, "run_demo", fail)
        result = runner.invoke(app, ["demo", "--device", "cpu"])
        assert result.exit_code == 2 and "at least 9 bytes" in result.stderr and "Traceback" not in result.output


class TestRunDemoChecks:
    @pytest.mark.parametrize(
        "kwargs, error",
        [({"batches_per_task": 0}, ConfigError), ({"recall": "keyed"}, ConfigError),
         ({"recall": RecallConfig(method="dynamics"), "encode": EncodeSettings(rule="perceptron")}, ConfigError),
         ({"budget": "1kB"}, BudgetError)],
    )
    def test_bad_settings_fail_before_anything_is_written(self, tmp_path, kwargs, error):
        """Bad settings raise before training, and the output folder is not even created."""
        with pytest.raises(error):
            run_demo(tmp_path / "out", **kwargs)
        assert not (tmp_path / "out").exists()

    def test_an_output_path_that_is_a_file_is_refused(self, tmp_path):
        """--out naming an existing file raises ConfigError naming out_dir and leaves the file alone."""
        target = tmp_path / "taken"
        target.write_text("keep me\n")
        with pytest.raises(ConfigError, match="out_dir"):
            run_demo(target)
        assert target.read_text() == "keep me\n"

    def test_too_small_budget_names_the_minimum(self, tmp_path):
        """The BNNet's 4,096 unit masks need a minimum budget, which the error carries and states."""
        with pytest.raises(BudgetError) as info:
            run_demo(tmp_path / "out", budget="1kB")
        assert info.value.minimum and str(info.value.minimum) in str(info.value)


@pytest.mark.slow
class TestRunDemo:
    def test_small_real_run(self, tmp_path):
        """5 batches per task: 5 masks saved, encoded under 1 MB, and recalled with and without guidance."""
        result = run_demo(tmp_path, batches_per_task=5)
        assert Path(result.bank_path) == tmp_path / "masks.h5"
        assert result.encode.n_tasks == 5 and result.encode.reservoir_bytes <= 1_000_000
        assert read_bank_reservoir(result.bank_path, "1MB").n_tasks == 5
        assert [r.task for r in result.guided] == [r.task for r in result.unguided] == ["0", "1", "2", "3", "4"]
        assert all(r.guided and r.guidance_calls > 0 for r in result.guided)
        assert not any(r.guided for r in result.unguided)
        assert all(r.true_accuracy is not None and r.recalled_accuracy is not None for r in result.guided)
        assert set(result.true_accuracy) == {0, 1, 2, 3, 4}
        json.dumps(result.to_dict(), allow_nan=False)

    def test_readme_claims_hold(self, tmp_path):
        """The README's demo claims: with the defaults every one of the 5 masks comes back exactly, guided,
        with no accuracy lost, while plain dynamics from the mean cue recalls none of them exactly."""
        result = run_demo(tmp_path)
        assert sum(r.exact for r in result.guided) == 5
        assert all(r.recalled_accuracy == r.true_accuracy for r in result.guided)
        assert sum(r.exact for r in result.unguided) == 0
        assert result.encode.reservoir_bytes <= 1_000_000 and result.encode.n_tasks == 5
