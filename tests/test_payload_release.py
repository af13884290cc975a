"""
When a call lets go of its payload: by the time it returns or its future is done.

Every test here runs with the garbage collector off, so what it checks is
freed by reference counting alone: nothing of a call may sit in a reference
cycle waiting for a collection.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for
from tunnypy import _future


class Box:
    """A payload or result that a weak reference can watch."""

    def __init__(self, value: int, action: Callable[[], object] | None = None) -> None:
        self.value = value
        self.action = action


class DropsPayload(tunnypy.BaseWorker[Box, Any]):
    """
    Lets go of its payload first thing, so only tunnypy could keep it.

    A negative value fails; a payload with an action returns what it returns.
    """

    def process(self, payload: Box) -> Any:
        value, action = payload.value, payload.action
        del payload
        if action is not None:
            return action()
        if value < 0:
            raise ValueError(f"bad value {value}")
        return Box(value + 1)


class DropsPayloadAfterReady(DropsPayload):
    """The same, with its own ``block_until_ready``: its worker's loop takes the other path."""

    def block_until_ready(self) -> None:
        pass


def plus_one(box: Box) -> Any:
    """Keeps its payload as an argument, in its frame, in any traceback it raises."""
    if box.action is not None:
        return box.action()
    if box.value < 0:
        raise ValueError(f"bad value {box.value}")
    return Box(box.value + 1)


# Each call takes the payload out of *held*, so no frame of the test's own
# keeps it.
CALLS: dict[str, Callable[[tunnypy.Pool[Box, Any], list[Box]], Any]] = {
    "process": lambda pool, held: pool.process(held.pop()),
    "process_timed": lambda pool, held: pool.process_timed(held.pop(), WAIT),
    "process_ctx": lambda pool, held: pool.process_ctx(
        held.pop(), tunnypy.CancelToken(timeout=WAIT)
    ),
    "try_process": lambda pool, held: pool.try_process(held.pop()),
    "submit": lambda pool, held: pool.submit(held.pop()).result(WAIT),
    "try_submit": lambda pool, held: pool.try_submit(held.pop()).result(WAIT),
}
# Pools of one worker whose jobs keep nothing of their payload once done.
LEAN_POOLS: dict[str, Callable[[], tunnypy.Pool[Box, Any]]] = {
    "worker": lambda: tunnypy.Pool(1, DropsPayload),
    "worker_with_ready": lambda: tunnypy.Pool(1, DropsPayloadAfterReady),
}
POOLS: dict[str, Callable[[], tunnypy.Pool[Box, Any]]] = {
    **LEAN_POOLS,
    # A function that keeps its argument: the payload is in its error's traceback.
    "from_func": lambda: tunnypy.Pool.from_func(1, plus_one),
}
SUBMITS: dict[str, Callable[[tunnypy.Pool[Box, Any], list[Box]], Future[Any]]] = {
    "submit": lambda pool, held: pool.submit(held.pop()),
    "try_submit": lambda pool, held: pool.try_submit(held.pop()),
}


@pytest.fixture(autouse=True)
def collector_off() -> Iterator[None]:
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def watched(value: int, action: Callable[[], object] | None = None) -> tuple[list[Box], Any]:
    """A payload in a list for a call to take, and a weak reference to it."""
    box = Box(value, action)
    return [box], weakref.ref(box)


def all_idle(pool: tunnypy.Pool[Any, Any], size: int) -> None:
    """Wait until every worker is parked, so try_* calls find one free."""
    wait_for(lambda: pool.stats().idle == size, "every worker to park")


class TestFreedWhenTheCallEnds:
    @pytest.mark.parametrize("kind", sorted(CALLS))
    @pytest.mark.parametrize("make", sorted(POOLS))
    def test_a_returned_call_has_let_go_of_its_payload(self, make: str, kind: str) -> None:
        """Once the call has returned, nothing holds the payload: no wait, no collection."""
        with POOLS[make]() as pool:
            all_idle(pool, 1)
            held, payload = watched(1)
            result = CALLS[kind](pool, held)
            assert result.value == 2
            assert payload() is None

    @pytest.mark.parametrize("kind", sorted(CALLS))
    @pytest.mark.parametrize("make", sorted(POOLS))
    def test_a_failed_call_has_let_go_once_its_error_is_dropped(self, make: str, kind: str) -> None:
        """
        The job's error reaches the caller; once the caller drops it, the payload is freed.

        At the latest when the worker starts its next job: until just after it
        wakes the caller, the worker still holds the error, as it would a
        result, and the error's traceback holds the job's frames.
        """
        with POOLS[make]() as pool:
            all_idle(pool, 1)
            held, payload = watched(-1)
            message = None
            try:
                CALLS[kind](pool, held)
            except ValueError as error:
                message = str(error)
            assert message == "bad value -1"
            assert pool.process(Box(0, lambda: payload() is None)) is True

    @pytest.mark.parametrize("kind", sorted(CALLS))
    @pytest.mark.parametrize("make", sorted(LEAN_POOLS))
    def test_a_kept_error_holds_the_payload_only_in_the_jobs_own_frames(
        self, make: str, kind: str
    ) -> None:
        """tunnypy's frames in the error's traceback keep nothing of the call."""
        with LEAN_POOLS[make]() as pool:
            all_idle(pool, 1)
            held, payload = watched(-1)
            kept: BaseException | None = None
            try:
                CALLS[kind](pool, held)
            except ValueError as error:
                kept = error
            assert kept is not None
            assert kept.__traceback__ is not None
            assert payload() is None


