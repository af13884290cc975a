"""
``python -m benchmarks``: run the passes, then write the reports.

The top-level run is a driver. For every interpreter (``--python``) and every
pinning (``--pin``) it starts one *pass*: this same module in a child
process, under ``taskset -c 0`` for the pinned half, which runs the scenarios
and writes its results as JSON. The driver merges the passes into
``results.json``, ``results.md`` and ``ratios.png``.

Interpreters other than the one running the driver get a virtual environment
of their own under ``benchmarks/.venvs/X.Y`` (ignored by git), made on first
use with attrs, structlog and, if it installs, pebble; tunnypy is imported
from this source tree through ``PYTHONPATH``. A contender whose package does
not import is skipped and the report says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ._asyncio import aprocess
from ._contenders import PEBBLE_ERROR
from ._dask import DASK_SCENARIOS
from ._harness import Config, ScenarioResult, progress
from ._latency import roundtrip, timed_roundtrip, timeout_precision
from ._processes import PROCESS_ERROR, process_cpu, process_kill, process_payload, process_roundtrip
from ._report import evaluate_targets, write_chart, write_json, write_markdown
from ._service import io_service
from ._threads import REPO, grow, memory, repo_env, shrink
from ._throughput import contended, fanout

__all__ = ["SCENARIOS", "main"]

SCENARIOS: dict[str, Callable[[Config], list[ScenarioResult]]] = {
    "roundtrip": roundtrip,
    "timed": timed_roundtrip,
    "contended": contended,
    "fanout": fanout,
    "memory": memory,
    "grow": grow,
    "shrink": shrink,
    "timeout": timeout_precision,
    "io": io_service,
    "aprocess": aprocess,
    "proc_roundtrip": process_roundtrip,
    "proc_cpu": process_cpu,
    "proc_kill": process_kill,
    "proc_payload": process_payload,
}
SCENARIOS.update(DASK_SCENARIOS)

DEFAULT_PYTHONS = "current,3.11,3.12,3.13"
VENVS = Path(__file__).resolve().parent / ".venvs"
VENV_PACKAGES = ["attrs>=23.1", "structlog>=23.1"]
OPTIONAL_PACKAGES = ["pebble>=5"]


@attrs.frozen
class Interpreter:
    """One Python to run passes under."""

    version: str
    executable: str


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark tunnypy against ThreadPoolExecutor, ThreadPool, pebble and floors.",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: the suite in seconds")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per scenario (default 5)")
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only this scenario (repeatable; default all)",
    )
    parser.add_argument(
        "--pin",
        choices=["both", "pinned", "unpinned"],
        default="both",
        help="pinned runs under `taskset -c 0`; both (default) runs each half",
    )
    parser.add_argument(
        "--python",
        default=DEFAULT_PYTHONS,
        help=(
            "comma-separated interpreters: 'current' or X.Y versions, found on PATH or "
            f"under pyenv; missing ones are skipped (default {DEFAULT_PYTHONS})"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent / "results",
        help="directory for results.json, results.md, ratios.png (default benchmarks/results)",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw ratios.png")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="run nothing: redraw results.md and ratios.png from OUT/results.json",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the passes already in OUT/results.json for interpreters and pinnings "
        "not run this time (to add an interpreter to an earlier run)",
    )
    # Internal: one pass in this process, results to a JSON file.
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--child-pin", default="unpinned", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1 (got {args.rounds})")
    return args


def run_pass(config: Config, scenarios: list[str], pin: str) -> dict[str, Any]:
    """Run *scenarios* in this process; return the pass as JSON-ready data."""
    started = time.perf_counter()
    load_before = os.getloadavg()
    commit = _git_commit()  # others may edit the tree during a long run: note it per pass
    results = []
    for name in scenarios:
        progress(f"[{platform.python_version()} {pin}] {name}")
        begun = time.perf_counter()
        for result in SCENARIOS[name](config):
            results.append({**result.to_json(), "elapsed_s": time.perf_counter() - begun})
        progress(f"[{platform.python_version()} {pin}] {name}: {time.perf_counter() - begun:.1f} s")
    skipped = {"pebble": PEBBLE_ERROR} if PEBBLE_ERROR else {}
    if PROCESS_ERROR and any(name.startswith("proc_") for name in scenarios):
        skipped["tunnypy process workers"] = PROCESS_ERROR
    return {
        "python": ".".join(platform.python_version_tuple()[:2]),
        "python_full": platform.python_version(),
        "executable": sys.executable,
        "pin": pin,
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "skipped": skipped,
        "elapsed_s": time.perf_counter() - started,
        "finished": _now(),
        "tunnypy_commit": commit,
        # The machine is shared: what else ran is part of the figures.
        "loadavg_start": list(load_before),
        "loadavg_end": list(os.getloadavg()),
        "results": results,
    }


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _probe(executable: str, version: str, env: dict[str, str] | None = None) -> str | None:
    """The real executable behind *executable* if it runs and is Python *version*."""
    code = "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"
    try:
        out = subprocess.run(
            [executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or lines[0] != version:
        return None
    return lines[1]


def find_python(version: str) -> str | None:
    """An interpreter for *version* (``X.Y``): on PATH, else under pyenv."""
    name = f"python{version}"
    found = shutil.which(name)
    if found and (real := _probe(found, version)):
        return real
    pyenv = shutil.which("pyenv")
    if pyenv:
        out = subprocess.run(
            [pyenv, "versions", "--bare"], check=False, capture_output=True, text=True
        )
        candidates = [
            v for v in out.stdout.split() if re.fullmatch(rf"{re.escape(version)}\.\d+", v)
        ]
        for candidate in sorted(candidates, key=lambda v: int(v.rsplit(".", 1)[1]), reverse=True):
            env = {**os.environ, "PYENV_VERSION": candidate}
            if found and (real := _probe(found, version, env)):
                return real
    return None


def venv_python(version: str, base: str) -> str:
    """The per-version benchmark venv's python, made on first use."""
    home = VENVS / version
    python = home / "bin" / "python"
    stamp = home / ".installed"
    if not stamp.exists():
        progress(f"making {home} from {base} (once)")
        subprocess.run([base, "-m", "venv", "--clear", str(home)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, *VENV_PACKAGES], check=True)
        for package in OPTIONAL_PACKAGES:
            if subprocess.run([*pip, package], check=False).returncode != 0:
                progress(
                    f"could not install {package} for Python {version}; its contender is skipped"
                )
        stamp.write_text("attrs structlog pebble\n")
    return str(python)


