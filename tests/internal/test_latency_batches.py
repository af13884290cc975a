"""A worker counts its times in batches; stats() never reads half a batch."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tunnypy import _worker_thread
from tunnypy._histogram import FOLD_AT, RUN, fold

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

        def pausing_fold(times: list[int], timings: list[int], half: int) -> None:
            # On the worker's thread, between the wait and the run histograms.
            if half == RUN and threading.current_thread().name.startswith("tunnypy-worker"):
                paused.set()
                read.wait(READER_CHANCE)  # a reader that can go on reads half a batch
            fold(times, timings, half)

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
