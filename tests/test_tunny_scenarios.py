"""Tunny's own test scenarios, translated (func, timed, callback, hooks, size, close, parallel)."""

from __future__ import annotations

import threading

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, double, wait_for


class MockWorker(tunnypy.BaseWorker[int, int]):
    """Counts its hooks, like Tunny's mockWorker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready_calls = 0
        self.interrupts = 0
        self.terminated = False
        self.gate: Gate | None = None

    def process(self, payload: int) -> int:
        if self.gate is not None:
            self.gate()
        return payload * 2

    def block_until_ready(self) -> None:
        with self.lock:
            self.ready_calls += 1

    def interrupt(self) -> None:
        with self.lock:
            self.interrupts += 1

    def terminate(self) -> None:
        self.terminated = True


class TestTunnyScenarios:
    def test_pool_size_adjustment(self) -> None:
        """Sizes 10, 9, 5, 1, 0, 10 are each reached; close leaves 0 (TestPoolSizeAdjustment)."""
        pool = tunnypy.Pool.from_func(10, double)
        for size in (10, 10, 9, 5, 1, 0, 10):
            pool.set_size(size, wait=True, timeout=WAIT)
            assert pool.size == size
            wait_for(lambda s=size: pool.stats().workers == s, f"{size} workers")  # type: ignore[misc]
        pool.close()
        assert pool.size == 0
        assert pool.stats().workers == 0

    def test_func_job(self) -> None:
        """Ten process(10) calls each return 20 (TestFuncJob)."""
        with tunnypy.Pool.from_func(10, double) as pool:
            for _ in range(10):
                assert pool.process(10) == 20

    def test_func_job_timed(self) -> None:
        """Ten process_timed(10, ...) calls each return 20 (TestFuncJobTimed)."""
        with tunnypy.Pool.from_func(10, double) as pool:
            for _ in range(10):
                assert pool.process_timed(10, WAIT) == 20

    def test_callback_job(self) -> None:
        """Callbacks run; a non-callable payload is an error (TestCallbackJob)."""
        seen: list[int] = []
        with tunnypy.Pool.from_callback(10) as pool:
            for i in range(10):
                pool.process(lambda i=i: seen.append(i))  # type: ignore[misc]
            with pytest.raises(TypeError):
                pool.process(10)  # type: ignore[arg-type]
        assert sorted(seen) == list(range(10))

    def test_timeout(self) -> None:
        """A job longer than its deadline times out (TestTimeout)."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(10, 0.001)
            gate.release.set()

    def test_timed_jobs_after_close(self) -> None:
        """process_timed after close raises PoolClosedError (TestTimedJobsAfterClose)."""
        pool = tunnypy.Pool.from_func(1, double)
        pool.close()
        with pytest.raises(tunnypy.PoolClosedError):
            pool.process_timed(10, WAIT)

    def test_jobs_after_close(self) -> None:
        """process after close raises PoolClosedError instead of panicking (TestJobsAfterClose)."""
        pool = tunnypy.Pool.from_func(1, double)
        pool.close()
        with pytest.raises(tunnypy.PoolClosedError):
            pool.process(10)

    def test_parallel_jobs(self) -> None:
        """Many callers on many threads all get their own results (TestParallelJobs)."""
        with tunnypy.Pool.from_func(10, double) as pool:

            def caller(i: int) -> list[int]:
                return [pool.process(i + k) for k in range(50)]

            calls = [Call(caller, i) for i in range(10)]
            for i, call in enumerate(calls):
                assert call.wait() == [2 * (i + k) for k in range(50)]
            assert pool.stats().completed == 500

    def test_custom_worker_hooks(self) -> None:
        """Hooks: ready per job, interrupt per timeout, terminate on close (TestCustomWorker)."""
        workers: list[MockWorker] = []

        def factory() -> MockWorker:
            workers.append(MockWorker())
            return workers[-1]

        pool = tunnypy.Pool(1, factory)
        worker = workers[0]
        for i in range(10):
            assert pool.process(i) == i * 2
        wait_for(lambda: worker.ready_calls == 11, "the worker to offer itself again")
        worker.gate = Gate()
        with pytest.raises(tunnypy.JobTimedOutError):
            pool.process_timed(1, 0.01)
        worker.gate.release.set()
        wait_for(lambda: pool.stats().busy == 0, "the timed-out job to end")
        assert worker.interrupts == 1
        assert not worker.terminated
        pool.close()
        assert worker.terminated
