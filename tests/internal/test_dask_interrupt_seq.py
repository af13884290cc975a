"""
DaskWorkers' interrupt names its job: one arriving after its job returned reaches no later job.

The pool cannot order that race on purpose (the interrupt message usually
arrives first), so the test drives one proxy directly and sends the stale
interrupt itself, while the next job runs.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.helpers import WAIT

pytest.importorskip("distributed")

from tests.test_dask_workers import (
    DaskSuite,
    _made,
    _records,
    client,
    event,
    fresh,
    threads_checked_by_module_fixture,
)
from tunnypy._isolation import ChildOptions
from tunnypy.contrib.dask import DaskWorkers

__all__ = ["client", "threads_checked_by_module_fixture"]  # the shared cluster and its threads


def test_a_stale_interrupt_reaches_no_later_job(client: Any) -> None:
    options = ChildOptions(kill_grace=60.0, max_jobs_per_child=None, max_memory_per_child=None)
    host = DaskWorkers(client).open(DaskSuite, options)
    proxy = host.new_worker()
    try:
        first = fresh("first")
        event(f"{first}-go").set()
        assert proxy.process(("hold", first)) == first
        stale = proxy.seq
        second = fresh("second")
        outcome: list[Any] = []
        running = threading.Thread(
            target=lambda: outcome.append(proxy.process(("hold", second))), name="second"
        )
        running.start()
        assert event(f"{second}-in").wait(WAIT)
        proxy.actor.interrupt(stale).result(WAIT)  # the first job's, arriving late
        proxy.actor.interrupt(proxy.seq).result(WAIT)  # the second's own: ends its wait
        running.join(WAIT)
        assert outcome == [second]
        assert _records[second][1] is True
        assert _made[_records[second][0]].interrupts == 1  # the stale one ran no hook
    finally:
        proxy.terminate()
        host.close()
