"""
Quick start: a pool of functions, a call that times out, futures, stats.

Run it with ``make demo`` or ``python examples/quickstart.py``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import tunnypy

STEP = 0.01
"""Seconds per unit of pretend work."""

gave_up = threading.Event()
"""Set by a job that noticed its caller had given up."""


def slow_square(n: int) -> int:
    """Square *n* after ``n`` steps of work, stopping early if the caller gave up."""
    for _ in range(n):
        if tunnypy.interrupted():
            # Nobody is waiting for this result any more: stop, free the worker.
            gave_up.set()
            return -1
        time.sleep(STEP)
    return n * n


async def squares_from_asyncio(pool: tunnypy.Pool[int, int], numbers: range) -> list[int]:
    """Await pool jobs from a coroutine: they wait in the same line, the loop runs on."""
    return list(await asyncio.gather(*(pool.aprocess(n, timeout=5.0) for n in numbers)))


def main() -> None:
    # Four resident worker threads, each calling slow_square(payload).
    # ``with`` closes the pool: waiting callers are refused, running jobs
    # finish, the threads end.
    with tunnypy.Pool.from_func(4, slow_square) as pool:
        # 1. Blocking call: waits for a free worker, runs, returns the result.
        # expect: process(7) -> 49
        print("process(7) ->", pool.process(7))

        # 2. A deadline that covers waiting and running. 100 steps take about
        # a second; the caller gives up after 0.05 s and the job is told so
        # through tunnypy.interrupted().
        try:
            pool.process_timed(100, timeout=0.05)
        except tunnypy.JobTimedOutError:
            # expect: process_timed(100, timeout=0.05) -> JobTimedOutError
            print("process_timed(100, timeout=0.05) -> JobTimedOutError")
        stopped_early = gave_up.wait(timeout=2.0)
        # expect: the abandoned job stopped early: True
        print("the abandoned job stopped early:", stopped_early)

        # 3. Exceptions raised by a job are re-raised in the caller; the
        # worker stays in service.
        try:
            pool.process("seven")  # type: ignore[arg-type]  # a bug, on purpose
        except TypeError as exc:
            print("process('seven') -> TypeError:", exc)

        # 4. submit() returns a concurrent.futures.Future at once; the request
        # waits in the same line as blocking callers.
        futures = [pool.submit(n) for n in range(8)]
        # expect: submit(0..7) -> [0, 1, 4, 9, 16, 25, 36, 49]
        print("submit(0..7) ->", [future.result(timeout=5.0) for future in futures])

        # 5. From asyncio: await aprocess() (cancelling the task interrupts the job).
        # expect: asyncio -> [0, 1, 4, 9]
        print("asyncio ->", asyncio.run(squares_from_asyncio(pool, range(4))))

        stats = pool.stats()
        print(
            f"stats: size={stats.size} completed={stats.completed} failed={stats.failed} "
            f"timed_out={stats.timed_out}"
        )

    # expect: pool closed: True
    print("pool closed:", pool.closed)


if __name__ == "__main__":
    main()
