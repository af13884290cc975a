"""
An asyncio caller: the waker that wakes its event loop, and its wait.

``Pool.aprocess`` puts its job in the same line as every other caller
(``Line.dispatch``); only the waiting differs. A thread sleeps on its waker;
a coroutine awaits an asyncio future, which its ``AsyncWaker`` resolves from
whichever thread wakes it (the worker delivering, ``close()`` refusing, a
resize ending a stranded call), through its loop's ``LoopWakes``: one
``loop.call_soon_threadsafe`` per batch of wakes, and a bounded number of
coroutines resumed per loop iteration. No thread waits for the coroutine, and
the loop is never blocked for longer than the pool's lock and the job's gate
are held. See docs/design.md, "asyncio callers".
"""

from __future__ import annotations

import _thread
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from ._job import DONE, Job, worker_tls
from ._line import CANCELLED, TIMED_OUT, Line
from .exceptions import JobTimedOutError, TunnypyError

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

__all__ = ["BEHIND", "BEHIND_PAUSE", "RESUMES_PER_TURN", "AsyncWaker", "LoopWakes", "call_async"]

_monotonic = time.monotonic

# At most this many waiting coroutines are woken per turn of their loop, so
# that timers and I/O get a turn between batches (docs/design.md, "asyncio callers").
RESUMES_PER_TURN = 64
# A worker that wakes a coroutine of a loop this many wakes behind pauses
# for BEHIND_PAUSE seconds, outside any lock, before it goes on.
BEHIND = 16 * RESUMES_PER_TURN
BEHIND_PAUSE = 0.0001
_sleep = time.sleep


class LoopWakes:
    """
    The wakes bound for one event loop's coroutines, handed over in batches.

    ``wake()``, from any thread, queues a waker and schedules ``run`` on the
    loop with ``call_soon_threadsafe`` only if no run is scheduled yet: a
    worker delivering to a busy loop queues and goes on, after a pause of
    ``BEHIND_PAUSE`` once ``BEHIND`` wakes wait (only a worker thread
    pauses: ``close()`` refusing thousands of calls does not). ``run``, on the loop,
    resolves at most ``RESUMES_PER_TURN`` of them, oldest first, and
    schedules itself for the next turn while more wait.
    """

    __slots__ = ("__weakref__", "lines", "lock", "loop_ref", "pending", "scheduled")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            ref: Callable[[], asyncio.AbstractEventLoop | None] = weakref.ref(loop)
        except TypeError:  # a loop that cannot be weakly referenced is kept
            ref = lambda: loop  # noqa: E731
        # Weak: a thread keeps its last loop's LoopWakes (_local), not the loop.
        self.loop_ref = ref
        self.lock = _thread.allocate_lock()
        self.pending: deque[AsyncWaker] = deque()
        self.scheduled = False  # a run is scheduled on the loop, or running
        # The lines its coroutines have waited in, by id, held weakly: where
        # to look for their jobs once the loop is found closed (see sweep).
        self.lines: dict[int, weakref.ref[Line]] = {}

    def note_line(self, line: Line) -> None:
        """On the loop's thread: a coroutine of this loop is about to wait in *line*."""
        ref = self.lines.get(id(line))
        if ref is None or ref() is not line:
            self.lines[id(line)] = weakref.ref(line)

    def wake(self, waker: AsyncWaker) -> None:
        with self.lock:
            self.pending.append(waker)
            if self.scheduled:
                loop = self.loop_ref()
                if loop is not None and not loop.is_closed():
                    behind = len(self.pending) > BEHIND
                    closed = None
                else:
                    # Closed with a run scheduled, which close() dropped.
                    self.pending.clear()
                    self.scheduled = False
                    closed = True
            else:
                self.scheduled = True
                closed = False
        if closed is None:
            if behind and worker_tls.runner is not None:
                # Let the loop's thread have the GIL, which a worker that never
                # blocks would hold for its switch interval at a time
                # (docs/design.md, "asyncio callers").
                _sleep(BEHIND_PAUSE)
            return
        if closed:
            self.sweep()
            return
        try:
            self._schedule()
        except BaseException:
            # Ctrl-C (in a close() on the main thread) as the schedule began
            # may have scheduled nothing: once more, as Line.dispatch does.
            self._schedule()
            raise

    def _schedule(self) -> None:
        loop = self.loop_ref()
        try:
            if loop is not None:
                loop.call_soon_threadsafe(self.run)
                return
        except RuntimeError:
            pass  # the loop is closed: nothing awaits these jobs any more
        with self.lock:
            self.pending.clear()
            self.scheduled = False
        self.sweep()

    def sweep(self) -> None:
        """
        The loop is closed: withdraw its coroutines' jobs still in line, as cancelled.

        No one will ever await them. Skipped for a line whose lock is held,
        which may be this thread's own (a wake given under the lock): its
        jobs go on waiting until the next sweep, or run as before.
        """
        for ref in list(self.lines.values()):
            line = ref()
            if line is None or not line.lock.acquire(blocking=False):
                continue
            try:
                stranded = [
                    job
                    for job in line.waiting
                    if isinstance(job.waker, AsyncWaker) and job.waker.wakes is self
                ]
            finally:
                line.lock.release()
            for job in stranded:
                line.withdraw(job, CANCELLED)

    def run(self) -> None:
        """On the loop's thread: resolve the oldest waiting wakes, then yield the turn."""
        pending = self.pending
        try:
            for _ in range(min(len(pending), RESUMES_PER_TURN)):
                pending.popleft().resolve()
        finally:
            with self.lock:
                done = not pending
                if done:
                    self.scheduled = False
            if not done:
                loop = self.loop_ref()
                if loop is not None:
                    loop.call_soon(self.run)


class _Local(threading.local):
    # The LoopWakes of the loop this thread last awaited aprocess on.
    wakes: LoopWakes | None = None


_local = _Local()


def loop_wakes(loop: asyncio.AbstractEventLoop) -> LoopWakes:
    """On *loop*'s thread: its ``LoopWakes``, shared by every call awaited on it."""
    wakes = _local.wakes
    if wakes is None or wakes.loop_ref() is not loop:
        if wakes is not None:
            last = wakes.loop_ref()
            if last is None or last.is_closed():
                # This thread's last loop was closed with calls in line.
                wakes.sweep()
        wakes = _local.wakes = LoopWakes(loop)
    return wakes


class AsyncWaker:
    """
    A waker for a coroutine: ``wake()`` resolves the future it awaits, from any thread.

    Only ever woken, never waited on in a thread: ``wait`` and
    ``wait_forever`` raise. A wake after the loop closed is dropped (no one
    awaits any more), so the thread that wakes, often a worker delivering an
    outcome, never fails because of it.
    """

    __slots__ = ("future", "loop", "wakes")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.wakes = loop_wakes(loop)
        # The future the coroutine awaits now; a new one for each wait, made
        # and resolved on the loop's thread only.
        self.future: asyncio.Future[None] = loop.create_future()

    def wake(self) -> None:
        self.wakes.wake(self)

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
    waker.wakes.note_line(line)
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
