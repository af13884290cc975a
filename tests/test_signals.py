"""Signals: one landing on a waiting caller or a parked worker only runs its handler."""

from __future__ import annotations

import collections
import gc
import linecache
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

import pytest

import tunnypy
from tests.helpers import (
    WAIT,
    Call,
    Gate,
    NestedCall,
    RecordingFactory,
    Roles,
    in_line_behind_busy,
    on_sigusr1,
    sigusr1_to,
    sigusr1_until,
    wait_for,
)
from tunnypy import _job, _waker
from tunnypy._waker import Waker

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


@pytest.fixture
def handled() -> Iterator[threading.Event]:
    """SIGUSR1 gets a Python handler that sets the event this yields."""
    event = threading.Event()
    with on_sigusr1(lambda signum, frame: event.set()):
        yield event


def run(payload: Callable[[], object]) -> object:
    return payload()


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


PoolCall = Callable[[tunnypy.Pool[Any, Any], Callable[[], object]], object]

CALLS: dict[str, PoolCall] = {
    "process": lambda pool, job: pool.process(job),
    "process_timed": lambda pool, job: pool.process_timed(job, WAIT),
    # A token without a deadline: the untimed wait, unlike the two above.
    "process_ctx": lambda pool, job: pool.process_ctx(job, tunnypy.CancelToken()),
    "try_process": lambda pool, job: pool.try_process(job),
}


class TestWaitingCaller:
    @pytest.mark.parametrize("kind", sorted(CALLS))
    def test_a_signal_while_a_call_waits_runs_its_handler_and_the_call_returns(
        self, kind: str, handled: threading.Event
    ) -> None:
        """The main thread, waiting for its job, runs the handler and waits on for the result."""
        assert threading.current_thread() is threading.main_thread()
        gate = Gate()

        def signal_then_release() -> None:
            assert gate.started.wait(WAIT)
            sigusr1_until(threading.main_thread(), handled)
            gate.release.set()

        with tunnypy.Pool.from_func(2, run) as pool:
            helper = Call(signal_then_release)
            assert CALLS[kind](pool, lambda: gate("done")) == "done"
            helper.wait()
            stats = pool.stats()
            assert (stats.completed, stats.cancelled, stats.workers) == (1, 0, 2)


class ReadyCounter(tunnypy.BaseWorker[Callable[[], object], object]):
    """Runs callables; sets *delivered* when it is readied a second time (its first job is out)."""

    def __init__(self, delivered: threading.Event) -> None:
        self.delivered = delivered
        self.readied = 0

    def process(self, payload: Callable[[], object]) -> object:
        return payload()

    def block_until_ready(self) -> None:
        self.readied += 1  # only this worker's thread calls it
        if self.readied == 2:
            self.delivered.set()


class TestHandlerThatCallsThePool:
    @pytest.mark.timeout(30)
    def test_a_call_made_by_the_handler_cannot_strand_the_call_it_interrupted(self) -> None:
        """The handler's call takes the waiting call's wake from the shared waker; both return."""
        assert threading.current_thread() is threading.main_thread()
        outer, delivered = Gate(), threading.Event()
        seen: dict[str, object] = {}
        entered, handled = threading.Event(), threading.Event()
        with tunnypy.Pool(2, lambda: ReadyCounter(delivered)) as pool:

            def handler(signum: int, frame: object) -> None:
                if entered.is_set():
                    return  # a resent signal
                entered.set()
                outer.release.set()
                # Returns only once the outer job's worker has delivered it and
                # woken this thread's eventfd: this call's wait reads that wake.
                seen["nested"] = pool.process_ctx(
                    lambda: "nested" if delivered.wait(WAIT) else "late", tunnypy.CancelToken()
                )
                handled.set()

            def signal_main() -> None:
                assert outer.started.wait(WAIT)
                sigusr1_until(threading.main_thread(), entered)

            with on_sigusr1(handler):
                helper = Call(signal_main)
                # try_process sleeps in the waker's untimed wait().
                assert pool.try_process(lambda: outer("outer")) == "outer"
                helper.wait()
            assert handled.is_set()
            assert seen == {"nested": "nested"}


