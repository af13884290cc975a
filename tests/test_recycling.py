"""Recycling: a worker past max_jobs_per_worker or max_worker_age gives way to a fresh one."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, BoomError, Call, Gate, RecordingWorker, wait_for
from tunnypy import _lifecycle


class ThreadWorker(RecordingWorker):
    """A RecordingWorker that notes which thread ran its terminate()."""

    terminated_on: str = ""

    def terminate(self) -> None:
        self.terminated_on = threading.current_thread().name
        super().terminate()


class Factory:
    """Makes ThreadWorkers; calls numbered (from 1) in *fail_on* raise, *hold_on* waits for go."""

    def __init__(self, fail_on: set[int] = frozenset(), hold_on: int = 0) -> None:  # type: ignore[assignment]
        self.fail_on = fail_on
        self.hold_on = hold_on
        self.holding = threading.Event()
        self.go = threading.Event()
        self.calls = 0
        self.made: list[ThreadWorker] = []

    def __call__(self) -> ThreadWorker:
        self.calls += 1
        if self.calls == self.hold_on:
            self.holding.set()
            assert self.go.wait(WAIT)
        if self.calls in self.fail_on:
            raise BoomError(f"factory call {self.calls}")
        self.made.append(ThreadWorker())
        return self.made[-1]


class TestMaxJobsPerWorker:
    def test_a_worker_retires_after_its_jobs_once_its_successor_started(self) -> None:
        """Three jobs, then a fresh worker serves; the old one is terminated on its own thread."""
        factory = Factory()
        with tunnypy.Pool(1, factory, max_jobs_per_worker=3) as pool:
            for n in range(3):
                assert pool.process_timed(n, WAIT) == n
            wait_for(lambda: pool.stats().recycled == 1, "the first worker to be recycled")
            wait_for(lambda: pool.stats().workers == 1, "the old worker to leave")
            first, second = factory.made
            assert (first.processed, first.terminated) == (3, 1)
            assert first.terminated_on.startswith("tunnypy-worker-0")
            assert pool.process_timed("next", WAIT) == "next"
            assert (second.processed, second.terminated) == (1, 0)
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.completed) == (1, 1, 4)

    def test_capacity_never_dips_while_the_successor_is_made(self) -> None:
        """While the factory makes the successor, the old worker serves on; it leaves after."""
        factory = Factory(hold_on=2)
        with tunnypy.Pool(1, factory, max_jobs_per_worker=1) as pool:
            assert pool.process_timed("first", WAIT) == "first"
            assert factory.holding.wait(WAIT)
            # The successor is being made: the old worker still serves.
            assert pool.process_timed("meanwhile", WAIT) == "meanwhile"
            assert pool.stats().workers == 1
            factory.go.set()
            wait_for(lambda: pool.stats().recycled == 1, "the recycling")
            wait_for(lambda: pool.stats().workers == 1, "the old worker to leave")
            assert factory.made[0].processed == 2
            assert factory.made[0].terminated == 1

    def test_a_busy_worker_finishes_its_job_before_it_leaves(self) -> None:
        """Its successor starts while it holds a job; the job's caller gets the result."""
        factory = Factory()
        with tunnypy.Pool(1, factory, max_jobs_per_worker=2) as pool:
            assert pool.process_timed("first", WAIT) == "first"
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            # The second job ran out the first worker's count: its successor
            # is listed beside it while it still holds the job.
            wait_for(lambda: pool.stats().recycled == 1, "the successor to start")
            assert factory.made[0].terminated == 0
            assert pool.process_timed("on the successor", WAIT) == "on the successor"
            gate.release.set()
            assert held.wait() is None
            wait_for(lambda: factory.made[0].terminated == 1, "the old worker to leave")
            assert pool.stats().workers == 1

    def test_from_func_and_from_callback_take_it(self) -> None:
        """The option works on every kind of pool."""

        def same(x: int) -> int:
            return x

        with tunnypy.Pool.from_func(1, same, max_jobs_per_worker=1) as pool:
            assert pool.process_timed(1, WAIT) == 1
            wait_for(lambda: pool.stats().recycled == 1, "the recycling")
        with tunnypy.Pool.from_callback(1, max_jobs_per_worker=1) as callbacks:
            assert callbacks.process_timed(lambda: 2, WAIT) == 2
            wait_for(lambda: callbacks.stats().recycled == 1, "the recycling")


