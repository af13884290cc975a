"""The article's failure mode: one thread per request runs out of files; a pool does not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "too_many_files.py"
REQUESTS = 2_000
WORKERS = 50


@pytest.fixture(scope="module")
def outcome() -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, str(EXAMPLE), "--requests", str(REQUESTS), "--nofile", "256", "--json"],
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


class TestTooManyFiles:
    """examples/too_many_files.py under RLIMIT_NOFILE=256."""

    def test_naive_runs_out_of_files(self, outcome: dict[str, Any]) -> None:
        """One thread per request fails with EMFILE (or a thread-start failure) before the end."""
        naive = outcome["naive"]
        error = naive["error"]
        assert error is not None
        assert "Too many open files" in error or "can't start new thread" in error
        assert naive["completed"] < REQUESTS
        # It got about as far as the limit allows, and no further.
        assert 100 < naive["peak_sockets"] <= 256

    def test_pool_completes_with_at_most_50_sockets(self, outcome: dict[str, Any]) -> None:
        """The same load through 50 stateful workers completes with at most 50 sockets open."""
        pooled = outcome["pooled"]
        assert pooled["completed"] == REQUESTS
        assert pooled["error"] is None
        assert pooled["peak_sockets"] <= WORKERS
        assert pooled["connections_opened"] == WORKERS
