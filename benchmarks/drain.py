"""
``python -m benchmarks.drain [TREE ...]``: the event loop while a pool serves 10,000 tasks.

Issue 16's loop-latency scenario, as ``tests/test_aprocess.py::TestManyWaiting``
builds it: 4 workers held, 10,000 tasks awaiting ``aprocess`` of a no-op in
line, every task gathered; then a 1 ms ``asyncio.sleep`` ticker starts, the
workers are let go, and the ticker records how late each tick wakes until
every task has its result. Each run is a fresh process; the trees given
(source trees holding ``tunnypy/``, this one by default) take turns run by
run. Reported per tree: the p99 (nearest rank) of every tick's lateness over
all runs, the median and worst run's largest lateness, and the median length
of the drain. Run it under ``taskset -c 0`` for the pinned figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = ["main"]

_ONE_RUN = r"""
import asyncio, json, sys, threading, time
sys.path.insert(0, sys.argv[1])
import tunnypy

def main():
    held = [threading.Event() for _ in range(4)]
    late = []
    with tunnypy.Pool.from_callback(4) as pool:
        async def ticker(stop):
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                late.append(time.perf_counter() - before - 0.001)

        async def drain():
            holding = [asyncio.ensure_future(pool.aprocess(e.wait)) for e in held]
            while pool.stats().busy < 4:
                await asyncio.sleep(0.001)
            tasks = [asyncio.ensure_future(pool.aprocess(lambda: None)) for _ in range(10_000)]
            while pool.queue_length < 10_000:
                await asyncio.sleep(0.001)
            everything = asyncio.gather(*tasks, *holding)
            stop = asyncio.Event()
            ticking = asyncio.ensure_future(ticker(stop))
            await asyncio.sleep(0.005)
            late.clear()
            began = time.perf_counter()
            for event in held:
                event.set()
            await everything
            took = time.perf_counter() - began
            stop.set()
            await ticking
            return took

        took = asyncio.run(drain())
    print(json.dumps({"late": late, "drain": took}))

main()
"""


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[int(len(ordered) * 0.99)] if ordered else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drain", description=__doc__)
    parser.add_argument("trees", type=Path, nargs="*", help="source trees (default: this one)")
    parser.add_argument("--runs", type=int, default=10, help="runs per tree")
    args = parser.parse_args(argv)
    trees = args.trees or [Path(__file__).resolve().parent.parent]
    late: dict[Path, list[float]] = {tree: [] for tree in trees}
    worst: dict[Path, list[float]] = {tree: [] for tree in trees}
    drains: dict[Path, list[float]] = {tree: [] for tree in trees}
    for _ in range(args.runs):
        for tree in trees:
            out = subprocess.run(
                [sys.executable, "-c", _ONE_RUN, str(tree)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            run = json.loads(out)
            late[tree].extend(run["late"])
            worst[tree].append(max(run["late"], default=0.0))
            drains[tree].append(run["drain"])
    print("| tree | ticks | p99 lateness, ms | largest per run: median (worst), ms | drain, ms |")
    print("|---|---|---|---|---|")
    for tree in trees:
        print(
            f"| {tree} | {len(late[tree])} | {_p99(late[tree]) * 1000:.2f} "
            f"| {statistics.median(worst[tree]) * 1000:.2f} ({max(worst[tree]) * 1000:.2f}) "
            f"| {statistics.median(drains[tree]) * 1000:.1f} |"
        )


if __name__ == "__main__":
    main()
