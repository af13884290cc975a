"""tunnypy.contrib.prometheus: a pool's metrics, scraped as Prometheus would."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

import tunnypy
from tunnypy.contrib import prometheus

from .helpers import WAIT, Call, Gate


def run(payload: Any) -> Any:
    if isinstance(payload, BaseException):
        raise payload
    return payload() if callable(payload) else payload


def scrape(registry: CollectorRegistry) -> dict[str, Metric]:
    text = generate_latest(registry).decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Metric, name: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return found[0]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def test_core_does_not_import_prometheus_client() -> None:
    """`import tunnypy` loads no prometheus_client: the extra is optional."""
    code = "import sys, tunnypy; sys.exit('prometheus_client' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=WAIT).returncode == 0


class TestScrape:
    """What a scrape shows after a known set of calls."""

    def test_metrics_after_known_calls(self, registry: CollectorRegistry) -> None:
        """Names, types, labels and values: gauges, outcomes counted exactly, histograms."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            collector = prometheus.register(pool, name="api", registry=registry)
            assert isinstance(collector, prometheus.PoolCollector)
            for i in range(5):
                pool.process(i)
            for _ in range(2):
                with pytest.raises(ValueError):
                    pool.process(ValueError("boom"))
            gate = Gate()
            held = Call(pool.process, gate)
            assert gate.started.wait(WAIT)
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed("late", 0.01)  # never runs
            with pytest.raises(tunnypy.PoolBusyError):
                pool.try_process("no room")
            token = tunnypy.CancelToken()
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                pool.process_ctx("cancelled", token)

            busy = scrape(registry)
            assert value(busy["tunnypy_pool_busy"], "tunnypy_pool_busy", pool="api") == 1
            assert value(busy["tunnypy_pool_idle"], "tunnypy_pool_idle", pool="api") == 0
            gate.release.set()
            held.wait()
            families = scrape(registry)

        expected_types = {
            "tunnypy_pool_size": "gauge",
            "tunnypy_pool_workers": "gauge",
            "tunnypy_pool_busy": "gauge",
            "tunnypy_pool_idle": "gauge",
            "tunnypy_pool_waiting": "gauge",
            "tunnypy_pool_min_size": "gauge",
            "tunnypy_pool_max_size": "gauge",
            "tunnypy_pool_calls": "counter",
            "tunnypy_pool_replaced": "counter",
            "tunnypy_pool_factory_failures": "counter",
            "tunnypy_pool_autoscale_started": "counter",
            "tunnypy_pool_autoscale_retired": "counter",
            "tunnypy_pool_recycled": "counter",
            "tunnypy_pool_respawned": "counter",
            "tunnypy_pool_children_ended": "counter",
            "tunnypy_pool_wait_seconds": "histogram",
            "tunnypy_pool_run_seconds": "histogram",
        }
        assert {name: f.type for name, f in families.items()} == expected_types
        gauges = {name: value(families[name], name, pool="api") for name in list(families)[:5]}
        assert gauges == {
            "tunnypy_pool_size": 1,
            "tunnypy_pool_workers": 1,
            "tunnypy_pool_busy": 0,
            "tunnypy_pool_idle": 1,
            "tunnypy_pool_waiting": 0,
        }
        calls = families["tunnypy_pool_calls"]
        totals = [s for s in calls.samples if s.name == "tunnypy_pool_calls_total"]
        outcomes = {s.labels["outcome"]: s.value for s in totals}
        assert outcomes == {
            "completed": 6,
            "failed": 2,
            "timed_out": 1,
            "cancelled": 1,
            "rejected": 1,
        }
        assert all(s.labels["pool"] == "api" for s in calls.samples)
        # A pool that does not autoscale has no bounds; nothing was replaced or restarted.
        assert families["tunnypy_pool_min_size"].samples == []
        assert families["tunnypy_pool_max_size"].samples == []
        for field in ("replaced", "factory_failures", "autoscale_started"):
            name = f"tunnypy_pool_{field}"
            assert value(families[name], f"{name}_total", pool="api") == 0
        ended = families["tunnypy_pool_children_ended"].samples
        assert {s.labels["reason"]: s.value for s in ended if s.name.endswith("_total")} == {
            "killed": 0,
            "crashed": 0,
            "recycled": 0,
        }
        for name in ("tunnypy_pool_wait_seconds", "tunnypy_pool_run_seconds"):
            family = families[name]
            buckets = [
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name == f"{name}_bucket"
            ]
            bounds = [le for le, _ in buckets]
            assert bounds == [*prometheus.DEFAULT_BUCKETS, float("inf")]
            counts = [n for _, n in buckets]
            assert counts == sorted(counts)
            assert counts[-1] == value(family, f"{name}_count", pool="api") == 8  # jobs that ran
            assert value(family, f"{name}_sum", pool="api") > 0
        run_buckets = families["tunnypy_pool_run_seconds"].samples
        # The held job ran for longer than 10 µs: it waited for the test's scrape.
        assert next(s.value for s in run_buckets if s.labels.get("le") == "1e-05") <= 7

    def test_two_pools_two_labels(self, registry: CollectorRegistry) -> None:
        """Pools registered with one registry share its families, one label each."""
        with (
            tunnypy.Pool.from_func(2, run, latency=True) as a,
            tunnypy.Executor(3, latency=True) as b,
        ):
            first = prometheus.register(a, name="a", registry=registry)
            assert prometheus.register(b, name="b", registry=registry) is first
            a.process(1)
            families = scrape(registry)
            size = families["tunnypy_pool_size"]
            assert value(size, "tunnypy_pool_size", pool="a") == 2
            assert value(size, "tunnypy_pool_size", pool="b") == 3
            completed = families["tunnypy_pool_calls"]
            assert value(completed, "tunnypy_pool_calls_total", pool="a", outcome="completed") == 1
            assert value(completed, "tunnypy_pool_calls_total", pool="b", outcome="completed") == 0

    def test_name_taken(self, registry: CollectorRegistry) -> None:
        """A second pool under a name in use is refused, and the first stays."""
        with (
            tunnypy.Pool.from_func(1, run, latency=True) as a,
            tunnypy.Pool.from_func(2, run, latency=True) as b,
        ):
            prometheus.register(a, name="api", registry=registry)
            with pytest.raises(ValueError, match=r"^name 'api' already names a registered pool$"):
                prometheus.register(b, name="api", registry=registry)
            size = scrape(registry)["tunnypy_pool_size"]
            assert value(size, "tunnypy_pool_size", pool="api") == 1

    @pytest.mark.parametrize(
        ("name", "error", "message"),
        [
            ("", ValueError, r"^name must be a non-empty str \(got ''\)$"),
            (3, TypeError, r"^name must be a str \(got int\)$"),
        ],
    )
    def test_bad_name(
        self, registry: CollectorRegistry, name: Any, error: type[Exception], message: str
    ) -> None:
        """A name that is not a non-empty string is refused; nothing is registered."""
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            with pytest.raises(error, match=message):
                prometheus.register(pool, name=name, registry=registry)
            assert scrape(registry) == {}

    def test_not_a_pool(self, registry: CollectorRegistry) -> None:
        """Something without stats() is refused."""
        message = r"^pool must be a tunnypy Pool or Executor \(got int\)$"
        with pytest.raises(TypeError, match=message):
            prometheus.register(5, name="x", registry=registry)  # type: ignore[arg-type]


