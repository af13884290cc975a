"""
WorkerThread: one resident thread's loop.

The loop is Tunny's: ``block_until_ready()``, take a job from the line or
park (``Line.take_or_park``), ``process(payload)``, deliver. Whichever side
of the handoff arrives second completes it, so a round trip costs two thread
wake-ups at most (worker, then caller). See docs/design.md, "The worker loop".
"""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from typing import Any, Protocol

from ._histogram import (
    FOLD_AT,
    SAMPLE_BELOW,
    SAMPLE_EVERY,
    clock,
    count_pending,
    fold,
    new_timings,
)
from ._job import DONE, Job, set_current_runner
from ._line import Line
from ._log import debug_enabled, log
from ._waker import LockWaker, Waker, new_waker
from ._worker import BaseWorker, RestartFailed, Worker

__all__ = ["Supervisor", "WorkerThread"]


class Supervisor(Protocol):
    """What the loop calls when it fails or leaves (the pool's ``Lifecycle``)."""

    def repair(
        self,
        worker_thread: WorkerThread,
        delivered: Job | None,
        error: BaseException | None,
        *,
        leaving: bool,
        may_have_run: bool = False,
    ) -> Job | None: ...

    def worker_exited(self, worker_thread: WorkerThread) -> None: ...

    def spent(self, worker_thread: WorkerThread) -> None: ...


_NO_OP_READY = BaseWorker.block_until_ready
# The samples and fold lock of every worker of a pool that does not time its
# jobs: never written, and the lock never taken.
_UNTIMED: list[tuple[int, int, int]] = []
_UNTIMED_LOCK = _thread.allocate_lock()


