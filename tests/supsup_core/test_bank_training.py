"""Tests of supsup_core/training/{jobs,engines,bank_training}.py: training into a bank, engines, resume."""

from __future__ import annotations

import numpy as np
import pytest

from hopfield_masks.backends import open_bank
from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import ConfigError
from supsup_core.models import build_model
from supsup_core.persistence import benchmark_metadata, load_model
from supsup_core.training import (
    BankTrainingConfig,
    ResumeMismatchError,
    TrainConfig,
    TrainingSetup,
    evaluate_gg,
    make_engine,
    train_stream,
    train_to_bank,
)
from supsup_core.training.engines import InlineEngine, ProcessEngine

MODEL = ModelConfig(arch="lenet", hidden=(24, 12), output_size=20, seed=3)
CONFIG = TrainConfig(lr=1e-2, batches_per_task=4, batch_size=32, seed=5)


def _setup(n_tasks: int = 6, model: ModelConfig = MODEL, config: TrainConfig = CONFIG) -> tuple[TrainingSetup, object]:
    stream = make_stream("permuted-mnist", n_tasks)
    return TrainingSetup.from_objects(model, stream.describe(), config), stream


def _bank_contents(path) -> tuple[dict, list, list]:
    with open_bank(path, "r") as bank:
        names = bank.tasks()
        return bank.metadata, [bank.read_task(n) for n in names], [bank.task_attrs(n) for n in names]


def _same_banks(a, b) -> None:
    meta_a, masks_a, attrs_a = _bank_contents(a)
    meta_b, masks_b, attrs_b = _bank_contents(b)
    assert meta_a == meta_b and attrs_a == attrs_b and len(masks_a) == len(masks_b)
    for ta, tb in zip(masks_a, masks_b):
        assert list(ta) == list(tb) and all(np.array_equal(ta[k], tb[k]) for k in ta)


def _train(path, n, setup_stream, **run):
    setup, stream = setup_stream
    return train_to_bank(path, setup, BankTrainingConfig(n_tasks=n, **run), benchmark=benchmark_metadata(stream, 5),
                         scenario="gnu")


