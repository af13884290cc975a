"""
One measurement in a fresh interpreter: how the CLI runs it, and what it does.

The article measured goroutines by starting a million blocked ones and
reading the memory before and after. The probe does the same for threads,
each measurement in a fresh subprocess so that memory freed by one run
cannot hide the cost of the next, and so that a run that hits a limit (or
the OOM killer) cannot take the caller down with it.

A child is started as ``python -m tunnypy.probe._child SPEC`` with a JSON spec. It
writes ``progress N`` lines while it starts threads and one ``result JSON``
line at the end.

Nothing here is imported by ``tunnypy`` itself; only the CLI (``_cli``)
imports it.
"""

from __future__ import annotations

import _thread
import contextlib
import functools
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from ._limits import cgroup_limit, meminfo, snapshot, system_threads, user_threads

__all__ = ["KINDS", "START_GRACE", "ChildFailedError", "run_child"]

KINDS = ("thread", "worker")
"""What is measured: bare ``threading.Thread`` objects, and tunnypy pool workers."""

START_GRACE = 2.0
"""Seconds the run to the limit waits for a new thread to run before it gives up on it."""


# -- the parent's side ----------------------------------------------------------


class ChildFailedError(RuntimeError):
    """A probe subprocess ended without a result; *progress* is the last count it reported."""

    def __init__(self, message: str, progress: int) -> None:
        super().__init__(message)
        self.progress = progress


def run_child(
    spec: dict[str, Any], on_progress: Callable[[int], None], timeout: float
) -> dict[str, Any]:
    """
    Run one measurement in a fresh interpreter and return its result.

    Raises:
        ChildFailedError: The child died or printed no result; the message says how.
    """
    command = [sys.executable, "-m", "tunnypy.probe._child", json.dumps(spec)]
    progress = 0
    result: dict[str, Any] | None = None
    # A file, not a pipe: a child writing much to stderr must not block until the watchdog.
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True) as child,
    ):
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            child.kill()

        watchdog = threading.Timer(timeout, kill)
        watchdog.daemon = True
        watchdog.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                kind, _, rest = line.partition(" ")
                try:
                    if kind == "progress":
                        progress = int(rest)
                        on_progress(progress)
                    elif kind == "result":
                        result = json.loads(rest)
                except ValueError:  # a line cut short by the child's death
                    continue
            code = child.wait()
        finally:
            watchdog.cancel()
            watchdog.join()
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if result is None:
        if fired.is_set():
            how = f"was killed by the watchdog after {timeout:.0f} s"
        elif code < 0:
            how = f"was killed by signal {-code}"
            if code == -9:
                how += " (the OOM killer?)"
        else:
            how = f"exited with {code}"
        tail = errors.strip().splitlines()[-1:] or ["no output"]
        msg = f"probe subprocess {how}: {tail[0]}"
        raise ChildFailedError(msg, progress)
    return result


# -- the child's side -----------------------------------------------------------


class _Reporter:
    """Progress lines to the parent, at most about 100 per run."""

    def __init__(self, total: int) -> None:
        self.step = max(1, total // 100)

    def __call__(self, done: int) -> None:
        if done % self.step == 0:
            print(f"progress {done}", flush=True)


class _Sleepers:
    """
    Bare threads, each asleep on a lock of its own, stopped as a chain.

    Threads that all wait on one ``Event`` wake all at once when it is set,
    and each then waits for the GIL, waking every 5 ms to ask for it. Here
    20,000 of them took 61 s (96 s of system time) to stop, and a run to the
    real ceiling (about 22,000) outlived its watchdog with no result. Stopped
    as a chain, where each thread, woken, wakes the one started before it,
    one thread at a time wants the GIL: 20,000 stop in about 6 s.
    """

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self._last: _thread.LockType | None = None

    def start(self) -> None:
        """Start one more; raises what ``Thread.start`` raises, and then adds nothing."""
        lock = _thread.allocate_lock()
        lock.acquire()
        thread = threading.Thread(target=_sleep, args=(lock, self._last), daemon=True)
        thread.start()
        self.threads.append(thread)
        self._last = lock

    def stop(self, timeout: float | None = None) -> bool:
        """Wake the newest, which wakes the next; ``False`` if any is alive after *timeout*."""
        last, self._last = self._last, None
        if last is not None:
            last.release()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self.threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)


