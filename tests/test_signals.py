"""Signals: one landing on a waiting caller or a parked worker only runs its handler."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, on_sigusr1, sigusr1_to, wait_for

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


@pytest.fixture
def handled() -> Iterator[threading.Event]:
    """SIGUSR1 gets a Python handler that sets the event this yields."""
    event = threading.Event()
    with on_sigusr1(lambda signum, frame: event.set()):
        yield event


def run(payload: Callable[[], object]) -> object:
    return payload()


def worker_threads(pool: tunnypy.Pool[Any, Any]) -> list[threading.Thread]:
    return [wrapper.thread for wrapper in pool._core.workers]


class TestParkedWorker:
    def test_a_signal_to_parked_workers_ends_none_of_them(self, handled: threading.Event) -> None:
        """os.eventfd_read fails with EINTR; a parked worker waits on instead of dying."""
        both = threading.Barrier(2, timeout=WAIT)
        with tunnypy.Pool.from_func(2, run) as pool:
            # One worker parks after serving a call, the other has never run one:
            # the two places a worker sleeps.
            assert pool.process(lambda: 1) == 1
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            for thread in worker_threads(pool):
                handled.clear()
                sigusr1_to(thread)
                # The handler runs in the main thread at its next bytecode;
                # blocked in Event.wait() it would not notice before the timeout.
                wait_for(handled.is_set, "the main thread to run the handler")
            assert all(thread.is_alive() for thread in worker_threads(pool))
            assert pool.stats().workers == 2
            # Both serve: each job waits for the other, so they need two workers.
            calls = [pool.submit(both.wait), pool.submit(both.wait)]
            assert {f.result(WAIT) for f in calls} == {0, 1}


CALLS: dict[str, Callable[[tunnypy.Pool[Any, Any], Callable[[], object]], object]] = {
    "process": lambda pool, job: pool.process(job),
    "process_timed": lambda pool, job: pool.process_timed(job, WAIT),
    # A token without a deadline: the untimed wait, unlike the two above.
    "process_ctx": lambda pool, job: pool.process_ctx(job, tunnypy.CancelToken()),
    "try_process": lambda pool, job: pool.try_process(job),
}


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
            sigusr1_to(threading.main_thread())
            assert handled.wait(WAIT)
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
        handled = threading.Event()
        with tunnypy.Pool(2, lambda: ReadyCounter(delivered)) as pool:

            def handler(signum: int, frame: object) -> None:
                outer.release.set()
                # Returns only once the outer job's worker has delivered it and
                # woken this thread's eventfd: this call's wait reads that wake.
                seen["nested"] = pool.process_ctx(
                    lambda: "nested" if delivered.wait(WAIT) else "late", tunnypy.CancelToken()
                )
                handled.set()

            def signal_main() -> None:
                assert outer.started.wait(WAIT)
                sigusr1_to(threading.main_thread())

            with on_sigusr1(handler):
                helper = Call(signal_main)
                # try_process sleeps in the waker's untimed wait().
                assert pool.try_process(lambda: outer("outer")) == "outer"
                helper.wait()
            assert handled.is_set()
            assert seen == {"nested": "nested"}
