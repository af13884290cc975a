"""
SingleFlight: one call per key at a time, its outcome shared by every caller.

The first caller for a key (the leader) registers a flight under the lock,
runs the function in its own thread, stores the outcome, removes the flight
and only then wakes the others. A caller arriving after the removal starts a
new flight: results are shared between concurrent callers, never cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, final

import attrs

from ._log import debug_enabled, log, safe_repr
from .exceptions import PoolDeadlockError

__all__ = ["SingleFlight"]

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class _Flight(Generic[R]):
    """One call in progress: its outcome, once ``done`` is set."""

    __slots__ = ("done", "error", "followers", "leader", "result")

    def __init__(self, leader: int) -> None:
        self.done = threading.Event()
        self.result: R | None = None
        self.error: BaseException | None = None
        self.followers = 0
        self.leader = leader  # the leader's thread id: a do() from it would wait for itself


@final
@attrs.define(eq=False, init=False)
class SingleFlight(Generic[K, R]):
    """
    Run a function once for all callers that ask for the same key at the same time.

    The stampede guard: when a cache entry expires and a hundred threads
    want it, one of them computes it and the other ninety-nine get its
    result (or its exception).

    Not guaranteed: nothing is cached; a call that starts after the flight
    for its key ended runs the function again. Followers wait as long as the
    leader's function runs. Every caller of one flight gets the *same*
    exception object, so its ``__traceback__`` shows whichever caller raised
    it last.

    .. versionadded:: 0.1.0
    """

    _lock: threading.Lock
    _flights: dict[K, _Flight[R]]

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights = {}

    def do(self, key: K, fn: Callable[[], R]) -> R:
        """
        Return ``fn()``, or the outcome of the call for *key* already in flight.

        The first caller for *key* runs *fn* in its own thread; callers that
        arrive while it runs wait for it instead and get the same result, or
        the same exception raised. Their own *fn* is not called.

        Raises:
            TypeError: *fn* is not callable, or *key* is not hashable.
            PoolDeadlockError: Called from the function of the flight for
                *key*, in the leader's thread: it would wait for itself.
            BaseException: Whatever the flight's function raised.
        """
        if not callable(fn):
            msg = f"fn must be callable (got {type(fn).__name__})"
            raise TypeError(msg)
        me = threading.get_ident()
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight(me)
            elif flight.leader == me:
                msg = (
                    "do() was called for a key whose flight this thread is running; "
                    "it would wait for itself"
                )
                raise PoolDeadlockError(msg)
            else:
                flight.followers += 1
        if not leader:
            flight.done.wait()
            return _outcome(flight)
        try:
            flight.result = fn()
        except BaseException as exc:
            flight.error = exc
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        if flight.followers and debug_enabled():
            log.debug("single_flight_shared", key=safe_repr(key), followers=flight.followers)
        return _outcome(flight)

    def waiting(self, key: K) -> int:
        """How many callers wait for the flight of *key* now, besides its leader (0 if none)."""
        with self._lock:
            flight = self._flights.get(key)
            return 0 if flight is None else flight.followers

    @property
    def in_flight(self) -> int:
        """How many keys have a call in progress now."""
        return len(self._flights)

    def __repr__(self) -> str:
        return f"<SingleFlight {len(self._flights)} in flight>"


def _outcome(flight: _Flight[R]) -> R:
    error = flight.error
    if error is not None:
        raise error
    return flight.result  # type: ignore[return-value]
