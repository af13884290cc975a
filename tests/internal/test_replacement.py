"""Workers that come back: a worker its failure retires is replaced; callers are never stranded."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    RecordingWorker,
    replaced,
    wait_for,
    worker_thread_starts_fail_at,
)
from tests.internal.test_own_code_failures import fail_parking
from tests.test_subprocess import Child
from tunnypy import _lifecycle
from tunnypy._line import Line, Taker


class BoomError(Exception):
    """An error a test raises on purpose."""


class Factory:
    """Makes RecordingWorkers; calls numbered (from 1) in *fail_on*, or from *fail_from*, raise."""

    def __init__(
        self,
        fail_on: set[int] = frozenset(),  # type: ignore[assignment]
        fail_from: int | None = None,
        before: Callable[[int], None] | None = None,
    ) -> None:
        self.fail_on = fail_on
        self.fail_from = fail_from
        self.before = before
        self.calls = 0
        self.times: list[float] = []
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        self.calls += 1
        self.times.append(time.monotonic())
        if self.before is not None:
            self.before(self.calls)
        if self.calls in self.fail_on or (
            self.fail_from is not None and self.calls >= self.fail_from
        ):
            raise BoomError(f"factory call {self.calls}")
        self.made.append(RecordingWorker())
        return self.made[-1]


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> Callable[[float, float], None]:
    """Set the replacement backoff's first delay and cap for this test."""

    def configure(first: float, cap: float) -> None:
        monkeypatch.setattr(_lifecycle, "_BACKOFF_FIRST", first)
        monkeypatch.setattr(_lifecycle, "_BACKOFF_CAP", cap)

    return configure


def fail_next_worker(pool: tunnypy.Pool[Any, Any]) -> Taker:
    """Make the worker next handed a job fail each time it parks: it serves one job, then leaves."""
    wait_for(lambda: pool.stats().idle == pool.size, "every worker to park")
    target = pool._line.idle[-1]
    fail_parking(pool, times=100, only=target)
    return target


def messages(caplog: pytest.LogCaptureFixture, event: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(event)]


class TestReplaced:
    def test_a_worker_failing_twice_is_replaced_and_the_pool_keeps_its_size(self) -> None:
        """The failing worker leaves, is terminated, and a fresh one from the factory serves."""
        factory = Factory()
        with tunnypy.Pool(2, factory) as pool:
            target = fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: replaced(pool, 1), "the failing worker to be replaced")
            assert target.worker.terminated == 1  # type: ignore[attr-defined]
            assert factory.calls == 3
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            # Both workers serve: two calls held at once each get one.
            both = threading.Barrier(3, timeout=WAIT)

            def meet() -> int:
                both.wait()
                return threading.get_ident()

            calls = [Call(pool.process_timed, meet, WAIT) for _ in range(2)]
            both.wait()
            assert len({call.wait() for call in calls}) == 2
            assert factory.made[2].processed == 1
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.replaced, stats.factory_failures) == (
                2,
                2,
                1,
                0,
            )

    def test_each_failure_is_replaced_and_counted(self) -> None:
        """A replacement failing in turn (after serving) is replaced too: replaced counts both."""
        factory = Factory()
        with tunnypy.Pool(1, factory) as pool:
            for count in (1, 2):
                fail_next_worker(pool)
                assert pool.process_timed(count, WAIT) == count
                wait_for(lambda c=count: replaced(pool, c), "the failing worker to be replaced")  # type: ignore[misc]
            assert [w.terminated for w in factory.made] == [1, 1, 0]
            assert pool.process_timed(3, WAIT) == 3
        assert pool.stats().replaced == 2

    def test_a_failure_on_a_closed_pool_is_not_replaced(self) -> None:
        """A worker shrunk or closed away is not replaced; only one its own failure retires."""
        factory = Factory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, factory)
        assert pool.set_size(1, wait=True, timeout=WAIT)
        assert pool.close(timeout=WAIT)
        assert factory.calls == 2
        assert pool.stats().replaced == 0


