"""
Prometheus metrics for tunnypy pools, for ``prometheus-client`` (the ``prometheus`` extra).

::

    from prometheus_client import REGISTRY, start_http_server
    from tunnypy.contrib import prometheus

    pool = tunnypy.Pool.from_func(4, handle, latency="sampled")
    prometheus.register(pool, name="api")
    start_http_server(8000)

Every pool registered with one registry is reported by that registry's one
:class:`PoolCollector`, each under its own ``pool`` label (Prometheus allows
each metric family once per registry). The collector holds its pools weakly:
registering does not keep a pool alive, and a collected pool drops out.

Metrics, each with the label ``pool``:

- gauges ``tunnypy_pool_size``, ``tunnypy_pool_workers``,
  ``tunnypy_pool_busy``, ``tunnypy_pool_idle``, ``tunnypy_pool_waiting``
  (the fields of :class:`tunnypy.PoolStats` of the same names);
- gauges ``tunnypy_pool_min_size`` and ``tunnypy_pool_max_size``, the
  bounds of :meth:`tunnypy.Pool.autoscale`, with a sample only while the pool
  autoscales (:attr:`tunnypy.PoolStats.min_size` is ``None`` otherwise);
- the counter ``tunnypy_pool_calls_total``, labelled ``outcome``
  (``completed``, ``failed``, ``timed_out``, ``cancelled``, ``rejected``);
- the counters ``tunnypy_pool_replaced_total``,
  ``tunnypy_pool_factory_failures_total``,
  ``tunnypy_pool_autoscale_started_total``,
  ``tunnypy_pool_autoscale_retired_total``, ``tunnypy_pool_recycled_total``
  and ``tunnypy_pool_respawned_total`` (the fields of
  :class:`tunnypy.PoolStats` of the same names);
- the counter ``tunnypy_pool_children_ended_total``, labelled ``reason``
  (``killed``, ``crashed``, ``recycled``: the fields ``killed``, ``crashed``
  and ``children_recycled``), 0 but for workers in processes
  (``isolation="process"``) or on Dask (:mod:`tunnypy.contrib.dask`, whose
  actors count as children);
- for a pool made with ``latency=True`` or ``"sampled"`` only, the histograms
  ``tunnypy_pool_wait_seconds`` and ``tunnypy_pool_run_seconds``
  (:attr:`tunnypy.PoolStats.wait` and :attr:`~tunnypy.PoolStats.run`);
  a pool without it has no samples in them. Their ``_count`` is exact and
  their ``_sum`` is :attr:`tunnypy.LatencySummary.total`, within 12.5%.
  Each bucket counts the jobs whose internal bucket (four per power of two)
  lies wholly at or below its bound (see
  :meth:`tunnypy.LatencySummary.count_at_most`): a time less than 20% below a
  bound may be counted under the next one, never under a lower one.

One family with a label for the child processes, separate families for the
workers: killed, crashed and recycled exclude each other and add up to every
child that ended while its worker lived on, as the call outcomes add up to
every call; the workers' counters add up to nothing (a resize's starts and
retirements are in none of them), so a sum over a label would mislead.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import REGISTRY, CollectorRegistry

from tunnypy import LatencySummary, PoolStats

__all__ = ["DEFAULT_BUCKETS", "PoolCollector", "StatsSource", "register", "unregister"]

DEFAULT_BUCKETS: tuple[float, ...] = (
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""The histograms' bucket bounds, in seconds, unless a :class:`PoolCollector` is given others."""

_GAUGES = (
    ("size", "Target number of workers: what set_size last asked for."),
    ("workers", "Worker threads alive, including retiring ones still finishing a job."),
    ("busy", "Workers holding a job."),
    ("idle", "Workers parked, ready for a job."),
    ("waiting", "Calls waiting in line for a worker."),
)
_OUTCOMES = ("completed", "failed", "timed_out", "cancelled", "rejected")
_BOUNDS = (
    ("min_size", "Lower bound of autoscaling; no sample while the pool does not autoscale."),
    ("max_size", "Upper bound of autoscaling; no sample while the pool does not autoscale."),
)
_COUNTERS = (
    ("replaced", "Workers started in place of workers that left because they failed."),
    (
        "factory_failures",
        "Calls of the worker factory that raised or returned no worker"
        " while replacing, autoscaling or recycling.",
    ),
    ("autoscale_started", "Workers autoscaling started for calls that would have waited in line."),
    ("autoscale_retired", "Workers autoscaling retired because they had idled for idle_timeout."),
    (
        "recycled",
        "Workers retired by max_jobs_per_worker or max_worker_age once their successor started.",
    ),
    (
        "respawned",
        "Worker processes (or Dask actors) started in place of one killed, crashed or recycled.",
    ),
)
_CHILD_ENDINGS = (("killed", "killed"), ("crashed", "crashed"), ("recycled", "children_recycled"))


