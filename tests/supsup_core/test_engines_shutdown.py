"""Worker pools end cleanly (supsup_core/training/engines.py): more workers than tasks never hang, SIGTERM or SIGINT
mid-run ends the command promptly with no child process left, a child that dies ends the run with one error (not a
hang), and the worker count is bounded before anything starts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from supsup_core.config import ModelConfig
from supsup_core.data import make_stream
from supsup_core.errors import ConfigError
from supsup_core.training import BankTrainingConfig, TrainConfig, TrainingSetup

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc for child processes")


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.add(int(entry))
    return found


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    return False


@contextlib.contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the test run) when the block takes longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: hung")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


HANG_SCRIPT = textwrap.dedent("""
    import os, sys, time
    from supsup_store_cli._app import guarded  # the CLI's SIGTERM/SIGINT handlers, which forked children inherit
    from supsup_core.config import ModelConfig
    from supsup_core.data import make_stream
    from supsup_core.training import TrainConfig, TrainingSetup
    from supsup_core.training.engines import ProcessEngine
    try:
        from supsup_core.training.engines import max_workers
        workers = min(6, max_workers())
    except ImportError:
        workers = 6

    stream = make_stream("permuted-mnist", 2)
    setup = TrainingSetup.from_objects(ModelConfig(arch="lenet", hidden=(8,), output_size=10, seed=0),
                                       stream.describe(), TrainConfig(batches_per_task=2, batch_size=16))

    def children():
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                except OSError:
                    continue
                fields = stat[stat.rindex(")") + 2:].split()
                if int(fields[1]) == os.getpid() and fields[0] != "Z":
                    out.append(int(entry))
        return out

    @guarded
    def run(runs):
        for i in range(runs):
            seen = []
            for outcome in ProcessEngine(workers, stream=stream).outcomes(setup, range(2)):
                time.sleep(0.05)  # the driver commits the task meanwhile; idle children wait for more
                seen.append(outcome.task)
            assert seen == [0, 1], seen
            assert children() == [], children()
            print(i, flush=True)

    run(10)
