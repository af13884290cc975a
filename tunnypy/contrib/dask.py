"""
A pool's workers on a Dask cluster, for ``distributed`` (the ``dask`` extra).

::

    from tunnypy.contrib.dask import DaskWorkers

    pool = tunnypy.Pool(4, make_worker, isolation=DaskWorkers(client))

Each tunnypy worker is one Dask actor, made on the cluster by the pool's
picklable factory and pinned to a Dask worker of its own: Dask runs every
actor of one Dask worker on a single thread, so two would take turns. The
waiting line, FIFO, stats and ``set_size`` stay in the local pool, which keeps
one thread per actor, so an actor never has more than one call at a time.
What this adds to Dask's actors, and what it costs, is in docs/scale-out.md.

The Dask workers must be able to import ``tunnypy`` and the factory's module.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, cast

import distributed

from .._checks import check_size, check_timeout
from .._isolation import ChildOptions, HostCounts, IsolationStats
from .._job import Runner, current_runner, interrupted, set_current_runner
from .._log import log
from .._process import RemoteTraceback
from .._worker import BaseWorker, RestartFailed, Worker, check_worker
from ..exceptions import WorkerCrashedError

__all__ = ["DaskWorkers"]

_CHECK_EVERY = 0.5
"""Seconds between two looks, while a job runs, at whether its Dask worker is still there."""
_TERMINATE_TIMEOUT = 10.0
"""Seconds a retiring worker's remote ``terminate()`` may take before its actor is let go."""
_NO_OP_READY = BaseWorker.block_until_ready


# --- the remote side: runs on a Dask worker ---------------------------------------------


class _RemoteJob:
    """The job an actor runs now, as ``tunnypy.interrupted()`` reads it there."""

    __slots__ = ("seq", "withdrawn")

    def __init__(self, seq: int, withdrawn: bool) -> None:
        self.seq = seq
        self.withdrawn = withdrawn


class _Resident:
    """
    The Dask actor holding one tunnypy worker (private).

    ``process``, ``ready`` and ``terminate`` run on the Dask worker's actor
    thread; ``interrupt`` is a coroutine, so Dask runs it on the worker's event
    loop while a job holds the actor thread (docs/scale-out.md, "How it works").
    """

    has_ready = False  # Dask reads an actor's attribute only if its class has it

    def __init__(self, factory: Callable[[], Worker[Any, Any]]) -> None:
        worker = factory()
        check_worker(worker)
        self._worker = worker
        self.job: _RemoteJob | None = None
        ready = getattr(worker, "block_until_ready", None)
        self.has_ready = ready is not None and getattr(ready, "__func__", None) is not _NO_OP_READY

    def process(self, seq: int, data: bytes, withdrawn: bool) -> tuple[Any, ...]:
        job = self.job = _RemoteJob(seq, withdrawn)
        # The actor thread is Dask's: it becomes this job's runner for interrupted().
        set_current_runner(cast(Runner, self))
        try:
            try:
                result = self._worker.process(pickle.loads(data))
            except BaseException as exc:  # delivered, as a thread worker's is
                return _failure(exc)
            try:
                return (True, pickle.dumps(result, protocol=5))
            except Exception as exc:
                kind = type(result).__qualname__
                return _failure(TypeError(f"job result of type {kind} cannot be pickled: {exc}"))
        finally:
            if self.job is job:
                self.job = None

    async def interrupt(self, seq: int) -> None:
        # On the event loop: the job named by *seq* only, never the one after it.
        job = self.job
        if job is None or job.seq != seq:
            return
        job.withdrawn = True
        hook = getattr(self._worker, "interrupt", None)
        if hook is not None:
            try:
                hook()
            except Exception:
                log.exception("interrupt_failed", seq=seq)

    def ready(self) -> None:
        self._worker.block_until_ready()

    def terminate(self) -> None:
        hook = getattr(self._worker, "terminate", None)
        if hook is not None:
            hook()


