"""The basic calls: process, from_func, from_callback, submit, stats."""

from __future__ import annotations

import asyncio
import threading
import traceback
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    Gate,
    RecordingFactory,
    RecordingWorker,
    double,
    identity,
    wait_for,
)


def fail(payload: object) -> object:
    raise ValueError(f"bad payload {payload!r}")


class TestProcess:
    def test_returns_the_jobs_result(self) -> None:
        """process() returns what the worker's process() returned for that payload."""
        with tunnypy.Pool.from_func(3, double) as pool:
            assert [pool.process(i) for i in range(20)] == [i * 2 for i in range(20)]

    def test_custom_worker_objects_come_from_the_factory(self) -> None:
        """The factory is called once per worker and each worker keeps its own state."""
        factory = RecordingFactory()
        made = factory.made

        with tunnypy.Pool(4, factory) as pool:
            for i in range(40):
                assert pool.process(i) == i
        assert len(made) == 4
        assert sum(w.processed for w in made) == 40

    def test_exception_reaches_the_caller_with_its_traceback(self) -> None:
        """A job's exception is re-raised in the caller, traceback included."""
        with tunnypy.Pool.from_func(1, fail) as pool:
            with pytest.raises(ValueError, match="bad payload 7") as info:
                pool.process(7)
            frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
            assert "fail" in frames

    def test_worker_stays_in_service_after_an_exception(self) -> None:
        """After a job raises, the same single worker serves the next call."""

        def maybe_fail(x: int) -> int:
            if x < 0:
                raise KeyError(x)
            return x

        with tunnypy.Pool.from_func(1, maybe_fail) as pool:
            with pytest.raises(KeyError):
                pool.process(-1)
            assert pool.process(5) == 5
            stats = pool.stats()
            assert (stats.completed, stats.failed, stats.workers) == (1, 1, 1)

    def test_jobs_run_in_parallel_on_every_worker(self) -> None:
        """With N workers, N jobs run at the same time (they meet at a barrier)."""
        barrier = threading.Barrier(4, timeout=WAIT)
        with tunnypy.Pool[int, int].from_func(4, lambda _: barrier.wait()) as pool:
            calls = [Call(pool.process, i) for i in range(4)]
            assert sorted(c.wait() for c in calls) == [0, 1, 2, 3]


class TestFromCallback:
    def test_runs_the_callable_and_returns_its_value(self) -> None:
        """A callback pool calls each payload and returns its value."""
        with tunnypy.Pool.from_callback(2) as pool:
            assert pool.process(lambda: "done") == "done"

    def test_non_callable_payload_raises_type_error_in_the_caller(self) -> None:
        """A payload that is not callable is refused before it reaches a worker."""
        with tunnypy.Pool.from_callback(1) as pool:
            with pytest.raises(TypeError, match="payload must be a zero-argument callable"):
                pool.process(10)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="got int"):
                pool.submit(10)  # type: ignore[arg-type]
            assert pool.stats().completed == 0


