"""Faults: a broken factory, worker or job never loses a call, hangs, or kills a worker."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    Gate,
    NestedCall,
    RecordingFactory,
    RecordingWorker,
    Roles,
    in_line_behind_busy,
    wait_for,
)
from tunnypy import _job
from tunnypy._future import JobFuture
from tunnypy._job import NO_CONTEXT, Job
from tunnypy._line import Line, Taker
from tunnypy._waker import Waker, new_waker


class BoomError(Exception):
    """An error a test raises on purpose."""


def worker_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("tunnypy-worker"))


class Factory:
    """Makes RecordingWorkers, raising on the calls numbered in *fail_on* (from 1)."""

    def __init__(self, fail_on: set[int]) -> None:
        self.fail_on = fail_on
        self.calls = 0
        self.made: list[RecordingWorker] = []

    def __call__(self) -> RecordingWorker:
        self.calls += 1
        if self.calls in self.fail_on:
            raise BoomError(f"factory call {self.calls}")
        worker = RecordingWorker()
        self.made.append(worker)
        return worker


class TestFactoryRaises:
    def test_at_construction_the_error_reaches_the_caller_and_no_worker_runs(self) -> None:
        """Pool() re-raises the factory's error; workers made before it are terminated."""
        factory = Factory({3})
        threads = worker_threads()
        with pytest.raises(BoomError, match="factory call 3"):
            tunnypy.Pool(4, factory)
        assert len(factory.made) == 2
        assert [w.terminated for w in factory.made] == [1, 1]
        assert [w.processed for w in factory.made] == [0, 0]
        assert threads == worker_threads()

    def test_during_growth_the_pool_keeps_its_previous_size(self) -> None:
        """set_size() re-raises; size, workers and service are as before, new workers terminated."""
        factory = Factory({4})
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, factory)
        try:
            before = pool.stats()
            with pytest.raises(BoomError, match="factory call 4"):
                pool.set_size(5)
            assert pool.size == 2
            assert before == pool.stats()
            assert factory.made[2].terminated == 1  # made during the failed growth
            assert [w.terminated for w in factory.made[:2]] == [0, 0]
            assert pool.process(7) == 7
            pool.set_size(4)  # the next growth works
            assert pool.stats().workers == 4
        finally:
            assert pool.close(timeout=WAIT)


class TestThreadStartFails:
    def test_the_growth_is_undone_and_the_error_reaches_the_caller(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """set_size(1 -> 4) whose third new thread will not start: back to 1, all 3 terminated."""
        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        try:
            worker_thread_starts_fail_at(monkeypatch, 3, lambda: None)
            with pytest.raises(RuntimeError, match="can't start new thread"):
                pool.set_size(4)
            monkeypatch.undo()
            assert pool.size == 1
            wait_for(lambda: pool.stats().workers == 1, "the two started workers to leave")
            assert [w.terminated for w in factory.made] == [0, 1, 1, 1]
            assert [pool.process(n) for n in range(3)] == [0, 1, 2]
            pool.set_size(4)  # the next growth works
            assert pool.stats().workers == 4
        finally:
            monkeypatch.undo()
            assert pool.close(timeout=WAIT)


class TestProcessRaises:
    @pytest.mark.parametrize("error", [BoomError("job"), KeyboardInterrupt(), SystemExit(3)])
    def test_the_error_reaches_the_caller_and_the_worker_stays(self, error: BaseException) -> None:
        """Exception, KeyboardInterrupt and SystemExit from a job go to its caller only."""
        threads: list[int] = []

        def job(fail: bool) -> int:
            threads.append(threading.get_ident())
            if fail:
                raise error
            return 1

        pool = tunnypy.Pool.from_func(1, job)
        try:
            with pytest.raises(type(error)):
                pool.process(True)
            future = pool.submit(True)
            assert error is future.exception(WAIT)
            assert pool.process(False) == 1
            assert len(set(threads)) == 1  # the same worker served every call
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.failed) == (1, 1, 2)
        finally:
            assert pool.close(timeout=WAIT)

    def test_error_with_a_broken_repr_still_reaches_its_caller(self) -> None:
        """An exception whose __repr__ raises is delivered; the worker survives (regression)."""

        class UnprintableError(Exception):
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        def job(fail: bool) -> int:
            if fail:
                raise UnprintableError
            return 2

        pool = tunnypy.Pool.from_func(1, job)
        try:
            call = Call(pool.process_timed, True, WAIT)
            with pytest.raises(UnprintableError):
                call.wait()
            assert pool.process(False) == 2
            assert pool.stats().workers == 1
        finally:
            assert pool.close(timeout=WAIT)


