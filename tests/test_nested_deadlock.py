"""A job calling its own pool: PoolDeadlockError when no worker could serve it, at any depth."""

from __future__ import annotations

import gc
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, in_line_behind_busy, wait_for

NestedPool = tunnypy.Pool[Any, Any]

# Every call that blocks its caller and joins the line; each names itself in
# the PoolDeadlockError it may get. A deadline that would pass only if the
# check failed keeps a broken pool from hanging the test.
BLOCKING_CALLS: dict[str, Callable[[NestedPool, object], object]] = {
    "process": lambda pool, payload: pool.process(payload),
    "process_timed": lambda pool, payload: pool.process_timed(payload, WAIT),
    "process_ctx": lambda pool, payload: pool.process_ctx(
        payload, tunnypy.CancelToken(timeout=WAIT)
    ),
}


def recursion(holder: list[NestedPool], kind: str) -> Callable[[tuple[int, int]], object]:
    """A job that, at level < depth, calls its own pool for the next level; the error comes back."""
    call = BLOCKING_CALLS[kind]

    def job(payload: tuple[int, int]) -> object:
        level, depth = payload
        if level == depth:
            return "leaf"
        try:
            return call(holder[0], (level + 1, depth))
        except tunnypy.PoolDeadlockError as exc:
            return (level, exc)

    return job


class TestRecursion:
    """A chain of calls into the pool's own line fails at the call no worker could serve."""

    @pytest.mark.parametrize("kind", sorted(BLOCKING_CALLS))
    @pytest.mark.parametrize("size", [1, 2, 3])
    def test_a_call_one_level_deeper_than_the_pool_raises(self, size: int, kind: str) -> None:
        """On n workers, the call a job makes at depth n raises, naming itself; then all return."""
        holder: list[NestedPool] = []
        pool = tunnypy.Pool.from_func(size, recursion(holder, kind))
        holder.append(pool)
        try:
            outcome = Call(pool.process, (0, size)).wait()
            assert isinstance(outcome, tuple), outcome
            level, error = outcome
            assert level == size - 1  # the job on the last free worker
            assert isinstance(error, tunnypy.PoolDeadlockError)
            assert f"called {kind}() on its own pool" in str(error)
            stats = pool.stats()
            assert (stats.rejected, stats.busy, stats.waiting) == (1, 0, 0)
            assert Call(pool.process, (0, size - 1)).wait() == "leaf"  # the deepest that fits
        finally:
            assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("timeout", [float("inf"), 10**400], ids=["inf", "huge"])
    def test_a_timed_call_with_no_limit_names_itself(self, timeout: float) -> None:
        """process_timed with an infinite deadline is refused as process_timed(), not process()."""
        holder: list[NestedPool] = []

        def job(level: int) -> object:
            if level:
                return "leaf"
            try:
                return holder[0].process_timed(1, timeout)
            except tunnypy.PoolDeadlockError as exc:
                return exc

        pool = tunnypy.Pool.from_func(1, job)
        holder.append(pool)
        try:
            error = Call(pool.process, 0).wait()
            assert isinstance(error, tunnypy.PoolDeadlockError)
            assert "called process_timed() on its own pool" in str(error)
        finally:
            assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("size", [2, 3])
    def test_a_try_process_in_the_chain_counts_as_waiting(self, size: int) -> None:
        """A try_process served by another worker holds its caller as process() does."""
        holder: list[NestedPool] = []

        def job(level: int) -> object:
            if level == size:
                return "leaf"
            try:
                if (size - 1 - level) % 2:  # served at once: a worker is free for it
                    return holder[0].try_process(level + 1)
                return holder[0].process(level + 1)
            except tunnypy.PoolDeadlockError as exc:
                return exc

        pool = tunnypy.Pool.from_func(size, job)
        holder.append(pool)
        try:
            outcome = Call(pool.process, 0).wait()
            assert isinstance(outcome, tunnypy.PoolDeadlockError), outcome
            assert "called process() on its own pool" in str(outcome)
        finally:
            assert pool.close(timeout=WAIT)


