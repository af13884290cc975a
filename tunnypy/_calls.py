"""
The calls of an :class:`Executor`: their futures, the workers that run them,
and the state they share.

Each ``submit`` hands the executor's pool a :class:`_Call` (the function, its
arguments and the future the caller holds) with :meth:`Pool.submit`, and a
worker runs it. The pool's line is the queue.

What the pool does not do, :class:`ExecutorState` does under one lock: it
counts the calls that wait (submitted, not started) for ``max_waiting`` and
``when_full="block"``, and the calls not yet finished, for
``shutdown(wait=True)`` and for closing the pool once a shut-down executor
has run everything it accepted. Each call leaves ``waiting`` exactly once, by
being started, cancelled or failed by a broken executor (one atomic
``dict.pop`` each); whoever removes it accounts for it.

Threads reference the state, never the :class:`Executor`, so an executor
dropped without ``shutdown()`` is collected, and a finalizer shuts its state
down without waiting: its pending calls still run, as with
``ThreadPoolExecutor``.
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, InvalidStateError
from concurrent.futures._base import (  # Future's states, as _future.py uses them
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
    RUNNING,
)
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, Literal

from ._checks import Latency
from ._job import Job, current_runner
from ._log import log
from ._pool import Pool
from ._worker import BaseWorker
from .exceptions import PoolBusyError, PoolDeadlockError

__all__ = ["WHEN_FULL", "ExecutorState", "WhenFull", "live_states"]

WhenFull = Literal["block", "raise", "caller_runs"]
WHEN_FULL = ("block", "raise", "caller_runs")
_SHUTDOWN = "cannot schedule new futures after shutdown"
_EXITING = "cannot schedule new futures after interpreter shutdown"
_BROKEN = "a thread initializer failed, the thread pool is not usable anymore"

# Set once the interpreter starts to exit (see _at_exit); read without a lock.
_exiting = False


class _ExecutorFuture(Future[Any]):
    """A future whose ``cancel()`` while it runs interrupts the job (private)."""

    _tunnypy_call: _Call | None

    def cancel(self) -> bool:
        if self.cancel_waiting():
            return True
        call = self._tunnypy_call
        if call is not None and self.running():
            call.interrupt()
        return False

    def cancel_waiting(self) -> bool:
        """``Future.cancel()``: cancel the call only if it has not started; never interrupt."""
        # As Future.cancel(), but a call this takes out of ``waiting`` has left
        # the pool's line, been let go of and stopped counting before any
        # waiter or done-callback is told (waiters wake once the lock is released).
        with self._condition:
            if self._state in (RUNNING, FINISHED):
                return False
            if self._state != PENDING:
                return True  # cancelled already, and accounted for by whoever took the call
            self._state = CANCELLED
            call = self._tunnypy_call
            try:
                if call is not None and call.state.cancelled(call):
                    # No worker will reach it: tell wait() and as_completed()
                    # here, as its set_running_or_notify_cancel() would.
                    self._state = CANCELLED_AND_NOTIFIED
                    for waiter in self._waiters:
                        waiter.add_cancelled(self)
            finally:
                # Ctrl-C in cancelled() after it took the call: told all the same.
                if call is not None and call.dropped and self._state == CANCELLED:
                    self._state = CANCELLED_AND_NOTIFIED
                    for waiter in self._waiters:
                        waiter.add_cancelled(self)
                self._condition.notify_all()
        self._invoke_callbacks()  # type: ignore[attr-defined]
        return True


class _Call:
    """One submitted call: what to run and the future its caller holds (private)."""

    __slots__ = ("args", "dropped", "fn", "future", "inner", "job", "kwargs", "state", "stuck")

    def __init__(
        self,
        state: ExecutorState,
        future: _ExecutorFuture,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.state = state
        self.future = future
        self.fn: Callable[..., Any] | None = fn
        self.args = args
        self.kwargs = kwargs
        # The pool's future for this call, to take it out of the line when cancelled.
        self.inner: Future[None] | None = None
        # The pool's record of this call while a worker runs it (see interrupt()).
        self.job: Job | None = None
        # Whether it called shutdown(wait=True) on its own executor.
        self.stuck = False
        # Whether it was cancelled or failed unstarted, and stopped counting (see _drop).
        self.dropped = False

    def run(self) -> None:
        """Run on a worker thread: start the future, call, deliver, account."""
        state = self.state
        if not state.start(self):
            # Cancelled, or failed by a broken executor, while it waited.
            self._skipped()
            return
        future = self.future
        runner = current_runner()
        # Before the future shows RUNNING, so that a cancel() that sees it
        # running finds the job to interrupt.
        self.job = runner.job if runner is not None else None
        _local.calls.append(self)
        try:
            if not future.set_running_or_notify_cancel():
                self._skipped()
                return
            fn = self.fn
            assert fn is not None
            try:
                result = fn(*self.args, **self.kwargs)
            except BaseException as exc:
                state.count(ok=False)
                _settle(future, exc, error=True)
                raise  # for the pool, which counts its job failed
            state.count(ok=True)
            _settle(future, result, error=False)
        finally:
            _local.calls.pop()
            # Keep nothing of the call alive through the future or the pool's job.
            self.job = self.fn = self.inner = None
            self.args = ()
            self.kwargs = {}
            future._tunnypy_call = None
            state.finished(self.stuck)

    def _skipped(self) -> None:
        # The pool counts a job whose future its caller resolved while it ran
        # as cancelled: so resolve the pool's future for a call not run.
        inner = self.inner
        self.inner = None
        if inner is not None:
            _settle(inner, CancelledError(), error=True)

    def interrupt(self) -> None:
        """Make :func:`tunnypy.interrupted` true inside this call's running job."""
        job = self.job
        if job is not None:
            job.interrupt_submitted()


