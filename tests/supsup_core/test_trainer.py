"""Tests of supsup_core/training/{trainer,callbacks,config,tasks}.py: the loop, its events, presets, per-task training."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import ConfigError
from supsup_core.models import build_model
from supsup_core.training import (
    EVENTS,
    LossHistory,
    ProgressCallback,
    StopAfter,
    TrainConfig,
    Trainer,
    attach_callbacks,
    make_optimizer,
    train_stream,
    train_task,
)


def _batches(n: int, seed: int = 0, classes: int = 3) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 4, generator=g), torch.randint(0, classes, (8,), generator=g), torch.zeros(8, dtype=torch.long))
        for _ in range(n)
    ]


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(4, 3)


def _tiny_model() -> object:
    return build_model(ModelConfig(arch="lenet", hidden=(16, 8), output_size=12))


class TestTrainConfig:
    def test_gnu_preset_matches_the_paper(self):
        """The GNu preset is RMSprop 1e-4, batch 128, 1000 batches per task, no momentum or weight decay."""
        cfg = TrainConfig.for_scenario("gnu")
        assert (cfg.optimizer, cfg.lr, cfg.batch_size, cfg.batches_per_task) == ("rmsprop", 1e-4, 128, 1000)
        assert cfg.momentum == 0.0 and cfg.weight_decay == 0.0

    def test_hopsupsup_preset_is_sgd_for_the_demo_batches(self):
        """The HopSupSup preset is SGD 0.1, momentum 0.9, weight decay 1e-4, batch 128, 50 batches (the demo's)."""
        from supsup_core.demo import DEMO_BATCHES_PER_TASK

        cfg = TrainConfig.for_scenario("hopsupsup")
        assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.batches_per_task) == (
            "sgd", 0.1, 0.9, 1e-4, 50,
        )
        assert DEMO_BATCHES_PER_TASK == cfg.batches_per_task

    def test_overrides_apply_on_top_of_a_preset(self):
        """for_scenario applies keyword overrides to the preset."""
        assert TrainConfig.for_scenario("nns", batches_per_task=5, seed=7).batches_per_task == 5

    @pytest.mark.parametrize(
        "changes, argument",
        [
            ({"optimizer": "lbfgs"}, "optimizer"),
            ({"lr": 0.0}, "lr"),
            ({"lr": float("nan")}, "lr"),
            ({"momentum": 1.0}, "momentum"),
            ({"weight_decay": -1e-3}, "weight_decay"),
            ({"batch_size": 0}, "batch_size"),
            ({"batch_size": True}, "batch_size"),
            ({"batches_per_task": 0}, "batches_per_task"),
            ({"seed": -1}, "seed"),
        ],
    )
    def test_bad_values_raise_config_error_naming_the_field(self, changes, argument):
        """Each invalid field raises ConfigError whose argument is that field."""
        with pytest.raises(ConfigError) as info:
            TrainConfig(**changes)
        assert info.value.argument == argument

    def test_unknown_scenario_and_override_are_refused(self):
        """An unknown scenario or an override that is not a field raises ConfigError."""
        with pytest.raises(ConfigError, match="scenario"):
            TrainConfig.for_scenario("ggg")
        with pytest.raises(ConfigError, match="overrides"):
            TrainConfig.for_scenario("gnu", learning_rate=1.0)

    @given(
        st.sampled_from(["rmsprop", "sgd", "adam"]),
        st.floats(1e-6, 10.0),
        st.integers(1, 512),
        st.one_of(st.none(), st.integers(1, 5000)),
    )
    def test_dict_round_trip(self, optimizer, lr, batch, bpt):
        """to_dict followed by from_dict gives an equal config."""
        cfg = TrainConfig(optimizer=optimizer, lr=lr, batch_size=batch, batches_per_task=bpt)
        assert TrainConfig.from_dict(cfg.to_dict()) == cfg

    def test_from_dict_refuses_unknown_keys(self):
        """from_dict raises ConfigError on a key that is not a field."""
        with pytest.raises(ConfigError, match="only TrainConfig fields"):
            TrainConfig.from_dict({"lr": 0.1, "n_epochs": 3})


