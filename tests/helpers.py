"""Gated workers and small tools for ordering threads without sleeps."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

import tunnypy

WAIT = 10.0
"""Upper bound on any wait in a test; a test that reaches it has failed."""


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll *predicate* (with a bounded, event-based wait) until it holds."""
    event = threading.Event()
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not predicate():
            if deadline.is_set():
                raise AssertionError(f"timed out waiting for {what}")
            event.wait(0.001)
    finally:
        timer.cancel()
        timer.join()


@attrs.define(eq=False)
class Gate:
    """A job that signals when it starts and blocks until released."""

    started: threading.Event = attrs.Factory(threading.Event)
    release: threading.Event = attrs.Factory(threading.Event)

    def __call__(self, value: Any = None) -> Any:
        self.started.set()
        if not self.release.wait(WAIT):
            raise AssertionError("gate was never released")
        return value


@attrs.define(eq=False)
class RecordingWorker(tunnypy.BaseWorker[Any, Any]):
    """A worker that counts its hook calls and runs callable payloads."""

    lock: threading.Lock = attrs.Factory(threading.Lock)
    processed: int = 0
    readied: int = 0
    interrupts: int = 0
    terminated: int = 0

    def process(self, payload: Any) -> Any:
        with self.lock:
            self.processed += 1
        return payload() if callable(payload) else payload

    def block_until_ready(self) -> None:
        with self.lock:
            self.readied += 1

    def interrupt(self) -> None:
        with self.lock:
            self.interrupts += 1

    def terminate(self) -> None:
        with self.lock:
            self.terminated += 1


