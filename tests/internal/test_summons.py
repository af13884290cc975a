"""
Summoning parked workers: a burst of jobs costs its caller one wake.

A job meant for a parked worker goes in line, and the pool wakes ("summons")
one parked worker for it. While that worker is on its way, later jobs only
join the line: the summoned worker takes the first job and passes the summons
on to the next parked worker as long as jobs wait. These tests hold a summons
back (the worker's wake is recorded but not delivered) to look at the pool in
between, deterministically.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for
from tunnypy._line import Line


class HeldWake:
    """Stands in for a parked worker's waker; records wakes and can hold them back."""

    def __init__(self, real: Any, hold: bool) -> None:
        self.real = real
        self.hold = hold
        self.wakers: list[threading.Thread] = []
        self.woken = threading.Event()
        self.wait_forever = real.wait_forever
        self.wait = real.wait

    def wake(self) -> None:
        self.wakers.append(threading.current_thread())
        self.woken.set()
        if not self.hold:
            self.real.wake()

    def let_go(self) -> None:
        """Deliver a held wake (a stale one if none was held) and hold no more."""
        self.hold = False
        self.real.wake()


def core_of(pool: tunnypy.Pool[Any, Any]) -> Line:
    return pool._line


def park_all(pool: tunnypy.Pool[Any, Any], size: int, hold: bool = False) -> list[HeldWake]:
    """Wait until every worker is parked, then swap their wakers for HeldWakes."""
    core = core_of(pool)
    wait_for(lambda: len(core.idle) == size, "every worker to park")
    with core.lock:
        proxies = []
        for wrapper in core.idle:
            proxy = HeldWake(wrapper.waker, hold)
            wrapper.waker = proxy
            proxies.append(proxy)
    return proxies


@pytest.fixture
def callback_pool() -> Iterator[tunnypy.Pool[Callable[[], object], object]]:
    pool = tunnypy.Pool.from_callback(2)
    yield pool
    pool.close(timeout=WAIT)


def test_a_burst_wakes_one_worker_and_the_workers_wake_the_rest() -> None:
    size = 4
    gates = [Gate() for _ in range(size)]
    with tunnypy.Pool.from_callback(size) as pool:
        # The summoned worker's wake is held until the burst is in: how far
        # a woken worker gets before the next submit is up to the scheduler.
        proxies = park_all(pool, size, hold=True)
        me = threading.current_thread()
        futures = [pool.submit(gate) for gate in gates]
        assert sum(len(p.wakers) for p in proxies) == 1  # one summons for the burst
        assert pool.queue_length == size
        for proxy in proxies:
            proxy.let_go()
        for gate in gates:
            assert gate.started.wait(WAIT), "a job of the burst never started"
        by_caller = sum(1 for p in proxies for t in p.wakers if t is me)
        by_workers = sum(1 for p in proxies for t in p.wakers if t is not me)
        assert by_caller == 1
        assert by_workers == size - 1  # each summoned worker passed it on
        for gate in gates:
            gate.release.set()
        assert [f.result(WAIT) for f in futures] == [None] * size


def test_process_hands_a_parked_worker_its_job_without_a_summons(
    callback_pool: tunnypy.Pool[Callable[[], object], object],
) -> None:
    proxies = park_all(callback_pool, 2, hold=True)
    call = Call(callback_pool.process, lambda: "served")
    wait_for(lambda: any(p.woken.is_set() for p in proxies), "a worker to be woken")
    assert core_of(callback_pool).summoned is None
    assert callback_pool.queue_length == 0  # handed over, not put in line
    for proxy in proxies:
        proxy.let_go()
    assert call.wait() == "served"


def test_a_caller_behind_a_burst_joins_the_line_and_the_summons_serves_it(
    callback_pool: tunnypy.Pool[Callable[[], object], object],
) -> None:
    proxies = park_all(callback_pool, 2, hold=True)
    gate = Gate()
    future = callback_pool.submit(gate)  # summons a worker, whose wake is held
    call = Call(callback_pool.process, lambda: "behind the burst")
    wait_for(lambda: callback_pool.queue_length == 2, "the caller to join the line")
    for proxy in proxies:
        proxy.let_go()
    assert call.wait() == "behind the burst"
    gate.release.set()
    assert future.result(WAIT) is None


