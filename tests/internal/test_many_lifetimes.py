"""Pools created, used and closed by the thousand leave threads, fds and memory flat."""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc
from pathlib import Path

import tunnypy
from tests.helpers import WAIT
from tunnypy import _waker

CYCLES = 1000
TRACED = 200


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else 0


class TestManyLifetimes:
    def test_create_process_close_cycles_leave_threads_fds_and_memory_flat(self) -> None:
        """1,000 pools, each created, used and closed: nothing accumulates."""

        def cycle(i: int) -> None:
            pool: tunnypy.Pool[int, int] = tunnypy.Pool.from_func(2, abs)
            assert i == pool.process(-i)
            assert i == pool.submit(-i).result(WAIT)
            assert pool.close(timeout=WAIT)

        for i in range(50):  # warm caches (structlog, the caller's waker, ...)
            cycle(i)
        gc.collect()
        threads = threading.active_count()
        fds = _waker.fds_in_use()
        files = open_fds()
        objects = len(gc.get_objects())
        for i in range(CYCLES):
            cycle(i)
        gc.collect()
        assert threads == threading.active_count()
        assert fds == _waker.fds_in_use()
        assert files == open_fds()
        # Every pool, core, wrapper, job and Thread is a tracked object; one
        # leaked per cycle would add thousands.
        grown = len(gc.get_objects()) - objects
        assert grown < 100, f"{grown} more objects after {CYCLES} cycles"

        # Bytes, traced over a shorter stretch (tracing slows threads down 5x).
        tracemalloc.start()
        try:
            start, _ = tracemalloc.get_traced_memory()
            for i in range(TRACED):
                cycle(i)
            gc.collect()
            end, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        growth = end - start
        print(f"\n{CYCLES} cycles: {grown} objects; {TRACED} traced cycles: {growth} bytes")
        # A leaked pool costs kilobytes; allow 100 bytes a cycle for allocator noise.
        assert growth < 100 * TRACED, f"memory grew {growth} bytes over {TRACED} cycles"