class WorkerThread:
    """Owns one worker object and the thread that runs it (private)."""

    __slots__ = (
        "abandoned",
        "born",
        "completed",
        "failed",
        "fd_waker",
        "fold_lock",
        "index",
        "job",
        "last_sample",
        "line",
        "lock_waker",
        "park_on_lock_next",
        "readying",
        "retiring",
        "samples",
        "supervisor",
        "thread",
        "timings",
        "waker",
        "worker",
    )

    def __init__(
        self, line: Line, supervisor: Supervisor, worker: Worker[Any, Any], index: int
    ) -> None:
        self.line = line
        self.supervisor = supervisor
        self.worker = worker
        self.index = index
        # A parked worker sleeps on one of two wakers, chosen as it parks
        # (Line.take_or_park); ``waker`` is the one it sleeps on now.
        self.fd_waker = new_waker()
        # Made when first needed: most workers never serve a submit.
        self.lock_waker: LockWaker | None = None
        self.waker: Waker = self.fd_waker
        self.park_on_lock_next = False
        # The job this worker holds, from the moment it takes it until it has
        # delivered the outcome. Written by the worker, and by a caller that
        # hands the parked worker a job under the pool's lock.
        self.job: Job | None = None
        # Set under the pool's lock; never cleared. A retiring worker takes
        # no new job and leaves at its next offer.
        self.retiring = False
        # Whether this worker's thread is inside block_until_ready(), which
        # interpreter exit does not wait for (see _block_until_ready).
        self.readying = False
        # Written only by this worker's thread; summed by ``Pool.stats()``.
        self.completed = 0
        self.failed = 0
        # Jobs it ran whose outcome no one took (their callers had given up).
        self.abandoned = 0
        # Samples (wait, run, weight) of the jobs it timed, folded into
        # ``timings`` under ``fold_lock``; a shared empty list in an untimed
        # pool (docs/design.md, "Latency histograms").
        timed = line.latency
        self.samples: list[tuple[int, int, int]] = [] if timed else _UNTIMED
        self.last_sample: tuple[int, int, int] | None = None  # the last one folded
        self.timings: list[int] | None = None
        self.fold_lock = _thread.allocate_lock() if timed else _UNTIMED_LOCK
        # When it was made, for max_worker_age (docs/design.md, "Autoscaling and recycling").
        self.born = time.monotonic()
        self.thread = threading.Thread(
            target=self._run, name=f"tunnypy-worker-{index}", daemon=True
        )

    def _run(self) -> None:
        try:
            worker = self.worker
            # Looked up on the instance, once, as the thread starts: a hook set
            # in __init__ counts, one set later in process() does not.
            ready: Any = getattr(worker, "block_until_ready", None)
            # A worker whose block_until_ready is the no-op (or missing) is
            # ready the moment its job returns: it offers itself before
            # delivering (docs/design.md, "The worker loop").
            offers_before_delivering = (
                ready is None or getattr(ready, "__func__", None) is _NO_OP_READY
            )
            process = worker.process
            line = self.line
            take_or_park = line.take_or_park
            deliver = self._deliver
            # Jobs to run untimed before the next timed one (0: time each; below
            # 0: none), and that one's weight (docs/design.md, "Latency histograms").
            sampled = line.latency == "sampled"
            skip = 0 if line.latency else -1
            weight = 1
            record = self.samples.append
            samples = self.samples
            now = clock
            started = 0
            # Jobs left before this worker asks for a successor (max_jobs_per_worker);
            # 0: never, and then the loop pays one test of a local per job.
            jobs_left = line.max_jobs
            set_current_runner(self)
            if debug_enabled():
                try:  # noqa: SIM105 - the except says why
                    log.debug("worker_started", worker=self.index)
                except BaseException:
                    pass  # a logging handler that raises must not keep a worker from serving
            # A failure of tunnypy's own code in this loop is recovered from
            # once: the job is delivered, the state repaired, and the worker
            # serves on; a second with no job served between ends it (_recover).
            served_at_failure = -1
            resume: Job | None = None
            while True:
                job: Job | None = resume
                resume = None
                ok = False
                outcome: Any = None
                try:
                    offered = False  # whether it offered itself as it delivered
                    while True:
                        if job is None and not offered:
                            if self.retiring:
                                break  # no last block_until_ready on the way out
                            if not offers_before_delivering:
                                self._block_until_ready(ready)
                            job = take_or_park(self)
                        if job is None:
                            # Parked (or retiring): the one park loop. Sleep until
                            # handed a job or summoned to take the first in line.
                            while True:
                                job = self.job  # set under the pool's lock before the wake
                                if job is not None:
                                    self.park_on_lock_next = False  # handed over
                                    break
                                if line.summoned is self:
                                    job = line.answer_summons(self)
                                    if job is not None:
                                        break
                                if self.retiring:
                                    break
                                try:  # noqa: SIM105 - suppress() costs a frame
                                    self.waker.wait_forever()
                                except InterruptedError:
                                    pass  # a signal arrived (see _waker)
                            if job is None:
                                break  # retired
                        ok = False
                        outcome = None
                        if not job.withdrawn:  # else its caller gave up before it started
                            if jobs_left:
                                jobs_left -= 1
                                if not jobs_left:
                                    # Its last job: the keeper makes its successor
                                    # meanwhile (docs/design.md, "Autoscaling and recycling").
                                    self.supervisor.spent(self)
                            if not skip:
                                started = now()
                            try:
                                outcome = job.context.run(process, job.payload)
                                ok = True
                            except BaseException as exc:  # delivered, as ThreadPoolExecutor does
                                outcome = exc
                            if skip:
                                skip -= 1
                            else:
                                # Kept before delivery, so a caller that has its
                                # outcome finds it counted (docs/design.md, "Latency
                                # histograms").
                                run_ns = now() - started
                                record((started - job.joined, run_ns, weight))
                                if sampled:
                                    if run_ns < SAMPLE_BELOW:
                                        skip = SAMPLE_EVERY - 1
                                        weight = SAMPLE_EVERY
                                    else:
                                        weight = 1
                                if len(samples) >= FOLD_AT:
                                    self.fold()
                        # A worker ready the moment its job returns offers itself
                        # before delivering, but not after a submit: set_result()
                        # runs the caller's done-callbacks, which must not find this
                        # worker on the idle stack (docs/design.md, "The worker loop").
                        offered = offers_before_delivering and job.future is None
                        following = take_or_park(self) if offered else None
                        if offered and ok:
                            # _deliver() for a successful job, inlined: it was measured
                            # to pay (docs/performance.md, "Shortcuts").
                            gate = job.gate
                            gate.acquire()
                            if job.withdrawn:
                                gate.release()
                                self.abandoned += 1
                                if debug_enabled():
                                    log.debug("job_abandoned", worker=self.index, completed=ok)
                            else:
                                self.completed += 1
                                job.result = outcome
                                job.state = DONE
                                gate.release()
                                job.waker.wake()  # type: ignore[union-attr]
                        else:
                            deliver(job, ok, outcome)
                        # Keep nothing of the finished call alive while parked.
                        job = outcome = None
                        if offered:
                            job = following  # None: parked
                        else:
                            self.job = None
                    break  # retired
                except BaseException as exc:
                    served = self.completed + self.failed
                    # A proxy that cannot restart its remote worker leaves at once.
                    again = served == served_at_failure or isinstance(exc, RestartFailed)
                    served_at_failure = served
                    resume = self._recover(exc, job, ok, outcome, leaving=again)
                    if again:
                        break
        finally:
            self.supervisor.worker_exited(self)

    def _recover(
        self, exc: BaseException, job: Job | None, ok: bool, outcome: Any, *, leaving: bool
    ) -> Job | None:
        """
        After tunnypy's own code failed in this worker's loop: deliver, repair, log.

        *job*, when not ``None``, has run (or was skipped, withdrawn) and may
        not be delivered yet: its outcome is delivered now. Then
        ``Lifecycle.repair`` takes the worker off the idle stack and passes on a
        summons it held. Returns a job the worker took but never started, for
        it to run next; with *leaving*, the worker retires and that job goes
        back in line (or ends, see ``Lifecycle.repair``). Logging comes last: a
        logging handler that raises may be what failed.

        Not guaranteed: that the failure left nothing else inconsistent; only
        the states above are repaired.
        """
        try:
            if job is not None:
                future = job.future
                if future is not None:
                    if not future.done():
                        self._deliver(job, ok, outcome)
                elif job.state < DONE and not job.withdrawn:
                    # A withdrawn job has nothing to deliver; its delivery
                    # only logs, which may be what failed.
                    self._deliver(job, ok, outcome)
        finally:
            held = self.supervisor.repair(self, job, exc, leaving=leaving)
        try:  # noqa: SIM105 - the except says why
            log.error("worker_failed", worker=self.index, leaving=leaving, exc_info=exc)
        except BaseException:
            pass  # a broken logging setup must not undo the recovery
        return held

    def fold(self) -> None:
        """On this worker's thread: count the samples it keeps into its histograms."""
        with self.fold_lock:  # a reader copies under it: never half a fold
            samples = self.samples
            try:
                timings = self.timings
                if timings is None:
                    timings = self.timings = new_timings()
                fold(samples, timings)
                if samples:
                    self.last_sample = samples[-1]
            finally:
                # Cleared, not replaced: the worker loop holds its append method.
                samples.clear()

    def timings_now(self, *, forked: bool = False) -> list[int] | None:
        """
        From any thread: this worker's histograms, with every job it has run.

        A new list, or ``None`` while it has timed no job. The copies are
        taken under ``fold_lock``, so a sample is in exactly one of them; the
        worker appends samples without it (an append is atomic). The jobs it
        ran since its last sample are then counted in that sample's buckets
        (``count_pending``). In a forked child (*forked*), where the lock may
        stay held by a thread that is gone, the lists are read as they stand.
        """
        if self.samples is _UNTIMED:
            return None  # its pool does not time its jobs
        lock = self.fold_lock
        locked = not forked and lock.acquire()
        try:
            timings = self.timings
            # Each copy is one C call, atomic under the GIL.
            counted = None if timings is None else timings[:]
            samples = self.samples[:]
            last = self.last_sample
        finally:
            if locked:
                lock.release()
        # Read after the copies: every job counted in them has run by now.
        ran = self.completed + self.failed + self.abandoned
        if counted is None:
            if not samples:
                return None
            counted = new_timings()
        if samples:
            fold(samples, counted)
            last = samples[-1]
        count_pending(counted, ran, last)
        return counted

    def _block_until_ready(self, ready: Callable[[], None]) -> None:
        # Flag first, then look at ``retiring``: interpreter exit marks every
        # worker retiring, then waits for each not flagged, which therefore
        # never enters ready() (docs/design.md, "Waiting for workers").
        self.readying = True
        try:
            if not self.retiring:  # no block_until_ready on the way out
                ready()
        except RestartFailed:
            raise  # the worker leaves as failed, and is replaced (docs/design.md, "Isolation")
        except BaseException:
            # A broken readiness check, SystemExit included, must not kill the
            # worker: treat it as ready so callers are still served.
            log.exception("block_until_ready_failed", worker=self.index)
        finally:
            self.readying = False

    def _deliver(self, job: Job, ok: bool, outcome: Any) -> None:
        """Hand *outcome* to the job's caller, unless the caller gave up on it."""
        future = job.future
        if future is not None:
            # Before the future is done: whoever it wakes finds the payload
            # freed, and the future will not keep the job.
            job.let_go()
            try:
                if ok:
                    self.completed += 1
                    future.set_result(outcome)
                else:
                    self.failed += 1
                    future.set_exception(outcome)
            except InvalidStateError:
                # Its caller resolved the future while the job ran: the call
                # ended as the caller chose, and counts as cancelled.
                if ok or outcome is not None:  # it ran: a job skipped has neither
                    self.abandoned += 1  # first: the jobs run never read one short
                if ok:
                    self.completed -= 1
                else:
                    self.failed -= 1
                with self.line.lock:
                    self.line.cancelled += 1
                if debug_enabled():
                    log.debug("job_abandoned", worker=self.index, completed=ok)
            except BaseException:
                # A done-callback's SystemExit or KeyboardInterrupt must not end
                # this thread; the outcome is set, later callbacks do not run.
                log.exception("callback_failed", worker=self.index)
            return
        gate = job.gate
        # Blocks while a caller that gave up is inside interrupt(), so that
        # interrupt cannot reach the next job.
        gate.acquire()
        if job.withdrawn:
            gate.release()
            if ok or outcome is not None:  # it ran: a job skipped has neither
                self.abandoned += 1
            if debug_enabled():
                log.debug("job_abandoned", worker=self.index, completed=ok)
            return
        if ok:
            self.completed += 1
            job.result = outcome
        else:
            self.failed += 1
            job.error = outcome
        job.state = DONE
        gate.release()
        job.waker.wake()  # type: ignore[union-attr]
        # Only after delivery, and never repr() of the user's error: its
        # __repr__ may raise.
        if not ok and debug_enabled():
            log.debug("job_failed", worker=self.index, error=type(outcome).__name__)
