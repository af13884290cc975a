"""SingleRunner: at most one function in the background, on one resident thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

import tunnypy
from tests.helpers import WAIT, Gate


@pytest.fixture
def runner() -> Iterator[tunnypy.SingleRunner]:
    with tunnypy.SingleRunner() as runner:
        yield runner


class TestSingleRunner:
    """run(), its refusals, errors and the article's reliability check."""

    def test_run_starts_fn_in_background(self, runner: tunnypy.SingleRunner) -> None:
        """run() returns True at once and fn runs in another thread."""
        gate = Gate()
        ran_in: list[int] = []

        def fn() -> None:
            ran_in.append(threading.get_ident())
            gate()

        assert runner.run(fn) is True
        assert gate.started.wait(WAIT)
        assert runner.running is True
        gate.release.set()
        assert runner.wait(WAIT)
        assert runner.running is False
        assert [threading.get_ident()] != ran_in
        assert len(ran_in) == 1

    def test_args_and_kwargs_are_passed(self, runner: tunnypy.SingleRunner) -> None:
        """run(fn, *args, **kwargs) calls fn(*args, **kwargs)."""
        got: list[tuple[int, str]] = []

        def fn(a: int, *, b: str) -> None:
            got.append((a, b))

        assert runner.run(fn, 1, b="x")
        assert runner.wait(WAIT)
        assert got == [(1, "x")]

    def test_run_while_running_returns_false_and_starts_nothing(
        self, runner: tunnypy.SingleRunner
    ) -> None:
        """A call while fn runs returns False, starts no thread, and its fn never runs."""
        gate = Gate()
        assert runner.run(gate)
        assert gate.started.wait(WAIT)
        threads = threading.active_count()
        dropped: list[int] = []
        assert runner.run(dropped.append, 1) is False
        assert threads == threading.active_count()
        gate.release.set()
        assert runner.wait(WAIT)
        assert dropped == []

    def test_run_right_after_fn_returned_is_accepted(self, runner: tunnypy.SingleRunner) -> None:
        """Once fn has returned, the next run() starts, never refused spuriously."""
        calls: list[int] = []
        for i in range(2_000):
            assert runner.run(calls.append, i), f"refused at call {i}"
            assert runner.wait(WAIT)
        assert list(range(2_000)) == calls

    def test_exception_is_logged_and_kept(
        self, runner: tunnypy.SingleRunner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An exception in fn is logged as single_runner_failed and kept in last_error."""
        error = ValueError("boom")

        def fail() -> None:
            raise error

        caplog.set_level(logging.ERROR, logger="tunnypy")
        assert runner.last_error is None
        assert runner.run(fail)
        assert runner.wait(WAIT)
        assert error is runner.last_error
        [record] = [r for r in caplog.records if "single_runner_failed" in r.getMessage()]
        assert record.exc_info is not None
        assert error is record.exc_info[1]

    def test_success_keeps_last_error(self, runner: tunnypy.SingleRunner) -> None:
        """A later success does not clear last_error; the runner stays usable."""
        error = KeyError("k")

        def fail() -> None:
            raise error

        assert runner.run(fail)
        assert runner.wait(WAIT)
        assert runner.run(lambda: None)
        assert runner.wait(WAIT)
        assert error is runner.last_error

    def test_article_check_100000_calls(self, runner: tunnypy.SingleRunner) -> None:
        """100,000 run() calls never have more than one running nor grow the thread count."""
        threads = threading.active_count()
        lock = threading.Lock()
        state = {"running": 0, "peak": 0, "calls": 0, "peak_threads": 0}

        def fn() -> None:
            with lock:
                state["running"] += 1
                state["calls"] += 1
                state["peak"] = max(state["peak"], state["running"])
                state["peak_threads"] = max(state["peak_threads"], threading.active_count())
                state["running"] -= 1

        started = 0
        for _ in range(100_000):
            started += runner.run(fn)
            assert threads == threading.active_count()
        assert runner.wait(WAIT)
        assert state["peak"] == 1
        assert threads == state["peak_threads"]
        assert started == state["calls"]
        assert started >= 1

    def test_not_callable_raises_type_error(self, runner: tunnypy.SingleRunner) -> None:
        """A non-callable fn raises TypeError naming what arrived."""
        with pytest.raises(TypeError, match=r"^fn must be callable \(got int\)$"):
            runner.run(3)  # type: ignore[arg-type]

    def test_wait_times_out_while_running(self, runner: tunnypy.SingleRunner) -> None:
        """wait() returns False when its timeout passes first."""
        gate = Gate()
        assert runner.run(gate)
        assert gate.started.wait(WAIT)
        assert runner.wait(0) is False
        gate.release.set()
        assert runner.wait(WAIT) is True

    def test_wait_rejects_bad_timeout(self, runner: tunnypy.SingleRunner) -> None:
        """A negative timeout raises ValueError."""
        with pytest.raises(ValueError, match=r"^timeout must be a non-negative number"):
            runner.wait(-1)

    def test_closed_runner_refuses(self) -> None:
        """run() after close() raises PoolClosedError; close() twice is safe."""
        runner = tunnypy.SingleRunner()
        assert runner.close()
        assert runner.close()
        with pytest.raises(tunnypy.PoolClosedError, match=r"^runner is closed$"):
            runner.run(lambda: None)
        assert repr(runner) == "<SingleRunner closed last_error=None>"

    def test_close_lets_running_fn_finish(self) -> None:
        """close() waits for the running fn, which completes."""
        runner = tunnypy.SingleRunner()
        gate = Gate()
        done: list[bool] = []

        def fn() -> None:
            gate()
            done.append(True)

        assert runner.run(fn)
        assert gate.started.wait(WAIT)
        assert runner.close(wait=False) is False
        gate.release.set()
        assert runner.close(timeout=WAIT)
        assert done == [True]
        assert runner.running is False

    def test_repr(self, runner: tunnypy.SingleRunner) -> None:
        """The repr shows whether a function runs."""
        gate = Gate()
        assert repr(runner) == "<SingleRunner idle last_error=None>"
        assert runner.run(gate)
        assert gate.started.wait(WAIT)
        assert repr(runner) == "<SingleRunner running last_error=None>"
        gate.release.set()
        assert runner.wait(WAIT)


class TestSingleRunnerClose:
    """close() checks its arguments before it changes anything; a closed runner raises."""

    @pytest.mark.parametrize(
        ("timeout", "error", "message"),
        [
            (-1, ValueError, r"^timeout must be a non-negative number.*\(got -1\)$"),
            ("1", TypeError, r"^timeout must be a non-negative number.*\(got str '1'\)$"),
        ],
    )
    def test_bad_timeout_changes_nothing(
        self, runner: tunnypy.SingleRunner, timeout: object, error: type[Exception], message: str
    ) -> None:
        """close() with a bad timeout raises and leaves the runner open and working."""
        with pytest.raises(error, match=message):
            runner.close(timeout=timeout)  # type: ignore[arg-type]
        assert repr(runner) == "<SingleRunner idle last_error=None>"
        calls: list[int] = []
        assert runner.run(calls.append, 1)
        assert runner.wait(WAIT)
        assert calls == [1]
        assert runner.close(timeout=WAIT) is True

    def test_run_raises_once_closed_while_a_function_runs(self) -> None:
        """run() on a closed runner raises PoolClosedError, even while its last function runs."""
        runner = tunnypy.SingleRunner()
        gate = Gate()
        assert runner.run(gate)
        assert gate.started.wait(WAIT)
        assert runner.close(wait=False) is False
        try:
            with pytest.raises(tunnypy.PoolClosedError, match=r"^runner is closed$"):
                runner.run(lambda: None)
        finally:
            gate.release.set()
            assert runner.close(timeout=WAIT) is True
        with pytest.raises(tunnypy.PoolClosedError, match=r"^runner is closed$"):
            runner.run(lambda: None)
