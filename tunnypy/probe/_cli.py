"""
The ``tunnypy`` command: ``tunnypy probe`` (also ``python -m tunnypy probe``).

Parses and checks the options, runs each measurement in a subprocess
(``_child``), reads the limits (``_limits``) and prints the report
(``_report``). At module level this imports the standard library and
tunnypy itself (any ``tunnypy.*`` import runs the package's ``__init__``
first, which loads attrs and structlog).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ._child import KINDS, ChildFailedError, run_child
from ._limits import diagnose, estimate, read_limits
from ._report import ProgressDisplay, plot, progress_display, render, sizing, stack_label

__all__ = ["build_parser", "main", "parse_size", "probe"]

DESCRIPTION = (
    "tunnypy's command line: 'tunnypy probe' (also 'python -m tunnypy probe') measures "
    "how many threads this Python process can run."
)
DEFAULT_COUNTS = (100, 1_000, 10_000)
MIN_STACK = 32 * 1024
"""``threading.stack_size`` refuses anything smaller."""
MAX_STACK = 1024**3
"""A larger thread stack is surely a typo; the default is 8 MiB."""
MOST_THREADS = 4 * 1024 * 1024
"""Linux's ``PID_MAX_LIMIT`` on 64-bit: no process can run more threads than this."""
MAX_TIME_LIMIT = 86_400.0
"""A day; a run to the ceiling takes seconds to minutes."""


# -- the options ----------------------------------------------------------------

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    """
    Parse a byte count such as ``65536``, ``256K``, ``1M`` or ``2G`` (binary units).

    Raises:
        ValueError: *text* is not a non-negative whole number with an optional unit.
    """
    raw = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = raw[-1:] if raw[-1:] in _UNITS else ""
    number = raw[: len(raw) - len(unit)]
    if not number.isdigit():
        msg = f"size must be a whole number of bytes with an optional K, M or G (got {text!r})"
        raise ValueError(msg)
    return int(number) * _UNITS[unit]


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(not 1 <= count <= MOST_THREADS for count in counts):
        msg = (
            f"counts must be whole numbers from 1 to {MOST_THREADS} separated by commas "
            f"(got {text!r})"
        )
        raise argparse.ArgumentTypeError(msg)
    return sorted(set(counts))


def _thread_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if not 1 <= count <= MOST_THREADS:
        msg = f"must be a whole number from 1 to {MOST_THREADS} (got {text!r})"
        raise argparse.ArgumentTypeError(msg)
    return count


def _time_limit(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    # Written so that nan fails too.
    if not 0 < seconds <= MAX_TIME_LIMIT:
        msg = f"must be a number of seconds above 0 and at most {MAX_TIME_LIMIT:.0f} (got {text!r})"
        raise argparse.ArgumentTypeError(msg)
    return seconds


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _stack(text: str) -> int:
    size = _size(text)
    if size and not MIN_STACK <= size <= MAX_STACK:
        msg = f"stack size must be 0 (the default) or from 32K to 1G (got {text!r})"
        raise argparse.ArgumentTypeError(msg)
    return size


def _address_space(text: str) -> int:
    size = _size(text)
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft == resource.RLIM_INFINITY:
        # The most setrlimit() takes from Python.
        most, ceiling = 2**63 - 1, "at most 2**63 - 1 bytes"
    else:
        most, ceiling = soft, f"at most the current RLIMIT_AS of {soft} bytes"
    if not 2**24 <= size <= most:
        msg = f"address space must be at least 16M and {ceiling} (got {text!r})"
        raise argparse.ArgumentTypeError(msg)
    return size


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunnypy", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tunnypy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    probe = commands.add_parser(
        "probe",
        help="how many threads can this Python process run?",
        description=(
            "Measure what an idle thread costs (bare threads and tunnypy workers), read "
            "the limits that cap the thread count, say which binds first, and optionally "
            "start threads until one fails."
        ),
    )
    probe.add_argument(
        "--counts",
        type=_counts,
        default=list(DEFAULT_COUNTS),
        help="thread counts to measure at, each from 1 to 4194304 (default: 100,1000,10000)",
    )
    probe.add_argument(
        "--stack-size",
        type=_stack,
        default=0,
        metavar="SIZE",
        help="also measure at this thread stack size, from 32K to 1G (e.g. 256K); it is "
        "used for the estimate and --to-the-limit",
    )
    probe.add_argument(
        "--to-the-limit",
        action="store_true",
        help="start threads until one fails (bounded by --max and --time-limit)",
    )
    probe.add_argument(
        "--max",
        type=_thread_count,
        default=100_000,
        help="most threads --to-the-limit starts, at most 4194304 (default: 100000)",
    )
    probe.add_argument(
        "--time-limit",
        type=_time_limit,
        default=60.0,
        metavar="SECONDS",
        help="seconds --to-the-limit may spend starting threads (default: 60, at most 86400)",
    )
    probe.add_argument(
        "--rlimit-as",
        type=_address_space,
        default=0,
        metavar="SIZE",
        help="lower RLIMIT_AS (address space) for --to-the-limit, at least 16M, so it "
        "fails fast and safely",
    )
    probe.add_argument("--json", action="store_true", help="print JSON instead of tables")
    probe.add_argument("--plot", metavar="FILE.png", help="plot memory against thread count")
    probe.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


