"""
tunnypy.contrib.prometheus: a worker replaced after failing, its factory failing once meanwhile.

A worker fails only when tunnypy's own code fails in its loop, so the failure
is injected as tests/internal/test_replacement.py does; the scrape is public.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

import tunnypy
from tests.helpers import WAIT, replaced, wait_for
from tests.internal.test_replacement import Factory, fail_next_worker
from tests.test_prometheus import scrape, value
from tunnypy.contrib import prometheus


def test_replaced_and_factory_failures() -> None:
    """The factory fails at the replacement's first try, then works (tried again at once)."""
    registry = CollectorRegistry()
    factory = Factory(fail_on={2})  # call 1 made the first worker; 2 is the first replacement
    with tunnypy.Pool(1, factory) as pool:
        prometheus.register(pool, name="p", registry=registry)
        fail_next_worker(pool)
        assert pool.process_timed("first", WAIT) == "first"
        wait_for(lambda: replaced(pool, 1), "the failing worker to be replaced")
        assert factory.calls == 3
        families = scrape(registry)
        stats = pool.stats()
        found = {
            field: value(families[f"tunnypy_pool_{field}"], f"tunnypy_pool_{field}_total", pool="p")
            for field in ("replaced", "factory_failures", "respawned", "recycled")
        }
        assert found == {field: getattr(stats, field) for field in found}
        assert found == {"replaced": 1, "factory_failures": 1, "respawned": 0, "recycled": 0}
        assert families["tunnypy_pool_replaced"].type == "counter"
        assert families["tunnypy_pool_factory_failures"].type == "counter"
        assert pool.process_timed("served", WAIT) == "served"
