"""
The pool's promises with its workers on a Dask cluster (tunnypy.contrib.dask.DaskWorkers).

Most tests share one in-process ``LocalCluster`` (``processes=False``): its
actors live in this process, so a job reaches the test's events through the
registry below (payloads are pickled, so they name events instead of holding
them). The tests that kill a Dask worker use a cluster of worker processes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import pickle
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, wait_for
from tests.paths import PATHS, CallPath, Pending

distributed = pytest.importorskip("distributed")

from tunnypy.contrib.dask import DaskWorkers  # noqa: E402 - only once distributed is there

# --- jobs, reached by name: the actors run in this process --------------------------------

_events: dict[str, threading.Event] = {}
_records: dict[str, list[Any]] = {}
_names = itertools.count()
_made: list[DaskSuite] = []


def event(name: str) -> threading.Event:
    return _events.setdefault(name, threading.Event())


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


class BoomError(Exception):
    pass


class UnpicklableError(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


class DaskSuite(tunnypy.BaseWorker[tuple[str, Any], Any]):
    """
    A worker for the in-process cluster; payloads are ``(op, arg)``.

    ``hold``: sets ``<arg>-in``, waits for ``<arg>-go`` or for the caller to give
    up, and records whether ``tunnypy.interrupted()`` was true at its end.
    """

    def __init__(self) -> None:
        self.interrupts = 0
        self.number = len(_made)
        _made.append(self)

    def process(self, payload: tuple[str, Any]) -> Any:
        op, arg = payload
        if op == "echo":
            return arg
        if op == "who":
            return self.number
        if op == "record":
            _records.setdefault("order", []).append(arg)
            return arg
        if op == "hold":
            event(f"{arg}-in").set()
            deadline = time.monotonic() + WAIT
            go = event(f"{arg}-go")
            while not go.wait(0.005) and time.monotonic() < deadline:
                if tunnypy.interrupted():
                    break
            _records[arg] = [self.number, tunnypy.interrupted()]
            event(f"{arg}-out").set()
            return arg
        if op == "deaf":  # ignores interrupted(): returns only when let go
            event(f"{arg}-in").set()
            assert event(f"{arg}-go").wait(WAIT)
            return arg
        if op == "raise":
            raise BoomError(arg)
        if op == "raise_unpicklable":
            raise UnpicklableError
        if op == "unpicklable_result":
            return threading.Lock()
        raise AssertionError(op)

    def interrupt(self) -> None:
        self.interrupts += 1


class FailingFactory:
    def __call__(self) -> DaskSuite:
        raise BoomError("no worker today")


# --- the clusters -----------------------------------------------------------------------

_process_wide = ("Dask-Offload",)
"""Dask's offload executor: one thread per process, made once, never ended."""


def threads_checked_by_module_fixture(thread: threading.Thread) -> bool:
    """The threads of this module's clusters: checked when the cluster closes (conftest)."""
    names = ("IO loop", "TCP-Executor", "asyncio_", "AsyncProcess Dask", "QueueFeederThread")
    return "Dask-" in thread.name or thread.name.startswith(names)


class _ClusterThreads:
    """Every thread a cluster started has ended once it is closed (the module-level leak check)."""

    def __init__(self) -> None:
        self.before = set(threading.enumerate())

    def check(self) -> None:
        deadline = time.monotonic() + WAIT
        left = []
        for thread in set(threading.enumerate()) - self.before:
            if thread.name.startswith(_process_wide):
                continue
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                left.append(thread.name)
        assert not left, f"the cluster left threads running: {sorted(left)}"


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """An in-process LocalCluster of 2 one-thread Dask workers, and its client."""
    threads = _ClusterThreads()
    cluster = distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()
    threads.check()


@pytest.fixture(scope="module")
def proc_client() -> Iterator[Any]:
    """A LocalCluster of 2 Dask worker processes (each under a nanny), and its client."""
    threads = _ClusterThreads()
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    )
    client = distributed.Client(cluster, set_as_default=False)
    yield client
    client.close()
    cluster.close()
    threads.check()


