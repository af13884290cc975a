"""
Parking: how one thread sleeps until another wakes it.

A waker is an auto-reset flag: ``wake()`` sets it, ``wait()`` sleeps until it
is set and clears it. Wakes are never lost (a wake before the wait makes the
wait return at once) but may be stale (left over from a call that gave up), so
every waiter loops on its own condition.

Two kinds exist. An eventfd waker is the fast one: ``os.eventfd_write``
releases the GIL before the kernel wakes the sleeper, so the sleeper does not
wake only to block again on the GIL, which is what happens when a thread
releases a ``threading.Lock`` while holding the GIL. A lock waker costs no file
descriptor. File descriptors are what the article warns a program runs out
of, so at most ``FD_BUDGET`` eventfds exist per process; past that, and where
eventfd does not exist, wakers fall back to locks. A pool of 10,000 workers
therefore works under the default limit of 1,024 open files.
"""

from __future__ import annotations

import _thread
import os
import select
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Protocol

__all__ = [
    "FD_BUDGET",
    "FdWaker",
    "LockWaker",
    "Waker",
    "acquire_until",
    "cpus_usable",
    "fds_in_use",
    "new_fd_waker",
    "new_waker",
    "wait_until",
    "yield_until_free",
]

FD_BUDGET = 128
"""How many eventfds tunnypy may hold open at once in one process."""

_HAS_EVENTFD = hasattr(os, "eventfd")
_budget_lock = _thread.allocate_lock()
_fds_in_use = 0
# ``threading.Lock.acquire`` rejects timeouts above this.
_TIMEOUT_MAX = threading.TIMEOUT_MAX
# ``select.poll.poll`` takes a C int of milliseconds: about 24.8 days at most.
_POLL_MAX_MS = 2**31 - 1


class Waker(Protocol):
    """
    What one thread sleeps on until another wakes it (see the module docstring).

    ``wake`` and ``wait_forever`` are plain callables, not methods, so an
    eventfd's are C functions. ``wait_forever`` may raise ``InterruptedError``
    after a signal, and every caller then looks at its condition again;
    ``wait`` returns early instead (docs/design.md, "Ctrl-C and other signals").
    """

    @property
    def wake(self) -> Callable[[], object]: ...
    @property
    def wait_forever(self) -> Callable[[], object]: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class LockWaker:
    """A waker built on a raw lock: held means "no wake pending"."""

    __slots__ = ("_lock", "wait_forever")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()
        self.wait_forever: Callable[[], object] = self._lock.acquire

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            return self._lock.acquire()
        return self._lock.acquire(True, min(max(timeout, 0.0), _TIMEOUT_MAX))

    def wake(self) -> None:
        try:  # noqa: SIM105 - cheaper than contextlib.suppress on the hot path
            self._lock.release()
        except RuntimeError:
            pass  # a wake is already pending; wakes do not accumulate


class FdWaker:
    """A waker built on an eventfd (Linux)."""

    __slots__ = ("_fd", "_poll", "polling", "wait_forever", "wake")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._poll: select.poll | None = None
        # True while a timed wait is in poll(), which retries after a signal:
        # a call that the handler makes meanwhile must not share this waker
        # (docs/design.md, "Wakers, and why eventfd").
        self.polling = False
        self.wake = partial(os.eventfd_write, fd, 1)
        self.wait_forever = partial(os.eventfd_read, fd)

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None:
            _read(self._fd)
            return True
        poll = self._poll
        if poll is None:
            poll = self._poll = select.poll()
            poll.register(self._fd, select.POLLIN)
        # poll() rounds milliseconds up and retries after a signal (PEP 475);
        # a wait longer than it takes ends early, and its caller waits again.
        # Marked until the wake is read: a handler's call that read it between
        # poll() and read() would leave read() blocked.
        self.polling = True
        try:
            if not poll.poll(min(max(timeout, 0.0) * 1000.0, _POLL_MAX_MS)):
                return False
            _read(self._fd)
        finally:
            self.polling = False
        return True

    def __del__(
        self,
        _close: Callable[[int], None] = os.close,
        _lock: _thread.LockType = _budget_lock,
    ) -> None:
        # Closed only here, so a referenced waker's fd is never reused. The
        # defaults outlive module teardown, which sets ``_private`` globals to None.
        global _fds_in_use
        _close(self._fd)
        with _lock:
            if _fds_in_use is not None:
                _fds_in_use -= 1


