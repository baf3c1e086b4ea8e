"""Which coupling precision recalls best for a byte budget: keyed candidates per dtype, on real masks.

For each budget, coupling precision (float32, float16, int8, sign) and task count T,
a keyed reservoir (pseudo-inverse rule, key units sized by ``keyed_size_for_budget``)
stores the first T masks of a bank, and every task's candidate is recalled with
its key clamped (:meth:`Reservoir.recall_keyed`, no model involved).  A candidate
that is not exact cannot be made exact by the selection step that follows, so the
exact-candidate count bounds what keyed recall can give back.  This is the
measurement behind ``dtype="auto"`` choosing ``sign`` for keyed reservoirs.

Writes ``coupling_precision.json`` and ``.md`` into ``--out``.

Usage::

    python benchmarks/bench_coupling_precision.py --bank masks.h5 [--tasks 40,100,200] [--budgets 1MB,256KiB,128KiB]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from hopfield_masks.backends import open_bank
from hopfield_masks.errors import BudgetError, CapacityWarning
from hopfield_masks.reservoir import Reservoir

HERE = Path(__file__).resolve().parent
DTYPES = ("float32", "float16", "int8", "sign")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=Path, required=True, help="a bank of trained masks (e.g. from 'train')")
    parser.add_argument("--tasks", default="40,100,200")
    parser.add_argument("--budgets", default="1MB,256KiB,128KiB")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    counts = [int(t) for t in args.tasks.split(",")]
    budgets = [b.strip() for b in args.budgets.split(",")]
    with open_bank(args.bank, "r") as bank:
        layout = bank.task_layout(bank.tasks()[0])
        states = np.stack([layout.flatten_spins(bank.read_task(t)) for t in bank.tasks()[: max(counts)]])
    rows = []
    for budget in budgets:
        for dtype in DTYPES:
            for t in counts:
                if t > len(states):
                    continue
                try:
                    res = Reservoir.from_budget(budget, layout, "pseudo-inverse", dtype=dtype, key_units="auto")
                except BudgetError as exc:
                    rows.append({"budget": budget, "dtype": dtype, "T": t, "fits": False, "why": str(exc)})
                    continue
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", CapacityWarning)
                    for s in states[:t]:
                        res.store(layout.unflatten(s))
                    result = res.recall_keyed()
                wrong = (result.states != states[:t]).sum(1)
                rows.append({"budget": budget, "dtype": dtype, "T": t, "fits": True, "networks": res.n_blocks,
                             "network_size": res.network_size, "key_units": res.key_units,
                             "reservoir_bytes": res.nbytes, "exact_candidates": int((wrong == 0).sum()),
                             "mean_bits_wrong": float(wrong.mean()), "seconds": round(time.perf_counter() - t0, 2)})
                print(rows[-1], file=sys.stderr, flush=True)
    result = {"benchmark": "coupling_precision", "bank": str(args.bank), "pattern_length": layout.length,
              "command": " ".join(["python benchmarks/bench_coupling_precision.py",
                                   *(sys.argv[1:] if argv is None else argv)]),
              "platform": platform.platform(), "load_average_at_end": os.getloadavg(), "rows": rows}
    lines = ["# Keyed candidates per coupling precision", "",
             f"`{result['command']}`; pattern length {layout.length} bits (BNNet unit masks); pseudo-inverse rule, "
             "key units sized from the budget; a candidate is task t's mask recalled with t's key clamped.", "",
             "| budget | dtype | networks × units (key units) | bytes | T | exact candidates | mean bits wrong |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["fits"]:
            lines.append(f"| {r['budget']} | {r['dtype']} | {r['networks']} × {r['network_size']} ({r['key_units']}) "
                         f"| {r['reservoir_bytes']:,} | {r['T']} | {r['exact_candidates']}/{r['T']} "
                         f"| {r['mean_bits_wrong']:.1f} |")
        else:
            lines.append(f"| {r['budget']} | {r['dtype']} | does not fit with a 25% key | | {r['T']} | | |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "coupling_precision.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "coupling_precision.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