def dask_pool(client: Any, size: int, **options: Any) -> tunnypy.Pool[Any, Any]:
    return tunnypy.Pool(size, DaskSuite, isolation=DaskWorkers(client), **options)


def held(pool: tunnypy.Pool[Any, Any], path: CallPath, **start: Any) -> tuple[str, Pending]:
    """A job started on *path* that holds its worker until its ``-go`` event."""
    name = fresh("held")
    pending = path.start(pool, ("hold", name), **start)
    assert event(f"{name}-in").wait(WAIT), "the held job never started"
    return name, pending


def in_line(pool: tunnypy.Pool[Any, Any], count: int) -> bool:
    return pool.queue_length == count


def cluster_size(client: Any) -> int:
    return len(client.scheduler_info()["workers"])


# --- promises ---------------------------------------------------------------------------


class TestFirstComeFirstServed:
    def test_waiting_callers_are_served_in_arrival_order(
        self, client: Any, waiting_path: CallPath
    ) -> None:
        """Callers queued behind a busy Dask actor run in the order they arrived."""
        _records["order"] = []
        with dask_pool(client, 1) as pool:
            name, blocker = held(pool, PATHS["process"])
            calls = []
            for i in range(6):
                calls.append(waiting_path.start(pool, ("record", i)))
                wait_for(functools.partial(in_line, pool, i + 1), "the call to be in line")
            event(f"{name}-go").set()
            assert blocker.result() == name
            assert [call.result() for call in calls] == list(range(6))
        assert _records["order"] == list(range(6))


class TestInterruptOnlyTheIntendedJob:
    def test_giving_up_interrupts_the_remote_job_and_not_the_next(
        self, client: Any, interrupting_path: CallPath
    ) -> None:
        """interrupted() turns true in the given-up job on the Dask worker; the next runs clean."""
        with dask_pool(client, 1) as pool:
            name, pending = held(pool, interrupting_path, give_up=True, after=0.3)
            pending.give_up()
            assert interrupting_path.interrupted_its_job(pending.error())
            assert event(f"{name}-out").wait(WAIT), "the job never saw interrupted()"
            assert _records[name][1] is True
            after, following = held(pool, interrupting_path)
            event(f"{after}-go").set()
            assert following.result() == after
            assert _records[after][1] is False
            worker = _made[_records[name][0]]
            assert worker.interrupts == 1

    def test_giving_up_interrupts_no_job_on_another_worker(
        self, client: Any, interrupting_path: CallPath
    ) -> None:
        """Of two running jobs on two actors, only the given-up one is interrupted."""
        with dask_pool(client, 2) as pool:
            gone, pending = held(pool, interrupting_path, give_up=True, after=0.3)
            kept, kept_pending = held(pool, PATHS["process"])
            pending.give_up()
            assert interrupting_path.interrupted_its_job(pending.error())
            assert event(f"{gone}-out").wait(WAIT)
            event(f"{kept}-go").set()
            assert kept_pending.result() == kept
            assert (_records[gone][1], _records[kept][1]) == (True, False)
            assert _records[gone][0] != _records[kept][0]
            assert _made[_records[kept][0]].interrupts == 0

    def test_an_interrupt_arriving_late_reaches_no_later_job(self, client: Any) -> None:
        """A job that returns just as its caller gives up: the next job is not interrupted."""
        with dask_pool(client, 1) as pool:
            for _ in range(20):
                name = fresh("late")
                event(f"{name}-go").set()  # returns at once: the deadline races its return
                with contextlib.suppress(tunnypy.JobTimedOutError):
                    pool.process_timed(("hold", name), 0.0005)
                after = fresh("after")
                event(f"{after}-go").set()
                assert pool.process(("hold", after)) == after
                assert _records[after][1] is False


