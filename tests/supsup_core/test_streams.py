"""Tests for supsup_core/data/transforms.py and supsup_core/data/streams.py (task streams over MNIST)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from supsup_core.data.streams import eval_order
from torch.utils.data import Subset, TensorDataset

from supsup_core.data import (
    MNIST_MEAN,
    MNIST_STD,
    ImageData,
    PermutedMNIST,
    RotatedMNIST,
    SplitMNIST,
    SplitStream,
    class_order,
    load_mnist,
    make_stream,
    normalize_images,
    permutation_for_task,
    permute_pixels,
    rotate_images,
    split_dataset_stream,
    stream_from_datasets,
    stream_from_tensors,
)
from supsup_core.errors import ConfigError
from tests.strategies import square_images

N_TRAIN, N_TEST = 50, 23
DIGITS = tuple("0123456789")


@pytest.fixture(scope="module")
def toy() -> ImageData:
    """Small MNIST-shaped data whose pixel (0, 0) holds the sample index (to trace shuffling)."""
    rng = np.random.default_rng(3)
    train = rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8)
    train[:, 0, 0] = np.arange(N_TRAIN)
    test[:, 0, 0] = np.arange(N_TEST)
    return ImageData(train, np.arange(N_TRAIN) % 10, test, np.arange(N_TEST) % 10, source="toy")


def sample_ids(x: torch.Tensor) -> list[int]:
    """Decode the sample index stored in pixel (0, 0) of normalised, unpermuted, unrotated images."""
    return torch.round((x[:, 0, 0, 0] * MNIST_STD + MNIST_MEAN) * 255).to(torch.int64).tolist()


class TestNormalize:
    def test_uint8_values(self):
        """0 and 255 map to -mean/std and (1-mean)/std."""
        x = normalize_images(np.array([[[0, 255]]], np.uint8))
        assert x.dtype == torch.float32 and x.shape == (1, 1, 1, 2)
        np.testing.assert_allclose(x.flatten().numpy(), [-MNIST_MEAN / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD], rtol=1e-6)

    def test_tensor_and_array_agree(self):
        """uint8 tensors and arrays normalise identically."""
        a = np.arange(784, dtype=np.int64).astype(np.uint8).reshape(1, 28, 28)
        assert torch.equal(normalize_images(a), normalize_images(torch.from_numpy(a)))

    def test_rejects_integer_tensors(self):
        """Non-uint8 integer images raise ConfigError."""
        with pytest.raises(ConfigError, match="images"):
            normalize_images(torch.zeros(1, 28, 28, dtype=torch.int32))


class TestPermutationForTask:
    def test_matches_reference_legacy_rng(self):
        """Task i with seed s equals numpy's RandomState(i + s).permutation(784)."""
        for task, seed in [(0, 1), (3, 1), (2, 0)]:
            expected = np.random.RandomState(task + seed).permutation(784)
            np.testing.assert_array_equal(permutation_for_task(task, seed), expected)

    def test_deterministic(self):
        """The same task and seed give the same permutation."""
        np.testing.assert_array_equal(permutation_for_task(5, 1), permutation_for_task(5, 1))

    def test_independent_of_and_from_global_rng(self):
        """The result ignores the global NumPy RNG and leaves its state untouched."""
        np.random.seed(0)
        before = np.random.get_state()[1].copy()
        a = permutation_for_task(4, 1)
        after = np.random.get_state()[1].copy()
        np.random.seed(99)
        b = permutation_for_task(4, 1)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(before, after)

    def test_task_zero_with_seed_one_is_not_identity(self):
        """With the reference seed 1, task 0 is already permuted."""
        assert not np.array_equal(permutation_for_task(0, 1), np.arange(784))

    def test_tasks_differ(self):
        """Different tasks get different permutations."""
        assert not np.array_equal(permutation_for_task(0, 1), permutation_for_task(1, 1))

    @pytest.mark.parametrize(("task", "seed"), [(-1, 1), (0, -1), (2**32, 0), (1.5, 1), (True, 1)])
    def test_rejects_bad_arguments(self, task, seed):
        """Negative, overflowing or non-integer task/seed raise ConfigError."""
        with pytest.raises(ConfigError):
            permutation_for_task(task, seed)


