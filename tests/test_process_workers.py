"""
Workers in child processes (``isolation="process"``): where the hooks run, kill, crash, recycle.

Every job, worker and factory comes from tests/process_helpers.py, so that it
pickles; a child and the test meet on a :class:`Board` (files), never by sleeping.
"""

from __future__ import annotations

import functools
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, wait_for
from tests.process_helpers import (
    Board,
    BoomError,
    ChildWorker,
    ExitWith,
    FailWhen,
    Flag,
    Grow,
    Held,
    ReadyWorker,
    Recorded,
    Stuck,
    UntilInterrupted,
    alive,
    failing_factory,
    interrupts,
    is_interrupted,
    jobs_run,
    kill_myself,
    pid,
    raise_boom,
    raise_unpicklable,
    records,
    return_lock,
    rss,
    segfault,
    square,
    unpicklable_factory_result,
)

AnyPool = tunnypy.Pool[Any, Any]


@pytest.fixture
def board(tmp_path: Path) -> Board:
    return Board(str(tmp_path))


def process_pool(size: int, board: Board | None = None, **options: Any) -> AnyPool:
    factory = records(board) if board is not None else ChildWorker
    return tunnypy.Pool(size, factory, isolation="process", **options)


@pytest.fixture
def pool(board: Board) -> Iterator[AnyPool]:
    """One worker in a child process, recording on the board."""
    pool = process_pool(1, board)
    yield pool
    assert pool.close(timeout=WAIT)


class TestWhereWorkersLive:
    """Each worker is a child process that calls the factory once and holds the worker."""

    def test_each_worker_is_its_own_child_and_its_factory_ran_there(self, board: Board) -> None:
        """Two workers, two children, neither this process; the factory ran in each."""
        with process_pool(2, board) as pool:
            first = Held(board, "first")
            pending = pool.submit(first)
            assert first.started.wait()
            other = pool.process(pid)
            first.release.set()
            pending.result(WAIT)
            pids = {first.ran_on(), other}
            assert len(pids) == 2
            assert os.getpid() not in pids
            assert sorted(map(int, board.lines("started"))) == sorted(pids)

    def test_the_worker_is_resident_between_jobs(self, pool: AnyPool) -> None:
        """The worker object lives on in its child: its state carries from job to job."""
        assert [pool.process(jobs_run) for _ in range(3)] == [1, 2, 3]

    def test_from_func_calls_fn_in_the_child(self) -> None:
        """Pool.from_func(fn, isolation='process') runs fn there."""
        with tunnypy.Pool.from_func(1, square, isolation="process") as pool:
            assert pool.process(7) == 49

    def test_spawn_is_a_start_method_too(self) -> None:
        """Processes('spawn') starts its children fresh; they serve as forkserver's do."""
        with tunnypy.Pool(1, ChildWorker, isolation=tunnypy.Processes("spawn")) as pool:
            assert pool.process(jobs_run) == 1
            assert pool.process(pid) != os.getpid()

    def test_terminate_runs_in_the_child_when_the_pool_closes(self, board: Board) -> None:
        """close() runs each worker's terminate() in its child, which then ends."""
        pool = process_pool(2, board)
        pids = set(map(int, board.lines("started")))
        assert pool.close(timeout=WAIT)
        assert set(map(int, board.lines("terminated"))) == pids
        wait_for(lambda: not any(alive(p) for p in pids), "the children to end")

    def test_block_until_ready_runs_in_the_child_before_each_job(self, board: Board) -> None:
        """It runs there after the factory and after each job; the worker waits for it."""
        with tunnypy.Pool(1, functools.partial(ReadyWorker, board), isolation="process") as pool:
            child = pool.process(pid)
            wait_for(lambda: len(board.lines("ready")) == 2, "block_until_ready after the job")
            board.flag("ready.hold").set()
            pool.process(Recorded(board, "first"))
            assert board.flag("ready.inside").wait()  # held after the first job
            second = pool.submit(Recorded(board, "second"))
            wait_for(lambda: pool.stats().waiting == 1, "the second call to wait in line")
            assert [line.split()[0] for line in board.lines("order")] == ["first"]
            board.flag("ready.go").set()
            assert second.result(WAIT) == "second"
            assert set(board.lines("ready")) == {str(child)}


