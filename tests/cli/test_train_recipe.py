"""`supsup-store train --recipe`: the reference's SplitCIFAR100 run as one command, on files in the official layout."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from supsup_core.data import ImageData, write_cifar_binary
from supsup_core.persistence import read_bank_metadata
from supsup_store_cli.app import app

from .refusals import one_error_line

runner = CliRunner()


def _cifar100(folder):
    rng = np.random.default_rng(0)
    data = ImageData(rng.integers(0, 256, (400, 3, 32, 32), dtype=np.uint8), np.arange(400) % 100,
                     rng.integers(0, 256, (200, 3, 32, 32), dtype=np.uint8), np.arange(200) % 100,
                     source="written", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return write_cifar_binary(folder, data, "cifar100")


def test_splitcifar100_in_one_command(tmp_path):
    out = tmp_path / "gg.h5"
    result = runner.invoke(app, ["train", "--recipe", "splitcifar100", "--data", f"cifar100:{_cifar100(tmp_path)}",
                                 "--tasks", "1", "--batches-per-task", "2", "--seed", "3", "--sparsity", "4",
                                 "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    meta = read_bank_metadata(out)
    assert meta["model"]["arch"] == "gemresnet18" and meta["model"]["er_sigma"] == 4.0
    assert meta["model"]["mask_mode"] == "topk" and meta["model"]["output_size"] == 5
    cfg = meta["training"]["config"]
    assert (cfg["optimizer"], cfg["lr"], cfg["weight_decay"], cfg["schedule"]) == ("adam", 1e-3, 1e-4, "cosine")
    np.random.seed(3)
    perm = np.random.permutation(100)
    bench = meta["benchmark"]
    assert bench["order"] == "seeded" and bench["seed"] == 3 and bench["classes_per_task"] == 5
    assert bench["augment"] == {"crop_padding": 4, "flip": True}
    from supsup_core.persistence import stream_from_metadata

    assert stream_from_metadata(meta).classes(0) == tuple(perm[:5])


def test_a_recipe_refuses_the_flags_it_sets(tmp_path):
    line = one_error_line(runner.invoke(app, ["train", "--recipe", "splitcifar100", "--model", "fc1024",
                                              "--data", f"cifar100:{_cifar100(tmp_path)}", "--out", str(tmp_path / "x.h5")]))
    assert line.startswith("Error: --model: expected no --model with --recipe splitcifar100")
    line = one_error_line(runner.invoke(app, ["train", "--recipe", "splitcifar10", "--data",
                                              f"cifar100:{_cifar100(tmp_path)}", "--out", str(tmp_path / "x.h5")]))
    assert line.startswith("Error: --recipe: expected one of")
    line = one_error_line(runner.invoke(app, ["train", "--recipe", "splitcifar100", "--hidden", "3,3",
                                              "--data", f"cifar100:{_cifar100(tmp_path)}", "--out", str(tmp_path / "x.h5")]))
    assert line == "Error: --hidden: expected no --hidden with --recipe splitcifar100 (the recipe sets it), received both"
    line = one_error_line(runner.invoke(app, ["train", "--recipe", "splitimagenet", "--data",
                                              f"cifar100:{_cifar100(tmp_path)}", "--out", str(tmp_path / "x.h5")]))
    assert line.startswith("Error: --data: expected imagefolder data for the splitimagenet recipe")
    assert not (tmp_path / "x.h5").exists()
