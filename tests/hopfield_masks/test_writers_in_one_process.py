"""One writer per bank within a process too: threads and re-opens never roll each other back.

- a reader opened by the process that is appending (same thread, or another thread) sees the last commit and never
  recovers the live session's journal; the append then commits;
- two threads appending to one bank are serialised (the second waits for the first's session), 3 runs: the bank is
  intact, every task readable, none lost;
- a second writer in the same thread is refused at once (it could only deadlock or interleave), naming the bank;
- a thread asking to write while another thread of the process reads waits for the read, then writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hopfield_masks.backends import HDF5MaskBank, create_bank, describe_file, open_bank, verify_file
from hopfield_masks.errors import BankLockedError, HopfieldMasksError
from hopfield_masks.safety.locking import bank_lock
from tests.hopfield_masks.bank_worker import assert_exact, masks_for, seed_bank

SEEDS = [f"seed-{i}" for i in range(3)]
ROOT = Path(__file__).parents[2]
OTHER_PROCESS = """
import sys
from hopfield_masks.backends import HDF5MaskBank, open_bank
with open_bank(sys.argv[1]) as bank:
    print("read", len(bank.tasks()))
try:
    HDF5MaskBank(sys.argv[1], "a").close()
    print("appended")
except Exception as exc:
    print(type(exc).__name__)
"""


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def read_every_task(path: Path, seen: list, done: threading.Event | None = None) -> None:
    """Open the bank for reading and read every task; append the sorted names to ``seen`` (or the error raised),
    then set ``done``."""
    try:
        with open_bank(path) as reader:
            seen.append(sorted(reader.tasks()))
            for name in reader.tasks():
                reader.read_task(name)
    except BaseException as exc:  # noqa: BLE001 - reported by the caller
        seen.append(exc)
    finally:
        if done is not None:
            done.set()


class TestReaderInTheWritersProcess:
    def test_same_thread_read_during_an_append_sees_the_last_commit(self, tmp_path):
        """open_bank(path) inside open_bank(path, "a"): the reader sees the last commit, the append then commits."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        with open_bank(path, "a") as writer:
            writer.write_task("a", masks_for("a"))
            writer.commit()
            writer.write_task("b", masks_for("b"))
            writer.delete_task("seed-0")
            writer._h5.flush()  # HDF5 writes its cached metadata: pages of the last commit are overwritten in place
            assert (tmp_path / ".bank.h5.journal").exists()
            with open_bank(path) as reader:
                assert reader.tasks() == [*SEEDS, "a"]
                for name in reader.tasks():
                    reader.read_task(name)
            assert describe_file(path)["n_tasks"] == 4
            assert verify_file(path).ok
            writer.write_task("c", masks_for("c"))
        assert_exact(path, ["seed-1", "seed-2", "a", "b", "c"])
        assert litter(tmp_path) == []

    def test_reader_thread_during_an_append_sees_the_last_commit_without_waiting(self, tmp_path):
        """A reader in another thread while this thread appends: no wait for the session, the last commit."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        seen: list = []
        with open_bank(path, "a") as writer:
            writer.write_task("a", masks_for("a"))
            writer.delete_task("seed-1")
            writer._h5.flush()

            thread = threading.Thread(target=read_every_task, args=(path, seen))
            started = time.monotonic()
            thread.start()
            thread.join(timeout=30)
            assert time.monotonic() - started < 10
            writer.write_task("b", masks_for("b"))
        assert seen == [SEEDS], seen
        assert_exact(path, ["seed-0", "seed-2", "a", "b"])

    def test_a_reader_opened_during_a_session_outlives_its_commits(self, tmp_path):
        """A reader opened before two commits of the writer keeps reading the state it opened, bit-exactly, also
        after the writer closed; meanwhile other processes may read the bank again (but not change it)."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        writer = open_bank(path, "a")
        reader = None
        try:
            writer.write_task("a", masks_for("a"))
            reader = open_bank(path)
            for i in range(2):
                writer.write_task(f"n{i}", masks_for(f"n{i}"))
                writer._h5.flush()
                writer.commit()
            writer.close()  # (no deletion: the file is changed in place, never replaced by a repack)
            assert reader.tasks() == SEEDS
            for name in SEEDS:
                got = reader.read_task(name)
                for layer, mask in masks_for(name).items():
                    np.testing.assert_array_equal(got[layer], mask)
            other = subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(path)], capture_output=True, text=True,
                                   timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                               "HOPFIELD_MASKS_LOCK_TIMEOUT": "0.5"})
            assert other.returncode == 0, other.stderr[-2000:]
            assert other.stdout.split() == ["read", "6", "BankLockedError"]
        finally:
            writer.close()
            if reader is not None:
                reader.close()
        assert_exact(path, [*SEEDS, "a", "n0", "n1"])


