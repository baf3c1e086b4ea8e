"""Tests of supsup_core/persistence.py: saving masks to banks, rebuilding models, refusing other base networks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank
from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import BaseNetworkMismatchError, ConfigError
from supsup_core.models import build_model
from supsup_core.persistence import (
    load_masks_into,
    load_model,
    read_bank_metadata,
    save_masks,
    stored_accuracies,
    stream_from_metadata,
)
from supsup_core.training import TrainConfig, evaluate_gg, train_stream

CONFIG = ModelConfig(arch="lenet", hidden=(24, 12), output_size=16, seed=5)


@pytest.fixture(scope="module")
def trained():
    """A tiny model with 2 trained tasks on permuted MNIST and its GG accuracies."""
    stream = make_stream("permuted-mnist", 2)
    model = build_model(CONFIG)
    train_stream(model, stream, TrainConfig(lr=1e-2, batches_per_task=15, batch_size=64), evaluate=False)
    return model, stream, evaluate_gg(model, stream).accuracy


def _save(trained, path, backend="hdf5-packed"):
    model, stream, acc = trained
    return save_masks(model, path, backend=backend, benchmark=stream.describe(), accuracies=acc, training={"scenario": "gnu"})


class TestSaveAndLoad:
    @pytest.mark.parametrize("backend", ["hdf5-packed", "hdf5-sparse"])
    def test_round_trip_restores_every_mask(self, trained, tmp_path, backend):
        """load_model rebuilds a model whose masks equal the saved ones, with either backend."""
        model = trained[0]
        path = tmp_path / "bank.h5"
        _save(trained, path, backend)
        loaded, metadata = load_model(path)
        assert loaded.num_tasks == 2 and loaded.config == model.config and not loaded.training
        for t in range(2):
            for name, mask in model.export_masks(t).items():
                np.testing.assert_array_equal(loaded.export_masks(t)[name], mask)
        assert metadata["benchmark"]["stream"] == "permuted-mnist" and metadata["training"] == {"scenario": "gnu"}

    def test_metadata_identifies_the_base_network(self, trained, tmp_path):
        """The bank metadata holds the model config, the base fingerprint, torch version and task count."""
        model = trained[0]
        _save(trained, tmp_path / "bank.h5")
        metadata = read_bank_metadata(tmp_path / "bank.h5")
        assert metadata["model"] == model.config.to_dict()
        assert metadata["base_fingerprint"] == model.base_fingerprint()
        assert metadata["n_tasks"] == 2 and metadata["torch_version"] and metadata["producer"] == "supsup_core"

    def test_accuracies_are_stored_per_task(self, trained, tmp_path):
        """Per-task accuracies come back from the task attrs, plain floats as 'gg'."""
        _save(trained, tmp_path / "bank.h5")
        assert stored_accuracies(tmp_path / "bank.h5") == {t: {"gg": a} for t, a in trained[2].items()}
        model = trained[0]
        save_masks(model, tmp_path / "named.h5", accuracies={0: {"gg": 0.5, "gnu": 0.25}})
        assert stored_accuracies(tmp_path / "named.h5") == {0: {"gg": 0.5, "gnu": 0.25}}

    def test_reload_in_a_fresh_process_reproduces_accuracies_exactly(self, trained, tmp_path):
        """A new Python process that loads the bank measures exactly the stored GG accuracies."""
        path = tmp_path / "bank.h5"
        _save(trained, path)
        code = (
            "import json, sys\n"
            "from supsup_core.persistence import load_model, stream_from_metadata\n"
            "from supsup_core.training import evaluate_gg\n"
            "model, meta = load_model(sys.argv[1])\n"
            "print(json.dumps(evaluate_gg(model, stream_from_metadata(meta)).to_dict()['accuracy']))\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
        assert {int(t): a for t, a in json.loads(out.stdout).items()} == trained[2]

    def test_stream_is_rebuilt_from_the_metadata(self, trained, tmp_path):
        """stream_from_metadata returns a stream with the recorded description."""
        _save(trained, tmp_path / "bank.h5")
        stream = stream_from_metadata(read_bank_metadata(tmp_path / "bank.h5"))
        assert stream.describe() == trained[1].describe()
        assert np.array_equal(stream.permutation(1), trained[1].permutation(1))

    def test_existing_file_needs_overwrite(self, trained, tmp_path):
        """Saving over an existing bank fails unless overwrite=True."""
        path = tmp_path / "bank.h5"
        _save(trained, path)
        with pytest.raises(Exception, match="bank.h5"):
            _save(trained, path)
        save_masks(trained[0], path, overwrite=True)
        assert read_bank_metadata(path)["benchmark"] == {}


class TestMismatch:
    @pytest.mark.parametrize(
        "changes, named",
        [({"seed": 6}, "seed"), ({"hidden": (24, 13)}, "hidden"), ({"arch": "fc1024"}, "arch"), ({"output_size": 17}, "output_size")],
    )
    def test_a_different_base_network_is_refused_naming_the_difference(self, trained, tmp_path, changes, named):
        """Loading into a model with another seed, width, architecture or output size names that field."""
        _save(trained, tmp_path / "bank.h5")
        other = build_model(ModelConfig(**{**CONFIG.to_dict(), "hidden": CONFIG.hidden, **changes}))
        with pytest.raises(BaseNetworkMismatchError, match=named):
            load_masks_into(other, tmp_path / "bank.h5")
        assert other.num_tasks == 0

    def test_a_fingerprint_difference_is_refused(self, trained, tmp_path, monkeypatch):
        """Same configuration but different base weights (e.g. another torch RNG) raises naming the fingerprint."""
        _save(trained, tmp_path / "bank.h5")
        model = build_model(CONFIG)
        monkeypatch.setattr(model, "base_fingerprint", lambda: "0" * 64)
        with pytest.raises(BaseNetworkMismatchError, match="fingerprint"):
            load_masks_into(model, tmp_path / "bank.h5")

    def test_loading_appends_to_a_matching_model(self, trained, tmp_path):
        """load_masks_into a fresh model of the same config appends the bank's tasks and returns the metadata."""
        _save(trained, tmp_path / "bank.h5")
        model = build_model(CONFIG)
        metadata = load_masks_into(model, tmp_path / "bank.h5")
        assert model.num_tasks == 2 and metadata["n_tasks"] == 2

    def test_a_bank_from_another_producer_is_refused(self, tmp_path):
        """A mask bank without supsup_core metadata raises ConfigError naming the path."""
        path = tmp_path / "foreign.h5"
        with create_bank(path, metadata={"seed": 1}) as bank:
            bank.write_task("0", {"fc1": np.ones((2, 2), bool)})
        with pytest.raises(ConfigError, match="foreign.h5"):
            load_model(path)

    def test_task_names_must_be_consecutive(self, trained, tmp_path):
        """A bank whose tasks are not named 0, 1, ... in order is refused."""
        path = tmp_path / "bank.h5"
        _save(trained, path)
        with open_bank(path, "a") as bank:
            bank.delete_task("0")
        with pytest.raises(ConfigError, match="tasks named"):
            load_model(path)


class TestSaveArguments:
    def test_bad_arguments_raise_config_error(self, trained, tmp_path):
        """A model without tasks, non-JSON metadata, bad accuracies and a missing path raise ConfigError."""
        model = trained[0]
        with pytest.raises(ConfigError, match="0 tasks"):
            save_masks(build_model(CONFIG), tmp_path / "a.h5")
        with pytest.raises(ConfigError, match="benchmark"):
            save_masks(model, tmp_path / "b.h5", benchmark={"data": object()})
        with pytest.raises(ConfigError, match="accuracies"):
            save_masks(model, tmp_path / "c.h5", accuracies={5: 0.5})
        with pytest.raises(ConfigError, match="accuracies"):
            save_masks(model, tmp_path / "d.h5", accuracies={0: 1.5})
        with pytest.raises(ConfigError, match="path"):
            save_masks(model, None)
        with pytest.raises(ConfigError, match="metadata"):
            stream_from_metadata({"benchmark": {}})
