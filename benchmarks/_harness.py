"""
The measuring frame every scenario shares.

A scenario builds its contenders once, then :func:`interleave` runs each of
them once per round, rotating the order every round (A B C, B C A, C A B ...)
so that drift in the machine's load lands on every contender alike. One round
of one contender yields one :class:`Sample`; a :class:`Row` keeps them all and
reports their median and spread. Ratios between rows, not absolute numbers,
are the headline: the machine is shared and noisy.
"""

from __future__ import annotations

import gc
import math
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import attrs

__all__ = [
    "Config",
    "Row",
    "Sample",
    "ScenarioResult",
    "Target",
    "interleave",
    "percentile",
    "progress",
    "spread",
]

Better = Literal["lower", "higher"]


@attrs.frozen
class Config:
    """What one pass runs: sizes shrink to seconds in smoke mode."""

    smoke: bool
    rounds: int

    def size(self, full: int, smoke: int) -> int:
        """*full* normally, *smoke* in smoke mode."""
        return smoke if self.smoke else full


@attrs.frozen
class Sample:
    """One contender's measurement in one round, plus scenario-specific extras."""

    value: float
    extra: dict[str, float] = attrs.Factory(dict)


@attrs.frozen
class Target:
    """
    A goal from the issue, checked against the rows of one scenario.

    With a *baseline*, the checked number is ``subject.key / baseline.key``
    (for example tunnypy's median latency over the eventfd floor's); without
    one, it is ``subject.key`` itself. *key* is ``"median"`` or an extra's name.
    """

    label: str
    subject: str
    op: Literal["<=", ">="]
    bound: float
    baseline: str | None = None
    key: str = "median"
    informational: bool = False


@attrs.define
class Row:
    """Every round's sample of one contender."""

    contender: str
    label: str
    samples: list[Sample] = attrs.Factory(list)
    extra: dict[str, float] = attrs.Factory(dict)

    def values(self) -> list[float]:
        return [s.value for s in self.samples]

    def summary(self) -> dict[str, Any]:
        values = self.values()
        q1, q3 = spread(values)
        extra = dict(self.extra)
        keys = sorted({k for s in self.samples for k in s.extra})
        for key in keys:
            extra[key] = statistics.median(s.extra[key] for s in self.samples if key in s.extra)
        return {
            "contender": self.contender,
            "label": self.label,
            "rounds": values,
            "median": statistics.median(values),
            "q1": q1,
            "q3": q3,
            "min": min(values),
            "max": max(values),
            "extra": extra,
        }


@attrs.define
class ScenarioResult:
    """One scenario's rows (or one variant of it, such as a size), with its targets."""

    scenario: str
    title: str
    metric: str
    unit: str
    better: Better
    subject: str
    rows: list[Row]
    targets: list[Target] = attrs.Factory(list)
    variant: str = ""
    notes: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "variant": self.variant,
            "title": self.title,
            "metric": self.metric,
            "unit": self.unit,
            "better": self.better,
            "subject": self.subject,
            "notes": self.notes,
            "rows": [row.summary() for row in self.rows],
            "targets": [attrs.asdict(t) for t in self.targets],
        }


def percentile(values: Sequence[float], q: float) -> float:
    """The *q*-th percentile (0-100) of *values*, by linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The interquartile range of *values* as ``(q1, q3)``."""
    return percentile(values, 25), percentile(values, 75)


def interleave(
    contenders: dict[str, tuple[str, Callable[[], Sample]]], rounds: int, title: str
) -> list[Row]:
    """
    Run every contender once per round, rotating the order each round.

    *contenders* maps an id to ``(label, measure)``; ``measure()`` runs one
    round and returns its sample. A collection runs before each measurement so
    one contender's garbage is not collected on another's clock.
    """
    rows = {cid: Row(cid, label) for cid, (label, _) in contenders.items()}
    ids = list(contenders)
    for r in range(rounds):
        k = r % len(ids)
        for cid in ids[k:] + ids[:k]:
            gc.collect()
            rows[cid].samples.append(contenders[cid][1]())
        progress(f"  {title}: round {r + 1}/{rounds}")
    return list(rows.values())


def progress(message: str) -> None:
    """A progress line on stderr; results go to files, never to stdout."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """Yield a function returning the seconds elapsed since entering."""
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start
