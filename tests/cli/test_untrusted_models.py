"""Models that do not fit, and banks that declare models they do not hold: each is one line and exit code 2, and
nothing is written (factories that fail, outsized built-ins, a declared output width the module does not have,
per-task batch norms in recall, built-in banks given a factory, a stale unknown-input threshold on resume)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from hopfield_masks.backends import open_bank
from supsup_store_cli.app import app

from .refusals import one_error_line as _one_error_line

runner = CliRunner()
FAST = ["--batches-per-task", "3", "--device", "cpu"]


def _train(path, *args):
    result = runner.invoke(app, ["train", "--out", str(path), *args, *FAST])
    assert result.exit_code == 0, result.output
    return path


def _edit_metadata(path, edit):
    with open_bank(path, "a") as bank:
        metadata = dict(bank.metadata)
        edit(metadata)
        bank.set_metadata(metadata)


@pytest.fixture(scope="module")
def cnn_bank(tmp_path_factory):
    """Two digits tasks of a user's CNN with per-task BatchNorm statistics."""
    return _train(tmp_path_factory.mktemp("cnn") / "cnn.h5", "--model", "tests.cli.factories:small_cnn", "--data",
                  "digits@3x8x8", "--tasks", "2")


class TestFactories:
    @pytest.mark.parametrize("factory, words", [
        ("tests.cli.factories:raises", "received RuntimeError: the factory broke"),
        ("tests.cli.factories:exits", "received SystemExit"),
        ("os:getcwd", "returning a torch.nn.Module"),
        ("os:system", "called with no arguments, received TypeError"),
    ])
    def test_a_factory_that_fails_or_exits_is_one_line(self, tmp_path, factory, words):
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--model", factory,
                                                   "--data", "digits", *FAST]))
        assert line.startswith("Error: --model") and words in line
        assert list(tmp_path.iterdir()) == []

    def test_a_head_registered_first_needs_and_takes_output_size(self, tmp_path):
        args = ["--model", "tests.cli.factories:head_first", "--data", "digits", "--tasks", "1"]
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), *args, *FAST]))
        assert "output_size 128" in line and "(16, 10)" in line and list(tmp_path.iterdir()) == []
        _train(tmp_path / "ok.h5", *args, "--output-size", "10")
        with open_bank(tmp_path / "ok.h5", "r") as bank:
            assert bank.metadata["model"]["wrap"]["output_size"] == 10

    def test_a_built_in_too_large_to_build_is_refused_before_allocating(self, tmp_path):
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--hidden",
                                                   "100000,100000", *FAST]))
        assert line.startswith("Error: --hidden: expected a model of at most") and "entries" in line