def test_a_worker_on_its_way_counts_as_free(
    callback_pool: tunnypy.Pool[Callable[[], object], object],
) -> None:
    proxies = park_all(callback_pool, 2, hold=True)
    first, second = Gate(), Gate()
    f1 = callback_pool.submit(first)  # summons a worker, whose wake is held
    summoned = [p for p in proxies if p.woken.is_set()]
    assert len(summoned) == 1
    # One worker is on its way for f1 and one is parked: room for one more.
    f2 = callback_pool.try_submit(second)
    with pytest.raises(tunnypy.PoolBusyError, match="no worker is free"):
        callback_pool.try_submit(lambda: None)
    assert callback_pool.queue_length == 2
    for proxy in proxies:
        proxy.let_go()
    assert first.started.wait(WAIT)
    assert second.started.wait(WAIT), "the summons was not passed on"
    first.release.set()
    second.release.set()
    assert f1.result(WAIT) is None
    assert f2.result(WAIT) is None


def test_max_waiting_does_not_count_jobs_a_free_worker_will_take() -> None:
    pool = tunnypy.Pool.from_callback(2, max_waiting=0)
    try:
        proxies = park_all(pool, 2, hold=True)
        gates = [Gate(), Gate()]
        futures = [pool.submit(gate) for gate in gates]  # neither waits for a busy worker
        with pytest.raises(tunnypy.PoolBusyError, match="max_waiting=0"):
            pool.submit(lambda: None)
        for proxy in proxies:
            proxy.let_go()
        for gate in gates:
            assert gate.started.wait(WAIT)
            gate.release.set()
        assert [f.result(WAIT) for f in futures] == [None, None]
    finally:
        pool.close(timeout=WAIT)


def test_close_refuses_jobs_while_a_summons_is_on_its_way(
    callback_pool: tunnypy.Pool[Callable[[], object], object],
) -> None:
    proxies = park_all(callback_pool, 2, hold=True)
    ran = threading.Event()
    future = callback_pool.submit(ran.set)
    assert callback_pool.close(wait=False) is False
    with pytest.raises(tunnypy.PoolClosedError):
        future.result(WAIT)
    with pytest.raises(tunnypy.PoolClosedError):
        callback_pool.submit(ran.set)  # once wrongly left in line for the summoned worker
    for proxy in proxies:
        proxy.let_go()
    assert callback_pool.close(timeout=WAIT) is True
    assert not ran.is_set()


def test_a_retired_summoned_worker_leaves_its_job_to_the_others(
    callback_pool: tunnypy.Pool[Callable[[], object], object],
) -> None:
    proxies = park_all(callback_pool, 2, hold=True)
    future: Future[object] = callback_pool.submit(lambda: "done")
    callback_pool.set_size(0)  # retires the parked worker and the one on its way
    for proxy in proxies:
        proxy.let_go()
    wait_for(lambda: callback_pool.stats().workers == 0, "both workers to leave")
    assert not future.done()
    assert callback_pool.queue_length == 1
    callback_pool.set_size(1)
    assert future.result(WAIT) == "done"


def test_the_first_jobs_in_line_are_the_first_taken() -> None:
    size = 3
    started: list[int] = []
    lock = threading.Lock()
    release = threading.Event()

    def job(i: int) -> Callable[[], int]:
        def run() -> int:
            with lock:
                started.append(i)
            release.wait(WAIT)
            return i

        return run

    with tunnypy.Pool.from_callback(size) as pool:
        proxies = park_all(pool, size, hold=True)
        futures = [pool.submit(job(i)) for i in range(size)]
        waiter = pool.submit(job(size))  # behind them all: waits for a busy worker
        for proxy in proxies:
            proxy.let_go()
        wait_for(lambda: len(started) == size, "the first jobs to start")
        assert sorted(started) == list(range(size))
        assert not waiter.running()
        release.set()
        assert [f.result(WAIT) for f in [*futures, waiter]] == list(range(size + 1))
        assert started[-1] == size


def test_with_a_worker_busy_a_caller_is_summoned_for_and_a_returning_worker_may_serve_it(
    callback_pool: tunnypy.Pool[Callable[[], object], object],
) -> None:
    gate = Gate()
    busy = Call(callback_pool.process, gate)
    assert gate.started.wait(WAIT)
    proxies = park_all(callback_pool, 1, hold=True)  # the other worker, parked
    call = Call(callback_pool.process, lambda: "taken by whoever came first")
    wait_for(proxies[0].woken.is_set, "the parked worker to be summoned")
    assert callback_pool.queue_length == 1  # in line, not handed to the sleeper
    gate.release.set()  # the busy worker comes back and takes it from the line
    assert busy.wait() is None
    assert call.wait() == "taken by whoever came first"
    proxies[0].let_go()  # the summoned worker finds the line empty and parks again
    core = core_of(callback_pool)
    wait_for(lambda: core.summoned is None and len(core.idle) == 2, "both workers to park")
