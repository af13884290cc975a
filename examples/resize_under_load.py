"""
Resize under load: callers keep calling while the pool grows and shrinks.

Eight caller threads call the pool in a loop. The pool starts with two
workers, so six callers wait in line; growing to eight serves them at once;
shrinking to one returns at once while the retired workers finish the jobs
they hold, and callers are served throughout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import tunnypy

CALLERS = 8
JOB_SECONDS = 0.02
CALL_TIMEOUT = 5.0
"""Upper bound on one call: the example never hangs."""
PHASE_SECONDS = 0.3


def work(n: int) -> int:
    """A job that takes JOB_SECONDS."""
    time.sleep(JOB_SECONDS)
    return n


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = CALL_TIMEOUT) -> float:
    """Poll *predicate* until it holds; return the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.001)
    return time.monotonic() - start


def show(label: str, pool: tunnypy.Pool[int, int]) -> None:
    s = pool.stats()
    print(
        f"{label:<28} size={s.size} workers={s.workers} busy={s.busy} idle={s.idle} "
        f"waiting={s.waiting} completed={s.completed}"
    )


def main() -> None:
    stop = threading.Event()
    calls = [0] * CALLERS  # each caller writes only its own slot

    def caller(index: int, pool: tunnypy.Pool[int, int]) -> None:
        while not stop.is_set():
            pool.process_timed(index, CALL_TIMEOUT)
            calls[index] += 1

    with tunnypy.Pool.from_func(2, work) as pool:
        threads = [
            threading.Thread(target=caller, args=(i, pool), name=f"caller-{i}")
            for i in range(CALLERS)
        ]
        for thread in threads:
            thread.start()
        try:
            # Two workers, eight callers: six wait in line.
            wait_until(lambda: pool.queue_length == CALLERS - 2, "six callers in line")
            show("2 workers, 8 callers:", pool)

            # Growing starts workers that take the waiting callers at once.
            pool.set_size(CALLERS)
            took = wait_until(lambda: pool.queue_length == 0, "the line to empty")
            print(f"grew to {CALLERS}: the line emptied in {took * 1000:.0f} ms")
            time.sleep(PHASE_SECONDS)
            show(f"{CALLERS} workers:", pool)

            # Shrinking returns at once: busy workers retire after their job,
            # and no retiring worker is handed a new one.
            start = time.monotonic()
            pool.set_size(1)
            took = time.monotonic() - start
            print(f"set_size(1) returned in {took * 1000:.1f} ms; size reads {pool.size} at once")
            show("just after set_size(1):", pool)
            wait_until(lambda: pool.stats().workers == 1, "retired workers to leave")
            # expect: retired workers finished their jobs and left
            print("retired workers finished their jobs and left")
            time.sleep(PHASE_SECONDS)
            show("1 worker, 8 callers:", pool)

            # Grow again, this time waiting for nothing.
            pool.set_size(4)
            time.sleep(PHASE_SECONDS)
            show("4 workers:", pool)
        finally:
            stop.set()
            for thread in threads:
                thread.join(CALL_TIMEOUT * 2)
        stats = pool.stats()

    total = sum(calls)
    # expect: calls served
    print(f"{total} calls served, {stats.completed} completed, {stats.timed_out} timed out")
    assert stats.completed == total, "every call was served exactly once"


if __name__ == "__main__":
    main()