class TestWriterThreads:
    @pytest.mark.parametrize("run", range(3))
    def test_two_threads_appending(self, tmp_path, run):
        """Two threads, 4 append sessions each (one with a delete, so in-place metadata changes): all arrive."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        errors: list[BaseException] = []

        def write(prefix: str) -> None:
            try:
                for i in range(4):
                    with open_bank(path, "a") as bank:
                        bank.write_task(f"{prefix}-{i}", masks_for(f"{prefix}-{i}"))
                        if i == 1:
                            bank.write_task(f"{prefix}-gone", masks_for("gone"))
                            bank.delete_task(f"{prefix}-gone")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(p,)) for p in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert_exact(path, [*SEEDS, *(f"{p}-{i}" for p in "ab" for i in range(4))])
        assert litter(tmp_path) == []

    def test_a_second_writer_thread_waits_then_fails_clearly(self, tmp_path):
        """While one thread holds the bank for appending, another thread's writer waits its timeout and fails."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        outcome: list = []
        with open_bank(path, "a") as writer:
            writer.write_task("a", masks_for("a"))

            def second() -> None:
                started = time.monotonic()
                try:
                    HDF5MaskBank(path, "a", lock_timeout=0.3).close()
                    outcome.append("opened")
                except BaseException as exc:  # noqa: BLE001 - reported below
                    outcome.append((exc, time.monotonic() - started))

            thread = threading.Thread(target=second)
            thread.start()
            thread.join(timeout=30)
        (exc, waited), = outcome
        assert isinstance(exc, BankLockedError) and "thread" in str(exc) and "\n" not in str(exc), exc
        assert waited >= 0.25
        assert_exact(path, [*SEEDS, "a"])

    def test_writer_thread_waits_for_a_reader_thread(self, tmp_path):
        """A thread appends while another thread of the process reads: it waits for the read, then writes."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        reading, done = threading.Event(), threading.Event()

        def read() -> None:
            with open_bank(path) as reader:
                reading.set()
                time.sleep(0.3)
                reader.read_task("seed-0")
            done.set()

        thread = threading.Thread(target=read)
        thread.start()
        assert reading.wait(30)
        with open_bank(path, "a") as writer:
            assert done.is_set()
            writer.write_task("a", masks_for("a"))
        thread.join(timeout=30)
        assert_exact(path, [*SEEDS, "a"])


class TestSameThread:
    def test_a_second_writer_in_the_same_thread_is_refused(self, tmp_path):
        """open_bank(path, "a") or create_bank(path) while this thread appends to path: refused at once."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        with open_bank(path, "a") as writer:
            writer.write_task("a", masks_for("a"))
            for attempt in (lambda: open_bank(path, "a"), lambda: create_bank(path, overwrite=True)):
                started = time.monotonic()
                with pytest.raises(HopfieldMasksError, match="already open for writing") as info:
                    attempt()
                assert time.monotonic() - started < 5 and "\n" not in str(info.value)
        assert_exact(path, [*SEEDS, "a"])

    def test_bank_lock_then_sessions_in_one_thread(self, tmp_path):
        """bank_lock() for a whole run, sessions inside it one after another, reads between them (as training does)."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        with bank_lock(path):
            for i in range(3):
                with open_bank(path, "a") as bank:
                    bank.write_task(f"t{i}", masks_for(f"t{i}"))
                with open_bank(path) as bank:
                    assert f"t{i}" in bank.tasks()
        assert_exact(path, [*SEEDS, "t0", "t1", "t2"])
        assert litter(tmp_path) == []


class TestRepackInterleavings:
    """A session that deleted something ends by repacking the bank into a new file renamed over it; a reader of the
    writer's process that got the old file's lock just before must still open a whole bank (regression: it opened
    the old file at its size before the session, while its pages already held the new state)."""

    def _interleave(self, tmp_path, monkeypatch, pause_in: str):
        import hopfield_masks.backends.hdf5 as hdf5
        from hopfield_masks.safety.journal import JournaledFile

        path = tmp_path / "bank.h5"
        seed_bank(path)
        reached, released = threading.Event(), threading.Event()
        reader_thread: dict = {}
        seen: list = []

        def pause() -> None:
            if threading.get_ident() == reader_thread.get("id"):
                reached.set()
                assert released.wait(30)

        if pause_in == "open":  # the view is registered before the rename, HDF5 opens it after the journal went
            real_open_view = hdf5._open_view
            monkeypatch.setattr(hdf5, "_open_view", lambda view, p: (pause(), real_open_view(view, p))[1])
        else:  # the old file is locked before the rename, its view is made after the journal went
            real_lock = hdf5._lock_for_reading
            monkeypatch.setattr(hdf5, "_lock_for_reading", lambda *a: (real_lock(*a), pause())[0])

        def read() -> None:
            reader_thread["id"] = threading.get_ident()
            read_every_task(path, seen, reached)

        real_repack = hdf5.repack
        thread = threading.Thread(target=read)

        def repack(target) -> None:  # the session is settled: the old file holds the new state, journal still there
            thread.start()
            assert reached.wait(30)
            real_repack(target)

        real_discard = JournaledFile.discard_journal

        def discard_journal(self) -> None:
            real_discard(self)
            released.set()

        monkeypatch.setattr(hdf5, "repack", repack)
        monkeypatch.setattr(JournaledFile, "discard_journal", discard_journal)
        with open_bank(path, "a") as writer:
            writer.write_task("a", masks_for("a"))
            writer.delete_task("seed-0")
        thread.join(timeout=60)
        assert not thread.is_alive()
        assert len(seen) == 1 and not isinstance(seen[0], BaseException), seen
        assert_exact(path, ["seed-1", "seed-2", "a"])
        assert litter(tmp_path) == []

    def test_reader_opening_the_old_file_as_the_repack_is_published(self, tmp_path, monkeypatch):
        self._interleave(tmp_path, monkeypatch, "open")

    def test_reader_locking_the_old_file_as_the_repack_is_published(self, tmp_path, monkeypatch):
        self._interleave(tmp_path, monkeypatch, "lock")


class _PausingLock:
    """A hub's lock that makes one thread wait (once) before taking it, until released."""

    def __init__(self, real, thread: int, reached: threading.Event, released: threading.Event) -> None:
        self.real, self.thread, self.reached, self.released, self.paused = real, thread, reached, released, False

    def __enter__(self):
        if threading.get_ident() == self.thread and not self.paused:
            self.paused = True
            self.reached.set()
            assert self.released.wait(30)
        return self.real.__enter__()

    def __exit__(self, *exc):
        return self.real.__exit__(*exc)


