"""
Limiter: the article's multi-concurrency runner, on a callback pool.

A limiter is a :meth:`Pool.from_callback` pool whose size is the limit.
``run()`` submits the task wrapped so that it signals when a worker starts
it, and blocks on that signal, so a caller waits exactly as long as the
pool's line makes it wait. ``try_run()`` is ``try_submit()``. A count of
unfinished tasks, kept under a condition, gives ``wait()``.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, TypeVar, cast, final

import attrs

from ._checks import check_timeout, deadline_in
from ._job import Runner, current_runner
from ._log import debug_enabled, log, safe_repr
from ._pool import Pool
from ._waker import wait_until
from .exceptions import PoolDeadlockError

__all__ = ["Limiter"]

P = ParamSpec("P")
R = TypeVar("R")


class _Task:
    """One call: the function and its arguments, and whether a worker started it."""

    __slots__ = ("args", "fn", "kwargs", "on_start", "ran", "started")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.ran = False
        self.started = threading.Event()
        # For a run() made by a task of the same limiter: ends that task's
        # wait in the count of blocked slots, on the thread starting this one.
        self.on_start: Callable[[], None] | None = None

    def __call__(self) -> Any:
        self.ran = True
        if self.on_start is not None:
            self.on_start()
        self.started.set()
        return self.fn(*self.args, **self.kwargs)


def _check_fn(fn: object) -> None:
    if not callable(fn):
        msg = f"fn must be callable (got {type(fn).__name__})"
        raise TypeError(msg)


@final
@attrs.define(eq=False, init=False)
class Limiter:
    """
    Run at most *size* tasks at once; ``run()`` blocks while *size* tasks run.

    Tasks run on *size* resident worker threads (a :meth:`Pool.from_callback`
    pool), first come first served, so no call starts a thread and the thread
    count never grows with the load.

    Args:
        size: How many tasks may run at once. 0 pauses the limiter: ``run()``
            waits until :meth:`set_size` raises the limit.

    Raises:
        TypeError, ValueError: *size* is not a non-negative int.

    Not guaranteed: after :meth:`set_size` lowers the limit, tasks already
    running finish first, so up to the old limit may run until they do.
    Threads cannot be killed: a task that never returns holds its slot.

    .. versionadded:: 0.1.0
    """

    _pool: Pool[Callable[[], object], object]
    _cond: threading.Condition
    _unfinished: int
    _blocked: set[Runner]

    def __init__(self, size: int) -> None:
        self._pool = Pool.from_callback(size)
        self._cond = threading.Condition(threading.Lock())
        self._unfinished = 0
        # Workers whose task waits in run() on this limiter for its own task
        # to start; written under ``_cond``.
        self._blocked = set()

    def run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """
        Start ``fn(*args, **kwargs)`` once fewer than *size* tasks run; return its future.

        Blocks, first come first served, while the limit is reached, and
        returns as soon as a worker has started the task. The future holds
        the task's result or exception.

        Raises:
            TypeError: *fn* is not callable.
            PoolClosedError: The limiter was closed before the task started.
            PoolDeadlockError: Called from a task of this limiter while every
                other slot is held by a task itself waiting in ``run()`` here
                (at size 1: any call from its task); it would never start.
        """
        _check_fn(fn)
        task = _Task(fn, args, kwargs)
        runner = current_runner()
        if runner is None or runner.line is not self._pool._line:
            return self._run(task)
        self._block(runner)
        task.on_start = functools.partial(self._unblock, runner)
        try:
            return self._run(task)
        finally:
            self._unblock(runner)

    def _run(self, task: _Task) -> Future[Any]:
        future = self._submit(task, wait=True)
        future.add_done_callback(lambda _: task.started.set())  # refused: stop waiting
        try:
            task.started.wait()
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: withdraw the task if still in line
            raise
        if not task.ran:
            future.result()  # the pool refused it: raises PoolClosedError
        return future

    def _block(self, runner: Runner) -> None:
        # A task waiting in run() holds its slot. Once every slot is held so,
        # nothing can free one: refuse the call that would make it so. A
        # retiring worker's slot is already given up, so its task may wait.
        with self._cond:
            if not runner.retiring:
                held = 1 + sum(not w.retiring for w in self._blocked)
                if held >= self._pool._line.active:
                    msg = (
                        "a task called run() on its own limiter while every slot is "
                        "held by a task waiting in run(); it would never start"
                    )
                    raise PoolDeadlockError(msg)
            self._blocked.add(runner)

    def _unblock(self, runner: Runner) -> None:
        with self._cond:
            self._blocked.discard(runner)

    def try_run(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        """
        Like :meth:`run`, but raise :class:`PoolBusyError` at once if *size* tasks run.

        Nothing is started when it raises. A worker that has just finished a
        task counts as busy until it is back in the pool, which takes a few
        instructions after the task's future is done.

        Raises:
            PoolBusyError: The limit is reached.
            TypeError: *fn* is not callable.
            PoolClosedError: The limiter is closed.
        """
        _check_fn(fn)
        return cast("Future[R]", self._submit(_Task(fn, args, kwargs), wait=False))

    def _submit(self, task: _Task, wait: bool) -> Future[object]:
        with self._cond:
            self._unfinished += 1
        try:
            future = self._pool.submit(task) if wait else self._pool.try_submit(task)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[object] | None) -> None:
        with self._cond:
            self._unfinished -= 1
            if not self._unfinished:
                self._cond.notify_all()
        # After the count: nothing in a log line can leave wait() waiting.
        if future is not None and debug_enabled() and not future.cancelled():
            error = future.exception()
            if error is not None:
                log.debug("limiter_task_failed", error=safe_repr(error))

    @property
    def size(self) -> int:
        """The limit, how many tasks may run at once."""
        return self._pool.size

    def set_size(self, size: int, *, wait: bool = False, timeout: float | None = None) -> bool:
        """
        Change the limit; waiting callers are served at once if it grew.

        Same as :meth:`Pool.set_size`: lowering it retires idle workers first
        and lets running tasks finish.

        Returns:
            ``False`` only if *wait* and *timeout* passed before the retired
            workers ended.

        Raises:
            TypeError, ValueError: *size* or *timeout* is invalid; nothing changed.
            PoolClosedError: The limiter is closed.
        """
        return self._pool.set_size(size, wait=wait, timeout=timeout)

    @property
    def running(self) -> int:
        """Tasks running now (a worker finishing one still counts)."""
        return self._pool.stats().busy

    @property
    def waiting(self) -> int:
        """Callers blocked in :meth:`run` until a task slot frees."""
        return self._pool.queue_length

    def wait(self, timeout: float | None = None) -> bool:
        """
        Wait until every task handed to this limiter has finished.

        That includes tasks that start while it waits. Do not call it from a
        task: it would wait for itself.

        Args:
            timeout: Seconds, any non-negative real number; ``None`` or
                ``float("inf")`` for no limit.

        Returns:
            ``False`` if *timeout* seconds passed first.

        Raises:
            TypeError, ValueError: *timeout* is not a non-negative number.
        """
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
        deadline = deadline_in(timeout)
        with self._cond:
            return wait_until(self._cond, lambda: not self._unfinished, deadline)

    def close(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """
        Stop the limiter's threads; running tasks finish, waiting callers get
        :class:`PoolClosedError`. Safe to call twice.

        Returns:
            Whether every thread had ended when it returned.
        """
        return self._pool.close(wait=wait, timeout=timeout)

    def __enter__(self) -> Limiter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        stats = self._pool.stats()
        if self._pool.closed:
            return f"<Limiter closed, {stats.busy} running>"
        return f"<Limiter {stats.busy}/{stats.size} running with {stats.waiting} waiting>"
