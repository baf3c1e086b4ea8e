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

import contextlib
import json
import os
from pathlib import Path
from collections.abc import Iterator, Mapping
from typing import Any

import torch

import numpy as np

from hopfield_masks.backends import create_bank, open_bank

from . import __version__
from .config import ModelConfig
from .errors import BaseNetworkMismatchError, ConfigError, DataError
from .validate import check_float
from .heap import release_free_memory
from .models import MAX_MODEL_ENTRIES, SupSupNet, build_model, model_entries, model_from_spec, skeleton_model, spec_kind
from .wrapping import WrapConfig

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
    "check_model_fits",
    "nns_task_to_mask",
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
            check_float(f"accuracies[{task}][{name!r}]", acc, low=0, high=1)
            clean[str(name)] = float(acc)
        attrs[task] = {"accuracy": clean}
    return attrs


def benchmark_metadata(stream: Any, train_seed: int) -> dict[str, Any]:
    """The ``benchmark`` metadata of a bank trained on ``stream``: its description, the training seed and the split."""
    description = stream.describe()
    kind = str(description.get("data_source", "")).split("@", 1)[0].split(":", 1)[0]
    split = _SPLITS.get(kind, "the data's own train / test split")
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
            values = np.asarray(ds[()], dtype=np.float32)
            if not np.isfinite(values).all() or (values[1] < 0).any():
                bad = "NaN or infinite values" if not np.isfinite(values).all() else "a negative variance"
                raise BaseNetworkMismatchError(f"{source}: statistics of {layer!r} (task {name!r}): expected finite means "
                                               f"and variances >= 0, received {bad}")
            out[layer] = values
        return out

    if attachment not in bank.attachments():
        raise BaseNetworkMismatchError(f"{source}: task {name!r} has no batch-norm statistics ({attachment!r} is missing)")
    return bank.read_attachment(attachment, reader)


#: The type each metadata entry a supsup_core bank may hold must have (checked before any entry is used).
_ENTRY_TYPES: dict[str, tuple[type, str]] = {
    "model": (Mapping, "a JSON object"),
    "base_fingerprint": (str, "a string"),
    "architecture": (list, "a list of layers"),
    "benchmark": (Mapping, "a JSON object"),
    "training": (Mapping, "a JSON object"),
    "unknown_threshold": (Mapping, "a JSON object"),
    "n_tasks": (int, "an integer"),
}


def _check_producer(metadata: Mapping[str, Any], source: str) -> None:
    missing = [k for k in ("model", "base_fingerprint") if k not in metadata]
    if metadata.get("producer") != PRODUCER or missing:
        raise ConfigError(
            source,
            "a mask bank written by supsup_core.persistence.save_masks (metadata with 'model' and 'base_fingerprint')",
            f"producer {metadata.get('producer')!r}, missing keys {missing}",
        )
    for key, (kind, text) in _ENTRY_TYPES.items():
        value = metadata.get(key)
        if key in metadata and value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise ConfigError(source, f"a '{key}' entry in its metadata that is {text}", type(value).__name__)
    training = metadata.get("training") or {}
    if training.get("nns") is not None and not isinstance(training["nns"], Mapping):
        raise ConfigError(source, "a 'training.nns' entry in its metadata that is a JSON object", type(training["nns"]).__name__)


@contextlib.contextmanager
def _entry(source: str | os.PathLike, key: str) -> Iterator[None]:
    """Name the bank and the metadata entry in an error raised while an entry of its metadata is parsed."""
    try:
        yield
    except ConfigError as exc:
        raise ConfigError(str(source), f"a valid '{key}' entry in its metadata", str(exc)) from None


