"""
Lifecycle: the workers of one pool, from growth to exit.

Grow, shrink, retire, repair, close, waiting for workers to end, interpreter
exit, fork and collection. Autoscaling and recycling are the ``Keeper``'s
(``_keeper.py``): the lifecycle holds it and serves it as its ``Staff``.
The workers serve a ``Line`` (``_line.py``) and share its lock. Threads
reference only the line and the lifecycle, never the ``Pool``, so a pool
dropped without ``close()`` is collected and a finalizer closes its
lifecycle (docs/design.md, "The Pool/Lifecycle split").

Invariant, under the line's lock: ``workers`` holds every worker whose thread
has not yet finished ``terminate()``.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import attrs

from ._checks import deadline_in
from ._histogram import EMPTY, RUN, WAIT, LatencySummary, merged, new_timings, summarize
from ._isolation import Host, IsolationStats
from ._job import DONE, REJECTED, RUNNING, WAITING, Job
from ._keeper import Bounds, Keeper
from ._line import Line, Taker
from ._log import debug_enabled, log, log_quietly
from ._waker import LockWaker, Waker, acquire_until
from ._worker import RestartFailed, Worker, check_worker, terminate_quietly
from ._worker_thread import WorkerThread
from .exceptions import PoolClosedError, PoolStalledError

__all__ = ["Lifecycle", "PoolStats", "awaited_at_exit", "close_dropped_pool"]

_monotonic = time.monotonic
_TIMEOUT_MAX = threading.TIMEOUT_MAX

# A failed worker's replacement is tried at once; while the factory fails,
# again after _BACKOFF_FIRST seconds, doubling up to _BACKOFF_CAP, without
# jitter (docs/design.md, "Workers that come back").
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 5.0


@attrs.frozen
class PoolStats:
    """
    A snapshot of a pool, returned by :meth:`Pool.stats`: sizes and counters
    taken under its lock, then latencies.

    ``completed + failed + timed_out + cancelled + rejected`` counts every call
    that has ended (a ``submit`` ends when its future does). :attr:`wait` and
    :attr:`run` are added up from the workers' own records just after, without
    the lock, so a job that ends meanwhile may be in them and not yet in the
    counters.
    """

    size: int
    """The target size, what ``set_size`` last asked for."""
    workers: int
    """Worker threads alive, including retiring ones finishing a job or replacing themselves."""
    busy: int
    """Workers holding a job."""
    idle: int
    """Workers parked, ready for a job."""
    waiting: int
    """Calls waiting in line for a worker."""
    completed: int
    """Jobs whose result was delivered."""
    failed: int
    """Jobs whose exception was delivered."""
    timed_out: int
    """Calls that ended in ``JobTimedOutError``."""
    cancelled: int
    """
    Calls that ended in ``JobCancelledError``, futures cancelled in line,
    futures their caller resolved itself (``set_result()`` and the like), and
    callers interrupted by Ctrl-C.
    """
    rejected: int
    """
    Calls refused with ``PoolClosedError``, ``PoolBusyError``,
    ``PoolDeadlockError`` or ``PoolStalledError``.
    """
    replaced: int = 0
    """Workers started in place of workers that left because they failed."""
    factory_failures: int = 0
    """
    Calls of the worker factory that raised (or returned no worker) while
    replacing, autoscaling or recycling.
    """
    min_size: int | None = None
    """The lower bound ``autoscale`` set; ``None`` while the pool does not autoscale."""
    max_size: int | None = None
    """The upper bound ``autoscale`` set; ``None`` while the pool does not autoscale."""
    autoscale_started: int = 0
    """Workers autoscaling started for calls that would have waited in line."""
    autoscale_retired: int = 0
    """Workers autoscaling retired because they had idled for its ``idle_timeout``."""
    recycled: int = 0
    """
    Workers retired by ``max_jobs_per_worker`` or ``max_worker_age``, each
    once its successor had started.
    """
    respawned: int = 0
    """
    Worker processes started in place of one killed, crashed or recycled
    (``isolation="process"``; 0 for threads). The worker thread stays: this
    is not counted in :attr:`replaced`.
    """
    killed: int = 0
    """Worker processes killed because a job outlived its ``kill_grace``."""
    crashed: int = 0
    """Worker processes that died on their own (a signal, ``os._exit``, the OOM killer)."""
    children_recycled: int = 0
    """Worker processes replaced between jobs (``max_jobs_per_child``, ``max_memory_per_child``)."""
    wait: LatencySummary = EMPTY
    """
    How long jobs waited, from the call joining the line until a worker
    started the job, for every job a worker ran since the pool started
    (a call withdrawn before it started is not counted). Kept only by a pool
    made with ``latency=True`` or ``"sampled"``; otherwise empty (``count`` 0).
    """
    run: LatencySummary = EMPTY
    """
    How long those jobs ran (the worker's ``process()``, whether it returned
    or raised), each counted once it has run, before its caller has the
    outcome. Kept only by a pool made with ``latency=True`` or ``"sampled"``;
    otherwise empty.
    """


class Lifecycle:
    """The workers of one pool: how many, growing, retiring, closing (private)."""

    def __init__(
        self,
        factory: Callable[[], Worker[Any, Any]],
        line: Line,
        stall_timeout: float | None = None,
        *,
        max_jobs: int | None = None,
        max_age: float | None = None,
        host: Host | None = None,
    ) -> None:
        self.factory = factory
        # Where the workers run when not on their threads (_isolation.py);
        # closed once the pool is closed and every worker has ended.
        self.host = host
        self.host_closed = False
        self.line = line
        self.stall_timeout = stall_timeout
        # Autoscaling and recycling, and the keeper thread (_keeper.py).
        self.keeper = Keeper(line, max_jobs=max_jobs, max_age=max_age)
        self.resize_lock = threading.Lock()
        self.workers: dict[WorkerThread, None] = {}
        self.size = 0
        # set_size calls made, and the targets of those whose growth may yet
        # fail, after the last to end well: a failed growth falls back to the
        # target before its own (see _fall_back_locked).
        self.resizes = 0
        self.targets: list[tuple[int, int]] = [(0, 0)]
        self.next_index = 0
        # What wakes each thread in _join() waiting for a worker to leave
        # ``workers`` (see worker_exited).
        self.watchers: dict[WorkerThread, list[Waker]] = {}
        # Parked workers retired and not yet woken: each leaving worker wakes
        # the next (docs/design.md, "Resize").
        self.to_wake: list[Taker] = []
        # Calls a close() refused that it has not yet told (see _shut_locked).
        self.refused: list[Job] = []
        # The wait and run times recorded by workers that have left
        # (_histogram.py); those of workers still listed are on each worker.
        self.retired_timings = new_timings()
        # Replacing failed workers (docs/design.md, "Workers that come back"):
        # who left by failing, who is replacing them, and the backoff's state.
        self.failed_out: set[WorkerThread] = set()
        self.restart_failed: set[WorkerThread] = set()  # left because its factory failed
        self.replacing: dict[WorkerThread, LockWaker] = {}
        self.recruits: dict[WorkerThread, float] = {}  # replacements still here: when listed
        self.delay = 0.0  # the backoff's next wait
        self.down_since: float | None = None  # since when the pool has had no worker
        self.factory_streak = 0
        self.last_failure = "none"
        self.replaced = 0
        self.factory_failures = 0

    # -- resize -------------------------------------------------------------

    def set_size(self, size: int, wait: bool, timeout: float | None) -> bool:
        deadline = deadline_in(timeout)
        # The target and a shrink take effect at once; only a growth, which
        # calls the factory, waits for a growth in another thread to finish.
        with self.line.lock:
            if self.line.closed:
                raise PoolClosedError(self.line.closed_reason)
            auto = self.keeper.bounds
            if auto is not None:
                msg = (
                    f"set_size() is refused while the pool autoscales between "
                    f"{auto.min_size} and {auto.max_size} workers (got {size}); move "
                    "the bounds with autoscale(min_size, max_size) or stop it with "
                    "autoscale(None)"
                )
                raise RuntimeError(msg)
            previous = self.size
            self.size = size
            self.resizes += 1
            ticket = self.resizes
            self.targets.append((ticket, size))
            current = self.line.active
            backoffs = list(self.replacing.values())
        for waker in backoffs:  # to see the new target at once
            waker.wake()
        if size < current:
            self.shrink()
        if size > current:
            try:
                with self.resize_lock:
                    self._grow(ticket)
            except BaseException:
                # Ctrl-C while waiting for another thread's growth, before
                # _grow could fall back itself (a second fall back is a no-op).
                with self.line.lock:
                    self._fall_back_locked(ticket)
                raise
        else:
            with self.line.lock:
                self._settle_locked(ticket)
        log.info("pool_resized", size=size, previous=previous)
        if wait:
            # Wait for every retiring worker, including those retired by an
            # earlier call, so that the pool really is at *size* afterwards.
            with self.line.lock:
                # Not a thread replacing a failed worker: it may back off for long.
                retirees = [w for w in self.workers if w.retiring and w not in self.replacing]
            if any(worker_thread.thread.ident is None for worker_thread in retirees):
                # Retired while a growth in another thread was starting it:
                # let that growth start it first (see close()).
                if not acquire_until(self.resize_lock, deadline):
                    return False
                self.resize_lock.release()
            return _join(self, retirees, deadline)
        return True

    def _settle_locked(self, ticket: int) -> None:
        # Call *ticket* ended well: no earlier target is fallen back to.
        targets = self.targets
        for index, (made, _) in enumerate(targets):
            if made == ticket:
                del targets[:index]
                return

    def _fall_back_locked(self, ticket: int) -> None:
        # The growth of call *ticket* failed. If no later call set a target,
        # go back to the target before it (that of an earlier call still
        # growing, or the last to end well).
        if self.line.closed:
            return  # close() has set the size to 0 for good
        targets = self.targets
        for index, (made, _) in enumerate(targets):
            if made == ticket:
                if index == 0:
                    return  # it ended well (see _settle_locked)
                del targets[index]
                if index == len(targets):
                    self.size = targets[-1][1]
                return

    def _grow(self, ticket: int) -> None:
        # As many workers as the target still lacks: a shrink, or a growth
        # in another thread, may have come since this call began.
        with self.line.lock:
            if self.line.closed:
                raise PoolClosedError(self.line.closed_reason)
            count = self.size - self.line.active
        # Make every worker before starting any thread, so a factory that
        # raises leaves the pool as it was.
        made: list[Worker[Any, Any]] = []
        try:
            for _ in range(count):
                worker = self.factory()
                made.append(worker)  # terminated below if it is refused
                check_worker(worker)
        except BaseException:
            try:
                _terminate_all(made)
            finally:
                with self.line.lock:
                    self._fall_back_locked(ticket)
            raise
        # Ctrl-C can land wherever CPython checks for signals (see shrink):
        # each worker_thread is listed and counted by stores and one last call, and
        # whatever lands is undone below like a thread that would not start.
        worker_threads: list[WorkerThread] = []
        starting: WorkerThread | None = None
        try:
            with self.line.lock:
                if self.line.closed:  # close() raced us: the new workers never existed
                    raise PoolClosedError(self.line.closed_reason)
                # A shrink during the factory calls may want fewer.
                for worker in made[: max(0, self.size - self.line.active)]:
                    worker_thread = WorkerThread(self.line, self, worker, self.next_index)
                    self.next_index += 1
                    self.workers[worker_thread] = None
                    self.line.active += 1
                    worker_threads.append(worker_thread)
                if worker_threads:  # a worker is back (see _replace)
                    self.line.stalled = None
                    self.down_since = None
            while len(made) > len(worker_threads):  # those the target no longer wants
                # Off the list only once terminated: Ctrl-C lands at a call,
                # and the undo below terminates what is still listed.
                terminate_quietly(made[-1], -1)
                del made[-1]
            for starting in worker_threads:
                starting.thread.start()
            starting = None
        except BaseException as exc:
            # Out of threads, Ctrl-C or closed meanwhile: undo the workers not
            # started, retire the others.
            self._undo_grow(made, worker_threads, starting, exc, ticket)
            raise
        with self.line.lock:
            self._settle_locked(ticket)

    def _undo_grow(
        self,
        made: list[Worker[Any, Any]],
        worker_threads: list[WorkerThread],
        starting: WorkerThread | None,
        exc: BaseException,
        ticket: int,
    ) -> None:
        started: list[WorkerThread] = []
        unstarted: list[WorkerThread] = []
        for worker_thread in worker_threads:
            if worker_thread.thread.ident is not None or (
                # Ctrl-C inside Thread.start(): the thread may exist without
                # having said so yet, and may say so late. Retired like a
                # started one, it leaves by itself whenever it runs.
                worker_thread is starting and not isinstance(exc, Exception)
            ):
                started.append(worker_thread)
            else:
                unstarted.append(worker_thread)
        with self.line.lock:
            for worker_thread in unstarted:
                del self.workers[worker_thread]
                if not worker_thread.retiring:  # else a shrink has counted it
                    self.line.active -= 1
        # Every worker made and never run: those of the worker_threads not started,
        # and any Ctrl-C left without a worker_thread.
        for worker in made[len(worker_threads) :]:
            terminate_quietly(worker, -1)
        for worker_thread in unstarted:
            terminate_quietly(worker_thread.worker, worker_thread.index)
        self._retire(started)
        with self.line.lock:
            self._fall_back_locked(ticket)

    def shrink(self) -> None:
        # The loops only store and count; the ``finally`` does the rest
        # wherever Ctrl-C landed (docs/design.md, "Ctrl-C and other signals").
        first: Taker | None = None
        stranded: Waker | None = None
        try:
            with self.line.lock:
                # Down to the latest target: another call may have set one since.
                count = max(0, self.line.active - self.size)
                idle = self.line.idle
                to_wake = self.to_wake
                # Idle workers first, the least recently used (bottom of the
                # stack); then the newest of the others (busy, or in
                # block_until_ready), which notice at their next offer.
                take = min(count, len(idle))
                taken = 0
                busy = 0
                try:
                    for worker_thread in idle[:take]:
                        worker_thread.retiring = True
                        taken += 1
                    if take < count:
                        for worker_thread in reversed(self.workers):
                            if busy == count - take:
                                break
                            if not worker_thread.retiring:
                                worker_thread.retiring = True
                                busy += 1
                finally:
                    self.line.active -= taken + busy
                    to_wake += idle[:taken]  # parked: they need a wake
                    del idle[:taken]
                    if to_wake:
                        first = to_wake[-1]
                        del to_wake[-1]
                    try:
                        stranded = self.line.unstrand_locked()
                    except BaseException:  # Ctrl-C as it began: once more
                        stranded = self.line.unstrand_locked()
                        raise
        finally:
            try:
                if first is not None:
                    first.waker.wake()
                if stranded is not None:
                    stranded.wake()
            except BaseException:  # Ctrl-C as a wake begins: see dispatch()
                if first is not None:
                    first.waker.wake()
                if stranded is not None:
                    stranded.wake()
                raise

    def _retire(self, worker_threads: list[WorkerThread]) -> None:
        with self.line.lock:
            for worker_thread in worker_threads:
                if worker_thread.retiring:
                    continue
                worker_thread.retiring = True
                self.line.active -= 1
                if worker_thread in self.line.idle:
                    self.line.idle.remove(worker_thread)
            try:
                stranded = self.line.unstrand_locked()
            except BaseException:  # Ctrl-C as it began: once more (see shrink)
                stranded = self.line.unstrand_locked()
                raise
        try:
            for worker_thread in worker_threads:
                worker_thread.waker.wake()
            if stranded is not None:
                stranded.wake()
        except BaseException:  # Ctrl-C meanwhile (see dispatch()): wake them all again
            for worker_thread in worker_threads:
                worker_thread.waker.wake()
            if stranded is not None:
                stranded.wake()
            raise

    def repair(
        self,
        worker_thread: WorkerThread,
        delivered: Job | None,
        error: BaseException | None,
        *,
        leaving: bool,
        may_have_run: bool = False,
    ) -> Job | None:
        """
        Undo what a worker whose loop failed may have left half done (see WorkerThread._recover).

        The worker comes off the idle stack and a summons it held is passed
        on. A job it holds and never started (not *delivered*, which it ran)
        stays with it and is returned, for it to run next. If it is
        *leaving*, that job goes back to the head of the line instead, or ends
        where it cannot: a future (already marked running) fails with
        *error*, and a call on a closed pool is refused as ``close()`` refuses.
        With *may_have_run* (whether the held job ran is unknown), the job
        ends with *error*: a job never runs twice. With *leaving*, the worker
        retires. Whoever should serve the line next is woken.
        """
        wake: list[Waker] = []
        ending: Job | None = None  # fails with *error*, delivered like any failed job
        keep: Job | None = None
        failure = error or RuntimeError("a worker failed; this job may or may not have run")
        described = _describe(failure) if leaving else ""
        with self.line.lock:
            idle = self.line.idle
            if worker_thread in idle:
                idle.remove(worker_thread)
            if self.line.summoned is worker_thread:
                self.line.summoned = None
            held = worker_thread.job
            worker_thread.job = None
            if (
                held is not None
                and held is not delivered
                and held.state == RUNNING
                and not held.withdrawn
            ):
                if not leaving and not may_have_run:
                    keep = worker_thread.job = held
                elif held.future is not None or may_have_run:
                    ending = held
                elif self.line.closed:  # no one will serve the line
                    held.state = REJECTED
                    self.line.rejected += 1
                    wake.append(held.waker)  # type: ignore[arg-type]
                else:
                    held.state = WAITING
                    held.runner = None
                    self.line.waiting.appendleft(held)
            if leaving:
                if not worker_thread.retiring:
                    # Its failure retires it: it is replaced as it leaves (see _replace).
                    worker_thread.retiring = True
                    self.line.active -= 1
                    self.failed_out.add(worker_thread)
                    self.last_failure = described
                    if isinstance(error, RestartFailed):
                        self.restart_failed.add(worker_thread)
                # Also when it was retiring already: a call it held may be
                # back in line, waited on by active workers.
                stranded = self.line.unstrand_locked()
                if stranded is not None:
                    wake.append(stranded)
            if self.line.waiting and idle and self.line.summoned is None and not self.line.closed:
                following = idle[-1]
                del idle[-1]
                self.line.summoned = following
                wake.append(following.waker)
        for waker in wake:
            waker.wake()
        if ending is not None:
            worker_thread._deliver(ending, False, failure)
        if isinstance(error, RestartFailed) and error.__cause__ is not None:
            # Its proxy ran the factory to restart its remote worker, and it failed:
            # counted and logged as a replacement's factory failure.
            self._factory_failed(error.__cause__)
        return keep

    def worker_exited(self, worker_thread: WorkerThread) -> None:
        if not worker_thread.retiring:
            # Left by an error that WorkerThread._recover could not handle
            # (it failed itself). Whether its job ran is unknown here: the
            # job ends with an error, since a job must never run twice.
            self.repair(worker_thread, None, None, leaving=True, may_have_run=True)
        with self.line.lock:
            following = self.to_wake.pop() if self.to_wake else None
        if following is not None:
            following.waker.wake()  # pass the shrink's wake along the chain
        terminate_quietly(worker_thread.worker, worker_thread.index)
        with self.line.lock:
            failed = worker_thread in self.failed_out
            self.failed_out.discard(worker_thread)
            recruited = self.recruits.pop(worker_thread, None)
            factory_failed = worker_thread in self.restart_failed
            self.restart_failed.discard(worker_thread)
        if failed:
            try:
                self._replace(worker_thread, recruited, factory_failed=factory_failed)
            except BaseException:  # it must not keep this worker listed
                try:  # noqa: SIM105 - the except says why
                    log.exception("replacement_failed", worker=worker_thread.index)
                except BaseException:
                    pass  # a broken logging setup, as in WorkerThread._recover
        if debug_enabled():
            try:  # noqa: SIM105 - the except says why
                log.debug("worker_stopped", worker=worker_thread.index)
            except BaseException:
                pass  # a logging handler that raises must not keep the worker listed
        # Only now leave ``workers``, the last of this worker's doings:
        # set_size(wait=True), close() and exit wait for the workers listed
        # there, and must not return before terminate().
        with self.line.lock:
            self.workers.pop(worker_thread, None)
            self.keeper.forget_locked(worker_thread)
            self.line.completed += worker_thread.completed
            self.line.failed += worker_thread.failed
            timings = worker_thread.timings_now()  # on its own thread: no fold runs
            if timings is not None:
                self.retired_timings = merged((self.retired_timings, timings))
            watchers = self.watchers.pop(worker_thread, None)
        if watchers is not None:
            for waker in watchers:
                waker.wake()
        self._close_host_when_done()

    def _close_host_when_done(self) -> None:
        # Host.close() once, after every worker's terminate() (docs/design.md, "Isolation").
        with self.line.lock:
            host = self.host
            if host is None or self.host_closed or not self.line.closed or self.workers:
                return
            self.host_closed = True
        try:
            host.close()
        except BaseException:
            log_quietly(log.exception, "host_close_failed")

    # -- replacement ---------------------------------------------------------

    def _replace(
        self, gone: WorkerThread, recruited: float | None, *, factory_failed: bool = False
    ) -> None:
        """
        On the thread of *gone*, which its failure retired: start a fresh worker in its place.

        It runs after ``terminate()`` and before *gone* leaves ``workers``, so
        ``close(wait=True)`` and interpreter exit wait for it, and ``close()``
        and ``set_size()`` wake it from a backoff. The first try is at once,
        unless *gone* was itself a replacement (listed at *recruited*) that
        failed before serving a call, while callers waited or within the
        backoff's cap, or *gone* left because the factory failed in its proxy
        (``RestartFailed``): then the backoff goes on. A replacement is made only
        while the pool is open and below its target, checked under the lock
        as it is listed, so a shrink or close() meanwhile wins. See
        docs/design.md, "Workers that come back".
        """
        line = self.line
        waker = LockWaker()
        with line.lock:
            if factory_failed:
                # Its factory's failure set the backoff's wait (_factory_failed);
                # one that served begins a new streak for stall_timeout.
                if gone.completed or gone.failed:
                    self.down_since = None
            elif (
                recruited is not None
                and not (gone.completed or gone.failed)
                and (line.waiting or _monotonic() - recruited < _BACKOFF_CAP)
            ):
                # The last replacement failed too: the backoff goes on. (One
                # that idled for long with no one waiting begins a new streak.)
                self.delay = min(max(self.delay * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
            else:
                self.delay = 0.0
                self.down_since = None
            retry_at = _monotonic() + self.delay
            self.replacing[gone] = waker
        try:
            while True:
                stalled: list[Job] = []
                reason = ""
                with line.lock:
                    if line.closed or line.active >= self.size:
                        if not line.closed:
                            line.stalled = None  # no worker is wanted
                        return
                    now = _monotonic()
                    wake_at = retry_at
                    if self.stall_timeout is not None and line.active == 0:
                        if self.down_since is None:
                            self.down_since = now
                        stall_at = self.down_since + self.stall_timeout
                        if now >= stall_at:
                            if line.stalled is None:
                                stalled = self._stall_locked()
                                reason = line.stalled or ""
                        else:
                            wake_at = min(wake_at, stall_at)
                _tell_stalled(stalled, reason)
                if now < wake_at:
                    waker.wait(wake_at - now)  # close() and set_size() cut it short
                    continue
                if self._replace_once(gone):
                    return
                retry_at = _monotonic() + self.delay
        finally:
            with line.lock:
                del self.replacing[gone]

    def _replace_once(self, gone: WorkerThread) -> bool:
        """One try: call the factory and start the worker; ``False`` if the factory failed."""
        line = self.line
        # Factory calls are made one at a time, as a growth makes them.
        with self.resize_lock:
            with line.lock:
                if line.closed or line.active >= self.size:
                    if not line.closed:
                        line.stalled = None  # no worker is wanted (see _replace)
                    return True  # a growth, shrink or close() came first
            worker = self.try_factory()
            if worker is None:
                return False
            with line.lock:
                wanted = not line.closed and line.active < self.size
                if wanted:
                    worker_thread = WorkerThread(line, self, worker, self.next_index)
                    self.next_index += 1
                    self.workers[worker_thread] = None
                    line.active += 1
                    self.recruits[worker_thread] = _monotonic()
                    self.replaced += 1
                if not line.closed:  # a worker is back, or none is wanted
                    line.stalled = None
                streak = self.factory_streak
                self.factory_streak = 0
            if streak:
                log_quietly(log.info, "worker_factory_recovered", failures=streak)
            if not wanted:
                terminate_quietly(worker, -1)
                return True
            try:
                worker_thread.thread.start()
            except Exception:
                # Out of threads: unlisted, terminated, and tried again later.
                with line.lock:
                    del self.workers[worker_thread]
                    self.recruits.pop(worker_thread, None)
                    if not worker_thread.retiring:  # else close() has counted it
                        line.active -= 1
                    self.replaced -= 1
                terminate_quietly(worker, worker_thread.index)
                log_quietly(log.exception, "worker_start_failed", worker=worker_thread.index)
                with line.lock:
                    self.delay = min(max(self.delay * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
                return False
        log.info("worker_replaced", worker=gone.index, by=worker_thread.index)
        return True

    def try_factory(self) -> Worker[Any, Any] | None:
        """A checked worker from the factory, or ``None`` with the failure counted and logged."""
        # SystemExit too: on a replacing or keeper thread it would only end that try.
        try:
            worker = self.factory()
        except BaseException as exc:
            self._factory_failed(exc)
            return None
        try:
            check_worker(worker)
        except BaseException as exc:
            terminate_quietly(worker, -1)
            self._factory_failed(exc)
            return None
        return worker

    def _factory_failed(self, exc: BaseException) -> None:
        described = _describe(exc)
        with self.line.lock:
            self.factory_failures += 1
            self.factory_streak += 1
            first = self.factory_streak == 1
            self.delay = min(max(self.delay * 2, _BACKOFF_FIRST), _BACKOFF_CAP)
            self.last_failure = f"the worker factory raised {described}"
            delay = self.delay
        if first:  # once per streak; worker_factory_recovered ends it
            log_quietly(log.warning, "worker_factory_failing", error=described, retry_in=delay)

    def _stall_locked(self) -> list[Job]:
        """Under the lock: mark the pool stalled and take every call out of line, refused."""
        line = self.line
        line.stalled = (
            f"pool has had no worker for {self.stall_timeout:g} s (stall_timeout) "
            f"while replacing failed workers; last failure: {self.last_failure}"
        )
        stalled = list(line.waiting)
        line.waiting.clear()
        for job in stalled:
            line.rejected += 1
            if job.future is None:
                job.error = PoolStalledError(line.stalled)
                job.state = DONE
            else:
                job.state = REJECTED  # told out of the lock: callbacks may run
        return stalled

    # -- for the keeper (_keeper.Staff) --------------------------------------

    def autoscale(self, bounds: Bounds | None) -> None:
        """Set the autoscaling bounds (``None``: off): see ``Keeper.autoscale``."""
        self.keeper.autoscale(self, bounds)

    def start_keeper(self) -> None:
        """Start the keeper if the pool recycles workers (called once, by the constructor)."""
        self.keeper.start_if_recycling(self)

    def spent(self, worker_thread: WorkerThread) -> None:
        """*worker_thread* has run ``max_jobs_per_worker`` jobs: the keeper makes its successor."""
        self.keeper.spent(worker_thread)

    def own_target_locked(self, size: int, *, new: bool) -> None:
        """Under the lock: *size* is the target, the keeper's (see _keeper.Staff)."""
        self.size = size
        if new:
            self.resizes += 1
        self.targets = [(self.resizes, size)]

    def hire_locked(self, worker: Worker[Any, Any]) -> WorkerThread:
        """Under the lock: list the keeper's *worker*, unstarted; a worker is back."""
        worker_thread = WorkerThread(self.line, self, worker, self.next_index)
        self.next_index += 1
        self.workers[worker_thread] = None
        self.line.active += 1
        self.line.stalled = None
        self.down_since = None
        self.delay = 0.0
        return worker_thread

    def unhire_locked(self, worker_thread: WorkerThread) -> None:
        """Under the lock: unlist a worker whose thread would not start, and back off."""
        del self.workers[worker_thread]
        if not worker_thread.retiring:  # else close() has counted it
            self.line.active -= 1
        self.delay = min(max(self.delay * 2, _BACKOFF_FIRST), _BACKOFF_CAP)

    def factory_recovered_locked(self) -> int:
        """Under the lock: the factory served; end its streak of failures, returning its length."""
        streak = self.factory_streak
        self.factory_streak = 0
        return streak

    def stall_if_down(self, now: float) -> float | None:
        """
        While growing fails on a pool with no worker: stall it once ``stall_timeout`` has passed.

        As a replacing thread does (see _replace); returns the seconds until
        then, or ``None`` when there is nothing to time.
        """
        line = self.line
        with line.lock:
            if self.stall_timeout is None or line.active or line.closed or line.stalled is not None:
                return None
            if self.down_since is None:
                self.down_since = now
            stall_at = self.down_since + self.stall_timeout
            if now < stall_at:
                return stall_at - now
            stalled = self._stall_locked()
            reason = line.stalled or ""
        _tell_stalled(stalled, reason)
        return None

    # -- close --------------------------------------------------------------

    def close(self, wait: bool, timeout: float | None, reason: str = "pool is closed") -> bool:
        deadline = deadline_in(timeout)
        first = False
        leader: Taker | None = None
        refused: list[Job] = []
        backoffs: list[LockWaker] = []
        error: BaseException | None = None
        try:
            with self.line.lock:
                if not self.line.closed:
                    first = True
                    self.line.closed_reason = reason
                    self.line.closed = True
                # Every close() runs the rest, so one that Ctrl-C interrupted
                # is finished by the next (at the latest, at interpreter exit).
                try:
                    self._shut_locked()
                finally:
                    # What this call tells, taken with stores only.
                    to_wake = self.to_wake
                    if to_wake:
                        leader = to_wake[-1]
                        del to_wake[-1]
                    refused = self.refused
                    self.refused = []
                    backoffs = list(self.replacing.values())
                everyone = list(self.workers)
        finally:
            # Wake the parked workers as a chain (docs/design.md, "Close"),
            # before the refused futures' callbacks, which may raise. Ctrl-C
            # or a raising callback makes the whole pass again: a spare wake
            # is harmless, and a future already told is skipped.
            told = False
            while not told:
                try:
                    for waker in backoffs:  # a replacement backing off ends now
                        waker.wake()
                    self.keeper.waker.wake()  # the keeper, if any, leaves
                    if leader is not None:
                        leader.waker.wake()
                    for job in refused:
                        future = job.future
                        if future is None:
                            job.waker.wake()  # type: ignore[union-attr]
                        elif not future.done() and (
                            future.running() or future.set_running_or_notify_cancel()
                        ):
                            # A callback's Exception is logged by Future; its
                            # SystemExit, or Ctrl-C, restarts the pass below.
                            job.let_go()
                            future.set_exception(PoolClosedError(self.line.closed_reason))
                    told = True
                except BaseException as exc:  # a callback's SystemExit, or Ctrl-C
                    error = error or exc
        if error is not None:
            raise error
        if first:
            log.info("pool_closed", workers=len(everyone), refused=len(refused))
        if not everyone:
            self._close_host_when_done()
        if wait:
            # A grow in another thread may have listed workers it has not
            # started yet, which _join() cannot wait for: let it start them
            # (they see the pool closed and leave). See design.md, "Close".
            if any(worker_thread.thread.ident is None for worker_thread in everyone):
                if not acquire_until(self.resize_lock, deadline):
                    return False
                self.resize_lock.release()
            return _join(self, everyone, deadline) and self._join_keeper(deadline)
        return not everyone

    def _join_keeper(self, deadline: float | None) -> bool:
        # The keeper never waits for a job, so waiting for it closes no cycle;
        # it may be in a factory call, which the deadline bounds.
        keeper = self.keeper.thread
        if keeper is None or keeper is threading.current_thread() or keeper.ident is None:
            return True
        _let_end(keeper, deadline)
        return not keeper.is_alive()

    def _shut_locked(self) -> None:
        """
        On a closed pool, under the lock: refuse the line, retire every worker, list the parked.

        Safe to run again, and run by every ``close()``: one that Ctrl-C
        interrupted part-way is finished by the next. Ctrl-C lands only as a
        function is entered, at a loop's back edge and after a call returns;
        each step here is stores and at most one last call, so it is done or
        not, never half done. Refused jobs go to ``refused`` and parked
        workers to ``to_wake``, for ``close()`` to tell and wake.
        """
        self.line.summoned = None  # retiring now; it leaves when it wakes
        self.line.active = 0
        self.size = 0
        self.keeper.bounds = None
        self.line.grow_to = None
        self.line.growing = 0
        for worker_thread in self.workers:
            worker_thread.retiring = True
        line = self.line.waiting
        refused = self.refused
        while line:
            job = line[0]
            job.state = REJECTED
            self.line.rejected += 1
            del line[0]
            refused.append(job)
        # ``nested`` keeps its calls: each is now refused, and its caller
        # forgets it as it wakes.
        parked = self.line.idle
        if parked:
            self.line.idle = []
            self.to_wake.extend(parked)

    # -- stats --------------------------------------------------------------

    def stats(self) -> PoolStats:
        with self.line.lock:
            workers = self.workers
            # Each worker writes its own lists without the lock, and copying
            # and adding them up need not hold callers back: only the workers
            # and the retired counts (replaced, never changed in place) are
            # taken here.
            timed = list(workers) if self.line.latency else []
            retired = self.retired_timings
            keeper = self.keeper
            auto = keeper.bounds
            stats = PoolStats(
                size=self.size,
                workers=len(workers),
                busy=sum(1 for w in workers if w.job is not None),
                idle=len(self.line.idle),
                waiting=len(self.line.waiting),
                completed=self.line.completed + sum(w.completed for w in workers),
                failed=self.line.failed + sum(w.failed for w in workers),
                timed_out=self.line.timed_out,
                cancelled=self.line.cancelled,
                rejected=self.line.rejected,
                replaced=self.replaced,
                factory_failures=self.factory_failures,
                min_size=None if auto is None else auto.min_size,
                max_size=None if auto is None else auto.max_size,
                autoscale_started=keeper.autoscale_started,
                autoscale_retired=keeper.autoscale_retired,
                recycled=keeper.recycled,
            )
        timings = [t for t in (w.timings_now() for w in timed) if t is not None]
        timings.append(retired)
        total = merged(timings)
        host = self.host.stats() if self.host is not None else IsolationStats()
        return attrs.evolve(
            stats,
            wait=summarize(total, WAIT),
            run=summarize(total, RUN),
            respawned=host.respawned,
            killed=host.killed,
            crashed=host.crashed,
            children_recycled=host.recycled,
        )


