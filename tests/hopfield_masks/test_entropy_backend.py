"""The ``hdf5-entropy`` backend beyond the conformance suite: code length, the chain, damage, golden files.

``test_entropy_coder.py`` checks the kernels against their references and decoding on hostile files.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hopfield_masks.backends import create_bank, open_bank, verify_file
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.codecs import _range_kernels
from hopfield_masks.codecs.entropy import (
    PRIOR_WEIGHTS,
    _chain_bits,
    _Layer,
    _row_probabilities,
    _rows_bits,
    adaptive_probabilities,
    ideal_bits,
)
from hopfield_masks.codecs.entropy_format import (
    _CHAIN,
    _shortest_code,
    _words_of,
    pack_coding,
    unpack_coding,
)
from hopfield_masks.errors import StorageFormatError
from hopfield_masks.safety.integrity import CHECKSUM_ATTR, write_checksums

FIXTURES = Path(__file__).parents[1] / "fixtures"
LENET = {"fc1": (300, 784), "fc2": (100, 300), "fc3": (10, 100)}  # 266,200 entries
LENET_LAYOUT = MaskLayout(tuple(LENET), tuple(LENET.values()))


def entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))


def lenet_masks(rng: np.random.Generator, density: float) -> dict[str, np.ndarray]:
    return {name: rng.random(shape) < density for name, shape in LENET.items()}


def flip(masks: dict[str, np.ndarray], rng: np.random.Generator, fraction: float) -> dict[str, np.ndarray]:
    return {name: m ^ (rng.random(m.shape) < fraction) for name, m in masks.items()}


@pytest.mark.parametrize("density", [0.45, 0.1, 0.02, 0.005])
def test_static_code_is_within_one_percent_of_n_h(tmp_path, rng, density):
    """Within 1 % at the densities SupSup masks have, down to 0.5 % (a fixed 6 bytes of counts, a byte-granular end)."""
    masks = lenet_masks(rng, density)
    n = sum(m.size for m in masks.values())
    p = sum(int(m.sum()) for m in masks.values()) / n
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        bank.write_task("0", masks)
    with open_bank(tmp_path / "b.h5") as bank:
        assert bank.task_encoding("0")["model"] in ("static", "layers")
        nbytes = bank.task_nbytes("0")  # code bytes + the 6-byte [model, k_1, k_2, k_3] attribute
    bound = n * entropy_bits(p) / 8
    assert bound <= nbytes <= 1.01 * bound


def test_predictable_checkpoints_cost_less_than_n_h(tmp_path, rng):
    first = lenet_masks(rng, 0.45)
    tasks = [first]
    for _ in range(4):
        tasks.append(flip(tasks[-1], rng, 0.02))  # each checkpoint changes 2 % of the entries
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        for i, masks in enumerate(tasks):
            bank.write_task(str(i), masks)
    with open_bank(tmp_path / "b.h5") as bank:
        models = [bank.task_encoding(str(i))["model"] for i in range(5)]
        sizes = [bank.task_nbytes(str(i)) for i in range(5)]
        for i, masks in enumerate(tasks):
            got = bank.read_task(str(i))
            assert all(np.array_equal(got[k], masks[k]) for k in masks)
    n = sum(m.size for m in first.values())
    assert models[0] in ("static", "layers") and models[1:] == ["adaptive"] * 4
    for size, masks in zip(sizes[1:], tasks[1:]):
        p = sum(int(m.sum()) for m in masks.values()) / n
        assert size < 0.5 * n * entropy_bits(p) / 8


@pytest.mark.parametrize("densities", [(0.45, 0.45), (0.35, 0.53), (0.48, 0.44)])
def test_small_masks_pay_a_few_bytes_beyond_their_ideal_code(tmp_path, rng, densities):
    """A BNNet-sized task (2 x 2048 entries): 4 bytes of counts, and a code within 4 bytes of its ideal length."""
    masks = {"unit1": rng.random(2048) < densities[0], "unit2": rng.random(2048) < densities[1]}
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        bank.write_task("0", masks)
        assert bank.task_encoding("0")["model"] == "layers"
        nbytes = bank.task_nbytes("0")
    ideal = sum(ideal_bits(m, m.mean()) for m in masks.values()) / 8
    assert ideal + 4 <= nbytes + 1 and nbytes <= ideal + 4 + 4


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 3000), st.floats(0.001, 0.999), st.integers(-64, 64), st.integers(0, 2**16))
def test_shortest_code_is_shortest_and_decodes(n, density, guess_offset, seed):
    """Version 3: from any starting guess, the search returns a byte code that decodes exactly, and one byte less
    never does (the range coder of versions 1-3, whose kernels match constriction: test_entropy_coder.py)."""
    rng = np.random.default_rng(seed)
    x = rng.random(n) < density
    k = int(x.sum())
    if k in (0, n):
        return
    geom = np.array([[0, n, n, k]], np.int64)
    scratch = np.empty(0, np.int32)
    words = np.empty(n + 4, np.uint32)
    words = words[:_range_kernels.encode_words(x.view(np.uint8), 1, 0.0, geom, np.zeros(0, np.int64), 0, scratch,
                                               words)]

    def decodes_exactly(code: bytes) -> bool:
        out = np.empty(n, bool)
        status, _ = _range_kernels.decode_words(_words_of(code), 1, 0.0, geom, np.zeros(0, np.int64), 0, scratch,
                                                out.view(np.uint8))
        return status == _range_kernels.OK and bool(np.array_equal(out, x))

    code = _shortest_code(words, decodes_exactly, ideal_bits(x, k / n) + guess_offset).tobytes()
    assert decodes_exactly(code) and len(code) <= 4 * len(words) and not code.endswith(b"\0")
    if code:
        shorter = code[:-1]
        value = int.from_bytes(shorter, "big") + 1  # the other code of len(code) - 1 bytes the search could give
        assert not decodes_exactly(shorter)
        assert value >> (8 * len(shorter)) or not decodes_exactly(value.to_bytes(len(shorter), "big"))


def test_layers_of_different_density_cost_less_than_n_h(tmp_path, rng):
    """BNNet-like unit masks: two layers at 35 % and 53 % code below n * H(p) of the whole task."""
    masks = {"unit1": rng.random(2048) < 0.35, "unit2": rng.random(2048) < 0.53, "full": np.ones(64, bool)}
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        bank.write_task("0", masks)
        assert bank.task_encoding("0")["model"] == "layers"
        nbytes = bank.task_nbytes("0")
        np.testing.assert_array_equal(bank.read_task("0")["unit2"], masks["unit2"])
    n = sum(m.size for m in masks.values())
    p = sum(int(m.sum()) for m in masks.values()) / n
    per_layer = sum(m.size * entropy_bits(m.mean()) for m in masks.values()) / 8
    assert per_layer < nbytes < n * entropy_bits(p) / 8


def test_columns_of_different_density_use_the_rows_model(tmp_path, rng):
    """Top-k-like structure: some input columns kept often, most rarely; coded row by row, below n * H(p)."""
    column_density = np.where(rng.random(784) < 0.2, 0.08, 0.005)
    masks = {"fc1": rng.random((300, 784)) < column_density, "fc2": rng.random((100, 300)) < 0.02}
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        bank.write_task("0", masks)
    with open_bank(tmp_path / "b.h5") as bank:
        assert bank.task_encoding("0")["model"] == "rows"
        nbytes = bank.task_nbytes("0")
        got = bank.read_task("0")
        assert all(np.array_equal(got[k], masks[k]) for k in masks)
    n = sum(m.size for m in masks.values())
    p = sum(int(m.sum()) for m in masks.values()) / n
    assert nbytes < 0.9 * n * entropy_bits(p) / 8


def test_independent_masks_never_cost_more_than_static(tmp_path, rng):
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        for i in range(4):
            bank.write_task(str(i), lenet_masks(rng, 0.3))
        for i in range(4):
            masks = bank.read_task(str(i))
            n = sum(m.size for m in masks.values())
            p = sum(int(m.sum()) for m in masks.values()) / n
            assert bank.task_nbytes(str(i)) <= 1.01 * n * entropy_bits(p) / 8


def test_random_access_in_a_fresh_bank_decodes_the_chain(tmp_path, rng):
    tasks = [lenet_masks(rng, 0.1)]
    for _ in range(3):
        tasks.append(flip(tasks[-1], rng, 0.01))
    with create_bank(tmp_path / "b.h5", "hdf5-entropy") as bank:
        for i, masks in enumerate(tasks):
            bank.write_task(str(i), masks)
    with open_bank(tmp_path / "b.h5") as bank:  # the last task first: its context is rebuilt from the file
        got = bank.read_task("3")
        assert all(np.array_equal(got[k], tasks[3][k]) for k in LENET)


def test_delete_and_overwrite_recode_later_tasks(tmp_path, rng):
    tasks = [lenet_masks(rng, 0.2)]
    for _ in range(3):
        tasks.append(flip(tasks[-1], rng, 0.01))
    other = {"other": rng.random((5, 7)) < 0.5}  # a second layout, outside the chain, between chain tasks
    path = tmp_path / "b.h5"
    with create_bank(path, "hdf5-entropy") as bank:
        for i, masks in enumerate(tasks[:2]):
            bank.write_task(str(i), masks, attrs={"i": i})
        bank.write_task("other", other)
        for i, masks in enumerate(tasks[2:], start=2):
            bank.write_task(str(i), masks, attrs={"i": i})
    with open_bank(path, "a") as bank:
        bank.delete_task("1")
        bank.write_task("0", tasks[0], attrs={"i": 0}, overwrite=True)  # the first chain task moves to the end
    expected = {"other": other, "2": tasks[2], "3": tasks[3], "0": tasks[0]}
    with open_bank(path) as bank:
        assert bank.tasks() == list(expected)
        assert bank.task_attrs("3") == {"i": 3}
        for name in reversed(list(expected)):  # fresh bank, read from the end
            got = bank.read_task(name)
            assert all(np.array_equal(got[k], v) for k, v in expected[name].items())


def test_append_mode_extends_the_chain(tmp_path, rng):
    first = lenet_masks(rng, 0.3)
    second = flip(first, rng, 0.01)
    path = tmp_path / "b.h5"
    with create_bank(path, "hdf5-entropy") as bank:
        bank.write_task("0", first)
    with open_bank(path, "a") as bank:
        bank.write_task("1", second)
        assert bank.task_encoding("1")["model"] == "adaptive"
    with open_bank(path) as bank:
        assert np.array_equal(bank.read_task("1")["fc1"], second["fc1"])


@settings(max_examples=15)
@given(st.data())
def test_random_edit_sequences_match_a_dict(data):
    """Writes, overwrites and deletes of correlated tasks read back exactly, in a fresh bank too."""
    import tempfile

    rng = np.random.default_rng(data.draw(st.integers(0, 2**16), label="seed"))
    base = rng.random(50) < data.draw(st.floats(0.01, 0.99), label="density")
    model: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "b.h5"
        with create_bank(path, "hdf5-entropy") as bank:
            for _ in range(data.draw(st.integers(1, 8), label="steps")):
                name = str(data.draw(st.integers(0, 4), label="task"))
                if name in model and data.draw(st.booleans(), label="delete"):
                    bank.delete_task(name)
                    del model[name]
                    continue
                mask = base ^ (rng.random(50) < data.draw(st.sampled_from([0.0, 0.05, 0.5]), label="flips"))
                bank.write_task(name, {"m": mask}, overwrite=True)
                model.pop(name, None)
                model[name] = mask
            assert bank.tasks() == list(model)
        with open_bank(path) as bank:
            for name in reversed(list(model)):
                np.testing.assert_array_equal(bank.read_task(name)["m"], model[name])


@settings(max_examples=30)
@given(st.integers(1, 40), st.integers(1, 30), st.floats(0.02, 0.98), st.sampled_from(PRIOR_WEIGHTS),
       st.integers(0, 2**16))
def test_closed_form_lengths_match_the_per_entry_sums(rows, cols, density, weight, seed):
    """The model choice uses closed forms; they equal -sum log2 P(x) of the probabilities actually coded."""
    rng = np.random.default_rng(seed)
    x = rng.random((rows, cols)) < density
    k = int(x.sum())
    if k in (0, x.size):
        return
    layer = _Layer(0, x.shape, k)
    per_entry = ideal_bits(x.ravel(), _row_probabilities(x, layer, weight))
    assert _rows_bits(x.sum(axis=0), layer, weight) == pytest.approx(per_entry, rel=1e-9, abs=1e-6)
    n_before = int(rng.integers(1, 6))
    counts = rng.integers(0, n_before + 1, size=x.size)
    chain = ideal_bits(x.ravel(), adaptive_probabilities(counts, n_before, layer.density, weight))
    assert _chain_bits(x.ravel(), counts, n_before, layer.density, weight) == pytest.approx(chain, rel=1e-9, abs=1e-6)


def test_adaptive_probabilities_are_the_formula():
    counts = np.array([0, 1, 3])
    got = adaptive_probabilities(counts, 3, 0.2, 2.0)
    np.testing.assert_array_equal(got, (counts + 2.0 * 0.2) / 5.0)
    assert ideal_bits(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx(2.0)
    assert all(w > 0 for w in PRIOR_WEIGHTS)


# ---------------------------------------------------------------------- damaged files
def _bank_with_one_task(path: Path, rng, version: int = 4) -> dict[str, np.ndarray]:
    """A bank holding one LeNet task at 10 %: a new bank (version 4), or one of version 3 (bytes) or 2 (words)."""
    masks = lenet_masks(rng, 0.1)
    if version == 4:
        with create_bank(path, "hdf5-entropy") as bank:
            bank.write_task("0", masks)
        return masks
    shutil.copyfile(golden_path(f"entropy_v{version}"), path)  # a bank written by the code of that version
    with open_bank(path, "a") as bank:
        for name in bank.tasks():
            bank.delete_task(name)
        bank.write_task("0", masks)  # an append keeps the bank's version, hence its encoding
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == version
        assert f["tasks/0"].dtype == (np.uint8 if version == 3 else np.uint32)
    return masks


def _edit_task(path: Path, edit, *, reseal: bool = True) -> None:
    """Rewrite task "0" through ``edit``; ``reseal``: give it valid checksums (a writer bug, not file damage)."""
    with h5py.File(path, "r+") as f:
        ds = f["tasks/0"]
        words, attrs = ds[()], {k: ds.attrs[k] for k in ds.attrs if k != CHECKSUM_ATTR}
        stored = ds.attrs.get(CHECKSUM_ATTR)
        del f["tasks/0"]
        words, attrs = edit(words, attrs)
        new = f["tasks"].create_dataset("0", data=words)
        for key, value in attrs.items():
            new.attrs[key] = value
        if reseal:
            write_checksums(new)
        elif stored is not None:
            new.attrs[CHECKSUM_ATTR] = stored  # the checksums of the bytes before the edit


# edits of a task's code and attributes, resealed (valid checksums): the decoder's own checks must see them
_CODING_EDITS = [
    ("no-coding", lambda w, a: (w, {k: v for k, v in a.items() if k != "coding"}), "coding"),
    ("bad-k", lambda w, a: (w, {**a, "coding": np.array([1, 10**9, 0, 0], np.uint32)}), "does not fit"),
    ("bad-length", lambda w, a: (w, {**a, "coding": np.array([0, 10**9, 0, 0, 0], np.uint32)}), r"'coding' attribute of shape \(4,\)"),
    ("wrong-k", lambda w, a: (w, {**a, "coding": np.array([1, 5, 5, 5], np.uint64)}), "ones|left over|cannot decode"),
    ("adaptive-without-chain", lambda w, a: (w, {**a, "coding": np.array([2, *a["coding"][1:]], np.uint32)}), "no"),
]
def _recoded(attrs: dict, model: int | None = None, extra_one: int = 0) -> dict:
    """``attrs`` with a version-3 ``coding`` of another model or one more one in the first layer (valid bytes)."""
    old_model, ones = unpack_coding(LENET_LAYOUT, attrs["coding"])
    ones[0] += extra_one
    return {**attrs, "coding": pack_coding(LENET_LAYOUT, old_model if model is None else model, ones)}


_CODING_BYTES_EDITS = [  # format versions 3 and 4: coding is one mixed-radix number in 6 bytes (for LeNet)
    ("no-coding", lambda w, a: (w, {k: v for k, v in a.items() if k != "coding"}), "coding"),
    ("coding-length", lambda w, a: (w, {**a, "coding": a["coding"][:-1]}), r"'coding' attribute of shape \(6,\).*\(5,\)"),
    ("coding-of-version-2", lambda w, a: (w, {**a, "coding": np.array([1, 5, 5, 5], np.uint32)}),
     r"'coding' attribute of shape \(6,\).*uint32 \(4,\)"),
    ("coding-beyond-range", lambda w, a: (w, {**a, "coding": np.full(6, 255, np.uint8)}), "beyond"),
    ("wrong-k", lambda w, a: (w, _recoded(a, extra_one=1)), "ones|cannot decode"),
    ("adaptive-without-chain", lambda w, a: (w, _recoded(a, model=_CHAIN)), "no"),
]
_BYTE_EDITS = [  # format version 3: the code is the shortest byte string that decodes exactly
    ("truncated", lambda w, a: (w[: len(w) // 2], a), "cannot decode|ones"),
    ("last-byte-dropped", lambda w, a: (w[:-1], a), "cannot decode|ones"),  # shorter never decodes the same
    ("trailing-zero", lambda w, a: (np.concatenate([w, np.zeros(1, np.uint8)]), a), "zero byte"),
    ("dtype", lambda w, a: (w.view(np.uint32) if w.size % 4 == 0 else w[: w.size // 4 * 4].view(np.uint32), a),
     "expected 1-D uint8 code bytes"),
]
_RANS_EDITS = [  # format version 4: an rANS code, its state ending at 1 with every byte read
    ("truncated", lambda w, a: (w[: len(w) // 2], a), "cannot decode|ones"),
    ("last-byte-dropped", lambda w, a: (w[:-1], a), "cannot decode|ones"),
    ("extra-byte", lambda w, a: (np.concatenate([w, w[:1]]), a), "cannot decode|ones"),
    ("leading-zero", lambda w, a: (np.concatenate([np.zeros(1, np.uint8), w]), a), "starts with a zero byte"),
    ("emptied", lambda w, a: (w[:0], a), "code is empty"),
    ("dtype", lambda w, a: (w.view(np.uint32) if w.size % 4 == 0 else w[: w.size // 4 * 4].view(np.uint32), a),
     "expected 1-D uint8 code bytes"),
]
_WORD_EDITS = [  # format versions 1 and 2: the coder's own words
    ("truncated", lambda w, a: (w[: len(w) // 2], a), "cannot decode|ones"),
    ("extra-words", lambda w, a: (np.concatenate([w, w[:4]]), a), "left over"),
    ("dtype", lambda w, a: (w.astype(np.uint16), a), "expected 1-D uint32 code words"),
]
_DAMAGE = (
    [pytest.param(4, edit, reason, id=f"v4-{name}") for name, edit, reason in _RANS_EDITS + _CODING_BYTES_EDITS]
    + [pytest.param(3, edit, reason, id=f"v3-{name}") for name, edit, reason in _BYTE_EDITS + _CODING_BYTES_EDITS]
    + [pytest.param(2, edit, reason, id=f"v2-{name}") for name, edit, reason in _WORD_EDITS + _CODING_EDITS]
)


@pytest.mark.parametrize("version, edit, reason", _DAMAGE)
def test_damaged_task_is_a_storage_format_error(tmp_path, rng, version, edit, reason):
    """Each edit is reported as damage of that task, on one line naming the file, in every encoding."""
    path = tmp_path / "b.h5"
    _bank_with_one_task(path, rng, version)
    _edit_task(path, edit)
    with open_bank(path) as bank, pytest.raises(StorageFormatError, match=reason) as info:
        bank.read_task("0")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("version", [4, 3, 2])
@pytest.mark.parametrize("reseal", [False, True], ids=["checksum-catches-it", "decoder-catches-it"])
def test_bit_flip_is_detected(tmp_path, rng, reseal, version):
    """A flipped code bit: the task's CRC-32 reports it; with the checksum rewritten, the decoder's own checks do."""
    path = tmp_path / "b.h5"
    _bank_with_one_task(path, rng, version)
    before = path.read_bytes()

    def flip_bit(words, attrs):
        words = words.copy()
        words[len(words) // 3] ^= words.dtype.type(1 << 7)
        return words, attrs

    _edit_task(path, flip_bit, reseal=reseal)
    edited = path.read_bytes()
    with open_bank(path) as bank, pytest.raises(StorageFormatError, match="CRC-32" if not reseal else "damaged") as e:
        bank.read_task("0")
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert path.read_bytes() == edited != before  # reading changed nothing
    report = verify_file(path)  # what supsup-store verify lists
    assert not report.ok and [obj for obj, status, _ in report.items if status == "damaged"] == ["task '0'"]


def test_no_optional_package_is_needed_for_any_version(tmp_path, rng, monkeypatch):
    """Without constriction (it once coded every task): new banks, and banks of versions 1-3, read and append."""
    monkeypatch.setitem(sys.modules, "constriction", None)  # import constriction -> ImportError
    masks = lenet_masks(rng, 0.1)
    with create_bank(tmp_path / "new.h5", "hdf5-entropy") as bank:
        bank.write_task("0", masks)
        bank.write_task("1", flip(masks, rng, 0.01))
    with open_bank(tmp_path / "new.h5") as bank:
        assert all(np.array_equal(bank.read_task("0")[k], v) for k, v in masks.items())
    for revision in ("entropy_v1", "entropy_v2", "entropy_v3"):
        path = tmp_path / f"{revision}.h5"
        shutil.copyfile(golden_path(revision), path)
        expected, *_ = golden_expected(revision)
        with open_bank(path, "a") as bank:
            for task in reversed(list(expected)):
                got = bank.read_task(task)
                assert all(np.array_equal(got[k], v) for k, v in expected[task].items())
            bank.write_task("more", {name: ~m for name, m in expected["dense"].items()})
        assert verify_file(path).ok


# ---------------------------------------------------------------------- golden files
ENTROPY_REVISIONS = {"entropy_v1": (1, np.uint32), "entropy_v2": (2, np.uint32), "entropy_v3": (3, np.uint8),
                     "entropy_v4": (4, np.uint8)}
CURRENT = "entropy_v4"  # what the current writer produces


def golden_path(revision: str) -> Path:
    return FIXTURES / f"golden_{revision}_hdf5-entropy.h5"


def golden_expected(revision: str) -> tuple[dict, dict, dict, dict]:
    """Masks, attrs, models and metadata recorded beside the golden bank of ``revision``."""
    with np.load(FIXTURES / f"golden_{revision}_expected.npz", allow_pickle=False) as npz:
        layers = json.loads(str(npz["__tasks__"]))
        masks = {task: {layer: npz[f"{task}/{layer}"] for layer in names} for task, names in layers.items()}
        attrs = json.loads(str(npz["__attrs__"]))
        models = json.loads(str(npz["__models__"]))
        metadata = json.loads(str(npz["__metadata__"]))
    return masks, attrs, models, metadata


@pytest.mark.parametrize("revision", list(ENTROPY_REVISIONS))
def test_golden_file_reads_bit_exactly(revision):
    """Banks of every released encoding (words at format versions 1 and 2, bytes at 3, rANS at 4) read bit-exactly."""
    masks, attrs, models, metadata = golden_expected(revision)
    version, dtype = ENTROPY_REVISIONS[revision]
    with h5py.File(golden_path(revision), "r") as f:
        assert f.attrs["format_version"] == version
        assert {f["tasks"][task].dtype for task in f["tasks"]} == {np.dtype(dtype)}
    assert set(models.values()) == {"static", "layers", "rows", "adaptive"}
    with open_bank(golden_path(revision)) as bank:
        assert bank.backend_id == "hdf5-entropy" and bank.metadata == metadata
        assert bank.tasks() == list(masks)
        for task in reversed(list(masks)):  # the chain is rebuilt from the last task backwards
            got = bank.read_task(task)
            assert list(got) == list(masks[task])
            for layer, mask in masks[task].items():
                assert got[layer].shape == mask.shape
                np.testing.assert_array_equal(got[layer], mask)
            assert bank.task_attrs(task) == attrs[task]
            assert bank.task_encoding(task)["model"] == models[task]
    assert verify_file(golden_path(revision)).ok


def test_current_writer_produces_the_current_golden(tmp_path):
    """Re-writing the current golden's tasks gives byte-identical code and coding attributes (no drift)."""
    masks, attrs, _models, metadata = golden_expected(CURRENT)
    path = tmp_path / "now.h5"
    with create_bank(path, "hdf5-entropy", metadata=metadata) as bank:
        for task, layers in masks.items():
            bank.write_task(task, layers, attrs=attrs[task])
    with h5py.File(golden_path(CURRENT), "r") as old, h5py.File(path, "r") as new:
        assert old.attrs["format_version"] == new.attrs["format_version"] == 4
        for task in masks:
            a, b = old["tasks"][task], new["tasks"][task]
            assert a.dtype == b.dtype == np.uint8 and a.shape == b.shape
            np.testing.assert_array_equal(a[()], b[()])
            np.testing.assert_array_equal(a.attrs["coding"], b.attrs["coding"])
            assert a.attrs["coding"].dtype == b.attrs["coding"].dtype


