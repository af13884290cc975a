"""
Every way to hand a pool a payload, behind one interface, for the promise suite.

Each :class:`CallPath` starts a call in a thread of its own (or as a future)
and returns a :class:`Pending`: its result, and the way its caller gives up
where the path has one (a deadline, a cancelled token, a cancelled future).
The blocking calls also run on *reused* threads, each of which has made calls,
served at once and after waiting in line, before: a thread's first call and
its later ones may take different ways through the pool. The ``call_path``
fixtures in ``conftest.py`` run a test once per path, so a fast path cannot
drift from the slow one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import attrs

import tunnypy
from tests.helpers import WAIT, Call, wait_for

GIVE_UP_AFTER = 0.001
"""The deadline of a ``process_timed`` call meant to give up: it has passed by the time it waits."""


@attrs.define(eq=False)
class ClockHeldUntil:
    """
    A clock for ``process_timed`` deadlines that stands still until *started()* holds.

    Patched over ``tunnypy._pool._monotonic``, it makes a ``process_timed``
    caller whose deadline is *step* seconds give up only once its job has
    started, not at a time the scheduler picks: before, the deadline never
    comes; after, time runs on *step* ahead, so it has passed. Held for
    ``WAIT`` seconds at most, so a job that never starts fails its test.
    """

    started: Callable[[], bool]
    step: float = GIVE_UP_AFTER
    since: float = attrs.field(factory=time.monotonic)
    held: bool = True

    def __call__(self) -> float:
        now = time.monotonic()
        if self.held:
            if not self.started() and now - self.since < WAIT:
                return self.since
            self.held = False
        return now + self.step


Runner = Callable[..., "Pending"]
"""Runs ``fn(*args, give_up_by=...)`` on some thread and returns its Pending."""
Starter = Callable[["AnyPool", Any, "float | None", Runner], "Pending"]

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
    """Run the call in a new thread."""
    call = Call(fn, *args)
    return Pending(call.wait, call.done.is_set, give_up_by)


def _run_job(job: Callable[[], object]) -> object:
    return job()


def _season() -> None:
    """Make calls on this thread: one that waits in line, then one served at once."""
    pool: tunnypy.Pool[Callable[[], object], object] = tunnypy.Pool.from_func(1, _run_job)
    try:
        holder = pool.submit(lambda: wait_for(lambda: pool.queue_length == 1, "a call in line"))
        pool.process(lambda: None)
        holder.result(WAIT)
        wait_for(lambda: pool.stats().idle == 1, "the worker to park")
        pool.process_timed(lambda: None, WAIT)
        pool.process_ctx(lambda: None, tunnypy.CancelToken())
        pool.process(lambda: None)
    finally:
        assert pool.close(timeout=WAIT)


class _Outcome:
    """What one call on a reused thread returned or raised."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

    def wait(self, timeout: float) -> Any:
        if not self.done.wait(timeout):
            raise AssertionError("call did not finish in time")
        if self.error is not None:
            raise self.error
        return self.result


class Callers:
    """Caller threads reused from call to call, each seasoned with calls before its first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.free: list[queue.SimpleQueue[Any]] = []
        self.inboxes: list[queue.SimpleQueue[Any]] = []
        self.threads: list[threading.Thread] = []

    def __call__(
        self, fn: Callable[..., Any], *args: Any, give_up_by: Callable[[], object] | None = None
    ) -> Pending:
        """Run the call on a free reused thread (a new, seasoned one if none is free)."""
        with self.lock:
            inbox = self.free.pop() if self.free else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            self.inboxes.append(inbox)
            ready = _Outcome()
            thread = threading.Thread(target=self._serve, args=(inbox, ready), daemon=True)
            self.threads.append(thread)
            thread.start()
            ready.wait(WAIT)  # seasoned, or its error raised here
        outcome = _Outcome()
        inbox.put((fn, args, outcome))
        return Pending(outcome.wait, outcome.done.is_set, give_up_by)

    def _serve(self, inbox: queue.SimpleQueue[Any], ready: _Outcome) -> None:
        try:
            _season()
        except BaseException as exc:
            ready.error = exc
            ready.done.set()
            return
        ready.done.set()
        while (item := inbox.get()) is not None:
            fn, args, outcome = item
            try:
                outcome.result = fn(*args)
            except BaseException as exc:
                outcome.error = exc
            with self.lock:
                self.free.append(inbox)
            outcome.done.set()

    def close(self) -> None:
        """End every reused thread once its call has returned."""
        for inbox in self.inboxes:
            inbox.put(None)
        for thread in self.threads:
            thread.join(WAIT)


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


def _process(pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner) -> Pending:
    return run(pool.process, payload)


def _process_timed(
    pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner
) -> Pending:
    timeout = WAIT if give_up_after is None else give_up_after
    return run(pool.process_timed, payload, timeout, give_up_by=lambda: None)


def _process_ctx(pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner) -> Pending:
    token = tunnypy.CancelToken()
    return run(pool.process_ctx, payload, token, give_up_by=token.cancel)


def _submit(pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner) -> Pending:
    return _future(pool.submit, payload)


def _try_process(pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner) -> Pending:
    return run(pool.try_process, payload)


def _try_submit(pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner) -> Pending:
    return _future(pool.try_submit, payload)


def _aprocess(pool: AnyPool, payload: Any, give_up_after: float | None, run: Runner) -> Pending:
    """``await pool.aprocess(payload)`` in a task on an event loop of its own thread."""
    running = threading.Event()
    task: list[asyncio.Task[Any]] = []

    async def call() -> Any:
        task.append(asyncio.current_task())  # type: ignore[arg-type]
        running.set()  # the task runs on into aprocess() before it can see a cancel
        return await pool.aprocess(payload)

    def give_up() -> None:
        assert running.wait(WAIT), "the task never ran"
        with contextlib.suppress(RuntimeError):  # its loop has ended: the call is over
            task[0].get_loop().call_soon_threadsafe(task[0].cancel)

    return run(asyncio.run, call(), give_up_by=give_up)


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
    reused: bool = False
    """Whether its calls run on reused, seasoned threads (bound to *callers* by the fixture)."""
    callers: Callers | None = None

    def start(
        self, pool: AnyPool, payload: Any, *, give_up: bool = False, after: float = GIVE_UP_AFTER
    ) -> Pending:
        run: Runner = _threaded
        if self.reused:
            assert self.callers is not None, "a reused-thread path needs the callers fixture"
            run = self.callers
        return self.starter(pool, payload, after if give_up else None, run)

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
        # Cancelling the awaiting task is its way to give up (docs/semantics.md).
        CallPath("aprocess", _aprocess, True, asyncio.CancelledError, asyncio.CancelledError),
        CallPath("try_process", _try_process, False, None, None),
        CallPath("try_submit", _try_submit, False, None, None),
    ]
}
# The blocking calls again, each made from a thread that has made calls before.
PATHS.update(
    {
        f"{name}-reused": attrs.evolve(PATHS[name], name=f"{name}-reused", reused=True)
        for name in ["process", "process_timed", "process_ctx", "try_process"]
    }
)
WAITING = sorted(name for name, path in PATHS.items() if path.waits_in_line)
LEAVING = sorted(name for name, path in PATHS.items() if path.leaves_the_line)
INTERRUPTING = sorted(name for name, path in PATHS.items() if path.interrupts_its_job)
