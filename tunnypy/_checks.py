"""Argument checks shared by the public classes: each names what was wrong and what arrived."""

from __future__ import annotations

import math
import numbers
import time
from decimal import Decimal
from typing import Literal, TypeAlias

__all__ = ["Latency", "check_latency", "check_size", "check_timeout", "deadline_in"]

Latency: TypeAlias = bool | Literal["sampled"]
"""What a pool times (its *latency*): nothing, every job, or a sample of short ones."""


def check_latency(value: object) -> Latency:
    """Return *value*, ``True``, ``False`` or ``"sampled"``; raise naming ``latency``."""
    if isinstance(value, bool) or value == "sampled":
        return value
    msg = f"latency must be True, False or 'sampled' (got {type(value).__name__} {value!r})"
    raise (ValueError if isinstance(value, str) else TypeError)(msg)


def check_size(value: object, name: str = "size", *, positive: bool = False) -> int:
    """Return *value*, a non-negative (or, with *positive*, positive) int; raise naming *name*."""
    kind = "positive" if positive else "non-negative"
    if isinstance(value, bool) or not isinstance(value, int):
        msg = f"{name} must be a {kind} int (got {type(value).__name__} {value!r})"
        raise TypeError(msg)
    if value < positive:
        msg = f"{name} must be a {kind} int (got {value!r})"
        raise ValueError(msg)
    return value


def check_timeout(value: object, name: str) -> float:
    """
    Return *value*, a non-negative real number of seconds, as a float; raise naming *name*.

    ``int``, ``float``, ``Fraction``, ``Decimal`` and any other
    ``numbers.Real`` are taken; ``bool`` is not. A value too large for a
    float becomes ``inf``: no limit.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real | Decimal):
        kind = type(value).__name__
        msg = f"{name} must be a non-negative number of seconds (got {kind} {value!r})"
        raise TypeError(msg)
    try:
        number = float(value)
    except OverflowError:  # an int or Fraction beyond a float's range
        number = -math.inf if value < 0 else math.inf
    except ValueError:  # Decimal("sNaN") refuses to become a float
        number = math.nan
    if math.isnan(number) or number < 0:
        msg = f"{name} must be a non-negative number of seconds (got {value!r})"
        raise ValueError(msg)
    return number


def deadline_in(timeout: float | None) -> float | None:
    """The ``time.monotonic()`` time *timeout* seconds from now; ``None`` for no limit (``inf``)."""
    if timeout is None or timeout == math.inf:
        return None
    return time.monotonic() + timeout
