"""
The keeper: autoscaling and recycling, and the thread that makes and retires workers for them.

It owns the bounds ``Pool.autoscale`` set, the keeper thread and its waker,
idle times as sampled, the workers due for a successor, and its counts.

It sits below the lifecycle, which holds it: the lifecycle needs the keeper
at every turn (set_size, close, a worker leaving, stats, fork), while the
keeper needs of the lifecycle, which owns the workers and the target size,
only the few things ``Staff`` names (docs/design.md, "Autoscaling and recycling").
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Protocol, cast

import attrs

from ._line import Line
from ._log import log, log_quietly
from ._waker import LockWaker, Waker
from ._worker import Worker, terminate_quietly
from ._worker_thread import WorkerThread
from .exceptions import PoolClosedError

__all__ = ["Bounds", "Keeper", "Staff"]

_monotonic = time.monotonic

# The keeper looks at idle workers every idle_timeout / 4, at least every
# _TICK_MIN seconds apart; what it reads idle times from (a test may set a
# clock of its own). See docs/design.md, "Autoscaling and recycling".
_TICK_MIN = 0.005
_idle_clock = time.monotonic

# After a pass of its own failed (a bug), the keeper tries again this much
# later: the cap of the replacement's backoff (_lifecycle._BACKOFF_CAP).
_AFTER_FAILURE = 5.0


@attrs.frozen
class Bounds:
    """What ``Pool.autoscale`` set: the size's bounds and how long a worker may idle."""

    min_size: int
    max_size: int
    idle_timeout: float


class Staff(Protocol):
    """
    What the keeper asks of the pool's workers (the ``Lifecycle``, which owns them).

    Every ``_locked`` method, and every attribute but ``resize_lock``, only
    under the line's lock.
    """

    size: int
    """The target size; the keeper's alone while the pool autoscales."""
    workers: dict[WorkerThread, None]
    replacing: dict[WorkerThread, LockWaker]
    delay: float
    """The backoff's next wait, shared with replacement."""
    resize_lock: threading.Lock
    """Held across a factory call, so such calls are made one at a time."""

    def own_target_locked(self, size: int, *, new: bool) -> None:
        """Make *size* the target: no ``set_size`` still growing settles or falls back from it."""

    def shrink(self) -> None:
        """Retire workers down to the target (not under the lock)."""

    def try_factory(self) -> Worker[Any, Any] | None:
        """A checked worker from the factory, or ``None`` with the failure counted and logged."""

    def hire_locked(self, worker: Worker[Any, Any]) -> WorkerThread:
        """List *worker* and count it active, unstarted; a worker is back: no stall, no backoff."""

    def unhire_locked(self, worker_thread: WorkerThread) -> None:
        """Undo ``hire_locked`` for a thread that would not start, and back off."""

    def factory_recovered_locked(self) -> int:
        """End the factory's streak of failures; how many it was."""

    def stall_if_down(self, now: float) -> float | None:
        """While growing fails on a pool with no worker: stall it after ``stall_timeout``."""


