"""try_process, try_submit and max_waiting: saying "busy" instead of waiting."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for

Callback = Callable[[], object]


def free_call(pool: tunnypy.Pool[Callback, object], payload: Callback) -> object:
    """try_process *payload*, retrying while the pool's workers are still starting."""
    results: list[object] = []

    def attempt() -> bool:
        try:
            results.append(pool.try_process(payload))
        except tunnypy.PoolBusyError:
            return False
        return True

    wait_for(attempt, "a worker to be free")
    return results[0]


class TestTryProcess:
    """try_process() and try_submit() raise PoolBusyError at once when no worker is free."""

    def test_free_worker_runs_the_job(self) -> None:
        """With a worker free, try_process returns the job's result."""
        with tunnypy.Pool.from_callback(1) as pool:
            assert free_call(pool, lambda: 7) == 7

    def test_busy_pool_raises_at_once_and_starts_nothing(self) -> None:
        """With every worker busy, try_process raises PoolBusyError and its job never runs."""
        with tunnypy.Pool.from_callback(1) as pool:
            gate = Gate()
            busy = pool.submit(gate)
            assert gate.started.wait(WAIT)
            ran: list[int] = []
            with pytest.raises(tunnypy.PoolBusyError, match=r"^no worker is free$"):
                pool.try_process(lambda: ran.append(1))
            stats = pool.stats()
            assert (stats.rejected, stats.waiting) == (1, 0)
            gate.release.set()
            busy.result(WAIT)
        assert ran == []

    def test_try_submit_busy_raises_and_starts_nothing(self) -> None:
        """With every worker busy, try_submit raises PoolBusyError instead of queueing."""
        with tunnypy.Pool.from_callback(2) as pool:
            gates = [Gate(), Gate()]
            futures = [pool.submit(gate) for gate in gates]
            for gate in gates:
                assert gate.started.wait(WAIT)
            ran: list[int] = []
            with pytest.raises(tunnypy.PoolBusyError, match=r"^no worker is free$"):
                pool.try_submit(lambda: ran.append(1))
            assert pool.queue_length == 0
            for gate in gates:
                gate.release.set()
            for future in futures:
                future.result(WAIT)
        assert ran == []

    def test_try_submit_free_returns_future(self) -> None:
        """With a worker free, try_submit returns a future for the result."""

        def increment(x: int) -> int:
            return x + 1

        with tunnypy.Pool.from_func(1, increment) as pool:
            futures: list[Future[int]] = []

            def attempt() -> bool:
                try:
                    futures.append(pool.try_submit(1))
                except tunnypy.PoolBusyError:
                    return False
                return True

            wait_for(attempt, "a worker to be free")
            assert futures[0].result(WAIT) == 2

    def test_busy_error_is_a_runtime_error(self) -> None:
        """PoolBusyError is a TunnypyError and a RuntimeError."""
        assert issubclass(tunnypy.PoolBusyError, tunnypy.TunnypyError)
        assert issubclass(tunnypy.PoolBusyError, RuntimeError)


class TestMaxWaiting:
    """A pool built with max_waiting=N rejects callers past N in line."""

    def test_callers_past_n_are_rejected(self) -> None:
        """With N callers in line, the next process() and submit() raise PoolBusyError."""
        with tunnypy.Pool.from_callback(1, max_waiting=2) as pool:
            gate = Gate()
            running = pool.submit(gate)
            assert gate.started.wait(WAIT)
            waiting = [Call(pool.process, lambda i=i: i) for i in range(2)]
            wait_for(lambda: pool.queue_length == 2, "two callers in line")
            message = r"^waiting line is full \(max_waiting=2\)$"
            with pytest.raises(tunnypy.PoolBusyError, match=message):
                pool.process(lambda: -1)
            with pytest.raises(tunnypy.PoolBusyError, match=message):
                pool.submit(lambda: -1)
            assert pool.stats().rejected == 2
            gate.release.set()
            running.result(WAIT)
            assert [call.wait() for call in waiting] == [0, 1]

    def test_zero_rejects_anyone_who_would_wait(self) -> None:
        """max_waiting=0: a busy pool refuses every caller at once."""
        with tunnypy.Pool.from_callback(1, max_waiting=0) as pool:
            gate = Gate()
            running = pool.submit(gate)
            assert gate.started.wait(WAIT)
            with pytest.raises(tunnypy.PoolBusyError, match=r"max_waiting=0"):
                pool.process(lambda: None)
            gate.release.set()
            running.result(WAIT)

    @pytest.mark.parametrize(
        ("value", "error", "message"),
        [
            (-1, ValueError, r"^max_waiting must be a non-negative int \(got -1\)$"),
            (1.5, TypeError, r"^max_waiting must be a non-negative int \(got float 1.5\)$"),
        ],
    )
    def test_bad_max_waiting_raises(
        self, value: object, error: type[Exception], message: str
    ) -> None:
        """A bad max_waiting raises TypeError/ValueError naming it."""
        with pytest.raises(error, match=message):
            tunnypy.Pool.from_callback(1, max_waiting=value)  # type: ignore[arg-type]