def give_up_once_started(pool: AnyPool, job: Any, started: Flag) -> tuple[Any, float]:
    """Call process_ctx(job), cancel its token once the job runs; its error, and how long after."""
    token = tunnypy.CancelToken()
    call = Call(pool.process_ctx, job, token)
    assert started.wait(), "the job never started"
    gave_up = time.monotonic()
    token.cancel()
    assert call.done.wait(WAIT)
    return call.error, time.monotonic() - gave_up


class TestInterrupt:
    """A caller that gives up interrupts the job in the child; one that ignores it is killed."""

    def test_giving_up_makes_interrupted_true_in_the_child(self, board: Board) -> None:
        """The child's interrupt() runs and interrupted() turns True there; the child serves on."""
        # A kill_grace no loaded machine outlasts: the job heeds its interrupt,
        # so its child is never killed, however late it gets to run.
        with process_pool(1, board, kill_grace=WAIT) as pool:
            before = pool.process(pid)
            job = UntilInterrupted(board, "job")
            error, _ = give_up_once_started(pool, job, board.flag("job.started"))
            assert isinstance(error, tunnypy.JobCancelledError)
            assert board.flag("job.saw").wait()
            assert board.flag("job.saw").read() == "True"
            assert board.lines("interrupts") == [str(before)]
            # It returned within kill_grace: the same child serves on, clean.
            assert pool.process(pid) == before
            assert pool.process(is_interrupted) is False
            assert pool.process(interrupts) == 1
            assert pool.stats().killed == 0

    def test_a_job_that_ignores_its_interrupt_is_killed_and_its_child_replaced(
        self, board: Board
    ) -> None:
        """After kill_grace the child is killed; the caller had its error at once, before that."""
        with process_pool(1, board) as pool:  # kill_grace: 1 s, the default
            first = pool.process(pid)
            error, after = give_up_once_started(
                pool, Stuck(board, "stuck"), board.flag("stuck.started")
            )
            assert isinstance(error, tunnypy.JobCancelledError)
            assert after < 0.9  # not kill_grace later
            assert alive(first)
            wait_for(lambda: not alive(first), "the stuck child to be killed")
            second = pool.process(pid)
            assert second != first
            assert pool.process(jobs_run) == 2  # a fresh worker: its factory ran anew
            stats = pool.stats()
            assert (stats.killed, stats.respawned, stats.crashed) == (1, 1, 0)
            assert (stats.cancelled, stats.workers) == (1, 1)
            assert board.lines("started") == [str(first), str(second)]

    def test_a_timed_out_job_is_killed_too(self, board: Board) -> None:
        """process_timed: a deadline that passes while the job runs leads to the kill as well."""
        with process_pool(1, board, kill_grace=0) as pool:
            first = pool.process(pid)
            for attempt, timeout in enumerate((0.2, 1.0, 5.0)):
                name = f"stuck{attempt}"
                with pytest.raises(tunnypy.JobTimedOutError):
                    pool.process_timed(Stuck(board, name), timeout)
                if pool.process(pid) != first:  # the worker served again only once replaced
                    break
                assert not board.flag(f"{name}.started").is_set()  # given up before it began
            else:
                raise AssertionError("the job never started before its deadline")
            assert board.flag(f"{name}.started").read() == str(first)
            assert pool.stats().killed == 1

    def test_kill_grace_zero_kills_at_once(self, board: Board) -> None:
        """kill_grace=0: the job is killed as its caller gives up; the worker serves anew."""
        with process_pool(1, board, kill_grace=0) as pool:
            first = pool.process(pid)
            error, _ = give_up_once_started(
                pool, Stuck(board, "stuck"), board.flag("stuck.started")
            )
            assert isinstance(error, tunnypy.JobCancelledError)
            assert pool.process(pid) != first
            assert pool.stats().killed == 1

    def test_the_worker_is_offered_again_only_once_its_new_child_is_ready(
        self, board: Board
    ) -> None:
        """A call waiting in line behind a killed job runs in the new child, after its factory."""
        with process_pool(1, board, kill_grace=0) as pool:
            first = pool.process(pid)
            token = tunnypy.CancelToken()
            stuck = Call(pool.process_ctx, Stuck(board, "stuck"), token)
            assert board.flag("stuck.started").wait()
            waiting = pool.submit(pid)
            wait_for(lambda: pool.stats().waiting == 1, "the call to wait in line")
            token.cancel()
            assert stuck.done.wait(WAIT)
            assert isinstance(stuck.error, tunnypy.JobCancelledError)
            second = waiting.result(WAIT)
            assert second != first
            assert board.lines("started") == [str(first), str(second)]


