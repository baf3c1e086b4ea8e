"""Build the stream a description names: from ``stream.describe()`` (a bank's ``benchmark``) or from CLI options.

:func:`stream_from_description` is the one place that knows how every rebuildable
stream is made again: the in-memory kinds of :mod:`.streams` over any
:class:`ImageData`, and class splits of an ImageNet-style folder (the
reference's SplitImageNet).  Data comes from the description's ``data_source``
(a data spec) unless the caller passes it.

Examples
--------
>>> from supsup_core.data import make_stream
>>> stream = make_stream("permuted-mnist", 3)
>>> stream_from_description(stream.describe()).permutation(2).tolist() == stream.permutation(2).tolist()
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from .dataset_streams import DatasetStream, split_dataset_stream
from .imagefolder import ImageFolderData
from .images import ImageData
from .sources import load_data
from .streams import STREAM_NAMES, TaskStream, make_stream

__all__ = ["stream_from_description", "imagefolder_split_stream", "benchmark_stream", "DEFAULT_SPLITS"]

#: Image sizes of the reference's ImageNet transforms (random-resized crop 224; resize 256 then centre crop 224).
IMAGENET_SIZE, IMAGENET_RESIZE = 224, 256


def imagefolder_split_stream(data: ImageFolderData, classes_per_task: int = 10, *, n_tasks: int | None = None,
                             order: str = "seeded", seed: int = 1, relabel: bool = True, size: int = IMAGENET_SIZE,
                             resize: int = IMAGENET_RESIZE, num_workers: int = 0) -> DatasetStream:
    """Class-incremental tasks of an ImageNet-style folder, as the reference's SplitImageNet (``seed=1``, 10 classes).

    Training images get the random-resized crop and flip, test images a resize and centre crop; both
    are normalised with the folder's statistics.
    """
    if not isinstance(data, ImageFolderData):
        raise ConfigError("data", "an ImageFolderData (imagefolder:PATH)", type(data).__name__)
    description = {"stream": "split", "data_source": data.source, "size": size, "resize": resize}
    return split_dataset_stream(
        data.train_dataset(size), data.test_dataset(size, resize=resize), classes_per_task, n_tasks=n_tasks,
        order=order, seed=seed, relabel=relabel, n_classes=data.n_classes, transform=data.normalize,
        num_workers=num_workers, description=description,
    )


def stream_from_description(description: Mapping[str, Any], data: ImageData | ImageFolderData | None = None) -> TaskStream:
    """The stream ``description`` (``stream.describe()``) names, over ``data`` or its ``data_source``.

    Raises
    ------
    ConfigError
        The description names no stream that can be rebuilt (a stream made in Python from
        the user's own datasets), or its fields are invalid.
    """
    if not isinstance(description, Mapping) or "stream" not in description or "n_tasks" not in description:
        raise ConfigError("benchmark", "a stream description with 'stream' and 'n_tasks'", description)
    name = description["stream"]
    if data is None:
        if "data_source" not in description:
            raise ConfigError("benchmark", "a stream description with the 'data_source' that loads its data", name)
        data = load_data(str(description["data_source"]))
    n_tasks = int(description["n_tasks"])
    seed = description.get("seed")
    if isinstance(data, ImageFolderData):
        if name != "split":
            raise ConfigError("benchmark", "a 'split' stream for an image folder", repr(name))
        return imagefolder_split_stream(
            data, int(description["classes_per_task"]), n_tasks=n_tasks, order=str(description.get("order", "seeded")),
            seed=1 if seed is None else int(seed), relabel=bool(description.get("relabel", True)),
            size=int(description.get("size", IMAGENET_SIZE)), resize=int(description.get("resize", IMAGENET_RESIZE)),
        )
    if name not in STREAM_NAMES:
        raise ConfigError("benchmark", f"a stream among {', '.join(STREAM_NAMES)} (a stream of your own datasets is "
                          "not rebuilt from a bank: pass it yourself)", repr(name))
    options: dict[str, Any] = {}
    if description.get("degrees_per_task") is not None:
        options["degrees_per_task"] = float(description["degrees_per_task"])
    if name == "split":
        options.update(classes_per_task=int(description["classes_per_task"]), order=str(description.get("order", "sorted")),
                       relabel=bool(description.get("relabel", True)))
    if description.get("augment") is not None:
        options["augment"] = dict(description["augment"])
    default_seed = 0 if name == "split" else 1
    return make_stream(name, n_tasks, data, seed=default_seed if seed is None else int(seed), **options)


#: The class split each kind of data gets when none is named: (classes per task, class order), as the paper runs
#: them (SplitCIFAR100: 20 x 5 in the seeded order; SplitImageNet: 100 x 10, seed 1; two-class splits elsewhere).
DEFAULT_SPLITS = {"cifar100": (5, "seeded"), "imagefolder": (10, "seeded"), "cifar10": (2, "sorted"),
                  "digits": (2, "sorted"), "mnist": (2, "sorted"), "mnist-full": (2, "sorted"), "idx": (2, "sorted")}


def benchmark_stream(data: ImageData | ImageFolderData, benchmark: str, n_tasks: int | None = None, *,
                     classes_per_task: int | None = None, order: str | None = None, seed: int | None = None,
                     relabel: bool = True, augment: Any = None) -> TaskStream:
    """The stream of ``benchmark`` over ``data`` with the paper's defaults for that data (one place for the policy).

    ``benchmark`` is one of :data:`~supsup_core.data.streams.STREAM_NAMES`.  For ``"split"``, the class
    split defaults to :data:`DEFAULT_SPLITS` of the data's kind and ``seed`` is the class-order seed (the
    reference's: its run seed for CIFAR-100, 1 for ImageNet); for permuted streams it is the permutation
    seed (default 1).  ``n_tasks`` defaults to every full class group (split), 5 (split-mnist) or 10.

    Examples
    --------
    >>> from supsup_core.data import load_data
    >>> s = benchmark_stream(load_data("digits"), "split")
    >>> s.n_tasks, s.classes(0), s.output_classes
    (5, (0, 1), 2)
    """
    kind = str(data.source).split("@", 1)[0].split(":", 1)[0]
    if isinstance(data, ImageFolderData):
        if benchmark != "split":
            raise ConfigError("benchmark", "'split' for an image folder (class-incremental tasks)", repr(benchmark))
        per, default_order = DEFAULT_SPLITS["imagefolder"]
        return imagefolder_split_stream(data, classes_per_task or per, n_tasks=n_tasks, order=order or default_order,
                                        seed=1 if seed is None else seed, relabel=relabel)
    if benchmark == "split":
        per, default_order = DEFAULT_SPLITS.get(kind, (2, "sorted"))
        return make_stream("split", n_tasks, data, seed=0 if seed is None else seed, classes_per_task=classes_per_task or per,
                           order=order or default_order, relabel=relabel, augment=augment)
    if classes_per_task is not None or order is not None:
        raise ConfigError("split", f"no class split for the {benchmark!r} stream (only for 'split')",
                          f"{classes_per_task}:{order}")
    default_tasks = 5 if benchmark == "split-mnist" else 10
    return make_stream(benchmark, default_tasks if n_tasks is None else n_tasks, data, seed=1 if seed is None else seed,
                       augment=augment)
