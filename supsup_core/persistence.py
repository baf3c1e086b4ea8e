"""Save a model's learned masks to a hopfield_masks mask bank, and rebuild models from banks.

A bank written by :func:`save_masks` (or by :func:`~supsup_core.training.train_to_bank`)
holds task ``"0"``, ``"1"``, ... (model task order), each with the model's named layer
masks, and producer metadata that pins down everything needed to rebuild the base
network and the benchmark:

``producer``
    ``"supsup_core"`` and ``supsup_core_version``, ``torch_version``;
``model``
    how to rebuild the model: a built-in's :class:`~supsup_core.config.ModelConfig`
    dict, ``{"factory": "MODULE:FACTORY", "wrap": {...}}``, or ``{"module": class name,
    "wrap": {...}}`` for a module wrapped in Python.  A bank never makes this toolkit
    import code: a factory runs only when the user names it again;
``architecture``
    every converted layer (name, type, shape, convolution geometry): a model whose
    layers differ is refused with the first differing layer named;
``base_fingerprint``
    sha256 of the frozen base tensors (:meth:`SupSupNet.base_fingerprint`): a rebuilt network
    whose weights differ in any bit (other seed, other init, another torch RNG, other
    pretrained weights) is refused;
``benchmark``
    free-form description of where the masks came from (stream, seeds, split, data source);
``training``
    optional: the training configuration (scenario, TrainConfig dict);
``n_tasks``
    number of tasks.

Each task's attrs carry ``{"accuracy": {"gg": 0.97, ...}}`` when accuracies were given.
A model with per-task batch norms also stores each task's running statistics, as the
attachment ``statistics-<task>`` (one float32 ``(2, C)`` dataset per norm layer).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import torch

import numpy as np

from hopfield_masks.backends import create_bank, open_bank

from . import __version__
from .config import ModelConfig
from .errors import BaseNetworkMismatchError, ConfigError, DataError
from .heap import release_free_memory
from .models import SupSupNet, build_model, model_from_spec, spec_kind

__all__ = [
    "benchmark_metadata",
    "save_masks",
    "load_model",
    "load_masks_into",
    "read_bank_metadata",
    "stored_accuracies",
    "stream_from_metadata",
    "PRODUCER",
    "MAX_MODEL_ENTRIES",
    "check_declared_model",
    "model_metadata",
    "write_bank_task",
    "read_bank_statistics",
    "STATISTICS_PREFIX",
]

#: Value of the ``producer`` metadata key written by :func:`save_masks`.
PRODUCER = "supsup_core"


def _json_safe(name: str, value: Any) -> Any:
    """``value`` after a JSON round trip; ConfigError naming ``name`` if it cannot be encoded."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConfigError(name, "JSON-serialisable values (str, numbers, lists, dicts; no NaN)", str(exc)) from None


def _task_accuracy_attrs(accuracies: Mapping[Any, Any] | None, n_tasks: int) -> dict[int, dict[str, Any]]:
    """Normalise ``{task: float | {name: float}}`` into per-task attrs ``{"accuracy": {name: float}}``."""
    attrs: dict[int, dict[str, Any]] = {}
    if accuracies is None:
        return attrs
    if not isinstance(accuracies, Mapping):
        raise ConfigError("accuracies", "a mapping {task: accuracy or {name: accuracy}}", type(accuracies).__name__)
    for key, value in accuracies.items():
        try:
            task = int(key)
        except (TypeError, ValueError):
            raise ConfigError("accuracies", "task keys convertible to int", repr(key)) from None
        if not 0 <= task < n_tasks:
            raise ConfigError("accuracies", f"task keys in 0..{n_tasks - 1}", task)
        named = value if isinstance(value, Mapping) else {"gg": value}
        clean: dict[str, float] = {}
        for name, acc in named.items():
            if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= float(acc) <= 1.0:
                raise ConfigError(f"accuracies[{task}][{name!r}]", "a number in [0, 1]", acc)
            clean[str(name)] = float(acc)
        attrs[task] = {"accuracy": clean}
    return attrs


def benchmark_metadata(stream: Any, train_seed: int) -> dict[str, Any]:
    """The ``benchmark`` metadata of a bank trained on ``stream``: its description, the training seed and the split."""
    description = stream.describe()
    split = _SPLITS.get(str(description.get("data_source", "")).split(":", 1)[0], "the data's own train / test split")
    return {**description, "train_seed": train_seed, "split": split}


