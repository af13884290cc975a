"""The probe: ``tunnypy probe`` measures idle threads and reads the limits on them."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tunnypy.probe import _child, _cli, _limits, main
from tunnypy.probe._cli import build_parser
from tunnypy.probe._report import render

LIMIT_NAMES = [
    "RLIMIT_NPROC",
    "kernel.threads-max",
    "kernel.pid_max",
    "vm.max_map_count",
    "cgroup pids.max",
    "cgroup memory.max",
    "MemAvailable",
    "RLIMIT_AS",
]
PER_THREAD = [
    "rss_bytes_per_thread",
    "traced_bytes_per_thread",
    "vm_bytes_per_thread",
    "maps_per_thread",
    "start_seconds_per_thread",
]


def probe(*args: str, timeout: float = 50) -> dict[str, Any]:
    """Run ``python -m tunnypy probe ARGS --json`` and return its report."""
    completed = subprocess.run(
        [sys.executable, "-m", "tunnypy", "probe", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    return probe("--counts", "10,50", "--to-the-limit", "--max", "200")


class TestProbeReport:
    """The JSON report of a small run."""

    def test_measures_each_kind_at_each_count(self, report: dict[str, Any]) -> None:
        """Bare threads and tunnypy workers are measured at every count, default stack."""
        got = [(m["kind"], m["count"], m["stack_size"]) for m in report["measurements"]]
        expected = [("thread", 10, 0), ("thread", 50, 0), ("worker", 10, 0), ("worker", 50, 0)]
        assert expected == got

    def test_per_thread_costs_are_measured(self, report: dict[str, Any]) -> None:
        """RSS, tracemalloc, virtual memory, mappings and start time per thread are positive."""
        for m in report["measurements"]:
            for field in PER_THREAD:
                assert m[field] > 0, (field, m)
            # Each thread reserves its stack: at least the minimum stack size.
            assert m["vm_bytes_per_thread"] >= 32 * 1024

    def test_reads_every_limit(self, report: dict[str, Any]) -> None:
        """Every limit the issue names is read, with where it came from."""
        assert [limit["name"] for limit in report["limits"]][: len(LIMIT_NAMES)] == LIMIT_NAMES
        by_name = {limit["name"]: limit for limit in report["limits"]}
        threads_max = Path("/proc/sys/kernel/threads-max").read_text().strip()
        assert int(threads_max) == by_name["kernel.threads-max"]["value"]
        assert by_name["MemAvailable"]["value"] > 0
        assert by_name["vm.max_map_count"]["in_use"] > 0

    def test_binding_limit_is_the_least_room(self, report: dict[str, Any]) -> None:
        """The binding limit is the one with the least room, and the estimate is its room."""
        rooms = [limit["room"] for limit in report["limits"] if limit["room"] is not None]
        assert report["binding"]["room"] == min(rooms)
        assert report["estimate"] == min(rooms)
        assert report["estimate"] > 0

    def test_to_the_limit_stops_at_max(self, report: dict[str, Any]) -> None:
        """--to-the-limit --max 200 starts exactly 200 threads and stops them all."""
        run = report["to_the_limit"]
        assert run["started"] == 200
        assert run["stopped"] == "max"
        assert run["error"] is None
        assert run["stopped_all"] is True
        assert report["estimate"] == run["estimate"]

    def test_table_names_binding_limit(self, report: dict[str, Any]) -> None:
        """The readable table shows costs, limits, the binding one and the sizing sums."""
        text = render(report)
        assert "Cost of one idle thread" in text
        assert f"Binding limit: {report['binding']['name']}" in text
        assert "Sizing, the article's way: 2 GiB / " in text
        assert "To the limit: started 200 threads" in text


class TestProbeRuns:
    """Other runs of the command."""

    def test_to_the_limit_finds_a_real_failure(self) -> None:
        """With RLIMIT_AS lowered, starting threads really fails, and the cause is named."""
        report = probe("--counts", "10", "--to-the-limit", "--rlimit-as", "1G", "--max", "5000")
        run = report["to_the_limit"]
        assert run["stopped"] == "error"
        assert 0 < run["started"] < 5000
        assert "can't start new thread" in run["error"]
        assert run["likely_cause"] == "RLIMIT_AS"
        assert report["binding"]["name"] == "RLIMIT_AS"
        assert run["stopped_all"] is True

    def test_chosen_stack_size_is_measured_too(self, tmp_path: Path) -> None:
        """--stack-size measures both stacks; --plot writes a PNG."""
        pytest.importorskip("matplotlib")
        png = tmp_path / "threads.png"
        report = probe("--counts", "20", "--stack-size", "64K", "--plot", str(png))
        assert [m["stack_size"] for m in report["measurements"]] == [0, 0, 65536, 65536]
        assert report["basis"]["stack_size"] == 65536
        assert png.read_bytes().startswith(b"\x89PNG")

    def test_console_script_table(self) -> None:
        """The table is the default output and progress goes to stderr."""
        completed = subprocess.run(
            [sys.executable, "-m", "tunnypy", "probe", "--counts", "10"],
            capture_output=True,
            text=True,
            timeout=50,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        assert "Binding limit:" in completed.stdout
        assert "probe: 10 bare threads, default stack done in" in completed.stderr


class TestArguments:
    """Bad arguments are refused with a message naming what was wrong."""

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--counts", "0"], "counts must be whole numbers from 1 to 4194304 separated"),
            (["--counts", "a,b"], "counts must be whole numbers from 1 to 4194304 separated"),
            (["--stack-size", "1K"], "stack size must be 0 (the default) or from 32K to 1G"),
            (["--stack-size", "lots"], "size must be a whole number of bytes"),
            (["--max", "-3"], "must be a whole number from 1 to 4194304 (got '-3')"),
            (["--time-limit", "0"], "must be a number of seconds above 0 and at most 86400"),
            (["--rlimit-as", "1K"], "address space must be at least 16M"),
        ],
    )
    def test_bad_argument_exits_2(
        self, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """argparse exits with status 2 and the message."""
        with pytest.raises(SystemExit) as info:
            main(["probe", *args])
        assert info.value.code == 2
        assert message in capsys.readouterr().err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["--time-limit", "nan"],
                "argument --time-limit: must be a number of seconds above 0 "
                "and at most 86400 (got 'nan')",
            ),
            (["--time-limit", "inf"], "(got 'inf')"),
            (["--time-limit=-inf"], "(got '-inf')"),
            (["--time-limit", "1e999"], "(got '1e999')"),
            (["--time-limit", "86401"], "(got '86401')"),
            (["--time-limit", "-1"], "(got '-1')"),
            (
                ["--max", "nan"],
                "argument --max: must be a whole number from 1 to 4194304 (got 'nan')",
            ),
            (["--max", "4194305"], "argument --max: must be a whole number from 1 to 4194304"),
            (
                ["--max", "1" + "0" * 5000],
                "argument --max: must be a whole number from 1 to 4194304",
            ),
            (
                ["--counts", "10,4194305"],
                "argument --counts: counts must be whole numbers from 1 "
                "to 4194304 separated by commas (got '10,4194305')",
            ),
            (["--counts", "-1"], "(got '-1')"),
            (
                ["--stack-size", "2G"],
                "argument --stack-size: stack size must be 0 (the default) "
                "or from 32K to 1G (got '2G')",
            ),
            (["--stack-size=-256K"], "size must be a whole number of bytes"),
            (
                ["--rlimit-as", "9999999999G"],
                "argument --rlimit-as: address space must be at least 16M and at most",
            ),
            (["--rlimit-as", "nan"], "size must be a whole number of bytes"),
        ],
    )
    def test_edge_numbers_exit_2(
        self, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """nan, infinities, negatives and numbers too big to mean anything are usage errors."""
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["probe", *args])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: tunnypy probe")
        assert message in err

    @pytest.mark.parametrize(
        ("args", "field", "expected"),
        [
            (["--time-limit", "86400"], "time_limit", 86400.0),
            (["--time-limit", "0.5"], "time_limit", 0.5),
            (["--max", "4194304"], "max", 4194304),
            (["--counts", "1,4194304"], "counts", [1, 4194304]),
            (["--stack-size", "1G"], "stack_size", 1024**3),
            (["--rlimit-as", "16M"], "rlimit_as", 16 * 1024**2),
        ],
    )
    def test_edge_numbers_accepted(self, args: list[str], field: str, expected: object) -> None:
        """The largest and smallest values allowed parse."""
        assert expected == getattr(build_parser().parse_args(["probe", *args]), field)

    def test_defaults(self) -> None:
        """The default counts are 100, 1,000 and 10,000 at the default stack."""
        args = build_parser().parse_args(["probe"])
        assert isinstance(args, argparse.Namespace)
        assert args.counts == [100, 1_000, 10_000]
        assert args.stack_size == 0
        assert (args.max, args.time_limit) == (100_000, 60.0)


class TestParseSize:
    """parse_size() reads byte counts with binary units."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("65536", 65536),
            ("256K", 262144),
            ("1m", 1048576),
            ("2G", 2 * 1024**3),
            ("8MiB", 8 << 20),
        ],
    )
    def test_units(self, text: str, expected: int) -> None:
        """K, M and G are powers of 1024; a trailing B or iB is allowed."""
        assert expected == _cli.parse_size(text)

    def test_rejects_junk(self) -> None:
        """Anything else raises ValueError naming it."""
        with pytest.raises(ValueError, match=r"\(got '1.5M'\)$"):
            _cli.parse_size("1.5M")