class TestFactoryFailsWhileReplacing:
    def test_it_is_retried_with_backoff_counted_and_logged_once_per_streak(
        self, backoff: Callable[[float, float], None], caplog: pytest.LogCaptureFixture
    ) -> None:
        """Three failures, waits of at least 10, 20 and 30 ms (capped), a waiting caller served."""
        backoff(0.01, 0.03)
        failing = threading.Event()
        resume = threading.Event()

        def before(call: int) -> None:
            if call == 2:  # the first try at a replacement
                failing.set()
                assert resume.wait(WAIT)

        caplog.set_level(logging.INFO, logger="tunnypy")
        factory = Factory(fail_on={2, 3, 4}, before=before)
        with tunnypy.Pool(1, factory) as pool:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            assert failing.wait(WAIT)
            waiting = Call(pool.process, "waits")  # no deadline: served by the replacement
            wait_for(lambda: pool.queue_length == 1, "the call to wait in line")
            resume.set()
            assert waiting.wait() == "waits"
            wait_for(lambda: replaced(pool, 1), "the replacement")
            stats = pool.stats()
            assert (stats.factory_failures, stats.replaced, stats.workers) == (3, 1, 1)
        gaps = [
            later - earlier
            for earlier, later in zip(factory.times[1:], factory.times[2:], strict=False)
        ]
        assert len(gaps) == 3
        assert gaps[0] >= 0.01
        assert gaps[1] >= 0.02
        assert gaps[2] >= 0.03  # the cap, not 0.04
        failing_logs = messages(caplog, "worker_factory_failing")
        assert len(failing_logs) == 1
        assert failing_logs[0].levelno == logging.WARNING
        assert "BoomError: factory call 2" in failing_logs[0].getMessage()
        recovered = messages(caplog, "worker_factory_recovered")
        assert [r.getMessage() for r in recovered] == ["worker_factory_recovered failures=3"]
        assert recovered[0].levelno == logging.INFO

    @pytest.mark.parametrize("how", ["SystemExit", "no worker"])
    def test_a_factory_exiting_or_returning_no_worker_counts_as_failing(
        self, backoff: Callable[[float, float], None], how: str
    ) -> None:
        """SystemExit from the factory, or an object without process(), is a failure retried."""
        backoff(0.01, 0.01)
        calls: list[int] = []
        made: list[RecordingWorker] = []

        def factory() -> Any:
            calls.append(1)
            if len(calls) == 2:
                if how == "SystemExit":
                    raise SystemExit(3)
                return object()
            made.append(RecordingWorker())
            return made[-1]

        with tunnypy.Pool(1, factory) as pool:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: replaced(pool, 1), "the replacement")
            assert pool.stats().factory_failures == 1
            assert len(calls) == 3
            assert pool.process_timed("after", WAIT) == "after"

    def test_a_thread_that_will_not_start_is_tried_again(
        self, backoff: Callable[[float, float], None], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Its worker is terminated and unlisted, and the next try replaces it."""
        backoff(0.01, 0.01)
        factory = Factory()
        with tunnypy.Pool(1, factory) as pool:
            fail_next_worker(pool)
            worker_thread_starts_fail_at(monkeypatch, 1, lambda: None)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: replaced(pool, 1), "the replacement")
            monkeypatch.undo()
            assert [w.terminated for w in factory.made] == [1, 1, 0]
            stats = pool.stats()
            assert (stats.replaced, stats.factory_failures, stats.workers) == (1, 0, 1)
            assert pool.process_timed("after", WAIT) == "after"

    def test_close_during_a_backoff_returns_promptly_and_leaves_no_thread(
        self, backoff: Callable[[float, float], None]
    ) -> None:
        """A 60 s backoff does not hold up close(); the replacing thread ends with it."""
        backoff(60.0, 60.0)
        factory = Factory(fail_from=2)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        try:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: pool.stats().factory_failures == 1, "the first failed replacement")
        finally:
            began = time.monotonic()
            assert pool.close(timeout=WAIT)
        assert time.monotonic() - began < WAIT / 2
        assert factory.calls == 2  # not tried again on the closed pool
        stats = pool.stats()
        assert (stats.workers, stats.replaced, stats.factory_failures) == (0, 0, 1)
        assert not [t for t in threading.enumerate() if t.name.startswith("tunnypy-worker")]

    def test_interpreter_exit_during_a_backoff_is_prompt(self) -> None:
        """A program that never closes its pool exits at once while a replacement backs off 60 s."""
        child = Child(
            """
            from tunnypy import _lifecycle
            from tests.helpers import WAIT, wait_for
            from tests.internal.test_replacement import Factory, fail_next_worker
            import tunnypy
            _lifecycle._BACKOFF_FIRST = _lifecycle._BACKOFF_CAP = 60.0
            factory = Factory(fail_from=2)
            pool = tunnypy.Pool(1, factory)
            fail_next_worker(pool)
            print(pool.process_timed("served", WAIT), flush=True)
            wait_for(lambda: pool.stats().factory_failures == 1, "a failed replacement")
            print("backing off", flush=True)
            """
        )
        try:
            child.expect("served")
            child.expect("backing off")
            began = time.monotonic()
            assert child.finish() == 0, child.stderr()
            assert time.monotonic() - began < WAIT / 2
        finally:
            child.close()

    def test_a_shrink_during_a_backoff_ends_the_replacement(
        self, backoff: Callable[[float, float], None]
    ) -> None:
        """set_size() wakes the replacing thread; at the new size it leaves without a try."""
        backoff(60.0, 60.0)
        factory = Factory(fail_on={3})
        with tunnypy.Pool(2, factory) as pool:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: pool.stats().factory_failures == 1, "the first failed replacement")
            assert pool.set_size(1, wait=True, timeout=WAIT)
            wait_for(lambda: pool.stats().workers == 1, "the replacing thread to leave")
            assert factory.calls == 3
            assert pool.process_timed("after", WAIT) == "after"

    def test_a_shrink_while_the_factory_runs_wins(self) -> None:
        """A worker made for a target a shrink lowered meanwhile is terminated, never started."""
        entered = threading.Event()
        release = threading.Event()

        def before(call: int) -> None:
            if call == 3:
                entered.set()
                assert release.wait(WAIT)

        factory = Factory(before=before)
        with tunnypy.Pool(2, factory) as pool:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            assert entered.wait(WAIT)
            assert pool.set_size(1)  # returns while the replacement's factory runs
            release.set()
            wait_for(lambda: pool.stats().workers == 1, "the replacing thread to leave")
            assert factory.made[2].terminated == 1
            assert factory.made[2].processed == 0
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.replaced) == (1, 1, 0)
            assert pool.process_timed("after", WAIT) == "after"


class RaisingHandler(logging.Handler):
    """A logging handler whose every emit raises, as a broken logging setup does."""

    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError(f"handler broke on {record.getMessage()}")


def test_a_logging_handler_that_raises_does_not_end_the_replacing(
    backoff: Callable[[float, float], None],
) -> None:
    """worker_factory_failing and worker_factory_recovered raising: the worker is replaced."""
    backoff(0.01, 0.02)
    factory = Factory(fail_on={2})
    logger = logging.getLogger("tunnypy")
    handler = RaisingHandler()
    with tunnypy.Pool(1, factory) as pool:
        fail_next_worker(pool)
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.INFO)  # worker_factory_recovered too, before the start
        try:
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: replaced(pool, 1), "the replacement")
        finally:
            logger.setLevel(level)
            logger.removeHandler(handler)
        assert pool.stats().factory_failures == 1
        assert pool.process_timed("served", WAIT) == "served"


class TestStallTimeout:
    def test_a_call_without_deadline_fails_naming_the_factorys_error(
        self, backoff: Callable[[float, float], None]
    ) -> None:
        """The factory fails on: after stall_timeout with no worker, calls waiting or new fail."""
        backoff(0.01, 0.02)
        factory = Factory(fail_from=2)
        with tunnypy.Pool(1, factory, stall_timeout=0.05) as pool:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            wait_for(lambda: pool.stats().factory_failures >= 1, "a failed replacement")
            waiting = Call(pool.process, "stranded?")
            with pytest.raises(tunnypy.PoolStalledError, match=r"BoomError: factory call \d+"):
                waiting.wait()
            with pytest.raises(tunnypy.PoolStalledError, match="stall_timeout"):
                pool.process("refused")
            with pytest.raises(tunnypy.PoolStalledError):
                pool.submit("refused too")
            stats = pool.stats()
            assert stats.rejected == 3
            assert stats.workers == 1  # the thread still trying to replace

    def test_a_fault_on_every_worker_does_not_strand_callers(
        self, backoff: Callable[[float, float], None], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every replacement fails before serving: process() fails; without the fault, it serves."""
        backoff(0.01, 0.02)

        def broken(self: Line, worker: Taker) -> None:
            raise OSError("no line for you")

        # Bound as each worker's thread starts: every worker made from now on
        # fails at its every offer, and leaves without serving.
        monkeypatch.setattr(Line, "take_or_park", broken)
        factory = Factory()
        with tunnypy.Pool(1, factory, stall_timeout=0.1) as pool:
            stranded = Call(pool.process, "stranded?")
            with pytest.raises(tunnypy.PoolStalledError, match="OSError: no line for you"):
                stranded.wait()
            assert pool.stats().replaced >= 1
            monkeypatch.undo()
            wait_for(lambda: pool.stats().idle == 1, "a replacement that works")
            assert pool.process("served") == "served"

    def test_a_target_of_0_set_while_the_factory_runs_ends_the_stall(
        self, backoff: Callable[[float, float], None]
    ) -> None:
        """set_size(0) while a stalled pool's factory call runs: calls wait in line again."""
        backoff(0.2, 0.2)  # the stall comes first, then the third factory call
        entered = threading.Event()
        release = threading.Event()

        def before(call: int) -> None:
            if call == 3:
                entered.set()
                assert release.wait(WAIT)

        factory = Factory(fail_on={2}, before=before)
        with tunnypy.Pool(1, factory, stall_timeout=0.01) as pool:
            fail_next_worker(pool)
            assert pool.process_timed("first", WAIT) == "first"
            assert entered.wait(WAIT)
            assert pool._line.stalled is not None
            pool.set_size(0)
            release.set()
            wait_for(lambda: pool.stats().workers == 0, "the replacing thread to leave")
            future = pool.submit("waits for a worker")  # not PoolStalledError
            assert not future.done()
            pool.set_size(1)
            assert future.result(WAIT) == "waits for a worker"
            assert pool.stats().rejected == 0

    def test_bad_values_are_refused_and_start_nothing(self) -> None:
        """stall_timeout must be a non-negative number; inf means no limit."""
        factory = Factory()
        with pytest.raises(
            ValueError, match=r"stall_timeout must be a non-negative number of seconds \(got -1\)"
        ):
            tunnypy.Pool(1, factory, stall_timeout=-1)
        with pytest.raises(TypeError, match="stall_timeout must be a non-negative number"):
            tunnypy.Pool.from_func(1, str, stall_timeout="1")  # type: ignore[arg-type]
        assert factory.calls == 0
        with tunnypy.Pool.from_callback(1, stall_timeout=float("inf")) as pool:
            assert pool.process(lambda: 1) == 1


class TestStats:
    def test_pool_stats_keeps_its_old_constructor(self) -> None:
        """The new fields come last, with defaults: a PoolStats built without them reads 0."""
        stats = tunnypy.PoolStats(1, 1, 0, 1, 0, 0, 0, 0, 0, 0)
        assert (stats.replaced, stats.factory_failures) == (0, 0)