# -- the run --------------------------------------------------------------------


def _marginal_costs(series: list[dict[str, Any]]) -> dict[str, float]:
    """
    What one more worker costs: the slope between the two largest counts.

    An average would charge every thread a share of fixed costs (glibc's
    per-thread malloc arenas stop multiplying after 8 per CPU), which
    overstates what the next thousand threads need; with one count it is all
    there is.
    """
    fields = {
        "rss": "rss_bytes_per_thread",
        "vm": "vm_bytes_per_thread",
        "maps": "maps_per_thread",
        "charge": "charge_bytes_per_thread",
    }
    big = series[-1]
    small = series[-2] if len(series) > 1 else None
    costs: dict[str, float] = {}
    for name, field in fields.items():
        at_big = (big[field] or 0.0) * big["count"]
        if small is None:
            costs[name] = at_big / big["count"]
            continue
        at_small = (small[field] or 0.0) * small["count"]
        costs[name] = max(0.0, (at_big - at_small) / (big["count"] - small["count"]))
        # What the first threads add once (the arenas): growth the slope does not explain.
        costs[f"fixed_{name}"] = max(0.0, at_big - costs[name] * big["count"])
    return costs


def probe(args: argparse.Namespace) -> dict[str, Any]:
    """Run the probe described by parsed *args* and return its report."""
    progress = progress_display(args.quiet or args.json)
    stacks = [0] if not args.stack_size else [0, args.stack_size]
    measurements = []
    try:
        for stack in stacks:
            for kind in KINDS:
                for count in args.counts:
                    noun = "bare threads" if kind == "thread" else "tunnypy workers"
                    progress.begin(f"{count:,} {noun}, {stack_label(stack)} stack", count)
                    spec = {"mode": "measure", "kind": kind, "count": count, "stack_size": stack}
                    measurements.append(run_child(spec, progress.update, 120 + count * 0.05))
                    progress.end()
        series = sorted(
            (m for m in measurements if m["stack_size"] == stacks[-1] and m["kind"] == "worker"),
            key=lambda m: m["count"],
        )
        costs = _marginal_costs(series)
        limits = read_limits(costs, args.rlimit_as or None)
        binding = estimate(limits)
        report: dict[str, Any] = {
            "tunnypy": __version__,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
            "cpus": os.cpu_count(),
            "counts": args.counts,
            "stack_sizes": stacks,
            "measurements": measurements,
            "basis": {
                "kind": "worker",
                "counts": [m["count"] for m in series[-2:]],
                "stack_size": stacks[-1],
            },
            "costs": costs,
            "limits": limits,
            "binding": binding,
            "estimate": None if binding is None else binding["room"],
            "sizing": sizing(costs, limits, binding),
        }
        if args.to_the_limit:
            progress.begin(f"to the limit, {stack_label(stacks[-1])} stack", args.max)
            run = _run_to_the_limit(args, stacks[-1], progress)
            progress.end()
            run["estimate"] = report["estimate"]
            run["likely_cause"] = (
                diagnose(limits, run["state"], costs) if run["state"] is not None else None
            )
            out_of_memory = run["lost"] or run["out_of_memory"]
            if run["likely_cause"] is None and args.rlimit_as and out_of_memory:
                # Under an address-space limit the probe set, running out is that limit's doing.
                run["likely_cause"] = "RLIMIT_AS"
            report["to_the_limit"] = run
    finally:
        progress.close()
    return report


def _run_to_the_limit(
    args: argparse.Namespace, stack: int, progress: ProgressDisplay
) -> dict[str, Any]:
    """The run to the limit; a child that dies is a finding, reported like a failure."""
    spec = {
        "mode": "limit",
        "max": args.max,
        "time_limit": args.time_limit,
        "stack_size": stack,
        "rlimit_as": args.rlimit_as or None,
    }
    began = time.monotonic()
    try:
        run = run_child(spec, progress.update, args.time_limit + 90)
    except ChildFailedError as exc:
        return {
            "started": exc.progress,
            "stopped": "error",
            "error": str(exc),
            "state": None,
            "seconds": time.monotonic() - began,
            "stack_size": stack,
            "rlimit_as": spec["rlimit_as"],
            "samples": [],
            "stopped_all": True,  # they ended with their process
            "out_of_memory": False,
            "lost": True,
        }
    run["lost"] = False
    return run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tunnypy`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.plot:
        try:
            import matplotlib  # noqa: F401, PLC0415 - fail before measuring, not after
        except ImportError:
            parser.error("--plot needs matplotlib: pip install 'tunnypy[plot]'")
    try:
        report = probe(args)
    except RuntimeError as exc:
        print(f"tunnypy probe: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report))
    if args.plot:
        plot(report, args.plot)
        if not args.json:
            print(f"\nPlot written to {args.plot}")
    return 0
