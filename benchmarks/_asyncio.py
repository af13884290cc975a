"""
The asyncio scenario: what an awaiting caller pays for each way onto a worker.

``await pool.aprocess(x)`` against ``await asyncio.wrap_future(pool.submit(x))``
on the same tunnypy pool, and ``await asyncio.to_thread(f, x)`` on a
``ThreadPoolExecutor`` as the loop's default executor. One loop, driven from
this thread; each round is one ``run_until_complete``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import tunnypy

from ._contenders import noop
from ._harness import Config, Sample, ScenarioResult, Target, interleave, percentile

__all__ = ["aprocess"]

WORKERS = 4
TASKS = 64

Call = Callable[[object], Awaitable[object]]


def _sequential(loop: asyncio.AbstractEventLoop, call: Call, n: int) -> Callable[[], Sample]:
    """One task awaiting *n* calls one after another: per-call latency (µs)."""

    async def calls() -> list[float]:
        clock = time.perf_counter_ns
        out = [0] * n
        for i in range(n):
            start = clock()
            await call(None)
            out[i] = clock() - start
        return [ns / 1000.0 for ns in out]

    def measure() -> Sample:
        lat = loop.run_until_complete(calls())
        return Sample(percentile(lat, 50), {"p99_us": percentile(lat, 99)})

    return measure


def _concurrent(loop: asyncio.AbstractEventLoop, call: Call, n: int) -> Callable[[], Sample]:
    """``TASKS`` tasks sharing *n* calls: wall time per call (µs)."""

    async def task(count: int) -> None:
        for _ in range(count):
            await call(None)

    async def calls() -> None:
        await asyncio.gather(*(task(n // TASKS) for _ in range(TASKS)))

    def measure() -> Sample:
        start = time.perf_counter()
        loop.run_until_complete(calls())
        return Sample((time.perf_counter() - start) * 1e6 / (n // TASKS * TASKS))

    return measure


def aprocess(config: Config) -> list[ScenarioResult]:
    """Round trip and 64-task throughput of aprocess, wrap_future(submit) and to_thread."""
    n = config.size(10_000, 256)
    pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(WORKERS, noop)
    tpe = ThreadPoolExecutor(WORKERS)
    loop = asyncio.new_event_loop()
    loop.set_default_executor(tpe)

    async def wrapped(payload: object) -> object:
        return await asyncio.wrap_future(pool.submit(payload))

    async def to_thread(payload: object) -> object:
        return await asyncio.to_thread(noop, payload)

    calls: dict[str, tuple[str, Call]] = {
        "aprocess": ("tunnypy await aprocess(noop)", pool.aprocess),
        "wrap_future": ("tunnypy await wrap_future(submit(noop))", wrapped),
        "to_thread_tpe": ("ThreadPoolExecutor await to_thread(noop)", to_thread),
    }
    results = []
    try:
        for _, call in calls.values():
            _sequential(loop, call, max(n // 10, 50))()  # warm up: threads started
        for variant, measure, metric, notes in (
            (
                "sequential",
                _sequential,
                "median latency per call (per round)",
                f"one task, {n} calls per round; extra p99_us is each round's p99",
            ),
            (
                f"{TASKS} tasks",
                _concurrent,
                "wall time per call (per round)",
                f"{TASKS} tasks sharing {n} calls per round",
            ),
        ):
            rows = interleave(
                {cid: (label, measure(loop, call, n)) for cid, (label, call) in calls.items()},
                config.rounds,
                f"aprocess {variant}",
            )
            results.append(
                ScenarioResult(
                    scenario="aprocess",
                    variant=variant,
                    title=f"asyncio callers, {variant}",
                    metric=metric,
                    unit="µs",
                    better="lower",
                    subject="aprocess",
                    rows=rows,
                    targets=[
                        Target(
                            "≤1.0x wrap_future(submit()) (no target in the issue)",
                            "aprocess",
                            "<=",
                            1.0,
                            "wrap_future",
                            informational=True,
                        ),
                        Target(
                            "≤1.0x to_thread on ThreadPoolExecutor (no target in the issue)",
                            "aprocess",
                            "<=",
                            1.0,
                            "to_thread_tpe",
                            informational=True,
                        ),
                    ],
                    notes=f"{WORKERS} workers; {notes}",
                )
            )
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        pool.close()
        tpe.shutdown()
    return results