#: How each kind of data is split into training and test images (recorded in banks for readers).
_SPLITS = {
    "mnist": "embedded: first 400 per digit train, last 100 test",
    "mnist-full": "the standard 60,000 train / 10,000 test images",
    "idx": "IDX train / t10k files",
    "digits": "per digit, the first 80 % in file order train, the rest test",
    "cifar10": "the official 50,000 train / 10,000 test images",
    "cifar100": "the official 50,000 train / 10,000 test images",
    "imagefolder": "train/ and val/ folders",
}


def save_masks(
    model: SupSupNet,
    path: str | os.PathLike,
    backend: str = "hdf5-packed",
    benchmark: Mapping[str, Any] | None = None,
    accuracies: Mapping[Any, Any] | None = None,
    overwrite: bool = False,
    *,
    training: Mapping[str, Any] | None = None,
):
    """Write every finished mask of ``model`` to a new mask bank at ``path``.

    Parameters
    ----------
    model : SupSupNet
        The model; all its finished tasks are saved as ``"0"``, ``"1"``, ...
    path : path-like
        Destination file.
    backend : str
        A hopfield_masks backend id (``"hdf5-packed"``, ``"hdf5-sparse"``, ...).
    benchmark : mapping, optional
        JSON-safe description of the data (e.g. ``stream.describe()`` plus the training seed).
    accuracies : mapping, optional
        ``{task: accuracy}`` (stored as ``gg``) or ``{task: {name: accuracy}}``, written to task attrs.
    overwrite : bool
        Replace an existing file (atomically) instead of failing.
    training : mapping, optional
        JSON-safe training description (scenario, TrainConfig dict), stored under ``training``.

    Returns
    -------
    dict
        The metadata written.
    """
    if not isinstance(model, SupSupNet):
        raise ConfigError("model", "a SupSupNet", type(model).__name__)
    n_tasks = model.num_tasks
    if n_tasks == 0:
        raise ConfigError("model", "a model with at least one finished task", "a model with 0 tasks")
    metadata = {
        **model_metadata(model),
        "n_tasks": n_tasks,
        "benchmark": _json_safe("benchmark", dict(benchmark) if benchmark is not None else {}),
        "training": _json_safe("training", dict(training) if training is not None else {}),
    }
    task_attrs = _task_accuracy_attrs(accuracies, n_tasks)
    if path is None:
        raise ConfigError("path", "a file path for the mask bank", None)
    with create_bank(path, backend=backend, metadata=metadata, overwrite=overwrite) as bank:
        for task in range(n_tasks):
            write_bank_task(bank, str(task), model.export_masks(task), model.export_statistics(task),
                            attrs=task_attrs.get(task, {}))
    return metadata


def model_metadata(model: SupSupNet) -> dict[str, Any]:
    """The metadata keys that describe ``model`` (producer, versions, model, architecture, base fingerprint, and its
    calibrated unknown-task threshold if it has one)."""
    out = {
        "producer": PRODUCER,
        "supsup_core_version": __version__,
        "torch_version": torch.__version__,
        "model": _json_safe("model", model.spec),
        "architecture": model.architecture(),
        "base_fingerprint": model.base_fingerprint(),
    }
    if model.unknown_threshold is not None:
        out["unknown_threshold"] = model.unknown_threshold.to_dict()
    return out


#: Attachments holding a task's per-task batch-norm statistics are named this prefix plus the task's name.
STATISTICS_PREFIX = "statistics-"


def write_bank_task(bank: Any, name: str, masks: Mapping[str, Any], statistics: Mapping[str, Any] | None = None,
                    *, attrs: Mapping[str, Any] | None = None) -> None:
    """Write one task: its masks, and its per-task batch-norm statistics (if any) as the attachment beside it."""
    bank.write_task(name, masks, attrs=attrs)
    if statistics:
        layers = list(statistics)

        def writer(group: Any) -> None:
            group.attrs["layers"] = json.dumps(layers)
            for i, layer in enumerate(layers):
                group.create_dataset(str(i), data=np.asarray(statistics[layer], dtype=np.float32))

        bank.write_attachment(STATISTICS_PREFIX + name, writer, overwrite=True)


