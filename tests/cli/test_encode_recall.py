"""Tests of ``supsup-store encode`` and ``supsup-store recall`` (CliRunner, tiny banks, CPU)."""

from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.encoding import bank_reservoirs, encode_bank, read_bank_reservoir
from hopfield_masks.errors import BudgetError
from hopfield_masks.reservoir import Reservoir
from supsup_core.config import ModelConfig
from supsup_core.data import IDX_FILES, load_mnist, make_stream, write_idx
from supsup_core.models import build_model
from supsup_core.persistence import save_masks
from supsup_core.training import TrainConfig, train_stream
from supsup_store_cli.app import app

runner = CliRunner()
FAST = ["--steps", "2", "--device", "cpu"]  # two guided sweeps keep every recall well under a second


def _train_bank(path, config: ModelConfig, stream_name: str, n_tasks: int):
    """Train ``config`` for 2 batches per task of ``stream_name`` and save the masks with the stream's description."""
    stream = make_stream(stream_name, n_tasks, load_mnist("embedded"))
    model = build_model(config)
    train_config = TrainConfig.for_scenario("hopsupsup", batches_per_task=2, batch_size=64)
    train_stream(model, stream, train_config, drop_last=True)
    save_masks(model, path, benchmark=stream.describe())
    return path


def _library_bank(path, n_tasks: int, length: int = 40, seed: int = 0):
    """A bank written by the storage library alone: random masks, no model in its metadata."""
    rng = np.random.default_rng(seed)
    with create_bank(path, metadata={"note": "no model"}) as bank:
        for t in range(n_tasks):
            bank.write_task(str(t), {"w": rng.random(length) < 0.5})
    return path


def _minimum_budget(length: int, key_units: int | str = "auto") -> int:
    """The smallest budget for ``length`` mask entries (the default keyed reservoir, or ``key_units=0``)."""
    with pytest.raises(BudgetError) as info:
        Reservoir.from_budget(1, MaskLayout(("w",), ((length,),)), key_units=key_units)
    return info.value.minimum


def _snapshot(path) -> tuple[bytes, int] | None:
    """Bytes and mtime of a file (None when absent): what a failed command must leave alone."""
    return (path.read_bytes(), path.stat().st_mtime_ns) if path.exists() else None


def _flat(text: str) -> str:
    """Rich wraps at the terminal width and draws table borders: drop the borders, collapse whitespace runs."""
    return " ".join(re.sub("[\u2500-\u257f]", " ", text).split())


