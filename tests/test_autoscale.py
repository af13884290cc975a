"""Autoscaling: a call that would wait grows the pool, idle workers retire, within the bounds."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, BoomError, Call, Gate, RecordingWorker, wait_for
from tests.paths import CallPath
from tunnypy import _lifecycle


def keepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "tunnypy-keeper"]


class Held:
    """Jobs that each signal as they start and wait until released (one Event for all)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started = 0

    def __call__(self) -> str:
        with self.lock:
            self.started += 1
        if not self.release.wait(WAIT):
            raise AssertionError("held job was never released")
        return threading.current_thread().name


class TestGrowth:
    def test_a_call_that_would_wait_grows_the_pool_by_one(self) -> None:
        """Every worker busy and below max_size: the next call gets a new worker and is served."""
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 3)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            assert pool.process_timed(lambda: "served", WAIT) == "served"
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.autoscale_started) == (2, 2, 1)
            gate.release.set()
            assert held.wait() is None

    def test_a_burst_grows_to_what_it_needs_and_no_further_than_max_size(self) -> None:
        """Five calls held at once on autoscale(1, 3): three run, two wait; none is lost."""
        held = Held()
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 3)
            calls = [Call(pool.process, held) for _ in range(5)]
            wait_for(lambda: held.started == 3 and pool.queue_length == 2, "3 running, 2 waiting")
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.autoscale_started) == (3, 3, 2)
            held.release.set()
            names = [call.wait() for call in calls]
            assert len(names) == 5
            assert len(set(names)) == 3
            assert pool.stats().autoscale_started == 2

    def test_the_factory_runs_on_the_keeper_thread_not_the_callers(self) -> None:
        """The caller that grows the pool pays one wake: the keeper calls the factory."""
        threads: list[str] = []

        def factory() -> RecordingWorker:
            threads.append(threading.current_thread().name)
            return RecordingWorker()

        with tunnypy.Pool(1, factory) as pool:
            pool.autoscale(1, 2)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            assert pool.process_timed("second", WAIT) == "second"
            gate.release.set()
            held.wait()
        assert threads == ["MainThread", "tunnypy-keeper"]

    def test_a_slow_factory_does_not_hold_up_the_caller(self) -> None:
        """While the keeper waits on the factory, a worker that comes back serves the caller."""
        in_factory = threading.Event()
        factory_go = threading.Event()
        calls = [0]

        def factory() -> RecordingWorker:
            calls[0] += 1
            if calls[0] == 2:
                in_factory.set()
                assert factory_go.wait(WAIT)
            return RecordingWorker()

        with tunnypy.Pool(1, factory) as pool:
            pool.autoscale(1, 2)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            waiting = Call(pool.process, "waiting")
            assert in_factory.wait(WAIT)
            gate.release.set()
            assert waiting.wait() == "waiting"  # the factory is still held
            assert not factory_go.is_set()
            factory_go.set()
            held.wait()
            wait_for(lambda: pool.stats().autoscale_started == 1, "the late worker to start")

    def test_every_call_that_would_wait_grows_it_and_a_try_does_not(
        self, call_path: CallPath
    ) -> None:
        """Each path: one that waits is served by a new worker; try_* is refused and asks none."""
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 3)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            pending = call_path.start(pool, lambda: "served")
            if call_path.waits_in_line:
                assert pending.result() == "served"
                assert pool.stats().autoscale_started == 1
            else:
                assert isinstance(pending.error(), tunnypy.PoolBusyError)
                # A call that waits now asks for one worker, and only one is
                # made: the refused one asked for none.
                assert pool.process_timed(lambda: "waited", WAIT) == "waited"
                stats = pool.stats()
                assert (stats.autoscale_started, stats.workers) == (1, 2)
            gate.release.set()
            assert held.wait() is None

    def test_aprocess_grows_it(self) -> None:
        """A coroutine's call waits in the same line, and grows the pool as the others do."""
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 2)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            assert asyncio.run(pool.aprocess(lambda: "async", timeout=WAIT)) == "async"
            assert pool.stats().autoscale_started == 1
            gate.release.set()
            held.wait()

    def test_no_growth_at_max_size(self) -> None:
        """At max_size a call waits its turn, as on a pool that does not autoscale."""
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 1)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            waiting = Call(pool.process, lambda: "after")
            wait_for(lambda: pool.queue_length == 1, "the call to wait")
            gate.release.set()
            assert waiting.wait() == "after"
            held.wait()
            assert pool.stats().autoscale_started == 0


