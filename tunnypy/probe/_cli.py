"""
The ``tunnypy`` command: ``tunnypy probe`` (also ``python -m tunnypy probe``).

At module level this imports the standard library and tunnypy itself (any
``tunnypy.*`` import runs the package's ``__init__`` first, which loads attrs
and structlog). rich (progress bar) and matplotlib (``--plot``) are optional
extras, imported when used, so the command runs without them.
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
from typing import Any, Protocol

from .. import __version__
from ._child import (
    KINDS,
    ChildFailedError,
    diagnose,
    estimate,
    parse_size,
    read_limits,
    run_child,
)

__all__ = ["main"]

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


# -- progress -------------------------------------------------------------------


class _Progress(Protocol):
    def begin(self, label: str, total: int) -> None: ...
    def update(self, done: int) -> None: ...
    def end(self) -> None: ...
    def close(self) -> None: ...


class _PlainProgress:
    """One line per run on stderr, for logs and terminals without rich."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.label = ""
        self.began = 0.0

    def begin(self, label: str, total: int) -> None:
        self.label, self.began = label, time.perf_counter()
        if self.enabled:
            print(f"probe: {label} ...", file=sys.stderr, flush=True)

    def update(self, done: int) -> None:
        pass

    def end(self) -> None:
        if self.enabled:
            took = time.perf_counter() - self.began
            print(f"probe: {self.label} done in {took:.2f} s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _RichProgress:
    """A rich progress bar on stderr (the ``cli`` extra)."""

    def __init__(self) -> None:
        from rich.console import Console  # noqa: PLC0415 - optional extra
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        self.task: Any = None

    def begin(self, label: str, total: int) -> None:
        self.task = self.bar.add_task(label, total=total)

    def update(self, done: int) -> None:
        self.bar.update(self.task, completed=done)

    def end(self) -> None:
        task = self.bar.tasks[-1]
        self.bar.update(self.task, completed=task.total)

    def close(self) -> None:
        self.bar.stop()


def _progress(quiet: bool) -> _Progress:
    if not quiet and sys.stderr.isatty():
        try:
            return _RichProgress()
        except ImportError:
            pass
    return _PlainProgress(enabled=not quiet)


# -- formatting -----------------------------------------------------------------


def _bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(value) >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def _seconds(value: float) -> str:
    return f"{value * 1e6:.0f} µs" if value < 1e-3 else f"{value * 1e3:.2f} ms"


def _stack_label(stack: int) -> str:
    return "default" if not stack else _bytes(stack).replace(".0 ", " ")


def _value(limit: dict[str, Any]) -> str:
    if limit["value"] is None:
        return "unlimited" if limit["source"] else "-"
    if limit["unit"] == "bytes":
        return _bytes(limit["value"])
    return f"{limit['value']:,}"


def _in_use(limit: dict[str, Any]) -> str:
    used = limit["in_use"]
    if used is None:
        return "-"
    text = _bytes(used) if limit["unit"] == "bytes" else f"{used:,}"
    fixed = limit.get("fixed") or 0
    if fixed >= 1:
        text += " + " + (_bytes(fixed) if limit["unit"] == "bytes" else f"{fixed:,.0f}")
    return text


def _cost(limit: dict[str, Any]) -> str:
    if limit["unit"] == "bytes":
        return _bytes(limit["cost"])
    if limit["cost"] == 1:
        return f"1 {limit['unit']}"
    return f"{limit['cost']:.2f} {limit['unit']}s"


def _room(limit: dict[str, Any]) -> str:
    if not limit["enforced"]:
        return str(limit["note"])
    return "no limit" if limit["room"] is None else f"{limit['room']:,}"


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


def render(report: dict[str, Any]) -> str:
    """The report as the readable text ``tunnypy probe`` prints by default."""
    lines = [
        f"tunnypy {report['tunnypy']} probe: Python {report['python']} "
        f"on {report['platform']}, {report['cpus']} CPUs",
        "",
        "Cost of one idle thread (growth divided by count):",
    ]
    rows = [["kind", "stack", "count", "RSS", "tracemalloc", "virtual", "maps", "fds", "start"]]
    for m in report["measurements"]:
        rows.append(
            [
                "bare thread" if m["kind"] == "thread" else "tunnypy worker",
                _stack_label(m["stack_size"]),
                f"{m['count']:,}",
                _bytes(m["rss_bytes_per_thread"]),
                _bytes(m["traced_bytes_per_thread"]),
                _bytes(m["vm_bytes_per_thread"]),
                f"{m['maps_per_thread']:.2f}",
                f"{m['fds_per_thread']:.2f}",
                _seconds(m["start_seconds_per_thread"]),
            ]
        )
    lines += _table(rows, {2, 3, 4, 5, 6, 7, 8})
    basis = report["basis"]
    lines += [
        "",
        f"Limits, and room for more tunnypy workers ({_stack_label(basis['stack_size'])} stack; "
        f"cost per worker from counts {' to '.join(f'{c:,}' for c in basis['counts'])}):",
    ]
    rows = [["limit", "value", "in use", "per worker", "room"]]
    rows += [
        [limit["name"], _value(limit), _in_use(limit), _cost(limit), _room(limit)]
        for limit in report["limits"]
    ]
    lines += _table(rows, {1, 2, 3})
    binding = report["binding"]
    lines.append("")
    if binding is None:
        lines.append("No limit binds: nothing caps the thread count that the probe could read.")
    else:
        lines.append(
            f"Binding limit: {binding['name']}: about {binding['room']:,} more workers "
            "in this process."
        )
    lines += report["sizing"]
    limit = report.get("to_the_limit")
    if limit:
        lines += ["", _limit_line(limit)]
    return "\n".join(lines)


def _limit_line(run: dict[str, Any]) -> str:
    at_least = "at least " if run.get("lost") else ""
    text = f"To the limit: started {at_least}{run['started']:,} threads in {run['seconds']:.1f} s"
    if run["stopped"] == "error":
        text += f", then {run['error']}"
        cause = run.get("likely_cause")
        text += f"; likely cause: {cause}" if cause else "; cause not identified"
    elif run["stopped"] == "max":
        text += ", stopped at --max without a failure"
    else:
        text += ", stopped at --time-limit without a failure"
    if run.get("estimate") is not None:
        text += f"; the estimate was {run['estimate']:,}"
    if run.get("lost"):
        text += ". Its threads ended with it."
    elif run["stopped_all"]:
        text += ". All stopped."
    else:
        text += ". Some threads did not stop in time."
    return text


def _sizing(costs: dict[str, float], limits: list[dict[str, Any]], binding: Any) -> list[str]:
    rss = costs.get("rss")
    if not rss or rss <= 0:
        return []
    lines = [
        f"Sizing, the article's way: 2 GiB / {_bytes(rss)} per idle worker = "
        f"{int(2 * 1024**3 / rss):,} workers (Go: 2 GB / 2 KB = 1 million goroutines)."
    ]
    available = next((x["value"] for x in limits if x["name"] == "MemAvailable"), None)
    if available:
        lines.append(
            f"With this machine's MemAvailable: {_bytes(available)} / {_bytes(rss)} = "
            f"{int(available / rss):,} workers by memory alone."
        )
    if binding is not None:
        lines.append(f"But {binding['name']} allows only {binding['room']:,}.")
    return lines


# -- the command ----------------------------------------------------------------


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
    progress = _progress(args.quiet or args.json)
    stacks = [0] if not args.stack_size else [0, args.stack_size]
    measurements = []
    try:
        for stack in stacks:
            for kind in KINDS:
                for count in args.counts:
                    noun = "bare threads" if kind == "thread" else "tunnypy workers"
                    progress.begin(f"{count:,} {noun}, {_stack_label(stack)} stack", count)
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
            "sizing": _sizing(costs, limits, binding),
        }
        if args.to_the_limit:
            progress.begin(f"to the limit, {_stack_label(stacks[-1])} stack", args.max)
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


