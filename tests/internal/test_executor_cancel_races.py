"""Executor: futures cancelled in line, shutdown(cancel_futures), shrinks and blocked submits."""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, wait_for
from tests.test_ctrl_c_resize_close import CtrlCAt


def hold(started: threading.Event, gate: threading.Event) -> None:
    started.set()
    gate.wait(WAIT)


class TestACallCancelledInLineIsDoneForWaitAndAsCompleted:
    def test_cancel(self) -> None:
        """wait() and as_completed() count a call whose future was cancelled in line as done."""
        executor = tunnypy.Executor(1)
        started, gate = threading.Event(), threading.Event()
        try:
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            future = executor.submit(int)
            waiting = Call(concurrent.futures.wait, [future], WAIT)
            assert future.cancel()
            assert waiting.wait(2 * WAIT) == ({future}, set())
            assert list(concurrent.futures.as_completed([future], WAIT)) == [future]
            gate.set()
            assert busy.result(WAIT) is None
        finally:
            gate.set()
            executor.shutdown()

    def test_shutdown_cancel_futures(self) -> None:
        """So do the calls shutdown(cancel_futures=True) cancelled."""
        executor = tunnypy.Executor(1)
        started, gate = threading.Event(), threading.Event()
        try:
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            futures = [executor.submit(int) for _ in range(3)]
            executor.shutdown(wait=False, cancel_futures=True)
            done, not_done = concurrent.futures.wait(futures, WAIT)
            assert (done, not_done) == (set(futures), set())
            assert all(future.cancelled() for future in futures)
            gate.set()
            assert busy.result(WAIT) is None
        finally:
            gate.set()
            executor.shutdown()

    def test_cancelled_as_a_failed_initializer_breaks_the_executor(self) -> None:
        """Cancelled once break_() took its call, before it failed it: done for wait()."""
        fail = threading.Event()
        inits: list[int] = []

        def init() -> None:
            inits.append(1)
            if len(inits) == 2:  # the second thread: fails once told to
                assert fail.wait(WAIT)
                raise RuntimeError("initializer failed")

        executor = tunnypy.Executor(2, initializer=init)
        started, gate = threading.Event(), threading.Event()
        try:
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            first = executor.submit(int)  # the second thread takes it, in init()
            wait_for(lambda: len(inits) == 2, "the second thread's initializer")
            future = executor.submit(int)
            cancelled: list[bool] = []
            # break_() fails the waiting calls in order: as it fails the first,
            # the second is already taken, and not yet failed.
            first.add_done_callback(lambda _: cancelled.append(future.cancel()))
            fail.set()
            assert isinstance(first.exception(WAIT), concurrent.futures.BrokenExecutor)
            assert cancelled == [True]
            assert concurrent.futures.wait([future], WAIT) == ({future}, set())
            assert future.cancelled()
            gate.set()
            assert busy.result(WAIT) is None
        finally:
            fail.set()
            gate.set()
            executor.shutdown()


class Held:
    """An argument a weak reference can watch."""


class TestACallCancelledInLineIsOverBeforeItsFutureTells:
    def test_its_done_callback_sees_the_arguments_freed_and_the_call_counted(self) -> None:
        """A done-callback of a future cancelled in line: arguments freed, counted, out of line."""
        executor = tunnypy.Executor(1)
        started, gate = threading.Event(), threading.Event()
        try:
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            held = [Held()]
            argument = weakref.ref(held[0])
            future = executor.submit(id, held.pop())
            seen: list[tuple[bool, int, int]] = []

            def look(_: object) -> None:
                stats = executor.stats()
                seen.append((argument() is None, stats.cancelled, stats.waiting))

            future.add_done_callback(look)
            assert future.cancel()
            assert seen == [(True, 1, 0)]
            assert future.cancel()  # again: still True, counted once
            gate.set()
            assert busy.result(WAIT) is None
            assert executor.stats().cancelled == 1
        finally:
            gate.set()
            executor.shutdown()


