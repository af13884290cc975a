"""Signals: one landing on a waiting caller or a parked worker only runs its handler."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


@pytest.fixture
def handled() -> Iterator[threading.Event]:
    """SIGUSR1 gets a Python handler that sets the event this yields."""
    event = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: event.set())
    try:
        yield event
    finally:
        signal.signal(signal.SIGUSR1, previous)


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
                signal.pthread_kill(thread.ident or 0, signal.SIGUSR1)
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
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)
            assert handled.wait(WAIT)
            gate.release.set()

        with tunnypy.Pool.from_func(2, run) as pool:
            helper = Call(signal_then_release)
            assert CALLS[kind](pool, lambda: gate("done")) == "done"
            helper.wait()
            stats = pool.stats()
            assert (stats.completed, stats.cancelled, stats.workers) == (1, 0, 2)
