"""The Ray engine: 20 tasks on a local Ray instance give the inline engine's bank (marked ``ray``; CI runs it)."""

from __future__ import annotations

import numpy as np
import pytest

from hopfield_masks.backends import open_bank
from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.persistence import benchmark_metadata
from supsup_core.training import BankTrainingConfig, TrainConfig, TrainingSetup, train_to_bank

pytestmark = pytest.mark.ray


def _contents(path):
    with open_bank(path, "r") as bank:
        names = bank.tasks()
        return bank.metadata, [bank.read_task(n) for n in names], [bank.task_attrs(n) for n in names]


def test_twenty_tasks_on_local_ray_equal_the_inline_bank(tmp_path):
    """--ray with 2 actors commits exactly the bank the driver alone commits."""
    pytest.importorskip("ray")
    stream = make_stream("permuted-mnist", 20)
    setup = TrainingSetup.from_objects(ModelConfig(arch="lenet", hidden=(32, 16), output_size=20, seed=1),
                                       stream.describe(), TrainConfig(lr=1e-2, batches_per_task=6, batch_size=64))
    bench = benchmark_metadata(stream, 0)
    train_to_bank(tmp_path / "inline.h5", setup, BankTrainingConfig(n_tasks=20), benchmark=bench, scenario="gnu")
    train_to_bank(tmp_path / "ray.h5", setup, BankTrainingConfig(n_tasks=20, workers=2, ray=True), benchmark=bench,
                  scenario="gnu")
    meta_a, masks_a, attrs_a = _contents(tmp_path / "inline.h5")
    meta_b, masks_b, attrs_b = _contents(tmp_path / "ray.h5")
    assert meta_a == meta_b and attrs_a == attrs_b and len(masks_b) == 20
    for a, b in zip(masks_a, masks_b):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_a_users_factory_model_with_task_batchnorm_on_ray_equals_the_inline_bank(tmp_path):
    """A MODULE:FACTORY model (per-task BatchNorm statistics included) trains on Ray actors into the inline bank."""
    pytest.importorskip("ray")
    from supsup_core.data import load_data, make_stream
    from supsup_core.models import factory_model
    from supsup_core.persistence import read_bank_statistics
    from supsup_core.wrapping import WrapConfig

    stream = make_stream("split", None, load_data("digits@3x8x8"), classes_per_task=2, seed=0)
    model = factory_model("tests.cli.factories:small_cnn", WrapConfig(seed=2))
    setup = TrainingSetup.from_objects(model, stream.describe(), TrainConfig(lr=1e-2, batches_per_task=4, batch_size=32))
    bench = benchmark_metadata(stream, 0)
    train_to_bank(tmp_path / "inline.h5", setup, BankTrainingConfig(n_tasks=3), benchmark=bench, scenario="gg")
    train_to_bank(tmp_path / "ray.h5", setup, BankTrainingConfig(n_tasks=3, workers=2, ray=True), benchmark=bench,
                  scenario="gg")
    norms = {n: m.num_features for n, m in model.norm_layers().items()}
    with open_bank(tmp_path / "inline.h5") as a, open_bank(tmp_path / "ray.h5") as b:
        assert a.metadata == b.metadata and a.tasks() == b.tasks()
        for t in a.tasks():
            assert all(np.array_equal(a.read_task(t)[k], b.read_task(t)[k]) for k in a.read_task(t))
            sa, sb = read_bank_statistics(a, t, norms, "a"), read_bank_statistics(b, t, norms, "b")
            assert all(np.array_equal(sa[k], sb[k]) for k in sa)
