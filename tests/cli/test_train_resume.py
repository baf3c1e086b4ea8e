"""``supsup-store train``: kill -9 mid-run then --resume gives the uninterrupted bank; bad resume/Ray input exits 2."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hopfield_masks.backends import open_bank
from supsup_store_cli.app import app

runner = CliRunner()
ARGS = ["--tasks", "30", "--batches-per-task", "8", "--hidden", "32,16", "--device", "cpu", "--lr", "0.01",
        "--eval-at", "15,30"]


def _contents(path) -> tuple[dict, list, list]:
    with open_bank(path, "r") as bank:
        names = bank.tasks()
        return bank.metadata, [bank.read_task(n) for n in names], [bank.task_attrs(n) for n in names]


def _committed(path) -> int:
    try:
        with open_bank(path, "r") as bank:
            return len(bank.tasks())
    except Exception:  # not created yet, or being replaced this instant
        return -1


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from supsup_store_cli.app import main; main()", *args]


def test_kill_9_during_train_then_resume_equals_an_uninterrupted_run(tmp_path):
    """SIGKILL after a few committed tasks; --resume finishes; the bank equals an uninterrupted run's."""
    full, killed = tmp_path / "full.h5", tmp_path / "killed.h5"
    subprocess.run(_cli("train", "--out", str(full), *ARGS), check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(_cli("train", "--out", str(killed), *ARGS), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while _committed(killed) < 4 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    done_at_kill = _committed(killed)
    assert 4 <= done_at_kill < 30, f"the kill should land mid-run ({done_at_kill} tasks committed)"
    resumed = subprocess.run(_cli("train", "--out", str(killed), *ARGS, "--resume"), capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after {done_at_kill}" in " ".join(resumed.stdout.split())
    meta_a, masks_a, attrs_a = _contents(full)
    meta_b, masks_b, attrs_b = _contents(killed)
    assert meta_a == meta_b and attrs_a == attrs_b and len(masks_a) == len(masks_b) == 30
    for a, b in zip(masks_a, masks_b):
        assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "masks.h5"
    result = runner.invoke(app, ["train", "--out", str(path), "--tasks", "2", "--batches-per-task", "3",
                                 "--hidden", "16,8", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    return path


@pytest.mark.parametrize(
    ("option", "named"),
    [(["--seed", "1"], "model.seed"), (["--hidden", "16,9"], "model.hidden"), (["--lr", "0.5"], "config.lr"),
     (["--benchmark", "rotated-mnist"], "benchmark.stream"), (["--scenario", "gg"], "scenario")],
)
def test_resume_with_other_settings_exits_2_naming_the_mismatch(small_bank, option, named):
    """--resume on a bank from other settings: exit 2, one message naming what differs, file unchanged."""
    before = small_bank.read_bytes()
    args = {"--tasks": "3", "--batches-per-task": "3", "--hidden": "16,8", "--device": "cpu"}
    args[option[0]] = option[1]
    flat = [x for kv in args.items() for x in kv]
    result = runner.invoke(app, ["train", "--out", str(small_bank), *flat, "--resume"])
    assert result.exit_code == 2 and named in result.output and "Traceback" not in result.output
    assert small_bank.read_bytes() == before


def test_resume_of_an_entropy_bank_continues_in_its_backend(small_bank, tmp_path):
    """An hdf5-entropy bank resumed without --backend stays hdf5-entropy; its tasks equal a packed run's."""
    path = tmp_path / "entropy.h5"
    args = ["--batches-per-task", "3", "--hidden", "16,8", "--device", "cpu"]
    first = runner.invoke(app, ["train", "--out", str(path), "--tasks", "2", *args, "--backend", "hdf5-entropy"])
    assert first.exit_code == 0, first.output
    before = path.read_bytes()
    refused = runner.invoke(app, ["train", "--out", str(path), "--tasks", "3", *args, "--resume", "--backend",
                                  "hdf5-packed"])
    assert refused.exit_code == 2 and "--backend" in refused.output and "'hdf5-entropy'" in refused.output
    assert path.read_bytes() == before  # nothing modified
    resumed = runner.invoke(app, ["train", "--out", str(path), "--tasks", "3", *args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    text = " ".join(resumed.stdout.split())
    assert "Saved 3 masks" in text and "(hdf5-entropy)" in text and "resumed after 2" in text
    meta, masks, attrs = _contents(path)
    meta_p, masks_p, attrs_p = _contents(small_bank)  # the same settings, 2 tasks, hdf5-packed
    assert meta["n_tasks"] == 3 and len(masks) == 3 and attrs[:2] == attrs_p
    for a, b in zip(masks[:2], masks_p):
        assert list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)
    with open_bank(path) as bank:
        assert bank.backend_id == "hdf5-entropy"
    verified = runner.invoke(app, ["verify", str(path)])
    assert verified.exit_code == 0, verified.output


def test_resume_of_a_missing_bank_exits_2(tmp_path):
    """--resume needs an existing bank."""
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "nope.h5"), "--tasks", "2", "--resume"])
    assert result.exit_code == 2 and "--resume" in result.output


def test_ray_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    """--ray when ray cannot be imported: exit 2 with the pip command, no file written."""
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    out = tmp_path / "m.h5"
    result = runner.invoke(app, ["train", "--out", str(out), "--tasks", "2", "--ray"])
    assert result.exit_code == 2 and "supsup-store[ray]" in result.output and not out.exists()


def test_unreachable_ray_address_fails_fast_with_exit_2(tmp_path):
    """--ray-address where nothing listens: exit 2 within seconds, no file written."""
    pytest.importorskip("ray")
    out = tmp_path / "m.h5"
    start = time.monotonic()
    result = runner.invoke(app, ["train", "--out", str(out), "--tasks", "2", "--ray-address", "127.0.0.1:1"])
    assert result.exit_code == 2 and "no Ray cluster reachable at 127.0.0.1:1" in result.output
    assert time.monotonic() - start < 30 and not out.exists()


def test_nns_refuses_parallel_and_resume_options(tmp_path):
    """NNs is sequential: --workers 2 with --scenario nns exits 2 saying why."""
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "m.h5"), "--scenario", "nns", "--workers", "2"])
    assert result.exit_code == 2 and "sequential" in result.output