def _read(fd: int) -> None:
    """Read an eventfd; a signal ends the wait early, like a stale wake (see ``Waker``)."""
    try:  # noqa: SIM105 - suppress() costs two frames on the timed path
        os.eventfd_read(fd)
    except InterruptedError:
        # Not a retry: a call made by the signal handler on this thread may
        # have taken this thread's wake, so the caller must look again.
        pass


def new_waker() -> Waker:
    """Return an eventfd waker while the budget allows, else a lock waker."""
    return new_fd_waker() or LockWaker()


def new_fd_waker() -> FdWaker | None:
    """Return an eventfd waker, or None if the budget is spent or eventfd is missing."""
    global _fds_in_use
    if _HAS_EVENTFD:
        with _budget_lock:
            granted = _fds_in_use < FD_BUDGET
            if granted:
                _fds_in_use += 1
        if granted:
            try:
                fd = os.eventfd(0, os.EFD_CLOEXEC)
            except OSError:
                with _budget_lock:
                    _fds_in_use -= 1
            else:
                return FdWaker(fd)
    return None


def acquire_until(lock: _thread.LockType, deadline: float | None) -> bool:
    """
    Take *lock*, giving up at *deadline* (a ``time.monotonic()`` time; ``None``: never).

    A lock takes at most ``TIMEOUT_MAX`` seconds (about 292 years) per wait;
    a later deadline is waited for in turns.
    """
    if deadline is None:
        return lock.acquire()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return lock.acquire(False)
        if lock.acquire(True, min(remaining, _TIMEOUT_MAX)):
            return True


def wait_until(
    condition: threading.Condition, predicate: Callable[[], object], deadline: float | None
) -> bool:
    """``condition.wait_for(predicate)``, under *condition*, giving up at *deadline* (as above)."""
    while not predicate():
        if deadline is None:
            condition.wait()
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            condition.wait(min(remaining, _TIMEOUT_MAX))
    return True


def fds_in_use() -> int:
    """How many eventfds tunnypy holds open now (for tests and the probe)."""
    return _fds_in_use


def cpus_usable() -> int:
    """How many CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# How many times a thread gives up the GIL, waiting for a held pool lock,
# before it blocks on it: far longer than any critical section (performance.md, "Shortcuts").
YIELDS = 100

# Releases the GIL and lets another runnable thread have the CPU.
_yield: Callable[[], object] = getattr(os, "sched_yield", None) or partial(time.sleep, 0)


def yield_until_free(lock: _thread.LockType) -> None:
    """
    Give up the GIL, at most ``YIELDS`` times, until *lock* is free.

    Does not take the lock. A thread that blocks on a held lock sleeps
    without the GIL, and the release makes it the owner while it still waits
    for the GIL; the thread that has the GIL then finds the lock held, sleeps
    in turn, and a convoy forms in which almost every acquisition sleeps
    (docs/design.md, "The pool's lock, and lock convoys"). Yielding leaves the lock to be taken
    by a thread that holds the GIL. Not guaranteed: the lock may be taken
    again before the caller gets to it, and after ``YIELDS`` turns the caller
    blocks on it as before.
    """
    for _ in range(YIELDS):
        _yield()
        if not lock.locked():
            return


def _after_fork_in_child() -> None:
    # A budget lock held at fork by a thread the child lacks would stay locked:
    # release it (any thread may release a raw lock). ``_job`` forgets the wakers
    # after this runs (it imports this module, so its handler is registered
    # later): closing one takes the lock.
    if _budget_lock.locked():
        _budget_lock.release()


os.register_at_fork(after_in_child=_after_fork_in_child)
