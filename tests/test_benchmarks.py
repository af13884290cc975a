"""The benchmark suite runs in smoke mode, so that it cannot rot."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from benchmarks._cli import SCENARIOS
from benchmarks._contenders import PEBBLE_ERROR, QueueFloor
from benchmarks._report import evaluate_targets, write_chart
from tests.helpers import WAIT
from tests.test_process_benchmarks import PROCESS_SCENARIOS

REPO = Path(__file__).resolve().parent.parent

# The smoke pass takes ~10 s on an idle machine; a busy shared one can triple that.
pytestmark = pytest.mark.timeout(150)

POOLS = ["tunnypy", "tpe", "mp_threadpool"] + ([] if PEBBLE_ERROR else ["pebble"])
EXPECTED = {
    "roundtrip": [*POOLS, "floor_lock", "floor_eventfd"],
    "timed": ["tunnypy_timed", "tunnypy", "tpe_timed"],
    "contended": [*POOLS, "floor_queue"],
    "fanout": POOLS,
    "memory": ["tunnypy", "bare_threads", "mp_threadpool"],
    "grow": ["tunnypy", "bare_threads", "mp_threadpool"],
    "shrink": ["tunnypy"],
    "timeout": ["tunnypy", "tpe", "floor_lock"],
    "io": ["tunnypy", "tpe", "tpe_keepalive"],
    "aprocess": ["aprocess", "wrap_future", "to_thread_tpe"],
    "dask_roundtrip": ["tunnypy_dask", "bare_actor"],
    "dask_cpu": ["tunnypy_dask", "tunnypy_process"],
}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Run the whole suite once in smoke mode, unpinned, on this interpreter."""
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "benchmarks", "--smoke", "--rounds", "3"]
    command += ["--pin", "unpinned", "--python", "current", "--no-chart", "--out", str(out)]
    command += [f"--scenario={name}" for name in EXPECTED]  # process workers: their own file
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=140, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text())


class TestSmokeRun:
    """One smoke pass of ``python -m benchmarks`` and the files it writes."""

    def test_every_scenario_and_contender_reported(
        self, smoke_run: tuple[Path, dict[str, Any]]
    ) -> None:
        """Each scenario reports each of its contenders, with every round."""
        _, data = smoke_run
        [one_pass] = data["passes"]
        assert one_pass["pin"] == "unpinned"
        by_scenario: dict[str, list[dict[str, Any]]] = {}
        for result in one_pass["results"]:
            by_scenario.setdefault(result["scenario"], []).append(result)
        assert set(SCENARIOS) == set(by_scenario) | set(PROCESS_SCENARIOS)
        assert set(EXPECTED) == set(by_scenario)
        for name, results in by_scenario.items():
            for result in results:
                assert EXPECTED[name] == [row["contender"] for row in result["rows"]], name
                for row in result["rows"]:
                    assert len(row["rounds"]) == 3, (name, row["contender"])

    def test_numbers_are_positive(self, smoke_run: tuple[Path, dict[str, Any]]) -> None:
        """Medians, spreads and extras are finite and positive (overshoot: non-negative)."""
        _, data = smoke_run
        for result in data["passes"][0]["results"]:
            for row in result["rows"]:
                numbers = [row["median"], row["q1"], row["q3"], row["min"], row["max"]]
                numbers += row["rounds"] + list(row["extra"].values())
                where = (result["scenario"], row["contender"])
                assert all(math.isfinite(x) for x in numbers), where
                if result["scenario"] == "timeout":
                    assert all(x >= 0 for x in numbers), where
                else:
                    assert all(x > 0 for x in numbers), where

    def test_targets_evaluated(self, smoke_run: tuple[Path, dict[str, Any]]) -> None:
        """Every target gets a value and a verdict (smoke numbers need not pass)."""
        _, data = smoke_run
        for result in data["passes"][0]["results"]:
            assert result["targets"], result["scenario"]
            for target in result["evaluated"]:
                assert target["verdict"] in {"PASS", "FAIL"}, (result["scenario"], target)
                assert math.isfinite(target["value"])
                if target["baseline"] is not None and target["key"] == "median":
                    assert math.isfinite(target["paired"]), (result["scenario"], target)
                else:
                    assert target["paired"] is None

    def test_markdown_written(self, smoke_run: tuple[Path, dict[str, Any]]) -> None:
        """results.md carries the targets table and a row per contender."""
        out, data = smoke_run
        text = (out / "results.md").read_text()
        assert "## Targets" in text
        for result in data["passes"][0]["results"]:
            assert f"| {result['title']} |" in text
            for row in result["rows"]:
                assert f"| {row['label']} |" in text

    def test_chart_drawn(self, smoke_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
        """ratios.png is drawn from the passes when matplotlib is installed."""
        pytest.importorskip("matplotlib")
        _, data = smoke_run
        path = tmp_path / "ratios.png"
        message = write_chart(path, data["passes"])
        assert str(path) in message
        assert path.read_bytes()[:4] == b"\x89PNG"


def test_queue_floor_answers_each_caller_and_closes() -> None:
    """The contended floor returns each caller's own value and joins its threads."""
    floor = QueueFloor(2)
    results: dict[int, list[object]] = {}

    def caller(me: int) -> None:
        results[me] = [floor.call((me, i)) for i in range(50)]

    threads = [threading.Thread(target=caller, args=(me,)) for me in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    floor.close()
    assert results == {me: [(me, i) for i in range(50)] for me in range(3)}
    assert not any(t.is_alive() for t in floor._threads)


def test_the_paired_ratio_compares_rounds_and_leaves_the_verdict_to_the_medians() -> None:
    """Rounds from 3.12's timed pass at abd512a: the machine slowed for two rounds of one row."""

    def row(contender: str, rounds: list[float]) -> dict[str, Any]:
        return {"contender": contender, "rounds": rounds, "median": sorted(rounds)[2], "extra": {}}

    result: dict[str, Any] = {
        "subject": "timed",
        "rows": [
            row("timed", [12.9, 13.21, 9.56, 9.58, 14.57]),
            row("process", [11.96, 12.04, 9.08, 9.1, 9.07]),
        ],
        "targets": [
            {"label": "≤1.2x", "subject": "timed", "op": "<=", "bound": 1.2}
            | {"baseline": "process", "key": "median", "informational": False}
        ],
    }
    [evaluated] = evaluate_targets(result)
    assert evaluated["value"] == pytest.approx(12.9 / 9.1)
    assert evaluated["verdict"] == "FAIL"
    assert evaluated["paired"] == pytest.approx(12.9 / 11.96)  # the median of the five
    result["rows"][1]["rounds"] = [9.1] * 4  # a round missing: no pairs to make
    assert evaluate_targets(result)[0]["paired"] is None
