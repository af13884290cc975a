"""LoopWakes: wakes for a loop cross threads in batches, and resume in bounded turns."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from contextvars import Context
from typing import Any

import pytest

import tunnypy
from tunnypy import _awaiting, _job
from tunnypy._awaiting import BEHIND, BEHIND_PAUSE, RESUMES_PER_TURN, LoopWakes, loop_wakes

from ..helpers import WAIT, Gate, wait_for

CALLS = 3 * RESUMES_PER_TURN + 5


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts thread-safe schedules, and numbers its turns."""

    def __init__(self) -> None:
        super().__init__()
        self.threadsafe = 0
        self.turn = 0

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> asyncio.Handle:
        self.threadsafe += 1
        return super().call_soon_threadsafe(callback, *args, context=context)

    def _run_once(self) -> None:
        self.turn += 1
        super()._run_once()  # type: ignore[misc]


def drain_while_the_loop_is_blocked() -> tuple[CountingLoop, int, list[int]]:
    """
    CALLS tasks await aprocess behind a held worker; the worker serves them all
    while the loop's thread is blocked. Returns the loop, its thread-safe
    schedules during the drain, and the turn on which each task resumed.
    """
    loop = CountingLoop()
    gate = Gate()
    resumed: list[int] = []
    with tunnypy.Pool.from_callback(1) as pool:

        async def one() -> None:
            await pool.aprocess(lambda: None)
            resumed.append(loop.turn)

        async def main() -> int:
            held = asyncio.ensure_future(pool.aprocess(gate))
            while not gate.started.is_set():
                await asyncio.sleep(0.001)
            tasks = [asyncio.ensure_future(one()) for _ in range(CALLS)]
            while pool.queue_length < CALLS:
                await asyncio.sleep(0.001)
            before = loop.threadsafe
            # Blocks the loop's thread (bounded) while the worker serves every call.
            gate.release.set()
            wait_for(lambda: pool.stats().completed == CALLS + 1, "every call served")
            during = loop.threadsafe - before
            await asyncio.wait_for(asyncio.gather(held, *tasks), WAIT)
            return during

        try:
            during = loop.run_until_complete(main())
        finally:
            loop.close()
    return loop, during, resumed


class TestLoopWakes:
    """Wakes for one loop, and the turns they resume in."""

    def test_one_schedule_for_a_batch_of_wakes(self) -> None:
        """Deliveries to a loop that has not yet run its wakes add no thread-safe schedule."""
        _, during, resumed = drain_while_the_loop_is_blocked()
        assert during == 1
        assert len(resumed) == CALLS

    def test_a_turn_resumes_a_bounded_number(self) -> None:
        """Of many tasks woken at once, at most RESUMES_PER_TURN resume in any one turn."""
        _, _, resumed = drain_while_the_loop_is_blocked()
        per_turn = [resumed.count(turn) for turn in set(resumed)]
        assert max(per_turn) <= RESUMES_PER_TURN
        assert sorted(resumed) == resumed  # oldest first, as they were delivered

    def test_a_closed_loop_drops_its_wakes(self) -> None:
        """A wake for a closed loop schedules nothing, keeps nothing, and does not raise."""
        loop = asyncio.new_event_loop()
        wakes = LoopWakes(loop)

        class Waker:
            def resolve(self) -> None:
                raise AssertionError("never resolved")

        loop.close()
        wakes.wake(Waker())  # type: ignore[arg-type]
        assert (len(wakes.pending), wakes.scheduled) == (0, False)

    def test_a_waker_of_a_loop_far_behind_pauses_outside_the_lock(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        With BEHIND wakes waiting for a loop that has not run them, each further
        wake pauses for BEHIND_PAUSE, without holding the LoopWakes lock, and
        still queues its waker: the loop's thread gets the GIL.
        """
        loop = asyncio.new_event_loop()
        try:
            wakes = LoopWakes(loop)
            pauses: list[tuple[float, bool]] = []
            monkeypatch.setattr(
                _awaiting, "_sleep", lambda s: pauses.append((s, wakes.lock.locked()))
            )
            # As on a worker thread: only a worker pauses.
            monkeypatch.setattr(_job.worker_tls, "runner", object(), raising=False)

            class Waker:
                def resolve(self) -> None:
                    raise AssertionError("the loop never runs")

            for _ in range(BEHIND):
                wakes.wake(Waker())  # type: ignore[arg-type]
            assert pauses == []  # up to BEHIND behind: no pause
            for _ in range(3):
                wakes.wake(Waker())  # type: ignore[arg-type]
            assert pauses == [(BEHIND_PAUSE, False)] * 3
            assert (len(wakes.pending), wakes.scheduled) == (BEHIND + 3, True)
            monkeypatch.setattr(_job.worker_tls, "runner", None)
            wakes.wake(Waker())  # type: ignore[arg-type]
            assert len(pauses) == 3  # another thread (close(), say) does not pause
            assert len(wakes.pending) == BEHIND + 4
        finally:
            loop.close()

    def test_each_thread_keeps_its_loops_wakes(self) -> None:
        """A thread's calls share their loop's LoopWakes; another loop, or thread, gets its own."""
        seen: list[LoopWakes] = []

        async def look() -> None:
            loop = asyncio.get_running_loop()
            seen.append(loop_wakes(loop))
            seen.append(loop_wakes(loop))

        asyncio.run(look())
        asyncio.run(look())
        thread = threading.Thread(target=asyncio.run, args=(look(),))
        thread.start()
        thread.join(WAIT)
        assert seen[0] is seen[1]
        assert seen[1] is not seen[2]
        assert seen[2] is seen[3]
        assert seen[4] is not seen[2]
