"""Tests for supsup_core/data/digits.py: scikit-learn's 8x8 digits, the documented split and its constants."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits as sklearn_digits

from supsup_core.data import DIGITS_MEAN, DIGITS_STD, load_data, load_digits


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's images (1797, 8, 8) and labels, in file order."""
    bunch = sklearn_digits()
    return bunch.images, bunch.target


class TestDigits:
    def test_shapes_and_fields(self):
        """1,433 + 364 one-channel 8x8 uint8 images with values 0-16, max_value 16, spec 'digits'."""
        d = load_digits()
        assert (d.n_train, d.n_test, d.image_shape, d.max_value, d.source) == (1433, 364, (1, 8, 8), 16, "digits")
        assert d.train_images.dtype == np.uint8 and d.train_images.max() == 16 and d.test_images.max() <= 16
        assert d.class_names == tuple("0123456789") and d.n_classes == 10

    def test_split_is_first_80_percent_of_each_digit(self, reference):
        """Per digit, the first floor(4n/5) images in file order train and the rest test, in file order."""
        images, labels = reference
        d = load_digits()
        for digit in range(10):
            rows = images[labels == digit]
            k = 4 * rows.shape[0] // 5
            np.testing.assert_array_equal(d.train_images[d.train_labels == digit, 0], rows[:k])
            np.testing.assert_array_equal(d.test_images[d.test_labels == digit, 0], rows[k:])

    def test_splits_keep_file_order(self, reference):
        """Both splits list their images in the order of the file (not grouped by digit)."""
        _, labels = reference
        d = load_digits()
        assert d.train_labels[:10].tolist() == labels[:10].tolist()
        assert len(set(d.train_labels[:20].tolist())) == 10

    def test_constants_match_the_training_split(self):
        """DIGITS_MEAN and DIGITS_STD are the training pixels' mean and std on the [0, 1] scale (to 4 decimals)."""
        pixels = load_digits().train_images.astype(np.float64) / 16.0
        assert abs(pixels.mean() - DIGITS_MEAN[0]) < 5e-5 and abs(pixels.std() - DIGITS_STD[0]) < 5e-5

    def test_normalized_training_split_is_standardised(self):
        """After normalisation the training pixels have mean ~0 and std ~1."""
        x = load_digits().normalized("train")
        assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1.0) < 1e-3

    def test_cached_and_read_only(self):
        """Repeated loads share the same read-only arrays; load_data('digits') is the same object."""
        d = load_digits()
        assert load_digits() is d and load_data("digits") is d
        with pytest.raises(ValueError):
            d.train_images[0, 0, 0, 0] = 1

    def test_importing_the_package_does_not_import_sklearn(self):
        """scikit-learn (about a second to import) loads only when the digits are."""
        code = "import sys, supsup_core.data; print('sklearn' in sys.modules, 'PIL' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["False", "False"]
