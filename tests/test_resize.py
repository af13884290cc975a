"""set_size: growing, shrinking, and what readers see meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, RecordingFactory, RecordingWorker, identity, wait_for


class TestGrow:
    def test_growing_serves_waiting_callers_at_once(self) -> None:
        """Callers waiting on an empty pool are served as soon as it grows."""
        with tunnypy.Pool.from_func(0, identity) as pool:
            calls = [Call(pool.process, i) for i in range(3)]
            wait_for(lambda: pool.queue_length == 3, "callers to queue")
            pool.set_size(2)
            assert sorted(c.wait() for c in calls) == [0, 1, 2]

    def test_factory_error_keeps_the_previous_size(self) -> None:
        """A factory that raises during growth leaves size and workers as they were."""
        made: list[RecordingWorker] = []

        def factory() -> RecordingWorker:
            if len(made) == 4:
                raise OSError("no more connections")
            made.append(RecordingWorker())
            return made[-1]

        with tunnypy.Pool(2, factory) as pool:
            with pytest.raises(OSError, match="no more connections"):
                pool.set_size(5)
            assert pool.size == 2
            stats = pool.stats()
            assert (stats.size, stats.workers) == (2, 2)
            # The two made for the failed growth were released, never started.
            assert [w.terminated for w in made[2:]] == [1, 1]
            assert pool.process(7) == 7

    def test_readers_are_not_blocked_by_a_slow_grow(self) -> None:
        """While the factory is slow, size shows the target and stats() answers."""
        release = threading.Event()
        entered = threading.Event()

        def factory() -> RecordingWorker:
            entered.set()
            if not release.wait(WAIT):
                raise AssertionError("factory never released")
            return RecordingWorker()

        release.set()
        with tunnypy.Pool(1, factory) as pool:
            release.clear()
            entered.clear()
            grow = Call(pool.set_size, 3)
            assert entered.wait(WAIT)
            assert pool.size == 3
            stats = pool.stats()
            assert (stats.size, stats.workers) == (3, 1)
            assert pool.queue_length == 0
            assert pool.process(1) == 1  # the pool still serves
            release.set()
            assert grow.wait() is True
            wait_for(lambda: pool.stats().workers == 3, "three workers")


class TestShrink:
    def test_returns_without_waiting_for_busy_workers(self) -> None:
        """Shrinking past busy workers returns at once; they leave when their job ends."""
        gate = Gate()
        with tunnypy.Pool.from_func(2, gate) as pool:
            futures = [pool.submit(1), pool.submit(2)]
            wait_for(lambda: pool.stats().busy == 2, "both workers busy")
            assert pool.set_size(0) is True
            assert pool.size == 0
            assert pool.stats().workers == 2  # still finishing
            gate.release.set()
            assert [f.result(WAIT) for f in futures] == [1, 2]
            wait_for(lambda: pool.stats().workers == 0, "workers to leave")

    def test_retires_idle_workers_first(self) -> None:
        """With one busy and two idle, shrinking by two leaves the busy one running."""
        gate = Gate()
        with tunnypy.Pool.from_func(3, gate) as pool:
            wait_for(lambda: pool.stats().idle == 3, "workers to park")
            busy = pool.submit(1)
            assert gate.started.wait(WAIT)
            pool.set_size(1)
            wait_for(lambda: pool.stats().workers == 1, "idle workers to leave")
            assert pool.stats().busy == 1
            assert not busy.done()
            gate.release.set()
            assert busy.result(WAIT) == 1
            assert pool.stats().workers == 1

    def test_retiring_worker_never_takes_a_new_job(self) -> None:
        """A busy worker that was retired finishes its job but leaves the line alone."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            first = pool.submit(1)
            assert gate.started.wait(WAIT)
            second = pool.submit(2)
            assert pool.queue_length == 1
            pool.set_size(0)
            gate.release.set()
            assert first.result(WAIT) == 1
            wait_for(lambda: pool.stats().workers == 0, "the retired worker to leave")
            assert pool.queue_length == 1
            assert not second.done()
            pool.set_size(1)
            assert second.result(WAIT) == 2

    def test_wait_true_waits_for_retired_workers(self) -> None:
        """set_size(wait=True) returns only when retired workers have ended (or timeout)."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            busy = pool.submit(1)
            assert gate.started.wait(WAIT)
            assert pool.set_size(0, wait=True, timeout=0.05) is False
            gate.release.set()
            assert pool.set_size(0, wait=True, timeout=WAIT) is True
            assert pool.stats().workers == 0
            assert busy.result(WAIT) == 1

    def test_terminate_runs_for_each_retired_worker(self) -> None:
        """Every retired worker's terminate() runs once."""
        factory = RecordingFactory()
        made = factory.made

        with tunnypy.Pool(4, factory) as pool:
            pool.set_size(1, wait=True)
            assert sorted(w.terminated for w in made) == [0, 1, 1, 1]
        assert [w.terminated for w in made] == [1, 1, 1, 1]