def _failure(exc: BaseException) -> tuple[Any, ...]:
    text = "".join(traceback.format_exception(exc))
    try:
        data: bytes | None = pickle.dumps(exc, protocol=5)
    except Exception:
        data = None
    return (False, data, f"{type(exc).__qualname__}: {_safe_str(exc)}", text)


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return "<str() failed>"


def _unpack(reply: tuple[Any, ...]) -> Any:
    if reply[0]:
        return pickle.loads(reply[1])
    _, data, kind, text = reply
    exc: BaseException | None = None
    if data is not None:
        with contextlib.suppress(Exception):
            exc = pickle.loads(data)
    if not isinstance(exc, BaseException):
        exc = RuntimeError(f"{kind} (the exception did not pickle)")
    exc.__cause__ = RemoteTraceback(text)
    raise exc


# --- the local side ---------------------------------------------------------------------

# distributed's annotations leave much of what is used here optional or untyped: held as Any.
_Client: Any = distributed.Client
_LocalCluster: Any = distributed.LocalCluster

_claims_lock = threading.Lock()
_claimed: dict[str, set[str]] = {}
"""Per scheduler address, the Dask workers that hold a tunnypy worker of this process."""
_asking: dict[str, int] = {}
"""Per scheduler address, the claims waiting for the cluster to grow."""
_dead: dict[str, set[str]] = {}
"""Per scheduler address, Dask workers found lost or killed (a restarted one has a new address)."""


async def _exit_now() -> None:
    # Run by Client.run on the Dask worker's event loop to kill it; its nanny starts another.
    os._exit(70)


