"""
Latency histograms: a fixed log-bucketed layout, recorded without a lock.

In a pool made with ``latency=True`` or ``"sampled"`` (``Line.latency``), each worker thread
times the jobs it runs (wait and run time) and keeps the times raw, as
*samples*, counting them in batches (``fold``) into a flat list of its own
(``new_timings``), written only by that thread; ``Pool.stats()`` adds those
lists, and each worker's samples not counted yet, up on read (``merged``)
and summarises them (``summarize``). Times are whole nanoseconds of
``clock``.

Which jobs are timed: every job that follows one that ran for
``SAMPLE_BELOW`` or longer, and one in ``SAMPLE_EVERY`` of the jobs that
follow shorter ones. A timed job is counted with a *weight*: itself and
the jobs its worker ran untimed since its last timed one, whose times it
stands for; jobs run since a worker's last timed one are counted in that
one's buckets when read (``count_pending``). So every job run is counted
once, in some bucket, and jobs of ``SAMPLE_BELOW`` or more are counted in
their own unless a shorter one ran just before them on their worker.
Timing a job costs three clock reads and a few list operations, a tenth of
a no-op round trip; one job in ``SAMPLE_EVERY`` keeps that within a few
percent (docs/design.md, "Latency histograms").

Buckets: four per power of two. A time *n* falls in the bucket of its top
three bits, so a bucket ``[lo, hi)`` has ``hi <= 1.25 * lo``; times below
8 ns have a bucket each. A bucket's midpoint is therefore within 12.5% of
any time in it, and every figure but the count is such an estimate: a
running sum or maximum would cost the worker loop more than the counts do
(docs/performance.md, "Latency").
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "BUCKETS",
    "EMPTY",
    "FOLD_AT",
    "SAMPLE_BELOW",
    "SAMPLE_EVERY",
    "LatencySummary",
    "bucket_bounds",
    "bucket_index",
    "clock",
    "count_pending",
    "fold",
    "merged",
    "new_timings",
    "summarize",
]

# Buckets per histogram: enough for any time below 2**64 ns (584 years).
BUCKETS = 252
# A worker's timings list: the wait histogram, then the run histogram.
WAIT = 0
RUN = BUCKETS
_SIZE = 2 * BUCKETS
# The clock of every recorded time: whole nanoseconds, cheaper to bucket than a float.
clock = time.monotonic_ns
_NS = 1e-9
_LAST_NS = 2**64 - 1


# A worker counts its samples once it holds this many: in a batch, a time
# costs about half what it does counted as its job ends (docs/design.md,
# "Latency histograms").
FOLD_AT = 128
# Jobs that follow one shorter than SAMPLE_BELOW ns are timed one in SAMPLE_EVERY.
SAMPLE_BELOW = 20_000
SAMPLE_EVERY = 16


def fold(samples: list[tuple[int, int, int]], timings: list[int]) -> None:
    """Count *samples*, ``(wait, run, weight)`` each, into the histograms of *timings*."""
    wait_base = WAIT - 12  # bucket_index()'s offset, plus where the histogram starts
    run_base = RUN - 12
    for wait, run, weight in samples:
        b = (wait | 7).bit_length()
        timings[(b << 2) + (wait >> (b - 3)) + wait_base] += weight
        b = (run | 7).bit_length()
        timings[(b << 2) + (run >> (b - 3)) + run_base] += weight


def count_pending(timings: list[int], ran: int, last: tuple[int, int, int] | None) -> None:
    """
    Count the jobs a worker ran since its last timed one in that one's buckets.

    *ran* is how many jobs the worker has run; *timings* holds its samples so
    far, the last of them *last*. The jobs run but not counted yet (fewer
    than ``SAMPLE_EVERY``) are added to the buckets of *last*.
    """
    pending = ran - sum(timings[WAIT : WAIT + BUCKETS])
    if pending > 0 and last is not None:
        timings[WAIT + bucket_index(last[0])] += pending
        timings[RUN + bucket_index(last[1])] += pending


def new_timings() -> list[int]:
    """A worker's empty timings: the wait and run histograms."""
    return [0] * _SIZE


def bucket_index(ns: int) -> int:
    """The bucket of a time of *ns* nanoseconds (``0 <= ns < 2**64``)."""
    b = (ns | 7).bit_length()
    return (b << 2) + (ns >> (b - 3)) - 12


def bucket_bounds(index: int) -> tuple[int, int]:
    """The times ``[lo, hi)``, in nanoseconds, that bucket *index* holds."""
    if index < 8:
        return index, index + 1
    # index = 4 * (b - 2) + (top - 4), top being the time's top three bits
    octave, sub = divmod(index, 4)
    shift = octave - 1
    top = sub + 4
    return top << shift, (top + 1) << shift