class TestTrainToBank:
    def test_masks_and_accuracies_equal_the_sequential_train_stream(self, tmp_path):
        """Scratch-model jobs give the same masks and own-task GG accuracies as train_stream on one model."""
        setup, stream = _setup(4)
        model = build_model(MODEL)
        matrix = train_stream(model, stream, CONFIG)
        result = _train(tmp_path / "b.h5", 4, (setup, stream))
        loaded, metadata = load_model(tmp_path / "b.h5")
        assert metadata["n_tasks"] == 4 and loaded.num_tasks == 4
        for t in range(4):
            a, b = loaded.export_masks(t), model.export_masks(t)
            assert all(np.array_equal(a[k], b[k]) for k in a)
        diagonal = {t: float(matrix.values[t, t]) for t in range(4)}
        assert result.gg == diagonal == evaluate_gg(loaded, stream).accuracy
        assert result.rows == {4: diagonal} and result.forgetting() == 0.0

    def test_each_task_is_committed_with_its_accuracy_and_checkpoint_rows(self, tmp_path):
        """Task attrs carry the own GG accuracy; checkpoint tasks also carry the whole row."""
        path = tmp_path / "b.h5"
        seen = []
        setup, stream = _setup(5)
        train_to_bank(path, setup, BankTrainingConfig(n_tasks=5, eval_at=(2, 5)), benchmark=benchmark_metadata(stream, 5),
                      scenario="gnu", on_task=lambda p: seen.append((p.done, p.total)))
        _, masks, attrs = _bank_contents(path)
        assert seen == [(i, 5) for i in range(1, 6)] and len(masks) == 5
        assert [("gg_row" in a) for a in attrs] == [False, True, False, False, True]
        assert len(attrs[4]["gg_row"]) == 5 and attrs[4]["gg_row"][1] == attrs[1]["accuracy"]["gg"]

    def test_two_worker_processes_give_the_same_bank(self, tmp_path):
        """--workers 2 (the driver and a forked process) commits the same bank as the inline engine."""
        pair = _setup(4)
        _train(tmp_path / "one.h5", 4, pair)
        _train(tmp_path / "two.h5", 4, pair, workers=2)
        _same_banks(tmp_path / "one.h5", tmp_path / "two.h5")

    def test_a_starting_child_gets_work_at_once(self):
        """The child's first two tasks are queued before it starts, so the driver never trains task 0 alone while
        the child sits idle: tasks 0 and 1 go to the child, the driver trains from task 2 (the masks stay the same)."""
        setup, _ = _setup(4)
        engine = ProcessEngine(2)
        outcomes = list(engine.outcomes(setup, range(4)))
        assert [o.task for o in outcomes] == [0, 1, 2, 3]
        assert engine.trained_by[0] == engine.trained_by[1] == "child" and engine.trained_by[2] == "driver"
        inline = list(InlineEngine().outcomes(setup, range(4)))
        assert all(np.array_equal(a.masks[k], b.masks[k]) for a, b in zip(inline, outcomes) for k in a.masks)

    @pytest.mark.parametrize("start_method", ["fork", "spawn"])
    def test_child_processes_train_the_same_masks_as_the_driver(self, start_method):
        """Tasks trained in forked or spawned children (driver_trains=False) equal the inline engine's, mask for mask."""
        setup, _ = _setup(3)
        inline = list(InlineEngine().outcomes(setup, range(3)))
        engine = ProcessEngine(2, driver_trains=False, start_method=start_method)
        children = list(engine.outcomes(setup, range(3)))
        assert engine.trained_by == {0: "child", 1: "child", 2: "child"}
        assert [o.task for o in children] == [0, 1, 2]
        for a, b in zip(inline, children):
            assert a.gg_accuracy == b.gg_accuracy and a.masks.keys() == b.masks.keys()
            assert all(np.array_equal(a.masks[k], b.masks[k]) for k in a.masks)
        with pytest.raises(ConfigError, match="workers"):
            ProcessEngine(1)
        with pytest.raises(ConfigError, match="start_method"):
            ProcessEngine(2, start_method="forkserver")

    def test_resume_equals_an_uninterrupted_run(self, tmp_path):
        """3 tasks, then resume to 6: the bank equals a 6-task run's (masks, attrs, metadata)."""
        pair = _setup(6)
        _train(tmp_path / "full.h5", 6, pair, eval_at=(6,))
        _train(tmp_path / "part.h5", 3, pair, eval_at=())
        result = _train(tmp_path / "part.h5", 6, pair, eval_at=(6,), resume=True)
        assert result.resumed_from == 3 and sorted(result.train_seconds) == [3, 4, 5]
        _same_banks(tmp_path / "full.h5", tmp_path / "part.h5")

    def test_entropy_bank_resumed_equals_an_uninterrupted_packed_run(self, tmp_path):
        """hdf5-entropy: 2 tasks, then resume to 4 (appends decode the chain), equals a 4-task hdf5-packed run."""
        pair = _setup(4)
        _train(tmp_path / "packed.h5", 4, pair, eval_at=(4,))
        _train(tmp_path / "coded.h5", 2, pair, eval_at=(), backend="hdf5-entropy")
        result = _train(tmp_path / "coded.h5", 4, pair, eval_at=(4,), resume=True)  # the bank's backend, not the default
        assert result.resumed_from == 2
        _same_banks(tmp_path / "packed.h5", tmp_path / "coded.h5")
        with open_bank(tmp_path / "coded.h5") as bank:
            assert bank.backend_id == "hdf5-entropy"
        model, _ = load_model(tmp_path / "coded.h5")  # what evaluate loads
        assert model.num_tasks == 4

    def test_resume_of_a_complete_bank_trains_nothing(self, tmp_path):
        """Resuming a bank that holds every task leaves it unchanged."""
        pair = _setup(2)
        _train(tmp_path / "b.h5", 2, pair)
        before = (tmp_path / "b.h5").read_bytes()
        result = _train(tmp_path / "b.h5", 2, pair, resume=True)
        assert result.resumed_from == 2 and result.train_seconds == {} and (tmp_path / "b.h5").read_bytes() == before

    @pytest.mark.parametrize(
        ("change", "named"),
        [
            ({"model": ModelConfig(arch="lenet", hidden=(24, 12), output_size=20, seed=4)}, "model.seed"),
            ({"config": TrainConfig(lr=2e-2, batches_per_task=4, batch_size=32, seed=5)}, "config.lr"),
        ],
    )
    def test_resume_with_other_settings_is_refused_naming_the_mismatch(self, tmp_path, change, named):
        """Another base network or training config: ResumeMismatchError naming the field, file unchanged."""
        path = tmp_path / "b.h5"
        _train(path, 2, _setup(4))
        before = path.read_bytes()
        with pytest.raises(ResumeMismatchError, match=named):
            _train(path, 4, _setup(4, **change), resume=True)
        assert path.read_bytes() == before

    def test_resume_on_another_benchmark_is_refused(self, tmp_path):
        """A rotated-mnist run cannot continue a permuted-mnist bank."""
        path = tmp_path / "b.h5"
        _train(path, 2, _setup(4))
        stream = make_stream("rotated-mnist", 4)
        setup = TrainingSetup.from_objects(MODEL, stream.describe(), CONFIG)
        with pytest.raises(ResumeMismatchError, match="benchmark.stream"):
            _train(path, 4, (setup, stream), resume=True)

    def test_existing_bank_needs_resume_or_overwrite(self, tmp_path):
        """A new run onto an existing file is refused before any training."""
        path = tmp_path / "b.h5"
        _train(path, 1, _setup(2))
        with pytest.raises(ConfigError, match="--out"):
            _train(path, 2, _setup(2))
        with pytest.raises(ConfigError, match="--resume"):
            _train(tmp_path / "missing.h5", 2, _setup(2), resume=True)