class ReadyWorker(RecordingWorker):
    """Its block_until_ready runs *ready* (raise, or block on an event)."""

    def __init__(self, ready: Callable[[], None]) -> None:
        super().__init__()
        self.ready = ready

    def block_until_ready(self) -> None:
        super().block_until_ready()
        self.ready()


class TestBlockUntilReady:
    @pytest.mark.parametrize("error", [BoomError("not ready"), SystemExit(1), KeyboardInterrupt()])
    def test_raising_is_logged_and_the_worker_still_serves(
        self, error: BaseException, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A readiness check that raises (even SystemExit) neither kills the worker nor hangs."""
        raised = threading.Event()

        def ready() -> None:
            if not raised.is_set():
                raised.set()
                raise error

        caplog.set_level(logging.ERROR, logger="tunnypy")
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, lambda: ReadyWorker(ready))
        try:
            assert Call(pool.process, 5).wait() == 5
            assert pool.stats().workers == 1
            assert any("block_until_ready_failed" in r.getMessage() for r in caplog.records)
        finally:
            assert pool.close(timeout=WAIT)

    def test_blocking_forever_does_not_hang_close(self) -> None:
        """close(timeout=...) returns False promptly; the worker ends once it is released."""
        release = threading.Event()
        blocked = threading.Event()
        first = threading.Event()

        def ready() -> None:
            if first.is_set():
                blocked.set()
                release.wait(WAIT)
            first.set()

        worker = ReadyWorker(ready)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, lambda: worker)
        try:
            assert pool.process(1) == 1
            assert blocked.wait(WAIT)
            assert not pool.close(timeout=0.05)
            assert pool.closed
            with pytest.raises(tunnypy.PoolClosedError):
                pool.process(2)
        finally:
            release.set()
        assert pool.close(timeout=WAIT)
        assert worker.terminated == 1


class InterruptWorker(tunnypy.BaseWorker[Gate | int, Any]):
    """Records the order of its hooks; interrupt() runs *on_interrupt*."""

    def __init__(self, on_interrupt: Callable[[], None]) -> None:
        self.on_interrupt = on_interrupt
        self.log: list[str] = []
        self.stop = threading.Event()

    def process(self, payload: Gate | int) -> Any:
        self.stop.clear()
        self.log.append(f"start {payload if isinstance(payload, int) else 'gate'}")
        if isinstance(payload, Gate):
            payload.started.set()
            payload.release.wait(WAIT)
            return "gate"
        return payload if not self.stop.is_set() else "interrupted"

    def interrupt(self) -> None:
        self.log.append("interrupt begins")
        self.stop.set()
        try:
            self.on_interrupt()
        finally:
            self.log.append("interrupt ends")


class TestInterrupt:
    @pytest.mark.parametrize(
        ("raised", "caller_gets", "logged"),
        [
            (BoomError("interrupt"), tunnypy.JobCancelledError, True),
            # interrupt() runs on the caller's thread: a SystemExit (or a
            # Ctrl-C landing in it) is that caller's, not logged.
            (SystemExit(3), SystemExit, False),
        ],
    )
    def test_raising_ends_only_the_call_that_gave_up(
        self,
        caplog: pytest.LogCaptureFixture,
        raised: BaseException,
        caller_gets: type[BaseException],
        logged: bool,
    ) -> None:
        """The caller gets its error, or interrupt()'s BaseException; the next job runs normally."""

        def boom() -> None:
            raise raised

        caplog.set_level(logging.ERROR, logger="tunnypy")
        worker = InterruptWorker(boom)
        pool: tunnypy.Pool[Gate | int, Any] = tunnypy.Pool(1, lambda: worker)
        try:
            gate = Gate()
            token = tunnypy.CancelToken()
            call = Call(pool.process_ctx, gate, token)
            assert gate.started.wait(WAIT)
            token.cancel()
            with pytest.raises(caller_gets):
                call.wait()
            assert worker.log == ["start gate", "interrupt begins", "interrupt ends"]
            gate.release.set()
            assert pool.process(3) == 3  # the gate's outcome was abandoned, not delivered
            assert logged == any("interrupt_failed" in r.getMessage() for r in caplog.records)
            stats = pool.stats()
            assert (stats.cancelled, stats.completed) == (1, 1)  # each call counted once
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)

    def test_slow_the_next_job_waits_until_it_returns(self) -> None:
        """While interrupt() runs, its worker starts nothing; the next job is not interrupted."""
        inside = threading.Event()
        leave = threading.Event()

        def slow() -> None:
            inside.set()
            leave.wait(WAIT)

        worker = InterruptWorker(slow)
        pool: tunnypy.Pool[Gate | int, Any] = tunnypy.Pool(1, lambda: worker)
        gate = Gate()
        try:
            token = tunnypy.CancelToken()
            first = Call(pool.process_ctx, gate, token)
            assert gate.started.wait(WAIT)
            token.cancel()
            assert inside.wait(WAIT)
            gate.release.set()  # the first job returns while interrupt() still runs
            second = Call(pool.process, 4)

            def second_dispatched() -> bool:
                # In line, or handed to the worker: a worker whose readiness
                # is BaseWorker's no-op parks before delivering, so the second
                # call may go straight to it while it waits on the gate.
                held = [w.job for w in list(pool._lifecycle.workers)]
                return pool.queue_length == 1 or any(j is not None and j.payload == 4 for j in held)

            wait_for(second_dispatched, "the second call to reach the worker or the line")
            # A broken gate would start the second job in this window.
            assert not second.done.wait(0.1)
            assert "start 4" not in worker.log
            leave.set()
            assert second.wait() == 4  # not "interrupted": the stop flag was reset
            with pytest.raises(tunnypy.JobCancelledError):
                first.wait()
            log = worker.log
            assert log.index("interrupt ends") < log.index("start 4")
        finally:
            gate.release.set()
            leave.set()
            assert pool.close(timeout=WAIT)


