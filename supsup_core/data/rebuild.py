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

__all__ = ["stream_from_description", "imagefolder_split_stream"]

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