def _settle(future: Future[Any], value: Any, *, error: bool) -> None:
    try:
        if error:
            future.set_exception(value)
        else:
            future.set_result(value)
    except InvalidStateError:
        pass  # the caller resolved the future itself while the call ran


class _Local(threading.local):
    def __init__(self) -> None:
        # The calls this thread is running, innermost last.
        self.calls: list[_Call] = []


def _running_call(state: ExecutorState) -> _Call | None:
    """The call of *state* this thread is running, if any."""
    for call in reversed(_local.calls):
        if call.state is state:
            return call
    return None


_local = _Local()


class _Worker(BaseWorker["_Call", None]):
    """Runs calls; names its thread and runs the initializer before the first (private)."""

    __slots__ = ("index", "ready", "state")

    def __init__(self, state: ExecutorState, index: int) -> None:
        self.state = state
        self.index = index
        self.ready = False

    def process(self, payload: _Call) -> None:
        if not self.ready:
            self.ready = True
            if not self._start():
                self.state.break_()  # this call too: run() finds it gone
        payload.run()

    def _start(self) -> bool:
        """On the worker thread, before its first call: name it, run the initializer."""
        state = self.state
        threading.current_thread().name = f"{state.prefix}_{self.index}"
        if state.initializer is None:
            return True
        try:
            state.initializer(*state.initargs)
        except BaseException:
            log.exception("executor_initializer_failed", thread=threading.current_thread().name)
            return False
        return True


