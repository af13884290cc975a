"""
The stress driver, and ``python -m tests.soak --minutes N`` to run it for long.

Many caller threads call ``process``, ``process_timed`` (random short
timeouts), ``process_ctx`` (random cancels) and ``submit`` while resizer
threads move the pool between 0 and 64 workers; the run ends with ``close()``
while calls are still arriving. Every payload carries a unique id and every
job returns ``(id, worker thread id)``, so the driver can prove that each call
ended in exactly one outcome, that no job ran twice, that no result reached
the wrong caller, and that no ``interrupt()`` reached a job it was not meant
for. ``tests/test_stress.py`` runs it for seconds; the soak runs it for
minutes, round after round, each round a fresh pool.

With ``autoscale=True`` (``--autoscale``, ``make soak-autoscale``) the pool
autoscales instead: one resizer thread moves its bounds at random (within
0-32) and checks after each move that the size stays within them; workers
are recycled (``max_jobs_per_worker``, ``max_worker_age``), and the factory
fails one call in 20 once the pool is built.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import threading
import time
from concurrent.futures import CancelledError, Future

import attrs

import tunnypy

__all__ = ["JobError", "Ledger", "TaggedWorker", "Totals", "run_stress"]

MAX_SIZE = 64
MIN_CALLS = 1000
EXTRA = 20.0  # most seconds a run may go on past its length to reach coverage
_JOIN = 30.0  # bound on joining a driver thread once the pool is closed

# What a job does, chosen per call.
OK = 0  # return at once
SLOW = 1  # wait up to a few milliseconds, or until interrupted
RAISE = 2  # raise JobError(id)

Payload = tuple[int, int, float]  # (id, kind, seconds for SLOW)
Result = tuple[int, int]  # (id, ident of the worker thread that ran it)


class JobError(Exception):
    """Raised by a job on purpose; carries the id of the call it belongs to."""

    def __init__(self, job_id: int) -> None:
        super().__init__(job_id)
        self.job_id = job_id


@attrs.define
class Totals:
    """What one stress run covered and found; every count below ``lost`` must be zero."""

    calls: int = 0
    results: int = 0
    failed: int = 0
    timeouts: int = 0
    cancels: int = 0
    refused: int = 0
    resizes: int = 0
    interrupts: int = 0
    max_workers: int = 0
    rounds: int = 0
    lost: int = 0
    duplicates: int = 0
    misdelivered: int = 0
    stray_interrupts: int = 0
    miscounted: int = 0
    leaked_threads: int = 0
    out_of_bounds: int = 0
    autoscale_started: int = 0
    autoscale_retired: int = 0
    recycled: int = 0
    factory_failures: int = 0
    problems: list[str] = attrs.Factory(list)

    def add(self, other: Totals) -> None:
        for field in attrs.fields(Totals):
            if field.name == "problems":
                self.problems.extend(other.problems)
            elif field.name == "max_workers":
                self.max_workers = max(self.max_workers, other.max_workers)
            else:
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    @property
    def clean(self) -> bool:
        return not (
            self.lost
            or self.duplicates
            or self.misdelivered
            or self.stray_interrupts
            or self.miscounted
            or self.leaked_threads
            or self.out_of_bounds
            or self.problems
        )

    def summary(self) -> str:
        return (
            f"calls={self.calls} results={self.results} failed={self.failed} "
            f"timeouts={self.timeouts} cancels={self.cancels} refused={self.refused} "
            f"resizes={self.resizes} interrupts={self.interrupts} "
            f"max_workers={self.max_workers} rounds={self.rounds} lost={self.lost} "
            f"duplicates={self.duplicates} misdelivered={self.misdelivered} "
            f"stray_interrupts={self.stray_interrupts} miscounted={self.miscounted} "
            f"leaked_threads={self.leaked_threads} out_of_bounds={self.out_of_bounds} "
            f"autoscale_started={self.autoscale_started} "
            f"autoscale_retired={self.autoscale_retired} recycled={self.recycled} "
            f"factory_failures={self.factory_failures}"
        )


class FactoryError(Exception):
    """What the soak's flaky factory raises, one call in 20."""


class FlakyFactory:
    """Makes TaggedWorkers; once armed, fails one call in 20 (seeded)."""

    def __init__(self, ledger: Ledger, seed: int) -> None:
        self.ledger = ledger
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.armed = False

    def __call__(self) -> TaggedWorker:
        with self.lock:
            fail = self.armed and self.rng.random() < 0.05
        if fail:
            raise FactoryError("the soak's factory fails one call in 20")
        return TaggedWorker(self.ledger)


_calling = threading.local()  # the id of the call the current caller thread is making


