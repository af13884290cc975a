"""close(): idempotent, prompt for waiting callers, gentle with running jobs."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, RecordingFactory, RecordingWorker, identity, wait_for


class StuckWorker(tunnypy.BaseWorker[int, int]):
    """Its block_until_ready() blocks until the test releases it."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release

    def process(self, payload: int) -> int:
        return payload

    def block_until_ready(self) -> None:
        self.release.wait(WAIT)


class TestClose:
    def test_close_is_idempotent(self) -> None:
        """close() twice is fine and terminate() runs once per worker."""
        factory = RecordingFactory()
        made = factory.made

        pool = tunnypy.Pool(3, factory)
        assert pool.close() is True
        assert pool.close() is True
        assert pool.closed
        assert [w.terminated for w in made] == [1, 1, 1]

    @pytest.mark.parametrize(
        "call",
        [
            lambda p: p.process(1),
            lambda p: p.process_timed(1, 1.0),
            lambda p: p.process_ctx(1, tunnypy.CancelToken()),
            lambda p: p.submit(1),
            lambda p: p.try_process(1),
            lambda p: p.try_submit(1),
            lambda p: p.set_size(3),
        ],
        ids=["process", "timed", "ctx", "submit", "try_process", "try_submit", "set_size"],
    )
    def test_every_call_after_close_raises(self, call: Callable[[Any], Any]) -> None:
        """After close(), every process*, submit and set_size raises PoolClosedError."""
        pool = tunnypy.Pool.from_func(1, identity)
        pool.close()
        with pytest.raises(tunnypy.PoolClosedError, match="pool is closed"):
            call(pool)
        assert pool.size == 0

    def test_waiting_callers_get_closed_error_promptly(self) -> None:
        """Callers in line get PoolClosedError at once; the running job's caller gets its result."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            running = Call(pool.process, "running")
            assert gate.started.wait(WAIT)
            waiting = [Call(pool.process, 1), Call(pool.process_timed, 2, WAIT)]
            wait_for(lambda: pool.queue_length == 2, "two callers in line")
            queued = pool.submit(3)
            assert pool.close(wait=False) is False
            for call in waiting:
                with pytest.raises(tunnypy.PoolClosedError):
                    call.wait()
            with pytest.raises(tunnypy.PoolClosedError):
                queued.result(WAIT)
            assert not running.done.is_set()
            gate.release.set()
            assert running.wait() == "running"
            assert pool.close(timeout=WAIT) is True
            stats = pool.stats()
            assert (stats.completed, stats.rejected, stats.workers) == (1, 3, 0)

    def test_close_timeout_bounds_a_stuck_worker(self) -> None:
        """A worker stuck in block_until_ready cannot make close() hang."""
        release = threading.Event()
        pool = tunnypy.Pool(1, lambda: StuckWorker(release))
        assert pool.close(timeout=0.05) is False
        release.set()
        assert pool.close(timeout=WAIT) is True

    def test_with_block_closes(self) -> None:
        """Leaving a with block closes the pool and ends its threads."""
        with tunnypy.Pool.from_func(2, identity) as pool:
            assert pool.process(1) == 1
        assert pool.closed
        assert pool.stats().workers == 0


class TestFromInsideAJob:
    def test_close_from_a_job_does_not_deadlock(self) -> None:
        """A job may close its own pool, even with wait=True."""
        holder: list[tunnypy.Pool[int, bool]] = []

        def job(_: int) -> bool:
            return holder[0].close(wait=True, timeout=WAIT)

        pool = tunnypy.Pool.from_func(2, job)
        holder.append(pool)
        assert pool.process(0) is True
        assert pool.closed
        assert pool.close(timeout=WAIT) is True

    def test_set_size_from_a_job_does_not_deadlock(self) -> None:
        """A job may shrink its own pool to zero, even with wait=True."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(n: int) -> int:
            holder[0].set_size(n, wait=True, timeout=WAIT)
            return holder[0].size

        with tunnypy.Pool.from_func(2, job) as pool:
            holder.append(pool)
            assert pool.process(0) == 0
            wait_for(lambda: pool.stats().workers == 0, "workers to leave")
            pool.set_size(1)
            assert pool.process(3) == 3

    def test_process_on_own_full_pool_raises(self) -> None:
        """A job calling process() on its own pool with no worker to spare gets an error."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(n: int) -> int:
            if n == 0:
                return 0
            return holder[0].process(n - 1)

        with tunnypy.Pool.from_func(1, job) as pool:
            holder.append(pool)
            with pytest.raises(tunnypy.PoolDeadlockError, match="own pool"):
                pool.process(1)
            assert pool.process(0) == 0

    def test_nested_process_with_a_spare_worker_works(self) -> None:
        """With a free worker, a job may call its own pool."""
        holder: list[tunnypy.Pool[int, int]] = []

        def job(n: int) -> int:
            return n if n == 0 else holder[0].process(n - 1) + 1

        with tunnypy.Pool.from_func(3, job) as pool:
            holder.append(pool)
            assert pool.process(2) == 2


class TestClosedComesFirst:
    def test_expired_deadline_on_a_closed_pool_is_a_closed_error(self) -> None:
        """On a closed pool, a zero timeout or a dead token still raises PoolClosedError."""
        pool = tunnypy.Pool.from_func(1, identity)
        pool.close()
        with pytest.raises(tunnypy.PoolClosedError):
            pool.process_timed(1, 0)
        token = tunnypy.CancelToken()
        token.cancel()
        with pytest.raises(tunnypy.PoolClosedError):
            pool.process_ctx(1, token)
        with pytest.raises(tunnypy.PoolClosedError):
            pool.process_ctx(1, tunnypy.CancelToken(timeout=0))
        stats = pool.stats()
        assert (stats.rejected, stats.timed_out, stats.cancelled) == (3, 0, 0)

    def test_retired_worker_skips_a_last_block_until_ready(self) -> None:
        """A busy worker retired by set_size(0) leaves without calling block_until_ready again."""
        gate = Gate()
        worker = RecordingWorker()
        with tunnypy.Pool(1, lambda: worker) as pool:
            busy = pool.submit(gate)
            assert gate.started.wait(WAIT)
            readied = worker.readied
            pool.set_size(0)
            gate.release.set()
            busy.result(WAIT)
            assert pool.set_size(0, wait=True, timeout=WAIT)
            assert worker.readied == readied


class TestSubmitFromAJob:
    def test_submit_on_own_full_pool_is_not_a_deadlock(self) -> None:
        """submit() never blocks, so a job may queue work on its own full pool."""
        holder: list[tunnypy.Pool[int, object]] = []

        def job(n: int) -> object:
            return holder[0].submit(n - 1) if n else "leaf"

        with tunnypy.Pool.from_func(1, job) as pool:
            holder.append(pool)
            inner = pool.process(1)
            assert isinstance(inner, Future)
            assert inner.result(WAIT) == "leaf"


class TestRefusedFutureCallbacks:
    def test_a_callback_raising_systemexit_does_not_stop_close_telling_the_others(
        self,
    ) -> None:
        """close() runs refused futures' callbacks; one that raises still lets it finish."""
        gate = Gate()
        pool = tunnypy.Pool.from_callback(1)
        busy = pool.submit(gate)
        assert gate.started.wait(WAIT)
        first = pool.submit(lambda: None)
        second = pool.submit(lambda: None)
        waiting = Call(pool.process, lambda: None)
        wait_for(lambda: pool.queue_length == 3, "three calls in line")

        def leave(_: Future[object]) -> None:
            raise SystemExit(3)

        first.add_done_callback(leave)
        with pytest.raises(SystemExit):
            pool.close(wait=False)
        for future in (first, second):
            assert isinstance(future.exception(WAIT), tunnypy.PoolClosedError)
        with pytest.raises(tunnypy.PoolClosedError):
            waiting.wait()
        gate.release.set()
        assert busy.result(WAIT) is None
        assert pool.close(timeout=WAIT)
        assert pool.stats().rejected == 3


class TestCloseWhileAGrowStartsThreads:
    def test_a_factory_may_close_its_pool_while_it_grows(self) -> None:
        """close(wait=True) waits for a grow to start its workers, not for its factory."""
        pool: tunnypy.Pool[Any, Any]
        made: list[RecordingWorker] = []

        def factory() -> RecordingWorker:
            made.append(RecordingWorker())
            if len(made) == 2:
                assert pool.close(timeout=WAIT)
            return made[-1]

        pool = tunnypy.Pool(1, factory)
        with pytest.raises(tunnypy.PoolClosedError):
            pool.set_size(2)
        assert [worker.terminated for worker in made] == [1, 1]