class TestDeclaredModels:
    def test_a_declared_output_size_the_module_lacks_is_refused_naming_the_bank(self, tmp_path, cnn_bank):
        for size in (10**12, 3):
            bank = tmp_path / f"out{size}.h5"
            bank.write_bytes(cnn_bank.read_bytes())
            _edit_metadata(bank, lambda m, s=size: m["model"]["wrap"].__setitem__("output_size", s))
            before = bank.read_bytes()
            for command in (["evaluate", str(bank)], ["recall", str(bank), "--budget", "64KiB", "--unguided"]):
                line = _one_error_line(runner.invoke(app, [*command, "--model", "tests.cli.factories:small_cnn",
                                                           "--device", "cpu"]))
                assert line.startswith(f"Error: {bank}: expected a declared model whose forward returns {size} logits")
            assert bank.read_bytes() == before

    def test_guided_recall_of_per_task_batch_norms_is_refused_before_writing(self, cnn_bank, tmp_path):
        bank = tmp_path / "bn.h5"
        bank.write_bytes(cnn_bank.read_bytes())
        before = bank.read_bytes()
        line = _one_error_line(runner.invoke(app, ["recall", str(bank), "--budget", "64KiB", "--guided", "--model",
                                                   "tests.cli.factories:small_cnn", "--device", "cpu"]))
        assert "unguided recall for a model with per-task batch norms" in line and bank.read_bytes() == before
        result = runner.invoke(app, ["recall", str(bank), "--budget", "64KiB", "--model",
                                     "tests.cli.factories:small_cnn", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        assert "per-task batch-norm statistics" in result.stderr

    def test_a_factory_for_a_built_in_bank_is_refused(self, tmp_path):
        bank = _train(tmp_path / "lenet.h5", "--hidden", "8", "--tasks", "1")
        line = _one_error_line(runner.invoke(app, ["evaluate", str(bank), "--model", "tests.cli.factories:small_cnn",
                                                   "--device", "cpu"]))
        assert "no MODULE:FACTORY for a bank of the built-in 'lenet'" in line

    def test_a_banks_factory_is_shown_quoted_never_as_advice(self, tmp_path, cnn_bank):
        bank = tmp_path / "esc.h5"
        bank.write_bytes(cnn_bank.read_bytes())
        _edit_metadata(bank, lambda m: m["model"].__setitem__("factory", "os:system\x1b[31m\nSECOND LINE"))
        line = _one_error_line(runner.invoke(app, ["evaluate", str(bank), "--device", "cpu"]))
        assert "\x1b" not in line and "'os:system\\x1b[31m\\nSECOND LINE'" in line and "pass --model" not in line

    def test_a_bad_task_to_mask_names_the_bank_and_the_entry(self, tmp_path):
        from supsup_core.errors import ConfigError
        from supsup_core.persistence import nns_task_to_mask

        assert nns_task_to_mask({"training": {"nns": {"task_to_mask": {"0": 1, "1": 0}}}}, 2, "b.h5") == {0: 1, 1: 0}
        assert nns_task_to_mask({"training": {}}, 2, "b.h5") is None
        for bad, received in (({"0": 99}, "'0': 99"), ({"x": 0}, "'x': 0"), ({"0": True}, "'0': True"),
                              ("x", "str")):
            with pytest.raises(ConfigError, match="b.h5: expected a 'training.nns.task_to_mask'") as info:
                nns_task_to_mask({"training": {"nns": {"task_to_mask": bad}}}, 2, "b.h5")
            assert info.value.received == received


def test_resume_says_it_drops_a_stale_unknown_threshold(tmp_path):
    bank = _train(tmp_path / "t.h5", "--hidden", "8", "--tasks", "1")
    _edit_metadata(bank, lambda m: m.__setitem__("unknown_threshold", {"signal": "objective", "value": 1.0,
                                                                       "objective": "H", "per": "batch"}))
    result = runner.invoke(app, ["train", "--out", str(bank), "--hidden", "8", "--tasks", "2", "--resume", *FAST])
    assert result.exit_code == 0, result.output
    assert "unknown-input threshold was calibrated on 1 tasks and is dropped" in result.stderr
    with open_bank(bank, "r") as b:
        assert "unknown_threshold" not in b.metadata and len(b.tasks()) == 2


def test_top_k_refuses_nan_scores():
    import torch

    from supsup_core.errors import ConfigError
    from supsup_core.subnet import topk_keep

    scores = torch.rand(1000)
    assert int(topk_keep(scores, 0.01).sum()) == 10
    scores[::7] = float("nan")
    with pytest.raises(ConfigError, match="scores: expected finite scores"):
        topk_keep(scores, 0.01)


def test_an_architecture_entry_that_is_not_a_layer_is_named():
    from supsup_core.persistence import _first_layer_difference

    current = [{"name": "1", "type": "Linear", "shape": [48, 64]}]
    assert _first_layer_difference([1], current) == "layer 0: the file has 1 where a layer description (a JSON " \
                                                    "object) belongs"
    assert _first_layer_difference(current, current) is None
    assert "the model has no such layer" in _first_layer_difference([*current, {"name": "x"}], current)
