"""
Closing the cluster that DaskWorkers.local() made drops distributed's INFO records.

LocalCluster lifts its own silencing of distributed's log handler as its close
begins to end, before its loop stops; a comm found closed meanwhile was logged
at INFO with a traceback to stderr. Stubs stand in for the client and cluster.
"""

from __future__ import annotations

import logging
import threading

import pytest

pytest.importorskip("distributed")

from tunnypy.contrib.dask import DaskWorkers


class Closing:
    """A client or cluster whose close() logs as distributed's comms do when closed under them."""

    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self.closed = closed

    def close(self) -> None:
        self.closed.append(self.name)
        batched = logging.getLogger("distributed.batched")
        batched.info("Batched Comm Closed (%s)", self.name)
        batched.warning("still shown (%s)", self.name)


def made_by_local(closed: list[str]) -> DaskWorkers:
    """A DaskWorkers as local() leaves it, on stubs, with one pool using it."""
    workers = object.__new__(DaskWorkers)
    workers._client = Closing("client", closed)
    workers._cluster = Closing("cluster", closed)
    workers._owns_client = True
    workers._lock = threading.Lock()
    workers._hosts = 1
    workers._closed = False
    return workers


def test_its_last_pool_closing_drops_info_and_keeps_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []
    workers = made_by_local(closed)
    with caplog.at_level(logging.INFO, logger="distributed"):
        workers._host_closed()
        assert logging.getLogger("distributed").level == logging.INFO  # put back
    assert closed == ["client", "cluster"]
    shown = [r.getMessage() for r in caplog.records if r.name.startswith("distributed")]
    assert shown == ["still shown (client)", "still shown (cluster)"]


def test_a_client_it_was_given_is_not_closed(caplog: pytest.LogCaptureFixture) -> None:
    closed: list[str] = []
    workers = made_by_local(closed)
    workers._owns_client = False
    with caplog.at_level(logging.INFO, logger="distributed"):
        workers._host_closed()
    assert closed == []