def test_reader_thread_whose_snapshot_is_set_up_as_the_session_ends(tmp_path, monkeypatch):
    """A reader thread joins the session as a snapshot reader, then the session commits and ends before the snapshot
    is set up: the snapshot is of the commit (regression: it took the file's size before the commit, and the commit
    froze no pages for it, so it read the new file cut at the old size)."""
    import hopfield_masks.backends.hdf5 as hdf5

    path = tmp_path / "bank.h5"
    seed_bank(path)
    reached, released = threading.Event(), threading.Event()
    seen: list = []
    real_lock = hdf5._lock_for_reading

    def lock_for_reading(*args):
        lock = real_lock(*args)
        if lock is not None and lock.view:
            lock.hub.lock = _PausingLock(lock.hub.lock, threading.get_ident(), reached, released)
        return lock

    monkeypatch.setattr(hdf5, "_lock_for_reading", lock_for_reading)

    thread = threading.Thread(target=read_every_task, args=(path, seen, reached))
    with open_bank(path, "a") as writer:
        writer.write_task("a", masks_for("a"))  # (HDF5 keeps it in its caches until the commit: the file is unchanged)
        thread.start()
        assert reached.wait(30)
    released.set()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert seen == [sorted([*SEEDS, "a"])], seen
    assert_exact(path, [*SEEDS, "a"])
    assert litter(tmp_path) == []


def test_reader_thread_waits_while_another_thread_rolls_back_a_killed_writers_journal(tmp_path, monkeypatch):
    """A thread opening the bank "a" rolls back a killed writer's journal under the exclusive lock before its session
    begins; a reader thread meanwhile waits for that session instead of reading the file mid-rollback (regression:
    it read the marked, half-restored file as a snapshot and failed)."""
    import shutil

    import hopfield_masks.backends.hdf5 as hdf5

    killed = tmp_path / "killed"
    killed.mkdir()
    seed_bank(killed / "bank.h5")
    path = tmp_path / "bank.h5"
    with open_bank(killed / "bank.h5", "a") as writer:  # a copy taken mid-session is a killed writer's state
        writer.write_task("x", masks_for("x"))
        writer.delete_task("seed-0")
        writer._h5.flush()
        shutil.copyfile(killed / "bank.h5", path)
        shutil.copyfile(killed / ".bank.h5.journal", tmp_path / ".bank.h5.journal")
        os.chmod(tmp_path / ".bank.h5.journal", 0o600)
    seen: list = []
    done = threading.Event()

    thread = threading.Thread(target=read_every_task, args=(path, seen, done))
    real_recover = hdf5.recover

    def recover(*args):
        if threading.current_thread() is threading.main_thread() and not thread.is_alive() and not done.is_set():
            thread.start()  # the bank is locked exclusively, its journal not yet rolled back
            done.wait(1.0)  # the old code's reader is done (it failed) within this; a waiting one is not
        return real_recover(*args)

    monkeypatch.setattr(hdf5, "recover", recover)
    with open_bank(path, "a") as writer:
        writer.write_task("a", masks_for("a"))
    thread.join(timeout=60)
    assert not thread.is_alive()
    # the rolled-back bank, or (a reader thread slow to start under load) the session's commit: never an error
    assert seen in ([SEEDS], [sorted([*SEEDS, "a"])]), seen
    assert_exact(path, [*SEEDS, "a"])
    assert litter(tmp_path) == []