class ExecutorState:
    """What an executor's calls and threads share; outlives a dropped Executor (private)."""

    def __init__(
        self,
        size: int,
        *,
        max_waiting: int | None,
        when_full: WhenFull,
        prefix: str,
        initializer: Callable[..., object] | None,
        initargs: tuple[Any, ...],
        latency: Latency,
    ) -> None:
        lock = threading.Lock()
        # Two conditions on one lock: notify() must wake a waiter of the
        # right kind, and submitters blocked for room outnumber the rest.
        self.lock = lock
        self.room = threading.Condition(lock)
        self.drained = threading.Condition(lock)
        self.max_waiting = max_waiting
        self.when_full = when_full
        self.prefix = prefix
        self.initializer = initializer
        self.initargs = initargs
        # Submitted and not started, in order; a dict for O(1) removal.
        self.waiting: dict[_Call, None] = {}
        # Submitted (into the pool) and not finished.
        self.unfinished = 0
        # Unfinished calls that called shutdown(wait=True) on this executor:
        # they may wait for each other, so no call waits for them there.
        self.stuck = 0
        # Calls blocked in submit() for room from inside one of this executor's calls.
        self.blocked_inside = 0
        self.shutdown = False
        self.refusal = _SHUTDOWN
        self.broken: str | None = None
        self.next_index = itertools.count()
        # What the executor was last asked for; kept after shutdown, when the
        # pool's size is 0, as ThreadPoolExecutor keeps ``_max_workers``.
        self.max_workers = size
        # Calls that returned or raised, counted before their futures are
        # settled: the pool counts its job only after process() returns,
        # which is after the caller may have its result.
        self.completed = 0
        self.failed = 0
        self.pool: Pool[_Call, None] = Pool(size, self.new_worker, latency=latency)

    def new_worker(self) -> _Worker:
        return _Worker(self, next(self.next_index))

    # -- submit -------------------------------------------------------------

    def submit(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Future[Any]:
        future = _ExecutorFuture()
        future._tunnypy_call = None
        with self.lock:
            while True:
                self._check_open()
                limit = self.max_waiting
                if limit is None or len(self.waiting) < limit:
                    call = _Call(self, future, fn, args, kwargs)
                    future._tunnypy_call = call
                    # Listed before the pool has it: a worker may start it at once.
                    self.waiting[call] = None
                    self.unfinished += 1
                    try:
                        # Under the lock, so that no cancel_futures or break_()
                        # sees the call before ``inner`` is set. Pool.submit
                        # never waits.
                        call.inner = self.pool.submit(call)
                    except BaseException:
                        # Refused, or Ctrl-C (a worker may have it: one of us
                        # takes it out of ``waiting``, see start()).
                        if self.waiting.pop(call, self) is not self:
                            self.unfinished -= 1
                        self.room.notify()  # pass on the room this caller may have been woken for
                        raise
                    return future
                if self.when_full == "raise":
                    msg = f"executor has {len(self.waiting)} calls waiting (max_waiting={limit})"
                    raise PoolBusyError(msg)
                if self.when_full == "caller_runs":
                    break
                self._wait_for_room()
        # Full, and the caller runs it (Java's CallerRunsPolicy).
        if future.set_running_or_notify_cancel():
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _settle(future, exc, error=True)
            else:
                _settle(future, result, error=False)
        return future

    def _wait_for_room(self) -> None:
        """Under the lock: wait for a waiting call to start, unless that would be forever."""
        if _running_call(self) is None:
            self.room.wait()
            return
        # Only workers take calls from the line: if each of them waits here,
        # none ever will.
        if self.blocked_inside + 1 >= self.pool.size:
            msg = "every worker of this executor would wait for room to submit to it"
            raise PoolDeadlockError(msg)
        self.blocked_inside += 1
        try:
            self.room.wait()
        finally:
            self.blocked_inside -= 1

    def _check_open(self) -> None:
        if self.broken is not None:
            raise BrokenThreadPool(self.broken)
        if self.shutdown:
            raise RuntimeError(self.refusal)
        if _exiting:
            raise RuntimeError(_EXITING)

    # -- a call's way through -----------------------------------------------

    def start(self, call: _Call) -> bool:
        """A worker takes *call*: whether it is still to run."""
        # Without the lock: a dict's pop() is atomic, so exactly one of the
        # worker, cancel() and break_() takes a call out of ``waiting``, and
        # whoever does accounts for it. The submitter may still hold the lock.
        if self.waiting.pop(call, self) is self:
            return False
        if self.max_waiting is not None:
            with self.lock:
                self.room.notify()
        return True

    def count(self, *, ok: bool) -> None:
        """A call returned (*ok*) or raised, and its future is about to say so."""
        with self.lock:
            if ok:
                self.completed += 1
            else:
                self.failed += 1

    def finished(self, stuck: bool) -> None:
        with self.lock:
            self.unfinished -= 1
            self.stuck -= stuck
            self._after_change()

    def cancelled(self, call: _Call) -> bool:
        """*call*'s future is being cancelled: whether this took the call out of ``waiting``."""
        # The canceller may be the main thread: wherever Ctrl-C lands, a call
        # taken out of ``waiting`` (by ``del``, not pop(): no signal check
        # before ``taken`` is stored) is dropped and stops counting, else
        # shutdown(wait=True) and interpreter exit wait for it for good.
        taken = False
        try:
            with self.lock:
                try:
                    del self.waiting[call]
                except KeyError:
                    return False  # a worker or break_() took it first, and tells the future
                taken = True
                self.room.notify()
        finally:
            if taken:
                try:
                    self._drop([call])
                except BaseException:  # Ctrl-C as it began: once more (it counts a call once)
                    self._drop([call])
                    raise
        return True

    def break_(self) -> None:
        """An initializer failed: fail every waiting call, refuse new ones."""
        with self.lock:
            if self.broken is None:
                self.broken = _BROKEN
            self.room.notify_all()  # blocked submitters raise BrokenThreadPool
            waiting = self.waiting
            # One pop() each: a worker may be taking one at the same time (see start()).
            failed = [call for call in list(waiting) if waiting.pop(call, self) is not self]
        for call in failed:
            future = call.future
            future._tunnypy_call = None
            # A future cancelled while it waited is only told to wait() and
            # as_completed() here, as a worker would tell them.
            if future.set_running_or_notify_cancel():
                _settle(future, BrokenThreadPool(_BROKEN), error=True)
        self._drop(failed)

    def _drop(self, calls: list[_Call]) -> None:
        """Take *calls*, removed from ``waiting``, out of the pool's line; stop counting them."""
        try:
            for call in calls:
                call.fn = None
                call.args = ()
                call.kwargs = {}
                inner = call.inner
                if inner is not None:
                    # One a worker took already is resolved by run(), which
                    # finds the call gone.
                    inner.cancel()
        finally:
            # Only now: a pool closed while they were in its line would count
            # them refused. Each call is counted off once, however often this runs.
            with self.lock:
                for call in calls:
                    if not call.dropped:
                        call.dropped = True
                        self.unfinished -= 1
                try:
                    self._after_change()
                except BaseException:  # Ctrl-C as it began: once more
                    self._after_change()
                    raise

    def _after_change(self) -> None:
        """Under the lock: wake shutdown waiters, close the pool once drained."""
        if self.unfinished <= self.stuck:
            self.drained.notify_all()
        if self.unfinished == 0 and (self.shutdown or self.broken is not None):
            # Safe from inside a job, and does not wait with wait=False.
            self.pool.close(wait=False)

    # -- shutdown -----------------------------------------------------------

    def shut(self, wait: bool, cancel_futures: bool, refusal: str = _SHUTDOWN) -> None:
        with self.lock:
            if not self.shutdown:
                self.shutdown = True
                self.refusal = refusal
            self.room.notify_all()  # submitters blocked for room raise
            to_cancel = list(self.waiting) if cancel_futures else []
        for call in to_cancel:
            # Not cancel(): a call a worker started meanwhile runs on uninterrupted.
            call.future.cancel_waiting()
        with self.lock:
            self._after_change()
            if not wait:
                return
            mine = _running_call(self)
            if mine is None:
                while self.unfinished:
                    self.drained.wait()
            else:
                # A call that shuts its own executor waits for the others
                # only, and not for those doing the same: they may be waiting for it.
                if not mine.stuck:
                    mine.stuck = True
                    self.stuck += 1
                    self._after_change()
                while self.unfinished > self.stuck:
                    self.drained.wait()
        self.pool.close(wait=True)


# Executors with calls or threads, so interpreter exit can wait for their calls.
live_states: weakref.WeakSet[ExecutorState] = weakref.WeakSet()


def _at_exit() -> None:
    # As ThreadPoolExecutor: at exit, refuse new calls and run every call
    # already submitted. Registered after the pool's own exit hook, so it
    # runs first (they run in reverse), while the pools still serve.
    global _exiting
    _exiting = True
    states = list(live_states)
    for state in states:
        state.shut(False, False, _EXITING)
    for state in states:
        state.shut(True, False, _EXITING)


def _after_fork_in_child() -> None:
    # The child has the executors but none of their threads (see _lifecycle).
    for state in list(live_states):
        lock = state.lock = threading.Lock()
        state.room = threading.Condition(lock)
        state.drained = threading.Condition(lock)
        state.shutdown = True
        state.refusal = "executor cannot be used in a forked child process"
        state.waiting.clear()
        state.unfinished = 0
        state.stuck = 0


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_after_fork_in_child)
