"""One conformance suite run over every registered mask-bank backend (the memory backend is the oracle).

A codec registered with :func:`hopfield_masks.codecs.register_codec` is picked up by the
``factory`` fixture's parametrisation without any change here.
"""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given

from hopfield_masks.backends import (
    MaskBank,
    MemoryMaskBank,
    available_backends,
    HDF5MaskBank,
    create_bank,
    open_bank,
)
from hopfield_masks.blocks import MaskLayout
from hopfield_masks.errors import (
    InvalidArgumentError,
    PatternError,
    TaskNotFoundError,
)
from tests.strategies import bank_names, json_dicts, layer_masks

_COUNTER = itertools.count()


class BankFactory:
    """Creates banks of one backend and reopens them (files are closed and opened again; memory is copied)."""

    def __init__(self, backend_id: str, folder: Path) -> None:
        self.backend_id = backend_id
        self.folder = folder
        self.persistent = backend_id != "memory"

    def new(self, metadata: dict | None = None) -> MaskBank:
        if self.persistent:
            return create_bank(self.folder / f"bank{next(_COUNTER)}.h5", self.backend_id, metadata=metadata)
        bank = MemoryMaskBank(None, "w")
        if metadata is not None:
            bank.set_metadata(metadata)
        return bank

    def reopen(self, bank: MaskBank, mode: str = "r") -> MaskBank:
        if self.persistent:
            bank.close()
            return open_bank(bank.path, mode)
        copy = MemoryMaskBank.from_bank(bank, mode)
        bank.close()
        return copy


@pytest.fixture(params=available_backends())
def factory(request, tmp_path) -> BankFactory:
    """A bank factory for each registered backend."""
    return BankFactory(request.param, tmp_path)


# Hypothesis tests cannot share function-scoped fixtures across examples: they take the id and a fresh folder.
each_backend = pytest.mark.parametrize("backend_id", available_backends())


def assert_same_masks(got: dict, expected: dict) -> None:
    """Same layer names in the same order, bool dtype, same shapes, same bits."""
    assert list(got) == list(expected)
    for name, mask in expected.items():
        ref = np.asarray(mask).astype(bool)
        assert got[name].dtype == np.bool_
        assert got[name].shape == ref.shape
        np.testing.assert_array_equal(got[name], ref)


def roundtrip(factory: BankFactory, masks: dict, **kw) -> dict:
    """Write one task, reopen the bank read-only, read the task back."""
    bank = factory.new()
    bank.write_task("t", masks, **kw)
    bank = factory.reopen(bank)
    with bank:
        return bank.read_task("t")


