"""
Measure the resident memory of N idle threads in a fresh process.

``python -m benchmarks._memprobe`` is a *zygote*: it imports everything once,
then for every ``KIND N`` line on its standard input forks a child that reads
its VmRSS (KiB) from /proc/self/status, starts N idle threads of KIND, waits
until they are all parked, reads VmRSS again, prints both as one JSON line and
exits without cleaning up. Each measurement thus runs in a fresh,
single-threaded process without paying for interpreter start-up and imports
every time. The zygote exits at the end of its input.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.pool import ThreadPool

import tunnypy

SETTLE = 0.05
"""Seconds to let every new thread reach its blocking wait before reading RSS."""


def vm_rss_kib() -> int:
    """This process's resident set size, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS line in /proc/self/status")


def _noop(value: object) -> object:
    return value


def _wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.002)


def measure(kind: str, n: int) -> dict[str, int]:
    """Start *n* idle threads of *kind*; RSS before and after."""
    release = threading.Event()
    parked: list[None] = []

    def bare() -> None:
        parked.append(None)
        release.wait()

    gc.collect()
    before = vm_rss_kib()
    keep: object
    if kind == "tunnypy":
        pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(n, _noop)
        _wait_until(lambda: pool.stats().idle == n, "idle workers")
        keep = pool
    elif kind == "bare_threads":
        threads = [threading.Thread(target=bare, daemon=True) for _ in range(n)]
        for t in threads:
            t.start()
        _wait_until(lambda: len(parked) == n, "parked threads")
        keep = threads
    elif kind == "mp_threadpool":
        keep = ThreadPool(n)  # its workers block on the task queue at once
    else:
        raise ValueError(f"unknown kind {kind!r}")
    time.sleep(SETTLE)
    gc.collect()
    after = vm_rss_kib()
    assert keep is not None
    return {"before_kib": before, "after_kib": after, "n": n}


def zygote() -> None:
    for line in sys.stdin:
        kind, n = line.split()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                print(json.dumps(measure(kind, int(n))), flush=True)
            except BaseException as exc:
                print(json.dumps({"error": repr(exc)}), flush=True)
            os._exit(0)  # skip joining thousands of threads: the process is disposable
        os.waitpid(pid, 0)


if __name__ == "__main__":
    zygote()
