"""
The promises of docs/semantics.md, each run on every call path.

A test takes one of the ``*_path`` fixtures (see tests/paths.py) and makes
every call it is about through that path, so ``process``, ``process_timed``,
``process_ctx``, ``submit`` and the ``try_*`` calls all keep the same promise.
Public API only: these tests must hold whatever the core looks like inside.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

import attrs
import pytest

import tunnypy
import tunnypy._pool
from tests.helpers import WAIT, wait_for
from tests.paths import PATHS, CallPath, ClockHeldUntil, Pending

Payload = Callable[["SuiteWorker"], Any]


class SuiteWorker(tunnypy.BaseWorker[Payload, Any]):
    """Runs ``payload(self)``; counts interrupts (then runs *on_interrupt*), notes terminate()."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.lock = threading.Lock()
        self.interrupts = 0
        self.on_interrupt: Callable[[], None] = lambda: None
        self.terminated = threading.Event()

    def process(self, payload: Payload) -> Any:
        return payload(self)

    def interrupt(self) -> None:
        with self.lock:
            self.interrupts += 1
        self.on_interrupt()

    def terminate(self) -> None:
        self.terminated.set()

    def __repr__(self) -> str:
        return f"<worker {self.number}>"


class Factory:
    """Makes SuiteWorkers numbered from 0 in the order made, and keeps them."""

    def __init__(self) -> None:
        self.made: list[SuiteWorker] = []

    def __call__(self) -> SuiteWorker:
        self.made.append(SuiteWorker(len(self.made)))
        return self.made[-1]


def parked_pool(size: int) -> tuple[tunnypy.Pool[Payload, Any], Factory]:
    """A pool of SuiteWorkers, returned once every worker is parked, waiting for a job."""
    factory = Factory()
    pool: tunnypy.Pool[Payload, Any] = tunnypy.Pool(size, factory)
    wait_for(lambda: pool.stats().idle == size, "every worker to park")
    return pool, factory


@attrs.define(eq=False)
class Held:
    """A job that records where it runs, waits to be released, then records interrupted()."""

    value: Any = None
    started: threading.Event = attrs.Factory(threading.Event)
    release: threading.Event = attrs.Factory(threading.Event)
    finished: threading.Event = attrs.Factory(threading.Event)
    ran_on: SuiteWorker | None = None
    interrupted: bool | None = None

    def __call__(self, worker: SuiteWorker) -> Any:
        self.ran_on = worker
        self.started.set()
        if not self.release.wait(WAIT):
            raise AssertionError("held job was never released")
        self.interrupted = tunnypy.interrupted()
        self.finished.set()
        return self.value


@attrs.define(eq=False)
class Recorded:
    """A job that appends its value to a shared list (in the order jobs run) and returns it."""

    value: Any
    order: list[Any]
    ran_on: SuiteWorker | None = None
    interrupted: bool | None = None

    def __call__(self, worker: SuiteWorker) -> Any:
        self.ran_on = worker
        self.interrupted = tunnypy.interrupted()
        self.order.append(self.value)
        return self.value


def hold(
    pool: tunnypy.Pool[Payload, Any], path: CallPath, value: Any = None, *, give_up: bool = False
) -> tuple[Held, Pending]:
    """Start a held job through *path* and return once it runs on a worker."""
    job = Held(value)
    pending = path.start(pool, job, give_up=give_up)
    assert job.started.wait(WAIT), "the held job never started"
    return job, pending


def given_up_while_running(
    path: CallPath, size: int, monkeypatch: pytest.MonkeyPatch
) -> tuple[tunnypy.Pool[Payload, Any], Factory, Held, Pending]:
    """
    A pool of *size* workers, one running a held job whose caller (on *path*) will give up.

    A ``process_timed`` caller's deadline passes only once the job has
    started (``ClockHeldUntil``), never while it is on its way to the
    worker, which would skip it unstarted.
    """
    pool, factory = parked_pool(size)
    job = Held()
    monkeypatch.setattr(tunnypy._pool, "_monotonic", ClockHeldUntil(job.started.is_set))
    pending = path.start(pool, job, give_up=True)
    assert job.started.wait(WAIT), "the held job never started"
    return pool, factory, job, pending


