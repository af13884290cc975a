"""
Core: the state a pool's callers and worker threads share.

The line, dispatch, withdraw, resize, close and stats live here; ``Pool``
(in ``_pool.py``) is the public face. Threads reference only the core, never
the ``Pool``, so a pool that is dropped without ``close()`` is collected and a
finalizer closes its core.

Invariants, all under ``Core.lock``:

* ``idle`` holds parked workers, ``line`` holds jobs waiting for a worker;
  both are non-empty only while ``summoned`` is set (a parked worker woken to
  serve the line, which passes the summons on or clears it when it answers).
* A worker on ``idle`` has ``job is None`` and is not retiring; a caller that
  pops it sets ``job`` (or ``summoned``) before waking it.
* ``active`` counts workers that are not retiring; ``workers`` holds every
  worker whose thread has not yet finished ``terminate()``.
"""

from __future__ import annotations

import _thread
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs

from ._job import DONE, NO_CONTEXT, REJECTED, RUNNING, WAITING, Job, worker_tls
from ._log import debug_enabled, log
from ._token import CancelToken, deadline_in
from ._waker import LockWaker, Waker, acquire_until, cpus_usable, yield_until_free
from ._worker import Worker, check_worker
from ._wrapper import WorkerWrapper
from .exceptions import (
    JobCancelledError,
    JobTimedOutError,
    PoolBusyError,
    PoolClosedError,
    PoolDeadlockError,
    TunnypyError,
)

__all__ = ["CANCELLED", "TIMED_OUT", "Core", "PoolStats", "collected", "live_cores"]

_monotonic = time.monotonic
_TIMEOUT_MAX = threading.TIMEOUT_MAX

