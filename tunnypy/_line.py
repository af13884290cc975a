"""
Line: the waiting line, where a caller's job meets a worker.

Callers dispatch, wait, withdraw and take the outcome here; a worker takes a
job or parks here (``take_or_park``, ``answer_summons``). The lifecycle
(``_lifecycle.py``) adds and retires the workers that serve the line and shares
its lock. See docs/design.md, "The line/idle rendezvous".

Invariants, all under ``Line.lock``:

* ``idle`` holds parked workers, ``waiting`` holds jobs waiting for a worker;
  both are non-empty only while ``summoned`` is set (a parked worker woken to
  serve the line, which passes the summons on or clears it when it answers).
* A worker on ``idle`` has ``job is None`` and is not retiring; a caller that
  pops it sets ``job`` (or ``summoned``) before waking it.
* ``active`` counts the workers serving the line: those not retiring.
"""

from __future__ import annotations

import _thread
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._checks import Latency
from ._future import TAKEN_BY_CALLER
from ._histogram import clock
from ._job import DONE, NO_CONTEXT, REJECTED, RUNNING, WAITING, Job, Runner, worker_tls
from ._log import log
from ._token import CancelToken
from ._waker import LockWaker, Waker, yield_until_free
from .exceptions import (
    JobCancelledError,
    JobTimedOutError,
    PoolBusyError,
    PoolClosedError,
    PoolDeadlockError,
    PoolStalledError,
    TunnypyError,
)

__all__ = ["CANCELLED", "TIMED_OUT", "Line", "Taker"]

_monotonic = time.monotonic

# Why a caller stopped waiting before its job was done.
TIMED_OUT = "timed_out"
CANCELLED = "cancelled"


class Taker(Runner, Protocol):
    """What the line needs of a worker thread that takes its jobs (``WorkerThread`` is one)."""

    waker: Waker  # what it sleeps on while parked: one of the two below
    lock_waker: LockWaker | None
    park_on_lock_next: bool

    @property
    def fd_waker(self) -> Waker: ...

    @property
    def line(self) -> Line: ...


