"""
A pool that its own workers reference is not collected when dropped: close it.

Its threads hold its workers (and its factory), so whatever those reference
is reachable for as long as the threads run, and a pool among it is never
garbage. The docs say so; these tests pin down what that means and the two
ways out: ``close()``, or a weak reference from the job to its pool.
"""

from __future__ import annotations

import gc
import threading
import weakref
from typing import Any

import tunnypy
from tests.helpers import WAIT


def new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t not in before]


def all_ended(threads: list[threading.Thread]) -> bool:
    for thread in threads:
        thread.join(WAIT)
    return not any(t.is_alive() for t in threads)


class TestAPoolItsJobsReference:
    def test_is_not_collected_when_dropped_and_ends_when_closed(self) -> None:
        """Dropped, it lives on with its threads; an explicit close() ends them."""
        before = set(threading.enumerate())

        def start() -> weakref.ref[tunnypy.Pool[int, int]]:
            pool: tunnypy.Pool[int, int]

            def size_of_own_pool(_: int) -> int:
                return pool.size  # the job reaches its own pool

            pool = tunnypy.Pool.from_func(2, size_of_own_pool)
            assert pool.process(0) == 2
            return weakref.ref(pool)

        pool = start()  # the caller keeps no reference
        threads = new_threads(before)
        gc.collect()
        # The function, held by the workers' threads, holds the pool.
        dropped = pool()
        assert dropped is not None
        assert not dropped.closed
        assert all(t.is_alive() for t in threads)
        assert dropped.close(timeout=WAIT)
        assert all_ended(threads)

    def test_reached_through_a_weak_reference_is_collected_and_its_threads_end(self) -> None:
        """A job that reaches its pool through ``weakref.ref`` does not keep it alive."""
        before = set(threading.enumerate())
        own: list[weakref.ref[tunnypy.Pool[int, int]]] = []

        def size_of_own_pool(_: int) -> int:
            pool = own[0]()
            return -1 if pool is None else pool.size

        pool: Any = tunnypy.Pool.from_func(2, size_of_own_pool)
        own.append(weakref.ref(pool))
        assert pool.process(0) == 2
        threads = new_threads(before)
        del pool
        gc.collect()
        assert own[0]() is None
        assert all_ended(threads)
