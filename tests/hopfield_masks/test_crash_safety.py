"""Crashes at any instant leave a valid bank holding every committed task; nothing is left behind.

- kill -9 of a process appending (session per task, or ``commit()`` per task) or encoding, at seeded random
  instants: the bank opens, holds every task the process reported committed, bit-exactly, and after the
  next open no journal, temporary or lock file remains (a few trials by default, 60 in the slow run);
- SIGTERM of a CLI-style process: it unwinds, rolls back, removes its journal;
- a full disk (injected ENOSPC in-process, and a real write failure from ``RLIMIT_FSIZE`` in a CLI
  subprocess): a one-line error, exit code 2, no segfault, the bank unchanged, no temporary file left.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hopfield_masks.safety import journal
from hopfield_masks.backends import create_bank, open_bank, verify_file
from hopfield_masks.errors import BankFileNotFoundError, FileWriteError
from tests.hopfield_masks.bank_worker import masks_for

WORKER = Path(__file__).with_name("bank_worker.py")
ROOT = Path(__file__).parents[2]


def seed_bank(path: Path, n: int = 3, backend: str = "hdf5-packed") -> None:
    with create_bank(path, backend, overwrite=True) as bank:
        for i in range(n):
            bank.write_task(f"seed-{i}", masks_for(f"seed-{i}"))


def litter(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def start(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)


def kill_at_random(path: Path, command: list[str], delay: float) -> list[str]:
    """Start the worker, SIGKILL it ``delay`` s after its first output; return the tasks it reported committed."""
    proc = start(command[0], str(path), *command[1:])
    first = proc.stdout.readline()
    time.sleep(delay)
    proc.kill()
    rest, _ = proc.communicate(timeout=60)
    lines = (first + rest).splitlines()
    return [line.split(" ", 1)[1] for line in lines if line.startswith("committed ")]


def check_after_crash(path: Path, committed: list[str]) -> None:
    with open_bank(path) as bank:  # the first open rolls a hot journal back
        names = bank.tasks()
        assert set(committed) <= set(names)
        for name in names:
            got = bank.read_task(name)
            for layer, mask in masks_for(name).items():
                np.testing.assert_array_equal(got[layer], mask)
    assert verify_file(path).ok
    assert litter(path.parent) == []


def _check_created(path: Path) -> None:
    with open_bank(path) as bank:
        assert bank.tasks() == ["0", "1", "2"]
        for i in range(3):
            got = bank.read_task(str(i))
            for layer, mask in masks_for(f"c-{i}").items():
                np.testing.assert_array_equal(got[layer], mask)
    assert verify_file(path).ok and litter(path.parent) == []


def trials(tmp_path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    commands = [["append", "k", "1000"], ["session", "s", "1000"]]
    for trial in range(n):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        path = folder / "bank.h5"
        if trial % 4 == 3:  # a new bank being written, as 'train' saves one: absent or complete, never torn
            proc = start("create", str(path), "c")
            time.sleep(float(rng.uniform(0.2, 1.5)))
            proc.kill()
            proc.communicate(timeout=60)
            if path.exists():
                _check_created(path)
            else:
                with pytest.raises(BankFileNotFoundError):
                    open_bank(path)
                assert litter(folder) == []
            continue
        seed_bank(path, n=4)
        if trial % 4 == 2:  # encode reports nothing before it finishes: kill it while it works
            proc = start("encode", str(path), "200KB")
            time.sleep(float(rng.uniform(0.3, 2.0)))
            proc.kill()
            proc.communicate(timeout=60)
            committed = [f"seed-{i}" for i in range(4)]
        else:
            committed = kill_at_random(path, commands[trial % 4], float(rng.uniform(0.0, 0.4)))
        check_after_crash(path, [*committed, *(f"seed-{i}" for i in range(4))])


class TestKill9:
    def test_a_few_random_kills(self, tmp_path):
        """4 seeded kill -9 trials (append sessions, commit() in one session, encode, a new bank being created)."""
        trials(tmp_path, 4, seed=1)

    @pytest.mark.slow
    def test_sixty_random_kills(self, tmp_path):
        """60 seeded kill -9 trials."""
        trials(tmp_path, 60, seed=2)

    def test_kills_of_appends_to_an_entropy_bank(self, tmp_path):
        """hdf5-entropy (each append decodes the chain, then writes): kill -9 of append sessions and commit()s."""
        pytest.importorskip("constriction")
        rng = np.random.default_rng(np.random.SeedSequence(3))
        for trial, command in enumerate([["append", "k", "1000"], ["session", "s", "1000"]]):
            folder = tmp_path / f"e{trial}"
            folder.mkdir()
            path = folder / "bank.h5"
            seed_bank(path, n=4, backend="hdf5-entropy")
            committed = kill_at_random(path, command, float(rng.uniform(0.05, 0.4)))
            check_after_crash(path, [*committed, *(f"seed-{i}" for i in range(4))])
            with open_bank(path) as bank:
                assert bank.backend_id == "hdf5-entropy"


class TestSigterm:
    @pytest.mark.parametrize("delay", [0.05, 0.3])
    def test_sigterm_unwinds_and_leaves_nothing(self, tmp_path, delay):
        """SIGTERM with the CLI's handler (deferred while HDF5 works): exit 143, committed tasks kept,
        journal removed by the process itself, the file consistent without any recovery."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        proc = start("sigterm", str(path), "x")
        proc.stdout.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 143, err[-2000:]
        committed = [line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("committed ")]
        assert litter(tmp_path) == []  # cleaned on the way out, not by the next open
        head = path.read_bytes()[:48]
        assert int.from_bytes(head[28:36], "little") == path.stat().st_size  # superblock end = file end
        check_after_crash(path, ["x-0", *committed])


