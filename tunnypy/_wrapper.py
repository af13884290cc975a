"""
WorkerWrapper: one resident thread's loop and lifecycle.

The loop is Tunny's: ``block_until_ready()``, offer yourself, take one job,
``process(payload)``, deliver. Offering happens under the pool's lock: a
worker that finds callers waiting takes the first one itself; otherwise it
parks on the idle stack until a caller hands it a job directly (every worker
parked) or summons it to take the first job in line (see ``Core.dispatch``).
Either way, whichever side arrives second completes the rendezvous, so a
round trip costs two thread wake-ups at most (worker, then caller), as in
``ThreadPoolExecutor``.
"""

from __future__ import annotations

import threading
from concurrent.futures import InvalidStateError
from typing import TYPE_CHECKING, Any

from ._future import TAKEN_BY_CALLER
from ._job import DONE, RUNNING, Job, set_current_wrapper
from ._log import debug_enabled, log
from ._waker import LockWaker, new_waker, yield_until_free
from ._worker import BaseWorker

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._core import Core
    from ._waker import Waker
    from ._worker import Worker

__all__ = ["WorkerWrapper"]

_NO_OP_READY = BaseWorker.block_until_ready


class WorkerWrapper:
    """Owns one worker object and the thread that runs it (private)."""

    __slots__ = (
        "completed",
        "core",
        "failed",
        "fd_waker",
        "index",
        "job",
        "lock_waker",
        "parks_on_lock",
        "readying",
        "retiring",
        "thread",
        "waker",
        "worker",
    )

    def __init__(self, core: Core, worker: Worker[Any, Any], index: int) -> None:
        self.core = core
        self.worker = worker
        self.index = index
        # A parked worker sleeps on one of two wakers, chosen as it parks
        # (see _offer()); ``waker`` is the one it sleeps on now.
        self.fd_waker = new_waker()
        # Made when first needed: most workers of most pools never serve a
        # submit, and a lock per worker cost 2-3% of an idle worker's memory.
        self.lock_waker: Waker | None = None
        self.waker: Waker = self.fd_waker
        self.parks_on_lock = False
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
        self.thread = threading.Thread(
            target=self._run, name=f"tunnypy-worker-{index}", daemon=True
        )

    def _run(self) -> None:
        try:
            worker = self.worker
            # Looked up on the instance, once, as the thread starts: a hook set
            # in __init__ counts, one set later in process() does not.
            ready: Any = getattr(worker, "block_until_ready", None)
            # A worker whose block_until_ready is BaseWorker's no-op (or
            # missing) is ready again the moment its job returns, so it offers
            # itself *before* delivering the outcome: the caller it wakes finds
            # it free (``try_process`` right after ``process`` succeeds) and the
            # hot path skips a frame. Not for a future, whose done-callbacks
            # set_result() runs: see below.
            eager = ready is None or getattr(ready, "__func__", None) is _NO_OP_READY
            process = worker.process
            offer = self._offer
            deliver = self._deliver
            await_job = self._await_job
            set_current_wrapper(self)
            if debug_enabled():
                try:  # noqa: SIM105 - the except says why
                    log.debug("worker_started", worker=self.index)
                except BaseException:
                    pass  # a logging handler that raises must not keep a worker from serving
            # A failure of tunnypy's own code in this loop (memory exhausted,
            # a logging handler that raises, a bug) once ended the thread: the
            # job it held was never delivered and the pool ran a worker short
            # for good. Now the job is delivered, the worker's state is
            # repaired and it serves on; a second failure with no job served
            # in between ends it (see _recover).
            served_at_failure = -1
            resume: Job | None = None
            while True:
                job: Job | None = resume
                resume = None
                ok = False
                outcome: Any = None
                try:
                    while True:
                        if job is None:
                            if self.retiring:
                                break  # no last block_until_ready on the way out
                            if not eager:
                                self._block_until_ready(ready)
                            job = offer() or await_job()
                            if job is None:
                                break  # retired
                        ok = False
                        outcome = None
                        if not job.withdrawn:  # else its caller gave up before it started
                            try:
                                outcome = job.context.run(process, job.payload)
                                ok = True
                            except BaseException as exc:  # delivered, as ThreadPoolExecutor does
                                outcome = exc
                        if eager:
                            if job.future is not None:
                                # set_result() runs the future's done-callbacks here,
                                # and they are the caller's code: deliver before
                                # offering, so this worker is never on the idle stack
                                # while they run (a callback that called the pool was
                                # handed its own job, and waited for itself forever).
                                deliver(job, ok, outcome)
                                following = offer()
                            elif ok:
                                following = offer()
                                # _deliver(), inlined for the hot path (a frame is ~5%
                                # of a round trip); _deliver() has the commentary.
                                gate = job.gate
                                gate.acquire()
                                if job.withdrawn:
                                    gate.release()
                                    if debug_enabled():
                                        log.debug("job_abandoned", worker=self.index, completed=ok)
                                else:
                                    self.completed += 1
                                    job.result = outcome
                                    job.state = DONE
                                    gate.release()
                                    job.waker.wake()  # type: ignore[union-attr]
                            else:
                                following = offer()
                                deliver(job, ok, outcome)
                            # Keep nothing of the finished call alive while parked.
                            job = outcome = None
                            if following is None:
                                # The common case of _await_job(), inlined: parked,
                                # wait to be handed a job.
                                core = self.core
                                while True:
                                    following = self.job
                                    if following is not None:
                                        self.parks_on_lock = False  # handed over
                                        break
                                    if self.retiring or core.summoned is self:
                                        break
                                    try:  # noqa: SIM105 - suppress() costs a frame
                                        self.waker.wait_forever()
                                    except InterruptedError:
                                        pass  # a signal arrived (see _waker)
                                if following is None:
                                    following = await_job()
                            job = following
                            if job is None:
                                break  # retired
                        else:
                            deliver(job, ok, outcome)
                            self.job = job = outcome = None
                    break  # retired
                except BaseException as exc:
                    served = self.completed + self.failed
                    again = served == served_at_failure
                    served_at_failure = served
                    resume = self._recover(exc, job, ok, outcome, leaving=again)
                    if again:
                        break
        finally:
            self.core.worker_exited(self)

    def _recover(
        self, exc: BaseException, job: Job | None, ok: bool, outcome: Any, *, leaving: bool
    ) -> Job | None:
        """
        After tunnypy's own code failed in this worker's loop: deliver, repair, log.

        *job*, when not ``None``, has run (or was skipped, withdrawn) and may
        not be delivered yet: its outcome is delivered now. Then
        ``Core.repair`` takes the worker off the idle stack and passes on a
        summons it held. Returns a job the worker took but never started, for
        it to run next; with *leaving*, the worker retires and that job goes
        back in line (or ends, see ``Core.repair``). Logging comes last: a
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
            held = self.core.repair(self, job, exc, leaving=leaving)
        try:  # noqa: SIM105 - the except says why
            log.error("worker_failed", worker=self.index, leaving=leaving, exc_info=exc)
        except BaseException:
            pass  # a broken logging setup must not undo the recovery
        return held

    def _block_until_ready(self, ready: Callable[[], None]) -> None:
        # Flag first, then look at ``retiring``: interpreter exit marks every
        # worker retiring, then waits for each not flagged, which therefore
        # never enters ready() (docs/design.md, "Waiting for workers").
        self.readying = True
        try:
            if not self.retiring:  # no block_until_ready on the way out
                ready()
        except BaseException:
            # A broken readiness check must not kill the worker; treat it as
            # ready so callers are still served. BaseException too: a worker
            # that died of SystemExit here left the pool one worker short for
            # good, and a size-1 pool hung.
            log.exception("block_until_ready_failed", worker=self.index)
        finally:
            self.readying = False

    def _offer(self) -> Job | None:
        """
        Take the first live job in line, or park on the idle stack.

        Returns the job taken, or ``None`` when parked or retiring; either
        way ``self.job`` is then the job taken or ``None``.
        """
        core = self.core
        lock = core.lock
        if lock.locked():
            yield_until_free(lock)
        lock.acquire()
        try:
            if not self.retiring:
                line = core.line
                while line:
                    job = line.popleft()
                    future = job.future
                    if future is not None:
                        # Its caller may have resolved the future itself
                        # (set_result(), set_exception()) or marked it running
                        # while it waited: set_running_or_notify_cancel() then
                        # logs CRITICAL and raises, which once killed this
                        # worker. Such a job is not run, and is counted as
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
                            # of the line, and the failure is handled in _run.
                            line.appendleft(job)
                            raise
                        if taken:
                            job.state = DONE
                            job.let_go()
                            core.cancelled += 1
                            continue
                    job.state = RUNNING
                    job.wrapper = self
                    self.job = job
                    # Read by this worker's next park: see below.
                    self.parks_on_lock = future is not None or core.batch_wakes
                    return job
                # Park on the lock, whose wake keeps the GIL with the waker,
                # when the waker is likely to go on running Python: after a
                # submit() (the submitter goes on submitting), and, with more
                # than one CPU, after a job from the line (callers are queuing
                # and other threads want the GIL: an eventfd wake's release of
                # it made the waker wait to get it back, one more context
                # switch per job). After a job handed over by a lone caller,
                # the eventfd, whose wake hands the GIL to this worker while
                # the caller goes to sleep (see _waker).
                if self.parks_on_lock:
                    waker = self.lock_waker
                    if waker is None:
                        waker = self.lock_waker = LockWaker()
                    self.waker = waker
                else:
                    self.waker = self.fd_waker
                core.idle.append(self)
            self.job = None
            return None
        finally:
            lock.release()

    def _await_job(self) -> Job | None:
        """
        Sleep on the idle stack until handed a job or summoned to take one.

        Returns the job, or ``None`` once retiring.
        """
        core = self.core
        while True:
            job = self.job  # a caller sets it, under the pool's lock, before waking us
            if job is not None:
                self.parks_on_lock = False  # handed over
                return job
            if core.summoned is self:
                # Answer the summons: take the first job in line (a worker
                # back from a job may have taken it already), then pass the
                # summons on while jobs and parked workers remain. Only one
                # parked worker at a time is on its way, so a burst of
                # submits costs its caller one wake, not one per job. Every
                # summoned worker answers, retiring or not, so
                # ``core.summoned`` is always cleared or passed on.
                job = self._offer()
                following = None
                lock = core.lock
                if lock.locked():
                    yield_until_free(lock)
                lock.acquire()
                try:
                    if core.summoned is self:  # else close() cleared it
                        idle = core.idle
                        if core.line and idle:
                            following = idle[-1]  # perhaps this worker, parked again
                            del idle[-1]
                        core.summoned = following
                finally:
                    lock.release()
                if following is not None:
                    following.waker.wake()
                if job is not None:
                    return job
            if self.retiring:
                return None
            try:  # noqa: SIM105 - as in _run()
                self.waker.wait_forever()
            except InterruptedError:
                pass  # a signal arrived (see _waker)

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
                # Its caller resolved the future itself while the job ran
                # (a done-callback's Exception never gets here: Future logs
                # it). The outcome has nowhere to go: the call ended as the
                # caller chose, and counts as cancelled, not completed.
                if ok:
                    self.completed -= 1
                else:
                    self.failed -= 1
                with self.core.lock:
                    self.core.cancelled += 1
                if debug_enabled():
                    log.debug("job_abandoned", worker=self.index, completed=ok)
            except BaseException:
                # Future runs done-callbacks and logs their Exceptions, but a
                # SystemExit or KeyboardInterrupt from one would end this
                # thread. The outcome is set by then; the callbacks after the
                # one that raised do not run, as with any Future.
                log.exception("callback_failed", worker=self.index)
            return
        gate = job.gate
        # Blocks while a caller that gave up is inside interrupt(), so that
        # interrupt cannot reach the next job.
        gate.acquire()
        if job.withdrawn:
            gate.release()
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
        # Only after delivery, and never repr() of the user's error: a
        # __repr__ that raised here once killed the worker while it held the
        # gate, and its caller waited forever.
        if not ok and debug_enabled():
            log.debug("job_failed", worker=self.index, error=type(outcome).__name__)
