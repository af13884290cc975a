"""Ctrl-C landing anywhere in set_size() or close() strands no worker and no call."""

from __future__ import annotations

import gc
import linecache
import os
import signal
import sys
import threading
from collections.abc import Callable
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
    run,
    wait_for,
)

pytestmark = pytest.mark.skipif(
    not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill"
)


class TestCtrlCInsideClose:
    """close() interrupted by Ctrl-C still ends every worker and tells every refused call."""

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

    def autoscale(self) -> None:
        self.pool = tunnypy.Pool.from_func(4, run)
        wait_for(lambda: self.pool.stats().idle == 4, "the workers to park")
        self.op = lambda: self.pool.autoscale(1, 6, idle_timeout=WAIT)

    def autoscale_down(self) -> None:
        # Bounds moved below the size: the shrink is made at once.
        pool = self.pool = tunnypy.Pool.from_func(4, run)
        pool.autoscale(4, 6, idle_timeout=WAIT)
        wait_for(lambda: pool.stats().idle == 4, "the workers to park")
        self.op = lambda: pool.autoscale(1, 2, idle_timeout=WAIT)

    def autoscale_off(self) -> None:
        pool = self.pool = tunnypy.Pool.from_func(2, run)
        pool.autoscale(2, 6, idle_timeout=WAIT)
        wait_for(lambda: pool.stats().idle == 2, "the workers to park")
        self.op = lambda: pool.autoscale(None)

    def settle(self) -> None:
        """The pool still serves (unless closed), closes, and every call it was handed ended."""
        pool = self.pool
        self.gate.release.set()
        stats = pool.stats()
        if stats.min_size is not None:  # autoscaling: the size is within its bounds
            assert stats.max_size is not None
            assert stats.min_size <= stats.size <= stats.max_size, stats
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
    """Ctrl-C at any signal check in set_size(), autoscale() or close(): nothing stranded."""

    @pytest.mark.parametrize(
        "scene",
        [
            "shrink",
            "shrink and wait",
            "shrink stranding a nested call",
            "grow",
            "close",
            "close refusing calls",
            "autoscale",
            "autoscale down",
            "autoscale off",
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