def _sleep(mine: _thread.LockType, before: _thread.LockType | None) -> None:
    mine.acquire()
    if before is not None:
        before.release()


class _BareSleepers:
    """
    ``_Sleepers`` for the run to the limit: started with ``_thread``, with a bounded start.

    At an address-space limit a new thread can get its stack but not the memory
    for its first Python frame; it then dies before running, and
    ``Thread.start()``, which waits for it to run, waits forever. Here the
    starter waits *grace* seconds and then gives up on it, and whichever of the
    two takes the thread's *owner* lock first decides whether it joins the chain.
    """

    def __init__(self, grace: float) -> None:
        self.started = 0
        self.grace = grace
        self.gave_up = False  # on a thread that got its stack but did not run
        self._baseline = _thread._count()
        self._last: _thread.LockType | None = None
        self._done = _thread.allocate_lock()
        self._done.acquire()

    def start(self) -> None:
        """
        Start one more and wait until it runs; raises, and adds nothing, if it cannot.

        Raises:
            RuntimeError: The thread could not be started, or did not run within *grace*.
            MemoryError: There was no memory to start it.
        """
        count = self.started + 1
        owner, ready, mine = (
            _thread.allocate_lock(),
            _thread.allocate_lock(),
            _thread.allocate_lock(),
        )
        ready.acquire()
        mine.acquire()
        before = self._done if self._last is None else self._last
        error: MemoryError | None = None
        try:
            _thread.start_new_thread(_sleep_in_chain, (owner, ready, mine, before))
        except MemoryError as exc:
            # Raised after the thread was made, too: below settles whether one runs.
            error = exc
        if not ready.acquire(timeout=0 if error else self.grace):
            if owner.acquire(blocking=False):
                if error:
                    raise error
                self.gave_up = True
                msg = (
                    f"a new thread did not run within {self.grace:g} s "
                    "(no memory for its first Python frame?)"
                )
                raise RuntimeError(msg)
            # It took its owner lock just now; its ready follows at once.
            ready.acquire(timeout=self.grace)
        self._last, self.started = mine, count

    def stop(self, timeout: float) -> bool:
        """Wake the newest, which wakes the next; ``False`` if any is alive after *timeout*."""
        last, self._last = self._last, None
        if last is None:
            return True
        deadline = time.monotonic() + timeout
        last.release()
        if not self._done.acquire(timeout=timeout):
            return False
        # The oldest has woken; every thread has only its exit left.
        while _thread._count() > self._baseline:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True


def _sleep_in_chain(
    owner: _thread.LockType,
    ready: _thread.LockType,
    mine: _thread.LockType,
    before: _thread.LockType,
) -> None:
    # Nothing here allocates: once this frame exists, the thread cannot fail.
    if not owner.acquire(blocking=False):
        return  # the starter gave up on this thread
    ready.release()
    mine.acquire()
    before.release()


def _start_threads(count: int, report: Callable[[int], None] | None) -> Callable[[], object]:
    sleepers = _Sleepers()
    for i in range(count):
        sleepers.start()
        if report:
            report(i + 1)
    return sleepers.stop


