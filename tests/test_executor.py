"""Executor: a concurrent.futures executor on a resizable, bounded tunnypy pool."""

from __future__ import annotations

import concurrent.futures as cf
import functools
import gc
import itertools
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures.thread import BrokenThreadPool
from pathlib import Path
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for

SHUTDOWN = "cannot schedule new futures after shutdown"


@pytest.fixture
def executor() -> Iterator[tunnypy.Executor]:
    with tunnypy.Executor(2, thread_name_prefix="test") as executor:
        yield executor


def wait_until_interrupted() -> bool:
    """A job that returns True once tunnypy.interrupted() turns true, False after WAIT."""
    deadline = time.monotonic() + WAIT
    pause = threading.Event()
    while time.monotonic() < deadline:
        if tunnypy.interrupted():
            return True
        pause.wait(0.001)
    return False


class Recorder:
    """An iterator over range(n) that records how many items were taken from it."""

    def __init__(self, n: int) -> None:
        self.taken = 0
        self._n = n
        self.lock = threading.Lock()

    def __iter__(self) -> Recorder:
        return self

    def __next__(self) -> int:
        with self.lock:
            if self.taken >= self._n:
                raise StopIteration
            self.taken += 1
            return self.taken - 1


class TestConstruct:
    """The constructor: ThreadPoolExecutor's defaults, every argument checked."""

    def test_default_max_workers_as_thread_pool_executor(self) -> None:
        """max_workers=None gives min(32, cpu count + 4), as ThreadPoolExecutor."""
        count = getattr(os, "process_cpu_count", os.cpu_count)() or 1
        with tunnypy.Executor() as executor:
            assert min(32, count + 4) == executor.max_workers
            assert executor.max_workers == executor.stats().size

    def test_is_a_thread_pool_executor(self, executor: tunnypy.Executor) -> None:
        """It passes asyncio's isinstance check and is a concurrent.futures.Executor."""
        assert isinstance(executor, cf.ThreadPoolExecutor)
        assert isinstance(executor, cf.Executor)

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"max_workers": 0}, ValueError, "max_workers must be a positive int (got 0)"),
            ({"max_workers": -1}, ValueError, "max_workers must be a positive int (got -1)"),
            (
                {"max_workers": 2.0},
                TypeError,
                "max_workers must be a positive int (got float 2.0)",
            ),
            (
                {"max_workers": True},
                TypeError,
                "max_workers must be a positive int (got bool True)",
            ),
            ({"max_waiting": 0}, ValueError, "max_waiting must be a positive int (got 0)"),
            (
                {"max_waiting": "3"},
                TypeError,
                "max_waiting must be a positive int (got str '3')",
            ),
            (
                {"when_full": "drop"},
                ValueError,
                "when_full must be 'block', 'raise' or 'caller_runs' (got 'drop')",
            ),
            (
                {"thread_name_prefix": None},
                TypeError,
                "thread_name_prefix must be a str (got NoneType)",
            ),
            (
                {"initializer": 3},
                TypeError,
                "initializer must be callable or None (got int)",
            ),
            ({"initargs": [1]}, TypeError, "initargs must be a tuple (got list)"),
        ],
    )
    def test_bad_argument(
        self, kwargs: dict[str, Any], error: type[Exception], message: str
    ) -> None:
        """A bad argument raises naming it and what arrived; no thread is started."""
        before = threading.active_count()
        with pytest.raises(error) as info:
            tunnypy.Executor(**kwargs)
        assert message == str(info.value)
        assert before == threading.active_count()

    def test_repr(self) -> None:
        """The repr shows the size, then the shut-down state."""
        executor = tunnypy.Executor(3)
        assert repr(executor) == "<Executor max_workers=3 waiting=0>"
        executor.shutdown()
        assert repr(executor) == "<Executor shut down waiting=0>"