def nns_task_to_mask(metadata: Mapping[str, Any], n_masks: int, source: str | os.PathLike) -> dict[int, int] | None:
    """An NNs bank's map from stream task to mask (``training.nns.task_to_mask``), checked; None for other banks."""
    nns = (metadata.get("training") or {}).get("nns")
    if nns is None:
        return None
    raw = nns.get("task_to_mask")
    out: dict[int, int] = {}
    if isinstance(raw, Mapping):
        for task, mask in raw.items():
            if not (isinstance(task, str) and task.isascii() and task.isdecimal()) or isinstance(mask, bool) \
                    or not isinstance(mask, int) or not 0 <= mask < n_masks:
                raise ConfigError(str(source), f"a 'training.nns.task_to_mask' of stream tasks to masks 0..{n_masks - 1}",
                                  f"{task!r}: {mask!r}")
            out[int(task)] = mask
        return out
    raise ConfigError(str(source), "a 'training.nns.task_to_mask' JSON object", type(raw).__name__)


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
        if a == b:
            continue
        if a is not None and not isinstance(a, dict):
            return f"layer {i}: the file has {a!r} where a layer description (a JSON object) belongs"
        if a is None:
            return f"layer {i} {b.get('name')!r} ({b.get('type')}): the file has no such layer"
        if b is None:
            return f"layer {i} {a.get('name')!r}: the model has no such layer"
        what = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        return (f"layer {i} {a.get('name')!r}: file has {', '.join(f'{k} {a.get(k)!r}' for k in what)}, model has "
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

            with _entry(path, "unknown_threshold"):
                rule = UnknownThreshold.from_dict(metadata["unknown_threshold"])
        names = _bank_task_names(bank, str(path))
        layout = {name: tuple(layer.mask_shape) for name, layer in model.masked_layers().items()}
        for name in names:  # every task's layers and statistics, before anything is loaded
            stored = bank.task_layout(name)
            if dict(zip(stored.names, (tuple(s) for s in stored.shapes))) != layout:
                raise BaseNetworkMismatchError(f"{path}: task {name!r} holds layers {list(stored.names)[:4]} of other "
                                               "shapes than the model's masked layers")
        first = model.num_tasks
        model.reserve_tasks(first + len(names))
        entries = sum(layer.mask_numel for layer in model.masked_layers().values())
        step = max(1, min(chunk, CHUNK_ENTRIES // max(entries, 1)))
        try:
            for start in range(0, len(names), step):  # a few tasks unpacked at a time: memory O(packed bank)
                part = names[start : start + step]
                statistics = [read_bank_statistics(bank, name, norms, str(path)) for name in part] if norms else None
                with _entry(path, f"statistics of tasks {part[0]}..{part[-1]}"):
                    model.import_masks([bank.read_task(name) for name in part], statistics)
                release_free_memory()  # the unpacked chunk's pages go back to the OS (supsup_core.heap)
        except BaseException:
            model.drop_tasks(first)  # nothing half-loaded: the model is as it was
            raise
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
        if factory is not None:
            raise ConfigError("model", f"no MODULE:FACTORY for a bank of the built-in {str(spec.get('arch'))!r}", repr(factory))
        with _entry(path, "model"):
            config = ModelConfig.from_dict(dict(spec))
        check_declared_model(config, path)  # a crafted config could ask for a model of any size
        model = build_model(config)
    else:
        if factory is not None:
            with _entry(path, "model.wrap"):
                WrapConfig.from_dict(spec.get("wrap") or {})
        model = model_from_spec(spec, factory)
    model = model.to(device)
    load_masks_into(model, path, chunk)
    model.eval()
    return model, metadata


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
        skeleton = skeleton_model(config)
    except (RuntimeError, ValueError, TypeError, NotImplementedError) as exc:
        raise ConfigError(str(path), "a 'model' configuration that builds", str(exc).splitlines()[0]) from None
    shapes = {name: tuple(layer.mask_shape) for name, layer in skeleton.masked_layers().items()}
    entries = model_entries(skeleton)
    if entries > MAX_MODEL_ENTRIES:
        raise BaseNetworkMismatchError(
            f"{path}: the metadata declares a model of {entries:,} entries, above "
            f"supsup_core.models.MAX_MODEL_ENTRIES = {MAX_MODEL_ENTRIES:,} (refused before building it)"
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
                            f"{recorded.split(':', 1)[0].split('@', 1)[0]}:PATH)") from None
        except ConfigError as exc:
            raise ConfigError("benchmark", "a 'data_source' entry that is a data spec", str(exc)) from None
    else:
        _check_same_data(bench, data)
    try:
        return stream_from_description(bench, data)
    except ConfigError as exc:
        raise ConfigError("benchmark", "a description of a stream this toolkit can rebuild", str(exc)) from None


def _check_same_data(bench: Mapping[str, Any], data: Any) -> None:
    """Refuse data given in place of a bank's recorded data when its sizes show it is other data."""
    for key in ("n_train", "n_test"):
        recorded, found = bench.get(key), getattr(data, key, None)
        if isinstance(recorded, int) and isinstance(found, int) and recorded != found:
            raise DataError(f"data: expected the data the masks were trained on ({bench.get('data_source')!r}: "
                            f"{bench.get('n_train')} training and {bench.get('n_test')} test images), received "
                            f"{getattr(data, 'source', type(data).__name__)!r} with {data.n_train} and {data.n_test}")


def check_model_fits(model: SupSupNet, stream: Any, source: str | os.PathLike | None = None) -> None:
    """One test batch of the first task through ``model`` (every mask on), its labels within the outputs: a model
    rebuilt from a bank (``source``), or given for one, that does not fit the bank's data is refused before any
    evaluation."""
    x, y, _ = next(iter(stream.test_batches(0, 16)))
    try:
        with model.preserving_selection():
            model.eval()
            model.check_input(x.to(model.device), "data")
    except ConfigError as exc:
        if source is None or exc.argument != "model":
            raise
        raise ConfigError(str(source), f"a declared model whose forward returns {model.output_size} logits (its "
                          "output_size)", exc.received) from None
    if y.numel() and int(y.max()) >= model.output_size:
        raise ConfigError("data", f"labels within the model's {model.output_size} outputs", f"labels up to {int(y.max())}")
