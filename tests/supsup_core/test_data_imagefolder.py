"""Tests for supsup_core/data/imagefolder.py: the lazy ImageFolder, its transforms, seeding and bad files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from torch.utils.data import DataLoader

from supsup_core.data import IMAGENET_MEAN, IMAGENET_STD, ImageFolderData, load_data
from supsup_core.data.imagefolder import random_crop_box
from supsup_core.errors import ConfigError, DataError
from tests.supsup_core.test_data_safe_pickle import one_line_naming

# (split, class, file, (width, height), mode)
FILES = [
    ("train", "cat", "a.png", (40, 30), "RGB"),
    ("train", "cat", "b.JPG", (33, 47), "RGB"),
    ("train", "dog", "c.png", (64, 64), "L"),
    ("train", "dog", "d.bmp", (20, 50), "RGB"),
    ("train", "dog", "e.webp", (31, 29), "RGB"),
    ("train", "eel", "f.png", (50, 12), "P"),
    ("val", "dog", "g.png", (48, 36), "RGB"),
    ("val", "eel", "h.ppm", (30, 40), "RGB"),
    ("val", "eel", "i.png", (25, 25), "RGBA"),
]


def write_image(path: Path, size: tuple[int, int], mode: str, seed: int) -> None:
    """A random image of ``size`` (width, height) in ``mode``, saved in the format its name says."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode == "P":
        image = image.convert("P")
    elif mode != "RGB":
        image = image.convert(mode)
    kwargs = {"lossless": True} if path.suffix == ".webp" else {}
    image.save(path, format={".jpg": "JPEG"}.get(path.suffix.lower()), **kwargs)


@pytest.fixture
def root(tmp_path) -> Path:
    """A tiny train/val folder with several formats, modes and sizes, plus files that are not images."""
    for i, (split, cls, name, size, mode) in enumerate(FILES):
        folder = tmp_path / split / cls
        folder.mkdir(parents=True, exist_ok=True)
        write_image(folder / name, size, mode, seed=i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "train" / ".cache").mkdir()  # hidden folders are not classes
    (tmp_path / "train" / "dog" / "nested").mkdir()  # sub-folders of a class are not searched
    write_image(tmp_path / "train" / "dog" / "nested" / "x.png", (10, 10), "RGB", seed=99)
    return tmp_path


def decoded(root: Path, split: str, cls: str, name: str) -> Image.Image:
    return Image.open(root / split / cls / name).convert("RGB")


class TestScan:
    def test_classes_labels_and_counts(self, root):
        """Class folders sorted, label = index; image files by extension (any case), sorted; others ignored."""
        data = ImageFolderData(root)
        assert data.class_names == ("cat", "dog", "eel") and data.n_classes == 3
        assert (data.n_train, data.n_test) == (6, 3)
        assert data.targets("train") == [0, 0, 1, 1, 1, 2] and data.targets("test") == [1, 2, 2]
        names = [data.train_dataset().path(i).name for i in range(6)]
        assert names == ["a.png", "b.JPG", "c.png", "d.bmp", "e.webp", "f.png"]
        assert data.source == f"imagefolder:{root.resolve()}"
        assert data.mean == IMAGENET_MEAN and data.std == IMAGENET_STD and data.channels == 3

    def test_targets_without_decoding(self, root, monkeypatch):
        """targets never opens an image."""
        data = ImageFolderData(root)
        monkeypatch.setattr(Image, "open", lambda *a, **k: pytest.fail("decoded"))
        assert data.train_dataset().targets == [0, 0, 1, 1, 1, 2] and data.test_dataset().targets == [1, 2, 2]

    def test_load_data_spec(self, root):
        """'imagefolder:PATH' builds the same folder; its source loads again."""
        data = load_data(f"imagefolder:{root}", max_files=100)
        assert isinstance(data, ImageFolderData) and load_data(data.source).targets() == data.targets()

    @pytest.mark.parametrize(("breakage", "match", "named"), [
        (lambda r: (r / "val").rename(r / "validation"), "expected the test split's folder", "val"),
        (lambda r: [p.unlink() for p in (r / "val" / "dog").iterdir()], "expected at least one image", "val/dog"),
        (lambda r: (r / "val" / "fox").mkdir(), "expected only classes that train/ has", "val/fox"),
        (lambda r: [p.unlink() for p in (r / "train" / "eel").iterdir()], "expected at least one image", "train/eel"),
    ])
    def test_layout_errors_name_the_folder(self, root, breakage, match, named):
        """A missing split, an empty class or a class only val has: DataError naming the folder."""
        breakage(root)
        with pytest.raises(DataError, match=match) as exc:
            ImageFolderData(root)
        one_line_naming(exc, str(root / named))

    def test_missing_root(self, tmp_path):
        """A root that is not a folder is refused."""
        with pytest.raises(DataError, match="not a folder"):
            ImageFolderData(tmp_path / "nowhere")

    def test_no_classes(self, tmp_path):
        """train/ without class folders is refused."""
        (tmp_path / "train").mkdir()
        (tmp_path / "val").mkdir()
        with pytest.raises(DataError, match="expected at least one class folder"):
            ImageFolderData(tmp_path)

    def test_limits(self, root):
        """More files or classes than allowed is refused with the limit's name."""
        with pytest.raises(DataError, match=r"at most 5 image files \(max_files\)"):
            ImageFolderData(root, max_files=5)
        with pytest.raises(DataError, match=r"at most 2 class folders \(max_classes\)"):
            ImageFolderData(root, max_classes=2)
        assert ImageFolderData(root, max_files=9, max_classes=3).n_test == 3

    @pytest.mark.parametrize(("kwargs", "argument"), [({"max_files": 0}, "max_files"), ({"max_pixels": -1}, "max_pixels"),
                                                      ({"max_classes": 1.5}, "max_classes")])
    def test_bad_limits(self, root, kwargs, argument):
        with pytest.raises(ConfigError, match=argument):
            ImageFolderData(root, **kwargs)


