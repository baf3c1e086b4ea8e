"""The reference code's image experiments, each as one recipe: model, class split and training settings.

=================  ==============================  =============================================================
recipe             data                            what it sets
=================  ==============================  =============================================================
``splitcifar100``  CIFAR-100 (``cifar100:PATH``)   20 tasks of 5 classes in ``np.random.permutation(100)`` order
                                                   seeded with the run's seed; GEMResNet18 (5 outputs), top-k
                                                   masks of Erdős–Rényi sparsity sigma, a non-affine BatchNorm
                                                   per task; Adam lr 1e-3, weight decay 1e-4, batch 128, 250
                                                   epochs per task, cosine per epoch; crop (padding 4) and flip
``splitimagenet``  ImageNet folders                100 tasks of 10 classes in ``np.random.permutation(1000)``
                   (``imagefolder:PATH``)          order seeded with 1 (fixed, whatever the run's seed);
                                                   ResNet-50 (10 outputs), the same masks and BatchNorm; Adam lr
                                                   1e-3, no weight decay, batch 256, 100 epochs per task, cosine
                                                   after 5 epochs of linear warm-up; random resized crop 224
                                                   and flip, validation resize 256 and centre crop 224
=================  ==============================  =============================================================

``transfer`` starts each task's scores at the running mean of the earlier tasks' (SupSup Transfer).

>>> r = recipe("splitcifar100", sparsity=4, seed=2)
>>> r.model.arch, r.model.output_size, r.model.er_sigma, r.train.epochs, r.train.schedule, r.class_seed
('gemresnet18', 5, 4.0, 250, 'cosine', 2)
>>> recipe("splitimagenet", seed=3).class_seed
1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import ModelConfig
from ..errors import ConfigError
from ..validate import check_choice, check_int
from .config import TrainConfig

__all__ = ["Recipe", "RECIPES", "recipe"]

#: The recipes :func:`recipe` knows.
RECIPES = ("splitcifar100", "splitimagenet")


@dataclass(frozen=True)
class Recipe:
    """One experiment's settings: the data kind it needs, its model, class split and training configuration."""

    name: str
    data_kind: str
    model: ModelConfig
    train: TrainConfig
    classes_per_task: int
    class_seed: int
    augment: bool

    def stream(self, data: Any) -> Any:
        """The recipe's task stream over ``data`` (loaded with :func:`supsup_core.data.load_data`)."""
        from ..data import benchmark_stream
        from ..data.streams import Augment

        kind = str(getattr(data, "source", "")).split("@", 1)[0].split(":", 1)[0]
        if kind != self.data_kind:
            raise ConfigError("data", f"{self.data_kind} data for the {self.name} recipe", kind or type(data).__name__)
        return benchmark_stream(data, "split", classes_per_task=self.classes_per_task, order="seeded",
                                seed=self.class_seed, augment=Augment() if self.augment else None)


def recipe(name: str, *, sparsity: float = 8, seed: int = 0, transfer: bool = False) -> Recipe:
    """The reference's settings for ``name`` (module table) at Erdős–Rényi ``sparsity`` sigma and run ``seed``."""
    check_choice("recipe", name, RECIPES)
    seed = check_int("seed", seed, low=0)
    if name == "splitcifar100":
        model = ModelConfig(arch="gemresnet18", output_size=5, seed=seed, mask_mode="topk", er_sigma=float(sparsity),
                            in_channels=3, image=32, in_features=3 * 32 * 32, batchnorm="task", transfer=transfer)
        train = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4, batch_size=128, batches_per_task=None,
                            epochs=250, schedule="cosine", seed=seed)
        return Recipe(name, "cifar100", model, train, classes_per_task=5, class_seed=seed, augment=True)
    model = ModelConfig(arch="resnet50", output_size=10, seed=seed, mask_mode="topk", er_sigma=float(sparsity),
                        in_channels=3, image=224, in_features=3 * 224 * 224, batchnorm="task", transfer=transfer)
    train = TrainConfig(optimizer="adam", lr=1e-3, weight_decay=0.0, batch_size=256, batches_per_task=None,
                        epochs=100, schedule="cosine", warmup_epochs=5, seed=seed)
    # the image folder's own training transform crops and flips
    return Recipe(name, "imagefolder", model, train, classes_per_task=10, class_seed=1, augment=False)
