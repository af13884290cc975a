"""The process-worker benchmarks (issue 17) run in smoke mode, so that they cannot rot."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks._contenders import PEBBLE_ERROR

REPO = Path(__file__).resolve().parent.parent

# pebble's kill takes 3 s a call (see benchmarks/_processes.py): about 20 s on an idle machine.
pytestmark = pytest.mark.timeout(200)

PEBBLE = [] if PEBBLE_ERROR else ["pebble_process"]
PROCESS_SCENARIOS = {
    "proc_roundtrip": ["tunnypy_process", "ppe", *PEBBLE, "mp_pool"],
    "proc_cpu": ["tunnypy_process", "ppe", *PEBBLE, "mp_pool", "tunnypy_threads"],
    "proc_kill": ["tunnypy_process", "tunnypy_default_grace", *PEBBLE, "floor_lock"],
    "proc_payload": ["tunnypy_process", "ppe"],
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Run the process scenarios once in smoke mode, unpinned, on this interpreter."""
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--rounds", "2"]
    command += ["--pin", "unpinned", "--python", "current", "--no-chart", "--out", str(out)]
    command += [f"--scenario={name}" for name in PROCESS_SCENARIOS]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=190, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "results.json").read_text())  # type: ignore[no-any-return]


class TestProcessSmokeRun:
    """One smoke pass of the process scenarios of ``python -m benchmarks``."""

    def test_every_scenario_and_contender_reported(self, smoke_run: dict[str, Any]) -> None:
        """Each process scenario reports each of its contenders, with every round."""
        [one_pass] = smoke_run["passes"]
        got = {r["scenario"]: [row["contender"] for row in r["rows"]] for r in one_pass["results"]}
        assert got == PROCESS_SCENARIOS
        for result in one_pass["results"]:
            for row in result["rows"]:
                assert len(row["rounds"]) == 2, (result["scenario"], row["contender"])

    def test_numbers_and_targets(self, smoke_run: dict[str, Any]) -> None:
        """Every number is finite and not negative; every target gets a value and a verdict."""
        [one_pass] = smoke_run["passes"]
        for result in one_pass["results"]:
            for row in result["rows"]:
                numbers = [row["median"], row["q1"], row["q3"], row["min"], row["max"]]
                numbers += row["rounds"] + list(row["extra"].values())
                where = (result["scenario"], row["contender"])
                assert all(math.isfinite(x) and x >= 0 for x in numbers), where
            assert result["targets"], result["scenario"]
            for target in result["evaluated"]:
                assert target["verdict"] in {"PASS", "FAIL"}, (result["scenario"], target)
                assert math.isfinite(target["value"])

    def test_the_kill_rows_report_the_time_to_serve_again(self, smoke_run: dict[str, Any]) -> None:
        """The kill scenario reports, per contender, how long until its worker served again."""
        [one_pass] = smoke_run["passes"]
        [kill] = [r for r in one_pass["results"] if r["scenario"] == "proc_kill"]
        for row in kill["rows"]:
            if row["contender"] != "floor_lock":
                assert row["extra"]["serves_again_ms"] > 0, row["contender"]

    def test_the_load_average_is_recorded(self, smoke_run: dict[str, Any]) -> None:
        """A pass notes the machine's load average when it began and ended."""
        [one_pass] = smoke_run["passes"]
        assert len(one_pass["loadavg_start"]) == 3
        assert len(one_pass["loadavg_end"]) == 3


def test_the_wire_benchmark_runs_and_leaves_no_segment() -> None:
    """``python -m benchmarks.wire`` reports its three ways and leaves nothing in /dev/shm."""
    before = set(os.listdir("/dev/shm"))
    command = [sys.executable, "-m", "benchmarks.wire", "--mib", "1", "--rounds", "1"]
    command += ["--small-calls", "20", "--large-calls", "1"]
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "small call round trip: plain" in done.stdout
    assert "1 MiB bytes round trip: plain" in done.stdout
    assert "shm" in done.stdout
    assert not {n for n in set(os.listdir("/dev/shm")) - before if n.startswith("tunnypy-wire-")}