class TestItems:
    def test_train_items(self, root):
        """Train items are (uint8 (3, size, size), int label) for every format and mode (converted to RGB)."""
        dataset = ImageFolderData(root).train_dataset(size=24)
        assert len(dataset) == 6
        for i in range(6):
            x, y = dataset[i]
            assert x.dtype == torch.uint8 and x.shape == (3, 24, 24) and x.is_contiguous()
            assert type(y) is int and y == dataset.targets[i]

    def test_train_transform_is_the_documented_one(self, root):
        """Item i: the crop box from SeedSequence([seed, epoch, i]), bilinear resize, then the flip draw."""
        dataset = ImageFolderData(root).train_dataset(size=16, seed=3)
        dataset.set_epoch(3, 2)
        for index, (cls, name) in [(0, ("cat", "a.png")), (5, ("eel", "f.png"))]:
            image = decoded(root, "train", cls, name)
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([3, 2, index])))
            box = random_crop_box(image.width, image.height, (0.08, 1.0), (3 / 4, 4 / 3), rng)
            expected = image.crop(box).resize((16, 16), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                expected = expected.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            expected = torch.from_numpy(np.asarray(expected).transpose(2, 0, 1).copy())
            assert torch.equal(dataset[index][0], expected)

    def test_test_transform(self, root):
        """Test items: shorter side resized to `resize` (longer side rounded down), then the centred crop."""
        dataset = ImageFolderData(root).test_dataset(size=20, resize=30)
        image = decoded(root, "val", "dog", "g.png")  # 48 x 36 -> 40 x 30, crop left 10, top 5
        expected = image.resize((40, 30), Image.Resampling.BILINEAR).crop((10, 5, 30, 25))
        assert torch.equal(dataset[0][0], torch.from_numpy(np.asarray(expected).transpose(2, 0, 1).copy()))
        assert dataset[2][0].shape == (3, 20, 20)

    def test_test_transform_keeps_an_image_already_at_size(self, root):
        """An image whose shorter side already equals `resize` is only cropped."""
        dataset = ImageFolderData(root).test_dataset(size=25, resize=25)
        image = decoded(root, "val", "eel", "i.png")  # 25 x 25
        assert torch.equal(dataset[2][0], torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy()))

    def test_deterministic_per_seed_epoch_index(self, root):
        """Same (seed, epoch, index): same tensor; another epoch or seed: other draws."""
        data = ImageFolderData(root)
        a, b = data.train_dataset(size=16, seed=1), data.train_dataset(size=16, seed=1)
        assert all(torch.equal(a[i][0], b[i][0]) for i in range(6))
        b.set_epoch(1, 1)
        assert not all(torch.equal(a[i][0], b[i][0]) for i in range(6))
        b.set_epoch(2, 0)
        assert not all(torch.equal(a[i][0], b[i][0]) for i in range(6))
        b.set_epoch(1, 0)
        assert all(torch.equal(a[i][0], b[i][0]) for i in range(6))

    def test_same_batches_whatever_the_worker_count(self, root):
        """A DataLoader with 0 or 2 workers gives identical batches in epoch 3."""
        dataset = ImageFolderData(root).train_dataset(size=12, seed=7)
        dataset.set_epoch(7, 3)
        runs = []
        for workers in (0, 2):
            loader = DataLoader(dataset, batch_size=4, num_workers=workers, shuffle=False)
            runs.append([(x.clone(), y.clone()) for x, y in loader])
        assert len(runs[0]) == 2
        for (x0, y0), (x1, y1) in zip(*runs):
            assert torch.equal(x0, x1) and torch.equal(y0, y1)

    def test_picklable(self, root):
        """A dataset survives pickling (spawned workers) and yields the same items."""
        dataset = ImageFolderData(root).train_dataset(size=12)
        copy = pickle.loads(pickle.dumps(dataset))
        assert torch.equal(copy[3][0], dataset[3][0]) and copy.targets == dataset.targets

    def test_normalize(self, root):
        """normalize turns a uint8 batch into float32 with ImageNet's statistics."""
        data = ImageFolderData(root)
        x = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
        out = data.normalize(x)
        expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
        torch.testing.assert_close(out[0, :, 0, 0], expected)

    def test_index_errors(self, root):
        """Out-of-range indices raise IndexError (ends plain iteration); non-integers TypeError."""
        dataset = ImageFolderData(root).test_dataset(size=8, resize=8)
        with pytest.raises(IndexError):
            dataset[3]
        with pytest.raises(TypeError):
            dataset["0"]
        assert len(list(iter(dataset))) == 3

    @pytest.mark.parametrize(("method", "kwargs", "argument"), [
        ("train_dataset", {"size": 0}, "size"), ("train_dataset", {"scale": (0.5, 0.2)}, "scale"),
        ("train_dataset", {"scale": (0.0, 1.0)}, "scale"), ("train_dataset", {"ratio": (1.0,)}, "ratio"),
        ("train_dataset", {"seed": -1}, "seed"), ("test_dataset", {"size": 32, "resize": 16}, "resize"),
    ])
    def test_bad_transform_arguments(self, root, method, kwargs, argument):
        with pytest.raises(ConfigError, match=argument):
            getattr(ImageFolderData(root), method)(**kwargs)


