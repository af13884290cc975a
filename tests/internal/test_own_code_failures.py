"""A failure of tunnypy's own code in a worker's loop, injected, loses no job and no worker."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    RecordingFactory,
    replaced,
    wait_for,
)
from tunnypy._future import JobFuture
from tunnypy._job import Job
from tunnypy._line import Line, Taker
from tunnypy._waker import Waker, new_waker


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
    fake = pool._line.idle[-1].waker
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
