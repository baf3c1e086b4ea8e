"""Golden files: banks written by format version 1 must be read bit-exactly by the current code.

The files in ``tests/fixtures/`` are written by ``tests/fixtures/make_golden.py``, run by hand only.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank

FIXTURES = Path(__file__).parents[1] / "fixtures"
BACKENDS = ["hdf5-packed", "hdf5-sparse"]


@pytest.fixture(scope="module")
def expected() -> dict:
    """The masks, task order, metadata and attrs the golden banks hold."""
    with np.load(FIXTURES / "golden_v1_expected.npz", allow_pickle=False) as npz:
        layers = json.loads(str(npz["__tasks__"]))
        return {
            "masks": {task: {layer: npz[f"{task}/{layer}"] for layer in names} for task, names in layers.items()},
            "metadata": json.loads(str(npz["__metadata__"])),
            "attrs": json.loads(str(npz["__attrs__"])),
        }


@pytest.mark.parametrize("backend", BACKENDS)
class TestGoldenV1:
    def test_files_are_small(self, backend):
        """The committed golden files stay under 50 kB each."""
        for path in (FIXTURES / f"golden_v1_{backend}.h5", FIXTURES / "golden_v1_expected.npz"):
            assert path.stat().st_size < 50_000

    def test_reads_bit_exactly(self, backend, expected):
        """Every task decodes to exactly the recorded masks, shapes and layer order."""
        with open_bank(FIXTURES / f"golden_v1_{backend}.h5") as bank:
            assert bank.backend_id == backend
            assert bank.tasks() == list(expected["masks"])
            for task, masks in expected["masks"].items():
                got = bank.read_task(task)
                assert list(got) == list(masks)
                for layer, mask in masks.items():
                    assert got[layer].dtype == np.bool_ and got[layer].shape == mask.shape
                    np.testing.assert_array_equal(got[layer], mask)

    def test_metadata_attrs_and_attachments(self, backend, expected):
        """Metadata, task attrs and the attachment are read back as written."""
        with open_bank(FIXTURES / f"golden_v1_{backend}.h5") as bank:
            assert bank.metadata == expected["metadata"]
            assert {t: bank.task_attrs(t) for t in bank.tasks()} == expected["attrs"]
            assert bank.attachments() == ["notes"]
            values = bank.read_attachment("notes", lambda g: g["values"][()].tolist())
            assert values == [0, 1, 2, 3, 4]

    def test_current_writer_produces_the_same_encoding(self, backend, expected, tmp_path):
        """Re-writing the golden masks now gives byte-identical task datasets and attributes (no silent format drift)."""
        path = tmp_path / "now.h5"
        with create_bank(path, backend) as bank:
            for task, masks in expected["masks"].items():
                bank.write_task(task, masks, attrs=expected["attrs"][task])
        with h5py.File(FIXTURES / f"golden_v1_{backend}.h5", "r") as old, h5py.File(path, "r") as new:
            assert dict(old.attrs)["format_version"] == new.attrs["format_version"] == 1
            for task in expected["masks"]:
                a, b = old["tasks"][task], new["tasks"][task]
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a[()], b[()])
                assert sorted(a.attrs) == sorted(b.attrs)
                for key in a.attrs:
                    np.testing.assert_array_equal(a.attrs[key], b.attrs[key])
