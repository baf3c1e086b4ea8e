"""``train``, ``evaluate`` and ``recall`` on any model and any data: MODULE:FACTORY models, the ResNets, CIFAR
files in the official layouts, scikit-learn's digits, image folders; and the bad inputs each one can meet."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from supsup_core.data import ImageData, load_data, write_cifar_binary, write_cifar_python
from supsup_core.persistence import read_bank_metadata
from supsup_store_cli.app import app

from .refusals import one_error_line as _one_error_line

runner = CliRunner()
FAST = ["--batches-per-task", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def factory_bank(tmp_path_factory):
    path = tmp_path_factory.mktemp("factory") / "digits.h5"
    result = runner.invoke(app, ["train", "--out", str(path), "--model", "tests.cli.factories:digits_mlp", "--data", "digits",
                                 "--tasks", "2", "--lr", "0.01", *FAST])
    assert result.exit_code == 0, result.output
    return path


def _cifar(folder, kind: str = "cifar10", n: int = 40, layout=write_cifar_binary):
    rng = np.random.default_rng(0)
    classes = 10 if kind == "cifar10" else 100
    data = ImageData(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % classes,
                     rng.integers(0, 256, (n // 2, 3, 32, 32), dtype=np.uint8), np.arange(n // 2) % classes,
                     source="written", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return layout(folder, data, kind)


class TestFactoryModels:
    def test_a_users_model_trains_on_digits_and_records_its_factory(self, factory_bank):
        metadata = read_bank_metadata(factory_bank)
        assert metadata["model"]["factory"] == "tests.cli.factories:digits_mlp"
        assert metadata["benchmark"]["stream"] == "split" and metadata["benchmark"]["data_source"] == "digits"
        assert [layer["name"] for layer in metadata["architecture"]] == ["1", "3"]

    def test_evaluate_needs_the_factory_again_and_says_so(self, factory_bank):
        line = _one_error_line(runner.invoke(app, ["evaluate", str(factory_bank), "--device", "cpu"]))
        assert line.startswith("Error: --model: expected the MODULE:FACTORY that built the bank's model")
        assert "made by 'tests.cli.factories:digits_mlp'" in line

    def test_evaluate_with_the_factory(self, factory_bank):
        result = runner.invoke(app, ["evaluate", str(factory_bank), "--model", "tests.cli.factories:digits_mlp",
                                     "--device", "cpu", "--json"])
        assert result.exit_code == 0, result.output
        payload = json.loads(result.stdout)
        assert payload["stored_reproduced"] is True and payload["n_masks"] == 2

    def test_evaluate_with_another_architecture_names_the_layer(self, factory_bank):
        line = _one_error_line(runner.invoke(app, ["evaluate", str(factory_bank), "--model",
                                                   "tests.cli.factories:wider_digits_mlp", "--device", "cpu"]))
        assert "layer 0 '1'" in line and "shape" in line

    @pytest.mark.parametrize("factory, words", [
        ("tests.cli.factories:nothing_to_mask", "nn.Linear or nn.Conv1d/2d/3d layers to mask"),
        ("tests.cli.factories:with_embedding", "layer '0' (Embedding"),
        ("tests.cli.factories:not_a_module", "returning a torch.nn.Module"),
        ("tests.cli.no_such_module:make", "an importable module"),
        ("tests.cli.factories:no_such_function", "a callable 'no_such_function'"),
        ("not a factory", "--model: expected one of"),
    ])
    def test_bad_factories_exit_2_with_one_line(self, tmp_path, factory, words):
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--model", factory,
                                                   "--data", "digits", *FAST]))
        assert words in line and line.startswith("Error: --model")
        assert not (tmp_path / "x.h5").exists()


class TestBuiltinImageModels:
    def test_gemresnet18_on_digits_fitted_to_its_input_with_er_sparsity(self, tmp_path):
        path = tmp_path / "gem.h5"
        result = runner.invoke(app, ["train", "--out", str(path), "--model", "gemresnet18", "--data", "digits@3x32x32",
                                     "--split", "2", "--tasks", "2", "--sparsity", "8", "--batches-per-task", "2",
                                     "--device", "cpu"])
        assert result.exit_code == 0, result.output
        metadata = read_bank_metadata(path)
        assert metadata["model"]["arch"] == "gemresnet18" and metadata["model"]["er_sigma"] == 8.0
        assert metadata["model"]["mask_mode"] == "topk" and metadata["training"]["scenario"] == "gg"
        assert metadata["model"]["output_size"] == 2 and metadata["benchmark"]["relabel"] is True
        assert len([a for a in metadata.get("architecture", []) if a["type"] == "TaskBatchNorm"]) == 20

    @pytest.mark.parametrize("layout", [write_cifar_binary, write_cifar_python])
    def test_cifar10_files_in_the_official_layouts(self, tmp_path, layout):
        folder = _cifar(tmp_path, layout=layout)
        path = tmp_path / "c.h5"
        result = runner.invoke(app, ["train", "--out", str(path), "--model", "tests.cli.factories:small_cnn",
                                     "--data", f"cifar10:{folder}", "--tasks", "2", *FAST])
        assert result.exit_code == 0, result.output
        bench = read_bank_metadata(path)["benchmark"]
        assert bench["augment"] == {"crop_padding": 4, "flip": True} and bench["classes_per_task"] == 2
        result = runner.invoke(app, ["evaluate", str(path), "--model", "tests.cli.factories:small_cnn", "--device", "cpu",
                                     "--json", "--method", "oneshot"])
        assert result.exit_code == 0, result.output

    def test_a_cifar_folder_missing_a_file_is_named(self, tmp_path):
        folder = _cifar(tmp_path)
        (folder / "data_batch_3.bin").unlink()
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--data", f"cifar10:{folder}",
                                                   *FAST]))
        assert "data_batch_3.bin" in line

    def test_a_pickle_in_place_of_a_binary_file_is_refused(self, tmp_path):
        binary = _cifar(tmp_path / "b")
        python = _cifar(tmp_path / "p", layout=write_cifar_python)
        (binary / "test_batch.bin").write_bytes((python / "test_batch").read_bytes())
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--data", f"cifar10:{binary}",
                                                   *FAST]))
        assert "test_batch.bin" in line

    def test_bank_data_that_is_gone_is_named_with_what_to_pass(self, tmp_path):
        folder = _cifar(tmp_path)
        path = tmp_path / "c.h5"
        assert runner.invoke(app, ["train", "--out", str(path), "--model", "tests.cli.factories:small_cnn", "--data",
                                   f"cifar10:{folder}", "--tasks", "2", *FAST]).exit_code == 0
        for f in folder.iterdir():
            f.unlink()
        line = _one_error_line(runner.invoke(app, ["evaluate", str(path), "--model", "tests.cli.factories:small_cnn",
                                                   "--device", "cpu"]))
        assert f"cifar10:{folder}" in line and "cifar10:PATH" in line

    @pytest.mark.parametrize("option, value", [("--split", "0"), ("--split", "2:random"), ("--sparsity", "-1"),
                                               ("--batchnorm", "group"), ("--base", "imagenet"), ("--data", "svhn")])
    def test_bad_options_exit_2_naming_them(self, tmp_path, option, value):
        line = _one_error_line(runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), "--data", "digits", *FAST,
                                                   option, value]))
        assert option in line or ("--data" in line and option == "--data")


def test_split_cifar100_class_order_is_the_references_for_seeds_0_to_4(tmp_path):
    """The reference: np.random.seed(seed); perm = np.random.permutation(100); task i = perm[5i:5i+5], relabelled."""
    from supsup_core.data import benchmark_stream

    folder = _cifar(tmp_path, "cifar100", n=200)
    data = load_data(f"cifar100:{folder}")
    for seed in range(5):
        np.random.seed(seed)
        perm = np.random.permutation(100)
        stream = benchmark_stream(data, "split", seed=seed)
        assert stream.n_tasks == 20 and stream.output_classes == 5
        for task in (0, 7, 19):
            assert stream.classes(task) == tuple(perm[5 * task : 5 * task + 5])
            _, y, _ = next(stream.test_batches(task, 1000))
            x_all = data.test_labels[np.isin(data.test_labels, perm[5 * task : 5 * task + 5])]
            assert sorted(y.tolist()) == sorted(int(np.flatnonzero(perm[5 * task : 5 * task + 5] == c)[0]) for c in x_all)


def test_unit_masks_of_a_users_model_are_encoded_and_recalled(tmp_path):
    """HopSupSup on a module of yours: its BatchNorm carries the unit masks; recall finds every mask again."""
    path = tmp_path / "units.h5"
    result = runner.invoke(app, ["train", "--out", str(path), "--model", "tests.cli.factories:units_mlp", "--data", "digits",
                                 "--scenario", "hopsupsup", "--tasks", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert read_bank_metadata(path)["model"]["wrap"]["masks"] == "units"
    result = runner.invoke(app, ["recall", str(path), "--budget", "64KiB", "--model", "tests.cli.factories:units_mlp",
                                 "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["summary"]["exact"] == 3 and payload["mode"]["guided"] is True


def test_the_current_folder_holds_a_users_factory(tmp_path, monkeypatch):
    """--model mynets:make finds mynets.py in the folder the command runs in, as `python -m` would."""
    (tmp_path / "mynets.py").write_text("from torch import nn\n\ndef make():\n"
                                        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--out", "m.h5", "--model", "mynets:make", "--data", "digits", "--tasks", "1",
                                 *FAST])
    assert result.exit_code == 0, result.output


def test_split_imagenet_command_on_an_image_folder(tmp_path):
    """SplitImageNet as the reference runs it: classes in np.random.seed(1)'s permutation, cut into tasks, relabelled;
    here on a tiny folder in ImageNet's layout (train/<class>/, val/<class>/)."""
    from PIL import Image

    from supsup_core.data import ImageFolderData, benchmark_stream

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(6):
            folder = tmp_path / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    spec = f"imagefolder:{tmp_path / 'imagenet'}"
    np.random.seed(1)
    perm = np.random.permutation(6)
    stream = benchmark_stream(ImageFolderData(tmp_path / "imagenet"), "split", classes_per_task=2)
    assert [stream.tasks[t].label_map.tolist() for t in range(3)] == [
        [int(np.flatnonzero(perm[2 * t : 2 * t + 2] == c)[0]) if c in perm[2 * t : 2 * t + 2] else -1 for c in range(6)]
        for t in range(3)]
    x, y, _ = next(stream.train_batches(1, batch_size=4))
    assert x.shape == (4, 3, 224, 224) and set(y.tolist()) <= {0, 1}
    path = tmp_path / "in.h5"
    result = runner.invoke(app, ["train", "--out", str(path), "--model", "tests.cli.factories:small_cnn", "--data", spec,
                                 "--split", "2", "--tasks", "2", "--batches-per-task", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    bench = read_bank_metadata(path)["benchmark"]
    assert bench["stream"] == "split" and bench["order"] == "seeded" and bench["seed"] == 1