class DaskWorkers:
    """
    Where to run a pool's workers: one Dask actor each, on Dask workers of their own.

    Pass it as ``Pool(size, factory, isolation=DaskWorkers(client))`` (or to
    ``Pool.from_func``). The factory (or function) must be picklable; it runs
    on the cluster, once per actor, and the Dask workers must import
    ``tunnypy``. Payloads and results are pickled. Every promise of the pool
    holds, and these are added (docs/scale-out.md):

    - A caller that gives up (deadline, token, Ctrl-C, cancelled future) has
      ``tunnypy.interrupted()`` turn true in its job on the Dask worker at
      once, and the worker's ``interrupt()`` run there, never in the job
      after it. If the job has not returned ``kill_grace`` seconds later, its
      Dask worker is restarted through its nanny and a new actor made.
    - A Dask worker lost during a job (killed, crashed, removed by the
      scheduler) fails that job only, with :class:`tunnypy.WorkerCrashedError`;
      the tunnypy worker is made again on another free Dask worker before its
      next job.
    - Growing the pool takes one free Dask worker per tunnypy worker; when
      none is free and the client's cluster can scale (``LocalCluster``, any
      ``SpecCluster``), the cluster is scaled up by one, and shrinking scales
      it back down. A cluster that cannot grow fails the growth as a failing
      factory does (:meth:`tunnypy.Pool.set_size` reports it).

    One ``DaskWorkers`` may serve several pools; two pools (of this process)
    never share a Dask worker. A client or cluster it was given is left as it
    was; one it made (from an address, or :meth:`local`) is closed with the
    last pool it served, after which it refuses new pools.

    Args:
        client: A ``distributed.Client``, or a scheduler address
            (``"tcp://host:8786"``) to connect a new client to.
        start_timeout: Seconds to wait for a free Dask worker and for the
            factory to run on it, when a worker is made or made again.

    Raises:
        TypeError: *client* is neither a client nor an address string, or
            *start_timeout* not a number.
        ValueError: *start_timeout* is negative or NaN.

    Not guaranteed: ``max_memory_per_child`` (refused: give the Dask workers a
    ``memory_limit``; a worker their nanny ends for it is a lost worker); a
    kill on Dask workers without a nanny (``processes=False``): the job runs
    on, as a thread's would; that another process's pools on the same
    cluster avoid these Dask workers.
    """

    def __init__(
        self,
        client: distributed.Client | str,
        *,
        start_timeout: float = 60.0,
    ) -> None:
        self._start_timeout = check_timeout(start_timeout, "start_timeout")
        if isinstance(client, str):
            self._client: Any = _Client(client, set_as_default=False)
            self._owns_client = True
        elif isinstance(client, distributed.Client):
            self._client = client
            self._owns_client = False
        else:
            msg = (
                "client must be a distributed.Client or a scheduler address "
                f"(got {type(client).__name__})"
            )
            raise TypeError(msg)
        self._cluster: Any = None  # a cluster made by local(), closed with the client
        self._lock = threading.Lock()
        self._hosts = 0
        self._closed = False

    @classmethod
    def local(cls, n: int, *, processes: bool = True, **cluster_options: Any) -> DaskWorkers:
        """
        Start a ``LocalCluster`` of *n* one-thread Dask workers, for trying it on one machine.

        *cluster_options* go to ``LocalCluster``. The cluster and its client
        close with the last pool that used them.

        Raises:
            TypeError: *n* is not an int.
            ValueError: *n* is negative.
        """
        n = check_size(n, "n")
        options: dict[str, Any] = {"threads_per_worker": 1}
        options.update(cluster_options)
        cluster = _LocalCluster(n_workers=n, processes=processes, **options)
        try:
            client = _Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        workers = cls(client)
        workers._cluster = cluster
        workers._owns_client = True
        return workers

    @property
    def client(self) -> distributed.Client:
        """The client the actors are made and called through."""
        return cast(distributed.Client, self._client)

    def open(self, factory: Callable[[], Worker[Any, Any]], options: ChildOptions) -> _DaskHost:
        """
        Make the host of one pool's actors (called by :class:`tunnypy.Pool` as it is made).

        Raises:
            ValueError: ``max_memory_per_child`` was given, or this object has
                closed the client and cluster it made.

        :meta private:
        """
        if options.max_memory_per_child is not None:
            msg = (
                "max_memory_per_child is not supported with DaskWorkers (got "
                f"{options.max_memory_per_child!r}): give the dask workers a memory_limit"
            )
            raise ValueError(msg)
        with self._lock:
            if self._closed:
                msg = "this DaskWorkers closed the client it made with its last pool; make another"
                raise ValueError(msg)
            self._hosts += 1
        return _DaskHost(self, factory, options, self._start_timeout)

    def _host_closed(self) -> None:
        with self._lock:
            self._hosts -= 1
            if self._hosts or not self._owns_client:
                return
            self._closed = True
        with _quiet_close(self._cluster is not None):
            self._client.close()
            if self._cluster is not None:
                self._cluster.close()

    def __repr__(self) -> str:
        return f"DaskWorkers({self._client.scheduler.address!r})"


