"""Findings of the review of the concurrent resize, payload release and deadlock check."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
import weakref
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, RecordingWorker, wait_for
from tests.test_ctrl_c_resize_close import CtrlCAt
from tunnypy import _future, _lifecycle


class LetsAShrinkIn:
    """Makes RecordingWorkers; call *hold_from* first waits for set_size(*to*) in another thread."""

    def __init__(self, hold_from: int, to: int) -> None:
        self.hold_from = hold_from
        self.to = to
        self.pool: tunnypy.Pool[Any, Any] | None = None
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        if len(self.made) + 1 == self.hold_from:
            assert self.pool is not None
            assert Call(self.pool.set_size, self.to).wait() is True
        self.made.append(RecordingWorker())
        return self.made[-1]


class TestCtrlCAsAGrowthTerminatesWorkersTheTargetNoLongerWants:
    def test_the_interrupt_reaches_the_caller_and_every_worker_is_terminated_once(self) -> None:
        """Ctrl-C as terminate() is looked up: it is raised, and the worker is still terminated."""
        factory = LetsAShrinkIn(hold_from=5, to=2)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(4, factory)
        factory.pool = pool
        landed: list[str] = []

        def ctrl_c_after_the_lookup(frame: Any, event: str, arg: Any) -> None:
            if (
                event == "c_return"
                and getattr(arg, "__name__", "") == "getattr"
                and frame.f_code.co_name == "terminate_quietly"
                and not landed
            ):
                landed.append("getattr")
                raise KeyboardInterrupt

        try:
            wait_for(lambda: pool.stats().idle == 4, "the workers to park")
            sys.setprofile(ctrl_c_after_the_lookup)
            try:
                # Grows by 3; meanwhile a shrink to 2 leaves those 3 unwanted.
                with pytest.raises(KeyboardInterrupt):
                    pool.set_size(7)
            finally:
                sys.setprofile(None)
            assert landed == ["getattr"]
            assert pool.size == 2
            assert [pool.process(n) for n in range(3)] == [0, 1, 2]
        finally:
            assert pool.close(timeout=WAIT)
        assert [worker.terminated for worker in factory.made] == [1] * 7
        assert sum(worker.processed for worker in factory.made[4:]) == 0


class FailsAfter:
    """Makes *good* RecordingWorkers, then raises."""

    def __init__(self, good: int) -> None:
        self.good = good
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        if len(self.made) == self.good:
            raise OSError("factory failed")
        self.made.append(RecordingWorker())
        return self.made[-1]


class TestCtrlCAsAFailedGrowthTerminatesItsWorkers:
    def test_every_worker_made_is_terminated_and_the_size_falls_back(self) -> None:
        """Ctrl-C as terminate() is first looked up: it is raised, and every worker is ended."""
        factory = FailsAfter(good=3)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        landed: list[str] = []

        def ctrl_c_after_the_lookup(frame: Any, event: str, arg: Any) -> None:
            if (
                event == "c_return"
                and getattr(arg, "__name__", "") == "getattr"
                and frame.f_code.co_name == "terminate_quietly"
                and not landed
            ):
                landed.append("getattr")
                raise KeyboardInterrupt

        try:
            sys.setprofile(ctrl_c_after_the_lookup)
            try:
                with pytest.raises(KeyboardInterrupt):
                    pool.set_size(4)  # makes 2, the third call raises
            finally:
                sys.setprofile(None)
            assert landed == ["getattr"]
            assert pool.size == 1
            made = [worker.terminated for worker in factory.made[1:]]
            assert made == [1, 1]
            assert pool.process(5) == 5
        finally:
            assert pool.close(timeout=WAIT)
        assert [worker.terminated for worker in factory.made] == [1, 1, 1]


def settled_state(pool: tunnypy.Pool[Any, Any]) -> str:
    """What is wrong with the pool's worker records, or ``""``."""
    lifecycle = pool._lifecycle
    line = lifecycle.line
    with line.lock:
        active = sum(1 for w in lifecycle.workers if not w.retiring)
        if active != line.active:
            return f"active reads {line.active}, {active} workers are not retiring"
        if any(w.thread.ident is None for w in lifecycle.workers):
            return "a listed worker never started"
    return ""