class TestSubmit:
    """submit() and the futures it returns."""

    def test_submit_returns_result(self, executor: tunnypy.Executor) -> None:
        """fn(*args, **kwargs) runs on a worker thread named with the prefix."""

        def fn(a: int, b: int, *, c: int) -> tuple[int, str]:
            return a + b + c, threading.current_thread().name

        total, name = executor.submit(fn, 1, 2, c=3).result(WAIT)
        assert total == 6
        assert name.startswith("test_")
        assert name != threading.current_thread().name

    def test_default_thread_names(self) -> None:
        """Without a prefix, threads are named TunnypyExecutor-<n>_<i>."""
        with tunnypy.Executor(1) as executor:
            name = executor.submit(lambda: threading.current_thread().name).result(WAIT)
        assert name.startswith("TunnypyExecutor-")
        assert name.rsplit("_", 1)[1].isdigit()

    def test_exception_delivered(self, executor: tunnypy.Executor) -> None:
        """An exception raised by fn is the future's; the worker serves on."""
        future = executor.submit(divmod, 1, 0)
        with pytest.raises(ZeroDivisionError):
            future.result(WAIT)
        assert isinstance(future.exception(WAIT), ZeroDivisionError)
        assert executor.submit(divmod, 5, 2).result(WAIT) == (2, 1)

    def test_fn_not_callable(self, executor: tunnypy.Executor) -> None:
        """A non-callable fn raises TypeError at once, naming its type."""
        with pytest.raises(TypeError) as info:
            executor.submit(3)  # type: ignore[arg-type]
        assert str(info.value) == "fn must be callable (got int)"

    def test_submit_after_shutdown(self) -> None:
        """submit after shutdown raises RuntimeError, as ThreadPoolExecutor."""
        executor = tunnypy.Executor(1)
        executor.shutdown()
        with pytest.raises(RuntimeError) as info:
            executor.submit(int)
        assert str(info.value) == SHUTDOWN

    def test_wait_and_as_completed(self, executor: tunnypy.Executor) -> None:
        """concurrent.futures.wait and as_completed work on its futures."""
        gate = Gate()
        slow = executor.submit(gate, "slow")
        fast = executor.submit(str, "fast")
        done, not_done = cf.wait([slow, fast], timeout=WAIT, return_when=cf.FIRST_COMPLETED)
        assert {fast} == done
        assert {slow} == not_done
        gate.release.set()
        results = {f.result() for f in cf.as_completed([slow, fast], timeout=WAIT)}
        assert {"slow", "fast"} == results
        done, not_done = cf.wait([slow, fast], timeout=WAIT)
        assert set() == not_done

    def test_cancel_waiting(self) -> None:
        """A call cancelled while it waits never runs, and the pool counts it cancelled."""
        with tunnypy.Executor(1) as executor:
            gate = Gate()
            running = executor.submit(gate)
            assert gate.started.wait(WAIT)
            ran = threading.Event()
            waiting = executor.submit(ran.set)
            assert waiting.cancel()
            assert waiting.cancelled()
            assert waiting.cancel()  # again: still True, counted once
            assert not running.cancel()
            gate.release.set()
            running.result(WAIT)
            assert executor.submit(int).result(WAIT) == 0
            assert not ran.is_set()
            assert executor.stats().cancelled == 1
            with pytest.raises(cf.CancelledError):
                waiting.result(0)

    def test_cancel_running_interrupts_it(self) -> None:
        """cancel() of a running call returns False and interrupts that job only."""
        with tunnypy.Executor(1) as executor:
            started = threading.Event()

            def job() -> bool:
                started.set()
                return wait_until_interrupted()

            future = executor.submit(job)
            assert started.wait(WAIT)
            assert future.cancel() is False
            assert future.result(WAIT) is True
            assert not future.cancelled()
            # The worker's next job is not interrupted.
            assert executor.submit(tunnypy.interrupted).result(WAIT) is False


