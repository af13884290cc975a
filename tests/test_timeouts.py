"""process_timed, process_ctx and CancelToken: giving up on a job."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, RecordingWorker, double, identity, wait_for


class TestProcessTimed:
    def test_returns_the_result_within_the_deadline(self) -> None:
        """A job that finishes in time returns its result."""
        with tunnypy.Pool.from_func(2, double) as pool:
            assert pool.process_timed(10, WAIT) == 20

    def test_times_out_at_once_not_when_the_job_ends(self) -> None:
        """Past the deadline the caller gets JobTimedOutError while the job still runs."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            with pytest.raises(tunnypy.JobTimedOutError, match="deadline"):
                pool.process_timed(1, 0.05)
            assert gate.started.is_set()
            assert not gate.release.is_set()  # the job is still running
            assert pool.stats().timed_out == 1
            gate.release.set()

    def test_started_job_sees_interrupted(self) -> None:
        """A timed-out job sees interrupted() become True and can stop early."""
        started = threading.Event()
        saw: list[bool] = []

        def job(_: object) -> None:
            started.set()
            deadline = time.monotonic() + WAIT
            while not tunnypy.interrupted() and time.monotonic() < deadline:
                time.sleep(0.001)
            saw.append(tunnypy.interrupted())

        with tunnypy.Pool.from_func(1, job) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(None, 0.05)
            assert started.is_set()
        assert saw == [True]

    def test_started_job_interrupts_its_worker_once(self) -> None:
        """The worker of a started job that timed out gets exactly one interrupt()."""
        gate = Gate()
        worker = RecordingWorker()
        with tunnypy.Pool(1, lambda: worker) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(gate, 0.05)
            gate.release.set()
            assert pool.process(3) == 3
        assert worker.interrupts == 1

    def test_deadline_covers_waiting_for_a_worker(self) -> None:
        """A call that waits in line past its deadline leaves the line and never runs."""
        gate = Gate()
        ran: list[int] = []
        worker = RecordingWorker()

        def job(x: int) -> int:
            if x == 0:
                gate()
            ran.append(x)
            return x

        with tunnypy.Pool(1, lambda: worker) as pool:
            busy = pool.submit(lambda: job(0))
            assert gate.started.wait(WAIT)
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(lambda: job(1), 0.05)
            assert pool.queue_length == 0
            gate.release.set()
            busy.result(WAIT)
        assert ran == [0]
        assert worker.interrupts == 0  # nothing had started, nothing to interrupt

    def test_zero_timeout_has_already_expired(self) -> None:
        """A timeout of 0 is refused at entry and counted as timed out."""
        with tunnypy.Pool.from_func(1, str) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(1, 0)
            stats = pool.stats()
            assert (stats.timed_out, stats.completed) == (1, 0)

    def test_infinite_timeout_waits_like_process(self) -> None:
        """An infinite timeout is accepted and behaves like process()."""
        with tunnypy.Pool.from_func(1, str) as pool:
            assert pool.process_timed(5, float("inf")) == "5"

    def test_result_that_won_the_race_is_delivered(self) -> None:
        """Many short deadlines: each call either returns its own result or times out."""
        with tunnypy.Pool.from_func(2, identity) as pool:
            outcomes = {"ok": 0, "timeout": 0}
            for i in range(300):
                try:
                    assert pool.process_timed(i, 0.0005) == i
                    outcomes["ok"] += 1
                except tunnypy.JobTimedOutError:
                    outcomes["timeout"] += 1
            stats = pool.stats()
        assert outcomes["ok"] + outcomes["timeout"] == 300
        assert stats.timed_out == outcomes["timeout"]
        assert stats.completed >= outcomes["ok"]