class TerminateRaises(RecordingWorker):
    def terminate(self) -> None:
        super().terminate()
        raise BoomError("terminate")


class TestTerminate:
    def test_raising_is_logged_and_the_pool_is_fine(self, caplog: pytest.LogCaptureFixture) -> None:
        """Shrinking and closing still end every thread; the error is logged, not raised."""
        caplog.set_level(logging.ERROR, logger="tunnypy")
        made: list[TerminateRaises] = []

        def factory() -> TerminateRaises:
            made.append(TerminateRaises())
            return made[-1]

        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        assert pool.set_size(1, wait=True, timeout=WAIT)
        assert pool.stats().workers == 1
        assert pool.process(6) == 6
        assert pool.close(timeout=WAIT)
        assert [w.terminated for w in made] == [1, 1, 1]
        failures = [r for r in caplog.records if "terminate_failed" in r.getMessage()]
        assert len(failures) == 3


class TestJobUsesItsOwnPool:
    def test_a_job_resizes_its_own_pool(self) -> None:
        """set_size() from a job, growing and shrinking with wait=True, returns."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(size: int) -> int:
            holder[0].set_size(size, wait=True, timeout=WAIT)
            return holder[0].size

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            assert pool.process(5) == 5
            assert pool.process(0) == 0  # retires itself too; its own result still arrives
            # The worker that ran that job leaves after delivering it.
            wait_for(lambda: pool.stats().workers == 0, "the last worker to leave")
        finally:
            assert pool.close(timeout=WAIT)

    def test_a_job_closes_its_own_pool(self) -> None:
        """close() from a job returns; the job's own caller gets its result."""
        holder: list[tunnypy.Pool[int, bool]] = []

        def job(_: int) -> bool:
            return holder[0].close(timeout=WAIT)

        pool = tunnypy.Pool.from_func(3, job)
        holder.append(pool)
        assert pool.process(1) in (True, False)
        assert pool.closed
        assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("how", ["close", "set_size"])
    def test_two_jobs_closing_their_own_pool_do_not_wait_for_each_other(self, how: str) -> None:
        """Two jobs that each close (or shrink to 0 with wait) the pool both return (regression)."""
        both = threading.Barrier(2, timeout=WAIT)
        holder: list[tunnypy.Pool[int, bool]] = []

        def job(_: int) -> bool:
            both.wait()
            if how == "close":
                return holder[0].close()
            return holder[0].set_size(0, wait=True)

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            first, second = pool.submit(1), pool.submit(2)
            first.result(WAIT)
            second.result(WAIT)
        finally:
            assert pool.close(timeout=WAIT)

    @pytest.mark.parametrize("several_cpus", [False, True])
    def test_a_job_calling_its_own_full_pool_raises_deadlock_error(
        self, several_cpus: bool
    ) -> None:
        """process() from a job on a size-1 pool raises PoolDeadlockError instead of hanging."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(depth: int) -> int:
            if depth:
                return depth
            # A thread whose last call waited in a line keeps that job, and
            # its lock waker, for the next: Pool.process then queues a call
            # itself, and must still check.
            spare = Job(None, NO_CONTEXT, None)
            spare.own_waker()
            _job._tls.spare = spare
            return holder[0].process(depth + 1)

        pool = tunnypy.Pool.from_func(1, job)
        pool._line.several_cpus = several_cpus  # both of process()'s ways into the line
        holder.append(pool)
        try:
            with pytest.raises(tunnypy.PoolDeadlockError, match="its own pool"):
                Call(pool.process, 0).wait()
            assert pool.stats().rejected == 1
            assert pool.process(5) == 5
        finally:
            assert pool.close(timeout=WAIT)

    def test_nested_calls_are_served_until_the_last_worker_would_wait(self) -> None:
        """With 2 workers both running jobs, one nested call waits, the other raises; both end."""
        both = threading.Barrier(2, timeout=WAIT)
        holder: list[tunnypy.Pool[int, object]] = []

        def job(depth: int) -> object:
            if depth:
                return depth
            both.wait()
            try:
                return holder[0].process(1)
            except tunnypy.PoolDeadlockError as exc:
                return exc

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        try:
            futures = [pool.submit(0), pool.submit(0)]
            outcomes = [f.result(WAIT) for f in futures]
            assert outcomes.count(1) == 1
            assert sum(isinstance(o, tunnypy.PoolDeadlockError) for o in outcomes) == 1
        finally:
            assert pool.close(timeout=WAIT)

    def test_a_job_waiting_on_another_full_pool_is_not_a_deadlock(self) -> None:
        """A job on pool A that calls a busy pool B waits there: only its own pool can deadlock."""
        gate = Gate()
        inner = tunnypy.Pool.from_callback(1)
        outer: tunnypy.Pool[int, object] = tunnypy.Pool.from_func(
            1, lambda n: inner.process(lambda: n * 2)
        )
        try:
            busy = inner.submit(gate)
            assert gate.started.wait(WAIT)
            call = Call(outer.process, 21)
            wait_for(lambda: inner.queue_length == 1, "the nested call to wait in inner's line")
            gate.release.set()
            assert call.wait() == 42
            assert busy.result(WAIT) is None
            assert outer.stats().rejected == inner.stats().rejected == 0
        finally:
            assert outer.close(timeout=WAIT)
            assert inner.close(timeout=WAIT)


def worker_thread_starts_fail_at(
    monkeypatch: pytest.MonkeyPatch, number: int, before: Callable[[], None]
) -> None:
    """Make the *number*-th worker thread started from now fail to start, after ``before()``."""
    real_start = threading.Thread.start
    starts = [0]

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("tunnypy-worker"):
            starts[0] += 1
            if starts[0] == number:
                before()
                raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)


class HeldWake:
    """A parked worker's waker that counts wakes and delivers none, as if its thread were slow."""

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.wait_forever = waker.wait_forever
        self.wakes = 0

    def wait(self, timeout: float | None = None) -> bool:
        return self.waker.wait(timeout)

    def wake(self) -> None:
        self.wakes += 1


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

    @pytest.mark.parametrize("timed", [False, True])  # Pool.process inlines dispatch()
    def test_a_nested_call_behind_a_summoned_worker_is_counted(self, timed: bool) -> None:
        """A summoned worker not yet running looks free; retiring it must not strand the call."""
        pool = tunnypy.Pool.from_callback(1)
        core = pool._line
        go = threading.Event()
        outcome: list[object] = []

        def outer() -> None:  # on worker 0
            assert go.wait(WAIT)
            try:
                if timed:
                    outcome.append(pool.process_timed(lambda: "inner", WAIT))
                else:
                    outcome.append(pool.process(lambda: "inner"))
            except tunnypy.PoolDeadlockError as exc:
                outcome.append(exc)

        busy = pool.submit(outer)
        try:
            wait_for(lambda: pool.stats().busy == 1, "worker 0 to take the outer job")
            pool.set_size(2)
            wait_for(lambda: pool.stats().idle == 1, "worker 1 to park")
            summoned = core.idle[0]
            held = HeldWake(summoned.waker)
            summoned.waker = held  # its thread is "not scheduled yet"
            assert pool.submit(lambda: "x").cancel()  # summons worker 1, then leaves the line
            assert core.summoned is summoned and held.wakes == 1
            go.set()  # worker 0's call joins the line: worker 1 is on its way for it
            wait_for(lambda: pool.queue_length == 1, "worker 0's call to wait in line")
            pool.set_size(1)  # retires worker 1
            busy.result(WAIT)
            assert len(outcome) == 1 and isinstance(outcome[0], tunnypy.PoolDeadlockError)
            assert pool.stats().rejected == 1
        finally:
            summoned.waker = held.waker
            held.waker.wake()  # worker 1 answers the summons, and leaves
            go.set()
            busy.result(WAIT)
            assert pool.close(timeout=WAIT)
        assert pool.stats().workers == 0

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