def _run_to_the_limit(args: argparse.Namespace, stack: int, progress: _Progress) -> dict[str, Any]:
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


def plot(report: dict[str, Any], path: str) -> None:
    """Draw memory against thread count into *path* (needs matplotlib)."""
    import matplotlib  # noqa: PLC0415 - optional extra

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure, axes = plt.subplots(figsize=(8, 5))
    series: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for m in report["measurements"]:
        series.setdefault((m["kind"], m["stack_size"]), []).append(m)
    for (kind, stack), points in series.items():
        noun = "bare threads" if kind == "thread" else "tunnypy workers"
        label = f"{noun}, {_stack_label(stack)} stack"
        xs = [p["count"] for p in points]
        axes.plot(xs, [p["rss_bytes"] / 2**20 for p in points], marker="o", label=f"RSS: {label}")
        axes.plot(
            xs,
            [p["traced_bytes"] / 2**20 for p in points],
            marker="x",
            linestyle="--",
            label=f"tracemalloc: {label}",
        )
    run = report.get("to_the_limit")
    if run and len(run["samples"]) > 1:
        base = run["samples"][0][1]
        axes.plot(
            [n for n, _ in run["samples"][1:]],
            [(rss - base) / 2**20 for _, rss in run["samples"][1:]],
            color="grey",
            label="RSS: --to-the-limit (bare threads)",
        )
        if run["stopped"] == "error":
            axes.axvline(run["started"], color="red", linestyle=":", label="first failure")
    if report["estimate"]:
        axes.axvline(
            report["estimate"], color="black", linestyle="-.", label="estimate (binding limit)"
        )
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("idle threads")
    axes.set_ylabel("memory growth (MiB)")
    axes.set_title(f"Idle thread memory, Python {report['python']}, {report['platform']}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