class TestCrash:
    """A child that dies during a job fails only that job, with WorkerCrashedError."""

    @pytest.mark.parametrize(
        ("job", "named"),
        [
            (ExitWith(3), "exit code 3"),
            (segfault, "killed by SIGSEGV"),
            (kill_myself, "killed by SIGKILL"),
        ],
        ids=["os._exit", "segfault", "SIGKILL"],
    )
    def test_a_crash_fails_only_its_job(self, board: Board, job: Any, named: str) -> None:
        """The crashed job's caller gets WorkerCrashedError naming why; the other job finishes."""
        with process_pool(2, board) as pool:
            other = Held(board, "other", value="fine")
            pending = pool.submit(other)
            assert other.started.wait()
            with pytest.raises(tunnypy.WorkerCrashedError, match=named) as caught:
                pool.process(job)
            assert isinstance(caught.value, RuntimeError)
            other.release.set()
            assert pending.result(WAIT) == "fine"
            # The crashed worker is offered again once its new child is ready.
            wait_for(lambda: pool.stats().idle == 2, "both workers to be ready")
            stats = pool.stats()
            assert (stats.crashed, stats.respawned, stats.failed, stats.workers) == (1, 1, 1, 2)

    def test_a_child_killed_between_jobs_fails_no_job(self, pool: AnyPool) -> None:
        """A child killed while idle is replaced before its worker's next job."""
        first = pool.process(pid)
        os.kill(first, 9)
        wait_for(lambda: not alive(first), "the child to die")
        assert pool.process(pid) != first
        stats = pool.stats()
        assert (stats.crashed, stats.respawned, stats.failed) == (1, 1, 0)

    def test_a_factory_failing_as_a_child_is_replaced_fails_the_next_job_only(
        self, board: Board
    ) -> None:
        """The job that finds no child gets WorkerCrashedError naming the factory's error."""
        flag = board.flag("fail")
        with tunnypy.Pool(1, FailWhen(flag), isolation="process") as pool:
            first = pool.process(pid)
            flag.set()
            os.kill(first, 9)
            wait_for(lambda: not alive(first), "the child to die")
            with pytest.raises(
                tunnypy.WorkerCrashedError,
                match="worker process could not be started again: BoomError: told to fail",
            ) as caught:
                pool.process(pid)
            assert isinstance(caught.value.__cause__, BoomError)
            os.remove(flag.path)
            assert pool.process(pid) not in (first, os.getpid())
            assert pool.stats().crashed == 1