def test_byte_code_is_the_word_code_rounded_up_in_a_last_byte():
    """Each version-3 code is the version-2 words of the same task (big-endian), or a prefix of them plus one."""
    masks, _attrs, _models, _metadata = golden_expected("entropy_v3")
    with h5py.File(golden_path("entropy_v2"), "r") as words, h5py.File(golden_path("entropy_v3"), "r") as code:
        for task in masks:
            full = words["tasks"][task][()].astype(">u4").tobytes().rstrip(b"\0")
            b = code["tasks"][task][()].tobytes()
            assert not b.endswith(b"\0")
            rounded_up = any(int.from_bytes(full[:size], "big") + 1 == int.from_bytes(b.ljust(size, b"\0"), "big")
                             for size in range(len(b), len(full)))
            assert b == full or rounded_up


@pytest.mark.parametrize("revision", ["entropy_v1", "entropy_v2", "entropy_v3"])
def test_old_writers_reproduce_their_goldens(tmp_path, revision):
    """Emptied and written again in order, a version 1-3 bank holds its golden's bytes: the kernels that replaced
    constriction write what it wrote (task datasets and coding attributes, byte for byte)."""
    masks, attrs, _models, _metadata = golden_expected(revision)
    path = tmp_path / "again.h5"
    shutil.copyfile(golden_path(revision), path)
    with open_bank(path, "a") as bank:
        for task in bank.tasks():
            bank.delete_task(task)
        for task, layers in masks.items():
            bank.write_task(task, layers, attrs=attrs[task])
    with h5py.File(golden_path(revision), "r") as old, h5py.File(path, "r") as new:
        assert old.attrs["format_version"] == new.attrs["format_version"] == ENTROPY_REVISIONS[revision][0]
        for task in masks:
            a, b = old["tasks"][task], new["tasks"][task]
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a[()], b[()])
            np.testing.assert_array_equal(a.attrs["coding"], b.attrs["coding"])
            assert a.attrs["coding"].dtype == b.attrs["coding"].dtype


@pytest.mark.parametrize("revision", ["entropy_v1", "entropy_v2", "entropy_v3"])
def test_appending_to_an_old_bank_keeps_its_version(tmp_path, rng, revision):
    """An append (and a deletion's re-coding) writes the bank's own encoding; every task still reads back."""
    masks, _attrs, _models, _metadata = golden_expected(revision)
    path = tmp_path / "old.h5"
    shutil.copyfile(golden_path(revision), path)
    version, dtype = ENTROPY_REVISIONS[revision]
    new = {name: rng.random(m.shape) < 0.3 for name, m in masks["dense"].items()}  # a chain task
    with open_bank(path, "a") as bank:
        bank.write_task("new", new)
        bank.delete_task("checkpoint-0")  # checkpoint-1, -2 and new are re-coded
    del masks["checkpoint-0"]
    masks["new"] = new
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == version
        assert {f["tasks"][task].dtype for task in f["tasks"]} == {np.dtype(dtype)}
    with open_bank(path) as bank:
        assert bank.tasks() == list(masks)
        for task in reversed(list(masks)):
            got = bank.read_task(task)
            assert all(np.array_equal(got[k], v) for k, v in masks[task].items())
    assert verify_file(path).ok
