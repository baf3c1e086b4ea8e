"""hopfield_masks.sparse: layer masks <-> scipy.sparse.csc_array, bank tasks as CSC, the paper's byte count."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given

from hopfield_masks.backends import create_bank, open_bank
from hopfield_masks.errors import InvalidArgumentError, PatternError
from hopfield_masks.sparse import (
    from_csc,
    matrix_shape,
    narrow_csc,
    paper_nbytes,
    read_task_csc,
    to_csc,
    write_task_csc,
)
from tests.strategies import masks


@given(masks())
def test_any_mask_round_trips(mask):
    matrix = to_csc(mask)
    assert isinstance(matrix, scipy.sparse.csc_array) and matrix.has_canonical_format
    assert matrix.shape == matrix_shape(mask.shape) and matrix.nnz == int(mask.sum())
    np.testing.assert_array_equal(from_csc(matrix, mask.shape), mask)


def test_csc_matches_the_dense_layout(rng):
    mask = rng.random((30, 4, 3, 3)) < 0.1  # a conv weight: rows are the 30 output channels
    matrix = to_csc(mask)
    dense = mask.reshape(30, 36)
    for col in range(36):
        rows = matrix.indices[matrix.indptr[col]:matrix.indptr[col + 1]]
        np.testing.assert_array_equal(rows, np.flatnonzero(dense[:, col]))


def test_narrow_indices_fit_16_bits_when_they_can(rng):
    small = to_csc(rng.random((300, 784)) < 0.02)
    indices, indptr = narrow_csc(small)
    assert indices.dtype == np.uint16 and indptr.dtype == np.uint16
    np.testing.assert_array_equal(indices, small.indices)
    tall = to_csc(np.eye(70000, 2, dtype=bool))  # 70,000 rows: row indices need 32 bits
    assert narrow_csc(tall)[0].dtype == np.uint32
    dense = to_csc(np.ones((10, 7000), bool))  # 70,000 kept entries: pointers need 32 bits
    assert narrow_csc(dense)[1].dtype == np.uint32
    counted = paper_nbytes({"a": small}, data_bytes=1)
    assert counted == {"indices": 2 * small.nnz, "indptr": 2 * 785, "data": small.nnz,
                       "total": 3 * small.nnz + 2 * 785}


@pytest.mark.parametrize("backend", ["hdf5-sparse", "hdf5-packed", "memory"])
def test_bank_tasks_read_and_write_as_csc(tmp_path, rng, backend):
    layers = {"fc1": rng.random((300, 784)) < 0.05, "conv": rng.random((8, 3, 3, 3)) < 0.5, "bias": rng.random(10) < 0.5}
    path = None if backend == "memory" else tmp_path / "b.h5"
    bank = create_bank(path, backend)
    matrices = {name: to_csc(m) for name, m in layers.items()}
    write_task_csc(bank, "0", matrices, {"conv": (8, 3, 3, 3), "bias": (10,)}, attrs={"source": "scipy"})
    read = read_task_csc(bank, "0")
    assert list(read) == list(layers)
    for name, m in layers.items():
        assert (read[name] != matrices[name]).nnz == 0
        np.testing.assert_array_equal(bank.read_task("0")[name], m)
    assert bank.task_attrs("0") == {"source": "scipy"}
    bank.close()


def test_hdf5_sparse_bytes_against_the_paper(tmp_path, rng):
    """hdf5-sparse stores 16 bits per kept entry, like the paper's scipy csc; its pointers are fewer."""
    layers = {"fc1": rng.random((300, 784)) < 0.02, "fc2": rng.random((100, 300)) < 0.02}
    with create_bank(tmp_path / "b.h5", "hdf5-sparse") as bank:
        write_task_csc(bank, "0", {k: to_csc(v) for k, v in layers.items()})
    with open_bank(tmp_path / "b.h5") as bank:
        stored = bank.task_nbytes("0")
        paper = paper_nbytes(read_task_csc(bank, "0"))
    nnz = sum(int(m.sum()) for m in layers.values())
    assert paper["indices"] == 2 * nnz and paper["indptr"] == 2 * (785 + 301)
    assert 2 * nnz <= stored < paper["total"]


def test_bad_matrices_are_refused_before_writing(tmp_path):
    bank = create_bank(None)
    with pytest.raises(InvalidArgumentError, match=r"expected shape \(3, 4\) \(the 2-D view of \(3, 2, 2\)\), received \(3, 3\)"):
        write_task_csc(bank, "0", {"w": to_csc(np.ones((3, 3), bool))}, {"w": (3, 2, 2)})
    two = scipy.sparse.csc_array(np.array([[2, 0], [0, 1]]))
    with pytest.raises(PatternError, match=r"matrices\['w'\]: expected stored values in \{0, 1\}, received 1 other"):
        write_task_csc(bank, "0", {"ok": to_csc(np.ones(2, bool)), "w": two})
    with pytest.raises(InvalidArgumentError, match="expected a scipy.sparse matrix"):
        write_task_csc(bank, "0", {"w": np.ones((2, 2))})
    with pytest.raises(InvalidArgumentError, match=r"shapes for \['x'\]"):
        write_task_csc(bank, "0", {"w": two}, {"x": (2, 2)})
    assert bank.tasks() == []
    duplicates = scipy.sparse.csc_array((np.array([1, 1]), np.array([0, 0]), np.array([0, 2])), shape=(1, 1))
    with pytest.raises(PatternError):
        from_csc(duplicates, (1, 1))  # two entries at one place sum to 2
    bank.close()