def read_bank_statistics(bank: Any, name: str, expected: Mapping[str, int], source: str) -> dict[str, np.ndarray]:
    """Task ``name``'s batch-norm statistics ``{layer: float32 (2, C)}`` for the norms ``expected`` ``{layer: C}``.

    Every layer name and shape is checked before any data is read; a missing attachment,
    another set of layers or a bad shape is a :class:`BaseNetworkMismatchError` naming the file.
    """
    if not expected:
        return {}
    attachment = STATISTICS_PREFIX + name

    def reader(group: Any) -> dict[str, np.ndarray]:
        try:
            layers = json.loads(group.attrs["layers"])
        except (KeyError, TypeError, ValueError):
            raise BaseNetworkMismatchError(f"{source}: attachment {attachment!r} has no readable 'layers' list") from None
        if not isinstance(layers, list) or layers != list(expected):
            raise BaseNetworkMismatchError(
                f"{source}: task {name!r} holds statistics of {layers!r}, the model's batch norms are {list(expected)}")
        out = {}
        for i, layer in enumerate(layers):
            ds = group.get(str(i))
            shape = (2, expected[layer])
            if ds is None or not hasattr(ds, "shape") or tuple(ds.shape) != shape or ds.dtype != np.float32:
                got = "nothing" if ds is None else f"{getattr(ds, 'dtype', '?')} {getattr(ds, 'shape', '?')}"
                raise BaseNetworkMismatchError(f"{source}: statistics of {layer!r} (task {name!r}): expected float32 {shape}, "
                                               f"received {got}")
            out[layer] = np.asarray(ds[()], dtype=np.float32)
        return out

    if attachment not in bank.attachments():
        raise BaseNetworkMismatchError(f"{source}: task {name!r} has no batch-norm statistics ({attachment!r} is missing)")
    return bank.read_attachment(attachment, reader)


def _check_producer(metadata: Mapping[str, Any], source: str) -> None:
    missing = [k for k in ("model", "base_fingerprint") if k not in metadata]
    if metadata.get("producer") != PRODUCER or missing:
        raise ConfigError(
            source,
            "a mask bank written by supsup_core.persistence.save_masks (metadata with 'model' and 'base_fingerprint')",
            f"producer {metadata.get('producer')!r}, missing keys {missing}",
        )


def _bank_task_names(bank: Any, source: str) -> list[str]:
    names = list(bank.tasks())
    expected = [str(i) for i in range(len(names))]
    if names != expected:
        raise ConfigError(source, f"tasks named {expected[:3]}... in order", names[:5])
    return names


