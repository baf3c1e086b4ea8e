"""The wrapped model: :class:`SupSupNet`, a module whose layers hold one supermask per task over a frozen base.

:func:`~supsup_core.wrapping.wrap` makes one from any ``nn.Module``; the built-in
networks (:mod:`supsup_core.models`) are plain modules wrapped the same way.  The
module's own ``forward`` runs unchanged: which masks it applies is the model's
*selection* (one task, the task in training, or a superposition), set on every
task layer at once.

Task layers hold per-task state: the masked layers (:class:`~supsup_core.layers.MaskedLayer`,
a packed bit mask per task) and the per-task batch norms
(:class:`~supsup_core.layers.norm.TaskBatchNorm`, running statistics per task).
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..layers import FixedConv, FixedLinear, MaskedConv, MaskedLayer, UnitMask
from ..layers.norm import BatchStatNorm, FrozenNorm, TaskBatchNorm, TaskStatistics
from .config import WrapConfig

__all__ = ["SupSupNet", "TaskState", "task_seed"]


def task_seed(seed: int, task: int) -> int:
    """The 64-bit seed of task ``task``'s score generator, mixed from ``(seed, task)`` by SeedSequence.

    Examples
    --------
    >>> task_seed(0, 1) == task_seed(0, 1) != task_seed(1, 0)
    True
    """
    words = np.random.SeedSequence([int(seed), int(task)]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 32 | int(words[1])


@dataclass
class TaskState:
    """One trained task: ``masks`` ``{layer: bool tensor}`` and ``statistics`` ``{norm layer: (2, C) float32 tensor}``."""

    masks: dict[str, torch.Tensor]
    statistics: dict[str, torch.Tensor] = field(default_factory=dict)

    def numpy(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The masks and statistics as CPU NumPy arrays."""
        return ({k: v.cpu().numpy() for k, v in self.masks.items()},
                {k: v.detach().cpu().numpy().astype(np.float32) for k, v in self.statistics.items()})


_FROZEN = (FixedLinear, FixedConv, FrozenNorm, BatchStatNorm, nn.LayerNorm, nn.GroupNorm)


def _base_tensors(layer: nn.Module) -> list[torch.Tensor]:
    """The frozen tensors of a converted layer that define the base network (what the fingerprint hashes)."""
    if isinstance(layer, FrozenNorm):
        return [t for t in layer.inner.buffers() if t is not None]
    return [t for t in (getattr(layer, "weight", None), getattr(layer, "bias", None)) if isinstance(t, torch.Tensor)]


def _entry(name: str, layer: nn.Module) -> dict[str, Any]:
    """One layer of :meth:`SupSupNet.architecture`."""
    entry: dict[str, Any] = {"name": name, "type": type(layer).__name__}
    if isinstance(layer, MaskedLayer):
        entry["shape"] = list(layer.mask_shape)
    elif isinstance(layer, (FixedLinear, FixedConv)):
        entry["shape"] = list(layer.weight.shape)
    elif isinstance(layer, (TaskBatchNorm, BatchStatNorm)):
        entry["shape"] = [layer.num_features]
    elif isinstance(layer, FrozenNorm):
        entry["shape"] = [int(t.numel()) for t in _base_tensors(layer)[:1]]
    elif isinstance(layer, nn.LayerNorm):
        entry["shape"] = list(layer.normalized_shape)
    elif isinstance(layer, nn.GroupNorm):
        entry["shape"] = [layer.num_groups, layer.num_channels]
    if isinstance(layer, (MaskedConv, FixedConv)):
        entry["geometry"] = layer.geometry.describe()
    if isinstance(layer, (MaskedLayer, FixedLinear, FixedConv, TaskBatchNorm, BatchStatNorm)):
        entry["bias"] = getattr(layer, "bias", None) is not None
    return entry


