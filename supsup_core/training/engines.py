"""Where tasks are trained: in this process, in local worker processes, or on Ray.

An :class:`Engine` turns a :class:`~supsup_core.training.jobs.TrainingSetup` and
a list of task indices into :class:`~supsup_core.training.jobs.TaskOutcome`\\ s
**in task order** (:meth:`Engine.outcomes`), however many tasks run at once.
Workers never write the bank: masks come back to the driver, which commits them.
Because every task is trained from its own seeds on one intra-op thread
(:mod:`.jobs`), the masks are the same for every engine and worker count.

- :class:`InlineEngine`: the driver trains each task itself (``--workers 1``).
- :class:`ProcessEngine`: the driver and ``workers - 1`` local processes
  (``multiprocessing``: forked on Linux while CUDA is not initialised, so a child
  starts in milliseconds with the driver's base network and stream; spawned
  elsewhere, where each child imports torch and rebuilds them).
- :class:`BatchedEngine`: ``k`` tasks per batched step on one device (a GPU), :mod:`.batched`.
- :class:`RayEngine`: ``workers`` Ray actors, on a local Ray instance or an
  existing cluster (``address``); needs the optional extra ``supsup-store[ray]``.

At most ``2 workers + 1`` tasks are submitted ahead of the one the driver commits
next (enough to keep every worker busy while results arrive out of order), so the
driver's memory stays bounded however long the stream.
"""

from __future__ import annotations

import collections
import copy
import multiprocessing
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..errors import ConfigError, SupSupError
from .jobs import TaskOutcome, TaskWorker, TrainingSetup

__all__ = ["Engine", "InlineEngine", "ProcessEngine", "RayEngine", "BatchedEngine", "RayUnavailableError", "make_engine", "ENGINES"]

ENGINES = ("inline", "processes", "ray", "batched")

_RAY_HINT = "pip install 'supsup-store[ray]' (or pip install ray)"


