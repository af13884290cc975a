"""A pattern's call that would wait for itself raises PoolDeadlockError; a served one works."""

from __future__ import annotations

import threading
from concurrent import futures
from concurrent.futures import Future
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for

LIMITER_DEADLOCK = (
    r"^a task called run\(\) on its own limiter while every slot is held by a task "
    r"waiting in run\(\); it would never start$"
)
FLIGHT_DEADLOCK = (
    r"^do\(\) was called for a key whose flight this thread is running; "
    r"it would wait for itself$"
)


def outcome(limiter: tunnypy.Limiter, future: Future[Any]) -> Any:
    """The future's result; if it is stuck, close the limiter (refusing the tasks in line) first."""
    done, _ = futures.wait([future], WAIT)
    if not done:
        limiter.close(wait=False)  # a nested run() still in line gets PoolClosedError
    return future.result(WAIT)


def run_nested(limiter: tunnypy.Limiter, value: object = "inner") -> object:
    """A task that calls run() on its own limiter and returns what that call gave."""
    try:
        return limiter.run(lambda: value).result(WAIT)
    except tunnypy.TunnypyError as exc:
        return exc


class TestLimiterNestedRun:
    def test_size_one_nested_run_raises(self) -> None:
        """At size 1, run() from the limiter's own task raises PoolDeadlockError at once."""
        with tunnypy.Limiter(1) as limiter:
            result = outcome(limiter, limiter.run(run_nested, limiter))
            assert isinstance(result, tunnypy.PoolDeadlockError)
            with pytest.raises(tunnypy.PoolDeadlockError, match=LIMITER_DEADLOCK):
                raise result
            assert limiter.run(lambda: 3).result(WAIT) == 3  # the limiter serves on
            assert limiter.wait(WAIT)
            assert (limiter.running, limiter.waiting) == (0, 0)

    def test_last_free_slot_taken_by_a_waiting_task_raises(self) -> None:
        """With every other slot held by a task waiting in run(), the next nested run() raises."""
        with tunnypy.Limiter(2) as limiter:
            release = threading.Event()

            def first() -> object:
                assert release.wait(WAIT)
                return run_nested(limiter, "first's")

            a = limiter.run(first)
            b_gate = Gate()
            b = limiter.run(lambda: (b_gate(), run_nested(limiter, "second's"))[1])
            assert b_gate.started.wait(WAIT)
            release.set()
            wait_for(lambda: limiter.waiting == 1, "the first task's run() to wait")
            b_gate.release.set()
            second = outcome(limiter, b)
            assert isinstance(second, tunnypy.PoolDeadlockError)
            assert outcome(limiter, a) == "first's"  # served once the second task ended
            assert limiter.wait(WAIT)

    def test_nested_run_with_a_free_slot_is_served(self) -> None:
        """A nested run() with an idle slot starts at once, and can nest again while one is free."""
        with tunnypy.Limiter(3) as limiter:

            def outer() -> object:
                return limiter.run(run_nested, limiter, "deepest").result(WAIT)

            assert outcome(limiter, limiter.run(outer)) == "deepest"
            assert limiter.wait(WAIT)

    def test_nested_run_waits_for_a_slot_that_will_free(self) -> None:
        """A nested run() behind a task that will end waits for it, and is served."""
        with tunnypy.Limiter(2) as limiter:
            gate = Gate()
            other = limiter.run(gate, "other")
            assert gate.started.wait(WAIT)
            nested = limiter.run(run_nested, limiter)
            wait_for(lambda: limiter.waiting == 1, "the nested run() to wait")
            gate.release.set()
            assert outcome(limiter, nested) == "inner"
            assert other.result(WAIT) == "other"
            assert limiter.wait(WAIT)

    def test_many_tasks_nesting_at_once_never_hang(self) -> None:
        """Tasks all nesting at once: the last one raises, the others are served."""
        with tunnypy.Limiter(3) as limiter:
            barrier = threading.Barrier(3, timeout=WAIT)

            def task() -> object:
                barrier.wait()
                return run_nested(limiter)

            calls = [limiter.run(task) for _ in range(3)]
            results = [outcome(limiter, f) for f in calls]
            # The last to call finds every other slot held by a waiting task.
            deadlocks = [r for r in results if isinstance(r, tunnypy.PoolDeadlockError)]
            assert len(deadlocks) == 1
            assert sorted(r for r in results if r not in deadlocks) == ["inner", "inner"]
            assert limiter.wait(WAIT)

    def test_paused_limiter_lets_a_retiring_task_wait(self) -> None:
        """A task whose slot set_size(0) took away may wait in run() until the limit rises."""
        with tunnypy.Limiter(1) as limiter:
            gate = Gate()

            def task() -> object:
                gate()
                return run_nested(limiter)

            future = limiter.run(task)
            assert gate.started.wait(WAIT)
            limiter.set_size(0)
            gate.release.set()
            wait_for(lambda: limiter.waiting == 1, "the nested run() to wait")
            limiter.set_size(1)
            assert outcome(limiter, future) == "inner"

    def test_run_from_another_limiters_task_is_not_checked(self) -> None:
        """A task of one limiter may run() on another full limiter and wait for it."""
        with tunnypy.Limiter(1) as first, tunnypy.Limiter(1) as second:
            gate = Gate()
            second.run(gate)
            assert gate.started.wait(WAIT)
            nested = first.run(run_nested, second)
            wait_for(lambda: second.waiting == 1, "the run() on the other limiter to wait")
            gate.release.set()
            assert outcome(first, nested) == "inner"


