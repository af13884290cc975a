"""
One request on its way through the pool, and :func:`interrupted`.

A job is made by the caller, handed to exactly one worker (or refused), and
finished exactly once. Who finishes it is decided under its *gate*, a raw lock
held briefly by either side. The worker takes the gate to deliver the outcome
(``state = DONE``); a caller giving up takes it to withdraw the job
(``withdrawn = True``). Whoever comes second sees what the first did and
stands back, so a result is never both delivered and abandoned. A caller that
withdraws a running job calls the worker's ``interrupt()`` while still holding
the gate; the worker, which must take the gate before it can finish, cannot
start its next job until that ``interrupt()`` has returned. That is how an
interrupt reaches only the job it was meant for.

Jobs from :meth:`Pool.submit` carry a ``concurrent.futures.Future`` instead of
a waker, and the future's own state machine plays the gate's part.
"""

from __future__ import annotations

import _thread
import os
import threading
from concurrent.futures import Future
from contextvars import Context
from typing import Any, Protocol

from . import _waker
from ._waker import FdWaker, LockWaker, Waker
from ._worker import Worker

__all__ = [
    "DONE",
    "NO_CONTEXT",
    "REJECTED",
    "RUNNING",
    "WAITING",
    "CallerLocal",
    "Job",
    "Runner",
    "caller_waker",
    "current_runner",
    "interrupted",
    "set_current_runner",
    "worker_tls",
]

# Job states, in order; a caller waits while ``state < DONE``.
WAITING = 0  # in the pool's line
RUNNING = 1  # handed to a worker
DONE = 2  # outcome stored; ``result`` or ``error`` is final
REJECTED = 3  # taken out of the line by close()


# What an emptied job's context is: it holds no variables, so keeps nothing alive.
NO_CONTEXT = Context()


class Runner(Protocol):
    """What a job needs of the worker thread running it (``WorkerThread`` is one)."""

    job: Job | None
    retiring: bool  # takes no new job, and leaves at its next offer

    @property
    def worker(self) -> Worker[Any, Any]: ...  # its interrupt() is the caller's to call
    @property
    def index(self) -> int: ...  # names it in logs
    @property
    def line(self) -> object: ...  # whose line it serves: a call on its own pool is nested


class Job:
    """A request: payload, the caller's context, and where its outcome goes."""

    # A plain slotted class, not attrs: one is made per call on the hot path.
    __slots__ = (
        "context",
        "error",
        "future",
        "gate",
        "joined",
        "lock_waker",
        "nested",
        "payload",
        "result",
        "runner",
        "state",
        "waker",
        "withdrawn",
    )

    def __init__(
        self,
        payload: Any,
        context: Context,
        waker: Waker | None,
        future: Future[Any] | None = None,
    ) -> None:
        self.payload = payload
        self.context = context
        self.waker = waker
        self.future = future
        self.gate = _thread.allocate_lock()
        self.state = WAITING
        # When the call joined, in ns of _histogram.clock, stamped only by a
        # pool that times its jobs (Line.latency): its wait ends as a worker
        # starts it (see WorkerThread._run).
        self.joined = 0
        self.result: Any = None
        self.error: BaseException | None = None
        self.runner: Runner | None = None
        # The worker whose job made this call on its own pool, from when the
        # call joins the line until it ends (see ``Line.nested``).
        self.nested: Runner | None = None
        self.lock_waker: LockWaker | None = None
        # Set, under the gate, by a caller that gave up; never cleared (a
        # withdrawn job is never reused).
        self.withdrawn = False

    def renew(self, payload: Any, context: Context) -> None:
        """
        Make this job, emptied by ``empty()``, ready for its thread's next call.

        The caller then sets ``waker``. Only a job whose outcome its caller
        took may be renewed: one given up on may still be in a worker's
        hands. Its worker may still be releasing the gate and waking the old
        waker, which the gate and stale-wake tolerance make harmless.
        """
        self.payload = payload
        self.context = context
        self.state = WAITING
        self.nested = None

    def own_waker(self) -> LockWaker:
        """
        This job's own lock waker, made on first use and kept while the job is reused.

        A lock waker belongs to a job, not to its thread, so that a call made
        on the same thread while this one waits (by a signal handler) never
        sleeps on this job's lock: ``acquire()`` retries inside C after the
        handler without looking at the job, and would wait for ever for a
        wake the handler's call took. A reused job's lock may hold a stale
        wake from its last call, which every waiter tolerates.
        """
        waker = self.lock_waker
        if waker is None:
            waker = self.lock_waker = LockWaker()
        return waker

    def default_waker(self) -> Waker:
        """The calling thread's eventfd waker or, when none can be had, this job's own lock."""
        return caller_waker() or self.own_waker()

    def let_go(self) -> None:
        """
        Drop what the call handed over, and its future's link back to this job.

        For a call that has ended, or never will run: the payload and the
        caller's context are freed with their last outside reference, and a
        finished future (which keeps its result) does not keep this job.
        """
        self.payload = None
        self.context = NO_CONTEXT
        future = self.future
        if future is not None:
            future._tunnypy_job = None  # type: ignore[attr-defined]

    def interrupt_submitted(self) -> None:
        """
        Make :func:`interrupted` true inside this running job, made by ``Pool.submit``.

        For a future's holder that gave up on a call already running (see
        ``Executor``). Such a job's outcome goes through its future, which
        never reads ``withdrawn``, and it is never reused, so a late call
        (the job ended meanwhile) changes nothing. A job with a waker is
        given up on through ``Line.withdraw``, under its gate, instead.
        """
        assert self.future is not None
        self.withdrawn = True

    def empty(self) -> None:
        """Drop what the finished call handed over, so a spare job keeps nothing alive."""
        self.payload = self.result = self.runner = None
        self.context = NO_CONTEXT


