"""Tests of supsup_core/recall/ (data, blockwise, report): the data split, scoring and recall of every task's mask from a reservoir."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hopfield_masks.backends import create_bank
from hopfield_masks.encoding import EncodeSettings, encode_bank
from hopfield_masks.errors import InvalidArgumentError
from hopfield_masks.reservoir import Reservoir
from supsup_core.config import ModelConfig
from supsup_core.data import load_mnist, make_stream
from supsup_core.errors import ConfigError, DataError
from supsup_core.guidance import model_layout
from supsup_core.persistence import stream_from_metadata
from supsup_core.recall import (
    TaskData,
    TaskRecall,
    masks_accuracy,
    recall_task,
    restart_cues,
    summarise,
    task_data,
)
from supsup_core.models import SupSupNet, build_model
from supsup_core.persistence import save_masks
from supsup_core.recall import RecallConfig, Recaller

N_TASKS = 4


def _random_masks(model: SupSupNet, n: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    layout = model_layout(model)
    return [{name: rng.random(shape) < 0.5 for name, shape in zip(layout.names, layout.shapes)} for _ in range(n)]


def _model_with_masks(config: ModelConfig, n: int, seed: int = 0) -> tuple[SupSupNet, list[dict[str, np.ndarray]]]:
    """A model holding ``n`` random masks (random masks are far apart, so the reservoir's load is what counts)."""
    model = build_model(config)
    masks = _random_masks(model, n, seed)
    model.import_masks(masks)
    return model.eval(), masks


def _image_keys(x: torch.Tensor) -> list[bytes]:
    return [row.numpy().tobytes() for row in x]


@pytest.fixture(scope="module")
def stream():
    """SplitMNIST on the embedded subset (100 test images per digit)."""
    return make_stream("split-mnist", 5, load_mnist("embedded"))


@pytest.fixture(scope="module")
def unit_model():
    """A tiny BNNet (2 x 32 unit masks, P = 64) with random masks for the first tasks."""
    return _model_with_masks(ModelConfig(arch="bnnet", hidden=(32, 32), output_size=10), N_TASKS)


@pytest.fixture(scope="module")
def unit_bank(tmp_path_factory, unit_model, stream):
    """The tiny BNNet's masks saved to a bank with the stream's description, and its 1 MB block-wise reservoir
    (Storkey, no task keys: the procedures of hopsupsup.recall_task), plus a keyed one of 512KiB."""
    model, _ = unit_model
    path = tmp_path_factory.mktemp("hopsupsup") / "masks.h5"
    save_masks(model, path, benchmark=stream.describe())
    reservoir, _ = encode_bank(path, "1MB", EncodeSettings(rule="storkey", key_units=0))
    encode_bank(path, "512KiB")  # the default: keyed, pseudo-inverse, sign couplings
    return path, reservoir


def _recall(path, config: RecallConfig, budget: str = "1MB", **kwargs) -> list[TaskRecall]:
    return Recaller(path, budget, config, encode_missing=None, **kwargs).recall_all()


@pytest.fixture(scope="module")
def data(stream):
    """Non-transductive data of tasks 0..N_TASKS-1."""
    return [task_data(stream, t) for t in range(N_TASKS)]


class TestTaskData:
    @settings(max_examples=10)
    @given(task=st.integers(0, 4), seed=st.integers(0, 10_000))
    def test_halves_are_disjoint_cover_the_test_set_and_both_digits(self, stream, task, seed):
        """Adaptation and evaluation images are disjoint, together the whole test set, and each holds both digits."""
        x_all, y_all = (torch.cat(parts) for parts in zip(*[(x, y) for x, y, _ in stream.test_batches(task)]))
        label_of = dict(zip(_image_keys(x_all), y_all.tolist()))
        split = task_data(stream, task, seed=seed)
        adapt = _image_keys(torch.cat(split.adapt))
        evaluate = _image_keys(split.eval_x)
        assert not set(adapt) & set(evaluate) and split.transductive is False
        assert sorted(adapt + evaluate) == sorted(label_of)
        assert len(adapt) == len(label_of) // 2 and len(evaluate) == len(label_of) - len(label_of) // 2
        assert [label_of[k] for k in evaluate] == split.eval_y.tolist()
        digits = set(stream.digits(task))
        assert {label_of[k] for k in adapt} == digits == set(split.eval_y.tolist())

    def test_the_split_is_seeded(self, stream):
        """The same seed gives the same split, another seed another one."""
        a, b, c = task_data(stream, 2, seed=1), task_data(stream, 2, seed=1), task_data(stream, 2, seed=2)
        assert torch.equal(a.eval_x, b.eval_x) and not torch.equal(a.eval_x, c.eval_x)

    def test_adaptation_batches_have_the_requested_size(self, stream):
        """Adaptation images come in batches of batch_size, the last one partial."""
        split = task_data(stream, 0, batch_size=30)
        assert [len(b) for b in split.adapt] == [30, 30, 30, 10]

    def test_no_adaptation_batch_holds_a_single_image(self, stream):
        """A trailing single image joins the batch before it (batch statistics need two); batch_size 0 is refused."""
        assert [len(b) for b in task_data(stream, 0, batch_size=99).adapt] == [100]
        with pytest.raises(ConfigError, match="batch_size"):
            task_data(stream, 0, batch_size=0)

    def test_transductive_guides_and_scores_on_the_whole_test_set(self, stream):
        """transductive=True adapts and evaluates on every test image of the task."""
        split = task_data(stream, 3, transductive=True)
        x_all = torch.cat([x for x, _, _ in stream.test_batches(3)])
        assert split.transductive is True and isinstance(split, TaskData)
        assert torch.equal(torch.cat(split.adapt), x_all) and torch.equal(split.eval_x, x_all)


class TestMasksAccuracy:
    @pytest.mark.parametrize("config", [ModelConfig(arch="lenet", hidden=(8, 6), output_size=10),
                                        ModelConfig(arch="bnnet", hidden=(16, 16), output_size=10)],
                             ids=["lenet", "bnnet"])
    def test_equals_the_accuracy_with_set_task(self, config, stream, data):
        """Explicit true masks score exactly what the model scores after set_task (same batches)."""
        model, masks = _model_with_masks(config, 2, seed=1)
        x, y = data[1].eval_x, data[1].eval_y
        model.set_task(1)
        with torch.no_grad():
            expected = sum(int((model(x[i:i + 40]).argmax(1) == y[i:i + 40]).sum()) for i in range(0, len(y), 40))
        assert masks_accuracy(model, masks[1], x, y, batch_size=40) == expected / len(y)

    def test_keeps_the_training_flag(self, unit_model, data):
        """Scoring puts the model in eval mode and then restores training mode."""
        model, masks = unit_model
        model.train()
        try:
            masks_accuracy(model, masks[0], data[0].eval_x, data[0].eval_y)
            assert model.training
        finally:
            model.eval()

    def test_a_trailing_single_image_is_scored_with_batch_statistics(self, unit_model, data):
        """BNNet needs 2+ images per forward: a last chunk of one image is scored with the chunk before it."""
        model, masks = unit_model
        x, y = data[0].eval_x[:41], data[0].eval_y[:41]
        model.set_task(0)
        with torch.no_grad():
            expected = int((model(x).argmax(1) == y).sum()) / 41  # one forward of all 41 images
        assert masks_accuracy(model, masks[0], x, y, batch_size=40) == expected

    def test_batch_size_must_be_positive(self, unit_model, data):
        """batch_size 0 raises ConfigError naming it."""
        with pytest.raises(ConfigError, match="batch_size"):
            masks_accuracy(unit_model[0], unit_model[1][0], data[0].eval_x, data[0].eval_y, batch_size=0)


class TestRecallTask:
    @pytest.mark.parametrize("method", ["dynamics", "score-descent"])
    def test_noisy_cue_at_low_load_recovers_every_mask_exactly(self, unit_bank, unit_model, data, method):
        """Unguided recall from the true mask with 10% of the spins flipped returns it exactly at load 0.2."""
        _, reservoir = unit_bank
        model, masks = unit_model
        assert reservoir.load < 0.25
        for t in range(N_TASKS):
            row = recall_task(reservoir, masks[t], task=str(t), model=model, data=data[t], guided=False,
                              method=method, cue="noisy:0.1", seed=t)
            assert row.exact and row.total_bits_wrong == 0 and set(row.bits_wrong) == {"unit1", "unit2"}
            assert row.recalled_accuracy == row.true_accuracy is not None
            assert row.guidance_calls == 0 and row.steps_to_final >= 1

    def test_guided_recall_calls_the_guidance_and_reports_accuracies(self, unit_bank, unit_model, data):
        """Guided recall asks the model for one gradient per guided sweep and scores both masks."""
        _, reservoir = unit_bank
        model, masks = unit_model
        row = recall_task(reservoir, masks[0], task="0", model=model, data=data[0], method="dynamics",
                          steps=6)
        assert row.guided and row.guidance_calls == 3 and row.steps_run <= 6
        assert row.history["guidance_weight"][0] == 1.0
        expected = masks_accuracy(model, masks[0], data[0].eval_x, data[0].eval_y)
        assert row.true_accuracy == expected and 0.0 <= row.recalled_accuracy <= 1.0
        assert row.exact == (row.total_bits_wrong == 0)
        assert json.loads(json.dumps(row.to_dict(), allow_nan=False))["total_bits_wrong"] == row.total_bits_wrong

    def test_weight_masks_go_through_recall_too(self, stream):
        """A LeNet with weight masks (P = 6,380) is recalled exactly from a noisy cue, and guided recall runs."""
        model, masks = _model_with_masks(ModelConfig(arch="lenet", hidden=(8, 6), output_size=10), 3, seed=2)
        reservoir = Reservoir.from_budget("1MB", model_layout(model))
        for m in masks:
            reservoir.store(m)
        split = task_data(stream, 1)
        row = recall_task(reservoir, masks[1], task="1", model=model, data=split, guided=False, cue="noisy:0.1")
        assert row.exact and set(row.bits_wrong) == {"fc1", "fc2", "fc3"}
        guided = recall_task(reservoir, masks[1], task="1", model=model, data=split, cue="noisy:0.1",
                             method="dynamics", steps=4)
        assert guided.guidance_calls == 2 and guided.true_accuracy == row.true_accuracy

    def test_same_seed_same_row(self, unit_bank, unit_model, data):
        """Recall is seeded: the same seed gives the same bits wrong and history."""
        _, reservoir = unit_bank
        model, masks = unit_model
        rows = [recall_task(reservoir, masks[2], task="2", model=model, data=data[2], cue="random", seed=5,
                            method="dynamics", steps=4) for _ in range(2)]
        assert rows[0].to_dict() == rows[1].to_dict()

    def test_without_model_only_bits_are_compared(self, unit_bank, unit_model):
        """With no model or data, unguided recall reports bits wrong and leaves accuracies unset."""
        _, reservoir = unit_bank
        row = recall_task(reservoir, unit_model[1][3], task="3", guided=False, cue="noisy:0.05")
        assert row.exact and row.true_accuracy is None and row.recalled_accuracy is None

    @pytest.mark.parametrize(
        "kwargs, error, match",
        [({"method": "gradient"}, ConfigError, "method"),
         ({"guided": True}, ConfigError, "guided"),
         ({"guided": False, "cue": "nearby"}, InvalidArgumentError, "noisy"),
         ({"guided": False, "steps": 0}, InvalidArgumentError, "steps")],
        ids=["method", "guided-without-model", "cue", "steps"],
    )
    def test_bad_arguments(self, unit_bank, unit_model, kwargs, error, match):
        """An unknown method, guidance without a model, an unknown cue or a bad step count raise naming it."""
        _, reservoir = unit_bank
        with pytest.raises(error, match=match):
            recall_task(reservoir, unit_model[1][0], task="0", **kwargs)


class TestRestarts:
    def test_no_restart_is_the_plain_recall(self, unit_bank, unit_model, data):
        """restarts=0 gives the same row as leaving the option out (chosen start 0)."""
        _, reservoir = unit_bank
        model, masks = unit_model
        kwargs = dict(task="1", model=model, data=data[1], method="dynamics", seed=3, steps=4)
        plain = recall_task(reservoir, masks[1], **kwargs)
        assert recall_task(reservoir, masks[1], restarts=0, **kwargs).to_dict() == plain.to_dict()
        assert plain.restarts == 0 and plain.chosen_start == 0

    def test_the_ending_with_the_lowest_objective_is_kept(self, unit_bank, unit_model, data, monkeypatch):
        """With restarts, the final mask of lowest mean objective on the adaptation images wins, and is scored."""
        import supsup_core.recall.blockwise as hop

        _, reservoir = unit_bank
        model, masks = unit_model
        seen = []
        real = hop._adaptation_objective

        def scored(guidance, state, batches):
            seen.append(state.copy())
            return real(guidance, state, batches)

        monkeypatch.setattr(hop, "_adaptation_objective", scored)
        row = recall_task(reservoir, masks[0], task="0", model=model, data=data[0], method="dynamics",
                          cue="random", seed=1, steps=4, restarts=3, restart_noise=0.5)
        assert row.restarts == 3 and 0 <= row.chosen_start <= 3 and row.guidance_calls == 4 * 2
        values = [real(hop.OutputGuidance(model, data[0].adapt), s, data[0].adapt) for s in seen]
        winner = seen[int(np.argmin(values))]
        assert row.total_bits_wrong == int(np.count_nonzero(winner != reservoir.layout.flatten_spins(masks[0])))
        assert len(seen) >= 2 and len({s.tobytes() for s in seen}) == len(seen)  # a repeated ending is scored once

    def test_restarts_are_seeded(self, unit_bank, unit_model, data):
        """The same seed gives the same restarted row."""
        _, reservoir = unit_bank
        model, masks = unit_model
        rows = [recall_task(reservoir, masks[2], task="2", model=model, data=data[2], method="dynamics",
                            cue="random", seed=4, steps=4, restarts=2) for _ in range(2)]
        assert rows[0].to_dict() == rows[1].to_dict()

    @given(scores=st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]), min_size=1, max_size=40),
           restarts=st.integers(0, 4), noise=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
    @settings(max_examples=40, deadline=None)
    def test_restart_cues_flip_exactly_the_requested_signs(self, scores, restarts, noise, seed):
        """Each restart cue toggles the mask 1[u >= 0] of exactly round(noise * P) entries; the first is the cue."""
        u = np.array(scores)
        cues = restart_cues(u, restarts, noise, seed)
        assert len(cues) == restarts + 1 and cues[0] is u
        for cue in cues[1:]:
            assert int(np.count_nonzero((cue >= 0) != (u >= 0))) == int(round(noise * u.size))
            assert np.all((cue == u) | (np.abs(cue) == np.where(u == 0, 1.0, np.abs(u))))

    @pytest.mark.parametrize(
        "kwargs, match",
        [({"restarts": -1}, "restarts"), ({"restarts": True}, "restarts"), ({"restart_noise": 0.0}, "restart_noise"),
         ({"restart_noise": 1.5}, "restart_noise"), ({"restarts": 2, "guided": False}, "unguided")],
        ids=["negative", "bool", "zero-noise", "noise-above-1", "unguided"],
    )
    def test_bad_restart_options(self, unit_bank, unit_model, data, kwargs, match):
        """A negative or boolean count, a flip fraction outside (0, 1] or restarts without guidance raise ConfigError."""
        _, reservoir = unit_bank
        model, masks = unit_model
        with pytest.raises(ConfigError, match=match):
            recall_task(reservoir, masks[0], task="0", model=model, data=data[0], method="dynamics", **kwargs)

    def test_recall_all_passes_restarts_and_refuses_them_without_guidance(self, unit_bank, unit_model, stream):
        """recall_all restarts every task when guided, and refuses restarts for unguided recall."""
        path, reservoir = unit_bank
        rows = _recall(path, RecallConfig(method="dynamics", steps=2, restarts=1), model=unit_model[0], stream=stream)
        assert all(r.restarts == 1 and r.guidance_calls == 2 for r in rows)
        with pytest.raises(ConfigError, match="restarts"):
            RecallConfig(method="dynamics", guided=False, restarts=1)


