"""Stress: many callers, random resizes and a close mid-traffic lose nothing."""

from __future__ import annotations

import os
from concurrent.futures import Future

import pytest

import tunnypy
from tests.helpers import WAIT, Gate
from tests.soak import run_stress

# Seconds of load per round; CI keeps it short, STRESS_SECONDS raises it locally.
SECONDS = float(os.environ.get("STRESS_SECONDS", "4"))
MIN_RESIZES = 50


class TestStress:
    @pytest.mark.parametrize("seed", [1, 2])
    def test_every_call_ends_once_and_nothing_is_lost(
        self, seed: int, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Under load, resizes 0-64 and close(), each call gets its own outcome exactly once."""
        totals = run_stress(SECONDS, seed=seed, min_resizes=MIN_RESIZES)
        with capsys.disabled():
            print(f"\nstress seed={seed}: {totals.summary()}")
        assert totals.problems == []
        assert totals.lost == 0
        assert totals.duplicates == 0
        assert totals.misdelivered == 0
        assert totals.stray_interrupts == 0
        assert totals.miscounted == 0
        assert totals.leaked_threads == 0
        # The run covered what it claims to cover.
        assert totals.calls >= 1000
        assert totals.results > 0
        assert totals.failed > 0
        assert totals.timeouts > 0
        assert totals.cancels > 0
        assert totals.refused > 0
        assert totals.resizes >= MIN_RESIZES
        assert totals.interrupts > 0


class TestStressAutoscaling:
    def test_autoscaling_and_recycling_with_a_flaky_factory_lose_nothing(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Bounds moved at random, workers recycled, 1 factory call in 20 failing: all accounted."""
        totals = run_stress(SECONDS, seed=3, min_resizes=MIN_RESIZES, autoscale=True)
        with capsys.disabled():
            print(f"\nstress autoscale seed=3: {totals.summary()}")
        assert totals.problems == []
        assert totals.lost == 0
        assert totals.duplicates == 0
        assert totals.misdelivered == 0
        assert totals.stray_interrupts == 0
        assert totals.miscounted == 0
        assert totals.leaked_threads == 0
        assert totals.out_of_bounds == 0
        # The run covered what it claims to cover.
        assert totals.calls >= 1000
        assert totals.resizes >= MIN_RESIZES
        assert totals.autoscale_started > 0
        assert totals.autoscale_retired > 0
        assert totals.recycled > 0
        assert totals.factory_failures > 0


class TestFoundByStress:
    """Bugs the stress run found, each pinned down without load."""

    def test_cancelling_a_running_future_does_not_kill_its_worker(self) -> None:
        """A future handed straight to a parked worker is running: cancel() fails (regression)."""
        pool = tunnypy.Pool.from_callback(1)
        gate = Gate()
        try:
            future = pool.submit(gate)
            assert gate.started.wait(WAIT)
            assert not future.cancel()
            gate.release.set()
            assert future.result(WAIT) is None
            assert pool.process(lambda: 7) == 7  # the worker is still there
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.cancelled) == (1, 2, 0)
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)

    def test_cancelling_a_future_twice_counts_it_once(self) -> None:
        """Future.cancel() stays True once cancelled; stats.cancelled moves by one (regression)."""
        pool = tunnypy.Pool.from_callback(1)
        gate = Gate()
        try:
            pool.submit(gate)
            assert gate.started.wait(WAIT)
            waiting = pool.submit(lambda: 1)
            assert waiting.cancel()
            assert waiting.cancel()
            assert pool.stats().cancelled == 1
            assert pool.queue_length == 0
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)

    def test_a_future_cancelled_as_close_refuses_it_counts_once(self) -> None:
        """A queued future cancelled while close() refuses it ends cancelled, counted once only."""
        pool = tunnypy.Pool.from_callback(1)
        gate = Gate()
        try:
            pool.submit(gate)
            assert gate.started.wait(WAIT)
            waiting = pool.submit(lambda: 1)
            # The future is cancelled before close() refuses it, but the pool
            # hears of it only afterwards: the order a race produces.
            assert Future.cancel(waiting)
            pool.close(wait=False)
            assert waiting.cancel()
            assert waiting.cancelled()
            stats = pool.stats()
            assert (stats.cancelled, stats.rejected) == (1, 0)
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)