class Ledger:
    """Who ran what, and who got what; shared by workers and callers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ran: dict[int, int] = {}  # id -> ident of the thread that ran it
        self.outcomes: dict[int, str] = {}
        self.totals = Totals()

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.totals.problems) < 20:
                self.totals.problems.append(text)

    def record_run(self, job_id: int) -> None:
        with self.lock:
            if job_id in self.ran:
                self.totals.duplicates += 1
            self.ran[job_id] = threading.get_ident()

    def record_outcome(self, job_id: int, kind: str) -> None:
        with self.lock:
            if job_id in self.outcomes:
                self.totals.problems.append(f"call {job_id} ended twice")
            self.outcomes[job_id] = kind


class TaggedWorker(tunnypy.BaseWorker[Payload, Result]):
    """Runs tagged payloads, records each run, and checks whom each interrupt reaches."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.running: int | None = None
        self.stop = threading.Event()

    def process(self, payload: Payload) -> Result:
        job_id, kind, seconds = payload
        self.stop.clear()  # an interrupt meant for an earlier job must not end this one
        self.running = job_id
        try:
            self.ledger.record_run(job_id)
            if kind == RAISE:
                raise JobError(job_id)
            if kind == SLOW:
                self.stop.wait(seconds)
            return (job_id, threading.get_ident())
        finally:
            self.running = None

    def interrupt(self) -> None:
        # Runs in the thread of the caller that gave up, which noted its call id.
        expected = getattr(_calling, "job_id", None)
        running = self.running
        with self.ledger.lock:
            self.ledger.totals.interrupts += 1
            if running is not None and running != expected:
                self.ledger.totals.stray_interrupts += 1
                self.ledger.totals.problems.append(
                    f"interrupt for call {expected} reached job {running}"
                )
        self.stop.set()


