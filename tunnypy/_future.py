"""
JobFuture: the ``concurrent.futures.Future`` that :meth:`Pool.submit` returns.

A stock ``Future`` builds a ``threading.Condition`` when it is made, several
objects for the garbage collector to track (docs/performance.md,
"Shortcuts"). Most futures are never waited on while pending, so a
``JobFuture``'s ``_condition`` is a re-entrant lock that makes the real
``Condition`` (on the same lock) only when a thread first waits.

This leans on ``Future``'s private attributes, which ``concurrent.futures``
itself uses (``wait``, ``as_completed``) and which are the same in Python
3.11, 3.12 and 3.13: ``_condition`` (``acquire``, ``release``, ``wait``,
``notify_all``), ``_state``, ``_result``, ``_exception``, ``_waiters``,
``_done_callbacks`` and ``_invoke_callbacks()`` (``cancel()`` is ``Future``'s
with the job's leaving the line inside it). ``tests/internal/test_future.py``
checks every public use and that a stock ``Future`` has no attribute a
``JobFuture`` lacks. On a Python whose ``Future`` sets any other attribute,
``LEAN`` is false and a ``JobFuture`` is built by ``Future.__init__`` like any
other: correct, only slower. What is not checked is that a future Python's
``Future`` methods use those attributes the same way.
"""

from __future__ import annotations

import _thread
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    LOGGER,
    PENDING,
    RUNNING,
)
from typing import Any, Protocol

from ._job import Job

__all__ = ["TAKEN_BY_CALLER", "Canceller", "JobFuture"]

_ENDED = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))
TAKEN_BY_CALLER = frozenset((FINISHED, RUNNING))
"""States in which a future still in the pool's line was resolved (or started) by its caller."""
_LAYOUT = frozenset(
    ("_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks")
)
_NO_CALLBACKS: tuple[Callable[[Future[Any]], object], ...] = ()


def stock_layout_known() -> bool:
    """Whether a stock ``Future`` sets no attribute that ``JobFuture`` does not set itself."""
    return set(vars(Future())) <= _LAYOUT


LEAN = stock_layout_known()
"""Whether ``JobFuture`` sets its attributes itself (see the module's docstring)."""


class _FutureLock(_thread.RLock):  # type: ignore[misc]
    """An ``RLock`` with the part of ``threading.Condition`` that futures use."""

    __slots__ = ("_waiting",)
    _waiting: threading.Condition

    # Every method here runs with the lock held (as Future and
    # concurrent.futures.wait do), so making ``_waiting`` cannot race.

    def _condition(self) -> threading.Condition:
        try:
            return self._waiting
        except AttributeError:
            cond = self._waiting = threading.Condition(self)
            return cond

    def wait(self, timeout: float | None = None) -> bool:
        return self._condition().wait(timeout)

    def wait_for(self, predicate: Callable[[], Any], timeout: float | None = None) -> Any:
        return self._condition().wait_for(predicate, timeout)

    def notify(self, n: int = 1) -> None:
        try:
            cond = self._waiting
        except AttributeError:
            return  # nobody has ever waited
        cond.notify(n)

    def notify_all(self) -> None:
        try:
            cond = self._waiting
        except AttributeError:
            return
        cond.notify_all()


class Canceller(Protocol):
    """Where a cancelled future's job is taken out of line (the pool's ``Line``)."""

    lock: _thread.LockType

    def cancel_future_locked(self, job: Job) -> None: ...


class JobFuture(Future[Any]):
    """A future that leaves the pool's line when cancelled there (private)."""

    _tunnypy_line: Canceller
    # Needed only while the job may be in line; dropped once the call ends
    # (Job.let_go), so a done future keeps its result and not the job.
    _tunnypy_job: Job | None

    def __init__(self, line: Canceller) -> None:
        self._tunnypy_line = line
        if not LEAN:
            super().__init__()
            return
        # No super().__init__(): it builds a Condition.
        self._condition = _FutureLock()  # type: ignore[assignment]
        self._state = PENDING
        self._result = None
        self._exception = None
        self._waiters: list[Any] = []
        # Shared and empty until a callback is added (a list per future
        # costs a collector-tracked object that most futures never use).
        self._done_callbacks: Any = _NO_CALLBACKS

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        with self._condition:
            if self._state not in _ENDED:
                if self._done_callbacks is _NO_CALLBACKS:
                    self._done_callbacks = []
                self._done_callbacks.append(fn)
                return
        try:
            fn(self)
        except Exception:
            LOGGER.exception("exception calling callback for %r", self)

    def cancel(self) -> bool:
        # Future.cancel(), with the job taken out of line, counted and let go
        # of before any waiter or done-callback is told (waiters wake only
        # once both locks are released). The pool's lock comes first, as when
        # a worker takes the job (set_running_or_notify_cancel()).
        line = self._tunnypy_line
        with line.lock, self._condition:
            state = self._state
            if state in TAKEN_BY_CALLER:  # running or finished: too late
                return False
            if state == CANCELLED_AND_NOTIFIED:
                return True
            # PENDING, or CANCELLED by a Future.cancel() that bypassed this
            # one. No worker will reach the job (it leaves the line below), so
            # none will call set_running_or_notify_cancel(): wait() and
            # as_completed() are told here, as that call would tell them.
            self._state = CANCELLED_AND_NOTIFIED
            for waiter in self._waiters:
                waiter.add_cancelled(self)
            self._condition.notify_all()
            job = self._tunnypy_job
            if job is not None:
                line.cancel_future_locked(job)
        if state == PENDING:  # else Future.cancel() ran the callbacks
            self._invoke_callbacks()  # type: ignore[attr-defined]
        return True
