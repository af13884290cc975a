"""What a pool accepts as a worker: hooks set on the instance, missing hooks, no process()."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Gate


class LimitedWorker(tunnypy.BaseWorker[int, int]):
    """Takes its rate limit from the instance, as ``self.block_until_ready = limiter.take``."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.block_until_ready = self.take  # type: ignore[method-assign]

    def take(self) -> None:
        self.events.append("ready")

    def process(self, payload: int) -> int:
        self.events.append("job")
        return payload


class InstanceHooks(tunnypy.BaseWorker[Any, Any]):
    """Sets interrupt and terminate on the instance; records where terminate ran."""

    def __init__(self) -> None:
        self.interrupted = threading.Event()
        self.terminated_on: list[str] = []
        self.interrupt = self.interrupted.set  # type: ignore[method-assign]
        self.terminate = self.on_terminate  # type: ignore[method-assign]

    def on_terminate(self) -> None:
        self.terminated_on.append(threading.current_thread().name)

    def process(self, payload: Any) -> Any:
        if payload == "wait for interrupt":
            return self.interrupted.wait(WAIT)
        return payload


class OnlyProcess:
    """A worker with nothing but process(): no BaseWorker, no hooks."""

    def process(self, payload: Any) -> Any:
        return payload() if callable(payload) else payload


class NoProcess:
    """Has hooks but no process(); records whether the pool terminated it."""

    terminated = 0

    def block_until_ready(self) -> None:
        pass

    def terminate(self) -> None:
        self.terminated += 1


class ProcessIsNotCallable:
    process = 5


class InterruptIsNone(OnlyProcess):
    interrupt = None


class TestHooksSetOnTheInstance:
    def test_block_until_ready_set_on_the_instance_runs_before_every_job(self) -> None:
        """A BaseWorker whose __init__ sets block_until_ready has it called before each job."""
        events: list[str] = []
        with tunnypy.Pool(1, lambda: LimitedWorker(events)) as pool:
            assert [pool.process(n) for n in range(3)] == [0, 1, 2]
            assert events[:6] == ["ready", "job"] * 3

    def test_interrupt_set_on_the_instance_is_called(self) -> None:
        """A caller that gives up calls the interrupt the instance set for itself."""
        made: list[InstanceHooks] = []

        def factory() -> InstanceHooks:
            made.append(InstanceHooks())
            return made[-1]

        with tunnypy.Pool(1, factory) as pool:
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed("wait for interrupt", 0.01)
            assert made[0].interrupted.wait(WAIT)
            assert pool.process(7) == 7

    def test_terminate_set_on_the_instance_runs_once_on_the_worker_thread(self) -> None:
        """close() runs the terminate the instance set for itself, once, from its thread."""
        made: list[InstanceHooks] = []

        def factory() -> InstanceHooks:
            made.append(InstanceHooks())
            return made[-1]

        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, factory)
        assert pool.close(timeout=WAIT)
        names = sorted(name for worker in made for name in worker.terminated_on)
        assert names == ["tunnypy-worker-0", "tunnypy-worker-1"]


