"""Signals: one landing on a waiting caller runs its handler, even one that calls the pool."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import pytest

import tunnypy
from tests.helpers import (
    CALLS,
    WAIT,
    Call,
    Gate,
    on_sigusr1,
    run,
    sigusr1_until,
)

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


class TestWaitingCaller:
    @pytest.mark.parametrize("kind", sorted(CALLS))
    def test_a_signal_while_a_call_waits_runs_its_handler_and_the_call_returns(
        self, kind: str, handled: threading.Event
    ) -> None:
        """The main thread, waiting for its job, runs the handler and waits on for the result."""
        assert threading.current_thread() is threading.main_thread()
        gate = Gate()

        def signal_then_release() -> None:
            assert gate.started.wait(WAIT)
            sigusr1_until(threading.main_thread(), handled)
            gate.release.set()

        with tunnypy.Pool.from_func(2, run) as pool:
            helper = Call(signal_then_release)
            assert CALLS[kind](pool, lambda: gate("done")) == "done"
            helper.wait()
            stats = pool.stats()
            assert (stats.completed, stats.cancelled, stats.workers) == (1, 0, 2)


class ReadyCounter(tunnypy.BaseWorker[Callable[[], object], object]):
    """Runs callables; sets *delivered* when it is readied a second time (its first job is out)."""

    def __init__(self, delivered: threading.Event) -> None:
        self.delivered = delivered
        self.readied = 0

    def process(self, payload: Callable[[], object]) -> object:
        return payload()

    def block_until_ready(self) -> None:
        self.readied += 1  # only this worker's thread calls it
        if self.readied == 2:
            self.delivered.set()


class TestHandlerThatCallsThePool:
    @pytest.mark.timeout(30)
    def test_a_call_made_by_the_handler_cannot_strand_the_call_it_interrupted(self) -> None:
        """The handler's call takes the waiting call's wake from the shared waker; both return."""
        assert threading.current_thread() is threading.main_thread()
        outer, delivered = Gate(), threading.Event()
        seen: dict[str, object] = {}
        entered, handled = threading.Event(), threading.Event()
        with tunnypy.Pool(2, lambda: ReadyCounter(delivered)) as pool:

            def handler(signum: int, frame: object) -> None:
                if entered.is_set():
                    return  # a resent signal
                entered.set()
                outer.release.set()
                # Returns only once the outer job's worker has delivered it and
                # woken this thread's eventfd: this call's wait reads that wake.
                seen["nested"] = pool.process_ctx(
                    lambda: "nested" if delivered.wait(WAIT) else "late", tunnypy.CancelToken()
                )
                handled.set()

            def signal_main() -> None:
                assert outer.started.wait(WAIT)
                sigusr1_until(threading.main_thread(), entered)

            with on_sigusr1(handler):
                helper = Call(signal_main)
                # try_process sleeps in the waker's untimed wait().
                assert pool.try_process(lambda: outer("outer")) == "outer"
                helper.wait()
            assert handled.is_set()
            assert seen == {"nested": "nested"}
