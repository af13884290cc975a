"""Log lines never change an outcome: the user's objects are described only when logged, safely."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, wait_for


class HostileError(Exception):
    """An exception whose repr() and str() raise, and count their calls."""

    calls = 0

    def __repr__(self) -> str:
        type(self).calls += 1
        raise RuntimeError("no repr")

    __str__ = __repr__


class HostileKey:
    """A hashable key whose repr() raises, and counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __hash__(self) -> int:
        return 7

    def __eq__(self, other: object) -> bool:
        return self is other

    def __repr__(self) -> str:
        self.calls += 1
        raise RuntimeError("no repr")


class HostileCallable:
    """A callable with no __qualname__ whose repr() raises, and which raises itself."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __call__(self) -> None:
        raise self.error

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


@pytest.fixture(autouse=True)
def reset_counts() -> Iterator[None]:
    HostileError.calls = 0
    yield


@pytest.fixture(params=["off", "on"])
def logging_level(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> str:
    """Run the test with tunnypy's debug events off (the default), then on."""
    level = logging.WARNING if request.param == "off" else logging.DEBUG
    caplog.set_level(level, logger="tunnypy")
    return str(request.param)


def messages(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


class TestLimiterLogLine:
    def test_failing_repr_keeps_the_count(
        self, logging_level: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A task raising an exception whose repr raises counts as finished: wait() is True."""
        with tunnypy.Limiter(1) as limiter:
            future = limiter.run(HostileCallable(HostileError()))
            assert isinstance(future.exception(WAIT), HostileError)
            assert limiter.wait(WAIT) is True
            assert limiter.run(lambda: 5).result(WAIT) == 5
            assert limiter.wait(WAIT) is True
        lines = messages(caplog, "limiter_task_failed")
        if logging_level == "off":
            assert HostileError.calls == 0
            assert lines == []
        else:
            assert lines == ["limiter_task_failed error='<HostileError object; repr() failed>'"]


class TestSingleFlightLogLine:
    def test_failing_repr_of_key_keeps_the_result(
        self, logging_level: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A key whose repr raises: the leader and its follower both get the result."""
        flight: tunnypy.SingleFlight[Any, int] = tunnypy.SingleFlight()
        key = HostileKey()
        started = threading.Event()
        release = threading.Event()

        def compute() -> int:
            started.set()
            assert release.wait(WAIT)
            return 42

        leader = Call(flight.do, key, compute)
        assert started.wait(WAIT)
        follower = Call(flight.do, key, lambda: 0)
        wait_for(lambda: flight.waiting(key) == 1, "the follower to wait")
        release.set()
        assert leader.wait() == 42
        assert follower.wait() == 42
        lines = messages(caplog, "single_flight_shared")
        if logging_level == "off":
            assert key.calls == 0
            assert lines == []
        else:
            expected = "single_flight_shared key='<HostileKey object; repr() failed>' followers=1"
            assert [expected] == lines


class TestSingleRunnerLogLine:
    def test_failing_repr_of_fn_is_still_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A failing fn whose repr raises is logged under a stand-in name and kept in last_error."""
        caplog.set_level(logging.ERROR, logger="tunnypy")
        error = HostileError()
        with tunnypy.SingleRunner() as runner:
            assert runner.run(HostileCallable(error))
            assert runner.wait(WAIT)
            assert error is runner.last_error
        [record] = [r for r in caplog.records if r.getMessage().startswith("single_runner_failed")]
        assert (
            record.getMessage()
        ) == "single_runner_failed fn='<HostileCallable object; repr() failed>'"
        assert record.exc_info is not None
        assert error is record.exc_info[1]

    def test_repr_of_runner_survives_a_failing_repr_of_last_error(self) -> None:
        """repr(runner) shows a stand-in for a last_error whose repr raises."""
        with tunnypy.SingleRunner() as runner:
            assert runner.run(HostileCallable(HostileError()))
            assert runner.wait(WAIT)
            expected = "<SingleRunner idle last_error=<HostileError object; repr() failed>>"
            assert repr(runner) == expected


class TestPoolLogLines:
    def test_failing_repr_in_a_worker_is_delivered_and_logged(
        self, logging_level: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A job's exception whose repr and str raise reaches its caller, logged or not."""
        error = HostileError()

        def fail(_: int) -> int:
            raise error

        with tunnypy.Pool.from_func(1, fail) as pool:
            for _ in range(2):
                with pytest.raises(HostileError) as raised:
                    pool.process(1)
                assert error is raised.value
        assert pool.close(timeout=WAIT)
        failed = messages(caplog, "job_failed")
        if logging_level == "off":
            assert HostileError.calls == 0
            assert failed == []
        else:
            assert failed == ["job_failed worker=0 error='HostileError'"] * 2

    def test_failing_repr_in_a_hook_is_logged_with_its_traceback(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A block_until_ready raising such an exception is logged, formatted; the pool serves."""
        caplog.set_level(logging.ERROR, logger="tunnypy")

        class Flaky(tunnypy.BaseWorker[int, int]):
            calls = 0

            def process(self, payload: int) -> int:
                return payload

            def block_until_ready(self) -> None:
                Flaky.calls += 1
                if Flaky.calls == 1:
                    raise HostileError

        with tunnypy.Pool(1, Flaky) as pool:
            assert pool.process(4) == 4
        [record] = [r for r in caplog.records if r.getMessage().startswith("block_until_ready")]
        assert record.exc_info is not None
        assert "HostileError" in caplog.text  # the handler formatted the traceback