class TestProcessCtx:
    def test_returns_the_result(self) -> None:
        """A job under a live token returns its result."""
        with tunnypy.Pool[int, int].from_func(1, lambda x: -x) as pool:
            assert pool.process_ctx(4, tunnypy.CancelToken()) == -4

    def test_cancel_from_another_thread_ends_a_running_job_wait(self) -> None:
        """cancel() from any thread ends the wait with JobCancelledError and interrupts."""
        gate = Gate()
        worker = RecordingWorker()
        token = tunnypy.CancelToken()
        with tunnypy.Pool(1, lambda: worker) as pool:
            call = Call(pool.process_ctx, gate, token)
            assert gate.started.wait(WAIT)
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                call.wait()
            assert not gate.release.is_set()  # ended before the job did
            gate.release.set()
            wait_for(lambda: pool.stats().busy == 0, "the worker to finish")
            assert pool.stats().cancelled == 1
        assert worker.interrupts == 1

    def test_cancel_while_waiting_in_line(self) -> None:
        """A cancelled caller still in line leaves it; its job never runs."""
        gate = Gate()
        ran: list[str] = []
        token = tunnypy.CancelToken()
        with tunnypy.Pool.from_callback(1) as pool:
            busy = pool.submit(gate)
            assert gate.started.wait(WAIT)
            call = Call(pool.process_ctx, lambda: ran.append("late"), token)
            wait_for(lambda: pool.queue_length == 1, "the caller to queue")
            token.cancel()
            with pytest.raises(tunnypy.JobCancelledError):
                call.wait()
            assert pool.queue_length == 0
            gate.release.set()
            busy.result(WAIT)
        assert ran == []

    def test_one_token_cancels_many_calls(self) -> None:
        """A token shared by several waiting calls cancels all of them."""
        gate = Gate()
        token = tunnypy.CancelToken()
        with tunnypy.Pool.from_callback(1) as pool:
            busy = pool.submit(gate)
            assert gate.started.wait(WAIT)
            calls = [Call(pool.process_ctx, lambda: None, token) for _ in range(3)]
            wait_for(lambda: pool.queue_length == 3, "three callers to queue")
            token.cancel()
            for call in calls:
                with pytest.raises(tunnypy.JobCancelledError):
                    call.wait()
            gate.release.set()
            busy.result(WAIT)
            assert pool.stats().cancelled == 3

    def test_token_deadline_times_out(self) -> None:
        """A token whose deadline passes ends the call with JobTimedOutError."""
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_ctx(1, tunnypy.CancelToken(timeout=0.05))
            gate.release.set()
            assert pool.stats().timed_out == 1

    def test_already_cancelled_token_is_refused_and_counted(self) -> None:
        """A call with a cancelled token never runs and counts as cancelled."""
        token = tunnypy.CancelToken()
        token.cancel()
        with tunnypy.Pool.from_func(1, str) as pool:
            with pytest.raises(tunnypy.JobCancelledError, match="already cancelled"):
                pool.process_ctx(1, token)
            stats = pool.stats()
            assert (stats.cancelled, stats.completed) == (1, 0)

    def test_already_expired_token_is_refused_and_counted(self) -> None:
        """A call whose token's deadline passed never runs and counts as timed out."""
        token = tunnypy.CancelToken(timeout=0)
        with tunnypy.Pool.from_func(1, str) as pool:
            with pytest.raises(tunnypy.JobTimedOutError, match="already passed"):
                pool.process_ctx(1, token)
            assert pool.stats().timed_out == 1

    def test_token_must_be_a_cancel_token(self) -> None:
        """Anything else as a token is a TypeError naming what arrived."""
        with tunnypy.Pool.from_func(1, str) as pool:
            bad: Any = object()
            with pytest.raises(TypeError, match="token must be a CancelToken \\(got object\\)"):
                pool.process_ctx(1, bad)


class TestCancelToken:
    def test_cancel_is_idempotent(self) -> None:
        """cancel() twice is fine; cancelled stays True."""
        token = tunnypy.CancelToken()
        assert not token.cancelled
        token.cancel()
        token.cancel()
        assert token.cancelled
        assert "cancelled" in repr(token)

    def test_deadline_and_remaining(self) -> None:
        """A token with a timeout has a deadline; remaining() counts down to zero."""
        token = tunnypy.CancelToken(timeout=100)
        assert token.deadline is not None
        remaining = token.remaining()
        assert remaining is not None
        assert 0 < remaining <= 100
        assert not token.expired
        assert tunnypy.CancelToken().remaining() is None
        assert tunnypy.CancelToken(timeout=0).expired

    @pytest.mark.parametrize(
        ("value", "error", "match"),
        [
            (-1, ValueError, "got -1"),
            (float("nan"), ValueError, "got nan"),
            ("1", TypeError, "got str '1'"),
            (True, TypeError, "got bool True"),
        ],
    )
    def test_bad_timeout(self, value: Any, error: type[Exception], match: str) -> None:
        """A timeout that is not a non-negative number is refused with its value named."""
        with pytest.raises(error, match=match):
            tunnypy.CancelToken(timeout=value)


class TestDeadlinesBeyondWhatPollTakes:
    """poll() takes at most 2**31 - 1 ms (24.8 days); a longer deadline is still a deadline."""

    MONTH = 30 * 86400.0

    def test_process_ctx_with_a_month_long_deadline_completes(self) -> None:
        with tunnypy.Pool.from_func(1, double) as pool:
            token = tunnypy.CancelToken(timeout=self.MONTH)
            assert pool.process_ctx(21, token) == 42
            assert pool.stats().cancelled == 0