def joined(pool: tunnypy.Pool[Payload, Any]) -> int:
    """Callers that joined the line: those in it, and those that left it by giving up."""
    stats = pool.stats()  # one snapshot: a caller leaving moves from one count to the other
    return stats.waiting + stats.timed_out + stats.cancelled


def queue(
    pool: tunnypy.Pool[Payload, Any], path: CallPath, payload: Payload, *, give_up: bool = False
) -> Pending:
    """Start a call through *path* and return once it has joined the line behind the others."""
    before = joined(pool)
    pending = path.start(pool, payload, give_up=give_up)
    # A process_timed caller meant to give up may have left the line already.
    wait_for(lambda: joined(pool) == before + 1, f"{path} caller to join the line")
    return pending


def returning(result: object) -> Payload:
    """A job that returns *result* itself."""
    return lambda worker: result


class TestFirstComeFirstServed:
    """Callers waiting in line are served in the order they arrived (semantics section 3)."""

    def test_waiting_callers_are_served_in_arrival_order(self, waiting_path: CallPath) -> None:
        """Callers on this path, queued one by one among callers on the others, run in order."""
        others = [path for path in PATHS.values() if path.waits_in_line and not path.reused]
        order: list[int] = []
        pool, _ = parked_pool(1)
        with pool:
            blocker, blocked = hold(pool, waiting_path)
            calls = []
            for i in range(8):
                path = waiting_path if i % 2 == 0 else others[i // 2 % len(others)]
                calls.append(queue(pool, path, Recorded(i, order)))
            blocker.release.set()
            assert blocked.result() is None
            assert [call.result() for call in calls] == list(range(8))
        assert order == list(range(8))

    def test_a_caller_that_leaves_the_line_keeps_the_others_order(
        self, leaving_path: CallPath
    ) -> None:
        """A caller giving up in line leaves it, its job never runs, the rest keep their order."""
        order: list[int] = []
        pool, factory = parked_pool(1)
        with pool:
            blocker, blocked = hold(pool, leaving_path)
            first = queue(pool, leaving_path, Recorded(1, order))
            leaver = queue(pool, leaving_path, Recorded(2, order), give_up=True)
            last = queue(pool, leaving_path, Recorded(3, order))
            leaver.give_up()
            assert leaving_path.left_the_line(leaver.error())
            wait_for(lambda: pool.queue_length == 2, "the caller that gave up to leave the line")
            blocker.release.set()
            assert (blocked.result(), first.result(), last.result()) == (None, 1, 3)
            assert factory.made[0].interrupts == 0  # leaving the line interrupts no one
            assert blocker.interrupted is False
        assert order == [1, 3]
        stats = pool.stats()
        assert (stats.completed, stats.cancelled + stats.timed_out) == (3, 1)

    def test_a_caller_is_served_at_once_by_an_idle_worker(self, call_path: CallPath) -> None:
        """With a worker parked and nobody in line, the call runs without waiting."""
        pool, _ = parked_pool(1)
        with pool:
            job, pending = hold(pool, call_path, value="served")
            job.release.set()
            assert pending.result() == "served"
            assert pool.queue_length == 0


class TestInterruptOnlyTheIntendedJob:
    """A caller that gives up interrupts its own job and no other (semantics section 1)."""

    def test_giving_up_interrupts_the_running_job_once(
        self, interrupting_path: CallPath, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The caller gets its error; interrupt() runs once; interrupted() is True in that job."""
        pool, factory, job, pending = given_up_while_running(interrupting_path, 1, monkeypatch)
        with pool:
            pending.give_up()
            assert interrupting_path.interrupted_its_job(pending.error())
            assert factory.made[0].interrupts == 1
            job.release.set()
            nxt = Recorded("next", [])
            assert interrupting_path.start(pool, nxt).result() == "next"
            assert job.interrupted is True
            assert nxt.interrupted is False
            assert factory.made[0].interrupts == 1
        stats = pool.stats()
        assert (stats.completed, stats.cancelled + stats.timed_out) == (1, 1)

    def test_giving_up_interrupts_no_job_on_another_worker(
        self, interrupting_path: CallPath, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Of two running jobs, only the one whose caller gave up is interrupted."""
        pool, factory, given_up, pending = given_up_while_running(interrupting_path, 2, monkeypatch)
        with pool:
            kept, kept_pending = hold(pool, interrupting_path, value="kept")
            assert given_up.ran_on is not kept.ran_on
            pending.give_up()
            assert interrupting_path.interrupted_its_job(pending.error())
            given_up.release.set()
            kept.release.set()
            assert kept_pending.result() == "kept"
            assert given_up.finished.wait(WAIT)  # its outcome goes to no one
            assert (given_up.interrupted, kept.interrupted) == (True, False)
            assert given_up.ran_on is not None and kept.ran_on is not None
            assert (given_up.ran_on.interrupts, kept.ran_on.interrupts) == (1, 0)
            assert sum(w.interrupts for w in factory.made) == 1

    def test_the_next_job_on_the_same_worker_is_not_interrupted(self, call_path: CallPath) -> None:
        """While interrupt() runs its worker starts nothing; the next job, any path, runs clean."""
        pool, factory = parked_pool(1)
        worker = factory.made[0]
        inside, leave = threading.Event(), threading.Event()

        def slow_interrupt() -> None:
            inside.set()
            assert leave.wait(WAIT), "interrupt() was never let go"

        worker.on_interrupt = slow_interrupt
        with pool:
            given_up, pending = hold(pool, PATHS["process_ctx"])
            pending.give_up()  # interrupt() runs on the caller's thread, and blocks there
            assert inside.wait(WAIT)
            given_up.release.set()  # the job returns while its interrupt() still runs
            nxt = Recorded("next", [])
            if call_path.waits_in_line:
                following = call_path.start(pool, nxt)
                # In line, or handed to the worker, which holds it until interrupt() returns.
                wait_for(
                    lambda: pool.stats().waiting + pool.stats().busy == 1 or nxt.ran_on is not None,
                    "the next job to be in line or handed over",
                )
                assert nxt.ran_on is None, "the next job started while interrupt() still ran"
                leave.set()
            else:
                leave.set()  # a try_* call is refused while the worker is held: ask after
                wait_for(lambda: pool.stats().idle == 1, "the worker to park")
                following = call_path.start(pool, nxt)
            assert following.result() == "next"
            assert isinstance(pending.error(), tunnypy.JobCancelledError)
            assert (given_up.interrupted, nxt.interrupted) == (True, False)
            assert worker.interrupts == 1

    def test_giving_up_in_line_interrupts_no_one(self, leaving_path: CallPath) -> None:
        """A caller that gives up before any worker took its job interrupts no worker."""
        pool, factory = parked_pool(1)
        with pool:
            running, running_pending = hold(pool, PATHS["process"])
            ran = Recorded("never", [])
            leaver = queue(pool, leaving_path, ran, give_up=True)
            leaver.give_up()
            assert leaving_path.left_the_line(leaver.error())
            running.release.set()
            assert running_pending.result() is None
            assert running.interrupted is False
            assert factory.made[0].interrupts == 0
            assert pool.process(Recorded("after", [])) == "after"
            assert ran.ran_on is None

    def test_a_call_that_got_its_result_interrupts_nothing(self, call_path: CallPath) -> None:
        """Giving up after the result arrived (cancel the token, the future) interrupts no job."""
        pool, factory = parked_pool(1)
        with pool:
            for n in range(5):
                pending = call_path.start(pool, Recorded(n, []))
                assert pending.result() == n
                if pending.give_up_by is not None:
                    pending.give_up()
                wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            following = Recorded("next", [])
            assert call_path.start(pool, following).result() == "next"
            assert following.interrupted is False
            assert factory.made[0].interrupts == 0
        assert pool.stats().completed == 6


class TestClose:
    """close() refuses waiting callers at once; running jobs finish (semantics section 4)."""

    def test_waiting_callers_are_refused_at_once(self, waiting_path: CallPath) -> None:
        """Callers in line get PoolClosedError while the running job still holds its worker."""
        pool, _ = parked_pool(1)
        running = Held(value="finished")
        try:
            pending = waiting_path.start(pool, running)
            assert running.started.wait(WAIT)
            ran: list[int] = []
            waiting = [queue(pool, waiting_path, Recorded(n, ran)) for n in range(3)]
            assert pool.close(wait=False) is False
            for call in waiting:
                assert isinstance(call.error(), tunnypy.PoolClosedError)
            assert not pending.done()  # refused before the running job ended
            running.release.set()
            assert pending.result() == "finished"
            assert ran == []
        finally:
            running.release.set()
            assert pool.close(timeout=WAIT)
        stats = pool.stats()
        assert (stats.completed, stats.rejected) == (1, 3)

    def test_running_jobs_finish_and_deliver(self, call_path: CallPath) -> None:
        """A job running when close() is called runs to its end and its caller gets the result."""
        pool, factory = parked_pool(2)
        first, second = Held(value=1), Held(value=2)
        try:
            first_pending = call_path.start(pool, first)
            assert first.started.wait(WAIT)
            second_pending = call_path.start(pool, second)
            assert second.started.wait(WAIT)
            closer = threading.Thread(target=pool.close, kwargs={"timeout": WAIT})
            closer.start()
            wait_for(lambda: pool.closed, "the pool to close")
            first.release.set()
            second.release.set()
            assert (first_pending.result(), second_pending.result()) == (1, 2)
            closer.join(WAIT)
            assert not closer.is_alive()
            assert all(w.terminated.is_set() for w in factory.made)
        finally:
            first.release.set()
            second.release.set()
            assert pool.close(timeout=WAIT)
        assert pool.stats().completed == 2

    def test_calls_after_close_are_refused_and_nothing_runs(self, call_path: CallPath) -> None:
        """Once closed, every call on this path gets PoolClosedError and no job starts."""
        pool, _ = parked_pool(1)
        assert pool.close(timeout=WAIT)
        job = Recorded("never", [])
        assert isinstance(call_path.start(pool, job).error(), tunnypy.PoolClosedError)
        assert job.ran_on is None
        assert pool.stats().rejected == 1


class TestResize:
    """Growing serves waiting callers; shrinking retires idle workers first (section 2)."""

    def test_growing_serves_the_waiting_callers(self, waiting_path: CallPath) -> None:
        """set_size() up: the new workers take the callers in line while the old one stays busy."""
        pool, factory = parked_pool(1)
        with pool:
            blocker, blocked = hold(pool, waiting_path)
            jobs = [Held(value=n) for n in range(2)]
            waiting = []
            for job in jobs:
                waiting.append(queue(pool, waiting_path, job))
            pool.set_size(3)
            for job in jobs:
                assert job.started.wait(WAIT), "a waiting caller was not served by the growth"
            assert {job.ran_on for job in jobs} == set(factory.made[1:])
            for job in jobs:
                job.release.set()
            assert [call.result() for call in waiting] == [0, 1]
            blocker.release.set()
            assert blocked.result() is None

    def test_shrinking_retires_the_idle_worker_first(self, call_path: CallPath) -> None:
        """set_size() down with one worker busy and one idle retires the idle one."""
        pool, factory = parked_pool(2)
        with pool:
            busy, pending = hold(pool, call_path, value="kept")
            idle = next(w for w in factory.made if w is not busy.ran_on)
            pool.set_size(1)
            assert idle.terminated.wait(WAIT)
            wait_for(lambda: pool.stats().workers == 1, "the idle worker to leave")
            busy.release.set()
            assert pending.result() == "kept"
            wait_for(lambda: pool.stats().idle == 1, "the busy worker to park")
            after = Recorded("after", [])
            assert call_path.start(pool, after).result() == "after"
            assert after.ran_on is busy.ran_on is not None
            assert not busy.ran_on.terminated.is_set()

    def test_a_retiring_worker_is_never_handed_a_job(self, waiting_path: CallPath) -> None:
        """The busy worker retired by a shrink delivers its job and leaves; the line waits on."""
        pool, factory = parked_pool(2)
        with pool:
            older, older_pending = hold(pool, waiting_path, value="older")
            newer, newer_pending = hold(pool, waiting_path, value="newer")
            waiting = Recorded("waiting", [])
            waiting_pending = queue(pool, waiting_path, waiting)
            pool.set_size(1)  # no worker idle: the newest of the busy ones retires
            retiring = factory.made[1]
            job, pending = (older, older_pending)
            if newer.ran_on is retiring:
                job, pending = (newer, newer_pending)
            job.release.set()
            assert pending.result() == job.value
            assert retiring.terminated.wait(WAIT)
            wait_for(lambda: pool.stats().workers == 1, "the retired worker to leave")
            assert pool.queue_length == 1
            assert waiting.ran_on is None
            (older if job is newer else newer).release.set()
            assert waiting_pending.result() == "waiting"
            assert waiting.ran_on is factory.made[0]
            assert older_pending.result() == "older"
            assert newer_pending.result() == "newer"


class BoomError(Exception):
    """An error a job raises on purpose."""


def raise_from_the_job(error: BaseException) -> Payload:
    def job_that_raises(worker: SuiteWorker) -> Any:
        raise error

    return job_that_raises


class TestErrors:
    """A job's exception reaches its caller with its traceback; the worker serves on (section 6)."""

    @pytest.mark.parametrize(
        "error",
        [BoomError("job"), SystemExit(3), KeyboardInterrupt()],
        ids=lambda error: type(error).__name__,
    )
    def test_the_jobs_exception_reaches_its_caller(
        self, call_path: CallPath, error: BaseException
    ) -> None:
        """The caller gets the very exception, its traceback through the job's own frame."""
        pool, factory = parked_pool(1)
        with pool:
            got = call_path.start(pool, raise_from_the_job(error)).error()
            assert got is error
            frames = [frame.name for frame in traceback.extract_tb(got.__traceback__)]
            assert "job_that_raises" in frames
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            after = Recorded("after", [])
            assert call_path.start(pool, after).result() == "after"
            assert after.ran_on is factory.made[0]
            stats = pool.stats()
            assert (stats.workers, stats.failed, stats.completed) == (1, 1, 1)

    def test_an_error_reaches_only_its_own_caller(self, waiting_path: CallPath) -> None:
        """Of callers queued on one worker, only the one whose job raised gets an error."""
        pool, _ = parked_pool(1)
        with pool:
            blocker, blocked = hold(pool, waiting_path)
            before = queue(pool, waiting_path, Recorded("before", []))
            failing = queue(pool, waiting_path, raise_from_the_job(BoomError("mine")))
            after = queue(pool, waiting_path, Recorded("after", []))
            blocker.release.set()
            assert blocked.result() is None
            assert (before.result(), after.result()) == ("before", "after")
            error = failing.error()
            assert isinstance(error, BoomError) and str(error) == "mine"


class TestResultDelivery:
    """Each caller gets the object its own job returned."""

    def test_each_caller_gets_its_own_result(self, waiting_path: CallPath) -> None:
        """Many callers racing on two workers each get back their own job's object."""
        results = [object() for _ in range(40)]
        pool, _ = parked_pool(2)
        with pool:
            pending = [waiting_path.start(pool, returning(r)) for r in results]
            assert all(p.result() is r for p, r in zip(pending, results, strict=True))
        assert pool.stats().completed == 40

    def test_a_free_worker_returns_the_jobs_object(self, call_path: CallPath) -> None:
        """One call at a time, on any path, returns the job's object itself."""
        pool, _ = parked_pool(1)
        with pool:
            for _ in range(5):
                result = object()
                assert call_path.start(pool, returning(result)).result() is result
                wait_for(lambda: pool.stats().idle == 1, "the worker to park")
