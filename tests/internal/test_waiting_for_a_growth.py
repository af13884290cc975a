"""close(wait=True) and set_size(wait=True) wait for workers a growth listed but had not started."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, GatedFactory, RecordingFactory


class PausedGrowth:
    """Pause a growth as it is about to start the named worker's thread; let it go on later."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, thread_name: str) -> None:
        self.about_to_start, self.go = threading.Event(), threading.Event()
        about_to_start, go = self.about_to_start, self.go
        real_thread = threading.Thread

        class PausingThread(real_thread):  # type: ignore[valid-type, misc]
            def start(self) -> None:
                if self.name == thread_name:
                    about_to_start.set()
                    assert go.wait(WAIT)
                super().start()

        monkeypatch.setattr(threading, "Thread", PausingThread)

    def release_when_waited_for(self, pool: tunnypy.Pool[Any, Any]) -> None:
        """Let the growth go on once someone waits for the pool's resize lock."""
        go = self.go

        class LetTheGrowGoOn:
            def __init__(self, lock: Any) -> None:
                self.lock = lock

            def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
                go.set()
                return bool(self.lock.acquire(blocking, timeout))

            def release(self) -> None:
                self.lock.release()

        core = pool._lifecycle
        core.resize_lock = LetTheGrowGoOn(core.resize_lock)  # type: ignore[assignment]


class TestCloseWhileAGrowStartsThreads:
    def test_close_waits_for_workers_whose_threads_were_not_started_yet(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A grow lists workers before starting them; close(wait=True) waited for none of those."""
        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        paused = PausedGrowth(monkeypatch, "tunnypy-worker-1")
        grow = Call(pool.set_size, 2)
        assert paused.about_to_start.wait(WAIT)  # worker 1 is listed, its thread not started
        paused.release_when_waited_for(pool)
        closed = pool.close(timeout=WAIT)
        ended = [worker.terminated for worker in factory.made]
        paused.go.set()  # before the fix close() never waited, and the grow still waits here
        assert (closed, ended) == (True, [1, 1])  # both had ended when close() returned
        grow.wait()  # it had listed its worker before close(), which then retired it


class TestShrinkWithWaitWhileAGrowthStartsThreads:
    def test_it_waits_for_a_worker_retired_before_its_thread_started(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """set_size(0, wait=True) while set_size(4) is about to start worker 3: all 4 ended."""
        factory = GatedFactory(hold_from=100)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        paused = PausedGrowth(monkeypatch, "tunnypy-worker-3")
        grow = Call(pool.set_size, 4)
        try:
            assert paused.about_to_start.wait(WAIT)  # worker 3 is listed, its thread not started
            paused.release_when_waited_for(pool)
            shrunk = pool.set_size(0, wait=True, timeout=WAIT)
            ended = factory.terminated()
            assert (shrunk, ended) == (True, [1, 1, 1, 1])
            assert grow.wait() is True
        finally:
            paused.go.set()
            assert pool.close(timeout=WAIT)
