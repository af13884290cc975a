"""
The Dask scenarios: a pool's workers as Dask actors (``tunnypy.contrib.dask``).

- ``dask_roundtrip``: one call at a time through a Dask actor, tunnypy's
  (``pool.process(None)`` on ``DaskWorkers``) against a bare actor call
  (``actor.noop(None).result()``), on a ``LocalCluster`` of worker processes.
  What tunnypy adds on top of Dask: the local line, pickling, the interrupt
  bookkeeping.
- ``dask_cpu``: CPU-bound jobs of pure Python on 2 Dask workers against 2
  workers of ``isolation="process"``: jobs per second.

Both need the ``dask`` extra; without it they report nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import tunnypy

from ._harness import Config, Sample, ScenarioResult, Target, interleave, percentile

__all__ = ["DASK_SCENARIOS", "spin"]

SPIN = 60_000
"""Loop turns of one CPU-bound job: a few milliseconds of pure Python."""


def spin(turns: int) -> int:
    """A CPU-bound job: *turns* turns of a pure-Python loop."""
    total = 0
    for i in range(turns):
        total += i * i % 7
    return total


def noop(payload: object) -> object:
    return payload


class BareActor:
    """A plain Dask actor, the floor under tunnypy's actor calls."""

    def noop(self, payload: object) -> object:
        return payload


def _cluster(config: Config, workers: int) -> tuple[Any, Any]:
    """Worker processes; in smoke mode in-process workers, which start in a fraction of the time."""
    import distributed  # noqa: PLC0415 - the extra is optional

    make: Any = distributed.LocalCluster
    cluster = make(
        n_workers=workers,
        processes=not config.smoke,
        threads_per_worker=1,
        dashboard_address=":0",
    )
    connect: Any = distributed.Client
    return cluster, connect(cluster, set_as_default=False)


def _available() -> bool:
    try:
        import distributed  # noqa: F401, PLC0415 - only whether it imports
    except ImportError:
        return False
    return True


def dask_roundtrip(config: Config) -> list[ScenarioResult]:
    """Per-call latency (median µs) through a Dask actor: tunnypy's against a bare one."""
    if not _available():
        return []
    from tunnypy.contrib.dask import DaskWorkers  # noqa: PLC0415 - needs the extra

    calls = config.size(400, 40)
    cluster, client = _cluster(config, 2)
    try:
        pool = tunnypy.Pool.from_func(1, noop, isolation=DaskWorkers(client))
        free = set(client.scheduler_info()["workers"]) - _held(client)
        future = client.submit(
            BareActor, actor=True, workers=sorted(free)[:1], allow_other_workers=False
        )
        with client.as_current():
            actor = future.result()

        def latencies(call: Callable[[], object]) -> Callable[[], Sample]:
            def measure() -> Sample:
                out = []
                for _ in range(calls):
                    start = time.perf_counter_ns()
                    call()
                    out.append((time.perf_counter_ns() - start) / 1000.0)
                return Sample(percentile(out, 50), {"p99_us": percentile(out, 99)})

            return measure

        rows = interleave(
            {
                "tunnypy_dask": (
                    "tunnypy pool.process(None), DaskWorkers",
                    latencies(lambda: pool.process(None)),
                ),
                "bare_actor": (
                    "Dask actor.noop(None).result()",
                    latencies(lambda: actor.noop(None).result()),
                ),
            },
            config.rounds,
            "dask_roundtrip",
        )
        pool.close()
        future.cancel()
    finally:
        client.close()
        cluster.close()
    return [
        ScenarioResult(
            scenario="dask_roundtrip",
            title="Round trip through a Dask actor (LocalCluster, worker processes)",
            metric="median latency per call",
            unit="µs",
            better="lower",
            subject="tunnypy_dask",
            rows=rows,
            targets=[
                Target(
                    "tunnypy's call <= 1.5x a bare actor call",
                    "tunnypy_dask",
                    "<=",
                    1.5,
                    baseline="bare_actor",
                    informational=True,
                )
            ],
            notes=f"{calls} calls one after another per round",
        )
    ]


def _held(client: Any) -> set[str]:
    return {address for address, keys in client.has_what().items() if keys}


def dask_cpu(config: Config) -> list[ScenarioResult]:
    """Jobs per second of CPU-bound pure Python: 2 Dask workers against 2 worker processes."""
    if not _available():
        return []
    from tunnypy.contrib.dask import DaskWorkers  # noqa: PLC0415 - needs the extra

    jobs = config.size(400, 20)
    cluster, client = _cluster(config, 2)
    try:
        on_dask = tunnypy.Pool.from_func(2, spin, isolation=DaskWorkers(client))
        in_processes = tunnypy.Pool.from_func(2, spin, isolation="process")

        def throughput(pool: tunnypy.Pool[int, int]) -> Callable[[], Sample]:
            def measure() -> Sample:
                start = time.perf_counter()
                futures = [pool.submit(SPIN) for _ in range(jobs)]
                for future in futures:
                    future.result()
                return Sample(jobs / (time.perf_counter() - start))

            return measure

        rows = interleave(
            {
                "tunnypy_dask": ("tunnypy, 2 Dask workers (actors)", throughput(on_dask)),
                "tunnypy_process": ('tunnypy, isolation="process", 2', throughput(in_processes)),
            },
            config.rounds,
            "dask_cpu",
        )
        on_dask.close()
        in_processes.close()
    finally:
        client.close()
        cluster.close()
    return [
        ScenarioResult(
            scenario="dask_cpu",
            title="CPU-bound throughput: 2 Dask workers against 2 worker processes",
            metric="jobs per second",
            unit="jobs/s",
            better="higher",
            subject="tunnypy_dask",
            rows=rows,
            targets=[
                Target(
                    "2 Dask workers >= 0.9x 2 worker processes",
                    "tunnypy_dask",
                    ">=",
                    0.9,
                    baseline="tunnypy_process",
                    informational=True,
                )
            ],
            notes=f"{jobs} jobs of spin({SPIN}) per round, all submitted at once",
        )
    ]


DASK_SCENARIOS: dict[str, Callable[[Config], list[ScenarioResult]]] = {
    "dask_roundtrip": dask_roundtrip,
    "dask_cpu": dask_cpu,
}
