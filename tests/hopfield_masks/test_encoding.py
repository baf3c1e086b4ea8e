"""Tests of hopfield_masks/encoding.py: a mask bank encoded into a reservoir attached to the bank (no torch)."""

from __future__ import annotations

import json
import math
import warnings

import h5py
import numpy as np
import pytest
from hypothesis import given, settings

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.binary import BinaryReservoir
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.encoding import (
    EncodeSettings,
    EncodeReport,
    plan_reservoir,
    bank_digest,
    reservoir_is_current,
    bank_reservoirs,
    encode_bank,
    exact_storage_cost,
    read_bank_reservoir,
    reservoir_name,
)
from hopfield_masks.errors import (
    BankFileNotFoundError,
    BudgetError,
    CapacityWarning,
    InvalidArgumentError,
    StorageFormatError,
    UnknownRuleError,
)
from hopfield_masks.patterns import packed_nbytes
from hopfield_masks.reservoir import Reservoir
from hopfield_masks.rules import get_rule
from tests.strategies import byte_budgets

SHAPES = {"fc1": (6, 5), "fc2": (7,)}  # one task's layers: P = 37 mask entries
LENGTH = 37


def _random_task(rng: np.random.Generator, shapes: dict[str, tuple[int, ...]] = SHAPES) -> dict[str, np.ndarray]:
    return {name: rng.random(shape) < 0.5 for name, shape in shapes.items()}


def _make_bank(path, n_tasks: int, backend: str = "hdf5-packed", seed: int = 0):
    """A bank at ``path`` with ``n_tasks`` random tasks "0", "1", ... of the SHAPES layout."""
    rng = np.random.default_rng(seed)
    with create_bank(path, backend, metadata={"seed": seed}) as bank:
        for t in range(n_tasks):
            bank.write_task(str(t), _random_task(rng))
    return path


def _read_tasks(path) -> list[dict[str, np.ndarray]]:
    with open_bank(path) as bank:
        return [bank.read_task(t) for t in bank.tasks()]


def _snapshot(path) -> tuple[bytes, int]:
    """The file's bytes and modification time: what a failed command must leave alone."""
    return path.read_bytes(), path.stat().st_mtime_ns


def _minimum_budget(length: int = LENGTH) -> int:
    """The smallest budget of the default reservoir (the perceptron rule's) for ``length`` mask entries."""
    with pytest.raises(BudgetError) as info:
        plan_reservoir(1, MaskLayout(("w",), ((length,),)), EncodeSettings())
    return info.value.minimum


#: A Hopfield reservoir (keyed, sign couplings of the projection rule), for tests of its networks.
HOPFIELD = EncodeSettings(rule="pseudo-inverse")


@pytest.fixture
def bank(tmp_path):
    """A packed bank with 3 random tasks."""
    return _make_bank(tmp_path / "bank.h5", 3)


class TestReservoirName:
    def test_equal_budgets_written_differently_name_the_same_attachment(self):
        """'1MB', '1e6' and 1_000_000 are one budget, so one attachment name; KiB are binary."""
        assert reservoir_name("1MB") == reservoir_name("1e6") == reservoir_name(1_000_000) == "reservoir-1000000"
        assert reservoir_name("512KiB") == "reservoir-524288"

    def test_unparsable_budget_is_a_budget_error(self):
        """A budget that is not a size raises BudgetError naming the text."""
        with pytest.raises(BudgetError, match="lots"):
            reservoir_name("lots")