class Call:
    """Run ``fn(*args)`` in its own thread and keep what it returned or raised."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._fn = fn
        self._args = args
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self._fn(*self._args)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = WAIT) -> Any:
        """Join the call and return its result, re-raising its error."""
        if not self.done.wait(timeout):
            raise AssertionError("call did not finish in time")
        self.thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result


def double(x: int) -> int:
    return x * 2


def identity(x: int) -> int:
    return x


class RecordingFactory:
    """A worker factory that keeps every RecordingWorker it made, in order."""

    def __init__(self) -> None:
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        self.made.append(RecordingWorker())
        return self.made[-1]


@contextlib.contextmanager
def on_sigusr1(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """Give SIGUSR1 *handler* (a Python handler runs in the main thread) for the block."""
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def sigusr1_to(thread: threading.Thread) -> None:
    """Send SIGUSR1 to *thread*: a system call it is blocked in fails with EINTR."""
    signal.pthread_kill(thread.ident or 0, signal.SIGUSR1)


def sigusr1_until(thread: threading.Thread, entered: threading.Event) -> None:
    """Send SIGUSR1 to *thread* until its handler sets *entered* (see :func:`signal_until`)."""
    signal_until(thread, signal.SIGUSR1, entered)


def signal_until(thread: threading.Thread, signum: int, entered: threading.Event) -> None:
    """
    Send *signum* to *thread* until its handler sets *entered*, for at most WAIT seconds.

    A signal that lands after a thread has let go of the GIL but before it
    sleeps in the system call interrupts nothing: its handler waits until
    the call returns. The next one finds the thread asleep. The handler
    must tolerate running more than once (run its work on the first entry).
    """
    deadline = threading.Event()
    timer = threading.Timer(WAIT, deadline.set)
    timer.start()
    try:
        while not deadline.is_set():
            signal.pthread_kill(thread.ident or 0, signum)
            if entered.wait(0.05):
                return
        raise AssertionError("the signal handler never ran")
    finally:
        timer.cancel()
        timer.join()


class RoleWorker(tunnypy.BaseWorker[str, object]):
    """A worker that plays its role for the payload "go" and echoes anything else."""

    def __init__(self, role: Callable[[], object] | None, together: threading.Barrier) -> None:
        self.role = role
        self.together = together

    def process(self, payload: str) -> object:
        if payload == "go" and self.role is not None:
            # Every role starts only once every worker holds its "go": a
            # role that finished early (or a call it made, served by a
            # worker still idle) would let one worker take two.
            self.together.wait()
            return self.role()
        return payload


class Roles:
    """A factory handing each worker it makes the next role, in the order made (oldest first)."""

    def __init__(self, *roles: Callable[[], object]) -> None:
        self.roles = list(roles)
        self.together = threading.Barrier(len(roles), timeout=WAIT)
        self.made: list[RoleWorker] = []

    def __call__(self) -> RoleWorker:
        worker = RoleWorker(self.roles.pop(0) if self.roles else None, self.together)
        self.made.append(worker)
        return worker


class NestedCall:
    """A role that, once *after* is set, calls its own pool and keeps what it got."""

    def __init__(self, holder: list[tunnypy.Pool[str, object]], after: threading.Event) -> None:
        self.holder = holder
        self.after = after
        self.outcome: object = None
        self.done = threading.Event()

    def __call__(self) -> object:
        assert self.after.wait(WAIT)
        try:
            self.outcome = self.holder[0].process("inner")
        except tunnypy.PoolDeadlockError as exc:
            self.outcome = exc
        self.done.set()
        return None

    def result(self) -> object:
        assert self.done.wait(WAIT), "the nested call never returned"
        return self.outcome


def in_line_behind_busy(pool: tunnypy.Pool[Any, Any], waiting: int, busy: int) -> bool:
    """*waiting* calls in line while *busy* workers hold a job: every job handed out is taken."""
    stats = pool.stats()
    return stats.waiting == waiting and stats.busy == busy


class BoomError(Exception):
    """An error a test raises on purpose."""


class InterruptWorker(tunnypy.BaseWorker[Gate | int, Any]):
    """Records the order of its hooks; interrupt() runs *on_interrupt*."""

    def __init__(self, on_interrupt: Callable[[], None]) -> None:
        self.on_interrupt = on_interrupt
        self.log: list[str] = []
        self.stop = threading.Event()

    def process(self, payload: Gate | int) -> Any:
        self.stop.clear()
        self.log.append(f"start {payload if isinstance(payload, int) else 'gate'}")
        if isinstance(payload, Gate):
            payload.started.set()
            payload.release.wait(WAIT)
            return "gate"
        return payload if not self.stop.is_set() else "interrupted"

    def interrupt(self) -> None:
        self.log.append("interrupt begins")
        self.stop.set()
        try:
            self.on_interrupt()
        finally:
            self.log.append("interrupt ends")


def worker_thread_starts_fail_at(
    monkeypatch: pytest.MonkeyPatch, number: int, before: Callable[[], None]
) -> None:
    """Make the *number*-th worker thread started from now fail to start, after ``before()``."""
    real_start = threading.Thread.start
    starts = [0]

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("tunnypy-worker"):
            starts[0] += 1
            if starts[0] == number:
                before()
                raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)


def run(payload: Callable[[], object]) -> object:
    return payload()


PoolCall = Callable[[tunnypy.Pool[Any, Any], Callable[[], object]], object]

CALLS: dict[str, PoolCall] = {
    "process": lambda pool, job: pool.process(job),
    "process_timed": lambda pool, job: pool.process_timed(job, WAIT),
    # A token without a deadline: the untimed wait, unlike the two above.
    "process_ctx": lambda pool, job: pool.process_ctx(job, tunnypy.CancelToken()),
    "try_process": lambda pool, job: pool.try_process(job),
}


class GatedFactory:
    """Makes RecordingWorkers; from the *hold_from*-th on, each waits for ``release``."""

    def __init__(self, hold_from: int, fail: bool = False) -> None:
        self.hold_from = hold_from
        self.fail = fail
        self.entered = threading.Event()
        self.release = threading.Event()
        self.made: list[RecordingWorker] = []
        self.calls = 0
        self.terminated_on: dict[int, str] = {}

    def __call__(self) -> RecordingWorker:
        self.calls += 1
        if self.calls >= self.hold_from:
            self.entered.set()
            if not self.release.wait(WAIT):
                raise AssertionError("factory never released")
            if self.fail:
                raise OSError("factory failed")
        self.made.append(RecordingWorker())
        return self.made[-1]

    def terminated(self) -> list[int]:
        return [worker.terminated for worker in self.made]


def replaced(pool: tunnypy.Pool[Any, Any], count: int) -> bool:
    """Whether *count* failed workers have left and been replaced: the pool is at its size."""
    stats = pool.stats()
    return stats.replaced == count and stats.workers == stats.size
