"""
Process-worker scenarios (issue 17): round trip, CPU-bound throughput, kill, a 64 MiB payload.

tunnypy's process workers (``isolation="process"``) against
``ProcessPoolExecutor``, pebble's ``ProcessPool`` and ``multiprocessing.Pool``.
Every process pool here starts its children with ``forkserver``, tunnypy's
default on Linux, so no contender pays or saves for its start method; the
jobs are module-level functions of this module, which each child imports.
"""

from __future__ import annotations

import _thread
import inspect
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import tunnypy

from ._contenders import pebble
from ._harness import Config, Sample, ScenarioResult, Target, interleave, percentile, progress
from ._latency import _latencies, _latency_measure

__all__ = [
    "PROCESS_ERROR",
    "PROCESS_LABELS",
    "busy_in_c",
    "echo",
    "process_cpu",
    "process_kill",
    "process_payload",
    "process_roundtrip",
    "spin",
]

START_METHOD = "forkserver"
WORKERS = 2

PROCESS_LABELS = {
    "tunnypy_process": "tunnypy Pool(isolation='process')",
    "tunnypy_threads": "tunnypy Pool (threads)",
    "ppe": "ProcessPoolExecutor",
    "pebble_process": "pebble ProcessPool",
    "mp_pool": "multiprocessing.Pool",
}

PROCESS_ERROR = (
    ""
    if "isolation" in inspect.signature(tunnypy.Pool.from_func).parameters
    else "tunnypy has no isolation='process' in this tree"
)


def echo(value: object) -> object:
    """The job: return the payload (a child's no-op)."""
    return value


def spin(n: object) -> int:
    """The CPU-bound job: *n* rounds of pure-Python arithmetic, holding the GIL."""
    assert isinstance(n, int)
    total = 0
    for i in range(n):
        total += i * i
    return total


def busy_in_c(_payload: object) -> int:
    """A job that runs for minutes in one C call: it never releases the GIL or checks signals."""
    return sum(range(10**11))


def _context() -> Any:
    return multiprocessing.get_context(START_METHOD)


class _Process:
    """One process pool behind a common face: ``call(fn, payload)``, ``submit``, ``close``."""

    def __init__(
        self,
        call: Callable[[object], object],
        submit: Callable[[object], Callable[[], object]],
        close: Callable[[], None],
    ) -> None:
        self.call = call
        self.submit = submit
        self.close = close


def _tunnypy(fn: Callable[[object], object], isolation: str = "process", **kw: Any) -> _Process:
    pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(
        WORKERS, fn, isolation=isolation, **kw
    )
    submit = pool.submit

    def sub(payload: object) -> Callable[[], object]:
        return submit(payload).result

    def close() -> None:
        pool.close()

    return _Process(pool.process, sub, close)


def _ppe(fn: Callable[[object], object]) -> _Process:
    ex = ProcessPoolExecutor(WORKERS, mp_context=_context())
    submit = ex.submit

    def call(payload: object) -> object:
        return submit(fn, payload).result()

    def sub(payload: object) -> Callable[[], object]:
        return submit(fn, payload).result

    return _Process(call, sub, ex.shutdown)


def _pebble(fn: Callable[[object], object]) -> _Process:
    assert pebble is not None
    pp: Any = pebble.ProcessPool(max_workers=WORKERS, context=_context())
    schedule = pp.schedule

    def call(payload: object) -> object:
        return schedule(fn, args=(payload,)).result()

    def sub(payload: object) -> Callable[[], object]:
        return schedule(fn, args=(payload,)).result  # type: ignore[no-any-return]

    def close() -> None:
        pp.close()
        pp.join()

    return _Process(call, sub, close)


def _mp_pool(fn: Callable[[object], object]) -> _Process:
    mp = _context().Pool(WORKERS)
    apply, apply_async = mp.apply, mp.apply_async

    def call(payload: object) -> object:
        return apply(fn, (payload,))

    def sub(payload: object) -> Callable[[], object]:
        return apply_async(fn, (payload,)).get  # type: ignore[no-any-return]

    def close() -> None:
        mp.close()
        mp.join()

    return _Process(call, sub, close)