def _describe(error: BaseException) -> str:
    """``Type: message`` of *error*, for a log line or an error message; never raises."""
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:
        return f"{type(error).__name__} (str() failed)"


def _tell_stalled(stalled: list[Job], reason: str) -> None:
    """Wake the calls a stall took out of line; fail their futures."""
    for job in stalled:
        future = job.future
        if future is None:
            job.waker.wake()  # type: ignore[union-attr]
            continue
        try:
            if not future.done() and (future.running() or future.set_running_or_notify_cancel()):
                job.let_go()
                future.set_exception(PoolStalledError(reason))
        except BaseException:  # a done-callback's SystemExit: as in WorkerThread._deliver
            log.exception("callback_failed", worker=-1)


def _terminate_all(workers: list[Worker[Any, Any]]) -> None:
    # Each worker leaves the list once terminated; Ctrl-C meanwhile (one is
    # covered, see shrink) is raised once every worker is.
    error: BaseException | None = None
    while workers:
        try:
            while workers:
                terminate_quietly(workers[-1], -1)
                del workers[-1]
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


# The worker each thread inside _join() waits for now, across every pool. A
# wait begins only if it closes no cycle (see _waits_for).
_waits_lock = _thread.allocate_lock()
_waiting_for: dict[threading.Thread, WorkerThread] = {}