class TestClose:
    def test_close_refuses_the_line_lets_the_running_job_finish_and_releases(
        self, client: Any
    ) -> None:
        """Waiting callers are refused at once; the running job delivers; actors are let go."""
        workers = DaskWorkers(client)
        pool = tunnypy.Pool(1, DaskSuite, isolation=workers)
        name, running = held(pool, PATHS["process"])
        waiting = PATHS["process"].start(pool, ("echo", 1))
        wait_for(lambda: pool.queue_length == 1, "a caller in line")
        closing = threading.Thread(target=pool.close, name="closer")
        closing.start()
        assert isinstance(waiting.error(), tunnypy.PoolClosedError)
        event(f"{name}-go").set()
        assert running.result() == name
        closing.join(WAIT)
        assert not closing.is_alive()
        with pytest.raises(tunnypy.PoolClosedError):
            pool.process(("echo", 2))
        # The user's client and cluster are left as given, with no actor of the pool.
        assert client.status == "running"
        wait_for(
            lambda: (
                not any(
                    key.startswith("tunnypy-")
                    for keys in client.has_what().values()
                    for key in map(str, keys)
                )
            ),
            "the actors to be released",
        )

    def test_local_closes_the_cluster_it_made_with_the_last_pool(self) -> None:
        """DaskWorkers.local(n): its cluster ends with the pool; it refuses pools after that."""
        workers = DaskWorkers.local(1, processes=False, dashboard_address=":0")
        with tunnypy.Pool(1, DaskSuite, isolation=workers) as pool:
            assert pool.process(("echo", "x")) == "x"
        assert workers.client.status == "closed"
        with pytest.raises(ValueError, match="closed the client it made"):
            tunnypy.Pool(1, DaskSuite, isolation=workers)

    def test_an_address_makes_a_client_closed_with_the_pool(self, client: Any) -> None:
        """DaskWorkers(address) connects a client of its own and closes it with the pool."""
        workers = DaskWorkers(client.scheduler.address)
        with tunnypy.Pool(1, DaskSuite, isolation=workers) as pool:
            assert pool.process(("echo", 3)) == 3
        assert workers.client.status == "closed"
        assert client.status == "running"


class TestResize:
    def test_growing_past_the_free_dask_workers_scales_the_cluster_and_back(
        self, client: Any
    ) -> None:
        """A third actor scales the 2-worker cluster to 3; shrinking gives the worker back."""
        assert cluster_size(client) == 2
        with dask_pool(client, 2) as pool:
            names = [held(pool, PATHS["process"]) for _ in range(2)]
            waiting = PATHS["process"].start(pool, ("echo", "third"))
            wait_for(lambda: pool.queue_length == 1, "a caller in line")
            pool.set_size(3)
            assert waiting.result() == "third"
            assert cluster_size(client) == 3
            for name, pending in names:
                event(f"{name}-go").set()
                assert pending.result() == name
            pool.set_size(2)
            wait_for(lambda: pool.stats().workers == 2, "a worker to retire")
            wait_for(lambda: cluster_size(client) == 2, "the added dask worker to go")
            assert pool.process(("echo", 4)) == 4
        assert cluster_size(client) == 2

    def test_each_actor_has_a_dask_worker_of_its_own(self, client: Any) -> None:
        """Two actors of one pool, and of two pools, never share a Dask worker."""
        with dask_pool(client, 1) as first, dask_pool(client, 1) as second:
            one, a = held(first, PATHS["process"])
            two, b = held(second, PATHS["process"])  # would wait forever on a shared actor thread
            event(f"{one}-go").set()
            event(f"{two}-go").set()
            assert (a.result(), b.result()) == (one, two)

    def test_a_cluster_that_cannot_grow_fails_the_growth(self, client: Any) -> None:
        """Reached by address (no cluster object), a full cluster refuses a new worker clearly."""
        workers = DaskWorkers(client.scheduler.address)
        with tunnypy.Pool(2, DaskSuite, isolation=workers) as pool:
            with pytest.raises(RuntimeError, match="cannot be scaled from here"):
                pool.set_size(3)
            assert pool.stats().size == 2
            assert pool.process(("echo", 5)) == 5


