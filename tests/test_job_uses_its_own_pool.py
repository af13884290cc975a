"""A job that resizes, closes or calls its own pool never deadlocks it."""

from __future__ import annotations

import threading

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    Gate,
    wait_for,
)


class TestJobUsesItsOwnPool:
    def test_a_job_resizes_its_own_pool(self) -> None:
        """set_size() from a job, growing and shrinking with wait=True, returns."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(size: int) -> int:
            holder[0].set_size(size, wait=True, timeout=WAIT)
            return holder[0].size

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            assert pool.process(5) == 5
            assert pool.process(0) == 0  # retires itself too; its own result still arrives
            # The worker that ran that job leaves after delivering it.
            wait_for(lambda: pool.stats().workers == 0, "the last worker to leave")
        finally:
            assert pool.close(timeout=WAIT)

    def test_a_job_closes_its_own_pool(self) -> None:
        """close() from a job returns; the job's own caller gets its result."""
        holder: list[tunnypy.Pool[int, bool]] = []

        def job(_: int) -> bool:
            return holder[0].close(timeout=WAIT)

        pool = tunnypy.Pool.from_func(3, job)
        holder.append(pool)
        assert pool.process(1) in (True, False)
        assert pool.closed
        assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("how", ["close", "set_size"])
    def test_two_jobs_closing_their_own_pool_do_not_wait_for_each_other(self, how: str) -> None:
        """Two jobs that each close (or shrink to 0 with wait) the pool both return (regression)."""
        both = threading.Barrier(2, timeout=WAIT)
        holder: list[tunnypy.Pool[int, bool]] = []

        def job(_: int) -> bool:
            both.wait()
            if how == "close":
                return holder[0].close()
            return holder[0].set_size(0, wait=True)

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            first, second = pool.submit(1), pool.submit(2)
            first.result(WAIT)
            second.result(WAIT)
        finally:
            assert pool.close(timeout=WAIT)

    def test_nested_calls_are_served_until_the_last_worker_would_wait(self) -> None:
        """With 2 workers both running jobs, one nested call waits, the other raises; both end."""
        both = threading.Barrier(2, timeout=WAIT)
        holder: list[tunnypy.Pool[int, object]] = []

        def job(depth: int) -> object:
            if depth:
                return depth
            both.wait()
            try:
                return holder[0].process(1)
            except tunnypy.PoolDeadlockError as exc:
                return exc

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            futures = [pool.submit(0), pool.submit(0)]
            outcomes = [f.result(WAIT) for f in futures]
            assert outcomes.count(1) == 1
            assert sum(isinstance(o, tunnypy.PoolDeadlockError) for o in outcomes) == 1
        finally:
            assert pool.close(timeout=WAIT)

    def test_a_job_waiting_on_another_full_pool_is_not_a_deadlock(self) -> None:
        """A job on pool A that calls a busy pool B waits there: only its own pool can deadlock."""
        gate = Gate()
        inner = tunnypy.Pool.from_callback(1)
        outer: tunnypy.Pool[int, object] = tunnypy.Pool.from_func(
            1, lambda n: inner.process(lambda: n * 2)
        )
        try:
            busy = inner.submit(gate)
            assert gate.started.wait(WAIT)
            call = Call(outer.process, 21)
            wait_for(lambda: inner.queue_length == 1, "the nested call to wait in inner's line")
            gate.release.set()
            assert call.wait() == 42
            assert busy.result(WAIT) is None
            assert outer.stats().rejected == inner.stats().rejected == 0
        finally:
            assert outer.close(timeout=WAIT)
            assert inner.close(timeout=WAIT)
