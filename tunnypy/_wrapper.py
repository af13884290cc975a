"""
WorkerWrapper: one resident thread's loop and lifecycle.

The loop is Tunny's: ``block_until_ready()``, offer yourself, take one job,
``process(payload)``, deliver. Offering happens under the pool's lock: a
worker that finds callers waiting takes the first one itself; otherwise it
parks on the idle stack and the next caller hands it a job directly. Either
way, whichever side arrives second completes the rendezvous, so a round trip
costs two thread wake-ups at most (worker, then caller), as in
``ThreadPoolExecutor``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._job import DONE, RUNNING, Job, set_current_wrapper
from ._log import log
from ._waker import new_waker

if TYPE_CHECKING:
    from ._pool import Core
    from ._worker import Worker

__all__ = ["WorkerWrapper"]


class WorkerWrapper:
    """Owns one worker object and the thread that runs it (private)."""

    __slots__ = (
        "completed",
        "core",
        "failed",
        "index",
        "job",
        "retiring",
        "thread",
        "waker",
        "worker",
    )

    def __init__(self, core: Core, worker: Worker[Any, Any], index: int) -> None:
        self.core = core
        self.worker = worker
        self.index = index
        self.waker = new_waker()
        # The job this worker holds, from the moment it takes it until it has
        # delivered the outcome. Written by the worker, and by a caller that
        # hands the parked worker a job under the pool's lock.
        self.job: Job | None = None
        # Set under the pool's lock; never cleared. A retiring worker takes
        # no new job and leaves at its next offer.
        self.retiring = False
        # Written only by this worker's thread; summed by ``Pool.stats()``.
        self.completed = 0
        self.failed = 0
        self.thread = threading.Thread(
            target=self._run, name=f"tunnypy-worker-{index}", daemon=True
        )

    def _run(self) -> None:
        core = self.core
        worker = self.worker
        lock = core.lock
        line = core.line
        idle = core.idle
        set_current_wrapper(self)
        log.debug("worker_started", worker=self.index)
        try:
            while True:
                try:
                    worker.block_until_ready()
                except BaseException:
                    # A broken readiness check must not kill the worker; treat
                    # it as ready so callers are still served. BaseException
                    # too: a worker that died of SystemExit here left the pool
                    # one worker short for good, and a size-1 pool hung.
                    log.exception("block_until_ready_failed", worker=self.index)
                job: Job | None = None
                with lock:
                    if self.retiring:
                        break
                    while line:
                        job = line.popleft()
                        if job.nested:
                            core.nested_waiting -= 1
                        future = job.future
                        if future is not None and not future.set_running_or_notify_cancel():
                            job = None  # cancelled while in line
                            continue
                        job.state = RUNNING
                        job.wrapper = self
                        self.job = job
                        break
                    if job is None:
                        idle.append(self)
                if job is None:
                    job = self._park()
                    if job is None:
                        break
                self._serve(job)
        finally:
            core.worker_exited(self)

    def _park(self) -> Job | None:
        """Sleep on the idle stack until handed a job (returned) or retired (``None``)."""
        waker = self.waker
        while True:
            waker.wait()
            job = self.job
            if job is not None:
                return job
            if self.retiring:
                return None

    def _serve(self, job: Job) -> None:
        ok = False
        outcome: Any = None
        if not job.withdrawn:  # else its caller gave up before it started
            try:
                outcome = job.context.run(self.worker.process, job.payload)
                ok = True
            except BaseException as exc:  # delivered, as ThreadPoolExecutor does
                outcome = exc
        future = job.future
        if future is not None:
            if ok:
                self.completed += 1
                future.set_result(outcome)
            else:
                self.failed += 1
                future.set_exception(outcome)
            self.job = None
            return
        gate = job.gate
        # Blocks while a caller that gave up is inside interrupt(), so that
        # interrupt cannot reach the next job.
        gate.acquire()
        if job.withdrawn:
            gate.release()
            log.debug("job_abandoned", worker=self.index, completed=ok)
        else:
            if ok:
                self.completed += 1
                job.result = outcome
            else:
                self.failed += 1
                job.error = outcome
            job.state = DONE
            gate.release()
            waker = job.waker
            assert waker is not None
            waker.wake()
            if not ok:
                # Only after delivery, and never repr() of the user's error:
                # a __repr__ that raised here once killed the worker while it
                # held the gate, and its caller waited forever.
                log.debug("job_failed", worker=self.index, error=type(outcome).__name__)
        self.job = None
