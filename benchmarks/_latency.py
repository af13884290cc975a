"""Latency scenarios: round trip, timed round trip, timeout precision."""

from __future__ import annotations

import _thread
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import tunnypy

from ._contenders import LABELS, EventFdFloor, LockFloor, noop, pool_contenders
from ._harness import Config, Sample, ScenarioResult, Target, interleave, percentile

__all__ = ["roundtrip", "timed_roundtrip", "timeout_precision"]

WORKERS = 4


def _latencies(call: Callable[[object], object], n: int) -> list[float]:
    """Time *n* sequential ``call(None)``; microseconds each."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        start = clock()
        call(None)
        out[i] = clock() - start
    return [ns / 1000.0 for ns in out]


def _latency_measure(call: Callable[[object], object], n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        lat = _latencies(call, n)
        return Sample(percentile(lat, 50), {"p99_us": percentile(lat, 99)})

    return measure


def roundtrip(config: Config) -> list[ScenarioResult]:
    """One caller, 4 workers: one blocking call at a time, per-call latency."""
    n = config.size(10_000, 200)
    pools = {cid: make() for cid, make in pool_contenders(WORKERS).items()}
    floors: dict[str, LockFloor | EventFdFloor] = {
        "floor_lock": LockFloor(),
        "floor_eventfd": EventFdFloor(),
    }
    calls: dict[str, Callable[[object], object]] = {cid: c.call for cid, c in pools.items()}
    calls.update({cid: f.call for cid, f in floors.items()})
    try:
        for call in calls.values():
            _latencies(call, max(n // 10, 50))  # warm up: threads started, caches hot
        rows = interleave(
            {cid: (LABELS[cid], _latency_measure(call, n)) for cid, call in calls.items()},
            config.rounds,
            "roundtrip",
        )
    finally:
        for pool in pools.values():
            pool.close()
        for floor in floors.values():
            floor.close()
    floor_kind = floors["floor_eventfd"]
    assert isinstance(floor_kind, EventFdFloor)
    return [
        ScenarioResult(
            scenario="roundtrip",
            title="round trip",
            metric="median latency per call (per round)",
            unit="µs",
            better="lower",
            subject="tunnypy",
            rows=rows,
            targets=[
                Target("≤1.5x the eventfd floor", "tunnypy", "<=", 1.5, "floor_eventfd"),
                Target(
                    "≈0.3x ThreadPoolExecutor (issue's estimate)",
                    "tunnypy",
                    "<=",
                    0.3,
                    "tpe",
                    informational=True,
                ),
            ],
            notes=(
                f"{n} calls per round; process(noop) / submit(noop).result() / "
                "apply_async(noop).get() / schedule(noop).result(); "
                f"eventfd floor uses {floor_kind.kind}; extra p99_us is each round's p99"
            ),
        )
    ]


def timed_roundtrip(config: Config) -> list[ScenarioResult]:
    """process_timed(noop, 10) against process(noop) on the same pool."""
    n = config.size(10_000, 200)
    pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(WORKERS, noop)
    tpe = ThreadPoolExecutor(WORKERS)

    def timed(payload: object) -> object:
        return pool.process_timed(payload, 10)

    def tpe_timed(payload: object) -> object:
        return tpe.submit(noop, payload).result(timeout=10)

    calls: dict[str, tuple[str, Callable[[object], object]]] = {
        "tunnypy_timed": ("tunnypy process_timed(noop, 10)", timed),
        "tunnypy": ("tunnypy process(noop)", pool.process),
        "tpe_timed": ("ThreadPoolExecutor submit(noop).result(timeout=10)", tpe_timed),
    }
    try:
        for _, call in calls.values():
            _latencies(call, max(n // 10, 50))
        rows = interleave(
            {cid: (label, _latency_measure(call, n)) for cid, (label, call) in calls.items()},
            config.rounds,
            "timed",
        )
    finally:
        pool.close()
        tpe.shutdown()
    return [
        ScenarioResult(
            scenario="timed",
            title="timed round trip",
            metric="median latency per call (per round)",
            unit="µs",
            better="lower",
            subject="tunnypy_timed",
            rows=rows,
            targets=[Target("≤1.2x process()", "tunnypy_timed", "<=", 1.2, "tunnypy")],
            notes=f"{n} calls per round, one caller, {WORKERS} workers",
        )
    ]


SLEEP_STEP = 0.0005
TIMEOUT = 0.02
JOB_LENGTH = 1.0


def _slow_job(_payload: object) -> object:
    """Sleep up to a second in short steps, stopping as soon as the caller gives up."""
    end = time.monotonic() + JOB_LENGTH
    while time.monotonic() < end and not tunnypy.interrupted():
        time.sleep(SLEEP_STEP)
    return None


def _slow_job_flag(flag: threading.Event) -> object:
    """The same job for a pool that cannot interrupt: the caller sets *flag*."""
    end = time.monotonic() + JOB_LENGTH
    while time.monotonic() < end and not flag.is_set():
        time.sleep(SLEEP_STEP)
    return None


def timeout_precision(config: Config) -> list[ScenarioResult]:
    """process_timed(a 1 s job, 0.02): how far past its deadline each call returns."""
    per_round = config.size(max(200 // config.rounds, 40), 4)
    # Each timed-out job comes back within one sleep step, so a few workers
    # keep one free for every call.
    pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(WORKERS, _slow_job)
    tpe = ThreadPoolExecutor(WORKERS)
    held = _thread.allocate_lock()
    held.acquire()
    clock = time.perf_counter

    def tunnypy_call() -> None:
        try:
            pool.process_timed(None, TIMEOUT)
        except tunnypy.JobTimedOutError:
            return
        raise AssertionError("a 1 s job finished inside 20 ms")

    def tpe_call() -> None:
        flag = threading.Event()
        future = tpe.submit(_slow_job_flag, flag)
        try:
            future.result(timeout=TIMEOUT)
        except FutureTimeout:
            flag.set()
            return
        raise AssertionError("a 1 s job finished inside 20 ms")

    def floor_call() -> None:
        held.acquire(True, TIMEOUT)

    overshoots: dict[str, list[float]] = {}

    def recording(cid: str, call: Callable[[], None]) -> Callable[[], Sample]:
        def run() -> Sample:
            over = []
            for _ in range(per_round):
                start = clock()
                call()
                over.append((clock() - start - TIMEOUT) * 1000.0)
                time.sleep(SLEEP_STEP * 4)  # let the interrupted worker come back
            overshoots.setdefault(cid, []).extend(over)
            return Sample(percentile(over, 99), {"max_ms": max(over)})

        return run

    try:
        rows = interleave(
            {
                "tunnypy": ("tunnypy process_timed(job, 0.02)", recording("tunnypy", tunnypy_call)),
                "tpe": (
                    "ThreadPoolExecutor result(timeout=0.02) + flag",
                    recording("tpe", tpe_call),
                ),
                "floor_lock": (
                    "floor: lock.acquire(timeout=0.02)",
                    recording("floor_lock", floor_call),
                ),
            },
            config.rounds,
            "timeout",
        )
    finally:
        pool.close()
        tpe.shutdown()
    for row in rows:
        pooled = overshoots[row.contender]
        row.extra["p99_pooled_ms"] = percentile(pooled, 99)
        row.extra["calls"] = float(len(pooled))
    return [
        ScenarioResult(
            scenario="timeout",
            title="timeout precision",
            metric="p99 overshoot past the deadline (per round)",
            unit="ms",
            better="lower",
            subject="tunnypy",
            rows=rows,
            targets=[Target("p99 overshoot ≤2 ms", "tunnypy", "<=", 2.0, key="p99_pooled_ms")],
            notes=(
                f"{per_round} calls per round, {per_round * config.rounds} in all; "
                "p99_pooled_ms is the p99 over every call; jobs sleep in "
                f"{SLEEP_STEP * 1000:g} ms steps checking tunnypy.interrupted() (or a flag)"
            ),
        )
    ]
