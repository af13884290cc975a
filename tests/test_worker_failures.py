"""A worker's process(), block_until_ready(), interrupt() or terminate() raising loses no call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    BoomError,
    Call,
    Gate,
    InterruptWorker,
    RecordingWorker,
)


class TestProcessRaises:
    @pytest.mark.parametrize("error", [BoomError("job"), KeyboardInterrupt(), SystemExit(3)])
    def test_the_error_reaches_the_caller_and_the_worker_stays(self, error: BaseException) -> None:
        """Exception, KeyboardInterrupt and SystemExit from a job go to its caller only."""
        threads: list[int] = []

        def job(fail: bool) -> int:
            threads.append(threading.get_ident())
            if fail:
                raise error
            return 1

        pool = tunnypy.Pool.from_func(1, job)
        try:
            with pytest.raises(type(error)):
                pool.process(True)
            future = pool.submit(True)
            assert error is future.exception(WAIT)
            assert pool.process(False) == 1
            assert len(set(threads)) == 1  # the same worker served every call
            stats = pool.stats()
            assert (stats.workers, stats.completed, stats.failed) == (1, 1, 2)
        finally:
            assert pool.close(timeout=WAIT)

    def test_error_with_a_broken_repr_still_reaches_its_caller(self) -> None:
        """An exception whose __repr__ raises is delivered; the worker survives (regression)."""

        class UnprintableError(Exception):
            def __repr__(self) -> str:
                raise RuntimeError("no repr")

        def job(fail: bool) -> int:
            if fail:
                raise UnprintableError
            return 2

        pool = tunnypy.Pool.from_func(1, job)
        try:
            call = Call(pool.process_timed, True, WAIT)
            with pytest.raises(UnprintableError):
                call.wait()
            assert pool.process(False) == 2
            assert pool.stats().workers == 1
        finally:
            assert pool.close(timeout=WAIT)


class ReadyWorker(RecordingWorker):
    """Its block_until_ready runs *ready* (raise, or block on an event)."""

    def __init__(self, ready: Callable[[], None]) -> None:
        super().__init__()
        self.ready = ready

    def block_until_ready(self) -> None:
        super().block_until_ready()
        self.ready()


class TestBlockUntilReady:
    @pytest.mark.parametrize("error", [BoomError("not ready"), SystemExit(1), KeyboardInterrupt()])
    def test_raising_is_logged_and_the_worker_still_serves(
        self, error: BaseException, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A readiness check that raises (even SystemExit) neither kills the worker nor hangs."""
        raised = threading.Event()

        def ready() -> None:
            if not raised.is_set():
                raised.set()
                raise error

        caplog.set_level(logging.ERROR, logger="tunnypy")
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, lambda: ReadyWorker(ready))
        try:
            assert Call(pool.process, 5).wait() == 5
            assert pool.stats().workers == 1
            assert any("block_until_ready_failed" in r.getMessage() for r in caplog.records)
        finally:
            assert pool.close(timeout=WAIT)

    def test_blocking_forever_does_not_hang_close(self) -> None:
        """close(timeout=...) returns False promptly; the worker ends once it is released."""
        release = threading.Event()
        blocked = threading.Event()
        first = threading.Event()

        def ready() -> None:
            if first.is_set():
                blocked.set()
                release.wait(WAIT)
            first.set()

        worker = ReadyWorker(ready)
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, lambda: worker)
        try:
            assert pool.process(1) == 1
            assert blocked.wait(WAIT)
            assert not pool.close(timeout=0.05)
            assert pool.closed
            with pytest.raises(tunnypy.PoolClosedError):
                pool.process(2)
        finally:
            release.set()
        assert pool.close(timeout=WAIT)
        assert worker.terminated == 1


class TestInterrupt:
    @pytest.mark.parametrize(
        ("raised", "caller_gets", "logged"),
        [
            (BoomError("interrupt"), tunnypy.JobCancelledError, True),
            # interrupt() runs on the caller's thread: a SystemExit (or a
            # Ctrl-C landing in it) is that caller's, not logged.
            (SystemExit(3), SystemExit, False),
        ],
    )
    def test_raising_ends_only_the_call_that_gave_up(
        self,
        caplog: pytest.LogCaptureFixture,
        raised: BaseException,
        caller_gets: type[BaseException],
        logged: bool,
    ) -> None:
        """The caller gets its error, or interrupt()'s BaseException; the next job runs normally."""

        def boom() -> None:
            raise raised

        caplog.set_level(logging.ERROR, logger="tunnypy")
        worker = InterruptWorker(boom)
        pool: tunnypy.Pool[Gate | int, Any] = tunnypy.Pool(1, lambda: worker)
        try:
            gate = Gate()
            token = tunnypy.CancelToken()
            call = Call(pool.process_ctx, gate, token)
            assert gate.started.wait(WAIT)
            token.cancel()
            with pytest.raises(caller_gets):
                call.wait()
            assert worker.log == ["start gate", "interrupt begins", "interrupt ends"]
            gate.release.set()
            assert pool.process(3) == 3  # the gate's outcome was abandoned, not delivered
            assert logged == any("interrupt_failed" in r.getMessage() for r in caplog.records)
            stats = pool.stats()
            assert (stats.cancelled, stats.completed) == (1, 1)  # each call counted once
        finally:
            gate.release.set()
            assert pool.close(timeout=WAIT)


class TerminateRaises(RecordingWorker):
    def terminate(self) -> None:
        super().terminate()
        raise BoomError("terminate")


class TestTerminate:
    def test_raising_is_logged_and_the_pool_is_fine(self, caplog: pytest.LogCaptureFixture) -> None:
        """Shrinking and closing still end every thread; the error is logged, not raised."""
        caplog.set_level(logging.ERROR, logger="tunnypy")
        made: list[TerminateRaises] = []

        def factory() -> TerminateRaises:
            made.append(TerminateRaises())
            return made[-1]

        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(3, factory)
        assert pool.set_size(1, wait=True, timeout=WAIT)
        assert pool.stats().workers == 1
        assert pool.process(6) == 6
        assert pool.close(timeout=WAIT)
        assert [w.terminated for w in made] == [1, 1, 1]
        failures = [r for r in caplog.records if "terminate_failed" in r.getMessage()]
        assert len(failures) == 3
