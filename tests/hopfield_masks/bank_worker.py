"""A process that writes a bank, for the locking and crash tests (``test_locking.py``, ``test_crash_safety.py``).

``python bank_worker.py COMMAND BANK [ARGS]``; it prints ``committed NAME`` after each committed task, so a
test that kills it knows what must survive.

- ``append BANK PREFIX N``: N sessions, each opening the bank ``"a"``, writing task ``PREFIX-i``, closing;
- ``session BANK PREFIX N``: one session writing N tasks with ``commit()`` after each;
- ``encode BANK BUDGET``: :func:`hopfield_masks.encoding.encode_bank`;
- ``create BANK``: ``create_bank(overwrite=False)`` with three tasks (prints ``created`` or ``refused ...``);
- ``hold BANK SECONDS``: hold the bank open for appending, doing nothing;
- ``sigterm BANK PREFIX``: like ``session`` forever, with the CLI's SIGTERM handling.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.errors import HopfieldMasksError

SHAPES = {"fc1": (64, 40), "fc2": (40, 10)}


def seed_bank(path, n: int = 3) -> None:
    """A new bank at ``path`` (replacing one) with tasks ``seed-0`` .. ``seed-{n-1}``."""
    with create_bank(path, overwrite=True) as bank:
        for i in range(n):
            bank.write_task(f"seed-{i}", masks_for(f"seed-{i}"))


def assert_exact(path, names: list[str]) -> None:
    """The bank at ``path`` holds exactly the tasks ``names``, each bit for bit, and verifies."""
    from hopfield_masks.backends import verify_file

    with open_bank(path) as bank:
        assert sorted(bank.tasks()) == sorted(names)
        for name in names:
            got = bank.read_task(name)
            for layer, mask in masks_for(name).items():
                np.testing.assert_array_equal(got[layer], mask)
    assert verify_file(path).ok


def masks_for(name: str) -> dict[str, np.ndarray]:
    """The masks of task ``name`` (deterministic: the seed is the name's bytes)."""
    rng = np.random.default_rng(np.random.SeedSequence(list(name.encode("utf-8"))))
    return {layer: rng.random(shape) < 0.4 for layer, shape in SHAPES.items()}


def main(argv: list[str]) -> int:
    command, bank_path, *args = argv
    if command == "append":
        prefix, n = args[0], int(args[1])
        for i in range(n):
            name = f"{prefix}-{i}"
            with open_bank(bank_path, "a") as bank:
                bank.write_task(name, masks_for(name))
            print(f"committed {name}", flush=True)
    elif command in ("session", "sigterm"):
        if command == "sigterm":
            from supsup_store_cli._app import _catch_sigterm

            _catch_sigterm()
        prefix = args[0]
        n = int(args[1]) if command == "session" else 10**9
        with open_bank(bank_path, "a") as bank:
            for i in range(n):
                name = f"{prefix}-{i}"
                bank.write_task(name, masks_for(name))
                bank.commit()
                print(f"committed {name}", flush=True)
    elif command == "encode":
        from hopfield_masks.encoding import encode_bank

        encode_bank(bank_path, args[0])
        print("encoded", flush=True)
    elif command == "create":
        try:
            with create_bank(bank_path, overwrite=False) as bank:
                for i in range(3):
                    bank.write_task(str(i), masks_for(f"{args[0]}-{i}"))
                time.sleep(0.2)  # widen the race window
            print("created", flush=True)
        except HopfieldMasksError as exc:
            print(f"refused {exc}", flush=True)
    elif command == "hold":
        with open_bank(bank_path, "a"):
            print("holding", flush=True)
            time.sleep(float(args[0]))
    else:
        raise SystemExit(f"unknown command {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
