"""
A calling thread reuses the job of its last call, emptied.

When a call lets go of its payload and result: tests/test_payload_release.py.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, on_sigusr1, sigusr1_until, wait_for
from tunnypy import _job
from tunnypy._job import NO_CONTEXT, Job


class Box:
    """A payload or result."""

    def __init__(self, value: int) -> None:
        self.value = value


def spare() -> Job | None:
    return _job._tls.spare


def box_plus_one(box: Box) -> Box:
    return Box(box.value + 1)


class TestReuse:
    def test_a_call_that_ended_normally_leaves_its_emptied_job_for_the_next(self) -> None:
        """process() and process_timed() on one thread run one Job object, emptied between calls."""
        with tunnypy.Pool.from_func(2, box_plus_one) as pool:
            assert pool.process(Box(1)).value == 2
            job = spare()
            assert job is not None
            assert (job.payload, job.result, job.runner, job.context) == (
                None,
                None,
                None,
                NO_CONTEXT,
            )
            assert pool.process_timed(Box(2), WAIT).value == 3
            assert spare() is job
            assert pool.process(Box(3)).value == 4
            assert spare() is job

    def test_a_call_that_raised_leaves_no_spare(self) -> None:
        """A job whose outcome was an error is not reused."""

        def fail(_: object) -> object:
            raise ValueError("boom")

        with tunnypy.Pool.from_func(1, fail) as pool:
            with pytest.raises(ValueError, match="boom"):
                pool.process(1)
            assert spare() is None

    def test_a_timed_out_job_is_not_reused_and_its_late_result_goes_nowhere(self) -> None:
        """The thread's next call gets a new job; the abandoned job's late outcome misses it."""
        first, second = Gate(), Gate()
        first_returned = threading.Event()

        def run(payload: Callable[[], object]) -> object:
            return payload()

        def slow_first() -> object:
            first()
            first_returned.set()
            return "first"

        with tunnypy.Pool.from_func(2, run) as pool:
            assert pool.process(lambda: "warm") == "warm"
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(slow_first, 0.05)
            assert spare() is None

            def release_in_order() -> None:
                assert second.started.wait(WAIT)
                first.release.set()
                assert first_returned.wait(WAIT)
                wait_for(lambda: pool.stats().busy == 1, "the timed-out job's worker to finish")
                second.release.set()

            releaser = Call(release_in_order)
            assert pool.process(lambda: second("second")) == "second"
            releaser.wait()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
class TestReentrantCall:
    def test_a_call_from_a_signal_handler_during_a_call_gets_its_own_job(self) -> None:
        """A running call's job is not the spare: a call made meanwhile gets its own."""
        assert threading.current_thread() is threading.main_thread()
        gate = Gate()
        seen: dict[str, Any] = {}
        entered, handled = threading.Event(), threading.Event()

        def run(payload: Callable[[], object]) -> object:
            return payload()

        with tunnypy.Pool.from_func(2, run) as pool:
            assert pool.process(lambda: "warm") == "warm"

            def handler(signum: int, frame: object) -> None:
                if entered.is_set():
                    return  # a resent signal
                entered.set()
                seen["spare"] = spare()
                seen["nested"] = pool.process(lambda: "nested")
                handled.set()

            def interrupt_then_release() -> None:
                assert gate.started.wait(WAIT)
                sigusr1_until(threading.main_thread(), entered)
                assert handled.wait(WAIT)
                gate.release.set()

            with on_sigusr1(handler):
                helper = Call(interrupt_then_release)
                assert pool.process(lambda: gate("outer")) == "outer"
                helper.wait()
            assert seen == {"spare": None, "nested": "nested"}
            assert spare() is not None