def read_bank_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The producer metadata of the bank at ``path`` (checked to come from :func:`save_masks`)."""
    with open_bank(path, "r") as bank:
        metadata = dict(bank.metadata)
    _check_producer(metadata, str(path))
    return metadata


def stored_accuracies(path: str | os.PathLike) -> dict[int, dict[str, float]]:
    """``{task: {name: accuracy}}`` from the task attrs of the bank at ``path`` (tasks without any are skipped)."""
    out: dict[int, dict[str, float]] = {}
    with open_bank(path, "r") as bank:
        for name in _bank_task_names(bank, str(path)):
            acc = bank.task_attrs(name).get("accuracy")
            if acc:
                out[int(name)] = {str(k): float(v) for k, v in acc.items()}
    return out


def _config_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(stored) | set(current))
    return [
        f"{k}: file has {stored.get(k)!r}, model has {current.get(k)!r}" for k in keys if stored.get(k) != current.get(k)
    ]


def _first_layer_difference(stored: Any, current: list[dict[str, Any]]) -> str | None:
    """The first layer where a bank's recorded architecture and a model's differ, described; None if equal."""
    if not isinstance(stored, list):
        return "the file's 'architecture' is not a list of layers"
    for i in range(max(len(stored), len(current))):
        a = stored[i] if i < len(stored) else None
        b = current[i] if i < len(current) else None
        if a != b:
            if a is None:
                return f"layer {i} {b.get('name')!r} ({b.get('type')}): the file has no such layer"
            if b is None:
                return f"layer {i} {a.get('name') if isinstance(a, dict) else a!r}: the model has no such layer"
            name = a.get("name") if isinstance(a, dict) else a
            what = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)] if isinstance(a, dict) else ["layer"]
            return (f"layer {i} {name!r}: file has "
                    f"{', '.join(f'{k} {a.get(k)!r}' for k in what) if isinstance(a, dict) else repr(a)}, model has "
                    f"{', '.join(f'{k} {b.get(k)!r}' for k in what)}")
    return None


def check_same_model(model: SupSupNet, metadata: Mapping[str, Any], path: str | os.PathLike) -> None:
    """Refuse a model that is not the one the bank's masks were made for (architecture, description, base weights).

    Raises
    ------
    BaseNetworkMismatchError
        Naming the first layer that differs, the configuration fields that differ, or
        the base-weight fingerprints.
    """
    stored = metadata["model"]
    if isinstance(stored, Mapping) and spec_kind(stored) == "builtin" and model.config is not None:
        try:
            stored_config = ModelConfig.from_dict(dict(stored)).to_dict()  # old banks lack newer fields: their defaults
        except ConfigError:
            stored_config = dict(stored)
        differences = _config_differences(stored_config, model.config.to_dict())
    elif isinstance(stored, Mapping):
        differences = _config_differences(dict(stored.get("wrap") or {}), model.wrap_config.to_dict())
    else:
        differences = [f"model: file has {stored!r}"]
    if "architecture" in metadata:  # banks written before it was recorded are compared by configuration only
        layer = _first_layer_difference(metadata["architecture"], model.architecture())
        if layer:
            differences.append(f"first differing {layer}")
    if differences:
        raise BaseNetworkMismatchError(f"{path}: masks were made for a different base network ({'; '.join(differences)})")
    fingerprint = model.base_fingerprint()
    if fingerprint != metadata["base_fingerprint"]:
        raise BaseNetworkMismatchError(
            f"{path}: base weights differ although the configuration matches (fingerprint: file has "
            f"{str(metadata['base_fingerprint'])[:16]}..., model has {fingerprint[:16]}...; torch "
            f"{metadata.get('torch_version')} wrote the file, this is torch {torch.__version__})"
        )


#: Most tasks read and unpacked at a time when a bank is loaded (the rest are held packed, P / 8 bytes each) ...
TASKS_PER_CHUNK = 16
#: ... and most mask entries unpacked at a time (4 FC 1024-1024 tasks, 16 LeNet 300-100 tasks).
CHUNK_ENTRIES = 1 << 23


def load_masks_into(model: SupSupNet, path: str | os.PathLike, chunk: int = TASKS_PER_CHUNK) -> dict[str, Any]:
    """Append the masks of the bank at ``path`` to ``model`` after checking it has the same base network.

    Tasks are read ``chunk`` at a time (fewer for large models, :data:`CHUNK_ENTRIES`) and
    packed straight into the model's buffers (reserved once), so loading needs the packed
    bank plus a few unpacked tasks, never a boolean stack of every task (775 MB for 250
    LeNet tasks, against 8.3 MB packed).

    Raises
    ------
    BaseNetworkMismatchError
        The model's configuration (architecture, sizes, seed, init, mask mode...) or its
        base-weight fingerprint differs from the file's; the message names what differs.

    Returns
    -------
    dict
        The bank's metadata.
    """
    if not isinstance(model, SupSupNet):
        raise ConfigError("model", "a SupSupNet", type(model).__name__)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError("chunk", "an integer >= 1", chunk)
    norms = {name: norm.num_features for name, norm in model.norm_layers().items()}
    with open_bank(path, "r") as bank:
        metadata = dict(bank.metadata)
        _check_producer(metadata, str(path))
        check_same_model(model, metadata, path)
        rule = None
        if metadata.get("unknown_threshold") is not None:  # checked before anything is loaded
            from .inference.predict import UnknownThreshold

            rule = UnknownThreshold.from_dict(metadata["unknown_threshold"])
        names = _bank_task_names(bank, str(path))
        model.reserve_tasks(model.num_tasks + len(names))
        entries = sum(layer.mask_numel for layer in model.masked_layers().values())
        step = max(1, min(chunk, CHUNK_ENTRIES // max(entries, 1)))
        for start in range(0, len(names), step):  # a few tasks unpacked at a time: memory O(packed bank)
            part = names[start : start + step]
            statistics = [read_bank_statistics(bank, name, norms, str(path)) for name in part] if norms else None
            model.import_masks([bank.read_task(name) for name in part], statistics)
            release_free_memory()  # the unpacked chunk's pages go back to the OS (supsup_core.heap)
    if rule is not None:
        model.unknown_threshold = rule
    return metadata


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", chunk: int = TASKS_PER_CHUNK, *, factory: str | None = None
) -> tuple[SupSupNet, dict[str, Any]]:
    """Rebuild the model described by the bank at ``path`` with all its masks.

    Built-in networks are rebuilt from their configuration; a model a user's factory made
    needs that ``factory`` (``"MODULE:FACTORY"``) again; a module wrapped in Python cannot
    be rebuilt here (wrap it again and call :func:`load_masks_into`).

    Returns
    -------
    (SupSupNet, dict)
        The model on ``device`` (eval mode, no current task), and the bank's metadata.
    """
    metadata = read_bank_metadata(path)
    spec = metadata.get("model")
    if not isinstance(spec, Mapping):
        raise ConfigError(str(path), "a 'model' entry that is a JSON object", type(spec).__name__)
    if spec_kind(spec) == "builtin":
        config = ModelConfig.from_dict(dict(spec))
        check_declared_model(config, path)  # a crafted config could ask for a model of any size
        model = build_model(config)
    else:
        model = model_from_spec(spec, factory)
    model = model.to(device)
    load_masks_into(model, path, chunk)
    model.eval()
    return model, metadata


#: Largest base network (weight entries) :func:`load_model` builds from a bank's metadata.
MAX_MODEL_ENTRIES = 200_000_000


def check_declared_model(config: ModelConfig, path: str | os.PathLike) -> None:
    """Refuse a bank whose metadata declares a model that its own masks do not describe, before building it.

    The model is first built on PyTorch's ``meta`` device (shapes only, no memory); its
    masked layers' shapes must equal the layout of the bank's first task (which the
    file's stored bytes bound), and its size must stay under :data:`MAX_MODEL_ENTRIES`.
    Only then is the real model built and its base-weight fingerprint compared.

    Raises
    ------
    BaseNetworkMismatchError
        The declared model is not the one the masks were made for, or is too large.
    """
    try:
        with torch.device("meta"):
            skeleton = build_model(config)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(str(path), "a 'model' configuration that builds", str(exc).splitlines()[0]) from None
    shapes = {name: tuple(layer.mask_shape) for name, layer in skeleton.masked_layers().items()}
    entries = sum(int(p.numel()) for p in skeleton.parameters()) + sum(int(b.numel()) for b in skeleton.buffers())
    if entries > MAX_MODEL_ENTRIES:
        raise BaseNetworkMismatchError(
            f"{path}: the metadata declares a model of {entries:,} entries, above "
            f"supsup_core.persistence.MAX_MODEL_ENTRIES = {MAX_MODEL_ENTRIES:,} (refused before building it)"
        )
    with open_bank(path, "r") as bank:
        names = bank.tasks()
        if not names:
            return
        layout = bank.task_layout(names[0])
    stored = dict(zip(layout.names, (tuple(s) for s in layout.shapes)))
    if stored != shapes:
        differ = sorted(k for k in set(stored) | set(shapes) if stored.get(k) != shapes.get(k))[:3]
        raise BaseNetworkMismatchError(
            f"{path}: the metadata's model does not match the stored masks (layers {differ}: masks have "
            f"{[stored.get(k) for k in differ]}, the model {[shapes.get(k) for k in differ]}); refused before building it"
        )


def stream_from_metadata(metadata: Mapping[str, Any], data_dir: str | os.PathLike | None = None, *, data: Any = None) -> Any:
    """Rebuild the task stream a bank's ``benchmark`` metadata describes (``TaskStream.describe()`` keys).

    Parameters
    ----------
    metadata : mapping
        A bank's metadata (from :func:`load_model` or :func:`read_bank_metadata`).
    data_dir : path-like, optional
        The data to use instead of the recorded ``data_source``: a data spec
        (``"cifar100:/data/cifar-100-python"``) or an MNIST IDX folder (needed when the
        recorded files are not on this machine).
    data : ImageData or ImageFolderData, optional
        Loaded data to use instead (takes precedence over ``data_dir``).

    Raises
    ------
    ConfigError
        The metadata has no usable benchmark description, or names a stream made in Python.
    DataError
        The recorded data cannot be found or read (the message names it).
    """
    from .data import load_data, load_mnist, stream_from_description  # local: persistence works without the data code

    bench = metadata.get("benchmark") if isinstance(metadata, Mapping) else None
    if not isinstance(bench, Mapping) or "stream" not in bench or "n_tasks" not in bench:
        raise ConfigError("metadata", "a 'benchmark' entry with 'stream' and 'n_tasks' (written by save_masks)", bench)
    if data is None and data_dir is not None:
        data = load_mnist(Path(data_dir)) if isinstance(data_dir, os.PathLike) else load_data(str(data_dir))
    if data is None and "data_source" not in bench:
        data = load_mnist()  # banks written before data specs: the embedded subset unless a folder was recorded
    if data is None:
        recorded = str(bench["data_source"])
        try:
            data = load_data(recorded)
        except DataError as exc:
            raise DataError(f"the masks were trained on {recorded!r}, which cannot be read here ({exc}); pass the "
                            f"same data from where it is on this machine (a data spec such as "
                            f"{recorded.split(':', 1)[0]}:PATH)") from None
    return stream_from_description(bench, data)
