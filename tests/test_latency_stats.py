"""pool.stats().wait and .run: latency summaries from the workers' histograms."""

from __future__ import annotations

import math
import random
import sys
import threading
import time
from typing import Any

import pytest

import tunnypy
from tunnypy import LatencySummary
from tunnypy._histogram import (
    BUCKETS,
    FOLD_AT,
    RUN,
    WAIT,
    bucket_bounds,
    bucket_index,
    merged,
    new_timings,
    summarize,
)

from .helpers import WAIT as BOUND
from .helpers import Call, Gate, in_line_behind_busy, wait_for

# A percentile from the histogram is within this of the exact one.
ERROR = 0.125
HOLD = 0.05  # how long a gated job is held, by the test's own clock


def summary_of(times_ns: list[int]) -> LatencySummary:
    timings = new_timings()
    for n in times_ns:
        timings[WAIT + bucket_index(n)] += 1
    return summarize(timings, WAIT)


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def close_to(estimate_s: float, exact_ns: float) -> bool:
    return abs(estimate_s * 1e9 - exact_ns) <= ERROR * exact_ns + 1e-9


def run(payload: Any) -> Any:
    """Call a callable payload, raise an exception payload, or echo the payload."""
    if isinstance(payload, BaseException):
        raise payload
    return payload() if callable(payload) else payload


class TestHistogram:
    """The bucket layout and the estimates drawn from it."""

    def test_every_time_falls_in_its_bucket(self) -> None:
        """A time lies in [lo, hi) of its bucket, and hi is at most 1.25 lo (or lo + 1)."""
        rng = random.Random(16)
        samples = [*range(2000), *(rng.randrange(2**64) for _ in range(20_000)), 2**64 - 1]
        for n in samples:
            lo, hi = bucket_bounds(bucket_index(n))
            assert lo <= n < hi
            assert hi <= max(1.25 * lo, lo + 1)

    def test_buckets_tile_the_range(self) -> None:
        """Bucket i ends where bucket i + 1 begins, from 0 to 2**64."""
        assert bucket_bounds(0)[0] == 0
        for index in range(BUCKETS - 1):
            assert bucket_bounds(index)[1] == bucket_bounds(index + 1)[0]
        assert bucket_bounds(BUCKETS - 1)[1] == 2**64

    @pytest.mark.parametrize("shape", ["lognormal", "uniform", "bimodal", "constant", "tiny"])
    def test_estimates_within_error(self, shape: str) -> None:
        """p50, p90, p99, max and total are within 12.5% of the exact figures; count exact."""
        rng = random.Random(shape)
        if shape == "lognormal":
            values = [int(rng.lognormvariate(11, 1.5)) for _ in range(10_000)]
        elif shape == "uniform":
            values = [rng.randrange(1_000, 50_000_000) for _ in range(10_000)]
        elif shape == "bimodal":
            values = [rng.choice((20_000, 9_000_000)) + rng.randrange(500) for _ in range(5_000)]
        elif shape == "constant":
            values = [123_456_789] * 1000
        else:
            values = [rng.randrange(0, 40) for _ in range(500)]
        summary = summary_of(values)
        assert summary.count == len(values)
        for q, estimate in ((0.5, summary.p50), (0.9, summary.p90), (0.99, summary.p99)):
            assert close_to(estimate, nearest_rank(values, q)), (q, estimate)
            assert close_to(summary.quantile(q), nearest_rank(values, q))
        assert close_to(summary.max, max(values))
        assert summary.p50 <= summary.p90 <= summary.p99 <= summary.max
        assert close_to(summary.total, sum(values))

    def test_empty(self) -> None:
        """No time recorded: every figure is 0."""
        summary = summarize(new_timings(), RUN)
        figures = (summary.count, summary.total, summary.p50, summary.p90, summary.p99)
        assert figures == (0, 0.0, 0.0, 0.0, 0.0)
        assert summary.max == 0.0
        assert summary.quantile(0.5) == 0.0
        assert summary.count_at_most(1.0) == 0

    def test_count_at_most(self) -> None:
        """Exact at a bucket edge; never counts a longer time; misses only times within 20%."""
        rng = random.Random(3)
        values = [int(rng.lognormvariate(13, 2)) for _ in range(5_000)]
        summary = summary_of(values)
        for seconds in (1e-6, 2.5e-5, 0.0001, 0.001, 0.0123, 0.5, 10.0):
            got = summary.count_at_most(seconds)
            limit = seconds * 1e9
            assert sum(1 for n in values if n <= 0.8 * limit) <= got
            assert got <= sum(1 for n in values if n <= limit)
        edge = bucket_bounds(bucket_index(400_000))[1]  # an edge: exact
        assert summary.count_at_most(edge * 1e-9) == sum(1 for n in values if n < edge)
        assert summary.count_at_most(math.inf) == len(values)

    @pytest.mark.parametrize("q", [-0.1, 1.5, math.nan, "0.5"])
    def test_quantile_refuses_bad_q(self, q: Any) -> None:
        """q outside 0..1, or not a number, is refused with a message naming it."""
        with pytest.raises(ValueError, match=r"^q must be a number from 0 to 1 \(got "):
            summary_of([1, 2, 3]).quantile(q)

    @pytest.mark.parametrize("seconds", [-1.0, math.nan, None])
    def test_count_at_most_refuses_bad_seconds(self, seconds: Any) -> None:
        """A negative or non-number bound is refused with a message naming it."""
        with pytest.raises(ValueError, match=r"^seconds must be a non-negative number \(got "):
            summary_of([1]).count_at_most(seconds)

    def test_merged_adds_up(self) -> None:
        """Merging adds bucket by bucket, for both histograms."""
        a, b = new_timings(), new_timings()
        a[WAIT + 10] = 2
        b[WAIT + 10] = 3
        b[RUN + 40] = 7
        total = merged([a, b])
        assert (total[WAIT + 10], total[RUN + 40], sum(total)) == (5, 7, 12)
        assert merged([]) == new_timings()


