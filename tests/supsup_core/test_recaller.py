"""Tests of supsup_core/recall/ (config, selection, recaller): RecallConfig, keyed selection and the Recaller on a small trained bank."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.encoding import EncodeSettings, encode_bank
from hopfield_masks.errors import StorageFormatError
from supsup_core.config import ModelConfig
from supsup_core.data import load_mnist, make_stream
from supsup_core.errors import ConfigError
from supsup_core.guidance import model_layout
from supsup_core.models import build_model
from supsup_core.persistence import save_masks
from supsup_core.recall import RecallConfig, Recaller
from supsup_core.recall.selection import (
    _exact_objectives,
    first_images,
    _mean_objective,
    _screen_objectives,
    _unflatten,
    rank_candidates,
    select_candidate,
)
from supsup_core.training import TrainConfig, train_stream

BUDGET = "64kB"  # two keyed sign networks for the 2 x 128 unit masks below


@pytest.fixture(scope="module")
def stream():
    return make_stream("split-mnist", 5, load_mnist("embedded"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, stream):
    """A small BNNet (2 x 128 unit masks) trained 20 batches on each SplitMNIST task, saved with a keyed reservoir."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="bnnet", hidden=(128, 128), output_size=10, seed=0))
    config = TrainConfig.for_scenario("hopsupsup", seed=0, batches_per_task=20)
    train_stream(model, stream, config, evaluate=False, drop_last=True)
    path = tmp_path_factory.mktemp("recaller") / "masks.h5"
    save_masks(model, path, benchmark=stream.describe())
    encode_bank(path, BUDGET)
    return model.eval(), path


def copy_of(path, folder):
    """A byte copy of the bank at ``path`` in ``folder`` (tests that write must not touch the shared one)."""
    copy = folder / "copy.h5"
    copy.write_bytes(path.read_bytes())
    return copy


class TestRecallConfig:
    def test_defaults_and_start(self):
        """Keyed recall starts from the key's field; block-wise methods from the mean cue."""
        assert RecallConfig().start == "key" and RecallConfig(method="dynamics").start == "mean"
        assert RecallConfig(method="dynamics", cue="noisy:0.2").start == "noisy:0.2"

    def test_round_trip(self):
        config = RecallConfig(method="score-descent", steps=4, restarts=2, seed=3, transductive=True)
        assert RecallConfig.from_dict(config.to_dict()) == config

    @pytest.mark.parametrize(
        "kwargs, field",
        [({"method": "annealing"}, "method"), ({"guided": "yes"}, "guided"), ({"cue": "noisy:0.1"}, "cue"),
         ({"method": "dynamics", "cue": "key"}, "cue"), ({"method": "dynamics", "cue": "noisy:2"}, "cue"),
         ({"objective": "K"}, "objective"), ({"steps": 0}, "steps"), ({"steps": 2.5}, "steps"),
         ({"shortlist": 0}, "shortlist"), ({"selection": "vote"}, "selection"), ({"restarts": 1}, "restarts"),
         ({"method": "dynamics", "restarts": -1}, "restarts"),
         ({"method": "dynamics", "restarts": 1, "guided": False}, "restarts"),
         ({"restart_noise": 0.0}, "restart_noise"), ({"transductive": 1}, "transductive"), ({"seed": -1}, "seed"),
         ({"seed": 2**40}, "seed"), ({"batch_size": 1}, "batch_size"), ({"steps": True}, "steps")],
    )
    def test_bad_values_name_the_field(self, kwargs, field):
        with pytest.raises(ConfigError, match=f"^{field}:"):
            RecallConfig(**kwargs)

    def test_from_dict_refuses_unknown_fields(self):
        with pytest.raises(ConfigError, match="config"):
            RecallConfig.from_dict({"method": "keyed", "knob": 1})


