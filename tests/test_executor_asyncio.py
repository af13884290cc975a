"""Executor as asyncio's default executor: to_thread and run_in_executor on tunnypy."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import tunnypy
from tests.helpers import WAIT

PREFIX = "aio-tunnypy"


def on_worker() -> tuple[str, bool]:
    """The calling thread's name, and whether it is in a job (interrupted() is False)."""
    return threading.current_thread().name, tunnypy.interrupted()


def until_interrupted(started: threading.Event) -> bool:
    """Signal *started*, then return True once the job is interrupted (False after WAIT)."""
    started.set()
    deadline = time.monotonic() + WAIT
    pause = threading.Event()
    while time.monotonic() < deadline:
        if tunnypy.interrupted():
            return True
        pause.wait(0.001)
    return False


class TestDefaultExecutor:
    """loop.set_default_executor(tunnypy.Executor(...))."""

    def test_asyncio_refuses_other_executors(self) -> None:
        """asyncio accepts only ThreadPoolExecutor instances: why Executor is one."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            with pytest.raises(TypeError):
                loop.set_default_executor(object())  # type: ignore[arg-type]

        asyncio.run(main())

    def test_to_thread_and_run_in_executor_run_on_tunnypy(self) -> None:
        """to_thread and run_in_executor(None, ...) run on the executor's threads."""
        executor = tunnypy.Executor(2, thread_name_prefix=PREFIX)

        async def main() -> list[tuple[str, bool]]:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(executor)
            return [
                await asyncio.to_thread(on_worker),
                await loop.run_in_executor(None, on_worker),
            ]

        results = asyncio.run(main())
        for name, interrupted in results:
            assert name.startswith(f"{PREFIX}_")
            assert interrupted is False
        assert executor.stats().completed == 2
        # asyncio.run shut its default executor down, as it does a ThreadPoolExecutor.
        with pytest.raises(RuntimeError):
            executor.submit(int)

    def test_resized_and_observed_from_the_loop(self) -> None:
        """The default executor grows under load and its stats show it."""
        executor = tunnypy.Executor(1, thread_name_prefix=PREFIX)
        barrier = threading.Barrier(3, timeout=WAIT)

        async def main() -> list[int]:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(executor)
            executor.set_max_workers(3)
            results = await asyncio.gather(*(asyncio.to_thread(barrier.wait) for _ in range(3)))
            assert executor.stats().size == 3
            return results

        assert sorted(asyncio.run(main())) == [0, 1, 2]

    def test_cancelled_to_thread_interrupts_its_job(self) -> None:
        """Cancelling the task awaiting to_thread makes interrupted() true in that job only."""
        executor = tunnypy.Executor(1, thread_name_prefix=PREFIX)
        started = threading.Event()
        seen: list[bool] = []

        def job() -> None:
            seen.append(until_interrupted(started))

        async def main() -> bool:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(executor)
            task = asyncio.ensure_future(asyncio.to_thread(job))
            while not started.is_set():
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The worker's next job is not interrupted.
            _name, interrupted = await asyncio.to_thread(on_worker)
            return interrupted

        assert asyncio.run(asyncio.wait_for(main(), WAIT)) is False
        assert seen == [True]

    def test_wait_for_timeout_interrupts_its_job(self) -> None:
        """asyncio.wait_for's timeout on a to_thread call interrupts its job."""
        executor = tunnypy.Executor(1, thread_name_prefix=PREFIX)
        started = threading.Event()
        seen: list[bool] = []

        def job() -> None:
            seen.append(until_interrupted(started))

        async def main() -> None:
            loop = asyncio.get_running_loop()
            loop.set_default_executor(executor)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(job), 0.05)

        asyncio.run(main())  # its shutdown of the default executor waits for the job
        assert seen == [True]
