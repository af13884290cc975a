"""An interrupt reaches only the job it was meant for (Tunny's race, fixed)."""

from __future__ import annotations

import threading

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for


class SlowInterruptWorker(tunnypy.BaseWorker[tuple[str, Gate], bool]):
    """interrupt() sets a flag, but only after the test lets it finish."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        self.in_interrupt = threading.Event()
        self.finish_interrupt = threading.Event()
        self.interrupts = 0

    def process(self, payload: tuple[str, Gate]) -> bool:
        self.flag.clear()  # the documented convention: clear at the start
        kind, gate = payload
        gate.started.set()
        if not gate.release.wait(WAIT):
            raise AssertionError("gate never released")
        return self.flag.is_set() if kind == "report" else False

    def interrupt(self) -> None:
        self.interrupts += 1
        self.in_interrupt.set()
        if not self.finish_interrupt.wait(WAIT):
            raise AssertionError("interrupt never allowed to finish")
        self.flag.set()


class TestInterruptTargeting:
    def test_slow_interrupt_never_reaches_the_next_job(self) -> None:
        """The next job on a worker starts only after the previous job's interrupt() returned."""
        worker = SlowInterruptWorker()
        with tunnypy.Pool(1, lambda: worker) as pool:
            first, second = Gate(), Gate()
            timed = Call(pool.process_timed, ("slow", first), 0.05)
            assert first.started.wait(WAIT)
            assert worker.in_interrupt.wait(WAIT)  # the caller gave up; interrupt() blocks
            first.release.set()  # job 1 returns while its interrupt is still running
            nxt = pool.submit(("report", second))
            # In Tunny, job 2 would start now and the late interrupt would hit it.
            worker.finish_interrupt.set()
            with pytest.raises(tunnypy.JobTimedOutError):
                timed.wait()
            second.release.set()
            assert nxt.result(WAIT) is False
        assert worker.interrupts == 1

    def test_worker_holds_the_job_until_interrupt_returns(self) -> None:
        """While interrupt() runs, the next job handed to that worker does not start."""
        worker = SlowInterruptWorker()
        with tunnypy.Pool(1, lambda: worker) as pool:
            first, second = Gate(), Gate()
            timed = Call(pool.process_timed, ("slow", first), 0.05)
            assert worker.in_interrupt.wait(WAIT)
            first.release.set()
            nxt = pool.submit(("report", second))
            # The next job is in line, or handed to the worker (which parks
            # before delivering, since its block_until_ready is a no-op).
            wait_for(lambda: pool.stats().waiting + pool.stats().busy == 1, "the next job")
            assert not second.started.is_set()
            worker.finish_interrupt.set()
            assert second.started.wait(WAIT)
            second.release.set()
            assert nxt.result(WAIT) is False
            with pytest.raises(tunnypy.JobTimedOutError):
                timed.wait()

    def test_interrupted_is_per_job(self) -> None:
        """interrupted() is True for the abandoned job and False for the next one."""
        gate = Gate()
        seen: list[bool] = []

        def job(kind: str) -> bool:
            if kind == "slow":
                gate()
                seen.append(tunnypy.interrupted())
            return tunnypy.interrupted()

        with tunnypy.Pool.from_func(1, job) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed("slow", 0.05)
            gate.release.set()
            assert pool.process("fast") is False
        assert seen == [True]

    def test_interrupt_is_not_called_for_jobs_that_finished(self) -> None:
        """A call that returned in time never triggers interrupt()."""
        worker = SlowInterruptWorker()
        worker.finish_interrupt.set()
        with tunnypy.Pool(1, lambda: worker) as pool:
            for _ in range(20):
                gate = Gate()
                gate.release.set()
                assert pool.process_timed(("report", gate), WAIT) is False
        assert worker.interrupts == 0