class TestSingleFlightOwnKey:
    def test_leader_calling_do_on_its_own_key_raises(self) -> None:
        """The flight's function calling do() on its own key raises, not waits for itself."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        seen: list[BaseException] = []

        def compute() -> int:
            try:
                return flight.do("k", lambda: 1)
            except tunnypy.PoolDeadlockError as exc:
                seen.append(exc)
                return 2

        call = Call(flight.do, "k", compute)
        assert call.wait() == 2
        [error] = seen
        with pytest.raises(tunnypy.PoolDeadlockError, match=FLIGHT_DEADLOCK):
            raise error
        assert flight.in_flight == 0
        assert flight.do("k", lambda: 3) == 3

    def test_uncaught_deadlock_reaches_every_caller(self) -> None:
        """Uncaught, the error is the flight's outcome, for its leader and its followers."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        started = threading.Event()
        release = threading.Event()

        def compute() -> int:
            started.set()
            assert release.wait(WAIT)
            return flight.do("k", lambda: 1)

        leader = Call(flight.do, "k", compute)
        assert started.wait(WAIT)
        follower = Call(flight.do, "k", lambda: 0)
        wait_for(lambda: flight.waiting("k") == 1, "the follower to wait")
        release.set()
        for call in (leader, follower):
            with pytest.raises(tunnypy.PoolDeadlockError, match=FLIGHT_DEADLOCK):
                call.wait()

    def test_leader_may_do_another_key(self) -> None:
        """The flight's function may call do() on another key, which it leads too."""
        flight: tunnypy.SingleFlight[str, str] = tunnypy.SingleFlight()
        call = Call(flight.do, "a", lambda: "a" + flight.do("b", lambda: "b"))
        assert call.wait() == "ab"
        assert flight.in_flight == 0

    def test_other_thread_on_the_same_key_is_a_follower(self) -> None:
        """A do() on the key from another thread while the leader computes waits and shares."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        followers: list[Call] = []

        def compute() -> int:
            followers.append(Call(flight.do, "k", lambda: 0))
            wait_for(lambda: flight.waiting("k") == 1, "the other thread to follow")
            return 5

        assert Call(flight.do, "k", compute).wait() == 5
        [follower] = followers
        assert follower.wait() == 5
