"""
Which waker a caller sleeps on (its thread's eventfd or, with no eventfd to be had, its
job's lock), and which one a worker parks on.

Neither depends on how many CPUs there are (that choice was removed:
docs/performance.md, "Shortcuts"): every call sleeps on its thread's eventfd,
except one made while its thread is inside a timed wait on that eventfd (a
signal handler's call), which sleeps on its job's lock; a worker parks on its
lock only after a submitted job. The caller tests look at the waker of the
job a worker is running.
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


def sleeps_on_its_own_lock(job: Job) -> bool:
    """Whether *job*'s caller sleeps on the job's own lock waker."""
    return isinstance(job.waker, _waker.LockWaker) and job.waker is job.lock_waker


def run_gate(payload: Any) -> Any:
    return payload() if callable(payload) else payload


@contextlib.contextmanager
def parked_pool(size: int) -> Iterator[tuple[Any, Line]]:
    """A pool of *size*, once every worker has parked."""
    with tunnypy.Pool.from_func(size, run_gate) as pool:
        core = pool._line
        wait_for(lambda: len(core.idle) == size, "every worker to park")
        yield pool, core


@contextlib.contextmanager
def one_worker_busy(size: int) -> Iterator[tuple[Any, Line, Gate]]:
    """A pool of *size* whose workers all parked, then one busy on a gated process() call."""
    with parked_pool(size) as (pool, core):
        busy = Gate()
        first = Call(pool.process, busy)
        assert busy.started.wait(WAIT)
        yield pool, core, busy
        busy.release.set()
        first.wait()


WITH_FD_CALLS: dict[str, Any] = {
    "process": lambda pool, gate: pool.process(gate),
    "process_timed": lambda pool, gate: pool.process_timed(gate, WAIT),
    "process_timed, no limit": lambda pool, gate: pool.process_timed(gate, float("inf")),
    "process_ctx": lambda pool, gate: pool.process_ctx(gate, tunnypy.CancelToken()),
    "process_ctx with a deadline": lambda pool, gate: pool.process_ctx(
        gate, tunnypy.CancelToken(timeout=WAIT)
    ),
    "try_process": lambda pool, gate: pool.try_process(gate),
}


@pytest.mark.parametrize("kind", sorted(WITH_FD_CALLS))
@pytest.mark.parametrize("behind_a_busy_worker", [False, True])
def test_a_call_sleeps_on_its_threads_eventfd(kind: str, behind_a_busy_worker: bool) -> None:
    """Handed to a parked worker or waiting in line behind a busy one, on any number of CPUs."""
    with contextlib.ExitStack() as stack:
        if behind_a_busy_worker:
            pool, _, _ = stack.enter_context(one_worker_busy(2))
        else:
            pool, _ = stack.enter_context(parked_pool(2))
        gate = Gate()
        call, wakers = call_recording_wakers(WITH_FD_CALLS[kind], pool, gate)
        assert sleeps_on(running_job(pool._lifecycle, gate), wakers) == "fd"
        gate.release.set()
        call.wait()


NO_FD_CALLS: dict[str, Any] = {
    "process": lambda pool, gate: pool.process(gate),
    "process_timed": lambda pool, gate: pool.process_timed(gate, WAIT),
    "process_ctx": lambda pool, gate: pool.process_ctx(gate, tunnypy.CancelToken()),
    "try_process": lambda pool, gate: pool.try_process(gate),
}


@pytest.mark.parametrize("kind", sorted(NO_FD_CALLS))
def test_a_call_made_while_its_thread_polls_the_eventfd_sleeps_on_its_jobs_lock(
    kind: str,
) -> None:
    """
    A signal handler's call, while its thread is in a timed wait: ``poll()``
    retries after the handler, so the handler's call must not take the wake
    it waits for (tests/internal/test_signal_wakes.py runs the real thing).
    """
    with parked_pool(2) as (pool, _):
        gate = Gate()
        seen: dict[str, Any] = {}

        def run() -> Any:
            fd = _job.caller_waker()
            assert isinstance(fd, _waker.FdWaker)
            seen["fd"] = fd
            fd.polling = True  # as FdWaker.wait() sets it around poll()
            try:
                seen["caller_waker"] = _job.caller_waker()
                return NO_FD_CALLS[kind](pool, gate)
            finally:
                fd.polling = False

        call = Call(run)
        job = running_job(pool._lifecycle, gate)
        assert seen["caller_waker"] is None
        assert sleeps_on_its_own_lock(job)
        gate.release.set()
        call.wait()


@pytest.mark.parametrize("kind", sorted(NO_FD_CALLS))
def test_without_an_eventfd_a_call_sleeps_on_its_own_jobs_lock(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The eventfd budget spent: the call's job brings its own lock, shared with no other call."""
    monkeypatch.setattr(_waker, "new_fd_waker", lambda: None)
    with parked_pool(2) as (pool, _):
        gate = Gate()
        seen: dict[str, Any] = {}

        def run() -> Any:
            seen["fd"] = _job.caller_waker()
            return NO_FD_CALLS[kind](pool, gate)

        call = Call(run)
        job = running_job(pool._lifecycle, gate)
        assert seen["fd"] is None
        assert sleeps_on_its_own_lock(job)
        gate.release.set()
        call.wait()


def parked_on(wrapper: Any) -> str:
    """Which waker a parked worker sleeps on."""
    if wrapper.waker is wrapper.fd_waker:
        return "fd"
    assert wrapper.waker is wrapper.lock_waker
    return "lock"


def test_a_worker_whose_job_came_from_the_line_parks_on_its_eventfd() -> None:
    """On any number of CPUs: the lock for a job from the line went with the per-CPU choice."""
    with one_worker_busy(1) as (pool, core, busy):
        queued = Call(pool.process, "queued")
        wait_for(lambda: pool.queue_length == 1, "the second call to wait in line")
        busy.release.set()
        assert queued.wait() == "queued"
        wait_for(lambda: len(core.idle) == 1, "the worker to park again")
        assert parked_on(core.idle[0]) == "fd"


def test_a_worker_whose_job_was_submitted_parks_on_its_lock() -> None:
    """Its submitter, which wakes it next, goes on running Python, and keeps the GIL."""
    with parked_pool(1) as (pool, core):
        assert pool.submit("x").result(WAIT) == "x"
        wait_for(lambda: len(core.idle) == 1, "the worker to park again")
        assert parked_on(core.idle[0]) == "lock"
        # Handed its next job by a lone caller, it goes back to the eventfd.
        assert pool.process("alone") == "alone"
        wait_for(lambda: len(core.idle) == 1, "the worker to park after that")
        assert parked_on(core.idle[0]) == "fd"
