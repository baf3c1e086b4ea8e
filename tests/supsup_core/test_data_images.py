"""Tests for supsup_core/data/images.py (ImageData) and the per-channel normalize_images it relies on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from supsup_core.data import ImageData, load_mnist, normalize_images
from supsup_core.errors import ConfigError, DataError


def rgb(n_train: int = 4, n_test: int = 2, **fields) -> ImageData:
    """Small random RGB data (4x5 pixels), labels 0..2, with overridable fields."""
    rng = np.random.default_rng(1)
    arguments = {
        "train_images": rng.integers(0, 256, (n_train, 3, 4, 5), dtype=np.uint8),
        "train_labels": np.arange(n_train) % 3,
        "test_images": rng.integers(0, 256, (n_test, 3, 4, 5), dtype=np.uint8),
        "test_labels": np.arange(n_test) % 3,
        "source": "toy",
        "mean": (0.5, 0.4, 0.3),
        "std": (0.2, 0.25, 0.5),
        **fields,
    }
    return ImageData(**arguments)


def gray(**fields) -> ImageData:
    """Two train and one test 28x28 one-channel images."""
    arguments = {"train_images": np.zeros((2, 28, 28), np.uint8), "train_labels": np.array([1, 2]),
                 "test_images": np.zeros((1, 28, 28), np.uint8), "test_labels": np.array([3]), "source": "x", **fields}
    return ImageData(**arguments)


class TestFields:
    def test_labels_are_stored_as_int64(self):
        """Integer labels of another dtype are converted to int64."""
        d = gray(train_labels=np.array([1, 2], np.uint8), test_labels=np.array([3], np.int32))
        assert d.train_labels.dtype == np.int64 and d.test_labels.dtype == np.int64

    def test_three_dimensional_images_become_one_channel_views(self):
        """(n, H, W) images are stored as (n, 1, H, W) views of the same memory, not copies."""
        train = np.arange(2 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(2, 28, 28)
        d = gray(train_images=train)
        assert d.train_images.shape == (2, 1, 28, 28) and np.shares_memory(d.train_images, train)
        assert d.image_shape == (1, 28, 28) and d.channels == 1

    def test_properties(self):
        """n_train, n_test, channels, image_shape and n_classes (from the labels or from class_names)."""
        d = rgb(n_train=5, n_test=3)
        assert (d.n_train, d.n_test, d.channels, d.image_shape, d.n_classes) == (5, 3, 3, (3, 4, 5), 3)
        assert rgb(class_names=("a", "b", "c", "d")).n_classes == 4

    def test_defaults_are_mnist_statistics(self):
        """Without mean/std the one-channel defaults are MNIST's; max_value 255; no class names."""
        d = gray()
        assert d.mean == (0.1307,) and d.std == (0.3081,) and d.max_value == 255 and d.class_names is None

    def test_sequences_are_normalised_to_tuples(self):
        """Lists and NumPy values for mean, std and class_names are stored as tuples of float / str."""
        d = rgb(mean=[0.5, np.float32(0.25), 1], std=np.array([0.5, 0.5, 0.5]), class_names=["a", "b", "c"])
        assert d.mean == (0.5, 0.25, 1.0) and all(type(v) is float for v in d.mean + d.std)
        assert d.class_names == ("a", "b", "c")

    def test_frozen(self):
        """Fields cannot be reassigned."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            gray().source = "other"

    def test_images_and_labels_accessors(self):
        """images(split) and labels(split) return the split's arrays; another split name raises ConfigError."""
        d = rgb()
        assert d.images("test") is d.test_images and d.labels("train") is d.train_labels
        with pytest.raises(ConfigError, match="split"):
            d.images("val")


