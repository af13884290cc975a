"""set_size from two threads: the target and a shrink never wait for another thread's factory."""

from __future__ import annotations

from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, GatedFactory, wait_for


def settled(pool: tunnypy.Pool[Any, Any], size: int) -> bool:
    stats = pool.stats()
    return (stats.size, stats.workers, stats.idle) == (size, size, size)


class TestWhileAnotherThreadsFactoryRuns:
    def test_a_shrink_returns_at_once_and_the_growth_starts_no_one_beyond_it(self) -> None:
        """set_size(5) blocked in its factory; set_size(1) returns at once and size reads 1."""
        factory = GatedFactory(hold_from=4)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        try:
            wait_for(lambda: settled(pool, 3), "the first 3 workers to park")
            grow = Call(pool.set_size, 5)
            assert factory.entered.wait(WAIT)
            assert pool.size == 5  # the grower's target, while its factory runs
            shrink = Call(pool.set_size, 1)
            assert shrink.done.wait(WAIT), "the shrink waited for the other thread's factory"
            assert (shrink.wait(), pool.size) == (True, 1)
            factory.release.set()
            assert grow.wait() is True
            assert pool.size == 1
            wait_for(lambda: settled(pool, 1), "the pool to settle at 1")
            # The growth's two workers were made for a target since lowered:
            # never started, and terminated; two of the first three retired.
            terminated = factory.terminated()
            assert (terminated[3:], sorted(terminated[:3])) == ([1, 1], [0, 1, 1])
            assert sum(worker.processed for worker in factory.made[3:]) == 0
            assert [pool.process(n) for n in range(3)] == [0, 1, 2]
        finally:
            factory.release.set()
            assert pool.close(timeout=WAIT)

    def test_size_reads_a_later_target_at_once_and_the_pool_reaches_it(self) -> None:
        """set_size(6) during set_size(4)'s factory: size reads 6 at once; both growths add up."""
        factory = GatedFactory(hold_from=4)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        try:
            grow = Call(pool.set_size, 4)
            assert factory.entered.wait(WAIT)
            later = Call(pool.set_size, 6)
            wait_for(lambda: pool.size == 6, "size to read the later target")
            assert not later.done.is_set()  # a growth waits for the growth in progress
            factory.release.set()
            assert (grow.wait(), later.wait()) == (True, True)
            wait_for(lambda: settled(pool, 6), "the pool to settle at 6")
            assert factory.terminated() == [0] * 6
        finally:
            factory.release.set()
            assert pool.close(timeout=WAIT)

    def test_a_growth_that_fails_after_a_later_shrink_keeps_the_later_target(self) -> None:
        """set_size(5) whose factory fails after set_size(2) began: size stays 2, not 3."""
        factory = GatedFactory(hold_from=4, fail=True)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        try:
            grow = Call(pool.set_size, 5)
            assert factory.entered.wait(WAIT)
            assert pool.set_size(2) is True
            factory.release.set()
            with pytest.raises(OSError, match="factory failed"):
                grow.wait()
            assert pool.size == 2
            wait_for(lambda: settled(pool, 2), "the pool to settle at 2")
        finally:
            factory.release.set()
            assert pool.close(timeout=WAIT)

    def test_a_growth_that_fails_behind_a_failed_growth_falls_back_to_the_size_before_both(
        self,
    ) -> None:
        """set_size(5) and then set_size(6) both fail: size goes back to 3, what the pool had."""
        factory = GatedFactory(hold_from=4, fail=True)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        try:
            first = Call(pool.set_size, 5)
            assert factory.entered.wait(WAIT)
            second = Call(pool.set_size, 6)
            wait_for(lambda: pool.size == 6, "size to read the later target")
            factory.release.set()
            for call in (first, second):
                with pytest.raises(OSError, match="factory failed"):
                    call.wait()
            assert pool.size == 3
            wait_for(lambda: settled(pool, 3), "the pool to settle at 3")
        finally:
            factory.release.set()
            assert pool.close(timeout=WAIT)
