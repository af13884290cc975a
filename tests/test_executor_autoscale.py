"""Executor.autoscale: the executor's pool sizes itself; set_max_workers waits its turn."""

from __future__ import annotations

import threading

import pytest

import tunnypy
from tests.helpers import WAIT, wait_for


class TestExecutorAutoscale:
    def test_a_call_that_would_wait_grows_it_and_idle_threads_leave(self) -> None:
        """Two calls held at once on autoscale(1, 2): max_workers reads 2, then 1 once idle."""
        both = threading.Barrier(3, timeout=WAIT)
        with tunnypy.Executor(1) as executor:
            executor.autoscale(1, 2, idle_timeout=0.05)
            futures = [executor.submit(both.wait) for _ in range(2)]
            both.wait()
            for future in futures:
                future.result(WAIT)
            assert executor.stats().autoscale_started == 1
            wait_for(lambda: executor.max_workers == 1, "the idle thread to leave")
            with pytest.raises(RuntimeError, match="refused while the pool autoscales"):
                executor.set_max_workers(3)
            executor.autoscale(None)
            executor.set_max_workers(3)
            assert executor.max_workers == 3

    def test_after_shutdown_it_is_refused(self) -> None:
        """As set_max_workers: a RuntimeError naming the shutdown."""
        executor = tunnypy.Executor(1)
        executor.shutdown()
        with pytest.raises(RuntimeError, match="cannot autoscale an executor after shutdown"):
            executor.autoscale(1, 2)