class TestNoFalseAlarm:
    """Calls that a worker will serve are never refused."""

    @pytest.mark.parametrize("kind", sorted(BLOCKING_CALLS))
    def test_a_tree_walk_with_a_worker_per_level_completes(self, kind: str) -> None:
        """A binary tree 3 levels deep, each node calling its own pool for both children, on 4."""
        holder: list[NestedPool] = []
        call = BLOCKING_CALLS[kind]

        def node(payload: tuple[int, int]) -> int:
            level, depth = payload
            if level == depth:
                return 1
            child = (level + 1, depth)
            return cast(int, call(holder[0], child)) + cast(int, call(holder[0], child))

        pool = tunnypy.Pool.from_func(4, node)
        holder.append(pool)
        try:
            assert Call(pool.process, (0, 3)).wait() == 8
            assert pool.stats().rejected == 0
        finally:
            assert pool.close(timeout=WAIT)

    def test_concurrent_tree_walks_with_enough_workers_complete(self) -> None:
        """Three callers each walk trees 2 levels deep at once on 9 workers: nothing is refused."""
        holder: list[NestedPool] = []
        kinds = sorted(BLOCKING_CALLS)

        def node(payload: tuple[int, int]) -> int:
            level, round_ = payload
            if level == 2:
                return 1
            call = BLOCKING_CALLS[kinds[(level + round_) % len(kinds)]]
            child = (level + 1, round_)
            return cast(int, call(holder[0], child)) + cast(int, call(holder[0], child))

        pool = tunnypy.Pool.from_func(9, node)
        holder.append(pool)
        together = threading.Barrier(3, timeout=WAIT)

        def walks() -> list[int]:
            together.wait()
            return [pool.process((0, round_)) for round_ in range(20)]

        try:
            callers = [Call(walks) for _ in range(3)]
            assert [c.wait() for c in callers] == [[4] * 20] * 3
            assert pool.stats().rejected == 0
        finally:
            assert pool.close(timeout=WAIT)

    def test_a_retired_worker_still_serving_a_call_is_waited_for(self) -> None:
        """W1 waits on a call running on retired W2; W0's call waits in line and is served."""
        holder: list[NestedPool] = []
        third, middle = Gate(), Gate()
        go = threading.Event()
        seen: dict[str, object] = {}

        def job(payload: str) -> object:
            if payload == "third":  # on W0
                third.started.set()
                assert go.wait(WAIT)
                try:
                    seen["third"] = holder[0].process("leaf")
                except tunnypy.PoolDeadlockError as exc:
                    seen["third"] = exc
                return None
            if payload == "outer":  # on W1
                return holder[0].process("middle")
            if payload == "middle":  # on W2
                return middle("middle")
            return payload

        pool = tunnypy.Pool.from_func(1, job)
        holder.append(pool)
        try:
            first = pool.submit("third")
            assert third.started.wait(WAIT)
            pool.set_size(2)
            outer = pool.submit("outer")
            wait_for(lambda: in_line_behind_busy(pool, 1, 2), "outer's call to wait in line")
            pool.set_size(3)  # W2 takes "middle"
            assert middle.started.wait(WAIT)
            pool.set_size(2)  # retires W2, the newest: busy, and not waiting on the pool
            go.set()  # W0 calls: W2 will return, then W1, which serves it
            wait_for(lambda: pool.queue_length == 1 or "third" in seen, "W0's call to wait in line")
            assert "third" not in seen, seen
            middle.release.set()
            assert outer.result(WAIT) == "middle"
            assert first.result(WAIT) is None
            assert seen == {"third": "leaf"}
            assert pool.stats().rejected == 0
        finally:
            go.set()
            middle.release.set()
            assert pool.close(timeout=WAIT)


