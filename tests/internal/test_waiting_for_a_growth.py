"""close(wait=True) and set_size(wait=True) wait for workers a growth listed but had not started."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, GatedFactory, RecordingFactory


class TestCloseWhileAGrowStartsThreads:
    def test_close_waits_for_workers_whose_threads_were_not_started_yet(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A grow lists workers before starting them; close(wait=True) waited for none of those."""
        about_to_start, go = threading.Event(), threading.Event()
        real_thread = threading.Thread

        class PausingThread(real_thread):  # type: ignore[valid-type, misc]
            def start(self) -> None:
                if self.name == "tunnypy-worker-1":
                    about_to_start.set()
                    assert go.wait(WAIT)
                super().start()

        class LetTheGrowGoOn:
            """The resize lock, releasing the paused grow once close() waits for it."""

            def __init__(self, lock: Any) -> None:
                self.lock = lock

            def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
                go.set()
                return bool(self.lock.acquire(blocking, timeout))

            def release(self) -> None:
                self.lock.release()

        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        monkeypatch.setattr(threading, "Thread", PausingThread)
        grow = Call(pool.set_size, 2)
        assert about_to_start.wait(WAIT)  # worker 1 is listed, its thread not started
        core = pool._lifecycle
        core.resize_lock = LetTheGrowGoOn(core.resize_lock)  # type: ignore[assignment]
        closed = pool.close(timeout=WAIT)
        ended = [worker.terminated for worker in factory.made]
        go.set()  # before the fix close() never waited, and the grow still waits here
        assert (closed, ended) == (True, [1, 1])  # both had ended when close() returned
        grow.wait()  # it had listed its worker before close(), which then retired it


class TestShrinkWithWaitWhileAGrowthStartsThreads:
    def test_it_waits_for_a_worker_retired_before_its_thread_started(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """set_size(0, wait=True) while set_size(4) is about to start worker 3: all 4 ended."""
        about_to_start, go = threading.Event(), threading.Event()
        real_thread = threading.Thread

        class PausingThread(real_thread):  # type: ignore[valid-type, misc]
            def start(self) -> None:
                if self.name == "tunnypy-worker-3":
                    about_to_start.set()
                    assert go.wait(WAIT)
                super().start()

        class LetTheGrowGoOn:
            """The resize lock, releasing the paused growth once the shrink waits for it."""

            def __init__(self, lock: Any) -> None:
                self.lock = lock

            def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
                go.set()
                return bool(self.lock.acquire(blocking, timeout))

            def release(self) -> None:
                self.lock.release()

        factory = GatedFactory(hold_from=100)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        monkeypatch.setattr(threading, "Thread", PausingThread)
        grow = Call(pool.set_size, 4)
        try:
            assert about_to_start.wait(WAIT)  # worker 3 is listed, its thread not started
            core = pool._lifecycle
            core.resize_lock = LetTheGrowGoOn(core.resize_lock)  # type: ignore[assignment]
            shrunk = pool.set_size(0, wait=True, timeout=WAIT)
            ended = factory.terminated()
            assert (shrunk, ended) == (True, [1, 1, 1, 1])
            assert grow.wait() is True
        finally:
            go.set()
            assert pool.close(timeout=WAIT)
