"""
Workers and jobs for pools whose workers are child processes (``isolation="process"``).

Everything here pickles, so it can cross into a child. Processes cannot
share a ``threading.Event``; a :class:`Flag` is one across processes: a file
that exists once set, waited for with a bounded poll.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import attrs

import tunnypy

WAIT = 10.0
"""As tests.helpers.WAIT, which is not imported here: children need not import pytest."""
_POLL = 0.001


@attrs.frozen
class Flag:
    """An event shared by processes: set by creating its file, waited for with a bound."""

    path: str

    def set(self, text: str = "") -> None:
        tmp = f"{self.path}.{os.getpid()}.tmp"
        Path(tmp).write_text(text)
        os.replace(tmp, self.path)  # seen whole or not at all

    def is_set(self) -> bool:
        return os.path.exists(self.path)

    def wait(self, timeout: float = WAIT) -> bool:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if time.monotonic() > deadline:
                return False
            time.sleep(_POLL)
        return True

    def read(self) -> str:
        return Path(self.path).read_text()


@attrs.frozen
class Board:
    """A directory where child processes leave records for the test to read."""

    root: str

    def flag(self, name: str) -> Flag:
        return Flag(os.path.join(self.root, name))

    def append(self, name: str, text: str) -> None:
        # One write with O_APPEND: lines from several processes never interleave.
        fd = os.open(os.path.join(self.root, name), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{text}\n".encode())
        finally:
            os.close(fd)

    def lines(self, name: str) -> list[str]:
        path = os.path.join(self.root, name)
        if not os.path.exists(path):
            return []
        return Path(path).read_text().splitlines()


class ChildWorker(tunnypy.BaseWorker[Any, Any]):
    """Runs ``payload(self)`` in its child; records interrupts and terminate() on the board."""

    def __init__(self, board: Board | None = None) -> None:
        self.board = board
        self.pid = os.getpid()
        self.jobs = 0
        self.interrupts = 0
        self.kept: list[bytes] = []
        if board is not None:
            board.append("started", str(self.pid))

    def process(self, payload: Any) -> Any:
        self.jobs += 1
        return payload(self)

    def interrupt(self) -> None:
        self.interrupts += 1
        board = self.board
        if board is not None:
            board.append("interrupts", str(self.pid))
            if board.flag("interrupt.hold").is_set():  # a slow interrupt(), when asked for
                board.flag("interrupt.inside").set()
                if not board.flag("interrupt.leave").wait():
                    raise AssertionError("interrupt() was never let go")

    def terminate(self) -> None:
        if self.board is not None:
            self.board.append("terminated", str(self.pid))


def make_worker(board: Board | None = None) -> ChildWorker:
    """The factory of most process pools in the tests (``functools.partial`` it with a board)."""
    return ChildWorker(board)


def pid(worker: ChildWorker) -> int:
    return os.getpid()


def jobs_run(worker: ChildWorker) -> int:
    return worker.jobs


def interrupts(worker: ChildWorker) -> int:
    return worker.interrupts


def is_interrupted(worker: ChildWorker) -> bool:
    return tunnypy.interrupted()


def main_thread_only(worker: ChildWorker) -> list[str]:
    """The names of the child's threads (to show what runs there)."""
    return sorted(t.name for t in threading.enumerate())


def square(x: int) -> int:
    return x * x


class BoomError(Exception):
    """A job's error, raised on purpose; pickles."""