class TestSelection:
    def test_screen_matches_one_by_one(self, trained, stream):
        """The vectorised screen gives each candidate's objective as scoring them one at a time does."""
        model, path = trained
        recaller = Recaller(path, BUDGET, model=model, stream=stream)
        candidates = recaller.candidates()
        batches = recaller.task_data(0).adapt
        screened = _screen_objectives(model, candidates, batches[0], "H", 10, chunk=2)
        one_by_one = _exact_objectives(model, candidates, list(range(len(candidates))), batches[:1], "H", 10)
        np.testing.assert_allclose(screened, [one_by_one[i] for i in range(len(candidates))], rtol=1e-5, atol=1e-6)

    def test_the_lowest_objective_wins_and_the_shortlist_is_scored(self, trained, stream):
        """With a shortlist of 2 of 5 candidates, the winner has the lowest objective of the 2 scored."""
        model, path = trained
        recaller = Recaller(path, BUDGET, model=model, stream=stream)
        batches = recaller.task_data(3).adapt
        for selection in ("screen", "one-shot"):
            best, scored = select_candidate(model, recaller.candidates(), batches, shortlist=2, selection=selection)
            assert len(scored) == 2 and scored[best] == min(scored.values())
        best, scored = select_candidate(model, recaller.candidates(), batches, shortlist=8)
        assert sorted(scored) == [0, 1, 2, 3, 4] and best == 3

    def test_the_shortlist_is_scored_on_the_first_score_images(self, trained, stream):
        """score_images bounds the images the shortlist is scored on: the first ones, a cut batch keeping two."""
        model, path = trained
        recaller = Recaller(path, BUDGET, model=model, stream=stream)
        batches = recaller.task_data(3).adapt
        cand = recaller.candidates()
        n = len(batches[0]) + 5
        first = first_images(batches, n)
        assert [len(x) for x in first] == [len(batches[0]), 5] and torch.equal(first[1], batches[1][:5])
        one_over = first_images(batches, len(batches[0]) + 1)  # one image left over: not a batch
        assert len(one_over) == 1 and torch.equal(one_over[0], batches[0])
        _, scored = select_candidate(model, cand, batches, shortlist=8, score_images=n)
        assert scored == pytest.approx(_exact_objectives(model, cand, list(range(len(cand))), first, "H", 10))
        with pytest.raises(ConfigError, match="^score_images:"):
            RecallConfig(score_images=1)

    def test_one_shot_scores_are_the_superposition_gradient(self, trained, stream):
        """rank_candidates is m_t . dH/dm at the mean candidate (checked against a finite difference)."""
        model, path = trained
        recaller = Recaller(path, BUDGET, model=model, stream=stream)
        candidates = recaller.candidates().astype(np.float32)
        batch = recaller.task_data(1).adapt[:1]
        scores = rank_candidates(model, candidates, batch)
        masks01 = (candidates + 1) / 2
        base = masks01.mean(0)
        eps = 1e-2
        # moving the superposition weights towards candidate 2 changes H by about eps * (score_2 - mean score)
        moved = base + eps * (masks01[2] - base)
        layout = model_layout(model)
        with torch.no_grad():
            values = [float(_mean_objective(model, _unflatten(layout, torch.from_numpy(flat)), batch, "H", 10))
                      for flat in (base, moved)]
        assert (values[1] - values[0]) / eps == pytest.approx(scores[2] - scores.mean(), rel=0.1, abs=1e-3)