class TestIdleRetirement:
    def test_a_burst_shrinks_back_to_min_size_after_idle_timeout_and_not_before(self) -> None:
        """Grown to 4 by a burst, the pool is back at 1 no sooner than idle_timeout after it."""
        made: list[RecordingWorker] = []

        def factory() -> RecordingWorker:
            made.append(RecordingWorker())
            return made[-1]

        held = Held()
        with tunnypy.Pool(1, factory) as pool:
            pool.autoscale(1, 4, idle_timeout=0.2)
            calls = [Call(pool.process, held) for _ in range(4)]
            wait_for(lambda: held.started == 4, "the burst to run on 4 workers")
            assert pool.size == 4
            held.release.set()
            for call in calls:
                call.wait()
            released = time.monotonic()
            wait_for(lambda: pool.size == 1, "the pool to shrink back")
            assert time.monotonic() - released >= 0.2
            wait_for(lambda: pool.stats().workers == 1, "the retired workers to leave")
            stats = pool.stats()
            assert (stats.autoscale_started, stats.autoscale_retired) == (3, 3)
            assert sorted(w.terminated for w in made) == [0, 1, 1, 1]
            assert pool.process_timed("still serves", WAIT) == "still serves"

    def test_growth_and_idle_retirement_are_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """worker_autoscaled as the keeper starts one; workers_idle_retired as it retires them."""
        caplog.set_level(logging.INFO, logger="tunnypy")
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 2, idle_timeout=0.01)
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            assert pool.process_timed(lambda: "grown", WAIT) == "grown"
            gate.release.set()
            held.wait()
            wait_for(lambda: pool.size == 1, "the idle worker to retire")
        events = [r.getMessage().split()[0] for r in caplog.records]
        assert "pool_autoscaling" in events
        assert "worker_autoscaled" in events
        assert "workers_idle_retired" in events

    def test_an_infinite_idle_timeout_never_retires(self) -> None:
        """idle_timeout=inf: the keeper has nothing to time, and the grown workers stay."""
        held = Held()
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 2, idle_timeout=math.inf)
            calls = [Call(pool.process, held) for _ in range(2)]
            wait_for(lambda: held.started == 2, "two workers to run")
            held.release.set()
            for call in calls:
                call.wait()
            assert pool.stats().autoscale_retired == 0
            assert pool.size == 2


