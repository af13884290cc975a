"""A model-based test: Hypothesis drives one pool and checks its invariants after every step."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Any

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for

MAX_SIZE = 4
MAX_GATES = 6  # gated calls outstanding at once; bounds threads per example
CLOSE_AFTER = 10  # steps


class FailureError(Exception):
    """What a failing job raises."""


def job(payload: object) -> object:
    if isinstance(payload, Gate):
        return payload(payload)
    if payload == "fail":
        raise FailureError
    return payload


@attrs.define(eq=False)
class Gated:
    """A call whose job blocks on a gate until the model releases it."""

    gate: Gate
    way: str
    call: Call | None = None
    future: Future[object] | None = None
    token: tunnypy.CancelToken | None = None
    abandoned: bool = False  # its caller gave up; the job still holds a worker

    def done(self) -> bool:
        if self.future is not None:
            return self.future.done()
        assert self.call is not None
        return self.call.done.is_set()

    def outcome(self) -> object:
        """The call's result, or the exception it ended with (bounded wait)."""
        try:
            if self.future is not None:
                return self.future.result(WAIT)
            assert self.call is not None
            return self.call.wait()
        except Exception as exc:
            return exc


class PoolMachine(RuleBasedStateMachine):
    """The model: the size asked for, every gated call outstanding, what each counter must read."""

    def __init__(self) -> None:
        super().__init__()
        self.before = set(threading.enumerate())
        self.pool: tunnypy.Pool[object, object] = tunnypy.Pool.from_func(0, job)
        self.size = 0
        self.closed = False
        self.gated: list[Gated] = []
        self.expected = {"completed": 0, "failed": 0, "timed_out": 0, "cancelled": 0, "rejected": 0}
        self.calls = 0
        self.steps = 0

    # -- helpers ------------------------------------------------------------------

    def running(self) -> list[Gated]:
        return [g for g in self.gated if g.gate.started.is_set() and not g.gate.release.is_set()]

    def in_line(self) -> list[Gated]:
        return [g for g in self.gated if not g.gate.started.is_set() and not g.abandoned]

    def pool_threads(self) -> int:
        return sum(
            1
            for t in threading.enumerate()
            if t not in self.before and t.name.startswith("tunnypy-worker")
        )

    def quiet(self) -> bool:
        """Nothing is in flight: every worker is parked or holds a known gate."""
        s = self.pool.stats()
        return (
            s.busy == len(self.running())
            and s.waiting == len(self.in_line())
            and s.workers == s.busy + s.idle
            and self.pool_threads() == s.workers
        )

    def settle(self) -> None:
        self.steps += 1
        wait_for(self.quiet, f"the pool to settle: {self.pool.stats()}")

    def count(self, what: str) -> None:
        self.calls += 1
        self.expected[what] += 1

    @initialize(size=st.integers(0, 2))
    def start(self, size: int) -> None:
        self.pool.set_size(size)
        self.size = size
        self.settle()

    # -- calls that end at once ---------------------------------------------------

    @precondition(lambda self: self.closed or self.pool.stats().idle > 0)
    @rule(way=st.sampled_from(["process", "process_timed", "submit"]), fail=st.booleans())
    def call_instant(self, way: str, fail: bool) -> None:
        """A job that returns (or raises) at once, through one of three ways in."""
        payload = "fail" if fail else len(self.gated)
        try:
            if way == "process":
                result = self.pool.process(payload)
            elif way == "process_timed":
                result = self.pool.process_timed(payload, WAIT)
            else:
                result = self.pool.submit(payload).result(WAIT)
        except tunnypy.PoolClosedError:
            assert self.closed
            self.count("rejected")
        except FailureError:
            assert fail
            self.count("failed")
        else:
            assert not fail
            assert payload == result
            self.count("completed")
        self.settle()

    @rule()
    def process_timed_zero(self) -> None:
        """A zero timeout has already expired; a closed pool refuses it first."""
        if self.closed:
            with pytest.raises(tunnypy.PoolClosedError):
                self.pool.process_timed(1, 0)
            self.count("rejected")
        else:
            with pytest.raises(tunnypy.JobTimedOutError):
                self.pool.process_timed(1, 0)
            self.count("timed_out")

    # -- gated calls --------------------------------------------------------------

    @precondition(lambda self: len(self.gated) < MAX_GATES)
    @rule(way=st.sampled_from(["process", "process_timed", "process_ctx", "submit"]))
    def call_gated(self, way: str) -> None:
        """Start a call whose job holds its worker until released; it may wait in line."""
        gate = Gate()
        gated = Gated(gate, way)
        pool = self.pool
        if way == "submit":
            try:
                gated.future = pool.submit(gate)
            except tunnypy.PoolClosedError:
                assert self.closed
                self.count("rejected")
                return
        elif self.closed:
            with pytest.raises(tunnypy.PoolClosedError):
                pool.process(gate)
            self.count("rejected")
            return
        elif way == "process":
            gated.call = Call(pool.process, gate)
        elif way == "process_timed":
            gated.call = Call(pool.process_timed, gate, 2 * WAIT)
        else:
            gated.token = tunnypy.CancelToken()
            gated.call = Call(pool.process_ctx, gate, gated.token)
        self.calls += 1
        self.gated.append(gated)
        if way != "submit":
            # The call is in flight once it is in line or its job started.
            wait_for(
                lambda: gate.started.is_set() or self.pool.queue_length == len(self.in_line()),
                "the gated call to arrive",
            )
        self.settle()

    @precondition(lambda self: bool(self.running()))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Let a running gated job return; its caller gets its own gate back."""
        gated = data.draw(st.sampled_from(self.running()))
        gated.gate.release.set()
        if not gated.abandoned:
            assert gated.gate is gated.outcome()
            self.expected["completed"] += 1
            self.gated.remove(gated)
        self.settle()
        if gated.abandoned:
            self.gated.remove(gated)

    @precondition(lambda self: any(g.token is not None and not g.abandoned for g in self.gated))
    @rule(data=st.data())
    def cancel_token(self, data: st.DataObject) -> None:
        """Cancel a process_ctx call, running or in line: it ends with JobCancelledError."""
        candidates = [g for g in self.gated if g.token is not None and not g.abandoned]
        gated = data.draw(st.sampled_from(candidates))
        assert gated.token is not None
        gated.token.cancel()
        assert isinstance(gated.outcome(), tunnypy.JobCancelledError)
        self.expected["cancelled"] += 1
        if gated.gate.started.is_set():
            gated.abandoned = True  # the job runs on until released
        else:
            self.gated.remove(gated)
        self.settle()

    @precondition(lambda self: any(g.future is not None for g in self.in_line()))
    @rule(data=st.data())
    def cancel_future(self, data: st.DataObject) -> None:
        """Cancel a submitted future still in line: it leaves the line, counted once."""
        gated = data.draw(st.sampled_from([g for g in self.in_line() if g.future is not None]))
        assert gated.future is not None
        assert gated.future.cancel()
        assert gated.future.cancel()  # again: still True, still counted once
        self.expected["cancelled"] += 1
        self.gated.remove(gated)
        self.settle()

    # -- size and close -----------------------------------------------------------

    @rule(size=st.integers(0, MAX_SIZE))
    def set_size(self, size: int) -> None:
        """Grow or shrink; waiting calls start on new workers, busy ones retire after their job."""
        if self.closed:
            with pytest.raises(tunnypy.PoolClosedError):
                self.pool.set_size(size)
            return
        self.pool.set_size(size)
        self.size = size
        self.settle()

    # Closing ends what there is to explore; leave it for the second half of a run.
    @precondition(lambda self: self.steps >= CLOSE_AFTER)
    @rule()
    def close(self) -> None:
        """Close without waiting: callers in line are refused, running jobs run on."""
        refused = [] if self.closed else self.in_line()
        assert not self.pool.close(wait=False) or not self.running()
        for gated in refused:
            assert isinstance(gated.outcome(), tunnypy.PoolClosedError)
            self.expected["rejected"] += 1
            self.gated.remove(gated)
        self.closed = True
        self.size = 0
        self.settle()

    # -- invariants ----------------------------------------------------------------

    @invariant()
    def sizes_agree(self) -> None:
        s = self.pool.stats()
        assert self.size == self.pool.size == s.size
        assert self.pool.queue_length == s.waiting
        assert s.idle == 0 or s.waiting == 0  # a waiting caller never sits beside a free worker
        assert s.idle <= s.size
        if not self.closed:
            assert s.workers >= s.size  # active workers, plus busy ones retiring
        else:
            assert 0 == s.idle == s.waiting

    @invariant()
    def counters_agree(self) -> None:
        s = self.pool.stats()
        seen = {
            "completed": s.completed,
            "failed": s.failed,
            "timed_out": s.timed_out,
            "cancelled": s.cancelled,
            "rejected": s.rejected,
        }
        assert self.expected == seen
        # Every call made has ended, or is one of the gated calls still outstanding.
        outstanding = sum(1 for g in self.gated if not g.abandoned)
        assert self.calls == sum(seen.values()) + outstanding

    @invariant()
    def threads_agree(self) -> None:
        assert self.pool_threads() == self.pool.stats().workers

    def teardown(self) -> None:
        for gated in self.gated:
            gated.gate.release.set()
        if not self.closed:
            self.pool.set_size(max(self.size, 1))  # let anything still in line run
        for gated in self.gated:
            if not gated.abandoned:
                outcome: Any = gated.outcome()
                assert gated.gate is outcome or isinstance(outcome, tunnypy.PoolClosedError)
        assert self.pool.close(timeout=WAIT)
        wait_for(lambda: self.pool_threads() == 0, "every worker thread to end")


PoolMachine.TestCase.settings = settings(
    max_examples=50, stateful_step_count=20, deadline=None, derandomize=True
)
TestPoolMachine = PoolMachine.TestCase