class TestMap:
    """map(), with CPython's behaviours and Python 3.14's buffersize."""

    def test_map(self, executor: tunnypy.Executor) -> None:
        """Results come in input order, over several iterables."""
        assert list(map(pow, range(10), range(10))) == list(executor.map(pow, range(10), range(10)))
        assert list(map(pow, range(10), range(10))) == list(
            executor.map(pow, range(10), range(10), chunksize=3)
        )

    def test_map_exception(self, executor: tunnypy.Executor) -> None:
        """An exception of one call is raised by the iterator at its place."""
        results = executor.map(divmod, [1, 1, 1, 1], [2, 3, 0, 5])
        assert next(results) == (0, 1)
        assert next(results) == (0, 1)
        with pytest.raises(ZeroDivisionError):
            next(results)

    def test_map_timeout(self, executor: tunnypy.Executor) -> None:
        """A result not ready by the timeout raises TimeoutError and interrupts its call."""
        interrupted = threading.Event()
        release = threading.Event()

        def fn(slow: bool) -> None:
            if slow and wait_until_interrupted():
                interrupted.set()
                release.wait(WAIT)

        results: list[None] = []
        with pytest.raises(TimeoutError):
            for result in executor.map(fn, [False, False, True], timeout=0.2):
                results.append(result)
        assert results == [None, None]
        assert interrupted.wait(WAIT)
        release.set()

    @pytest.mark.parametrize(
        ("kwargs", "error", "message"),
        [
            ({"buffersize": 0}, ValueError, "buffersize must be a positive int (got 0)"),
            ({"buffersize": -1}, ValueError, "buffersize must be a positive int (got -1)"),
            (
                {"buffersize": 2.0},
                TypeError,
                "buffersize must be a positive int (got float 2.0)",
            ),
            (
                {"buffersize": "foo"},
                TypeError,
                "buffersize must be a positive int (got str 'foo')",
            ),
            ({"chunksize": 0}, ValueError, "chunksize must be a positive int (got 0)"),
            (
                {"timeout": -1},
                ValueError,
                "timeout must be a non-negative number of seconds (got -1)",
            ),
        ],
    )
    def test_bad_argument(
        self,
        executor: tunnypy.Executor,
        kwargs: dict[str, Any],
        error: type[Exception],
        message: str,
    ) -> None:
        """A bad argument raises at once, and nothing is read or submitted."""
        items = Recorder(4)
        with pytest.raises(error) as info:
            executor.map(str, items, **kwargs)
        assert message == str(info.value)
        assert items.taken == 0
        assert executor.stats().completed == 0

    def test_buffersize_reads_lazily(self) -> None:
        """With buffersize, the input is read buffersize ahead of the results, no further."""
        with tunnypy.Executor(1) as executor:
            items = Recorder(10)
            results = executor.map(str, items, buffersize=3)
            assert items.taken == 3
            assert next(results) == "0"
            assert items.taken == 4
            assert next(results) == "1"
            assert items.taken == 5
            assert [str(i) for i in range(2, 10)] == list(results)
            assert items.taken == 10

    def test_buffersize_bounds_calls_in_flight(self) -> None:
        """No more than buffersize + 1 calls are ever submitted and not yet yielded."""
        with tunnypy.Executor(4) as executor:
            lock = threading.Lock()
            submitted_not_yielded = 0
            high = 0

            class Counting(Recorder):
                def __next__(self) -> int:
                    nonlocal submitted_not_yielded, high
                    item = super().__next__()
                    with lock:
                        submitted_not_yielded += 1
                        high = max(high, submitted_not_yielded)
                    return item

            for _ in executor.map(str, Counting(50), buffersize=2):
                with lock:
                    submitted_not_yielded -= 1
            assert high <= 3

    def test_buffersize_on_infinite_input(self, executor: tunnypy.Executor) -> None:
        """An endless input works with buffersize."""
        results = executor.map(str, itertools.count(1), buffersize=1)
        assert next(results) == "1"
        results.close()

    def test_buffersize_smaller_input_and_empty(self, executor: tunnypy.Executor) -> None:
        """An input shorter than the buffer, or empty, gives all its results."""
        assert list(executor.map(str, range(2), buffersize=10)) == ["0", "1"]
        assert list(executor.map(str, iter([]), buffersize=10)) == []

    def test_close_cancels_the_rest(self) -> None:
        """Closing the iterator cancels the calls not yet started."""
        with tunnypy.Executor(1) as executor:
            gate = Gate()
            ran: list[int] = []

            def fn(i: int) -> int:
                if i == 1:
                    gate()
                ran.append(i)
                return i

            results = executor.map(fn, range(4))
            assert next(results) == 0
            assert gate.started.wait(WAIT)
            results.close()
            gate.release.set()
        assert ran == [0, 1]


