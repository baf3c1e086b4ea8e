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

**Bounds.** ``workers`` is at most :func:`max_workers` (``WORKERS_PER_CPU`` per CPU
this process may use, or :data:`MAX_CLUSTER_WORKERS` actors on a Ray cluster), checked
before anything starts; no more workers are started than there are tasks to train.

**Shutdown.** Every engine releases its workers on every way out of
:meth:`Engine.outcomes` -- the last task, an exception, ``KeyboardInterrupt`` (SIGINT) or
``SystemExit`` (the CLI's SIGTERM) -- and :meth:`Engine.close` is idempotent.  Local
worker processes ignore SIGINT (a terminal's Ctrl-C reaches the whole process group:
the driver decides), die at once on SIGTERM (no Python handler that a blocking call
could delay) and exit by themselves when the driver is gone.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from multiprocessing.connection import wait as wait_for
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ..errors import ConfigError, SupSupError
from .jobs import TaskOutcome, TaskWorker, TrainingSetup

__all__ = ["Engine", "InlineEngine", "ProcessEngine", "RayEngine", "BatchedEngine", "RayUnavailableError",
           "WorkerProcessError", "make_engine", "max_workers", "check_workers", "ENGINES", "WORKERS_PER_CPU",
           "MAX_CLUSTER_WORKERS"]

ENGINES = ("inline", "processes", "ray", "batched")

_RAY_HINT = "pip install 'supsup-store[ray]' (or pip install ray)"


#: Local workers (processes, or actors of a local Ray instance) allowed per CPU this process may use.
WORKERS_PER_CPU = 4
#: Ray actors allowed on an existing cluster (``address``), whose CPUs this machine cannot count.
MAX_CLUSTER_WORKERS = 1024


class RayUnavailableError(SupSupError, RuntimeError):
    """Ray is not installed, or the cluster at the given address cannot be reached in time."""


class WorkerProcessError(SupSupError, RuntimeError):
    """A local worker process ended without being asked to (killed, out of memory, crashed)."""


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def max_workers(cluster: bool = False) -> int:
    """The most workers allowed: ``WORKERS_PER_CPU`` per CPU this process may use, or ``MAX_CLUSTER_WORKERS``
    Ray actors on an existing cluster (``cluster=True``)."""
    return MAX_CLUSTER_WORKERS if cluster else WORKERS_PER_CPU * _cpus()


def check_workers(workers: object, *, ray: bool = False, address: str | None = None, argument: str = "workers") -> int:
    """``workers`` if it is an integer in ``1..max_workers()``, else a :class:`ConfigError` naming ``argument``.

    Checked before anything starts: a worker count no machine can hold never forks a process.

    Examples
    --------
    >>> check_workers(2)
    2
    >>> check_workers(10**6)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    supsup_core.errors.ConfigError: workers: expected an integer in 1...(4 per CPU, ... here), received 1000000
    """
    ceiling = max_workers(cluster=bool(ray) and address is not None)
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= ceiling:
        where = (f"{MAX_CLUSTER_WORKERS} Ray actors on a cluster" if ceiling == MAX_CLUSTER_WORKERS else
                 f"{WORKERS_PER_CPU} per CPU, {_cpus()} CPU{'s' if _cpus() != 1 else ''} here")
        raise ConfigError(argument, f"an integer in 1..{ceiling} ({where})", workers)
    return workers


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


def _process_run(task: int) -> TaskOutcome:
    assert _PROCESS_WORKER is not None  # set by the initializer
    return _PROCESS_WORKER.run(task)


def _check_workers(workers: object, ray: bool = False, address: str | None = None) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError("workers", "an integer >= 1", workers)
    return check_workers(workers, ray=ray, address=address)


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


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when the process that started it ends (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):  # best effort: the parent's sentinel is watched as well
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling, else a RuntimeError carrying its text."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _child_main(conn: Any, parent_pid: int, initializer: Any, initargs: tuple) -> None:
    """Body of a local worker process: run the initializer, then train the tasks sent on ``conn`` until told to stop.

    The child ignores SIGINT (a terminal's Ctrl-C reaches the whole process group; the driver decides), dies at
    once on SIGTERM (the default action: no Python handler that a blocking call could delay), and ends when the
    driver is gone (its sentinel, and on Linux the kernel's parent-death signal).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    if os.getppid() != parent_pid:  # the driver ended before the death signal was armed
        return
    parent = multiprocessing.parent_process()
    watched = [conn] + ([parent.sentinel] if parent is not None and parent.sentinel is not None else [])
    try:
        initializer(*initargs)
    except Exception as exc:
        conn.send(("failed", None, _sendable(exc)))
        return
    conn.send(("ready", None, None))
    # Results go out from a thread: a send blocks until the driver reads, and the driver reads only between the
    # tasks it trains itself, so a child that sent inline idled for most of a driver's task.
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=_send_all, args=(conn, outbox), name="supsup-results", daemon=True)
    sender.start()
    try:
        while True:
            if conn not in wait_for(watched):
                return  # the driver is gone
            try:
                task = conn.recv()
            except (EOFError, OSError):
                return
            if task is None:
                return
            try:
                message = ("done", task, _process_run(task))
            except Exception as exc:
                message = ("error", task, _sendable(exc))
            outbox.put(message)
    finally:
        outbox.put(None)
        sender.join(5.0)


def _send_all(conn: Any, outbox: queue.SimpleQueue) -> None:
    """Send the messages put on ``outbox`` in order until ``None`` (or until the driver is gone)."""
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except (OSError, ValueError):  # the driver closed its end
            return


class _Children:
    """``n`` local worker processes, each with its own pipe (no lock shared with the driver or between children).

    :meth:`send` gives a task to one child; :meth:`receive` waits for what the children send back
    (``("ready" | "done" | "error" | "failed", task, payload)``) and raises :class:`WorkerProcessError` when a
    child ends unasked.  :meth:`close` stops them all: asked to exit, then SIGTERM, then SIGKILL; it always
    returns, and runs to the end even when a signal interrupts it.
    """

    def __init__(self, n: int, method: str, initializer: Any, initargs: tuple) -> None:
        context = multiprocessing.get_context(method)
        self.processes: list[Any] = []
        self.pipes: list[Any] = []
        try:
            for i in range(n):
                ours, theirs = context.Pipe(duplex=True)
                process = context.Process(target=_child_main, args=(theirs, os.getpid(), initializer, initargs),
                                          name=f"supsup-worker-{i + 1}", daemon=True)
                self.processes.append(process)
                self.pipes.append(ours)
                process.start()
                theirs.close()
        except BaseException:
            self.close()
            raise

    def send(self, child: int, task: int) -> None:
        self.pipes[child].send(task)

    def receive(self, timeout: float | None) -> list[tuple[int, str, Any, Any]]:
        """Messages from the children, ``(child, kind, task, payload)``, waiting at most ``timeout`` s (None: until one)."""
        pipes = {id(p): i for i, p in enumerate(self.pipes)}
        sentinels = {p.sentinel: i for i, p in enumerate(self.processes)}
        ready = wait_for(list(self.pipes) + list(sentinels), timeout)
        messages = []
        for obj in ready:
            if id(obj) in pipes:
                child = pipes[id(obj)]
                try:
                    while obj.poll():
                        messages.append((child, *obj.recv()))
                except (EOFError, OSError):
                    self._died(child)
        for obj in ready:
            if not messages and obj in sentinels:  # ended with nothing left to say
                self._died(sentinels[obj])
        return messages

    def _died(self, child: int) -> None:
        process = self.processes[child]
        process.join(1.0)
        code = process.exitcode
        how = (f"killed by signal {-code}" + (" (SIGKILL: out of memory?)" if code == -signal.SIGKILL else "")
               if code is not None and code < 0 else f"exit code {code}")
        raise WorkerProcessError(f"worker process {process.pid} ended unexpectedly ({how})")

    def close(self, grace: float = 2.0) -> None:
        """Stop every child: asked to exit (waiting up to ``grace`` s), then SIGTERM, then SIGKILL; reaped.

        Idempotent.  A KeyboardInterrupt or SystemExit that arrives meanwhile does not stop it half-way: the
        remaining stages run without waiting, then it is raised.
        """
        interrupted: BaseException | None = None
        for stage, wait_s in (("ask", grace), ("terminate", 1.0), ("kill", 5.0)):
            try:
                alive = [(i, p) for i, p in enumerate(self.processes) if p.pid is not None and p.exitcode is None]
                if not alive:
                    break
                for i, process in alive:
                    with contextlib.suppress(Exception):  # a pipe already closed, a process already gone
                        if stage == "ask":
                            self.pipes[i].send(None)
                        elif stage == "terminate":
                            process.terminate()
                        else:
                            process.kill()
                deadline = time.monotonic() + (min(wait_s, 0.2) if interrupted is not None else wait_s)
                for _, process in alive:
                    process.join(max(0.0, deadline - time.monotonic()))
            except (KeyboardInterrupt, SystemExit) as exc:  # a second signal: finish stopping, faster, then raise
                interrupted = interrupted or exc
        for pipe in self.pipes:
            with contextlib.suppress(Exception):
                pipe.close()
        self.processes, self.pipes = [], []
        if interrupted is not None:
            raise interrupted


class ProcessEngine(Engine):
    """``workers`` tasks at once on the CPU: the driver itself and ``workers - 1`` local processes.

    The driver trains too (on its own :class:`TaskWorker`), so no core idles while the
    child processes start (a spawned process needs seconds to import torch and build the
    stream) and one process fewer competes for the cores.
    Tasks are handed out in order, up to two per child, from the start: a child
    that is still starting finds them queued, so it never idles while the driver
    trains a task of its own (with tasks of a minute, waiting for a child to say
    it started before giving it work left it idle for a whole task).
    A child sends each result from a thread and goes on to its next task: the driver
    reads only between the tasks it trains itself, and an inline send blocked the child
    until then (one core idle for most of each driver's task).
    Whenever the next task to commit is not running elsewhere, the driver trains it;
    otherwise it trains the next unassigned task while it waits, as long as fewer than
    ``2 workers + 1`` tasks are held beyond the next one (bounded memory).
    No more children are started than there are tasks for them.

    ``driver_trains=False`` keeps the driver to committing: ``workers`` child processes
    train every task (the same masks).  :attr:`trained_by` records, per task of the
    last run, ``"driver"`` or ``"child"``.  ``start_method`` is ``"fork"`` or
    ``"spawn"`` (default: :func:`default_start_method`); the masks are the same with either.

    The children are stopped (module docstring, *Shutdown*) however :meth:`outcomes` ends; a child
    that ends unasked (killed, out of memory) ends the run with :class:`WorkerProcessError`, never a hang.
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
        self._children: _Children | None = None
        self._running: dict[int, int] = {}

    def outcomes(self, setup: TrainingSetup, tasks: Sequence[int]) -> Iterator[TaskOutcome]:
        """Train ``tasks`` on the driver and the children; yield their outcomes in order."""
        order = [int(t) for t in tasks]
        method = self.start_method or default_start_method()
        wanted = self.workers - 1 if self.driver_trains else self.workers
        n_children = max(0, min(wanted, len(order) - 1 if self.driver_trains else len(order)))
        self.trained_by = {}
        local = TaskWorker(setup, "cpu", self.callbacks, self.model, self.stream)
        if n_children == 0:  # one task (or none) for the driver: no process to start
            for task in order:
                self.trained_by[task] = "driver"
                yield local.run(task)
            return
        if method == "fork":
            initializer, initargs = _process_adopt, (local,)
        else:
            check_rebuildable(setup, self.stream, "spawned worker processes")
            initializer, initargs = _process_init, (setup.to_dict(),)
        window = 2 * (n_children + (1 if self.driver_trains else 0)) + 1
        running: dict[int, int] = {}  # task -> child training it
        self._running = running
        load = [0] * n_children  # tasks given to each child and not yet back
        done: dict[int, TaskOutcome] = {}
        cursor = 0  # next unassigned position in order
        try:
            children = self._children = _Children(n_children, method, initializer, initargs)

            def take(messages: list) -> None:
                for child, kind, task, payload in messages:
                    if kind == "ready":  # the child's initializer ran; its queued tasks are under way
                        continue
                    if kind == "done":
                        done[task] = payload
                        running.pop(task, None)
                        load[child] -= 1
                        self.trained_by[task] = "child"
                    else:  # "error" (a task raised) or "failed" (the initializer raised): the driver raises it
                        raise payload

            for want in order:
                while want not in done:
                    for child in range(n_children):  # in order, up to two per child (queued until it starts)
                        while (load[child] < 2 and cursor < len(order) and len(running) + len(done) < window):
                            children.send(child, order[cursor])
                            running[order[cursor]] = child
                            load[child] += 1
                            cursor += 1
                    take(children.receive(0))
                    if want in done:
                        break
                    if not self.driver_trains:
                        take(children.receive(None))
                        continue
                    if want not in running:  # unassigned (the lowest one): the driver trains it now
                        task = want
                    elif cursor < len(order) and len(running) + len(done) < window:
                        task = order[cursor]
                    else:
                        take(children.receive(None))
                        continue
                    done[task] = local.run(task)
                    self.trained_by[task] = "driver"
                    cursor += 1
                yield done.pop(want)
        finally:
            self.close()

    def close(self) -> None:
        """Stop the children: idle ones are asked to exit, busy ones (an early end) get SIGTERM at once; idempotent."""
        children, self._children = self._children, None
        if children is not None:
            children.close(grace=0.0 if self._running else 2.0)


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
        if address is not None and (not isinstance(address, str) or not address.strip()):
            raise ConfigError("--ray", "a cluster address such as ray://host:10001 or host:6379", repr(address))
        self.workers = _check_workers(workers, ray=True, address=address)
        self.stream = stream
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
            with _signal_handlers_kept():  # ray.init installs its own SIGTERM handler (sys.exit(15), at any point)
                try:
                    ray.init(**kwargs)
                except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ...: all mean "no cluster"
                    where = self.address or "a local instance"
                    raise RayUnavailableError(f"--ray: could not start or join Ray at {where}: {exc}") from None
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
        order = [int(t) for t in tasks]
        if not order:
            self.close()
            return
        try:
            ray = self._connect()
            actor_cls = ray.remote(num_cpus=1)(_RayTaskActor)
            actors = max(1, min(self.workers, len(order)))  # no actor without a task
            self._actors = [actor_cls.remote(setup.to_dict()) for _ in range(actors)]
            counter = iter(range(1 << 62))

            def submit(task: int):
                ref = self._actors[next(counter) % len(self._actors)].run.remote(task)
                return lambda: ray.get(ref)

            yield from _ordered(submit, order, 2 * actors + 1)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the actors; shut down a Ray instance this engine started (every step tried, even if one fails)."""
        ray, self._ray = self._ray, None
        actors, self._actors = self._actors, []
        if ray is None:
            return
        interrupted: BaseException | None = None
        for actor in actors:
            try:
                ray.kill(actor)
            except (KeyboardInterrupt, SystemExit) as exc:  # a second signal: still shut Ray down
                interrupted = interrupted or exc
            except Exception:  # noqa: S112 - an actor already gone
                continue
        if self._started:
            self._started = False
            try:
                ray.shutdown()
            except (KeyboardInterrupt, SystemExit) as exc:
                interrupted = interrupted or exc
                ray.shutdown()
        if interrupted is not None:
            raise interrupted


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Restore this process's SIGTERM and SIGINT handlers after the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, handler)


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
    workers = _check_workers(workers, ray=bool(ray), address=address if ray else None)
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
