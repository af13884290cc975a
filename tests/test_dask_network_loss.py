"""
A Dask worker that stops answering without closing its connections (network gone).

SIGSTOP freezes the Dask worker process of a busy actor: its heartbeats stop
and its connections stay open, as in a network partition. Only the
scheduler's ``worker-ttl`` notices it; the cluster here is started with a
short one (docs/scale-out.md, "A Dask worker that stops answering").
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, wait_for

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

from tunnypy.contrib.dask import DaskWorkers  # noqa: E402 - only once distributed is there

WORKER_TTL = 2.0
"""The scheduler's ``distributed.scheduler.worker-ttl`` for this cluster, in seconds."""

DETECTION_BOUND = 5.0 + WORKER_TTL + 4.0 + 6.0
"""
Seconds from the freeze until the frozen worker's call fails.

The scheduler counts a worker gone after max(worker-ttl, 10 heartbeats:
5 s on a cluster of up to 10 workers), checking every worker-ttl; it then
has the nanny end the process, which waits 4 s for a clean close before a
SIGKILL. Then the connection breaks. 6 s of margin for a loaded machine.
"""

RECOVERY_BOUND = 30.0
"""Seconds from the failed call until the pool serves at full size (a new worker process)."""


def threads_checked_by_module_fixture(thread: threading.Thread) -> bool:
    """The cluster's threads: checked by the fixture as it closes the cluster (conftest)."""
    names = ("IO loop", "TCP-Executor", "asyncio_", "AsyncProcess Dask", "QueueFeederThread")
    return "Dask-" in thread.name or thread.name.startswith(names)


@pytest.fixture
def ttl_client() -> Iterator[Any]:
    """A LocalCluster of 2 Dask worker processes whose scheduler has a short worker-ttl."""
    before = set(threading.enumerate())
    with dask.config.set({"distributed.scheduler.worker-ttl": f"{WORKER_TTL}s"}):
        cluster = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        assert cluster.scheduler.worker_ttl == WORKER_TTL
        client.wait_for_workers(2, timeout=RECOVERY_BOUND)
        yield client
    finally:
        client.close()
        cluster.close()
    deadline = time.monotonic() + WAIT
    left = []
    for thread in set(threading.enumerate()) - before:
        if thread.name.startswith("Dask-Offload"):  # one per process, never ended
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread.name)
    assert not left, f"the cluster left threads running: {sorted(left)}"


def job(arg: tuple[str, str]) -> int:
    """
    ``hang``: writes this process's pid to the file, then sleeps; ``meet``: writes
    it into the directory and returns once two jobs have; else returns the pid.
    """
    op, path = arg
    pid = os.getpid()
    if op == "hang":
        Path(path).write_text(str(pid))
        time.sleep(60)
    elif op == "meet":
        Path(path, str(pid)).write_text("")
        deadline = time.monotonic() + WAIT
        while len(list(Path(path).iterdir())) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the other job never came: the pool is not at size 2")
            time.sleep(0.01)
    return pid


def pid_in(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text() != "", "the job to write its pid")
    return int(path.read_text())


def test_a_frozen_dask_worker_fails_only_its_call_within_the_ttl_and_the_pool_comes_back(
    ttl_client: Any, tmp_path: Path
) -> None:
    """SIGSTOP the Dask worker of a busy actor: its call fails once the scheduler drops it."""
    pool = tunnypy.Pool.from_func(2, job, isolation=DaskWorkers(ttl_client))
    pid = None
    try:
        with pool:
            victim = pool.submit(("hang", str(tmp_path / "victim")))
            pid = pid_in(tmp_path / "victim")
            other = pool.process(("pid", ""))
            assert other != pid
            frozen_at = time.monotonic()
            os.kill(pid, signal.SIGSTOP)
            # The other worker serves on while the frozen one's call waits.
            served = {pool.process_timed(("pid", ""), WAIT) for _ in range(3)}
            assert served == {other}
            assert not victim.done()
            error = victim.exception(DETECTION_BOUND)
            detected = time.monotonic() - frozen_at
            assert isinstance(error, tunnypy.WorkerCrashedError), error
            assert "was lost" in str(error)
            # Back at size: two jobs that each wait for the other, neither on the frozen process.
            (tmp_path / "meet").mkdir()
            both = [pool.submit(("meet", str(tmp_path / "meet"))) for _ in range(2)]
            pids = {future.result(RECOVERY_BOUND) for future in both}
            recovered = time.monotonic() - frozen_at
            assert len(pids) == 2 and pid not in pids
            stats = pool.stats()
            assert (stats.crashed, stats.respawned, stats.failed) == (1, 1, 1)
            assert not _stopped(pid), "the frozen process is still there"
    finally:
        if pid is not None and _stopped(pid):  # nothing left frozen, whatever failed
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    print(f"frozen call failed after {detected:.2f} s ({error}); at size after {recovered:.2f} s")


def _stopped(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("T")
    except (OSError, IndexError):
        return False
