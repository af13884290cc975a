"""
tunnypy: Go's Tunny worker pool for Python.

A :class:`Pool` owns resident worker threads, each running one
:class:`Worker` object; callers hand it payloads with :meth:`Pool.process`,
:meth:`Pool.process_timed`, :meth:`Pool.process_ctx` or :meth:`Pool.submit`.
Workers pull, so a saturated pool slows its callers instead of queueing
without bound.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from ._executor import Executor
from ._flight import SingleFlight
from ._histogram import LatencySummary
from ._job import interrupted
from ._limiter import Limiter
from ._pool import Pool, PoolStats
from ._process import Processes
from ._runner import SingleRunner
from ._token import CancelToken
from ._worker import BaseWorker, Worker
from .exceptions import (
    JobCancelledError,
    JobTimedOutError,
    PoolBusyError,
    PoolClosedError,
    PoolDeadlockError,
    PoolStalledError,
    TunnypyError,
    WorkerClosedError,
    WorkerCrashedError,
)

try:
    #: The installed package's version (``"0+unknown"`` when run from a
    #: source tree that is not installed).
    __version__ = version("tunnypy")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "BaseWorker",
    "CancelToken",
    "Executor",
    "JobCancelledError",
    "JobTimedOutError",
    "LatencySummary",
    "Limiter",
    "Pool",
    "PoolBusyError",
    "PoolClosedError",
    "PoolDeadlockError",
    "PoolStalledError",
    "PoolStats",
    "Processes",
    "SingleFlight",
    "SingleRunner",
    "TunnypyError",
    "Worker",
    "WorkerClosedError",
    "WorkerCrashedError",
    "__version__",
    "interrupted",
]