@attrs.define(eq=False)
class _Driver:
    pool: tunnypy.Pool[Payload, Result]
    ledger: Ledger
    seed: int
    stop: threading.Event = attrs.Factory(threading.Event)
    id_lock: threading.Lock = attrs.Factory(threading.Lock)
    next_id: int = 0
    cancel_lock: threading.Lock = attrs.Factory(threading.Lock)
    to_cancel: list[tuple[float, tunnypy.CancelToken]] = attrs.Factory(list)

    def new_id(self) -> int:
        with self.id_lock:
            self.next_id += 1
            with self.ledger.lock:
                self.ledger.totals.calls += 1
            return self.next_id

    def payload(self, rng: random.Random, job_id: int) -> Payload:
        roll = rng.random()
        if roll < 0.1:
            return (job_id, RAISE, 0.0)
        if roll < 0.4:
            return (job_id, SLOW, rng.uniform(0.0005, 0.01))
        return (job_id, OK, 0.0)

    def check_result(self, job_id: int, result: object) -> None:
        ledger = self.ledger
        if not (isinstance(result, tuple) and len(result) == 2 and result[0] == job_id):
            with ledger.lock:
                ledger.totals.misdelivered += 1
            ledger.problem(f"call {job_id} got {result!r}")
        else:
            with ledger.lock:
                ran_on = ledger.ran.get(job_id)
            if ran_on != result[1]:
                ledger.problem(
                    f"call {job_id} got a result from thread {result[1]}, ran on {ran_on}"
                )
        ledger.record_outcome(job_id, "result")

    def check_error(self, job_id: int, error: BaseException) -> None:
        ledger = self.ledger
        if isinstance(error, JobError):
            if error.job_id != job_id:
                with ledger.lock:
                    ledger.totals.misdelivered += 1
                ledger.problem(f"call {job_id} got the error of call {error.job_id}")
            ledger.record_outcome(job_id, "failed")
        elif isinstance(error, tunnypy.JobTimedOutError):
            ledger.record_outcome(job_id, "timed_out")
        elif isinstance(error, tunnypy.JobCancelledError | CancelledError):
            ledger.record_outcome(job_id, "cancelled")
        elif isinstance(error, tunnypy.PoolClosedError | tunnypy.PoolBusyError):
            ledger.record_outcome(job_id, "refused")
        else:
            ledger.problem(f"call {job_id} raised an undocumented {error!r}")
            ledger.record_outcome(job_id, "unexpected")

    # -- threads ----------------------------------------------------------------

    def caller(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        pool = self.pool
        while not self.stop.is_set():
            job_id = self.new_id()
            payload = self.payload(rng, job_id)
            _calling.job_id = job_id
            way = rng.random()
            try:
                if way < 0.3:
                    result = pool.process(payload)
                elif way < 0.65:
                    result = pool.process_timed(payload, rng.choice((0.0, 0.001, 0.003, 0.02)))
                else:
                    token = tunnypy.CancelToken(timeout=0.05 if rng.random() < 0.2 else None)
                    if rng.random() < 0.5:
                        with self.cancel_lock:
                            self.to_cancel.append((time.monotonic() + rng.uniform(0, 0.004), token))
                    elif rng.random() < 0.1:
                        token.cancel()
                    result = pool.process_ctx(payload, token)
            except Exception as exc:
                self.check_error(job_id, exc)
            else:
                self.check_result(job_id, result)
            finally:
                _calling.job_id = None

    def submitter(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + 500 + index)
        pool = self.pool
        while not self.stop.is_set():
            batch: list[tuple[int, Future[Result]]] = []
            for _ in range(rng.randint(1, 8)):
                job_id = self.new_id()
                try:
                    batch.append((job_id, pool.submit(self.payload(rng, job_id))))
                except Exception as exc:
                    self.check_error(job_id, exc)
            for _, future in batch:
                if rng.random() < 0.25:
                    future.cancel()
            for job_id, future in batch:
                try:
                    result = future.result(_JOIN)
                except TimeoutError:
                    self.ledger.problem(f"submitted call {job_id} never ended")
                except BaseException as exc:
                    self.check_error(job_id, exc)
                else:
                    self.check_result(job_id, result)

    def autoscaler(self, index: int) -> None:
        # The only thread that calls autoscale(): between its calls the
        # bounds are its own, and the size must stay within them.
        rng = random.Random(self.seed * 1000 + 900 + index)
        pool = self.pool
        while not self.stop.wait(rng.uniform(0.0, 0.01)):
            self.check_bounds()
            low = rng.randint(0, 8)
            high = rng.randint(max(low, 1), MAX_SIZE // 2)
            try:
                pool.autoscale(low, high, idle_timeout=rng.choice((0.0, 0.005, 0.02, 0.1)))
            except tunnypy.PoolClosedError:
                return
            except FactoryError:
                pass  # growing to min_size failed: the bounds are as they were
            self.check_bounds()
            with self.ledger.lock:
                self.ledger.totals.resizes += 1
                workers = pool.stats().workers
                self.ledger.totals.max_workers = max(self.ledger.totals.max_workers, workers)

    def check_bounds(self) -> None:
        stats = self.pool.stats()
        low, high = stats.min_size, stats.max_size
        if low is None or high is None:
            return  # closed
        if not low <= stats.size <= high:
            with self.ledger.lock:
                self.ledger.totals.out_of_bounds += 1
            self.ledger.problem(f"size {stats.size} outside autoscale({low}, {high})")

    def resizer(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + 900 + index)
        pool = self.pool
        while not self.stop.wait(rng.uniform(0.0, 0.01)):
            size = rng.randint(0, MAX_SIZE) if rng.random() < 0.8 else rng.randint(0, 2)
            try:
                if rng.random() < 0.2:
                    pool.set_size(size, wait=True, timeout=0.2)
                else:
                    pool.set_size(size)
            except tunnypy.PoolClosedError:
                return
            with self.ledger.lock:
                self.ledger.totals.resizes += 1
                workers = pool.stats().workers
                self.ledger.totals.max_workers = max(self.ledger.totals.max_workers, workers)

    def canceller(self) -> None:
        while not self.stop.wait(0.001):
            now = time.monotonic()
            with self.cancel_lock:
                due = [token for when, token in self.to_cancel if when <= now]
                self.to_cancel = [(w, t) for w, t in self.to_cancel if w > now]
            for token in due:
                token.cancel()


def covered(totals: Totals, min_resizes: int, pool: tunnypy.Pool[Payload, Result]) -> bool:
    """Whether a run has exercised every path the stress test claims to cover."""
    with_outcomes = totals.calls >= MIN_CALLS and totals.interrupts > 0
    if pool.stats().min_size is not None:  # autoscaling: each of its ways too
        stats = pool.stats()
        if not (
            stats.autoscale_started
            and stats.autoscale_retired
            and stats.recycled
            and stats.factory_failures
        ):
            return False
    return with_outcomes and totals.resizes >= min_resizes


def run_stress(
    seconds: float,
    *,
    callers: int = 12,
    submitters: int = 3,
    resizers: int = 2,
    seed: int = 0,
    min_resizes: int = 0,
    autoscale: bool = False,
) -> Totals:
    """
    Run one round on a fresh pool, close it mid-traffic, and check everything.

    The load runs for *seconds*, then on (up to ``EXTRA`` seconds more) until
    it made ``MIN_CALLS`` calls, delivered an interrupt and resized
    *min_resizes* times.
    """
    ledger = Ledger()
    before = {t for t in threading.enumerate() if t.name.startswith("tunnypy-")}
    pool: tunnypy.Pool[Payload, Result]
    if autoscale:
        factory = FlakyFactory(ledger, seed)
        pool = tunnypy.Pool(8, factory, max_jobs_per_worker=200, max_worker_age=1.0)
        pool.autoscale(2, 16, idle_timeout=0.02)
        factory.armed = True
    else:
        pool = tunnypy.Pool(8, lambda: TaggedWorker(ledger))
    driver = _Driver(pool, ledger, seed)
    resizing = (
        [threading.Thread(target=driver.autoscaler, args=(0,))]
        if autoscale
        else [threading.Thread(target=driver.resizer, args=(i,)) for i in range(resizers)]
    )
    threads = [
        *(threading.Thread(target=driver.caller, args=(i,)) for i in range(callers)),
        *(threading.Thread(target=driver.submitter, args=(i,)) for i in range(submitters)),
        *resizing,
        threading.Thread(target=driver.canceller),
    ]
    for thread in threads:
        thread.start()
    driver.stop.wait(seconds)  # the load runs for this long; nothing waits on it
    # Then on until it has covered what the test asserts it covers (on a
    # loaded machine 4 s may not be enough), but never past the bound.
    give_up = time.monotonic() + seconds + EXTRA
    while not covered(ledger.totals, min_resizes, pool) and time.monotonic() < give_up:
        driver.stop.wait(0.05)
    # Close while calls are still arriving: the callers stop only afterwards.
    if autoscale:
        with contextlib.suppress(FactoryError):  # growing to 32 may meet a failure
            pool.autoscale(MAX_SIZE // 2, MAX_SIZE // 2)
    else:
        pool.set_size(MAX_SIZE // 2)
    closed = pool.close(timeout=_JOIN)
    late = driver.new_id()  # at least one call is certain to arrive after close()
    try:
        pool.process((late, OK, 0.0))
    except Exception as exc:
        driver.check_error(late, exc)
    else:
        ledger.problem("a call after close() was served")
    driver.stop.set()
    for thread in threads:
        thread.join(_JOIN)
    totals = ledger.totals
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        totals.problems.append(f"driver threads never finished: {stuck}")
    if not closed:
        totals.problems.append("close() did not see every worker end")

    # Every call has exactly one outcome.
    with ledger.lock:
        outcomes = dict(ledger.outcomes)
    totals.lost = totals.calls - len(outcomes)
    kinds = {kind: 0 for kind in ("result", "failed", "timed_out", "cancelled", "refused")}
    for kind in outcomes.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    totals.results = kinds["result"]
    totals.failed = kinds["failed"]
    totals.timeouts = kinds["timed_out"]
    totals.cancels = kinds["cancelled"]
    totals.refused = kinds["refused"]

    # The pool's own counters agree with what the callers saw, one for one.
    stats = pool.stats()
    totals.autoscale_started = stats.autoscale_started
    totals.autoscale_retired = stats.autoscale_retired
    totals.recycled = stats.recycled
    totals.factory_failures = stats.factory_failures
    pairs = {
        "completed": (stats.completed, kinds["result"]),
        "failed": (stats.failed, kinds["failed"]),
        "timed_out": (stats.timed_out, kinds["timed_out"]),
        "cancelled": (stats.cancelled, kinds["cancelled"]),
        "rejected": (stats.rejected, kinds["refused"]),
    }
    ended = stats.completed + stats.failed + stats.timed_out + stats.cancelled + stats.rejected
    if ended != totals.calls:
        totals.miscounted += 1
        totals.problems.append(f"stats count {ended} ended calls, {totals.calls} were made")
    for name, (counted, seen) in pairs.items():
        if counted != seen:
            totals.miscounted += 1
            totals.problems.append(f"stats.{name}={counted} but callers saw {seen}")
    if stats.workers or stats.size or stats.waiting or stats.busy or stats.idle:
        totals.problems.append(f"closed pool still reports {stats}")

    # No worker thread (nor the keeper) outlives close().
    after = {t for t in threading.enumerate() if t.name.startswith("tunnypy-")}
    totals.leaked_threads = len(after - before)
    totals.rounds = 1
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    parser.add_argument("--round", type=float, default=20.0, help="seconds per pool (default 20)")
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--autoscale",
        action="store_true",
        help="autoscaling and recycling on, a factory failing one call in 20",
    )
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    end = time.monotonic() + args.minutes * 60
    grand = Totals()
    round_no = 0
    while time.monotonic() < end:
        round_no += 1
        seconds = min(args.round, max(1.0, end - time.monotonic()))
        totals = run_stress(
            seconds, callers=args.callers, seed=seed + round_no, autoscale=args.autoscale
        )
        grand.add(totals)
        print(
            f"round {round_no} seed={seed + round_no}: {totals.summary()} "
            f"threads_after={threading.active_count()}",
            flush=True,
        )
        if not totals.clean:
            for problem in totals.problems:
                print(f"  PROBLEM: {problem}", flush=True)
            break
    print(f"soak total ({args.minutes:g} min): {grand.summary()}", flush=True)
    print("nothing lost" if grand.clean else "FAILED", flush=True)
    return 0 if grand.clean else 1


if __name__ == "__main__":
    sys.exit(main())