class TestShutdown:
    """shutdown() and its variants, as ThreadPoolExecutor."""

    def test_wait_runs_pending_calls(self) -> None:
        """shutdown(wait=True) returns once every submitted call has run."""
        executor = tunnypy.Executor(1)
        gate = Gate()
        first = executor.submit(gate, 1)
        rest = [executor.submit(int, i) for i in ("2", "3")]
        assert gate.started.wait(WAIT)
        closer = Call(executor.shutdown)
        assert not closer.done.wait(0.05)
        gate.release.set()
        closer.wait()
        assert [f.result(0) for f in [first, *rest]] == [1, 2, 3]
        assert executor.stats().workers == 0

    def test_no_wait_still_runs_pending_calls(self) -> None:
        """shutdown(wait=False) returns at once; pending calls still run, then threads end."""
        executor = tunnypy.Executor(1, thread_name_prefix="nowait")
        gate = Gate()
        first = executor.submit(gate, 1)
        second = executor.submit(int, "2")
        assert gate.started.wait(WAIT)
        executor.shutdown(wait=False)
        with pytest.raises(RuntimeError):
            executor.submit(int)
        gate.release.set()
        assert first.result(WAIT) == 1
        assert second.result(WAIT) == 2
        wait_for(lambda: executor.stats().workers == 0, "workers to end")

    def test_cancel_futures(self) -> None:
        """cancel_futures=True cancels the waiting calls; the running one finishes."""
        executor = tunnypy.Executor(1)
        gate = Gate()
        running = executor.submit(gate, "ran")
        assert gate.started.wait(WAIT)
        waiting = [executor.submit(int, "1") for _ in range(5)]
        closer = Call(functools.partial(executor.shutdown, wait=True, cancel_futures=True))
        for future in waiting:
            wait_for(future.done, "waiting calls to be cancelled")
        gate.release.set()
        closer.wait()
        executor.shutdown(cancel_futures=True)
        assert running.result(0) == "ran"
        assert all(f.cancelled() for f in waiting)

    def test_cancel_futures_kwarg(self) -> None:
        """shutdown(cancel_futures=True) cancels every waiting call."""
        executor = tunnypy.Executor(1)
        gate = Gate()
        running = executor.submit(gate, "ran")
        assert gate.started.wait(WAIT)
        waiting = [executor.submit(int, "1") for _ in range(5)]
        executor.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in waiting)
        gate.release.set()
        assert running.result(WAIT) == "ran"
        assert executor.stats().cancelled == 5
        executor.shutdown()

    def test_twice_and_context_manager(self) -> None:
        """shutdown() is safe to call twice; leaving the with block shuts down."""
        with tunnypy.Executor(1) as executor:
            future = executor.submit(int, "7")
        assert future.result(0) == 7
        executor.shutdown()
        executor.shutdown(wait=False)
        with pytest.raises(RuntimeError):
            executor.submit(int)

    def test_shutdown_from_inside_a_call(self) -> None:
        """A call that shuts its executor down with wait=True does not deadlock."""
        executor = tunnypy.Executor(2)
        other = Gate()
        pending = executor.submit(other, "other")
        assert other.started.wait(WAIT)

        def closer() -> str:
            other.release.set()
            executor.shutdown(wait=True)
            return "closed"

        future = executor.submit(closer)
        assert future.result(WAIT) == "closed"
        assert pending.result(WAIT) == "other"
        wait_for(lambda: executor.stats().workers == 0, "workers to end")

    def test_two_calls_shut_down_each_waiting(self) -> None:
        """Two calls that each shut the executor down with wait=True both return."""
        executor = tunnypy.Executor(2)
        barrier = threading.Barrier(2, timeout=WAIT)

        def closer() -> str:
            barrier.wait()
            executor.shutdown(wait=True)
            return "closed"

        futures = [executor.submit(closer) for _ in range(2)]
        assert [f.result(WAIT) for f in futures] == ["closed", "closed"]
        executor.shutdown()

    def test_resize_after_shutdown(self) -> None:
        """set_max_workers after shutdown raises RuntimeError."""
        executor = tunnypy.Executor(1)
        executor.shutdown()
        with pytest.raises(RuntimeError) as info:
            executor.set_max_workers(2)
        assert str(info.value) == "cannot resize an executor after shutdown"