class TestHandlerThatCallsThePoolWhileItsThreadSleepsOnALock:
    """
    A lock wait retries inside C after the handler, without looking at its job.

    The call the handler interrupted must not share its lock with the
    handler's call, or the handler's call can take its wake and leave it
    waiting for ever (the old failure: this test hung until its timeout).
    """

    @pytest.mark.timeout(30)
    @pytest.mark.parametrize(
        "outer_kind",
        ["process behind a busy worker", "process_timed", "process without an eventfd"],
    )
    def test_the_interrupted_call_keeps_its_wake(
        self, outer_kind: str, monkeypatch: pytest.MonkeyPatch
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
            pool._line.several_cpus = True  # lock wakers, even pinned to one CPU

            def handler(signum: int, frame: object) -> None:
                if entered.is_set():
                    return  # a resent signal
                entered.set()
                outer.release.set()
                # A timed call sleeps on a lock too. The one worker serves it
                # only after it has delivered the outer job and woken its caller.
                seen["nested"] = pool.process_timed(lambda: "nested", WAIT)
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
                if outer_kind == "process_timed":
                    # Longer than this test's timeout: a lost wake hangs it.
                    result = pool.process_timed(lambda: outer("outer"), 3600.0)
                else:
                    result = pool.process(lambda: outer("outer"))
                helper.wait()
            assert result == "outer"
            assert handled.is_set()
            assert seen == {"nested": "nested"}
            if busy is not None:
                assert busy.result(WAIT) is None


class InterruptedLine(collections.deque[Any]):
    """A pool's line whose first append is followed by Ctrl-C, as if SIGINT arrived then."""

    interrupted = False

    def append(self, job: Any) -> None:
        super().append(job)
        if not self.interrupted:
            self.interrupted = True
            # CPython runs signal handlers, and raises KeyboardInterrupt,
            # just after a call returns: here, with the job in line.
            raise KeyboardInterrupt


class InterruptedWake:
    """
    A parked worker's waker whose first wake is followed by Ctrl-C.

    With ``before``, Ctrl-C comes before it wakes anyone: a lock waker's
    wake() when the signal is handled as that Python function is entered (an
    eventfd waker's wake is C code, which wakes first).
    """

    def __init__(self, waker: Waker, *, before: bool = False) -> None:
        self.waker = waker
        self.wait_forever = waker.wait_forever
        self.before = before
        self.interrupted = False

    def wait(self, timeout: float | None = None) -> bool:
        return self.waker.wait(timeout)

    def wake(self) -> None:
        if self.interrupted or not self.before:
            self.waker.wake()
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt


# The calls that wait in line (not try_process); process once per waker it may join on.
IN_LINE_CALLS: dict[str, PoolCall] = {
    "process, eventfd": CALLS["process"],
    "process, lock": CALLS["process"],
    "process_timed": CALLS["process_timed"],
    "process_ctx": CALLS["process_ctx"],
    "submit": lambda pool, job: pool.submit(job),
}
ALL_CALLS = {**CALLS, **IN_LINE_CALLS}


class TestCtrlCJustAfterTheJobGotIn:
    """Ctrl-C between handing the job over and waiting for it still withdraws the job."""

    @pytest.mark.parametrize("kind", sorted(IN_LINE_CALLS))
    def test_a_job_interrupted_as_it_joins_the_line_is_taken_out_of_it(self, kind: str) -> None:
        blocker = Gate()
        ran = threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            core.several_cpus = kind == "process, lock"
            busy = pool.submit(blocker)
            assert blocker.started.wait(WAIT)
            core.waiting = InterruptedLine()
            with pytest.raises(KeyboardInterrupt):
                IN_LINE_CALLS[kind](pool, ran.set)
            assert core.waiting.interrupted
            stats = pool.stats()
            assert (pool.queue_length, stats.cancelled) == (0, 1)
            blocker.release.set()
            assert busy.result(WAIT) is None
            # The line is empty: the worker parks, and the withdrawn job never runs.
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            assert pool.process(lambda: "next") == "next"
            assert not ran.is_set()
            assert pool.stats().completed == 2  # the blocker and "next"

    @pytest.mark.parametrize("kind", sorted(CALLS))
    def test_a_job_interrupted_as_its_worker_wakes_is_withdrawn(self, kind: str) -> None:
        gate = Gate()
        seen: list[bool] = []

        def job() -> None:
            gate()
            seen.append(tunnypy.interrupted())

        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            wrapper = core.idle[0]
            proxy = wrapper.waker = InterruptedWake(wrapper.waker)
            with pytest.raises(KeyboardInterrupt):
                CALLS[kind](pool, job)
            assert proxy.interrupted
            # Withdrawn while running (or before it began): interrupted, not delivered.
            assert pool.stats().cancelled == 1
            gate.release.set()
            wait_for(lambda: pool.stats().idle == 1, "the worker to park again")
            assert seen in ([], [True])
            assert pool.stats().completed == 0
            assert pool.process(lambda: "next") == "next"

    @pytest.mark.parametrize("kind", sorted(ALL_CALLS))
    def test_ctrl_c_before_the_job_got_in_is_counted_and_nothing_runs(
        self, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """KeyboardInterrupt, not an error of the pool's, reaches the caller; stats still add up."""
        blocker = Gate()
        ran = threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            core.several_cpus = kind == "process, lock"
            core.max_waiting = 10  # process() takes dispatch()'s way into the line
            busy = pool.submit(blocker)
            assert blocker.started.wait(WAIT)

            def interrupted_dispatch(
                job: object, *, wait: bool = True, call: str = "process"
            ) -> None:
                raise KeyboardInterrupt  # as if Ctrl-C landed as dispatch() began

            monkeypatch.setattr(core, "dispatch", interrupted_dispatch)
            with pytest.raises(KeyboardInterrupt):
                ALL_CALLS[kind](pool, ran.set)
            monkeypatch.undo()
            stats = pool.stats()
            assert (pool.queue_length, stats.cancelled, stats.rejected) == (0, 1, 0)
            blocker.release.set()
            assert busy.result(WAIT) is None
            assert pool.process(lambda: "next") == "next"
            assert not ran.is_set()
            assert pool.stats().completed == 2  # the blocker and "next"


class TestCtrlCAsALockWakeBegins:
    """Ctrl-C before the wake of a worker handed a job (or the summons) still wakes it."""

    @pytest.mark.parametrize("kind", sorted({**CALLS, "submit": IN_LINE_CALLS["submit"]}))
    def test_the_worker_is_woken_and_the_pool_serves_on(self, kind: str) -> None:
        ran = threading.Event()
        with tunnypy.Pool.from_func(1, run) as pool:
            core = pool._line
            wait_for(lambda: pool.stats().idle == 1, "the worker to park")
            wrapper = core.idle[0]
            proxy = wrapper.waker = InterruptedWake(wrapper.waker, before=True)
            with pytest.raises(KeyboardInterrupt):
                {**CALLS, "submit": IN_LINE_CALLS["submit"]}[kind](pool, ran.set)
            assert proxy.interrupted
            # Before the fix the worker slept for good, holding the withdrawn
            # job or the summons, and this timed out.
            assert pool.process_timed(lambda: "next", WAIT) == "next"
            # Woken again before the withdrawal, the worker may finish the
            # interrupted call's job first (its outcome stands, uncollected);
            # either way that call is counted once.
            stats = pool.stats()
            assert (stats.completed + stats.cancelled, stats.completed) in ((2, 1), (2, 2))
        assert pool.close(timeout=WAIT)

    def test_cancel_wakes_every_caller_of_its_token(self) -> None:
        gates = [Gate(), Gate()]
        with tunnypy.Pool.from_func(2, run) as pool:
            token = tunnypy.CancelToken()
            calls = [Call(pool.process_ctx, gate, token) for gate in gates]
            for gate in gates:
                assert gate.started.wait(WAIT)
            wait_for(lambda: len(token._wakers) == 2, "both callers to wait on the token")
            # One Ctrl-C, landing as the first wake begins.
            first, other = token._wakers
            proxy = InterruptedWake(first, before=True)
            token._wakers = {proxy: 1, other: 1}
            with pytest.raises(KeyboardInterrupt):
                token.cancel()
            assert proxy.interrupted
            for call in calls:
                with pytest.raises(tunnypy.JobCancelledError):
                    call.wait()
            for gate in gates:
                gate.release.set()


class TestCtrlCInsideClose:
    """close() interrupted by Ctrl-C still ends every worker and tells every refused call."""

    def test_ctrl_c_as_the_first_parked_worker_is_woken(self) -> None:
        pool = tunnypy.Pool.from_func(3, run)
        wait_for(lambda: pool.stats().idle == 3, "the workers to park")
        leader = pool._line.idle[-1]  # the chain starts from the top of the stack
        proxy = leader.waker = InterruptedWake(leader.waker, before=True)
        with pytest.raises(KeyboardInterrupt):
            pool.close(wait=False)
        assert proxy.interrupted
        assert pool.close(timeout=WAIT)  # before the fix the chain never started
        assert pool.stats().workers == 0

    def test_ctrl_c_as_a_refused_future_is_told(self) -> None:
        """Ctrl-C as Future.set_exception is entered, the future already running."""
        blocker = Gate()
        pool = tunnypy.Pool.from_func(1, run)
        busy = pool.submit(blocker)
        assert blocker.started.wait(WAIT)
        refused = [pool.submit(lambda: None) for _ in range(3)]
        wait_for(lambda: pool.queue_length == 3, "three calls in line")
        landed: list[str] = []

        def ctrl_c_in_close(frame: Any, event: str, arg: Any) -> None:
            # Where a SIGINT handler would run: as that Python function is entered.
            caller = frame.f_back
            if (
                event == "call"
                and frame.f_code.co_name == "set_exception"
                and caller is not None
                and caller.f_code.co_name == "close"
                and not landed
            ):
                landed.append("set_exception")
                raise KeyboardInterrupt

        sys.settrace(ctrl_c_in_close)
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.close(wait=False)
        finally:
            sys.settrace(None)
        assert landed == ["set_exception"]
        for future in refused:  # before the fix one stayed running, never told
            assert isinstance(future.exception(WAIT), tunnypy.PoolClosedError)
        blocker.release.set()
        assert busy.result(WAIT) is None
        assert pool.close(timeout=WAIT)


TUNNYPY_DIR = os.path.dirname(tunnypy.__file__)
NOT_TRACED = {"__del__", "close_dropped_pool", "__init__"}


class CtrlCAt:
    """
    Raise KeyboardInterrupt at the *k*-th place on this thread where CPython 3.11+ checks signals.

    Those places, inside tunnypy's own functions: as a function is entered,
    at a loop's back edge, and just after a call returns (except
    ``__enter__``, which ``with`` calls without a check after it).
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.seen = 0
        self.where = ""
        self.last_line: dict[int, int] = {}

    def _hit(self, frame: Any, what: str) -> None:
        self.seen += 1
        if self.seen == self.k:
            self.where = f"{frame.f_code.co_name}:{frame.f_lineno} {what}"
            raise KeyboardInterrupt

    @staticmethod
    def _ours(frame: Any) -> bool:
        # Not finalizers (__del__, and close_dropped_pool() that a dropped pool's
        # finalize calls): a collection may run one anywhere, and CPython
        # prints and drops what they raise. Not constructors either: the
        # trace machinery mishandles an exception raised as one is entered.
        code = frame.f_code
        return code.co_filename.startswith(TUNNYPY_DIR) and code.co_name not in NOT_TRACED

    def trace(self, frame: Any, event: str, arg: Any) -> Any:
        if not self._ours(frame):
            return None
        if event == "call":
            self._hit(frame, "entered")
        elif event == "line":
            last = self.last_line.get(id(frame))
            self.last_line[id(frame)] = frame.f_lineno
            text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).lstrip()
            if last is not None and last >= frame.f_lineno and text.startswith(("for ", "while ")):
                self._hit(frame, "back edge")
        return self.trace

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "c_return" and self._ours(frame):
            name = getattr(arg, "__name__", "?")
            if name != "__enter__":
                self._hit(frame, f"after {name}()")

    def run(self, op: Callable[[], object]) -> bool:
        """Run *op*; whether Ctrl-C landed in it."""
        landed = False
        gc.disable()  # no collection runs an earlier pool's finalizer inside *op*
        sys.settrace(self.trace)
        sys.setprofile(self.profile)
        try:
            op()
        except KeyboardInterrupt:
            landed = True
        finally:
            sys.setprofile(None)
            sys.settrace(None)
            gc.enable()
        return landed


class Scene:
    """A pool in a known state, an operation on it, and the calls it must not strand."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = Gate()
        self.calls: list[Call] = []
        self.futures: list[Future[object]] = []
        self.pool: tunnypy.Pool[Any, Any]
        self.op: Callable[[], object]
        self.probe: object = lambda: 7  # a call that must still be served: returns 7
        getattr(self, name.replace(" ", "_"))()

    def shrink(self) -> None:
        self.pool = tunnypy.Pool.from_func(4, run)
        wait_for(lambda: self.pool.stats().idle == 4, "the workers to park")
        self.op = lambda: self.pool.set_size(1)

    def shrink_and_wait(self) -> None:
        self.pool = tunnypy.Pool.from_func(4, run)
        wait_for(lambda: self.pool.stats().idle == 4, "the workers to park")
        self.op = lambda: self.pool.set_size(0, wait=True, timeout=WAIT)

    def shrink_stranding_a_nested_call(self) -> None:
        # Worker 0's job calls the pool behind worker 1 (the newest, holding
        # the gate), which the shrink retires.
        holder: list[tunnypy.Pool[str, object]] = []
        nested = NestedCall(holder, after=self.gate.started)
        pool = self.pool = tunnypy.Pool(2, Roles(nested, self.gate))
        holder.append(pool)
        self.probe = 7  # a RoleWorker echoes it
        self.futures += [pool.submit("go"), pool.submit("go")]
        wait_for(lambda: in_line_behind_busy(pool, 1, 2), "the nested call to wait in line")
        self.op = lambda: pool.set_size(1)

    def grow(self) -> None:
        self.pool = tunnypy.Pool.from_func(4, run)
        self.op = lambda: self.pool.set_size(6)

    def close(self) -> None:
        self.pool = tunnypy.Pool.from_func(4, run)
        wait_for(lambda: self.pool.stats().idle == 4, "the workers to park")
        self.op = lambda: self.pool.close(timeout=WAIT)

    def close_refusing_calls(self) -> None:
        pool = self.pool = tunnypy.Pool.from_func(2, run)
        self.futures.append(pool.submit(self.gate))
        self.futures.append(pool.submit(self.gate))
        wait_for(lambda: pool.stats().busy == 2, "both workers to be busy")
        self.calls += [Call(pool.process, lambda: "served") for _ in range(2)]
        self.futures += [pool.submit(lambda: "served") for _ in range(2)]
        wait_for(lambda: pool.queue_length == 4, "four calls in line")
        self.op = lambda: pool.close(wait=False)

    def settle(self) -> None:
        """The pool still serves (unless closed), closes, and every call it was handed ended."""
        pool = self.pool
        self.gate.release.set()
        if not pool.closed and pool.size:
            assert Call(pool.process, self.probe).wait() == 7
        assert pool.close(timeout=WAIT)  # finishes a close() that Ctrl-C interrupted
        assert pool.stats().workers == 0
        ended = (tunnypy.PoolClosedError, tunnypy.PoolDeadlockError)
        for call in self.calls:
            assert call.done.wait(WAIT)
            assert call.error is None or isinstance(call.error, ended), call.error
        for future in self.futures:
            error = future.exception(WAIT)
            assert error is None or isinstance(error, ended), error


class TestCtrlCAnywhereInResizeOrClose:
    """Ctrl-C landing at any signal check in set_size() or close() strands no worker and no call."""

    @pytest.mark.parametrize(
        "scene",
        [
            "shrink",
            "shrink and wait",
            "shrink stranding a nested call",
            "grow",
            "close",
            "close refusing calls",
        ],
    )
    def test_the_pool_serves_on_and_closes(self, scene: str) -> None:
        k = 0
        while True:
            k += 1
            assert k < 200, "the operation never completed without Ctrl-C"
            setting = Scene(scene)
            ctrl_c = CtrlCAt(k)
            landed = ctrl_c.run(setting.op)
            try:
                setting.settle()
            except AssertionError as exc:
                raise AssertionError(f"Ctrl-C at {ctrl_c.where}: {exc}") from exc
            if not landed:
                break
        assert k > 5  # it did land in a few places


class TestCtrlCInsideThreadStart:
    """A growth interrupted as Thread.start() has made the thread, which is slow to say so."""

    def test_the_thread_is_retired_and_leaves_by_itself(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        factory = RecordingFactory()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        slow = threading.Event()
        set_native_id = threading.Thread._set_native_id  # type: ignore[attr-defined]

        def slow_to_start(thread: threading.Thread) -> None:
            # Runs in the new thread before it tells start() it has started.
            if thread.name == "tunnypy-worker-1":
                assert slow.wait(WAIT)
            set_native_id(thread)

        landed: list[str] = []

        def ctrl_c_once_the_thread_exists(frame: Any, event: str, arg: Any) -> None:
            name = getattr(arg, "__name__", "")
            if event == "c_return" and "start" in name and "thread" in name and not landed:
                landed.append(name)  # start_new_thread, or 3.13's _start_joinable_thread
                raise KeyboardInterrupt

        monkeypatch.setattr(threading.Thread, "_set_native_id", slow_to_start)
        try:
            sys.setprofile(ctrl_c_once_the_thread_exists)
            try:
                with pytest.raises(KeyboardInterrupt):
                    pool.set_size(2)
            finally:
                sys.setprofile(None)
            assert landed
            assert pool.size == 1
            slow.set()  # it says it has started at last, sees it is retired, and leaves
            wait_for(lambda: pool.stats().workers == 1, "worker 1 to leave")
            assert [pool.process(n) for n in range(4)] == [0, 1, 2, 3]
        finally:
            slow.set()
            assert pool.close(timeout=WAIT)
        assert pool.stats().workers == 0
        assert [w.terminated for w in factory.made] == [1, 1]
        assert factory.made[1].processed == 0
