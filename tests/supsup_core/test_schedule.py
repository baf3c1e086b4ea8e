"""Learning-rate schedules: the cosine per epoch (SplitCIFAR100) and warm-up + cosine (SplitImageNet)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from supsup_core.errors import ConfigError
from supsup_core.training import TrainConfig, Trainer, make_optimizer
from supsup_core.training.config import steps_per_epoch


def test_cosine_matches_torch_cosine_annealing_stepped_per_epoch():
    torch.manual_seed(0)
    cfg = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4, schedule="cosine", batches_per_task=7 * 4)
    ours = nn.Linear(5, 3)
    theirs = nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    trainer = Trainer(ours, ours.parameters(), cfg, epoch_steps=4)
    opt = torch.optim.Adam(theirs.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7)
    for step in range(28):
        x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))
        trainer.train_batch((x, y, torch.zeros(8, dtype=torch.long)))
        assert math.isclose(trainer.optimizer.lr, opt.param_groups[0]["lr"], rel_tol=1e-12), step  # this step's rate
        opt.zero_grad()
        nn.functional.cross_entropy(theirs(x), y).backward()
        opt.step()
        if step % 4 == 3:
            sched.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_warmup_then_cosine_is_the_reference_imagenet_rule():
    cfg = TrainConfig(optimizer="adam", lr=0.2, schedule="cosine", warmup_epochs=5, batches_per_task=100 * 3)
    rates = [cfg.learning_rate(e * 3, 3, 300) for e in range(100)]
    for e, r in enumerate(rates):
        want = 0.2 * (e + 1) / 5 if e < 5 else 0.5 * (1 + math.cos(math.pi * (e - 5) / 95)) * 0.2
        assert math.isclose(r, want, rel_tol=1e-12), e
    assert all(cfg.learning_rate(e * 3 + k, 3, 300) == rates[e] for e in range(100) for k in range(3))


def test_constant_is_the_default_and_a_warmup_needs_the_cosine():
    assert TrainConfig().schedule == "constant" and TrainConfig(lr=0.3).learning_rate(10**6, 1, 1) == 0.3
    with pytest.raises(ConfigError, match="^warmup_epochs: expected 0 with the constant schedule"):
        TrainConfig(warmup_epochs=2)
    with pytest.raises(ConfigError, match="^schedule: expected one of"):
        TrainConfig(schedule="linear")
    with pytest.raises(ConfigError, match="^epoch_steps: expected batches per epoch"):
        Trainer(nn.Linear(2, 2), nn.Linear(2, 2).parameters(), TrainConfig(schedule="cosine"))
    with pytest.raises(ConfigError, match="^schedule: expected constant for a torch.optim optimiser"):
        make_optimizer(nn.Linear(2, 2).parameters(), TrainConfig(schedule="cosine"))


def test_old_configs_without_a_schedule_read_back_as_constant():
    stored = TrainConfig().to_dict()
    del stored["schedule"], stored["warmup_epochs"]
    assert TrainConfig.from_dict(stored) == TrainConfig()


def test_steps_per_epoch_counts_the_last_partial_batch_unless_dropped():
    assert steps_per_epoch(256, 128) == 2 and steps_per_epoch(257, 128) == 3
    assert steps_per_epoch(257, 128, drop_last=True) == 2 and steps_per_epoch(5, 128, drop_last=True) == 1


def test_epochs_and_the_cosine_train_the_same_masks_batched_and_one_task_at_a_time():
    from supsup_core.config import ModelConfig
    from supsup_core.data import make_stream
    from supsup_core.training import TrainingSetup
    from supsup_core.training.batched import BatchedTaskTrainer
    from supsup_core.training.jobs import TaskWorker

    import numpy as np

    config = TrainConfig(optimizer="adam", lr=1e-2, batch_size=512, batches_per_task=None, epochs=2,
                         schedule="cosine", warmup_epochs=1, seed=5)
    setup = TrainingSetup.from_objects(ModelConfig(arch="lenet", hidden=(24, 12), output_size=10, seed=3),
                                       make_stream("permuted-mnist", 3).describe(), config)
    worker = TaskWorker(setup, "cpu")
    steps = []
    worker.callbacks = (("on_batch_end", lambda tr: steps.append(tr.optimizer.lr)),)
    one = {t: worker.run(t) for t in (0, 1)}
    per_epoch = steps_per_epoch(worker.stream.train_size(0), 512)
    assert len(steps) == 2 * 2 * per_epoch  # two tasks, two epochs each
    assert steps[:per_epoch] == [1e-2] * per_epoch and steps[per_epoch] == steps[2 * per_epoch - 1] == 1e-2
    for outcome in BatchedTaskTrainer(setup, k=2).run([0, 1]):
        for name, mask in outcome.masks.items():
            assert np.array_equal(mask, one[outcome.task].masks[name]), (outcome.task, name)


def test_epochs_exclude_batches_per_task():
    with pytest.raises(ConfigError, match="^epochs: expected None when batches_per_task is set"):
        TrainConfig(epochs=3)
    assert TrainConfig(batches_per_task=None, epochs=3).task_steps(7) == 21