class TestEncodeBank:
    def test_attached_reservoir_reads_back_identical(self, bank):
        """The reservoir attached to the bank reads back with the same layout, rule, couplings and spin sums."""
        built, report = encode_bank(bank, "20kB", HOPFIELD)
        again = read_bank_reservoir(bank, "20kB")
        assert isinstance(again, Reservoir)
        assert again.layout == built.layout and again.network_size == built.network_size
        assert again.rule.to_dict() == built.rule.to_dict() and again.dtype == built.dtype
        assert again.n_tasks == built.n_tasks == 3 and again.budget == 20_000
        np.testing.assert_array_equal(again.spin_sums, built.spin_sums)
        for a, b in zip(again.networks, built.networks):
            np.testing.assert_array_equal(a.couplings, b.couplings)
        assert bank_reservoirs(bank) == [report.attachment] == ["reservoir-20000"]

    def test_reservoir_holds_every_task_and_the_bank_keeps_its_masks(self, bank):
        """Spin sums are the sum of every task's ±1 state, and the bank's masks are unchanged by encoding."""
        before = _read_tasks(bank)
        reservoir, _ = encode_bank(bank, "20kB")
        layout = MaskLayout.from_masks(before[0])
        expected = np.sum([layout.flatten_spins(t) for t in before], axis=0)  # (P,)
        np.testing.assert_array_equal(reservoir.spin_sums, expected)
        after = _read_tasks(bank)
        assert all(np.array_equal(a[k], b[k]) for a, b in zip(before, after) for k in a)

    def test_stored_masks_are_recalled_exactly_at_low_load(self, bank):
        """Unguided recall from a 10%-noisy cue returns each of the 3 stored masks exactly (load well below 1)."""
        encode_bank(bank, "1MB", HOPFIELD)
        reservoir = read_bank_reservoir(bank, "1MB")
        assert reservoir.load < 0.5
        for i, task in enumerate(_read_tasks(bank)):
            cue = reservoir.cue("noisy:0.1", seed=i, reference=task)
            recalled, _ = reservoir.recall(cue, method="dynamics", seed=i)
            assert all(np.array_equal(recalled[k], task[k]) for k in task)

    @pytest.mark.parametrize("backend", ["hdf5-packed", "hdf5-sparse"])
    def test_report_fields_describe_the_reservoir(self, tmp_path, backend):
        """Every report field matches the reservoir built, for both file backends, and is JSON-safe."""
        path = _make_bank(tmp_path / "bank.h5", 4, backend)
        reservoir, report = encode_bank(path, "3kB", EncodeSettings(rule="storkey", key_units=0))
        n = reservoir.network_size
        assert isinstance(report, EncodeReport)
        assert report.path == str(path) and report.attachment == "reservoir-3000" and report.budget_bytes == 3000
        assert report.reservoir_bytes == reservoir.nbytes <= 3000
        assert report.n_networks == reservoir.n_blocks == math.ceil(LENGTH / n) and report.network_size == n
        assert report.pattern_length == LENGTH and report.n_tasks == 4
        assert report.rule == "storkey" and report.dtype == reservoir.dtype
        assert report.capacity_tasks == pytest.approx(get_rule("storkey").capacity(n))
        assert report.load == pytest.approx(4 / report.capacity_tasks) and report.over_capacity is False
        assert json.loads(json.dumps(report.to_dict(), allow_nan=False)) == report.to_dict()
        assert report.key_units == 0 and report.write_accumulator_bytes == 0

    def test_default_is_the_perceptron_rule_and_reads_back_identical(self, bank):
        """The default reservoir learns ±1 couplings (every task recalled exactly by key); it reads back bit for bit,
        and the report counts the hidden states that encoding needed and did not keep."""
        built, report = encode_bank(bank, "20kB")
        again = read_bank_reservoir(bank, "20kB")
        assert isinstance(again, BinaryReservoir) and report.rule == "perceptron" and report.dtype == "bit"
        assert np.array_equal(again.couplings, built.couplings) and again.n_tasks == 3 and again.budget == 20_000
        assert report.reservoir_bytes == again.nbytes <= 20_000 and report.write_accumulator_bytes == built.write_nbytes
        layout = again.layout
        expected = np.stack([layout.flatten_spins(t) for t in _read_tasks(bank)])
        assert np.array_equal(again.recall_keyed().states, expected)

    def test_pseudo_inverse_is_keyed_sign(self, tmp_path):
        """The projection rule's reservoir has task keys and 1-bit couplings; the report says so,
        including the float32 accumulator that encoding needed (one network's at a time) and did not keep."""
        path = _make_bank(tmp_path / "bank.h5", 4, "hdf5-packed")
        reservoir, report = encode_bank(path, "3kB", HOPFIELD)
        assert report.rule == "pseudo-inverse" and report.dtype == "sign" and report.key_units == reservoir.key_units > 0
        assert report.reservoir_bytes == reservoir.nbytes <= 3000
        assert report.write_accumulator_bytes == 4 * reservoir.network_size ** 2
        bits, scales = reservoir.packed_sign_couplings()  # kept as the bits the budget counts
        assert bits.nbytes + scales.nbytes + reservoir.spin_sums.nbytes == reservoir.nbytes
        assert read_bank_reservoir(path, "3kB").networks[0].frozen and reservoir.networks[0].frozen

    @pytest.mark.parametrize("settings", [None, HOPFIELD, EncodeSettings(rule="storkey", key_units=0, dtype="int8")])
    def test_encoding_gives_what_storing_each_task_in_turn_gives(self, bank, settings):
        """Encoding learns from every task at once (compact, a chunk or network at a time); the couplings are
        those of the reservoir planned for the same budget fed each task in turn."""
        reservoir, report = encode_bank(bank, "20kB", settings)
        planned = plan_reservoir("20kB", reservoir.layout, settings or EncodeSettings(), n_tasks=3)
        tasks = _read_tasks(bank)
        if isinstance(planned, BinaryReservoir):
            planned.fit(np.stack([planned.layout.flatten_spins(t) for t in tasks]))
            assert np.array_equal(planned.couplings, reservoir.couplings)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", CapacityWarning)
                for t in tasks:
                    planned.store(t)
            for a, b in zip(planned.networks, reservoir.networks):
                np.testing.assert_array_equal(a.couplings, b.couplings)
                assert a.scale == b.scale
        np.testing.assert_array_equal(planned.spin_sums, reservoir.spin_sums)

    def test_the_report_prints_what_was_built_in_one_line(self, bank):
        """print(report) names the rule, the bytes, the tasks and, for the perceptron rule, that recall is exact."""
        _, report = encode_bank(bank, "20kB")
        text = str(report)
        assert report.exact is True and "\n" not in text
        assert text.startswith(f"perceptron reservoir {bank}:reservoir-20000, {report.reservoir_bytes:,} B of the 20,000 B")
        assert "3 tasks of 37 bits" in text and text.endswith("every task is recalled exactly by its key")
        _, report = encode_bank(bank, "20kB", HOPFIELD)
        assert report.exact is None and "sign couplings" in str(report) and "not known" in str(report)
        unconverged = EncodeReport(**{**report.to_dict(), "rule": "perceptron", "rows_unconverged": 5})
        assert unconverged.exact is False and "5 coupling rows missed a constraint" in str(unconverged)

    def test_honest_alternative_counts_the_file_overhead(self, bank):
        """The exact alternative counts the packed bits plus the measured per-task and header bytes of a bank file."""
        _, report = encode_bank(bank, "1MB")
        with open_bank(bank) as b:
            measured = max(b.task_nbytes(t) for t in b.tasks())
            header, per_task = exact_storage_cost(b.read_task(b.tasks()[0]))
        assert report.exact_bytes_per_task == measured == packed_nbytes(LENGTH) == 5
        assert report.exact_file_bytes_per_task == per_task > 5 and report.exact_file_header_bytes == header > 0
        assert report.exact_tasks_in_budget == (1_000_000 - header) // per_task

    def test_honest_alternative_for_a_sparse_bank_is_the_packed_size(self, tmp_path):
        """For a sparse bank the alternative is still the bit-packed format, ceil(P/8) bytes per mask."""
        path = _make_bank(tmp_path / "sparse.h5", 2, "hdf5-sparse")
        _, report = encode_bank(path, "512KiB")
        assert report.exact_bytes_per_task == packed_nbytes(LENGTH)
        header, per_task = report.exact_file_header_bytes, report.exact_file_bytes_per_task
        assert report.exact_tasks_in_budget == (524_288 - header) // per_task

    def test_rule_and_precision_options_are_used(self, bank):
        """rule='hebbian', dtype='int8' give a Hebbian reservoir with int8 couplings and the Hebbian capacity."""
        reservoir, report = encode_bank(bank, "20kB", EncodeSettings(rule="hebbian", dtype="int8"))
        assert report.rule == "hebbian" and report.dtype == "int8"
        stored = read_bank_reservoir(bank, "20kB")
        assert stored.networks[0].couplings.dtype == np.int8
        assert report.capacity_tasks == pytest.approx(get_rule("hebbian").capacity(reservoir.network_size))

    def test_many_tasks_in_a_tiny_budget_are_flagged_over_capacity_without_warnings(self, tmp_path):
        """40 tasks in the smallest budget give load > 1 and over_capacity, reported in the report, not warned."""
        path = _make_bank(tmp_path / "many.h5", 40)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _, report = encode_bank(path, _minimum_budget())
        assert report.over_capacity is True and report.load > 1 and report.n_tasks == 40
        assert not [w for w in caught if issubclass(w.category, CapacityWarning)]

    def test_progress_is_reported_after_each_task(self, bank):
        """progress(done, total) is called once per task, in order."""
        calls = []
        encode_bank(bank, "20kB", progress=lambda done, total: calls.append((done, total)))
        assert calls == [(1, 3), (2, 3), (3, 3)]

    def test_encoding_again_replaces_the_reservoir_of_that_budget(self, bank):
        """Re-encoding after a task is added replaces the attachment; other budgets keep their own."""
        encode_bank(bank, "20kB")
        encode_bank(bank, "5kB")
        with open_bank(bank, "a") as b:
            b.write_task("3", _random_task(np.random.default_rng(9)))
        _, report = encode_bank(bank, "20kB")
        assert report.n_tasks == 4 and read_bank_reservoir(bank, "20kB").n_tasks == 4
        assert read_bank_reservoir(bank, "5kB").n_tasks == 3
        assert sorted(bank_reservoirs(bank)) == ["reservoir-20000", "reservoir-5000"]

    def test_a_budget_never_encoded_has_no_reservoir(self, bank):
        """read_bank_reservoir returns None for a budget with no attachment."""
        encode_bank(bank, "20kB")
        assert read_bank_reservoir(bank, "21kB") is None

    @settings(max_examples=8)
    @given(budget=byte_budgets(min_bytes=_minimum_budget(), max_bytes=60_000))
    def test_reservoir_fits_the_budget_and_the_alternative_is_a_floor(self, tmp_path_factory, budget):
        """For any workable budget the reservoir fits it, and budget // exact bytes masks fit exactly."""
        path = _make_bank(tmp_path_factory.mktemp("prop") / "bank.h5", 2)
        _, report = encode_bank(path, budget)
        assert report.reservoir_bytes <= budget == report.budget_bytes
        exact, header = report.exact_file_bytes_per_task, report.exact_file_header_bytes
        n = report.exact_tasks_in_budget
        assert n == 0 or header + n * exact <= budget < header + (n + 1) * exact


