"""
The errors tunnypy raises.

Every error shares the base :class:`TunnypyError` and also subclasses the
builtin it refines, so ``except TimeoutError`` catches a timed-out job and
``except RuntimeError`` catches a closed pool. They live in
``tunnypy.exceptions`` and are re-exported from ``tunnypy``.
"""

from __future__ import annotations

__all__ = [
    "JobCancelledError",
    "JobTimedOutError",
    "PoolBusyError",
    "PoolClosedError",
    "PoolDeadlockError",
    "PoolStalledError",
    "TunnypyError",
    "WorkerClosedError",
    "WorkerCrashedError",
]


class TunnypyError(Exception):
    """Base class of every error tunnypy raises itself."""


class PoolClosedError(TunnypyError, RuntimeError):
    """The pool was closed (or the process forked) before the call could be served."""


class JobTimedOutError(TunnypyError, TimeoutError):
    """The call's deadline passed before its job returned."""


class JobCancelledError(TunnypyError, RuntimeError):
    """The call's :class:`~tunnypy.CancelToken` was cancelled before its job returned."""


class WorkerClosedError(TunnypyError, RuntimeError):
    """
    A worker was used after it had been terminated.

    Reserved for worker code: the pool itself does not raise it.
    """


class PoolBusyError(TunnypyError, RuntimeError):
    """
    No worker was free and the call asked not to wait, or the line was full.

    Raised by the ``try_*`` calls, by a call beyond *max_waiting*, and by an
    :class:`~tunnypy.Executor`'s ``submit`` with ``when_full="raise"``.
    """


class PoolDeadlockError(TunnypyError, RuntimeError):
    """
    A call would wait forever for itself.

    A job called its own pool while every other worker was waiting on that
    same pool, directly or through the calls it waited for; a
    :class:`Limiter` task called ``run()`` while every slot was held by a
    task waiting in ``run()``; a :class:`SingleFlight` function called
    ``do()`` on its own key; or every worker of an :class:`Executor` would
    wait in ``submit()`` for room in its line.
    """


class PoolStalledError(TunnypyError, RuntimeError):
    """
    The pool has had no worker for its ``stall_timeout`` while replacing failed ones.

    Its message names the last failure: the worker factory's exception, or
    the one that ended the last worker. Calls are refused with it until a
    worker is back.
    """


class WorkerCrashedError(TunnypyError, RuntimeError):
    """
    The worker's process died while it ran the job (``isolation="process"``).

    Its message names the exit code or the signal (``killed by SIGSEGV``), or
    that the pool killed it after ``kill_grace``; for another isolation, the
    cause it reports. Only the job running then fails; the worker is started
    again before it takes another job.
    """