class TestResize:
    """Workers retiring never leave a chain of calls into the pool's own line waiting for good."""

    @pytest.mark.parametrize("kind", sorted(BLOCKING_CALLS))
    def test_a_shrink_leaving_a_depth_two_chain_waiting_fails_its_call(self, kind: str) -> None:
        """W0 waits on W1, whose call waits behind busy W2; retiring W2 fails W1's call."""
        holder: list[NestedPool] = []
        hold, middle_started = Gate(), threading.Event()
        go = threading.Event()

        def job(payload: str) -> object:
            if payload == "outer":
                return holder[0].process("middle")
            if payload == "middle":
                middle_started.set()
                assert go.wait(WAIT)
                try:
                    return BLOCKING_CALLS[kind](holder[0], "leaf")
                except tunnypy.PoolDeadlockError as exc:
                    return exc
            if payload == "hold":
                return hold()
            return payload

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            outer = pool.submit("outer")
            assert middle_started.wait(WAIT)
            pool.set_size(3)
            held = pool.submit("hold")  # W2, the newest
            assert hold.started.wait(WAIT)
            go.set()
            wait_for(lambda: in_line_behind_busy(pool, 1, 3), "the depth-2 call to wait in line")
            pool.set_size(2)  # retires W2: W0 waits on W1, W1 on the line
            outcome = outer.result(WAIT)
            assert isinstance(outcome, tunnypy.PoolDeadlockError), outcome
            assert "resize" in str(outcome) and f"{kind}()" in str(outcome)
            assert pool.queue_length == 0
            hold.release.set()
            assert held.result(WAIT) is None
            assert pool.stats().rejected == 1
            assert pool.process("after") == "after"
        finally:
            go.set()
            hold.release.set()
            assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("kind", sorted(BLOCKING_CALLS))
    def test_a_retired_worker_serving_a_call_then_calling_the_pool_raises(self, kind: str) -> None:
        """W0 waits on W1; W1, retired, calls the pool with only W0 active: PoolDeadlockError."""
        holder: list[NestedPool] = []
        outer_started, grown = threading.Event(), threading.Event()
        middle_started, go = threading.Event(), threading.Event()

        def job(payload: str) -> object:
            if payload == "outer":
                outer_started.set()
                assert grown.wait(WAIT)
                return holder[0].process("middle")
            if payload == "middle":
                middle_started.set()
                assert go.wait(WAIT)
                try:
                    return BLOCKING_CALLS[kind](holder[0], "leaf")
                except tunnypy.PoolDeadlockError as exc:
                    return exc
            return payload

        pool = tunnypy.Pool.from_func(1, job)
        holder.append(pool)
        try:
            outer = pool.submit("outer")
            assert outer_started.wait(WAIT)  # on W0
            pool.set_size(2)
            grown.set()  # W1, the newest, takes "middle"
            assert middle_started.wait(WAIT)
            pool.set_size(1)  # retires W1 while W0 waits on it: W1 will still return
            assert pool.stats().rejected == 0
            go.set()
            outcome = outer.result(WAIT)
            assert isinstance(outcome, tunnypy.PoolDeadlockError), outcome
            assert f"called {kind}() on its own pool" in str(outcome)
            assert pool.stats().rejected == 1
            assert pool.process("after") == "after"
        finally:
            grown.set()
            go.set()
            assert pool.close(timeout=WAIT)


class Payload:
    """A payload a test can hold a weak reference to."""


class BoomError(Exception):
    """An error a job raises on purpose."""


class TestNothingKept:
    """A job's call on its own pool keeps nothing alive once it has returned."""

    @pytest.mark.parametrize("kind", sorted(BLOCKING_CALLS))
    def test_a_failed_call_on_its_own_pool_keeps_nothing_of_its_payload(self, kind: str) -> None:
        """The payload of a job's call that raised is freed once the call has returned."""
        holder: list[NestedPool] = []

        def job(payload: object) -> object:
            if isinstance(payload, Payload):
                raise BoomError
            inner = Payload()
            ref = weakref.ref(inner)
            with pytest.raises(BoomError):
                BLOCKING_CALLS[kind](holder[0], inner)
            del inner
            return ref

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            ref = cast("weakref.ref[Payload]", pool.submit("outer").result(WAIT))
            # The worker that raised drops its last reference a moment after
            # it delivers; what must not hold the payload is the pool.
            wait_for(lambda: gc.collect() >= 0 and ref() is None, "the payload to be freed")
        finally:
            assert pool.close(timeout=WAIT)


class TestSubmit:
    """submit never blocks, so it never raises PoolDeadlockError, and the docs say so."""

    def test_a_chain_as_deep_as_the_pool_may_still_submit(self) -> None:
        """At the end of a chain that holds every worker, submit queues the job; it runs later."""
        holder: list[NestedPool] = []

        def job(level: int) -> object:
            if level == 0:
                return holder[0].process(1)
            if level == 1:
                return holder[0].submit(2)  # both workers are held: it waits in line
            return "leaf"

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            future = Call(pool.process, 0).wait()
            assert future.result(WAIT) == "leaf"
            assert pool.stats().rejected == 0
        finally:
            assert pool.close(timeout=WAIT)

    def test_the_api_reference_does_not_list_it_for_submit(self) -> None:
        """Pool.submit's Raises list (the API reference's) names only what submit raises."""
        doc = inspect.cleandoc(tunnypy.Pool.submit.__doc__ or "")
        raises = doc.split("Raises:\n", 1)[1].split("\n\n", 1)[0]
        assert "PoolClosedError" in raises
        assert "PoolDeadlockError" not in raises