class TestValidation:
    @pytest.mark.parametrize(("fields", "match"), [
        ({"train_images": np.zeros((2, 28, 28))}, "train_images: expected uint8 images"),
        ({"test_images": np.zeros((1, 28), np.uint8)}, "test_images: expected uint8 images"),
        ({"train_images": [[0]]}, "train_images: .*received list"),
        ({"test_images": np.zeros((1, 14, 14), np.uint8)}, r"test_images: expected images of shape \(1, 28, 28\)"),
        ({"train_images": np.zeros((2, 0, 28, 28), np.uint8), "test_images": np.zeros((1, 0, 28, 28), np.uint8)},
         "train_images: expected at least one channel"),
        ({"train_labels": np.array([1])}, "train_labels: expected 2 labels"),
        ({"train_labels": np.array([1.0, 2.0])}, "train_labels: expected a 1-D integer array"),
        ({"test_labels": np.array([[3]])}, "test_labels: expected a 1-D integer array"),
        ({"test_labels": np.array([-1])}, "test_labels: expected labels >= 0"),
        ({"class_names": tuple("012")}, r"test_labels: expected labels in \[0, 3\) \(3 class_names\), received 3"),
    ])
    def test_data_errors_name_the_field(self, fields, match):
        """Wrong image or label arrays raise DataError naming the field."""
        with pytest.raises(DataError, match=match):
            gray(**fields)

    @pytest.mark.parametrize(("fields", "argument"), [
        ({"mean": (0.1, 0.2)}, "mean"),
        ({"std": ()}, "std"),
        ({"std": (0.0,)}, "std"),
        ({"std": (-1.0,)}, "std"),
        ({"mean": (float("nan"),)}, "mean"),
        ({"mean": "0.5"}, "mean"),
        ({"mean": (True,)}, "mean"),
        ({"max_value": 0}, "max_value"),
        ({"max_value": 256}, "max_value"),
        ({"max_value": 2.5}, "max_value"),
        ({"max_value": True}, "max_value"),
        ({"source": ""}, "source"),
        ({"source": None}, "source"),
        ({"class_names": ()}, "class_names"),
        ({"class_names": "0123"}, "class_names"),
        ({"class_names": ("0", "1", "2", 3)}, "class_names"),
        ({"class_names": ("0", "1", "2", "2")}, "class_names"),
    ])
    def test_config_errors_name_the_field(self, fields, argument):
        """Invalid mean, std, max_value, source or class_names raise ConfigError naming the field."""
        with pytest.raises(ConfigError, match=f"^{argument}: expected"):
            gray(**fields)

    def test_mean_per_channel_of_rgb(self):
        """Three-channel images need three means: the MNIST default is refused, naming mean."""
        with pytest.raises(ConfigError, match=r"mean: expected 3 value\(s\), one per channel"):
            rgb(mean=(0.1307,), std=(0.3081,))


class TestNormalized:
    def test_formula_per_channel(self):
        """normalized(split) is (x / max_value - mean_c) / std_c, float32 (n, C, H, W)."""
        d = rgb()
        x = d.normalized("train")
        assert x.dtype == torch.float32 and x.shape == (4, 3, 4, 5)
        expected = (d.train_images / 255.0 - np.array(d.mean)[:, None, None]) / np.array(d.std)[:, None, None]
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-6, atol=1e-6)

    def test_max_value(self):
        """With max_value=16 the pixel 16 maps to 1.0 before normalising."""
        d = gray(train_images=np.full((2, 8, 8), 16, np.uint8), test_images=np.zeros((1, 8, 8), np.uint8),
                 mean=(0.0,), std=(1.0,), max_value=16)
        assert torch.equal(d.normalized("train"), torch.ones(2, 1, 8, 8))

    def test_mnist_bits_unchanged(self):
        """For MNIST, normalized is bit for bit what the streams have always computed."""
        d = load_mnist()
        legacy = torch.from_numpy(d.train_images[:, 0].astype(np.float32) / 255.0).unsqueeze(1)
        assert torch.equal(d.normalized("train"), (legacy - 0.1307) / 0.3081)

    def test_does_not_touch_read_only_arrays(self):
        """The cached, read-only MNIST arrays normalise into a new tensor."""
        d = load_mnist()
        x = d.normalized("test")
        x += 1
        assert not d.test_images.flags.writeable

    def test_one_channel_same_bits_whatever_the_channel_count(self):
        """A channel of a multi-channel call equals the same channel normalised alone."""
        d = rgb()
        x = d.normalized("train")
        for c in range(3):
            alone = normalize_images(d.train_images[:, c : c + 1], d.mean[c], d.std[c])
            assert torch.equal(x[:, c : c + 1], alone)


