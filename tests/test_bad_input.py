"""Bad input: every wrong argument raises a clear error naming it, and changes nothing."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT

# (value, error type, what the message says it got)
BAD_SIZES: list[tuple[object, type[Exception], str]] = [
    (-1, ValueError, r"\(got -1\)"),
    (-(2**70), ValueError, r"\(got -1180591620717411303424\)"),
    (1.5, TypeError, r"\(got float 1\.5\)"),
    (2.0, TypeError, r"\(got float 2\.0\)"),
    (math.nan, TypeError, r"\(got float nan\)"),
    (True, TypeError, r"\(got bool True\)"),
    (False, TypeError, r"\(got bool False\)"),
    ("2", TypeError, r"\(got str '2'\)"),
    (None, TypeError, r"\(got NoneType None\)"),
    ([2], TypeError, r"\(got list \[2\]\)"),
]

BAD_MAX_WAITING = [case for case in BAD_SIZES if case[0] is not None]

BAD_TIMEOUTS: list[tuple[object, type[Exception], str]] = [
    (-1, ValueError, r"\(got -1\)"),
    (-0.001, ValueError, r"\(got -0\.001\)"),
    (-math.inf, ValueError, r"\(got -inf\)"),
    (math.nan, ValueError, r"\(got nan\)"),
    ("1", TypeError, r"\(got str '1'\)"),
    (True, TypeError, r"\(got bool True\)"),
    (b"1", TypeError, r"\(got bytes b'1'\)"),
    (1j, TypeError, r"\(got complex 1j\)"),
]

BAD_TOKENS: list[object] = [None, "token", 5.0, threading.Event(), object()]

NOT_CALLABLE: list[object] = [None, 3, "f", b"f", [print], (print,)]


def ids(cases: list[Any]) -> list[str]:
    return [repr(case[0] if isinstance(case, tuple) else case) for case in cases]


def snapshot(pool: tunnypy.Pool[Any, Any]) -> tuple[object, ...]:
    return (pool.stats(), pool.size, pool.queue_length, pool.closed, repr(pool))


@pytest.fixture
def pool() -> Iterator[tunnypy.Pool[Any, Any]]:
    p: tunnypy.Pool[Any, Any] = tunnypy.Pool.from_func(2, lambda x: x)
    p.process(1)  # non-zero counters, so "unchanged" means something
    yield p
    assert p.close(timeout=WAIT)


@pytest.fixture
def callback_pool() -> Iterator[tunnypy.Pool[Callable[[], object], object]]:
    p = tunnypy.Pool.from_callback(2)
    p.process(lambda: 1)
    yield p
    assert p.close(timeout=WAIT)


def unchanged(
    pool: tunnypy.Pool[Any, Any], call: Callable[[], object], error: type[Exception], match: str
) -> None:
    """Assert *call* raises *error* matching *match* and leaves *pool* as it was."""
    before = snapshot(pool)
    with pytest.raises(error, match=match):
        call()
    assert before == snapshot(pool)


class TestSizes:
    @pytest.mark.parametrize(("size", "error", "got"), BAD_SIZES, ids=ids(BAD_SIZES))
    def test_pool_constructors_refuse_a_bad_size(
        self, size: Any, error: type[Exception], got: str
    ) -> None:
        """Pool, from_func and from_callback name the size and what arrived; no thread starts."""
        threads = threading.active_count()
        match = "size must be a non-negative int " + got
        with pytest.raises(error, match=match):
            tunnypy.Pool(size, tunnypy.BaseWorker)
        with pytest.raises(error, match=match):
            tunnypy.Pool.from_func(size, abs)
        with pytest.raises(error, match=match):
            tunnypy.Pool.from_callback(size)
        assert threads == threading.active_count()

    @pytest.mark.parametrize(("size", "error", "got"), BAD_SIZES, ids=ids(BAD_SIZES))
    def test_set_size_refuses_a_bad_size(
        self, pool: tunnypy.Pool[Any, Any], size: Any, error: type[Exception], got: str
    ) -> None:
        """set_size() raises naming the size; size, workers and counters are unchanged."""
        unchanged(
            pool, lambda: pool.set_size(size), error, "size must be a non-negative int " + got
        )

    @pytest.mark.parametrize(("size", "error", "got"), BAD_MAX_WAITING, ids=ids(BAD_MAX_WAITING))
    def test_max_waiting_must_be_a_non_negative_int(
        self, size: Any, error: type[Exception], got: str
    ) -> None:
        """max_waiting is named in the error; None (no limit) is the only non-int it accepts."""
        with pytest.raises(error, match="max_waiting must be a non-negative int " + got):
            tunnypy.Pool.from_func(1, abs, max_waiting=size)

    def test_a_non_callable_factory_or_fn_is_refused(self) -> None:
        """worker_factory and fn are checked before any thread starts."""
        with pytest.raises(TypeError, match=r"worker_factory must be callable \(got int\)"):
            tunnypy.Pool(1, 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"fn must be callable \(got str\)"):
            tunnypy.Pool.from_func(1, "abs")  # type: ignore[arg-type]


class TestTimeouts:
    @pytest.mark.parametrize(("timeout", "error", "got"), BAD_TIMEOUTS, ids=ids(BAD_TIMEOUTS))
    def test_every_timeout_argument_is_checked(
        self, pool: tunnypy.Pool[Any, Any], timeout: Any, error: type[Exception], got: str
    ) -> None:
        """process_timed, set_size, close and CancelToken name the timeout; nothing changes."""
        match = "timeout must be a non-negative number of seconds " + got
        unchanged(pool, lambda: pool.process_timed(1, timeout), error, match)
        unchanged(pool, lambda: pool.set_size(5, timeout=timeout), error, match)
        unchanged(pool, lambda: pool.close(timeout=timeout), error, match)  # still open
        with pytest.raises(error, match=match):
            tunnypy.CancelToken(timeout=timeout)

    def test_process_timed_requires_a_timeout(self, pool: tunnypy.Pool[Any, Any]) -> None:
        """None is not a timeout for process_timed (use process)."""
        match = r"timeout must be a non-negative number of seconds \(got NoneType None\)"
        unchanged(pool, lambda: pool.process_timed(1, None), TypeError, match)  # type: ignore[arg-type]

    def test_a_bad_timeout_on_a_callback_pool_is_reported_before_the_payload(
        self, callback_pool: tunnypy.Pool[Callable[[], object], object]
    ) -> None:
        """With both wrong, the timeout is named first, and nothing is counted."""
        match = "timeout must be"
        unchanged(callback_pool, lambda: callback_pool.process_timed(3, -1), ValueError, match)  # type: ignore[arg-type]


class TestTokens:
    @pytest.mark.parametrize("token", BAD_TOKENS, ids=ids(BAD_TOKENS))
    def test_process_ctx_refuses_anything_but_a_cancel_token(
        self, pool: tunnypy.Pool[Any, Any], token: Any
    ) -> None:
        """The error names CancelToken and the type that arrived."""
        match = rf"token must be a CancelToken \(got {type(token).__name__}\)"
        unchanged(pool, lambda: pool.process_ctx(1, token), TypeError, match)


class TestPayloads:
    @pytest.mark.parametrize("payload", NOT_CALLABLE, ids=ids(NOT_CALLABLE))
    @pytest.mark.parametrize(
        "method", ["process", "process_timed", "process_ctx", "submit", "try_process", "try_submit"]
    )
    def test_a_callback_pool_refuses_a_payload_that_is_not_callable(
        self,
        callback_pool: tunnypy.Pool[Callable[[], object], object],
        payload: Any,
        method: str,
    ) -> None:
        """Every entry point checks the payload in the caller; no job is made or counted."""
        calls: dict[str, Callable[[], object]] = {
            "process": lambda: callback_pool.process(payload),
            "process_timed": lambda: callback_pool.process_timed(payload, WAIT),
            "process_ctx": lambda: callback_pool.process_ctx(payload, tunnypy.CancelToken()),
            "submit": lambda: callback_pool.submit(payload),
            "try_process": lambda: callback_pool.try_process(payload),
            "try_submit": lambda: callback_pool.try_submit(payload),
        }
        match = rf"payload must be a zero-argument callable \(got {type(payload).__name__}\)"
        unchanged(callback_pool, calls[method], TypeError, match)

    def test_a_callable_needing_arguments_fails_in_the_job_not_the_pool(
        self, callback_pool: tunnypy.Pool[Callable[[], object], object]
    ) -> None:
        """The TypeError from calling it reaches the caller as the job's error; the worker stays."""
        needs_one: Callable[[int], int] = abs
        with pytest.raises(TypeError, match="abs"):
            callback_pool.process(needs_one)  # type: ignore[arg-type]
        assert callback_pool.stats().failed == 1
        assert callback_pool.process(lambda: 2) == 2
