"""Run one reader of an untrusted input per command-line argument; print one JSON line per scenario.

Started by ``test_untrusted_readers.py`` in a subprocess under a memory limit (``RLIMIT_AS``), so a reader
that would allocate gigabytes fails the test instead of the machine.  Each argument is
``SCENARIO:PATH[:CEILING]``: the scenario's reader runs on ``PATH`` (a file, or ``-``), with
``HOPFIELD_MASKS_MAX_ARRAY_BYTES=CEILING`` when given.  The outcome is ``{"scenario": ..., "outcome": "ok" |
"error" | "crash", "message": ...}``: ``error`` is a :class:`~hopfield_masks.errors.HopfieldMasksError` (the
promised one-line error), ``crash`` anything else (a MemoryError included), with the traceback's last line.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

import numpy as np

from hopfield_masks.blocks import MaskLayout
from hopfield_masks.capacity import capacity_sweep
from hopfield_masks.encoding import read_bank_reservoir
from hopfield_masks.errors import HopfieldMasksError
from hopfield_masks.network import HopfieldNetwork
from hopfield_masks.reservoir import Reservoir


def _from_file(path: str) -> object:
    return Reservoir.from_file(path)


def _bank_reservoir(path: str) -> object:
    return read_bank_reservoir(path, 1000)


def _recall_keyed(path: str) -> object:
    return Reservoir.from_file(path).recall_keyed()


def _from_arrays(_path: str) -> object:
    return HopfieldNetwork.from_arrays({"couplings": np.zeros((2, 2), np.float32)},
                                       {"rule": {"id": "hebbian"}, "dtype": "float32", "size": 10**6, "n_stored": 0, "scale": 1.0})


def _reservoir_size(_path: str) -> object:
    return Reservoir(MaskLayout(("w",), ((10**6,),)), 10**6, "hebbian")


def _capacity(_path: str) -> object:
    return capacity_sweep(100_000, "hebbian", [0.001])


SCENARIOS = {
    "from_file": _from_file, "bank_reservoir": _bank_reservoir, "recall_keyed": _recall_keyed,
    "from_arrays": _from_arrays, "reservoir_size": _reservoir_size, "capacity": _capacity,
}


def main(arguments: list[str]) -> None:
    for argument in arguments:
        scenario, path, *ceiling = argument.split(":")
        if ceiling:
            os.environ["HOPFIELD_MASKS_MAX_ARRAY_BYTES"] = ceiling[0]
        else:
            os.environ.pop("HOPFIELD_MASKS_MAX_ARRAY_BYTES", None)
        try:
            SCENARIOS[scenario](path)
            result = {"outcome": "ok", "message": ""}
        except HopfieldMasksError as exc:
            result = {"outcome": "error", "message": str(exc)}
        except BaseException as exc:  # noqa: BLE001 - the point is to report it
            result = {"outcome": "crash", "message": traceback.format_exception(exc)[-1].strip()}
        print(json.dumps({"scenario": argument, **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
