"""A writer killed at each step of an in-place session: the next opener finds the last commit (or the new one, when
the commit was complete), bit-exactly, and nothing is left in the folder.

The random kills of ``test_crash_safety.py`` rarely land in the short windows between the journal's creation,
the bank's mark, the commit record and the journal's deletion; here a worker ends itself (``os._exit``) exactly
there, one step per run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank, verify_file
from tests.hopfield_masks.bank_worker import masks_for

ROOT = Path(__file__).parents[2]
SEEDS = [f"seed-{i}" for i in range(3)]

WORKER = r"""
import os, sys
from hopfield_masks.safety import journal
from hopfield_masks.backends import hdf5, open_bank
from tests.hopfield_masks.bank_worker import masks_for

path, point = sys.argv[1], sys.argv[2]
J = journal.JournaledFile


def die(*_args, **_kwargs):
    os._exit(9)


def wrap(owner, name, before=None, after=None):
    real = getattr(owner, name)

    def wrapper(*args, **kwargs):
        if before is not None:
            before(*args, **kwargs)
        result = real(*args, **kwargs)
        if after is not None:
            after(*args, **kwargs)
        return result

    setattr(owner, name, wrapper)


writes = [0]


def count_writes(*_args):
    writes[0] += 1
    if writes[0] == int(point.split(":")[1]):
        die()


if point == "before-mark":
    wrap(journal, "_mark", before=die)
elif point == "after-mark":
    wrap(J, "_start", after=die)
elif point.startswith("writes:"):
    wrap(J, "write", after=count_writes)
elif point == "before-unmark":
    wrap(J, "_unmark", before=die)
elif point == "after-commit-record":
    wrap(J, "_unmark", before=lambda self: (journal._write_all(self._jfd, journal._record(
        self._key, self._header, journal._COMMIT, bytes(self._head))), die()))
elif point == "before-unlink":
    wrap(journal, "_unlink_journal", before=die)
elif point == "rollback-before-first-page":
    def partial(fd, jfd, records, size, times):
        for offset, length, pos in records:
            if offset:
                os.pwrite(fd, os.pread(jfd, length, pos), offset)
        os.ftruncate(fd, size)
        die()

    journal._write_back = partial
elif point == "during-repack":
    wrap(hdf5, "repack", before=die)

bank = open_bank(path, "a")
bank.write_task("x", masks_for("x"))
bank._h5.flush()
if point == "during-repack":
    bank.delete_task("seed-0")
if point.startswith("rollback"):
    bank._close(commit=False)
else:
    bank.write_task("y", masks_for("y"))
    bank.close()
print("finished", flush=True)
"""

POINTS = ["before-mark", "after-mark", "writes:3", "writes:12", "before-unmark", "after-commit-record",
          "before-unlink", "rollback-before-first-page", "during-repack"]


def seed_bank(path: Path) -> None:
    with create_bank(path, overwrite=True) as bank:
        for name in SEEDS:
            bank.write_task(name, masks_for(name))


@pytest.mark.parametrize("point", POINTS)
def test_killed_at_each_step(tmp_path, point):
    path = tmp_path / "bank.h5"
    seed_bank(path)
    before = path.read_bytes()
    proc = subprocess.run([sys.executable, "-c", WORKER, str(path), point], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 9 and "finished" not in proc.stdout, (proc.returncode, proc.stderr[-2000:])
    with open_bank(path) as bank:  # rolls back what must be, deletes what is stale
        names = bank.tasks()
        for name in names:
            got = bank.read_task(name)
            for layer, mask in masks_for(name).items():
                np.testing.assert_array_equal(got[layer], mask)
    committed = {"before-unlink": [*SEEDS, "x", "y"], "during-repack": ["seed-1", "seed-2", "x", "y"]}
    if point in committed:  # the mark was gone (or the file settled for its copy): the new state is the commit
        assert sorted(names) == sorted(committed[point])
    else:
        assert names == SEEDS and path.read_bytes() == before  # rolled back byte for byte
    assert verify_file(path).ok
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bank.h5"]
