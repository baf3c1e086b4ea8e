"""The backends package: registry, create_bank/open_bank dispatch and describe_file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from hopfield_masks import codecs
from hopfield_masks.backends import (
    HDF5MaskBank,
    MemoryMaskBank,
    available_backends,
    create_bank,
    describe_file,
    open_bank,
)
from hopfield_masks.codecs import PackedCodec, SparseCodec, get_codec, register_codec
from hopfield_masks.safety.integrity import record_group_checksum
from hopfield_masks.errors import InvalidArgumentError, RegistryError, StorageFormatError, UnknownBackendError


class TestRegistry:
    def test_builtin_backends(self):
        """The memory bank and the three built-in codecs are listed under their ids."""
        assert available_backends()[:4] == ["memory", "hdf5-packed", "hdf5-sparse", "hdf5-entropy"]
        for codec_id in available_backends()[1:]:
            assert get_codec(codec_id).codec_id == codec_id

    def test_unknown_backend_lists_ids(self, tmp_path):
        """An unknown id raises UnknownBackendError (a KeyError) listing the known ids."""
        with pytest.raises(UnknownBackendError, match="hdf5-packed") as info:
            get_codec("zip")
        assert isinstance(info.value, KeyError)
        with pytest.raises(UnknownBackendError, match="memory"):
            create_bank(tmp_path / "x.h5", "zip")
        assert list(tmp_path.iterdir()) == []

    def test_lookup_errors_survive_pickling(self):
        """Training workers send their exceptions through pickle: UnknownBackendError, UnknownRuleError and
        TaskNotFoundError were rebuilt from their message alone and failed to unpickle (the driver then got a
        RuntimeError, shown with a traceback, instead of the library error)."""
        import pickle

        from hopfield_masks.errors import TaskNotFoundError, UnknownRuleError

        for exc in (UnknownBackendError("zip", ["memory"]), UnknownRuleError("oja", ["hebbian"]),
                    TaskNotFoundError("t9", ["t0", "t1"])):
            copy = pickle.loads(pickle.dumps(exc))
            assert type(copy) is type(exc) and str(copy) == str(exc)
            assert getattr(copy, "argument", None) == getattr(exc, "argument", None)

    def test_duplicates_and_non_codecs_are_refused(self):
        """Registering a taken id, a class without id, or a non-MaskCodec raises RegistryError."""
        with pytest.raises(RegistryError, match="already registered"):
            register_codec(PackedCodec)
        with pytest.raises(RegistryError, match="MaskCodec subclass"):
            register_codec(MemoryMaskBank)

        class NoId(PackedCodec):
            codec_id = ""

        with pytest.raises(RegistryError, match="codec_id"):
            register_codec(NoId)

    def test_a_new_codec_stores_banks_and_is_found_again(self, monkeypatch, tmp_path):
        """A codec of one's own (here: the bits inverted) writes banks that open_bank reads back with it."""
        monkeypatch.setattr(codecs, "_CODECS", dict(codecs._CODECS))

        class Inverted(PackedCodec):
            codec_id = "inverted-bits"

            def encode(self, flat, layout, context):
                return super().encode(~flat, layout, context)

            def decode(self, stored, layout, context):
                return ~super().decode(stored, layout, context)

        assert register_codec(Inverted) is Inverted
        assert "inverted-bits" in available_backends() and get_codec("inverted-bits") is Inverted
        mask = np.eye(5, dtype=bool)
        with create_bank(tmp_path / "i.h5", "inverted-bits") as bank:
            bank.write_task("0", {"fc": mask})
        with h5py.File(tmp_path / "i.h5", "r") as f:
            assert f.attrs["backend"] == b"inverted-bits" and f["tasks/0"][0] == 0b01111101
        with open_bank(tmp_path / "i.h5") as bank:
            assert isinstance(bank.codec, Inverted) and np.array_equal(bank.read_task("0")["fc"], mask)


