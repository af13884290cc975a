"""Ctrl-C landing as a call hands its job over, joins the line or wakes a worker strands nothing."""

from __future__ import annotations

import collections
import signal
import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    CALLS,
    WAIT,
    Call,
    Gate,
    PoolCall,
    run,
    wait_for,
)
from tunnypy._waker import Waker

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


class InterruptedLine(collections.deque[Any]):
    """A pool's line whose first append is followed by Ctrl-C, as if SIGINT arrived then."""

    interrupted = False

    def append(self, job: Any) -> None:
        super().append(job)
        if not self.interrupted:
            self.interrupted = True
            # CPython runs signal handlers, and raises KeyboardInterrupt,
            # just after a call returns: here, with the job in line.
            raise KeyboardInterrupt


class InterruptedWake:
    """
    A parked worker's waker whose first wake is followed by Ctrl-C.

    With ``before``, Ctrl-C comes before it wakes anyone: a lock waker's
    wake() when the signal is handled as that Python function is entered (an
    eventfd waker's wake is C code, which wakes first).
    """

    def __init__(self, waker: Waker, *, before: bool = False) -> None:
        self.waker = waker
        self.wait_forever = waker.wait_forever
        self.before = before
        self.interrupted = False

    def wait(self, timeout: float | None = None) -> bool:
        return self.waker.wait(timeout)

    def wake(self) -> None:
        if self.interrupted or not self.before:
            self.waker.wake()
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt


# The calls that wait in line (not try_process).
IN_LINE_CALLS: dict[str, PoolCall] = {
    "process": CALLS["process"],
    "process_timed": CALLS["process_timed"],
    "process_ctx": CALLS["process_ctx"],
    "submit": lambda pool, job: pool.submit(job),
}
ALL_CALLS = {**CALLS, **IN_LINE_CALLS}


class TestCtrlCJustAfterTheJobGotIn:
    """Ctrl-C between handing the job over and waiting for it still withdraws the job."""

    @pytest.mark.parametrize("kind", sorted(IN_LINE_CALLS))
    def test_a_job_interrupted_as_it_joins_the_line_is_taken_out_of_it(self, kind: str) -> None:
        blocker = Gate()
        ran = threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            busy = pool.submit(blocker)
            assert blocker.started.wait(WAIT)
            core.waiting = InterruptedLine()
            with pytest.raises(KeyboardInterrupt):
                IN_LINE_CALLS[kind](pool, ran.set)
            assert core.waiting.interrupted
            stats = pool.stats()
            assert (pool.queue_length, stats.cancelled) == (0, 1)
            blocker.release.set()
            assert busy.result(WAIT) is None
            # The line is empty: the worker parks, and the withdrawn job never runs.
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            assert pool.process(lambda: "next") == "next"
            assert not ran.is_set()
            assert pool.stats().completed == 2  # the blocker and "next"

    @pytest.mark.parametrize("kind", sorted(CALLS))
    def test_a_job_interrupted_as_its_worker_wakes_is_withdrawn(self, kind: str) -> None:
        gate = Gate()
        seen: list[bool] = []

        def job() -> None:
            gate()
            seen.append(tunnypy.interrupted())

        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            wrapper = core.idle[0]
            proxy = wrapper.waker = InterruptedWake(wrapper.waker)
            with pytest.raises(KeyboardInterrupt):
                CALLS[kind](pool, job)
            assert proxy.interrupted
            # Withdrawn while running (or before it began): interrupted, not delivered.
            assert pool.stats().cancelled == 1
            gate.release.set()
            wait_for(lambda: pool.stats().idle == 1, "the worker to park again")
            assert seen in ([], [True])
            assert pool.stats().completed == 0
            assert pool.process(lambda: "next") == "next"

    @pytest.mark.parametrize("kind", sorted(ALL_CALLS))
    def test_ctrl_c_before_the_job_got_in_is_counted_and_nothing_runs(
        self, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """KeyboardInterrupt, not an error of the pool's, reaches the caller; stats still add up."""
        blocker = Gate()
        ran = threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            core.max_waiting = 10  # process() takes dispatch()'s way into the line
            busy = pool.submit(blocker)
            assert blocker.started.wait(WAIT)

            def interrupted_dispatch(
                job: object, *, wait: bool = True, call: str = "process"
            ) -> None:
                raise KeyboardInterrupt  # as if Ctrl-C landed as dispatch() began

            monkeypatch.setattr(core, "dispatch", interrupted_dispatch)
            with pytest.raises(KeyboardInterrupt):
                ALL_CALLS[kind](pool, ran.set)
            monkeypatch.undo()
            stats = pool.stats()
            assert (pool.queue_length, stats.cancelled, stats.rejected) == (0, 1, 0)
            blocker.release.set()
            assert busy.result(WAIT) is None
            assert pool.process(lambda: "next") == "next"
            assert not ran.is_set()
            assert pool.stats().completed == 2  # the blocker and "next"


class TestCtrlCAsALockWakeBegins:
    """Ctrl-C before the wake of a worker handed a job (or the summons) still wakes it."""

    @pytest.mark.parametrize("kind", sorted({**CALLS, "submit": IN_LINE_CALLS["submit"]}))
    def test_the_worker_is_woken_and_the_pool_serves_on(self, kind: str) -> None:
        ran = threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            wrapper = core.idle[0]
            proxy = wrapper.waker = InterruptedWake(wrapper.waker, before=True)
            with pytest.raises(KeyboardInterrupt):
                {**CALLS, "submit": IN_LINE_CALLS["submit"]}[kind](pool, ran.set)
            assert proxy.interrupted
            # Before the fix the worker slept for good, holding the withdrawn
            # job or the summons, and this timed out.
            assert pool.process_timed(lambda: "next", WAIT) == "next"
            # Woken again before the withdrawal, the worker may finish the
            # interrupted call's job first (its outcome stands, uncollected);
            # either way that call is counted once.
            stats = pool.stats()
            assert (stats.completed + stats.cancelled, stats.completed) in ((2, 1), (2, 2))
        assert pool.close(timeout=WAIT)

    def test_cancel_wakes_every_caller_of_its_token(self) -> None:
        gates = [Gate(), Gate()]
        with tunnypy.Pool.from_func(2, run) as pool:
            token = tunnypy.CancelToken()
            calls = [Call(pool.process_ctx, gate, token) for gate in gates]
            for gate in gates:
                assert gate.started.wait(WAIT)
            wait_for(lambda: len(token._wakers) == 2, "both callers to wait on the token")
            # One Ctrl-C, landing as the first wake begins.
            first, other = token._wakers
            proxy = InterruptedWake(first, before=True)
            token._wakers = {proxy: 1, other: 1}
            with pytest.raises(KeyboardInterrupt):
                token.cancel()
            assert proxy.interrupted
            for call in calls:
                with pytest.raises(tunnypy.JobCancelledError):
                    call.wait()
            for gate in gates:
                gate.release.set()


class TestCtrlCInsideClose:
    """close() interrupted by Ctrl-C still ends every worker and tells every refused call."""

    def test_ctrl_c_as_the_first_parked_worker_is_woken(self) -> None:
        pool = tunnypy.Pool.from_func(3, run)
        wait_for(lambda: pool.stats().idle == 3, "the workers to park")
        leader = pool._line.idle[-1]  # the chain starts from the top of the stack
        proxy = leader.waker = InterruptedWake(leader.waker, before=True)
        with pytest.raises(KeyboardInterrupt):
            pool.close(wait=False)
        assert proxy.interrupted
        assert pool.close(timeout=WAIT)  # before the fix the chain never started
        assert pool.stats().workers == 0
