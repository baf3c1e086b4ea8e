"""Two processes writing one bank never lose an update silently (hopfield_masks.safety.locking)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.encoding import bank_reservoirs, encode_bank, reservoir_is_current
from hopfield_masks.errors import BankLockedError
from hopfield_masks.safety.locking import bank_lock, lock_path
from tests.hopfield_masks.bank_worker import masks_for

WORKER = Path(__file__).with_name("bank_worker.py")
ROOT = Path(__file__).parents[2]
ROUNDS = 2  # parallel rounds per pair in the default run (TestManyRounds: 20, slow)


def start(*args: str, timeout: float = 60) -> subprocess.Popen:
    env = {**os.environ, "HOPFIELD_MASKS_LOCK_TIMEOUT": str(timeout), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(WORKER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT, env=env)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    return out


def seed_bank(path: Path, n: int = 3) -> None:
    with create_bank(path, overwrite=True) as bank:
        for i in range(n):
            bank.write_task(f"seed-{i}", masks_for(f"seed-{i}"))


def assert_exact(bank, names) -> None:
    for name in names:
        got = bank.read_task(name)
        for layer, mask in masks_for(name).items():
            np.testing.assert_array_equal(got[layer], mask)


class TestParallelWriters:
    def test_append_and_append(self, tmp_path, rounds=ROUNDS):
        """Two processes appending 6 tasks each, session by session: all 12 arrive, bit-exactly."""
        path = tmp_path / "bank.h5"
        for _round in range(rounds):
            seed_bank(path)
            a, b = start("append", str(path), "a", "6"), start("append", str(path), "b", "6")
            finish(a), finish(b)
            names = [f"{p}-{i}" for p in "ab" for i in range(6)]
            with open_bank(path) as bank:
                assert sorted(bank.tasks()) == sorted([f"seed-{i}" for i in range(3)] + names)
                assert_exact(bank, names)

    def test_encode_and_encode(self, tmp_path, rounds=1):
        """Two encodes of different budgets at once: both reservoirs end up in the bank (none silently lost)."""
        path = tmp_path / "bank.h5"
        for _round in range(rounds):
            seed_bank(path)
            a, b = start("encode", str(path), "64KB"), start("encode", str(path), "96KB")
            finish(a), finish(b)
            assert sorted(bank_reservoirs(path)) == ["reservoir-64000", "reservoir-96000"]
            assert reservoir_is_current(path, "64KB") and reservoir_is_current(path, "96KB")

    def test_encode_and_append(self, tmp_path, rounds=1):
        """An encode racing an append: the task always arrives and the reservoir is current or detected stale."""
        path = tmp_path / "bank.h5"
        for _round in range(rounds):
            seed_bank(path)
            a, b = start("encode", str(path), "64KB"), start("append", str(path), "late", "1")
            finish(a), finish(b)
            with open_bank(path) as bank:
                assert "late-0" in bank.tasks() and "reservoir-64000" in bank.attachments()
                assert_exact(bank, ["late-0"])
            # False = encoded before the append, and detected as stale: never a silent stale reservoir
            assert reservoir_is_current(path, "64KB") in (True, False)

    def test_create_and_create(self, tmp_path, rounds=ROUNDS):
        """Two writers creating the same new bank (as two 'train --out X' do): one wins, the other is refused."""
        for round_ in range(rounds):
            path = tmp_path / f"new{round_}.h5"
            a, b = start("create", str(path), "a"), start("create", str(path), "b")
            outs = sorted([finish(a).strip(), finish(b).strip()])
            assert outs[0] == "created" and outs[1].startswith("refused") and "does not exist yet" in outs[1]
            with open_bank(path) as bank:
                assert bank.tasks() == ["0", "1", "2"]

    def test_second_writer_waits_then_fails_clearly(self, tmp_path):
        """While one process holds the bank for appending, a writer with a short timeout fails naming the holder."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        holder = start("hold", str(path), "3")
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with pytest.raises(BankLockedError, match=rf"{path.name}.*pid {holder.pid}.*waited 0.5 s"):
            _open_with_timeout(path, "a", 0.5)
        assert time.monotonic() - started >= 0.45
        with pytest.raises(BankLockedError, match="in use by a writer"):
            _open_with_timeout(path, "r", 0.3)  # the holder modifies the file in place: readers wait too
        finish(holder)
        with open_bank(path) as bank:  # released at exit
            assert len(bank) == 3
        assert not lock_path(path).exists()  # the last user removed the lock file


def _open_with_timeout(path: Path, mode: str, timeout: float) -> None:
    from hopfield_masks.backends import HDF5MaskBank

    HDF5MaskBank(path, mode, lock_timeout=timeout).close()


@pytest.mark.slow
class TestManyRounds:
    """The same races, 20 rounds each (slow)."""

    @pytest.mark.parametrize("race", ["test_append_and_append", "test_encode_and_encode", "test_encode_and_append",
                                      "test_create_and_create"])
    def test_race(self, tmp_path, race):
        getattr(TestParallelWriters(), race)(tmp_path, rounds=20)


class TestLockSemantics:
    def test_reentrant_in_one_process(self, tmp_path):
        """Holding the writer lock, the same process may still open the bank to read and to append."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        with bank_lock(path):
            with open_bank(path) as bank:
                assert len(bank) == 3
            with open_bank(path, "a") as bank:
                bank.write_task("x", masks_for("x"))
        assert not lock_path(path).exists()

    def test_encode_holds_the_lock_for_the_whole_cycle(self, tmp_path, monkeypatch):
        """While encode computes the reservoir (after reading the masks), another writer cannot get in."""
        import hopfield_masks.encoding as encoding

        path = tmp_path / "bank.h5"
        seed_bank(path)
        seen = []
        real = encoding.bank_digest

        def digest_then_try_a_writer(bank):
            probe = start("append", str(path), "intruder", "1", timeout=0.3)
            out, err = probe.communicate(timeout=120)
            seen.append((probe.returncode, err))
            return real(bank)

        monkeypatch.setattr(encoding, "bank_digest", digest_then_try_a_writer)
        encode_bank(path, "64KB")
        (code, err), = seen
        assert code != 0 and "BankLockedError" in err and "waited 0.3 s" in err
        monkeypatch.undo()
        assert reservoir_is_current(path, "64KB")


def test_a_reader_racing_a_repack_and_a_new_session_reads_the_new_bank(tmp_path, monkeypatch):
    """A reader (also open_bank(..., "a"), which first peeks at the backend) that locked the bank just before a repack
    renamed a new file over it, then opened the name while a new session had marked that file, reported "is not an
    HDF5 file (no HDF5 signature)" for a sound bank (2 sessions in 33, two processes of two threads appending).  It
    must look again: the new file, once that session committed, is read normally."""
    from hopfield_masks.backends import hdf5

    path = tmp_path / "bank.h5"
    with create_bank(path) as bank:
        bank.write_task("a", masks_for("a"))
    good = path.read_bytes()
    real, raced = hdf5.open_h5_read, []

    def racing(name, *args, **kwargs):
        if not raced:
            raced.append(name)
            renamed = tmp_path / "renamed.h5"
            renamed.write_bytes(b"HMSESS03" + good[8:])  # a repack's new file, already marked by the next session
            os.replace(renamed, path)
            try:
                return real(name, *args, **kwargs)
            finally:
                path.write_bytes(good)  # that session commits: the mark goes, the inode stays
        return real(name, *args, **kwargs)

    monkeypatch.setattr(hdf5, "open_h5_read", racing)
    with open_bank(path) as bank:
        assert bank.tasks() == ["a"] and raced
