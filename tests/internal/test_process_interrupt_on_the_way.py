"""
A process worker's caller that gives up while its job is on its way to the child.

The worker thread has taken the job and passed its check for a withdrawn
job, so the job will run; the caller's interrupt() lands on the parent's
proxy either before ``process()`` has marked the job sent (it is kept as
``pending`` and sent with the job) or while the job is being sent (it goes
on the control pipe, perhaps ahead of the job). Either way the child's
``interrupt()`` runs once, before the job starts, the job sees
``interrupted()`` from its start, and the next job runs clean. Each
interleaving is forced: the worker thread stops at that point until the
caller has its error, and the caller's deadline passes only once the
worker thread has stopped there (``ClockHeldUntil``). In the second, the
child also takes the job in only once its control thread has the interrupt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tunnypy
import tunnypy._job
import tunnypy._pool
import tunnypy._process
from tests.helpers import WAIT, Call, wait_for
from tests.paths import ClockHeldUntil
from tests.process_helpers import Board, Recorded, records

AnyPool = tunnypy.Pool[Any, Any]


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(str(tmp_path))


@pytest.fixture
def pool(board: Board) -> Iterator[AnyPool]:
    # A long kill_grace: the given-up job returns at once, never killed.
    made: AnyPool = tunnypy.Pool(1, records(board), isolation="process", kill_grace=WAIT)
    with made:
        wait_for(lambda: made.stats().idle == 1, "the worker to park")
        yield made


def recorded_once_interrupted(board: Board, value: str) -> Recorded:
    """In the child, as the job is unpickled: wait until its control thread took the interrupt."""
    runner = tunnypy._job.current_runner()
    assert isinstance(runner, tunnypy._process._ChildRunner)
    deadline = time.monotonic() + WAIT
    while runner.interrupted_up_to < 1:  # the first job's number
        if time.monotonic() > deadline:
            raise AssertionError("the interrupt never reached the child's control thread")
        time.sleep(0.001)
    return Recorded(board, value)


class SentLate:
    """A payload whose pickling, on the worker thread, waits until its caller has given up."""

    def __init__(self, board: Board, value: str) -> None:
        self.board = board
        self.value = value
        self.sending = threading.Event()
        self.go = threading.Event()

    def __reduce__(self) -> tuple[Any, ...]:
        self.sending.set()
        if not self.go.wait(WAIT):
            raise AssertionError("the payload was never let go")
        return recorded_once_interrupted, (self.board, self.value)


def give_up_on_the_way(
    pool: AnyPool, payload: object, stopped: threading.Event, go: threading.Event
) -> None:
    """Call with a deadline that passes once the worker thread is *stopped*; then let it *go*."""
    caller = Call(pool.process_timed, payload, 0.001)
    with pytest.raises(tunnypy.JobTimedOutError):
        caller.wait()
    assert stopped.is_set(), "the caller gave up before the worker thread took its job"
    go.set()


def assert_interrupted_once_before_it_ran(pool: AnyPool, board: Board) -> None:
    assert pool.process(Recorded(board, "next")) == "next"
    child = board.lines("started")[0]
    assert board.lines("order") == [f"given-up {child} True", f"next {child} False"]
    assert board.lines("interrupts") == [child]
    stats = pool.stats()
    assert (stats.completed, stats.timed_out, stats.killed, stats.respawned) == (1, 1, 0, 0)


class TestGivingUpWhileTheJobIsOnItsWay:
    def test_an_interrupt_before_the_job_is_sent_goes_with_it(
        self, pool: AnyPool, board: Board, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given up after the worker took the job, before process() sent it: sent interrupted."""
        stopped, go = threading.Event(), threading.Event()
        ended = tunnypy._process._ended

        def ended_once_given_up(child: Any) -> bool:
            # First thing process() does, before it marks the job sent.
            stopped.set()
            if not go.wait(WAIT):
                raise AssertionError("process() was never let go")
            return ended(child)

        monkeypatch.setattr(tunnypy._process, "_ended", ended_once_given_up)
        monkeypatch.setattr(tunnypy._pool, "_monotonic", ClockHeldUntil(stopped.is_set))
        give_up_on_the_way(pool, Recorded(board, "given-up"), stopped, go)
        assert_interrupted_once_before_it_ran(pool, board)

    def test_an_interrupt_sent_ahead_of_the_job_is_found_when_it_arrives(
        self, pool: AnyPool, board: Board, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Given up while process() pickles the job: the child has the interrupt before the job."""
        payload = SentLate(board, "given-up")
        monkeypatch.setattr(tunnypy._pool, "_monotonic", ClockHeldUntil(payload.sending.is_set))
        give_up_on_the_way(pool, payload, payload.sending, payload.go)
        assert_interrupted_once_before_it_ran(pool, board)