class FailingIdle(list["Taker"]):
    """An idle stack whose ``append`` raises MemoryError, as if memory ran out as a worker parks."""

    def __init__(self, items: list[Taker], times: int, only: Taker | None) -> None:
        super().__init__(items)
        self.times = times
        self.only = only
        self.raised = 0

    def append(self, wrapper: Taker) -> None:
        if self.raised < self.times and (self.only is None or wrapper is self.only):
            self.raised += 1
            raise MemoryError("parking")
        super().append(wrapper)


def fail_parking(
    pool: tunnypy.Pool[Any, Any], times: int, only: Taker | None = None
) -> FailingIdle:
    core = pool._line
    with core.lock:
        core.idle = failing = FailingIdle(core.idle, times, only)
    return failing


class FailingWaker:
    """
    A worker's parking waker that raises OSError on its next *fail_next* wake-ups.

    Before raising it sets ``woken`` and waits for ``proceed`` (set unless a test clears it).
    ``parked`` is set while the worker sleeps on it.
    """

    def __init__(self, waker: Waker) -> None:
        self.waker = waker
        self.fail_next = 0
        self.raised = 0
        self.parked = threading.Event()
        self.woken = threading.Event()
        self.proceed = threading.Event()
        self.proceed.set()

    def wake(self) -> None:
        self.waker.wake()

    def wait(self, timeout: float | None = None) -> bool:
        return self.waker.wait(timeout)

    def wait_forever(self) -> None:
        self.parked.set()
        self.waker.wait_forever()
        self.parked.clear()
        if self.fail_next > 0:
            self.fail_next -= 1
            self.woken.set()
            assert self.proceed.wait(WAIT)
            self.raised += 1
            raise OSError("waking")