class TestRecycle:
    """A child is replaced between jobs once it ran max_jobs_per_child or outgrew its memory."""

    def test_max_jobs_per_child(self, board: Board) -> None:
        """Every third job the child is replaced; each old child's terminate() ran."""
        with process_pool(1, board, max_jobs_per_child=3) as pool:
            pids = [pool.process(pid) for _ in range(7)]
            assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6]
            assert board.lines("terminated") == [str(pids[0]), str(pids[3])]
            stats = pool.stats()
            assert (stats.children_recycled, stats.respawned, stats.completed) == (2, 2, 7)

    def test_max_memory_per_child(self, board: Board) -> None:
        """A job that leaves the child above the limit is its last; the next runs in a new one."""
        with tunnypy.Pool(1, records(board), isolation="process") as probe:
            baseline = probe.process(rss)
        limit = baseline + 64 * 2**20
        with process_pool(1, board, max_memory_per_child=limit) as pool:
            first = pool.process(pid)
            assert pool.process(Grow(16 * 2**20)) == first  # still under the limit
            assert pool.process(pid) == first
            assert pool.process(Grow(96 * 2**20)) == first  # ran whole, then over
            second = pool.process(pid)
            assert second != first
            assert pool.stats().children_recycled == 1


class TestAcrossTheBoundary:
    """Payloads, results and errors are pickled; what does not pickle fails only its call."""

    def test_an_unpicklable_payload_fails_its_call_and_changes_nothing(self, pool: AnyPool) -> None:
        """A lambda payload: the pickling error reaches the caller; the same child serves on."""
        first = pool.process(pid)
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            pool.process(lambda worker: None)
        assert pool.process(pid) == first
        assert pool.process(jobs_run) == 3  # the lambda never reached the child
        stats = pool.stats()
        assert (stats.failed, stats.respawned) == (1, 0)

    def test_an_unpicklable_result_fails_its_call_naming_the_type(self, pool: AnyPool) -> None:
        """A job returning a lock: TypeError naming it; the worker serves on in the same child."""
        first = pool.process(pid)
        with pytest.raises(TypeError, match=r"job result of type lock cannot be pickled"):
            pool.process(return_lock)
        assert pool.process(pid) == first

    def test_a_jobs_exception_keeps_its_type_and_carries_the_childs_traceback(
        self, pool: AnyPool
    ) -> None:
        """The job's BoomError arrives as one, its __cause__ holding the child's traceback."""
        with pytest.raises(BoomError, match="from the child") as caught:
            pool.process(raise_boom)
        cause = caught.value.__cause__
        assert isinstance(cause, Exception)
        assert "raise_boom" in str(cause)
        assert 'raise BoomError("from the child")' in str(cause)
        assert pool.process(jobs_run) == 2

    def test_an_exception_that_does_not_pickle_arrives_as_a_runtime_error(
        self, pool: AnyPool
    ) -> None:
        """An exception that cannot cross arrives as RuntimeError naming its type and message."""
        with pytest.raises(RuntimeError, match=r"UnpicklableError: 1-2") as caught:
            pool.process(raise_unpicklable)
        assert "raise_unpicklable" in str(caught.value.__cause__)


class TestFactory:
    """The factory is pickled and called in the child; its failure reaches the grower."""

    def test_a_factory_that_raises_in_the_child_fails_the_growth(self, board: Board) -> None:
        """Pool() raises the child's error, with its traceback; no child is left."""
        with pytest.raises(BoomError, match="factory failed in the child") as caught:
            tunnypy.Pool(1, failing_factory, isolation="process")
        assert "failing_factory" in str(caught.value.__cause__)

    def test_a_growth_whose_factory_fails_keeps_the_size(self, board: Board) -> None:
        """set_size() raises the factory's error and the pool keeps its size."""
        flag = board.flag("fail")
        with tunnypy.Pool(1, FailWhen(flag), isolation="process") as pool:
            flag.set()
            with pytest.raises(BoomError):
                pool.set_size(2)
            assert pool.size == 1
            assert pool.process(pid) != os.getpid()

    def test_a_factory_that_does_not_pickle_is_refused(self) -> None:
        """A lambda factory: the pickling error, and nothing started."""
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            tunnypy.Pool(1, lambda: ChildWorker(None), isolation="process")

    def test_a_factory_that_returns_no_worker(self) -> None:
        """A factory returning a lock: the TypeError naming it, from the child."""
        with pytest.raises(TypeError, match="worker_factory must return a worker"):
            tunnypy.Pool(1, unpicklable_factory_result, isolation="process")