class TestShutdownCancelFuturesInterruptsNoCall:
    def test_a_call_started_while_others_are_cancelled_runs_uninterrupted(self) -> None:
        """A call started while shutdown(cancel_futures=True) cancels others is not interrupted."""
        executor = tunnypy.Executor(2)
        started_a, gate_a = threading.Event(), threading.Event()
        started_b, gate_b = threading.Event(), threading.Event()
        second_started, look = threading.Event(), threading.Event()

        def second() -> bool:
            second_started.set()
            assert look.wait(WAIT)
            return tunnypy.interrupted()

        try:
            busy_a = executor.submit(hold, started_a, gate_a)
            assert started_a.wait(WAIT)
            busy_b = executor.submit(hold, started_b, gate_b)
            assert started_b.wait(WAIT)
            first = executor.submit(int)
            late = executor.submit(second)

            def free_a_worker(_: object) -> None:
                # Run as shutdown() cancels the first call: a worker starts the second.
                gate_b.set()
                assert second_started.wait(WAIT)

            first.add_done_callback(free_a_worker)
            shutting = Call(lambda: executor.shutdown(wait=True, cancel_futures=True))
            state = executor._state
            # Past its cancelling, waiting for the calls that run.
            wait_for(lambda: bool(state.drained._waiters), "shutdown to wait")  # type: ignore[attr-defined]
            look.set()
            gate_a.set()
            assert first.cancelled()
            assert late.result(WAIT) is False
            assert busy_a.result(WAIT) is None
            assert busy_b.result(WAIT) is None
            shutting.wait()
        finally:
            look.set()
            gate_a.set()
            gate_b.set()
            executor.shutdown()


class TestAShrinkLeavingEveryWorkerBlockedForRoom:
    def test_the_blocked_submit_raises_pool_deadlock_error(self) -> None:
        """A shrink retires the only worker that could make room: the blocked submit fails."""
        executor = tunnypy.Executor(1, max_waiting=1)
        go = threading.Event()
        started, gate = threading.Event(), threading.Event()
        parent_on = threading.Event()

        def parent() -> Any:
            parent_on.set()
            assert go.wait(WAIT)
            return executor.submit(int)  # the line is full: blocks for room

        try:
            blocked = executor.submit(parent)
            assert parent_on.wait(WAIT)
            executor.set_max_workers(2)  # the newest thread: a shrink retires it first
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            filler = executor.submit(int)  # waits in line
            go.set()
            state = executor._state
            wait_for(lambda: state.blocked_inside == 1, "the call to block for room")
            executor.set_max_workers(1)  # retires the thread holding `busy`
            with pytest.raises(tunnypy.PoolDeadlockError):
                blocked.result(WAIT)
            assert filler.result(WAIT) == 0
            gate.set()
            assert busy.result(WAIT) is None
        finally:
            go.set()
            gate.set()
            executor.shutdown()


class FailsSecond:
    """An initializer that fails on the second thread to run it."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> None:
        self.runs += 1
        if self.runs == 2:
            raise RuntimeError("initializer failed")


class TestABrokenExecutorRefusesAResize:
    @pytest.mark.parametrize("calls_over", [True, False])
    def test_set_max_workers_raises_broken_thread_pool(self, calls_over: bool) -> None:
        """As submit() does: with a call still running, or once its pool has closed."""
        executor = tunnypy.Executor(2, initializer=FailsSecond())
        started, gate = threading.Event(), threading.Event()
        try:
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            failed = executor.submit(int)  # the second thread: its initializer fails
            assert isinstance(failed.exception(WAIT), concurrent.futures.BrokenExecutor)
            if calls_over:
                gate.set()
                assert busy.result(WAIT) is None
                wait_for(lambda: executor.stats().workers == 0, "the pool to close")
            with pytest.raises(concurrent.futures.BrokenExecutor):
                executor.set_max_workers(3)
            assert executor.max_workers == 2  # what it was asked for, as ThreadPoolExecutor
            gate.set()
            assert busy.result(WAIT) is None
        finally:
            gate.set()
            executor.shutdown()


class TestCtrlCAnywhereInCancellingACallInLine:
    def test_the_call_ends_and_shutdown_returns(self) -> None:
        """Ctrl-C at each signal check of cancel(): wait() sees the call end, shutdown returns."""
        k = 1
        while self.cancel_with_ctrl_c_at(k):
            k += 1
            assert k < 400, "cancel() never completed without Ctrl-C"
        assert k > 3

    @staticmethod
    def cancel_with_ctrl_c_at(k: int) -> bool:
        executor = tunnypy.Executor(1)
        started, gate = threading.Event(), threading.Event()
        try:
            busy = executor.submit(hold, started, gate)
            assert started.wait(WAIT)
            future = executor.submit(int)
            ctrl_c = CtrlCAt(k)
            landed = ctrl_c.run(future.cancel)
            gate.set()
            # Cancelled or run, whichever Ctrl-C left it to: over, and told.
            assert concurrent.futures.wait([future], WAIT) == ({future}, set()), ctrl_c.where
            assert busy.result(WAIT) is None
            Call(executor.shutdown).wait()
            assert executor._state.unfinished == 0, ctrl_c.where
            return landed
        finally:
            gate.set()
            executor.shutdown(wait=False)
