"""Tests of the ``supsup-store train`` and ``supsup-store evaluate`` commands (CliRunner, tiny CPU runs)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from supsup_core.persistence import read_bank_metadata, stored_accuracies
from supsup_store_cli.app import app
from supsup_store_cli.train import default_output_size

runner = CliRunner()
TINY = ["--tasks", "2", "--batches-per-task", "5", "--hidden", "16,8", "--device", "cpu", "--lr", "0.01"]


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A bank from a tiny `train` run (2 permuted tasks, 5 batches each)."""
    path = tmp_path_factory.mktemp("train") / "masks.h5"
    result = runner.invoke(app, ["train", "--out", str(path), *TINY])
    assert result.exit_code == 0, result.output
    return path, result


class TestTrain:
    def test_train_writes_a_bank_and_prints_the_accuracy_table(self, bank):
        """train exits 0, prints the GG table, and writes a bank with 2 tasks, metadata and accuracies."""
        path, result = bank
        assert "GG accuracy" in result.stdout and "Saved 2 masks" in result.stdout
        metadata = read_bank_metadata(path)
        assert metadata["n_tasks"] == 2 and metadata["model"]["output_size"] == 100
        assert metadata["benchmark"]["stream"] == "permuted-mnist" and metadata["benchmark"]["train_seed"] == 0
        assert metadata["training"]["scenario"] == "gnu" and metadata["training"]["config"]["batches_per_task"] == 5
        assert set(stored_accuracies(path)) == {0, 1}

    def test_existing_output_is_refused_without_overwrite(self, bank):
        """Training onto an existing file without --overwrite exits 2 naming --out."""
        path, _ = bank
        result = runner.invoke(app, ["train", "--out", str(path), *TINY])
        assert result.exit_code == 2 and "--out" in result.stderr

    @pytest.mark.parametrize(
        "option, value",
        [("--benchmark", "cifar"), ("--model", "resnet"), ("--scenario", "xyz"), ("--backend", "zip"), ("--device", "tpu"),
         ("--tasks", "0"), ("--batches-per-task", "-1"), ("--decision-every", "0")],
    )
    def test_bad_choices_exit_2_naming_the_option(self, tmp_path, option, value):
        """An unknown benchmark, model, scenario, backend or device, or a count out of range, exits 2 naming the option."""
        result = runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), *TINY, option, value])
        assert result.exit_code == 2 and option in result.stderr
        assert not (tmp_path / "x.h5").exists()

    def test_nns_scenario_records_the_allocation_map(self, tmp_path):
        """--scenario nns trains without task identity and stores the stream-task -> mask map."""
        path = tmp_path / "nns.h5"
        result = runner.invoke(app, ["train", "--out", str(path), *TINY, "--scenario", "nns", "--decision-every", "2"])
        assert result.exit_code == 0, result.output
        nns = read_bank_metadata(path)["training"]["nns"]
        assert nns["n_masks"] >= 1 and set(nns["task_to_mask"]) == {"0", "1"}
        evaluated = runner.invoke(app, ["evaluate", str(path), "--json", "--device", "cpu", "--no-task-inference"])
        assert evaluated.exit_code == 0, evaluated.output
        assert json.loads(evaluated.stdout)["inferred"]["scenario"] == "gns"

    def test_bnnet_on_split_mnist_uses_the_hopsupsup_preset(self, tmp_path):
        """bnnet defaults to the HopSupSup preset and 10 outputs, and evaluates with the batch protocol."""
        path = tmp_path / "bn.h5"
        args = ["train", "--out", str(path), "--benchmark", "split-mnist", "--model", "bnnet", "--tasks", "2",
                "--batches-per-task", "3", "--hidden", "16,16", "--device", "cpu", "--backend", "hdf5-sparse"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        metadata = read_bank_metadata(path)
        assert metadata["training"]["config"]["optimizer"] == "sgd" and metadata["model"]["output_size"] == 10
        evaluated = runner.invoke(app, ["evaluate", str(path), "--json", "--device", "cpu"])
        assert evaluated.exit_code == 0, evaluated.output
        assert json.loads(evaluated.stdout)["inferred"]["protocol"] == "batch"

    def test_entropy_backend_trains_evaluates_and_verifies(self, bank, tmp_path):
        """--backend hdf5-entropy: the same masks and accuracies as hdf5-packed; evaluate and verify read the bank."""
        from hopfield_masks.backends import open_bank

        packed, _ = bank
        path = tmp_path / "entropy.h5"
        result = runner.invoke(app, ["train", "--out", str(path), *TINY, "--backend", "hdf5-entropy"])
        assert result.exit_code == 0, result.output
        assert "Saved 2 masks" in result.stdout and "(hdf5-entropy)" in result.stdout
        with open_bank(path) as coded, open_bank(packed) as plain:
            assert coded.backend_id == "hdf5-entropy" and coded.tasks() == plain.tasks() == ["0", "1"]
            for task in coded.tasks():  # the backend changes how masks are stored, never which
                got, want = coded.read_task(task), plain.read_task(task)
                assert list(got) == list(want) and all((got[k] == want[k]).all() for k in want)
                assert coded.task_attrs(task) == plain.task_attrs(task)
        evaluated = runner.invoke(app, ["evaluate", str(path), "--json", "--no-task-inference", "--device", "cpu"])
        assert evaluated.exit_code == 0, evaluated.output
        payload = json.loads(evaluated.stdout)
        assert payload["stored_reproduced"] is True and payload["gg"]["accuracy"] == payload["stored_gg"]
        verified = runner.invoke(app, ["verify", str(path), "--json"])
        assert verified.exit_code == 0, verified.output
        assert json.loads(verified.stdout)["ok"] is True

    def test_default_output_sizes(self):
        """Output size defaults to 100 for permuted/rotated LeNet and 10 for split-mnist or BNNet."""
        assert default_output_size("permuted-mnist", "lenet") == 100
        assert default_output_size("rotated-mnist", "fc1024") == 100
        assert default_output_size("split-mnist", "lenet") == 10
        assert default_output_size("permuted-mnist", "bnnet") == 10


class TestEvaluate:
    def test_evaluate_prints_the_table_and_reproduces_stored_accuracies(self, bank):
        """evaluate prints GG, GNu and task-inference columns and says the stored accuracies were reproduced."""
        path, _ = bank
        result = runner.invoke(app, ["evaluate", str(path), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "GG" in result.stdout and "GNu" in result.stdout and "stored accuracies reproduced" in result.stdout
        assert "task (batch)" in result.stdout and "of 16 test batches" in " ".join(result.stdout.split())

    def test_the_default_method_is_the_librarys_and_the_papers_are_one_flag_away(self, bank):
        """No --method runs supsup_core.inference.DEFAULT_METHOD (rerank); --method one-shot the paper's one-shot
        (oneshot, as spelt before, too); --json counts the decisions made and the fraction right."""
        from supsup_core.inference import DEFAULT_METHOD

        path, _ = bank
        runs = {}
        for method in (None, "one-shot", "oneshot"):
            options = [] if method is None else ["--method", method]
            result = runner.invoke(app, ["evaluate", str(path), "--json", "--no-task-inference", "--device", "cpu",
                                         *options])
            assert result.exit_code == 0, result.output
            runs[method] = json.loads(result.stdout)
        assert DEFAULT_METHOD == "rerank" and runs[None]["inferred"]["method"] == "rerank"
        assert runs["one-shot"]["inferred"]["method"] == runs["oneshot"]["inferred"]["method"] == "oneshot"
        decisions = runs[None]["decisions"]
        assert decisions["count"] == 16 and decisions["per"] == "batch" and 0 <= decisions["right"] <= 1

    def test_binary_search_moves_the_progress_bar_after_every_task(self, bank):
        """Binary search is evaluated one task at a time (the bar, and its ETA, move after each task) with the same
        result as one call over every task."""
        from supsup_core.persistence import load_model, stream_from_metadata
        from supsup_core.training import evaluate_inferred
        from supsup_store_cli.evaluate import _evaluate_inferred

        path, _ = bank
        net, metadata = load_model(path, device="cpu")
        stream = stream_from_metadata(metadata)
        options = dict(method="binary", objective="H", protocol="first-image", scenario="gnu", task_to_mask=None,
                       batch_size=500, measure_task_inference=False)
        steps: list[int] = []
        merged = _evaluate_inferred(net, stream, [0, 1], steps.append, **options)
        assert steps == [1, 1]
        assert merged == evaluate_inferred(net, stream, [0, 1], **options)

    def test_binary_warns_of_its_cost_before_it_starts(self, bank):
        """--method binary prints, before evaluating, how many decisions and gradient passes it will make and about
        how long they take; the other methods print no such warning."""
        path, _ = bank
        result = runner.invoke(app, ["evaluate", str(path), "--method", "binary", "--no-task-inference", "--device",
                                     "cpu", "--batch-size", "500"])
        assert result.exit_code == 0, result.output
        warning = " ".join(result.stderr.split())
        assert warning.startswith("Warning: --method binary makes 4 decisions, one per test batch, of 1 gradient "
                                  "passes each: 4 passes, about ") and "The default, rerank" in warning
        quiet = runner.invoke(app, ["evaluate", str(path), "--no-task-inference", "--device", "cpu"])
        assert "Warning" not in quiet.stderr

    def test_json_output_parses_and_matches_the_stored_accuracies(self, bank):
        """--json prints strict JSON whose GG accuracies equal those stored at training time."""
        path, _ = bank
        result = runner.invoke(app, ["evaluate", str(path), "--json", "--method", "binary", "--objective", "G",
                                     "--no-task-inference", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["stored_reproduced"] is True and payload["inferred"]["method"] == "binary"
        assert payload["gg"]["accuracy"] == payload["stored_gg"]
        assert payload["inferred"]["mean_task_inference_accuracy"] is None

    def test_rerank_method_with_per_image_protocol(self, bank):
        """--method rerank runs with the per-image protocol; every image's inferred task is scored."""
        path, _ = bank
        result = runner.invoke(app, ["evaluate", str(path), "--json", "--method", "rerank", "--protocol", "per-image",
                                     "--device", "cpu"])
        assert result.exit_code == 0, result.output
        inferred = json.loads(result.stdout)["inferred"]
        assert inferred["method"] == "rerank" and inferred["protocol"] == "per-image"
        assert 0.0 <= inferred["mean_task_inference_accuracy"] <= 1.0

    def test_missing_file_exits_2_naming_the_path(self, tmp_path):
        """Evaluating a missing file exits 2 with a message naming it."""
        result = runner.invoke(app, ["evaluate", str(tmp_path / "nope.h5")])
        assert result.exit_code == 2 and "nope.h5" in result.stderr

    def test_bad_option_exits_2(self, bank):
        """An unknown --objective exits 2 naming the option."""
        path, _ = bank
        result = runner.invoke(app, ["evaluate", str(path), "--objective", "Z"])
        assert result.exit_code == 2 and "--objective" in result.stderr