class Keeper:
    """Autoscaling and recycling for one pool, and its keeper thread (private)."""

    # The lifecycle is handed in, never kept: the keeper thread holds it only
    # while it runs, so a closed lifecycle is freed at once, with no cycle.

    def __init__(self, line: Line, *, max_jobs: int | None, max_age: float | None) -> None:
        self.line = line
        line.max_jobs = max_jobs or 0
        self.max_age = max_age
        self.recycling = bool(max_jobs) or max_age is not None
        # What autoscale() set; None while the pool does not autoscale.
        self.bounds: Bounds | None = None
        self.lock = threading.Lock()  # one autoscale() at a time
        self.thread: threading.Thread | None = None
        self.waker = LockWaker()
        self.passes = 0
        self.retry_at = 0.0
        # Under the line's lock: the workers due for a successor, and when
        # each parked worker was first seen idle, with its count of jobs.
        self.due: dict[WorkerThread, None] = {}
        self.idle_seen: dict[WorkerThread, tuple[float, int]] = {}
        self.autoscale_started = 0
        self.autoscale_retired = 0
        self.recycled = 0

    def autoscale(self, staff: Staff, bounds: Bounds | None) -> None:
        """
        Set the autoscaling bounds (``None``: off), and the target size within them.

        Bounds and target change together under the lock, so the size is
        never seen outside the bounds. A shrink is made at once; the keeper
        makes what the target lacks (docs/design.md, "Autoscaling and recycling").
        """
        line = self.line
        with self.lock:
            with line.lock:
                if line.closed:
                    raise PoolClosedError(line.closed_reason)
                previous = self.bounds
                previous_size = staff.size
                if bounds is None:
                    # What the keeper has yet to make is dropped; a worker
                    # being replaced keeps its place.
                    size = min(staff.size, line.active + len(staff.replacing))
                    room = 0
                else:
                    size = min(max(staff.size, bounds.min_size), bounds.max_size)
                    room = max(0, bounds.max_size - line.active)
                # The keeper's target from now on, then stores only: Ctrl-C lands
                # before both or after both (docs/design.md, "Ctrl-C and other signals").
                staff.own_target_locked(size, new=True)
                self.bounds = bounds
                line.grow_to = None if bounds is None else bounds.max_size
                # Workers asked for beyond the new bound are dropped now, not
                # when the keeper is back from a factory call; a call that
                # waited on one may then be stuck (docs/design.md, "Deadlock check").
                stranded = None
                if line.growing > room:
                    line.growing = room
                    stranded = line.unstrand_locked()
                shrink = line.active > staff.size
            if stranded is not None:
                stranded.wake()
            try:
                self._start(staff)
            except BaseException:  # no thread to be had: as it was
                with line.lock:
                    if not line.closed:
                        self.bounds = previous
                        line.grow_to = None if previous is None else previous.max_size
                        staff.own_target_locked(previous_size, new=False)
                raise
            if shrink:
                staff.shrink()
        # New bounds: the keeper drops or makes the workers asked for, and
        # leaves if there is nothing left for it to do.
        self.waker.wake()
        if bounds is None:
            log.info("pool_autoscaling_off")
        else:
            log.info(
                "pool_autoscaling",
                min_size=bounds.min_size,
                max_size=bounds.max_size,
                idle_timeout=bounds.idle_timeout,
            )

    def start_if_recycling(self, staff: Staff) -> None:
        """Start the keeper if the pool recycles workers (called once, by the constructor)."""
        if self.recycling:
            self._start(staff)

    def _start(self, staff: Staff) -> None:
        line = self.line
        with line.lock:
            if (
                self.thread is not None
                or line.closed
                or (self.bounds is None and not self.recycling)
            ):
                return
            thread = self.thread = threading.Thread(
                target=self._keep, args=(staff,), name="tunnypy-keeper", daemon=True
            )
            line.keeper = self.waker
        try:
            thread.start()
        except BaseException:
            with line.lock:
                if self.thread is thread:
                    self.thread = None
                    line.keeper = None
            raise

    def spent(self, worker_thread: WorkerThread) -> None:
        """*worker_thread* has run ``max_jobs_per_worker`` jobs: the keeper makes its successor."""
        with self.line.lock:
            if worker_thread.retiring or self.line.closed:
                return
            self.due[worker_thread] = None
        self.waker.wake()

    def forget_locked(self, worker_thread: WorkerThread) -> None:
        """Under the lock: *worker_thread* has left; it is neither due nor idle."""
        self.due.pop(worker_thread, None)
        self.idle_seen.pop(worker_thread, None)

    def forget_all_in_child(self) -> None:
        """In a forked child: the keeper thread did not come along, nor did the workers."""
        self.due.clear()
        self.idle_seen.clear()
        self.thread = None

    def _keep(self, staff: Staff) -> None:
        """
        The keeper thread: make the workers autoscaling and recycling ask for; retire idle ones.

        It holds no lock across a factory call, and sleeps on its own waker,
        which a call asking for a worker, ``autoscale()``, a spent worker and
        ``close()`` wake. See docs/design.md, "Autoscaling and recycling".
        """
        waker = self.waker
        while True:
            try:
                sleep = self._keep_once(staff)
            except BaseException:  # its own failure: logged, and tried again later
                log_quietly(log.exception, "keeper_failed")
                sleep = _AFTER_FAILURE
            if sleep is not None and sleep < 0:
                return
            if sleep is None or sleep > 0:
                waker.wait(sleep)

    def _keep_once(self, staff: Staff) -> float | None:
        """One pass of the keeper: seconds to the next (``None``: when woken; negative: leave)."""
        line = self.line
        now = _monotonic()
        idle_now = _idle_clock()
        retired: list[WorkerThread] = []
        stranded: Waker | None = None
        grow = 0
        due: WorkerThread | None = None
        sleep: float | None = None
        with line.lock:
            self.passes += 1
            auto = self.bounds
            if line.closed or (auto is None and not self.recycling):
                # Nothing left to keep: asked-for workers are dropped, and a
                # call that waited on one may now be stuck (Deadlock check).
                leaving = threading.current_thread()
                if self.thread is leaving:
                    self.thread = None
                    line.keeper = None
                if line.growing:
                    line.growing = 0
                    if not line.closed:
                        stranded = line.unstrand_locked()
                sleep = -1.0
            else:
                if auto is not None:
                    # What the target lacks (below min_size, or moved up),
                    # but not the workers failing ones are replaced by.
                    grow = max(0, staff.size - line.active - len(staff.replacing))
                if line.growing:
                    if auto is None:
                        wanted = 0
                    else:  # no more than the line still needs, within the bound
                        # (a stalled pool's line is empty: it still wants its worker)
                        needed = len(line.waiting) or int(line.stalled is not None)
                        wanted = max(0, min(line.growing, needed, auto.max_size - line.active))
                    if wanted < line.growing:
                        line.growing = wanted
                        stranded = line.unstrand_locked()
                    grow += wanted
                max_age = self.max_age
                if max_age is not None:
                    for worker_thread in staff.workers:
                        if not worker_thread.retiring and now - worker_thread.born >= max_age:
                            self.due.setdefault(worker_thread)
                for worker_thread in list(self.due):
                    if worker_thread.retiring:
                        del self.due[worker_thread]  # leaving anyway: no successor
                    elif due is None:
                        due = worker_thread
                if auto is not None:
                    retired = self._retire_idle_locked(staff, auto, idle_now)
                    if line.active > auto.min_size and auto.idle_timeout < math.inf:
                        sleep = max(auto.idle_timeout / 4, _TICK_MIN)
                if max_age is not None:
                    ages = [w.born for w in staff.workers if not w.retiring and w not in self.due]
                    if ages:
                        next_due = max(min(ages) + max_age - now, _TICK_MIN)
                        sleep = next_due if sleep is None else min(sleep, next_due)
        for worker_thread in retired:
            worker_thread.waker.wake()
        if stranded is not None:
            stranded.wake()
        if retired:
            log_quietly(log.info, "workers_idle_retired", workers=[w.index for w in retired])
        if sleep is not None and sleep < 0:
            return sleep
        if grow or due is not None:
            if now < self.retry_at:  # the factory failed lately: back off
                wait = self.retry_at - now
                if grow:
                    until_stall = staff.stall_if_down(now)
                    if until_stall is not None:
                        wait = min(wait, until_stall)
                return wait if sleep is None else min(sleep, wait)
            if self._recruit(staff, due):
                with line.lock:
                    self.retry_at = 0.0
            else:
                with line.lock:
                    self.retry_at = _monotonic() + staff.delay
            return 0.0  # look again at once: more may be wanted
        return sleep

    def _retire_idle_locked(self, staff: Staff, auto: Bounds, now: float) -> list[WorkerThread]:
        """
        Under the lock: retire workers idle for ``idle_timeout``, oldest first, to ``min_size``.

        A worker counts as idle since the first pass that found it parked
        with the same count of jobs served; the retirees are returned, to be
        woken out of the lock.
        """
        line = self.line
        before = self.idle_seen
        seen: dict[WorkerThread, tuple[float, int]] = {}
        for worker_thread in cast(list[WorkerThread], line.idle):
            served = worker_thread.completed + worker_thread.failed
            was = before.get(worker_thread)
            seen[worker_thread] = was if was is not None and was[1] == served else (now, served)
        self.idle_seen = seen
        excess = line.active - auto.min_size
        if excess <= 0:
            return []
        retired = [w for w, (since, _) in seen.items() if now - since >= auto.idle_timeout]
        del retired[excess:]  # idle is a stack: the bottom, longest parked, first
        idle = line.idle
        for worker_thread in retired:
            worker_thread.retiring = True
            idle.remove(worker_thread)
            line.active -= 1
            del seen[worker_thread]
        staff.size = max(staff.size - len(retired), auto.min_size)
        self.autoscale_retired += len(retired)
        return retired

    def _recruit(self, staff: Staff, old: WorkerThread | None) -> bool:
        """
        Make one worker and start it: for a call in line (autoscaling), or as *old*'s successor.

        *old* retires only once its successor's thread has started, so the
        workers serving never number fewer than before. ``False`` if the
        factory failed or the thread would not start; *old* then serves on.
        """
        line = self.line
        with staff.resize_lock:  # factory calls one at a time, as growths make them
            worker = staff.try_factory()
            if worker is None:
                return False
            with line.lock:
                auto = self.bounds
                if old is None:
                    # For the target (min_size), or for a call in line.
                    for_target = line.active < staff.size
                    wanted = (
                        not line.closed
                        and auto is not None
                        and (for_target or (line.growing > 0 and line.active < auto.max_size))
                    )
                else:
                    wanted = not line.closed and (not old.retiring or line.active < staff.size)
                if wanted:
                    worker_thread = staff.hire_locked(worker)
                    if old is None:
                        if not for_target:
                            line.growing -= 1
                            staff.size = max(staff.size, line.active)
                        self.autoscale_started += 1
                streak = staff.factory_recovered_locked()
            if streak:
                log_quietly(log.info, "worker_factory_recovered", failures=streak)
            if not wanted:
                terminate_quietly(worker, -1)
                if old is not None:
                    with line.lock:
                        self.due.pop(old, None)
                return True
            try:
                worker_thread.thread.start()
            except Exception:
                # Out of threads: unlisted, terminated; the keeper tries again later.
                with line.lock:
                    staff.unhire_locked(worker_thread)
                    if old is None:
                        self.autoscale_started -= 1
                        if not for_target and not line.closed:
                            line.growing += 1
                terminate_quietly(worker, worker_thread.index)
                log_quietly(log.exception, "worker_start_failed", worker=worker_thread.index)
                return False
        parked = False
        if old is not None:
            with line.lock:
                self.due.pop(old, None)
                self.recycled += 1
                if not old.retiring:
                    old.retiring = True
                    line.active -= 1
                    if old in line.idle:
                        line.idle.remove(old)
                        parked = True
        if parked:
            assert old is not None
            old.waker.wake()
        if old is None:
            log_quietly(log.info, "worker_autoscaled", worker=worker_thread.index)
        else:
            log_quietly(log.info, "worker_recycled", worker=old.index, by=worker_thread.index)
        return True