# Why a caller stopped waiting before its job was done.
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"


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
    """
    Calls that ended in ``JobCancelledError``, futures cancelled or resolved by
    their caller, or callers interrupted.
    """
    rejected: int
    """Calls refused with ``PoolClosedError``, ``PoolBusyError`` or ``PoolDeadlockError``."""


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
        # set_size calls made, and the targets of those whose growth may yet
        # fail, after the last to end well: a failed growth falls back to the
        # target before its own (see _fall_back_locked).
        self.resizes = 0
        self.targets: list[tuple[int, int]] = [(0, 0)]
        self.active = 0
        self.closed = False
        self.closed_reason = "pool is closed"
        # Each worker whose thread waits in a call on this pool (a job calling
        # its own pool), with that call's job and name, from the moment the
        # call joins the line until it ends, wherever its job then runs.
        self.nested: dict[WorkerWrapper, tuple[Job, str]] = {}
        # The parked worker taken off ``idle`` to serve the line that has not
        # yet answered (see WorkerWrapper._await_job); at most one.
        self.summoned: WorkerWrapper | None = None
        # Whether a caller whose job waits behind others (and every
        # process_timed caller, see there) sleeps on a lock rather than an
        # eventfd. An eventfd wake releases the GIL, which is
        # what makes a lone round trip fast; but a worker that goes on to its
        # next job loses the GIL to the thread it woke, and with more than one
        # CPU the two then trade it back and forth (~7 context switches per
        # job with 8 callers on 4 workers, against ~3.5 this way). With one
        # CPU the woken thread cannot run until the waker sleeps anyway, and
        # the eventfd is faster.
        self.batch_wakes = cpus_usable() > 1
        self.next_index = 0
        # What wakes each thread in _join() waiting for a worker to leave
        # ``workers`` (see worker_exited).
        self.watchers: dict[WorkerWrapper, list[Waker]] = {}
        # Parked workers retired by a shrink and not yet woken. Each leaving
        # worker wakes the next, so set_size() wakes only one and returns at
        # once however many it retired (a wake can hand the GIL to the woken
        # thread, and 999 of them cost the caller ~0.3 s).
        self.to_wake: list[WorkerWrapper] = []
        # Calls a close() refused that it has not yet told (see _shut_locked).
        self.refused: list[Job] = []
        # Counters written under ``lock``. ``completed`` and ``failed`` live
        # on each worker (written only by its thread) and are folded in here
        # when the worker leaves.
        self.completed = 0
        self.failed = 0
        self.timed_out = 0
        self.cancelled = 0
        self.rejected = 0

    # -- dispatch -----------------------------------------------------------

    def dispatch(self, job: Job, *, wait: bool = True, call: str = "process") -> None:
        """
        Start *job* on a parked worker, or put it in line; refuse it if closed.

        A caller's job is handed straight to a parked worker when every
        worker is parked (the lone round trip). Otherwise, and for every
        submitted job, the job goes in line and one parked worker is
        *summoned* for it: a busy worker that comes back first may take the
        job instead, which beats waking a sleeper on another CPU. While
        that worker is on its way, later jobs only join the line, and the
        summoned worker passes the summons on (``WorkerWrapper._await_job``).
        A burst of submits thus costs the submitter one wake, not one per
        job: a wake through an eventfd hands the GIL to the woken worker, and
        the submitter and its workers would take turns job by job.

        ``Pool.process`` inlines the hand-over and the joining of the line;
        a change here must be made there too. *call* names the method that
        made the call, for a ``PoolDeadlockError``.
        """
        # Callers may be the main thread, where Ctrl-C raises wherever the
        # interpreter checks for signals (calls, not indexing or stores):
        # ``with`` always releases the lock, and a worker taken off the stack
        # holds the job or the summons before any call, and is woken
        # whatever happens next.
        wrapper: WorkerWrapper | None = None
        lock = self.lock
        if lock.locked():
            yield_until_free(lock)
        try:
            with lock:
                idle = self.idle
                on_way = self.summoned
                if on_way is None and idle:
                    # Every worker parked: the same test as Pool.process's.
                    hand_over = job.future is None and len(idle) >= self.active
                    wrapper = idle[-1]
                    del idle[-1]
                    if hand_over:
                        job.state = RUNNING
                        job.wrapper = wrapper
                        wrapper.job = job
                        return
                    self.summoned = wrapper
                elif on_way is None or len(idle) + (not on_way.retiring) <= len(self.line):
                    # No worker is free for this job (the one on its way
                    # serves the first job in line, the parked ones the
                    # next): it waits its turn, or is refused.
                    self._enqueue_locked(job, wait, call)
                    return
                # A worker is free for it: on its way, or parked and about to
                # be summoned along the chain. A job's call on its own pool is
                # recorded (not checked: it would be served), since a shrink
                # may retire that free worker (see _unstrand_locked).
                if job.future is None and worker_tls.wrapper is not None:
                    self._count_nested(job, call, check=False)
                self.line.append(job)
        finally:
            if wrapper is not None:
                try:
                    wrapper.waker.wake()
                except BaseException:
                    # Ctrl-C can land as a lock waker's wake() begins (signals
                    # are checked as a Python function is entered), before it
                    # woke anyone: the worker, holding the job or the summons
                    # and on no list, would sleep for good. A spare wake is
                    # harmless, so wake it again and let the interrupt go on.
                    wrapper.waker.wake()
                    raise

    def _enqueue_locked(self, job: Job, wait: bool, call: str) -> None:
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
        # A future never blocks its caller; only a worker thread can be a job.
        if job.future is None and worker_tls.wrapper is not None:
            self._count_nested(job, call, check=True)
        self.line.append(job)

    def _count_nested(self, job: Job, call: str, *, check: bool) -> None:
        # A job that calls its own pool holds its worker until that call
        # ends, while the call waits in line and while it runs on another
        # worker. Record it until then (forget_nested); with *check*, refuse a
        # call that joins the line when no active worker could ever serve it.
        # A retiring worker's call is recorded too: an active worker's call
        # may be running on it (see _stuck_locked).
        current = worker_tls.wrapper
        if current is None or current.core is not self:
            return
        job.nested = current
        nested = self.nested
        nested[current] = (job, call)
        if check and 0 < self.active <= len(nested) and self._stuck_locked() is not None:
            del nested[current]
            job.nested = None
            self.rejected += 1
            msg = (
                f"a job called {call}() on its own pool while every worker is "
                "waiting on that pool; this would never return"
            )
            raise PoolDeadlockError(msg)

    def forget_nested(self, job: Job) -> None:
        """The call of *job*, which a worker of this pool made from its job, has ended."""
        with self.lock:
            caller = job.nested
            if caller is not None:
                job.nested = None
                entry = self.nested.get(caller)
                if entry is not None and entry[0] is job:
                    del self.nested[caller]

    def _stuck_locked(self) -> set[Job] | None:
        """
        Under the lock: the calls in line that every active worker waits on, if none can move.

        A worker in ``nested`` waits for its call, which either waits in
        line or runs on another worker, which may itself wait on the pool,
        and so on. Followed, that chain ends in line or at a worker that
        does not wait on this pool: its job can still return, and free every
        worker before it. If every active worker's chain ends in line, no
        worker will ever take a job from it: those calls are returned.
        Otherwise ``None``. See docs/design.md, "Deadlock check".
        """
        nested = self.nested
        active = self.active
        if not 0 < active <= len(nested):
            return None  # some active worker waits on nothing here
        ends: dict[WorkerWrapper, Job | None] = {}  # where each chain ends; None: it can move
        stuck: set[Job] = set()
        waiting = 0
        for start in nested:
            if start.retiring:
                continue  # holds no active worker; walked only as part of a chain
            path: list[WorkerWrapper] = []
            worker: WorkerWrapper | None = start
            end: Job | None = None
            while worker is not None:
                if worker in ends:
                    end = ends[worker]
                    break
                entry = nested.get(worker)
                if entry is None or len(path) > len(nested):
                    break  # not waiting on this pool (the length bound: never loop)
                path.append(worker)
                job = entry[0]
                if job.nested is not worker or job.withdrawn or job.state >= DONE:
                    break  # its call is ending
                if job.state == WAITING:
                    end = job  # in line
                    break
                following = job.wrapper  # running there
                worker = following if following is not None and following.job is job else None
            for walked in path:
                ends[walked] = end
            if end is None:
                return None
            stuck.add(end)
            waiting += 1
        return stuck if waiting == active else None

    def _unstrand_locked(self) -> Waker | None:
        """
        After workers retired: end one call on the pool's own line if none can be served.

        Under the lock. A retired worker no longer serves the line. If every
        worker left then waits on its own pool, directly or through the calls
        it waits for (see _stuck_locked), nothing will ever serve the line:
        the newest such call fails with ``PoolDeadlockError`` (as if it had
        just been made), which frees its worker. Returns that call's waker,
        for the caller to wake once the lock is released.
        """
        if not self.nested:
            return None
        stuck = self._stuck_locked()
        if stuck is None:
            return None
        line = self.line
        index = len(line) - 1
        while index >= 0 and line[index] not in stuck:
            index -= 1
        if index < 0:
            return None  # every stuck call is in line: not reached
        newest = line[index]
        entry = self.nested.get(newest.nested) if newest.nested is not None else None
        call = entry[1] if entry is not None else "process"
        error = PoolDeadlockError(
            f"a resize left every worker waiting on its own pool; this {call}() "
            "from inside a job would never return"
        )
        # No call from here to the return: Ctrl-C (in a set_size() on the
        # main thread) cannot land between taking the call out of line and
        # ending it. Its caller forgets it (forget_nested) when it wakes.
        del line[index]
        self.rejected += 1
        newest.error = error
        newest.state = DONE
        return newest.waker

    def call(
        self,
        job: Job,
        deadline: float | None,
        token: CancelToken | None,
        *,
        wait: bool = True,
        call: str = "process",
    ) -> Any:
        """
        Dispatch *job*, wait for it and return its result, or raise what ended the call.

        *call* names the method that made the call, for a ``PoolDeadlockError``.
        """
        waker = job.waker
        assert waker is not None
        reason: str | None = None
        try:
            # Inside the try: Ctrl-C may land just after dispatch() returns.
            self.dispatch(job, wait=wait, call=call)
            if deadline is None and token is None:
                while job.state < DONE:
                    waker.wait()
            else:
                while job.state < DONE:
                    if token is not None and token._cancelled:
                        reason = CANCELLED
                        break
                    if deadline is None:
                        waker.wait()
                        continue
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        reason = TIMED_OUT
                        break
                    waker.wait(remaining)
        except TunnypyError:
            raise  # refused by dispatch(), and counted: it never got in
        except BaseException:
            # Ctrl-C (or another asynchronous exception) in the caller: it has
            # given up, so withdraw the job as a cancellation and re-raise.
            self.withdraw(job, CANCELLED)
            raise
        if reason is not None and self.withdraw(job, reason):
            if reason == TIMED_OUT:
                raise JobTimedOutError("job did not finish before its deadline")
            raise JobCancelledError("job was cancelled by its token")
        if job.nested is not None:  # withdraw() forgets it where it ends the call
            self.forget_nested(job)
        return self.outcome(job)

    def outcome(self, job: Job) -> Any:
        waker = job.waker
        assert waker is not None
        while job.state < DONE:  # a withdraw that lost: the outcome is on its way
            waker.wait()
        # The call ends here: the job, which this frame and the caller's keep
        # in any traceback raised below, must hold nothing of it.
        job.payload = None
        job.context = NO_CONTEXT
        if job.state == REJECTED:
            raise PoolClosedError(self.closed_reason)
        error = job.error
        if error is not None:
            job.error = None
            try:
                raise error
            finally:
                del error  # else this frame, in error's traceback, holds error: a cycle
        result = job.result
        job.result = None
        return result

    def withdraw(self, job: Job, reason: str) -> bool:
        """
        Give up on *job*: take it out of line, or interrupt its worker.

        Returns ``False`` when the worker finished first (its outcome stands)
        or the pool's close() already refused it. Not for a job dispatch()
        refused: that one is counted as rejected already.
        """
        gate = job.gate
        assert gate is not None  # futures are never withdrawn
        gate.acquire()  # waits only while the worker is delivering
        try:
            if job.state >= DONE:
                return False
            with self.lock:
                if job.state >= DONE:  # refused by close(), or ended by _unstrand_locked()
                    return False
                wrapper: WorkerWrapper | None = None
                if job.state == WAITING:
                    try:  # noqa: SIM105 - under the lock, suppress() costs a frame
                        self.line.remove(job)
                    except ValueError:
                        # It never got in: its caller was interrupted (Ctrl-C)
                        # before it joined the line. A call made is counted
                        # all the same. Refusals never come here.
                        pass
                else:
                    wrapper = job.wrapper
                job.withdrawn = True
                if reason == TIMED_OUT:
                    self.timed_out += 1
                else:
                    self.cancelled += 1
            if wrapper is not None:
                # Still holding the gate: the worker cannot finish this job,
                # nor start another, until interrupt() has returned.
                try:
                    interrupt = getattr(wrapper.worker, "interrupt", None)
                    if interrupt is not None:  # a missing hook is a no-op
                        interrupt()
                except Exception:
                    log.exception("interrupt_failed", worker=wrapper.index)
            return True
        finally:
            gate.release()
            if job.nested is not None:  # a job's call on its own pool: it waits no more
                self.forget_nested(job)

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
            job.let_go()  # it never runs: a worker that popped it skips it
            if state == WAITING:
                try:
                    self.line.remove(job)
                except ValueError:
                    return  # a worker popped it and will skip it

    def count_refused(self, reason: str) -> None:
        """Count a call refused at entry; a closed pool's refusal comes first."""
        with self.lock:
            if self.closed:
                self.rejected += 1
                raise PoolClosedError(self.closed_reason)
            if reason == TIMED_OUT:
                self.timed_out += 1
            else:
                self.cancelled += 1

    # -- resize -------------------------------------------------------------

    def set_size(self, size: int, wait: bool, timeout: float | None) -> bool:
        deadline = deadline_in(timeout)
        # The target and a shrink take effect at once; only a growth, which
        # calls the factory, waits for a growth in another thread to finish.
        with self.lock:
            if self.closed:
                raise PoolClosedError(self.closed_reason)
            previous = self.size
            self.size = size
            self.resizes += 1
            ticket = self.resizes
            self.targets.append((ticket, size))
            current = self.active
        if size < current:
            self._shrink()
        if size > current:
            with self.resize_lock:
                self._grow(ticket)
        else:
            with self.lock:
                self._settle_locked(ticket)
        log.info("pool_resized", size=size, previous=previous)
        if wait:
            # Wait for every retiring worker, including those retired by an
            # earlier call, so that the pool really is at *size* afterwards.
            with self.lock:
                retirees = [w for w in self.workers if w.retiring]
            if any(wrapper.thread.ident is None for wrapper in retirees):
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
        if self.closed:
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
        with self.lock:
            if self.closed:
                raise PoolClosedError(self.closed_reason)
            count = self.size - self.active
        # Make every worker before starting any thread, so a factory that
        # raises leaves the pool as it was.
        made: list[Worker[Any, Any]] = []
        try:
            for _ in range(count):
                worker = self.factory()
                made.append(worker)  # terminated below if it is refused
                check_worker(worker)
        except BaseException:
            for worker in made:
                _terminate_quietly(worker, -1)
            with self.lock:
                self._fall_back_locked(ticket)
            raise
        # Ctrl-C can land wherever CPython checks for signals (see _shrink):
        # each wrapper is listed and counted by stores and one last call, and
        # whatever lands is undone below like a thread that would not start.
        wrappers: list[WorkerWrapper] = []
        starting: WorkerWrapper | None = None
        try:
            with self.lock:
                if self.closed:  # close() raced us: the new workers never existed
                    raise PoolClosedError(self.closed_reason)
                # A shrink during the factory calls may want fewer.
                for worker in made[: max(0, self.size - self.active)]:
                    wrapper = WorkerWrapper(self, worker, self.next_index)
                    self.next_index += 1
                    self.workers[wrapper] = None
                    self.active += 1
                    wrappers.append(wrapper)
            while len(made) > len(wrappers):  # those the target no longer wants
                # Off the list only once terminated: Ctrl-C lands at a call,
                # and the undo below terminates what is still listed.
                _terminate_quietly(made[-1], -1)
                del made[-1]
            for starting in wrappers:
                starting.thread.start()
            starting = None
        except BaseException as exc:
            # Out of threads, Ctrl-C or closed meanwhile: undo the workers not
            # started, retire the others.
            self._undo_grow(made, wrappers, starting, exc, ticket)
            raise
        with self.lock:
            self._settle_locked(ticket)

    def _undo_grow(
        self,
        made: list[Worker[Any, Any]],
        wrappers: list[WorkerWrapper],
        starting: WorkerWrapper | None,
        exc: BaseException,
        ticket: int,
    ) -> None:
        started: list[WorkerWrapper] = []
        unstarted: list[WorkerWrapper] = []
        for wrapper in wrappers:
            if wrapper.thread.ident is not None or (
                # Ctrl-C inside Thread.start(): the thread may exist without
                # having said so yet, and may say so late. Retired like a
                # started one, it leaves by itself whenever it runs.
                wrapper is starting and not isinstance(exc, Exception)
            ):
                started.append(wrapper)
            else:
                unstarted.append(wrapper)
        with self.lock:
            for wrapper in unstarted:
                del self.workers[wrapper]
                if not wrapper.retiring:  # else a shrink has counted it
                    self.active -= 1
        # Every worker made and never run: those of the wrappers not started,
        # and any Ctrl-C left without a wrapper.
        for worker in made[len(wrappers) :]:
            _terminate_quietly(worker, -1)
        for wrapper in unstarted:
            _terminate_quietly(wrapper.worker, wrapper.index)
        self._retire(started)
        with self.lock:
            self._fall_back_locked(ticket)

    def _shrink(self) -> None:
        # Ctrl-C can land wherever CPython checks for signals: as a function
        # is entered, at a loop's back edge, after a call returns. The loops
        # only mark workers retiring and count them, a store and a count at
        # a time; the ``finally`` does the rest wherever Ctrl-C landed, with
        # no call until _unstrand_locked(), which it makes again if Ctrl-C
        # lands as it begins.
        first: WorkerWrapper | None = None
        stranded: Waker | None = None
        try:
            with self.lock:
                # Down to the latest target: another call may have set one since.
                count = max(0, self.active - self.size)
                idle = self.idle
                to_wake = self.to_wake
                # Idle workers first, the least recently used (bottom of the
                # stack); then the newest of the others (busy, or in
                # block_until_ready), which notice at their next offer.
                take = min(count, len(idle))
                taken = 0
                busy = 0
                try:
                    for wrapper in idle[:take]:
                        wrapper.retiring = True
                        taken += 1
                    if take < count:
                        for wrapper in reversed(self.workers):
                            if busy == count - take:
                                break
                            if not wrapper.retiring:
                                wrapper.retiring = True
                                busy += 1
                finally:
                    self.active -= taken + busy
                    to_wake += idle[:taken]  # parked: they need a wake
                    del idle[:taken]
                    if to_wake:
                        first = to_wake[-1]
                        del to_wake[-1]
                    try:
                        stranded = self._unstrand_locked()
                    except BaseException:  # Ctrl-C as it began: once more
                        stranded = self._unstrand_locked()
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

    def _retire(self, wrappers: list[WorkerWrapper]) -> None:
        with self.lock:
            for wrapper in wrappers:
                if wrapper.retiring:
                    continue
                wrapper.retiring = True
                self.active -= 1
                if wrapper in self.idle:
                    self.idle.remove(wrapper)
            try:
                stranded = self._unstrand_locked()
            except BaseException:  # Ctrl-C as it began: once more (see _shrink)
                stranded = self._unstrand_locked()
                raise
        try:
            for wrapper in wrappers:
                wrapper.waker.wake()
            if stranded is not None:
                stranded.wake()
        except BaseException:  # Ctrl-C meanwhile (see dispatch()): wake them all again
            for wrapper in wrappers:
                wrapper.waker.wake()
            if stranded is not None:
                stranded.wake()
            raise

    def repair(
        self,
        wrapper: WorkerWrapper,
        delivered: Job | None,
        error: BaseException | None,
        *,
        leaving: bool,
        may_have_run: bool = False,
    ) -> Job | None:
        """
        Undo what a worker whose loop failed may have left half done (see WorkerWrapper._recover).

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
        with self.lock:
            idle = self.idle
            if wrapper in idle:
                idle.remove(wrapper)
            if self.summoned is wrapper:
                self.summoned = None
            held = wrapper.job
            wrapper.job = None
            if (
                held is not None
                and held is not delivered
                and held.state == RUNNING
                and not held.withdrawn
            ):
                if not leaving and not may_have_run:
                    keep = wrapper.job = held
                elif held.future is not None or may_have_run:
                    ending = held
                elif self.closed:  # no one will serve the line
                    held.state = REJECTED
                    self.rejected += 1
                    wake.append(held.waker)  # type: ignore[arg-type]
                else:
                    held.state = WAITING
                    held.wrapper = None
                    self.line.appendleft(held)
            if leaving:
                if not wrapper.retiring:
                    wrapper.retiring = True
                    self.active -= 1
                # Also when it was retiring already: a call it held may be
                # back in line, waited on by active workers.
                stranded = self._unstrand_locked()
                if stranded is not None:
                    wake.append(stranded)
            if self.line and idle and self.summoned is None and not self.closed:
                following = idle[-1]
                del idle[-1]
                self.summoned = following
                wake.append(following.waker)
        for waker in wake:
            waker.wake()
        if ending is not None:
            wrapper._deliver(ending, False, failure)
        return keep

    def worker_exited(self, wrapper: WorkerWrapper) -> None:
        if not wrapper.retiring:
            # Left by an error that WorkerWrapper._recover could not handle
            # (it failed itself). Whether its job ran is unknown here: the
            # job ends with an error, since a job must never run twice.
            self.repair(wrapper, None, None, leaving=True, may_have_run=True)
        with self.lock:
            following = self.to_wake.pop() if self.to_wake else None
        if following is not None:
            following.waker.wake()  # pass the shrink's wake along the chain
        _terminate_quietly(wrapper.worker, wrapper.index)
        if debug_enabled():
            try:  # noqa: SIM105 - the except says why
                log.debug("worker_stopped", worker=wrapper.index)
            except BaseException:
                pass  # a logging handler that raises must not keep the worker listed
        # Only now leave ``workers``, the last of this worker's doings:
        # set_size(wait=True), close() and exit wait for the workers listed
        # there, and must not return before terminate().
        with self.lock:
            self.workers.pop(wrapper, None)
            self.completed += wrapper.completed
            self.failed += wrapper.failed
            watchers = self.watchers.pop(wrapper, None)
        if watchers is not None:
            for waker in watchers:
                waker.wake()

    # -- close --------------------------------------------------------------

    def close(self, wait: bool, timeout: float | None, reason: str = "pool is closed") -> bool:
        deadline = deadline_in(timeout)
        first = False
        leader: WorkerWrapper | None = None
        refused: list[Job] = []
        error: BaseException | None = None
        try:
            with self.lock:
                if not self.closed:
                    first = True
                    self.closed_reason = reason
                    self.closed = True
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
                everyone = list(self.workers)
        finally:
            # Wake the parked workers as a chain, as a shrink does: each
            # leaving worker wakes the next. Woken all at once, 10,000 workers
            # each waited for the GIL, waking every 5 ms to ask for it, and
            # close() took 10-40 s of mostly system time. The workers first:
            # telling the refused futures runs their callbacks, which may
            # raise. Ctrl-C can land anywhere here, a wake included (see
            # dispatch()): the whole pass is then made again. A spare wake
            # is harmless, and a future already told is skipped.
            told = False
            while not told:
                try:
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
                            future.set_exception(PoolClosedError(self.closed_reason))
                    told = True
                except BaseException as exc:  # a callback's SystemExit, or Ctrl-C
                    error = error or exc
        if error is not None:
            raise error
        if first:
            log.info("pool_closed", workers=len(everyone), refused=len(refused))
        if wait:
            # A grow in another thread lists its workers (after its factory
            # calls) before it starts their threads, and _join() cannot wait
            # for a thread not yet started: let that grow finish starting
            # them first (they then see the pool closed and leave). Only
            # then: a grow still in its factory has listed no one yet, and
            # close() does not wait for the factory.
            if any(wrapper.thread.ident is None for wrapper in everyone):
                if not acquire_until(self.resize_lock, deadline):
                    return False
                self.resize_lock.release()
            return _join(self, everyone, deadline)
        return not everyone

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
        self.summoned = None  # retiring now; it leaves when it wakes
        self.active = 0
        self.size = 0
        for wrapper in self.workers:
            wrapper.retiring = True
        line = self.line
        refused = self.refused
        while line:
            job = line[0]
            job.state = REJECTED
            self.rejected += 1
            del line[0]
            refused.append(job)
        # ``nested`` keeps its calls: each is now refused, and its caller
        # forgets it as it wakes.
        parked = self.idle
        if parked:
            self.idle = []
            self.to_wake.extend(parked)

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
        terminate = getattr(worker, "terminate", None)
        if terminate is not None:  # a missing hook is a no-op
            terminate()
    except BaseException:  # SystemExit too: it must not end a worker thread noisily
        log.exception("terminate_failed", worker=index)


# The worker each thread inside _join() waits for now, across every pool. A
# wait begins only if it closes no cycle (see _waits_for).
_waits_lock = _thread.allocate_lock()
_waiting_for: dict[threading.Thread, WorkerWrapper] = {}

# What _await_exit() found.
_ENDED = 0
_WAITS_FOR_ME = 1
_TIMED_OUT = 2


def _waits_for(wrapper: WorkerWrapper, me: threading.Thread) -> bool:
    """Whether *wrapper*'s thread is *me*, or waits in _join() for *me*, directly or not."""
    # Under _waits_lock. Each thread waits for one worker at a time and no
    # wait closes a cycle, so the chain ends.
    following: WorkerWrapper | None = wrapper
    while following is not None:
        thread = following.thread
        if thread is me:
            return True
        following = _waiting_for.get(thread)
    return False


