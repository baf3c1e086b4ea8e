"""The SplitCIFAR100 and SplitImageNet recipes build the reference code's class order, model and optimiser.

Both run on files written in the official layouts (CIFAR-100's binary batches; ImageNet's
``train/<wnid>/*.JPEG`` and ``val/<wnid>/*.JPEG`` folders with 1,000 classes).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from supsup_core.data import ImageData, load_data, write_cifar_binary
from supsup_core.errors import ConfigError
from supsup_core.layers.norm import TaskBatchNorm
from supsup_core.models import build_model
from supsup_core.training import train_task
from supsup_core.training.recipes import recipe


@pytest.fixture(scope="module")
def cifar100(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 400  # 4 training and 2 test images per class
    data = ImageData(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), np.arange(n) % 100,
                     rng.integers(0, 256, (n // 2, 3, 32, 32), dtype=np.uint8), np.arange(n // 2) % 100,
                     source="written", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    return load_data(f"cifar100:{write_cifar_binary(tmp_path_factory.mktemp('cifar'), data, 'cifar100')}")


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    for split in ("train", "val"):
        for c in range(1000):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            Image.fromarray(pixels, "RGB").save(folder / f"{split}_{c}.JPEG", format="JPEG")
    return load_data(f"imagefolder:{root}")


@pytest.mark.parametrize("seed", [0, 3])
def test_splitcifar100_is_the_references_experiment(cifar100, seed):
    r = recipe("splitcifar100", sparsity=4, seed=seed)
    stream = r.stream(cifar100)
    np.random.seed(seed)
    perm = np.random.permutation(100)
    assert stream.n_tasks == 20 and stream.output_classes == 5
    assert [stream.classes(t) for t in range(20)] == [tuple(perm[5 * t : 5 * t + 5]) for t in range(20)]
    assert stream.describe()["augment"] == {"crop_padding": 4, "flip": True}
    model = build_model(r.model)
    weights = sum(layer.mask_numel for layer in model.masked_layers().values())
    assert 1.0e6 < weights < 1.2e6  # ~1.09 M masked weights (the reference's nf = 20 reduced ResNet-18)
    assert model.output_size == 5 and model.config.mask_mode == "topk" and model.config.er_sigma == 4.0
    norms = model.norm_layers()
    assert norms and all(isinstance(n, TaskBatchNorm) and n.weight is None for n in norms.values())
    t = r.train
    assert (t.optimizer, t.lr, t.weight_decay, t.batch_size, t.epochs, t.schedule, t.warmup_epochs) == (
        "adam", 1e-3, 1e-4, 128, 250, "cosine", 0)


def test_a_splitcifar100_task_trains_end_to_end(cifar100):
    r = recipe("splitcifar100", sparsity=2, seed=0)
    model = build_model(r.model)
    seen = []
    train_task(model, r.stream(cifar100), 0, r.train.replace(epochs=2, batch_size=10),
               callbacks=[("on_batch_end", lambda tr: seen.append(tr.optimizer.lr))])
    assert model.num_tasks == 1 and len(seen) == 2 * 2  # 20 images, batches of 10: 2 per epoch, 2 epochs
    assert seen[:2] == [1e-3] * 2 and seen[2:] == [pytest.approx(0.5e-3)] * 2  # cos(pi / 2) in the second epoch


def test_splitimagenet_is_the_references_experiment(imagenet):
    r = recipe("splitimagenet", sparsity=8, seed=5)
    stream = r.stream(imagenet)
    np.random.seed(1)  # the reference hard-codes the class order's seed
    perm = np.random.permutation(1000)
    assert stream.n_tasks == 100 and stream.output_classes == 10
    for task in (0, 42, 99):
        label_map = stream.tasks[task].label_map
        assert [int(label_map[c]) for c in perm[10 * task : 10 * task + 10]] == list(range(10))
        assert int((label_map >= 0).sum()) == 10
    x, y, _ = next(stream.test_batches(42, 4))
    assert tuple(x.shape[1:]) == (3, 224, 224)
    model = build_model(r.model)
    assert model.output_size == 10 and model.config.arch == "resnet50" and model.config.er_sigma == 8.0
    assert all(isinstance(n, TaskBatchNorm) and n.weight is None for n in model.norm_layers().values())
    t = r.train
    assert (t.optimizer, t.lr, t.weight_decay, t.batch_size, t.epochs, t.schedule, t.warmup_epochs) == (
        "adam", 1e-3, 0.0, 256, 100, "cosine", 5)


def test_a_recipe_refuses_other_data(cifar100):
    with pytest.raises(ConfigError, match="^data: expected imagefolder data for the splitimagenet recipe"):
        recipe("splitimagenet").stream(cifar100)
    with pytest.raises(ConfigError, match="^recipe: expected one of"):
        recipe("splitmnist")
