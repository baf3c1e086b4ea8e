"""The ``hdf5-entropy`` kernels against their plain Python references, and decoding bounded on hostile files.

``entropy_reference.py`` writes the format out one entry at a time; every Numba kernel of
``hopfield_masks/codecs/_rans_kernels.py`` (version 4) and ``_range_kernels.py`` (versions 1-3) must
compute exactly what it does (Hypothesis properties), and the version 1-3 kernels what ``constriction``
computes where that package is installed.  The bounded-decoding tests read tiny crafted files that
declare huge layers, in a subprocess, and measure its peak memory and time.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.codecs import _range_kernels as legacy
from hopfield_masks.codecs import _rans_kernels as kernels
from hopfield_masks.codecs.entropy_format import PRIOR_WEIGHTS, pack_coding
from hopfield_masks.safety.integrity import CHECKSUM_ATTR, write_checksums

from . import entropy_reference as ref

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
WEIGHTS = np.array(PRIOR_WEIGHTS)
KINDS = (kernels.KIND_STATIC, kernels.KIND_LAYERS, kernels.KIND_ROWS, kernels.KIND_CHAIN)


@pytest.fixture(scope="module")
def tables():
    return kernels.CUM, kernels.BIT0, kernels.COARSE


@pytest.fixture(scope="module")
def reference_tables():
    return ref.tables()


# ---------------------------------------------------------------------------------------------- tasks
@st.composite
def tasks(draw, max_entries: int = 1200):
    """A random task: layer shapes (0-d to 3-d, some empty or constant), a mask, chain counts, a model kind."""
    shapes = draw(st.lists(st.one_of(st.just(()), st.tuples(st.integers(0, 70)),
                                     st.tuples(st.integers(1, 40), st.integers(1, 30)),
                                     st.tuples(st.integers(1, 12), st.integers(1, 5), st.integers(1, 4))),
                           min_size=1, max_size=3))
    sizes = [math.prod(s) for s in shapes]
    assume(0 < sum(sizes) <= max_entries)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    parts = []
    for size in sizes:
        density = draw(st.sampled_from([0.0, 1.0, 0.5, 0.3, 0.05, 0.003]) | st.floats(0.0, 1.0))
        parts.append(rng.random(size) < density)
    flat = np.concatenate(parts)
    geom = np.zeros((len(shapes), 4), dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for i, (shape, size) in enumerate(zip(shapes, sizes)):
        geom[i] = (starts[i], size, shape[0] if len(shape) else 1, int(flat[starts[i]:starts[i] + size].sum()))
    n_before = draw(st.integers(0, 6))
    if n_before:  # counts that predict the mask somewhat (as earlier checkpoints do), or not at all
        agree = rng.random(flat.size) < draw(st.floats(0.0, 1.0))
        history = np.where(agree, flat * n_before, rng.integers(0, n_before + 1, flat.size)).astype(np.int64)
    else:
        history = np.zeros(0, dtype=np.int64)
    kind = draw(st.sampled_from(KINDS if n_before else KINDS[:3]))
    weight = float(draw(st.sampled_from(PRIOR_WEIGHTS)))
    return flat, geom, history, n_before, kind, weight


def kernel_encode(task, tables) -> bytes:
    flat, geom, history, n_before, kind, weight = task
    count = kernels.symbol_count(kind, geom, n_before)
    out = np.empty(3 * count + 9, np.uint8)
    cols = max([int(g[1] // g[2]) for g in geom if g[2] >= 2] + [0])
    start = kernels.encode_task(flat.view(np.uint8), kind, weight, geom, history, n_before, tables[0], tables[1],
                                np.empty(cols, np.int32), np.empty(2 * kernels.MEMO, np.int64),
                                np.empty(6 * (n_before + 1), np.int64), np.empty(count, np.uint8),
                                np.empty(count, np.int16), out)
    assert start >= 0
    return out[start:].tobytes()


def kernel_decode(code: bytes, task, tables) -> tuple[int, np.ndarray]:
    flat, geom, history, n_before, kind, weight = task
    out = np.zeros(flat.size, dtype=bool)
    cols = max([int(g[1] // g[2]) for g in geom if g[2] >= 2] + [0])
    status = kernels.decode_task(np.frombuffer(code, np.uint8), kind, weight, geom, history, n_before,
                                 np.empty(cols, np.int32), np.empty(2 * kernels.MEMO, np.int64),
                                 np.empty(3 * (n_before + 1), np.int64), np.empty(2, np.int64), out.view(np.uint8))
    return int(status), out


def quantized_bits(task, reference_tables) -> float:
    """-sum log2(f / 2**24) over the task's symbols: what an ideal coder with the format's tables would spend."""
    cum, bit0 = reference_tables
    bits = 0.0
    for symbol in ref.symbols(*task[:1], task[4], task[5], task[1], task[2], task[3]):
        _, f = ref._interval(symbol, cum, bit0)
        bits -= math.log2(f / ref.TOTAL)
    return bits


# ---------------------------------------------------------------------------------------------- version 4 kernels
def test_tables_match_the_reference(tables, reference_tables):
    cum, bit0, coarse = (t.astype(np.int64) for t in tables)
    assert all(t.nbytes <= 10**6 for t in tables)  # Numba compiles arrays of up to 1 MB in as constants
    np.testing.assert_array_equal(cum, reference_tables[0])
    np.testing.assert_array_equal(bit0, reference_tables[1])
    assert (np.diff(cum, axis=1) >= 1).all() and (cum[:, -1] == 1 << 24).all()
    starts = np.arange(1 << kernels.COARSE_BITS) << (24 - kernels.COARSE_BITS)  # coarse: the symbol holding each start
    rows = np.arange(kernels.N_LEVELS)[:, None]
    symbol = coarse
    assert (cum[rows, symbol] <= starts).all() and (starts < cum[rows, symbol + 1]).all()


@given(q=st.floats(0.0, 1.0) | st.sampled_from([0.5, 0.25, 2.0**-24, 2.0**-25, 2.0**-26, 1 - 2.0**-30, 0.0, 1.0,
                                                0.25 + 2.0**-7, 0.5 - 2.0**-60, 5e-324]))
def test_level_of_matches_the_reference(q):
    level, inverted = ref.level_of(q)
    assert kernels.level_of(q) == 2 * level + inverted
    assert 0 <= level < kernels.N_LEVELS and kernels.level_prob(level) == ref.level_prob(level)
    u = min(q, 1 - q)
    if 2.0**-25 <= u:  # the level's probability is within 1/64 of u (the loss is below 0.02 % of the entropy)
        assert abs(ref.level_prob(level) / u - 1) <= 1 / 64


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=tasks())
def test_encoding_matches_the_reference_and_decodes(task, tables, reference_tables):
    flat, geom, history, n_before, kind, weight = task
    code = kernel_encode(task, tables)
    assert code == ref.encode(flat, kind, weight, geom, history, n_before, *reference_tables)
    status, got = kernel_decode(code, task, tables)
    assert status == kernels.OK
    np.testing.assert_array_equal(got, flat)
    assert ref.decode(code, kind, weight, geom, history, n_before, *reference_tables, flat.size)[0] == ref.OK
    if code:  # no initial state is stored: the code is within 4 bytes of the tables' ideal length
        assert len(code) <= quantized_bits(task, reference_tables) / 8 + 4
        assert code[0] != 0


@pytest.mark.parametrize("seed, n_before, density", [(1, 1, 0.3), (2, 3, 0.05), (3, 6, 0.5)])
def test_large_chain_layers_match_the_reference(tables, reference_tables, seed, n_before, density):
    """Layers of LARGE_LAYER entries or more: batches of 32 entries per count and parity (the random tasks above
    are smaller: batches of 8 per count)."""
    rng = np.random.default_rng(seed)
    sizes = (kernels.LARGE_LAYER + 37, 300)
    flat = rng.random(sum(sizes)) < density
    history = np.where(rng.random(flat.size) < 0.8, flat * n_before, rng.integers(0, n_before + 1, flat.size))
    geom = np.array([[0, sizes[0], sizes[0], int(flat[:sizes[0]].sum())],
                     [sizes[0], sizes[1], 1, int(flat[sizes[0]:].sum())]], np.int64)
    task = (flat, geom, history.astype(np.int64), n_before, kernels.KIND_CHAIN, 2.0)
    code = kernel_encode(task, tables)
    assert code == ref.encode(flat, task[4], task[5], geom, task[2], n_before, *reference_tables)
    status, got = kernel_decode(code, task, tables)
    assert status == kernels.OK
    np.testing.assert_array_equal(got, flat)
    damaged = code[:-4] + bytes([code[-4] ^ 8]) + code[-3:]
    assert kernel_decode(damaged, task, tables)[0] == ref.decode(damaged, task[4], task[5], geom, task[2], n_before,
                                                                 *reference_tables, flat.size)[0] != kernels.OK


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=tasks(max_entries=600), data=st.data())
def test_decoding_any_bytes_matches_the_reference(task, data, tables, reference_tables):
    """Damaged codes (cut, flipped, extended, random): the same status as the reference, the same mask when OK."""
    flat, geom, history, n_before, kind, weight = task
    code = bytearray(kernel_encode(task, tables))
    how = data.draw(st.sampled_from(["cut", "flip", "append", "random", "prefix-zero"]))
    if how == "cut" and code:
        del code[data.draw(st.integers(0, len(code) - 1)):]
    elif how == "flip" and code:
        code[data.draw(st.integers(0, len(code) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "append":
        code += bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=4)))
    elif how == "random":
        code = bytearray(data.draw(st.binary(max_size=40)))
    else:
        code = bytearray(b"\0") + code
    if n_before and data.draw(st.booleans()):  # the kernel checks the counts too (a bank never gives bad ones)
        history = history.copy()
        history[data.draw(st.integers(0, history.size - 1))] = data.draw(st.sampled_from([-1, n_before + 1]))
        task = (flat, geom, history, n_before, kind, weight)
    status, got = kernel_decode(bytes(code), task, tables)
    expected, want = ref.decode(bytes(code), kind, weight, geom, history, n_before, *reference_tables, flat.size)
    assert status == expected
    if status == kernels.OK:
        np.testing.assert_array_equal(got, want)


@settings(max_examples=60, deadline=None)
@given(task=tasks(max_entries=800))
def test_model_costs_match_the_reference(task):
    flat, geom, history, n_before, _kind, _weight = task
    costs = np.empty(10)
    cols = max([int(g[1] // g[2]) for g in geom if g[2] >= 2] + [0])
    hist = max([min(int(g[1] // g[2]), int(g[2]) + 1) for g in geom if g[2] >= 2] + [0])
    status = kernels.model_costs(flat.view(np.uint8), geom, history, n_before, WEIGHTS, np.empty(cols, np.int32),
                                 np.empty(hist, np.float64), np.empty(8 * (n_before + 1), np.int64), costs)
    assert status == kernels.OK
    np.testing.assert_allclose(costs, ref.model_costs(flat, geom, history, n_before, WEIGHTS), rtol=1e-9, atol=1e-6)


@pytest.mark.parametrize("density", [0.45, 0.1, 0.02, 0.005, 0.0005])
def test_static_code_length_is_its_entropy_plus_a_few_bytes(tables, density):
    """The level tables cost under 0.1 % even at 0.05 % density, the coder's start and end under 4 bytes."""
    rng = np.random.default_rng(int(density * 1e4))
    flat = rng.random(266_200) < density
    k = int(flat.sum())
    geom = np.array([[0, flat.size, 1, k]], np.int64)
    code = kernel_encode((flat, geom, np.zeros(0, np.int64), 0, kernels.KIND_STATIC, 0.0), tables)
    p = k / flat.size
    ideal = -(k * math.log2(p) + (flat.size - k) * math.log2(1 - p)) / 8
    assert ideal <= len(code) <= 1.001 * ideal + 4


