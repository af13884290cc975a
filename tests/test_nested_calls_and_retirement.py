"""A shrink (or a growth undone) never strands a job waiting on its own pool, nor blames one."""

from __future__ import annotations

import threading
from concurrent.futures import Future

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Gate,
    NestedCall,
    Roles,
    in_line_behind_busy,
    wait_for,
    worker_thread_starts_fail_at,
)


class TestNestedCallsAndRetirement:
    """A shrink (or a growth undone) never strands a job waiting on its own pool, nor blames one."""

    def test_a_shrink_leaving_every_worker_waiting_fails_the_nested_call(self) -> None:
        """Worker 0 waits on its pool behind busy worker 1; retiring 1 raises PoolDeadlockError."""
        holder: list[tunnypy.Pool[str, object]] = []
        gate = Gate()
        nested = NestedCall(holder, after=gate.started)
        pool = tunnypy.Pool(2, Roles(nested, gate))
        holder.append(pool)
        try:
            futures = [pool.submit("go"), pool.submit("go")]
            wait_for(lambda: in_line_behind_busy(pool, 1, 2), "worker 0's call to wait in line")
            pool.set_size(1)  # retires the newest busy worker: 1, the only one that could serve it
            outcome = nested.result()
            assert isinstance(outcome, tunnypy.PoolDeadlockError)
            assert "every worker" in str(outcome)
            assert pool.queue_length == 0
            gate.release.set()
            assert [f.result(WAIT) for f in futures] == [None, None]
            assert pool.stats().rejected == 1
            assert pool.process("after") == "after"  # worker 0 still serves
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)

    def test_a_retiring_workers_nested_call_does_not_count_against_the_others(self) -> None:
        """Worker 2, retired while waiting on its pool, holds no worker: worker 0 may wait too."""
        holder: list[tunnypy.Pool[str, object]] = []
        gate = Gate()
        go = threading.Event()
        first, third = NestedCall(holder, after=go), NestedCall(holder, after=gate.started)
        pool = tunnypy.Pool(3, Roles(first, gate, third))
        holder.append(pool)
        try:
            futures = [pool.submit("go") for _ in range(3)]
            wait_for(lambda: in_line_behind_busy(pool, 1, 3), "worker 2's call to wait in line")
            pool.set_size(2)  # retires worker 2, busy waiting on the pool
            go.set()  # worker 0 now calls too: worker 1 will serve both
            wait_for(
                lambda: pool.queue_length == 2 or first.done.is_set(),
                "worker 0's call to wait in line",
            )
            assert not first.done.is_set(), first.outcome
            gate.release.set()
            assert first.result() == third.result() == "inner"
            assert [f.result(WAIT) for f in futures] == [None, None, None]
            assert pool.stats().rejected == 0
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)

    def test_a_growth_undone_leaving_every_worker_waiting_fails_the_nested_call(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """set_size(1 -> 3) fails at the second thread; retiring worker 1 would strand worker 0."""
        holder: list[tunnypy.Pool[str, object]] = []
        gate = Gate()
        go = threading.Event()
        nested = NestedCall(holder, after=go)
        pool = tunnypy.Pool(1, Roles(nested, gate))
        holder.append(pool)
        busy: list[Future[object]] = []

        def meanwhile() -> None:
            # Worker 1 has started: give it the gate, then let worker 0's
            # call join the line behind it.
            busy.append(pool.submit("go"))
            assert gate.started.wait(WAIT)
            go.set()
            wait_for(lambda: pool.queue_length == 1, "worker 0's call to wait in line")

        try:
            busy.append(pool.submit("go"))  # worker 0: waits for go, then calls the pool
            worker_thread_starts_fail_at(monkeypatch, 2, meanwhile)
            with pytest.raises(RuntimeError, match="can't start new thread"):
                pool.set_size(3)
            monkeypatch.undo()
            outcome = nested.result()
            assert isinstance(outcome, tunnypy.PoolDeadlockError)
            assert pool.size == 1
            gate.release.set()
            assert [f.result(WAIT) for f in busy] == [None, None]
            assert pool.stats().rejected == 1
            assert pool.process("after") == "after"
        finally:
            monkeypatch.undo()
            gate.release.set()
            assert pool.close(timeout=WAIT)