def test_batched_steps_give_the_same_bank_and_refuse_workers(tmp_path):
    """--batched 3 (three tasks per training step) writes the masks one task at a time writes; with --workers it exits 2."""
    small = ["--tasks", "4", "--batches-per-task", "4", "--hidden", "32,16", "--device", "cpu", "--eval-at", "none"]
    one, three = tmp_path / "one.h5", tmp_path / "three.h5"
    assert runner.invoke(app, ["train", "--out", str(one), *small]).exit_code == 0
    result = runner.invoke(app, ["train", "--out", str(three), *small, "--batched", "3"])
    assert result.exit_code == 0, result.output
    _, masks_one, attrs_one = _contents(one)
    _, masks_three, attrs_three = _contents(three)
    assert attrs_one == attrs_three
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(masks_one, masks_three) for k in a)
    refused = runner.invoke(app, ["train", "--out", str(tmp_path / "x.h5"), *small, "--batched", "2", "--workers", "2"])
    assert refused.exit_code == 2 and "--batched" in refused.output and not (tmp_path / "x.h5").exists()


def test_a_run_holds_the_banks_writer_lock_from_start_to_end(tmp_path):
    """Between two of a run's commits the bank stays locked: another writer (`train --overwrite`, an append) waits and
    then fails with one line, instead of replacing the file under the run (which would mix two base networks)."""
    from hopfield_masks.errors import BankLockedError
    from hopfield_masks.safety.locking import bank_lock

    path = tmp_path / "busy.h5"
    slow = ["--tasks", "40", "--batches-per-task", "100", "--hidden", "32,16", "--device", "cpu", "--eval-at", "none"]
    first = subprocess.Popen(_cli("train", "--out", str(path), *slow), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _committed(path) < 1 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(BankLockedError, match="is locked by another process"):
            with bank_lock(path, timeout=0.2):
                pass
        env = {**os.environ, "HOPFIELD_MASKS_LOCK_TIMEOUT": "0.2"}
        second = subprocess.run(_cli("train", "--out", str(path), *slow, "--seed", "1", "--overwrite"),
                                capture_output=True, text=True, timeout=600, env=env)
        assert first.poll() is None, "the first run should still be training"
        assert second.returncode == 2 and "is locked by" in second.stderr, second.stderr
    finally:
        first.kill()
        first.wait(timeout=60)
    metadata, masks, _ = _contents(path)
    assert metadata["model"]["seed"] == 0 and len(masks) == metadata["n_tasks"] >= 1


def test_a_run_that_fails_before_its_first_task_leaves_the_destination_as_it_was(tmp_path):
    """The new bank is built beside the destination: a failure before its first commit keeps an existing bank (with
    --overwrite) and leaves no file at all otherwise."""
    from supsup_core.data import load_data, split_dataset_stream
    from supsup_core.errors import DataError
    from supsup_core.persistence import benchmark_metadata
    from supsup_core.training import BankTrainingConfig, TrainConfig, TrainingSetup, train_to_bank
    from supsup_core.wrapping import wrap
    from torch import nn

    class Flaky(torch.utils.data.Dataset):
        """Real images whose 17th and later items cannot be read (a damaged file found mid-epoch)."""

        def __init__(self, x, y):
            self.x, self.y, self.targets = x, y, y

        def __len__(self):
            return len(self.y)

        def __getitem__(self, i):
            if i >= 16:
                raise DataError(f"image {i}: expected a readable image, received damaged bytes")
            return self.x[i], int(self.y[i])

    data = load_data("digits")
    x, y = data.normalized("train"), torch.tensor(data.train_labels)
    stream = split_dataset_stream(Flaky(x, y), Flaky(x, y), 2, n_tasks=1)
    model = wrap(nn.Sequential(nn.Flatten(), nn.Linear(64, 2)))
    setup = TrainingSetup.from_objects(model, stream.describe(), TrainConfig(batch_size=32, batches_per_task=3))
    path = tmp_path / "kept.h5"
    for overwrite in (False, True):
        with pytest.raises(DataError, match="damaged"):
            train_to_bank(path, setup, BankTrainingConfig(n_tasks=1, overwrite=overwrite), benchmark=benchmark_metadata(
                stream, 0), scenario="gg", model=model, stream=stream)
        assert not path.exists() if not overwrite else _committed(path) == 2
        assert sorted(p.name for p in tmp_path.iterdir()) == ([] if not overwrite else ["kept.h5"])
        if not overwrite:  # a good bank for the --overwrite round
            good = _cli("train", "--out", str(path), "--tasks", "2", "--batches-per-task", "2", "--hidden", "8",
                        "--device", "cpu")
            subprocess.run(good, check=True, capture_output=True, timeout=300)