def _assert_user_error(result, *needles: str) -> None:
    """Exit code 2, no traceback, and one line on stderr: 'Error: ...' containing every needle."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def unit_bank_template(tmp_path_factory):
    """A tiny BNNet (2 x 32 unit masks) trained 2 batches on each of the 5 SplitMNIST tasks."""
    config = ModelConfig(arch="bnnet", hidden=(32, 32), output_size=10)
    return _train_bank(tmp_path_factory.mktemp("units") / "masks.h5", config, "split-mnist", 5)


@pytest.fixture(scope="module")
def weight_bank_template(tmp_path_factory):
    """A tiny LeNet (weight masks, P = 6,352) with 12 outputs trained on 2 PermutedMNIST tasks."""
    config = ModelConfig(arch="lenet", hidden=(8, 4), output_size=12)
    return _train_bank(tmp_path_factory.mktemp("weights") / "masks.h5", config, "permuted-mnist", 2)


@pytest.fixture
def unit_bank(tmp_path, unit_bank_template):
    """A private copy of the BNNet bank (tests may write to it)."""
    path = tmp_path / "masks.h5"
    shutil.copy(unit_bank_template, path)
    return path


@pytest.fixture
def recall_json(unit_bank):
    """Run ``recall --json`` on the BNNet bank with extra options; returns the parsed output."""

    def run(*options: str) -> dict:
        result = runner.invoke(app, ["recall", str(unit_bank), "--json", *FAST, *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    return run


class TestEncode:
    def test_default_budget_prints_the_reservoir_and_the_exact_alternative(self, unit_bank):
        """encode with no options stores a reservoir of learned couplings within 1 MB and prints bytes, blocks, load
        and the exact alternative."""
        result = runner.invoke(app, ["encode", str(unit_bank)])
        assert result.exit_code == 0, result.output
        out = _flat(result.stdout)
        for needle in ("1,000,000 B", "reservoir bytes", "blocks 1 × 64 mask units, each unit's row 128 key + 64 "
                       "mask couplings of 1 bit", "perceptron", "load vs capacity 5 /", "hdf5-packed bank file:",
                       "(8 B of bits)", "int16 hidden states and visiting orders, not kept"):
            assert needle in out, needle
        assert bank_reservoirs(unit_bank) == ["reservoir-1000000"]

    def test_options_and_json(self, unit_bank):
        """--budget 512KiB --rule hebbian --dtype int8 --json prints the report as JSON and stores that reservoir."""
        result = runner.invoke(app, ["encode", str(unit_bank), "--budget", "512KiB", "--rule", "hebbian",
                                     "--dtype", "int8", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["budget_bytes"] == 524_288 and report["rule"] == "hebbian" and report["dtype"] == "int8"
        assert report["n_tasks"] == 5
        assert report["exact_tasks_in_budget"] == (524_288 - report["exact_file_header_bytes"]) // report["exact_file_bytes_per_task"]
        assert read_bank_reservoir(unit_bank, "512KiB").rule.rule_id == "hebbian"

    def test_budget_in_scientific_notation(self, tmp_path):
        """A budget of '2e4' is 20,000 bytes."""
        path = _library_bank(tmp_path / "lib.h5", 3)
        result = runner.invoke(app, ["encode", str(path), "--budget", "2e4", "--json"])
        assert result.exit_code == 0 and json.loads(result.stdout)["attachment"] == "reservoir-20000"

    def test_over_capacity_is_flagged_and_warned(self, tmp_path):
        """30 tasks in the smallest budget: the table says over capacity and stderr warns that recall will fail."""
        path = _library_bank(tmp_path / "lib.h5", 30)
        result = runner.invoke(app, ["encode", str(path), "--budget", str(_minimum_budget(40))])
        assert result.exit_code == 0, result.output
        assert "(over capacity)" in _flat(result.stdout)
        assert "more tasks than its rule's capacity" in _flat(result.stderr)


class TestRecall:
    def test_no_file_argument_uses_masks_h5_here_and_encodes_first(self, unit_bank, monkeypatch):
        """In a folder holding masks.h5, `recall --budget 20kB` encodes that reservoir and prints the task table."""
        monkeypatch.chdir(unit_bank.parent)
        result = runner.invoke(app, ["recall", "--budget", "20kB", *FAST])
        assert result.exit_code == 0, result.output
        out = _flat(result.stdout)
        for header in ("task", "bits", "wrong", "unit1", "unit2", "exact", "steps to", "true", "recalled"):
            assert header in out, header  # narrow columns wrap their headers over several lines
        assert "exact:" in out and "held-out test images" in out
        assert "No reservoir for 20kB" in _flat(result.stderr)
        assert bank_reservoirs(unit_bank) == ["reservoir-20000"]

    def test_json_parses_and_describes_the_mode(self, recall_json):
        """--json prints one JSON document: rows with accuracies, the mode (guided by default) and a summary."""
        out = recall_json()
        assert out["n_tasks"] == 5 and len(out["tasks"]) == 5 and out["over_capacity"] is False
        assert out["mode"]["guided"] is True and out["mode"]["transductive"] is False and out["note"] is None
        assert "held-out" in out["mode"]["scored_on"]
        row = out["tasks"][0]
        assert set(row["bits_wrong"]) == {"unit1", "unit2"} and row["method"] == "keyed" and row["candidates"] == 5
        assert out["mode"]["method"] == "keyed" and out["mode"]["cue"] == "key" and row["guidance_calls"] >= 5
        assert 0 <= row["true_accuracy"] <= 1 and 0 <= row["recalled_accuracy"] <= 1
        assert out["summary"]["tasks"] == 5

    def test_existing_reservoir_is_reused(self, unit_bank):
        """With a reservoir of that budget already in the bank, recall does not rewrite the file."""
        encode_bank(unit_bank, "1MB")
        before = _snapshot(unit_bank)
        result = runner.invoke(app, ["recall", str(unit_bank), "--json", *FAST])
        assert result.exit_code == 0 and _snapshot(unit_bank) == before

    def test_transductive_is_said_in_the_output(self, unit_bank, recall_json):
        """--transductive scores on the images that guided recall, and both outputs say so."""
        assert recall_json("--transductive")["mode"]["transductive"] is True
        result = runner.invoke(app, ["recall", str(unit_bank), "--transductive", *FAST])
        assert result.exit_code == 0 and "the same test images that guided recall" in _flat(result.stdout)

    def test_explicit_guided_is_the_default_when_data_is_available(self, recall_json):
        """--guided on a bank whose data can be rebuilt gives the same rows as no flag."""
        assert recall_json("--guided")["tasks"] == recall_json()["tasks"]

    def test_unguided_recall_still_scores(self, recall_json):
        """--unguided asks for no gradient but still reports both accuracies."""
        out = recall_json("--unguided")
        assert out["mode"]["guided"] is False and out["mode"]["objective"] is None
        assert all(r["guidance_calls"] == 0 and r["true_accuracy"] is not None for r in out["tasks"])

    @pytest.mark.parametrize("cue", ["mean", "random", "noisy:0.1"])
    def test_cues(self, recall_json, cue):
        """--cue mean|random|noisy:0.1 is used for every task (block-wise dynamics)."""
        out = recall_json("--method", "dynamics", "--cue", cue)
        assert out["mode"]["cue"] == cue and {r["cue"] for r in out["tasks"]} == {cue}

    def test_method_steps_and_seed(self, recall_json):
        """--method score-descent --steps 3 runs 3 steps per task, and the same --seed gives the same rows."""
        first = recall_json("--method", "score-descent", "--steps", "3", "--seed", "7")
        assert first["mode"]["method"] == "score-descent" and {r["steps_run"] for r in first["tasks"]} == {3}
        assert recall_json("--method", "score-descent", "--steps", "3", "--seed", "7")["tasks"] == first["tasks"]

    def test_restarts_are_passed_to_every_task_and_said_in_the_mode(self, recall_json):
        """--restarts 2 runs three guided recalls per task, keeps one of them, and the JSON mode says so."""
        out = recall_json("--method", "dynamics", "--restarts", "2")
        assert out["mode"]["restarts"] == 2 and recall_json("--method", "dynamics")["mode"]["restarts"] == 0
        for row in out["tasks"]:
            assert row["restarts"] == 2 and 0 <= row["chosen_start"] <= 2
            assert row["guidance_calls"] == 3  # --steps 2: one guided sweep per start

    def test_rule_and_dtype_apply_when_encoding_first(self, unit_bank, recall_json):
        """--rule hebbian --dtype float16 shape the reservoir that recall has to encode."""
        recall_json("--budget", "30kB", "--rule", "hebbian", "--dtype", "float16", "--unguided")
        stored = read_bank_reservoir(unit_bank, "30kB")
        assert stored.rule.rule_id == "hebbian" and stored.dtype == "float16"

    def test_data_dir_is_used_for_guidance_and_scores(self, tmp_path, recall_json):
        """--data-dir with the same images as IDX files gives the same accuracies as the embedded subset."""
        data = load_mnist("embedded")
        folder = tmp_path / "idx"
        folder.mkdir()
        for role, (stem, tag, _) in IDX_FILES.items():
            array = getattr(data, role)
            write_idx(folder / f"{stem}-{tag}", array.astype(np.uint8))
        ours = recall_json("--unguided", "--data-dir", str(folder))
        embedded = recall_json("--unguided")
        assert [r["true_accuracy"] for r in ours["tasks"]] == [r["true_accuracy"] for r in embedded["tasks"]]

    def test_missing_data_is_refused_unless_unguided(self, unit_bank, recall_json, tmp_path):
        """When the data the bank records cannot be loaded, recall would pick masks without guidance (wrong ones):
        it refuses, exit 2, in one line naming --data (and --unguided), before the reservoir is encoded; with
        --unguided it recalls, unscored, and says why (data given with --data must be usable:
        test_explicit_data_that_cannot_be_read_is_refused)."""
        with open_bank(unit_bank, "a") as bank:
            metadata = dict(bank.metadata)
            metadata["benchmark"] = {**metadata["benchmark"], "data_source": f"idx:{tmp_path / 'nowhere'}"}
            bank.set_metadata(metadata)
        before = _snapshot(unit_bank)
        result = runner.invoke(app, ["recall", str(unit_bank), *FAST])
        _assert_user_error(result, "Error: --data: expected the data this bank was trained on, to guide recall",
                           "--unguided", "nowhere")
        assert _snapshot(unit_bank) == before
        out = recall_json("--unguided")
        assert out["mode"]["guided"] is False and "no data" in out["note"]
        assert out["tasks"][0]["true_accuracy"] is None and out["summary"]["mean_accuracy_drop"] is None

    def test_weight_masks_and_objective_g(self, tmp_path, weight_bank_template):
        """A LeNet weight-mask bank with 12 outputs recalls with guidance objective G."""
        path = tmp_path / "lenet.h5"
        shutil.copy(weight_bank_template, path)
        result = runner.invoke(app, ["recall", str(path), "--json", "--objective", "G", *FAST])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["mode"]["objective"] == "G" and len(out["tasks"]) == 2
        assert set(out["tasks"][0]["bits_wrong"]) == {"fc1", "fc2", "fc3"}

    def test_library_bank_recalls_bits_only(self, tmp_path):
        """A bank without a model gets unguided recall, exact from a noisy cue at low load, with a note."""
        path = _library_bank(tmp_path / "lib.h5", 3)
        block_wise = ["--method", "dynamics", "--rule", "storkey", "--key-units", "0"]
        result = runner.invoke(app, ["recall", str(path), "--cue", "noisy:0.1", "--json", *block_wise])
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        assert out["summary"]["exact"] == 3 and out["mode"]["guided"] is False and "supsup_core model" in out["note"]
        text = runner.invoke(app, ["recall", str(path), "--cue", "noisy:0.1", *block_wise])
        assert text.exit_code == 0 and "exact: 3 of 3 tasks" in _flat(text.stdout)
        assert "only bits wrong" in _flat(text.stderr)

    def test_over_capacity_warning(self, tmp_path):
        """Recall from a reservoir holding more tasks than its capacity warns that exact recall is not expected."""
        path = _library_bank(tmp_path / "lib.h5", 30)
        result = runner.invoke(app, ["recall", str(path), "--budget", str(_minimum_budget(40, 0)), "--steps", "3",
                                     "--method", "dynamics", "--rule", "storkey", "--key-units", "0"])
        assert result.exit_code == 0, result.output
        assert "the reservoir is over capacity, so exact recall is not expected" in _flat(result.stderr)
        out = json.loads(runner.invoke(app, ["recall", str(path), "--budget", str(_minimum_budget(40)),
                                             "--json", "--steps", "3"]).stdout)
        assert out["over_capacity"] is True and out["n_tasks"] > out["capacity_tasks"]


def _corrupt_reservoir(path, budget_name: str) -> None:
    with h5py.File(path, "a") as f:
        del f[f"attachments/{budget_name}/couplings"]


def _other_base_network(path) -> None:
    with open_bank(path, "a") as bank:
        metadata = bank.metadata
        metadata["model"]["seed"] = 1  # the rebuilt base network differs from the one the masks were made for
        bank.set_metadata(metadata)


class TestBadInput:
    """The issue's six bad inputs (and a few bad options): exit 2, one line naming the problem, files untouched."""

    @pytest.mark.parametrize("command", ["encode", "recall"])
    def test_masks_file_without_masks(self, tmp_path, command):
        """A bank with no masks is refused."""
        path = tmp_path / "empty.h5"
        create_bank(path).close()
        before = _snapshot(path)
        _assert_user_error(runner.invoke(app, [command, str(path)]), "holds no masks")
        assert _snapshot(path) == before

    @pytest.mark.parametrize("command", ["encode", "recall"])
    def test_non_hdf5_file(self, tmp_path, command):
        """A text file is refused as not HDF5."""
        path = tmp_path / "masks.h5"
        path.write_text("hello\n")
        before = _snapshot(path)
        _assert_user_error(runner.invoke(app, [command, str(path)]), "not an HDF5 file")
        assert _snapshot(path) == before

    @pytest.mark.parametrize("command", ["encode", "recall"])
    def test_missing_file(self, tmp_path, command, monkeypatch):
        """A missing file (recall: no masks.h5 in the folder) is refused and not created."""
        monkeypatch.chdir(tmp_path)
        args = [command, "absent.h5"] if command == "encode" else [command]
        _assert_user_error(runner.invoke(app, args), "no such file")
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("command", ["encode", "recall"])
    def test_budget_below_the_minimum_names_the_minimum(self, unit_bank, command):
        """A budget too small for one network says the smallest budget that works, and suggests a budget that fits
        (the smallest one to two significant digits), which then works."""
        from hopfield_masks.budget import parse_budget
        from supsup_store_cli._parsing import budget_at_least

        minimum = _minimum_budget(64)
        before = _snapshot(unit_bank)
        result = runner.invoke(app, [command, str(unit_bank), "--budget", str(minimum - 1)])
        suggested = budget_at_least(minimum)
        _assert_user_error(result, "--budget:", f"at least {minimum} bytes", f"(try --budget {suggested})")
        assert result.stderr.strip().endswith(f"(try --budget {suggested})")
        assert minimum <= parse_budget(suggested) < 1.1 * minimum
        assert _snapshot(unit_bank) == before
        if command == "encode":
            assert runner.invoke(app, [command, str(unit_bank), "--budget", suggested]).exit_code == 0

    def test_corrupt_reservoir(self, unit_bank):
        """A reservoir attachment with a dataset missing is refused, naming the file."""
        encode_bank(unit_bank, "20kB")
        _corrupt_reservoir(unit_bank, "reservoir-20000")
        before = _snapshot(unit_bank)
        _assert_user_error(runner.invoke(app, ["recall", str(unit_bank), "--budget", "20kB", *FAST]),
                           str(unit_bank), "couplings")
        assert _snapshot(unit_bank) == before

    def test_masks_of_another_base_network(self, unit_bank):
        """Metadata describing another base network than the masks' is refused before anything is written."""
        _other_base_network(unit_bank)
        before = _snapshot(unit_bank)
        _assert_user_error(runner.invoke(app, ["recall", str(unit_bank), *FAST]), "base weights differ")
        assert _snapshot(unit_bank) == before

    @pytest.mark.parametrize(
        "options, needle",
        [(["--cue", "nearby"], "--cue"), (["--cue", "noisy:2"], "--cue"), (["--steps", "0"], "--steps"),
         (["--method", "annealing"], "--method"), (["--objective", "KL"], "--objective"),
         (["--objective", "G"], "--objective"), (["--budget", "lots"], "--budget"), (["--device", "tpu"], "--device"),
         (["--guided", "--data-dir", "/nonexistent/mnist"], "nonexistent"), (["--restarts", "-1"], "--restarts"),
         (["--unguided", "--restarts", "2"], "--restarts")],
        ids=["cue", "noisy-p", "steps", "method", "objective", "objective-G-without-superfluous", "budget", "device",
             "guided-without-data", "restarts-negative", "restarts-unguided"],
    )
    def test_bad_recall_options_write_nothing(self, unit_bank, options, needle):
        """Bad options are refused before the missing reservoir is encoded, so the bank is not modified."""
        before = _snapshot(unit_bank)
        _assert_user_error(runner.invoke(app, ["recall", str(unit_bank), "--device", "cpu", *options]), needle)
        assert _snapshot(unit_bank) == before

    def test_reservoir_older_than_the_tasks(self, tmp_path):
        """A reservoir encoded before more tasks were written is refused, with the command that fixes it."""
        path = _library_bank(tmp_path / "lib.h5", 3)
        encode_bank(path, "1MB")
        with open_bank(path, "a") as bank:
            bank.write_task("3", {"w": np.ones(40, bool)})
        before = _snapshot(path)
        _assert_user_error(runner.invoke(app, ["recall", str(path)]), "holds 3 tasks", "supsup-store encode")
        assert _snapshot(path) == before

    def test_reservoir_of_overwritten_masks(self, tmp_path):
        """A task overwritten in place after encoding (same count, same layout) is caught by the bank digest."""
        path = _library_bank(tmp_path / "lib.h5", 3)
        encode_bank(path, "1MB")
        with open_bank(path, "a") as bank:
            bank.write_task("1", {"w": np.ones(40, bool)}, overwrite=True)
        before = _snapshot(path)
        _assert_user_error(runner.invoke(app, ["recall", str(path)]), "encoded from other masks", "supsup-store encode")
        assert _snapshot(path) == before

    def test_guided_on_a_bank_without_a_model(self, tmp_path):
        """--guided on a bank without model metadata is refused naming --guided."""
        path = _library_bank(tmp_path / "lib.h5", 3)
        before = _snapshot(path)
        _assert_user_error(runner.invoke(app, ["recall", str(path), "--guided"]), "--guided")
        assert _snapshot(path) == before

    @pytest.mark.parametrize("options, needle", [(["--rule", "oja"], "rule"), (["--dtype", "float64"], "dtype"),
                                                 (["--budget", "1 parsec"], "budget")])
    def test_bad_encode_options_write_nothing(self, unit_bank, options, needle):
        """An unknown rule, precision or budget text is refused and the bank is not modified."""
        before = _snapshot(unit_bank)
        _assert_user_error(runner.invoke(app, ["encode", str(unit_bank), *options]), needle)
        assert _snapshot(unit_bank) == before