class TestErrors:
    def test_the_jobs_exception_reaches_its_caller_with_the_remote_traceback(
        self, client: Any, call_path: CallPath
    ) -> None:
        """Type kept, the Dask worker's traceback as __cause__; the worker serves on."""
        with dask_pool(client, 1) as pool:
            error = call_path.start(pool, ("raise", "boom")).error()
            assert isinstance(error, BoomError)
            assert str(error) == "boom"
            assert "in process" in str(error.__cause__)
            # A proxy offers itself after delivering (it has a block_until_ready).
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            assert call_path.start(pool, ("echo", 1)).result() == 1

    def test_what_does_not_pickle_fails_only_its_call(self, client: Any) -> None:
        """An unpicklable payload, result or exception fails that call, naming it; no crash."""
        with dask_pool(client, 1) as pool:
            with pytest.raises((TypeError, AttributeError, pickle.PicklingError)):
                pool.process(("echo", threading.Lock()))
            with pytest.raises(TypeError, match="job result of type lock cannot be pickled"):
                pool.process(("unpicklable_result", None))
            with pytest.raises(RuntimeError, match=r"UnpicklableError.*did not pickle"):
                pool.process(("raise_unpicklable", None))
            assert pool.process(("echo", 6)) == 6
            assert pool.stats().crashed == 0

    def test_a_failing_factory_fails_the_pool_it_would_make(self, client: Any) -> None:
        """The factory's exception, raised on the Dask worker, reaches Pool(); no actor is left."""
        with pytest.raises(BoomError, match="no worker today"):
            tunnypy.Pool(1, FailingFactory(), isolation=DaskWorkers(client))
        with dask_pool(client, 2) as pool:  # both Dask workers are free again
            assert pool.process(("echo", 7)) == 7

    def test_bad_arguments_are_refused_naming_them(self, client: Any) -> None:
        with pytest.raises(TypeError, match=r"client must be a distributed\.Client"):
            DaskWorkers(42)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="start_timeout must be a non-negative number"):
            DaskWorkers(client, start_timeout=-1)
        with pytest.raises(ValueError, match="max_memory_per_child is not supported"):
            tunnypy.Pool(1, DaskSuite, isolation=DaskWorkers(client), max_memory_per_child=1)
        assert cluster_size(client) == 2


class TestNoNanny:
    def test_a_job_past_kill_grace_runs_on_where_nothing_can_kill_it(self, client: Any) -> None:
        """In-process Dask workers have no nanny: no kill; it serves again once the job returns."""
        with dask_pool(client, 1, kill_grace=0.0) as pool:
            name = fresh("deaf")
            caller = PATHS["process_timed"].start(pool, ("deaf", name), give_up=True, after=0.3)
            assert event(f"{name}-in").wait(WAIT)
            assert isinstance(caller.error(), tunnypy.JobTimedOutError)
            event(f"{name}-go").set()
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            assert pool.process(("echo", 8)) == 8
            stats = pool.stats()
            assert (stats.killed, stats.crashed, stats.respawned) == (0, 0, 0)


class TestRecycling:
    def test_max_jobs_per_child_makes_a_fresh_actor_between_jobs(self, client: Any) -> None:
        with dask_pool(client, 1, max_jobs_per_child=2) as pool:
            numbers = [pool.process(("who", None)) for _ in range(5)]
            assert numbers[0] == numbers[1] != numbers[2] == numbers[3] != numbers[4]
            assert pool.stats().children_recycled == 2


# --- Dask worker processes: kill and loss -----------------------------------------------


def hang(arg: tuple[str, str]) -> int:
    """Writes this process's pid to the named file, then sleeps in C; else returns the pid."""
    op, path = arg
    if op == "hang":
        Path(path).write_text(str(os.getpid()))
        time.sleep(60)
    return os.getpid()


def pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text() != "", "the job to write its pid")
    return int(path.read_text())