def merged(all_timings: Iterable[Sequence[int]]) -> list[int]:
    """The sum of several timings lists, as a new list."""
    total = [sum(column) for column in zip(*all_timings, strict=True)]
    return total or new_timings()


@attrs.frozen
class LatencySummary:
    """
    How long the jobs a pool ran waited for a worker, or ran: a summary in seconds.

    ``count`` is exact. The others are estimates from a histogram with four
    buckets per power of two, each within 12.5% of the exact figure for the
    same times: the sum, the maximum, and the nearest-rank percentiles (never
    above :attr:`max`). All are 0 while ``count`` is 0, as they stay for a
    pool made with ``latency=False`` (the default), which times nothing.

    Not guaranteed with ``latency="sampled"``: that every job's time is in
    them. Jobs that follow a short one (under 20 µs) on their worker are
    timed one in 16, and each one not timed is counted in the buckets of a
    job its worker timed, so a rare long job among short ones may be missed
    by :attr:`max` and the tail percentiles (``count`` stays exact).
    """

    count: int
    """How many jobs, exactly; each job a worker ran is counted once it has run."""
    total: float
    """The sum of their times, in seconds (``total / count`` estimates the mean)."""
    p50: float
    """The median, in seconds."""
    p90: float
    """The 90th percentile, in seconds."""
    p99: float
    """The 99th percentile, in seconds."""
    max: float
    """The longest, in seconds (the midpoint of the highest bucket counted)."""
    buckets: tuple[int, ...] = attrs.field(default=(0,) * BUCKETS, repr=False)
    """The histogram itself, the count in each internal bucket (see :meth:`count_at_most`)."""

    def quantile(self, q: float) -> float:
        """
        Estimate the *q*-quantile, in seconds (``quantile(0.99)`` is :attr:`p99`).

        Args:
            q: A number from 0 to 1.

        Returns:
            The estimate (within 12.5% of the exact nearest-rank quantile,
            never above :attr:`max`), or 0.0 while :attr:`count` is 0.

        Raises:
            ValueError: *q* is not a number from 0 to 1.
        """
        if not isinstance(q, int | float) or not 0 <= q <= 1:
            msg = f"q must be a number from 0 to 1 (got {q!r})"
            raise ValueError(msg)
        return _quantile(self.buckets, self.count, q) * _NS

    def count_at_most(self, seconds: float) -> int:
        """
        How many times were at most *seconds*, counting whole buckets only.

        A bucket is counted when every time it can hold is at most *seconds*
        (rounded to whole nanoseconds), so the result is exact when *seconds*
        is a bucket's edge and otherwise may leave out times less than 20%
        below *seconds*; it never counts a longer time.

        Raises:
            ValueError: *seconds* is not a non-negative number.
        """
        if not isinstance(seconds, int | float) or not seconds >= 0:
            msg = f"seconds must be a non-negative number (got {seconds!r})"
            raise ValueError(msg)
        if math.isinf(seconds):
            return self.count
        limit = round(seconds / _NS)
        if limit >= _LAST_NS:
            return self.count
        # Every bucket below the one holding limit + 1 ends at or below limit.
        return sum(self.buckets[: bucket_index(limit + 1)])


EMPTY = LatencySummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)


def _midpoint(index: int) -> float:
    # Of the whole nanoseconds a bucket holds, lo to hi - 1.
    lo, hi = bucket_bounds(index)
    return (lo + hi - 1) / 2


def _quantile(buckets: Sequence[int], count: int, q: float) -> float:
    # The midpoint of the bucket holding the nearest rank, in ns.
    if count == 0:
        return 0.0
    rank = max(1, math.ceil(q * count))
    seen = 0
    for index, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return _midpoint(index)
    raise AssertionError("count exceeds the buckets' sum")  # pragma: no cover


def summarize(timings: Sequence[int], half: int) -> LatencySummary:
    """The summary of the wait (*half* = ``WAIT``) or run (``RUN``) histogram of *timings*."""
    buckets = tuple(timings[half : half + BUCKETS])
    count = sum(buckets)
    if count == 0:
        return EMPTY
    return LatencySummary(
        count=count,
        total=sum(n * _midpoint(i) for i, n in enumerate(buckets) if n) * _NS,
        p50=_quantile(buckets, count, 0.5) * _NS,
        p90=_quantile(buckets, count, 0.9) * _NS,
        p99=_quantile(buckets, count, 0.99) * _NS,
        max=_quantile(buckets, count, 1.0) * _NS,
        buckets=buckets,
    )