class TestRecallAll:
    @pytest.mark.parametrize("transductive", [False, True])
    def test_accuracies_are_scored_on_the_split_chosen(self, unit_bank, unit_model, stream, transductive):
        """Non-transductive rows score on the held-out half; transductive rows on the whole test set."""
        path, reservoir = unit_bank
        model, masks = unit_model
        rows = _recall(path, RecallConfig(method="dynamics", guided=False, cue="noisy:0.1", transductive=transductive),
                       model=model, stream=stream)
        assert [r.task for r in rows] == [str(t) for t in range(N_TASKS)] and all(r.exact for r in rows)
        for t, row in enumerate(rows):
            split = task_data(stream, t, transductive=transductive)
            assert len(split.eval_y) == (200 if transductive else 100)
            assert row.true_accuracy == masks_accuracy(model, masks[t], split.eval_x, split.eval_y)

    def test_guided_recall_uses_every_task_and_reports_progress(self, unit_bank, unit_model, stream):
        """Guided recall of every task calls progress after each task and marks every row guided."""
        path, reservoir = unit_bank
        calls = []
        rows = Recaller(path, "1MB", RecallConfig(method="dynamics", steps=2), model=unit_model[0],
                        stream=stream).recall_all(progress=lambda done, total: calls.append((done, total)))
        assert calls == [(t + 1, N_TASKS) for t in range(N_TASKS)]
        assert all(r.guided and r.guidance_calls == 1 for r in rows)

    def test_without_model_recall_is_unguided_and_unscored(self, tmp_path):
        """A bank written by the storage library alone (no model in its metadata): unguided rows with bits wrong only,
        and a note saying why; asking for guidance is refused."""
        rng = np.random.default_rng(5)
        path = tmp_path / "plain.h5"
        with create_bank(path) as bank:
            for t in range(3):
                bank.write_task(str(t), {"w": rng.random(40) < 0.5})
        encode_bank(path, "1MB", EncodeSettings(rule="storkey", key_units=0))
        recaller = Recaller(path, "1MB", RecallConfig(method="dynamics", cue="noisy:0.1"))
        rows = recaller.recall_all()
        assert len(rows) == 3 and not any(r.guided for r in rows) and "metadata" in recaller.note
        assert all(r.true_accuracy is None for r in rows)
        with pytest.raises(ConfigError, match="guided"):
            Recaller(path, "1MB", RecallConfig(method="dynamics", guided=True))

    def test_a_model_with_other_layers_is_refused(self, unit_bank):
        """A model whose masked layers are not the reservoir's raises ConfigError naming 'model'."""
        path, reservoir = unit_bank
        other = build_model(ModelConfig(arch="bnnet", hidden=(16, 16), output_size=10))
        with pytest.raises(ConfigError, match="model"):
            _recall(path, RecallConfig(method="dynamics", guided=False), model=other, stream=None)

    def test_a_task_without_data_in_the_stream_is_a_data_error(self, unit_bank, unit_model):
        """Bank task 3 of a 2-task stream raises DataError naming the task."""
        path, reservoir = unit_bank
        short = make_stream("split-mnist", 2, load_mnist("embedded"))
        with pytest.raises(DataError, match="task 2 "):
            _recall(path, RecallConfig(method="dynamics", guided=False), model=unit_model[0], stream=short)

    def test_library_bank_with_other_task_names(self, tmp_path):
        """A bank with non-numeric task names is recalled in bank order."""
        rng = np.random.default_rng(4)
        path = tmp_path / "named.h5"
        with create_bank(path) as bank:
            for name in ("alpha", "beta"):
                bank.write_task(name, {"w": rng.random(40) < 0.5})
        encode_bank(path, "1MB", EncodeSettings(rule="storkey", key_units=0))
        rows = _recall(path, RecallConfig(method="dynamics", cue="noisy:0.1"))
        assert [r.task for r in rows] == ["alpha", "beta"]