class TestFittedTo:
    def test_too_many_pixel_values_refused_before_allocating(self):
        """129 images padded to 1x4096x4096 would be 2.2 billion values: refused, naming the fitted spec."""
        d = ImageData(np.zeros((100, 1, 1, 1), np.uint8), np.zeros(100, np.int64), np.zeros((29, 1, 1, 1), np.uint8),
                      np.zeros(29, np.int64), source="toy")
        with pytest.raises(DataError, match=r"^toy@1x4096x4096: expected at most 2,147,483,648 pixel values .*received "
                                            r"129 images x 1x4096x4096 = 2,164,260,864$"):
            d.fitted_to((1, 4096, 4096))
        assert d.fitted_to((1, 2048, 4096)).image_shape == (1, 2048, 4096)  # 1,082,130,432 values: allowed

    @pytest.mark.parametrize("shape", [(3, 32.5, 32), (True, 32, 32), (3, 32), "3x32x32", (3, 32, 5000)])
    def test_shape_checked(self, shape):
        """The shape is three integers in [1, 4096]: floats and bools are not truncated into one."""
        with pytest.raises(ConfigError, match="^shape: expected"):
            gray().fitted_to(shape)

    def test_source_keeps_an_at_sign_in_its_path(self):
        """Only a trailing @CxHxW is a fit: a path holding '@' stays whole in the fitted source."""
        d = rgb(source="cifar10:/data/run@2/cifar")
        assert d.fitted_to((3, 8, 8)).source == "cifar10:/data/run@2/cifar@3x8x8"
        assert d.fitted_to((3, 8, 8)).fitted_to((3, 9, 9)).source == "cifar10:/data/run@2/cifar@3x9x9"


class TestLabelBound:
    def test_label_above_a_million_classes_refused(self):
        """A label of 10**6 or more (which would size class tables by its value) is refused, naming the split."""
        with pytest.raises(DataError, match=r"^test_labels: expected labels in \[0, 999,999\] \(MAX_LABEL\), "
                                            r"received 1000000$"):
            gray(test_labels=np.array([10**6]))
        assert gray(test_labels=np.array([999_999])).n_classes == 1_000_000


class TestNormalizeImages:
    @pytest.mark.parametrize(("kwargs", "argument"), [
        ({"mean": (0.1, 0.2), "std": (1.0, 1.0)}, "mean"),
        ({"mean": 0.5, "std": (1.0, 0.0, 1.0)}, "std"),
        ({"mean": "a", "std": 1.0}, "mean"),
        ({"max_value": 0}, "max_value"),
    ])
    def test_bad_statistics(self, kwargs, argument):
        """Per-channel statistics of the wrong length, a zero std or a bad max_value raise ConfigError."""
        with pytest.raises(ConfigError, match=argument):
            normalize_images(np.zeros((1, 3, 2, 2), np.uint8), **kwargs)

    def test_single_value_broadcasts(self):
        """One mean and one std apply to every channel."""
        x = normalize_images(np.full((1, 3, 1, 1), 255, np.uint8), 0.5, 0.5)
        assert x.flatten().tolist() == [1.0, 1.0, 1.0]

    def test_uint8_tensor_with_max_value(self):
        """uint8 tensors are scaled by max_value too."""
        x = normalize_images(torch.full((1, 1, 2, 2), 16, dtype=torch.uint8), 0.0, 1.0, max_value=16)
        assert torch.equal(x, torch.ones(1, 1, 2, 2))