class TestInitializer:
    """initializer and initargs, and a failing initializer breaking the executor."""

    def test_runs_on_each_worker_thread_first(self) -> None:
        """The initializer runs with initargs on a worker thread before its first call."""
        local = threading.local()
        threads: list[int] = []
        lock = threading.Lock()

        def init(tag: str) -> None:
            local.tag = tag
            with lock:
                threads.append(threading.get_ident())

        with tunnypy.Executor(2, initializer=init, initargs=("ready",)) as executor:
            barrier = threading.Barrier(2, timeout=WAIT)

            def job() -> tuple[str, int]:
                barrier.wait()
                return local.tag, threading.get_ident()

            results = [f.result(WAIT) for f in [executor.submit(job) for _ in range(2)]]
            assert [("ready", t) for t in sorted(threads)] == sorted(results, key=lambda r: r[1])
            assert threading.get_ident() not in threads
            # Once per thread: more calls run it no more.
            for future in [executor.submit(int) for _ in range(10)]:
                future.result(WAIT)
            assert len(threads) == 2

    def test_failing_initializer_breaks_executor(self) -> None:
        """An initializer that raises fails the call, the waiting ones and later submits."""
        release = threading.Event()

        def init() -> None:
            release.wait(WAIT)
            raise ValueError("no database")

        executor = tunnypy.Executor(1, initializer=init)
        futures = [executor.submit(int, "1") for _ in range(3)]
        release.set()
        for future in futures:
            with pytest.raises(BrokenThreadPool) as info:
                future.result(WAIT)
            assert "initializer failed" in str(info.value)
        with pytest.raises(BrokenThreadPool):
            executor.submit(int)
        executor.shutdown()
        assert repr(executor) == "<Executor broken waiting=0>"
        assert executor.stats().workers == 0
        # None ran: the pool counts them cancelled.
        assert (executor.stats().completed, executor.stats().cancelled) == (0, 3)


class TestCollected:
    """An executor dropped without shutdown()."""

    def test_collected_while_running(self) -> None:
        """Its pending calls still complete, then its threads end."""
        executor = tunnypy.Executor(1, thread_name_prefix="dropped")
        gate = Gate()
        futures = [executor.submit(gate, i) for i in range(3)]
        assert gate.started.wait(WAIT)
        ref = weakref.ref(executor)
        del executor
        gc.collect()
        assert ref() is None
        gate.release.set()
        assert [f.result(WAIT) for f in futures] == [0, 1, 2]
        wait_for(
            lambda: not any(t.name.startswith("dropped") for t in threading.enumerate()),
            "the dropped executor's threads to end",
        )


class TestBounded:
    """max_waiting and each when_full policy."""

    def _full(self, when_full: str) -> tuple[tunnypy.Executor, Gate, cf.Future[Any]]:
        executor = tunnypy.Executor(1, max_waiting=1, when_full=when_full)  # type: ignore[arg-type]
        gate = Gate()
        executor.submit(gate)
        assert gate.started.wait(WAIT)
        return executor, gate, executor.submit(int, "1")

    def test_raise(self) -> None:
        """when_full="raise": submit raises PoolBusyError and submits nothing."""
        executor, gate, waiting = self._full("raise")
        with pytest.raises(tunnypy.PoolBusyError) as info:
            executor.submit(int, "2")
        assert str(info.value) == "executor has 1 calls waiting (max_waiting=1)"
        gate.release.set()
        assert waiting.result(WAIT) == 1
        assert executor.submit(int, "2").result(WAIT) == 2
        executor.shutdown()
        assert executor.stats().completed == 3

    def test_block_waits_for_room(self) -> None:
        """when_full="block": submit waits until a waiting call starts."""
        executor, gate, waiting = self._full("block")
        blocked = Call(executor.submit, int, "2")
        assert not blocked.done.wait(0.05)
        gate.release.set()
        assert blocked.wait().result(WAIT) == 2
        assert waiting.result(WAIT) == 1
        executor.shutdown()

    def test_block_woken_by_cancel(self) -> None:
        """A waiting call cancelled makes room for a blocked submitter."""
        executor, gate, waiting = self._full("block")
        blocked = Call(executor.submit, int, "2")
        assert not blocked.done.wait(0.05)
        assert waiting.cancel()
        future = blocked.wait()
        gate.release.set()
        assert future.result(WAIT) == 2
        executor.shutdown()

    def test_block_woken_by_shutdown(self) -> None:
        """A submitter blocked for room gets RuntimeError when the executor shuts down."""
        executor, gate, waiting = self._full("block")
        blocked = Call(executor.submit, int, "2")
        assert not blocked.done.wait(0.05)
        executor.shutdown(wait=False)
        with pytest.raises(RuntimeError) as info:
            blocked.wait()
        assert str(info.value) == SHUTDOWN
        gate.release.set()
        assert waiting.result(WAIT) == 1
        executor.shutdown()

    def test_block_from_every_worker_is_a_deadlock(self) -> None:
        """A call that would block while every worker blocks raises PoolDeadlockError."""
        with tunnypy.Executor(1, max_waiting=1) as executor:

            def nested() -> str:
                executor.submit(int, "1")  # waits: the only worker is this one
                try:
                    executor.submit(int, "2")
                except tunnypy.PoolDeadlockError as exc:
                    return str(exc)
                return "no error"

            message = executor.submit(nested).result(WAIT)
        assert message == "every worker of this executor would wait for room to submit to it"

    def test_caller_runs(self) -> None:
        """when_full="caller_runs": the caller runs fn and gets a finished future."""
        executor, gate, waiting = self._full("caller_runs")
        future = executor.submit(threading.get_ident)
        assert future.done()
        assert threading.get_ident() == future.result(0)
        failed = executor.submit(divmod, 1, 0)
        assert isinstance(failed.exception(0), ZeroDivisionError)
        gate.release.set()
        assert waiting.result(WAIT) == 1
        executor.shutdown()
        assert executor.stats().completed == 2