class HeldFactory:
    """Makes RecordingWorkers; from the fourth call on, each waits for ``release``."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        if len(self.made) >= 3:
            self.entered.set()
            assert self.release.wait(WAIT)
        self.made.append(RecordingWorker())
        return self.made[-1]


class TestCtrlCAnywhereInAShrinkRacingAGrowth:
    """Ctrl-C at every signal check (see CtrlCAt) of a resize racing another."""

    @staticmethod
    def settle(pool: tunnypy.Pool[Any, Any], made: list[RecordingWorker], where: str) -> None:
        wait_for(lambda: settled_state(pool) == "", f"consistent records ({where})")
        if pool.size:
            assert Call(pool.process, 7).wait() == 7, where
        assert pool.close(timeout=WAIT), where
        assert pool.stats().workers == 0, where
        assert [w.terminated for w in made] == [1] * len(made), where

    def growth_letting_a_shrink_in(self, k: int, to: int) -> bool:
        factory = LetsAShrinkIn(hold_from=5, to=to)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(4, factory)
        factory.pool = pool
        wait_for(lambda: pool.stats().idle == 4, "the workers to park")
        ctrl_c = CtrlCAt(k)
        landed = ctrl_c.run(lambda: pool.set_size(7))
        self.settle(pool, factory.made, ctrl_c.where)
        return landed

    def shrink_during_a_growth(self, k: int) -> bool:
        factory = HeldFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        wait_for(lambda: pool.stats().idle == 3, "the workers to park")
        grow = Call(pool.set_size, 5)
        try:
            assert factory.entered.wait(WAIT)
            ctrl_c = CtrlCAt(k)
            landed = ctrl_c.run(lambda: pool.set_size(1))
        finally:
            factory.release.set()
        assert grow.wait() is True
        self.settle(pool, factory.made, ctrl_c.where)
        return landed

    @pytest.mark.parametrize("to", [1, 2])
    def test_a_growth_whose_factory_lets_a_shrink_in(self, to: int) -> None:
        """set_size(7) from 4, a shrink to *to* during its factory: every worker ends once."""
        k = 1
        while self.growth_letting_a_shrink_in(k, to):
            k += 1
            assert k < 400, "the operation never completed without Ctrl-C"
        assert k > 5

    def test_a_shrink_while_another_threads_growth_is_in_its_factory(self) -> None:
        """set_size(1) while set_size(5) waits in its factory: every worker ends once."""
        k = 1
        while self.shrink_during_a_growth(k):
            k += 1
            assert k < 400, "the operation never completed without Ctrl-C"
        assert k > 5


class Held:
    """A payload a weak reference can watch."""


class TestAFutureCancelledInLineIsDoneOnlyOnceItsCallIsOver:
    @pytest.mark.parametrize("lean", [True, False])
    def test_its_done_callback_sees_the_payload_freed_and_the_call_counted(
        self, lean: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A done-callback of a future cancelled in line: payload freed, cancelled, out of line."""
        monkeypatch.setattr(_future, "LEAN", lean)  # the lean and the stock-built future
        gate = threading.Event()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_func(
            1, lambda p: gate.wait(WAIT) if p == "hold" else p
        )
        try:
            busy = pool.submit("hold")
            wait_for(lambda: pool.stats().busy == 1, "the worker to take the first job")
            held = [Held()]
            payload = weakref.ref(held[0])
            future = pool.submit(held.pop())
            seen: list[tuple[bool, int, int]] = []

            def look(_: object) -> None:
                stats = pool.stats()
                seen.append((payload() is None, stats.cancelled, stats.waiting))

            future.add_done_callback(look)
            assert future.cancel()
            assert seen == [(True, 1, 0)]
            assert future.cancel()  # again: still True, counted once
            gate.set()
            assert busy.result(WAIT) is True
            assert pool.stats().cancelled == 1
        finally:
            gate.set()
            assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("lean", [True, False])
    def test_wait_and_as_completed_see_it_done(
        self, lean: bool, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """concurrent.futures.wait() and as_completed() count a future cancelled in line as done."""
        monkeypatch.setattr(_future, "LEAN", lean)
        gate = threading.Event()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_func(
            1, lambda p: gate.wait(WAIT) if p == "hold" else p
        )
        try:
            busy = pool.submit("hold")
            wait_for(lambda: pool.stats().busy == 1, "the worker to take the first job")
            future = pool.submit(1)
            waiting = Call(concurrent.futures.wait, [future], WAIT)
            assert future.cancel()
            done, not_done = waiting.wait(2 * WAIT)
            assert (done, not_done) == ({future}, set())
            assert list(concurrent.futures.as_completed([future], WAIT)) == [future]
            gate.set()
            assert busy.result(WAIT) is True
        finally:
            gate.set()
            assert pool.close(timeout=WAIT)


class FailsWhenReleased:
    """Makes RecordingWorkers; from the fourth call on, each waits for ``release`` and raises."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        if len(self.made) >= 3:
            self.entered.set()
            assert self.release.wait(WAIT)
            raise OSError("factory failed")
        self.made.append(RecordingWorker())
        return self.made[-1]


class CtrlCInItsWait:
    """The resize lock, where a thread waiting for it gets Ctrl-C (a blocked acquire raises it)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def __enter__(self) -> None:
        raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        self.lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return bool(self.lock.acquire(blocking, timeout))

    def release(self) -> None:
        self.lock.release()


class TestCtrlCWhileAGrowthWaitsForAnotherThreadsGrowth:
    def test_its_target_is_put_back_and_a_failed_growth_then_falls_back(self) -> None:
        """set_size(6) interrupted behind set_size(5): size reads 5, then 3 once that one fails."""
        factory = FailsWhenReleased()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        grow = Call(pool.set_size, 5)
        try:
            assert factory.entered.wait(WAIT)
            lifecycle = pool._lifecycle
            lifecycle.resize_lock = CtrlCInItsWait(lifecycle.resize_lock)  # type: ignore[assignment]
            with pytest.raises(KeyboardInterrupt):
                pool.set_size(6)
            assert pool.size == 5  # the growth still running
            factory.release.set()
            with pytest.raises(OSError, match="factory failed"):
                grow.wait()
            assert pool.size == 3  # as if neither call had been made
            wait_for(lambda: pool.stats().idle == 3, "the pool to settle at 3")
        finally:
            factory.release.set()
            assert pool.close(timeout=WAIT)


class LooksClosed:
    """A lifecycle stand-in: keeps the frame of whoever closes it."""

    def __init__(self) -> None:
        self.closer: Any = None

    def close(self, wait: bool, timeout: float | None) -> bool:
        self.closer = sys._getframe(1)
        return False


class TestTheCtrlCTracerSkipsTheDroppedPoolsFinalizer:
    def test_close_dropped_pool_is_not_traced(self) -> None:
        """A collection may run it anywhere: CtrlCAt never raises Ctrl-C inside it."""
        lifecycle = LooksClosed()
        _lifecycle.close_dropped_pool(lifecycle)  # type: ignore[arg-type]
        assert lifecycle.closer.f_code.co_name == "close_dropped_pool"
        assert not CtrlCAt._ours(lifecycle.closer)


class TestCtrlCAnywhereInCancellingAFutureInLine:
    def test_the_call_is_counted_once(self) -> None:
        """Ctrl-C at each signal check of a submit future's cancel(): the call counts once."""
        k = 1
        while self.cancel_with_ctrl_c_at(k):
            k += 1
            assert k < 400, "cancel() never completed without Ctrl-C"
        assert k > 3

    @staticmethod
    def cancel_with_ctrl_c_at(k: int) -> bool:
        gate = threading.Event()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_func(
            1, lambda p: gate.wait(WAIT) if p == "hold" else p
        )
        try:
            busy = pool.submit("hold")
            wait_for(lambda: pool.stats().busy == 1, "the worker to take the first job")
            future = pool.submit(1)
            ctrl_c = CtrlCAt(k)
            landed = ctrl_c.run(future.cancel)
            gate.set()
            assert busy.result(WAIT) is True
            wait_for(lambda: pool.stats().idle == 1, "the worker to park, the line served")
            stats = pool.stats()
            ended = stats.completed + stats.failed + stats.cancelled + stats.rejected
            assert (ended, stats.waiting) == (2, 0), ctrl_c.where
            return landed
        finally:
            gate.set()
            assert pool.close(timeout=WAIT)