class TestRoundTrip:
    def test_odd_shapes(self, factory, rng):
        """Masks of odd, multi-dimensional shapes come back bit-exact, in layer order."""
        masks = {s: rng.random(shape) < 0.3 for s, shape in
                 [("c", (3, 5, 7)), ("a", (13,)), ("b", (1, 1, 1, 1)), ("d", (9, 2))]}
        assert_same_masks(roundtrip(factory, masks), masks)

    def test_lengths_not_multiple_of_eight(self, factory, rng):
        """Layers whose sizes are not multiples of 8 (and do not add up to one) round trip exactly."""
        masks = {f"l{n}": rng.random(n) < 0.5 for n in (1, 7, 9, 17, 63, 65)}
        assert_same_masks(roundtrip(factory, masks), masks)

    def test_empty_layers(self, factory, rng):
        """Size-0 layers keep their shapes next to ordinary layers."""
        masks = {"e1": np.zeros(0, bool), "x": rng.random((4, 3)) < 0.5, "e2": np.ones((3, 0), bool),
                 "e3": np.zeros((0, 5, 2), bool)}
        assert_same_masks(roundtrip(factory, masks), masks)

    def test_scalar_layers(self, factory):
        """0-d masks are supported (one entry each) and come back 0-d."""
        masks = {"on": np.array(True), "off": np.array(False), "v": np.array([1, 0, 1], dtype=bool)}
        assert_same_masks(roundtrip(factory, masks), masks)

    def test_all_zero_and_all_one(self, factory):
        """All-zero and all-one masks round trip (the sparse extremes)."""
        masks = {"zeros": np.zeros((70, 130), bool), "ones": np.ones((70, 131), bool)}
        assert_same_masks(roundtrip(factory, masks), masks)

    def test_task_without_layers(self, factory):
        """A task with no layers is stored and read back as an empty dict."""
        assert roundtrip(factory, {}) == {}

    def test_numeric_inputs_become_bool(self, factory):
        """Integer, float and list masks with 0/1 values are stored as booleans."""
        masks = {"i": np.array([[0, 1], [1, 1]], dtype=np.int64), "f": np.array([1.0, 0.0, 1.0]), "l": [0, 1]}
        assert_same_masks(roundtrip(factory, masks), masks)

    def test_many_tasks(self, factory, rng):
        """Fifty tasks of different layouts are listed in insertion order and each reads back exactly."""
        bank = factory.new()
        expected = {}
        for i in range(50):
            name = f"task-{(i * 37) % 50}"  # insertion order differs from name order
            expected[name] = {"w": rng.random((i % 7 + 1, 11)) < 0.2, "b": rng.random(i) < 0.5}
            bank.write_task(name, expected[name], attrs={"i": i})
        bank = factory.reopen(bank)
        with bank:
            assert bank.tasks() == list(expected)
            assert len(bank) == 50 and "task-0" in bank and "nope" not in bank
            for name, masks in expected.items():
                assert_same_masks(bank.read_task(name), masks)
            assert [bank.task_attrs(n)["i"] for n in bank.tasks()] == list(range(50))

    @each_backend
    @given(masks=layer_masks())
    def test_random_layer_dicts_match_the_oracle(self, backend_id, masks):
        """Any dict of layer masks reads back exactly as the memory oracle returns it."""
        with tempfile.TemporaryDirectory() as folder:
            factory = BankFactory(backend_id, Path(folder))
            oracle = MemoryMaskBank()
            oracle.write_task("t", masks)
            got = roundtrip(factory, masks)
            assert_same_masks(got, oracle.read_task("t"))
            assert_same_masks(got, masks)
            oracle.close()

    def test_layout_and_nbytes(self, factory, rng):
        """task_layout gives names and shapes without reading masks; task_nbytes is a byte count."""
        masks = {"a": rng.random((5, 6)) < 0.5, "b": np.ones(3, bool)}
        bank = factory.new()
        bank.write_task("t", masks)
        with factory.reopen(bank) as bank:
            assert bank.task_layout("t") == MaskLayout.from_masks(masks)
            nbytes = bank.task_nbytes("t")
            assert isinstance(nbytes, int) and 0 < nbytes <= 8 * 33  # never more than 2 bytes per entry


class TestValidation:
    @pytest.mark.parametrize("name", ["", "a/b", ".", "..", 3, None, "nul\x00"])
    def test_bad_task_names(self, factory, name):
        """Empty names, names with '/', '.', '..' and non-strings are refused naming the argument."""
        with factory.new() as bank, pytest.raises(InvalidArgumentError, match="task"):
            bank.write_task(name, {"x": np.ones(2, bool)})

    @each_backend
    @given(name=bank_names())
    def test_any_valid_name_round_trips(self, backend_id, name):
        """Every valid name (unicode, spaces, dots) is listed and readable after reopening."""
        with tempfile.TemporaryDirectory() as folder:
            factory = BankFactory(backend_id, Path(folder))
            bank = factory.new()
            bank.write_task(name, {"x": np.array([True, False])})
            with factory.reopen(bank) as bank:
                assert bank.tasks() == [name]
                assert bank.read_task(name)["x"].tolist() == [True, False]

    def test_non_binary_mask(self, factory):
        """A value other than 0/1 raises PatternError naming the layer; nothing is stored."""
        with factory.new() as bank:
            with pytest.raises(PatternError, match="fc2"):
                bank.write_task("t", {"fc1": np.ones(3), "fc2": np.array([0, 2, 1])})
            assert bank.tasks() == []

    def test_non_mapping_and_bad_layer_names(self, factory):
        """Masks must be a mapping with non-empty string layer names."""
        with factory.new() as bank:
            with pytest.raises(InvalidArgumentError, match="masks"):
                bank.write_task("t", [np.ones(3)])
            with pytest.raises(InvalidArgumentError, match="masks"):
                bank.write_task("t", {1: np.ones(3)})
            with pytest.raises(InvalidArgumentError, match="masks"):
                bank.write_task("t", {"": np.ones(3)})

    def test_bad_mode(self, factory, tmp_path):
        """An unknown mode is refused naming the argument."""
        with pytest.raises(InvalidArgumentError, match="mode"):
            if factory.persistent:
                HDF5MaskBank(tmp_path / "x.h5", "x", codec=factory.backend_id)
            else:
                MemoryMaskBank(None, "x")


