"""Format stability: golden files of every revision (format versions 1 and 2), and the plain-h5py recipe of FORMAT.md.

Banks written by every revision must be read bit-exactly by the current code.  The files in
``tests/fixtures/`` are written by ``tests/fixtures/make_golden.py``, run by hand only: ``v1`` (every task
has its own ``layout`` and ``attrs``) and ``v1b`` (root ``shared_layout``, tasks without ``layout`` or empty
``attrs``) and ``v2`` (the ``v1b`` bank with CRC-32 checksums), the revision the current writer produces.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from hopfield_masks.backends import create_bank, open_bank

FIXTURES = Path(__file__).parents[1] / "fixtures"
BACKENDS = ["hdf5-packed", "hdf5-sparse"]
REVISIONS = ["v1", "v1b", "v2"]  # oldest first
CURRENT = REVISIONS[-1]
each_golden = pytest.mark.parametrize("revision, backend", [(r, b) for r in REVISIONS for b in BACKENDS])
_EXPECTED: dict[str, dict] = {}


def expected(revision: str) -> dict:
    """The masks, task order, metadata and attrs the golden banks of ``revision`` hold (loaded once)."""
    if revision not in _EXPECTED:
        with np.load(FIXTURES / f"golden_{revision}_expected.npz", allow_pickle=False) as npz:
            layers = json.loads(str(npz["__tasks__"]))
            _EXPECTED[revision] = {
                "masks": {task: {layer: npz[f"{task}/{layer}"] for layer in names} for task, names in layers.items()},
                "metadata": json.loads(str(npz["__metadata__"])),
                "attrs": json.loads(str(npz["__attrs__"])),
            }
    return _EXPECTED[revision]


def format_md_recipe():
    """The ``read_task`` function of docs/FORMAT.md, executed from the document itself."""
    text = (Path(__file__).parents[2] / "docs" / "FORMAT.md").read_text()
    code = re.search(r"## Reading a task with plain h5py\s+```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - our own documentation
    return namespace["read_task"]


def golden(revision: str, backend: str) -> Path:
    return FIXTURES / f"golden_{revision}_{backend}.h5"


def assert_reads_exactly(bank, masks: dict) -> None:
    """Every task of ``masks`` decodes to exactly the recorded masks, shapes and layer order."""
    for task, layers in masks.items():
        got = bank.read_task(task)
        assert list(got) == list(layers)
        for layer, mask in layers.items():
            assert got[layer].dtype == np.bool_ and got[layer].shape == mask.shape
            np.testing.assert_array_equal(got[layer], mask)


class TestGoldenFiles:
    def test_every_revision_is_tested(self):
        """Each golden_<revision>_expected.npz in the fixtures folder belongs to a revision listed here."""
        found = sorted(p.name.split("_")[1] for p in FIXTURES.glob("golden_v*_expected.npz"))
        assert found == sorted(REVISIONS)

    @each_golden
    def test_files_are_small(self, revision, backend):
        """The committed golden files stay under 50 kB each."""
        for path in (golden(revision, backend), FIXTURES / f"golden_{revision}_expected.npz"):
            assert path.stat().st_size < 50_000

    @each_golden
    def test_reads_bit_exactly(self, revision, backend):
        """Every task decodes to exactly the recorded masks, shapes and layer order, tasks in order."""
        want = expected(revision)
        with open_bank(golden(revision, backend)) as bank:
            assert bank.backend_id == backend
            assert bank.tasks() == list(want["masks"])
            assert_reads_exactly(bank, want["masks"])
            for task, layers in want["masks"].items():
                assert bank.task_layout(task).names == tuple(layers)

    @each_golden
    def test_metadata_attrs_and_attachments(self, revision, backend):
        """Metadata, task attrs (empty ones included) and the attachment are read back as written."""
        want = expected(revision)
        with open_bank(golden(revision, backend)) as bank:
            assert bank.metadata == want["metadata"]
            assert {t: bank.task_attrs(t) for t in bank.tasks()} == want["attrs"]
            assert bank.attachments() == ["notes"]
            values = bank.read_attachment("notes", lambda g: g["values"][()].tolist())
            assert values == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("backend", BACKENDS)
class TestRevisions:
    def test_v1_tasks_carry_their_own_layout_and_attrs(self, backend):
        """The v1 files have no shared layout: every task has 'layout' and 'attrs' (what the v1 reader needs)."""
        with h5py.File(golden("v1", backend), "r") as f:
            assert "shared_layout" not in f.attrs
            assert all({"layout", "attrs"} <= set(f["tasks"][t].attrs) for t in f["tasks"])

    def test_v1b_holds_both_kinds_of_task(self, backend):
        """The v1b files share the first layout; only differing layouts and non-empty attrs are per task."""
        want = expected("v1b")
        with h5py.File(golden("v1b", backend), "r") as f:
            shared = json.loads(f.attrs["shared_layout"])
            assert shared["names"] == list(want["masks"]["dense"])
            for task, layers in want["masks"].items():
                attrs = set(f["tasks"][task].attrs)
                assert ("layout" in attrs) == (list(layers) != shared["names"])
                assert ("attrs" in attrs) == bool(want["attrs"][task])
            assert "layout" not in f["tasks"]["dense-again"].attrs and "attrs" not in f["tasks"]["dense-again"].attrs

    def test_mask_encoding_unchanged_since_v1(self, backend):
        """The v1 and v1b files hold byte-identical task datasets for the tasks they share."""
        with h5py.File(golden("v1", backend), "r") as old, h5py.File(golden("v1b", backend), "r") as new:
            for task in old["tasks"]:
                a, b = old["tasks"][task], new["tasks"][task]
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a[()], b[()])
                if "indptr" in a.attrs:
                    np.testing.assert_array_equal(a.attrs["indptr"], b.attrs["indptr"])

    def test_current_writer_produces_the_same_encoding(self, backend, tmp_path):
        """Re-writing the current golden gives byte-identical datasets, attributes and root layout (no drift)."""
        want = expected(CURRENT)
        path = tmp_path / "now.h5"
        with create_bank(path, backend) as bank:
            for task, masks in want["masks"].items():
                bank.write_task(task, masks, attrs=want["attrs"][task])
        with h5py.File(golden(CURRENT, backend), "r") as old, h5py.File(path, "r") as new:
            assert dict(old.attrs)["format_version"] == new.attrs["format_version"] == 2
            assert old.attrs["shared_layout"] == new.attrs["shared_layout"]
            for task in want["masks"]:
                a, b = old["tasks"][task], new["tasks"][task]
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a[()], b[()])
                assert sorted(a.attrs) == sorted(b.attrs)
                for key in a.attrs:
                    np.testing.assert_array_equal(a.attrs[key], b.attrs[key])

    def test_appending_to_a_v1_bank_mixes_both_kinds(self, backend, tmp_path):
        """Appending to a v1 bank keeps its tasks exact and adds shared-layout tasks that read back exactly."""
        path = tmp_path / "old.h5"
        shutil.copyfile(golden("v1", backend), path)
        want = expected("v1")
        new = {"again": {k: ~m for k, m in want["masks"]["dense"].items()}, "other": {"x": np.eye(3, dtype=bool)}}
        with open_bank(path, "a") as bank:
            bank.write_task("again", new["again"])
            bank.write_task("other", new["other"], attrs={"k": 1})
            bank.delete_task("edge")  # forces the repack at close
        with open_bank(path) as bank:
            kept = {t: m for t, m in want["masks"].items() if t != "edge"}
            assert bank.tasks() == [*kept, "again", "other"]
            assert_reads_exactly(bank, {**kept, **new})
            assert bank.task_attrs("again") == {} and bank.task_attrs("tall") == want["attrs"]["tall"]
        with h5py.File(path, "r") as f:
            assert json.loads(f.attrs["shared_layout"])["names"] == list(new["again"])
            assert "layout" in f["tasks"]["dense"].attrs and "layout" not in f["tasks"]["again"].attrs


class TestPlainH5py:
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_format_md_recipe_reads_every_task(self, tmp_path, backend):
        """The FORMAT.md snippet (h5py + NumPy only) decodes every task exactly, odd shapes included."""
        path = tmp_path / "bank.h5"
        rng = np.random.default_rng(3)
        written = {
            "a": {"w": rng.random((5, 7, 3)) < 0.3, "s": np.array(True), "e": np.zeros((0, 4), bool)},
            "b": {"tall": rng.random((70000, 1)) < 0.01},
        }
        with create_bank(path, backend) as bank:
            for task, masks in written.items():
                bank.write_task(task, masks)
        read_task = format_md_recipe()
        with h5py.File(path, "r") as f:
            assert list(f["tasks"]) == ["a", "b"]
        for task, masks in written.items():
            got = read_task(path, task)
            assert list(got) == list(masks)
            for name in masks:
                assert got[name].shape == masks[name].shape
                np.testing.assert_array_equal(got[name], masks[name])

    @each_golden
    def test_format_md_recipe_reads_the_goldens(self, revision, backend):
        """The plain-h5py snippet of docs/FORMAT.md decodes every golden task exactly (shared layout or not)."""
        read_task = format_md_recipe()
        for task, layers in expected(revision)["masks"].items():
            got = read_task(golden(revision, backend), task)
            assert list(got) == list(layers)
            for layer, mask in layers.items():
                np.testing.assert_array_equal(got[layer], mask)
