"""The keeper thread: idle times on a fake clock, failing growth, stalls, replacement, GC."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, BoomError, Call, Gate, RecordingWorker, wait_for
from tests.internal.test_replacement import Factory, fail_next_worker
from tunnypy import _keeper, _lifecycle


def held_at_second_call() -> tuple[Factory, threading.Event, threading.Event]:
    """A factory whose second call (the keeper's first) says so, then waits for *go*."""
    in_factory, go = threading.Event(), threading.Event()

    def before(call: int) -> None:
        if call == 2:
            in_factory.set()
            assert go.wait(WAIT)

    return Factory(before=before), in_factory, go


class FakeClock:
    """What the keeper reads idle times from; moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.setattr(_keeper, "_idle_clock", fake)
    yield fake


def keeper_pass(pool: tunnypy.Pool[Any, Any]) -> None:
    """Return once the keeper has begun and ended a whole pass after this call began."""
    lifecycle = pool._lifecycle
    with pool._line.lock:
        first = lifecycle.keeper.passes
    # A pass counted after ``first`` may have read the clock before; the one
    # after it cannot have.

    def passed() -> bool:
        lifecycle.keeper.waker.wake()
        return lifecycle.keeper.passes >= first + 2

    wait_for(passed, "two passes of the keeper")


def in_lockstep(pool: tunnypy.Pool[Any, Any], callers: int) -> None:
    """*callers* calls that all run at once: each needs a worker of its own."""
    meet = threading.Barrier(callers, timeout=WAIT)
    calls = [Call(pool.process_timed, meet.wait, WAIT) for _ in range(callers)]
    for call in calls:
        call.wait()


class TestIdleTimesOnAFakeClock:
    def test_steady_load_neither_grows_nor_shrinks_and_a_burst_grows_then_shrinks(
        self, clock: FakeClock
    ) -> None:
        """Two workers busy together every 6 s of a 10 s idle_timeout stay; a burst shrinks back."""
        with tunnypy.Pool.from_callback(2) as pool:
            pool.autoscale(1, 4, idle_timeout=10.0)
            for _ in range(10):  # 60 s of steady load, both workers used each round
                in_lockstep(pool, 2)
                clock.now += 6.0
                keeper_pass(pool)
            stats = pool.stats()
            assert (stats.size, stats.autoscale_started, stats.autoscale_retired) == (2, 0, 0)
            in_lockstep(pool, 4)  # the burst: two calls wait, and each grows the pool
            assert pool.stats().autoscale_started == 2
            keeper_pass(pool)  # first seen idle now
            clock.now += 9.0
            keeper_pass(pool)
            assert pool.size == 4  # 9 s idle: not yet
            clock.now += 1.0
            keeper_pass(pool)
            stats = pool.stats()
            assert (stats.size, stats.autoscale_retired) == (1, 3)
            clock.now += 100.0
            keeper_pass(pool)
            assert pool.size == 1  # never below min_size

    def test_a_worker_that_served_meanwhile_starts_its_idle_time_again(
        self, clock: FakeClock
    ) -> None:
        """Idle since the first pass that saw it parked with the same count of jobs served."""
        with tunnypy.Pool.from_callback(2) as pool:
            pool.autoscale(1, 2, idle_timeout=10.0)
            keeper_pass(pool)
            clock.now += 8.0
            in_lockstep(pool, 2)  # both serve
            keeper_pass(pool)
            clock.now += 8.0
            keeper_pass(pool)
            assert pool.size == 2  # 8 s since they served, though 16 s since first seen
            clock.now += 2.0
            keeper_pass(pool)
            assert pool.size == 1


class TestGrowthThatFails:
    def test_a_failing_factory_is_retried_with_backoff_and_the_call_is_served(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two failures counted; the waiting call is served by the third try's worker."""
        monkeypatch.setattr(_lifecycle, "_BACKOFF_FIRST", 0.01)
        monkeypatch.setattr(_lifecycle, "_BACKOFF_CAP", 0.01)
        factory = Factory(fail_on={2, 3})
        with tunnypy.Pool(1, factory) as pool:
            pool.autoscale(1, 2)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            assert pool.process_timed("grown", WAIT) == "grown"
            stats = pool.stats()
            assert (stats.factory_failures, stats.autoscale_started) == (2, 1)
            gate.release.set()
            held.wait()

    def test_a_pool_of_none_stalls_after_stall_timeout_and_recovers(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """autoscale(0, 1), factory failing: the waiting call fails with PoolStalledError."""
        monkeypatch.setattr(_lifecycle, "_BACKOFF_FIRST", 0.01)
        monkeypatch.setattr(_lifecycle, "_BACKOFF_CAP", 0.01)
        recover = threading.Event()

        def before(call: int) -> None:
            if not recover.is_set():
                raise BoomError(f"factory call {call}")

        factory = Factory(before=before)
        with tunnypy.Pool(0, factory, stall_timeout=0.05) as pool:
            pool.autoscale(0, 1)
            with pytest.raises(tunnypy.PoolStalledError) as raised:
                pool.process("never served")
            assert "BoomError: factory call" in str(raised.value)
            recover.set()
            wait_for(lambda: pool.stats().workers == 1, "the keeper to make the worker")
            assert pool.process_timed("served", WAIT) == "served"

    def test_a_nested_call_waiting_on_a_growth_is_failed_when_the_growth_is_dropped(
        self,
    ) -> None:
        """autoscale(None) drops the worker asked for: the stuck nested call is refused."""
        factory, in_factory, go = held_at_second_call()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        with pool:
            pool.autoscale(1, 2)
            outer = Call(pool.process_timed, lambda: pool.process(lambda: "inner"), WAIT)
            assert in_factory.wait(WAIT)
            pool.autoscale(None)
            with pytest.raises(tunnypy.PoolDeadlockError):
                outer.wait()
            go.set()
            wait_for(lambda: pool.stats().workers == 1, "the late worker to be dropped")
            assert pool.stats().autoscale_started == 0


class TestClose:
    def test_close_while_the_keeper_is_in_the_factory_waits_for_it_and_starts_nothing(
        self,
    ) -> None:
        """The worker made after close() is terminated unstarted; close(wait=True) sees it end."""
        factory, in_factory, go = held_at_second_call()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        pool.autoscale(1, 2)
        gate = Gate()
        held = Call(pool.process, gate)
        assert gate.started.wait(WAIT)
        waiting = Call(pool.process, "refused")
        assert in_factory.wait(WAIT)
        assert not pool.close(wait=False)
        with pytest.raises(tunnypy.PoolClosedError):
            waiting.wait()
        go.set()
        gate.release.set()
        assert held.wait() is None
        assert pool.close(timeout=WAIT)
        assert [w.terminated for w in factory.made] == [1, 1]
        assert factory.made[1].processed == 0
        assert pool.stats().autoscale_started == 0
        assert not [t for t in threading.enumerate() if t.name == "tunnypy-keeper"]


class TestWithReplacementAndCollection:
    def test_a_failed_worker_is_replaced_while_autoscaling(self) -> None:
        """The two mechanisms do not double up: one replacement, the size kept."""
        factory = Factory()
        with tunnypy.Pool(2, factory) as pool:
            pool.autoscale(1, 4)
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: pool.stats().replaced == 1, "the replacement")
            wait_for(lambda: pool.stats().workers == 2, "the pool at its size")
            assert pool.size == 2

    def test_a_dropped_autoscaling_pool_is_collected_and_its_keeper_ends(self) -> None:
        """The keeper references only the lifecycle: the pool is garbage, its threads end."""
        pool: tunnypy.Pool[Any, Any] | None = tunnypy.Pool.from_callback(1, max_jobs_per_worker=5)
        assert pool is not None
        pool.autoscale(1, 2)
        lifecycle = pool._lifecycle
        keeper = lifecycle.keeper.thread
        assert keeper is not None
        pool = None
        gc.collect()
        keeper.join(WAIT)
        assert not keeper.is_alive()
        assert lifecycle.line.closed

    @pytest.mark.parametrize("autoscale", [False, True])
    def test_a_closed_pool_s_lifecycle_is_freed_without_the_cycle_collector(
        self, autoscale: bool
    ) -> None:
        """The keeper is handed the lifecycle, never keeps it: no reference cycle holds it."""
        pool = tunnypy.Pool.from_callback(2, max_jobs_per_worker=5)
        if autoscale:
            pool.autoscale(1, 3)
        assert pool.process_timed(lambda: "served", WAIT) == "served"
        lifecycle = weakref.ref(pool._lifecycle)
        assert pool.close(timeout=WAIT)
        gc.disable()
        try:
            del pool
            assert lifecycle() is None
        finally:
            gc.enable()


class TestRecyclingMechanism:
    def test_the_successor_is_listed_before_the_old_worker_retires(self) -> None:
        """At no point do fewer workers serve the line than the size."""
        seen: list[int] = []
        made: list[RecordingWorker] = []
        pool_ref: list[tunnypy.Pool[Any, Any]] = []

        def factory() -> RecordingWorker:
            if pool_ref:
                seen.append(pool_ref[0]._line.active)
            made.append(RecordingWorker())
            return made[-1]

        with tunnypy.Pool(2, factory, max_jobs_per_worker=1) as pool:
            pool_ref.append(pool)
            for n in range(6):
                assert pool.process_timed(n, WAIT) == n
                wait_for(lambda n=n: pool.stats().recycled == n + 1, "the recycling")  # type: ignore[misc]
                assert pool._line.active >= 2
            assert seen == [2] * 6  # the old worker still counted while its successor is made