def resolve_pythons(spec: str) -> tuple[list[Interpreter], list[str]]:
    """The interpreters named by *spec*, and a message for each one skipped."""
    current = ".".join(platform.python_version_tuple()[:2])
    chosen: dict[str, Interpreter] = {}
    missing: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        version = current if token == "current" else token
        if version in chosen:
            continue
        if version == current:
            chosen[version] = Interpreter(version, sys.executable)
            continue
        if not re.fullmatch(r"\d+\.\d+", version):
            missing.append(f"{token}: not 'current' or an X.Y version")
            continue
        base = find_python(version)
        if base is None:
            missing.append(f"Python {version}: not found on PATH or under pyenv; skipped")
            continue
        try:
            chosen[version] = Interpreter(version, venv_python(version, base))
        except (OSError, subprocess.CalledProcessError) as exc:
            missing.append(f"Python {version}: could not make its venv ({exc}); skipped")
    return list(chosen.values()), missing


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "tunnypy"],
            check=False,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def drive(args: argparse.Namespace, scenarios: list[str]) -> int:
    pythons, messages = resolve_pythons(args.python)
    for message in messages:
        progress(message)
    pins = ["pinned", "unpinned"] if args.pin == "both" else [args.pin]
    taskset = shutil.which("taskset")
    if "pinned" in pins and (taskset is None or 0 not in os.sched_getaffinity(0)):
        messages.append("pinned half skipped: taskset missing or CPU 0 not available")
        progress(messages[-1])
        pins.remove("pinned")
    passes: list[dict[str, Any]] = []
    kept = _earlier_passes(args, {(i.version, pin) for i in pythons for pin in pins})
    with tempfile.TemporaryDirectory(prefix="tunnypy-bench-") as tmp:
        for interp in pythons:
            for pin in pins:
                out = Path(tmp) / f"{interp.version}-{pin}.json"
                cmd = [interp.executable, "-m", "benchmarks", "--rounds", str(args.rounds)]
                cmd += ["--child-out", str(out), "--child-pin", pin]
                cmd += [f"--scenario={s}" for s in scenarios]
                if args.smoke:
                    cmd.append("--smoke")
                if pin == "pinned":
                    assert taskset is not None
                    cmd = [taskset, "-c", "0", *cmd]
                progress(f"== pass: Python {interp.version}, {pin}")
                done = subprocess.run(cmd, check=False, env=repo_env(), cwd=REPO)
                if done.returncode != 0:
                    messages.append(
                        f"Python {interp.version} {pin}: pass failed ({done.returncode})"
                    )
                    progress(messages[-1])
                    continue
                passes.append(json.loads(out.read_text()))
                # Write after every pass, so a long run interrupted late still leaves results.
                _write(args, scenarios, messages, kept + passes, chart=False)
    if not passes:
        progress("no pass completed")
        return 1
    _write(args, scenarios, messages, kept + passes, chart=not args.no_chart)
    if args.no_chart:
        progress("chart skipped: --no-chart")
    _print_summary(passes)
    progress(f"results in {args.out}")
    return 0 if len(passes) == len(pythons) * len(pins) else 1


