"""SplitMNIST HopSupSup through the plain CLI path, over several seeds: ``train`` then ``recall --budget 1MB``.

For each seed S this runs exactly what a user types::

    supsup-store train --benchmark split-mnist --model bnnet --seed S --out <tmp>/seedS.h5
    supsup-store recall <tmp>/seedS.h5 --budget 1MB --json

(training defaults: the ``hopsupsup`` preset, 50 batches of 128 per task; recall
defaults: keyed, guided by the output entropy of unlabeled test images, no task
identity) and records, per seed, how many of the 5 masks came back exactly, the
largest accuracy drop and the times.  Writes ``splitmnist_seeds.json`` and
``.md`` into ``--out``.

Usage::

    python benchmarks/bench_splitmnist_seeds.py [--seeds 1,2,3,4,5,6,7,8] [--budget 1MB]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_seed(seed: int, budget: str, work: Path) -> dict:
    """Train and recall one seed with the CLI; the recall's JSON summary plus times."""
    bank = work / f"seed{seed}.h5"
    cli = [sys.executable, "-m", "supsup_store_cli"]
    t0 = time.perf_counter()
    subprocess.run([*cli, "train", "--benchmark", "split-mnist", "--model", "bnnet", "--seed", str(seed),
                    "--out", str(bank)], check=True, capture_output=True, text=True)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    done = subprocess.run([*cli, "recall", str(bank), "--budget", budget, "--json"], check=True,
                          capture_output=True, text=True)
    recall_s = time.perf_counter() - t0
    out = json.loads(done.stdout)
    summary = out["summary"]
    return {"seed": seed, "tasks": summary["tasks"], "exact": summary["exact"],
            "max_accuracy_drop_points": 100 * (summary["max_accuracy_drop"] or 0.0),
            "chosen_is_own": sum(r["chosen_task"] == int(r["task"]) for r in out["tasks"]),
            "reservoir": out["reservoir"], "train_s": round(train_s, 1), "recall_s": round(recall_s, 1)}


def _shape(res: dict) -> str:
    """The reservoir's shape in words, for either kind."""
    if res["dtype"] == "bit":
        return (f"{res['networks']} blocks of {res['network_size'] - res['key_units']} mask units, "
                f"{res['key_units']} key units, learned 1-bit couplings ({res['rule']} rule)")
    return f"{res['networks']} × {res['network_size']} units, {res['key_units']} key units each, {res['dtype']} couplings"


def markdown(result: dict) -> str:
    rows = result["seeds"]
    res = rows[0]["reservoir"]
    lines = ["# SplitMNIST through the CLI, several seeds", "",
             f"`{result['command']}`: per seed, `supsup-store train --benchmark split-mnist --model bnnet --seed S` "
             f"then `supsup-store recall --budget {result['budget']}` (all defaults). Reservoir: {_shape(res)}, "
             f"{res['reservoir_bytes']:,} B. Load average at the end: {result['load_average_at_end'][0]:.1f} "
             f"({result['cpu_count']} cores).", "",
             "| seed | exact | chosen = own task | max accuracy drop (pts) | train (s) | recall (s) |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['exact']}/{r['tasks']} | {r['chosen_is_own']}/{r['tasks']} "
                     f"| {r['max_accuracy_drop_points']:.2f} | {r['train_s']:.0f} | {r['recall_s']:.0f} |")
    total = sum(r["exact"] for r in rows)
    lines += ["", f"Exact for {total} of {sum(r['tasks'] for r in rows)} masks over {len(rows)} seeds."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3,4,5,6,7,8")
    parser.add_argument("--budget", default="1MB")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for seed in seeds:
            rows.append(run_seed(seed, args.budget, Path(tmp)))
            print(f"seed {seed}: exact {rows[-1]['exact']}/{rows[-1]['tasks']}", file=sys.stderr, flush=True)
    result = {"benchmark": "splitmnist_seeds", "budget": args.budget, "seeds": rows,
              "command": " ".join(["python benchmarks/bench_splitmnist_seeds.py", *(sys.argv[1:] if argv is None
                                                                                   else argv)]),
              "platform": platform.platform(), "cpu_count": os.cpu_count(), "load_average_at_end": os.getloadavg(),
              "wall_s": round(time.perf_counter() - started, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "splitmnist_seeds.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "splitmnist_seeds.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
