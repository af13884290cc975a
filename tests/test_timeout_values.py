"""Timeout values: inf and huge ones mean no limit, any real number is taken, bad ones refused."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, Gate, RecordingFactory

# No limit, or so far off that it never comes: threading rejects a wait longer
# than threading.TIMEOUT_MAX (about 292 years), poll() one over 24.8 days.
NO_LIMIT: list[object] = [
    math.inf,
    1e10,
    1e300,
    10**400,
    Decimal("Infinity"),
    Decimal("1e400"),
    Fraction(10**400, 3),
]

# Real numbers that are neither int nor float.
OTHER_REALS: list[object] = [Fraction(1, 2), Decimal("0.5")]

# (value, error type, what the message says it got)
BAD: list[tuple[object, type[Exception], str]] = [
    (-(10**400), ValueError, r"\(got -1000000000"),
    (Fraction(-1, 2), ValueError, r"\(got Fraction\(-1, 2\)\)"),
    (Decimal("-0.5"), ValueError, r"\(got Decimal\('-0\.5'\)\)"),
    (Decimal("-Infinity"), ValueError, r"\(got Decimal\('-Infinity'\)\)"),
    (Decimal("NaN"), ValueError, r"\(got Decimal\('NaN'\)\)"),
    (Decimal("sNaN"), ValueError, r"\(got Decimal\('sNaN'\)\)"),
    (False, TypeError, r"\(got bool False\)"),
    (1j, TypeError, r"\(got complex 1j\)"),
]


def ids(values: list[Any]) -> list[str]:
    return [repr(v[0] if isinstance(v, tuple) else v)[:24] for v in values]


@pytest.fixture
def gated() -> Iterator[tuple[tunnypy.Pool[Any, Any], Gate, RecordingFactory]]:
    """A one-worker pool whose worker holds a gated job; released (and closed) at the end."""
    factory = RecordingFactory()
    pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(1, factory)
    gate = Gate()
    pool.submit(gate)
    assert gate.started.wait(WAIT)
    yield pool, gate, factory
    gate.release.set()
    assert pool.close(timeout=WAIT)


class TestNoLimit:
    @pytest.mark.parametrize("timeout", NO_LIMIT, ids=ids(NO_LIMIT))
    def test_close_waits_for_the_running_job(
        self, gated: tuple[tunnypy.Pool[Any, Any], Gate, RecordingFactory], timeout: Any
    ) -> None:
        """close(timeout=inf or huge) waits like close(); every worker has then ended."""
        pool, gate, factory = gated
        closing = Call(lambda: pool.close(timeout=timeout))
        assert not closing.done.is_set()
        gate.release.set()
        assert closing.wait() is True
        assert pool.stats().workers == 0
        assert [w.terminated for w in factory.made] == [1]

    @pytest.mark.parametrize("timeout", NO_LIMIT, ids=ids(NO_LIMIT))
    def test_set_size_waits_for_the_retired_worker(
        self, gated: tuple[tunnypy.Pool[Any, Any], Gate, RecordingFactory], timeout: Any
    ) -> None:
        """set_size(0, wait=True, timeout=inf or huge) waits until the busy worker has left."""
        pool, gate, factory = gated
        shrinking = Call(lambda: pool.set_size(0, wait=True, timeout=timeout))
        gate.release.set()
        assert shrinking.wait() is True
        assert pool.stats().workers == 0
        assert [w.terminated for w in factory.made] == [1]

    @pytest.mark.parametrize("timeout", NO_LIMIT, ids=ids(NO_LIMIT))
    def test_process_timed_and_cancel_tokens_run_the_job(self, timeout: Any) -> None:
        """process_timed and CancelToken take a huge timeout as (about) no deadline."""
        with tunnypy.Pool.from_callback(1) as pool:
            gate = Gate()
            calls = [
                Call(lambda: pool.process_timed(gate, timeout)),
                Call(lambda: pool.process_ctx(gate, tunnypy.CancelToken(timeout=timeout))),
            ]
            assert gate.started.wait(WAIT)  # the first call's job; the other waits in line
            gate.release.set()
            assert [call.wait() for call in calls] == [None, None]
            assert pool.stats().timed_out == 0

    @pytest.mark.parametrize("timeout", NO_LIMIT, ids=ids(NO_LIMIT))
    def test_a_cancel_token_beyond_a_float_has_no_deadline(self, timeout: Any) -> None:
        """A timeout too large for a float is inf: no deadline; a finite one gets one."""
        token = tunnypy.CancelToken(timeout=timeout)
        if timeout in (1e10, 1e300):
            assert token.deadline is not None
            assert not token.expired
        else:
            assert token.deadline is None

    @pytest.mark.parametrize("timeout", NO_LIMIT, ids=ids(NO_LIMIT))
    def test_single_runner_wait_and_close(self, timeout: Any) -> None:
        """SingleRunner.wait(timeout=inf or huge) returns once the function has returned."""
        runner = tunnypy.SingleRunner()
        gate = Gate()
        assert runner.run(gate)
        assert gate.started.wait(WAIT)
        waiting = Call(lambda: runner.wait(timeout=timeout))
        gate.release.set()
        assert waiting.wait() is True
        assert runner.close(timeout=timeout) is True

    @pytest.mark.parametrize("timeout", NO_LIMIT, ids=ids(NO_LIMIT))
    def test_limiter_wait_set_size_and_close(self, timeout: Any) -> None:
        """Limiter.wait, set_size(wait=True) and close take inf or huge timeouts."""
        limiter = tunnypy.Limiter(1)
        gate = Gate()
        limiter.run(gate)
        assert gate.started.wait(WAIT)
        waiting = Call(lambda: limiter.wait(timeout=timeout))
        shrinking = Call(lambda: limiter.set_size(0, wait=True, timeout=timeout))
        gate.release.set()
        assert waiting.wait() is True
        assert shrinking.wait() is True
        assert limiter.close(timeout=timeout) is True


class TestOtherRealNumbers:
    @pytest.mark.parametrize("timeout", OTHER_REALS, ids=ids(OTHER_REALS))
    def test_every_timeout_argument_takes_fractions_and_decimals(self, timeout: Any) -> None:
        """Fraction and Decimal are real numbers of seconds wherever a timeout is taken."""
        with tunnypy.Pool[int, int].from_func(2, lambda x: x * 2) as pool:
            assert pool.process_timed(21, timeout) == 42
            token = tunnypy.CancelToken(timeout=timeout)
            assert token.deadline is not None
            assert pool.process_ctx(4, token) == 8
            assert pool.set_size(1, wait=True, timeout=timeout) is True
            assert pool.close(timeout=timeout) is True
        runner = tunnypy.SingleRunner()
        assert runner.wait(timeout=timeout) is True
        assert runner.close(timeout=timeout) is True
        limiter = tunnypy.Limiter(1)
        assert limiter.wait(timeout=timeout) is True
        assert limiter.close(timeout=timeout) is True

    def test_a_fraction_or_decimal_deadline_is_kept(self) -> None:
        """A job longer than a Decimal timeout times out, as with a float."""
        with tunnypy.Pool.from_callback(1) as pool:
            gate = Gate()
            with pytest.raises(tunnypy.JobTimedOutError):
                pool.process_timed(gate, Decimal("0.01"))  # type: ignore[arg-type]
            gate.release.set()
            assert pool.stats().timed_out == 1


WAITS: dict[str, Callable[[tunnypy.Pool[Any, Any], object], object]] = {
    "process_timed": lambda pool, t: pool.process_timed(1, t),  # type: ignore[arg-type]
    "set_size": lambda pool, t: pool.set_size(5, timeout=t),  # type: ignore[arg-type]
    "close": lambda pool, t: pool.close(timeout=t),  # type: ignore[arg-type]
    "CancelToken": lambda pool, t: tunnypy.CancelToken(timeout=t),  # type: ignore[arg-type]
}


class TestBadValues:
    @pytest.mark.parametrize("where", list(WAITS))
    @pytest.mark.parametrize(("timeout", "error", "got"), BAD, ids=ids(BAD))
    def test_refused_with_the_value_named_and_nothing_changed(
        self, where: str, timeout: Any, error: type[Exception], got: str
    ) -> None:
        """Negative, NaN and non-real values are refused as before; the pool is untouched."""
        with tunnypy.Pool[int, int].from_func(1, abs) as pool:
            before = (pool.stats(), pool.size, pool.closed)
            with pytest.raises(
                error, match="timeout must be a non-negative number of seconds " + got
            ):
                WAITS[where](pool, timeout)
            assert before == (pool.stats(), pool.size, pool.closed)

    @pytest.mark.parametrize(("timeout", "error", "got"), BAD, ids=ids(BAD))
    def test_runner_and_limiter_waits_refuse_them_too(
        self, timeout: Any, error: type[Exception], got: str
    ) -> None:
        """SingleRunner.wait and Limiter.wait check their timeout the same way."""
        match = "timeout must be a non-negative number of seconds " + got
        with tunnypy.SingleRunner() as runner, pytest.raises(error, match=match):
            runner.wait(timeout=timeout)
        with tunnypy.Limiter(1) as limiter, pytest.raises(error, match=match):
            limiter.wait(timeout=timeout)