def _earlier_passes(args: argparse.Namespace, running: set[tuple[str, str]]) -> list[Any]:
    """With ``--update``, the passes of the previous results that this run does not redo."""
    path = args.out / "results.json"
    if not args.update or not path.exists():
        return []
    earlier = json.loads(path.read_text())["passes"]
    kept = [p for p in earlier if (p["python"], p["pin"]) not in running]
    progress(f"--update: keeping {len(kept)} earlier pass(es) from {path}")
    return kept


def _write(
    args: argparse.Namespace,
    scenarios: list[str],
    messages: list[str],
    passes: list[dict[str, Any]],
    chart: bool,
) -> None:
    meta = {
        "generated": _now(),
        "command": "python -m benchmarks " + " ".join(sys.argv[1:]),
        "smoke": args.smoke,
        "rounds": args.rounds,
        "scenarios": scenarios,
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "tunnypy_commit": _git_commit(),
        "messages": messages,
    }
    passes = sorted(passes, key=lambda p: (tuple(map(int, p["python"].split("."))), p["pin"]))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "results.json", meta, passes)
    write_markdown(args.out / "results.md", meta, passes)
    if chart:
        progress(write_chart(args.out / "ratios.png", passes))


def _print_summary(passes: list[dict[str, Any]]) -> None:
    for p in passes:
        for result in p["results"]:
            for t in evaluate_targets(result):
                value = "n/a" if t["value"] is None else f"{t['value']:.3g}"
                paired = "" if t.get("paired") is None else f" (paired {t['paired']:.3g})"
                progress(
                    f"{p['python']:>5} {p['pin']:<8} {result['title']:<22} "
                    f"{t['label']:<45} {value:>9} {t['verdict']}{paired}"
                )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scenarios = args.scenario or list(SCENARIOS)
    scenarios = [s for s in SCENARIOS if s in scenarios]  # run in the suite's order
    if args.report_only:
        data = json.loads((args.out / "results.json").read_text())
        meta, passes = data["meta"], data["passes"]
        write_markdown(args.out / "results.md", meta, passes)
        progress(
            "chart skipped: --no-chart"
            if args.no_chart
            else write_chart(args.out / "ratios.png", passes)
        )
        return 0
    if args.child_out is not None:
        data = run_pass(Config(smoke=args.smoke, rounds=args.rounds), scenarios, args.child_pin)
        args.child_out.write_text(json.dumps(data))
        return 0
    return drive(args, scenarios)