# What _await_exit() found.
_ENDED = 0
_WAITS_FOR_ME = 1
_TIMED_OUT = 2


def _waits_for(worker_thread: WorkerThread, me: threading.Thread) -> bool:
    """Whether *worker_thread*'s thread is *me*, or waits in _join() for *me*, directly or not."""
    # Under _waits_lock. Each thread waits for one worker at a time and no
    # wait closes a cycle, so the chain ends.
    following: WorkerThread | None = worker_thread
    while following is not None:
        thread = following.thread
        if thread is me:
            return True
        following = _waiting_for.get(thread)
    return False


def _join(lifecycle: Lifecycle, worker_threads: list[WorkerThread], deadline: float | None) -> bool:
    """
    Wait until every worker of *worker_threads* has ended; ``False`` if *deadline* passed first.

    A worker has ended when it has left ``lifecycle.workers``, which it does
    after ``terminate()``: the pool's own record, never ``Thread.join()``
    or ``is_alive()``, which an interrupted ``join()`` leaves saying
    "stopped" on Python 3.11 and 3.12. A worker that waits for the calling
    thread (it is the caller, or its job waits here, on any pool, for the
    caller) cannot end first: it is not waited for (docs/design.md,
    "Waiting for workers"). One that did so only for a while is looked at
    again once the others have ended.
    """
    me = threading.current_thread()
    waker = LockWaker()
    later: list[WorkerThread] = []
    for worker_thread in worker_threads:
        found = _await_exit(lifecycle, worker_thread, me, waker, deadline)
        if found == _TIMED_OUT:
            return False
        if found == _WAITS_FOR_ME:
            later.append(worker_thread)
        else:
            _let_end(worker_thread.thread, deadline)
    for worker_thread in later:
        found = _await_exit(lifecycle, worker_thread, me, waker, deadline)
        if found == _TIMED_OUT:
            return False
        if found == _ENDED:
            _let_end(worker_thread.thread, deadline)
    return True