class TestBadFiles:
    def test_unreadable_file(self, root):
        """A file that is not an image, or a truncated one, raises DataError naming it when its item is read."""
        bad = root / "train" / "cat" / "a.png"
        bad.write_bytes(b"definitely not a png")
        dataset = ImageFolderData(root).train_dataset(size=8)
        with pytest.raises(DataError, match="expected a readable image") as exc:
            dataset[0]
        one_line_naming(exc, str(bad))
        cut = root / "train" / "dog" / "c.png"
        cut.write_bytes(cut.read_bytes()[:200])
        with pytest.raises(DataError, match="expected a readable image") as exc:
            dataset[2]
        one_line_naming(exc, str(cut))

    def test_too_many_pixels(self, root):
        """An image above max_pixels is refused from its header (before decoding), naming it."""
        dataset = ImageFolderData(root, max_pixels=1000).train_dataset(size=8)
        with pytest.raises(DataError, match=r"at most 1,000 pixels \(max_pixels\), received 40 x 30") as exc:
            dataset[0]
        one_line_naming(exc, "a.png")

    def test_pil_decompression_bomb(self, root, monkeypatch):
        """PIL's own decompression-bomb warning is turned into a DataError naming the file."""
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
        dataset = ImageFolderData(root).train_dataset(size=8)
        with pytest.raises(DataError, match="decompression bomb") as exc:
            dataset[2]  # 64 x 64 = 4,096 pixels: above PIL's (patched) threshold
        one_line_naming(exc, "c.png")

    def test_extreme_strip_refused_by_test_transform(self, tmp_path):
        """A 1-pixel-high strip whose resize would explode is refused, naming the file."""
        for split in ("train", "val"):
            (tmp_path / split / "a").mkdir(parents=True)
            write_image(tmp_path / split / "a" / "strip.png", (2000, 1), "RGB", seed=0)
        dataset = ImageFolderData(tmp_path, max_pixels=100_000).test_dataset(size=224, resize=256)
        with pytest.raises(DataError, match="resize to 512000 x 256") as exc:
            dataset[0]
        one_line_naming(exc, "strip.png")


class TestRandomCropBox:
    @given(width=st.integers(1, 300), height=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
    def test_box_inside_image(self, width, height, seed):
        """Every box lies inside the image and is non-empty."""
        rng = np.random.Generator(np.random.PCG64(seed))
        left, top, right, bottom = random_crop_box(width, height, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height

    def test_first_fitting_attempt(self):
        """On a large image the first draw fits: its area and aspect ratio follow the two uniform draws."""
        rng = np.random.Generator(np.random.PCG64(11))
        left, top, right, bottom = random_crop_box(1000, 1000, (0.08, 1.0), (3 / 4, 4 / 3), rng)
        replay = np.random.Generator(np.random.PCG64(11))
        fraction, log_aspect = replay.uniform(0.08, 1.0), replay.uniform(np.log(3 / 4), np.log(4 / 3))
        w, h = right - left, bottom - top
        assert abs(w * h / 1e6 - fraction) < 0.01 and abs(np.log(w / h) - log_aspect) < 0.01

    @pytest.mark.parametrize(("size", "expected"), [((100, 10), (45, 0, 55, 10)), ((10, 100), (0, 45, 10, 55)),
                                                    ((7, 5), (0, 0, 7, 5))])
    def test_centred_fallback(self, size, expected):
        """When nothing fits in 10 attempts: the largest centred crop whose aspect ratio is within range."""
        rng = np.random.Generator(np.random.PCG64(0))
        ratio = (1.0, 1.0) if size != (7, 5) else (1.0, 1.5)
        assert random_crop_box(*size, (0.99, 1.0) if size != (7, 5) else (1.0, 1.0), ratio, rng) == expected
