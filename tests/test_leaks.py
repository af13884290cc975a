"""Leaks: a dropped pool is collected, and many pool lifetimes leave nothing behind."""

from __future__ import annotations

import gc
import threading
import weakref

import tunnypy
from tests.helpers import WAIT, Gate


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before]


def join_all(threads: list[threading.Thread]) -> list[str]:
    """Join *threads* (bounded); return the names of those still alive."""
    for thread in threads:
        thread.join(WAIT)
    return [t.name for t in threads if t.is_alive()]


class TestDroppedPool:
    def test_a_pool_dropped_without_close_is_collected_and_its_threads_end(self) -> None:
        """No thread keeps the Pool alive; collecting it closes it and every worker ends."""
        before = set(threading.enumerate())
        pool: tunnypy.Pool[int, int] = tunnypy.Pool.from_func(4, abs)
        assert pool.process(-3) == 3
        threads = new_threads(before)
        assert len(threads) == 4
        ref = weakref.ref(pool)
        del pool
        gc.collect()
        assert ref() is None
        assert join_all(threads) == []

    def test_a_dropped_pool_lets_its_running_job_finish(self) -> None:
        """The finalizer closes without waiting: the running job still delivers its result."""
        before = set(threading.enumerate())
        gate = Gate()
        pool = tunnypy.Pool.from_callback(2)
        future = pool.submit(lambda: gate("done"))
        assert gate.started.wait(WAIT)
        threads = new_threads(before)
        ref = weakref.ref(pool)
        del pool
        gc.collect()
        assert ref() is None
        gate.release.set()
        assert future.result(WAIT) == "done"
        assert join_all(threads) == []
