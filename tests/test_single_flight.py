"""SingleFlight: one call per key at a time, its outcome shared by every caller."""

from __future__ import annotations

import threading

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, wait_for

FOLLOWERS = 8


class TestSingleFlight:
    """do() shares one call's result or exception among concurrent callers."""

    def test_one_call_for_concurrent_callers(self) -> None:
        """Callers asking for a key in flight get the leader's result; their fn never runs."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        gate = Gate()
        calls: list[str] = []

        def leader_fn() -> int:
            calls.append("leader")
            gate()
            return 42

        def follower_fn() -> int:
            calls.append("follower")
            return -1

        leader = Call(flight.do, "k", leader_fn)
        assert gate.started.wait(WAIT)
        followers = [Call(flight.do, "k", follower_fn) for _ in range(FOLLOWERS)]
        wait_for(lambda: flight.waiting("k") == FOLLOWERS, "followers to join the flight")
        assert flight.in_flight == 1
        gate.release.set()
        assert leader.wait() == 42
        assert [f.wait() for f in followers] == [42] * FOLLOWERS
        assert calls == ["leader"]
        assert flight.in_flight == 0
        assert flight.waiting("k") == 0

    def test_each_caller_gets_the_exception(self) -> None:
        """When the flight's fn raises, every caller raises that same exception."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        gate = Gate()
        error = ConnectionError("backend down")

        def fail() -> int:
            gate()
            raise error

        leader = Call(flight.do, "k", fail)
        assert gate.started.wait(WAIT)
        followers = [Call(flight.do, "k", lambda: 0) for _ in range(FOLLOWERS)]
        wait_for(lambda: flight.waiting("k") == FOLLOWERS, "followers to join the flight")
        gate.release.set()
        for call in [leader, *followers]:
            with pytest.raises(ConnectionError) as info:
                call.wait()
            assert error is info.value

    def test_different_keys_run_concurrently(self) -> None:
        """Flights for different keys do not wait for each other."""
        flight: tunnypy.SingleFlight[int, int] = tunnypy.SingleFlight()
        gates = [Gate(), Gate()]
        calls = [Call(flight.do, key, lambda key=key: gates[key](key)) for key in (0, 1)]
        for gate in gates:
            assert gate.started.wait(WAIT)
        assert flight.in_flight == 2
        for gate in gates:
            gate.release.set()
        assert [call.wait() for call in calls] == [0, 1]

    def test_nothing_is_cached(self) -> None:
        """A call after the flight ended runs fn again."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        counter = iter(range(10))
        assert flight.do("k", lambda: next(counter)) == 0
        assert flight.do("k", lambda: next(counter)) == 1

    def test_leader_runs_in_callers_thread(self) -> None:
        """The leader's fn runs in the calling thread: no thread is started."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        assert threading.get_ident() == flight.do("k", threading.get_ident)

    def test_many_threads_one_key(self) -> None:
        """Threads released together for one key all get one of the flight results."""
        flight: tunnypy.SingleFlight[str, int] = tunnypy.SingleFlight()
        barrier = threading.Barrier(16)
        lock = threading.Lock()
        runs: list[int] = []

        def fn() -> int:
            with lock:
                runs.append(len(runs))
                return runs[-1]

        def caller() -> int:
            barrier.wait(WAIT)
            return flight.do("k", fn)

        calls = [Call(caller) for _ in range(16)]
        results = [call.wait() for call in calls]
        assert set(results) <= set(runs)
        assert 1 <= len(runs) <= 16
        assert flight.in_flight == 0

    def test_bad_arguments_raise_type_error(self) -> None:
        """A non-callable fn or an unhashable key raises TypeError and leaves no flight."""
        flight: tunnypy.SingleFlight[object, int] = tunnypy.SingleFlight()
        with pytest.raises(TypeError, match=r"^fn must be callable \(got str\)$"):
            flight.do("k", "not callable")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="unhashable"):
            flight.do([], lambda: 1)
        assert flight.in_flight == 0
        assert repr(flight) == "<SingleFlight 0 in flight>"
