"""
Pool: the public face of a pool of resident workers.

Validation and the caller's fast paths live here; the waiting line in
``_line.py``, the workers' growth and end in ``_lifecycle.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import math
import sys
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar, final

from . import _job
from ._awaiting import call_async
from ._checks import Latency, check_latency, check_size, check_timeout, deadline_in
from ._future import JobFuture
from ._histogram import clock as _clock
from ._isolation import ChildOptions, Host
from ._job import DONE, NO_CONTEXT, RUNNING, WAITING, Job, worker_tls
from ._keeper import Bounds
from ._lifecycle import Lifecycle, PoolStats, awaited_at_exit, close_dropped_pool
from ._line import CANCELLED, TIMED_OUT, Line
from ._process import DEFAULT_KILL_GRACE, Processes
from ._token import CancelToken
from ._waker import Waker, yield_until_free
from ._worker import CallbackWorker, FuncWorker, Worker
from .exceptions import JobCancelledError, JobTimedOutError, TunnypyError

__all__ = ["Pool", "PoolStats"]

P = TypeVar("P")
R = TypeVar("R")

_monotonic = time.monotonic
_INF = math.inf
_MAX_FLOAT = sys.float_info.max
_copy_context = contextvars.copy_context


def _open_host(
    isolation: object,
    factory: Callable[[], Worker[Any, Any]],
    kill_grace: float | None,
    max_jobs_per_child: int | None,
    max_memory_per_child: int | None,
) -> Host | None:
    """Check the isolation keywords; open the host of a pool not on threads (None for threads)."""
    if isolation == "process":
        isolation = Processes()
    elif isolation != "thread" and not callable(getattr(isolation, "open", None)):
        msg = (
            "isolation must be 'thread', 'process' or an object with an open() method "
            f"(got {type(isolation).__name__} {isolation!r})"
        )
        raise (ValueError if isinstance(isolation, str) else TypeError)(msg)
    if kill_grace is not None:
        kill_grace = check_timeout(kill_grace, "kill_grace")
    if max_jobs_per_child is not None:
        max_jobs_per_child = check_size(max_jobs_per_child, "max_jobs_per_child", positive=True)
    if max_memory_per_child is not None:
        max_memory_per_child = check_size(
            max_memory_per_child, "max_memory_per_child", positive=True
        )
    if isolation == "thread":
        given = [
            name
            for name, value in (
                ("kill_grace", kill_grace),
                ("max_jobs_per_child", max_jobs_per_child),
                ("max_memory_per_child", max_memory_per_child),
            )
            if value is not None
        ]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            msg = (
                f"{' and '.join(given)} {verb} only to workers in processes "
                "(isolation='process'), and this pool's workers are threads"
            )
            raise ValueError(msg)
        return None
    options = ChildOptions(
        kill_grace=DEFAULT_KILL_GRACE if kill_grace is None else kill_grace,
        max_jobs_per_child=max_jobs_per_child,
        max_memory_per_child=max_memory_per_child,
    )
    return isolation.open(factory, options)  # type: ignore[attr-defined,no-any-return]


def _check_callable_payload(payload: object) -> None:
    if not callable(payload):
        msg = f"payload must be a zero-argument callable (got {type(payload).__name__})"
        raise TypeError(msg)


@final
class Pool(Generic[P, R]):
    """
    A pool of resident worker threads that pull jobs from one waiting line.

    Args:
        size: How many workers to start (0 is allowed: callers wait until the
            pool grows).
        worker_factory: Called once per worker, from the thread that grows the
            pool; returns that worker's :class:`Worker`: an object with a
            callable ``process()``, whose other methods may be missing.
        max_waiting: Refuse callers beyond this many in line with
            :class:`PoolBusyError` instead of queueing them; ``None`` for no limit.
        stall_timeout: A worker that leaves because it failed is replaced from
            the factory, retried with backoff while the factory fails. Once
            the pool has had no worker for this many seconds meanwhile, the
            calls in line fail, and new ones are refused, with
            :class:`PoolStalledError` until a worker is back; ``None`` (or
            ``float("inf")``) to wait for the replacement however long it takes.
        latency: What to time for :attr:`PoolStats.wait` and
            :attr:`PoolStats.run`. ``False`` (the default): nothing; no
            clock is read for a call and both summaries stay empty (``count``
            0). ``True``: every job, at about 0.2-0.4 µs a job (three clock
            reads and bucket counts in batches; 5-13% of a no-op call).
            ``"sampled"``: every job after one that ran 20 µs or more, and
            one in 16 of the jobs after shorter ones, each counted for the
            ones not timed, so counts stay exact (0-4% of a no-op call;
            ``docs/semantics.md``, "Counting", says what it may miss).
        isolation: Where each worker object lives. ``"thread"`` (the
            default): on its worker thread, in this process. ``"process"``
            (the same as ``Processes()``): in a child process of its own, one
            per worker, where the factory is called and every hook runs; a
            job that outlives its caller's deadline is interrupted, then
            killed after *kill_grace*, and its child replaced (see
            :class:`Processes` and docs/processes.md). Or an object with an
            ``open()`` method (such as :class:`Processes` with a start method,
            or ``tunnypy.contrib.dask.DaskWorkers``).
        kill_grace: Seconds between interrupting a running job whose caller
            gave up and killing its process, if the job has not returned;
            any non-negative real number (default 1.0). Not for threads.
        max_jobs_per_child: Replace a worker's process after it has run this
            many jobs, between jobs; ``None`` for no limit. Not for threads.
        max_memory_per_child: Replace a worker's process, between jobs, once
            its resident memory (read after each job) exceeds this many
            bytes; ``None`` for no limit. Not for threads.
        max_jobs_per_worker: Recycle a worker once it has run this many jobs:
            a fresh worker from the factory is started in its place, and only
            then does the old one retire (after the job it holds, if any) and
            run ``terminate()``. ``None`` for never.
        max_worker_age: Recycle a worker, likewise, once this many seconds
            have passed since it was made: a positive number; ``None`` (or
            ``float("inf")``) for never. While the factory fails, the old
            worker serves on and the successor is retried with the
            replacement's backoff.

    Raises:
        TypeError, ValueError: *size* or *max_waiting* is not a non-negative
            int, *worker_factory* is not callable, or *stall_timeout* is not
            a non-negative number.
        TypeError: *latency* is not a bool.
        TypeError, ValueError: *isolation* is none of the above; *kill_grace*
            is not a non-negative number; *max_jobs_per_child* or
            *max_memory_per_child* is not a positive int; or one of those
            three was given to a pool of threads.
        Exception: With processes, the factory (or *fn*) does not pickle
            (``pickle.PicklingError`` and the like); no worker is started.
        TypeError, ValueError: *max_jobs_per_worker* is not a positive int,
            or *max_worker_age* not a positive number.
        TypeError: The factory returned an object without a callable
            ``process()``, or with a ``block_until_ready``, ``interrupt`` or
            ``terminate`` that is not callable; the workers already made are
            terminated and no worker is left running.
        Exception: Whatever the factory raised; no worker is left running.

    A pool dropped without :meth:`close` is closed when it is collected, but
    one that its own workers, factory or function reference (a job calling
    its own pool through a closure) is never collected: its threads keep it
    reachable. Close such a pool, or let the job reach it through
    ``weakref.ref(pool)``.

    ``with pool:`` calls :meth:`close` on exit. ``repr(pool)`` shows its
    state, for example ``<Pool size=4 idle=1 waiting=0>`` or
    ``<Pool closed idle=0 waiting=0>``.

    Not guaranteed: threads cannot be killed. A job that outlives its caller's
    deadline runs on until it checks :func:`interrupted` or returns (a worker
    in a process is killed after *kill_grace*), out of rotation until then.
    """

    __slots__ = ("__weakref__", "_finalizer", "_lifecycle", "_line")

    def __init__(
        self,
        size: int,
        worker_factory: Callable[[], Worker[P, R]],
        *,
        max_waiting: int | None = None,
        stall_timeout: float | None = None,
        latency: Latency = False,
        isolation: object = "thread",
        kill_grace: float | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        max_jobs_per_worker: int | None = None,
        max_worker_age: float | None = None,
    ) -> None:
        self._init(
            size,
            worker_factory,
            None,
            max_waiting,
            stall_timeout,
            latency=latency,
            isolation=isolation,
            kill_grace=kill_grace,
            max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child,
            max_jobs=max_jobs_per_worker,
            max_age=max_worker_age,
        )

    def _init(
        self,
        size: int,
        worker_factory: Callable[[], Worker[Any, Any]],
        check: Callable[[object], None] | None,
        max_waiting: int | None,
        stall_timeout: float | None,
        *,
        latency: Latency,
        isolation: object = "thread",
        kill_grace: float | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        max_jobs: int | None,
        max_age: float | None,
    ) -> None:
        size = check_size(size)
        if not callable(worker_factory):
            msg = f"worker_factory must be callable (got {type(worker_factory).__name__})"
            raise TypeError(msg)
        if max_waiting is not None:
            max_waiting = check_size(max_waiting, "max_waiting")
        if stall_timeout is not None:
            stall_timeout = check_timeout(stall_timeout, "stall_timeout")
            if stall_timeout == _INF:
                stall_timeout = None
        latency = check_latency(latency)
        if max_jobs is not None:
            max_jobs = check_size(max_jobs, "max_jobs_per_worker", positive=True)
        if max_age is not None:
            given = max_age
            max_age = check_timeout(given, "max_worker_age")
            if max_age == 0:
                msg = f"max_worker_age must be a positive number of seconds (got {given!r})"
                raise ValueError(msg)
            if max_age == _INF:
                max_age = None
        host = _open_host(
            isolation, worker_factory, kill_grace, max_jobs_per_child, max_memory_per_child
        )
        line = Line(check, max_waiting, latency)
        factory = worker_factory if host is None else host.new_worker
        lifecycle = Lifecycle(
            factory, line, stall_timeout, max_jobs=max_jobs, max_age=max_age, host=host
        )
        try:
            lifecycle.set_size(size, False, None)
        except BaseException:
            if host is not None:
                lifecycle.close(False, None)  # no worker is left; the host closes
            raise
        try:
            lifecycle.start_keeper()
        except BaseException:
            lifecycle.close(True, None)
            raise
        self._line = line
        self._lifecycle = lifecycle
        awaited_at_exit.add(lifecycle)
        self._finalizer = weakref.finalize(self, close_dropped_pool, lifecycle)

    @classmethod
    def from_func(
        cls,
        size: int,
        fn: Callable[[P], R],
        *,
        max_waiting: int | None = None,
        stall_timeout: float | None = None,
        latency: Latency = False,
        isolation: object = "thread",
        kill_grace: float | None = None,
        max_jobs_per_child: int | None = None,
        max_memory_per_child: int | None = None,
        max_jobs_per_worker: int | None = None,
        max_worker_age: float | None = None,
    ) -> Pool[P, R]:
        """
        A pool whose every worker calls ``fn(payload)``.

        With ``isolation="process"``, *fn* must pickle (a module-level
        function, not a lambda); it is called in the workers' processes.

        Raises:
            TypeError: *fn* is not callable.
            TypeError, ValueError: *size*, *max_waiting*, *stall_timeout*,
                *latency*, *isolation*, *kill_grace*, *max_jobs_per_child*,
                *max_memory_per_child*, *max_jobs_per_worker* or
                *max_worker_age* is invalid, as for :class:`Pool`.
        """
        if not callable(fn):
            msg = f"fn must be callable (got {type(fn).__name__})"
            raise TypeError(msg)
        pool: Pool[P, R] = cls.__new__(cls)
        # A partial, not a lambda: it pickles when *fn* does (isolation="process").
        pool._init(
            size,
            functools.partial(FuncWorker, fn),
            None,
            max_waiting,
            stall_timeout,
            latency=latency,
            isolation=isolation,
            kill_grace=kill_grace,
            max_jobs_per_child=max_jobs_per_child,
            max_memory_per_child=max_memory_per_child,
            max_jobs=max_jobs_per_worker,
            max_age=max_worker_age,
        )
        return pool

    @staticmethod
    def from_callback(
        size: int,
        *,
        max_waiting: int | None = None,
        stall_timeout: float | None = None,
        latency: Latency = False,
        max_jobs_per_worker: int | None = None,
        max_worker_age: float | None = None,
    ) -> Pool[Callable[[], object], object]:
        """
        A pool whose payloads are zero-argument callables; each returns the result.

        A payload that is not callable makes ``process*``, ``submit`` and
        ``try_*`` raise ``TypeError`` in the caller, before anything is queued.

        Raises:
            TypeError, ValueError: *size*, *max_waiting*, *stall_timeout*,
                *latency*, *max_jobs_per_worker* or *max_worker_age* is
                invalid, as for :class:`Pool`.
        """
        pool: Pool[Callable[[], object], object] = Pool.__new__(Pool)
        pool._init(
            size,
            CallbackWorker,
            _check_callable_payload,
            max_waiting,
            stall_timeout,
            latency=latency,
            max_jobs=max_jobs_per_worker,
            max_age=max_worker_age,
        )
        return pool

    # -- calls ----------------------------------------------------------------

    def process(self, payload: P) -> R:
        """
        Run *payload* on the next ready worker and return its result.

        Waits, first come first served, while every worker is busy. An
        exception raised by the job is re-raised here with its traceback; the
        worker stays in service. Once it has returned, or raised the job's
        exception, the pool holds nothing of *payload* (so do the other
        ``process*`` calls and :meth:`try_process`: see "What a call keeps
        alive" in ``docs/semantics.md``).

        Raises:
            PoolClosedError: The pool was closed before a worker took the job.
            PoolBusyError: *max_waiting* callers are already in line.
            PoolDeadlockError: Called from a job while every other worker waits
                on this pool, directly or through the calls it waits for, so no
                worker could ever serve it (also when a shrink leaves it so).
                The message names the method called.
            PoolStalledError: The pool had no worker for its ``stall_timeout``.
            KeyboardInterrupt: Ctrl-C while waiting; the job is withdrawn and
                counted as cancelled.
        """
        line = self._line
        if line.check is not None:
            line.check(payload)
        tls = _job._tls
        fd = tls.waker
        # The thread's last job, reused (docs/design.md, "One job per calling
        # thread"). Job.renew(), inlined.
        job = tls.spare
        if job is None:
            job = Job(payload, _copy_context(), fd)
        else:
            tls.spare = None
            job.payload = payload
            job.context = _copy_context()
            job.waker = fd
            job.state = WAITING
            job.nested = None
        if line.latency:
            job.joined = _clock()
        waker: Waker
        if fd is None or fd.polling:
            # The thread's first call, no eventfd to be had, or a signal
            # handler's call while its thread is in a timed wait on it.
            waker = job.waker = job.default_waker()
        else:
            waker = fd
        # The fast path, mirroring Line.call() (docs/design.md, "One fast path per
        # side"): hand over to a parked worker or join the line; the rest is dispatch()'s.
        # Safe wherever Ctrl-C lands (docs/design.md, "Ctrl-C and other signals").
        parked = None
        queued = False
        lock = line.lock
        try:
            if lock.locked():
                yield_until_free(lock)
            try:
                with lock:
                    idle = line.idle
                    on_way = line.summoned
                    if idle and on_way is None:
                        if len(idle) >= line.active:
                            parked = idle[-1]
                            del idle[-1]
                            job.state = RUNNING
                            job.runner = parked
                            parked.job = job
                    elif worker_tls.runner is None and (
                        # Not a worker thread, and nothing dispatch() would do
                        # differently (docs/design.md, "One fast path per side").
                        (
                            on_way is not None
                            and len(idle) + (not on_way.retiring) > len(line.waiting)
                        )
                        or (
                            not line.closed
                            and line.max_waiting is None
                            and line.stalled is None
                            # Autoscaling below max_size: dispatch() grows the pool.
                            and (line.grow_to is None or line.active + line.growing >= line.grow_to)
                        )
                    ):
                        line.waiting.append(job)
                        queued = True
            finally:
                if parked is not None:
                    try:
                        parked.waker.wake()
                    except BaseException:
                        # Ctrl-C as the wake begins (see Line.dispatch).
                        parked.waker.wake()
                        raise
            if parked is None and not queued:
                line.dispatch(job)
            if job.state < DONE:
                wait = waker.wait_forever
                while job.state < DONE:
                    try:  # noqa: SIM105 - suppress() costs a frame
                        wait()
                    except InterruptedError:
                        pass  # a signal arrived; its handler has run or will (see _waker)
        except TunnypyError:
            raise  # refused by dispatch(), and counted: it never got in
        except BaseException:
            line.withdraw(job, CANCELLED)  # Ctrl-C: the caller gave up
            raise
        if job.nested is not None:  # a job's call on its own pool (see Line._count_nested)
            line.forget_nested(job)
        if job.error is None and job.state == DONE:
            result = job.result
            job.payload = job.result = job.runner = None  # Job.empty(), inlined
            job.context = NO_CONTEXT
            tls.spare = job
            return result  # type: ignore[no-any-return]
        del payload  # not kept by this frame in the traceback of the job's error
        return line.outcome(job)  # type: ignore[no-any-return]

    def process_timed(self, payload: P, timeout: float) -> R:
        """
        Run *payload* on the next ready worker, giving up after *timeout* seconds.

        The deadline, counted from this call, covers both waiting for a worker
        and running the job. *timeout* may be any real number (``int``,
        ``float``, ``Fraction``, ``Decimal``). A timeout of 0 has already
        expired; ``float("inf")``, or one too large for a float, never does.

        Raises:
            JobTimedOutError: The deadline passed. A started job's worker was
                interrupted and stays out of rotation until the job returns.
            PoolClosedError, PoolBusyError, PoolDeadlockError: As for
                :meth:`process`.
            TypeError, ValueError: *timeout* is not a non-negative number.
        """
        kind = type(timeout)
        if (kind is float or kind is int) and 0 < timeout <= _MAX_FLOAT:
            deadline = _monotonic() + timeout  # the common case, checked cheaply
        else:
            # inf, an int too large for a float (no limit either), a
            # Fraction or Decimal, or bad input.
            timeout = check_timeout(timeout, "timeout")
            deadline = _monotonic() + timeout
        line = self._line
        if line.check is not None:
            line.check(payload)
        if timeout <= 0:
            line.count_refused(TIMED_OUT)
            raise JobTimedOutError("job did not finish before its deadline")
        if deadline == _INF:  # no limit: process()'s wait, under this call's name
            endless = Job(payload, _copy_context(), None)
            del payload  # as in process()
            endless.waker = endless.default_waker()
            return line.call(endless, None, None, call="process_timed")  # type: ignore[no-any-return]
        tls = _job._tls
        job = tls.spare
        if job is None:
            job = Job(payload, _copy_context(), None)
        else:
            tls.spare = None
            job.renew(payload, _copy_context())
        fd = tls.waker
        waker: Waker = job.default_waker() if fd is None or fd.polling else fd  # as in process()
        job.waker = waker
        try:
            # Inside the try: Ctrl-C may land just after dispatch() returns.
            line.dispatch(job, call="process_timed")
            # Line.call()'s wait, inlined (docs/design.md, "One fast path per side").
            if job.state < DONE:
                wait = waker.wait
                while job.state < DONE:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        break
                    wait(remaining)
        except TunnypyError:
            raise  # refused by dispatch(), and counted: it never got in
        except BaseException:
            line.withdraw(job, CANCELLED)  # Ctrl-C: the caller gave up
            raise
        if job.state < DONE and line.withdraw(job, TIMED_OUT):
            raise JobTimedOutError("job did not finish before its deadline")
        if job.nested is not None:  # as in process()
            line.forget_nested(job)
        if job.error is None and job.state == DONE:
            result = job.result
            job.empty()
            tls.spare = job
            return result  # type: ignore[no-any-return]
        del payload  # as in process()
        return line.outcome(job)  # type: ignore[no-any-return]

    def process_ctx(self, payload: P, token: CancelToken) -> R:
        """
        Run *payload*, giving up when *token* is cancelled or its deadline passes.

        ``token.cancel()`` from any thread ends the wait at once.

        Raises:
            JobCancelledError: The token was cancelled (before or during the call).
            JobTimedOutError: The token's deadline passed.
            PoolClosedError, PoolBusyError, PoolDeadlockError: As for
                :meth:`process`.
            TypeError: *token* is not a :class:`CancelToken`.
        """
        if not isinstance(token, CancelToken):
            msg = f"token must be a CancelToken (got {type(token).__name__})"
            raise TypeError(msg)
        line = self._line
        if line.check is not None:
            line.check(payload)
        if token._cancelled:
            line.count_refused(CANCELLED)
            raise JobCancelledError("token was already cancelled")
        if token.expired:
            line.count_refused(TIMED_OUT)
            raise JobTimedOutError("token's deadline had already passed")
        job = Job(payload, _copy_context(), None)
        del payload  # as in process()
        waker = job.waker = job.default_waker()
        token._register(waker)
        try:
            return line.call(  # type: ignore[no-any-return]
                job, token.deadline, token, call="process_ctx"
            )
        finally:
            token._unregister(waker)

    async def aprocess(self, payload: P, *, timeout: float | None = None) -> R:
        """
        Run *payload* on the next ready worker from a coroutine, and return its result.

        The asyncio form of :meth:`process` and :meth:`process_timed`: the
        call waits in the same first-come-first-served line as every other
        caller, but no thread waits for it and the event loop is not blocked.
        It works on any running asyncio loop (uvloop too), from many loops in
        many threads at once against one pool.

        Cancelling the awaiting task (``task.cancel()``, ``asyncio.timeout``,
        ``asyncio.wait_for``, a failing ``TaskGroup``, the loop shutting down
        in ``asyncio.run``) is an interrupt, as a missed deadline is for
        :meth:`process_timed`: a job still in line is taken out, a running
        job's worker has ``interrupt()`` called (on the loop's thread) and
        :func:`interrupted` turns ``True`` inside that job only. The task
        then ends in ``asyncio.CancelledError``, and the call counts as
        cancelled. A job that finished just before the cancellation counts as
        completed, and its result is dropped. The job runs in a copy of the
        awaiting task's ``contextvars`` context.

        Compared with ``asyncio.wrap_future(pool.submit(payload))``, which
        also waits without a thread: ``submit`` never waits, so code that
        submits goes on submitting and the line grows as fast as it does (no
        backpressure unless ``max_waiting`` refuses), whereas a coroutine
        awaiting ``aprocess`` is held until its call is served; and cancelling
        a ``wrap_future`` awaitable takes a job still in line out, but a
        started job runs on unasked, while cancelling ``aprocess`` interrupts
        it. There is no ``asubmit``: ``asyncio.ensure_future(pool.aprocess(x))``
        makes a task, and ``wrap_future(submit(x))`` a
        ``concurrent.futures.Future``.

        A loop closed without cancelling its tasks (``loop.close()`` after
        ``run_until_complete``) tells no one; its calls still in line are
        withdrawn, counted as cancelled, when the thread that ran it next
        calls ``aprocess`` (on another loop), or when a worker's delivery to
        that loop finds it closed. ``asyncio.run`` cancels its tasks, so their
        jobs are withdrawn at once.

        Not guaranteed: until one of those happens, such calls stay in line,
        and a worker may take and run one (its outcome is dropped, counted as
        completed or failed), as it may one it took before the sweep. A job that runs an event loop
        calling ``aprocess`` on its own pool holds its worker as ``process``
        does and is checked for deadlock the same way.

        Args:
            payload: What the worker's ``process()`` receives.
            timeout: One deadline, counted from when the call is awaited,
                over waiting for a worker and running the job, as for
                :meth:`process_timed`: any non-negative real number; 0 has
                already expired; ``None`` or ``float("inf")`` for no limit.

        Returns:
            What the worker's ``process()`` returned.

        Raises:
            JobTimedOutError: The deadline passed. A started job's worker was
                interrupted and stays out of rotation until the job returns.
            PoolClosedError: The pool was closed before a worker took the job.
            PoolBusyError: The line is full (``max_waiting``).
            PoolStalledError: The pool had no worker for its ``stall_timeout``.
            PoolDeadlockError: Called from a job (through an event loop the
                job runs) while every other worker waits on this pool.
            TypeError, ValueError: *timeout* is not a non-negative number.
            RuntimeError: No asyncio event loop is running in this thread.
            asyncio.CancelledError: The awaiting task was cancelled.
            Exception: Whatever the job raised, with its traceback.

        .. versionadded:: 0.1.0
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        line = self._line
        if line.check is not None:
            line.check(payload)
        loop = asyncio.get_running_loop()
        if timeout is not None and timeout <= 0:
            line.count_refused(TIMED_OUT)
            raise JobTimedOutError("job did not finish before its deadline")
        job = Job(payload, _copy_context(), None)
        del payload  # as in process()
        return await call_async(  # type: ignore[no-any-return]
            line, job, loop, deadline_in(timeout), "aprocess"
        )

    def submit(self, payload: P) -> Future[R]:
        """
        Queue *payload* and return a ``concurrent.futures.Future`` at once.

        The request waits in the same line as blocking callers. Cancelling the
        future while it waits removes it from the line; a started job cannot
        be cancelled or interrupted through its future. A future its caller
        resolves itself (with ``set_result()``, meant for executors) keeps that
        outcome: its job is not run, or its outcome is dropped. Usable with
        ``asyncio.wrap_future``. Once the future is done it keeps its result or
        exception and nothing of *payload*, as a ``ThreadPoolExecutor``
        future does.

        Raises:
            PoolClosedError: The pool is closed. (A future still in line when
                the pool closes fails with ``PoolClosedError``.)
            PoolBusyError: The line is full (``max_waiting``).
            PoolStalledError: The pool had no worker for its ``stall_timeout``.

        Never :class:`PoolDeadlockError`: a future does not block its caller,
        so a job may always submit to its own pool (waiting on that future
        from the job is not checked).
        """
        return self._submit(payload, wait=True)

    def try_process(self, payload: P) -> R:
        """
        Like :meth:`process`, but raise :class:`PoolBusyError` at once if no worker is free.

        Nothing is started when it raises; use it to fall back (serve a cached
        value, shed load) instead of waiting.

        Raises:
            PoolBusyError: No worker is free.
            PoolClosedError: The pool is closed.
            PoolDeadlockError: Called from a job, as for :meth:`process`: only
                when a shrink retires the worker that was free for it and
                leaves every worker waiting on this pool.
        """
        line = self._line
        if line.check is not None:
            line.check(payload)
        job = Job(payload, _copy_context(), None)
        del payload  # as in process()
        job.waker = job.default_waker()
        return line.call(  # type: ignore[no-any-return]
            job, None, None, wait=False, call="try_process"
        )

    def try_submit(self, payload: P) -> Future[R]:
        """
        Like :meth:`submit`, but raise :class:`PoolBusyError` at once if no worker is free.

        Raises:
            PoolBusyError: No worker is free.
            PoolClosedError: The pool is closed.
        """
        return self._submit(payload, wait=False)

    def _submit(self, payload: P, wait: bool) -> Future[R]:
        line = self._line
        if line.check is not None:
            line.check(payload)
        future = JobFuture(line)
        job = Job(payload, _copy_context(), None, future)
        future._tunnypy_job = job
        try:
            line.dispatch(job, wait=wait)
        except TunnypyError:
            raise  # refused: it never got in
        except BaseException:
            # Ctrl-C, around the job getting in: its caller never gets the
            # future, so cancel it, which takes the job out of line and counts
            # it (a job a worker has started runs on; its result goes nowhere).
            future.cancel()
            raise
        return future

    # -- size -----------------------------------------------------------------

    @property
    def size(self) -> int:
        """The target number of workers (what ``set_size`` last asked for; 0 once closed)."""
        return self._lifecycle.size

    def set_size(self, size: int, *, wait: bool = False, timeout: float | None = None) -> bool:
        """
        Grow or shrink the pool to *size* workers.

        Growing starts the new workers, which serve waiting callers at once.
        Shrinking retires idle workers first and never hands a retiring worker
        a new job; busy ones retire when their job ends. :attr:`size` reads
        the new target as soon as the call begins. A shrink returns at once,
        even while another thread's growth is calling the factory; a growth
        calls the factory on this thread, after a growth in progress in
        another thread has finished. Returns then, unless *wait*, which waits
        (up to *timeout* seconds, any non-negative real number; ``None`` or
        ``float("inf")`` for no limit) for retired workers to end, but not for
        the calling job's own worker, nor one whose job is waiting for the
        caller (see :meth:`close`).

        Returns:
            ``False`` only if *wait* and *timeout* passed before every retired
            worker it waits for ended.

        Raises:
            PoolClosedError: The pool is closed.
            TypeError, ValueError: *size* or *timeout* is invalid; nothing changed.
            RuntimeError: The pool autoscales (see :meth:`autoscale`); nothing changed.
            TypeError: The factory returned something that is not a worker
                (see :class:`Pool`); the pool keeps its previous size.
            Exception: The factory raised while growing; the pool keeps its
                previous size.
        """
        size = check_size(size)
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        return self._lifecycle.set_size(size, wait, timeout)

    def autoscale(
        self,
        min_size: int | None,
        max_size: int | None = None,
        *,
        idle_timeout: float = 60.0,
    ) -> None:
        """
        Let the pool size itself between *min_size* and *max_size*; ``autoscale(None)`` stops it.

        While it autoscales, a call that would wait in line because every
        worker is busy asks for one more worker, up to *max_size*: the
        pool's keeper thread calls the factory and starts it, so the caller
        pays one wake, never the factory call or the thread start, and is
        served by whichever worker is free first. A worker that has been
        idle for *idle_timeout* seconds retires (``terminate()`` runs) while
        more than *min_size* serve. :attr:`size` follows. ``try_process`` and
        ``try_submit`` never grow the pool: they do not wait. A growth counts
        as a worker on its way for the deadlock check: a call from a job that
        one more worker can serve waits for it instead of failing.

        Calling it again moves the bounds. Turning it on, or moving the
        bounds, sets the size within them at once (:attr:`size` and
        :meth:`stats` never read it outside them): a shrink is made as
        :meth:`set_size` makes one, and the keeper makes the workers a
        growth to *min_size* needs, retrying a failing factory with backoff
        (each failure in :attr:`PoolStats.factory_failures`), so this call
        never runs the factory. ``autoscale(None)`` leaves the size where it
        is. While the pool autoscales, :meth:`set_size` is refused.
        :meth:`close` ends it.

        Args:
            min_size: The fewest workers, a non-negative int; ``None`` to stop
                autoscaling.
            max_size: The most workers, a positive int at least *min_size*;
                required with *min_size*.
            idle_timeout: Seconds a worker may idle before it retires, a
                non-negative number; ``float("inf")`` for never.

        Raises:
            TypeError, ValueError: An argument is invalid; nothing changed.
            PoolClosedError: The pool is closed.
            RuntimeError: The keeper thread could not be started; nothing changed.

        Not guaranteed: exact idle times. The keeper looks every
        ``idle_timeout / 4`` (at least 5 ms apart), so a worker retires
        between ``idle_timeout`` and about ``1.5 * idle_timeout`` after it
        last parked; never before.

        .. versionadded:: 0.1.0
        """
        idle_timeout = check_timeout(idle_timeout, "idle_timeout")
        if min_size is None:
            if max_size is not None:
                msg = f"autoscale(None) takes no max_size (got {max_size!r})"
                raise TypeError(msg)
            self._lifecycle.autoscale(None)
            return
        min_size = check_size(min_size, "min_size")
        if max_size is None:
            msg = "max_size is required with min_size (got None)"
            raise TypeError(msg)
        max_size = check_size(max_size, "max_size", positive=True)
        if min_size > max_size:
            msg = (
                f"min_size must not exceed max_size (got min_size={min_size}, max_size={max_size})"
            )
            raise ValueError(msg)
        self._lifecycle.autoscale(Bounds(min_size, max_size, idle_timeout))

    @property
    def queue_length(self) -> int:
        """Callers waiting in line for a worker (not jobs running)."""
        return len(self._line.waiting)

    @property
    def latency(self) -> Latency:
        """What this pool times for :attr:`PoolStats.wait` and ``run`` (*latency*)."""
        return self._line.latency

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called (or the pool was inherited by ``os.fork()``)."""
        return self._line.closed

    def stats(self) -> PoolStats:
        """
        A snapshot of sizes and counters, and of the latency of the jobs run so far.

        Returns:
            A :class:`PoolStats`: sizes and counters read together under the
            pool's lock, then :attr:`PoolStats.wait` and :attr:`PoolStats.run`
            (:class:`LatencySummary` values) added up from the workers' own
            records, without it; those two are empty unless the pool was
            made with ``latency=True`` or ``"sampled"``.
        """
        return self._lifecycle.stats()

    # -- close ----------------------------------------------------------------

    def close(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """
        Stop the pool. Safe to call twice, and from inside a job.

        A ``close()`` interrupted by Ctrl-C is finished by the next one (or at
        interpreter exit).

        Callers still waiting in line get :class:`PoolClosedError` at once;
        running jobs finish and their callers get their results; each worker's
        ``terminate()`` runs once, from its own thread, as it stops.

        Args:
            wait: Wait for the worker threads to end. A call from inside a job
                never waits for that job's own worker, nor for a worker whose
                job is itself waiting, in ``close(wait=True)`` or
                ``set_size(wait=True)`` of any pool, for the caller (directly
                or through others): those cannot end before this call
                returns, and waiting would deadlock; they end once their job
                returns. A worker skipped this way is looked at again once the
                others have ended, and waited for if it no longer waits for the
                caller (its own wait timed out).
            timeout: With *wait*, give up waiting after this many seconds, any
                non-negative real number; ``None`` or ``float("inf")`` for no
                limit (a worker stuck in ``block_until_ready`` cannot hang the
                caller).

        Returns:
            Whether every worker it waits for had ended (``terminate()``
            returned) when it returned: ``False`` only if the timeout passed
            first, or without *wait* while any worker is still running. The
            pool's own record of its workers decides, so a wait interrupted
            by Ctrl-C leaves nothing wrong: the next ``close()`` waits for the
            workers still running.

        Raises:
            TypeError, ValueError: *timeout* is not a non-negative number.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        lifecycle = self._lifecycle
        result = lifecycle.close(wait, timeout)
        if not lifecycle.workers:  # else interpreter exit still waits for them
            awaited_at_exit.discard(lifecycle)
        return result

    def __enter__(self) -> Pool[P, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        line = self._line
        state = "closed" if line.closed else f"size={self._lifecycle.size}"
        return f"<Pool {state} idle={len(line.idle)} waiting={len(line.waiting)}>"
