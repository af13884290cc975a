"""
Executor: a ``concurrent.futures`` executor on a pool of function-calling workers.

The public face: arguments, ``map`` and the ``ThreadPoolExecutor`` surface.
The calls, their workers and the counts they share live in ``_calls.py``;
the pool's resize is ``set_max_workers``.
"""

from __future__ import annotations

import itertools
import os
import time
import weakref
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.thread import BrokenThreadPool
from typing import Any, ParamSpec, TypeVar, final

import attrs

from ._calls import WHEN_FULL, ExecutorState, WhenFull, live_states
from ._checks import Latency, check_latency, check_size, check_timeout
from ._pool import PoolStats

__all__ = ["Executor"]

P = ParamSpec("P")
T = TypeVar("T")

_names = itertools.count()


def _default_workers() -> int:
    count = getattr(os, "process_cpu_count", os.cpu_count)()
    return min(32, (count or 1) + 4)


@final
class Executor(ThreadPoolExecutor):
    """
    A ``concurrent.futures`` executor whose threads are a resizable tunnypy pool.

    Behaves like :class:`concurrent.futures.ThreadPoolExecutor` (same
    arguments and defaults, same errors: ``RuntimeError`` after shutdown,
    ``BrokenThreadPool`` once an initializer failed; ``wait``,
    ``as_completed`` and ``Future.cancel`` work; interpreter exit runs every
    call already submitted), and adds three things: the number of threads can
    change at any time (:meth:`set_max_workers`), the calls waiting for a
    thread can be bounded (*max_waiting*, *when_full*), and cancelling a
    running call's future interrupts it (:func:`tunnypy.interrupted` turns
    true inside it, and only it; ``cancel()`` still returns ``False``, as a
    running future's must). ``map``'s timeout, closing ``map``'s iterator,
    and cancelling an ``asyncio.to_thread`` or ``run_in_executor`` task do
    this too.

    ``loop.set_default_executor(Executor(...))`` works, so
    ``asyncio.to_thread`` and ``loop.run_in_executor(None, ...)`` run on it.
    It subclasses ``ThreadPoolExecutor`` only for that: asyncio refuses any
    other class (``TypeError`` on Python 3.11 to 3.13). It overrides every
    public method and never calls ``ThreadPoolExecutor.__init__``: none of
    its attributes, threads or queue exist (``_max_workers``, ``_work_queue``,
    ``_threads``, ``_adjust_thread_count()`` and the rest), and its private
    methods are not to be called.

    Args:
        max_workers: How many worker threads; ``None`` for
            ``min(32, cpu count + 4)``, as ``ThreadPoolExecutor``.
        max_waiting: At most this many calls (at least 1) wait for a thread; ``None`` for
            no limit (``ThreadPoolExecutor``'s unbounded queue).
        when_full: What :meth:`submit` does when *max_waiting* calls wait:
            ``"block"`` waits for room, ``"raise"`` raises
            :class:`PoolBusyError`, ``"caller_runs"`` runs the call in the
            calling thread and returns its finished future.
        thread_name_prefix: Worker threads are named ``<prefix>_<n>``; by
            default ``TunnypyExecutor-<k>_<n>``.
        initializer: Called with *initargs* on each worker thread before its
            first call. If it raises, the executor is broken: that call, the
            waiting ones and later submits fail with
            ``concurrent.futures.thread.BrokenThreadPool``.
        initargs: Arguments for *initializer*.
        latency: Time calls, for the ``wait`` and ``run`` of
            :meth:`stats`, as :class:`Pool`'s *latency* does (``True``,
            ``"sampled"``); off by default
            (then both stay empty). The wait begins as the call enters the
            pool, after any wait for room under *max_waiting*.

    Raises:
        TypeError, ValueError: An argument is invalid (*max_workers* and
            *max_waiting* must be positive ints, *when_full* one of the three,
            *thread_name_prefix* a ``str``, *initializer* callable or
            ``None``, *initargs* a tuple, *latency* ``True``, ``False`` or
            ``"sampled"``); nothing was started.

    ``with`` calls :meth:`shutdown`. An executor dropped without
    :meth:`shutdown` is shut down without waiting: its calls still run, then
    its threads end.

    Unlike ``ThreadPoolExecutor``, all *max_workers* threads start with the
    executor (a ``ThreadPoolExecutor`` starts one per submit until it has
    *max_workers*); :meth:`submit` and :meth:`map` check their arguments at
    once (*fn* not callable is a ``TypeError`` from ``submit``, not a failed
    future; ``map`` refuses a negative *timeout* and a *chunksize* below 1);
    and a call runs in a copy of the submitter's ``contextvars`` context (as
    :meth:`Pool.submit` jobs do), so an initializer's context variables do not
    outlive the first call.

    Not guaranteed: threads cannot be killed. A cancelled running call runs
    on until it checks :func:`tunnypy.interrupted` or returns. A thread
    takes its name, and runs the initializer, when it takes its first call,
    on that thread, before the call. ``"caller_runs"`` from an event loop's
    thread runs the call on the loop, and ``"block"`` blocks it.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        max_waiting: int | None = None,
        when_full: WhenFull = "block",
        thread_name_prefix: str = "",
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        latency: Latency = False,
    ) -> None:
        size = (
            _default_workers()
            if max_workers is None
            else check_size(max_workers, "max_workers", positive=True)
        )
        if max_waiting is not None:
            max_waiting = check_size(max_waiting, "max_waiting", positive=True)
        if when_full not in WHEN_FULL:
            msg = f"when_full must be 'block', 'raise' or 'caller_runs' (got {when_full!r})"
            raise ValueError(msg)
        if not isinstance(thread_name_prefix, str):
            kind = type(thread_name_prefix).__name__
            msg = f"thread_name_prefix must be a str (got {kind})"
            raise TypeError(msg)
        if initializer is not None and not callable(initializer):
            msg = f"initializer must be callable or None (got {type(initializer).__name__})"
            raise TypeError(msg)
        if not isinstance(initargs, tuple):
            msg = f"initargs must be a tuple (got {type(initargs).__name__})"
            raise TypeError(msg)
        latency = check_latency(latency)
        prefix = thread_name_prefix or f"TunnypyExecutor-{next(_names)}"
        state = ExecutorState(
            size,
            max_waiting=max_waiting,
            when_full=when_full,
            prefix=prefix,
            initializer=initializer,
            initargs=initargs,
            latency=latency,
        )
        self._state = state
        live_states.add(state)
        self._finalizer = weakref.finalize(self, state.shut, False, False)

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """
        Schedule ``fn(*args, **kwargs)`` and return its future.

        When *max_waiting* calls already wait, does what *when_full* says.

        Raises:
            RuntimeError: The executor was shut down (also while blocked for room).
            concurrent.futures.thread.BrokenThreadPool: An initializer failed.
            PoolBusyError: The line is full and *when_full* is ``"raise"``.
            PoolDeadlockError: Called from a call of this executor that would
                block for room while every worker is blocked the same way
                (also once :meth:`set_max_workers` shrinks the executor to the
                workers so blocked).
            TypeError: *fn* is not callable.
        """
        if not callable(fn):
            msg = f"fn must be callable (got {type(fn).__name__})"
            raise TypeError(msg)
        return self._state.submit(fn, args, kwargs)

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[object],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Generator[T, None, None]:
        """
        Like ``map(fn, *iterables)``, the calls run on the executor.

        As Python 3.14's ``Executor.map``, on every Python: with
        *buffersize*, the input is read lazily, *buffersize* calls ahead of
        the results yielded (one more while a result is awaited); without it,
        every call is submitted at once. *chunksize* is accepted and ignored,
        as by ``ThreadPoolExecutor``.

        Raises:
            TimeoutError: From the iterator, when a result is not ready
                *timeout* seconds after ``map()`` was called; the calls not
                yet done are cancelled (interrupted if running).
            Exception: From the iterator, what ``fn`` raised for that item.
            TypeError, ValueError: An argument is invalid (*buffersize* or
                *chunksize* not a positive int, *timeout* not a non-negative
                number); nothing was submitted and no input was read.
        """
        if not callable(fn):
            msg = f"fn must be callable (got {type(fn).__name__})"
            raise TypeError(msg)
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        check_size(chunksize, "chunksize", positive=True)
        if buffersize is not None:
            check_size(buffersize, "buffersize", positive=True)
        end_time = None if timeout is None else time.monotonic() + timeout
        args_iter = zip(*iterables, strict=False)
        submit = self.submit
        fs: deque[Future[T]] = deque(
            submit(fn, *args) for args in itertools.islice(args_iter, buffersize)
        )
        executor_ref = weakref.ref(self)
        return _results(
            fs,
            end_time=end_time,
            fn=fn,
            args_iter=args_iter,
            buffersize=buffersize,
            executor_ref=executor_ref,
        )

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """
        Refuse new calls; calls already submitted still run, unless *cancel_futures*.

        Safe to call twice, and from inside a call (which then waits for the
        other calls only). Submitters blocked by *max_waiting* get
        ``RuntimeError``.

        Args:
            wait: Wait until every submitted call has finished and the
                worker threads have ended.
            cancel_futures: Cancel the calls that have not started; a call
                already running is not interrupted.
        """
        self._state.shut(bool(wait), bool(cancel_futures))

    @property
    def max_workers(self) -> int:
        """
        How many worker threads the executor was last asked for.

        Set by *max_workers* and :meth:`set_max_workers`; unchanged by
        :meth:`shutdown` and by a failed initializer, as
        ``ThreadPoolExecutor``'s ``_max_workers`` is. ``stats().workers``
        counts the threads still alive.
        """
        return self._state.max_workers

    def set_max_workers(self, n: int) -> None:
        """
        Grow or shrink to *n* worker threads, at once and under load.

        As :meth:`Pool.set_size`: new threads serve waiting calls at once;
        idle threads leave first, busy ones when their call returns; no call
        is lost or run twice.

        Raises:
            RuntimeError: The executor was shut down.
            concurrent.futures.thread.BrokenThreadPool: An initializer failed
                (as :meth:`submit` raises it).
            TypeError, ValueError: *n* is not a positive int; nothing changed.
            RuntimeError: The executor autoscales (see :meth:`autoscale`).
        """
        n = check_size(n, "n", positive=True)
        state = self._state
        with state.lock:
            # Under the lock, so that no shutdown closes the pool meanwhile.
            if state.broken is not None:  # its pool closes once its calls are over
                raise BrokenThreadPool(state.broken)
            if state.shutdown:
                msg = "cannot resize an executor after shutdown"
                raise RuntimeError(msg)
            state.pool.set_size(n)
            state.max_workers = n
            # Submitters blocked for room inside a call look again: a shrink
            # may have left every worker that could make room blocked so.
            state.room.notify_all()

    def autoscale(
        self,
        min_workers: int | None,
        max_workers: int | None = None,
        *,
        idle_timeout: float = 60.0,
    ) -> None:
        """
        Let the executor size itself between *min_workers* and *max_workers* threads.

        As :meth:`Pool.autoscale`: a call that would wait for a thread grows
        the executor by one, up to *max_workers*; a thread idle for
        *idle_timeout* seconds leaves while more than *min_workers* remain;
        :attr:`max_workers` reads the size as it moves. ``autoscale(None)``
        stops it; meanwhile :meth:`set_max_workers` is refused.

        Raises:
            RuntimeError: The executor was shut down.
            concurrent.futures.thread.BrokenThreadPool: An initializer failed.
            TypeError, ValueError: An argument is invalid; nothing changed.
        """
        state = self._state
        with state.lock:
            # Under the lock, so that no shutdown closes the pool meanwhile.
            if state.broken is not None:
                raise BrokenThreadPool(state.broken)
            if state.shutdown:
                msg = "cannot autoscale an executor after shutdown"
                raise RuntimeError(msg)
            state.pool.autoscale(min_workers, max_workers, idle_timeout=idle_timeout)
            state.room.notify_all()  # as set_max_workers: a bound moved

    @property
    def latency(self) -> Latency:
        """Whether this executor times its calls for the ``wait`` and ``run`` of :meth:`stats`."""
        return self._state.pool.latency

    def stats(self) -> PoolStats:
        """
        A snapshot of the executor's pool: sizes, counters, latency (see :class:`PoolStats`).

        ``waiting`` counts the calls in the pool's line (submitted, not started).
        ``completed`` and ``failed`` count a call before its future is done, so
        a read after ``result()`` has returned includes it.

        Not guaranteed: that ``wait`` and ``run`` (with *latency*) include a
        call whose future is done; its worker counts them as the call ends,
        just after it settles the future.
        """
        state = self._state
        stats = state.pool.stats()
        with state.lock:
            return attrs.evolve(stats, completed=state.completed, failed=state.failed)

    def __repr__(self) -> str:
        state = self._state
        if state.broken is not None:
            status = "broken"
        elif state.shutdown:
            status = "shut down"
        else:
            status = f"max_workers={state.max_workers}"
        return f"<Executor {status} waiting={len(state.waiting)}>"


def _results(
    fs: deque[Future[T]],
    *,
    end_time: float | None,
    fn: Callable[..., T],
    args_iter: Iterator[tuple[object, ...]],
    buffersize: int | None,
    executor_ref: weakref.ref[Executor],
) -> Generator[T, None, None]:
    # A generator apart from map(), so that map() submits before the first next().
    try:
        fs.reverse()
        while fs:
            if buffersize and (executor := executor_ref()) is not None:
                args = next(args_iter, None)
                if args is not None:
                    fs.appendleft(executor.submit(fn, *args))
                del executor
            timeout = None if end_time is None else end_time - time.monotonic()
            yield _result_or_cancel(fs.pop(), timeout)
    finally:
        for future in fs:
            future.cancel()


def _result_or_cancel(future: Future[T], timeout: float | None) -> T:
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()
    finally:
        del future  # no reference to a failed future's traceback from this frame
