"""
Isolation: where a pool's workers live when not on the pool's own threads.

A pool made with ``isolation="thread"`` (the default) runs each worker object
on its worker thread. Any other isolation opens a :class:`Host` when the pool
is made; the pool's worker threads then each hold a *proxy* worker that the
host made (``Host.new_worker``), which runs the real worker somewhere else (a
child process, a Dask worker) and forwards the hooks to it. The pool itself
does not change: the proxy is a :class:`Worker` like any other
(docs/design.md, "Isolation").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import attrs

from ._worker import Worker

__all__ = ["ChildOptions", "Host", "HostCounts", "Isolation", "IsolationStats"]


@attrs.frozen
class ChildOptions:
    """
    What a pool asks of the remote workers its isolation runs (private).

    Each value is already checked by the pool.
    """

    kill_grace: float
    """Seconds between ``interrupt()`` and killing a job that has not returned."""
    max_jobs_per_child: int | None
    """Jobs a remote worker runs before it is replaced between jobs; ``None``: no limit."""
    max_memory_per_child: int | None
    """Bytes of resident memory, read after each job, beyond which it is replaced."""


@attrs.frozen
class IsolationStats:
    """Counters of a host's remote workers, added to :class:`PoolStats` (private)."""

    respawned: int = 0
    """Remote workers started in place of one killed, crashed or recycled."""
    killed: int = 0
    """Remote workers killed because a job outlived its ``kill_grace``."""
    crashed: int = 0
    """Remote workers that died on their own (a signal, ``os._exit``, the OOM killer)."""
    recycled: int = 0
    """Remote workers replaced between jobs (``max_jobs_per_child``, ``max_memory_per_child``)."""


class HostCounts:
    """What a host counts of its remote workers, under its own lock (private)."""

    __slots__ = ("_lock", "crashed", "killed", "recycled", "respawned")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.respawned = self.killed = self.crashed = self.recycled = 0

    def count(self, what: str) -> None:
        """Add one to the counter named *what* (``"respawned"``, ``"killed"``, ...)."""
        with self._lock:
            setattr(self, what, getattr(self, what) + 1)

    def stats(self) -> IsolationStats:
        with self._lock:
            return IsolationStats(
                respawned=self.respawned,
                killed=self.killed,
                crashed=self.crashed,
                recycled=self.recycled,
            )


@runtime_checkable
class Host(Protocol):
    """
    One pool's remote workers: made as the pool is made, closed once as it ends (private).

    ``new_worker`` is called on the thread that grows the pool (the pool's
    factory is ``host.new_worker``); ``close`` once, after every worker's
    ``terminate()`` has run (pool close, collection, interpreter exit).
    """

    def new_worker(self) -> Worker[Any, Any]:
        """
        Start one remote worker and return its proxy once it is ready.

        Raises:
            Exception: What the remote factory raised (its type kept when it
                pickles).
        """
        ...

    def stats(self) -> IsolationStats:
        """The host's counters so far."""
        ...

    def close(self) -> None:
        """End every remote worker still running and release what the host holds."""
        ...


@runtime_checkable
class Isolation(Protocol):
    """
    Where a pool's workers run: what ``Pool(isolation=...)`` takes besides the two names.

    ``open`` is called once per pool, as it is made, with the pool's factory
    (to be called remotely) and its checked options.
    """

    def open(self, factory: Callable[[], Worker[Any, Any]], options: ChildOptions) -> Host:
        """Make the host of one pool's remote workers."""
        ...
