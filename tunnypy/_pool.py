"""
Pool: the waiting line, dispatch, resize, close and stats.

``Pool`` is the public face; ``Core`` holds the state the worker threads
share. Threads reference only the core, never the ``Pool``, so a pool that is
dropped without ``close()`` is collected and a finalizer closes its core.

Invariants, all under ``Core.lock``:

* ``idle`` holds parked workers, ``line`` holds jobs waiting for a worker;
  at most one of them is non-empty (an arriving job takes an idle worker, an
  arriving worker takes the first job).
* A worker on ``idle`` has ``job is None`` and is not retiring; a caller that
  pops it sets ``job`` before waking it.
* ``active`` counts workers that are not retiring; ``workers`` holds every
  worker whose thread has not yet left its loop.
"""

from __future__ import annotations

import _thread
import contextvars
import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar, final

import attrs

from . import _waker
from ._job import DONE, REJECTED, RUNNING, WAITING, Job, current_wrapper
from ._log import debug_enabled, log
from ._token import CancelToken, check_timeout
from ._waker import caller_waker
from ._worker import CallbackWorker, FuncWorker, Worker
from ._wrapper import WorkerWrapper
from .exceptions import (
    JobCancelledError,
    JobTimedOutError,
    PoolBusyError,
    PoolClosedError,
    PoolDeadlockError,
)

__all__ = ["Pool", "PoolStats"]

P = TypeVar("P")
R = TypeVar("R")

_monotonic = time.monotonic
_INF = math.inf
_copy_context = contextvars.copy_context

# Why a caller stopped waiting before its job was done.
_TIMED_OUT = "timed_out"
_CANCELLED = "cancelled"


@attrs.frozen
class PoolStats:
    """
    A snapshot of a pool, taken under its lock.

    ``completed + failed + timed_out + cancelled + rejected`` counts every call
    that has ended (a ``submit`` ends when its future does).
    """

    size: int
    """The target size: what ``set_size`` last asked for."""
    workers: int
    """Worker threads alive, including retiring ones still finishing a job."""
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
    """Calls that ended in ``JobCancelledError``, or futures cancelled, or callers interrupted."""
    rejected: int
    """Calls refused with ``PoolClosedError`` or ``PoolBusyError``."""


def _check_size(value: object, name: str = "size") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be a non-negative int (got {type(value).__name__} {value!r})"
        raise TypeError(msg)
    if value < 0:
        msg = f"{name} must be a non-negative int (got {value!r})"
        raise ValueError(msg)
    return value


def _check_callable_payload(payload: object) -> None:
    if not callable(payload):
        msg = f"payload must be a zero-argument callable (got {type(payload).__name__})"
        raise TypeError(msg)


