"""Tests for supsup_core/data/cifar.py: CIFAR-10/100, binary and python versions, folders and .tar.gz archives.

Small datasets are written in the official layouts by the module's own writers (and, for the python
version, also the way Python 2's cPickle wrote the official files: test_data_safe_pickle.py_dumps).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

from supsup_core.data import ImageData, load_cifar10, load_cifar100, load_data, pack_cifar_archive
from supsup_core.data.cifar import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    CIFAR100_MEAN,
    CIFAR100_STD,
    write_cifar_binary,
    write_cifar_python,
)
from supsup_core.errors import ConfigError, DataError
from tests.supsup_core.test_data_safe_pickle import one_line_naming, py2_dumps

LOADERS = {"cifar10": load_cifar10, "cifar100": load_cifar100}
WRITERS = {"binary": write_cifar_binary, "python": write_cifar_python}


def toy(kind: str, n_train: int = 7, n_test: int = 3, names: bool = True) -> ImageData:
    """Random CIFAR-shaped data: every class label used once at least in the larger dataset."""
    n_classes = 10 if kind == "cifar10" else 100
    rng = np.random.default_rng(5 if kind == "cifar10" else 6)
    return ImageData(
        rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8), rng.integers(0, n_classes, n_train),
        rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8), np.array([n_classes - 1, *range(n_test - 1)]),
        source="toy", mean=(0.5,) * 3, std=(0.25,) * 3,
        class_names=tuple(f"name {i}" for i in range(n_classes)) if names else None,
    )


def assert_same(back: ImageData, data: ImageData, kind: str) -> None:
    for role in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(back, role), getattr(data, role))
    assert back.train_images.dtype == np.uint8 and back.train_labels.dtype == np.int64
    assert back.image_shape == (3, 32, 32) and back.max_value == 255
    assert back.class_names == data.class_names
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if kind == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    assert back.mean == mean and back.std == std


@pytest.fixture(params=["cifar10", "cifar100"])
def kind(request) -> str:
    return request.param


@pytest.fixture(params=["binary", "python"])
def version(request) -> str:
    return request.param


class TestRoundTrip:
    @pytest.mark.parametrize("form", ["layout folder", "parent folder", "archive", "folder holding the archive"])
    def test_written_layouts_load_back_exactly(self, tmp_path, kind, version, form):
        """Each version of each dataset, extracted or as the .tar.gz, loads back exactly what was written."""
        data = toy(kind)
        layout = WRITERS[version](tmp_path / "out", data, kind)
        if form == "layout folder":
            path = layout
        elif form == "parent folder":
            path = tmp_path / "out"
        else:
            archive = pack_cifar_archive(layout)
            for file in layout.iterdir():  # nothing extracted remains: only the archive can be read
                file.unlink()
            layout.rmdir()
            path = archive if form == "archive" else archive.parent
        back = LOADERS[kind](path)
        assert_same(back, data, kind)
        assert back.source == f"{kind}:{Path(path).resolve()}"

    def test_official_names(self, tmp_path, kind, version):
        """The writers use the official folder and file names; the archive gets the official name."""
        layout = WRITERS[version](tmp_path, toy(kind), kind)
        expected = {
            ("cifar10", "binary"): ("cifar-10-batches-bin", {*(f"data_batch_{i}.bin" for i in range(1, 6)),
                                                             "test_batch.bin", "batches.meta.txt"}),
            ("cifar10", "python"): ("cifar-10-batches-py", {*(f"data_batch_{i}" for i in range(1, 6)),
                                                            "test_batch", "batches.meta"}),
            ("cifar100", "binary"): ("cifar-100-binary", {"train.bin", "test.bin", "fine_label_names.txt",
                                                          "coarse_label_names.txt"}),
            ("cifar100", "python"): ("cifar-100-python", {"train", "test", "meta"}),
        }[kind, version]
        assert layout.name == expected[0] and {p.name for p in layout.iterdir()} == expected[1]
        archive = pack_cifar_archive(layout)
        assert archive.name == f"{'cifar-10' if kind == 'cifar10' else 'cifar-100'}-{version}.tar.gz"
        with tarfile.open(archive) as tar:
            assert tar.getnames()[0] == expected[0]

    def test_binary_record_layout(self, tmp_path):
        """A CIFAR-10 record is the label byte then the R, G and B planes, row by row."""
        data = toy("cifar10")
        raw = (write_cifar_binary(tmp_path, data, "cifar10") / "test_batch.bin").read_bytes()
        assert len(raw) == 3 * 3073 and raw[0] == data.test_labels[0]
        assert raw[1:1025] == data.test_images[0, 0].tobytes() and raw[2049:3073] == data.test_images[0, 2].tobytes()

    def test_cifar100_fine_labels_and_coarse_byte(self, tmp_path):
        """CIFAR-100 records hold a coarse then a fine label byte; the loader returns the fine labels."""
        data = toy("cifar100")
        raw = (write_cifar_binary(tmp_path, data, "cifar100") / "test.bin").read_bytes()
        assert raw[0] == 99 // 5 and raw[1] == 99 and len(raw) == 3 * 3074
        assert load_cifar100(tmp_path).test_labels.tolist() == [99, 0, 1]

    def test_both_versions_present_reads_binary(self, tmp_path):
        """A folder holding both versions reads the binary one."""
        data = toy("cifar10")
        write_cifar_binary(tmp_path, data, "cifar10")
        write_cifar_python(tmp_path, toy("cifar10", n_train=9), "cifar10")
        assert load_cifar10(tmp_path).n_train == 7

    def test_default_class_names(self, tmp_path):
        """Data without class names is written with class_<i> names, which load back."""
        write_cifar_binary(tmp_path, toy("cifar10", names=False), "cifar10")
        assert load_cifar10(tmp_path).class_names == tuple(f"class_{i}" for i in range(10))

    def test_python2_pickles(self, tmp_path):
        """Pickles written the way Python 2's cPickle wrote the official files (bytes keys, BINSTRING data) load."""
        data = toy("cifar10")
        folder = tmp_path / "cifar-10-batches-py"
        folder.mkdir()
        for i, rows in enumerate(np.array_split(np.arange(7), 5), start=1):
            batch = {b"batch_label": b"training batch", b"labels": data.train_labels[rows].tolist(),
                     b"data": data.train_images[rows].reshape(-1, 3072), b"filenames": [b"a.png"] * rows.size}
            (folder / f"data_batch_{i}").write_bytes(py2_dumps(batch))
        test = {b"labels": data.test_labels.tolist(), b"data": data.test_images.reshape(-1, 3072)}
        (folder / "test_batch").write_bytes(py2_dumps(test))
        meta = {b"num_cases_per_batch": 2, b"label_names": [n.encode() for n in data.class_names], b"num_vis": 3072}
        (folder / "batches.meta").write_bytes(py2_dumps(meta))
        assert_same(load_cifar10(folder), data, "cifar10")

    def test_python3_str_keys(self, tmp_path):
        """Python 3 pickles with str keys and str class names load as well."""
        data = toy("cifar100")
        folder = tmp_path / "cifar-100-python"
        folder.mkdir()
        for split in ("train", "test"):
            table = {"fine_labels": data.labels(split).tolist(), "data": data.images(split).reshape(-1, 3072)}
            (folder / split).write_bytes(pickle.dumps(table, protocol=4))
        (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": list(data.class_names)}, protocol=4))
        assert_same(load_cifar100(folder), data, "cifar100")

    def test_archive_is_deterministic(self, tmp_path):
        """Packing the same files twice gives the same archive bytes."""
        layout = write_cifar_binary(tmp_path, toy("cifar10"), "cifar10")
        first = pack_cifar_archive(layout, tmp_path / "a.tar.gz").read_bytes()
        assert pack_cifar_archive(layout, tmp_path / "b.tar.gz").read_bytes() == first

    def test_load_data_specs(self, tmp_path, kind):
        """'cifar10:PATH' and 'cifar100:PATH' load through load_data, and the recorded source loads again."""
        write_cifar_binary(tmp_path, toy(kind), kind)
        data = load_data(f"{kind}:{tmp_path}")
        assert data.source == f"{kind}:{tmp_path.resolve()}"
        np.testing.assert_array_equal(load_data(data.source).test_images, data.test_images)


class TestBadInput:
    """Each broken input raises one DataError line naming the file, what was expected and what was received."""

    def test_missing_file(self, tmp_path, kind, version):
        """A missing data file is named."""
        layout = WRITERS[version](tmp_path, toy(kind), kind)
        victim = sorted(p for p in layout.iterdir() if "test" in p.name)[0]
        victim.unlink()
        with pytest.raises(DataError, match="expected the CIFAR-10* .*, received no such file") as exc:
            LOADERS[kind](layout)
        one_line_naming(exc, str(victim))

    def test_missing_member_in_archive(self, tmp_path, kind, version):
        """An archive lacking a member names the archive and the member."""
        layout = WRITERS[version](tmp_path, toy(kind), kind)
        victim = sorted(p for p in layout.iterdir() if "test" in p.name)[0]
        victim.unlink()
        archive = pack_cifar_archive(layout)
        with pytest.raises(DataError, match="received no such member") as exc:
            LOADERS[kind](archive)
        one_line_naming(exc, f"{archive}/{layout.name}/{victim.name}")

    def test_truncated_binary_file(self, tmp_path, kind):
        """A binary file cut mid-record: expected whole records, received the byte count."""
        layout = write_cifar_binary(tmp_path, toy(kind), kind)
        victim = layout / ("data_batch_2.bin" if kind == "cifar10" else "train.bin")
        victim.write_bytes(victim.read_bytes()[:-100])
        record = 3073 if kind == "cifar10" else 3074
        with pytest.raises(DataError, match=f"expected a whole number of {record}-byte records.*truncated") as exc:
            LOADERS[kind](layout)
        one_line_naming(exc, str(victim))

    def test_empty_binary_file(self, tmp_path):
        """An empty binary file is refused."""
        layout = write_cifar_binary(tmp_path, toy("cifar10"), "cifar10")
        (layout / "test_batch.bin").write_bytes(b"")
        with pytest.raises(DataError, match="received 0 bytes") as exc:
            load_cifar10(layout)
        one_line_naming(exc, "test_batch.bin")

    def test_truncated_pickle(self, tmp_path, kind):
        """A python-version file cut short is refused by the decoder, naming it."""
        layout = write_cifar_python(tmp_path, toy(kind), kind)
        victim = layout / ("test_batch" if kind == "cifar10" else "test")
        victim.write_bytes(victim.read_bytes()[:-50])
        with pytest.raises(DataError) as exc:
            LOADERS[kind](layout)
        one_line_naming(exc, str(victim))

    def test_truncated_archive(self, tmp_path, version):
        """An archive cut short is refused, naming the archive."""
        archive = pack_cifar_archive(WRITERS[version](tmp_path, toy("cifar10"), "cifar10"))
        archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
        with pytest.raises(DataError) as exc:
            load_cifar10(archive)
        one_line_naming(exc, str(archive))

    def test_pickle_in_place_of_binary_file(self, tmp_path, kind):
        """A python-version pickle saved under a binary file's name is recognised as a pickle."""
        data = toy(kind)
        binary = write_cifar_binary(tmp_path / "b", data, kind)
        python = write_cifar_python(tmp_path / "p", data, kind)
        name = "data_batch_1" if kind == "cifar10" else "train"
        (binary / f"{name}.bin").write_bytes((python / name).read_bytes())
        with pytest.raises(DataError, match="records of .* bytes, received a Python pickle") as exc:
            LOADERS[kind](binary)
        one_line_naming(exc, str(binary / f"{name}.bin"))

    def test_binary_in_place_of_pickle(self, tmp_path, kind):
        """Binary records saved under a python-version name are refused before decoding."""
        data = toy(kind)
        binary = write_cifar_binary(tmp_path / "b", data, kind)
        python = write_cifar_python(tmp_path / "p", data, kind)
        name = "data_batch_1" if kind == "cifar10" else "train"
        (python / name).write_bytes((binary / f"{name}.bin").read_bytes())
        with pytest.raises(DataError, match="expected a Python pickle .*size of binary-version records") as exc:
            LOADERS[kind](python)
        one_line_naming(exc, str(python / name))

    @pytest.mark.parametrize(("kind", "offset", "value", "match"), [
        ("cifar10", 0, 10, r"expected labels in \[0, 10\), received 10 \(record 0\)"),
        ("cifar100", 1, 100, r"expected labels in \[0, 100\), received 100 \(record 0\)"),
        ("cifar100", 3074, 20, r"expected coarse labels in \[0, 20\), received 20 \(record 1\)"),
    ])
    def test_binary_label_out_of_range(self, tmp_path, kind, offset, value, match):
        """A label byte beyond the classes is refused, naming the file and the record."""
        layout = write_cifar_binary(tmp_path, toy(kind), kind)
        victim = layout / ("test_batch.bin" if kind == "cifar10" else "test.bin")
        raw = bytearray(victim.read_bytes())
        raw[offset] = value
        victim.write_bytes(bytes(raw))
        with pytest.raises(DataError, match=match) as exc:
            LOADERS[kind](layout)
        one_line_naming(exc, str(victim))

    def test_python_label_out_of_range(self, tmp_path, kind):
        """A python-version label beyond the classes is refused, naming the file."""
        layout = write_cifar_python(tmp_path, toy(kind), kind)
        victim = layout / ("test_batch" if kind == "cifar10" else "test")
        key = b"labels" if kind == "cifar10" else b"fine_labels"
        table = pickle.loads(victim.read_bytes())  # our own file, just written
        table[key] = [len(toy(kind).class_names)] + table[key][1:]
        victim.write_bytes(pickle.dumps(table, protocol=2))
        with pytest.raises(DataError, match=r"expected .*labels.* in \[0, 10*\), received 10+ \(record 0\)") as exc:
            LOADERS[kind](layout)
        one_line_naming(exc, str(victim))

    @pytest.mark.parametrize(("change", "match"), [
        (lambda t: t.pop(b"data"), "expected a dict with the key b'data'"),
        (lambda t: t.update({b"data": t[b"data"].reshape(-1, 3, 1024)}), r"uint8 array of shape \(n, 3072\)"),
        (lambda t: t.update({b"labels": t[b"labels"][:-1]}), "expected 3 labels"),
        (lambda t: t.update({b"labels": [0.5] * 3}), "as a list of ints"),
    ])
    def test_python_batch_contents(self, tmp_path, change, match):
        """A python-version batch without data, with misshaped data or with the wrong labels is refused."""
        layout = write_cifar_python(tmp_path, toy("cifar10"), "cifar10")
        victim = layout / "test_batch"
        table = pickle.loads(victim.read_bytes())
        change(table)
        victim.write_bytes(pickle.dumps(table, protocol=2))
        with pytest.raises(DataError, match=match) as exc:
            load_cifar10(layout)
        one_line_naming(exc, str(victim))

    def test_hostile_pickle_in_a_batch(self, tmp_path):
        """A batch file that would run code is refused and nothing runs."""
        layout = write_cifar_python(tmp_path, toy("cifar10"), "cifar10")
        marker = tmp_path / "pwned"

        class Payload:
            def __reduce__(self):
                return (eval, (f"open({str(marker)!r}, 'w').close()",))

        (layout / "data_batch_3").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
        with pytest.raises(DataError, match="received the global") as exc:
            load_cifar10(layout)
        one_line_naming(exc, "data_batch_3")
        assert not marker.exists()

    @pytest.mark.parametrize("version", ["binary", "python"])
    def test_wrong_number_of_class_names(self, tmp_path, version):
        """A meta file with nine names is refused, naming it."""
        layout = WRITERS[version](tmp_path, toy("cifar10"), "cifar10")
        meta = layout / ("batches.meta.txt" if version == "binary" else "batches.meta")
        if version == "binary":
            meta.write_text("\n".join(f"c{i}" for i in range(9)) + "\n")
        else:
            meta.write_bytes(pickle.dumps({b"label_names": [b"c"] * 10}, protocol=2))
        with pytest.raises(DataError, match="expected 10 distinct class names, received") as exc:
            load_cifar10(layout)
        one_line_naming(exc, str(meta))

    def test_link_member_refused(self, tmp_path):
        """An archive member with an expected name that is a symbolic link is refused."""
        layout = write_cifar_binary(tmp_path, toy("cifar10"), "cifar10")
        archive = tmp_path / "evil.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(layout.iterdir()):
                if path.name == "test_batch.bin":
                    link = tarfile.TarInfo(f"{layout.name}/test_batch.bin")
                    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
                    tar.addfile(link)
                else:
                    tar.add(path, arcname=f"{layout.name}/{path.name}")
        with pytest.raises(DataError, match="expected a regular file member") as exc:
            load_cifar10(archive)
        one_line_naming(exc, "test_batch.bin")

    def test_duplicate_member_refused(self, tmp_path):
        """An archive holding a member twice is refused (extraction would silently keep the last)."""
        layout = write_cifar_binary(tmp_path, toy("cifar10"), "cifar10")
        archive = tmp_path / "twice.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in [*sorted(layout.iterdir()), layout / "test_batch.bin"]:
                tar.add(path, arcname=f"{layout.name}/{path.name}")
        with pytest.raises(DataError, match="received it twice") as exc:
            load_cifar10(archive)
        one_line_naming(exc, "test_batch.bin")

    def test_oversized_member_refused_before_reading(self, tmp_path, monkeypatch):
        """A member declared larger than the limit is refused from its header, not read."""
        from supsup_core.data import cifar

        monkeypatch.setattr(cifar, "_MAX_DATA_BYTES", 10_000)
        archive = pack_cifar_archive(write_cifar_binary(tmp_path, toy("cifar10", n_train=20), "cifar10"))
        with pytest.raises(DataError, match="expected at most 10,000 bytes, received a member of") as exc:
            load_cifar10(archive)
        one_line_naming(exc, "data_batch_1.bin")

    def test_not_an_archive(self, tmp_path):
        """A file that is not a tar archive is refused, naming it."""
        (tmp_path / "x.tar.gz").write_bytes(b"not a tar at all" * 10)
        with pytest.raises(DataError, match="expected a tar archive") as exc:
            load_cifar10(tmp_path / "x.tar.gz")
        one_line_naming(exc, "x.tar.gz")

    def test_archive_of_something_else(self, tmp_path):
        """An archive without CIFAR members is refused, naming the folders it looked for."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            info = tarfile.TarInfo("photos/a.jpg")
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
        (tmp_path / "photos.tar.gz").write_bytes(buffer.getvalue())
        with pytest.raises(DataError, match="expected members under cifar-10-batches-bin/ or cifar-10-batches-py/"):
            load_cifar10(tmp_path / "photos.tar.gz")

    def test_missing_path_and_empty_folder(self, tmp_path):
        """A path that does not exist, or a folder without any layout, is refused naming it."""
        with pytest.raises(DataError, match="does not exist"):
            load_cifar10(tmp_path / "nowhere")
        with pytest.raises(DataError, match="cifar-100-binary/ or cifar-100-binary.tar.gz") as exc:
            load_cifar100(tmp_path)
        one_line_naming(exc, str(tmp_path))

    @pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and symbolic links")
    @pytest.mark.parametrize(("make", "found"), [
        (lambda path: os.mkfifo(path), "a FIFO"),
        (lambda path: os.symlink(path, path), "a symbolic link loop"),
        (lambda path: os.symlink("/dev/zero", path), "a symbolic link to a device"),
        (lambda path: os.symlink(path.parent / "elsewhere", path), "a broken symbolic link"),
        (lambda path: path.mkdir(), "a folder"),
    ])
    def test_data_file_that_is_not_a_regular_file(self, tmp_path, kind, make, found):
        """A data file that exists but is a FIFO, a link loop, a link to /dev/zero ... is named for what it is."""
        layout = write_cifar_binary(tmp_path, toy(kind), kind)
        victim = sorted(p for p in layout.iterdir() if "test" in p.name)[0]
        victim.unlink()
        make(victim)
        with pytest.raises(DataError, match=f"expected the CIFAR-10* .*, received {found}") as exc:
            LOADERS[kind](layout)
        one_line_naming(exc, str(victim))

    @pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
    def test_path_that_is_a_special_file(self, tmp_path):
        """cifar10:/dev/zero (or a FIFO) is a special file, not "a path that does not exist"."""
        with pytest.raises(DataError, match="/dev/zero: expected a CIFAR-10 folder or downloaded archive, received "
                                            "a device"):
            load_data("cifar10:/dev/zero")
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(DataError, match="fifo: expected a CIFAR-100 folder or downloaded archive, received a FIFO"):
            load_cifar100(tmp_path / "fifo")

    def test_cifar10_folder_is_not_cifar100(self, tmp_path):
        """Loading a CIFAR-10 folder as CIFAR-100 finds no CIFAR-100 layout."""
        write_cifar_binary(tmp_path, toy("cifar10"), "cifar10")
        with pytest.raises(DataError, match="expected a CIFAR-100 folder"):
            load_cifar100(tmp_path)


class TestWriters:
    @pytest.mark.parametrize(("data", "kind", "argument"), [
        (lambda: toy("cifar10"), "svhn", "kind"),
        (lambda: toy("cifar100"), "cifar10", "data"),
        (lambda: toy("cifar10", n_train=4), "cifar10", "data"),
        (lambda: ImageData(np.zeros((5, 1, 32, 32), np.uint8), np.zeros(5, int), np.zeros((1, 1, 32, 32), np.uint8),
                           np.zeros(1, int), "x"), "cifar10", "data"),
        (lambda: "not data", "cifar10", "data"),
    ])
    def test_refuses_what_the_layout_cannot_hold(self, tmp_path, data, kind, argument):
        """Unknown kinds, too many classes, too few training images or the wrong image shape raise ConfigError."""
        with pytest.raises(ConfigError, match=f"^{argument}: "):
            write_cifar_binary(tmp_path, data(), kind)