class TestSummarise:
    def _row(self, task: str, wrong: int, true=None, recalled=None, steps: int = 1) -> TaskRecall:
        return TaskRecall(task=task, method="dynamics", guided=True, cue="mean", bits_wrong={"a": wrong},
                          exact=wrong == 0, steps_run=steps, steps_to_final=steps, guidance_calls=0,
                          true_accuracy=true, recalled_accuracy=recalled)

    def test_counts_and_means(self):
        """Exact count, mean bits wrong, mean and largest accuracy drop, largest steps to final."""
        rows = [self._row("0", 0, 0.9, 0.9, 3), self._row("1", 4, 0.8, 0.5, 7)]
        summary = summarise(rows)
        assert summary["tasks"] == 2 and summary["exact"] == 1 and summary["mean_bits_wrong"] == 2.0
        assert summary["mean_accuracy_drop"] == pytest.approx(0.15)
        assert summary["max_accuracy_drop"] == pytest.approx(0.3) and summary["max_steps_to_final"] == 7

    def test_unmeasured_values_are_none_so_the_summary_is_strict_json(self):
        """Without accuracies (or rows) the drops are None, never NaN."""
        for rows in ([self._row("0", 2)], []):
            summary = summarise(rows)
            assert summary["mean_accuracy_drop"] is None and summary["max_accuracy_drop"] is None
            json.dumps(summary, allow_nan=False)


class TestStreamFromMetadata:
    def test_rebuilds_the_described_stream(self, stream):
        """A bank's benchmark metadata rebuilds a stream with the same tasks and test images."""
        again = stream_from_metadata({"benchmark": stream.describe()})
        assert again.name == "split-mnist" and again.n_tasks == 5
        assert torch.equal(next(iter(again.test_batches(4)))[0], next(iter(stream.test_batches(4)))[0])

    def test_rotation_is_kept(self):
        """Rotated streams keep their degrees per task."""
        rotated = make_stream("rotated-mnist", 3, load_mnist("embedded"), degrees_per_task=30.0)
        assert stream_from_metadata({"benchmark": rotated.describe()}).angle(2) == rotated.angle(2)
