"""
SingleRunner: the article's single-concurrency runner, on a one-worker pool.

The runner owns a :class:`Pool` of size 1 and a ``running`` flag. ``run()``
sets the flag (or returns ``False`` because it is already set) and submits
the function; the job clears the flag as its last act. The flag, not the
pool's idle list, decides "busy": the job clears it while still inside the
worker, so the next call is accepted the moment the function has returned and
waits in the pool's line for the few instructions until the worker offers
itself again; the flag guarantees it is the only one there.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, ParamSpec, final

import attrs

from ._checks import check_timeout, deadline_in
from ._log import log, safe_repr
from ._pool import Pool
from ._waker import wait_until
from .exceptions import PoolClosedError

__all__ = ["SingleRunner"]

P = ParamSpec("P")


def _name(fn: Callable[..., object]) -> str:
    # Any callable may come here (a partial's repr shows its arguments): a
    # failing attribute or repr must not cost the log line.
    try:
        name = getattr(fn, "__qualname__", None)
    except Exception:
        name = None
    return name if isinstance(name, str) and name else safe_repr(fn)


@final
@attrs.define(eq=False, init=False)
class SingleRunner:
    """
    Run a function in the background only if none is running already.

    One resident worker thread does the running, so no call ever starts a
    thread: ``run()`` while a function runs returns ``False`` at once.

    Use it for work that needs doing by one thread at a time and may be
    skipped when already in progress: refreshing a cache, re-reading a
    configuration, reconnecting.

    Not guaranteed: a call made while a function runs is dropped, not
    deferred. Threads cannot be killed; a function that never returns keeps
    the runner busy for good.

    .. versionadded:: 0.1.0
    """

    _pool: Pool[Callable[[], object], object]
    _cond: threading.Condition
    _running: bool
    _last_error: BaseException | None
    _closed: bool

    def __init__(self) -> None:
        self._pool = Pool.from_callback(1)
        self._cond = threading.Condition(threading.Lock())
        self._running = False
        self._last_error = None
        self._closed = False

    def run(self, fn: Callable[P, object], /, *args: P.args, **kwargs: P.kwargs) -> bool:
        """
        Start ``fn(*args, **kwargs)`` in the background unless a function is running.

        Returns at once. An exception raised by *fn* is logged (event
        ``single_runner_failed``) and kept in :attr:`last_error`.

        Returns:
            Whether *fn* was started. ``False`` means a function was running;
            nothing was started and *fn* will not run.

        Raises:
            TypeError: *fn* is not callable.
            PoolClosedError: The runner was closed (even if its last
                function still runs).
        """
        if not callable(fn):
            msg = f"fn must be callable (got {type(fn).__name__})"
            raise TypeError(msg)
        # The cheap refusal, as in the article; rechecked below. A closed
        # runner raises even while its last function still runs.
        if self._running and not self._closed:
            return False
        with self._cond:
            if self._closed:
                raise PoolClosedError("runner is closed")
            if self._running:
                return False
            self._running = True
        try:
            future = self._pool.submit(functools.partial(self._call, fn, args, kwargs))
        except BaseException:
            self._finish()
            raise
        future.add_done_callback(self._settled)
        return True

    def _call(
        self, fn: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        try:
            fn(*args, **kwargs)
        except BaseException as exc:  # kept and logged, never lost silently
            self._last_error = exc
            log.exception("single_runner_failed", fn=_name(fn))
        finally:
            self._finish()

    def _settled(self, future: Future[object]) -> None:
        # Only a job the pool refused (closed while it waited in line) ends
        # with an exception: ``_call`` catches everything else. Its flag was
        # never cleared by ``_call``, so clear it here.
        if future.cancelled() or future.exception() is not None:
            self._finish()

    def _finish(self) -> None:
        with self._cond:
            self._running = False
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        """Whether a function is running (or about to) now."""
        return self._running

    @property
    def last_error(self) -> BaseException | None:
        """The exception of the most recent run that raised, or ``None``; a success keeps it."""
        return self._last_error

    def wait(self, timeout: float | None = None) -> bool:
        """
        Wait until no function is running.

        Do not call it from the running function: it would wait for itself.

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
            return wait_until(self._cond, lambda: not self._running, deadline)

    def close(self, *, wait: bool = True, timeout: float | None = None) -> bool:
        """
        Stop the runner's thread; a running function finishes first. Safe to call twice.

        Returns:
            Whether the thread had ended when it returned (always ``True``
            with *wait* and no *timeout*).

        Raises:
            TypeError, ValueError: *timeout* is not a non-negative number;
                nothing changed.
        """
        if timeout is not None:
            check_timeout(timeout, "timeout")  # before anything changes
        with self._cond:
            self._closed = True
        return self._pool.close(wait=wait, timeout=timeout)

    def __enter__(self) -> SingleRunner:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._running else "idle")
        return f"<SingleRunner {state} last_error={safe_repr(self._last_error)}>"