class Core:
    """The state shared by a pool's callers and its worker threads (private)."""

    def __init__(
        self,
        factory: Callable[[], Worker[Any, Any]],
        check: Callable[[object], None] | None,
        max_waiting: int | None,
    ) -> None:
        self.factory = factory
        self.check = check
        self.max_waiting = max_waiting
        self.lock = _thread.allocate_lock()
        self.resize_lock = threading.Lock()
        self.line: deque[Job] = deque()
        self.idle: list[WorkerWrapper] = []
        self.workers: dict[WorkerWrapper, None] = {}
        self.size = 0
        self.active = 0
        self.closed = False
        self.closed_reason = "pool is closed"
        self.nested_waiting = 0
        self.next_index = 0
        # Worker threads inside _join() on this pool (jobs closing or resizing it).
        self.joining: set[threading.Thread] = set()
        # Parked workers retired by a shrink and not yet woken. Each leaving
        # worker wakes the next, so set_size() wakes only one and returns at
        # once however many it retired (a wake can hand the GIL to the woken
        # thread, and 999 of them cost the caller ~0.3 s).
        self.to_wake: list[WorkerWrapper] = []
        # Counters written under ``lock``. ``completed`` and ``failed`` live
        # on each worker (written only by its thread) and are folded in here
        # when the worker leaves.
        self.completed = 0
        self.failed = 0
        self.timed_out = 0
        self.cancelled = 0
        self.rejected = 0

    # -- dispatch -----------------------------------------------------------

    def dispatch(self, job: Job, *, wait: bool = True) -> None:
        """Hand *job* to a parked worker, or put it in line; refuse it if closed."""
        lock = self.lock
        lock.acquire()
        idle = self.idle
        if idle:  # never true once closed: close() empties it
            wrapper = idle.pop()
            future = job.future
            if future is not None:
                # Mark it running now, under the lock, as a worker popping
                # it from the line would: a future cancelled between here
                # and set_result() made that raise and killed the worker.
                future.set_running_or_notify_cancel()
            job.state = RUNNING
            job.wrapper = wrapper
            wrapper.job = job
            lock.release()
            wrapper.waker.wake()
            return
        try:
            self._enqueue_locked(job, wait)
        finally:
            lock.release()

    def _enqueue_locked(self, job: Job, wait: bool) -> None:
        if self.closed:
            self.rejected += 1
            raise PoolClosedError(self.closed_reason)
        if not wait:
            self.rejected += 1
            raise PoolBusyError("no worker is free")
        if self.max_waiting is not None and len(self.line) >= self.max_waiting:
            self.rejected += 1
            msg = f"waiting line is full (max_waiting={self.max_waiting})"
            raise PoolBusyError(msg)
        if job.future is None:  # a future never blocks its caller
            self._check_nested(job)
        self.line.append(job)

    def _check_nested(self, job: Job) -> None:
        # A job that calls its own pool waits for a worker while holding one.
        # When every active worker does that, nothing can ever free one.
        current = current_wrapper()
        if current is None or current.core is not self:
            return
        if self.nested_waiting + 1 >= self.active:
            self.rejected += 1
            msg = (
                "a job called process() on its own pool while every worker is "
                "waiting on that pool; this would never return"
            )
            raise PoolDeadlockError(msg)
        job.nested = True
        self.nested_waiting += 1

    def await_outcome(self, job: Job, deadline: float | None, token: CancelToken | None) -> Any:
        """Wait for *job* and return its result, or raise what ended the call."""
        waker = job.waker
        assert waker is not None
        reason: str | None = None
        try:
            if deadline is None and token is None:
                while job.state < DONE:
                    waker.wait()
            else:
                while job.state < DONE:
                    if token is not None and token._cancelled:
                        reason = _CANCELLED
                        break
                    if deadline is None:
                        waker.wait()
                        continue
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        reason = _TIMED_OUT
                        break
                    waker.wait(remaining)
        except BaseException:
            # Ctrl-C (or another asynchronous exception) in the caller: it has
            # given up, so withdraw the job as a cancellation and re-raise.
            self.withdraw(job, _CANCELLED)
            raise
        if reason is not None and self.withdraw(job, reason):
            if reason == _TIMED_OUT:
                raise JobTimedOutError("job did not finish before its deadline")
            raise JobCancelledError("job was cancelled by its token")
        return self.outcome(job)

    def outcome(self, job: Job) -> Any:
        waker = job.waker
        assert waker is not None
        while job.state < DONE:  # a withdraw that lost: the outcome is on its way
            waker.wait()
        if job.state == REJECTED:
            raise PoolClosedError(self.closed_reason)
        error = job.error
        if error is not None:
            job.error = None  # no cycle through the traceback
            raise error
        return job.result

    def withdraw(self, job: Job, reason: str) -> bool:
        """
        Give up on *job*: take it out of line, or interrupt its worker.

        Returns ``False`` when the worker finished first (its outcome stands)
        or the pool's close() already refused it.
        """
        gate = job.gate
        assert gate is not None  # futures are never withdrawn
        gate.acquire()  # waits only while the worker is delivering
        try:
            if job.state >= DONE:
                return False
            with self.lock:
                if job.state == REJECTED:
                    return False
                job.withdrawn = True
                wrapper: WorkerWrapper | None = None
                if job.state == WAITING:
                    self.line.remove(job)
                    if job.nested:
                        self.nested_waiting -= 1
                else:
                    wrapper = job.wrapper
                if reason == _TIMED_OUT:
                    self.timed_out += 1
                else:
                    self.cancelled += 1
            if wrapper is not None:
                # Still holding the gate: the worker cannot finish this job,
                # nor start another, until interrupt() has returned.
                try:
                    wrapper.worker.interrupt()
                except Exception:
                    log.exception("interrupt_failed", worker=wrapper.index)
            return True
        finally:
            gate.release()

    def cancel_future(self, job: Job) -> None:
        """
        Called when a submitted future was cancelled while in line.

        ``Future.cancel()`` keeps returning ``True`` once cancelled, so this
        may run twice for one job; it counts the job once, then marks it
        ``DONE``. A job close() refused first was counted as rejected, but the
        caller's cancel won the future, so it moves to ``cancelled``.
        """
        with self.lock:
            state = job.state
            if state == REJECTED:
                self.rejected -= 1
            elif state != WAITING:
                return  # already counted
            self.cancelled += 1
            job.state = DONE
            if state == WAITING:
                try:
                    self.line.remove(job)
                except ValueError:
                    return  # a worker popped it and will skip it
                if job.nested:
                    self.nested_waiting -= 1

    def count_refused(self, reason: str) -> None:
        """Count a call refused at entry; a closed pool's refusal comes first."""
        with self.lock:
            if self.closed:
                self.rejected += 1
                raise PoolClosedError(self.closed_reason)
            if reason == _TIMED_OUT:
                self.timed_out += 1
            else:
                self.cancelled += 1

    # -- resize -------------------------------------------------------------

    def set_size(self, size: int, wait: bool, timeout: float | None) -> bool:
        deadline = None if timeout is None else _monotonic() + timeout
        with self.resize_lock:
            with self.lock:
                if self.closed:
                    raise PoolClosedError(self.closed_reason)
                previous = self.size
                current = self.active
                self.size = size
            if size > current:
                self._grow(size - current, previous)
            elif size < current:
                self._shrink(current - size)
        log.info("pool_resized", size=size, previous=previous)
        if wait:
            # Wait for every retiring worker, including those retired by an
            # earlier call, so that the pool really is at *size* afterwards.
            with self.lock:
                retirees = [w for w in self.workers if w.retiring]
            return _join(self, retirees, deadline)
        return True

    def _grow(self, count: int, previous: int) -> None:
        # Make every worker before starting any thread, so a factory that
        # raises leaves the pool as it was.
        made: list[Worker[Any, Any]] = []
        try:
            for _ in range(count):
                made.append(self.factory())
        except BaseException:
            for worker in made:
                _terminate_quietly(worker, -1)
            with self.lock:
                if not self.closed:  # close() has set it to 0 for good
                    self.size = previous
            raise
        with self.lock:
            if self.closed:
                # close() raced us; the new workers never existed.
                for worker in made:
                    _terminate_quietly(worker, -1)
                raise PoolClosedError(self.closed_reason)
            wrappers = []
            for worker in made:
                wrapper = WorkerWrapper(self, worker, self.next_index)
                self.next_index += 1
                self.workers[wrapper] = None
                wrappers.append(wrapper)
            self.active += len(wrappers)
        for i, wrapper in enumerate(wrappers):
            try:
                wrapper.thread.start()
            except BaseException:
                # Out of threads: undo the ones not started, retire the rest.
                unstarted = wrappers[i:]
                started = wrappers[:i]
                with self.lock:
                    for w in unstarted:
                        del self.workers[w]
                    self.active -= len(unstarted)
                for w in unstarted:
                    _terminate_quietly(w.worker, w.index)
                self._retire(started)
                with self.lock:
                    if not self.closed:
                        self.size = previous
                raise

    def _shrink(self, count: int) -> None:
        with self.lock:
            retirees: list[WorkerWrapper] = []
            # Idle workers first, the least recently used (bottom of the stack).
            take = min(count, len(self.idle))
            if take:
                retirees = self.idle[:take]
                del self.idle[:take]
            if len(retirees) < count:
                # Then the newest of the others (busy or in block_until_ready).
                parked = set(retirees)
                for wrapper in reversed(self.workers):
                    if len(retirees) == count:
                        break
                    if not wrapper.retiring and wrapper not in parked:
                        retirees.append(wrapper)
            for wrapper in retirees:
                wrapper.retiring = True
            self.active -= len(retirees)
            # Busy ones notice at their next offer; parked ones need a wake.
            self.to_wake.extend(retirees[:take])
            first = self.to_wake.pop() if self.to_wake else None
        if first is not None:
            first.waker.wake()

    def _retire(self, wrappers: list[WorkerWrapper]) -> None:
        with self.lock:
            for wrapper in wrappers:
                if wrapper.retiring:
                    continue
                wrapper.retiring = True
                self.active -= 1
                if wrapper in self.idle:
                    self.idle.remove(wrapper)
        for wrapper in wrappers:
            wrapper.waker.wake()

    def worker_exited(self, wrapper: WorkerWrapper) -> None:
        with self.lock:
            if not wrapper.retiring:  # left by an unexpected error
                wrapper.retiring = True
                self.active -= 1
            following = self.to_wake.pop() if self.to_wake else None
        if following is not None:
            following.waker.wake()  # pass the shrink's wake along the chain
        _terminate_quietly(wrapper.worker, wrapper.index)
        # Only now leave ``workers``: set_size(wait=True) and close() wait for
        # the workers listed there, and must not return before terminate().
        with self.lock:
            self.workers.pop(wrapper, None)
            self.completed += wrapper.completed
            self.failed += wrapper.failed
        if debug_enabled():
            log.debug("worker_stopped", worker=wrapper.index)

    # -- close --------------------------------------------------------------

    def close(self, wait: bool, timeout: float | None, reason: str = "pool is closed") -> bool:
        deadline = None if timeout is None else _monotonic() + timeout
        with self.lock:
            first = not self.closed
            if first:
                self.closed = True
                self.closed_reason = reason
                refused = list(self.line)
                self.line.clear()
                self.nested_waiting = 0
                for job in refused:
                    job.state = REJECTED
                self.rejected += len(refused)
                parked = self.idle[:]
                self.idle.clear()
                for wrapper in self.workers:
                    wrapper.retiring = True
                self.active = 0
                self.size = 0
            everyone = list(self.workers)
        if first:
            for job in refused:
                if job.future is not None:
                    if job.future.set_running_or_notify_cancel():
                        job.future.set_exception(PoolClosedError(reason))
                else:
                    assert job.waker is not None
                    job.waker.wake()
            for wrapper in parked:
                wrapper.waker.wake()
            log.info("pool_closed", workers=len(everyone), refused=len(refused))
        if wait:
            return _join(self, everyone, deadline)
        return not everyone

    # -- stats --------------------------------------------------------------

    def stats(self) -> PoolStats:
        with self.lock:
            workers = self.workers
            return PoolStats(
                size=self.size,
                workers=len(workers),
                busy=sum(1 for w in workers if w.job is not None),
                idle=len(self.idle),
                waiting=len(self.line),
                completed=self.completed + sum(w.completed for w in workers),
                failed=self.failed + sum(w.failed for w in workers),
                timed_out=self.timed_out,
                cancelled=self.cancelled,
                rejected=self.rejected,
            )