class TestLifetime:
    """Registering holds a pool weakly; unregistering removes it."""

    def test_pool_is_held_weakly(self, registry: CollectorRegistry) -> None:
        """A registered pool, dropped, is collected and leaves the scrape."""
        pool = tunnypy.Pool.from_func(1, run, latency=True)
        prometheus.register(pool, name="gone", registry=registry)
        pool.close()
        ref = weakref.ref(pool)
        del pool
        gc.collect()
        assert ref() is None
        families = scrape(registry)
        assert families["tunnypy_pool_size"].samples == []

    def test_unregister(self, registry: CollectorRegistry) -> None:
        """Unregistering the last pool removes every tunnypy metric; twice is refused."""
        with (
            tunnypy.Pool.from_func(1, run, latency=True) as a,
            tunnypy.Pool.from_func(1, run, latency=True) as b,
        ):
            prometheus.register(a, name="a", registry=registry)
            prometheus.register(b, name="b", registry=registry)
            prometheus.unregister(a, registry=registry)
            size = scrape(registry)["tunnypy_pool_size"]
            assert [s.labels["pool"] for s in size.samples] == ["b"]
            prometheus.unregister(b, registry=registry)
            assert scrape(registry) == {}
            with pytest.raises(ValueError, match=r"^pool is not registered with this registry$"):
                prometheus.unregister(b, registry=registry)
            prometheus.register(a, name="a", registry=registry)  # and again
            assert "tunnypy_pool_size" in scrape(registry)

    def test_clash_with_another_collector(self, registry: CollectorRegistry) -> None:
        """Another collector already reporting these names is refused by the registry."""
        registry.register(prometheus.PoolCollector())
        with tunnypy.Pool.from_func(1, run, latency=True) as pool, pytest.raises(ValueError):
            prometheus.register(pool, name="api", registry=registry)


class TestCustomBuckets:
    """A PoolCollector made by hand, with bounds of one's own."""

    def test_own_bounds(self, registry: CollectorRegistry) -> None:
        """The histograms use the given bounds, then +Inf."""
        collector = prometheus.PoolCollector(buckets=[0.001, 1])
        registry.register(collector)
        with tunnypy.Pool.from_func(1, run, latency=True) as pool:
            collector.add(pool, "mine")
            pool.process(1)
            family = scrape(registry)["tunnypy_pool_run_seconds"]
            les = [s.labels["le"] for s in family.samples if s.name.endswith("_bucket")]
            assert les == ["0.001", "1.0", "+Inf"]
            assert collector.remove(pool)
            assert not collector.remove(pool)

    @pytest.mark.parametrize(
        ("buckets", "message"),
        [
            ([], r"^buckets must hold at least one bound \(got none\)$"),
            ([0.1, 0.1], r"^bucket bounds must be increasing \(got \[0\.1, 0\.1\]\)$"),
            ([0.0], r"^bucket bounds must be positive finite numbers \(got 0\.0\)$"),
            ([float("inf")], r"^bucket bounds must be positive finite numbers \(got inf\)$"),
            (["1"], r"^bucket bounds must be positive finite numbers \(got '1'\)$"),
        ],
    )
    def test_bad_bounds(self, buckets: list[Any], message: str) -> None:
        """Bounds that are empty, not increasing, or not positive finite numbers are refused."""
        with pytest.raises(ValueError, match=message):
            prometheus.PoolCollector(buckets=buckets)