class Line:
    """The waiting line and the idle stack of one pool, and its counters (private)."""

    def __init__(
        self, check: Callable[[object], None] | None, max_waiting: int | None, latency: Latency
    ) -> None:
        self.check = check
        self.max_waiting = max_waiting
        # Whether jobs are timed (Pool's ``latency``): fixed for the pool's life.
        self.latency: Latency = latency
        # Also the lifecycle's lock: one lock guards the whole pool.
        self.lock = _thread.allocate_lock()
        self.waiting: deque[Job] = deque()
        self.idle: list[Taker] = []
        self.active = 0
        self.closed = False
        self.closed_reason = "pool is closed"
        # Set while the pool, replacing failed workers, has had none for its
        # stall_timeout: why calls are refused (docs/design.md, "Workers that come back").
        self.stalled: str | None = None
        # Autoscaling (docs/design.md, "Autoscaling and recycling"): the most
        # workers a call that must wait may grow the pool to (``None``: off),
        # the workers asked of the keeper and not yet listed, and its waker.
        self.grow_to: int | None = None
        self.growing = 0
        self.keeper: Waker | None = None
        # Recycling: the jobs after which a worker is replaced (0: never).
        # Fixed for the pool's life, read once as each worker thread starts.
        self.max_jobs = 0
        # Each worker whose thread waits in a call on this pool (a job calling
        # its own pool), with that call's job and name, from the moment the
        # call joins the line until it ends (docs/design.md, "Deadlock check").
        self.nested: dict[Runner, tuple[Job, str]] = {}
        # The parked worker taken off ``idle`` to serve the line that has not
        # yet answered (see answer_summons); at most one.
        self.summoned: Taker | None = None
        # Counters. ``completed`` and ``failed`` live on each worker (written
        # only by its thread) and are folded in here when the worker leaves.
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
        worker is parked; otherwise the job goes in line and one parked
        worker is *summoned* for it (docs/design.md, "The line/idle
        rendezvous"). ``Pool.process`` inlines the common cases. *call* names
        the method that made the call, for a ``PoolDeadlockError``.
        """
        if self.latency:
            job.joined = clock()
        # Safe wherever Ctrl-C lands (docs/design.md, "Ctrl-C and other signals").
        parked: Taker | None = None
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
                    parked = idle[-1]
                    del idle[-1]
                    if hand_over:
                        job.state = RUNNING
                        job.runner = parked
                        parked.job = job
                        return
                    self.summoned = parked
                elif on_way is None or len(idle) + (not on_way.retiring) <= len(self.waiting):
                    # No worker is free for this job (the one on its way
                    # serves the first job in line, the parked ones the
                    # next): it waits its turn, or is refused.
                    self._enqueue_locked(job, wait, call)
                    return
                # A worker is free for it: on its way, or parked and about to
                # be summoned along the chain. A job's call on its own pool is
                # recorded (not checked: it would be served), since a shrink
                # may retire that free worker (see unstrand_locked).
                if job.future is None and worker_tls.runner is not None:
                    self._count_nested(job, call, check=False)
                self.waiting.append(job)
        finally:
            if parked is not None:
                try:
                    parked.waker.wake()
                except BaseException:
                    # Ctrl-C as the wake began may have woken no one: wake again
                    # (docs/design.md, "Ctrl-C and other signals").
                    parked.waker.wake()
                    raise

    def _enqueue_locked(self, job: Job, wait: bool, call: str) -> None:
        if self.closed:
            self.rejected += 1
            raise PoolClosedError(self.closed_reason)
        if self.stalled is not None:
            self.rejected += 1
            raise PoolStalledError(self.stalled)
        if not wait:
            self.rejected += 1
            raise PoolBusyError("no worker is free")
        if self.max_waiting is not None and len(self.waiting) >= self.max_waiting:
            self.rejected += 1
            msg = f"waiting line is full (max_waiting={self.max_waiting})"
            raise PoolBusyError(msg)
        # Autoscaling: a job no worker on its way will take asks the keeper
        # for one more, up to grow_to (docs/design.md, "Autoscaling and recycling").
        # Woken under the lock: a lock's release, and dispatch() stays as it was.
        if (
            self.grow_to is not None
            and self.active + self.growing < self.grow_to
            and len(self.waiting) >= self.growing
        ):
            self.growing += 1
            if self.keeper is not None:
                self.keeper.wake()
        # A future never blocks its caller; only a worker thread can be a job.
        if job.future is None and worker_tls.runner is not None:
            self._count_nested(job, call, check=True)
        self.waiting.append(job)

    def _count_nested(self, job: Job, call: str, *, check: bool) -> None:
        # Record a job's call on its own pool until it ends (forget_nested);
        # with *check*, refuse one no active worker could ever serve
        # (docs/design.md, "Deadlock check").
        current = worker_tls.runner
        if current is None or current.line is not self:
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
        if self.growing:
            return None  # a worker on its way will take a job from the line
        ends: dict[Runner, Job | None] = {}  # where each chain ends; None: it can move
        stuck: set[Job] = set()
        waiting = 0
        for start in nested:
            if start.retiring:
                continue  # holds no active worker; walked only as part of a chain
            path: list[Runner] = []
            worker: Runner | None = start
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
                following = job.runner  # running there
                worker = following if following is not None and following.job is job else None
            for walked in path:
                ends[walked] = end
            if end is None:
                return None
            stuck.add(end)
            waiting += 1
        return stuck if waiting == active else None

    def unstrand_locked(self) -> Waker | None:
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
        line = self.waiting
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

        The one slow path of the thread callers: ``process_ctx``, ``try_process``
        and ``process_timed`` without a deadline. ``Pool.process`` and
        ``Pool.process_timed`` inline their common case (docs/design.md, "One
        fast path per side"). *call* names the method that made the call, for
        a ``PoolDeadlockError``.
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
                if job.state >= DONE:  # refused by close(), or ended by unstrand_locked()
                    return False
                runner: Runner | None = None
                if job.state == WAITING:
                    try:  # noqa: SIM105 - under the lock, suppress() costs a frame
                        self.waiting.remove(job)
                    except ValueError:
                        # It never got in: its caller was interrupted (Ctrl-C)
                        # before it joined the line. A call made is counted
                        # all the same. Refusals never come here.
                        pass
                else:
                    runner = job.runner
                job.withdrawn = True
                if reason == TIMED_OUT:
                    self.timed_out += 1
                else:
                    self.cancelled += 1
            if runner is not None:
                # Still holding the gate: the worker cannot finish this job,
                # nor start another, until interrupt() has returned.
                try:
                    interrupt = getattr(runner.worker, "interrupt", None)
                    if interrupt is not None:  # a missing hook is a no-op
                        interrupt()
                except Exception:
                    log.exception("interrupt_failed", worker=runner.index)
            return True
        finally:
            gate.release()
            if job.nested is not None:  # a job's call on its own pool: it waits no more
                self.forget_nested(job)

    def cancel_future_locked(self, job: Job) -> None:
        """
        Under the lock and the future's: the job's future is being cancelled (see JobFuture.cancel).

        Its job waits in line (a worker that takes it marks the future
        running, under both locks), never got in (Ctrl-C in submit), or was
        refused by a close() that has not yet told it: counted as rejected,
        but the caller's cancel won the future, so it moves to ``cancelled``.
        """
        state = job.state
        if state == REJECTED:
            self.rejected -= 1
        elif state != WAITING:
            return  # already counted
        self.cancelled += 1
        job.state = DONE
        # Out of line before any Python call (Ctrl-C lands at one's entry): a
        # worker that took a counted job would count it again.
        if state == WAITING:
            try:  # noqa: SIM105 - under the lock, suppress() costs a frame
                self.waiting.remove(job)
            except ValueError:
                pass  # it never got in
        job.let_go()  # it never runs

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

    # -- the worker's side ---------------------------------------------------

    def take_or_park(self, worker: Taker) -> Job | None:
        """
        Take the first live job in line for *worker*, or park it on the idle stack.

        Returns the job taken, or ``None`` when parked or retiring; either
        way ``worker.job`` is then the job taken or ``None``.
        """
        lock = self.lock
        if lock.locked():
            yield_until_free(lock)
        lock.acquire()
        try:
            if not worker.retiring:
                line = self.waiting
                while line:
                    job = line.popleft()
                    future = job.future
                    if future is not None:
                        # Its caller may have resolved or started the future
                        # while it waited: such a job is not run, and counts as
                        # cancelled. ``_state`` only moves forward: read
                        # unlocked, and the except covers a change since.
                        try:
                            taken = future._state in TAKEN_BY_CALLER
                            if not taken and not future.set_running_or_notify_cancel():
                                continue  # cancelled while in line: cancel() counts it
                        except RuntimeError:
                            taken = True
                        except BaseException:
                            # Not taken (memory ran out, say): back at the head
                            # of the line; the worker loop handles the failure.
                            line.appendleft(job)
                            raise
                        if taken:
                            job.state = DONE
                            job.let_go()
                            self.cancelled += 1
                            continue
                    job.state = RUNNING
                    job.runner = worker
                    worker.job = job
                    worker.park_on_lock_next = future is not None
                    return job
                # After a submitted job, park on the lock: its submitter, which
                # wakes it next, goes on running Python (docs/design.md, "Wakers,
                # and why eventfd").
                if worker.park_on_lock_next:
                    waker = worker.lock_waker
                    if waker is None:
                        waker = worker.lock_waker = LockWaker()
                    worker.waker = waker
                else:
                    worker.waker = worker.fd_waker
                self.idle.append(worker)
            worker.job = None
            return None
        finally:
            lock.release()

    def answer_summons(self, worker: Taker) -> Job | None:
        """
        For a summoned *worker*: take the first job in line, and pass the summons on.

        A worker back from a job may have taken that job already. The summons
        goes to the next parked worker while jobs and parked workers remain,
        so a burst of submits costs its caller one wake. Every summoned worker
        answers, retiring or not, so ``summoned`` is always cleared or passed on.
        """
        job = self.take_or_park(worker)
        following = None
        lock = self.lock
        if lock.locked():
            yield_until_free(lock)
        lock.acquire()
        try:
            if self.summoned is worker:  # else close() cleared it
                idle = self.idle
                if self.waiting and idle:
                    following = idle[-1]  # perhaps this worker, parked again
                    del idle[-1]
                self.summoned = following
        finally:
            lock.release()
        if following is not None:
            following.waker.wake()
        return job
