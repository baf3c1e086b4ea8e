"""Does ``bitarray`` beat NumPy where the toolkit counts bits?  Hamming distances and popcounts, measured.

Two settings, both at mask sizes of this project (BNNet unit masks 4,096; LeNet 300-100 266,200;
a 10M-entry mask):

- **recall reports** (``supsup_core.recall``: bits wrong per layer): the masks are ``bool``
  arrays.  NumPy: ``np.count_nonzero(a != b)``; bitarray: pack both (``np.packbits``), wrap the bytes
  without copying (``bitarray(buffer=...)``) and ``bitarray.util.count_xor``;
- **packed masks** (bank bytes): NumPy 2 ``np.bitwise_count(a ^ b).sum()`` against
  ``count_xor`` on zero-copy bitarrays; popcount ``np.bitwise_count(a).sum()`` against
  ``bitarray.count()``.

Each figure is the median of 7 timings of a loop of calls (microseconds per call).  Writes
``benchmarks/results/bitarray.json`` and ``.md``.

Usage::

    python benchmarks/bench_bitarray.py [--seed 0] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SIZES = (4096, 266_200, 10_000_000)


def _us_per_call(fn, calls: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


def run(seed: int = 0) -> list[dict]:
    import bitarray
    from bitarray.util import count_xor

    rng = np.random.default_rng(np.random.SeedSequence(seed))
    rows = []
    for size in SIZES:
        a, b = rng.random(size) < 0.5, rng.random(size) < 0.5
        pa, pb = np.packbits(a), np.packbits(b)
        ba = bitarray.bitarray(buffer=pa, endian="big")
        bb = bitarray.bitarray(buffer=pb, endian="big")
        expected = int(np.count_nonzero(a != b))
        assert count_xor(ba, bb) == expected == int(np.bitwise_count(pa ^ pb).sum())
        calls = 20 if size > 10**6 else 300

        def bool_bitarray():
            return count_xor(bitarray.bitarray(buffer=np.packbits(a), endian="big"),
                             bitarray.bitarray(buffer=np.packbits(b), endian="big"))

        timings = {
            "bool: numpy count_nonzero(a != b)": _us_per_call(lambda: np.count_nonzero(a != b), calls),
            "bool: packbits + bitarray count_xor": _us_per_call(bool_bitarray, calls),
            "packed: numpy bitwise_count(a ^ b)": _us_per_call(lambda: int(np.bitwise_count(pa ^ pb).sum()), calls),
            "packed: bitarray count_xor": _us_per_call(lambda: count_xor(ba, bb), calls),
            "packed popcount: numpy bitwise_count": _us_per_call(lambda: int(np.bitwise_count(pa).sum()), calls),
            "packed popcount: bitarray count": _us_per_call(lambda: ba.count(), calls),
        }
        rows.append({"entries": size, "us_per_call": timings})
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    import bitarray

    rows = run(args.seed)
    result = {"benchmark": "bitarray", "command": f"python benchmarks/bench_bitarray.py --seed {args.seed}",
              "machine": {"platform": platform.platform(), "python": platform.python_version(),
                          "numpy": np.__version__, "bitarray": bitarray.__version__},
              "rows": rows}
    names = list(rows[0]["us_per_call"])
    lines = ["# bitarray vs NumPy: Hamming distances and popcounts", "", f"`{result['command']}` on "
             f"{result['machine']['platform']} (numpy {np.__version__}, bitarray {bitarray.__version__}); "
             "microseconds per call, median of 7 loops", "",
             "| operation | " + " | ".join(f"{r['entries']:,} entries" for r in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    lines += [f"| {name} | " + " | ".join(f"{r['us_per_call'][name]:,.1f}" for r in rows) + " |" for name in names]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bitarray.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "bitarray.md").write_text(text)
    return result


if __name__ == "__main__":
    main()
