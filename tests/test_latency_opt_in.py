"""latency=: timing is opt-in per pool; a pool without it reads no clock and counts nothing."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import tunnypy
from tunnypy import _histogram, _line, _pool, _worker_thread
from tunnypy.contrib import prometheus

from .helpers import WAIT, wait_for


def run(payload: Any) -> Any:
    if isinstance(payload, BaseException):
        raise payload
    return payload


class Echo(tunnypy.BaseWorker[Any, Any]):
    def process(self, payload: Any) -> Any:
        return payload


class Counting:
    """A stand-in for the clock that counts its reads."""

    def __init__(self, clock: Callable[[], int]) -> None:
        self.clock = clock
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.clock()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counting]:
    """Every clock read of the core counted: the worker's, Pool.process's, Line.dispatch's."""
    counting = Counting(_histogram.clock)
    # Each module's own name: the worker reads it once, as its thread starts.
    monkeypatch.setattr(_worker_thread, "clock", counting)
    monkeypatch.setattr(_pool, "_clock", counting)
    monkeypatch.setattr(_line, "clock", counting)
    yield counting


def every_kind_of_call(pool: tunnypy.Pool[Any, Any]) -> int:
    """Calls by process (new and reused job), process_timed, process_ctx, submit, aprocess."""
    assert pool.process(1) == 1
    assert pool.process(2) == 2
    assert pool.process_timed(3, WAIT) == 3
    assert pool.submit(4).result(WAIT) == 4
    assert pool.process_ctx(4, tunnypy.CancelToken()) == 4
    with pytest.raises(ValueError, match="boom"):
        pool.process(ValueError("boom"))

    async def main() -> Any:
        return await pool.aprocess(5)

    assert asyncio.run(main()) == 5
    return 7


class TestOffByDefault:
    """Without latency=True, nothing is timed."""

    @pytest.mark.parametrize(
        "make",
        [
            lambda: tunnypy.Pool(2, Echo),
            lambda: tunnypy.Pool.from_func(2, run),
            lambda: tunnypy.Pool.from_callback(2),
        ],
        ids=["Pool", "from_func", "from_callback"],
    )
    def test_default_is_off(self, make: Callable[[], tunnypy.Pool[Any, Any]]) -> None:
        """Each constructor's default: latency is False."""
        with make() as pool:
            assert pool.latency is False

    def test_summaries_empty_after_calls(self) -> None:
        """Calls of every kind end, are counted in the counters, and not in wait or run."""
        with tunnypy.Pool.from_func(2, run) as pool:
            calls = every_kind_of_call(pool)
            stats = pool.stats()
        assert stats.completed + stats.failed == calls
        for summary in (stats.wait, stats.run):
            assert summary.count == 0
            assert summary.total == summary.p50 == summary.p99 == summary.max == 0.0
            assert not any(summary.buckets)

    def test_no_clock_read_when_off(self, clock: Counting) -> None:
        """Neither the callers nor the workers read the clock for a call."""
        with tunnypy.Pool.from_func(2, run) as pool:
            every_kind_of_call(pool)
        assert clock.reads == 0

    def test_clock_read_when_on(self, clock: Counting) -> None:
        """The same calls with latency=True do read the patched clock: the count above is real."""
        with tunnypy.Pool.from_func(2, run, latency=True) as pool:
            calls = every_kind_of_call(pool)
            stats = pool.stats()
        # A join per call, and a start and an end for each job timed: the
        # first on each worker at least (tests/test_latency_sampling.py).
        assert clock.reads >= calls + 2
        assert stats.wait.count == stats.run.count == calls


class TestOn:
    """latency=True on each constructor and the Executor."""

    def test_from_callback(self) -> None:
        """A callback pool with latency=True counts its jobs."""
        with tunnypy.Pool.from_callback(1, latency=True) as pool:
            assert pool.latency is True
            for _ in range(3):
                pool.process(lambda: None)
            assert pool.stats().run.count == 3

    def test_pool_constructor(self) -> None:
        """Pool(size, factory, latency=True) counts its jobs."""

        with tunnypy.Pool(1, Echo, latency=True) as pool:
            pool.process(1)
            assert pool.stats().wait.count == 1

    def test_executor(self) -> None:
        """Executor(latency=True).stats() counts its calls; the default counts none."""
        with tunnypy.Executor(2, latency=True) as timed, tunnypy.Executor(2) as untimed:
            assert timed.latency is True
            assert untimed.latency is False
            for executor in (timed, untimed):
                for future in [executor.submit(run, i) for i in range(5)]:
                    future.result(WAIT)
            # A call's future is settled inside its job, before its worker
            # counts it: wait for the last counts, with a bound.
            wait_for(lambda: timed.stats().completed == 5, "every timed call to be counted")
            wait_for(lambda: untimed.stats().completed == 5, "every call to be counted")
            timed_stats, untimed_stats = timed.stats(), untimed.stats()
        assert timed_stats.wait.count == timed_stats.run.count == 5
        assert untimed_stats.wait.count == untimed_stats.run.count == 0
        assert untimed_stats.completed == 5