class TestBounds:
    def test_turning_it_on_brings_the_size_within_the_bounds(self) -> None:
        """Below min_size the keeper grows it; above max_size it shrinks; size reads it at once."""
        with tunnypy.Pool.from_callback(0) as pool:
            pool.autoscale(2, 4)
            assert pool.size == 2
            wait_for(lambda: pool.stats().workers == 2, "the keeper to make two workers")
            assert pool.process_timed(lambda: "served", WAIT) == "served"
        with tunnypy.Pool.from_callback(6) as pool:
            pool.autoscale(1, 3)
            assert pool.size == 3
            stats = pool.stats()
            assert (stats.min_size, stats.max_size) == (1, 3)

    def test_calling_it_again_moves_the_bounds(self) -> None:
        """autoscale(3, 5) after autoscale(1, 4) at size 1 grows to 3."""
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(1, 4)
            pool.autoscale(3, 5)
            stats = pool.stats()
            assert (stats.size, stats.min_size, stats.max_size) == (3, 3, 5)

    def test_set_size_is_refused_while_autoscaling_and_changes_nothing(self) -> None:
        """A clear RuntimeError naming the bounds; the size and the bounds stay."""
        with tunnypy.Pool.from_callback(2) as pool:
            pool.autoscale(1, 4)
            with pytest.raises(RuntimeError) as raised:
                pool.set_size(3)
            assert str(raised.value) == (
                "set_size() is refused while the pool autoscales between 1 and 4 workers "
                "(got 3); move the bounds with autoscale(min_size, max_size) or stop it "
                "with autoscale(None)"
            )
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.min_size, stats.max_size) == (2, 2, 1, 4)

    def test_autoscale_none_stops_it_and_leaves_the_size(self) -> None:
        """Off: the size stays, set_size works again, the keeper thread ends."""
        with tunnypy.Pool.from_callback(1) as pool:
            pool.autoscale(2, 4)
            assert keepers()
            pool.autoscale(None)
            stats = pool.stats()
            assert (stats.size, stats.min_size, stats.max_size) == (2, None, None)
            wait_for(lambda: not keepers(), "the keeper to leave")
            pool.set_size(5)
            assert pool.size == 5

    def test_a_factory_failing_on_the_way_to_min_size_is_retried_off_the_callers_thread(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """autoscale() returns at once; the keeper retries with backoff, counting each failure."""
        monkeypatch.setattr(_lifecycle, "_BACKOFF_FIRST", 0.01)
        monkeypatch.setattr(_lifecycle, "_BACKOFF_CAP", 0.01)
        calls: list[str] = []

        def factory() -> RecordingWorker:
            calls.append(threading.current_thread().name)
            if len(calls) in (2, 3):
                raise BoomError("not yet")
            return RecordingWorker()

        with tunnypy.Pool(1, factory) as pool:
            pool.autoscale(2, 4)
            stats = pool.stats()
            assert (stats.size, stats.min_size, stats.max_size) == (2, 2, 4)
            wait_for(lambda: pool.stats().workers == 2, "the keeper to make the worker")
            assert pool.stats().factory_failures == 2
        assert calls == ["MainThread"] + ["tunnypy-keeper"] * 3

    def test_close_ends_it_and_its_keeper(self) -> None:
        """After close() the bounds read None, autoscale() is refused, no keeper is left."""
        pool = tunnypy.Pool.from_callback(1)
        pool.autoscale(1, 4)
        assert pool.close(timeout=WAIT)
        assert not keepers()
        stats = pool.stats()
        assert (stats.min_size, stats.max_size) == (None, None)
        with pytest.raises(tunnypy.PoolClosedError):
            pool.autoscale(1, 2)


class TestBadArguments:
    @pytest.mark.parametrize(
        ("args", "kwargs", "error", "message"),
        [
            ((-1, 2), {}, ValueError, "min_size must be a non-negative int (got -1)"),
            ((1.5, 2), {}, TypeError, "min_size must be a non-negative int (got float 1.5)"),
            ((True, 2), {}, TypeError, "min_size must be a non-negative int (got bool True)"),
            ((1, 0), {}, ValueError, "max_size must be a positive int (got 0)"),
            ((1, "4"), {}, TypeError, "max_size must be a positive int (got str '4')"),
            (
                (3, 2),
                {},
                ValueError,
                "min_size must not exceed max_size (got min_size=3, max_size=2)",
            ),
            ((1,), {}, TypeError, "max_size is required with min_size (got None)"),
            ((None, 3), {}, TypeError, "autoscale(None) takes no max_size (got 3)"),
            (
                (1, 2),
                {"idle_timeout": math.nan},
                ValueError,
                "idle_timeout must be a non-negative number of seconds (got nan)",
            ),
            (
                (1, 2),
                {"idle_timeout": -1},
                ValueError,
                "idle_timeout must be a non-negative number of seconds (got -1)",
            ),
            (
                (1, 2),
                {"idle_timeout": "60"},
                TypeError,
                "idle_timeout must be a non-negative number of seconds (got str '60')",
            ),
        ],
    )
    def test_a_bad_argument_is_refused_and_changes_nothing(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A clear error naming what was wrong; the bounds and the size stay as they were."""
        with tunnypy.Pool.from_callback(2) as pool:
            pool.autoscale(1, 3)
            before = pool.stats()
            with pytest.raises(error) as raised:
                pool.autoscale(*args, **kwargs)
            assert str(raised.value) == message
            assert pool.stats() == before


class TestNestedCalls:
    def test_a_growth_makes_a_job_calling_its_own_pool_safe(self) -> None:
        """On one worker a nested call would deadlock; with room to grow it is served."""
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_callback(1)
        with pool:
            pool.autoscale(1, 2)
            assert pool.process_timed(lambda: pool.process(lambda: "inner"), WAIT) == "inner"
            assert pool.stats().autoscale_started == 1

    def test_at_max_size_the_deadlock_check_still_refuses(self) -> None:
        """autoscale(1, 1): nothing can grow, so the nested call fails as it always did."""
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_callback(1)
        with pool:
            pool.autoscale(1, 1)
            with pytest.raises(tunnypy.PoolDeadlockError):
                pool.process_timed(lambda: pool.process(lambda: "inner"), WAIT)
