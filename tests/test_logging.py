"""Logging: structlog events through the stdlib logger "tunnypy", silent by default."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
import structlog

import tunnypy
from tests.helpers import WAIT, identity


def fail(_: int) -> int:
    raise ValueError("boom")


class TestLogging:
    def test_events_reach_the_stdlib_logger(self, caplog: pytest.LogCaptureFixture) -> None:
        """Lifecycle events arrive as snake_case messages with key-values."""
        with caplog.at_level(logging.DEBUG, logger="tunnypy"):
            with tunnypy.Pool.from_func(1, fail) as pool:
                with pytest.raises(ValueError, match="boom"):
                    pool.process(1)
                pool.set_size(2)
            pool.close(timeout=WAIT)
        messages = [r.getMessage() for r in caplog.records if r.name == "tunnypy"]
        events = {m.split(" ", 1)[0] for m in messages}
        assert {"worker_started", "pool_resized", "job_failed", "pool_closed"} <= events
        assert any(m.startswith("pool_resized size=2 previous=1") for m in messages)
        stopped = [r for r in caplog.records if r.getMessage().startswith("worker_stopped")]
        assert len(stopped) == 2

    def test_block_until_ready_failure_is_logged_with_traceback(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A raising hook is logged as an error with its exception, and the pool serves on."""

        class Flaky(tunnypy.BaseWorker[int, int]):
            calls = 0

            def process(self, payload: int) -> int:
                return payload

            def block_until_ready(self) -> None:
                Flaky.calls += 1
                if Flaky.calls == 1:
                    raise RuntimeError("not ready")

        with caplog.at_level(logging.ERROR, logger="tunnypy"), tunnypy.Pool(1, Flaky) as pool:
            assert pool.process(4) == 4
        failures = [r for r in caplog.records if r.getMessage().startswith("block_until_ready")]
        assert len(failures) == 1
        assert failures[0].exc_info is not None

    def test_library_never_configures_structlog(self) -> None:
        """Importing and using tunnypy leaves structlog unconfigured."""
        with tunnypy.Pool.from_func(1, identity) as pool:
            pool.process(1)
        assert not structlog.is_configured()

    def test_silent_without_logging_configuration(self) -> None:
        """A program that configures nothing prints nothing, even for errors."""
        code = (
            "import tunnypy\n"
            "class W(tunnypy.BaseWorker):\n"
            "    def process(self, p): return p\n"
            "    def terminate(self): raise RuntimeError('terminate failed')\n"
            "with tunnypy.Pool(2, W) as pool:\n"
            "    pool.process(1)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        assert (done.stdout, done.stderr) == ("", "")