class _WorkerLocal(threading.local):
    # A class attribute, not ``getattr(..., None)``: a miss raises inside
    # getattr, and this is read under the pool's lock (docs/performance.md, "Shortcuts").
    runner: Runner | None = None


worker_tls = _WorkerLocal()


def current_runner() -> Runner | None:
    """The worker thread that is calling, or ``None`` outside a worker thread."""
    return worker_tls.runner


def set_current_runner(runner: Runner) -> None:
    worker_tls.runner = runner


class CallerLocal(threading.local):
    """What a calling thread keeps between its calls: its eventfd waker and a spare job."""

    # Class-level defaults: a thread-local lookup that misses is slow.
    # Only an eventfd waker is kept here; a lock waker belongs to a job
    # (docs/design.md, "Ctrl-C and other signals").
    waker: FdWaker | None = None
    # This thread's last call's job, emptied, for its next call to reuse
    # (docs/design.md, "One job per calling thread").
    spare: Job | None = None


_tls = CallerLocal()


def caller_waker() -> FdWaker | None:
    """
    The calling thread's eventfd waker, made on first use and kept for the thread's life.

    None while no eventfd can be had (the budget is spent, or there is no
    eventfd), and while this thread is inside a timed wait on it (the call is
    a signal handler's: docs/design.md, "Wakers, and why eventfd"); the call
    then sleeps on its job's own lock waker, and the next call tries again.
    """
    waker = _tls.waker
    if waker is None:
        waker = _tls.waker = _waker.new_fd_waker()
    elif waker.polling:
        return None
    return waker


def _forget_callers_in_child() -> None:
    # The child shares its parent's eventfds: a wake written in one process
    # would be read in the other. Forget every caller waker made before fork.
    global _tls
    _tls = CallerLocal()


os.register_at_fork(after_in_child=_forget_callers_in_child)


def interrupted() -> bool:
    """
    Whether the caller of the running job has given up on it.

    Call it from inside a job (a function run by :meth:`Pool.from_func`, a
    callback, or a worker's ``process``) to stop early once the caller's
    deadline has passed, its token was cancelled, or it was interrupted by
    Ctrl-C, or (in an :class:`Executor` call) its running future was
    cancelled. Outside a job, and in a job started by :meth:`Pool.submit`, it
    returns ``False``.

    Not guaranteed: a job that never checks keeps running; threads cannot be
    killed.
    """
    runner = worker_tls.runner
    if runner is None:
        return False
    job = runner.job
    return job is not None and job.withdrawn
