"""
One slow path per side: thread callers wait through ``Line.call`` unless they are one of
the two inlined fast paths, and the worker delivers through ``_deliver`` but in one case.

``Pool.process`` and ``Pool.process_timed`` with a deadline are the inlined
copies (docs/design.md, "One fast path per side"); the promise suite
(tests/test_promises.py) checks that they behave as the slow path does.
"""

from __future__ import annotations

from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, BoomError, identity
from tunnypy import CancelToken
from tunnypy._line import Line
from tunnypy._worker_thread import WorkerThread


def boom_if_negative(payload: int) -> int:
    if payload < 0:
        raise BoomError(payload)
    return payload


class TestCallerSide:
    @pytest.mark.parametrize(
        ("name", "call"),
        [
            ("process_timed", lambda pool: pool.process_timed(3, float("inf"))),
            ("process_ctx", lambda pool: pool.process_ctx(3, CancelToken())),
            ("try_process", lambda pool: pool.try_process(3)),
        ],
    )
    def test_the_callers_without_a_fast_path_wait_through_line_call(
        self, monkeypatch: pytest.MonkeyPatch, name: str, call: Any
    ) -> None:
        seen: list[str] = []
        real = Line.call

        def spy(self: Line, *args: Any, **kwargs: Any) -> Any:
            seen.append(kwargs.get("call", "process"))
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Line, "call", spy)
        with tunnypy.Pool.from_func(1, identity) as pool:
            assert call(pool) == 3
        assert seen == [name]


class TestWorkerSide:
    def test_deliver_takes_every_outcome_but_the_one_inlined_case(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        Errors and submitted jobs go through _deliver; a successful call does not.

        The loop inlines only the delivery of a successful, not submitted job
        on a worker that offers itself before delivering (docs/design.md, "One
        fast path per side").
        """
        delivered: list[tuple[bool, object]] = []
        real = WorkerThread._deliver

        def spy(self: WorkerThread, job: Any, ok: bool, outcome: Any) -> None:
            delivered.append((ok, outcome if ok else type(outcome)))
            real(self, job, ok, outcome)

        # Before the pool: the loop looks its delivery up once, as its thread starts.
        monkeypatch.setattr(WorkerThread, "_deliver", spy)
        with tunnypy.Pool.from_func(1, boom_if_negative) as pool:
            assert pool.process(1) == 1
            assert pool.process_timed(2, WAIT) == 2
            assert pool.submit(3).result(WAIT) == 3
            with pytest.raises(BoomError):
                pool.process(-1)
            with pytest.raises(BoomError):
                pool.process_timed(-2, WAIT)
        assert delivered == [(True, 3), (False, BoomError), (False, BoomError)]
