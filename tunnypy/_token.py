"""CancelToken: Tunny's ``context.Context`` for :meth:`Pool.process_ctx`."""

from __future__ import annotations

import _thread
import math
import time
from typing import TYPE_CHECKING, final

from ._checks import check_timeout

if TYPE_CHECKING:
    from ._waker import Waker

__all__ = ["CancelToken"]


@final
class CancelToken:
    """
    A cancellation signal that any thread may fire, with an optional deadline.

    Tunny's ``context.Context`` for :meth:`Pool.process_ctx`. One token may
    govern many calls at once, like a Go context. ``cancel()``
    wakes every call waiting on the token; they end with
    :class:`~tunnypy.JobCancelledError`. Once its deadline passes, calls end
    with :class:`~tunnypy.JobTimedOutError` instead.

    Args:
        timeout: Seconds from now until the deadline, any real number
            (``int``, ``float``, ``Fraction``, ``Decimal``); ``None`` or
            ``float("inf")`` for none. One too large for a ``float`` is infinite.

    Raises:
        TypeError: *timeout* is not a real number (or is a ``bool``).
        ValueError: *timeout* is negative or NaN.

    Not guaranteed: cancelling cannot stop a job that does not check
    :func:`tunnypy.interrupted` or react to its worker's ``interrupt()``; the
    caller stops waiting at once, the job runs on until it returns.
    """

    __slots__ = ("_cancelled", "_deadline", "_lock", "_wakers")

    def __init__(self, *, timeout: float | None = None) -> None:
        self._deadline: float | None = None
        if timeout is not None:
            timeout = check_timeout(timeout, "timeout")
            if not math.isinf(timeout):
                self._deadline = time.monotonic() + timeout
        self._cancelled = False
        self._lock = _thread.allocate_lock()
        self._wakers: dict[Waker, int] = {}

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` has been called (the deadline does not set this)."""
        return self._cancelled

    @property
    def deadline(self) -> float | None:
        """The deadline as a ``time.monotonic()`` value, or ``None``."""
        return self._deadline

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._deadline is not None and time.monotonic() >= self._deadline

    def remaining(self) -> float | None:
        """Seconds left until the deadline (never negative), or ``None`` without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    def cancel(self) -> None:
        """Cancel every call governed by this token. Safe to call twice and from any thread."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            wakers = list(self._wakers)
        try:
            for waker in wakers:
                waker.wake()
        except BaseException:
            # Ctrl-C as a wake began may have woken no one: wake them all
            # again, spare wakes are harmless (a second Ctrl-C is not covered).
            for waker in wakers:
                waker.wake()
            raise

    def _register(self, waker: Waker) -> None:
        with self._lock:
            self._wakers[waker] = self._wakers.get(waker, 0) + 1

    def _unregister(self, waker: Waker) -> None:
        with self._lock:
            count = self._wakers.pop(waker, 0) - 1
            if count > 0:
                self._wakers[waker] = count

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else ("expired" if self.expired else "live")
        return f"<CancelToken {state} deadline={self._deadline!r}>"