def _let_end(thread: threading.Thread, deadline: float | None) -> None:
    # A worker that left the record has only to return: let its thread end
    # too, so no thread of the pool outlives the wait. The record has
    # already decided; this join's outcome is not asked.
    if thread.ident is None:
        return
    if deadline is None:
        thread.join()
    else:
        thread.join(min(max(deadline - _monotonic(), 0.0), _TIMEOUT_MAX))


def _await_exit(
    lifecycle: Lifecycle,
    worker_thread: WorkerThread,
    me: threading.Thread,
    waker: Waker,
    deadline: float | None,
) -> int:
    try:
        with lifecycle.line.lock:
            if worker_thread not in lifecycle.workers or worker_thread.thread.ident is None:
                # Ended, or never started: Ctrl-C landed in Thread.start()
                # (close() first lets a grow in progress start its threads).
                return _ENDED
            with _waits_lock:
                if _waits_for(worker_thread, me):
                    return _WAITS_FOR_ME
                _waiting_for[me] = worker_thread
            lifecycle.watchers.setdefault(worker_thread, []).append(waker)
        workers = lifecycle.workers
        while worker_thread in workers:
            if deadline is None:
                waker.wait()
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return _TIMED_OUT
                waker.wait(remaining)
        return _ENDED
    finally:
        # Whatever happened above, Ctrl-C included: no wait of ours is left behind.
        with _waits_lock:
            if _waiting_for.get(me) is worker_thread:
                del _waiting_for[me]
        with lifecycle.line.lock:
            watchers = lifecycle.watchers.get(worker_thread)
            if watchers is not None and waker in watchers:
                watchers.remove(waker)
                if not watchers:
                    del lifecycle.watchers[worker_thread]


