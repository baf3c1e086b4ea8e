"""Storage-layer benchmark: recall and write speed versus NumPy, and bytes on disk per mask.

Runs ``benchmarks/storage_speed.py`` and ``benchmarks/storage_disk.py`` in one
process, side by side, and writes ``benchmarks/results/storage.json`` plus a
short Markdown table ``benchmarks/results/storage.md``.

Usage::

    python benchmarks/bench_storage.py [--seed 0] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import storage_disk  # noqa: E402
import storage_speed  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    """Run both halves, write the results files and return the combined dict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)

    import numba
    import numpy

    started = time.time()
    speed = storage_speed.run(seed=args.seed)
    disk = storage_disk.run(seed=args.seed)
    result = {
        "benchmark": "storage",
        "command": "python benchmarks/bench_storage.py --seed %d" % args.seed,
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version(),
                    "numpy": numpy.__version__, "numba": numba.__version__},
        "wall_s": round(time.time() - started, 2),
        "speed": speed,
        "disk": disk,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "storage.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Storage benchmark", "", f"`{result['command']}` on {result['machine']['platform']}", ""]
    lines += ["## Speed (ratios to NumPy, same run)", ""] + storage_speed.markdown_rows(speed)
    lines += ["", "## Bytes on disk per mask and throughput", ""] + storage_disk.markdown_rows(disk)
    (args.out / "storage.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