def _terminate_quietly(worker: Worker[Any, Any], index: int) -> None:
    try:
        worker.terminate()
    except BaseException:  # SystemExit too: it must not end a worker thread noisily
        log.exception("terminate_failed", worker=index)


def _join(core: Core, wrappers: list[WorkerWrapper], deadline: float | None) -> bool:
    """Wait for the threads of *wrappers* to end; ``False`` if the deadline passed first."""
    me = threading.current_thread()
    # A job closing or resizing its own pool must not wait for a sibling
    # job that is itself waiting here (two jobs each calling close() once
    # hung for good). A worker thread joins only siblings that were not
    # joining when it looked; waits then always point from an earlier joiner
    # to a later one, so they cannot form a cycle.
    mine = current_wrapper()
    in_job = mine is not None and mine.core is core
    if in_job:
        with core.lock:
            core.joining.add(me)
    try:
        done = True
        for wrapper in wrappers:
            thread = wrapper.thread
            if thread is me or thread.ident is None:
                continue  # a job resizing or closing its own pool: do not wait for ourselves
            if in_job:
                with core.lock:
                    waits_for_us = thread in core.joining
                if waits_for_us:
                    done = done and not thread.is_alive()
                    continue
            if deadline is None:
                thread.join()
            else:
                thread.join(max(0.0, deadline - _monotonic()))
            done = done and not thread.is_alive()
        return done
    finally:
        if in_job:
            with core.lock:
                core.joining.discard(me)