@pytest.fixture
def failing_wakers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every worker made from now on parks on a FailingWaker (unarmed) when it is handed jobs."""
    monkeypatch.setattr("tunnypy._worker_thread.new_waker", lambda: FailingWaker(new_waker()))


def parked_failing(
    pool: tunnypy.Pool[Any, Any], *, failed_already: bool, fail_next: int
) -> FailingWaker:
    """
    Make the worker next handed a job fail as it wakes, *fail_next* times; return once parked.

    With *failed_already*, it first fails once at once, on a stale wake (which parked workers
    tolerate: they only look again), holding no job.
    """
    wait_for(lambda: pool.stats().idle == pool.size, "every worker to park")
    fake = pool._line.idle[-1].fd_waker
    assert isinstance(fake, FailingWaker)
    wait_for(fake.parked.is_set, "the worker to sleep")
    if failed_already:
        fake.fail_next = 1
        fake.wake()
        assert fake.woken.wait(WAIT)
        fake.woken.clear()
        wait_for(lambda: fake.parked.is_set() and pool.stats().idle == pool.size, "a park")
    fake.fail_next = fail_next
    return fake


def handed_over_as_it_closes(pool: tunnypy.Pool[str, str], *, failed_already: bool) -> Call:
    """
    Hand the parked worker a call, close the pool while the worker holds it unstarted, then let
    its wake-up fail. Returns the call.
    """
    fake = parked_failing(pool, failed_already=failed_already, fail_next=1)
    fake.proceed.clear()
    try:
        call = Call(pool.process_timed, "second", WAIT)
        assert fake.woken.wait(WAIT)  # handed over; the worker holds it, not started
        assert pool.close(wait=False) is False
    finally:
        fake.proceed.set()
    return call


def fail_once_after_a_summons(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Make the next worker taking a future on a summons raise just after; ``[False]`` once done."""
    real_offer = Line.take_or_park
    armed = [True]

    def offer(self: Line, worker: Taker) -> Job | None:
        summoned = self.summoned is worker
        job = real_offer(self, worker)
        if armed[0] and summoned and job is not None and job.future is not None:
            armed[0] = False
            raise OSError("answering the summons")
        return job

    monkeypatch.setattr(Line, "take_or_park", offer)
    return armed