""")


def test_more_workers_than_tasks_never_hang():
    """6 workers for 2 tasks, 10 times, under the CLI's signal handlers: every run ends and leaves no child.

    (Before: multiprocessing.Pool's terminate() could send SIGTERM to an idle child just as it was blocking on the
    task queue's lock; its Python handler then never ran and the join hung -- in most runs of ten.)
    """
    process = subprocess.Popen([sys.executable, "-c", HANG_SCRIPT], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        stuck = _children(process.pid)
        for pid in stuck | {process.pid}:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"hung after {len(out.split())} of 10 runs (children left: {sorted(stuck)})")
    assert process.returncode == 0, err
    assert out.split() == [str(i) for i in range(10)]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_ends_train_promptly_and_leaves_no_child(tmp_path, signum, code):
    out = tmp_path / "m.h5"
    process = subprocess.Popen(
        [sys.executable, "-m", "supsup_store_cli", "train", "--out", str(out), "--tasks", "8", "--workers", "3",
         "--hidden", "64", "--batches-per-task", "2000", "--device", "cpu"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        children: set[int] = set()
        while len(children) < 2 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
            children |= _children(process.pid)
        assert len(children) >= 2, "the worker processes never started"
        time.sleep(0.3)  # the children are training now
        sent = time.monotonic()
        process.send_signal(signum)
        _, err = process.communicate(timeout=20)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, err
    assert took < 10, f"took {took:.1f} s to end"
    time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)], "worker processes outlived the command"
    assert "Traceback" not in err
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary bank left behind


@pytest.mark.ray
@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_run_on_ray_ends_train_with_its_code_and_shuts_ray_down(tmp_path, signum, code):
    """ray.init installs a SIGTERM handler of its own and ray.get turns the CLI's SystemExit(143) into SystemExit(1):
    the command still ends with 143 (130 for SIGINT), and the local Ray instance is shut down."""
    pytest.importorskip("ray")
    process = subprocess.Popen(
        [sys.executable, "-m", "supsup_store_cli", "train", "--out", str(tmp_path / "m.h5"), "--ray", "--workers", "2",
         "--tasks", "40", "--hidden", "64", "--batches-per-task", "3000", "--device", "cpu"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        children: set[int] = set()
        while process.poll() is None and time.monotonic() < deadline and len(children) < 2:
            time.sleep(0.2)
            children |= _children(process.pid)  # Ray's own processes (gcs server, raylet, ...)
        time.sleep(8)  # the actors are training now
        children |= _children(process.pid)
        process.send_signal(signum)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == code, err
    deadline = time.monotonic() + 20
    while [pid for pid in children if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert children and not [pid for pid in children if _alive(pid)], "Ray processes outlived the command"


def test_a_child_that_dies_mid_task_ends_the_run_with_one_error():
    """A worker killed while training (e.g. out of memory) ends the run with WorkerProcessError, never a hang."""
    from supsup_core.errors import SupSupError
    from supsup_core.training.engines import ProcessEngine

    stream = make_stream("permuted-mnist", 6)
    setup = TrainingSetup.from_objects(ModelConfig(arch="lenet", hidden=(64,), output_size=10, seed=0),
                                       stream.describe(), TrainConfig(batches_per_task=300, batch_size=32))
    engine = ProcessEngine(2, driver_trains=False, stream=stream)
    with _deadline(60), pytest.raises(SupSupError, match="worker process .* ended unexpectedly .*signal 9"):
        for outcome in engine.outcomes(setup, range(6)):
            if outcome.task == 0:
                for pid in _children(os.getpid()):
                    os.kill(pid, signal.SIGKILL)
    assert not _children(os.getpid())


def test_worker_counts_are_bounded_before_anything_starts():
    from supsup_core.training.engines import ProcessEngine, RayEngine, make_engine, max_workers

    ceiling = max_workers()
    assert ceiling == 4 * len(os.sched_getaffinity(0)) and max_workers(cluster=True) == 1024
    with pytest.raises(ConfigError, match=rf"--workers: expected an integer in 1\.\.{ceiling} \(4 per CPU"):
        BankTrainingConfig(n_tasks=2, workers=100_000)
    assert BankTrainingConfig(n_tasks=2, workers=ceiling).workers == ceiling  # more than tasks: allowed, not started
    with pytest.raises(ConfigError, match="workers"):
        ProcessEngine(ceiling + 1)
    with pytest.raises(ConfigError, match="workers"):
        make_engine(ceiling + 1)
    with pytest.raises(ConfigError, match=r"1\.\.1024 \(1024 Ray actors"):
        RayEngine(1025, address="ray://head:10001")
    assert RayEngine(ceiling + 1, address="ray://head:10001").workers == ceiling + 1  # a cluster's CPUs are not ours


def test_ray_keeps_the_commands_signal_handlers():
    """ray.init installs its own SIGTERM handler (sys.exit(15), even inside a bank write): put back afterwards."""
    from supsup_core.training.engines import _signal_handlers_kept

    def ours(signum, frame):  # pragma: no cover - never delivered
        pass

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        with _signal_handlers_kept():
            signal.signal(signal.SIGTERM, lambda s, f: sys.exit(s))  # what ray.init does
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def _record_and_return_a_large_result(task: int) -> bytes:
    Path(os.environ["SUPSUP_TEST_RAN"], str(task)).touch()
    return b"x" * (4 << 20)  # far beyond a pipe's buffer: an inline send blocks until the driver reads


def test_a_child_trains_its_next_task_while_the_driver_has_not_read_the_last(tmp_path, monkeypatch):
    """The driver reads its children only between the tasks it trains itself; a child's finished task must not
    hold up the next one queued to it (sent inline, the 4 MB result of task 0 blocked the child until read)."""
    import multiprocessing

    from supsup_core.training import engines

    monkeypatch.setenv("SUPSUP_TEST_RAN", str(tmp_path))
    monkeypatch.setattr(engines, "_process_run", _record_and_return_a_large_result)  # inherited by the fork
    ours, theirs = multiprocessing.get_context("fork").Pipe(duplex=True)
    child = multiprocessing.get_context("fork").Process(
        target=engines._child_main, args=(theirs, os.getpid(), lambda: None, ()), daemon=True)
    child.start()
    try:
        theirs.close()
        ours.send(0)
        ours.send(1)
        deadline = time.monotonic() + 30
        while not (tmp_path / "1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "1").exists(), "the child waited for the driver to read task 0's result"
        messages = [ours.recv() for _ in range(3)]
        assert [(kind, task) for kind, task, _ in messages] == [("ready", None), ("done", 0), ("done", 1)]
        assert len(messages[2][2]) == 4 << 20
        ours.send(None)
        child.join(10)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
