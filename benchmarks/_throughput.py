"""Throughput scenarios: many callers on a few workers, and a fan-out of futures."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._contenders import LABELS, Contender, QueueFloor, pool_contenders
from ._harness import Config, Sample, ScenarioResult, Target, interleave

__all__ = ["contended", "fanout"]

WORKERS = 4
CALLERS = 8


def _contended_measure(call: Callable[[object], object], per_caller: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        ends: list[float] = []
        barrier = threading.Barrier(CALLERS + 1)

        def caller() -> None:
            barrier.wait()
            for _ in range(per_caller):
                call(None)
            ends.append(time.perf_counter())

        threads = [
            threading.Thread(target=caller, name=f"bench-caller-{i}") for i in range(CALLERS)
        ]
        for t in threads:
            t.start()
        barrier.wait()
        start = time.perf_counter()
        for t in threads:
            t.join()
        return Sample(CALLERS * per_caller / (max(ends) - start))

    return measure


def contended(config: Config) -> list[ScenarioResult]:
    """8 caller threads making synchronous calls into 4 workers, and the queue floor."""
    per_caller = config.size(2_000, 30)
    pools = {cid: make() for cid, make in pool_contenders(WORKERS).items()}
    floor = QueueFloor(WORKERS)
    calls: dict[str, Callable[[object], object]] = {cid: p.call for cid, p in pools.items()}
    calls["floor_queue"] = floor.call
    try:
        for call in calls.values():
            _contended_measure(call, max(per_caller // 10, 10))()
        rows = interleave(
            {cid: (LABELS[cid], _contended_measure(c, per_caller)) for cid, c in calls.items()},
            config.rounds,
            "contended",
        )
    finally:
        for pool in pools.values():
            pool.close()
        floor.close()
    return [
        ScenarioResult(
            scenario="contended",
            title="contended",
            metric="jobs per second",
            unit="jobs/s",
            better="higher",
            subject="tunnypy",
            rows=rows,
            targets=[
                Target("≥2x ThreadPoolExecutor", "tunnypy", ">=", 2.0, "tpe"),
                # Context for the target: how far the least a pool can be
                # (QueueFloor) gets over ThreadPoolExecutor on this machine.
                Target(
                    "≥2x ThreadPoolExecutor, reached by the queue floor",
                    "floor_queue",
                    ">=",
                    2.0,
                    "tpe",
                    informational=True,
                ),
            ],
            notes=(
                f"{CALLERS} callers x {per_caller} calls per round, {WORKERS} workers; "
                "the queue floor is 4 threads on a SimpleQueue, each caller waiting on "
                "its own raw lock: no pool features"
            ),
        )
    ]


def _fanout_measure(pool: Contender, n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        submit = pool.submit
        start = time.perf_counter()
        waits = [submit(None) for _ in range(n)]
        for wait in waits:
            wait()
        return Sample(n / (time.perf_counter() - start))

    return measure


def fanout(config: Config) -> list[ScenarioResult]:
    """Submit many no-op jobs at once, then wait for every one."""
    n = config.size(100_000, 1_000)
    pools = {cid: make() for cid, make in pool_contenders(WORKERS).items()}
    try:
        for pool in pools.values():
            _fanout_measure(pool, max(n // 20, 100))()
        rows = interleave(
            {cid: (LABELS[cid], _fanout_measure(p, n)) for cid, p in pools.items()},
            config.rounds,
            "fanout",
        )
    finally:
        for pool in pools.values():
            pool.close()
    return [
        ScenarioResult(
            scenario="fanout",
            title="fan-out",
            metric="jobs per second",
            unit="jobs/s",
            better="higher",
            subject="tunnypy",
            rows=rows,
            targets=[Target("≥1.5x ThreadPoolExecutor", "tunnypy", ">=", 1.5, "tpe")],
            notes=(
                f"{n} submits then wait for each, one caller, {WORKERS} workers; "
                "submit().result / apply_async().get / schedule().result"
            ),
        )
    ]