class TestResize:
    """max_workers and set_max_workers, under load."""

    def test_grow_under_load(self) -> None:
        """Growing starts threads that serve the waiting calls at once."""
        with tunnypy.Executor(1) as executor:
            barrier = threading.Barrier(4, timeout=WAIT)
            futures = [executor.submit(barrier.wait) for _ in range(4)]
            assert executor.max_workers == 1
            executor.set_max_workers(4)
            assert executor.max_workers == 4
            assert {0, 1, 2, 3} == {f.result(WAIT) for f in futures}

    def test_shrink_under_load(self) -> None:
        """Shrinking lets busy threads finish their call, then leave; nothing is lost."""
        with tunnypy.Executor(4) as executor:
            gates = [Gate() for _ in range(4)]
            futures = [executor.submit(gate, i) for i, gate in enumerate(gates)]
            for gate in gates:
                assert gate.started.wait(WAIT)
            more = [executor.submit(int, str(i)) for i in range(4, 8)]
            executor.set_max_workers(1)
            assert executor.max_workers == 1
            for gate in gates:
                gate.release.set()
            assert list(range(8)) == [f.result(WAIT) for f in futures + more]
            wait_for(lambda: executor.stats().workers == 1, "retired threads to end")

    def test_max_workers_kept_after_shutdown(self) -> None:
        """max_workers reads what it was last set to after shutdown, as ThreadPoolExecutor's."""
        executor = tunnypy.Executor(2)
        executor.set_max_workers(3)
        executor.shutdown()
        assert executor.max_workers == 3
        assert executor.stats().workers == 0
        assert repr(executor) == "<Executor shut down waiting=0>"

    def test_max_workers_kept_when_broken(self) -> None:
        """A failed initializer leaves max_workers as it was."""

        def init() -> None:
            raise ValueError("no database")

        executor = tunnypy.Executor(2, initializer=init)
        with pytest.raises(BrokenThreadPool):
            executor.submit(int).result(WAIT)
        executor.shutdown()
        assert executor.max_workers == 2

    @pytest.mark.parametrize(
        ("n", "error", "message"),
        [
            (0, ValueError, "n must be a positive int (got 0)"),
            (1.5, TypeError, "n must be a positive int (got float 1.5)"),
        ],
    )
    def test_bad_size(
        self, executor: tunnypy.Executor, n: object, error: type[Exception], message: str
    ) -> None:
        """A bad size raises and changes nothing."""
        with pytest.raises(error) as info:
            executor.set_max_workers(n)  # type: ignore[arg-type]
        assert message == str(info.value)
        assert executor.max_workers == 2


class TestStats:
    """stats() is the pool's PoolStats."""

    def test_stats(self, executor: tunnypy.Executor) -> None:
        """Finished calls are counted, failed ones apart."""
        executor.submit(int, "1").result(WAIT)
        executor.submit(divmod, 1, 0).exception(WAIT)
        stats = executor.stats()
        assert isinstance(stats, tunnypy.PoolStats)
        assert (stats.size, stats.completed, stats.failed) == (2, 1, 1)

    @pytest.mark.parametrize("fails", [False, True], ids=["returns", "raises"])
    def test_a_call_is_counted_once_its_result_is_had(
        self, executor: tunnypy.Executor, fails: bool
    ) -> None:
        """
        stats() read as soon as result() returns counts the call, though its
        worker is held after settling the future (here, in a done-callback)
        and has not yet returned to the pool, which counts its job after.
        """
        go, read = threading.Event(), threading.Event()

        def call() -> tuple[int, int]:
            assert go.wait(WAIT)
            return divmod(1, 0 if fails else 1)

        future = executor.submit(call)
        future.add_done_callback(lambda _: read.wait(WAIT))  # on the worker, as it settles
        go.set()
        if fails:
            assert isinstance(future.exception(WAIT), ZeroDivisionError)
        else:
            assert future.result(WAIT) == (1, 0)
        try:
            stats = executor.stats()
        finally:
            read.set()
        assert (stats.completed, stats.failed) == ((0, 1) if fails else (1, 0))


