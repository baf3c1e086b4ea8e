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

            def read() -> None:
                try:
                    with open_bank(path) as reader:
                        seen.append(sorted(reader.tasks()))
                        for name in reader.tasks():
                            reader.read_task(name)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    seen.append(exc)

            thread = threading.Thread(target=read)
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
