"""Thread-lifecycle scenarios: memory per idle worker, grow, shrink."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.pool import ThreadPool
from pathlib import Path

import tunnypy

from ._contenders import LABELS, noop
from ._harness import Config, Sample, ScenarioResult, Target, interleave

__all__ = ["grow", "memory", "repo_env", "shrink"]

REPO = Path(__file__).resolve().parent.parent


def repo_env() -> dict[str, str]:
    """The environment for a child Python: this one, with the repository importable."""
    env = dict(os.environ)
    parts = [str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    return env


class Zygote:
    """A clean child process that forks one fresh process per memory measurement."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._memprobe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=repo_env(),
            cwd=REPO,
            text=True,
        )

    def probe(self, kind: str, n: int) -> Callable[[], Sample]:
        def measure() -> Sample:
            stdin, stdout = self.proc.stdin, self.proc.stdout
            assert stdin is not None
            assert stdout is not None
            stdin.write(f"{kind} {n}\n")
            stdin.flush()
            data = json.loads(stdout.readline())
            if "error" in data:
                raise RuntimeError(f"memory probe {kind} {n} failed: {data['error']}")
            grew = data["after_kib"] - data["before_kib"]
            return Sample(grew / n, {"rss_after_kib": float(data["after_kib"])})

        return measure

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


MEMORY_KINDS = {
    "tunnypy": "tunnypy Pool (idle workers)",
    "bare_threads": "bare threads on an Event",
    "mp_threadpool": "multiprocessing ThreadPool",
}


def memory(config: Config) -> list[ScenarioResult]:
    """RSS per idle resident worker, each measurement in a fresh process."""
    sizes = [100] if config.smoke else [1_000, 10_000]
    results = []
    zygote = Zygote()
    try:
        for n in sizes:
            rows = interleave(
                {
                    kind: (label, zygote.probe(kind, n))
                    for kind, label in MEMORY_KINDS.items()
                    # Context only, and 10,000 threads take seconds per process on a busy machine.
                    if kind != "mp_threadpool" or n < 10_000
                },
                config.rounds,
                f"memory {n}",
            )
            results.append(
                ScenarioResult(
                    scenario="memory",
                    variant=str(n),
                    title=f"memory, {n:,} workers",
                    metric="RSS growth per idle thread",
                    unit="KiB",
                    better="lower",
                    subject="tunnypy",
                    rows=rows,
                    targets=[Target("≤1.1x a bare thread", "tunnypy", "<=", 1.1, "bare_threads")],
                    notes=(
                        "each measurement is a fresh process (forked from a clean, idle, "
                        "single-threaded zygote) reading /proc/self/status VmRSS before and "
                        "after starting the threads"
                    ),
                )
            )
    finally:
        zygote.close()
    return results


def _grow_tunnypy(n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(0, noop)
        start = time.perf_counter()
        pool.set_size(n)
        took = time.perf_counter() - start
        pool.close()
        return Sample(took * 1000.0)

    return measure


def _grow_bare(n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        release = threading.Event()
        start = time.perf_counter()
        threads = [threading.Thread(target=release.wait, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        took = time.perf_counter() - start
        release.set()
        for t in threads:
            t.join()
        return Sample(took * 1000.0)

    return measure


def _grow_mp(n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        start = time.perf_counter()
        tp = ThreadPool(n)
        took = time.perf_counter() - start
        tp.close()
        tp.join()
        return Sample(took * 1000.0)

    return measure


GROW_ROUNDS = 15
"""Rounds of grow at least, outside smoke mode: one round's ratio ranges from 0.7 to 2.9."""


def grow(config: Config) -> list[ScenarioResult]:
    """set_size(0 → N) against starting N bare threads."""
    n = config.size(1_000, 100)
    # Starting 1,000 threads is mostly the kernel's work, and on this
    # machine one round's tunnypy ÷ bare ratio ranged from 0.7 to 2.9
    # (3.11 and 3.13, scratch runs of 12 rounds): five rounds made the
    # verdict a coin toss. A round takes about half a second.
    rounds = config.rounds if config.smoke else max(config.rounds, GROW_ROUNDS)
    rows = interleave(
        {
            "tunnypy": ("tunnypy set_size(0 → N)", _grow_tunnypy(n)),
            "bare_threads": ("start N bare threads", _grow_bare(n)),
            "mp_threadpool": (f"{LABELS['mp_threadpool']}(N)", _grow_mp(n)),
        },
        rounds,
        "grow",
    )
    return [
        ScenarioResult(
            scenario="grow",
            title=f"grow 0 → {n:,}",
            metric="time until the call returns",
            unit="ms",
            better="lower",
            subject="tunnypy",
            rows=rows,
            targets=[Target("≤1.2x bare threads", "tunnypy", "<=", 1.2, "bare_threads")],
            notes=(
                f"N = {n}; teardown is not timed; {rounds} rounds "
                f"(at least {GROW_ROUNDS} outside smoke mode: one round is noisy)"
            ),
        )
    ]


def _wait_until(predicate: Callable[[], bool], timeout: float = 60.0) -> float:
    """Poll *predicate*; return seconds waited."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise RuntimeError("benchmark setup timed out")
        time.sleep(0.0005)
    return time.perf_counter() - start


def _shrink_tunnypy(n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        pool = tunnypy.Pool.from_callback(n)
        _wait_until(lambda: pool.stats().idle == n)
        started = threading.Event()
        release = threading.Event()

        def busy() -> None:
            started.set()
            release.wait(1.0)  # busy for up to 1 s; released early once measured

        future = pool.submit(busy)
        started.wait()
        start = time.perf_counter()
        pool.set_size(1)
        took = time.perf_counter() - start
        drained = _wait_until(lambda: pool.stats().workers == 1) + took
        release.set()
        future.result()
        pool.close()
        return Sample(took * 1000.0, {"all_retired_ms": drained * 1000.0})

    return measure


def shrink(config: Config) -> list[ScenarioResult]:
    """set_size(N → 1) while one worker is busy: how soon the call returns."""
    n = config.size(1_000, 100)
    rows = interleave(
        {"tunnypy": ("tunnypy set_size(N → 1)", _shrink_tunnypy(n))},
        config.rounds,
        "shrink",
    )
    return [
        ScenarioResult(
            scenario="shrink",
            title=f"shrink {n:,} → 1",
            metric="time until set_size returns",
            unit="ms",
            better="lower",
            subject="tunnypy",
            rows=rows,
            targets=[Target("returns in ≤1 ms", "tunnypy", "<=", 1.0)],
            notes=(
                "one worker busy (waiting up to 1 s, released once measured); "
                "all_retired_ms: until every retired thread has left"
            ),
        )
    ]