class TestChunkedLoading:
    def test_chunks_give_the_same_model_and_the_fingerprint_is_checked(self, tmp_path):
        """load_model reads a few tasks at a time: any chunk size rebuilds the same packed masks; other bases are refused."""
        import torch

        from supsup_core.errors import BaseNetworkMismatchError
        from supsup_core.persistence import load_masks_into

        path = tmp_path / "b.h5"
        _train(path, 5, _setup(5))
        whole, _ = load_model(path, chunk=5)
        chunked, _ = load_model(path, chunk=2)
        assert chunked.num_tasks == 5 and not chunked.training
        for a, b in zip(whole.masked_layers().values(), chunked.masked_layers().values()):
            assert torch.equal(a.packed[:, :5], b.packed[:, :5]) and torch.equal(a.mask_sum, b.mask_sum)
            assert a.packed.shape[1] == 8  # reserved once, rounded up to whole words of tasks
        other = build_model(ModelConfig(arch="lenet", hidden=(24, 12), output_size=20, seed=4))
        with pytest.raises(BaseNetworkMismatchError):
            load_masks_into(other, path)
        with pytest.raises(ConfigError, match="chunk"):
            load_model(path, chunk=0)


class TestConfigAndEngines:
    def test_bank_training_config_validates(self):
        """Bad task counts, checkpoints and worker counts raise ConfigError naming the option."""
        with pytest.raises(ConfigError, match="--tasks"):
            BankTrainingConfig(n_tasks=0)
        with pytest.raises(ConfigError, match="--eval-at"):
            BankTrainingConfig(n_tasks=3, eval_at=(0,))
        with pytest.raises(ConfigError, match="--workers"):
            BankTrainingConfig(n_tasks=3, workers=0)
        with pytest.raises(ConfigError, match="--backend: expected one of hdf5-packed, hdf5-sparse, hdf5-entropy"):
            BankTrainingConfig(n_tasks=3, backend="zip")
        assert BankTrainingConfig(n_tasks=3, backend="hdf5-entropy").backend == "hdf5-entropy"
        assert BankTrainingConfig(n_tasks=3, eval_at=(3, 1, 3)).checkpoints() == (1, 3)
        assert BankTrainingConfig(n_tasks=3, full_matrix=True).checkpoints() == (1, 2, 3)

    def test_make_engine_picks_inline_or_processes(self):
        """One worker trains inline; more use processes; workers on a GPU are refused."""
        assert isinstance(make_engine(1), InlineEngine) and isinstance(make_engine(2), ProcessEngine)
        with pytest.raises(ConfigError, match="--workers"):
            make_engine(2, device="cuda")

    def test_setup_round_trips_and_validates(self):
        """TrainingSetup survives to_dict/from_dict and rejects a bad model config."""
        setup, _ = _setup(2)
        assert TrainingSetup.from_dict(setup.to_dict()) == setup
        bad = {**setup.to_dict(), "model": {**setup.model, "arch": "nope"}}
        with pytest.raises(ConfigError, match="arch"):
            TrainingSetup.from_dict(bad)
