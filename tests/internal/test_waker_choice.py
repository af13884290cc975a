"""
Which waker a caller sleeps on: its eventfd, or its lock (``Line.several_cpus``).

Both are correct; the choice is for speed. An eventfd wake hands the GIL to
the woken thread, which is right when the waker is about to sleep. A lock
wake leaves the GIL with the waker, which is right when it goes on working,
and a timed lock wait is one system call where a timed eventfd wait is two.
These tests pin ``several_cpus`` so that both branches run on any machine,
and look at the waker of the job a worker is running.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for
from tunnypy import _job, _waker
from tunnypy._job import Job
from tunnypy._lifecycle import Lifecycle
from tunnypy._line import Line


def running_job(lifecycle: Lifecycle, gate: Gate) -> Job:
    """The job a worker is running *gate* for."""
    assert gate.started.wait(WAIT)
    for wrapper in lifecycle.workers:
        job = wrapper.job
        if job is not None and job.payload is gate:
            return job
    raise AssertionError("no worker holds the gated job")


def call_recording_wakers(fn: Any, *args: Any) -> tuple[Call, dict[str, Any]]:
    """Run ``fn(*args)`` in a thread that first records its eventfd waker."""
    wakers: dict[str, Any] = {}

    def run() -> Any:
        wakers["fd"] = _job.caller_waker()
        assert isinstance(wakers["fd"], _waker.FdWaker)
        return fn(*args)

    return Call(run), wakers


def sleeps_on(job: Job, wakers: dict[str, Any]) -> str:
    """Which waker *job*'s caller sleeps on: its thread's eventfd, or the job's own lock."""
    if job.waker is wakers["fd"]:
        return "fd"
    assert isinstance(job.waker, _waker.LockWaker)
    assert job.waker is job.lock_waker
    return "lock"


def run_gate(payload: Any) -> Any:
    return payload() if callable(payload) else payload


@contextlib.contextmanager
def parked_pool(size: int, several_cpus: bool) -> Iterator[tuple[Any, Line]]:
    """A pool of *size* with ``several_cpus`` pinned, once every worker has parked."""
    with tunnypy.Pool.from_func(size, run_gate) as pool:
        core = pool._line
        core.several_cpus = several_cpus
        wait_for(lambda: len(core.idle) == size, "every worker to park")
        yield pool, core


@contextlib.contextmanager
def one_worker_busy(size: int, several_cpus: bool) -> Iterator[tuple[Any, Line, Gate]]:
    """A pool of *size* whose workers all parked, then one busy on a gated process() call."""
    with parked_pool(size, several_cpus) as (pool, core):
        busy = Gate()
        first = Call(pool.process, busy)
        assert busy.started.wait(WAIT)
        yield pool, core, busy
        busy.release.set()
        first.wait()


@pytest.mark.parametrize("several_cpus", [True, False])
def test_process_timed_sleeps_on_its_lock_only_with_several_cpus(several_cpus: bool) -> None:
    with parked_pool(2, several_cpus) as (pool, _):
        gate = Gate()
        call, wakers = call_recording_wakers(pool.process_timed, gate, WAIT)
        job = running_job(pool._lifecycle, gate)
        assert sleeps_on(job, wakers) == ("lock" if several_cpus else "fd")
        gate.release.set()
        call.wait()


def test_process_handed_to_a_parked_worker_sleeps_on_its_eventfd() -> None:
    """Every worker parked: the lone round trip, where the eventfd is fastest."""
    with parked_pool(2, several_cpus=True) as (pool, _):
        gate = Gate()
        call, wakers = call_recording_wakers(pool.process, gate)
        assert sleeps_on(running_job(pool._lifecycle, gate), wakers) == "fd"
        gate.release.set()
        call.wait()


