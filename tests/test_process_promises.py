"""
The pool's promises (tests/test_promises.py) again, for workers in child processes.

Same call paths (tests/paths.py), same promises: first come first served,
an interrupt reaches only the job it was meant for, close, resize, errors.
Jobs are the picklable ones of tests/process_helpers.py; what a child did is
read from its :class:`Board`. Public API only, but for the clock that
``process_timed`` deadlines read, held still until a job has started so
that its caller gives up on it running (``given_up_while_running``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import tunnypy
import tunnypy._pool
from tests.helpers import WAIT, wait_for
from tests.paths import PATHS, CallPath, ClockHeldUntil, Pending
from tests.process_helpers import Board, BoomError, Held, Recorded, raise_boom, records

AnyPool = tunnypy.Pool[Any, Any]


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(str(tmp_path))


def parked_pool(size: int, board: Board) -> AnyPool:
    """A pool of *size* children, returned once every worker is parked."""
    # A long kill_grace: no test here waits long enough to see a kill.
    pool: AnyPool = tunnypy.Pool(size, records(board), isolation="process", kill_grace=WAIT)
    wait_for(lambda: pool.stats().idle == size, "every worker to park")
    return pool


def hold(
    pool: AnyPool, path: CallPath, board: Board, name: str, value: Any = None
) -> tuple[Held, Pending]:
    """Start a held job through *path* and return once it runs in a child."""
    job = Held(board, name, value)
    pending = path.start(pool, job)
    assert job.started.wait(), "the held job never started"
    return job, pending


def joined(pool: AnyPool) -> int:
    stats = pool.stats()
    return stats.waiting + stats.timed_out + stats.cancelled


def queue(pool: AnyPool, path: CallPath, payload: Any, *, give_up: bool = False) -> Pending:
    """Start a call through *path* and return once it has joined the line."""
    before = joined(pool)
    pending = path.start(pool, payload, give_up=give_up)
    wait_for(lambda: joined(pool) == before + 1, f"{path} caller to join the line")
    return pending


def order(board: Board) -> list[str]:
    """The values of the Recorded jobs, in the order they ran."""
    return [line.split()[0] for line in board.lines("order")]


def given_up_while_running(
    path: CallPath, size: int, board: Board, monkeypatch: pytest.MonkeyPatch
) -> tuple[AnyPool, Held, Pending]:
    """
    A pool with one held job running in a child, whose caller (on *path*) will give up.

    A ``process_timed`` caller's deadline passes only once the job runs in
    its child (``ClockHeldUntil``): never while the job is on its way there,
    where the worker may skip it or send it interrupted.
    """
    pool = parked_pool(size, board)
    job = Held(board, "given-up")
    monkeypatch.setattr(tunnypy._pool, "_monotonic", ClockHeldUntil(job.started.is_set))
    pending = path.start(pool, job, give_up=True)
    assert job.started.wait(), "the held job never started"
    return pool, job, pending


class TestFirstComeFirstServed:
    """Callers waiting in line are served in the order they arrived."""

    def test_waiting_callers_are_served_in_arrival_order(
        self, waiting_path: CallPath, board: Board
    ) -> None:
        """Callers on this path, queued among callers on the others, run in order."""
        others = [path for path in PATHS.values() if path.waits_in_line and not path.reused]
        with parked_pool(1, board) as pool:
            blocker, blocked = hold(pool, waiting_path, board, "blocker")
            calls = []
            for i in range(6):
                path = waiting_path if i % 2 == 0 else others[i // 2 % len(others)]
                calls.append(queue(pool, path, Recorded(board, i)))
            blocker.release.set()
            assert blocked.result() is None
            assert [call.result() for call in calls] == list(range(6))
        assert order(board) == [str(i) for i in range(6)]

    def test_a_caller_that_leaves_the_line_keeps_the_others_order(
        self, leaving_path: CallPath, board: Board
    ) -> None:
        """A caller giving up in line leaves it, its job never runs, no one is interrupted."""
        with parked_pool(1, board) as pool:
            blocker, blocked = hold(pool, leaving_path, board, "blocker")
            first = queue(pool, leaving_path, Recorded(board, 1))
            leaver = queue(pool, leaving_path, Recorded(board, 2), give_up=True)
            last = queue(pool, leaving_path, Recorded(board, 3))
            leaver.give_up()
            assert leaving_path.left_the_line(leaver.error())
            blocker.release.set()
            assert (blocked.result(), first.result(), last.result()) == (None, 1, 3)
            assert blocker.interrupted() is False
        assert order(board) == ["1", "3"]
        assert board.lines("interrupts") == []


class TestInterruptOnlyTheIntendedJob:
    """A caller that gives up interrupts its own job in its child, and no other."""

    def test_giving_up_interrupts_the_running_job_once(
        self, interrupting_path: CallPath, board: Board, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The caller gets its error; the child's interrupt() ran once; interrupted() was True."""
        pool, job, pending = given_up_while_running(interrupting_path, 1, board, monkeypatch)
        with pool:
            pending.give_up()
            assert interrupting_path.interrupted_its_job(pending.error())
            wait_for(lambda: len(board.lines("interrupts")) == 1, "the child's interrupt()")
            job.release.set()
            assert interrupting_path.start(pool, Recorded(board, "next")).result() == "next"
            assert job.interrupted() is True
            assert board.lines("order") == [f"next {job.ran_on()} False"]
            assert board.lines("interrupts") == [str(job.ran_on())]
        stats = pool.stats()
        assert (stats.completed, stats.cancelled + stats.timed_out, stats.killed) == (1, 1, 0)

    def test_giving_up_interrupts_no_job_on_another_worker(
        self, interrupting_path: CallPath, board: Board, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Of two running jobs in two children, only the given-up one is interrupted."""
        pool, given_up, pending = given_up_while_running(interrupting_path, 2, board, monkeypatch)
        with pool:
            kept, kept_pending = hold(pool, interrupting_path, board, "kept", "kept")
            assert given_up.ran_on() != kept.ran_on()
            pending.give_up()
            assert interrupting_path.interrupted_its_job(pending.error())
            # The interrupt crosses a pipe: it lands in the child soon after.
            wait_for(lambda: len(board.lines("interrupts")) == 1, "the child's interrupt()")
            given_up.release.set()
            kept.release.set()
            assert kept_pending.result() == "kept"
            assert given_up.finished.wait()
            assert (given_up.interrupted(), kept.interrupted()) == (True, False)
            assert board.lines("interrupts") == [str(given_up.ran_on())]

    def test_the_next_job_waits_for_the_childs_interrupt_to_return(
        self, call_path: CallPath, board: Board
    ) -> None:
        """While the child's interrupt() runs, its next job does not start, and runs clean."""
        board.flag("interrupt.hold").set()
        with parked_pool(1, board) as pool:
            given_up, pending = hold(pool, PATHS["process_ctx"], board, "given-up")
            pending.give_up()
            assert board.flag("interrupt.inside").wait()
            given_up.release.set()  # the job returns while its interrupt() still runs
            assert given_up.finished.wait()
            nxt = Recorded(board, "next")
            if call_path.waits_in_line:
                following = call_path.start(pool, nxt)
                wait_for(lambda: pool.stats().busy == 1, "the next job to be handed over")
                assert board.lines("order") == [], "the next job started inside interrupt()"
                board.flag("interrupt.leave").set()
            else:
                board.flag("interrupt.leave").set()
                wait_for(lambda: pool.stats().idle == 1, "the worker to park")
                following = call_path.start(pool, nxt)
            assert following.result() == "next"
            assert isinstance(pending.error(), tunnypy.JobCancelledError)
            assert given_up.interrupted() is True
            assert board.lines("order") == [f"next {given_up.ran_on()} False"]
            assert len(board.lines("interrupts")) == 1

    def test_giving_up_in_line_interrupts_no_one(
        self, leaving_path: CallPath, board: Board
    ) -> None:
        """A caller that gives up before any worker took its job interrupts no child."""
        with parked_pool(1, board) as pool:
            running, running_pending = hold(pool, PATHS["process"], board, "running")
            leaver = queue(pool, leaving_path, Recorded(board, "never"), give_up=True)
            leaver.give_up()
            assert leaving_path.left_the_line(leaver.error())
            running.release.set()
            assert running_pending.result() is None
            assert running.interrupted() is False
            assert pool.process(Recorded(board, "after")) == "after"
            assert order(board) == ["after"]
            assert board.lines("interrupts") == []


class TestClose:
    """close() refuses waiting callers at once; running jobs finish; every child ends."""

    def test_waiting_callers_are_refused_at_once(
        self, waiting_path: CallPath, board: Board
    ) -> None:
        """Callers in line get PoolClosedError while the running job still holds its child."""
        pool = parked_pool(1, board)
        running = Held(board, "running", "finished")
        try:
            pending = waiting_path.start(pool, running)
            assert running.started.wait()
            waiting = [queue(pool, waiting_path, Recorded(board, n)) for n in range(3)]
            assert pool.close(wait=False) is False
            for call in waiting:
                assert isinstance(call.error(), tunnypy.PoolClosedError)
            assert not pending.done()
            running.release.set()
            assert pending.result() == "finished"
        finally:
            running.release.set()
            assert pool.close(timeout=WAIT)
        assert order(board) == []
        stats = pool.stats()
        assert (stats.completed, stats.rejected) == (1, 3)

    def test_running_jobs_finish_and_deliver(self, call_path: CallPath, board: Board) -> None:
        """Jobs running when close() is called finish; then every child's terminate() runs."""
        pool = parked_pool(2, board)
        first, second = Held(board, "first", 1), Held(board, "second", 2)
        try:
            first_pending = call_path.start(pool, first)
            assert first.started.wait()
            second_pending = call_path.start(pool, second)
            assert second.started.wait()
            closer = threading.Thread(target=pool.close, kwargs={"timeout": WAIT})
            closer.start()
            wait_for(lambda: pool.closed, "the pool to close")
            first.release.set()
            second.release.set()
            assert (first_pending.result(), second_pending.result()) == (1, 2)
            closer.join(WAIT)
            assert not closer.is_alive()
            assert sorted(board.lines("terminated")) == sorted(board.lines("started"))
        finally:
            first.release.set()
            second.release.set()
            assert pool.close(timeout=WAIT)

    def test_calls_after_close_are_refused(self, call_path: CallPath, board: Board) -> None:
        """Once closed, every call on this path gets PoolClosedError and nothing runs."""
        pool = parked_pool(1, board)
        assert pool.close(timeout=WAIT)
        assert isinstance(
            call_path.start(pool, Recorded(board, "never")).error(), tunnypy.PoolClosedError
        )
        assert order(board) == []


class TestResize:
    """Growing starts children that serve the line; shrinking retires the idle one first."""

    def test_growing_serves_the_waiting_callers(self, waiting_path: CallPath, board: Board) -> None:
        """set_size() up: new children take the callers in line while the old one stays busy."""
        with parked_pool(1, board) as pool:
            blocker, blocked = hold(pool, waiting_path, board, "blocker")
            jobs = [Held(board, f"job{n}", n) for n in range(2)]
            waiting = [queue(pool, waiting_path, job) for job in jobs]
            pool.set_size(3)
            for job in jobs:
                assert job.started.wait(), "a waiting caller was not served by the growth"
            old = blocker.ran_on()
            assert {job.ran_on() for job in jobs} == {int(p) for p in board.lines("started")[1:]}
            assert old not in {job.ran_on() for job in jobs}
            for job in jobs:
                job.release.set()
            assert [call.result() for call in waiting] == [0, 1]
            blocker.release.set()
            assert blocked.result() is None

    def test_shrinking_retires_the_idle_worker_first(
        self, call_path: CallPath, board: Board
    ) -> None:
        """set_size() down with one child busy and one idle ends the idle one."""
        with parked_pool(2, board) as pool:
            busy, pending = hold(pool, call_path, board, "busy", "kept")
            idle = next(int(p) for p in board.lines("started") if int(p) != busy.ran_on())
            pool.set_size(1)
            wait_for(lambda: board.lines("terminated") == [str(idle)], "the idle child to end")
            busy.release.set()
            assert pending.result() == "kept"
            wait_for(lambda: pool.stats().idle == 1, "the busy worker to park")
            assert call_path.start(pool, Recorded(board, "after")).result() == "after"
            assert board.lines("order") == [f"after {busy.ran_on()} False"]


class TestErrors:
    """A job's exception reaches its caller, type kept, child's traceback attached."""

    def test_the_jobs_exception_reaches_its_caller(self, call_path: CallPath, board: Board) -> None:
        """BoomError arrives with the child's traceback as __cause__; the child serves on."""
        with parked_pool(1, board) as pool:
            got = call_path.start(pool, raise_boom).error()
            assert isinstance(got, BoomError)
            assert str(got) == "from the child"
            assert "raise_boom" in str(got.__cause__)
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            assert call_path.start(pool, Recorded(board, "after")).result() == "after"
            stats = pool.stats()
            assert (stats.workers, stats.failed, stats.completed, stats.respawned) == (1, 1, 1, 0)

    def test_an_error_reaches_only_its_own_caller(
        self, waiting_path: CallPath, board: Board
    ) -> None:
        """Of callers queued on one child, only the one whose job raised gets an error."""
        with parked_pool(1, board) as pool:
            blocker, blocked = hold(pool, waiting_path, board, "blocker")
            before = queue(pool, waiting_path, Recorded(board, "before"))
            failing = queue(pool, waiting_path, raise_boom)
            after = queue(pool, waiting_path, Recorded(board, "after"))
            blocker.release.set()
            assert blocked.result() is None
            assert (before.result(), after.result()) == ("before", "after")
            assert isinstance(failing.error(), BoomError)

    def test_each_caller_gets_its_own_result(self, waiting_path: CallPath, board: Board) -> None:
        """Many callers racing on two children each get back their own job's value."""
        with parked_pool(2, board) as pool:
            pending = [waiting_path.start(pool, Recorded(board, n)) for n in range(20)]
            assert [p.result() for p in pending] == list(range(20))