class TestPoolLatency:
    """What a pool's stats() report of its jobs' wait and run times."""

    def test_fresh_pool_reports_nothing(self) -> None:
        """Before any job: both summaries are empty."""
        with tunnypy.Pool.from_func(2, run, latency=True) as pool:
            stats = pool.stats()
            assert (stats.wait.count, stats.run.count, stats.run.p99) == (0, 0, 0.0)

    def test_counts_are_exact_on_every_path(self) -> None:
        """Every job that ran is counted once, by the time its caller has the outcome."""
        with tunnypy.Pool.from_func(3, run, latency=True) as pool:
            for i in range(50):
                assert pool.process(i) == i
            for i in range(20):
                assert pool.process_timed(i, BOUND) == i
            for i in range(10):
                assert pool.submit(i).result(BOUND) == i
            for i in range(5):
                assert pool.process_ctx(i, tunnypy.CancelToken()) == i
            for _ in range(7):
                with pytest.raises(ValueError):
                    pool.process(ValueError("boom"))
            stats = pool.stats()
            assert (stats.completed, stats.failed) == (85, 7)
            assert stats.wait.count == stats.run.count == 92

    def test_run_time_of_a_held_job(self) -> None:
        """A job held for HOLD by the test's clock reports a run time of about HOLD."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            gate = Gate()
            began = time.monotonic()
            call = Call(pool.process, gate)
            assert gate.started.wait(BOUND)
            held_from = time.monotonic()
            threading.Event().wait(HOLD)  # the time being measured
            held = time.monotonic() - held_from
            gate.release.set()
            call.wait()
            whole = time.monotonic() - began
            run_time = pool.stats().run
            assert run_time.count == 1
            assert held * (1 - ERROR) <= run_time.max <= whole * (1 + ERROR)
            assert run_time.p50 == run_time.p99 == run_time.max

    def test_wait_time_of_a_call_in_line(self) -> None:
        """A call kept in line for HOLD behind a held job reports a wait of about HOLD."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            gate = Gate()
            first = Call(pool.process, gate)
            assert gate.started.wait(BOUND)
            began = time.monotonic()
            second = Call(pool.process, "second")
            wait_for(lambda: in_line_behind_busy(pool, 1, 1), "the second call to wait")
            queued = time.monotonic()  # it joined the line before this
            threading.Event().wait(HOLD)
            released = time.monotonic()  # it starts after this
            gate.release.set()
            first.wait()
            assert second.wait() == "second"
            whole = time.monotonic() - began
            stats = pool.stats()
            assert stats.wait.count == 2
            assert (released - queued) * (1 - ERROR) <= stats.wait.max <= whole * (1 + ERROR)
            # The held job's own wait was short: it found the worker parked.
            assert stats.wait.p50 < stats.wait.max

    def test_a_call_given_up_in_line_is_not_counted(self) -> None:
        """A call that timed out before any worker took it never ran: no wait, no run."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            gate = Gate()
            first = Call(pool.process, gate)
            assert gate.started.wait(BOUND)
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed("late", 0.01)
            gate.release.set()
            first.wait()
            stats = pool.stats()
            assert (stats.timed_out, stats.wait.count, stats.run.count) == (1, 1, 1)

    def test_a_job_whose_caller_left_counts_once_it_has_run(self) -> None:
        """A started job whose caller gave up is counted when it returns, not before."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            gate = Gate()
            token = tunnypy.CancelToken()
            caller = Call(pool.process_ctx, gate, token)
            # The caller leaves only once the job runs: a job withdrawn before
            # it started is skipped, never counted.
            assert gate.started.wait(BOUND)
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                caller.wait()
            assert pool.stats().run.count == 0
            gate.release.set()
            wait_for(lambda: pool.stats().run.count == 1, "the abandoned job to be counted")
            stats = pool.stats()
            assert (stats.cancelled, stats.wait.count, stats.run.count) == (1, 1, 1)

    def test_retired_workers_stay_counted(self) -> None:
        """Times of workers that left (shrink, close) are kept in the pool's figures."""
        pool = tunnypy.Pool.from_func(3, run, latency=True)
        try:
            for i in range(30):
                pool.process(i)
            assert pool.set_size(0, wait=True, timeout=BOUND)
            stats = pool.stats()
            assert (stats.workers, stats.run.count, stats.wait.count) == (0, 30, 30)
            pool.set_size(2)
            for i in range(12):
                pool.process(i)
            assert pool.stats().run.count == 42
        finally:
            assert pool.close(timeout=BOUND)
        stats = pool.stats()
        assert (stats.workers, stats.run.count, stats.completed) == (0, 42, 42)

    def test_many_callers(self) -> None:
        """Callers on many threads at once: every job counted exactly once."""
        callers, calls = 8, 300
        with tunnypy.Pool.from_func(4, run, latency=True) as pool:
            start = threading.Barrier(callers, timeout=BOUND)

            def caller() -> None:
                start.wait()
                for i in range(calls):
                    pool.process(i)

            threads = [Call(caller) for _ in range(callers)]
            for thread in threads:
                thread.wait()
            stats = pool.stats()
            assert stats.completed == stats.wait.count == stats.run.count == callers * calls
            assert 0 < stats.wait.p50 <= stats.wait.p99 <= stats.wait.max < BOUND

    def test_stats_while_workers_record(self) -> None:
        """stats() read while jobs finish never fails and never goes backwards."""
        with tunnypy.Pool.from_func(2, run, latency=True) as pool:
            done = threading.Event()

            def caller() -> None:
                while not done.is_set():
                    pool.process(None)

            calls = [Call(caller) for _ in range(3)]
            try:
                seen = 0
                for _ in range(200):
                    count = pool.stats().run.count
                    assert count >= seen
                    seen = count
            finally:
                done.set()
                for call in calls:
                    call.wait()

    def test_exact_after_every_call_across_batches(self) -> None:
        """A worker counts its times in batches; each call is counted once it has returned."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            for i in range(3 * FOLD_AT + 5):
                pool.process(i)
                stats = pool.stats()
                assert (stats.wait.count, stats.run.count) == (i + 1, i + 1)

    def test_read_while_a_worker_counts_a_batch(self) -> None:
        """stats() from other threads while batches are counted: no call missed or counted twice."""
        calls = 6 * FOLD_AT
        started = returned = 0
        wrong: list[tuple[int, int, int]] = []
        done = threading.Event()
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:

            def reader() -> None:
                while not done.is_set():
                    before = returned
                    count = pool.stats().run.count
                    after = started
                    if not before <= count <= after:
                        wrong.append((before, count, after))

            # Switch threads often, so that readers land in the middle of batches.
            interval = sys.getswitchinterval()
            sys.setswitchinterval(1e-6)
            readers = [Call(reader) for _ in range(2)]
            try:
                for i in range(calls):
                    started += 1
                    pool.process(i)
                    returned += 1
            finally:
                done.set()
                for thread in readers:
                    thread.wait()
                sys.setswitchinterval(interval)
            assert wrong == []
            assert pool.stats().run.count == calls

    def test_executor_stats(self) -> None:
        """Executor.stats() carries the same summaries, of its calls."""
        with tunnypy.Executor(2, latency=True) as executor:
            futures = [executor.submit(pow, 2, i) for i in range(10)]
            assert [f.result(BOUND) for f in futures] == [2**i for i in range(10)]
            stats = executor.stats()
            assert stats.wait.count == stats.run.count == 10
            assert isinstance(stats.run, LatencySummary)

    def test_summary_is_a_frozen_value(self) -> None:
        """A LatencySummary is immutable and compares by value."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            pool.process(1)
            first, second = pool.stats().run, pool.stats().run
            assert first == second
            with pytest.raises(AttributeError):
                first.count = 5  # type: ignore[misc]
            assert "buckets" not in repr(first)
