"""The Worker protocol, its no-op base, and the function and callback workers."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from ._log import log

__all__ = [
    "BaseWorker",
    "CallbackWorker",
    "FuncWorker",
    "RestartFailed",
    "Worker",
    "check_worker",
    "terminate_quietly",
]

P = TypeVar("P")
R = TypeVar("R")
P_contra = TypeVar("P_contra", contravariant=True)
R_co = TypeVar("R_co", covariant=True)


class RestartFailed(Exception):  # noqa: N818 - a signal to the worker loop, not an error
    """
    A proxy worker's ``block_until_ready`` cannot make its remote worker again (private).

    Raised with the factory's error (or why the remote worker could not
    start) as ``__cause__``. Unlike any other exception from
    ``block_until_ready``, it is not "logged, and counts as ready": the worker
    leaves as failed and the pool replaces it (docs/design.md, "Isolation").
    """


@runtime_checkable
class Worker(Protocol[P_contra, R_co]):
    """
    What a pool runs: one object per worker thread, made by the pool's factory.

    Only ``process()`` is required; a missing ``block_until_ready()``,
    ``interrupt()`` or ``terminate()`` is a no-op, as in :class:`BaseWorker`
    (a type checker, reading the protocol, still asks for all four: subclass
    :class:`BaseWorker` to have them typed). The pool calls every method from
    the worker's own thread, except ``interrupt()``, which the giving-up
    caller's thread calls, and ``terminate()`` of a worker whose thread never
    started, which the thread that grew the pool calls.

    Methods are looked up on the worker object, so one set on the instance
    counts (``self.block_until_ready = limiter.take`` in ``__init__``):
    ``process`` and ``block_until_ready`` once, as the worker's thread starts
    (one set later, in ``process``, is not seen); ``interrupt`` and
    ``terminate`` each time they are called.
    """

    def process(self, payload: P_contra) -> R_co:
        """Run one job and return its result; an exception goes to the caller."""
        ...

    def block_until_ready(self) -> None:
        """
        Block until the worker may take its next job (a rate limit, a reconnect).

        Called before every offer, but not by a worker that has been retired
        (it leaves after its last job), and never when it is
        :class:`BaseWorker`'s no-op or missing. An exception is logged and
        counts as ready.
        """
        ...

    def interrupt(self) -> None:
        """
        Ask the running job to stop: its caller has given up.

        Called from the caller's thread, at most once per job, only after the
        worker took that job; the worker starts nothing new until it returns.
        Not guaranteed: that ``process`` is running. The job may already have
        returned, or not yet have begun. So a worker that keeps a flag should
        clear it at the start of ``process`` and then also stop when
        :func:`tunnypy.interrupted` is true, which belongs to the job and is
        never stale. An exception is logged.
        """
        ...

    def terminate(self) -> None:
        """
        Release the worker's resources; called once, from its thread, as it stops.

        A worker whose thread never started (the growth that made it was
        undone) is terminated from the thread that grew the pool. An
        exception is logged.
        """
        ...


class BaseWorker(abc.ABC, Generic[P, R]):
    """
    A :class:`Worker` with no-op ``block_until_ready``, ``interrupt`` and ``terminate``.

    Subclass it and implement :meth:`process`. A hook set on the instance
    replaces the no-op (see :class:`Worker`).
    """

    @abc.abstractmethod
    def process(self, payload: P) -> R:
        """Run one job and return its result."""

    def block_until_ready(self) -> None:
        """Ready at once."""

    def interrupt(self) -> None:
        """Nothing to interrupt: functions check :func:`tunnypy.interrupted` themselves."""

    def terminate(self) -> None:
        """Nothing to release."""


class FuncWorker(BaseWorker[P, R]):
    """Calls one function with each payload (``Pool.from_func``)."""

    def __init__(self, fn: Callable[[P], R]) -> None:
        # Bind the function itself as ``process``: one call less per job.
        self.process = fn  # type: ignore[method-assign,assignment]

    def process(self, payload: P) -> R:  # pragma: no cover - replaced per instance
        raise NotImplementedError


class CallbackWorker(BaseWorker[Callable[[], object], object]):
    """Calls each payload (``Pool.from_callback``)."""

    __slots__ = ()

    def process(self, payload: Callable[[], object]) -> object:
        return payload()


_MISSING = object()


def check_worker(worker: object) -> None:
    """
    Refuse what a worker factory returned unless a pool can run it.

    ``process`` must be callable; ``block_until_ready``, ``interrupt`` and
    ``terminate`` must be callable or absent (a no-op).

    Raises:
        TypeError: Naming the type that arrived and what it lacks.
    """
    found = getattr(worker, "process", _MISSING)
    if not callable(found):
        what = "which has no process" if found is _MISSING else f"whose process is {_kind(found)}"
        msg = (
            "worker_factory must return a worker with a callable process() "
            f"(got {_kind(worker)}, {what})"
        )
        raise TypeError(msg)
    for name in ("block_until_ready", "interrupt", "terminate"):
        found = getattr(worker, name, _MISSING)
        if found is not _MISSING and not callable(found):
            msg = (
                f"worker_factory must return a worker whose {name} is callable or absent "
                f"(got {_kind(worker)}, whose {name} is {_kind(found)})"
            )
            raise TypeError(msg)


def terminate_quietly(worker: Worker[Any, Any], index: int) -> None:
    """Call *worker*'s ``terminate()``, if it has one; its failure is logged, not raised."""
    # Only the hook's own failure is swallowed: Ctrl-C landing as the lookup
    # returns reaches the caller, which still lists the worker (see Lifecycle._grow).
    try:
        terminate = getattr(worker, "terminate", None)
    except Exception:
        log.exception("terminate_failed", worker=index)
        return
    if terminate is None:  # a missing hook is a no-op
        return
    try:
        terminate()
    except BaseException:  # SystemExit too: it must not end a worker thread noisily
        log.exception("terminate_failed", worker=index)


def _kind(value: object) -> str:
    return type(value).__name__