class TestEncodeErrors:
    def test_empty_bank_is_refused(self, tmp_path):
        """A bank without masks raises StorageFormatError saying it holds no masks, and stays as it was."""
        path = tmp_path / "empty.h5"
        create_bank(path).close()
        before = _snapshot(path)
        with pytest.raises(StorageFormatError, match="holds no masks"):
            encode_bank(path, "1MB")
        assert _snapshot(path) == before

    def test_tasks_with_different_layouts_are_refused(self, bank):
        """A task whose layers differ from the first task's raises StorageFormatError naming it; no change."""
        with open_bank(bank, "a") as b:
            b.write_task("odd", {"fc1": np.ones((6, 5), bool), "fc2": np.ones(8, bool)})
        before = _snapshot(bank)
        with pytest.raises(StorageFormatError, match="'odd'"):
            encode_bank(bank, "1MB")
        assert _snapshot(bank) == before

    def test_budget_below_the_minimum_names_the_minimum_and_changes_nothing(self, bank):
        """A budget too small raises BudgetError carrying the minimum; that minimum itself works."""
        before = _snapshot(bank)
        minimum = _minimum_budget()
        with pytest.raises(BudgetError) as info:
            encode_bank(bank, minimum - 1)
        assert info.value.minimum == minimum and (str(minimum) in str(info.value) or f"{minimum:,}" in str(info.value))
        assert _snapshot(bank) == before
        _, report = encode_bank(bank, minimum)
        assert report.reservoir_bytes <= minimum

    @pytest.mark.parametrize(
        "kwargs, error", [({"rule": "oja"}, UnknownRuleError), ({"dtype": "float64"}, InvalidArgumentError),
                          ({"rule": "hebbian", "key_units": -1}, InvalidArgumentError),
                          ({"rule": "perceptron", "dtype": "int8"}, InvalidArgumentError),  # its couplings are bits
                          ({"rule": "perceptron", "key_units": 100}, InvalidArgumentError)]
    )
    def test_bad_settings_are_refused_when_made(self, kwargs, error):
        """An unknown rule, precision or key count raises when the settings are made, before any bank is opened."""
        with pytest.raises(error):
            EncodeSettings(**kwargs)

    def test_settings_of_another_type_change_nothing(self, bank):
        before = _snapshot(bank)
        with pytest.raises(InvalidArgumentError, match="^settings:"):
            encode_bank(bank, "1MB", {"rule": "hebbian"})
        assert _snapshot(bank) == before

    def test_missing_and_non_hdf5_files(self, tmp_path):
        """A missing path raises BankFileNotFoundError, a text file StorageFormatError; neither is created/changed."""
        with pytest.raises(BankFileNotFoundError):
            encode_bank(tmp_path / "nope.h5", "1MB")
        assert not (tmp_path / "nope.h5").exists()
        text = tmp_path / "masks.h5"
        text.write_text("not a bank\n")
        with pytest.raises(StorageFormatError, match="HDF5"):
            encode_bank(text, "1MB")
        assert text.read_text() == "not a bank\n"

    def test_a_failing_write_leaves_the_bank_byte_identical(self, bank, monkeypatch):
        """If writing the reservoir fails half-way, the bank keeps its bytes, mtime and attachments."""
        import hopfield_masks.encoding as encoding

        def broken(group: h5py.Group, reservoir: Reservoir) -> None:
            group.create_dataset("couplings", data=np.zeros(3))  # a partial write...
            raise RuntimeError("disk full")  # ...then a failure

        before = _snapshot(bank)
        monkeypatch.setattr(encoding, "write_reservoir", broken)
        monkeypatch.setattr(encoding, "write_binary_reservoir", broken)
        with pytest.raises(RuntimeError, match="disk full"):
            encode_bank(bank, "1MB")
        assert _snapshot(bank) == before and bank_reservoirs(bank) == []

    def test_existing_reservoir_is_kept_when_overwrite_is_false(self, bank):
        """overwrite=False with a reservoir of that budget raises InvalidArgumentError and leaves the file alone."""
        encode_bank(bank, "20kB")
        before = _snapshot(bank)
        with pytest.raises(InvalidArgumentError, match="overwrite"):
            encode_bank(bank, "20kB", overwrite=False)
        assert _snapshot(bank) == before

    def test_unparsable_budget_changes_nothing(self, bank):
        """A budget that is not a size raises BudgetError and writes nothing."""
        before = _snapshot(bank)
        with pytest.raises(BudgetError):
            encode_bank(bank, "a lot")
        assert _snapshot(bank) == before


class TestReservoirIsCurrent:
    def test_fresh_reservoir_is_current_and_an_overwritten_task_is_not(self, tmp_path):
        """A reservoir matches the bank it was encoded from, and stops matching when a task is overwritten in place."""
        path = _make_bank(tmp_path / "bank.h5", 3)
        assert reservoir_is_current(path, "64kB") is None  # no reservoir yet
        encode_bank(path, "64kB")
        assert reservoir_is_current(path, "64kB") is True
        with open_bank(path, "a") as bank:
            masks = bank.read_task("0")
            flipped = {name: ~m for name, m in masks.items()}
            bank.write_task("0", flipped, overwrite=True)
        assert reservoir_is_current(path, "64kB") is False

    def test_digest_depends_on_order_and_content(self, tmp_path):
        """The bank digest changes when a mask bit changes."""
        a = _make_bank(tmp_path / "a.h5", 2)
        with open_bank(a) as bank:
            before = bank_digest(bank)
            masks = bank.read_task("1")
        name = next(iter(masks))
        masks[name].flat[0] = not masks[name].flat[0]
        with open_bank(a, "a") as bank:
            bank.write_task("1", masks, overwrite=True)
        with open_bank(a) as bank:
            assert bank_digest(bank) != before
