"""
A process worker whose child cannot be started again leaves as failed and is replaced.

The child crashes during a job, and the factory then fails in the new child
(``FailTimes``, counting on a :class:`Board`): the worker does not hand the
factory's error to the callers after it; the pool replaces it with the
replacement's backoff, and callers wait within their deadlines
(docs/processes.md, "Crashes"; docs/semantics.md, "Workers that come back").
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, wait_for
from tests.process_helpers import Board, BoomError, CrashWhenReleased, FailTimes, kill_myself, pid

AnyPool = tunnypy.Pool[Any, Any]

# Waits of the backoff after each of the first three factory failures
# (tunnypy/_lifecycle.py: _BACKOFF_FIRST, doubling).
_BACKOFF_3 = 0.05 + 0.1 + 0.2


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(str(tmp_path))


def crash(pool: AnyPool, factory: FailTimes) -> None:
    """Arm the factory, then crash the child during a job (that job alone fails)."""
    factory.armed.set()
    with pytest.raises(tunnypy.WorkerCrashedError, match="SIGKILL"):
        pool.process(kill_myself)


def test_the_worker_is_replaced_after_the_backoff_and_no_call_gets_the_factorys_error(
    board: Board, caplog: pytest.LogCaptureFixture
) -> None:
    """Three factory failures: the next call waits for the replacement, and is served."""
    caplog.set_level(logging.INFO, logger="tunnypy")
    factory = FailTimes(board, 3)
    with tunnypy.Pool(1, factory, isolation="process") as pool:
        first = pool.process(pid)
        began = time.monotonic()
        crash(pool, factory)
        served = pool.process(pid)  # not WorkerCrashedError naming BoomError
        waited = time.monotonic() - began
        assert served != first
        assert len(board.lines("failures")) == 3
        # The restart's failure was the first try: the backoff runs from there.
        assert waited >= _BACKOFF_3
        stats = pool.stats()
        assert (stats.replaced, stats.factory_failures) == (1, 3)
        assert (stats.failed, stats.completed, stats.crashed) == (1, 2, 1)
        # The old worker leaves the list just after its replacement is started.
        wait_for(lambda: pool.stats().workers == 1, "the failed worker to leave")
        assert pool.stats().size == 1
    failing = [r for r in caplog.records if r.getMessage().startswith("worker_factory_failing")]
    recovered = [r for r in caplog.records if r.getMessage().startswith("worker_factory_recovered")]
    assert len(failing) == 1  # once per streak
    assert len(recovered) == 1
    assert "failures=3" in recovered[0].getMessage()


def test_callers_in_line_are_served_by_the_replacement(board: Board) -> None:
    """Calls waiting behind the crashing job stay in line and run in the replacement's child."""
    factory = FailTimes(board, 2)
    with tunnypy.Pool(1, factory, isolation="process") as pool:
        crashing = CrashWhenReleased(board, "crash")
        doomed = pool.submit(crashing)
        assert crashing.started.wait()
        behind = [pool.submit(pid) for _ in range(3)]
        wait_for(lambda: pool.stats().waiting == 3, "three calls in line")
        factory.armed.set()
        crashing.release.set()
        with pytest.raises(tunnypy.WorkerCrashedError, match="SIGKILL"):
            doomed.result(WAIT)
        pids = {future.result(WAIT) for future in behind}
        assert int(crashing.started.read()) not in pids
        stats = pool.stats()
        assert (stats.replaced, stats.factory_failures, stats.failed) == (1, 2, 1)


def test_a_caller_with_a_deadline_gets_timed_out_at_its_deadline(board: Board) -> None:
    """While the factory keeps failing, a process_timed call ends at its deadline, not sooner."""
    factory = FailTimes(board, 10**6)
    with tunnypy.Pool(1, factory, isolation="process") as pool:
        crash(pool, factory)
        began = time.monotonic()
        with pytest.raises(tunnypy.JobTimedOutError):
            pool.process_timed(pid, timeout=0.3)
        waited = time.monotonic() - began
        assert 0.3 <= waited < WAIT
        assert pool.stats().timed_out == 1
        wait_for(lambda: pool.stats().factory_failures >= 2, "the replacement to be failing")


def test_stall_timeout_fails_a_call_with_no_deadline_naming_the_factorys_error(
    board: Board,
) -> None:
    """No worker for stall_timeout: a process() waiting in line gets PoolStalledError."""
    factory = FailTimes(board, 10**6)
    with tunnypy.Pool(1, factory, isolation="process", stall_timeout=0.2) as pool:
        crash(pool, factory)
        with pytest.raises(tunnypy.PoolStalledError, match="BoomError: told to fail"):
            pool.process(pid)
        assert pool.stats().replaced == 0


def test_once_the_factory_recovers_the_pool_serves_again(board: Board) -> None:
    """After a stall, a factory that works again brings a worker back."""
    factory = FailTimes(board, 4)
    with tunnypy.Pool(1, factory, isolation="process", stall_timeout=0.01) as pool:
        crash(pool, factory)
        wait_for(lambda: len(board.lines("failures")) == 4, "four factory failures")
        wait_for(lambda: pool.stats().replaced == 1, "the replacement")
        assert pool.process(pid) > 0
        assert pool.stats().factory_failures == 4


def test_the_factorys_error_is_the_cause_in_the_log(
    board: Board, caplog: pytest.LogCaptureFixture
) -> None:
    """The leaving worker logs worker_failed with the factory's error as the cause."""
    caplog.set_level(logging.INFO, logger="tunnypy")
    factory = FailTimes(board, 1)
    with tunnypy.Pool(1, factory, isolation="process") as pool:
        crash(pool, factory)
        assert pool.process(pid) > 0
    failed = [r for r in caplog.records if r.getMessage().startswith("worker_failed")]
    assert len(failed) == 1
    assert failed[0].exc_info is not None
    error = failed[0].exc_info[1]
    assert isinstance(error, Exception)
    assert "could not be started again: BoomError: told to fail" in str(error)
    assert isinstance(error.__cause__, BoomError)


def test_a_new_streak_waits_its_own_stall_timeout(board: Board) -> None:
    """A worker that served and then cannot restart its child is not stalled by an old streak."""
    stall = 2.0
    factory = FailTimes(board, 10**6)
    with tunnypy.Pool(1, factory, isolation="process", stall_timeout=stall) as pool:
        crash(pool, factory)
        wait_for(lambda: len(board.lines("failures")) >= 2, "the replacement to fail")
        os.remove(factory.armed.path)
        assert pool.process(pid) > 0  # the first streak is over
        ended = time.monotonic()
        wait_for(lambda: time.monotonic() - ended > stall, "stall_timeout to pass", stall + WAIT)
        crash(pool, factory)
        failures = len(board.lines("failures"))
        caller = pool.submit(pid)
        wait_for(lambda: len(board.lines("failures")) >= failures + 2, "the replacement to fail")
        os.remove(factory.armed.path)
        assert caller.result(WAIT) > 0  # not PoolStalledError
