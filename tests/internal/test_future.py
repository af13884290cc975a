"""
The futures submit() returns behave as stock concurrent.futures.Futures.

A JobFuture builds its Condition only when a thread first waits on it; every
public use, and the private protocol ``concurrent.futures.wait`` and
``as_completed`` rely on, must work as with a stock Future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest

import tunnypy
from tests.helpers import WAIT, Gate
from tunnypy import _future
from tunnypy._future import JobFuture

Pool = tunnypy.Pool[Callable[[], object], object]


@pytest.fixture(autouse=True, params=["lean", "stock"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the lean JobFuture and with the stock-built fallback."""
    monkeypatch.setattr(_future, "LEAN", request.param == "lean")
    return str(request.param)


@pytest.fixture
def pool() -> Iterator[Pool]:
    pool = tunnypy.Pool.from_callback(2)
    yield pool
    pool.close(timeout=WAIT)


def test_has_every_attribute_a_stock_future_has(pool: Pool) -> None:
    future = pool.submit(lambda: None)
    future.result(WAIT)
    assert isinstance(future, JobFuture)
    missing = set(vars(Future())) - set(vars(future))
    assert missing == set(), f"Future grew attributes JobFuture lacks: {missing}"


def test_result_waits_for_a_pending_job(pool: Pool) -> None:
    gate = Gate()
    future = pool.submit(lambda: gate("value"))
    assert gate.started.wait(WAIT)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0.01)  # waits on the condition it now builds
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(WAIT)))
    waiter.start()
    gate.release.set()
    waiter.join(WAIT)
    assert got == ["value"]
    assert future.done() and not future.running()


def test_exception_waits_and_returns_the_error(pool: Pool) -> None:
    gate = Gate()

    def fail() -> None:
        gate()
        raise KeyError("k")

    future = pool.submit(fail)
    assert gate.started.wait(WAIT)
    waiter = threading.Thread(target=lambda: future.exception(WAIT))
    waiter.start()
    gate.release.set()
    waiter.join(WAIT)
    assert isinstance(future.exception(0), KeyError)
    with pytest.raises(KeyError):
        future.result(0)


def test_callbacks_run_in_order_once_whether_added_before_or_after(pool: Pool) -> None:
    gate = Gate()
    future = pool.submit(lambda: gate(7))
    calls: list[tuple[str, object]] = []
    done = threading.Event()
    future.add_done_callback(lambda f: calls.append(("first", f.result())))

    def second(f: Future[object]) -> None:
        calls.append(("second", f.result()))
        done.set()

    future.add_done_callback(second)
    assert gate.started.wait(WAIT)
    gate.release.set()
    assert done.wait(WAIT)
    future.add_done_callback(lambda f: calls.append(("late", f.result())))
    assert calls == [("first", 7), ("second", 7), ("late", 7)]


