"""A deadline longer than poll() takes, waited for on an eventfd, is still a deadline."""

from __future__ import annotations

import tunnypy
from tests.helpers import WAIT, Call, Gate


class TestDeadlinesBeyondWhatPollTakes:
    """poll() takes at most 2**31 - 1 ms (24.8 days); a longer deadline is still a deadline."""

    MONTH = 30 * 86400.0

    def test_process_timed_on_an_eventfd_with_a_month_long_timeout_completes(self) -> None:
        gate = Gate()
        with tunnypy.Pool.from_func(1, gate) as pool:
            call = Call(pool.process_timed, "value", self.MONTH)
            assert gate.started.wait(WAIT)
            gate.release.set()  # the caller is (or soon is) in its month-long wait
            assert call.wait() == "value"
            assert pool.stats().completed == 1
