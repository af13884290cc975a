"""
Every way to hand a pool a payload, behind one interface, for the promise suite.

Each :class:`CallPath` starts a call in its own thread (or as a future) and
returns a :class:`Pending`: its result, and the way its caller gives up where
the path has one (a deadline, a cancelled token, a cancelled future). The
``call_path`` fixtures in ``conftest.py`` run a test once per path, so a fast
path cannot drift from the slow one.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import attrs

import tunnypy
from tests.helpers import WAIT, Call

GIVE_UP_AFTER = 0.001
"""The deadline of a ``process_timed`` call meant to give up: it has passed by the time it waits."""

Starter = Callable[["AnyPool", Any, "float | None"], "Pending"]

AnyPool = tunnypy.Pool[Any, Any]


@attrs.define(eq=False)
class Pending:
    """One call on its way: wait for its outcome, or make its caller give up."""

    wait: Callable[[float], Any]
    done: Callable[[], bool]
    give_up_by: Callable[[], object] | None = None

    def result(self, timeout: float = WAIT) -> Any:
        """The call's result, re-raising its error; an AssertionError if it takes too long."""
        return self.wait(timeout)

    def error(self, timeout: float = WAIT) -> BaseException | None:
        """The error the call ended with, or None if it returned."""
        try:
            self.result(timeout)
        except AssertionError:
            raise
        except BaseException as exc:
            return exc
        return None

    def give_up(self) -> None:
        """Make the caller give up (a ``process_timed`` caller already has: its deadline passed)."""
        assert self.give_up_by is not None, "this path has no way to give up"
        self.give_up_by()


def _threaded(
    fn: Callable[..., Any], *args: Any, give_up_by: Callable[[], object] | None = None
) -> Pending:
    call = Call(fn, *args)
    return Pending(call.wait, call.done.is_set, give_up_by)


def _future(submit: Callable[[Any], Future[Any]], payload: Any) -> Pending:
    try:
        future = submit(payload)
    except BaseException as exc:  # refused at once: the error is the call's outcome
        future = Future()
        future.set_exception(exc)

    def wait(timeout: float) -> Any:
        try:
            return future.result(timeout)
        except TimeoutError:
            if not future.done():
                raise AssertionError("future did not finish in time") from None
            raise

    return Pending(wait, future.done, future.cancel)


def _process(pool: AnyPool, payload: Any, give_up_after: float | None) -> Pending:
    return _threaded(pool.process, payload)


def _process_timed(pool: AnyPool, payload: Any, give_up_after: float | None) -> Pending:
    timeout = WAIT if give_up_after is None else give_up_after
    return _threaded(pool.process_timed, payload, timeout, give_up_by=lambda: None)


def _process_ctx(pool: AnyPool, payload: Any, give_up_after: float | None) -> Pending:
    token = tunnypy.CancelToken()
    return _threaded(pool.process_ctx, payload, token, give_up_by=token.cancel)


def _submit(pool: AnyPool, payload: Any, give_up_after: float | None) -> Pending:
    return _future(pool.submit, payload)


def _try_process(pool: AnyPool, payload: Any, give_up_after: float | None) -> Pending:
    return _threaded(pool.try_process, payload)


def _try_submit(pool: AnyPool, payload: Any, give_up_after: float | None) -> Pending:
    return _future(pool.try_submit, payload)


@attrs.frozen
class CallPath:
    """
    One of the pool's calls, started the same way as every other.

    ``start(pool, payload, give_up=True)`` prepares a call whose caller will
    give up: a ``process_timed`` call then gets a deadline (*after* seconds)
    that has passed by the time it waits (a job already handed to a worker
    is interrupted, one in line leaves it). The other paths give up when
    ``Pending.give_up()`` is called.
    """

    name: str
    starter: Starter
    waits_in_line: bool
    """False for try_process and try_submit, refused at once when no worker is free."""
    leaves_the_line: type[BaseException] | None
    """What a caller that gives up while in line gets; None if it cannot give up there."""
    interrupts_its_job: type[BaseException] | None
    """What a caller that gives up on its running job gets; None if it cannot."""

    def start(
        self, pool: AnyPool, payload: Any, *, give_up: bool = False, after: float = GIVE_UP_AFTER
    ) -> Pending:
        return self.starter(pool, payload, after if give_up else None)

    def left_the_line(self, error: BaseException | None) -> bool:
        """Whether *error* is what a caller on this path gets for giving up in line."""
        assert self.leaves_the_line is not None, f"{self} cannot give up in line"
        return isinstance(error, self.leaves_the_line)

    def interrupted_its_job(self, error: BaseException | None) -> bool:
        """Whether *error* is what a caller on this path gets for giving up on its running job."""
        assert self.interrupts_its_job is not None, f"{self} cannot give up on a running job"
        return isinstance(error, self.interrupts_its_job)

    def __str__(self) -> str:
        return self.name


PATHS: dict[str, CallPath] = {
    path.name: path
    for path in [
        CallPath("process", _process, True, None, None),
        CallPath(
            "process_timed",
            _process_timed,
            True,
            tunnypy.JobTimedOutError,
            tunnypy.JobTimedOutError,
        ),
        CallPath(
            "process_ctx",
            _process_ctx,
            True,
            tunnypy.JobCancelledError,
            tunnypy.JobCancelledError,
        ),
        # A started job cannot be interrupted through its future (docs/semantics.md).
        CallPath("submit", _submit, True, concurrent.futures.CancelledError, None),
        CallPath("try_process", _try_process, False, None, None),
        CallPath("try_submit", _try_submit, False, None, None),
    ]
}
WAITING = sorted(name for name, path in PATHS.items() if path.waits_in_line)
LEAVING = sorted(name for name, path in PATHS.items() if path.leaves_the_line)
INTERRUPTING = sorted(name for name, path in PATHS.items() if path.interrupts_its_job)