class TestLimits:
    """read_limits(), estimate() and diagnose() on hand-made input."""

    def test_estimate_picks_least_room(self) -> None:
        """The binding limit is the one with the least room; unlimited ones never bind."""
        limits: list[dict[str, Any]] = [
            {"name": "a", "room": 10},
            {"name": "b", "room": None},
            {"name": "c", "room": 3},
        ]
        assert _limits.estimate(limits)["name"] == "c"  # type: ignore[index]
        assert _limits.estimate([{"name": "b", "room": None}]) is None

    def test_diagnose_names_the_full_limit(self) -> None:
        """The limit one more thread would cross is the likely cause."""
        limits = _limits.read_limits({"maps": 2.0, "rss": 16384.0, "vm": 8 << 20})
        by_name = {limit["name"]: limit for limit in limits}
        full_maps = by_name["vm.max_map_count"]["value"] - 1
        state = {"maps": full_maps, "system_threads": 100, "vm": 1 << 30}
        assert _limits.diagnose(limits, state, {"rss": 16384.0}) == "vm.max_map_count"
        assert _limits.diagnose(limits, {"maps": 10, "system_threads": 100}, {}) is None

    def test_user_threads_counts_this_process(self) -> None:
        """RLIMIT_NPROC's count includes this process's threads."""
        assert _limits.user_threads(os.getuid()) >= 1


class TestSleepers:
    """The probe's bare threads sleep on a lock each and stop as a chain."""

    def test_waking_the_newest_stops_them_all(self) -> None:
        """stop() wakes only the newest; each thread woken wakes the one before it."""
        sleepers = _child._Sleepers()
        for _ in range(20):
            sleepers.start()
        assert all(thread.is_alive() for thread in sleepers.threads)
        assert sleepers.stop(timeout=10)
        assert not any(thread.is_alive() for thread in sleepers.threads)

    def test_a_thread_that_fails_to_start_leaves_the_chain_whole(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At the limit Thread.start() raises; the threads already started still stop."""
        sleepers = _child._Sleepers()
        sleepers.start()
        sleepers.start()
        real_start = threading.Thread.start

        def refuse(self: Any) -> None:
            raise RuntimeError("can't start new thread")

        monkeypatch.setattr(threading.Thread, "start", refuse)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            sleepers.start()
        monkeypatch.setattr(threading.Thread, "start", real_start)
        assert len(sleepers.threads) == 2
        assert sleepers.stop(timeout=10)

    def test_stop_with_none_started_is_a_no_op(self) -> None:
        assert _child._Sleepers().stop(timeout=1)