class TestRecaller:
    def test_guided_recall_beats_unguided(self, trained, stream):
        """On a tiny bank every key recalls its task's mask exactly, the entropy picks the right one for most tasks
        (this small, briefly trained model is a weaker judge than the full BNNet), and guided recall beats the
        candidate nearest to the mean cue."""
        model, path = trained
        recaller = Recaller(path, BUDGET, RecallConfig(), model=model, stream=stream)
        with open_bank(path) as bank:
            true = np.stack([recaller.layout.flatten_spins(bank.read_task(str(t))) for t in range(5)])
        assert np.array_equal(recaller.candidates(), true)
        guided = recaller.recall_all()
        unguided = Recaller(path, BUDGET, RecallConfig(guided=False), model=model, stream=stream).recall_all()
        exact = sum(r.exact for r in guided)
        assert exact >= 4 and sum(r.exact for r in unguided) < exact
        assert all(r.exact == (r.chosen_task == int(r.task)) for r in guided)

    def test_opening_from_the_bank_alone(self, trained):
        """Without a model or stream the Recaller rebuilds both from the bank's metadata and guides."""
        _, path = trained
        recaller = Recaller(path, BUDGET)
        assert recaller.guided and recaller.model is not None and recaller.stream is not None
        assert recaller.describe()["key_units"] == recaller.reservoir.key_units > 0

    def test_keyed_needs_a_keyed_reservoir(self, trained, stream):
        model, path = trained
        encode_bank(path, "200kB", EncodeSettings(rule="storkey", key_units=0))
        with pytest.raises(ConfigError, match="method"):
            Recaller(path, "200kB", RecallConfig(), model=model, stream=stream)

    def test_keyed_without_keys_is_refused_before_encoding(self, tmp_path, trained, stream):
        """Asking for keyed recall with key_units=0 fails before a reservoir is encoded: the bank is unchanged."""
        model, path = trained
        copy = copy_of(path, tmp_path)
        before = copy.read_bytes()
        with pytest.raises(ConfigError, match="method"):
            Recaller(copy, "300kB", model=model, stream=stream, encode_missing=EncodeSettings(key_units=0))
        assert copy.read_bytes() == before

    def test_a_stale_reservoir_is_refused(self, tmp_path, trained, stream):
        """After a task is overwritten the reservoir no longer holds the bank's masks: recall refuses it."""
        model, path = trained
        copy = copy_of(path, tmp_path)
        with open_bank(copy, "a") as bank:
            masks = bank.read_task("0")
            bank.write_task("0", {k: ~v for k, v in masks.items()}, overwrite=True)
        with pytest.raises(StorageFormatError, match="encoded from other masks"):
            Recaller(copy, BUDGET, model=model, stream=stream)

    def test_missing_reservoir_is_encoded_or_refused(self, tmp_path, trained, stream):
        model, path = trained
        copy = copy_of(path, tmp_path)
        with pytest.raises(StorageFormatError, match="no reservoir"):
            Recaller(copy, "32kB", model=model, stream=stream, encode_missing=None)
        recaller = Recaller(copy, "32kB", model=model, stream=stream)
        assert recaller.encoded is not None and recaller.encoded.key_units > 0

    def test_a_perceptron_reservoir_is_recalled_by_key_only(self, tmp_path, trained, stream):
        """Dynamics on learned ±1 couplings is refused before anything is encoded; keyed recall of them is exact."""
        model, path = trained
        copy = copy_of(path, tmp_path)
        with pytest.raises(ConfigError, match="^method:"):
            Recaller(copy, "300kB", RecallConfig(method="dynamics"), model=model, stream=stream,
                     encode_missing=EncodeSettings(rule="perceptron"))
        assert copy.read_bytes() == path.read_bytes()
        recaller = Recaller(copy, "300kB", model=model, stream=stream, encode_missing=EncodeSettings(rule="perceptron"))
        assert recaller.describe()["rule"] == "perceptron" and recaller.describe()["dtype"] == "bit"
        with open_bank(copy) as bank:
            true = np.stack([recaller.layout.flatten_spins(bank.read_task(t)) for t in bank.tasks()])
        assert np.array_equal(recaller.candidates(), true)

    def test_data_for_a_bank_without_a_model_is_refused(self, tmp_path):
        """Data given explicitly for a bank whose metadata names no model cannot guide anything: refused, unchanged."""
        path = tmp_path / "plain.h5"
        rng = np.random.default_rng(0)
        with create_bank(path) as bank:
            for t in range(3):
                bank.write_task(str(t), {"w": rng.random(64) < 0.5})
        before = path.read_bytes()
        with pytest.raises(ConfigError, match="^data_dir:"):
            Recaller(path, "64kB", data_dir=tmp_path / "nonexistent")
        assert path.read_bytes() == before
