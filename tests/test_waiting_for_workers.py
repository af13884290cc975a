"""close(wait=True) and set_size(wait=True): what they wait for, what they return."""

from __future__ import annotations

import functools
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, RecordingFactory, signal_until, wait_for

WAITS: dict[str, Callable[[tunnypy.Pool[Any, Any]], bool]] = {
    "close": lambda pool: pool.close(),
    "set_size": lambda pool: pool.set_size(0, wait=True),
}

# Where a thread sleeps while it waits for another to end: Thread.join()
# (3.11 and 3.12, 3.13), or the pool's own waker.
_SLEEPING = frozenset(("_wait_for_tstate_lock", "join", "wait"))


def main_thread_waits_in(method: str) -> bool:
    """Whether the main thread sleeps, waiting for a worker, inside the pool's *method*."""
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    if frame is None or frame.f_code.co_name not in _SLEEPING:
        return False
    while frame is not None:
        code = frame.f_code
        if code.co_name == method and code.co_filename.endswith("_lifecycle.py"):
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def ctrl_c() -> Iterator[Callable[[str], threading.Thread]]:
    """
    Give a function that sends SIGINT to the main thread once it waits inside *method*.

    The frame says the thread is about to sleep, not that it sleeps: a SIGINT
    landing before the lock wait begins is handled only once it ends (when
    the job does). So SIGINT is sent until its handler has run, and only the
    first run raises KeyboardInterrupt.
    """
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: object) -> None:
        if not interrupted.is_set():
            interrupted.set()
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    senders: list[threading.Thread] = []

    def send_when_waiting(method: str) -> threading.Thread:
        def send() -> None:
            wait_for(lambda: main_thread_waits_in(method), f"the main thread to wait in {method}")
            signal_until(threading.main_thread(), signal.SIGINT, interrupted)

        sender = threading.Thread(target=send)
        sender.start()
        senders.append(sender)
        return sender

    try:
        yield send_when_waiting
    finally:
        for sender in senders:
            sender.join(WAIT)
        signal.signal(signal.SIGINT, previous)


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
class TestCtrlCDuringTheWait:
    @pytest.mark.parametrize("method", list(WAITS))
    def test_the_pool_still_knows_the_busy_worker_runs(
        self, method: str, ctrl_c: Callable[[str], threading.Thread]
    ) -> None:
        """After Ctrl-C in the wait, close() reports the busy worker and waits for it."""
        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        gate = Gate()
        try:
            pool.submit(gate)
            assert gate.started.wait(WAIT)
            sender = ctrl_c(method)
            with pytest.raises(KeyboardInterrupt):
                WAITS[method](pool)
            sender.join(WAIT)
            assert pool.close(timeout=0) is False
            assert pool.stats().workers == 1
            assert factory.made[0].terminated == 0
            closing = Call(pool.close)
            assert not closing.done.is_set()
        finally:
            gate.release.set()
        assert closing.wait() is True
        assert pool.stats().workers == 0
        assert factory.made[0].terminated == 1


class TestJobsWaitingForEachOther:
    @pytest.mark.parametrize("method", list(WAITS))
    def test_two_jobs_closing_their_own_pool_both_return_true(self, method: str) -> None:
        """Neither waits for the other (each waits for the other to return); neither says False."""
        both = threading.Barrier(2, timeout=WAIT)

        def job(pool: tunnypy.Pool[Any, Any]) -> bool:
            both.wait()
            return WAITS[method](pool)

        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, factory)
        futures = [pool.submit(lambda: job(pool)) for _ in range(2)]
        assert [f.result(WAIT) for f in futures] == [True, True]
        assert pool.close(timeout=WAIT) is True
        assert [w.terminated for w in factory.made] == [1, 1]

    def test_a_job_still_waits_for_a_sibling_that_does_not_wait_for_it(self) -> None:
        """Only a wait that would close a cycle is skipped: a busy sibling is waited for."""
        gate = Gate()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_callback(2)
        busy = pool.submit(gate)
        assert gate.started.wait(WAIT)
        closing = pool.submit(pool.close)
        try:
            wait_for(lambda: pool.closed, "the job to close the pool")
            assert not closing.done()
        finally:
            gate.release.set()
        assert closing.result(WAIT) is True
        assert busy.result(WAIT) is None
        assert pool.close(timeout=WAIT) is True

    @pytest.mark.parametrize("count", [2, 3])
    def test_jobs_closing_each_others_pools_in_a_ring_all_return_true(self, count: int) -> None:
        """Pool i's job closes pool i+1 with wait=True: no deadlock, no False, no timeout hit."""
        together = threading.Barrier(count, timeout=WAIT)
        pools: list[tunnypy.Pool[Callable[[], object], object]] = [
            tunnypy.Pool.from_callback(1) for _ in range(count)
        ]

        def close_next(i: int) -> object:
            together.wait()
            return pools[(i + 1) % count].close(timeout=WAIT)

        futures = [pool.submit(functools.partial(close_next, i)) for i, pool in enumerate(pools)]
        assert [f.result(2 * WAIT) for f in futures] == [True] * count
        assert [pool.close(timeout=WAIT) for pool in pools] == [True] * count
        assert all(pool.stats().workers == 0 for pool in pools)