RECOVERY_BOUND = 30.0
"""
Seconds from a Dask worker's death until the pool serves at full size again.

Its nanny starts a new Dask worker process (a fresh interpreter importing
distributed) and the actor is made there: about 1 s on an idle 2-core
machine, many more on a loaded one; the bound leaves room for that.
"""


class TestLostDaskWorker:
    def test_sigkill_fails_only_that_call_and_the_pool_comes_back(
        self, proc_client: Any, tmp_path: Path
    ) -> None:
        """SIGKILL the Dask worker of a busy actor: WorkerCrashedError there only; back at size."""
        proc_client.wait_for_workers(2, timeout=RECOVERY_BOUND)
        pool = tunnypy.Pool.from_func(2, hang, isolation=DaskWorkers(proc_client))
        with pool:
            pids = {pool.process(("pid", "")) for _ in range(4)}
            victim = pool.submit(("hang", str(tmp_path / "victim")))
            pid = pid_in(tmp_path / "victim")
            bystander = pool.submit(("hang", str(tmp_path / "bystander")))
            other = pid_in(tmp_path / "bystander")
            assert pid != other
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(tunnypy.WorkerCrashedError, match="was lost"):
                victim.result(WAIT)
            assert not bystander.done()
            # Back at size: two jobs at once, on two live Dask workers, one of them new.
            both = [pool.submit(("pid", "")) for _ in range(2)]
            served = {future.result(RECOVERY_BOUND) for future in both}
            recovered = time.monotonic() - killed_at
            assert pid not in served and len(served | {other}) >= 2
            assert recovered < RECOVERY_BOUND
            stats = pool.stats()
            assert (stats.crashed, stats.respawned, stats.failed) == (1, 1, 1)
            os.kill(other, signal.SIGKILL)  # ends the bystander's sleep
            assert isinstance(bystander.exception(WAIT), tunnypy.WorkerCrashedError)
        print(f"recovered in {recovered:.2f} s (pids before: {sorted(pids)})")

    def test_a_job_past_kill_grace_is_killed_and_its_worker_made_again(
        self, proc_client: Any, tmp_path: Path
    ) -> None:
        """The caller's error comes at its deadline; kill_grace later the Dask worker is killed."""
        proc_client.wait_for_workers(2, timeout=RECOVERY_BOUND)
        pool = tunnypy.Pool.from_func(1, hang, isolation=DaskWorkers(proc_client), kill_grace=2.0)
        with pool:
            before = pool.process(("pid", ""))
            started = time.monotonic()
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(("hang", str(tmp_path / "stuck")), 0.5)
            assert time.monotonic() - started < 0.5 + 1.0  # at its deadline, not at the kill
            pid = pid_in(tmp_path / "stuck")
            assert pid == before
            after = pool.process_timed(("pid", ""), RECOVERY_BOUND)
            assert after != before
            wait_for(lambda: not _alive(pid), "the stuck dask worker to be gone")
            assert pool.stats().killed == 1

    def test_on_a_cluster_that_cannot_scale_a_lost_worker_waits_for_its_restart(
        self, proc_client: Any, tmp_path: Path
    ) -> None:
        """Reached by address, every Dask worker held: the remake waits for the nanny's restart."""
        proc_client.wait_for_workers(2, timeout=RECOVERY_BOUND)  # after the tests before
        workers = DaskWorkers(proc_client.scheduler.address)
        with tunnypy.Pool.from_func(2, hang, isolation=workers) as pool:
            victim = pool.submit(("hang", str(tmp_path / "victim")))
            pid = pid_in(tmp_path / "victim")
            os.kill(pid, signal.SIGKILL)
            assert isinstance(victim.exception(WAIT), tunnypy.WorkerCrashedError)
            # Before any job asks: it waited for the restarted Dask worker and took it.
            wait_for(lambda: pool.stats().respawned == 1, "the actor made again", RECOVERY_BOUND)
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            assert pid not in {pool.process(("pid", "")) for _ in range(2)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
