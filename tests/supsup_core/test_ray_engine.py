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