class TestSubmit:
    def test_returns_a_future_at_once(self) -> None:
        """submit() returns before the job runs, and the future gets the result."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            future = pool.submit(3)
            assert not future.done()
            gate.release.set()
            assert future.result(WAIT) == 3

    def test_future_carries_the_exception(self) -> None:
        """A failing submitted job sets the exception on its future."""
        with (
            tunnypy.Pool.from_func(1, fail) as pool,
            pytest.raises(ValueError, match="bad payload 1"),
        ):
            pool.submit(1).result(WAIT)

    def test_waits_in_the_same_line_as_blocking_callers(self) -> None:
        """A submitted request queues behind an earlier blocking caller."""
        gate = Gate()
        order: list[int] = []
        lock = threading.Lock()

        def job(x: int) -> int:
            if x == 0:
                gate(0)
            with lock:
                order.append(x)
            return x

        with tunnypy.Pool.from_func(1, job) as pool:
            first = Call(pool.process, 0)
            assert gate.started.wait(WAIT)
            second = Call(pool.process, 1)
            wait_for(lambda: pool.queue_length == 1, "the blocking caller to queue")
            third = pool.submit(2)
            assert pool.queue_length == 2
            gate.release.set()
            assert (first.wait(), second.wait(), third.result(WAIT)) == (0, 1, 2)
        assert order == [0, 1, 2]

    def test_cancelled_future_leaves_the_line(self) -> None:
        """Cancelling a waiting future removes it from the line; its job never runs."""
        gate = Gate()
        ran: list[int] = []
        with tunnypy.Pool[int, object].from_func(
            1, lambda x: ran.append(x) if x else gate(x)
        ) as pool:
            busy = pool.submit(0)
            assert gate.started.wait(WAIT)
            waiting = pool.submit(1)
            assert pool.queue_length == 1
            assert waiting.cancel()
            assert pool.queue_length == 0
            gate.release.set()
            busy.result(WAIT)
            assert pool.process(2) is None
        assert ran == [2]
        assert pool.stats().cancelled == 1

    def test_works_with_asyncio_wrap_future(self) -> None:
        """A submitted future can be awaited through asyncio.wrap_future."""
        with tunnypy.Pool[int, int].from_func(2, lambda x: x + 1) as pool:

            async def main() -> list[int]:
                futures = [asyncio.wrap_future(pool.submit(i)) for i in range(5)]
                return list(await asyncio.gather(*futures))

            assert asyncio.run(main()) == [1, 2, 3, 4, 5]


class TestStats:
    def test_counts_busy_idle_waiting(self) -> None:
        """stats() reports busy, idle and waiting as they are."""
        gate = Gate()
        with tunnypy.Pool.from_func(2, gate) as pool:
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            first = pool.submit(1)
            assert gate.started.wait(WAIT)
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.busy, stats.idle) == (2, 2, 1, 1)
            second = pool.submit(2)
            third = pool.submit(3)
            wait_for(lambda: pool.stats().waiting == 1, "one request in line")
            assert pool.queue_length == 1
            assert pool.stats().busy == 2
            gate.release.set()
            assert [f.result(WAIT) for f in (first, second, third)] == [1, 2, 3]
            assert pool.stats().completed == 3

    def test_stats_is_a_frozen_value(self) -> None:
        """The snapshot cannot be changed."""
        with tunnypy.Pool.from_func(1, str) as pool:
            stats = pool.stats()
        with pytest.raises(AttributeError):
            stats.size = 3  # type: ignore[misc]

    def test_repr_shows_the_state(self) -> None:
        """repr() names size, idle and waiting, and says when closed."""
        pool = tunnypy.Pool.from_func(2, str)
        wait_for(lambda: pool.stats().idle == 2, "workers to park")
        assert repr(pool) == "<Pool size=2 idle=2 waiting=0>"
        pool.close()
        assert repr(pool) == "<Pool closed idle=0 waiting=0>"


class TestInterrupted:
    def test_false_outside_a_job(self) -> None:
        """interrupted() outside any job is False."""
        assert tunnypy.interrupted() is False

    def test_false_inside_a_job_nobody_gave_up_on(self) -> None:
        """Inside a job whose caller still waits, interrupted() is False."""
        with tunnypy.Pool[None, bool].from_func(1, lambda _: tunnypy.interrupted()) as pool:
            assert pool.process(None) is False


class TestErrors:
    @pytest.mark.parametrize(
        ("error", "builtin"),
        [
            (tunnypy.PoolClosedError, RuntimeError),
            (tunnypy.JobTimedOutError, TimeoutError),
            (tunnypy.JobCancelledError, RuntimeError),
            (tunnypy.WorkerClosedError, RuntimeError),
            (tunnypy.PoolBusyError, RuntimeError),
            (tunnypy.PoolDeadlockError, RuntimeError),
        ],
    )
    def test_errors_share_a_base_and_refine_a_builtin(
        self, error: type[Exception], builtin: type[Exception]
    ) -> None:
        """Each error is a TunnypyError and the builtin it refines."""
        assert issubclass(error, tunnypy.TunnypyError)
        assert issubclass(error, builtin)

    def test_all_is_sorted_and_importable(self) -> None:
        """The public surface is exactly __all__, sorted."""
        names: list[str] = list(tunnypy.__all__)
        assert names == sorted(names)
        for name in names:
            assert getattr(tunnypy, name) is not None

    def test_worker_protocol_is_satisfied_by_base_worker(self) -> None:
        """A BaseWorker subclass is a Worker."""
        worker: Any = RecordingWorker()
        assert isinstance(worker, tunnypy.Worker)


class TestFreeAgainOnReturn:
    def test_try_process_right_after_process_finds_the_worker_free(self) -> None:
        """A function worker is free again before its caller wakes: try_process never says busy."""
        with tunnypy.Pool.from_func(1, identity) as pool:
            for i in range(2000):
                assert pool.process(i) == i
                assert pool.try_process(i) == i