class TestFutures:
    @pytest.fixture(autouse=True, params=["lean", "stock"])
    def layout(self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
        """With the lean JobFuture and with the one built by Future.__init__."""
        monkeypatch.setattr(_future, "LEAN", request.param == "lean")

    @pytest.mark.parametrize("kind", sorted(SUBMITS))
    def test_a_done_future_keeps_its_result_and_not_its_payload(self, kind: str) -> None:
        """Like ThreadPoolExecutor's: a done future held by its caller keeps only the result."""
        with tunnypy.Pool(2, DropsPayload) as pool:
            all_idle(pool, 2)
            held, payload = watched(1)
            future = SUBMITS[kind](pool, held)
            assert future.result(WAIT).value == 2
            assert payload() is None
            result = weakref.ref(future.result())
            del future
            assert result() is None  # no cycle kept the future, and its result, alive

    def test_a_failed_future_keeps_its_error_and_not_its_payload(self) -> None:
        """A failed future held by its caller keeps its error, and the payload nowhere."""
        with tunnypy.Pool(2, DropsPayload) as pool:
            held, payload = watched(-1)
            future = pool.submit(held.pop())
            error = future.exception(WAIT)
            assert isinstance(error, ValueError)
            assert payload() is None

    def test_done_callbacks_find_the_payload_freed(self) -> None:
        """The payload is freed before the future is done, so its callbacks never see it."""
        gate = Gate()
        with tunnypy.Pool(1, DropsPayload) as pool:
            held, payload = watched(0, gate)
            future = pool.submit(held.pop())
            assert gate.started.wait(WAIT)
            seen: list[bool] = []
            future.add_done_callback(lambda _: seen.append(payload() is None))
            gate.release.set()
            future.result(WAIT)
            assert seen == [True]

    def test_a_future_cancelled_in_line_lets_go_at_once(self) -> None:
        """cancel() of a waiting future frees its payload, though the caller keeps the future."""
        gate = Gate()
        with tunnypy.Pool(1, DropsPayload) as pool:
            busy = pool.submit(Box(0, gate))
            assert gate.started.wait(WAIT)
            held, payload = watched(1)
            future = pool.submit(held.pop())
            assert future.cancel()
            assert payload() is None
            assert future.cancel()  # again: still True, counted once
            gate.release.set()
            busy.result(WAIT)
            assert pool.stats().cancelled == 1

    def test_a_future_refused_by_close_lets_go_at_once(self) -> None:
        """A waiting future that close() fails with PoolClosedError keeps nothing of its call."""
        gate = Gate()
        with tunnypy.Pool(1, DropsPayload) as pool:
            busy = pool.submit(Box(0, gate))
            assert gate.started.wait(WAIT)
            held, payload = watched(1)
            future = pool.submit(held.pop())
            pool.close(wait=False)
            assert isinstance(future.exception(WAIT), tunnypy.PoolClosedError)
            assert payload() is None
            gate.release.set()
            busy.result(WAIT)

    def test_a_future_its_caller_resolved_lets_go_when_a_worker_reaches_it(self) -> None:
        """A future set by its caller while in line: the job is skipped and its payload freed."""
        gate = Gate()
        with tunnypy.Pool(1, DropsPayload) as pool:
            busy = pool.submit(Box(0, gate))
            assert gate.started.wait(WAIT)
            held, payload = watched(1)
            future = pool.submit(held.pop())
            future.set_result("mine")
            gate.release.set()
            busy.result(WAIT)
            # The worker passed the job by before it took this one.
            assert pool.process(Box(0, lambda: payload() is None)) is True
            assert future.result() == "mine"


class TestGivenUpCalls:
    @pytest.mark.parametrize("make", sorted(POOLS))
    def test_a_given_up_job_lets_go_before_its_worker_starts_the_next(self, make: str) -> None:
        """A job whose caller gave up keeps its payload while it runs, and not past it."""
        gate = Gate()
        token = tunnypy.CancelToken()
        with POOLS[make]() as pool:
            held, payload = watched(0, gate)

            def cancel_once_started() -> None:
                assert gate.started.wait(WAIT)
                token.cancel()

            canceller = Call(cancel_once_started)
            cancelled = False
            try:
                pool.process_ctx(held.pop(), token)
            except tunnypy.JobCancelledError:
                cancelled = True  # and the error, whose frames hold the job, is dropped
            assert cancelled
            canceller.wait()
            assert payload() is not None  # the job runs on, with its payload
            gate.release.set()
            assert pool.process(Box(0, lambda: payload() is None)) is True


class TestResults:
    @pytest.mark.parametrize("kind", sorted(CALLS))
    @pytest.mark.parametrize("make", sorted(POOLS))
    def test_the_worker_lets_go_of_a_result_before_its_next_job(self, make: str, kind: str) -> None:
        """Once the caller drops the result, the worker holds it no further than its next job."""
        with POOLS[make]() as pool:
            all_idle(pool, 1)
            held, _ = watched(1)
            result = weakref.ref(CALLS[kind](pool, held))
            assert pool.process(Box(0, lambda: result() is None)) is True
