"""
The probe: how many threads can this Python process run?

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "KINDS",
    "ChildFailedError",
    "diagnose",
    "estimate",
    "parse_size",
    "read_limits",
    "run_child",
]

KINDS = ("thread", "worker")
"""What is measured: bare ``threading.Thread`` objects, and tunnypy pool workers."""

UNLIMITED_CGROUP = 2**62
"""cgroup v1 reports "no limit" as a huge number (``PAGE_COUNTER_MAX`` pages); treat it as none."""

START_GRACE = 2.0
"""Seconds the run to the limit waits for a new thread to run before it gives up on it."""

_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
_PAGE = os.sysconf("SC_PAGE_SIZE")


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


# -- reading the system ---------------------------------------------------------


def _read_text(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _read_int(path: str | Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        value = int(text.split()[0])
    except (ValueError, IndexError):
        return None
    return None if value >= UNLIMITED_CGROUP else value


def meminfo() -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    info: dict[str, int] = {}
    for line in (_read_text("/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            info[name] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
    return info


def system_threads() -> int | None:
    """Threads on the whole system now (the kernel's ``nr_threads``, from ``/proc/loadavg``)."""
    text = _read_text("/proc/loadavg")
    try:
        return int(text.split()[3].split("/")[1]) if text else None
    except (IndexError, ValueError):
        return None


def user_threads(uid: int) -> int:
    """Threads owned by *uid* across the system: what ``RLIMIT_NPROC`` counts."""
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        text = _read_text(f"/proc/{entry.name}/status")
        if not text:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        try:
            if int(fields["Uid"].split()[0]) == uid:
                total += int(fields["Threads"])
        except (KeyError, ValueError, IndexError):
            continue
    return total


def snapshot() -> dict[str, int]:
    """This process now: virtual and resident bytes, memory mappings, open fds, threads."""
    statm = (_read_text("/proc/self/statm") or "0 0").split()
    with open("/proc/self/maps", "rb") as maps:
        mappings = sum(1 for _ in maps)
    return {
        "vm": int(statm[0]) * _PAGE,
        "rss": int(statm[1]) * _PAGE,
        "maps": mappings,
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
    }


def _cgroup_dirs(controller: str) -> Iterator[tuple[str, Path]]:
    """This process's cgroup directories for *controller*, innermost first, v2 before v1."""
    memberships: dict[str, str] = {}
    for line in (_read_text("/proc/self/cgroup") or "").splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and not controllers:
            memberships["v2"] = path
        for name in controllers.split(","):
            memberships[name] = path
    for line in (_read_text("/proc/self/mountinfo") or "").splitlines():
        before, _, after = line.partition(" - ")
        fields = before.split()
        fstype, _, options = after.split()[:3] if len(after.split()) >= 3 else ("", "", "")
        if len(fields) < 5:
            continue
        root, mount = fields[3], Path(fields[4])
        if fstype == "cgroup2":
            version, found = "v2", memberships.get("v2")
        elif fstype == "cgroup" and controller in options.split(","):
            version, found = "v1", memberships.get(controller)
        else:
            continue
        if found is None:
            continue
        path = found
        relative = path[len(root) :] if path.startswith(root) else path
        directory = mount / relative.lstrip("/")
        while True:
            yield version, directory
            if directory == mount:
                break
            directory = directory.parent


def cgroup_limit(controller: str, v2: tuple[str, str], v1: tuple[str, str]) -> dict[str, Any]:
    """
    The tightest limit on this process's cgroup path and its usage there.

    *v2* and *v1* name the (limit, usage) files of each cgroup version.
    """
    best: dict[str, Any] = {"value": None, "in_use": None, "source": None}
    for version, directory in _cgroup_dirs(controller):
        limit_file, usage_file = v2 if version == "v2" else v1
        if not (directory / limit_file).exists():
            continue
        value = _read_int(directory / limit_file)
        if best["source"] is None or (
            value is not None and (best["value"] is None or value < best["value"])
        ):
            best = {
                "value": value,
                "in_use": _read_int(directory / usage_file),
                "source": f"{directory / limit_file} (cgroup {version})",
            }
    return best


def _rlimit(which: int) -> int | None:
    soft = resource.getrlimit(which)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def read_limits(costs: dict[str, float], rlimit_as: int | None = None) -> list[dict[str, Any]]:
    """
    Every limit that caps the number of threads, read from the system.

    Args:
        costs: What one more thread costs: ``maps`` (memory mappings), ``rss``
            and ``vm`` (bytes) and ``charge`` (bytes the cgroup is charged);
            ``fixed_maps`` and ``fixed_vm``, what the first threads add once
            (glibc's malloc arenas), count as in use.
        rlimit_as: The ``RLIMIT_AS`` the to-the-limit run will use, if lowered.

    Each limit is a dict: ``name``, ``value`` (``None`` for none), ``in_use``,
    ``unit``, ``cost`` per thread, ``fixed`` (added once), ``room`` (threads
    this process could still add under it, ``None`` if it does not bind),
    ``enforced``, ``source`` and ``note``.
    """
    me = snapshot()
    tasks = system_threads()
    uid = os.getuid()
    mem = meminfo()
    limits: list[dict[str, Any]] = []

    def add(
        name: str,
        value: int | None,
        in_use: int | None,
        *,
        unit: str,
        cost: float,
        source: str | None,
        enforced: bool = True,
        note: str = "",
        fixed: float = 0.0,
    ) -> None:
        room: int | None = None
        if value is not None and enforced:
            room = max(0, int((value - (in_use or 0) - fixed) / max(cost, 1e-9)))
        limits.append(
            {
                "name": name,
                "value": value,
                "in_use": in_use,
                "unit": unit,
                "cost": cost,
                "room": room,
                "enforced": enforced,
                "source": source,
                "note": note,
                "fixed": fixed,
            }
        )

    nproc = _rlimit(resource.RLIMIT_NPROC)
    root = os.geteuid() == 0
    add(
        "RLIMIT_NPROC",
        nproc,
        user_threads(uid) if nproc is not None else None,
        unit="task",
        cost=1,
        source="getrlimit(RLIMIT_NPROC)",
        enforced=not root,
        note="not enforced for root" if root else "",
    )
    add(
        "kernel.threads-max",
        _read_int("/proc/sys/kernel/threads-max"),
        tasks,
        unit="task",
        cost=1,
        source="/proc/sys/kernel/threads-max",
    )
    add(
        "kernel.pid_max",
        _read_int("/proc/sys/kernel/pid_max"),
        tasks,
        unit="pid",
        cost=1,
        source="/proc/sys/kernel/pid_max",
        note="each thread takes a pid",
    )
    add(
        "vm.max_map_count",
        _read_int("/proc/sys/vm/max_map_count"),
        me["maps"],
        unit="mapping",
        cost=max(costs.get("maps", 2.0), 1.0),
        source="/proc/sys/vm/max_map_count",
        note="per process; a thread stack and its guard page are two",
        fixed=costs.get("fixed_maps", 0.0),
    )
    pids = cgroup_limit("pids", ("pids.max", "pids.current"), ("pids.max", "pids.current"))
    add(
        "cgroup pids.max",
        pids["value"],
        pids["in_use"],
        unit="task",
        cost=1,
        source=pids["source"],
    )
    memory = cgroup_limit(
        "memory",
        ("memory.max", "memory.current"),
        ("memory.limit_in_bytes", "memory.usage_in_bytes"),
    )
    charge = max(costs.get("charge", 0.0), costs.get("rss", 0.0), 1.0)
    add(
        "cgroup memory.max",
        memory["value"],
        memory["in_use"],
        unit="bytes",
        cost=charge,
        source=memory["source"],
    )
    add(
        "MemAvailable",
        mem.get("MemAvailable"),
        None,
        unit="bytes",
        cost=charge,
        source="/proc/meminfo",
        note="free memory left on the machine",
    )
    address_space = rlimit_as if rlimit_as is not None else _rlimit(resource.RLIMIT_AS)
    add(
        "RLIMIT_AS",
        address_space,
        me["vm"],
        unit="bytes",
        cost=max(costs.get("vm", 0.0), 1.0),
        source="getrlimit(RLIMIT_AS)" if rlimit_as is None else "--rlimit-as",
        note="virtual memory: every thread reserves its whole stack",
        fixed=costs.get("fixed_vm", 0.0),
    )
    if _read_int("/proc/sys/vm/overcommit_memory") == 2:
        add(
            "CommitLimit",
            mem.get("CommitLimit"),
            mem.get("Committed_AS"),
            unit="bytes",
            cost=max(costs.get("vm", 0.0), 1.0),
            source="/proc/meminfo (vm.overcommit_memory=2)",
        )
    return limits


def estimate(limits: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The limit that binds first (least room), or ``None`` if none binds."""
    binding = [limit for limit in limits if limit["room"] is not None]
    return min(binding, key=lambda limit: limit["room"]) if binding else None


def diagnose(
    limits: list[dict[str, Any]], state: dict[str, Any], costs: dict[str, float]
) -> str | None:
    """
    Name the limit a failed thread start most likely ran into.

    *state* is what the child read right after the failure; the likely
    cause is the limit that one more thread would have crossed.
    """
    at_failure = {
        "kernel.threads-max": state.get("system_threads"),
        "kernel.pid_max": state.get("system_threads"),
        "vm.max_map_count": state.get("maps"),
        "RLIMIT_AS": state.get("vm"),
        "cgroup pids.max": state.get("cgroup_pids"),
        "cgroup memory.max": state.get("cgroup_memory"),
        "RLIMIT_NPROC": state.get("user_threads"),
    }
    best: tuple[float, str] | None = None
    for limit in limits:
        used = at_failure.get(limit["name"])
        if limit["value"] is None or used is None or not limit["enforced"]:
            continue
        # How full the limit would be with one more thread (2 for margin).
        fullness = (used + 2 * limit["cost"]) / limit["value"]
        if fullness >= 0.99 and (best is None or fullness > best[0]):
            best = (fullness, limit["name"])
    if best is None and state.get("mem_available", 1) < costs.get("rss", 0) * 16:
        return "MemAvailable"
    return None if best is None else best[1]


# -- the children ---------------------------------------------------------------


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