# Every lifecycle with live workers, so interpreter exit can wait for their jobs.
awaited_at_exit: weakref.WeakSet[Lifecycle] = weakref.WeakSet()


def close_dropped_pool(lifecycle: Lifecycle) -> None:
    # The Pool was garbage-collected: stop its threads. Even when closed: a
    # close() that Ctrl-C interrupted is finished by the next. Exit still
    # waits for workers that have not ended.
    if lifecycle.close(False, None):
        awaited_at_exit.discard(lifecycle)


def _close_at_exit() -> None:
    # Close every pool and wait for its workers, but not for those inside
    # block_until_ready(), which may never return (docs/design.md, "Waiting
    # for workers"); the others are retiring and will not enter it.
    lifecycles = list(awaited_at_exit)
    for lifecycle in lifecycles:
        lifecycle.close(False, None, "interpreter is shutting down")
    for lifecycle in lifecycles:
        with lifecycle.line.lock:
            leaving = [w for w in lifecycle.workers if not w.readying]
        _join(lifecycle, leaving, None)


def _after_fork_in_child() -> None:
    # The child has the pools but none of their threads; using one would hang.
    for lifecycle in list(awaited_at_exit):
        lifecycle.line.closed = True
        lifecycle.line.closed_reason = "pool cannot be used in a forked child process"
        # Read as a closed pool reads: no target, no worker, no one in line.
        lifecycle.size = 0
        lifecycle.line.active = 0
        lifecycle.line.idle.clear()
        lifecycle.line.waiting.clear()
        lifecycle.line.summoned = None
        for worker_thread in lifecycle.workers:  # their jobs done so far stay counted
            lifecycle.line.completed += worker_thread.completed
            lifecycle.line.failed += worker_thread.failed
            timings = worker_thread.timings_now(forked=True)
            if timings is not None:
                lifecycle.retired_timings = merged((lifecycle.retired_timings, timings))
        lifecycle.line.nested.clear()
        lifecycle.workers.clear()
        lifecycle.to_wake.clear()
        lifecycle.refused.clear()
        lifecycle.failed_out.clear()
        lifecycle.restart_failed.clear()
        lifecycle.replacing.clear()
        lifecycle.recruits.clear()
        lifecycle.keeper.forget_all_in_child()
        lifecycle.line.growing = 0
        lifecycle.line.lock = _thread.allocate_lock()
        lifecycle.resize_lock = threading.Lock()
        # The parent's remote workers are the parent's to end.
        lifecycle.host_closed = True


def _forget_waits_in_child() -> None:
    # The threads that were waiting are gone, and one may have held the lock.
    global _waits_lock
    _waits_lock = _thread.allocate_lock()
    _waiting_for.clear()


threading._register_atexit(_close_at_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_after_fork_in_child)
os.register_at_fork(after_in_child=_forget_waits_in_child)