class TestOverwriteAndDelete:
    def test_existing_task_needs_overwrite(self, factory):
        """Writing an existing task without overwrite=True fails and keeps the old content."""
        with factory.new() as bank:
            bank.write_task("t", {"x": np.ones(3, bool)}, attrs={"v": 1})
            with pytest.raises(InvalidArgumentError, match="overwrite"):
                bank.write_task("t", {"x": np.zeros(3, bool)})
            assert bank.read_task("t")["x"].all() and bank.task_attrs("t") == {"v": 1}

    def test_overwrite_replaces_and_moves_to_end(self, factory):
        """overwrite=True replaces masks, layout and attrs; the task moves to the end of the order."""
        bank = factory.new()
        bank.write_task("a", {"x": np.ones(3, bool)}, attrs={"v": 1})
        bank.write_task("b", {"x": np.ones(3, bool)})
        bank.write_task("a", {"y": np.zeros((2, 2), bool)}, attrs={"v": 2}, overwrite=True)
        with factory.reopen(bank) as bank:
            assert bank.tasks() == ["b", "a"]
            assert_same_masks(bank.read_task("a"), {"y": np.zeros((2, 2), bool)})
            assert bank.task_attrs("a") == {"v": 2}

    def test_delete(self, factory):
        """A deleted task disappears; the others are unchanged."""
        bank = factory.new()
        for name in "abc":
            bank.write_task(name, {"x": np.array([name == "a", True])})
        bank.delete_task("b")
        with factory.reopen(bank) as bank:
            assert bank.tasks() == ["a", "c"]
            assert bank.read_task("a")["x"].tolist() == [True, True]
            assert bank.read_task("c")["x"].tolist() == [False, True]

    @pytest.mark.parametrize("method", ["read_task", "task_attrs", "task_layout", "task_nbytes", "delete_task"])
    def test_missing_task(self, factory, method):
        """Every per-task method raises TaskNotFoundError (a KeyError) listing the stored tasks."""
        with factory.new() as bank:
            bank.write_task("present", {"x": np.ones(1, bool)})
            with pytest.raises(TaskNotFoundError, match="present") as info:
                getattr(bank, method)("absent")
            assert isinstance(info.value, KeyError)


class TestMetadataAndAttrs:
    def test_defaults_are_empty(self, factory):
        """A new bank has empty metadata and a task without attrs has {}."""
        with factory.new() as bank:
            bank.write_task("t", {"x": np.ones(1, bool)})
            assert bank.metadata == {} and bank.task_attrs("t") == {}

    @each_backend
    @given(meta=json_dicts(), attrs=json_dicts())
    def test_json_round_trip(self, backend_id, meta, attrs):
        """Metadata and task attrs survive a reopen as the same JSON."""
        with tempfile.TemporaryDirectory() as folder:
            factory = BankFactory(backend_id, Path(folder))
            bank = factory.new(metadata=meta)
            bank.write_task("t", {"x": np.ones(1, bool)}, attrs=attrs)
            with factory.reopen(bank) as bank:
                assert bank.metadata == meta
                assert bank.task_attrs("t") == attrs

    def test_set_metadata_replaces_and_copies(self, factory):
        """set_metadata replaces the dict; tuples come back as lists; editing the returned dict changes nothing."""
        bank = factory.new(metadata={"seed": 1, "old": True})
        bank.set_metadata({"seed": 2, "arch": ("lenet", 300, 100)})
        bank.metadata["seed"] = 99
        with factory.reopen(bank) as bank:
            assert bank.metadata == {"seed": 2, "arch": ["lenet", 300, 100]}

    @pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, [1, 2], "text"])
    def test_non_json_is_refused(self, factory, bad):
        """NaN, arbitrary objects and non-mappings are refused for metadata and attrs."""
        with factory.new() as bank:
            with pytest.raises(InvalidArgumentError, match="metadata"):
                bank.set_metadata(bad)
            with pytest.raises(InvalidArgumentError, match="attrs"):
                bank.write_task("t", {"x": np.ones(1, bool)}, attrs=bad)
            assert bank.tasks() == []