@contextlib.contextmanager
def _quiet_close(quiet: bool) -> Iterator[None]:
    """
    With *quiet*: distributed's INFO records are dropped until the cluster we made has closed.

    ``LocalCluster`` keeps distributed's own log handler at WARNING while it
    lives, and lifts that as its close begins to end, before it stops its
    loop; a comm found closed meanwhile is logged at INFO with a traceback
    ("Batched Comm Closed"), printed to stderr after our pool had closed
    cleanly. The level of the ``distributed`` logger itself is raised for the
    close, and put back once the loop has stopped.
    """
    logger = logging.getLogger("distributed")
    level = logger.level
    if quiet and logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _DaskHost:
    """One pool's actors: places them on free Dask workers, grows and shrinks the cluster."""

    def __init__(
        self,
        owner: DaskWorkers,
        factory: Callable[[], Worker[Any, Any]],
        options: ChildOptions,
        start_timeout: float,
    ) -> None:
        self.owner = owner
        self.client: Any = owner._client
        self.factory = factory
        self.kill_grace = options.kill_grace
        self.max_jobs = options.max_jobs_per_child
        self.start_timeout = start_timeout
        self.scheduler: str = self.client.scheduler.address
        self.loop = self.client.loop.asyncio_loop
        self.lock = threading.Lock()
        self.names = itertools.count()
        self.tag = uuid.uuid4().hex[:8]
        self.added = 0  # Dask workers the cluster was scaled up by for this pool
        self.counts = HostCounts()
        self.count = self.counts.count
        self.closed = False

    def new_worker(self) -> _DaskWorker:
        proxy = _DaskWorker(self)
        proxy.start(again=False)
        return proxy

    def stats(self) -> IsolationStats:
        return self.counts.stats()

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        self.owner._host_closed()

    def claim(self, *, again: bool) -> str:
        """
        A Dask worker no tunnypy worker of this process holds, scaling the cluster for one.

        On a cluster that cannot scale, a new worker (growth) fails at once; one
        made *again* (after a loss or a kill) waits for a Dask worker to come back.
        """
        deadline = time.monotonic() + self.start_timeout
        asking = scaled = False
        try:
            while True:
                workers = self.client.scheduler_info()["workers"]
                with _claims_lock:
                    claimed = _claimed.setdefault(self.scheduler, set())
                    dead = _dead.get(self.scheduler, set())
                    for address, info in workers.items():
                        if (
                            address not in claimed
                            and address not in dead
                            and info.get("status", "running") == "running"
                        ):
                            claimed.add(address)
                            if scaled:  # given back as this pool shrinks
                                with self.lock:
                                    self.added += 1
                            return str(address)
                    if not asking:
                        asking = True
                        _asking[self.scheduler] = _asking.get(self.scheduler, 0) + 1
                    wanted = len(claimed) + _asking[self.scheduler]
                scaling = self._scale_to(wanted, len(workers))
                scaled = scaled or scaling is True
                if scaling is None and not again:
                    msg = (
                        f"no free dask worker for a new tunnypy worker (the cluster's "
                        f"{len(workers)} each hold one) and the cluster cannot be scaled from "
                        "here: start more dask workers, or use a client of a LocalCluster "
                        "or SpecCluster"
                    )
                    raise RuntimeError(msg)
                if _leaving():
                    raise _LeavingError
                if time.monotonic() >= deadline:
                    msg = (
                        f"no dask worker became free for a new tunnypy worker within "
                        f"{self.start_timeout} s (the cluster has {len(workers)}, "
                        f"{len(workers) - sum(a in claimed for a in workers)} free)"
                    )
                    raise TimeoutError(msg)
                time.sleep(0.05)
        finally:
            if asking:
                with _claims_lock:
                    _asking[self.scheduler] -= 1

    def _scale_to(self, wanted: int, present: int) -> bool | None:
        """
        Ask the cluster for *wanted* Dask workers if it plans fewer (never fewer than it has).

        Returns whether it asked; ``None`` if the cluster cannot scale from here.
        """
        cluster = self.client.cluster
        if cluster is None or not callable(getattr(cluster, "scale", None)):
            return None
        if wanted > (len(getattr(cluster, "worker_spec", ())) or present):
            cluster.scale(wanted)
            return True
        return False

    def mark_dead(self, address: str) -> None:
        # The scheduler may list a lost worker a while longer: never claim it again.
        with _claims_lock:
            _dead.setdefault(self.scheduler, set()).add(address)

    def release(self, address: str, *, give_back: bool, dead: bool = False) -> None:
        """Let another tunnypy worker have *address*; *give_back*: scale it away if added."""
        if dead:
            self.mark_dead(address)
        with _claims_lock:
            _claimed.get(self.scheduler, set()).discard(address)
        if not give_back or dead:
            return
        with self.lock:
            if not self.added:
                return
            self.added -= 1
        cluster = self.client.cluster
        scale_down = getattr(cluster, "scale_down", None)
        if cluster is None or scale_down is None:
            return
        try:
            name = self.client.scheduler_info()["workers"][address]["name"]
            cluster.sync(scale_down, [name])
        except Exception:
            log.exception("dask_scale_down_failed", worker=address)

    def submit(self, address: str) -> Any:
        key = f"tunnypy-{self.tag}-{next(self.names)}"
        return self.client.submit(
            _Resident,
            self.factory,
            actor=True,
            workers=[address],
            allow_other_workers=False,
            key=key,
        )

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)