class SupSupNet(nn.Module):
    """A wrapped module: frozen base, one supermask per task (made by :func:`~supsup_core.wrapping.wrap`).

    Parameters
    ----------
    module : nn.Module
        The converted module (its layers already replaced by :func:`~supsup_core.wrapping.convert.convert_module`).
    config : WrapConfig
        How it was wrapped.
    spec : mapping
        JSON-safe description of where the module came from (a built-in's
        :class:`~supsup_core.config.ModelConfig`, a ``"factory"``, or a ``"module"`` class
        name), recorded in banks.
    output_size : int
        Number of outputs.

    Notes
    -----
    Life cycle: :meth:`add_task` creates float scores for a new task (the only float
    scores the model ever holds) and selects it; the caller trains
    :meth:`score_parameters`; :meth:`finish_task` binarises, packs and frees them.
    :meth:`set_task` selects one mask, :meth:`set_alphas` a superposition.
    Persist masks with :meth:`export_masks` / :meth:`import_masks` (and
    :meth:`export_statistics` for per-task batch norms); a state dict is not the
    storage format.  ``forward(*args, masks={layer: tensor}, **kwargs)`` runs the
    module with explicit masks for the named layers instead of the selection
    (gradients with respect to masks); every other argument goes to the module.
    """

    def __init__(self, module: nn.Module, config: WrapConfig, *, spec: Mapping[str, Any], output_size: int) -> None:
        super().__init__()
        if not isinstance(config, WrapConfig):
            raise ConfigError("config", "a WrapConfig", type(config).__name__)
        self.module = module
        self.wrap_config = config
        self.spec = dict(spec)
        self.output_size = int(output_size)
        self._num_tasks = 0
        self._training_task: int | None = None
        named = list(module.named_modules())
        self._masked: dict[str, MaskedLayer] = {n: m for n, m in named if isinstance(m, MaskedLayer)}
        self._norms: dict[str, TaskBatchNorm] = {n: m for n, m in named if isinstance(m, TaskBatchNorm)}
        self._converted: dict[str, nn.Module] = {n: m for n, m in named if isinstance(m, (MaskedLayer, TaskBatchNorm, *_FROZEN))}
        self._batch_stats: list[nn.Module] = [m for _, m in named if isinstance(m, (UnitMask, BatchStatNorm))]
        self._score_sums: dict[str, torch.Tensor] | None = None  # transfer: sum of the finished tasks' final scores
        self._transfer_count = 0
        self.unknown_threshold: Any = None  # an inference.predict.UnknownThreshold once calibrated (banks keep it)

    # ------------------------------------------------------------ description
    @property
    def config(self) -> Any:
        """The :class:`~supsup_core.config.ModelConfig` of a built-in network (None for other modules)."""
        if "arch" not in self.spec:
            return None
        from ..config import ModelConfig  # local: config imports nothing from here

        return ModelConfig.from_dict(self.spec)

    def masked_layers(self) -> dict[str, MaskedLayer]:
        """The layers that hold masks, by module path, in registration order."""
        return dict(self._masked)

    def norm_layers(self) -> dict[str, TaskBatchNorm]:
        """The per-task batch norms (running statistics per task), by module path."""
        return dict(self._norms)

    def task_layers(self) -> dict[str, nn.Module]:
        """Every layer with per-task state: masked layers first, then per-task batch norms."""
        return {**self._masked, **self._norms}

    def architecture(self) -> list[dict[str, Any]]:
        """One entry per converted layer (name, type, shape, conv geometry, bias): what a bank must match."""
        return [_entry(name, layer) for name, layer in self._converted.items()]

    def base_tensors(self) -> dict[str, list[torch.Tensor]]:
        """The frozen tensors defining the base network, by layer, in layer order, then the module's own buffers
        (a fixed projection, positional codes...) outside the converted layers."""
        out = {name: tensors for name, layer in self._converted.items() if (tensors := _base_tensors(layer))}
        converted = tuple(f"{name}." for name in self._converted if name)
        own = [t for name, t in self.module.named_buffers() if not name.startswith(converted)]
        if own:
            out["(module buffers)"] = own
        return out

    def base_weights(self) -> dict[str, torch.Tensor]:
        """The frozen base weights by layer name, in layer order (layers that have one)."""
        return {name: w for name, layer in self._converted.items() if isinstance(w := getattr(layer, "weight", None), torch.Tensor)
                and not isinstance(layer, (TaskBatchNorm, BatchStatNorm, UnitMask))}

    def base_fingerprint(self) -> str:
        """sha256 hex digest of the base tensors' CPU float32 bytes in layer order (weights, then any bias)."""
        digest = hashlib.sha256()
        for tensors in self.base_tensors().values():
            for t in tensors:
                digest.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    @property
    def device(self) -> torch.device:
        """Device of the model's buffers."""
        return next(self.buffers()).device

    @property
    def has_batch_statistics(self) -> bool:
        """True when outputs couple the images of a batch (unit masks, batch-statistics norms)."""
        return bool(self._batch_stats)

    # ---------------------------------------------------------------- forward
    def forward(self, *args: Any, masks: Mapping[str, torch.Tensor] | None = None, **kwargs: Any) -> Any:
        """The module's output; ``masks`` maps task-layer names to explicit masks (statistics for norms)."""
        if masks is None:
            return self.module(*args, **kwargs)
        layers = self.task_layers()
        unknown = set(masks) - set(layers)
        if unknown:
            raise ConfigError("masks", f"keys among the task layers {list(layers)[:8]}", sorted(unknown))
        for name, mask in masks.items():
            layers[name]._override = mask
        try:
            return self.module(*args, **kwargs)
        finally:
            for name in masks:
                layers[name]._override = None

    def check_input(self, x: Any, argument: str = "x") -> None:
        """Refuse ``x`` unless one forward of it, every mask on, returns float logits ``(B, output_size)``.

        Nothing changes (explicit all-on masks and neutral batch-norm statistics, no gradients).  Run
        before anything is written, it turns a model that does not fit its data into one line naming
        ``argument`` (or ``model``, for a forward that returns something other than logits).
        """
        if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 1:
            raise ConfigError(argument, "a non-empty batch tensor (B, ...)", getattr(x, "shape", type(x).__name__))
        device = self.device
        on = {name: torch.ones((), device=device).expand(layer.mask_shape) for name, layer in self._masked.items()}
        for name, norm in self._norms.items():
            neutral = norm.fresh_statistics()
            on[name] = TaskStatistics(neutral[0], neutral[1])
        try:
            with torch.no_grad():
                out = self(x, masks=on)
        except (RuntimeError, ValueError, TypeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(argument, "inputs the model accepts", f"{tuple(x.shape)} {x.dtype} (the model's forward "
                              f"fails: {first})") from None
        expected = (x.shape[0], self.output_size)
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or tuple(out.shape) != expected:
            got = f"{out.dtype} {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
            raise ConfigError("model", f"a module whose forward returns the logits, a float tensor {expected} "
                              f"(output_size {self.output_size}; set output_size when wrapping if it is not the last "
                              "layer's)", got)

    @contextlib.contextmanager
    def stacked(self, masks: Mapping[str, torch.Tensor], statistics: Mapping[str, torch.Tensor]) -> Iterator[None]:
        """Forward passes inside the block train ``K`` tasks at once (:mod:`supsup_core.training.batched`).

        The input holds the ``K`` tasks' batches one after another (``(K B, ...)``); each masked
        layer applies its ``(K, *mask_shape)`` stack in ``masks``, each per-task batch norm
        normalises every task's rows with their own statistics and updates that task's
        running statistics in ``statistics`` (``(K, 2, C)``), and batch-statistics layers
        use each task's own batch.  Parameter-free operations of the module act per sample, so
        the module's ``forward`` runs unchanged.
        """
        n_tasks = next(iter(masks.values())).shape[0] if masks else next(iter(statistics.values())).shape[0]
        layers = self.task_layers()
        if set(masks) != set(self._masked) or set(statistics) != set(self._norms):
            raise ConfigError("masks", f"a stack for every task layer {list(layers)}", sorted({*masks, *statistics}))
        for name, stack in {**masks, **statistics}.items():
            layers[name]._stack = stack
        for layer in self._batch_stats:
            if isinstance(layer, BatchStatNorm):
                layer._stack = n_tasks
        try:
            yield
        finally:
            for layer in (*layers.values(), *self._batch_stats):
                layer._stack = None

    # -------------------------------------------------------------- task life
    @property
    def num_tasks(self) -> int:
        """Number of finished (packed) tasks."""
        return self._num_tasks

    @property
    def training_task(self) -> int | None:
        """Index of the task whose float scores exist (being trained), or None."""
        return self._training_task

    def begin_task(self, index: int) -> list[nn.Parameter]:
        """Give every task layer a new task's starting state (scores of task ``index``'s seed) and select it.

        The finished tasks are not touched: :meth:`add_task` begins the next task of the
        model, a worker's scratch model begins any task of a stream (each from its own seeds).
        Returns the score parameters.
        """
        generator = torch.Generator().manual_seed(task_seed(self.wrap_config.seed, index))
        for name, layer in self._masked.items():  # layer order: each layer's draw follows the previous one's
            initial = None
            if self._score_sums is not None and self._transfer_count:
                initial = self._score_sums[name] / self._transfer_count  # SupSup Transfer: the earlier tasks' mean
            layer.start_task(generator, initial)
        for norm in self._norms.values():
            norm.start_task()
        return self.score_parameters()

    def end_task(self) -> TaskState:
        """Binarise the current scores into masks, take the norms' statistics, free both; nothing is appended."""
        masks: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for name, layer in self._masked.items():
                if layer.scores is None:
                    raise ConfigError("task", "a task being trained (begin_task or add_task first)", "no scores")
                masks[name] = layer.score_mask().detach() != 0
                if self.wrap_config.transfer:
                    if self._score_sums is None:
                        self._score_sums = {n: torch.zeros(m.mask_shape, device=m.packed.device) for n, m in self._masked.items()}
                    self._score_sums[name] += layer.scores.detach()
                layer.scores = None
        if self.wrap_config.transfer:
            self._transfer_count += 1
        statistics = {name: norm.take_statistics() for name, norm in self._norms.items()}
        return TaskState(masks, statistics)

    def add_task(self) -> int:
        """Create the next task's scores (and batch-norm statistics), select it, return its index."""
        if self._training_task is not None:
            raise ConfigError("add_task", "finish_task() before adding another task", f"task {self._training_task} in training")
        task = self._num_tasks
        self.begin_task(task)
        self._training_task = task
        return task

    def finish_task(self) -> int:
        """Binarise and pack the training task's masks, keep its statistics, free its scores, select it."""
        if self._training_task is None:
            raise ConfigError("finish_task", "a task in training (call add_task first)", "none")
        state = self.end_task()
        self._training_task = None
        self._append([state.masks], [state.statistics])
        task = self._num_tasks - 1
        self.set_task(task)
        return task

    def _append(self, masks: list[dict[str, torch.Tensor]], statistics: list[dict[str, torch.Tensor]]) -> None:
        """Append checked tasks to every task layer."""
        for name, layer in self._masked.items():
            layer.append_masks(torch.stack([m[name] for m in masks]))
        for name, norm in self._norms.items():
            norm.append_statistics(torch.stack([torch.as_tensor(s[name]) for s in statistics]))
        self._num_tasks += len(masks)

    @contextlib.contextmanager
    def preserving_selection(self) -> Iterator[None]:
        """Inside the block, selections may change (task inference tries superpositions and candidates); when it
        ends every task layer's selection and the train/eval mode are what they were."""
        layers = list(self.task_layers().values())
        saved = [layer._selection for layer in layers]
        was_training = self.training
        try:
            yield
        finally:
            for layer, selection in zip(layers, saved):
                layer._select(selection)
            self.train(was_training)

    def set_task(self, task: int) -> None:
        """Use one mask: a finished task in ``[0, num_tasks)`` or the task in training."""
        if not isinstance(task, numbers.Integral) or isinstance(task, bool):
            raise ConfigError("task", "an integer task index", repr(task))
        task = int(task)
        if task != self._training_task and not 0 <= task < self._num_tasks:
            raise ConfigError("task", f"a finished task in [0, {self._num_tasks}) or the training task", task)
        for layer in self.task_layers().values():
            layer.select_task(task)

    def set_alphas(self, alphas: torch.Tensor | None) -> None:
        """Use the superposition ``sum_i alphas[i] M_i`` over the finished tasks.

        None means uniform ``1/k`` (the cached mean mask, REFERENCE §2.4).  An
        ``alphas`` tensor that requires grad makes the forward differentiable in it;
        its gradient is computed by the packed contraction, never a float stack.
        """
        if self._num_tasks == 0:
            raise ConfigError("alphas", "at least one finished task to superpose", "none")
        if alphas is not None:
            if not isinstance(alphas, torch.Tensor) or not alphas.is_floating_point() or alphas.shape != (self._num_tasks,):
                got = f"shape {tuple(alphas.shape)} {alphas.dtype}" if isinstance(alphas, torch.Tensor) else type(alphas).__name__
                raise ConfigError("alphas", f"a float tensor of shape ({self._num_tasks},)", got)
            alphas = alphas.to(self.device)
        for layer in self.task_layers().values():
            layer.select_alphas(alphas)

    def score_parameters(self) -> list[nn.Parameter]:
        """The training task's scores (what the optimiser trains); empty when no task is in training."""
        return [layer.scores for layer in self._masked.values() if layer.scores is not None]

    # ----------------------------------------------------------- persistence
    def _check_finished(self, task: object) -> int:
        if not isinstance(task, numbers.Integral) or isinstance(task, bool) or not 0 <= task < self._num_tasks:
            raise ConfigError("task", f"a finished task in [0, {self._num_tasks})", repr(task))
        return int(task)

    def export_masks(self, task: int) -> dict[str, np.ndarray]:
        """Finished task ``task``'s masks as ``{layer name: bool ndarray}`` on CPU."""
        task = self._check_finished(task)
        return {name: layer.task_mask(task).cpu().numpy() for name, layer in self._masked.items()}

    def export_statistics(self, task: int) -> dict[str, np.ndarray]:
        """Finished task ``task``'s batch-norm statistics ``{norm layer: float32 (2, C)}`` (empty without task norms)."""
        task = self._check_finished(task)
        return {name: norm.task_statistics(task).detach().cpu().numpy().astype(np.float32) for name, norm in self._norms.items()}

    def drop_tasks(self, keep: int) -> None:
        """Forget every finished task from index ``keep`` on, in every task layer (not a task in training)."""
        if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= self._num_tasks:
            raise ConfigError("keep", f"a task count in [0, {self._num_tasks}]", keep)
        for layer in self.task_layers().values():
            layer.drop_tasks(keep)
        self._num_tasks = keep

    def reserve_tasks(self, n_tasks: int) -> None:
        """Make room for ``n_tasks`` finished tasks in every layer's buffers at once (no regrowth copies)."""
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 0:
            raise ConfigError("n_tasks", "an integer >= 0", n_tasks)
        for layer in self.task_layers().values():
            layer.reserve(n_tasks)

    def import_masks(
        self, masks: list[dict[str, np.ndarray]], statistics: list[dict[str, np.ndarray]] | None = None
    ) -> list[int]:
        """Append finished tasks from ``[{layer name: 0/1 array}, ...]`` (and their norm statistics); return their indices.

        Raises
        ------
        ConfigError
            A task is in training, or a dict's layer names, shapes or values do not
            fit this model (the message names the task and the layer), or statistics are
            missing for a model with per-task batch norms.
        """
        if self._training_task is not None:
            raise ConfigError("import_masks", "no task in training", f"task {self._training_task} in training")
        if isinstance(masks, dict) or not isinstance(masks, (list, tuple)):
            raise ConfigError("masks", "a list of {layer name: mask} dicts", type(masks).__name__)
        checked = [self._checked_masks(i, m) for i, m in enumerate(masks)]
        if self._norms:
            if statistics is None or len(statistics) != len(masks):
                got = "none" if statistics is None else f"{len(statistics)} dicts"
                raise ConfigError("statistics", f"one dict of batch-norm statistics per task ({len(masks)})", got)
            stats = [self._checked_statistics(i, s) for i, s in enumerate(statistics)]
        else:
            stats = [{} for _ in masks]
        if not masks:
            return []
        first = self._num_tasks
        self._append(checked, stats)
        return list(range(first, self._num_tasks))

    def _checked_masks(self, i: int, task_masks: object) -> dict[str, torch.Tensor]:
        layers = self._masked
        if not isinstance(task_masks, dict) or set(task_masks) != set(layers):
            got = sorted(task_masks) if isinstance(task_masks, dict) else type(task_masks).__name__
            raise ConfigError(f"masks[{i}]", f"a dict with layers {list(layers)}", got)
        out = {}
        for name, layer in layers.items():
            arr = np.asarray(task_masks[name])
            if arr.shape != layer.mask_shape:
                raise ConfigError(f"masks[{i}][{name!r}]", f"shape {layer.mask_shape}", f"shape {arr.shape}")
            if arr.dtype != np.bool_:
                if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
                    raise ConfigError(f"masks[{i}][{name!r}]", "values in {0, 1}", f"a {arr.dtype} array with other values")
                arr = arr != 0
            out[name] = torch.from_numpy(np.ascontiguousarray(arr))
        return out

    def _checked_statistics(self, i: int, task_stats: object) -> dict[str, torch.Tensor]:
        norms = self._norms
        if not isinstance(task_stats, Mapping) or set(task_stats) != set(norms):
            got = sorted(task_stats) if isinstance(task_stats, Mapping) else type(task_stats).__name__
            raise ConfigError(f"statistics[{i}]", f"a dict with the batch norms {list(norms)}", got)
        out = {}
        for name, norm in norms.items():
            arr = np.asarray(task_stats[name])
            if arr.shape != norm.state_shape or arr.dtype.kind != "f" or not np.isfinite(arr).all() or (arr[1] < 0).any():
                raise ConfigError(f"statistics[{i}][{name!r}]", f"finite float (2, {norm.num_features}) mean and variance",
                                  f"{arr.dtype} {arr.shape}")
            out[name] = torch.from_numpy(arr.astype(np.float32))
        return out

    def mask_nbytes(self) -> int:
        """Bytes held for finished masks (packed buffers with their capacity, sum buffers, mean caches)."""
        return sum(layer.mask_nbytes() for layer in self._masked.values())

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        n = sum(w.numel() for w in self.base_weights().values())
        return f"tasks={self._num_tasks}, base={self.wrap_config.base!r}, base weights={n}, outputs={self.output_size}"
