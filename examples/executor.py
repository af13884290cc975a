"""
tunnypy.Executor: a ThreadPoolExecutor with a bounded line, resizing and interrupts.

A fast producer submits 200 calls to an executor that lets at most 8 wait:
``submit`` blocks instead of piling the work up in memory. The executor grows
while it works. Then it becomes asyncio's default executor, so
``asyncio.to_thread`` runs on it, and a cancelled ``to_thread`` call is told
to stop through ``tunnypy.interrupted()``.
"""

from __future__ import annotations

import asyncio
import threading
import time

import tunnypy


def work(n: int) -> int:
    time.sleep(0.002)  # a blocking call: I/O, a C library
    return n * n


def backpressure() -> None:
    most_waiting = 0
    with tunnypy.Executor(2, max_waiting=8, thread_name_prefix="squares") as executor:
        futures = []
        for n in range(200):
            futures.append(executor.submit(work, n))  # blocks while 8 calls wait
            most_waiting = max(most_waiting, executor.stats().waiting)
            if n == 100:
                executor.set_max_workers(6)  # grow under load
        total = sum(f.result() for f in futures)
        print(f"sum of squares: {total}")  # expect: sum of squares: 2646700
        # expect: at most 8 calls waited: True
        print(f"at most 8 calls waited: {most_waiting <= 8}")
        print(f"max_workers now: {executor.max_workers}")  # expect: max_workers now: 6


def patient_job(started: threading.Event) -> str:
    started.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if tunnypy.interrupted():  # its caller gave up: stop early
            return "stopped early"
        time.sleep(0.001)
    return "ran to the end"


async def on_asyncio(stopped: list[str]) -> None:
    loop = asyncio.get_running_loop()
    loop.set_default_executor(tunnypy.Executor(2, thread_name_prefix="asyncio-tunnypy"))
    name = await asyncio.to_thread(lambda: threading.current_thread().name)
    print(f"to_thread ran on {name.rsplit('_', 1)[0]}")  # expect: to_thread ran on asyncio-tunnypy

    started = threading.Event()

    def job() -> None:
        stopped.append(patient_job(started))

    task = asyncio.ensure_future(asyncio.to_thread(job))
    while not started.is_set():
        await asyncio.sleep(0.001)
    task.cancel()  # reaches the running job as an interrupt
    try:
        await task
    except asyncio.CancelledError:
        print("task cancelled")  # expect: task cancelled


def main() -> None:
    backpressure()
    stopped: list[str] = []
    asyncio.run(on_asyncio(stopped))  # waits for the default executor's calls at the end
    print(f"the cancelled job {stopped[0]}")  # expect: the cancelled job stopped early


if __name__ == "__main__":
    main()
