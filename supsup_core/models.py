"""Base networks with per-task supermasks: :class:`SupSupNet` and :func:`build_model`.

Architectures (REFERENCE §3.3, §2.8): LeNet 300-100 and FC 1024-1024 (every
layer masked, ReLU), BNNet (784-2048-2048-s frozen linears, unit masks before
Swish) and a small conv net (two masked 3x3 convolutions with 2x2 max-pooling,
then two masked linear layers).  No biases anywhere.

The base weights are drawn on CPU from ``torch.Generator().manual_seed(seed)`` in
layer order and only then moved to the device, so every machine and device gets
bit-identical weights; they are buffers, never parameters.  Task ``t``'s scores
come from a generator seeded with ``(seed, t)``.

Examples
--------
>>> import torch
>>> model = build_model(ModelConfig(arch="lenet", hidden=(8, 4), output_size=5))
>>> model.add_task(), model.finish_task(), model.num_tasks
(0, 0, 1)
>>> model(torch.zeros(2, 1, 28, 28)).shape
torch.Size([2, 5])
>>> sorted(model.export_masks(0))
['fc1', 'fc2', 'fc3']
"""

from __future__ import annotations

import hashlib
import numbers

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .errors import ConfigError
from .layers import FixedLinear, MaskedConv2d, MaskedLayer, MaskedLinear, UnitMask, init_base_weight

__all__ = ["SupSupNet", "build_model", "task_seed"]


def task_seed(seed: int, task: int) -> int:
    """The 64-bit seed of task ``task``'s score generator, mixed from ``(seed, task)`` by SeedSequence.

    Examples
    --------
    >>> task_seed(0, 1) == task_seed(0, 1) != task_seed(1, 0)
    True
    """
    words = np.random.SeedSequence([int(seed), int(task)]).generate_state(2, dtype=np.uint32)
    return int(words[0]) << 32 | int(words[1])