def _start_workers(count: int, report: Callable[[int], None] | None) -> Callable[[], object]:
    from .. import Pool  # noqa: PLC0415 - the child only

    pool = Pool.from_callback(0)
    step = max(1, count // 100)
    size = 0
    while size < count:
        size = min(count, size + step)
        pool.set_size(size)
        if report:
            report(size)
    # Started is not enough: count the time until every worker is parked.
    deadline = time.monotonic() + 60
    parked = threading.Event()
    while pool.stats().idle < count and time.monotonic() < deadline:
        parked.wait(0.0005)
    return pool.close


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    kind, count, stack = spec["kind"], spec["count"], spec["stack_size"]
    start = _start_threads if kind == "thread" else _start_workers
    if stack:
        threading.stack_size(stack)
    gc.collect()
    before, charge_before = snapshot(), _memory_usage()
    began = time.perf_counter()
    stop = start(count, _Reporter(count))
    elapsed = time.perf_counter() - began
    after, charge_after = snapshot(), _memory_usage()
    stop()
    # tracemalloc slows every allocation down, so it gets its own pass.
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    stop = start(count, None)
    traced = tracemalloc.get_traced_memory()[0] - base
    stop()
    tracemalloc.stop()
    result = {
        "kind": kind,
        "count": count,
        "stack_size": stack,
        "start_seconds": elapsed,
        "start_seconds_per_thread": elapsed / count,
        "traced_bytes_per_thread": traced / count,
    }
    for key in ("rss", "vm", "maps", "fds"):
        result[f"{key}_per_thread"] = (after[key] - before[key]) / count
    result["rss_bytes_per_thread"] = result.pop("rss_per_thread")
    result["vm_bytes_per_thread"] = result.pop("vm_per_thread")
    result["charge_bytes_per_thread"] = (
        (charge_after - charge_before) / count
        if charge_before is not None and charge_after is not None
        else None
    )
    result["rss_bytes"] = after["rss"] - before["rss"]
    result["traced_bytes"] = traced
    return result


def _memory_usage() -> int | None:
    memory = cgroup_limit(
        "memory",
        ("memory.max", "memory.current"),
        ("memory.limit_in_bytes", "memory.usage_in_bytes"),
    )
    return memory["in_use"]  # type: ignore[no-any-return]


def _state_at_failure(threads: int) -> dict[str, Any]:
    state: dict[str, Any] = {"threads": threads}
    readers: dict[str, Callable[[], Any]] = {
        "system_threads": system_threads,
        "user_threads": lambda: user_threads(os.getuid()),
        "maps": lambda: snapshot()["maps"],
        "vm": lambda: snapshot()["vm"],
        "rss": lambda: snapshot()["rss"],
        "cgroup_pids": lambda: cgroup_limit(
            "pids", ("pids.max", "pids.current"), ("pids.max", "pids.current")
        )["in_use"],
        "cgroup_memory": _memory_usage,
        "mem_available": lambda: meminfo().get("MemAvailable"),
    }
    for name, read in readers.items():
        try:
            state[name] = read()
        except (OSError, MemoryError, RuntimeError):  # at the limit, reading may fail too
            state[name] = None
    return state


def _lower_address_space(limit: int | None) -> Callable[[], object]:
    """Lower the soft ``RLIMIT_AS`` to *limit*; returns what puts it back."""
    original = resource.getrlimit(resource.RLIMIT_AS)
    if limit:
        resource.setrlimit(resource.RLIMIT_AS, (limit, original[1]))
    # Made now: putting it back must not need memory at the limit.
    return functools.partial(resource.setrlimit, resource.RLIMIT_AS, original)


def _to_the_limit(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["stack_size"]:
        threading.stack_size(spec["stack_size"])
    ceiling, time_limit = spec["max"], spec["time_limit"]
    report = _Reporter(ceiling)
    sample_every = max(1, ceiling // 200)
    sleepers = _BareSleepers(grace=START_GRACE)
    samples: list[tuple[int, int]] = [(0, snapshot()["rss"])]
    restore = _lower_address_space(spec.get("rlimit_as"))
    began = time.perf_counter()
    deadline = time.monotonic() + time_limit
    stopped, failure, state = "max", None, None
    try:
        while sleepers.started < ceiling:
            if time.monotonic() >= deadline:
                stopped = "time"
                break
            try:
                sleepers.start()
                report(sleepers.started)
            except (RuntimeError, MemoryError, OSError) as exc:
                stopped, failure = "error", exc
                break
            if sleepers.started % sample_every == 0:
                with contextlib.suppress(OSError, MemoryError):
                    samples.append((sleepers.started, snapshot()["rss"]))
        elapsed = time.perf_counter() - began
        # The limit was for starting threads; reading the system needs memory again.
        restore()
        if failure is not None:
            state = _state_at_failure(sleepers.started)
    finally:
        restore()
        stopped_all = sleepers.stop(timeout=60)
    return {
        "started": sleepers.started,
        "stopped": stopped,
        "error": None if failure is None else f"{type(failure).__name__}: {failure}",
        "out_of_memory": isinstance(failure, MemoryError) or sleepers.gave_up,
        "state": state,
        "seconds": elapsed,
        "stack_size": spec["stack_size"],
        "rlimit_as": spec.get("rlimit_as"),
        "samples": samples,
        "stopped_all": stopped_all,
    }


def _child_main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    result = _measure(spec) if spec["mode"] == "measure" else _to_the_limit(spec)
    print("result " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