class TestMaxWorkerAge:
    def test_every_worker_is_recycled_once_it_is_old_and_the_pool_keeps_its_size(self) -> None:
        """Two workers, max_worker_age=0.1: both recycled no sooner than 0.1 s, size stays 2."""
        factory = Factory()
        began = time.monotonic()
        with tunnypy.Pool(2, factory, max_worker_age=0.1) as pool:
            first, second = factory.made[:2]
            wait_for(
                lambda: first.terminated + second.terminated == 2, "both workers to be recycled"
            )
            assert time.monotonic() - began >= 0.1
            assert pool.stats().recycled >= 2
            assert (first.terminated, second.terminated) == (1, 1)
            stats = pool.stats()
            assert stats.size == 2
            assert pool.process_timed("served", WAIT) == "served"

    def test_an_infinite_age_never_recycles(self) -> None:
        """max_worker_age=inf is no limit: no keeper thread, nothing recycled."""
        with tunnypy.Pool.from_callback(1, max_worker_age=math.inf) as pool:
            assert pool.process_timed(lambda: 1, WAIT) == 1
            assert not [t for t in threading.enumerate() if t.name == "tunnypy-keeper"]
            assert pool.stats().recycled == 0


class TestFactoryFailsWhileRecycling:
    def test_the_old_worker_serves_on_until_a_successor_can_be_made(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The failure is counted; the backoff applies; the old worker stays until then."""
        monkeypatch.setattr(_lifecycle, "_BACKOFF_FIRST", 0.01)
        monkeypatch.setattr(_lifecycle, "_BACKOFF_CAP", 0.01)
        factory = Factory(fail_on={2, 3}, hold_on=4)
        with tunnypy.Pool(1, factory, max_jobs_per_worker=1) as pool:
            assert pool.process_timed("first", WAIT) == "first"
            assert factory.holding.wait(WAIT)  # two failures, then the third try
            assert pool.stats().factory_failures == 2
            assert pool.process_timed("old serves", WAIT) == "old serves"
            assert factory.made[0].terminated == 0
            factory.go.set()
            wait_for(lambda: pool.stats().recycled == 1, "the recycling")
            wait_for(lambda: factory.made[0].terminated == 1, "the old worker to leave")
            assert factory.made[0].processed == 2


class TestBadArguments:
    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            (
                {"max_jobs_per_worker": 0},
                ValueError,
                "max_jobs_per_worker must be a positive int (got 0)",
            ),
            (
                {"max_jobs_per_worker": 2.0},
                TypeError,
                "max_jobs_per_worker must be a positive int (got float 2.0)",
            ),
            (
                {"max_worker_age": 0},
                ValueError,
                "max_worker_age must be a positive number of seconds (got 0)",
            ),
            (
                {"max_worker_age": 0.0},
                ValueError,
                "max_worker_age must be a positive number of seconds (got 0.0)",
            ),
            (
                {"max_worker_age": math.nan},
                ValueError,
                "max_worker_age must be a non-negative number of seconds (got nan)",
            ),
            (
                {"max_worker_age": "1"},
                TypeError,
                "max_worker_age must be a non-negative number of seconds (got str '1')",
            ),
        ],
    )
    @pytest.mark.parametrize("kind", ["Pool", "from_func", "from_callback"])
    def test_a_bad_option_is_refused_before_any_worker_is_made(
        self, kind: str, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A clear error; the factory is never called and no thread starts."""
        factory = Factory()
        makers: dict[str, Callable[[], object]] = {
            "Pool": lambda: tunnypy.Pool(1, factory, **kwargs),
            "from_func": lambda: tunnypy.Pool.from_func(1, lambda x: x, **kwargs),
            "from_callback": lambda: tunnypy.Pool.from_callback(1, **kwargs),
        }
        before = threading.active_count()
        with pytest.raises(error) as raised:
            makers[kind]()
        assert str(raised.value) == message
        assert factory.calls == 0
        assert threading.active_count() == before
