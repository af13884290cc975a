"""
Reading the system: this process now, and the limits on its thread count.

``read_limits`` reads every limit from ``/proc``, the cgroup files and
``getrlimit``; ``estimate`` says which binds first, and ``diagnose`` which one
a failed thread start ran into.
"""

from __future__ import annotations

import os
import resource
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "cgroup_limit",
    "diagnose",
    "estimate",
    "meminfo",
    "read_limits",
    "snapshot",
    "system_threads",
    "user_threads",
]

UNLIMITED_CGROUP = 2**62
"""cgroup v1 reports "no limit" as a huge number (``PAGE_COUNTER_MAX`` pages); treat it as none."""

_PAGE = os.sysconf("SC_PAGE_SIZE")


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
