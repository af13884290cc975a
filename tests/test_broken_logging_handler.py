"""A logging handler that raises inside a worker's loop loses no call and no worker."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    BoomError,
    Call,
    Gate,
    wait_for,
)


class RaisingHandler(logging.Handler):
    """A logging handler that raises on the events named (all, if none), as a broken one may."""

    def __init__(self, *events: str) -> None:
        super().__init__(logging.DEBUG)
        self.events = events
        self.raised = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not self.events or any(message.startswith(event) for event in self.events):
            self.raised += 1
            raise RuntimeError(f"broken handler: {message}")


@contextlib.contextmanager
def handler_on_tunnypy(handler: logging.Handler) -> Iterator[None]:
    logger = logging.getLogger("tunnypy")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class TestBrokenLoggingHandler:
    """A logging handler that raises inside a worker's loop is a failure of tunnypy's own code."""

    def test_failing_as_it_logs_a_failed_job_the_future_it_took_next_is_run(self) -> None:
        """A function worker takes its next job before it delivers: that job must not be lost."""
        gate = Gate()

        def job(x: str) -> str:
            if x == "bad":
                gate()
                raise BoomError("bad")
            return x

        handler = RaisingHandler("job_failed")
        with tunnypy.Pool.from_func(1, job) as pool:
            bad = Call(pool.process_timed, "bad", WAIT)
            assert gate.started.wait(WAIT)
            following = pool.submit("next")
            assert pool.stats().waiting == 1
            with handler_on_tunnypy(handler):
                gate.release.set()
                with pytest.raises(BoomError):
                    bad.wait()
                assert following.result(WAIT) == "next"
            assert handler.raised == 1
            assert pool.process_timed("after", WAIT) == "after"
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.failed) == (1, 2, 1)

    def test_failing_on_every_event_a_withdrawn_job_and_the_next_still_resolve(self) -> None:
        """The recovery neither repeats the log that failed nor lets its own log end the worker."""
        gate = Gate()
        ran: list[str] = []

        def job(x: str) -> str:
            ran.append(x)
            return gate(x) if x == "given up" else x

        handler = RaisingHandler()
        with tunnypy.Pool.from_func(1, job) as pool:
            token = tunnypy.CancelToken()
            given_up = Call(pool.process_ctx, "given up", token)
            assert gate.started.wait(WAIT)
            following = Call(pool.process_timed, "next", WAIT)
            wait_for(lambda: pool.stats().waiting == 1, "the next call to wait in line")
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                given_up.wait()
            with handler_on_tunnypy(handler):
                gate.release.set()  # delivering it logs job_abandoned, which raises
                assert following.wait() == "next"
                assert pool.process_timed("after", WAIT) == "after"
            assert handler.raised >= 2  # job_abandoned, then worker_failed
            assert ran == ["given up", "next", "after"]
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.cancelled) == (1, 2, 1)

    def test_failing_as_a_worker_starts_it_still_serves(self) -> None:
        handler = RaisingHandler("worker_started")
        with handler_on_tunnypy(handler), tunnypy.Pool.from_func(2, str) as pool:
            assert [pool.process_timed(n, WAIT) for n in range(3)] == ["0", "1", "2"]
            wait_for(lambda: handler.raised == 2, "both workers to have logged")
            assert pool.stats().workers == 2
