"""Context isolation: a job sees its caller's contextvars and leaks none of its own."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")
scratch: contextvars.ContextVar[str] = contextvars.ContextVar("scratch", default="unset")


def job(value: str) -> tuple[str, str]:
    """Return what the job sees, then set both variables to *value*."""
    seen = (request_id.get(), scratch.get())
    request_id.set(value)
    scratch.set(value)
    return seen


@pytest.fixture
def pool() -> Iterator[tunnypy.Pool[str, tuple[str, str]]]:
    p = tunnypy.Pool.from_func(1, job)  # one worker: every job runs on the same thread
    yield p
    assert p.close(timeout=WAIT)


def ways(pool: tunnypy.Pool[str, tuple[str, str]], value: str) -> list[tuple[str, str]]:
    """Run *value* once through each way of calling the pool, from this thread."""
    return [
        pool.process(value),
        pool.process_timed(value, WAIT),
        pool.process_ctx(value, tunnypy.CancelToken()),
        # try_process before submit: a blocking call's worker is back in the
        # pool before its caller wakes, a submit's only after its future is done.
        pool.try_process(value),
        pool.submit(value).result(WAIT),
    ]


class TestContextIsolation:
    def test_the_caller_context_is_visible_to_its_job(
        self, pool: tunnypy.Pool[str, tuple[str, str]]
    ) -> None:
        """Every way of calling copies the caller's contextvars into the job."""
        token = request_id.set("caller-1")
        try:
            assert ways(pool, "job") == [("caller-1", "unset")] * 5
        finally:
            request_id.reset(token)

    def test_what_a_job_sets_does_not_leak_into_the_next_job_or_the_caller(
        self, pool: tunnypy.Pool[str, tuple[str, str]]
    ) -> None:
        """Each job starts from its caller's context, not from the last job's on that worker."""
        seen = ways(pool, "set-by-job")
        assert seen == [("unset", "unset")] * 5
        assert (request_id.get(), scratch.get()) == ("unset", "unset")

    def test_two_callers_each_see_their_own_values(
        self, pool: tunnypy.Pool[str, tuple[str, str]]
    ) -> None:
        """Callers on different threads, one worker between them: no crossing over."""

        def caller(value: str) -> tuple[str, str]:
            request_id.set(value)
            return pool.process(value)

        first = Call(caller, "a")
        assert first.wait() == ("a", "unset")
        second = Call(caller, "b")
        assert second.wait() == ("b", "unset")

    def test_the_context_is_copied_when_the_call_is_made(self) -> None:
        """A value set after submit() is not seen, even though the job runs later."""
        pool = tunnypy.Pool.from_callback(1)
        gate = Gate()
        token = request_id.set("at-submit")
        try:
            pool.submit(gate)
            assert gate.started.wait(WAIT)  # the only worker is busy: the next job waits
            future = pool.submit(request_id.get)
            request_id.set("later")
            gate.release.set()
            assert future.result(WAIT) == "at-submit"
        finally:
            request_id.reset(token)
            gate.release.set()
            assert pool.close(timeout=WAIT)
