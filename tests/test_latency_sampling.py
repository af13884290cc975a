"""
latency="sampled": which jobs are timed (every one after a job of SAMPLE_BELOW
or more, one in SAMPLE_EVERY after shorter ones), each counted with the untimed
jobs it stands for, so that every job run is counted once; latency=True times
every job.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tunnypy
from tunnypy import _line, _pool, _worker_thread
from tunnypy._histogram import SAMPLE_BELOW, SAMPLE_EVERY, bucket_bounds, bucket_index

from .helpers import WAIT, Call, Gate


class SteppingClock:
    """A clock that moves on by ``step`` ns at each read, and counts the worker's reads."""

    def __init__(self, step: int) -> None:
        self.now = 1_000_000
        self.step = step
        self.worker_reads = 0
        self.lock = threading.Lock()

    def __call__(self) -> int:
        with self.lock:
            if threading.current_thread().name.startswith("tunnypy-worker"):
                self.worker_reads += 1
            self.now += self.step
            return self.now


@pytest.fixture
def stepping(monkeypatch: pytest.MonkeyPatch) -> Iterator[SteppingClock]:
    """The core's clock replaced before any pool starts: a worker reads it as its thread starts."""
    clock = SteppingClock(1_000)
    monkeypatch.setattr(_worker_thread, "clock", clock)
    monkeypatch.setattr(_pool, "_clock", clock)
    monkeypatch.setattr(_line, "clock", clock)
    yield clock


def echo(payload: Any) -> Any:
    return payload() if callable(payload) else payload


def run_counts(pool: tunnypy.Pool[Any, Any]) -> dict[int, int]:
    """The run histogram's buckets that hold jobs, by the bucket's lower bound in ns."""
    buckets = pool.stats().run.buckets
    return {bucket_bounds(i)[0]: n for i, n in enumerate(buckets) if n}


class TestWhichJobsAreTimed:
    def test_short_jobs_are_timed_one_in_sample_every(self, stepping: SteppingClock) -> None:
        """One caller, one worker, jobs of 1 µs by the clock: the 1st, 17th, 33rd ... are timed."""
        calls = 5 * SAMPLE_EVERY + 3
        with tunnypy.Pool.from_func(1, echo, latency="sampled") as pool:
            for i in range(calls):
                assert pool.process(i) == i
            stats = pool.stats()
        timed = -(-calls // SAMPLE_EVERY)  # 0, 16, 32, 48, 64, 80
        assert stepping.worker_reads == 2 * timed
        assert stats.wait.count == stats.run.count == stats.completed == calls
        assert sum(stats.run.buckets) == sum(stats.wait.buckets) == calls

    def test_jobs_of_sample_below_or_more_are_all_timed(self, stepping: SteppingClock) -> None:
        """The same calls with each read 1.5x SAMPLE_BELOW apart: every job is timed."""
        stepping.step = SAMPLE_BELOW * 3 // 2
        calls = 3 * SAMPLE_EVERY
        with tunnypy.Pool.from_func(1, echo, latency="sampled") as pool:
            for i in range(calls):
                pool.process(i)
            counts = run_counts(pool)
        assert stepping.worker_reads == 2 * calls
        assert counts == {bucket_bounds(bucket_index(stepping.step))[0]: calls}

    def test_a_timed_job_counts_for_the_untimed_ones_before_it(
        self, stepping: SteppingClock
    ) -> None:
        """
        The 17th job, timed at 3 µs, is counted 16 times: for itself and the 15
        untimed before it; the jobs after it, untimed, are counted in its bucket.
        """
        with tunnypy.Pool.from_func(1, echo, latency="sampled") as pool:
            pool.process(0)  # timed, at 1 µs
            for i in range(SAMPLE_EVERY - 1):
                pool.process(i)  # untimed
            stepping.step = 3_000
            pool.process("the 17th")  # timed, at 3 µs
            stepping.step = 1_000
            assert run_counts(pool) == {
                bucket_bounds(bucket_index(1_000))[0]: 1,
                bucket_bounds(bucket_index(3_000))[0]: SAMPLE_EVERY,
            }
            for i in range(5):
                pool.process(i)  # untimed: counted in the 17th's bucket when read
            assert run_counts(pool) == {
                bucket_bounds(bucket_index(1_000))[0]: 1,
                bucket_bounds(bucket_index(3_000))[0]: SAMPLE_EVERY + 5,
            }
            assert pool.stats().wait.count == SAMPLE_EVERY + 6

    def test_after_a_long_job_the_next_is_timed(self, stepping: SteppingClock) -> None:
        """A job of SAMPLE_BELOW or more ends the skipping: the job after it is timed too."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, echo, latency="sampled") as pool:
            stepping.step = SAMPLE_BELOW
            pool.process(0)  # timed and long: the next is timed
            stepping.step = 1_000
            call = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            reads = stepping.worker_reads
            gate.release.set()
            call.wait()
            assert reads == 3  # both started; the gated one's end not yet read
            assert stepping.worker_reads == 4
            pool.process(1)  # after a short timed job: untimed
            assert stepping.worker_reads == 4
            assert pool.stats().run.count == 3

    def test_latency_true_times_every_job(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With latency=True, short jobs too: a start and an end read per job."""
        clock = SteppingClock(1_000)
        monkeypatch.setattr(_worker_thread, "clock", clock)
        monkeypatch.setattr(_pool, "_clock", clock)
        monkeypatch.setattr(_line, "clock", clock)
        calls = 3 * SAMPLE_EVERY
        with tunnypy.Pool.from_func(1, echo, latency=True) as pool:
            for i in range(calls):
                pool.process(i)
            counts = run_counts(pool)
        assert clock.worker_reads == 2 * calls
        assert counts == {bucket_bounds(bucket_index(1_000))[0]: calls}

    def test_jobs_whose_callers_left_are_counted_once(self, stepping: SteppingClock) -> None:
        """An untimed job whose caller gave up while it ran is counted once, as it ends."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, echo, latency="sampled") as pool:
            pool.process(0)  # timed and short: the next ones are not
            token = tunnypy.CancelToken()
            call = Call(pool.process_ctx, gate, token)
            assert gate.started.wait(WAIT)
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                call.wait()
            assert pool.stats().run.count == 1  # still running
            gate.release.set()
            pool.process(1)  # served once the abandoned job has ended
            stats = pool.stats()
        assert stepping.worker_reads == 2
        assert (stats.completed, stats.cancelled) == (2, 1)
        assert stats.run.count == stats.wait.count == 3
