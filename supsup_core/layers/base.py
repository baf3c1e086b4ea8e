"""The :class:`MaskedLayer` base: per-task packed masks, the current task's float scores, superposition.

Storage of finished masks (per layer)
-------------------------------------
- ``packed``: a ``uint8`` buffer of shape ``(nbytes, capacity)``, **byte-major**:
  column ``t`` is task ``t``'s mask packed MSB first (:mod:`supsup_core.packing`).
  Byte-major makes the hot loops read one contiguous row per byte position for
  all tasks.  Capacity grows like a vector (doubling up to 64 columns at a time),
  so appending a task is amortised O(P / 8) and at most 64 columns are spare;
  importing many tasks at once reserves what is needed, rounded up to a
  multiple of 8 (the contraction kernel reads 8 tasks per 64-bit load).
- ``mask_sum``: ``int32`` running sum of all finished masks; the mean mask
  ``mask_sum / k`` (the superposition with uniform alphas) is cached as float.
- ``scores``: the float scores of the task being trained, or None.  Only one
  task ever holds float scores.

Contractions ``g_t = <G, M_t>`` (the one-shot identity, REFERENCE §7) and
weighted sums ``sum_t alpha_t M_t`` never unpack the stack: on CPU they run the
Numba kernels of :mod:`supsup_core._kernels` (the contraction in exact int64
fixed point, :mod:`supsup_core.contraction`); on other devices (CUDA) they use a
torch bit-plane path, ``((packed >> s) & 1) @ ...`` one bit-plane at a time,
which also serves as the reference implementation on CPU (``backend="torch"``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..contraction import N_BLOCKS, contract_packed, row_abs_sums
from ..errors import ConfigError
from ..packing import pack_rows, packed_nbytes, unpack_bool
from ..subnet import threshold_mask, topk_keep, topk_mask
from ..validate import check_choice

__all__ = ["MaskedLayer", "init_base_weight", "MASK_MODES", "SCORE_INITS", "CONSTANT_SCORE", "BASE_INITS"]

_BACKENDS = ("auto", "numba", "torch")
#: How a task's scores become its mask: ``1[S >= 0]``, or the largest ``|S|`` of the layer.
MASK_MODES = ("threshold", "topk")
#: How a new task's scores start (:meth:`MaskedLayer.init_scores`).
SCORE_INITS = ("kaiming-uniform", "constant", "zeros", "weight-magnitude")
#: The score every entry starts at with ``score_init="constant"`` (Piggyback's choice of a small positive value).
CONSTANT_SCORE = 1e-2
#: Distributions a seeded base weight is drawn from (:func:`init_base_weight`).
BASE_INITS = ("signed_constant", "kaiming_normal")
_MAX_GROWTH = 64  # most spare task columns a layer's packed buffer ever holds


def init_base_weight(shape: tuple[int, ...], fan_in: int, init: str, generator: torch.Generator) -> torch.Tensor:
    """Draw a base weight tensor on CPU from ``generator`` (REFERENCE §2.1).

    ``"signed_constant"``: ``W = c * sign`` with signs uniform on {-1, +1} and
    ``c = sqrt(2 / fan_in)`` (ReLU gain, also for Swish as the reference);
    ``"kaiming_normal"``: ``W ~ N(0, 2 / fan_in)``.

    Examples
    --------
    >>> w = init_base_weight((3, 8), 8, "signed_constant", torch.Generator().manual_seed(0))
    >>> sorted(set(w.abs().flatten().tolist())) == [0.5]
    True
    """
    if torch.empty(0).device.type == "meta":  # shapes only (a model built under torch.device("meta")): draw nothing
        if init not in ("signed_constant", "kaiming_normal"):
            raise ConfigError("init", "'signed_constant' or 'kaiming_normal'", repr(init))
        return torch.empty(shape)
    if init == "signed_constant":
        signs = torch.randint(0, 2, shape, generator=generator, dtype=torch.int64) * 2 - 1  # shape, ±1
        return signs.to(torch.float32) * math.sqrt(2.0 / fan_in)
    if init == "kaiming_normal":
        return torch.randn(shape, generator=generator, dtype=torch.float32) * math.sqrt(2.0 / fan_in)
    raise ConfigError("init", "'signed_constant' or 'kaiming_normal'", repr(init))


class _Superpose(torch.autograd.Function):
    """``sum_t alphas[t] M_t`` for one layer, differentiable in ``alphas`` via the contraction."""

    @staticmethod
    def forward(ctx, alphas: torch.Tensor, layer: MaskedLayer) -> torch.Tensor:
        """The superposed mask, built from the packed masks."""
        ctx.layer = layer
        return layer.superposed_mask(alphas).to(alphas.dtype)  # mask_shape

    @staticmethod
    def backward(ctx, grad_mask: torch.Tensor):
        """``d/d alpha_t = <grad_mask, M_t>``: one packed contraction."""
        grads = ctx.layer.contract(grad_mask.unsqueeze(0))[0]  # (k,)
        return grads.to(device=grad_mask.device, dtype=grad_mask.dtype), None


class _TrainedWeight(torch.autograd.Function):
    """``W * M(S)`` of the task in training, with the mask's straight-through gradient, in few passes.

    The same values and gradients as ``W * threshold_mask(S)`` or ``W * topk_mask(S)`` (the products are the
    ones autograd would form, in its order: ``dL/dS = (dL/dW~ * W)``, times ``sign(S)`` through the top-k's
    absolute value), without the float mask and the chain of backward nodes: a forward pass of a wrapped
    ResNet-18 runs its 21 masked layers through this.
    """

    @staticmethod
    def forward(ctx, scores: torch.Tensor, weight: torch.Tensor, mask_mode: str, density: float) -> torch.Tensor:
        """The masked weight."""
        ctx.save_for_backward(scores, weight)
        ctx.topk = mask_mode == "topk"
        keep = topk_keep(scores.abs(), density) if ctx.topk else scores >= 0
        return weight * keep  # bool promoted to 0/1: the bits of weight * float mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        """``dL/dS``; no gradient for the frozen weight or the settings."""
        scores, weight = ctx.saved_tensors
        grad_scores = grad * weight
        if ctx.topk:
            grad_scores.mul_(torch.sgn(scores))  # through |S|
        return grad_scores, None, None, None


class MaskedLayer(nn.Module):
    """Base of layers whose masks are learned per task (weights, or units for :class:`UnitMask`).

    Parameters
    ----------
    mask_shape : tuple of int
        Shape of one task's mask.
    fan_in : int
        Fan-in used by the Kaiming-uniform score init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.
    mask_mode : str
        ``"threshold"`` or ``"topk"``.
    density : float
        Kept fraction in ``"topk"`` mode.

    Notes
    -----
    Which mask a forward pass uses is the layer's *selection*, set by the model:
    the task being trained (straight-through from the scores), one finished task,
    or a superposition over the finished tasks.  An explicit ``mask`` argument to
    ``forward`` overrides it (used for gradients with respect to the mask).
    """

    def __init__(
        self,
        mask_shape: tuple[int, ...],
        fan_in: int,
        *,
        mask_mode: str = "threshold",
        density: float = 0.5,
        score_init: str = "kaiming-uniform",
    ):
        super().__init__()
        check_choice("mask_mode", mask_mode, MASK_MODES)
        check_choice("score_init", score_init, SCORE_INITS)
        self.mask_shape = tuple(int(s) for s in mask_shape)
        self.mask_numel = math.prod(self.mask_shape)
        self.fan_in, self.mask_mode, self.density = int(fan_in), mask_mode, float(density)
        self.score_init = score_init
        self.num_tasks = 0
        self.register_buffer("packed", torch.zeros((packed_nbytes(self.mask_numel), 0), dtype=torch.uint8))
        self.register_buffer("mask_sum", torch.zeros(self.mask_shape, dtype=torch.int32))
        self.register_parameter("scores", None)
        self._selection: tuple = ("none",)
        self._cache: dict[str, torch.Tensor] = {}
        self._mean: torch.Tensor | None = None
        # set by the wrapping model for the length of one forward call, never stored:
        self._override: torch.Tensor | None = None  # an explicit mask (SupSupNet.forward(masks=...))
        self._stack: torch.Tensor | None = None  # (K, *mask_shape) masks of K tasks trained in one batched step

    # ----------------------------------------------------------------- scores
    def init_scores(self, generator: torch.Generator) -> torch.Tensor:
        """New scores on CPU, as ``score_init`` says (:data:`SCORE_INITS`).

        ``"kaiming-uniform"`` (the paper's): Kaiming-uniform with a = sqrt(5), i.e.
        ``U(-1/sqrt(fan_in), +1/sqrt(fan_in))``; ``"constant"``: every score
        :data:`CONSTANT_SCORE` (a threshold mask starts all-on, as Piggyback starts over a
        pretrained network); ``"zeros"``: all-on threshold masks too (unit masks);
        ``"weight-magnitude"``: ``|W|`` scaled to a maximum of ``1/sqrt(fan_in)`` (top-k
        masks over a pretrained network start as magnitude pruning).  The generator is
        drawn from in every case, so the next layer's draw does not depend on this choice.
        """
        bound = 1.0 / math.sqrt(self.fan_in)
        uniform = (torch.rand(self.mask_shape, generator=generator, dtype=torch.float32) * 2 - 1) * bound
        if self.score_init == "kaiming-uniform":
            return uniform
        if self.score_init == "constant":
            return torch.full(self.mask_shape, CONSTANT_SCORE, dtype=torch.float32)
        if self.score_init == "zeros":
            return torch.zeros(self.mask_shape, dtype=torch.float32)
        magnitude = self.weight.detach().abs().to("cpu", torch.float32).reshape(self.mask_shape)
        top = float(magnitude.max()) if magnitude.numel() else 0.0
        return magnitude * (bound / top) if top > 0 else torch.zeros(self.mask_shape, dtype=torch.float32)

    def start_task(self, generator: torch.Generator, initial: torch.Tensor | None = None) -> None:
        """Create the float scores of a new task and select them.

        Scores are drawn on CPU from ``generator`` and then moved; ``initial`` (a tensor of
        ``mask_shape``, e.g. the mean of the earlier tasks' scores for *transfer*) replaces
        the drawn values, which are still drawn so later layers get the same numbers.
        """
        scores = self.init_scores(generator)
        if initial is not None:
            if tuple(initial.shape) != self.mask_shape:
                raise ConfigError("initial", f"scores of shape {self.mask_shape}", tuple(initial.shape))
            scores = initial.detach().to("cpu", torch.float32).clone()
        self.scores = nn.Parameter(scores.to(self.packed.device))
        self._select(("train",))

    def score_mask(self) -> torch.Tensor:
        """The training task's mask from its scores, with the straight-through gradient."""
        if self.scores is None:
            raise ConfigError("task", "a task being trained (call add_task first)", "no scores")
        if self.mask_mode == "topk":
            return topk_mask(self.scores, self.density)
        return threshold_mask(self.scores)

    def finish_task(self) -> int:
        """Binarise the scores, append the packed mask, update the sum, free the scores; return the index."""
        with torch.no_grad():
            mask = self.score_mask().detach() != 0  # mask_shape, bool
        self.scores = None
        self.append_masks(mask.unsqueeze(0))
        return self.num_tasks - 1

    # ---------------------------------------------------------------- storage
    def _reserve(self, needed: int) -> None:
        """Grow ``packed`` to hold ``needed`` task columns, keeping at most 64 spare."""
        capacity = self.packed.shape[1]
        if needed <= capacity:
            return
        self.reserve(max(needed, capacity + min(max(capacity, 8), _MAX_GROWTH)))

    def reserve(self, n_tasks: int) -> None:
        """Hold room for ``n_tasks`` finished tasks (rounded up to whole 64-bit words of tasks)."""
        capacity = self.packed.shape[1]
        if n_tasks <= capacity:
            return
        grown = torch.zeros((self.packed.shape[0], -(-n_tasks // 8) * 8), dtype=torch.uint8, device=self.packed.device)
        grown[:, : self.num_tasks] = self.packed[:, : self.num_tasks]  # (nbytes, new capacity)
        self.packed = grown

    def append_masks(self, masks: torch.Tensor) -> None:
        """Append finished masks ``(n, *mask_shape)`` (bool) as new tasks."""
        if masks.dtype != torch.bool or tuple(masks.shape[1:]) != self.mask_shape:
            raise ConfigError("masks", f"a bool tensor of shape (n, *{self.mask_shape})", f"{masks.dtype} {tuple(masks.shape)}")
        masks = masks.to(self.packed.device)
        n, k = masks.shape[0], self.num_tasks
        self._reserve(k + n)
        for start in range(0, n, 64):  # bounded temporaries when importing many tasks
            rows = masks[start : start + 64].reshape(-1, self.mask_numel)  # (r, P)
            self.packed[:, k + start : k + start + rows.shape[0]] = pack_rows(rows).T  # (nbytes, r)
        self.mask_sum += masks.sum(dim=0, dtype=torch.int32)
        self.num_tasks = k + n
        self._mean = None
        self._cache.clear()

    def drop_tasks(self, keep: int) -> None:
        """Forget every finished task from index ``keep`` on (a load that failed half-way is undone this way)."""
        if not 0 <= keep <= self.num_tasks:
            raise ConfigError("keep", f"a task count in [0, {self.num_tasks}]", keep)
        for task in range(keep, self.num_tasks):
            self.mask_sum -= self.task_mask(task).to(torch.int32)
        self.packed[:, keep : self.num_tasks] = 0
        self.num_tasks = keep
        self._mean = None
        self._cache.clear()
        if self._selection[0] == "task" and self._selection[1] >= keep:
            self._selection = ("none",)

    def task_mask(self, task: int) -> torch.Tensor:
        """Finished task ``task``'s mask as a bool tensor of ``mask_shape`` on the layer's device."""
        if not 0 <= task < self.num_tasks:
            raise ConfigError("task", f"a finished task in [0, {self.num_tasks})", task)
        return unpack_bool(self.packed[:, task].contiguous(), self.mask_shape)

    def mean_mask(self) -> torch.Tensor:
        """Cached float32 mean of the finished masks (the superposition with alphas = 1/k)."""
        if self.num_tasks == 0:
            raise ConfigError("task", "at least one finished task for a superposition", "none")
        if self._mean is None:
            self._mean = self.mask_sum.to(torch.float32) / self.num_tasks
        return self._mean

    def mask_nbytes(self) -> int:
        """Bytes held for finished masks: packed buffer (capacity included), sum buffer, mean cache."""
        mean = self._mean.numel() * self._mean.element_size() if self._mean is not None else 0
        return self.packed.numel() + self.mask_sum.numel() * self.mask_sum.element_size() + mean

    # ------------------------------------------------------ contraction / sums
    def _check_backend(self, backend: str) -> bool:
        """True when the Numba kernels should run (CPU storage, backend 'auto' or 'numba')."""
        if backend not in _BACKENDS:
            raise ConfigError("backend", f"one of {_BACKENDS}", repr(backend))
        if backend == "numba" and self.packed.device.type != "cpu":
            raise ConfigError("backend", "'numba' only for masks stored on CPU", f"device {self.packed.device}")
        return backend == "numba" or (backend == "auto" and self.packed.device.type == "cpu")

    def contract(self, grads: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """``out[r, t] = <grads[r], M_t>`` for every finished task, without unpacking the stack.

        Parameters
        ----------
        grads : torch.Tensor
            ``(R, *mask_shape)`` float values (e.g. gradients with respect to the mask).
        backend : str
            ``"auto"`` (Numba on CPU, torch elsewhere), ``"numba"`` or ``"torch"``.

        Returns
        -------
        torch.Tensor
            float64 ``(R, num_tasks)`` on ``grads``' device.
        """
        if grads.ndim < 1 or tuple(grads.shape[1:]) != self.mask_shape:
            raise ConfigError("grads", f"shape (R, *{self.mask_shape})", tuple(grads.shape))
        n_rhs, k, nbytes = grads.shape[0], self.num_tasks, self.packed.shape[0]
        if n_rhs == 0:
            return torch.zeros((0, k), dtype=torch.float64, device=grads.device)
        flat = grads.detach().reshape(n_rhs, -1)  # (R, P)
        if flat.dtype not in (torch.float32, torch.float64):
            flat = flat.to(torch.float64)
        if nbytes * 8 != self.mask_numel:  # zero entries padding the last byte add nothing
            flat = F.pad(flat, (0, nbytes * 8 - self.mask_numel))
        planes = flat.reshape(n_rhs, nbytes, 8)  # (R, nbytes, 8): entry 8 j + b at [r, j, b]
        if not self._check_backend(backend):
            return self._contract_torch(planes.to(self.packed.device)).to(grads.device)
        planes_np = planes.cpu().contiguous().numpy()
        abs_sums = row_abs_sums(planes_np.reshape(n_rhs, -1))  # (R,) float64: picks each row's fixed-point scale
        if not np.isfinite(abs_sums).all():
            # fixed point cannot carry inf/nan; the float reference propagates them
            return self._contract_torch(planes.to(self.packed.device)).to(grads.device)
        out = contract_packed(self.packed.numpy(), k, planes_np, abs_sums)
        return torch.from_numpy(out).to(grads.device)

    def _contract_torch(self, planes: torch.Tensor) -> torch.Tensor:
        """Bit-plane reference of :meth:`contract`: 8 matrix products with the unpacked planes."""
        dtype = torch.float64 if planes.device.type == "cpu" else torch.float32
        packed = self.packed[:, : self.num_tasks]  # (nbytes, k)
        out = torch.zeros((planes.shape[0], self.num_tasks), dtype=dtype, device=packed.device)
        for b in range(8):
            plane = ((packed >> (7 - b)) & 1).to(dtype)  # (nbytes, k), entry 8 j + b of every task
            out += planes[:, :, b].to(dtype) @ plane  # (R, k)
        return out.to(torch.float64)

    def superposed_mask(self, alphas: torch.Tensor, backend: str = "auto") -> torch.Tensor:
        """``sum_t alphas[t] M_t`` as float32 ``mask_shape`` (no autograd); O(k P / 8) table work.

        Raises
        ------
        ConfigError
            ``alphas`` is not a 1-D tensor of length ``num_tasks``.
        """
        if not isinstance(alphas, torch.Tensor) or tuple(alphas.shape) != (self.num_tasks,):
            raise ConfigError("alphas", f"a tensor of shape ({self.num_tasks},)", tuple(getattr(alphas, "shape", ())))
        nbytes = self.packed.shape[0]
        if self._check_backend(backend):
            from .. import _kernels  # Numba (and LLVM) load on first use, and never for the torch backend
            out = np.empty((nbytes, 8), dtype=np.float64)
            a = np.ascontiguousarray(alphas.detach().cpu().to(torch.float64).numpy())
            _kernels.superpose_kernel(self.packed.numpy(), self.num_tasks, a, out, max(1, min(N_BLOCKS, nbytes)))
            flat = torch.from_numpy(out).reshape(-1)  # (8 nbytes,)
        else:
            dtype = torch.float64 if self.packed.device.type == "cpu" else torch.float32
            a = alphas.detach().to(self.packed.device, dtype)
            packed = self.packed[:, : self.num_tasks]  # (nbytes, k)
            flat = torch.stack([((packed >> (7 - b)) & 1).to(dtype) @ a for b in range(8)], dim=1).reshape(-1)
        return flat[: self.mask_numel].reshape(self.mask_shape).to(self.packed.device, torch.float32)

    # -------------------------------------------------------------- selection
    def _select(self, selection: tuple) -> None:
        self._selection = selection
        self._cache.clear()

    def select_task(self, task: int) -> None:
        """Use finished task ``task``'s mask, or the training task's scores when ``task == num_tasks``."""
        if task == self.num_tasks and self.scores is not None:
            self._select(("train",))
        elif 0 <= task < self.num_tasks:
            self._select(("task", task))
        else:
            raise ConfigError("task", f"a finished task in [0, {self.num_tasks}) or the training task", task)

    def select_alphas(self, alphas: torch.Tensor | None) -> None:
        """Use ``sum_t alphas[t] M_t``; None means uniform ``1/k`` (the cached mean mask)."""
        if alphas is None:
            self.mean_mask()  # validates that a task exists
            self._select(("alphas", None))
        else:
            if tuple(alphas.shape) != (self.num_tasks,):
                raise ConfigError("alphas", f"a tensor of shape ({self.num_tasks},)", tuple(alphas.shape))
            self._select(("alphas", alphas))

    def effective_mask(self) -> torch.Tensor:
        """The float mask the current selection applies (straight-through for the training task)."""
        kind = self._selection[0]
        if kind == "train":
            return self.score_mask()
        if kind == "task":
            if "mask" not in self._cache:
                self._cache["mask"] = self.task_mask(self._selection[1]).to(torch.float32)
            return self._cache["mask"]
        if kind == "alphas":
            alphas = self._selection[1]
            if alphas is None:
                return self.mean_mask()
            if alphas.requires_grad:  # differentiable: backward runs the contraction
                return _Superpose.apply(alphas, self)
            if "mask" not in self._cache:
                self._cache["mask"] = self.superposed_mask(alphas)
            return self._cache["mask"]
        raise ConfigError("task", "a selected mask (add_task, set_task or set_alphas)", "no selection")

    def forward_mask(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mask a forward pass applies: ``mask`` if given, else the wrapping model's explicit one, else the selection."""
        if mask is not None:
            return mask
        if self._override is not None:
            return self._override
        return self.effective_mask()

    def masked_weight(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``W * M`` for an explicit ``mask`` (or the model's override) or the current selection (cached while fixed).

        For weight-mask layers, which hold their frozen base weights in the ``weight`` buffer.
        """
        if mask is None:
            mask = self._override
        if mask is not None:
            return self.weight * mask
        if self._selection[0] == "train":
            if self.scores is None:
                raise ConfigError("task", "a task being trained (call add_task first)", "no scores")
            return _TrainedWeight.apply(self.scores, self.weight, self.mask_mode, self.density)
        if not self.cacheable():
            return self.weight * self.effective_mask()
        if "weight" not in self._cache:
            self._cache["weight"] = self.weight * self.effective_mask()
            self._cache.pop("mask", None)  # the product is all the forward needs
        return self._cache["weight"]

    def cacheable(self) -> bool:
        """True when the effective mask is fixed until the selection changes (no autograd involved)."""
        kind = self._selection[0]
        return kind == "task" or (kind == "alphas" and (self._selection[1] is None or not self._selection[1].requires_grad))

    def _apply(self, fn, recurse=True):
        # a device or dtype move invalidates every derived tensor
        out = super()._apply(fn, recurse)
        self._cache.clear()
        self._mean = None
        return out
