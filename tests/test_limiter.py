"""Limiter: at most size tasks at once, on size resident threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for


@pytest.fixture
def limiter() -> Iterator[tunnypy.Limiter]:
    with tunnypy.Limiter(2) as limiter:
        yield limiter


class TestLimiter:
    """run(), try_run(), set_size(), wait() and the article's reliability check."""

    def test_article_check_size_10_1000_calls(self) -> None:
        """With size=10, 1,000 run() calls never exceed 10 tasks nor grow the thread count."""
        with tunnypy.Limiter(10) as limiter:
            threads = threading.active_count()
            lock = threading.Lock()
            state = {"running": 0, "peak": 0, "calls": 0, "peak_threads": 0}

            def task(i: int) -> int:
                with lock:
                    state["running"] += 1
                    state["calls"] += 1
                    state["peak"] = max(state["peak"], state["running"])
                    state["peak_threads"] = max(state["peak_threads"], threading.active_count())
                # Let the other workers in while this task counts as running.
                threading.Event().wait(0)
                with lock:
                    state["running"] -= 1
                return i

            futures = [limiter.run(task, i) for i in range(1_000)]
            assert limiter.wait(WAIT)
            assert list(range(1_000)) == [f.result(0) for f in futures]
            assert state["calls"] == 1_000
            assert 1 <= state["peak"] <= 10
            assert threads == state["peak_threads"]
            assert threads == threading.active_count()

    def test_run_blocks_at_the_limit(self, limiter: tunnypy.Limiter) -> None:
        """run() blocks while size tasks run and starts the task when one ends."""
        gates = [Gate(), Gate()]
        for gate in gates:
            limiter.run(gate)
            assert gate.started.wait(WAIT)
        third = Gate()
        call = Call(limiter.run, third)
        wait_for(lambda: limiter.waiting == 1, "the third run() to wait")
        assert not call.done.is_set()
        assert not third.started.is_set()
        assert limiter.running == 2
        gates[0].release.set()
        future = call.wait()
        assert third.started.is_set()  # run() returned only once the task started
        third.release.set()
        gates[1].release.set()
        assert limiter.wait(WAIT)
        assert future.done()

    def test_run_returns_future_with_result_or_exception(self, limiter: tunnypy.Limiter) -> None:
        """The future holds the task's result, or its exception."""
        assert limiter.run(lambda a, b: a * b, 2, b=3).result(WAIT) == 6
        error = ValueError("bad")

        def fail() -> None:
            raise error

        assert error is limiter.run(fail).exception(WAIT)

    def test_try_run_raises_busy_and_starts_nothing(self, limiter: tunnypy.Limiter) -> None:
        """try_run() at the limit raises PoolBusyError at once and its task never runs."""
        gates = [Gate(), Gate()]
        for gate in gates:
            limiter.run(gate)
        ran: list[int] = []
        with pytest.raises(tunnypy.PoolBusyError, match=r"^no worker is free$"):
            limiter.try_run(ran.append, 1)
        for gate in gates:
            gate.release.set()
        assert limiter.wait(WAIT)
        assert ran == []

    def test_try_run_starts_when_free(self, limiter: tunnypy.Limiter) -> None:
        """try_run() below the limit starts the task and returns its future."""
        futures: list[Future[int]] = []

        def attempt() -> bool:
            # A worker that has not parked yet (just started) counts as busy.
            try:
                futures.append(limiter.try_run(lambda x: x * 2, 2))
            except tunnypy.PoolBusyError:
                return False
            return True

        wait_for(attempt, "a worker to be free")
        assert [f.result(WAIT) for f in futures] == [4]

    def test_set_size_grows_and_serves_waiting(self) -> None:
        """Raising the limit starts a waiting caller's task at once."""
        with tunnypy.Limiter(1) as limiter:
            first = Gate()
            limiter.run(first)
            second = Gate()
            call = Call(limiter.run, second)
            wait_for(lambda: limiter.waiting == 1, "the second run() to wait")
            limiter.set_size(2)
            assert limiter.size == 2
            call.wait()
            assert second.started.is_set()
            first.release.set()
            second.release.set()
            assert limiter.wait(WAIT)

    def test_size_zero_pauses(self) -> None:
        """Limiter(0) starts nothing until set_size() raises the limit."""
        with tunnypy.Limiter(0) as limiter:
            ran = threading.Event()
            call = Call(limiter.run, ran.set)
            wait_for(lambda: limiter.waiting == 1, "run() to wait")
            assert not ran.is_set()
            limiter.set_size(1)
            call.wait()
            assert limiter.wait(WAIT)
            assert ran.is_set()

    @pytest.mark.parametrize(
        ("size", "error", "message"),
        [
            (-1, ValueError, r"^size must be a non-negative int \(got -1\)$"),
            ("3", TypeError, r"^size must be a non-negative int \(got str '3'\)$"),
            (True, TypeError, r"^size must be a non-negative int \(got bool True\)$"),
        ],
    )
    def test_bad_size_raises_and_changes_nothing(
        self, limiter: tunnypy.Limiter, size: object, error: type[Exception], message: str
    ) -> None:
        """A bad size raises TypeError/ValueError naming it, in the constructor and set_size."""
        with pytest.raises(error, match=message):
            tunnypy.Limiter(size)  # type: ignore[arg-type]
        with pytest.raises(error, match=message):
            limiter.set_size(size)  # type: ignore[arg-type]
        assert limiter.size == 2

    def test_not_callable_raises_type_error(self, limiter: tunnypy.Limiter) -> None:
        """A non-callable fn raises TypeError in run() and try_run()."""
        with pytest.raises(TypeError, match=r"^fn must be callable \(got NoneType\)$"):
            limiter.run(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"^fn must be callable \(got NoneType\)$"):
            limiter.try_run(None)  # type: ignore[arg-type]
        assert limiter.wait(0)

    def test_wait_waits_for_started_tasks(self, limiter: tunnypy.Limiter) -> None:
        """wait() returns False while a task runs and True once all have ended."""
        gate = Gate()
        limiter.run(gate)
        assert limiter.wait(0) is False
        gate.release.set()
        assert limiter.wait(WAIT) is True

    def test_close_refuses_waiting_callers(self) -> None:
        """close() gives a caller blocked in run() PoolClosedError; running tasks finish."""
        limiter = tunnypy.Limiter(1)
        gate = Gate()
        running = limiter.run(gate)
        call = Call(limiter.run, lambda: None)
        wait_for(lambda: limiter.waiting == 1, "run() to wait")
        limiter.close(wait=False)
        with pytest.raises(tunnypy.PoolClosedError):
            call.wait()
        gate.release.set()
        assert limiter.close(timeout=WAIT)
        assert running.result(0) is None
        assert limiter.wait(0)
        with pytest.raises(tunnypy.PoolClosedError):
            limiter.run(lambda: None)
        with pytest.raises(tunnypy.PoolClosedError):
            limiter.try_run(lambda: None)
        assert limiter.wait(0)

    def test_repr(self, limiter: tunnypy.Limiter) -> None:
        """The repr shows running, size and waiting, trio style."""
        gate = Gate()
        limiter.run(gate)
        assert repr(limiter) == "<Limiter 1/2 running with 0 waiting>"
        gate.release.set()
        assert limiter.wait(WAIT)
        limiter.close()
        assert repr(limiter) == "<Limiter closed, 0 running>"
