"""A worker factory that raises, or a worker thread that will not start, changes nothing."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    BoomError,
    RecordingFactory,
    RecordingWorker,
    wait_for,
    worker_thread_starts_fail_at,
)


def worker_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("tunnypy-worker"))


class Factory:
    """Makes RecordingWorkers, raising on the calls numbered in *fail_on* (from 1)."""

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        self.calls += 1
        if self.calls in self.fail_on:
            raise BoomError(f"factory call {self.calls}")
        worker = RecordingWorker()
        self.made.append(worker)
        return worker


class TestFactoryRaises:
    def test_at_construction_the_error_reaches_the_caller_and_no_worker_runs(self) -> None:
        """Pool() re-raises the factory's error; workers made before it are terminated."""
        factory = Factory({3})
        threads = worker_threads()
        with pytest.raises(BoomError, match="factory call 3"):
            tunnypy.Pool(4, factory)
        assert len(factory.made) == 2
        assert [w.terminated for w in factory.made] == [1, 1]
        assert [w.processed for w in factory.made] == [0, 0]
        assert threads == worker_threads()

    def test_during_growth_the_pool_keeps_its_previous_size(self) -> None:
        """set_size() re-raises; size, workers and service are as before, new workers terminated."""
        factory = Factory({4})
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, factory)
        try:
            before = pool.stats()
            with pytest.raises(BoomError, match="factory call 4"):
                pool.set_size(5)
            assert pool.size == 2
            assert before == pool.stats()
            assert factory.made[2].terminated == 1  # made during the failed growth
            assert [w.terminated for w in factory.made[:2]] == [0, 0]
            assert pool.process(7) == 7
            pool.set_size(4)  # the next growth works
            assert pool.stats().workers == 4
        finally:
            assert pool.close(timeout=WAIT)


class TestThreadStartFails:
    def test_the_growth_is_undone_and_the_error_reaches_the_caller(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """set_size(1 -> 4) whose third new thread will not start: back to 1, all 3 terminated."""
        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        try:
            worker_thread_starts_fail_at(monkeypatch, 3, lambda: None)
            with pytest.raises(RuntimeError, match="can't start new thread"):
                pool.set_size(4)
            monkeypatch.undo()
            assert pool.size == 1
            wait_for(lambda: pool.stats().workers == 1, "the two started workers to leave")
            assert [w.terminated for w in factory.made] == [0, 1, 1, 1]
            assert [pool.process(n) for n in range(3)] == [0, 1, 2]
            pool.set_size(4)  # the next growth works
            assert pool.stats().workers == 4
        finally:
            monkeypatch.undo()
            assert pool.close(timeout=WAIT)
