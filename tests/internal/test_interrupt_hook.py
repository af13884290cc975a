"""A slow interrupt() holds its worker: the next job waits for it and is not interrupted."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    Gate,
    InterruptWorker,
    wait_for,
)


class TestInterrupt:
    def test_slow_the_next_job_waits_until_it_returns(self) -> None:
        """While interrupt() runs, its worker starts nothing; the next job is not interrupted."""
        inside = threading.Event()
        leave = threading.Event()

        def slow() -> None:
            inside.set()
            leave.wait(WAIT)

        worker = InterruptWorker(slow)
        pool: tunnypy.Pool[Gate | int, Any] = tunnypy.Pool(1, lambda: worker)
        gate = Gate()
        try:
            token = tunnypy.CancelToken()
            first = Call(pool.process_ctx, gate, token)
            assert gate.started.wait(WAIT)
            token.cancel()
            assert inside.wait(WAIT)
            gate.release.set()  # the first job returns while interrupt() still runs
            second = Call(pool.process, 4)

            def second_dispatched() -> bool:
                # In line, or handed to the worker: a worker whose readiness
                # is BaseWorker's no-op parks before delivering, so the second
                # call may go straight to it while it waits on the gate.
                held = [w.job for w in list(pool._lifecycle.workers)]
                return pool.queue_length == 1 or any(j is not None and j.payload == 4 for j in held)

            wait_for(second_dispatched, "the second call to reach the worker or the line")
            # A broken gate would start the second job in this window.
            assert not second.done.wait(0.1)
            assert "start 4" not in worker.log
            leave.set()
            assert second.wait() == 4  # not "interrupted": the stop flag was reset
            with pytest.raises(tunnypy.JobCancelledError):
                first.wait()
            log = worker.log
            assert log.index("interrupt ends") < log.index("start 4")
        finally:
            gate.release.set()
            leave.set()
            assert pool.close(timeout=WAIT)
