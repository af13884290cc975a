"""
The Dask proxy's block_until_ready raises RestartFailed when it cannot make its actor again.

The pool then replaces the worker (tests/test_process_replacement.py proves
that path with process workers); here a stub host stands in for the cluster,
so no Dask worker is needed.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("distributed")

from tunnypy._worker import RestartFailed
from tunnypy.contrib.dask import _DaskWorker, _LeavingError


class NoDaskWorker:
    """A host whose every claim of a Dask worker raises *error*."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.counted: list[str] = []

    def claim(self, *, again: bool) -> str:
        raise self.error

    def count(self, name: str) -> None:
        self.counted.append(name)


def test_an_actor_that_cannot_be_made_again_raises_restart_failed() -> None:
    """The error is the cause; nothing is counted as respawned."""
    host = NoDaskWorker(TimeoutError("no dask worker became free"))
    proxy = _DaskWorker(host)  # type: ignore[arg-type] # the stub has what it uses
    with pytest.raises(RestartFailed, match="could not be made again: TimeoutError") as caught:
        proxy.block_until_ready()
    assert caught.value.__cause__ is host.error
    assert host.counted == []


def test_a_retiring_worker_stops_without_raising() -> None:
    """_LeavingError (its pool is closing or shrinking) is not a failure."""
    host: Any = NoDaskWorker(_LeavingError())
    proxy = _DaskWorker(host)
    proxy.block_until_ready()
    assert proxy.actor is None
    assert host.counted == []
