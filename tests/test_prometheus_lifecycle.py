"""
tunnypy.contrib.prometheus: the lifecycle counters and the autoscaling bounds, moved for real.

Each test makes the pool do something (autoscale, recycle, kill or lose a
worker's child) and checks the scraped value against ``pool.stats()`` and
against what it did. Replacing a failed worker needs tunnypy's own code to
fail: that one is in tests/internal/test_prometheus_replacement.py.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

import tunnypy
from tests.helpers import WAIT, Call, RecordingWorker, wait_for
from tests.process_helpers import Board, Stuck, kill_myself, pid, records
from tests.test_prometheus import scrape, value
from tunnypy.contrib import prometheus

COUNTERS = (
    "replaced",
    "factory_failures",
    "autoscale_started",
    "autoscale_retired",
    "recycled",
    "respawned",
)
CHILD_ENDINGS = {"killed": "killed", "crashed": "crashed", "recycled": "children_recycled"}


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


def counters(registry: CollectorRegistry, pool: tunnypy.Pool[Any, Any]) -> dict[str, float]:
    """Every lifecycle counter of one scrape, keyed by its PoolStats field; checks the types."""
    families = scrape(registry)
    found: dict[str, float] = {}
    for field in COUNTERS:
        family = families[f"tunnypy_pool_{field}"]
        assert family.type == "counter"
        found[field] = value(family, f"tunnypy_pool_{field}_total", pool="p")
    ended = families["tunnypy_pool_children_ended"]
    assert ended.type == "counter"
    for reason, field in CHILD_ENDINGS.items():
        found[field] = value(ended, "tunnypy_pool_children_ended_total", pool="p", reason=reason)
    stats = pool.stats()
    assert found == {field: getattr(stats, field) for field in found}
    return found


def bounds(registry: CollectorRegistry) -> tuple[float | None, float | None]:
    """The scraped min_size and max_size gauges; None where the family has no sample."""
    families = scrape(registry)
    found: list[float | None] = []
    for field in ("min_size", "max_size"):
        family = families[f"tunnypy_pool_{field}"]
        assert family.type == "gauge"
        assert [s.labels for s in family.samples] in ([], [{"pool": "p"}])
        found.append(family.samples[0].value if family.samples else None)
    return found[0], found[1]


class Held:
    """Jobs that each signal as they start and wait until released (one Event for all)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.started = 0

    def __call__(self) -> None:
        with self.lock:
            self.started += 1
        if not self.release.wait(WAIT):
            raise AssertionError("held job was never released")


def test_autoscaling_started_retired_and_its_bounds(registry: CollectorRegistry) -> None:
    """A burst grows the pool by 2, idle_timeout retires both; the bounds show only meanwhile."""
    with tunnypy.Pool(1, RecordingWorker) as pool:
        prometheus.register(pool, name="p", registry=registry)
        assert bounds(registry) == (None, None)
        pool.autoscale(1, 3, idle_timeout=0.05)
        held = Held()
        calls = [Call(pool.process, held) for _ in range(3)]
        wait_for(lambda: held.started == 3, "the burst to run on 3 workers")
        assert bounds(registry) == (1, 3) == (pool.stats().min_size, pool.stats().max_size)
        grown = counters(registry, pool)
        assert (grown["autoscale_started"], grown["autoscale_retired"]) == (2, 0)
        held.release.set()
        for call in calls:
            call.wait()
        wait_for(lambda: pool.stats().workers == 1, "the idle workers to retire and leave")
        shrunk = counters(registry, pool)
        assert (shrunk["autoscale_started"], shrunk["autoscale_retired"]) == (2, 2)
        assert sum(shrunk.values()) == 4  # nothing else moved
        pool.autoscale(None)
        assert bounds(registry) == (None, None)
        assert (pool.stats().min_size, pool.stats().max_size) == (None, None)


def test_recycled(registry: CollectorRegistry) -> None:
    """max_jobs_per_worker=2: four jobs, two workers recycled (each once its successor started)."""
    with tunnypy.Pool(1, RecordingWorker, max_jobs_per_worker=2) as pool:
        prometheus.register(pool, name="p", registry=registry)
        for recycled in (1, 2):
            # The old worker serves on while its successor is made: wait for it to leave.
            for n in range(2):
                assert pool.process_timed(n, WAIT) == n
            wait_for(
                lambda r=recycled: pool.stats().recycled == r and pool.stats().workers == 1,  # type: ignore[misc]
                "the worker to be recycled and leave",
            )
        found = counters(registry, pool)
        assert found["recycled"] == 2
        assert sum(found.values()) == 2


def test_children_killed_crashed_recycled_and_respawned(
    registry: CollectorRegistry, tmp_path: Path
) -> None:
    """A child recycled, one killed after kill_grace, one crashed: three ended, three respawned."""
    board = Board(str(tmp_path))
    with tunnypy.Pool(
        1, records(board), isolation="process", kill_grace=0, max_jobs_per_child=2
    ) as pool:
        prometheus.register(pool, name="p", registry=registry)
        first = pool.process(pid)
        assert pool.process(pid) == first  # its second job: it is recycled after
        second = pool.process(pid)
        assert second != first
        token = tunnypy.CancelToken()
        stuck = Call(pool.process_ctx, Stuck(board, "stuck"), token)
        assert board.flag("stuck.started").wait()
        token.cancel()  # kill_grace=0: the child is killed as its caller gives up
        assert stuck.done.wait(WAIT)
        assert isinstance(stuck.error, tunnypy.JobCancelledError)
        third = pool.process(pid)
        assert third not in (first, second)
        with pytest.raises(tunnypy.WorkerCrashedError):
            pool.process(kill_myself)
        fourth = pool.process(pid)
        assert fourth not in (first, second, third, os.getpid())
        found = counters(registry, pool)
        assert (found["children_recycled"], found["killed"], found["crashed"]) == (1, 1, 1)
        assert found["respawned"] == 3
        assert sum(found.values()) == 6