class SupSupNet(nn.Module):
    """A frozen random base network whose masked layers hold one supermask per task.

    Parameters
    ----------
    config : ModelConfig
        Architecture, sizes, seed, init and mask mode.

    Notes
    -----
    Life cycle: :meth:`add_task` creates float scores for a new task (the only
    float scores the model ever holds) and selects it; the caller trains
    :meth:`score_parameters`; :meth:`finish_task` binarises, packs and frees them.
    :meth:`set_task` selects one mask, :meth:`set_alphas` a superposition.
    Persist masks with :meth:`export_masks` / :meth:`import_masks` (a state dict
    is not the storage format: the packed buffers carry spare capacity).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ConfigError("config", "a ModelConfig", type(config).__name__)
        self.config = config
        self.layers = nn.ModuleDict()
        self._plan: list[tuple[str, str]] = []  # ("layer", name) | ("relu"|"swish"|"pool"|"flatten", "")
        self._num_tasks = 0
        self._training_task: int | None = None
        generator = torch.Generator().manual_seed(config.seed)
        {"lenet": self._build_mlp, "fc1024": self._build_mlp, "bnnet": self._build_bnnet, "conv": self._build_conv}[
            config.arch
        ](generator)

    # ------------------------------------------------------------------ build
    def _add(self, name: str, layer: nn.Module, activation: str | None) -> None:
        self.layers[name] = layer
        self._plan.append(("layer", name))
        if activation is not None:
            self._plan.append((activation, ""))

    def _masked_linear(self, c_in: int, c_out: int, generator: torch.Generator) -> MaskedLinear:
        cfg = self.config
        weight = init_base_weight((c_out, c_in), c_in, cfg.init, generator)
        return MaskedLinear(weight, mask_mode=cfg.mask_mode, density=cfg.layer_density(c_in, c_out))

    def _build_mlp(self, generator: torch.Generator) -> None:
        dims = [self.config.in_features, *self.config.widths, self.config.output_size]
        self._plan.append(("flatten", ""))
        for i in range(len(dims) - 1):
            last = i == len(dims) - 2
            self._add(f"fc{i + 1}", self._masked_linear(dims[i], dims[i + 1], generator), None if last else "relu")

    def _build_bnnet(self, generator: torch.Generator) -> None:
        cfg = self.config
        dims = [cfg.in_features, *cfg.widths, cfg.output_size]
        self._plan.append(("flatten", ""))
        for i in range(len(dims) - 1):
            weight = init_base_weight((dims[i + 1], dims[i]), dims[i], cfg.init, generator)
            self._add(f"fc{i + 1}", FixedLinear(weight), None)
            if i < len(dims) - 2:
                # the mask scales normalised pre-activations, before Swish (REFERENCE §2.8)
                self._add(f"unit{i + 1}", UnitMask(dims[i + 1]), "swish")

    def _build_conv(self, generator: torch.Generator) -> None:
        cfg = self.config
        c1, c2, hidden = cfg.widths
        for name, c_in, c_out in (("conv1", cfg.in_channels, c1), ("conv2", c1, c2)):
            weight = init_base_weight((c_out, c_in, 3, 3), c_in * 9, cfg.init, generator)
            density = cfg.layer_density(c_in, c_out, 3, 3)
            self._add(name, MaskedConv2d(weight, padding=1, mask_mode=cfg.mask_mode, density=density), "relu")
            self._plan.append(("pool", ""))
        self._plan.append(("flatten", ""))
        side = cfg.image // 2 // 2
        self._add("fc1", self._masked_linear(c2 * side * side, hidden, generator), "relu")
        self._add("fc2", self._masked_linear(hidden, cfg.output_size, generator), None)

    # ---------------------------------------------------------------- forward
    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input geometry; conv nets get ``(B, C, H, W)``, MLPs are flattened later."""
        cfg = self.config
        image_shape = (cfg.in_channels, cfg.image, cfg.image)
        ok = isinstance(x, torch.Tensor) and x.is_floating_point() and (
            (x.ndim == 2 and x.shape[1] == cfg.in_features) or (x.ndim == 4 and tuple(x.shape[1:]) == image_shape)
        )
        if not ok:
            received = f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ConfigError("x", f"a float tensor (B, {cfg.in_features}) or (B, {', '.join(map(str, image_shape))})", received)
        if cfg.arch == "conv" and x.ndim == 2:
            x = x.reshape(x.shape[0], *image_shape)  # (B, C, H, W)
        return x

    def forward(self, x: torch.Tensor, masks: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits ``(B, output_size)`` for ``x`` of shape ``(B, 1, 28, 28)`` or ``(B, 784)``.

        ``masks`` optionally maps masked-layer names to explicit float masks used
        instead of the current selection (gradients with respect to masks).
        """
        h = self._prepare(x)
        if masks is not None:
            unknown = set(masks) - {name for name, layer in self.layers.items() if isinstance(layer, MaskedLayer)}
            if unknown:
                raise ConfigError("masks", f"keys among the masked layers {list(self.masked_layers())}", sorted(unknown))
        for op, name in self._plan:
            if op == "layer":
                layer = self.layers[name]
                if isinstance(layer, MaskedLayer):
                    h = layer(h, None if masks is None else masks.get(name))
                else:
                    h = layer(h)
            elif op == "relu":
                h = F.relu(h)
            elif op == "swish":
                h = F.silu(h)  # Swish(u) = u * sigmoid(u)
            elif op == "pool":
                h = F.max_pool2d(h, 2)  # (B, C, H/2, W/2)
            else:
                h = h.flatten(1)  # (B, features)
        return h

    # -------------------------------------------------------------- task life
    @property
    def num_tasks(self) -> int:
        """Number of finished (packed) tasks."""
        return self._num_tasks

    @property
    def training_task(self) -> int | None:
        """Index of the task whose float scores exist (being trained), or None."""
        return self._training_task

    @property
    def device(self) -> torch.device:
        """Device of the model's buffers."""
        return next(self.buffers()).device

    @property
    def has_batch_statistics(self) -> bool:
        """True when outputs couple the images of a batch (BNNet's batch-statistics unit masks)."""
        return any(isinstance(layer, UnitMask) for layer in self.layers.values())

    def masked_layers(self) -> dict[str, MaskedLayer]:
        """The layers that hold masks, by name in forward order (``fc1``... or ``unit1``...)."""
        return {name: layer for name, layer in self.layers.items() if isinstance(layer, MaskedLayer)}

    def add_task(self) -> int:
        """Create Kaiming-uniform scores (zeros for unit masks) for a new task, select it, return its index."""
        if self._training_task is not None:
            raise ConfigError("add_task", "finish_task() before adding another task", f"task {self._training_task} in training")
        task = self._num_tasks
        generator = torch.Generator().manual_seed(task_seed(self.config.seed, task))
        for layer in self.masked_layers().values():
            layer.start_task(generator)
        self._training_task = task
        return task

    def finish_task(self) -> int:
        """Binarise and pack the training task's masks, free its scores, select it; return its index."""
        if self._training_task is None:
            raise ConfigError("finish_task", "a task in training (call add_task first)", "none")
        for layer in self.masked_layers().values():
            layer.finish_task()
        task, self._training_task = self._training_task, None
        self._num_tasks += 1
        self.set_task(task)
        return task

    def set_task(self, task: int) -> None:
        """Use one mask: a finished task in ``[0, num_tasks)`` or the task in training."""
        if not isinstance(task, numbers.Integral) or isinstance(task, bool):
            raise ConfigError("task", "an integer task index", repr(task))
        task = int(task)
        if task != self._training_task and not 0 <= task < self._num_tasks:
            raise ConfigError("task", f"a finished task in [0, {self._num_tasks}) or the training task", task)
        for layer in self.masked_layers().values():
            layer.select_task(task)

    def set_alphas(self, alphas: torch.Tensor | None) -> None:
        """Use the superposition ``sum_i alphas[i] M_i`` over the finished tasks.

        None means uniform ``1/k`` (the cached mean mask, REFERENCE §2.4).  An
        ``alphas`` tensor that requires grad makes the forward differentiable in it;
        its gradient is computed by the packed contraction, never a float stack.
        A general ``alphas`` costs O(k P / 8) table work per layer when selected.
        """
        if self._num_tasks == 0:
            raise ConfigError("alphas", "at least one finished task to superpose", "none")
        if alphas is not None:
            if not isinstance(alphas, torch.Tensor) or not alphas.is_floating_point() or alphas.shape != (self._num_tasks,):
                got = f"shape {tuple(alphas.shape)} {alphas.dtype}" if isinstance(alphas, torch.Tensor) else type(alphas).__name__
                raise ConfigError("alphas", f"a float tensor of shape ({self._num_tasks},)", got)
            alphas = alphas.to(self.device)
        for layer in self.masked_layers().values():
            layer.select_alphas(alphas)

    def score_parameters(self) -> list[nn.Parameter]:
        """The training task's scores (what the optimiser trains); empty when no task is in training."""
        return [layer.scores for layer in self.masked_layers().values() if layer.scores is not None]

    # ----------------------------------------------------------- persistence
    def export_masks(self, task: int) -> dict[str, np.ndarray]:
        """Finished task ``task``'s masks as ``{layer name: bool ndarray}`` on CPU."""
        if not isinstance(task, numbers.Integral) or not 0 <= task < self._num_tasks:
            raise ConfigError("task", f"a finished task in [0, {self._num_tasks})", repr(task))
        return {name: layer.task_mask(int(task)).cpu().numpy() for name, layer in self.masked_layers().items()}

    def reserve_tasks(self, n_tasks: int) -> None:
        """Make room for ``n_tasks`` finished tasks in every layer's packed buffer at once (no regrowth copies)."""
        if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 0:
            raise ConfigError("n_tasks", "an integer >= 0", n_tasks)
        for layer in self.masked_layers().values():
            layer.reserve(n_tasks)

    def import_masks(self, masks: list[dict[str, np.ndarray]]) -> list[int]:
        """Append finished tasks from ``[{layer name: 0/1 array}, ...]``; return their indices.

        Raises
        ------
        ConfigError
            A task is in training, or a dict's layer names, shapes or values do not
            fit this model (the message names the task and the layer).
        """
        if self._training_task is not None:
            raise ConfigError("import_masks", "no task in training", f"task {self._training_task} in training")
        if isinstance(masks, dict) or not isinstance(masks, (list, tuple)):
            raise ConfigError("masks", "a list of {layer name: mask} dicts", type(masks).__name__)
        layers = self.masked_layers()
        stacks: dict[str, list[np.ndarray]] = {name: [] for name in layers}
        for i, task_masks in enumerate(masks):
            if not isinstance(task_masks, dict) or set(task_masks) != set(layers):
                got = sorted(task_masks) if isinstance(task_masks, dict) else type(task_masks).__name__
                raise ConfigError(f"masks[{i}]", f"a dict with layers {list(layers)}", got)
            for name, layer in layers.items():
                arr = np.asarray(task_masks[name])
                if arr.shape != layer.mask_shape:
                    raise ConfigError(f"masks[{i}][{name!r}]", f"shape {layer.mask_shape}", f"shape {arr.shape}")
                if arr.dtype != np.bool_:
                    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
                        raise ConfigError(f"masks[{i}][{name!r}]", "values in {0, 1}", f"a {arr.dtype} array with other values")
                    arr = arr != 0
                stacks[name].append(arr)
        if not masks:
            return []
        for name, layer in layers.items():
            layer.append_masks(torch.from_numpy(np.stack(stacks[name])))  # (n, *mask_shape)
        first = self._num_tasks
        self._num_tasks += len(masks)
        return list(range(first, self._num_tasks))

    def base_weights(self) -> dict[str, torch.Tensor]:
        """The frozen base weights by layer name, in layer order."""
        return {name: layer.weight for name, layer in self.layers.items() if hasattr(layer, "weight")}

    def base_fingerprint(self) -> str:
        """sha256 hex digest of the base weights' CPU float32 bytes in layer order."""
        digest = hashlib.sha256()
        for weight in self.base_weights().values():
            digest.update(weight.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return digest.hexdigest()

    def mask_nbytes(self) -> int:
        """Bytes held for finished masks (packed buffers with their capacity, sum buffers, mean caches)."""
        return sum(layer.mask_nbytes() for layer in self.masked_layers().values())

    def extra_repr(self) -> str:
        """Shown by ``repr(module)``."""
        return f"arch={self.config.arch!r}, tasks={self._num_tasks}, params={sum(w.numel() for w in self.base_weights().values())}"


def build_model(config: ModelConfig, device: str | torch.device | None = None) -> SupSupNet:
    """Build the :class:`SupSupNet` of ``config`` (weights drawn on CPU) and move it to ``device``."""
    model = SupSupNet(config)
    return model if device is None else model.to(device)