class _JobFuture(Future[Any]):
    """A future that leaves the pool's line when cancelled there."""

    __slots__ = ("_tunnypy_core", "_tunnypy_job")

    _tunnypy_core: Core
    _tunnypy_job: Job

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self._tunnypy_core.cancel_future(self._tunnypy_job)
        return True


# Every core with live workers, so interpreter exit can wait for their jobs.
_live_cores: weakref.WeakSet[Core] = weakref.WeakSet()


@final
class Pool(Generic[P, R]):
    """
    A pool of resident worker threads that pull jobs from one waiting line.

    Args:
        size: How many workers to start.
        worker_factory: Called once per worker, from the thread that grows the
            pool; returns that worker's :class:`Worker`.
        max_waiting: Refuse callers beyond this many in line with
            :class:`PoolBusyError` instead of queueing them; ``None`` for no limit.

    Raises:
        TypeError, ValueError: *size* or *max_waiting* is not a non-negative int.
        Exception: Whatever the factory raised; no worker is left running.

    Not guaranteed: threads cannot be killed. A job that outlives its caller's
    deadline runs on until it checks :func:`interrupted` or returns, and its
    worker is out of rotation until then.
    """

    __slots__ = ("__weakref__", "_core", "_finalizer")

    def __init__(
        self,
        size: int,
        worker_factory: Callable[[], Worker[P, R]],
        *,
        max_waiting: int | None = None,
    ) -> None:
        self._init(size, worker_factory, None, max_waiting)

    def _init(
        self,
        size: int,
        worker_factory: Callable[[], Worker[Any, Any]],
        check: Callable[[object], None] | None,
        max_waiting: int | None,
    ) -> None:
        size = _check_size(size)
        if not callable(worker_factory):
            msg = f"worker_factory must be callable (got {type(worker_factory).__name__})"
            raise TypeError(msg)
        if max_waiting is not None:
            max_waiting = _check_size(max_waiting, "max_waiting")
        core = Core(worker_factory, check, max_waiting)
        core.set_size(size, False, None)
        self._core = core
        _live_cores.add(core)
        self._finalizer = weakref.finalize(self, _collected, core)

    @classmethod
    def from_func(
        cls, size: int, fn: Callable[[P], R], *, max_waiting: int | None = None
    ) -> Pool[P, R]:
        """A pool whose every worker calls ``fn(payload)``."""
        if not callable(fn):
            msg = f"fn must be callable (got {type(fn).__name__})"
            raise TypeError(msg)
        pool: Pool[P, R] = cls.__new__(cls)
        pool._init(size, lambda: FuncWorker(fn), None, max_waiting)
        return pool

    @staticmethod
    def from_callback(
        size: int, *, max_waiting: int | None = None
    ) -> Pool[Callable[[], object], object]:
        """
        A pool whose payloads are zero-argument callables; each returns the result.

        A payload that is not callable raises ``TypeError`` in the caller.
        """
        pool: Pool[Callable[[], object], object] = Pool.__new__(Pool)
        pool._init(size, CallbackWorker, _check_callable_payload, max_waiting)
        return pool

    # -- calls ----------------------------------------------------------------

    def process(self, payload: P) -> R:
        """
        Run *payload* on the next ready worker and return its result.

        Waits, first come first served, while every worker is busy. An
        exception raised by the job is re-raised here with its traceback; the
        worker stays in service.

        Raises:
            PoolClosedError: The pool was closed before a worker took the job.
            PoolDeadlockError: Called from a job while every worker waits on this pool.
        """
        core = self._core
        if core.check is not None:
            core.check(payload)
        try:
            waker = _waker._tls.waker
        except AttributeError:
            waker = caller_waker()
        job = Job(payload, _copy_context(), waker)
        # dispatch(), inlined for the case that matters (a parked worker):
        # a frame is ~5% of a round trip.
        lock = core.lock
        lock.acquire()
        idle = core.idle
        if idle:
            wrapper = idle.pop()
            job.state = RUNNING
            job.wrapper = wrapper
            wrapper.job = job
            lock.release()
            wrapper.waker.wake()
        else:
            lock.release()
            core.dispatch(job)
        if job.state < DONE:
            try:
                wait = waker.wait_forever
                while job.state < DONE:
                    wait()
            except BaseException:
                core.withdraw(job, _CANCELLED)  # Ctrl-C: the caller gave up
                raise
        if job.error is None and job.state == DONE:
            return job.result  # type: ignore[no-any-return]
        return core.outcome(job)  # type: ignore[no-any-return]

    def process_timed(self, payload: P, timeout: float) -> R:
        """
        Run *payload* on the next ready worker, giving up after *timeout* seconds.

        The deadline, counted from this call, covers both waiting for a worker
        and running the job. A timeout of 0 has already expired.

        Raises:
            JobTimedOutError: The deadline passed. A started job's worker was
                interrupted and stays out of rotation until the job returns.
            PoolClosedError: The pool was closed before a worker took the job.
            TypeError, ValueError: *timeout* is not a non-negative number.
        """
        kind = type(timeout)
        if (kind is float or kind is int) and 0 < timeout < _INF:
            deadline = _monotonic() + timeout  # the common case, checked cheaply
        else:
            deadline = _monotonic() + check_timeout(timeout, "timeout")
        core = self._core
        if core.check is not None:
            core.check(payload)
        if timeout <= 0:
            core.count_refused(_TIMED_OUT)
            raise JobTimedOutError("job did not finish before its deadline")
        if deadline == _INF:
            return self.process(payload)
        waker = caller_waker()
        job = Job(payload, _copy_context(), waker)
        core.dispatch(job)
        # Inline rather than await_outcome(): this is the hot path.
        if job.state < DONE:
            wait = waker.wait
            try:
                while job.state < DONE:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        break
                    wait(remaining)
            except BaseException:
                core.withdraw(job, _CANCELLED)  # Ctrl-C: the caller gave up
                raise
            if job.state < DONE and core.withdraw(job, _TIMED_OUT):
                raise JobTimedOutError("job did not finish before its deadline")
        if job.error is None and job.state == DONE:
            return job.result  # type: ignore[no-any-return]
        return core.outcome(job)  # type: ignore[no-any-return]

    def process_ctx(self, payload: P, token: CancelToken) -> R:
        """
        Run *payload*, giving up when *token* is cancelled or its deadline passes.

        ``token.cancel()`` from any thread ends the wait at once.

        Raises:
            JobCancelledError: The token was cancelled (before or during the call).
            JobTimedOutError: The token's deadline passed.
            PoolClosedError: The pool was closed before a worker took the job.
            TypeError: *token* is not a :class:`CancelToken`.
        """
        if not isinstance(token, CancelToken):
            msg = f"token must be a CancelToken (got {type(token).__name__})"
            raise TypeError(msg)
        core = self._core
        if core.check is not None:
            core.check(payload)
        if token._cancelled:
            core.count_refused(_CANCELLED)
            raise JobCancelledError("token was already cancelled")
        if token.expired:
            core.count_refused(_TIMED_OUT)
            raise JobTimedOutError("token's deadline had already passed")
        waker = caller_waker()
        job = Job(payload, _copy_context(), waker)
        token._register(waker)
        try:
            core.dispatch(job)
            return core.await_outcome(job, token.deadline, token)  # type: ignore[no-any-return]
        finally:
            token._unregister(waker)

    def submit(self, payload: P) -> Future[R]:
        """
        Queue *payload* and return a ``concurrent.futures.Future`` at once.

        The request waits in the same line as blocking callers. Cancelling the
        future while it waits removes it from the line; a started job cannot
        be cancelled through its future. Usable with ``asyncio.wrap_future``.

        Raises:
            PoolClosedError: The pool is closed.
            PoolBusyError: The line is full (``max_waiting``).
        """
        return self._submit(payload, wait=True)

    def try_process(self, payload: P) -> R:
        """
        Like :meth:`process`, but raise :class:`PoolBusyError` at once if no worker is free.

        Nothing is started when it raises; use it to fall back (serve a cached
        value, shed load) instead of waiting.
        """
        core = self._core
        if core.check is not None:
            core.check(payload)
        waker = caller_waker()
        job = Job(payload, _copy_context(), waker)
        core.dispatch(job, wait=False)
        return core.await_outcome(job, None, None)  # type: ignore[no-any-return]

    def try_submit(self, payload: P) -> Future[R]:
        """Like :meth:`submit`, but raise :class:`PoolBusyError` at once if no worker is free."""
        return self._submit(payload, wait=False)

    def _submit(self, payload: P, wait: bool) -> Future[R]:
        core = self._core
        if core.check is not None:
            core.check(payload)
        future = _JobFuture()
        job = Job(payload, _copy_context(), None, future)
        future._tunnypy_core = core
        future._tunnypy_job = job
        core.dispatch(job, wait=wait)
        return future

    # -- size -----------------------------------------------------------------

    @property
    def size(self) -> int:
        """The target number of workers (what ``set_size`` last asked for)."""
        return self._core.size

    def set_size(self, size: int, *, wait: bool = False, timeout: float | None = None) -> bool:
        """
        Grow or shrink the pool to *size* workers.

        Growing starts the new workers, which serve waiting callers at once.
        Shrinking retires idle workers first and never hands a retiring worker
        a new job; busy ones retire when their job ends. Returns at once
        unless *wait*, which waits (up to *timeout*) for retired workers to end.

        Returns:
            ``False`` only if *wait* and *timeout* passed before every retired
            worker ended.

        Raises:
            PoolClosedError: The pool is closed.
            TypeError, ValueError: *size* or *timeout* is invalid; nothing changed.
            Exception: The factory raised while growing; the pool keeps its
                previous size.
        """
        size = _check_size(size)
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        return self._core.set_size(size, wait, timeout)

    @property
    def queue_length(self) -> int:
        """Callers waiting in line for a worker (not jobs running)."""
        return len(self._core.line)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._core.closed

    def stats(self) -> PoolStats:
        """A consistent snapshot of sizes and counters."""
        return self._core.stats()

    # -- close ----------------------------------------------------------------

    def close(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """
        Stop the pool. Safe to call twice, and from inside a job.

        Callers still waiting in line get :class:`PoolClosedError` at once;
        running jobs finish and their callers get their results; each worker's
        ``terminate()`` runs once, from its own thread, as it stops.

        Args:
            wait: Wait for the worker threads to end.
            timeout: With *wait*, give up waiting after this many seconds (a
                worker stuck in ``block_until_ready`` cannot hang the caller).

        Returns:
            Whether every worker thread had ended when it returned.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        result = self._core.close(wait, timeout)
        _live_cores.discard(self._core)
        return result

    def __enter__(self) -> Pool[P, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        core = self._core
        state = "closed" if core.closed else f"size={core.size}"
        return f"<Pool {state} idle={len(core.idle)} waiting={len(core.line)}>"


def _collected(core: Core) -> None:
    # The Pool was garbage-collected without close(): stop its threads.
    if not core.closed:
        core.close(False, None)
    _live_cores.discard(core)


def _close_at_exit() -> None:
    # At interpreter exit, refuse new work and let running jobs end, so a
    # program that never calls close() still exits once its jobs end.
    # Workers stuck in block_until_ready are daemon threads and do not hold
    # the exit up.
    cores = list(_live_cores)
    for core in cores:
        core.close(False, None, "interpreter is shutting down")
    for core in cores:
        with core.lock:
            busy = [w for w in core.workers if w.job is not None]
        _join(core, busy, None)


def _after_fork_in_child() -> None:
    # The child has the pools but none of their threads; using one would hang.
    for core in list(_live_cores):
        core.closed = True
        core.closed_reason = "pool cannot be used in a forked child process"
        core.idle.clear()
        core.line.clear()
        core.workers.clear()
        core.lock = _thread.allocate_lock()
        core.resize_lock = threading.Lock()


threading._register_atexit(_close_at_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_after_fork_in_child)
