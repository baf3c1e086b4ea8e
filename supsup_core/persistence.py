"""Save a model's learned masks to a hopfield_masks mask bank, and rebuild models from banks.

A bank written by :func:`save_masks` holds task ``"0"``, ``"1"``, ... (model task
order), each with the model's named layer masks, and producer metadata that
pins down everything needed to rebuild the base network and the benchmark:

``producer``
    ``"supsup_core"`` and ``supsup_core_version``, ``torch_version``;
``model``
    the :class:`~supsup_core.config.ModelConfig` dict (architecture, sizes, seed, init, mask mode);
``base_fingerprint``
    sha256 of the base weights (:meth:`SupSupNet.base_fingerprint`): a rebuilt network
    whose weights differ in any bit (other seed, other init, another torch RNG) is refused;
``benchmark``
    free-form description of where the masks came from (stream, seeds, split, data source);
``training``
    optional: the training configuration (scenario, TrainConfig dict);
``n_tasks``
    number of tasks.

Each task's attrs carry ``{"accuracy": {"gg": 0.97, ...}}`` when accuracies were given.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import torch

from hopfield_masks.backends import create_bank, open_bank

from . import __version__
from .config import ModelConfig
from .errors import BaseNetworkMismatchError, ConfigError
from .heap import release_free_memory
from .models import SupSupNet, build_model

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
    embedded = str(stream.data.source).startswith("embedded")
    split = "embedded: first 400 per digit train, last 100 test" if embedded else "IDX train / t10k files"
    return {**stream.describe(), "train_seed": train_seed, "split": split}


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
        "producer": PRODUCER,
        "supsup_core_version": __version__,
        "torch_version": torch.__version__,
        "model": model.config.to_dict(),
        "base_fingerprint": model.base_fingerprint(),
        "n_tasks": n_tasks,
        "benchmark": _json_safe("benchmark", dict(benchmark) if benchmark is not None else {}),
        "training": _json_safe("training", dict(training) if training is not None else {}),
    }
    task_attrs = _task_accuracy_attrs(accuracies, n_tasks)
    if path is None:
        raise ConfigError("path", "a file path for the mask bank", None)
    with create_bank(path, backend=backend, metadata=metadata, overwrite=overwrite) as bank:
        for task in range(n_tasks):
            bank.write_task(str(task), model.export_masks(task), attrs=task_attrs.get(task, {}))
    return metadata


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
    with open_bank(path, "r") as bank:
        metadata = dict(bank.metadata)
        _check_producer(metadata, str(path))
        differences = _config_differences(metadata["model"], model.config.to_dict())
        if differences:
            raise BaseNetworkMismatchError(
                f"{path}: masks were made for a different base network ({'; '.join(differences)})"
            )
        fingerprint = model.base_fingerprint()
        if fingerprint != metadata["base_fingerprint"]:
            raise BaseNetworkMismatchError(
                f"{path}: base weights differ although the configuration matches (fingerprint: file has "
                f"{metadata['base_fingerprint'][:16]}..., model has {fingerprint[:16]}...; torch "
                f"{metadata.get('torch_version')} wrote the file, this is torch {torch.__version__})"
            )
        names = _bank_task_names(bank, str(path))
        model.reserve_tasks(model.num_tasks + len(names))
        entries = sum(layer.mask_numel for layer in model.masked_layers().values())
        step = max(1, min(chunk, CHUNK_ENTRIES // max(entries, 1)))
        for start in range(0, len(names), step):  # a few tasks unpacked at a time: memory O(packed bank)
            model.import_masks([bank.read_task(name) for name in names[start : start + step]])
            release_free_memory()  # the unpacked chunk's pages go back to the OS (supsup_core.heap)
    return metadata


def load_model(
    path: str | os.PathLike, device: str | torch.device = "cpu", chunk: int = TASKS_PER_CHUNK
) -> tuple[SupSupNet, dict[str, Any]]:
    """Rebuild the model described by the bank at ``path`` (base network from its config) with all its masks.

    Returns
    -------
    (SupSupNet, dict)
        The model on ``device`` (eval mode, no current task), and the bank's metadata.
    """
    metadata = read_bank_metadata(path)
    if not isinstance(metadata.get("model"), Mapping):
        raise ConfigError(str(path), "a 'model' entry that is a JSON object", type(metadata.get("model")).__name__)
    config = ModelConfig.from_dict(dict(metadata["model"]))
    check_declared_model(config, path)  # a crafted config could ask for a model of any size
    model = build_model(config).to(device)
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


def stream_from_metadata(metadata: Mapping[str, Any], data_dir: str | os.PathLike | None = None) -> Any:
    """Rebuild the task stream a bank's ``benchmark`` metadata describes (``TaskStream.describe()`` keys).

    Parameters
    ----------
    metadata : mapping
        A bank's metadata (from :func:`load_model` or :func:`read_bank_metadata`).
    data_dir : path-like, optional
        MNIST IDX folder to use instead of the recorded data source (needed when the
        recorded folder is not on this machine).

    Raises
    ------
    ConfigError
        The metadata has no usable benchmark description.
    """
    from .data import load_mnist, make_stream  # local: persistence works without touching the data code

    bench = metadata.get("benchmark") if isinstance(metadata, Mapping) else None
    if not isinstance(bench, Mapping) or "stream" not in bench or "n_tasks" not in bench:
        raise ConfigError("metadata", "a 'benchmark' entry with 'stream' and 'n_tasks' (written by save_masks)", bench)
    source = data_dir
    if source is None:
        recorded = str(bench.get("data_source", "embedded"))
        source = None if recorded.startswith("embedded") else recorded
    options = {}
    if bench.get("degrees_per_task") is not None:
        options["degrees_per_task"] = float(bench["degrees_per_task"])
    seed = bench.get("seed")
    return make_stream(
        str(bench["stream"]), int(bench["n_tasks"]), load_mnist(source), seed=1 if seed is None else int(seed), **options
    )