class StatsSource(Protocol):
    """What can be registered: a :class:`tunnypy.Pool` or a :class:`tunnypy.Executor`."""

    @property
    def latency(self) -> bool | str:
        """What the pool times (True, False or "sampled"); histograms are reported unless False."""
        ...

    def stats(self) -> PoolStats:
        """A snapshot of the pool's sizes, counters and latencies."""
        ...


class PoolCollector:
    """
    A ``prometheus_client`` collector reporting the pools added to it.

    :func:`register` makes one per registry and adds pools to it; make one
    yourself for other bucket bounds, and register it with
    ``registry.register(collector)``.

    Args:
        buckets: The histograms' bucket bounds in seconds, increasing,
            positive and finite; ``+Inf`` is added.

    Raises:
        ValueError: *buckets* is empty, not increasing, or holds a bound
            that is not a positive finite number.
    """

    def __init__(self, buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        bounds = tuple(buckets)
        if not bounds:
            msg = "buckets must hold at least one bound (got none)"
            raise ValueError(msg)
        for bound in bounds:
            if (
                isinstance(bound, bool)
                or not isinstance(bound, int | float)
                or not 0 < bound < math.inf
            ):
                msg = f"bucket bounds must be positive finite numbers (got {bound!r})"
                raise ValueError(msg)
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            msg = f"bucket bounds must be increasing (got {list(bounds)!r})"
            raise ValueError(msg)
        self.buckets = bounds
        self._lock = threading.Lock()
        self._pools: dict[str, weakref.ref[StatsSource]] = {}

    def add(self, pool: StatsSource, name: str) -> None:
        """
        Report *pool* under the label ``pool=name``, holding it weakly.

        Raises:
            TypeError: *name* is not a string, or *pool* has no ``stats()``
                or ``latency`` (``True``, ``False`` or ``"sampled"``), or
                cannot be referenced weakly.
            ValueError: *name* is empty, or already names a pool still alive
                in this collector.
        """
        if not isinstance(name, str):
            msg = f"name must be a str (got {type(name).__name__})"
            raise TypeError(msg)
        if not name:
            msg = "name must be a non-empty str (got '')"
            raise ValueError(msg)
        timed = getattr(pool, "latency", None)
        if not callable(getattr(pool, "stats", None)) or not (
            isinstance(timed, bool) or timed == "sampled"
        ):
            msg = f"pool must be a tunnypy Pool or Executor (got {type(pool).__name__})"
            raise TypeError(msg)
        ref = weakref.ref(pool)
        with self._lock:
            held = self._pools.get(name)
            if held is not None and held() is not None:
                msg = f"name {name!r} already names a registered pool"
                raise ValueError(msg)
            self._pools[name] = ref

    def remove(self, pool: StatsSource) -> bool:
        """Stop reporting *pool* (under every name it was added with); whether it was reported."""
        with self._lock:
            names = [name for name, ref in self._pools.items() if ref() is pool]
            for name in names:
                del self._pools[name]
            return bool(names)

    def __len__(self) -> int:
        """How many pools still alive this collector reports."""
        with self._lock:
            return sum(1 for ref in self._pools.values() if ref() is not None)

    def describe(self) -> list[Metric]:
        """The metric families, without samples: lets a registry refuse a clash of names."""
        return self._families().all()

    def collect(self) -> Iterator[Metric]:
        """
        The metric families, with one set of samples for each pool still alive.

        Called by the registry on every scrape; takes each pool's
        :meth:`~tunnypy.Pool.stats`.
        """
        with self._lock:
            named = list(self._pools.items())
        families = self._families()
        for name, ref in named:
            pool = ref()
            if pool is None:
                with self._lock:
                    if self._pools.get(name) is ref:
                        del self._pools[name]
                continue
            stats = pool.stats()
            timed = pool.latency
            del pool
            labels = [name]
            for (field, _), family in zip(_GAUGES, families.gauges, strict=True):
                family.add_metric(labels, getattr(stats, field))
            for (field, _), bound_family in zip(_BOUNDS, families.bounds, strict=True):
                bound = getattr(stats, field)
                if bound is not None:  # a 0 or a NaN would read as a bound that is not there
                    bound_family.add_metric(labels, bound)
            for outcome in _OUTCOMES:
                families.calls.add_metric([name, outcome], getattr(stats, outcome))
            for (field, _), counter in zip(_COUNTERS, families.counters, strict=True):
                counter.add_metric(labels, getattr(stats, field))
            for reason, field in _CHILD_ENDINGS:
                families.children_ended.add_metric([name, reason], getattr(stats, field))
            if timed:  # an untimed pool's empty histograms would read as no calls
                families.wait.add_metric(labels, self._buckets(stats.wait), stats.wait.total)
                families.run.add_metric(labels, self._buckets(stats.run), stats.run.total)
        yield from families.all()

    def _buckets(self, summary: LatencySummary) -> list[tuple[str, float]]:
        buckets: list[tuple[str, float]] = [
            (repr(float(bound)), summary.count_at_most(bound)) for bound in self.buckets
        ]
        buckets.append(("+Inf", summary.count))
        return buckets

    @staticmethod
    def _families() -> _Families:
        return _Families(
            gauges=[
                GaugeMetricFamily(f"tunnypy_pool_{field}", doc, labels=["pool"])
                for field, doc in _GAUGES
            ],
            bounds=[
                GaugeMetricFamily(f"tunnypy_pool_{field}", doc, labels=["pool"])
                for field, doc in _BOUNDS
            ],
            calls=CounterMetricFamily(
                "tunnypy_pool_calls",
                "Calls that have ended, by outcome.",
                labels=["pool", "outcome"],
            ),
            counters=[
                CounterMetricFamily(f"tunnypy_pool_{field}", doc, labels=["pool"])
                for field, doc in _COUNTERS
            ],
            children_ended=CounterMetricFamily(
                "tunnypy_pool_children_ended",
                "Worker processes (or Dask actors) that ended while their worker lived on,"
                " by reason: killed after kill_grace, crashed, or recycled between jobs.",
                labels=["pool", "reason"],
            ),
            wait=HistogramMetricFamily(
                "tunnypy_pool_wait_seconds",
                "Time from a call joining the line until a worker started its job.",
                labels=["pool"],
            ),
            run=HistogramMetricFamily(
                "tunnypy_pool_run_seconds", "Time a worker spent running a job.", labels=["pool"]
            ),
        )


@dataclasses.dataclass(frozen=True, slots=True)
class _Families:
    """One scrape's metric families, in the order they are reported."""

    gauges: list[GaugeMetricFamily]
    bounds: list[GaugeMetricFamily]
    calls: CounterMetricFamily
    counters: list[CounterMetricFamily]
    children_ended: CounterMetricFamily
    wait: HistogramMetricFamily
    run: HistogramMetricFamily

    def all(self) -> list[Metric]:
        return [
            *self.gauges,
            *self.bounds,
            self.calls,
            *self.counters,
            self.children_ended,
            self.wait,
            self.run,
        ]


_registered_lock = threading.Lock()
_registered: weakref.WeakKeyDictionary[CollectorRegistry, PoolCollector] = (
    weakref.WeakKeyDictionary()
)


def register(
    pool: StatsSource, *, name: str, registry: CollectorRegistry = REGISTRY
) -> PoolCollector:
    """
    Report *pool*'s metrics in *registry*, labelled ``pool=name``.

    The first pool registered with a registry registers that registry's
    :class:`PoolCollector`; later ones join it. The pool is held weakly.

    Args:
        pool: A :class:`tunnypy.Pool` or :class:`tunnypy.Executor`.
        name: The value of the ``pool`` label, unique within *registry*.
        registry: Where to report; ``prometheus_client``'s default registry
            unless given.

    Returns:
        The registry's collector.

    Raises:
        TypeError, ValueError: As :meth:`PoolCollector.add`; nothing changed.
        ValueError: Another collector of *registry* already reports metrics
            with these names (``prometheus_client``'s ``DuplicateTimeseries``).
    """
    with _registered_lock:
        collector = _registered.get(registry)
        if collector is None:
            collector = PoolCollector()
            collector.add(pool, name)
            registry.register(collector)
            _registered[registry] = collector
        else:
            collector.add(pool, name)
        return collector


def unregister(pool: StatsSource, *, registry: CollectorRegistry = REGISTRY) -> None:
    """
    Stop reporting *pool* in *registry*.

    The registry's collector leaves the registry with its last pool.

    Raises:
        ValueError: *pool* is not registered with *registry*.
    """
    with _registered_lock:
        collector = _registered.get(registry)
        if collector is None or not collector.remove(pool):
            msg = "pool is not registered with this registry"
            raise ValueError(msg)
        if not len(collector):
            registry.unregister(collector)
            del _registered[registry]
