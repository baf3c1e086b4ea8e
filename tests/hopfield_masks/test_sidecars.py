"""Sidecar files (``.NAME.lock``, ``.NAME.journal``) that someone else planted are never followed, written or applied.

- a symlink at ``.NAME.lock`` (to a victim file, or dangling): writers refuse it with one line naming it, readers
  (and ``supsup-store info``) read the bank without touching it; its target is unchanged or never created;
- a journal planted beside a bank, with the bank's device and inode numbers and valid record checksums (in the
  previous journal format, or in the current one with a key of its own): never rolled back into the bank; the
  opener refuses with one line naming it, the bank byte-identical;
- the lock file deleted while a writer works: a second writer waits for the live session and fails, the bank intact;
- the temporaries of ``m.h5.bak`` are not ``m.h5``'s: opening ``m.h5`` leaves a live writer of ``m.h5.bak`` alone;
- a full disk while the lock is taken: one line, no lock file left;
- a sticky shared folder (``/tmp``-like, mode 1777): another user's planted links and files are refused, nothing
  of theirs is followed or written (needs root and ``setpriv``/``runuser``; skipped otherwise).
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import pytest

from hopfield_masks.backends import create_bank, describe_file, open_bank, verify_file
from hopfield_masks.errors import BankLockedError, FileWriteError, HopfieldMasksError, StorageFormatError
from tests.hopfield_masks.bank_worker import assert_exact, masks_for, seed_bank

ROOT = Path(__file__).parents[2]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "supsup_store_cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=full_env)


def one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text, text
    return text


SEEDS = [f"seed-{i}" for i in range(3)]


# ------------------------------------------------------------------------------------------------ planted locks
class TestPlantedLock:
    @pytest.mark.parametrize("dangling", [False, True])
    def test_symlink_lock_is_never_followed(self, tmp_path, dangling):
        """.bank.h5.lock -> victim: readers and `info` read the bank, writers refuse naming the lock; the victim keeps
        its bytes (a dangling link's target is never created)."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        before = path.read_bytes()
        victim = tmp_path / "victim.txt"
        if not dangling:
            victim.write_text("precious\n")
        lock = tmp_path / ".bank.h5.lock"
        lock.symlink_to(victim)

        with open_bank(path) as bank:  # a reader needs no lock file: it neither refuses nor follows the link
            assert bank.tasks() == SEEDS
        describe_file(path)
        verify_file(path)
        proc = cli("info", str(path))
        assert proc.returncode == 0, proc.stderr
        with pytest.raises(HopfieldMasksError, match=r"\.bank\.h5\.lock") as info:
            with open_bank(path, "a") as bank:
                bank.write_task("x", masks_for("x"))
        one_line(info.value)
        with pytest.raises(HopfieldMasksError, match=r"\.bank\.h5\.lock"):
            create_bank(path, overwrite=True)
        proc = cli("encode", str(path), "--budget", "64KB")
        assert proc.returncode == 2 and ".bank.h5.lock" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr

        if dangling:
            assert not victim.exists() and not victim.is_symlink()
        else:
            assert victim.read_text() == "precious\n"
        assert lock.is_symlink() and path.read_bytes() == before

    def test_hard_linked_or_special_lock_is_refused(self, tmp_path):
        """A lock file that is a second name of another file, or a FIFO: refused, nothing written into it."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        victim = tmp_path / "victim.txt"
        victim.write_text("precious\n")
        lock = tmp_path / ".bank.h5.lock"
        os.link(victim, lock)
        with pytest.raises(HopfieldMasksError, match=r"\.bank\.h5\.lock"):
            open_bank(path, "a")
        assert victim.read_text() == "precious\n"
        lock.unlink()
        os.mkfifo(lock)
        with pytest.raises(HopfieldMasksError, match=r"\.bank\.h5\.lock"):
            open_bank(path, "a")  # never blocks on the FIFO
        assert stat.S_ISFIFO(lock.lstat().st_mode)
        lock.unlink()
        with open_bank(path, "a") as bank:  # once removed, all is as usual
            bank.write_task("x", masks_for("x"))
        assert_exact(path, [*SEEDS, "x"])
        assert not lock.exists()

    def test_full_disk_while_taking_the_lock(self, tmp_path, monkeypatch):
        """ENOSPC writing the pid into a new lock file: one line naming the bank and the cause, no lock file left."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        before = path.read_bytes()
        real_pwrite, real_write = os.pwrite, os.write

        def is_lock(fd: int) -> bool:
            try:
                return os.readlink(f"/proc/self/fd/{fd}").endswith(".lock")
            except OSError:
                return False

        def full_pwrite(fd, data, offset):
            if is_lock(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_pwrite(fd, data, offset)

        def full_write(fd, data):
            if is_lock(fd):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        monkeypatch.setattr(os, "pwrite", full_pwrite)
        monkeypatch.setattr(os, "write", full_write)
        with pytest.raises((FileWriteError, BankLockedError), match="No space left on device") as info:
            open_bank(path, "a")
        monkeypatch.undo()
        assert str(path) in one_line(info.value)
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.h5"]


# ------------------------------------------------------------------------------------------------ planted journals
def old_format_journal(bank: Path, page: bytes) -> bytes:
    """A journal in the previous format (no key): the bank's dev/ino, size 100, one record with a valid CRC-32."""
    st = os.stat(bank)
    header = struct.pack("<8sQQQqq", b"HMJRNL02", st.st_dev, st.st_ino, len(page), st.st_atime_ns, st.st_mtime_ns)
    return header + struct.pack("<QII", 0, len(page), zlib.crc32(page) & 0xFFFFFFFF) + page


def current_format_journal(bank: Path, page: bytes) -> bytes:
    """A journal in the current format (docs/FORMAT.md) made by someone who is not a writer: a key of its own."""
    st = os.stat(bank)
    key = os.urandom(32)
    header = struct.pack("<8sQQQqq32s", b"HMJRNL03", st.st_dev, st.st_ino, len(page), st.st_atime_ns,
                         st.st_mtime_ns, key)
    head = struct.pack("<QI", 0, len(page))
    mac = hmac.new(key, header + head + page, hashlib.sha256).digest()[:16]
    return header + head + mac + page


class TestPlantedJournal:
    @pytest.mark.parametrize("forge", [old_format_journal, current_format_journal])
    def test_a_planted_journal_is_never_rolled_back(self, tmp_path, forge):
        """A journal naming the bank's device and inode, with valid checksums, that no writer left: readers and
        writers refuse with one line naming it; the bank stays byte-identical; removing the journal heals it."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        before = path.read_bytes()
        journal = tmp_path / ".bank.h5.journal"
        journal.write_bytes(forge(path, b"X" * 100))
        planted = journal.read_bytes()

        for attempt in (lambda: open_bank(path).close(), lambda: open_bank(path, "a").close(),
                        lambda: describe_file(path), lambda: verify_file(path)):
            with pytest.raises(StorageFormatError, match=r"\.bank\.h5\.journal") as info:
                attempt()
            one_line(info.value)
            assert path.read_bytes() == before
        proc = cli("info", str(path))
        assert proc.returncode == 2 and ".bank.h5.journal" in proc.stderr and "Traceback" not in proc.stderr
        assert path.read_bytes() == before and journal.read_bytes() == planted  # left for the user to judge

        journal.unlink()
        assert_exact(path, SEEDS)

    def test_a_journal_naming_another_file_is_stale(self, tmp_path):
        """A journal whose device/inode name another file (left by a bank since replaced) goes silently."""
        path = tmp_path / "bank.h5"
        seed_bank(path)
        other = tmp_path / "other.h5"
        seed_bank(other)
        (tmp_path / ".bank.h5.journal").write_bytes(current_format_journal(other, b"X" * 100))
        before = path.read_bytes()
        assert_exact(path, SEEDS)
        assert path.read_bytes() == before and not (tmp_path / ".bank.h5.journal").exists()


# ------------------------------------------------------------------------------------------------ live writers
HOLDER = """
import sys, time
from hopfield_masks.backends import open_bank
from tests.hopfield_masks.bank_worker import assert_exact, masks_for, seed_bank
with open_bank(sys.argv[1], "a") as bank:
    for i in range(3):
        bank.write_task(f"held-{i}", masks_for(f"held-{i}"))
    bank.commit()
    bank.write_task("held-3", masks_for("held-3"))
    bank.delete_task("seed-0")  # overwrites metadata in place: the journal holds pages
    bank._h5.flush()
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
print("committed", flush=True)
"""


def test_lock_file_deleted_while_a_writer_works(tmp_path):
    """Someone deletes .bank.h5.lock during a session: a second writer gets a fresh lock file but never rolls the
    live session back; it waits for the bank file itself and fails; the first writer commits, the bank is intact."""
    path = tmp_path / "bank.h5"
    seed_bank(path)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "holding"
        assert (tmp_path / ".bank.h5.journal").exists()
        (tmp_path / ".bank.h5.lock").unlink()
        with pytest.raises(BankLockedError) as info:
            from hopfield_masks.backends import HDF5MaskBank

            HDF5MaskBank(path, "a", lock_timeout=0.5).close()
        one_line(info.value)
    finally:
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "committed" in out, err[-2000:]
    assert_exact(path, ["seed-1", "seed-2", *(f"held-{i}" for i in range(4))])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.h5"]


# ------------------------------------------------------------------------------------------------ temporaries
def test_temporaries_of_a_longer_name_are_not_ours(tmp_path):
    """A live writer of m.h5.bak keeps its temporary while m.h5 is opened; m.h5's own leftovers still go."""
    seed_bank(tmp_path / "m.h5")
    bak = create_bank(tmp_path / "m.h5.bak")
    try:
        bak.write_task("b", masks_for("b"))
        live = [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.h5.bak.") and p.name.endswith(".tmp")]
        assert len(live) == 1
        leftovers = [".m.h5.k3j2q9_a.tmp", ".m.h5.x8c1m2zz.repack", ".m.h5.k3j2q9_a.tmp.repack", ".m.h5.4242.train.tmp"]
        for name in leftovers:
            (tmp_path / name).write_bytes(b"left over")
        (tmp_path / ".m.h5.lock").write_bytes(b"")  # a killed writer's lock file: free
        with open_bank(tmp_path / "m.h5") as bank:
            assert bank.tasks() == SEEDS
        names = sorted(p.name for p in tmp_path.iterdir())
        assert live[0] in names and not set(leftovers) & set(names)
    finally:
        bak.close()
    assert_exact(tmp_path / "m.h5.bak", ["b"])


# ------------------------------------------------------------------------------------------------ another user
def _as_nobody() -> list[str] | None:
    if os.geteuid() != 0:
        return None
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if shutil.which("runuser"):
        return ["runuser", "-u", "nobody", "--"]
    return None


@pytest.fixture
def sticky_folder():
    """A world-writable sticky folder (like /tmp) that user nobody can reach; skipped without root or setpriv."""
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("needs root and setpriv or runuser to act as another user")
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot switch users here: {probe.stderr.decode(errors='replace')[:200]}")
    folder = Path(tempfile.mkdtemp(prefix="sticky-", dir="/tmp"))
    folder.chmod(0o1777)
    try:
        yield folder, prefix
    finally:
        shutil.rmtree(folder, ignore_errors=True)


PLANT = """
import os, sys
folder, kind = sys.argv[1], sys.argv[2]
own = os.path.join(folder, "b_file.txt")
with open(own, "w") as fh:
    fh.write("b's own\\n")
if kind == "links":
    os.symlink(own, os.path.join(folder, ".bank.h5.lock"))
    os.symlink(os.path.join(folder, "victim.txt"), os.path.join(folder, ".bank.h5.journal"))
else:
    with open(os.path.join(folder, ".bank.h5.lock"), "w") as fh:
        fh.write("1\\n")
    with open(os.path.join(folder, ".bank.h5.journal"), "wb") as fh:
        fh.write(bytes.fromhex(sys.argv[3]))
"""


@pytest.mark.parametrize("kind", ["links", "files"])
def test_another_users_sidecars_in_a_sticky_folder(sticky_folder, kind):
    """User A's bank in a 1777 folder; user B plants .bank.h5.lock and .bank.h5.journal (links to files, or files of
    B's own holding a forged journal). A's readers and writers refuse them naming them; neither A's victim nor B's
    file is written; the bank is unchanged."""
    folder, as_nobody = sticky_folder
    path = folder / "bank.h5"
    seed_bank(path)
    path.chmod(0o644)
    victim = folder / "victim.txt"
    victim.write_text("precious\n")
    before = path.read_bytes()
    forged = current_format_journal(path, b"X" * 100).hex()
    plant = subprocess.run([*as_nobody, sys.executable, "-c", PLANT, str(folder), kind, forged],
                           capture_output=True, text=True)
    assert plant.returncode == 0, plant.stderr
    b_file = folder / "b_file.txt"
    assert b_file.stat().st_uid == 65534 and (folder / ".bank.h5.lock").lstat().st_uid == 65534

    for attempt in (lambda: open_bank(path), lambda: open_bank(path, "a"), lambda: create_bank(path, overwrite=True)):
        with pytest.raises(HopfieldMasksError, match=r"\.bank\.h5\.(journal|lock)") as info:
            attempt().close()
        one_line(info.value)
    proc = cli("info", str(path))
    assert proc.returncode == 2 and ".bank.h5.journal" in proc.stderr and "Traceback" not in proc.stderr

    assert path.read_bytes() == before
    assert victim.read_text() == "precious\n" and b_file.read_text() == "b's own\n"
    # B cannot make A's opener write either: B's planted sidecars are still B's, untouched
    assert (folder / ".bank.h5.lock").lstat().st_uid == 65534
    # once they are gone (the folder's owner removes them), A works as usual
    (folder / ".bank.h5.lock").unlink()
    (folder / ".bank.h5.journal").unlink()
    with open_bank(path, "a") as bank:
        bank.write_task("x", masks_for("x"))
    assert_exact(path, [*SEEDS, "x"])


def test_a_reader_needs_no_sidecar(tmp_path):
    """Reading (open_bank, describe, verify) creates no file in the bank's folder, even after a writer was killed."""
    path = tmp_path / "bank.h5"
    seed_bank(path)
    folder_mtime = tmp_path.stat().st_mtime_ns
    time.sleep(0.01)
    with open_bank(path) as bank:
        bank.read_task("seed-0")
    describe_file(path)
    verify_file(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.h5"]
    assert tmp_path.stat().st_mtime_ns == folder_mtime