def _process_pools(fn: Callable[[object], object]) -> dict[str, Callable[[], _Process]]:
    """Makers of every process-pool contender importable here, by id, tunnypy's first."""
    makers: dict[str, Callable[[], _Process]] = {}
    if not PROCESS_ERROR:
        makers["tunnypy_process"] = lambda: _tunnypy(fn)
    makers["ppe"] = lambda: _ppe(fn)
    if pebble is not None:
        makers["pebble_process"] = lambda: _pebble(fn)
    makers["mp_pool"] = lambda: _mp_pool(fn)
    return makers


def _open(makers: dict[str, Callable[[], _Process]]) -> dict[str, _Process]:
    pools: dict[str, _Process] = {}
    try:
        for cid, make in makers.items():
            pools[cid] = make()
    except BaseException:
        for pool in pools.values():
            pool.close()
        raise
    return pools


def _warm(pool: _Process, payload: object, jobs: int) -> None:
    """Run *jobs* at once, so that every worker has started and served."""
    for wait in [pool.submit(payload) for _ in range(jobs)]:
        wait()


def process_roundtrip(config: Config) -> list[ScenarioResult]:
    """One caller, 2 process workers: one blocking no-op call at a time."""
    n = config.size(2_000, 20)
    pools = _open(_process_pools(echo))
    try:
        for pool in pools.values():
            _warm(pool, None, 4 * WORKERS)
            _latencies(pool.call, max(n // 10, 10))
        rows = interleave(
            {
                cid: (PROCESS_LABELS[cid], _latency_measure(pool.call, n))
                for cid, pool in pools.items()
            },
            config.rounds,
            "process round trip",
        )
    finally:
        for pool in pools.values():
            pool.close()
    targets = [Target("≤0.5x ProcessPoolExecutor", "tunnypy_process", "<=", 0.5, "ppe")]
    targets += [
        Target(f"≤1x {PROCESS_LABELS[cid]}", "tunnypy_process", "<=", 1.0, cid, informational=True)
        for cid in ("pebble_process", "mp_pool")
        if cid in pools
    ]
    return [
        ScenarioResult(
            scenario="proc_roundtrip",
            title="process round trip",
            metric="median latency per call (per round)",
            unit="µs",
            better="lower",
            subject="tunnypy_process",
            rows=rows,
            targets=targets,
            notes=(
                f"{n} calls per round, one caller, {WORKERS} process workers ({START_METHOD}); "
                "process(noop) / submit(noop).result() / schedule(noop).result() / "
                "Pool.apply(noop); extra p99_us is each round's p99"
            ),
        )
    ]


def calibrate(target_s: float) -> int:
    """The *n* for which ``spin(n)`` takes about *target_s* on this interpreter, here."""
    n = 1_000
    while True:
        start = time.perf_counter()
        spin(n)
        took = time.perf_counter() - start
        if took > 0.002:
            break
        n *= 2
    times = []
    for _ in range(7):
        start = time.perf_counter()
        spin(n)
        times.append(time.perf_counter() - start)
    # The fastest run is the one least slowed by the machine's other work.
    return max(1, round(n * target_s / min(times)))


def _throughput_measure(pool: _Process, n: int, jobs: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        submit = pool.submit
        start = time.perf_counter()
        waits = [submit(n) for _ in range(jobs)]
        for wait in waits:
            wait()
        return Sample(jobs / (time.perf_counter() - start))

    return measure


def process_cpu(config: Config) -> list[ScenarioResult]:
    """1,000 pure-Python jobs of ~5 ms on 2 workers: processes against threads."""
    if len(os.sched_getaffinity(0)) < WORKERS:
        # Two workers on one CPU measure the CPU, not the pools (docs/performance.md).
        progress(f"  process cpu: skipped, fewer than {WORKERS} CPUs allowed")
        return []
    jobs = config.size(1_000, 20)
    job_s = 0.005 if not config.smoke else 0.0005
    n = calibrate(job_s)
    makers = _process_pools(spin)
    if not PROCESS_ERROR:
        makers["tunnypy_threads"] = lambda: _tunnypy(spin, isolation="thread")
    pools = _open(makers)
    try:
        for pool in pools.values():
            _warm(pool, n, 4 * WORKERS)
        rows = interleave(
            {
                cid: (PROCESS_LABELS[cid], _throughput_measure(pool, n, jobs))
                for cid, pool in pools.items()
            },
            config.rounds,
            "process cpu",
        )
    finally:
        for pool in pools.values():
            pool.close()
    targets = [Target("≥1.8x tunnypy threads", "tunnypy_process", ">=", 1.8, "tunnypy_threads")]
    targets += [
        Target(f"≥1x {PROCESS_LABELS[cid]}", "tunnypy_process", ">=", 1.0, cid)
        for cid in ("ppe", "pebble_process", "mp_pool")
        if cid in pools
    ]
    return [
        ScenarioResult(
            scenario="proc_cpu",
            title="process CPU throughput",
            metric="jobs per second",
            unit="jobs/s",
            better="higher",
            subject="tunnypy_process",
            rows=rows,
            targets=targets,
            notes=(
                f"{jobs} jobs per round, all submitted then awaited, {WORKERS} workers; "
                f"each job spin({n}), a pure-Python loop calibrated in the parent to "
                f"~{job_s * 1000:g} ms; unpinned only (two workers on one CPU measure the CPU)"
            ),
        )
    ]


KILL_TIMEOUT = 0.05


class _Killing:
    """One pool of one worker: a call that times out on a job stuck in C, then a no-op."""

    def __init__(
        self,
        timed_out: Callable[[], None],
        noop: Callable[[], object],
        close: Callable[[], None],
    ) -> None:
        self.timed_out = timed_out
        self.noop = noop
        self.close = close

    def measure(self) -> tuple[float, float]:
        """(overshoot past the deadline, time from the error until a no-op is served), in ms."""
        clock = time.perf_counter
        start = clock()
        self.timed_out()
        failed = clock()
        self.noop()
        return (failed - start - KILL_TIMEOUT) * 1000.0, (clock() - failed) * 1000.0


def _tunnypy_killing(kill_grace: float | None) -> _Killing:
    pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(
        1, _busy_or_echo, isolation="process", kill_grace=kill_grace
    )

    def timed_out() -> None:
        try:
            pool.process_timed("busy", KILL_TIMEOUT)
        except tunnypy.JobTimedOutError:
            return
        raise AssertionError("a job stuck in C finished inside 50 ms")

    def close() -> None:
        pool.close()

    return _Killing(timed_out, lambda: pool.process(None), close)


def _pebble_killing() -> _Killing:
    assert pebble is not None
    pp: Any = pebble.ProcessPool(max_workers=1, context=_context())

    def timed_out() -> None:
        future = pp.schedule(_busy_or_echo, args=("busy",), timeout=KILL_TIMEOUT)
        try:
            future.result()
        except FutureTimeout:
            return
        raise AssertionError("a job stuck in C finished inside 50 ms")

    def close() -> None:
        pp.stop()
        pp.join()

    return _Killing(timed_out, lambda: pp.schedule(_busy_or_echo, args=(None,)).result(), close)


def _floor_killing() -> _Killing:
    held = _thread.allocate_lock()
    held.acquire()

    def timed_out() -> None:
        held.acquire(True, KILL_TIMEOUT)

    return _Killing(timed_out, lambda: None, lambda: None)


def process_kill(config: Config) -> list[ScenarioResult]:
    """process_timed(a job stuck in C, 0.05) against pebble's schedule(timeout=0.05)."""
    per_round = config.size(10, 2)
    slow_per_round = config.size(2, 1)
    makers: dict[str, tuple[str, Callable[[], _Killing], int]] = {}
    if not PROCESS_ERROR:
        makers["tunnypy_process"] = (
            "tunnypy process_timed, kill_grace=0",
            lambda: _tunnypy_killing(0.0),
            per_round,
        )
        makers["tunnypy_default_grace"] = (
            "tunnypy process_timed, default kill_grace",
            lambda: _tunnypy_killing(None),
            slow_per_round,
        )
    if pebble is not None:
        # pebble sends SIGTERM, which its worker handles in Python, so a job stuck in C
        # dies only at the SIGKILL pebble sends 3 s later: few calls, or a pass takes minutes.
        makers["pebble_process"] = (
            "pebble schedule(timeout=0.05)",
            _pebble_killing,
            slow_per_round,
        )
    # How late this machine wakes a thread from a timed wait, under the same load.
    makers["floor_lock"] = ("floor: lock.acquire(timeout=0.05)", _floor_killing, per_round)
    pools: dict[str, _Killing] = {}
    overshoots: dict[str, list[float]] = {}

    def recording(cid: str, count: int) -> Callable[[], Sample]:
        def run() -> Sample:
            over, again = zip(*(pools[cid].measure() for _ in range(count)), strict=True)
            overshoots.setdefault(cid, []).extend(over)
            return Sample(
                percentile(over, 99),
                {"max_ms": max(over), "serves_again_ms": statistics.median(again)},
            )

        return run

    try:
        for cid, (_, make, _) in makers.items():
            pools[cid] = make()
            pools[cid].noop()
        rows = interleave(
            {cid: (label, recording(cid, count)) for cid, (label, _, count) in makers.items()},
            config.rounds,
            "process kill",
        )
    finally:
        for pool in pools.values():
            pool.close()
    for row in rows:
        pooled = overshoots[row.contender]
        row.extra["p99_pooled_ms"] = percentile(pooled, 99)
        row.extra["calls"] = float(len(pooled))
    targets = [Target("p99 overshoot ≤5 ms", "tunnypy_process", "<=", 5.0, key="p99_pooled_ms")]
    if pebble is not None:
        targets.append(
            Target(
                "p99 overshoot ≤1x pebble's",
                "tunnypy_process",
                "<=",
                1.0,
                "pebble_process",
                key="p99_pooled_ms",
                informational=True,
            )
        )
    return [
        ScenarioResult(
            scenario="proc_kill",
            title="process kill",
            metric="p99 overshoot past the deadline (per round)",
            unit="ms",
            better="lower",
            subject="tunnypy_process",
            rows=rows,
            targets=targets,
            notes=(
                f"1 worker; {per_round} calls per round ({slow_per_round} with the default "
                "kill_grace, and for pebble, whose worker handles SIGTERM in Python, so that "
                "a job stuck in C ends only at the SIGKILL pebble sends 3 s later: "
                "pebble.CONSTS.term_timeout); the job is sum(range(10**11)), one C call "
                "that neither releases the GIL nor checks signals, so only killing the child "
                "stops it; serves_again_ms: from the timeout error until a no-op call on the "
                "same pool returns (the kill, a new child, its factory); the floor is a bare "
                "lock.acquire(timeout=0.05), how late a timed wait wakes on this machine now"
            ),
        )
    ]


def _busy_or_echo(payload: object) -> object:
    """The kill scenario's job: stuck in C for ``"busy"``, else a no-op."""
    return busy_in_c(payload) if payload == "busy" else payload


PAYLOAD_MIB = 64


def process_payload(config: Config) -> list[ScenarioResult]:
    """A 64 MiB bytes payload to a process worker and back."""
    size = config.size(PAYLOAD_MIB, 1) * 1024 * 1024
    per_round = config.size(3, 2)
    payload = os.urandom(size)
    makers = {cid: make for cid, make in _process_pools(echo).items() if cid != "pebble_process"}
    makers.pop("mp_pool")
    pools = _open(makers)

    def measure(pool: _Process) -> Callable[[], Sample]:
        def run() -> Sample:
            times = []
            for _ in range(per_round):
                start = time.perf_counter()
                back = pool.call(payload)
                times.append((time.perf_counter() - start) * 1000.0)
                assert isinstance(back, bytes)
                assert len(back) == size
                del back
            return Sample(statistics.median(times))

        return run

    try:
        for pool in pools.values():
            pool.call(payload)
        rows = interleave(
            {cid: (PROCESS_LABELS[cid], measure(pool)) for cid, pool in pools.items()},
            config.rounds,
            "process payload",
        )
    finally:
        for pool in pools.values():
            pool.close()
    return [
        ScenarioResult(
            scenario="proc_payload",
            title=f"process {size >> 20} MiB payload",
            metric="median ms per round trip (per round)",
            unit="ms",
            better="lower",
            subject="tunnypy_process",
            rows=rows,
            targets=[Target("≥2x ProcessPoolExecutor", "tunnypy_process", "<=", 0.5, "ppe")],
            notes=(
                f"{per_round} calls per round: a {size >> 20} MiB bytes object to the worker, "
                "returned as is; process(payload) / submit(echo, payload).result()"
            ),
        )
    ]