@given(shapes=st.lists(st.tuples(st.integers(0, 3000)) | st.tuples(st.integers(1, 60), st.integers(1, 60)) | st.just(()),
                       min_size=1, max_size=4), data=st.data())
def test_coding_attribute_is_the_formats_number(shapes, data):
    """The codec's cached packing of ``coding`` is :func:`pack_coding` / :func:`unpack_coding`, byte for byte."""
    from hopfield_masks.blocks import MaskLayout
    from hopfield_masks.codecs.entropy import _geometry
    from hopfield_masks.codecs.entropy_format import unpack_coding

    layout = MaskLayout(tuple(f"l{i}" for i in range(len(shapes))), tuple(shapes))
    model = data.draw(st.integers(0, 9))
    ones = [data.draw(st.integers(0, math.prod(shape))) for shape in shapes]
    coding = pack_coding(layout, model, ones)
    np.testing.assert_array_equal(_geometry(layout).pack(model, ones), coding)
    got_model, geom = _geometry(layout).unpack(coding)
    assert (got_model, geom[:, 3].tolist()) == unpack_coding(layout, coding) == (model, ones)


# ---------------------------------------------------------------------------------------------- versions 1-3 kernels
def legacy_words(task) -> np.ndarray:
    flat, geom, history, n_before, kind, weight = task
    out = np.empty(flat.size + 4, np.uint32)
    cols = max([int(g[1] // g[2]) for g in geom if g[2] >= 2] + [0])
    used = legacy.encode_words(flat.view(np.uint8), kind, weight, geom, history, n_before, np.empty(cols, np.int32),
                               out)
    return out[:used]


def legacy_decoded(words: np.ndarray, task) -> tuple[int, np.ndarray, bool]:
    flat, geom, history, n_before, kind, weight = task
    out = np.zeros(flat.size, dtype=bool)
    cols = max([int(g[1] // g[2]) for g in geom if g[2] >= 2] + [0])
    status, exhausted = legacy.decode_words(np.asarray(words, np.uint32), kind, weight, geom, history, n_before,
                                            np.empty(cols, np.int32), out.view(np.uint8))
    return int(status), out, bool(exhausted)


def coded_task(task) -> bool:
    flat, geom, *_ = task
    total = int(geom[:, 3].sum())
    return 0 < total < flat.size  # versions 1-3 store nothing for a constant mask


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=tasks(max_entries=500), data=st.data())
def test_legacy_kernels_match_the_reference(task, data):
    assume(coded_task(task))
    flat, geom, history, n_before, kind, weight = task
    words = legacy_words(task)
    assert words.tolist() == ref.legacy_encode(flat, kind, weight, geom, history, n_before)
    status, got, exhausted = legacy_decoded(words, task)
    assert status == legacy.OK and exhausted
    np.testing.assert_array_equal(got, flat)
    damaged = data.draw(st.lists(st.integers(0, 2**32 - 1), max_size=6)) if data.draw(st.booleans()) else \
        words[:data.draw(st.integers(0, words.size))].tolist()
    status, got, exhausted = legacy_decoded(np.array(damaged, np.uint32), task)
    expected, want, want_exhausted = ref.legacy_decode(damaged, kind, weight, geom, history, n_before, flat.size)
    assert status == expected
    if status == legacy.OK:
        np.testing.assert_array_equal(got, want)
        assert exhausted == want_exhausted


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task=tasks(max_entries=2000), data=st.data())
def test_legacy_kernels_match_constriction(task, data):
    """The words constriction's queue coder writes for the old models, and what its decoder makes of any words."""
    constriction = pytest.importorskip("constriction")
    assume(coded_task(task))
    flat, geom, history, n_before, kind, weight = task
    encoder = constriction.stream.queue.RangeEncoder()
    family = constriction.stream.model.Bernoulli(perfect=False)
    probs = [ref.legacy_probability(j, kind, weight, geom, history, n_before, flat) for j in range(flat.size)]
    coded = np.array([p is not None for p in probs])
    encoder.encode(flat[coded].astype(np.int32), family, np.array([p for p in probs if p is not None], np.float64))
    assert legacy_words(task).tolist() == np.asarray(encoder.get_compressed()).tolist()
    words = np.array(data.draw(st.lists(st.integers(0, 2**32 - 1), max_size=8)), np.uint32)
    status, got, exhausted = legacy_decoded(words, task)
    decoder = constriction.stream.queue.RangeDecoder(words)
    if kind == kernels.KIND_ROWS:  # probabilities depend on what is decoded: entry by entry
        want = np.zeros(flat.size, bool)
        try:
            for start, size, _rows, ones in geom.tolist():
                if not 0 < ones < size:
                    want[start:start + size] = ones > 0
                    continue
                for j in range(start, start + size):
                    p = ref.legacy_probability(j, kind, weight, geom, history, n_before, want)
                    want[j] = decoder.decode(family, np.array([p], np.float64))[0] != 0
        except (ValueError, RuntimeError, AssertionError, OverflowError):
            assert status == legacy.ERR_INVALID
            return
    else:
        try:
            bits = decoder.decode(family, np.array([p for p in probs if p is not None], np.float64))
        except (ValueError, RuntimeError, AssertionError, OverflowError):
            assert status == legacy.ERR_INVALID
            return
        want = np.zeros(flat.size, bool)
        for start, size, _, ones in geom.tolist():
            want[start:start + size] = ones > 0
        want[coded] = bits != 0
    assert status == legacy.OK
    np.testing.assert_array_equal(got, want)
    assert exhausted == decoder.maybe_exhausted()


# ---------------------------------------------------------------------------------------------- bounded decoding
_READER = r"""
import json, sys, time
from hopfield_masks.backends import open_bank
from hopfield_masks.errors import HopfieldMasksError

def status(key):  # kB in /proc/self/status
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))

warm, hostile = sys.argv[1], sys.argv[2]
with open_bank(warm) as bank:  # compile (or load) the kernels and read a small task first
    for task in bank.tasks():
        bank.read_task(task)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak resident size starts again from the current one
before = status("VmRSS")
t0 = time.perf_counter()
try:
    with open_bank(hostile) as bank:
        bank.read_task("big")
    outcome, message = "ok", ""
except HopfieldMasksError as exc:
    outcome, message = "error", str(exc)
seconds = time.perf_counter() - t0
print(json.dumps({"outcome": outcome, "message": message, "seconds": seconds, "grown": (status("VmHWM") - before) * 1024}))
"""

BIG = 40_000_000  # entries the hostile task declares (its file is a few kB)


def read_in_subprocess(warm: Path, hostile: Path, timeout: float = 120) -> dict:
    try:
        proc = subprocess.run([sys.executable, "-c", _READER, str(warm), str(hostile)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        pytest.fail(f"reading {hostile.name} took more than {timeout} s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hostile_bank(folder: Path, version: int, model: int) -> tuple[Path, Path]:
    """A bank of ``version`` whose task "big" is one 1-D layer of BIG entries (BIG rows of one column) coded with
    ``model``: the valid code of a mask with two ones, its ``coding`` declaring one (so the decoder runs to the
    end before it can tell), checksums valid, a few kB on disk.  Also a small bank of the version to warm up with."""
    warm, path = folder / f"warm{version}.h5", folder / f"hostile{version}.h5"
    if version == 4:
        with create_bank(warm, "hdf5-entropy") as bank:
            bank.write_task("small", {"w": np.eye(16, dtype=bool)})
        shutil.copyfile(warm, path)
    else:
        golden = FIXTURES / f"golden_entropy_v{version}_hdf5-entropy.h5"
        for target in (warm, path):
            shutil.copyfile(golden, target)
    with open_bank(path, "a") as bank:  # a task of the huge layout, written by the library
        bank.write_task("big", {"w": np.zeros(BIG, bool)})
    mask = np.zeros(BIG, bool)
    mask[[5, BIG - 3]] = True
    kind, weight = [0, 1, 2, 2, 2, 2, 3, 3, 3, 3][model], float(PRIOR_WEIGHTS[(model - 2) % 4])
    geom = np.array([[0, BIG, BIG, 2]], np.int64)
    if version == 4:
        code = kernel_encode((mask, geom, np.zeros(0, np.int64), 0, kind, weight), (kernels.CUM, kernels.BIT0))
    else:
        words = legacy_words((mask, geom, np.zeros(0, np.int64), 0, kind, weight))
        code = words.astype(">u4").tobytes().rstrip(b"\0") if version == 3 else words.tobytes()
    with h5py.File(path, "r+") as f:
        ds = f["tasks/big"]
        attrs = {k: ds.attrs[k] for k in ds.attrs if k not in (CHECKSUM_ATTR, "coding")}
        del f["tasks/big"]
        new = f["tasks"].create_dataset("big", data=np.frombuffer(code, np.uint8 if version >= 3 else np.uint32))
        for key, value in attrs.items():
            new.attrs[key] = value
        if version >= 3:
            from hopfield_masks.blocks import MaskLayout

            new.attrs["coding"] = pack_coding(MaskLayout(("w",), ((BIG,),)), model, [1])
        else:
            new.attrs["coding"] = np.array([model, 1], np.uint32)
        write_checksums(new)
    return warm, path


@pytest.mark.parametrize("version, model", [(4, 2), (4, 0), (3, 2), (2, 3), (3, 0)],
                         ids=["v4-rows", "v4-static", "v3-rows", "v2-rows", "v3-static"])
def test_tiny_file_declaring_a_huge_layer_decodes_in_bounded_time_and_memory(tmp_path, version, model):
    """40 M declared entries, a code of a few bytes: one line of error within seconds, memory about the mask's.

    Before, versions 1-3 decoded the rows model with a Python loop per row (11.5 s per million rows: 8
    minutes here) and, for the static model, built arrays of 5 bytes per entry before any check.
    """
    warm, path = hostile_bank(tmp_path, version, model)
    assert path.stat().st_size < 20_000
    row = read_in_subprocess(warm, path)
    assert row["outcome"] == "error", row
    assert str(path) in row["message"] and "\n" not in row["message"], row
    assert "is damaged: " in row["message"], row  # the counts, the coder's end or left-over words
    assert row["seconds"] < 20, row
    assert row["grown"] < 2 * BIG + (48 << 20), row  # the output (1 byte per entry) and a margin