class TestBadValues:
    """A latency other than True, False or "sampled" is refused before anything is made."""

    @pytest.mark.parametrize("bad", [1, 0, None, "yes", "Sampled", 1.0])
    def test_refused(self, bad: Any) -> None:
        """TypeError (ValueError for another str) naming latency and what arrived; nothing made."""
        made: list[object] = []

        def factory() -> Echo:
            made.append(object())
            return Echo()

        threads = threading.active_count()
        error = ValueError if isinstance(bad, str) else TypeError
        message = (
            "^"
            + re.escape(
                f"latency must be True, False or 'sampled' (got {type(bad).__name__} {bad!r})"
            )
            + "$"
        )
        with pytest.raises(error, match=message):
            tunnypy.Pool(1, factory, latency=bad)
        with pytest.raises(error, match=message):
            tunnypy.Pool.from_func(1, run, latency=bad)
        with pytest.raises(error, match=message):
            tunnypy.Pool.from_callback(1, latency=bad)
        with pytest.raises(error, match=message):
            tunnypy.Executor(1, latency=bad)
        assert made == []
        assert threading.active_count() == threads


class TestSampled:
    """latency="sampled" on each constructor and the Executor: read back, and counting."""

    @pytest.mark.parametrize(
        "make",
        [
            lambda: tunnypy.Pool(2, Echo, latency="sampled"),
            lambda: tunnypy.Pool.from_func(2, run, latency="sampled"),
            lambda: tunnypy.Executor(2, latency="sampled"),
        ],
        ids=["Pool", "from_func", "Executor"],
    )
    def test_counts_every_call(self, make: Callable[[], Any]) -> None:
        """Every call is counted, in wait and run alike, whichever were timed."""
        with make() as pool:
            if isinstance(pool, tunnypy.Executor):
                calls = [pool.submit(run, i) for i in range(50)]
                assert [f.result(WAIT) for f in calls] == list(range(50))
            else:
                assert [pool.process(i) for i in range(50)] == list(range(50))
            assert pool.latency == "sampled"
            stats = pool.stats()
        assert stats.wait.count == stats.run.count == stats.completed == 50

    def test_from_callback(self) -> None:
        with tunnypy.Pool.from_callback(1, latency="sampled") as pool:
            assert pool.process(lambda: 3) == 3
            assert (pool.latency, pool.stats().run.count) == ("sampled", 1)


class TestPrometheus:
    """The collector reports histograms only for the pools that time their jobs."""

    def test_histograms_only_for_timed_pools(self) -> None:
        """Both pools' gauges and counters; only the timed pool's histogram samples."""
        registry = CollectorRegistry()
        with (
            tunnypy.Pool.from_func(1, run, latency=True) as timed,
            tunnypy.Pool.from_func(1, run, latency="sampled") as sampled,
            tunnypy.Pool.from_func(1, run) as untimed,
        ):
            prometheus.register(timed, name="timed", registry=registry)
            prometheus.register(sampled, name="sampled", registry=registry)
            prometheus.register(untimed, name="untimed", registry=registry)
            timed.process(1)
            for i in range(20):
                sampled.process(i)
            untimed.process(1)
            text = generate_latest(registry).decode()
        families = {f.name: f for f in text_string_to_metric_families(text)}
        for name in ("tunnypy_pool_size", "tunnypy_pool_calls"):
            pools = {s.labels["pool"] for s in families[name].samples}
            assert pools == {"timed", "sampled", "untimed"}, name
        for name in ("tunnypy_pool_wait_seconds", "tunnypy_pool_run_seconds"):
            pools = {s.labels["pool"] for s in families[name].samples}
            assert pools == {"timed", "sampled"}, name
        count = {
            s.labels["pool"]: s.value
            for s in families["tunnypy_pool_run_seconds"].samples
            if s.name == "tunnypy_pool_run_seconds_count"
        }
        assert count == {"timed": 1.0, "sampled": 20.0}

    def test_needs_a_latency_flag(self) -> None:
        """Something with stats() but no bool latency is refused, naming what arrived."""

        class Half:
            def stats(self) -> tunnypy.PoolStats:
                raise AssertionError("not called")

        with pytest.raises(
            TypeError, match=r"pool must be a tunnypy Pool or Executor \(got Half\)"
        ):
            prometheus.PoolCollector().add(Half(), "half")  # type: ignore[arg-type]