def _join(core: Core, wrappers: list[WorkerWrapper], deadline: float | None) -> bool:
    """
    Wait until every worker of *wrappers* has ended; ``False`` if *deadline* passed first.

    A worker has ended when it has left ``core.workers``, which it does
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
    later: list[WorkerWrapper] = []
    for wrapper in wrappers:
        found = _await_exit(core, wrapper, me, waker, deadline)
        if found == _TIMED_OUT:
            return False
        if found == _WAITS_FOR_ME:
            later.append(wrapper)
        else:
            _let_end(wrapper.thread, deadline)
    for wrapper in later:
        found = _await_exit(core, wrapper, me, waker, deadline)
        if found == _TIMED_OUT:
            return False
        if found == _ENDED:
            _let_end(wrapper.thread, deadline)
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
    core: Core, wrapper: WorkerWrapper, me: threading.Thread, waker: Waker, deadline: float | None
) -> int:
    try:
        with core.lock:
            if wrapper not in core.workers or wrapper.thread.ident is None:
                # Ended, or never started: Ctrl-C landed in Thread.start()
                # (close() first lets a grow in progress start its threads).
                return _ENDED
            with _waits_lock:
                if _waits_for(wrapper, me):
                    return _WAITS_FOR_ME
                _waiting_for[me] = wrapper
            core.watchers.setdefault(wrapper, []).append(waker)
        workers = core.workers
        while wrapper in workers:
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
            if _waiting_for.get(me) is wrapper:
                del _waiting_for[me]
        with core.lock:
            watchers = core.watchers.get(wrapper)
            if watchers is not None and waker in watchers:
                watchers.remove(waker)
                if not watchers:
                    del core.watchers[wrapper]


# Every core with live workers, so interpreter exit can wait for their jobs.
live_cores: weakref.WeakSet[Core] = weakref.WeakSet()


def collected(core: Core) -> None:
    # The Pool was garbage-collected: stop its threads. Even when closed: a
    # close() that Ctrl-C interrupted is finished by the next. Exit still
    # waits for workers that have not ended.
    if core.close(False, None):
        live_cores.discard(core)


def _close_at_exit() -> None:
    # At interpreter exit, refuse new work, let running jobs end and every
    # worker run terminate(), so a program that never calls close() exits
    # once its jobs end. Worker threads are daemon threads: one inside
    # block_until_ready(), which may never return, is not waited for. A
    # worker not in there now will not enter it: it is retiring (see
    # WorkerWrapper._block_until_ready).
    cores = list(live_cores)
    for core in cores:
        core.close(False, None, "interpreter is shutting down")
    for core in cores:
        with core.lock:
            leaving = [w for w in core.workers if not w.readying]
        _join(core, leaving, None)


def _after_fork_in_child() -> None:
    # The child has the pools but none of their threads; using one would hang.
    for core in list(live_cores):
        core.closed = True
        core.closed_reason = "pool cannot be used in a forked child process"
        # Read as a closed pool reads: no target, no worker, no one in line.
        core.size = 0
        core.active = 0
        core.idle.clear()
        core.line.clear()
        core.summoned = None
        for wrapper in core.workers:  # their jobs done so far stay counted
            core.completed += wrapper.completed
            core.failed += wrapper.failed
        core.nested.clear()
        core.workers.clear()
        core.to_wake.clear()
        core.refused.clear()
        core.lock = _thread.allocate_lock()
        core.resize_lock = threading.Lock()


def _forget_waits_in_child() -> None:
    # The threads that were waiting are gone, and one may have held the lock.
    global _waits_lock
    _waits_lock = _thread.allocate_lock()
    _waiting_for.clear()


threading._register_atexit(_close_at_exit)  # type: ignore[attr-defined]
os.register_at_fork(after_in_child=_after_fork_in_child)
os.register_at_fork(after_in_child=_forget_waits_in_child)
