"""
``python -m benchmarks.ab OLD [NEW]``: two versions of tunnypy, side by side in one process.

*OLD* and *NEW* are source trees (a directory holding ``tunnypy/``; a git
worktree of the commit to compare, for instance); *NEW* defaults to this
tree. Each is imported under a name of its own, so both run in one process
and the rounds interleave: round trip, timed round trip, contended and
fan-out, as in ``make bench``, with ``ThreadPoolExecutor`` as the reference
every ratio in the targets table is taken against. The report gives each
one's median and the *paired* ratio new/old: the median over rounds of the
ratio within a round, whose two numbers were taken seconds apart. Run it
under ``taskset -c 0`` for the pinned figures.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["main"]

WORKERS = 4
CALLERS = 8


def load(tree: Path, name: str) -> ModuleType:
    """Import ``tree/tunnypy`` as the package *name*."""
    init = tree / "tunnypy" / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        msg = f"no tunnypy package under {tree}"
        raise SystemExit(msg)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def noop(payload: object) -> object:
    return payload


def roundtrip(call: Callable[[object], object], n: int) -> float:
    """Median µs of *n* sequential calls."""
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        start = clock()
        call(None)
        out[i] = clock() - start
    return statistics.median(out) / 1000.0


def contended(call: Callable[[object], object], per_caller: int) -> float:
    """Jobs per second with CALLERS threads calling at once."""
    barrier = threading.Barrier(CALLERS + 1)
    ends: list[float] = []

    def caller() -> None:
        barrier.wait()
        for _ in range(per_caller):
            call(None)
        ends.append(time.perf_counter())

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return CALLERS * per_caller / (max(ends) - start)


def fanout(submit: Callable[[object], Any], n: int) -> float:
    """Jobs per second for *n* submits, then a wait for each."""
    start = time.perf_counter()
    futures = [submit(None) for _ in range(n)]
    for future in futures:
        future.result()
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__)
    parser.add_argument("old", type=Path, help="source tree of the old version")
    parser.add_argument("new", type=Path, nargs="?", default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="the new pool autoscales, held at its size: autoscale(4, 4)",
    )
    parser.add_argument(
        "--recycle",
        action="store_true",
        help="the new pool recycles, never in the run: max_jobs_per_worker=10**9",
    )
    parser.add_argument(
        "--latency",
        nargs="?",
        const="True",
        choices=["True", "sampled"],
        help="the new pool times its jobs: latency=True, or 'sampled' (compare a tree with itself)",
    )
    parser.add_argument(
        "--old-latency", action="store_true", help="the old pool times its jobs too"
    )
    args = parser.parse_args(argv)
    versions = {"old": load(args.old, "tunnypy_old"), "new": load(args.new, "tunnypy_new")}
    size = {
        key: max(10, int(n * args.scale))
        for key, n in {
            "roundtrip": 10_000,
            "timed": 10_000,
            "contended": 1_000,
            "fanout": 50_000,
        }.items()
    }
    pools = {key: module.Pool.from_func(WORKERS, noop) for key, module in versions.items()}
    if args.recycle:
        pools["new"].close()
        pools["new"] = versions["new"].Pool.from_func(WORKERS, noop, max_jobs_per_worker=10**9)
    if args.latency:
        pools["new"].close()
        mode: bool | str = True if args.latency == "True" else args.latency
        pools["new"] = versions["new"].Pool.from_func(WORKERS, noop, latency=mode)
    if args.old_latency:
        pools["old"].close()
        pools["old"] = versions["old"].Pool.from_func(WORKERS, noop, latency=True)
    if args.autoscale:
        pools["new"].autoscale(WORKERS, WORKERS)
    tpe = ThreadPoolExecutor(WORKERS)

    def tpe_call(payload: object) -> object:
        return tpe.submit(noop, payload).result()

    def measures(key: str) -> dict[str, Callable[[], float]]:
        if key == "tpe":
            return {
                "roundtrip": lambda: roundtrip(tpe_call, size["roundtrip"]),
                "timed": lambda: roundtrip(tpe_call, size["timed"]),
                "contended": lambda: contended(tpe_call, size["contended"]),
                "fanout": lambda: fanout(lambda p: tpe.submit(noop, p), size["fanout"]),
            }
        pool = pools[key]
        return {
            "roundtrip": lambda: roundtrip(pool.process, size["roundtrip"]),
            "timed": lambda: roundtrip(lambda p: pool.process_timed(p, 10.0), size["timed"]),
            "contended": lambda: contended(pool.process, size["contended"]),
            "fanout": lambda: fanout(pool.submit, size["fanout"]),
        }

    keys = ["old", "new", "tpe"]
    table = {key: measures(key) for key in keys}
    samples: dict[str, dict[str, list[float]]] = {
        scenario: {key: [] for key in keys} for scenario in size
    }
    try:
        for scenario in size:
            for key in keys:
                table[key][scenario]()  # warm up
            for r in range(args.rounds):
                order = keys[r % 3 :] + keys[: r % 3]
                for key in order:
                    gc.collect()
                    samples[scenario][key].append(table[key][scenario]())
            print(f"{scenario}: done", file=sys.stderr, flush=True)
    finally:
        for pool in pools.values():
            pool.close()
        tpe.shutdown()
    print("| scenario | unit | old | new | TPE | new/old (paired) | old vs TPE | new vs TPE |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario, rows in samples.items():
        unit = "jobs/s" if scenario in ("contended", "fanout") else "µs"
        med = {key: statistics.median(values) for key, values in rows.items()}
        paired = statistics.median(n / o for n, o in zip(rows["new"], rows["old"], strict=True))
        if unit == "µs":  # a ratio of times: TPE / tunnypy, higher is better for tunnypy
            vs = {key: med["tpe"] / med[key] for key in ("old", "new")}
        else:
            vs = {key: med[key] / med["tpe"] for key in ("old", "new")}
        print(
            f"| {scenario} | {unit} | {med['old']:.2f} | {med['new']:.2f} | {med['tpe']:.2f} "
            f"| {paired:.3f} | {vs['old']:.2f}x | {vs['new']:.2f}x |"
        )
    timed = samples["timed"]
    plain = samples["roundtrip"]
    for key in ("old", "new"):
        ratio = statistics.median(t / p for t, p in zip(timed[key], plain[key], strict=True))
        print(f"\n{key}: process_timed / process, paired median {ratio:.3f}")


if __name__ == "__main__":
    main()
