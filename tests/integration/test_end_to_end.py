"""End to end on CPU: train tiny masks -> save to a bank -> load into a fresh model -> evaluate GG and GNu."""

from __future__ import annotations

from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.models import build_model
from supsup_core.persistence import load_model, save_masks, stored_accuracies, stream_from_metadata
from supsup_core.training import TrainConfig, evaluate_gg, evaluate_inferred, train_stream


def test_train_save_load_evaluate(tmp_path):
    """Masks trained on 3 permuted tasks reload bit-exactly and give the same GG and GNu accuracies as before saving."""
    stream = make_stream("permuted-mnist", 3)
    model = build_model(ModelConfig(arch="lenet", hidden=(64, 32), output_size=30, seed=2))
    config = TrainConfig.for_scenario("gnu", lr=1e-3, batches_per_task=60, seed=4)
    matrix = train_stream(model, stream, config)
    assert matrix.forgetting() == 0.0  # finished masks never change

    before_gg = evaluate_gg(model, stream)
    # the paper protocol needs one single-image inference per test batch: cheap enough to run twice
    before_gnu = evaluate_inferred(model, stream, measure_task_inference=False)
    path = tmp_path / "masks.h5"
    save_masks(model, path, benchmark=stream.describe(), accuracies=before_gg.accuracy,
               training={"scenario": "gnu", "config": config.to_dict()})

    loaded, metadata = load_model(path)
    rebuilt = stream_from_metadata(metadata)
    after_gg = evaluate_gg(loaded, rebuilt)
    after_gnu = evaluate_inferred(loaded, rebuilt)

    assert after_gg.accuracy == before_gg.accuracy == {t: a["gg"] for t, a in stored_accuracies(path).items()}
    assert after_gnu.accuracy == before_gnu.accuracy
    assert after_gnu.decision_accuracy == before_gnu.decision_accuracy
    # the tiny masks are good enough for the pipeline to be meaningful: above chance, and task inference works
    assert after_gg.mean_accuracy > 0.6 and after_gnu.mean_task_inference_accuracy > 0.9
