"""A worker counts its times in batches; stats() never reads half a batch."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tunnypy import _line, _pool, _worker_thread
from tunnypy._histogram import FOLD_AT, SAMPLE_BELOW, fold

from ..helpers import WAIT, Call

# How long the paused batch gives a reader to return, which it must not do:
# it must wait for the batch to be counted.
READER_CHANCE = 0.3


class TestBatches:
    """The worker's fold and a reader's copy exclude each other."""

    def test_a_reader_waits_for_the_batch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Paused halfway through counting a batch, the worker keeps stats() waiting."""
        paused = threading.Event()
        read = threading.Event()

        def pausing_fold(samples: list[tuple[int, int, int]], timings: list[int]) -> None:
            # On the worker's thread, halfway through the batch.
            if threading.current_thread().name.startswith("tunnypy-worker"):
                half = len(samples) // 2
                fold(samples[:half], timings)
                paused.set()
                read.wait(READER_CHANCE)  # a reader that can go on reads half a batch
                fold(samples[half:], timings)
            else:
                fold(samples, timings)

        def slow_clock() -> int:
            # Jobs that look SAMPLE_BELOW long: every one is timed, FOLD_AT make a batch.
            return next(ticks)

        ticks = iter(range(0, 10**15, SAMPLE_BELOW))
        monkeypatch.setattr(_worker_thread, "clock", slow_clock)
        monkeypatch.setattr(_pool, "_clock", slow_clock)
        monkeypatch.setattr(_line, "clock", slow_clock)
        monkeypatch.setattr(_worker_thread, "fold", pausing_fold)
        pool: tunnypy.Pool[int, int] = tunnypy.Pool.from_func(1, lambda x: x, latency=True)
        with pool:
            calls = Call(lambda: [pool.process(i) for i in range(FOLD_AT)])
            assert paused.wait(WAIT)
            seen: list[Any] = []

            def reader() -> None:
                stats = pool.stats()
                seen.append((stats.wait.count, stats.run.count))
                read.set()

            reading = Call(reader)
            reading.wait()
            calls.wait()
            assert seen == [(FOLD_AT, FOLD_AT)]