class UnpicklableError(Exception):
    """An error whose instances cannot be rebuilt from their args."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}-{b}")


def raise_boom(worker: ChildWorker) -> Any:
    raise BoomError("from the child")


def raise_unpicklable(worker: ChildWorker) -> Any:
    raise UnpicklableError(1, 2)


def return_lock(worker: ChildWorker) -> Any:
    return threading.Lock()


@attrs.frozen
class ExitWith:
    """Ends the child at once with exit code *code*, as ``os._exit`` does."""

    code: int

    def __call__(self, worker: ChildWorker) -> Any:
        os._exit(self.code)


def rss(worker: ChildWorker) -> int:
    """The child's resident memory in bytes."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def running(pid: int) -> bool:
    """Whether process *pid* exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rpartition(b")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != b"Z"


def alive(pid: int) -> bool:
    """Whether process *pid* exists (a zombie counts: it is not reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def segfault(worker: ChildWorker) -> Any:
    import ctypes  # noqa: PLC0415 - only the crashing child needs it

    ctypes.string_at(0)  # reads address 0: SIGSEGV


def kill_myself(worker: ChildWorker) -> Any:
    os.kill(os.getpid(), signal.SIGKILL)


@attrs.frozen
class Grow:
    """Keep *size* more bytes alive in the worker (its RSS grows) and return its pid."""

    size: int

    def __call__(self, worker: ChildWorker) -> int:
        block = bytearray(self.size)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
        worker.kept.append(bytes(block))
        return os.getpid()


@attrs.frozen
class Held:
    """Says it started (its pid), waits to be released, returns *value*; notes interrupted()."""

    board: Board
    name: str
    value: Any = None

    @property
    def started(self) -> Flag:
        return self.board.flag(f"{self.name}.started")

    @property
    def release(self) -> Flag:
        return self.board.flag(f"{self.name}.release")

    @property
    def finished(self) -> Flag:
        return self.board.flag(f"{self.name}.finished")

    def ran_on(self) -> int:
        return int(self.started.read())

    def interrupted(self) -> bool:
        return self.finished.read() == "True"

    def __call__(self, worker: ChildWorker) -> Any:
        self.started.set(str(os.getpid()))
        if not self.release.wait():
            raise AssertionError("held job was never released")
        self.finished.set(str(tunnypy.interrupted()))
        return self.value


@attrs.frozen
class Recorded:
    """Appends ``value pid interrupted`` to the board's ``order`` and returns *value*."""

    board: Board
    value: Any

    def __call__(self, worker: ChildWorker) -> Any:
        self.board.append("order", f"{self.value} {os.getpid()} {tunnypy.interrupted()}")
        return self.value


@attrs.frozen
class UntilInterrupted:
    """Says it started, then polls interrupted() (bounded); notes whether it saw it."""

    board: Board
    name: str

    def __call__(self, worker: ChildWorker) -> Any:
        self.board.flag(f"{self.name}.started").set(str(os.getpid()))
        deadline = time.monotonic() + WAIT
        while not tunnypy.interrupted() and time.monotonic() < deadline:
            time.sleep(_POLL)
        self.board.flag(f"{self.name}.saw").set(str(tunnypy.interrupted()))
        return "stopped"


@attrs.frozen
class Stuck:
    """Says it started, then sleeps past any test's bound, ignoring interrupts (killed)."""

    board: Board
    name: str

    def __call__(self, worker: ChildWorker) -> Any:
        self.board.flag(f"{self.name}.started").set(str(os.getpid()))
        time.sleep(WAIT * 6)
        return "never"


def records(board: Board) -> Any:
    """A factory that records on *board* (picklable)."""
    return functools.partial(make_worker, board)


def failing_factory() -> ChildWorker:
    raise BoomError("factory failed in the child")


def unpicklable_factory_result() -> Any:
    return threading.Lock()


@attrs.frozen
class FailWhen:
    """A factory that raises BoomError once *flag* is set."""

    flag: Flag

    def __call__(self) -> ChildWorker:
        if self.flag.is_set():
            raise BoomError("told to fail")
        return ChildWorker()


class ReadyWorker(ChildWorker):
    """A ChildWorker whose block_until_ready records its pid, and holds while asked to."""

    def block_until_ready(self) -> None:
        assert self.board is not None
        self.board.append("ready", str(os.getpid()))
        if self.board.flag("ready.hold").is_set():
            self.board.flag("ready.inside").set()
            if not self.board.flag("ready.go").wait():
                raise AssertionError("block_until_ready was never let go")


@attrs.frozen
class FailTimes:
    """
    A factory that, once *armed* is set, raises BoomError *times* times, then makes workers.

    Each failure appends a line to the board's ``failures``: one child runs
    the factory at a time in a pool of one, so the count is exact.
    """

    board: Board
    times: int

    @property
    def armed(self) -> Flag:
        return self.board.flag("armed")

    def __call__(self) -> ChildWorker:
        if self.armed.is_set() and len(self.board.lines("failures")) < self.times:
            self.board.append("failures", str(os.getpid()))
            raise BoomError("told to fail")
        return ChildWorker()


@attrs.frozen
class CrashWhenReleased:
    """Says it started, waits to be released, then kills its own child (SIGKILL)."""

    board: Board
    name: str

    @property
    def started(self) -> Flag:
        return self.board.flag(f"{self.name}.started")

    @property
    def release(self) -> Flag:
        return self.board.flag(f"{self.name}.release")

    def __call__(self, worker: ChildWorker) -> Any:
        self.started.set(str(os.getpid()))
        if not self.release.wait():
            raise AssertionError("crashing job was never released")
        os.kill(os.getpid(), signal.SIGKILL)