EXIT_PROGRAM = """
import threading
import tunnypy

executor = tunnypy.Executor(1)
started = threading.Event()

def job(i):
    if i == 0:
        started.set()
        # Runs on while the interpreter begins to exit, which refuses new calls.
        pause = threading.Event()
        for _ in range(10000):
            try:
                executor.submit(int)
            except RuntimeError as exc:
                print("refused:", exc, flush=True)
                break
            pause.wait(0.001)
    print("done", i, flush=True)

for i in range(3):
    executor.submit(job, i)
started.wait(10)
print("exiting", flush=True)
"""


class TestExit:
    """Interpreter exit without shutdown(), as ThreadPoolExecutor."""

    def test_exit_runs_running_and_pending_calls(self) -> None:
        """At exit new calls are refused; the running call and the pending ones run."""
        completed = subprocess.run(
            [sys.executable, "-c", EXIT_PROGRAM],
            cwd=Path(__file__).resolve().parent.parent,
            capture_output=True,
            text=True,
            timeout=WAIT * 3,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.split("\n") == [
            "exiting",
            "refused: cannot schedule new futures after interpreter shutdown",
            "done 0",
            "done 1",
            "done 2",
            "",
        ]
        assert completed.stderr == ""


class TestStorm:
    """Submits, cancels, resizes and a shutdown racing each other."""

    def test_nothing_lost_or_stuck(self) -> None:
        """Every future ends, with its result unless cancelled; stats agree; shutdown returns."""
        executor = tunnypy.Executor(2, max_waiting=4)
        futures: list[cf.Future[int]] = []
        lock = threading.Lock()
        producing = threading.Barrier(5, timeout=WAIT)
        stop = threading.Event()

        def produce(base: int) -> None:
            producing.wait()
            for i in range(200):
                future = executor.submit(int, str(base + i))
                with lock:
                    futures.append(future)

        def disturb() -> None:
            producing.wait()
            for step in itertools.count():
                if stop.is_set():
                    return
                executor.set_max_workers(1 + step % 4)
                with lock:
                    victims = futures[-3:]
                for future in victims:
                    future.cancel()

        producers = [Call(produce, base) for base in (0, 1000, 2000, 3000)]
        disturber = Call(disturb)
        for producer in producers:
            producer.wait()
        stop.set()
        disturber.wait()
        closer = Call(executor.shutdown)
        closer.wait()
        assert len(futures) == 800
        for future in futures:
            assert future.done()
            if not future.cancelled():
                assert isinstance(future.result(0), int)
        stats = executor.stats()
        assert stats.workers == 0
        cancelled = sum(f.cancelled() for f in futures)
        assert (stats.completed, stats.cancelled) == (800 - cancelled, cancelled)

    def test_shutdown_racing_blocked_submitters(self) -> None:
        """A shutdown amid blocked submitters: each gets RuntimeError or a future that ends."""
        executor = tunnypy.Executor(2, max_waiting=2)
        futures: list[cf.Future[int]] = []
        refused: list[RuntimeError] = []
        lock = threading.Lock()
        producing = threading.Barrier(5, timeout=WAIT)

        def produce(base: int) -> None:
            producing.wait()
            for i in range(500):
                try:
                    future = executor.submit(int, str(base + i))
                except RuntimeError as exc:
                    with lock:
                        refused.append(exc)
                    return
                with lock:
                    futures.append(future)

        producers = [Call(produce, base) for base in (0, 1000, 2000, 3000)]
        producing.wait()
        wait_for(lambda: len(futures) >= 50, "some calls to be submitted")
        executor.shutdown(wait=True, cancel_futures=True)
        for producer in producers:
            producer.wait()
        assert all(str(exc) == SHUTDOWN for exc in refused)
        for future in futures:
            assert future.done()
            if not future.cancelled():
                assert isinstance(future.result(0), int)
        stats = executor.stats()
        cancelled = sum(f.cancelled() for f in futures)
        assert (stats.completed, stats.cancelled) == (len(futures) - cancelled, cancelled)
        assert stats.workers == 0
