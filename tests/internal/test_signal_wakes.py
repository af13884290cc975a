"""Signals: one landing on a parked worker, or a caller asleep on a lock, only runs its handler."""

from __future__ import annotations

import signal
import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    Gate,
    on_sigusr1,
    run,
    sigusr1_to,
    sigusr1_until,
    wait_for,
)
from tunnypy import _job, _waker

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


def worker_threads(pool: tunnypy.Pool[Any, Any]) -> list[threading.Thread]:
    return [wrapper.thread for wrapper in pool._lifecycle.workers]


class TestParkedWorker:
    def test_a_signal_to_parked_workers_ends_none_of_them(self, handled: threading.Event) -> None:
        """os.eventfd_read fails with EINTR; a parked worker waits on instead of dying."""
        both = threading.Barrier(2, timeout=WAIT)
        with tunnypy.Pool.from_func(2, run) as pool:
            # One worker parks after serving a call, the other has never run one:
            # the two places a worker sleeps.
            assert pool.process(lambda: 1) == 1
            wait_for(lambda: pool.stats().idle == 2, "both workers to park")
            for thread in worker_threads(pool):
                handled.clear()
                sigusr1_to(thread)
                # The handler runs in the main thread at its next bytecode;
                # blocked in Event.wait() it would not notice before the timeout.
                wait_for(handled.is_set, "the main thread to run the handler")
            assert all(thread.is_alive() for thread in worker_threads(pool))
            assert pool.stats().workers == 2
            # Both serve: each job waits for the other, so they need two workers.
            calls = [pool.submit(both.wait), pool.submit(both.wait)]
            assert {f.result(WAIT) for f in calls} == {0, 1}


NESTED_CALLS: dict[str, Any] = {
    "process": lambda pool: pool.process(lambda: "nested"),
    "process_timed": lambda pool: pool.process_timed(lambda: "nested", WAIT),
    "process_ctx with a deadline": lambda pool: pool.process_ctx(
        lambda: "nested", tunnypy.CancelToken(timeout=WAIT)
    ),
}


class TestHandlerThatCallsThePoolWhileItsThreadWaits:
    """
    A lock wait, and a timed eventfd wait (``poll()``), retry inside C after
    the handler, without looking at their job.

    The call the handler interrupted must not share its waker with the
    handler's call, or the handler's call can take its wake and leave it
    waiting for ever (the old failure: this test hung until its timeout), or
    make ``poll()`` raise ``RuntimeError: concurrent poll() invocation``.
    """

    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("nested_kind", sorted(NESTED_CALLS))
    @pytest.mark.parametrize(
        "outer_kind",
        [
            "process behind a busy worker",
            "process_timed",
            "process_ctx with a deadline",
            "process without an eventfd",
        ],
    )
    def test_the_interrupted_call_keeps_its_wake(
        self, outer_kind: str, nested_kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert threading.current_thread() is threading.main_thread()
        if outer_kind == "process without an eventfd":
            # The budget of eventfds is spent: even the lone round trip sleeps on a lock.
            monkeypatch.setattr(_job._tls, "waker", None)
            monkeypatch.setattr(_waker, "new_fd_waker", lambda: None)
        blocker, outer = Gate(), Gate()
        seen: dict[str, object] = {}
        entered, handled = threading.Event(), threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:

            def handler(signum: int, frame: object) -> None:
                if entered.is_set():
                    return  # a resent signal
                entered.set()
                outer.release.set()
                # The one worker serves this call only after it has delivered
                # the outer job and woken its caller.
                seen["nested"] = NESTED_CALLS[nested_kind](pool)
                handled.set()

            def release_then_signal() -> None:
                if outer_kind == "process behind a busy worker":
                    wait_for(lambda: pool.queue_length == 1, "the outer call to wait in line")
                    blocker.release.set()
                assert outer.started.wait(WAIT)
                sigusr1_until(threading.main_thread(), entered)

            busy = None
            if outer_kind == "process behind a busy worker":
                busy = pool.submit(blocker)
                assert blocker.started.wait(WAIT)
            with on_sigusr1(handler):
                helper = Call(release_then_signal)
                # The timed ones: longer than this test's timeout, so a lost wake hangs it.
                if outer_kind == "process_timed":
                    result = pool.process_timed(lambda: outer("outer"), 3600.0)
                elif outer_kind == "process_ctx with a deadline":
                    token = tunnypy.CancelToken(timeout=3600.0)
                    result = pool.process_ctx(lambda: outer("outer"), token)
                else:
                    result = pool.process(lambda: outer("outer"))
                helper.wait()
            assert result == "outer"
            assert handled.is_set()
            assert seen == {"nested": "nested"}
            if busy is not None:
                assert busy.result(WAIT) is None


class TestHandlerBetweenPollAndRead:
    """A handler that runs after a timed wait's ``poll()`` saw its wake, before it read it."""

    @pytest.mark.timeout(30)
    @pytest.mark.parametrize("nested_kind", sorted(NESTED_CALLS))
    def test_the_handlers_call_does_not_read_that_wake(
        self, nested_kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Else read() blocks for good: the handler's call would have taken the
        wake that poll() saw (the old failure: this test hung until its timeout).
        """
        assert threading.current_thread() is threading.main_thread()
        real_read = _waker._read
        seen: dict[str, object] = {}

        def read_after_a_signal(fd: int) -> None:
            # On the main thread, as the outer call's wait reads its wake.
            if "nested" not in seen and threading.current_thread() is threading.main_thread():
                signal.raise_signal(signal.SIGUSR1)  # its handler runs before the read
            real_read(fd)

        with tunnypy.Pool.from_func(1, run) as pool:
            pool.process(lambda: None)  # the thread's eventfd exists

            def handler(signum: int, frame: object) -> None:
                seen["nested"] = NESTED_CALLS[nested_kind](pool)

            monkeypatch.setattr(_waker, "_read", read_after_a_signal)
            fd = _job.caller_waker()
            assert isinstance(fd, _waker.FdWaker)
            gate = Gate()

            def release_once_polling() -> None:
                assert gate.started.wait(WAIT)
                wait_for(lambda: fd.polling, "the outer call to poll")
                gate.release.set()

            with on_sigusr1(handler):
                # The job finishes while the caller polls, so the wait reads its wake.
                helper = Call(release_once_polling)
                result = pool.process_timed(lambda: gate("outer"), 3600.0)
                helper.wait()
            assert result == "outer"
            assert seen == {"nested": "nested"}