class TestMakeOptimizer:
    @pytest.mark.parametrize("name, cls", [("rmsprop", torch.optim.RMSprop), ("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
    def test_builds_the_named_optimizer_with_the_config_values(self, name, cls):
        """make_optimizer returns the named torch optimiser with lr and weight decay from the config."""
        p = nn.Parameter(torch.zeros(2))
        opt = make_optimizer([p], TrainConfig(optimizer=name, lr=0.5, weight_decay=0.01))
        assert isinstance(opt, cls)
        assert opt.param_groups[0]["lr"] == 0.5 and opt.param_groups[0]["weight_decay"] == 0.01


class TestTrainer:
    def test_callbacks_fire_in_order(self):
        """on_task_start fires once first, on_batch_end after every batch, on_task_end once last."""
        net = _linear()
        trainer = Trainer(net, net.parameters(), TrainConfig(optimizer="sgd", lr=0.1))
        events: list[tuple[str, int]] = []
        for event in EVENTS:
            trainer.add_callback(event, lambda tr, e=event: events.append((e, tr.iter_num)))
        trainer.run(_batches(3))
        assert events == [
            ("on_task_start", 0), ("on_batch_end", 1), ("on_batch_end", 2), ("on_batch_end", 3), ("on_task_end", 3),
        ]

    def test_callbacks_of_one_event_run_in_insertion_order_and_set_callback_replaces(self):
        """Callbacks of an event run in the order added; set_callback leaves only the new one."""
        net = _linear()
        trainer = Trainer(net, net.parameters(), TrainConfig(optimizer="sgd", lr=0.1))
        seen: list[str] = []
        trainer.add_callback("on_task_start", lambda tr: seen.append("a"))
        trainer.add_callback("on_task_start", lambda tr: seen.append("b"))
        trainer.run([])
        trainer.set_callback("on_task_start", lambda tr: seen.append("c"))
        trainer.run([])
        assert seen == ["a", "b", "c"]

    def test_training_reduces_the_loss_and_only_moves_given_params(self):
        """Steps lower the cross-entropy on a fixed batch and leave parameters not handed to the trainer alone."""
        net = _linear()
        bias_before = net.bias.detach().clone()
        batch = _batches(1)[0]
        trainer = Trainer(net, [net.weight], TrainConfig(optimizer="sgd", lr=0.5))
        summary = trainer.run([batch] * 20)
        assert summary.n_batches == 20
        first = nn.functional.cross_entropy(_linear()(batch[0]), batch[1]).item()
        assert summary.final_loss < first
        assert torch.equal(net.bias, bias_before)

    def test_same_seed_same_result(self):
        """Two runs from the same seeds end with bit-identical parameters."""
        results = []
        for _ in range(2):
            net = _linear(3)
            Trainer(net, net.parameters(), TrainConfig(optimizer="adam", lr=0.01)).run(_batches(5, seed=1))
            results.append(net.weight.detach().clone())
        assert torch.equal(results[0], results[1])

    def test_stop_from_a_callback_ends_the_run_and_task_end_still_fires(self):
        """StopAfter(2) ends the run after 2 batches and on_task_end still runs."""
        net = _linear()
        trainer = Trainer(net, net.parameters(), TrainConfig(optimizer="sgd", lr=0.1))
        ended: list[int] = []
        attach_callbacks(trainer, [StopAfter(2), ("on_task_end", lambda tr: ended.append(tr.iter_num))])
        assert trainer.run(_batches(5)).n_batches == 2
        assert ended == [2]

    def test_empty_run_reports_nan_losses(self):
        """A run over no batches takes no step and reports NaN losses."""
        net = _linear()
        summary = Trainer(net, net.parameters(), TrainConfig()).run([])
        assert summary.n_batches == 0 and summary.mean_loss != summary.mean_loss

    def test_out_of_range_labels_raise_config_error(self):
        """Labels outside 0..C-1 raise ConfigError naming the labels and the valid range."""
        net = _linear()
        trainer = Trainer(net, net.parameters(), TrainConfig())
        x, _, t = _batches(1)[0]
        with pytest.raises(ConfigError, match=r"labels: expected class indices in 0..2"):
            trainer.run([(x, torch.full((8,), 3), t)])

    def test_bad_construction_arguments(self):
        """No params, frozen params, a non-TrainConfig, and an unknown event all raise ConfigError."""
        net = _linear()
        with pytest.raises(ConfigError, match="params"):
            Trainer(net, [], TrainConfig())
        frozen = nn.Parameter(torch.zeros(2), requires_grad=False)
        with pytest.raises(ConfigError, match="frozen"):
            Trainer(net, [frozen], TrainConfig())
        with pytest.raises(ConfigError, match="config"):
            Trainer(net, net.parameters(), {"lr": 0.1})
        trainer = Trainer(net, net.parameters(), TrainConfig())
        with pytest.raises(ConfigError, match="event"):
            trainer.add_callback("on_epoch_end", lambda tr: None)
        with pytest.raises(ConfigError, match="callbacks"):
            attach_callbacks(trainer, ["not a callback"])


class TestCallbacks:
    def test_loss_history_records_every_n_batches(self):
        """LossHistory(every=2) records iterations 2 and 4 of a 5-batch run."""
        net = _linear()
        trainer = Trainer(net, net.parameters(), TrainConfig(optimizer="sgd", lr=0.1))
        history = LossHistory(every=2)
        attach_callbacks(trainer, [history])
        trainer.run(_batches(5))
        assert [i for i, _ in history.losses] == [2, 4]

    def test_progress_callback_advances_once_per_batch(self):
        """ProgressCallback calls advance(1) after each batch."""
        net = _linear()
        trainer = Trainer(net, net.parameters(), TrainConfig(optimizer="sgd", lr=0.1))
        steps: list[int] = []
        attach_callbacks(trainer, [ProgressCallback(steps.append)])
        trainer.run(_batches(4))
        assert steps == [1, 1, 1, 1]

    def test_bad_callback_arguments(self):
        """Non-positive counts and non-callables raise ConfigError."""
        with pytest.raises(ConfigError):
            LossHistory(every=0)
        with pytest.raises(ConfigError):
            StopAfter(0)
        with pytest.raises(ConfigError):
            ProgressCallback(3)


class TestTrainTask:
    def test_train_task_adds_one_finished_task_and_trains_it(self):
        """train_task leaves one more finished task, no float scores, and a mask that differs from its start."""
        stream = make_stream("permuted-mnist", 2)
        model = _tiny_model()
        untrained = _tiny_model()
        untrained.add_task()
        untrained.finish_task()
        index = train_task(model, stream, 0, TrainConfig(lr=1e-2, batches_per_task=5, batch_size=32))
        assert index == 0 and model.num_tasks == 1 and model.score_parameters() == []
        changed = any(
            (model.export_masks(0)[name] != untrained.export_masks(0)[name]).any() for name in model.masked_layers()
        )
        assert changed

    def test_train_task_runs_the_configured_number_of_batches(self):
        """The trainer sees exactly batches_per_task batches, reported through a progress callable."""
        stream = make_stream("permuted-mnist", 1)
        steps: list[int] = []
        train_task(_tiny_model(), stream, 0, TrainConfig(batches_per_task=7, batch_size=16), progress=steps.append)
        assert len(steps) == 7

    def test_train_stream_full_matrix_fills_the_lower_triangle_with_unchanged_columns(self):
        """full_matrix records R[i][j] for j <= i; a finished task's accuracy never changes afterwards."""
        stream = make_stream("permuted-mnist", 3)
        model = _tiny_model()
        done: list[int] = []
        matrix = train_stream(
            model, stream, TrainConfig(lr=1e-2, batches_per_task=4, batch_size=32), full_matrix=True,
            on_task_done=lambda t, row: done.append(t),
        )
        values = matrix.values
        assert done == [0, 1, 2] and model.num_tasks == 3
        assert all(values[i, j] == values[j, j] for i in range(3) for j in range(i + 1))
        assert matrix.forgetting() == 0.0 and matrix.backward_transfer() == 0.0

    def test_train_stream_default_is_linear_diagonal_plus_checkpoints(self):
        """By default each task is measured once after training, and whole rows only at the checkpoints."""
        stream = make_stream("permuted-mnist", 4)
        rows: list[dict] = []
        matrix = train_stream(
            _tiny_model(), stream, TrainConfig(lr=1e-2, batches_per_task=3, batch_size=32), eval_at=[2, 4],
            on_task_done=lambda t, row: rows.append(dict(row)),
        )
        assert [sorted(r) for r in rows] == [[0], [0, 1], [2], [0, 1, 2, 3]]
        values = matrix.values
        assert all(values[3, j] == values[j, j] for j in range(4)) and matrix.forgetting() == 0.0
        with pytest.raises(ConfigError, match="eval_at"):
            train_stream(_tiny_model(), stream, TrainConfig(batches_per_task=1), 2, eval_at=[3])

    def test_train_stream_refuses_a_model_that_already_has_all_tasks(self):
        """Asking for no more tasks than the model holds raises ConfigError."""
        stream = make_stream("permuted-mnist", 1)
        model = _tiny_model()
        model.add_task()
        model.finish_task()
        with pytest.raises(ConfigError, match="n_tasks"):
            train_stream(model, stream, TrainConfig(batches_per_task=1), 1)
