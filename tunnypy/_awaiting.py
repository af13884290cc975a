"""
An asyncio caller: the waker that wakes its event loop, and its wait.

``Pool.aprocess`` puts its job in the same line as every other caller
(``Line.dispatch``); only the waiting differs. A thread sleeps on its waker;
a coroutine awaits an asyncio future, which its ``AsyncWaker`` resolves from
whichever thread wakes it (the worker delivering, ``close()`` refusing, a
resize ending a stranded call), through ``loop.call_soon_threadsafe``. No
thread waits for the coroutine, and the loop is never blocked for longer than
the pool's lock and the job's gate are held. See docs/design.md, "asyncio
callers".
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._job import DONE, Job
from ._line import CANCELLED, TIMED_OUT, Line
from .exceptions import JobTimedOutError, TunnypyError

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["AsyncWaker", "call_async"]

_monotonic = time.monotonic


class AsyncWaker:
    """
    A waker for a coroutine: ``wake()`` resolves the future it awaits, from any thread.

    Only ever woken, never waited on in a thread: ``wait`` and
    ``wait_forever`` raise. A wake after the loop closed is dropped (no one
    awaits any more), so the thread that wakes, often a worker delivering an
    outcome, never fails because of it.
    """

    __slots__ = ("future", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        # The future the coroutine awaits now; a new one for each wait, made
        # and resolved on the loop's thread only.
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        try:  # noqa: SIM105 - suppress() costs a worker's delivery two frames
            self.loop.call_soon_threadsafe(self.resolve)
        except RuntimeError:
            pass  # the loop is closed: nothing awaits this job any more

    def resolve(self) -> None:
        """On the loop's thread: end the current wait (a stale wake is tolerated)."""
        future = self.future
        if not future.done():  # cancelled with its task, or already woken
            future.set_result(None)

    def wait(self, timeout: float | None = None) -> bool:
        raise RuntimeError("an asyncio caller's waker cannot be waited on in a thread")

    @property
    def wait_forever(self) -> Callable[[], object]:
        raise RuntimeError("an asyncio caller's waker cannot be waited on in a thread")


async def call_async(
    line: Line, job: Job, loop: asyncio.AbstractEventLoop, deadline: float | None, call: str
) -> Any:
    """
    Dispatch *job* from a coroutine on *loop*, await it, and return its result.

    *deadline* (a ``time.monotonic()`` time, or ``None``) covers waiting and
    running, as ``process_timed``'s does. Cancelling the awaiting task, or an
    exception thrown into it, withdraws the job as cancelled (out of line, or
    its worker interrupted) and lets the exception go on.

    Raises:
        JobTimedOutError: The deadline passed first; a started job's worker
            was interrupted.
        PoolClosedError, PoolBusyError, PoolDeadlockError: As ``dispatch`` refuses.
        BaseException: What the job raised, with its traceback.
    """
    waker = AsyncWaker(loop)
    job.waker = waker
    timed_out = False
    try:
        # Inside the try: Ctrl-C may land just after dispatch() returns.
        line.dispatch(job, call=call)
        while job.state < DONE:
            if waker.future.done():
                waker.future = loop.create_future()
            if deadline is None:
                await waker.future
                continue
            remaining = deadline - _monotonic()
            if remaining <= 0:
                timed_out = True
                break
            timer = loop.call_later(remaining, waker.resolve)
            try:
                await waker.future
            finally:
                timer.cancel()
    except TunnypyError:
        raise  # refused by dispatch(), and counted: it never got in
    except BaseException:
        # The task was cancelled (directly, by asyncio.timeout or wait_for, by
        # its TaskGroup, by its loop shutting down): an interrupt, as in
        # process_timed. A job already done counts as it ended.
        if job.state < DONE or job.nested is not None:
            line.withdraw(job, CANCELLED)
        raise
    if timed_out and line.withdraw(job, TIMED_OUT):
        raise JobTimedOutError("job did not finish before its deadline")
    if job.nested is not None:  # a job's call on its own pool (see Line._count_nested)
        line.forget_nested(job)
    # Done (withdraw() returns False only then): outcome() does not wait.
    return line.outcome(job)