class TestMissingHooks:
    def test_a_worker_with_only_process_serves_times_out_and_closes(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Missing block_until_ready, interrupt and terminate are no-ops, and nothing is logged."""
        gate = Gate()
        with caplog.at_level(logging.ERROR, logger="tunnypy"):
            pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(2, OnlyProcess)  # type: ignore[arg-type]
            try:
                assert [pool.process(n) for n in range(4)] == [0, 1, 2, 3]
                assert pool.stats().workers == 2
                with pytest.raises(tunnypy.JobTimedOutError):
                    pool.process_timed(gate, 0.01)
                gate.release.set()
                assert pool.process(5) == 5
            finally:
                gate.release.set()
                assert pool.close(timeout=WAIT)
        assert [r.getMessage() for r in caplog.records if r.name == "tunnypy"] == []
        assert pool.stats().workers == 0


class TestFactoryReturnsNoWorker:
    @pytest.mark.parametrize(
        ("made", "got"),
        [
            (NoProcess, "got NoProcess, which has no process"),
            (object, "got object, which has no process"),
            (ProcessIsNotCallable, "got ProcessIsNotCallable, whose process is int"),
        ],
    )
    def test_pool_refuses_it_naming_the_type_and_process(self, made: type, got: str) -> None:
        """Pool(...) raises TypeError naming what arrived; no thread is left."""
        before = threading.active_count()
        with pytest.raises(TypeError) as info:
            tunnypy.Pool(2, made)
        expected = f"worker_factory must return a worker with a callable process() ({got})"
        assert expected == str(info.value)
        assert before == threading.active_count()

    def test_a_hook_that_is_not_callable_is_refused(self) -> None:
        """A hook present but not callable is refused like a missing process()."""
        with pytest.raises(TypeError) as info:
            tunnypy.Pool(1, InterruptIsNone)  # type: ignore[arg-type]
        expected = (
            "worker_factory must return a worker whose interrupt is callable or absent "
            "(got InterruptIsNone, whose interrupt is NoneType)"
        )
        assert expected == str(info.value)

    def test_set_size_refuses_it_and_the_pool_keeps_its_size(self) -> None:
        """A growth whose 2nd new worker has no process(): TypeError, size 1, both terminated."""
        made: list[object] = []

        def factory() -> object:
            made.append(NoProcess() if len(made) == 2 else InstanceHooks())
            return made[-1]

        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)  # type: ignore[arg-type]
        try:
            with pytest.raises(TypeError, match="got NoProcess, which has no process"):
                pool.set_size(4)
            assert pool.size == 1
            assert pool.stats().workers == 1
            assert [pool.process(n) for n in range(3)] == [0, 1, 2]
            grower = threading.current_thread().name
            first, refused = made[1:3]
            assert isinstance(first, InstanceHooks) and isinstance(refused, NoProcess)
            assert ([grower], 1) == (first.terminated_on, refused.terminated)
        finally:
            assert pool.close(timeout=WAIT)


class TestTerminateOfAnUndoneGrowth:
    def test_a_factory_failing_on_the_third_new_worker(self) -> None:
        """set_size(1 -> 6) whose 3rd factory call raises: the grower terminates the 2 made."""
        made: list[InstanceHooks] = []

        def factory() -> InstanceHooks:
            if len(made) == 3:
                raise RuntimeError("no more connections")
            made.append(InstanceHooks())
            return made[-1]

        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        try:
            with pytest.raises(RuntimeError, match="no more connections"):
                pool.set_size(6)
            grower = threading.current_thread().name
            assert [[], [grower], [grower]] == [w.terminated_on for w in made]
        finally:
            assert pool.close(timeout=WAIT)
        assert made[0].terminated_on == ["tunnypy-worker-0"]

    def test_a_thread_that_will_not_start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An undone growth: started workers end on their own thread, the others on the grower's."""
        made: list[InstanceHooks] = []

        def factory() -> InstanceHooks:
            made.append(InstanceHooks())
            return made[-1]

        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
        real_start = threading.Thread.start

        def start(thread: threading.Thread) -> None:
            if thread.name == "tunnypy-worker-2":
                raise RuntimeError("can't start new thread")
            real_start(thread)

        monkeypatch.setattr(threading.Thread, "start", start)
        try:
            with pytest.raises(RuntimeError, match="can't start new thread"):
                pool.set_size(4)
            monkeypatch.undo()
            assert pool.size == 1
        finally:
            monkeypatch.undo()
            assert pool.close(timeout=WAIT)
        grower = threading.current_thread().name
        expected = [["tunnypy-worker-0"], ["tunnypy-worker-1"], [grower], [grower]]
        assert expected == [w.terminated_on for w in made]