@pytest.mark.parametrize("several_cpus", [True, False])
def test_process_behind_a_busy_worker_sleeps_on_its_lock_only_with_several_cpus(
    several_cpus: bool,
) -> None:
    with one_worker_busy(2, several_cpus) as (pool, _, _):
        gate = Gate()
        call, wakers = call_recording_wakers(pool.process, gate)
        job = running_job(pool._lifecycle, gate)
        assert sleeps_on(job, wakers) == ("lock" if several_cpus else "fd")
        gate.release.set()
        call.wait()


NO_FD_CALLS: dict[str, Any] = {
    "process": lambda pool, gate: pool.process(gate),
    "process_timed": lambda pool, gate: pool.process_timed(gate, WAIT),
    "process_ctx": lambda pool, gate: pool.process_ctx(gate, tunnypy.CancelToken()),
    "try_process": lambda pool, gate: pool.try_process(gate),
}


@pytest.mark.parametrize("kind", sorted(NO_FD_CALLS))
def test_without_an_eventfd_a_call_sleeps_on_its_own_jobs_lock(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The eventfd budget spent: the call's job brings its own lock, shared with no other call."""
    monkeypatch.setattr(_waker, "new_fd_waker", lambda: None)
    # several_cpus off: else process_timed sleeps on the job's lock anyway.
    with parked_pool(2, several_cpus=False) as (pool, _):
        gate = Gate()
        seen: dict[str, Any] = {}

        def run() -> Any:
            seen["fd"] = _job.caller_waker()
            return NO_FD_CALLS[kind](pool, gate)

        call = Call(run)
        job = running_job(pool._lifecycle, gate)
        assert seen["fd"] is None
        assert isinstance(job.waker, _waker.LockWaker)
        assert job.waker is job.lock_waker
        gate.release.set()
        call.wait()


def parked_on(wrapper: Any) -> str:
    """Which waker a parked worker sleeps on."""
    if wrapper.waker is wrapper.fd_waker:
        return "fd"
    assert wrapper.waker is wrapper.lock_waker
    return "lock"


@pytest.mark.parametrize("several_cpus", [True, False])
def test_a_worker_handed_its_job_by_a_lone_caller_parks_on_its_eventfd(several_cpus: bool) -> None:
    """The lone round trip: the caller sleeps as it wakes the worker, so the eventfd."""
    with parked_pool(1, several_cpus) as (pool, core):
        assert all(isinstance(w.fd_waker, _waker.FdWaker) for w in pool._lifecycle.workers)
        assert pool.process("x") == "x"
        wait_for(lambda: len(core.idle) == 1, "the worker to park again")
        assert parked_on(core.idle[0]) == "fd"


@pytest.mark.parametrize("several_cpus", [True, False])
def test_a_worker_whose_job_came_from_the_line_parks_on_its_lock_only_with_several_cpus(
    several_cpus: bool,
) -> None:
    """Callers queue, so whoever wakes it next goes on running Python: the lock, given 2 CPUs."""
    with one_worker_busy(1, several_cpus) as (pool, core, busy):
        queued = Call(pool.process, "queued")
        wait_for(lambda: pool.queue_length == 1, "the second call to wait in line")
        busy.release.set()
        assert queued.wait() == "queued"
        wait_for(lambda: len(core.idle) == 1, "the worker to park again")
        assert parked_on(core.idle[0]) == ("lock" if several_cpus else "fd")
        # Handed its next job by a lone caller, it goes back to the eventfd.
        assert pool.process("alone") == "alone"
        wait_for(lambda: len(core.idle) == 1, "the worker to park after that")
        assert parked_on(core.idle[0]) == "fd"


@pytest.mark.parametrize("several_cpus", [True, False])
def test_a_worker_whose_job_was_submitted_parks_on_its_lock(several_cpus: bool) -> None:
    """The submitter goes on submitting: the lock, whatever the CPUs."""
    with parked_pool(1, several_cpus) as (pool, core):
        assert pool.submit("x").result(WAIT) == "x"
        wait_for(lambda: len(core.idle) == 1, "the worker to park again")
        assert parked_on(core.idle[0]) == "lock"
