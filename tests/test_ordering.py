"""Waiting callers are served first come, first served."""

from __future__ import annotations

import threading

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for


class TestFifo:
    def test_waiting_callers_are_served_in_arrival_order(self) -> None:
        """With one busy worker, queued callers run in the order they queued."""
        gate = Gate()
        order: list[int] = []
        lock = threading.Lock()

        def job(x: int) -> int:
            if x < 0:
                gate()
            with lock:
                order.append(x)
            return x

        with tunnypy.Pool.from_func(1, job) as pool:
            holder = pool.submit(-1)
            assert gate.started.wait(WAIT)
            calls = []
            for i in range(12):
                # Mix the kinds of call: they share one line.
                if i % 3 == 0:
                    calls.append(Call(pool.process, i))
                elif i % 3 == 1:
                    calls.append(Call(pool.process_timed, i, WAIT))
                else:
                    calls.append(Call(pool.process_ctx, i, tunnypy.CancelToken()))

                def queued(n: int = i + 1) -> bool:
                    return pool.queue_length == n

                wait_for(queued, f"caller {i} to queue")
            gate.release.set()
            holder.result(WAIT)
            assert [c.wait() for c in calls] == list(range(12))
        assert order == [-1, *range(12)]

    def test_leaving_the_line_keeps_the_others_order(self) -> None:
        """A caller that times out leaves the line without reordering the rest."""
        gate = Gate()
        order: list[int] = []

        def job(x: int) -> int:
            if x < 0:
                gate()
            order.append(x)
            return x

        with tunnypy.Pool.from_func(1, job) as pool:
            holder = pool.submit(-1)
            assert gate.started.wait(WAIT)
            a = Call(pool.process, 1)
            wait_for(lambda: pool.queue_length == 1, "caller 1 to queue")
            token = tunnypy.CancelToken()
            b = Call(pool.process_ctx, 2, token)
            wait_for(lambda: pool.queue_length == 2, "caller 2 to queue")
            c = Call(pool.process, 3)
            wait_for(lambda: pool.queue_length == 3, "caller 3 to queue")
            token.cancel()
            wait_for(lambda: pool.queue_length == 2, "caller 2 to leave")
            gate.release.set()
            holder.result(WAIT)
            assert (a.wait(), c.wait()) == (1, 3)
            assert b.done.wait(WAIT) and isinstance(b.error, tunnypy.JobCancelledError)
        assert order == [-1, 1, 3]