def _let_go(future: distributed.Future[Any]) -> None:
    # Cancelled, not released: the actor's handle holds the key too, until collected.
    try:
        future.cancel()  # type: ignore[no-untyped-call]
    except Exception:
        log.exception("dask_actor_release_failed", key=future.key)


class _LeavingError(Exception):
    """The worker thread making an actor is retiring: it stops waiting for one."""


def _leaving() -> bool:
    # The calling worker thread's own flag (docs/scale-out.md, "Close"): a pool
    # closing while a lost actor is made again does not wait for a Dask worker.
    return bool(getattr(current_runner(), "retiring", False))


async def _awaited(actor_future: Any) -> Any:
    return await actor_future


class _DaskWorker:
    """The pool-side proxy of one actor: a :class:`Worker` on the pool's worker thread."""

    def __init__(self, host: _DaskHost) -> None:
        self.host = host
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.address: str | None = None
        self.actor: Any = None
        self.future: distributed.Future[Any] | None = None
        self.has_ready = False
        self.seq = 0
        self.running = False
        self.kill_at: float | None = None
        self.unkillable = False
        self.dead = False  # lost or killed, not let go yet (block_until_ready does)
        self.jobs = 0

    def start(self, *, again: bool = True) -> None:
        """Make the actor on a free Dask worker; returns once its factory ran there."""
        host = self.host
        address = host.claim(again=again)
        future = None
        try:
            future = host.submit(address)
            deadline = time.monotonic() + host.start_timeout
            while not future.done():
                if _leaving():
                    raise _LeavingError
                if time.monotonic() >= deadline:
                    msg = f"the factory did not finish on {address} within {host.start_timeout} s"
                    raise TimeoutError(msg)
                time.sleep(0.02)
            with host.client.as_current():  # the actor binds to this client
                actor = future.result()
                has_ready = bool(actor.has_ready)
        except BaseException:
            if future is not None:
                _let_go(future)
            host.release(address, give_back=True)
            raise
        self.address, self.future, self.actor, self.has_ready = address, future, actor, has_ready
        self.jobs = 0
        self.unkillable = self.dead = False

    def _drop(self, *, give_back: bool = False, dead: bool = False) -> None:
        future, address = self.future, self.address
        self.actor = self.future = self.address = None
        if future is not None:
            _let_go(future)
        if address is not None:
            self.host.release(address, give_back=give_back, dead=dead)

    def _lost(self) -> bool:
        future = self.future
        return future is None or future.status != "finished"

    def block_until_ready(self) -> None:
        if self.actor is not None and not self.dead and self._lost():
            self._mark_dead("crashed")
        if self.dead:
            self._drop(dead=True)
        if self.actor is None:
            if not self._start_again():
                return  # its pool is closing or shrinking: no actor to make
            self.host.count("respawned")
        elif self.host.max_jobs is not None and self.jobs >= self.host.max_jobs:
            self._end_remote()
            self._drop()
            if not self._start_again():
                return
            self.host.count("recycled")
        if self.has_ready:
            self.actor.ready().result()

    def _start_again(self) -> bool:
        """Make the actor again; ``False`` if its worker thread is retiring."""
        try:
            self.start()
        except _LeavingError:
            return False
        except Exception as exc:
            # This worker cannot serve: it leaves as failed and the pool replaces
            # it, with the backoff (docs/design.md, "Isolation").
            msg = f"this worker's dask actor could not be made again: {type(exc).__name__}: {exc}"
            raise RestartFailed(msg) from exc
        return True

    def process(self, payload: Any) -> Any:
        data = pickle.dumps(payload, protocol=5)  # an unpicklable payload fails here
        if self.actor is None or self.dead or self._lost():
            self._restart_for_call()
        self.wake.clear()
        with self.lock:
            self.seq += 1
            seq = self.seq
            self.running = True
            self.kill_at = None
        try:
            # Read after ``running`` is set: a caller that gave up before is seen
            # here, one that gives up after sees ``running`` (interrupt()).
            withdrawn = interrupted()
            reply = self._wait(self.actor.process(seq, data, withdrawn))
        finally:
            with self.lock:
                self.running = False
                self.kill_at = None
        self.jobs += 1
        return _unpack(reply)

    def _restart_for_call(self) -> None:
        if self.actor is not None and not self.dead:
            self._mark_dead("crashed")
        self._drop(dead=True)
        try:
            self.start()
        except Exception as exc:
            msg = f"this worker's dask worker was lost and it could not be made again ({exc})"
            raise WorkerCrashedError(msg) from exc
        self.host.count("respawned")

    def _mark_dead(self, counter: str) -> None:
        """Count the loss and keep the address from being claimed; the cleanup waits (_drop)."""
        self.dead = True
        self.host.count(counter)
        if self.address is not None:
            self.host.mark_dead(self.address)

    def _wait(self, actor_future: Any) -> tuple[Any, ...]:
        # The error is raised first and the actor let go in block_until_ready(),
        # after delivery: letting go waits for the scheduler.
        wake = self.wake
        done = self.host.run(_awaited(actor_future))
        done.add_done_callback(lambda _: wake.set())
        while not done.done():
            kill_at = self.kill_at
            timeout = _CHECK_EVERY
            if kill_at is not None and not self.unkillable:
                timeout = min(timeout, kill_at - time.monotonic())
            if timeout > 0:
                wake.wait(timeout)
            wake.clear()
            if done.done():
                break
            if kill_at is not None and not self.unkillable and time.monotonic() >= kill_at:
                address = self.address
                if self._kill():
                    done.cancel()
                    msg = f"the job outlived kill_grace; its dask worker {address} was killed"
                    raise WorkerCrashedError(msg)
            if self._lost():
                done.cancel()
                self._mark_dead("crashed")
                msg = f"the dask worker {self.address} holding this worker was lost during the job"
                raise WorkerCrashedError(msg)
        try:
            return cast(tuple[Any, ...], done.result())
        except Exception as exc:
            self._mark_dead("crashed")
            msg = (
                f"the dask worker {self.address} holding this worker was lost during the job "
                f"({type(exc).__name__}: {exc})"
            )
            raise WorkerCrashedError(msg) from exc

    def _kill(self) -> bool:
        """End the Dask worker process running the job (its nanny starts another); False if none."""
        host, address = self.host, self.address
        assert address is not None  # a job runs
        info = host.client.scheduler_info()["workers"].get(address, {})
        if not info.get("nanny"):
            # No nanny: in-process, or a worker nothing would start again.
            self.unkillable = True
            log.warning("dask_worker_not_killable", worker=address)
            return False
        try:
            host.client.run(_exit_now, workers=[address], wait=False)
        except Exception:
            log.exception("dask_worker_kill_failed", worker=address)
        self._mark_dead("killed")
        return True

    def interrupt(self) -> None:
        with self.lock:
            if not self.running:
                return  # not begun (process() reads interrupted()) or already returned
            seq = self.seq
            actor = self.actor
            self.kill_at = time.monotonic() + self.host.kill_grace
        self.wake.set()
        try:
            actor.interrupt(seq)  # scheduled on the client's loop; not waited for
        except Exception:
            log.exception("dask_interrupt_failed", worker=self.address)

    def _end_remote(self) -> None:
        if self.actor is None or self.dead or self._lost():
            return
        try:
            self.actor.terminate().result(timeout=_TERMINATE_TIMEOUT)
        except Exception:
            log.exception("terminate_failed", worker=self.address)

    def terminate(self) -> None:
        self._end_remote()
        self._drop(give_back=True, dead=self.dead)