class RayUnavailableError(SupSupError, RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached in time."""


class Engine(ABC):
    """Trains tasks of one setup and yields their outcomes in task order."""

    @abstractmethod
    def outcomes(self, setup: TrainingSetup, tasks: Sequence[int]) -> Iterator[TaskOutcome]:
        """Outcomes of ``tasks`` (ascending), in that order."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Check the engine can run (e.g. reach the cluster) before anything is written."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers (idempotent)."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class InlineEngine(Engine):
    """Train in the calling process, one task after another.

    ``callbacks`` are attached to every task's trainer (e.g. a per-batch progress bar).
    """

    def __init__(self, device: str = "cpu", callbacks: tuple = (), model: Any = None, stream: Any = None) -> None:
        self.device, self.callbacks, self.model, self.stream = device, tuple(callbacks), model, stream

    def outcomes(self, setup: TrainingSetup, tasks: Sequence[int]) -> Iterator[TaskOutcome]:
        """Train each task in turn (on ``model`` and ``stream`` when given: see :class:`TaskWorker`)."""
        worker = TaskWorker(setup, self.device, self.callbacks, self.model, self.stream)
        for task in tasks:
            yield worker.run(int(task))


_PROCESS_WORKER: TaskWorker | None = None


def _process_init(setup_dict: dict) -> None:
    global _PROCESS_WORKER
    _PROCESS_WORKER = TaskWorker(TrainingSetup.from_dict(setup_dict), "cpu")


def _process_adopt(worker: TaskWorker) -> None:
    """Initializer of a forked child: train on the driver's base network and stream (inherited), no callbacks."""
    global _PROCESS_WORKER
    torch.set_num_threads(1)  # before any op: the parent's OpenMP pool did not survive the fork
    _PROCESS_WORKER = copy.copy(worker)
    _PROCESS_WORKER.callbacks = ()


def default_start_method() -> str:
    """``"fork"`` on Linux while CUDA is not initialised in this process, else ``"spawn"``.

    Forking is safe there: a child runs torch on one intra-op thread and never touches
    CUDA, the bank or the terminal; it exits without running the parent's finalisers.
    """
    if sys.platform.startswith("linux") and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def _process_ready() -> bool:
    """Answered by a child once its initializer has run (it can train at full speed)."""
    return _PROCESS_WORKER is not None


def _process_run(task: int) -> TaskOutcome:
    assert _PROCESS_WORKER is not None  # set by the pool initializer
    return _PROCESS_WORKER.run(task)


def _check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", "an integer >= 1", workers)
    return workers


def _ordered(submit, tasks: Sequence[int], window: int) -> Iterator[TaskOutcome]:
    """Submit ahead up to ``window`` tasks; yield results in submission order (``submit(task) -> getter``)."""
    pending: collections.deque = collections.deque()
    it = iter(tasks)
    for task in it:
        pending.append(submit(int(task)))
        if len(pending) >= window:
            break
    while pending:
        getter = pending.popleft()
        outcome = getter()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(submit(int(nxt)))
        yield outcome


class ProcessEngine(Engine):
    """``workers`` tasks at once on the CPU: the driver itself and ``workers - 1`` local processes.

    The driver trains too (on its own :class:`TaskWorker`), so no core idles while the
    child processes start (a spawned process needs seconds to import torch and build the
    stream) and one process fewer competes for the cores.
    Tasks are handed out in order, and only to children that have started (each
    answers a ping once its initializer ran): up to two tasks per started child.
    Whenever the next task to commit is not running elsewhere, the driver trains it;
    otherwise it trains the next unassigned task while it waits, as long as fewer than
    ``2 workers + 1`` tasks are held beyond the next one (bounded memory).

    ``driver_trains=False`` keeps the driver to committing: ``workers`` child processes
    train every task (the same masks).  :attr:`trained_by` records, per task of the
    last run, ``"driver"`` or ``"child"``.  ``start_method`` is ``"fork"`` or
    ``"spawn"`` (default: :func:`default_start_method`); the masks are the same with either.
    """

    def __init__(self, workers: int, callbacks: tuple = (), *, driver_trains: bool = True, model: Any = None,
                 start_method: str | None = None, stream: Any = None) -> None:
        self.workers = _check_workers(workers)
        if start_method not in (None, "fork", "spawn"):
            raise ConfigError("start_method", "'fork', 'spawn' or None", start_method)
        self.start_method = start_method
        if driver_trains and self.workers < 2:
            raise ConfigError("workers", "an integer >= 2 when the driver trains too (one worker trains inline)", workers)
        if not isinstance(driver_trains, bool):
            raise ConfigError("driver_trains", "a bool", driver_trains)
        self.callbacks, self.driver_trains, self.model, self.stream = tuple(callbacks), driver_trains, model, stream
        self.trained_by: dict[int, str] = {}
        self._pool = None

    def outcomes(self, setup: TrainingSetup, tasks: Sequence[int]) -> Iterator[TaskOutcome]:
        """Train ``tasks`` on the driver and the pool; yield their outcomes in order."""
        method = self.start_method or default_start_method()
        children = self.workers - 1 if self.driver_trains else self.workers
        self.trained_by = {}
        local = TaskWorker(setup, "cpu", self.callbacks, self.model, self.stream)
        if method == "fork":
            initializer, initargs = _process_adopt, (local,)
        else:
            check_rebuildable(setup, self.stream, "spawned worker processes")
            initializer, initargs = _process_init, (setup.to_dict(),)
        self._pool = multiprocessing.get_context(method).Pool(children, initializer=initializer, initargs=initargs)
        pool = self._pool
        pings = [pool.apply_async(_process_ready) for _ in range(children)]
        order = [int(t) for t in tasks]
        window = 2 * self.workers + 1
        running: dict[int, Any] = {}  # task -> AsyncResult (children)
        done: dict[int, TaskOutcome] = {}
        cursor = 0  # next unassigned position in order
        try:
            for want in order:
                while want not in done:
                    ready = sum(p.ready() for p in pings)  # children not yet started get no task
                    while cursor < len(order) and len(running) < 2 * ready and len(running) + len(done) < window:
                        running[order[cursor]] = pool.apply_async(_process_run, (order[cursor],))
                        cursor += 1
                    for task in [t for t, r in running.items() if r.ready()]:
                        done[task] = running.pop(task).get()
                        self.trained_by[task] = "child"
                    if want in done:
                        break
                    if not self.driver_trains:
                        if want in running:
                            running[want].wait()
                        else:
                            pings[0].wait()  # no child has started yet
                        continue
                    if want not in running:  # unassigned (the lowest one): the driver trains it now
                        task = want
                    elif cursor < len(order) and len(running) + len(done) < window:
                        task = order[cursor]
                    else:
                        running[want].wait()
                        continue
                    done[task] = local.run(task)
                    self.trained_by[task] = "driver"
                    cursor += 1
                yield done.pop(want)
        finally:
            self.close()

    def close(self) -> None:
        """Terminate the pool."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


class BatchedEngine(Engine):
    """``k`` tasks at a time in one batched training step on one device (:mod:`.batched`): the path for a GPU.

    Masks of MLPs (LeNet, FC) are bit-identical to the inline engine's on CPU; for conv
    and BNNet models the batched kernels may round differently (see :mod:`.batched`).
    """

    def __init__(self, k: int, device: str = "cpu", scenario: str = "gnu", model: Any = None, stream: Any = None) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError("--batched", "an integer >= 1 (tasks per batched step)", k)
        self.k, self.device, self.scenario, self.model, self.stream = k, device, scenario, model, stream

    def outcomes(self, setup: TrainingSetup, tasks: Sequence[int]) -> Iterator[TaskOutcome]:
        """Train ``k`` tasks per stack; yield them in order."""
        from .batched import BatchedTaskTrainer  # local: only this engine needs it

        trainer = BatchedTaskTrainer(setup, self.k, self.device, scenario=self.scenario, model=self.model, stream=self.stream)
        yield from trainer.outcomes([int(t) for t in tasks])


def import_ray() -> Any:
    """The ``ray`` module, or :class:`RayUnavailableError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(f"--ray: Ray is not installed; {_RAY_HINT}") from None
    return ray


class RayEngine(Engine):
    """``workers`` Ray actors (one CPU each) on a local instance (``address=None``) or a cluster.

    Parameters
    ----------
    workers : int
        Actors, i.e. tasks trained at once.
    address : str, optional
        ``"ray://host:10001"`` (Ray Client) or ``"host:6379"`` / ``"auto"`` of an existing
        cluster; None starts a local instance (``num_cpus=workers``).
    connect_timeout : float
        Seconds to wait for a cluster at ``address`` before giving up.
    """

    def __init__(self, workers: int, address: str | None = None, connect_timeout: float = 30.0, stream: Any = None) -> None:
        self.workers = _check_workers(workers)
        self.stream = stream
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError("--ray", "a cluster address such as ray://host:10001 or host:6379", repr(address))
        if isinstance(connect_timeout, bool) or not isinstance(connect_timeout, (int, float)) or connect_timeout <= 0:
            raise ConfigError("connect_timeout", "a number of seconds > 0", connect_timeout)
        self.address, self.connect_timeout = address, float(connect_timeout)
        self._ray: Any = None
        self._started = False
        self._actors: list = []

    def prepare(self) -> None:
        """Import Ray and start or join the instance (fails within ``connect_timeout``)."""
        self._connect()

    def _connect(self) -> Any:
        if self._ray is not None:
            return self._ray
        ray = import_ray()
        if self.address is not None:
            self._check_reachable(self.address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
            if self.address is None:
                kwargs["num_cpus"] = self.workers
            else:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ...: all mean "no cluster"
                raise RayUnavailableError(f"--ray: could not start or join Ray at {self.address or 'a local instance'}: {exc}") from None
            self._started = True
        self._ray = ray
        return ray

    def _check_reachable(self, address: str) -> None:
        """Fail within ``connect_timeout`` when nothing listens at ``host:port`` (Ray itself retries for minutes)."""
        import socket

        if address == "auto":
            return
        hostport = address.split("://", 1)[-1]
        host, _, port = hostport.rpartition(":")
        if not host or not (port.isascii() and port.isdecimal()):
            raise ConfigError("--ray", "host:port or ray://host:port (or 'auto')", repr(address))
        try:
            with socket.create_connection((host, int(port)), timeout=min(self.connect_timeout, 10.0)):
                pass
        except OSError as exc:
            raise RayUnavailableError(f"--ray: no Ray cluster reachable at {address} ({exc})") from None

    def outcomes(self, setup: TrainingSetup, tasks: Sequence[int]) -> Iterator[TaskOutcome]:
        """Run tasks on the actors round-robin, up to ``2 workers + 1`` submitted ahead."""
        check_rebuildable(setup, self.stream, "Ray actors")
        ray = self._connect()
        actor_cls = ray.remote(num_cpus=1)(_RayTaskActor)
        self._actors = [actor_cls.remote(setup.to_dict()) for _ in range(self.workers)]
        counter = iter(range(1 << 62))

        def submit(task: int):
            ref = self._actors[next(counter) % len(self._actors)].run.remote(task)
            return lambda: ray.get(ref)

        try:
            yield from _ordered(submit, tasks, 2 * self.workers + 1)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the actors; shut down a Ray instance this engine started."""
        if self._ray is None:
            return
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
        if self._started:
            self._ray.shutdown()
            self._started = False
        self._ray = None


class _RayTaskActor:
    """Ray actor body: one :class:`TaskWorker` per actor."""

    def __init__(self, setup_dict: dict) -> None:
        self.worker = TaskWorker(TrainingSetup.from_dict(setup_dict), "cpu")

    def run(self, task: int) -> TaskOutcome:
        return self.worker.run(task)


def make_engine(
    workers: int = 1, ray: bool = False, address: str | None = None, *, device: str = "cpu", callbacks: tuple = (),
    model: Any = None, batched: int = 1, scenario: str = "gnu", stream: Any = None,
) -> Engine:
    """The engine for ``--workers`` / ``--ray`` / ``--batched``: inline for one local worker, else processes, Ray
    or batched steps of ``batched`` tasks on ``device``.

    ``model`` (a base network with no finished tasks) and ``stream`` are trained on in this process (and
    inherited by forked workers) instead of being rebuilt from the setup.
    """
    workers = _check_workers(workers)
    if batched != 1:
        if ray or workers != 1:
            raise ConfigError("--batched", "1 with --workers or --ray (a batched step already fills one device)", batched)
        return BatchedEngine(batched, device, scenario, model, stream)
    if ray:
        return RayEngine(workers, address, stream=stream)
    if address is not None:
        raise ConfigError("address", "None unless ray=True", repr(address))
    if workers == 1:
        return InlineEngine(device, callbacks, model, stream)
    if device != "cpu":
        raise ConfigError("--workers", "1 on a GPU (worker processes train on CPU)", workers)
    return ProcessEngine(workers, callbacks, model=model, stream=stream)


def check_rebuildable(setup: TrainingSetup, stream: Any, where: str) -> None:
    """Refuse to send a setup to processes that rebuild it when its model or stream exists only in this process."""
    from ..models import spec_kind

    if spec_kind(setup.model) == "module":
        raise ConfigError("model", f"a built-in network or a MODULE:FACTORY for {where} (they rebuild the model; a "
                          "module wrapped in Python exists only here: use forked workers on Linux, or one worker)",
                          setup.model.get("module"))
    if stream is not None and not getattr(stream, "rebuildable", True):
        raise ConfigError("stream", f"a stream built from a data spec for {where} (they rebuild it from its description)",
                          type(stream).__name__)