class TestPermutePixels:
    @given(st.integers(0, 2**16))
    def test_matches_numpy_indexing(self, seed):
        """permute_pixels equals flattening, indexing with the permutation and reshaping, in NumPy."""
        rng = np.random.default_rng(seed)
        images = rng.random((2, 1, 4, 5), dtype=np.float32)
        perm = rng.permutation(20)
        expected = images.reshape(2, -1)[:, perm].reshape(2, 1, 4, 5)
        np.testing.assert_array_equal(permute_pixels(torch.from_numpy(images), perm).numpy(), expected)

    def test_rejects_wrong_length(self):
        """A permutation of the wrong length raises ConfigError."""
        with pytest.raises(ConfigError, match="permutation"):
            permute_pixels(torch.zeros(1, 1, 28, 28), np.arange(10))


class TestRotateImages:
    def test_zero_is_identity(self):
        """Rotating by 0 degrees returns the image (to float precision)."""
        x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(rotate_images(x, 0.0), x, atol=1e-5, rtol=0)

    def test_full_turn_is_identity(self):
        """Rotating by 360 degrees returns the image (to float precision)."""
        x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(rotate_images(x, 360.0), x, atol=1e-5, rtol=0)

    def test_ninety_matches_rot90_on_mnist(self):
        """+90 degrees equals torch.rot90 (counter-clockwise) on a real digit, within interpolation tolerance."""
        x = normalize_images(load_mnist().train_images[:4]) * MNIST_STD + MNIST_MEAN  # back to [0, 1]
        torch.testing.assert_close(rotate_images(x, 90.0), torch.rot90(x, 1, dims=(2, 3)), atol=1e-4, rtol=0)

    @given(images=square_images(), quarter_turns=st.integers(-4, 4))
    def test_quarter_turns_match_rot90(self, images, quarter_turns):
        """Any multiple of 90 degrees equals torch.rot90 on square images of odd or even side."""
        x = torch.from_numpy(images)
        expected = torch.rot90(x, quarter_turns, dims=(2, 3))
        torch.testing.assert_close(rotate_images(x, 90.0 * quarter_turns), expected, atol=1e-4, rtol=0)

    def test_positive_is_counter_clockwise(self):
        """A dot right of the centre moves to the top for +90 degrees and to the bottom for -90."""
        x = torch.zeros(1, 1, 5, 5)
        x[0, 0, 2, 4] = 1.0
        assert rotate_images(x, 90.0)[0, 0].round().nonzero().tolist() == [[0, 2]]
        assert rotate_images(x, -90.0)[0, 0].round().nonzero().tolist() == [[4, 2]]

    def test_matches_pil_bilinear(self):
        """A 10-degree rotation agrees with PIL's bilinear rotate to within one grey level."""
        image_module = pytest.importorskip("PIL.Image")
        img = load_mnist().train_images[7, 0]
        pil = np.asarray(image_module.fromarray(img).rotate(10, resample=image_module.BILINEAR)).astype(np.float32)
        ours = rotate_images(torch.from_numpy(img.astype(np.float32))[None, None], 10.0)[0, 0].numpy()
        assert np.abs(pil - ours).max() <= 1.0

    def test_per_image_angles(self):
        """A vector of angles rotates each image by its own angle."""
        x = torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(2))
        out = rotate_images(x, torch.tensor([0.0, 180.0]))
        torch.testing.assert_close(out[0], x[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[1], torch.rot90(x[1], 2, dims=(1, 2)), atol=1e-5, rtol=0)

    def test_rejects_bad_input(self):
        """Integer images or a wrong number of angles raise ConfigError."""
        with pytest.raises(ConfigError, match="images"):
            rotate_images(torch.zeros(1, 1, 4, 4, dtype=torch.uint8), 10.0)
        with pytest.raises(ConfigError, match="degrees"):
            rotate_images(torch.zeros(3, 1, 4, 4), [1.0, 2.0])


class TestBatches:
    @pytest.mark.parametrize("name", ["permuted-mnist", "rotated-mnist", "split-mnist"])
    def test_tuple_dtypes_and_shapes(self, toy, name):
        """Train and test batches are (x float32 (B,1,28,28), y int64 (B,), t int64 (B,) == task)."""
        stream = make_stream(name, 3, toy)
        for x, y, t in [next(iter(stream.train_batches(2, batch_size=4))), next(iter(stream.test_batches(2, 4)))]:
            assert x.dtype == torch.float32 and x.shape == (4, 1, 28, 28)
            assert y.dtype == torch.int64 and y.shape == (4,)
            assert t.dtype == torch.int64 and t.tolist() == [2, 2, 2, 2]
            assert x.device.type == "cpu"

    def test_one_epoch_covers_every_sample_once(self, toy):
        """Without n_batches, one epoch yields every training sample exactly once (last batch partial)."""
        batches = list(RotatedMNIST(toy, 2).train_batches(0, batch_size=16))
        assert [b[0].shape[0] for b in batches] == [16, 16, 16, 2]
        assert sorted(i for x, _, _ in batches for i in sample_ids(x)) == list(range(N_TRAIN))

    def test_n_batches_cycles_epochs_with_fresh_shuffles(self, toy):
        """n_batches=10 over 4-batch epochs yields 10 batches; each full epoch is a new permutation."""
        batches = list(RotatedMNIST(toy, 1).train_batches(0, batch_size=16, n_batches=10))
        assert len(batches) == 10
        ids = [sample_ids(x) for x, _, _ in batches]
        epochs = [sum(ids[i : i + 4], []) for i in (0, 4)]
        assert all(sorted(e) == list(range(N_TRAIN)) for e in epochs)
        assert epochs[0] != epochs[1]

    def test_drop_last(self, toy):
        """drop_last skips each epoch's partial batch."""
        batches = list(RotatedMNIST(toy, 1).train_batches(0, batch_size=16, n_batches=6, drop_last=True))
        assert [b[0].shape[0] for b in batches] == [16] * 6

    def test_seeded_shuffle_reproducible(self, toy):
        """The same (seed, task) gives the same order; another seed or task gives another."""
        stream = PermutedMNIST(toy, 3)

        def order(task, seed):
            return torch.cat([y for _, y, _ in stream.train_batches(task, 8, seed=seed)]).tolist()

        rot = RotatedMNIST(toy, 2)
        ids = [sample_ids(torch.cat([x for x, _, _ in rot.train_batches(0, 8, seed=s)])) for s in (0, 0, 1)]
        assert ids[0] == ids[1] and ids[0] != ids[2]
        assert order(1, 5) == order(1, 5)
        assert order(1, 5) != order(2, 5)

    def test_shuffle_ignores_global_torch_rng(self, toy):
        """Reseeding torch's global generator does not change the order."""
        stream = RotatedMNIST(toy, 1)
        torch.manual_seed(0)
        a = sample_ids(next(iter(stream.train_batches(0, 50)))[0])
        torch.manual_seed(1)
        b = sample_ids(next(iter(stream.train_batches(0, 50)))[0])
        assert a == b

    def test_test_batches_fixed_order(self, toy):
        """Test batches come in the fixed shuffled order and cover the split; test_size counts it."""
        stream = RotatedMNIST(toy, 1)
        batches = list(stream.test_batches(0, batch_size=10))
        assert [b[0].shape[0] for b in batches] == [10, 10, 3]
        assert sum((sample_ids(x) for x, _, _ in batches), []) == eval_order(N_TEST).tolist()
        assert stream.test_size(0) == N_TEST and stream.train_size(0) == N_TRAIN

    def test_device_argument(self, toy):
        """device='cpu' moves (here: keeps) all three tensors."""
        x, y, t = next(iter(SplitMNIST(toy).test_batches(0, 2, device="cpu")))
        assert {x.device.type, y.device.type, t.device.type} == {"cpu"}

    @pytest.mark.parametrize("kwargs", [{"task": 3}, {"task": -1}, {"batch_size": 0}, {"n_batches": 0},
                                        {"seed": -1}, {"batch_size": 2.5}])
    def test_bad_arguments_raise_at_call(self, toy, kwargs):
        """Out-of-range task, batch_size, n_batches or seed raise ConfigError when called, not when iterated."""
        args = {"task": 0, **kwargs}
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            PermutedMNIST(toy, 3).train_batches(**args)


class TestPermutedMNIST:
    def test_applies_task_permutation_to_normalised_pixels(self, toy):
        """Task 1's test images are the normalised images permuted by permutation_for_task(1, seed)."""
        stream = PermutedMNIST(toy, 2, seed=4)
        x = torch.cat([b[0] for b in stream.test_batches(1, 8)])
        expected = normalize_images(toy.test_images).reshape(N_TEST, -1)[:, permutation_for_task(1, 4)][eval_order(N_TEST)]
        torch.testing.assert_close(x.reshape(N_TEST, -1), expected, atol=0, rtol=0)
        np.testing.assert_array_equal(stream.permutation(1), permutation_for_task(1, 4))

    def test_labels_unchanged(self, toy):
        """Permuting pixels keeps every label."""
        y = torch.cat([b[1] for b in PermutedMNIST(toy, 1).test_batches(0, 8)])
        np.testing.assert_array_equal(y.numpy(), toy.test_labels[eval_order(N_TEST).numpy()])

    def test_cache_bounded(self, toy):
        """The per-task cache keeps at most cache_size entries and rebuilds evicted tasks identically."""
        stream = PermutedMNIST(toy, 5, cache_size=2)
        first = next(iter(stream.test_batches(0, 4)))[0]
        for task in range(1, 5):
            next(iter(stream.test_batches(task, 4)))
        assert len(stream._cache) == 2
        assert torch.equal(next(iter(stream.test_batches(0, 4)))[0], first)

    def test_release_cache_rebuilds_identically(self, toy):
        """release_cache empties the per-task cache; the next request rebuilds the same tensors."""
        stream = PermutedMNIST(toy, 3)
        first = next(iter(stream.test_batches(2, 4)))[0]
        stream.release_cache()
        assert len(stream._cache) == 0
        assert torch.equal(next(iter(stream.test_batches(2, 4)))[0], first)


class TestRotatedMNIST:
    def test_task_angles(self, toy):
        """Task i is rotated by i * degrees_per_task."""
        stream = RotatedMNIST(toy, 4, degrees_per_task=30.0)
        assert [stream.angle(i) for i in range(4)] == [0.0, 30.0, 60.0, 90.0]

    def test_task_zero_is_plain_mnist(self, toy):
        """Task 0 (0 degrees) is exactly the normalised images."""
        x = torch.cat([b[0] for b in RotatedMNIST(toy, 2).test_batches(0, 8)])
        assert torch.equal(x, normalize_images(toy.test_images)[eval_order(N_TEST)])

    def test_rotates_before_normalising(self, toy):
        """Task 9 with 10-degree steps equals rot90 of the [0, 1] images, then normalised (black padding)."""
        x = torch.cat([b[0] for b in RotatedMNIST(toy, 10).test_batches(9, 8)])
        raw = torch.from_numpy(toy.test_images.astype(np.float32) / 255)  # (n, 1, 28, 28)
        expected = normalize_images(torch.rot90(raw, 1, dims=(2, 3)))[eval_order(N_TEST)]
        torch.testing.assert_close(x, expected, atol=1e-4, rtol=0)

    def test_rejects_non_finite_step(self, toy):
        """A NaN rotation step raises ConfigError."""
        with pytest.raises(ConfigError, match="degrees_per_task"):
            RotatedMNIST(toy, 2, degrees_per_task=float("nan"))


class TestSplitMNIST:
    def test_label_sets(self):
        """Task i holds exactly digits 2i and 2i+1 with original labels, 800 train and 200 test on the subset."""
        stream = SplitMNIST(load_mnist())
        assert stream.n_tasks == 5 and stream.output_classes == 10 and stream.classes_per_task == 2
        for task in range(5):
            train = torch.cat([y for _, y, _ in stream.train_batches(task, 256)])
            test = torch.cat([y for _, y, _ in stream.test_batches(task, 256)])
            assert set(train.tolist()) == set(test.tolist()) == {2 * task, 2 * task + 1}
            assert train.numel() == 800 and test.numel() == 200

    def test_images_match_source(self, toy):
        """Task 1's test images are the normalised test images of digits 2 and 3, in the fixed test order."""
        x = torch.cat([b[0] for b in SplitMNIST(toy).test_batches(1, 4)])
        keep = np.isin(toy.test_labels, [2, 3])
        assert torch.equal(x, normalize_images(toy.test_images[keep])[eval_order(int(keep.sum()))])


class TestMakeStream:
    @pytest.mark.parametrize(("name", "cls"), [("permuted-mnist", PermutedMNIST), ("rotated-mnist", RotatedMNIST),
                                               ("split-mnist", SplitMNIST)])
    def test_builds_by_name(self, toy, name, cls):
        """Each name builds its stream with 10 output classes."""
        stream = make_stream(name, 2, toy, seed=3)
        assert isinstance(stream, cls) and stream.n_tasks == 2 and stream.output_classes == 10

    def test_default_data_is_embedded(self):
        """Without data the embedded subset (data spec 'mnist') is used."""
        assert make_stream("split-mnist", 1).data.source == "mnist"

    @pytest.mark.parametrize(("name", "n_tasks", "argument"), [("mnist", 2, "name"), ("split-mnist", 6, "n_tasks"),
                                                               ("split-mnist", 0, "n_tasks"),
                                                               ("permuted-mnist", 0, "n_tasks"),
                                                               ("rotated-mnist", 2.0, "n_tasks")])
    def test_rejects_bad_name_or_count(self, toy, name, n_tasks, argument):
        """Unknown names and out-of-range task counts raise ConfigError naming the argument."""
        with pytest.raises(ConfigError, match=argument):
            make_stream(name, n_tasks, toy)

    @pytest.mark.parametrize("name", ["permuted-mnist", "rotated-mnist", "split-mnist"])
    def test_describe_is_json_safe(self, toy, name):
        """describe() survives a JSON round trip and names the stream, task count, seed and source."""
        info = make_stream(name, 2, toy, seed=7).describe()
        assert json.loads(json.dumps(info)) == info
        assert info["stream"] == name and info["n_tasks"] == 2 and info["data_source"] == "toy"
        assert info["seed"] == (7 if name == "permuted-mnist" else None)


@pytest.mark.cuda
class TestCuda:
    def test_batches_move_to_gpu(self, toy):
        """device='cuda' returns x, y, t on the GPU with unchanged values."""
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        stream = PermutedMNIST(toy, 1)
        x, y, t = next(iter(stream.test_batches(0, 8, device="cuda")))
        assert x.is_cuda and y.is_cuda and t.is_cuda
        assert torch.equal(x.cpu(), next(iter(stream.test_batches(0, 8)))[0])


class TestStreamInputsRefusedAtConstruction:
    """Data that used to fail mid-training (or allocate by a label's value) is refused when the stream is built."""

    x, y = torch.randn(40, 3), torch.arange(40) % 4

    def test_huge_label_refused_before_allocating(self):
        """One label of 10**6 would size the label map and class order by its value: refused, naming the label."""
        y = self.y.clone()
        y[0] = 10**6
        with pytest.raises(ConfigError, match=r"^y_train: expected class labels in \[0, 999,999\] \(MAX_LABEL\), "
                                              r"received 1 larger label\(s\): 1000000$"):
            stream_from_tensors(self.x, y, self.x, self.y, classes_per_task=2, n_tasks=1)

    def test_class_counts_bounded(self):
        """n_classes (and class_order) stop at a million classes."""
        train = TensorDataset(self.x, self.y)
        train.targets = self.y
        with pytest.raises(ConfigError, match=r"^n_classes: expected an integer in \[4, 1000000\]"):
            split_dataset_stream(train, train, 2, n_classes=10**7, n_tasks=1)
        with pytest.raises(ConfigError, match=r"^n_classes: expected an integer in \[1, 1000000\]"):
            class_order(10**7)

    def test_empty_datasets(self):
        """An empty training or test set is refused by name, not later as a batch_size error."""
        with pytest.raises(ConfigError, match="^y_train: expected a training dataset with at least one item"):
            stream_from_tensors(self.x[:0], self.y[:0], self.x, self.y, classes_per_task=1)
        with pytest.raises(ConfigError, match="^y_test: expected a test dataset with at least one item"):
            stream_from_tensors(self.x, self.y, self.x[:0], self.y[:0], classes_per_task=1)
        with pytest.raises(ConfigError, match=r"^tasks\[0\]\[1\]: expected a test dataset with at least one item"):
            stream_from_datasets([(TensorDataset(self.x, self.y), TensorDataset(self.x[:0], self.y[:0]))])

    @pytest.mark.parametrize(("train_gap", "split"), [(True, "training"), (False, "test")])
    def test_task_without_samples_is_named(self, train_gap, split):
        """A task whose classes have no training (or test) sample is refused naming the task and its classes."""
        gap = self.y.clone()
        gap[gap == 2] = 3
        y_train, y_test = (gap, self.y) if train_gap else (self.y, gap)
        name = "y_train" if train_gap else "y_test"
        with pytest.raises(ConfigError, match=rf"^{name}: expected {split} samples of every task's classes, received "
                                              r"none for task 2 \(classes \(2,\)\)$"):
            stream_from_tensors(self.x, y_train, self.x, y_test, classes_per_task=1)

    def test_targets_must_match_the_dataset_length(self):
        """A 'targets' list longer or shorter than the dataset is refused."""
        class Lying(torch.utils.data.Dataset):
            def __init__(self, n, targets):
                self.n, self.targets = n, targets

            def __len__(self):
                return self.n

            def __getitem__(self, i):
                return torch.zeros(3), 0

        with pytest.raises(ConfigError, match=r"^train: expected one target per item \(4 items\), received 10 targets"):
            split_dataset_stream(Lying(4, list(range(10))), Lying(4, [0, 1, 2, 3]), 2)
        with pytest.raises(ConfigError, match=r"^test: expected one target per item \(10 items\), received 4 targets"):
            split_dataset_stream(Lying(4, [0, 1, 2, 3]), Lying(10, [0, 1, 2, 3]), 2)

    def test_items_whose_labels_disagree_with_the_targets_are_refused_when_read(self):
        """Targets say classes 0..3, the items answer 7: the batch is refused naming the labels (never label -1)."""
        class Disagreeing(torch.utils.data.Dataset):
            def __init__(self, label):
                self.targets, self.label = [0, 1, 2, 3] * 4, label

            def __len__(self):
                return 16

            def __getitem__(self, i):
                return torch.zeros(3), self.targets[i] if self.label is None else self.label

        stream = split_dataset_stream(Disagreeing(None), Disagreeing(None), 2)
        assert set(next(iter(stream.train_batches(1, 8)))[1].tolist()) <= {0, 1}
        for label in (7, 2, -1):  # past every class, another task's class, negative
            stream = split_dataset_stream(Disagreeing(label), Disagreeing(None), 2)
            with pytest.raises(ConfigError, match=rf"^dataset: expected items whose labels are task 0's classes .*"
                                                  rf"received labels \[{label}\]"):
                next(iter(stream.train_batches(0, 8)))

    def test_subset_indices_out_of_range(self):
        """A Subset pointing past its dataset is a ConfigError, not an IndexError."""
        base = TensorDataset(self.x, self.y)
        base.targets = self.y
        with pytest.raises(ConfigError, match="^train: expected a Subset whose indices lie within its dataset of 40"):
            split_dataset_stream(Subset(base, [0, 1, 99]), base, 2)

    def test_stream_from_datasets_checks_test_labels(self):
        """Test labels beyond output_classes (given, or the largest training label + 1) are refused."""
        train = TensorDataset(self.x, self.y)
        test = TensorDataset(self.x, self.y + 10)
        train.targets, test.targets = self.y, self.y + 10
        with pytest.raises(ConfigError, match=r"^tasks\[0\]\[1\]: expected test labels below output_classes 4 .*"
                                              "received a label 13$"):
            stream_from_datasets([(train, test)])
        with pytest.raises(ConfigError, match=r"^tasks\[0\]\[1\]: expected test labels below output_classes 12"):
            stream_from_datasets([(train, test)], output_classes=12)
        assert stream_from_datasets([(train, test)], output_classes=14).output_classes == 14

    @pytest.mark.parametrize("x_test", [torch.randn(40, 5), torch.randn(40, 3, 1), torch.randn(40)])
    def test_x_test_shape_must_match_x_train(self, x_test):
        """x_test rows of another shape than x_train's are refused naming x_test."""
        with pytest.raises(ConfigError, match=r"^x_test: expected rows of shape \(3,\) like x_train"):
            stream_from_tensors(self.x, self.y, x_test, self.y, classes_per_task=2)

    def test_in_memory_streams_refuse_empty_splits_and_empty_tasks(self, toy):
        """ImageData with no test images, or a split task whose classes have no images, is refused at construction."""
        no_test = ImageData(toy.train_images, toy.train_labels, toy.test_images[:0], toy.test_labels[:0], source="toy")
        with pytest.raises(ConfigError, match=r"^data: expected at least one training and one test image, received "
                                              r"50 training and 0 test images \(toy\)"):
            PermutedMNIST(no_test, 2)
        labels = toy.train_labels.copy()
        labels[labels >= 8] = 0
        gap = ImageData(toy.train_images, labels, toy.test_images, toy.test_labels, source="gap", class_names=DIGITS)
        with pytest.raises(ConfigError, match=r"^data: expected train images of every task's classes, received none "
                                              r"for task 4 \(classes \(8, 9\)\) in gap$"):
            SplitStream(gap, 2)
        assert SplitStream(gap, 2, n_tasks=4).n_tasks == 4