class TestModes:
    def test_read_only_refuses_writes(self, factory):
        """Mode 'r' refuses every modification but reads normally."""
        bank = factory.new()
        bank.write_task("t", {"x": np.ones(2, bool)})
        bank.write_attachment("a", lambda g: g.attrs.create("k", 1))
        with factory.reopen(bank, "r") as bank:
            calls = [
                lambda: bank.write_task("u", {"x": np.ones(2, bool)}),
                lambda: bank.delete_task("t"),
                lambda: bank.set_metadata({}),
                lambda: bank.write_attachment("b", lambda g: None),
                lambda: bank.delete_attachment("a"),
            ]
            for call in calls:
                with pytest.raises(InvalidArgumentError, match="read-only"):
                    call()
            assert bank.read_task("t")["x"].all() and bank.tasks() == ["t"]

    def test_append_keeps_and_adds(self, factory):
        """Mode 'a' keeps existing tasks and metadata and adds new ones."""
        bank = factory.new(metadata={"seed": 3})
        bank.write_task("t0", {"x": np.ones(2, bool)})
        with factory.reopen(bank, "a") as bank:
            bank.write_task("t1", {"x": np.zeros(2, bool)})
            snapshot = factory.reopen(bank, "r")
        with snapshot:
            assert snapshot.tasks() == ["t0", "t1"] and snapshot.metadata == {"seed": 3}

    def test_closed_bank_refuses_use(self, factory):
        """After close() every operation raises; close() is idempotent."""
        bank = factory.new()
        bank.close()
        bank.close()
        assert bank.closed
        for call in (bank.tasks, lambda: bank.metadata, lambda: bank.read_task("t"), bank.attachments):
            with pytest.raises(InvalidArgumentError, match="closed"):
                call()


class TestAttachments:
    @staticmethod
    def _writer(group: h5py.Group) -> None:
        group.attrs.create("kind", "reservoir")
        group.create_dataset("couplings", data=np.arange(12, dtype=np.float32).reshape(3, 4))

    def test_round_trip(self, factory):
        """An attachment written as an h5py group reads back with its datasets and attrs, in order."""
        bank = factory.new()
        bank.write_attachment("reservoir", self._writer)
        bank.write_attachment("another", lambda g: g.attrs.create("n", 5))
        with factory.reopen(bank) as bank:
            assert bank.attachments() == ["reservoir", "another"]
            arr, kind = bank.read_attachment("reservoir", lambda g: (g["couplings"][()], g.attrs["kind"]))
            np.testing.assert_array_equal(arr, np.arange(12, dtype=np.float32).reshape(3, 4))
            assert kind == "reservoir"

    def test_overwrite_and_delete(self, factory):
        """Existing attachments need overwrite=True; delete removes them; missing ones raise TaskNotFoundError."""
        with factory.new() as bank:
            bank.write_attachment("a", lambda g: g.attrs.create("v", 1))
            with pytest.raises(InvalidArgumentError, match="overwrite"):
                bank.write_attachment("a", lambda g: None)
            bank.write_attachment("a", lambda g: g.attrs.create("v", 2), overwrite=True)
            assert bank.read_attachment("a", lambda g: int(g.attrs["v"])) == 2
            bank.delete_attachment("a")
            assert bank.attachments() == []
            with pytest.raises(TaskNotFoundError):
                bank.read_attachment("a", lambda g: None)

    def test_failing_writer_leaves_nothing(self, factory):
        """A writer that raises leaves no partial attachment behind and the error propagates."""

        def writer(group):
            group.create_dataset("half", data=np.ones(3))
            raise RuntimeError("writer failed")

        with factory.new() as bank:
            with pytest.raises(RuntimeError, match="writer failed"):
                bank.write_attachment("a", writer)
            assert bank.attachments() == []


class TestCopy:
    def test_copy_between_backends(self, factory, rng):
        """copy_to moves metadata, tasks, attrs and attachments from the oracle into the backend."""
        source = MemoryMaskBank()
        source.set_metadata({"seed": 4})
        masks = {"a": rng.random((3, 9)) < 0.4, "b": np.array(True)}
        source.write_task("t", masks, attrs={"acc": 0.5})
        source.write_attachment("res", TestAttachments._writer)
        target = factory.new()
        source.copy_to(target)
        source.close()
        with factory.reopen(target) as target:
            assert target.metadata == {"seed": 4} and target.task_attrs("t") == {"acc": 0.5}
            assert_same_masks(target.read_task("t"), masks)
            assert target.read_attachment("res", lambda g: g["couplings"].shape) == (3, 4)
