"""The deadlock check of a job's call on its own pool, on process()'s own ways into the line."""

from __future__ import annotations

import threading

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    wait_for,
)
from tunnypy._waker import Waker


class TestJobUsesItsOwnPool:
    def test_a_job_calling_its_own_full_pool_raises_deadlock_error(self) -> None:
        """process() from a job on a size-1 pool raises PoolDeadlockError instead of hanging."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(depth: int) -> int:
            if depth:
                return depth
            return holder[0].process(depth + 1)

        pool = tunnypy.Pool.from_func(1, job)
        holder.append(pool)
        try:
            with pytest.raises(tunnypy.PoolDeadlockError, match="its own pool"):
                Call(pool.process, 0).wait()
            assert pool.stats().rejected == 1
            assert pool.process(5) == 5
        finally:
            assert pool.close(timeout=WAIT)


class HeldWake:
    """A parked worker's waker that counts wakes and delivers none, as if its thread were slow."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.wait_forever = waker.wait_forever
        self.wakes = 0

    def wait(self, timeout: float | None = None) -> bool:
        return self.waker.wait(timeout)

    def wake(self) -> None:
        self.wakes += 1


class TestNestedCallsAndRetirement:
    """A shrink (or a growth undone) never strands a job waiting on its own pool, nor blames one."""

    @pytest.mark.parametrize("timed", [False, True])  # Pool.process inlines dispatch()
    def test_a_nested_call_behind_a_summoned_worker_is_counted(self, timed: bool) -> None:
        """A summoned worker not yet running looks free; retiring it must not strand the call."""
        pool = tunnypy.Pool.from_callback(1)
        core = pool._line
        go = threading.Event()
        outcome: list[object] = []

        def outer() -> None:  # on worker 0
            assert go.wait(WAIT)
            try:
                if timed:
                    outcome.append(pool.process_timed(lambda: "inner", WAIT))
                else:
                    outcome.append(pool.process(lambda: "inner"))
            except tunnypy.PoolDeadlockError as exc:
                outcome.append(exc)

        busy = pool.submit(outer)
        try:
            wait_for(lambda: pool.stats().busy == 1, "worker 0 to take the outer job")
            pool.set_size(2)
            wait_for(lambda: pool.stats().idle == 1, "worker 1 to park")
            summoned = core.idle[0]
            held = HeldWake(summoned.waker)
            summoned.waker = held  # its thread is "not scheduled yet"
            assert pool.submit(lambda: "x").cancel()  # summons worker 1, then leaves the line
            assert core.summoned is summoned and held.wakes == 1
            go.set()  # worker 0's call joins the line: worker 1 is on its way for it
            wait_for(lambda: pool.queue_length == 1, "worker 0's call to wait in line")
            pool.set_size(1)  # retires worker 1
            busy.result(WAIT)
            assert len(outcome) == 1 and isinstance(outcome[0], tunnypy.PoolDeadlockError)
            assert pool.stats().rejected == 1
        finally:
            summoned.waker = held.waker
            held.waker.wake()  # worker 1 answers the summons, and leaves
            go.set()
            busy.result(WAIT)
            assert pool.close(timeout=WAIT)
        assert pool.stats().workers == 0