class TestSizeReading:
    def test_size_reports_the_target_at_once(self) -> None:
        """size is what set_size asked for, before any thread has started or stopped."""
        with tunnypy.Pool.from_func(2, identity) as pool:
            assert pool.size == 2
            pool.set_size(5)
            assert pool.size == 5
            pool.set_size(1)
            assert pool.size == 1
            wait_for(lambda: pool.stats().workers == 1, "one worker")

    @pytest.mark.parametrize(
        ("value", "error", "match"),
        [
            (-1, ValueError, "size must be a non-negative int \\(got -1\\)"),
            (1.5, TypeError, "size must be a non-negative int \\(got float 1.5\\)"),
            (True, TypeError, "got bool True"),
            ("3", TypeError, "got str '3'"),
            (None, TypeError, "got NoneType None"),
        ],
    )
    def test_bad_size_changes_nothing(self, value: Any, error: type[Exception], match: str) -> None:
        """A size that is not a non-negative int is refused and the pool is unchanged."""
        with tunnypy.Pool.from_func(2, identity) as pool:
            wait_for(lambda: pool.stats().idle == 2, "workers to park")
            before = pool.stats()
            with pytest.raises(error, match=match):
                pool.set_size(value)
            assert pool.stats() == before


class TestGrowRacingClose:
    def test_failed_growth_after_close_leaves_size_zero(self) -> None:
        """A factory that fails after close() ran does not bring the old size back."""
        entered = threading.Event()
        release = threading.Event()
        calls: list[int] = []

        def factory() -> RecordingWorker:
            calls.append(1)
            if len(calls) > 1:
                entered.set()
                if not release.wait(WAIT):
                    raise AssertionError("factory never released")
                raise OSError("factory failed late")
            return RecordingWorker()

        pool = tunnypy.Pool(1, factory)
        grow = Call(pool.set_size, 2)
        assert entered.wait(WAIT)
        assert pool.close(timeout=WAIT)
        release.set()
        with pytest.raises(OSError, match="factory failed late"):
            grow.wait()
        assert pool.size == 0


class TestShrinkChain:
    def test_every_parked_retiree_is_woken_along_the_chain(self) -> None:
        """Shrinking 100 parked workers to 1 wakes one; each leaving worker wakes the next."""
        with tunnypy.Pool.from_func(100, identity) as pool:
            wait_for(lambda: pool.stats().idle == 100, "workers to park")
            assert pool.set_size(1, wait=True, timeout=WAIT) is True
            assert pool.stats().workers == 1
            assert pool.process(5) == 5

    def test_close_during_the_chain_still_ends_every_worker(self) -> None:
        """close() right after a big shrink leaves no worker behind."""
        pool = tunnypy.Pool.from_func(100, identity)
        wait_for(lambda: pool.stats().idle == 100, "workers to park")
        pool.set_size(0)
        assert pool.close(timeout=WAIT) is True
        assert pool.stats().workers == 0


class SlowTerminate(RecordingWorker):
    """terminate() signals it started and blocks until released."""

    def __init__(self) -> None:
        super().__init__()
        self.in_terminate = threading.Event()
        self.finish = threading.Event()

    def terminate(self) -> None:
        self.in_terminate.set()
        self.finish.wait(WAIT)
        super().terminate()


class TestWaitCoversTerminate:
    def test_set_size_wait_does_not_return_before_terminate_ends(self) -> None:
        """A worker inside terminate() still counts: set_size(wait=True) waits for it."""
        worker = SlowTerminate()
        pool = tunnypy.Pool(1, lambda: worker)
        try:
            pool.set_size(0)
            assert worker.in_terminate.wait(WAIT)
            assert pool.set_size(0, wait=True, timeout=0.05) is False
            assert pool.stats().workers == 1
            worker.finish.set()
            assert pool.set_size(0, wait=True, timeout=WAIT) is True
            assert worker.terminated == 1
        finally:
            worker.finish.set()
            pool.close(timeout=WAIT)