class TestDiskFull:
    @pytest.mark.parametrize("mode", ["a", "w"])
    def test_injected_enospc(self, tmp_path, monkeypatch, mode):
        """ENOSPC from the file system during a write: FileWriteError naming it, bank unchanged, nothing left."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        before = path.read_bytes()
        real_write = journal.PlainFile.write
        budget = [20_000]

        def full_disk(self, data):
            budget[0] -= len(memoryview(data))
            if budget[0] < 0:
                self._fail(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
            return real_write(self, data)

        monkeypatch.setattr(journal.PlainFile, "write", full_disk)
        with pytest.raises(FileWriteError, match="No space left on device"):
            bank = open_bank(path, "a") if mode == "a" else create_bank(path, overwrite=True)
            with bank:
                for i in range(40):
                    bank.write_task(f"n{i}", masks_for(f"n{i}"))
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert litter(tmp_path) == []

    def test_file_size_limit_in_the_cli(self, tmp_path):
        """A real write failure (RLIMIT_FSIZE, SIGXFSZ ignored) during 'encode': exit 2, no segfault, no temp left."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        before = path.read_bytes()
        limit = len(before) + 30_000  # the reservoir needs about 200 kB more

        def small_disk() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        proc = subprocess.run([sys.executable, "-m", "supsup_store_cli", "encode", str(path), "--budget", "200KB"],
                              capture_output=True, text=True, timeout=300, preexec_fn=small_disk, cwd=ROOT)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines[-1].startswith("Error:") and "Traceback" not in proc.stderr
        assert "File too large" in proc.stderr
        assert path.read_bytes() == before and litter(tmp_path) == []


class TestCommit:
    def test_commit_in_a_new_bank_publishes_it_and_continues_in_place(self, tmp_path):
        """create_bank + commit(): the file exists with the committed tasks; later ones arrive at close."""
        path = tmp_path / "bank.h5"
        with create_bank(path) as bank:
            bank.write_task("a", masks_for("a"))
            bank.commit()
            with open_bank(path) as other:  # a reader sees the committed state (the writer is between writes)
                assert other.tasks() == ["a"]
            bank.write_task("b", masks_for("b"))
        check_after_crash(path, ["a", "b"])

    def test_exception_after_commit_keeps_the_committed_tasks(self, tmp_path):
        """An error after commit() rolls back to the commit, not to the start of the session."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        with pytest.raises(RuntimeError), open_bank(path, "a") as bank:
            bank.write_task("kept", masks_for("kept"))
            bank.commit()
            bank.write_task("lost", masks_for("lost"))
            raise RuntimeError
        with open_bank(path) as bank:
            assert "kept" in bank.tasks() and "lost" not in bank.tasks()
        check_after_crash(path, ["kept"])


def test_litter_of_a_killed_writer_goes_at_the_next_open(tmp_path):
    """A temporary, a repack file and a lock file left by a killed writer are removed by the next reader."""
    path = tmp_path / "bank.h5"
    seed_bank(path)
    for name in (".bank.h5.k3j2q9_a.tmp", ".bank.h5.x8c1m2zz.repack", ".bank.h5.lock", ".other.h5.q7w8e9r0.tmp"):
        (tmp_path / name).write_bytes(b"left over")
    with open_bank(path) as bank:
        assert len(bank) == 3
    assert litter(tmp_path) == [".other.h5.q7w8e9r0.tmp"]  # another bank's files are not ours to judge


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 512 KiB tmpfs (needs the right to mount: root in a container); skipped where that is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


class TestRealDiskFull:
    def test_encode_on_a_full_tmpfs(self, small_tmpfs):
        """'encode' of a 1 MB reservoir onto a 512 KiB tmpfs: exit 2 naming ENOSPC, bank unchanged, no litter."""
        path = small_tmpfs / "bank.h5"
        seed_bank(path)
        before = path.read_bytes()
        proc = subprocess.run([sys.executable, "-m", "supsup_store_cli", "encode", str(path), "--budget", "1MB",
                               "--rule", "pseudo-inverse"],  # a reservoir that fills its 1 MB
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
        assert "No space left on device" in proc.stderr and "Traceback" not in proc.stderr
        assert path.read_bytes() == before and litter(small_tmpfs) == []

    def test_new_bank_larger_than_the_disk(self, small_tmpfs):
        """A new bank that does not fit: FileWriteError, no temporary file left, nothing at the path."""
        path = small_tmpfs / "big.h5"
        with pytest.raises(FileWriteError, match="No space left on device"):
            with create_bank(path) as bank:
                for i in range(3):
                    bank.write_task(str(i), {"w": np.ones(2_000_000, bool)})  # 250 kB each
        assert not path.exists() and litter(small_tmpfs) == []
