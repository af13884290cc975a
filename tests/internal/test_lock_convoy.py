"""
A thread that finds the pool's lock held yields the GIL instead of sleeping on it.

A thread that finds the pool's lock held gives up the GIL until the lock is
free (``_waker.yield_until_free``) instead of sleeping on it: a sleeper that
the release makes the lock's owner, without the GIL, starts a convoy in which
nearly every acquisition sleeps. These tests hold the pool's lock themselves
and check that callers, submitters and workers yield rather than block, and
that the yielding is bounded.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, identity, wait_for
from tunnypy import _waker


class YieldSpy:
    """Stands in for ``_waker._yield``: records who yielded, then really yields."""

    def __init__(self) -> None:
        self.callers: list[str] = []
        self.yielded = threading.Event()
        self.real = _waker._yield

    def __call__(self) -> None:
        # Frame 1 is yield_until_free; frame 2 is the code that found the lock held.
        self.callers.append(sys._getframe(2).f_code.co_name)
        self.yielded.set()
        self.real()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[YieldSpy]:
    spy = YieldSpy()
    monkeypatch.setattr(_waker, "_yield", spy)
    yield spy


class TestYieldUntilFree:
    def test_returns_once_the_lock_is_free_without_taking_it(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        lock = threading.Lock()
        lock.acquire()
        turns = []

        def release_on_third_turn() -> None:
            turns.append(1)
            if len(turns) == 3:
                lock.release()

        monkeypatch.setattr(_waker, "_yield", release_on_third_turn)
        _waker.yield_until_free(lock)
        assert len(turns) == 3
        assert not lock.locked()

    def test_gives_up_after_a_bounded_number_of_turns(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        lock = threading.Lock()
        lock.acquire()
        turns = []
        monkeypatch.setattr(_waker, "_yield", lambda: turns.append(1))
        monkeypatch.setattr(_waker, "YIELDS", 5)
        _waker.yield_until_free(lock)
        assert len(turns) == 5
        assert lock.locked()  # still the holder's: the caller then blocks on it
        lock.release()


class TestHotPathsYield:
    def test_process_yields_while_the_pool_lock_is_held(self, spy: YieldSpy) -> None:
        with tunnypy.Pool.from_func(2, identity) as pool:
            core = pool._line
            wait_for(lambda: len(core.idle) == 2, "both workers to park")
            with core.lock:
                call = Call(pool.process, 7)
                assert spy.yielded.wait(WAIT), "process() blocked on the held lock"
            assert call.wait() == 7
            assert "process" in spy.callers

    def test_submit_yields_while_the_pool_lock_is_held(self, spy: YieldSpy) -> None:
        with tunnypy.Pool.from_func(2, identity) as pool:
            core = pool._line
            with core.lock:
                call = Call(pool.submit, 8)
                assert spy.yielded.wait(WAIT), "submit() blocked on the held lock"
            assert call.wait().result(WAIT) == 8
            assert "dispatch" in spy.callers

    def test_a_worker_back_from_a_job_yields_while_the_pool_lock_is_held(
        self, spy: YieldSpy
    ) -> None:
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            core = pool._line
            future = pool.submit(9)
            assert gate.started.wait(WAIT)
            with core.lock:
                gate.release.set()  # the worker returns and wants the lock
                assert spy.yielded.wait(WAIT), "the worker blocked on the held lock"
            assert future.result(WAIT) == 9
            assert spy.callers[0] == "take_or_park"


class HandOverLock:
    """
    Wraps the pool's lock; the first release by *thread* hands the lock to the test.

    The lock stays held (now the test's) and ``handed`` is set, so the test
    holds the lock exactly between that release and the thread's next
    acquisition.
    """

    def __init__(self, real: Any) -> None:
        self.real = real
        self.thread: threading.Thread | None = None
        self.handed = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self.real.acquire(blocking, timeout))

    def release(self) -> None:
        if self.thread is threading.current_thread() and not self.handed.is_set():
            self.handed.set()  # keep it held: it is the test's now
            return
        self.real.release()

    def locked(self) -> bool:
        return bool(self.real.locked())

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_summoned_worker_yields_before_passing_the_summons_on(
    spy: YieldSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A summoned worker takes its job, then takes the lock again to pass the summons on."""
    with tunnypy.Pool.from_func(1, identity) as pool:
        core = pool._line
        wait_for(lambda: len(core.idle) == 1, "the worker to park")
        [wrapper] = core.idle
        lock = HandOverLock(core.lock)
        lock.thread = wrapper.thread  # type: ignore[attr-defined]  # a WorkerThread
        monkeypatch.setattr(core, "lock", lock)
        future = pool.submit(5)  # goes in line and summons the parked worker
        handed = lock.handed.wait(WAIT)
        yielded = handed and spy.yielded.wait(WAIT)
        if handed:
            lock.real.release()  # before asserting: close() needs the lock
        assert handed, "the summoned worker never took its job"
        assert yielded, "the summoned worker blocked on the held lock"
        assert future.result(WAIT) == 5
        assert spy.callers == ["answer_summons"] * len(spy.callers)
