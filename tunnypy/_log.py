"""
Library logging: structlog events routed through the standard library.

tunnypy never calls ``structlog.configure()``. Events go to the stdlib logger
``tunnypy``, which carries a ``NullHandler``, so the library is silent until
the application configures ``logging`` (or adds a handler to ``tunnypy``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import structlog

_stdlib = logging.getLogger("tunnypy")
_stdlib.addHandler(logging.NullHandler())


def _to_stdlib(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[str], Mapping[str, Any]]:
    # Render ``event k=v ...`` as the message and keep the key-values as
    # ``extra`` so a structured handler can still read them.
    exc_info = event_dict.pop("exc_info", None)
    event = str(event_dict.pop("event", ""))
    parts = [event, *(f"{key}={safe_repr(value)}" for key, value in event_dict.items())]
    return (" ".join(parts),), {"exc_info": exc_info, "extra": {"tunnypy": dict(event_dict)}}


log: structlog.stdlib.BoundLogger = structlog.wrap_logger(
    _stdlib,
    processors=[structlog.stdlib.filter_by_level, _to_stdlib],
    wrapper_class=structlog.stdlib.BoundLogger,
)


def safe_repr(value: object) -> str:
    """
    ``repr(value)``, or a stand-in naming its type if that raises.

    For log lines about the user's objects: a failing ``__repr__`` must never
    change the outcome of the call being logged.
    """
    try:
        return repr(value)
    except Exception:
        pass
    try:
        return f"<{type(value).__qualname__} object; repr() failed>"
    except Exception:
        return "<object; repr() failed>"


def debug_enabled() -> bool:
    """
    Whether ``tunnypy`` debug events would be emitted.

    structlog costs ~5 µs to drop a disabled event; code on a per-worker or
    per-job path asks this (~0.3 µs) first.
    """
    return _stdlib.isEnabledFor(logging.DEBUG)


def log_quietly(method: Callable[..., None], event: str, **fields: Any) -> None:
    """Log *event* with *method*; a logging handler that raises is ignored."""
    # A broken logging setup must not end a replacing or keeper thread, nor
    # leave a listed worker unstarted.
    try:  # noqa: SIM105 - the comment says why
        method(event, **fields)
    except BaseException:
        pass