def replaced(pool: tunnypy.Pool[Any, Any], count: int) -> bool:
    """Whether *count* failed workers have left and been replaced: the pool is at its size."""
    stats = pool.stats()
    return stats.replaced == count and stats.workers == stats.size


def recording(ran: list[str]) -> Callable[[str], str]:
    def job(x: str) -> str:
        ran.append(x)
        return x

    return job


class TestOwnCodeFails:
    """
    A failure in tunnypy's own code in a worker's loop (here: memory running out as it parks, an
    error as it wakes) neither loses the job it holds nor the worker: that ended the thread.
    """

    @pytest.fixture(autouse=True)
    def errors(self, caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
        caplog.set_level(logging.ERROR, logger="tunnypy")
        return caplog

    def test_a_finished_job_is_delivered_and_the_worker_serves_on(
        self, errors: pytest.LogCaptureFixture
    ) -> None:
        """A function worker parks before it delivers: the parking fails, the result still comes."""
        ran: list[int] = []

        def job(x: int) -> int:
            ran.append(x)
            return x * 2

        with tunnypy.Pool.from_func(1, job) as pool:
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            failing = fail_parking(pool, times=1)
            assert pool.process_timed(5, WAIT) == 10
            assert failing.raised == 1
            assert pool.process_timed(6, WAIT) == 12
            assert ran == [5, 6]
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.completed) == (1, 1, 2)
        failed = [r for r in errors.records if "worker_failed" in r.getMessage()]
        assert len(failed) == 1
        assert "leaving=False" in failed[0].getMessage()
        assert failed[0].exc_info is not None
        assert failed[0].exc_info[0] is MemoryError

    @pytest.mark.usefixtures("failing_wakers")
    def test_a_job_handed_over_but_not_started_is_run_once(self) -> None:
        """The worker fails as it wakes holding a caller's job: it still runs it, once."""
        ran: list[str] = []
        with tunnypy.Pool.from_func(1, recording(ran)) as pool:
            fake = parked_failing(pool, failed_already=False, fail_next=1)
            assert pool.process_timed("second", WAIT) == "second"  # handed over, then the failure
            assert fake.raised == 1
            assert pool.process_timed("third", WAIT) == "third"
            assert ran == ["second", "third"]
            assert pool.stats().workers == 1

    @pytest.mark.usefixtures("failing_wakers")
    def test_a_job_handed_over_as_the_pool_closes_is_still_run(self) -> None:
        """As without the failure: a job handed to a worker before close() is served."""
        ran: list[str] = []
        pool = tunnypy.Pool.from_func(1, recording(ran))
        try:
            call = handed_over_as_it_closes(pool, failed_already=False)
            assert call.wait() == "second"
        finally:
            assert pool.close(timeout=WAIT)
        assert ran == ["second"]
        assert pool.stats().completed == 1

    @pytest.mark.usefixtures("failing_wakers")
    def test_leaving_its_job_goes_back_in_line_for_the_others(
        self, errors: pytest.LogCaptureFixture
    ) -> None:
        """Failing twice with no job served in between, it leaves; another worker runs its job."""
        ran: list[str] = []
        with tunnypy.Pool.from_func(2, recording(ran)) as pool:
            fake = parked_failing(pool, failed_already=True, fail_next=1)
            assert pool.process_timed("second", WAIT) == "second"
            assert fake.raised == 2
            assert ran == ["second"]
            wait_for(lambda: replaced(pool, 1), "the failing worker to be replaced")
            assert pool.process_timed("third", WAIT) == "third"
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.completed) == (2, 2, 2)
        left = [r.getMessage() for r in errors.records if "worker_failed" in r.getMessage()]
        assert ["leaving=True" in m for m in left] == [False, True]

    @pytest.mark.usefixtures("failing_wakers")
    def test_leaving_as_the_pool_closes_its_job_is_refused(self) -> None:
        """No one would serve the closed pool's line: the job is refused as close() refuses."""
        ran: list[str] = []
        pool = tunnypy.Pool.from_func(1, recording(ran))
        try:
            call = handed_over_as_it_closes(pool, failed_already=True)
            with pytest.raises(tunnypy.PoolClosedError):
                call.wait()
        finally:
            assert pool.close(timeout=WAIT)
        assert ran == []
        stats = pool.stats()
        assert (stats.completed, stats.rejected, stats.workers) == (0, 1, 0)

    @pytest.mark.usefixtures("failing_wakers")
    def test_leaving_with_a_future_it_took_the_future_fails_with_the_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A future marked running cannot wait in line again: its caller gets the failure."""
        ran: list[str] = []
        with tunnypy.Pool.from_func(1, recording(ran)) as pool:
            parked_failing(pool, failed_already=True, fail_next=0)
            armed = fail_once_after_a_summons(monkeypatch)
            future = pool.submit("lost?")  # summons the worker, which takes it and fails again
            error = future.exception(WAIT)
            assert armed == [False]
            assert isinstance(error, OSError)
            assert "answering the summons" in str(error)
            assert ran == []
            wait_for(lambda: replaced(pool, 1), "the failing worker to be replaced")
            assert pool.stats().failed == 1

    def test_a_future_taken_on_a_summons_but_not_started_is_still_run(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The worker fails just after taking a future from the line: it runs it all the same."""
        armed = fail_once_after_a_summons(monkeypatch)
        ran: list[str] = []
        with tunnypy.Pool.from_func(2, recording(ran)) as pool:
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            future = pool.submit("kept")  # summons a parked worker, which takes it and fails
            assert future.result(WAIT) == "kept"
            assert not armed[0]
            assert ran == ["kept"]
            stats = pool.stats()
            assert (stats.workers, stats.failed, stats.completed) == (2, 0, 1)

    def test_a_future_that_fails_to_start_stays_in_line_and_is_run(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Memory running out as a future in line is marked running: it is not lost."""
        real = JobFuture.set_running_or_notify_cancel
        raised: list[bool] = []

        def start(self: JobFuture) -> bool:
            if not raised:
                raised.append(True)
                raise MemoryError("starting")
            return real(self)

        ran: list[str] = []
        with tunnypy.Pool.from_func(1, recording(ran)) as pool:
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            monkeypatch.setattr(JobFuture, "set_running_or_notify_cancel", start)
            assert pool.submit("kept").result(WAIT) == "kept"
            assert raised == [True]
            assert ran == ["kept"]
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.waiting) == (1, 1, 0)

    def test_failing_again_with_no_job_served_the_worker_leaves_and_the_others_serve(
        self, errors: pytest.LogCaptureFixture
    ) -> None:
        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, factory)
        try:
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            core = pool._line
            target = core.idle[-1]  # the next to be handed a job
            fail_parking(pool, times=100, only=target)
            assert pool.process_timed(lambda: "first", WAIT) == "first"
            wait_for(lambda: replaced(pool, 1), "the failing worker to be replaced")
            assert target.worker.terminated == 1  # type: ignore[attr-defined]
            served = [pool.process_timed(functools.partial(int, n), WAIT) for n in range(3)]
            assert served == [0, 1, 2]
            stats = pool.stats()
            assert (stats.size, stats.workers, stats.completed) == (2, 2, 4)
        finally:
            assert pool.close(timeout=WAIT)
        left = [r.getMessage() for r in errors.records if "worker_failed" in r.getMessage()]
        assert left[-1].count("leaving=True") == 1
        assert all("leaving=False" in message for message in left[:-1])


class RaisingHandler(logging.Handler):
    """A logging handler that raises on the events named (all, if none), as a broken one may."""

    def __init__(self, *events: str) -> None:
        super().__init__(logging.DEBUG)
        self.events = events
        self.raised = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not self.events or any(message.startswith(event) for event in self.events):
            self.raised += 1
            raise RuntimeError(f"broken handler: {message}")


@contextlib.contextmanager
def handler_on_tunnypy(handler: logging.Handler) -> Iterator[None]:
    logger = logging.getLogger("tunnypy")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class TestBrokenLoggingHandler:
    """A logging handler that raises inside a worker's loop is a failure of tunnypy's own code."""

    def test_failing_as_it_logs_a_failed_job_the_future_it_took_next_is_run(self) -> None:
        """A function worker takes its next job before it delivers: that job must not be lost."""
        gate = Gate()

        def job(x: str) -> str:
            if x == "bad":
                gate()
                raise BoomError("bad")
            return x

        handler = RaisingHandler("job_failed")
        with tunnypy.Pool.from_func(1, job) as pool:
            bad = Call(pool.process_timed, "bad", WAIT)
            assert gate.started.wait(WAIT)
            following = pool.submit("next")
            assert pool.stats().waiting == 1
            with handler_on_tunnypy(handler):
                gate.release.set()
                with pytest.raises(BoomError):
                    bad.wait()
                assert following.result(WAIT) == "next"
            assert handler.raised == 1
            assert pool.process_timed("after", WAIT) == "after"
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.failed) == (1, 2, 1)

    def test_failing_on_every_event_a_withdrawn_job_and_the_next_still_resolve(self) -> None:
        """The recovery neither repeats the log that failed nor lets its own log end the worker."""
        gate = Gate()
        ran: list[str] = []

        def job(x: str) -> str:
            ran.append(x)
            return gate(x) if x == "given up" else x

        handler = RaisingHandler()
        with tunnypy.Pool.from_func(1, job) as pool:
            token = tunnypy.CancelToken()
            given_up = Call(pool.process_ctx, "given up", token)
            assert gate.started.wait(WAIT)
            following = Call(pool.process_timed, "next", WAIT)
            wait_for(lambda: pool.stats().waiting == 1, "the next call to wait in line")
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                given_up.wait()
            with handler_on_tunnypy(handler):
                gate.release.set()  # delivering it logs job_abandoned, which raises
                assert following.wait() == "next"
                assert pool.process_timed("after", WAIT) == "after"
            assert handler.raised >= 2  # job_abandoned, then worker_failed
            assert ran == ["given up", "next", "after"]
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.cancelled) == (1, 2, 1)

    def test_failing_as_a_worker_starts_it_still_serves(self) -> None:
        handler = RaisingHandler("worker_started")
        with handler_on_tunnypy(handler), tunnypy.Pool.from_func(2, str) as pool:
            assert [pool.process_timed(n, WAIT) for n in range(3)] == ["0", "1", "2"]
            wait_for(lambda: handler.raised == 2, "both workers to have logged")
            assert pool.stats().workers == 2
