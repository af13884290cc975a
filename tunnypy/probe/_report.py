"""
What ``tunnypy probe`` shows: progress on stderr, the report as text, the plot.

rich (progress bar) and matplotlib (``--plot``) are optional extras, imported
when used, so the command runs without them.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

__all__ = ["ProgressDisplay", "plot", "progress_display", "render", "sizing", "stack_label"]


# -- progress -------------------------------------------------------------------


class ProgressDisplay(Protocol):
    """Where the command shows progress: per run ``begin``, ``update``s, ``end``."""

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


def progress_display(quiet: bool) -> ProgressDisplay:
    """A rich bar on a terminal if rich is installed, else plain lines; none if *quiet*."""
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


def stack_label(stack: int) -> str:
    """A thread stack size as the report names it: ``default`` for 0, else e.g. ``256 KiB``."""
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
                stack_label(m["stack_size"]),
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
        f"Limits, and room for more tunnypy workers ({stack_label(basis['stack_size'])} stack; "
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


def sizing(costs: dict[str, float], limits: list[dict[str, Any]], binding: Any) -> list[str]:
    """The article's sizing sum with this machine's cost per worker, and what binds first."""
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


# -- the plot -------------------------------------------------------------------


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
        label = f"{noun}, {stack_label(stack)} stack"
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