class TestCreateAndOpen:
    def test_no_path_gives_a_memory_bank(self):
        """create_bank(None) returns an in-memory bank with the given metadata."""
        with create_bank(None, metadata={"seed": 1}) as bank:
            assert isinstance(bank, MemoryMaskBank) and bank.metadata == {"seed": 1}

    def test_memory_backend_takes_no_path(self, tmp_path):
        """Asking for the memory backend with a file path is refused naming the path argument."""
        with pytest.raises(InvalidArgumentError, match="path"):
            create_bank(tmp_path / "x.h5", "memory")

    def test_bad_metadata_creates_no_file(self, tmp_path):
        """Metadata that is not JSON is refused before any file is created."""
        with pytest.raises(InvalidArgumentError, match="metadata"):
            create_bank(tmp_path / "x.h5", metadata={"x": float("inf")})
        assert list(tmp_path.iterdir()) == []

    def test_open_picks_the_writing_backend(self, tmp_path):
        """open_bank reads the backend id from the file and returns that backend's class."""
        path = tmp_path / "x.h5"
        create_bank(path, "hdf5-sparse").close()
        with open_bank(path) as bank:
            assert isinstance(bank, HDF5MaskBank) and isinstance(bank.codec, SparseCodec) and bank.mode == "r"

    @pytest.mark.parametrize("mode", ["w", "x", "r+"])
    def test_open_modes(self, tmp_path, mode):
        """open_bank accepts only 'r' and 'a'."""
        path = tmp_path / "x.h5"
        create_bank(path).close()
        with pytest.raises(InvalidArgumentError, match="mode"):
            open_bank(path, mode)

    def test_unregistered_backend_in_file(self, tmp_path):
        """A bank written by a backend that is not registered here is refused, naming that backend."""
        path = tmp_path / "x.h5"
        create_bank(path).close()
        with h5py.File(path, "r+") as f:
            f.attrs["backend"] = "zarr-like"
            record_group_checksum(f)  # a consistent file of another writer, not a damaged one
        with pytest.raises(StorageFormatError, match="zarr-like"):
            open_bank(path)


class TestDescribe:
    def test_bank_summary(self, tmp_path):
        """describe_file reports kind, version, backend, metadata, per-task layers and attachments, as JSON."""
        path = tmp_path / "bank.h5"
        with create_bank(path, "hdf5-sparse", metadata={"arch": "lenet"}) as bank:
            bank.write_task("t", {"a": np.array([1, 1, 0, 0], bool), "e": np.zeros(0, bool)}, attrs={"acc": 0.5})
            bank.write_attachment("res", lambda g: (g.attrs.create("kind", "reservoir"),
                                                    g.create_dataset("couplings", data=np.zeros((4, 4), np.float32))))
        d = json.loads(json.dumps(describe_file(path)))
        assert (d["kind"], d["format_version"], d["backend"], d["metadata"]) == ("mask-bank", 2, "hdf5-sparse",
                                                                                 {"arch": "lenet"})
        assert d["file_bytes"] == path.stat().st_size and d["n_tasks"] == 1
        task = d["tasks"][0]
        assert (task["name"], task["entries"], task["density"], task["attrs"]) == ("t", 4, 0.5, {"acc": 0.5})
        assert task["bytes"] == 2 * 2 + 2 * 4
        assert task["layers"] == [{"name": "a", "shape": [4], "entries": 4, "density": 0.5},
                                  {"name": "e", "shape": [0], "entries": 0, "density": None}]
        assert d["attachments"] == [{"name": "res", "attrs": {"kind": "reservoir"},
                                     "datasets": [{"name": "couplings", "shape": [4, 4], "dtype": "float32",
                                                   "bytes": 64}]}]

    def test_reservoir_summary(self, tmp_path):
        """A reservoir file is described generically: its root attrs (JSON parsed) and dataset sizes."""
        path = tmp_path / "res.h5"
        with h5py.File(path, "w") as f:
            f.attrs.update({"kind": "reservoir", "format_version": 1, "rule": json.dumps({"rule": "storkey"}),
                            "dtype": "float16", "network_size": 8, "n_tasks": 2, "budget": 1000})
            f.create_dataset("couplings", data=np.zeros((2, 8, 8), np.float16))
            f.create_dataset("spin_sums", data=np.zeros((2, 8), np.int32))
        d = json.loads(json.dumps(describe_file(path)))
        assert d["kind"] == "reservoir" and d["format_version"] == 1
        assert d["attrs"] == {"rule": {"rule": "storkey"}, "dtype": "float16", "network_size": 8, "n_tasks": 2,
                              "budget": 1000}
        assert {x["name"]: x["bytes"] for x in d["datasets"]} == {"couplings": 256, "spin_sums": 64}