def test_a_callback_that_raises_is_logged_not_raised(
    pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    future = pool.submit(lambda: 1)
    future.result(WAIT)

    def bad(_: Future[object]) -> None:
        raise ValueError("callback broke")

    future.add_done_callback(bad)
    assert "exception calling callback" in caplog.text


def test_callbacks_of_a_future_cancelled_in_line_run() -> None:
    with tunnypy.Pool.from_callback(1) as pool:
        gate = Gate()
        busy = pool.submit(gate)
        assert gate.started.wait(WAIT)
        waiting = pool.submit(lambda: None)
        seen: list[bool] = []
        waiting.add_done_callback(lambda f: seen.append(f.cancelled()))
        assert waiting.cancel()
        assert seen == [True]
        gate.release.set()
        busy.result(WAIT)


def test_futures_wait_and_as_completed(pool: Pool) -> None:
    gates = [Gate(), Gate()]
    futures = [pool.submit(lambda g=g: g("x")) for g in gates]  # type: ignore[misc]
    for gate in gates:
        assert gate.started.wait(WAIT)
    done, pending = concurrent.futures.wait(futures, timeout=0.01)
    assert done == set() and pending == set(futures)
    gates[1].release.set()
    first = next(concurrent.futures.as_completed(futures, timeout=WAIT))
    assert first is futures[1]
    gates[0].release.set()
    done, pending = concurrent.futures.wait(futures, timeout=WAIT)
    assert done == set(futures) and pending == set()
    assert all(not f._waiters for f in futures)  # wait() took its waiters back


def test_wrap_future_in_asyncio(pool: Pool) -> None:
    async def main() -> object:
        return await asyncio.wrap_future(pool.submit(lambda: "from a worker"))

    assert asyncio.run(main()) == "from a worker"


def test_the_future_lock_is_reentrant_and_notify_without_waiters_is_a_no_op(
    pool: Pool,
) -> None:
    future = pool.submit(lambda: None)
    future.result(WAIT)
    condition = future._condition
    with condition, condition:
        condition.notify_all()
        condition.notify()
        assert future.done()  # done() takes the lock again


def test_the_fallback_is_built_by_future_init(pool: Pool, layout: str) -> None:
    """Off the known layout a JobFuture has a real Condition; on it, the lazy lock."""
    future = pool.submit(lambda: None)
    future.result(WAIT)
    if layout == "stock":
        assert isinstance(future._condition, threading.Condition)
    else:
        assert isinstance(future._condition, _future._FutureLock)


def test_a_future_with_an_unknown_attribute_turns_the_lean_layout_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Python whose Future sets an attribute JobFuture does not know gets the fallback."""
    assert _future.stock_layout_known()  # 3.11 to 3.13
    stock_init = Future.__init__

    def grown(self: Future[object]) -> None:
        stock_init(self)
        self._new_in_some_python = None  # type: ignore[attr-defined]

    monkeypatch.setattr(Future, "__init__", grown)
    assert not _future.stock_layout_known()


@contextlib.contextmanager
def first_job_held(size: int) -> Iterator[tuple[tunnypy.Pool[str, str], Future[str], Gate]]:
    """A function pool of *size* whose first submit, "first", runs held at a gate."""
    gate = Gate()

    def job(x: str) -> str:
        return gate(x) if x == "first" else x

    with tunnypy.Pool.from_func(size, job) as pool:
        future = pool.submit("first")
        assert gate.started.wait(WAIT)
        yield pool, future, gate


class TestCallbacksRunOnTheWorker:
    """Done-callbacks are the caller's code, run by the worker as it delivers."""

    def test_a_callback_that_calls_the_pool_is_served(self) -> None:
        """The delivering worker is not on the idle stack, so it is not handed its own job."""
        with first_job_held(2) as (pool, future, gate):
            got: list[object] = []
            done = threading.Event()

            def call_the_pool(_: Future[str]) -> None:
                try:
                    got.append(pool.process_timed("second", WAIT))
                except BaseException as exc:  # reported below, not lost in the worker
                    got.append(exc)
                done.set()

            future.add_done_callback(call_the_pool)
            gate.release.set()
            assert done.wait(WAIT)
            assert got == ["second"]

    def test_a_callback_raising_systemexit_leaves_the_worker_serving(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Future logs a callback's Exception; a BaseException ended the worker thread."""
        with first_job_held(1) as (pool, future, gate):
            ran: list[str] = []

            def leave(_: Future[str]) -> None:
                ran.append("leave")
                raise SystemExit(3)

            future.add_done_callback(lambda _: ran.append("before"))
            future.add_done_callback(leave)
            future.add_done_callback(lambda _: ran.append("after"))
            gate.release.set()
            assert future.result(WAIT) == "first"
            assert pool.process_timed("second", WAIT) == "second"  # the one worker lives
            assert ran == ["before", "leave"]  # as in any Future: the rest are skipped
            assert "callback_failed" in caplog.text
            stats = pool.stats()
            assert (stats.workers, stats.completed) == (1, 2)


class TestResolvedByItsCaller:
    """
    A caller may resolve its own future (``set_result``, ``set_exception``).

    Its worker died of it: ``set_running_or_notify_cancel`` raised for a
    future resolved in line, and a pool of one served no one again.
    """

    @staticmethod
    def resolve(future: Future[str], how: str) -> None:
        if how == "set_result":
            future.set_result("mine")
        elif how == "set_exception":
            future.set_exception(KeyError("mine"))
        else:
            assert future.set_running_or_notify_cancel()

    @pytest.mark.parametrize("how", ["set_result", "set_exception", "set_running"])
    def test_in_line_the_job_is_not_run_and_the_worker_serves_on(
        self, how: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        ran: list[str] = []
        gate = Gate()

        def job(x: str) -> str:
            ran.append(x)
            return gate(x) if x == "first" else x

        with tunnypy.Pool.from_func(1, job) as pool:
            first = pool.submit("first")
            assert gate.started.wait(WAIT)
            second = pool.submit("second")
            assert pool.stats().waiting == 1
            self.resolve(second, how)
            gate.release.set()
            assert first.result(WAIT) == "first"
            assert pool.process_timed("third", WAIT) == "third"  # the one worker lives
            assert ran == ["first", "third"]
            if how == "set_result":
                assert second.result(0) == "mine"
            elif how == "set_exception":
                assert isinstance(second.exception(0), KeyError)
            else:
                assert second.running()
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.cancelled) == (1, 2, 1)
        assert "unexpected state" not in caplog.text

    @pytest.mark.parametrize("fails", [False, True])
    def test_while_running_the_outcome_is_dropped_and_the_worker_serves_on(
        self, fails: bool, caplog: pytest.LogCaptureFixture
    ) -> None:
        gate = Gate()

        def job(x: str) -> str:
            if x == "first":
                gate()
                if fails:
                    raise ValueError("the worker's")
            return x

        with tunnypy.Pool.from_func(1, job) as pool:
            first = pool.submit("first")
            assert gate.started.wait(WAIT)
            first.set_result("mine")
            gate.release.set()
            assert pool.process_timed("second", WAIT) == "second"
            assert first.result(0) == "mine"
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.failed, stats.cancelled) == (1, 1, 0, 1)
        assert "callback_failed" not in caplog.text
