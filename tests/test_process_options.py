"""The isolation keywords of Pool and Pool.from_func: bad values are refused, naming them."""

from __future__ import annotations

import re
from typing import Any

import pytest

import tunnypy
from tests.helpers import double
from tests.process_helpers import ChildWorker, square

BAD_OPTIONS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"isolation": "threads"}, ValueError, "isolation must be 'thread', 'process' or an object"),
    ({"isolation": 3}, TypeError, "isolation must be 'thread', 'process' or an object"),
    (
        {"isolation": "process", "kill_grace": float("nan")},
        ValueError,
        "kill_grace must be a non-negative number of seconds (got nan)",
    ),
    (
        {"isolation": "process", "kill_grace": -1},
        ValueError,
        "kill_grace must be a non-negative number of seconds (got -1)",
    ),
    (
        {"isolation": "process", "kill_grace": "1"},
        TypeError,
        "kill_grace must be a non-negative number of seconds (got str '1')",
    ),
    (
        {"isolation": "process", "max_jobs_per_child": 0},
        ValueError,
        "max_jobs_per_child must be a positive int (got 0)",
    ),
    (
        {"isolation": "process", "max_jobs_per_child": True},
        TypeError,
        "max_jobs_per_child must be a positive int (got bool True)",
    ),
    (
        {"isolation": "process", "max_memory_per_child": 1.5e9},
        TypeError,
        "max_memory_per_child must be a positive int (got float 1500000000.0)",
    ),
    (
        {"kill_grace": 1.0},
        ValueError,
        "kill_grace applies only to workers in processes (isolation='process'), "
        "and this pool's workers are threads",
    ),
    (
        {"isolation": "thread", "max_jobs_per_child": 5, "max_memory_per_child": 2**30},
        ValueError,
        "max_jobs_per_child and max_memory_per_child apply only to workers in processes",
    ),
]


def _ids(case: tuple[dict[str, Any], type[Exception], str]) -> str:
    return ",".join(f"{k}={v!r}" for k, v in case[0].items())


class TestIsolationOptions:
    """Every bad isolation option is refused before any worker starts."""

    @pytest.mark.parametrize("case", BAD_OPTIONS, ids=[_ids(c) for c in BAD_OPTIONS])
    def test_pool_refuses(self, case: tuple[dict[str, Any], type[Exception], str]) -> None:
        """Pool(...) raises the error naming the keyword and what arrived."""
        options, error, message = case
        with pytest.raises(error, match=re.escape(message)):
            tunnypy.Pool(1, ChildWorker, **options)

    @pytest.mark.parametrize("case", BAD_OPTIONS, ids=[_ids(c) for c in BAD_OPTIONS])
    def test_from_func_refuses(self, case: tuple[dict[str, Any], type[Exception], str]) -> None:
        """Pool.from_func(...) raises the same errors."""
        options, error, message = case
        with pytest.raises(error, match=re.escape(message)):
            tunnypy.Pool.from_func(1, square, **options)

    def test_a_factory_is_not_called_when_an_option_is_bad(self) -> None:
        """The options are checked before the factory is called or a child started."""
        called: list[int] = []

        def factory() -> ChildWorker:
            called.append(1)
            return ChildWorker()

        with pytest.raises(ValueError, match="kill_grace"):
            tunnypy.Pool(1, factory, kill_grace=2)
        assert called == []

    def test_thread_is_the_default_and_takes_no_child_options(self) -> None:
        """isolation='thread' explicitly behaves as the default."""
        with tunnypy.Pool.from_func(1, double, isolation="thread") as pool:
            assert pool.process(2) == 4
            stats = pool.stats()
            counts = (stats.respawned, stats.killed, stats.crashed, stats.children_recycled)
            assert counts == (0, 0, 0, 0)


class TestProcesses:
    """tunnypy.Processes chooses the start method of a pool's children."""

    @pytest.mark.parametrize("method", ["fork", "threads", ""])
    def test_an_unsafe_or_unknown_start_method_is_refused(self, method: str) -> None:
        """'fork' (unsafe in a threaded parent) and unknown names raise ValueError naming it."""
        with pytest.raises(ValueError, match=re.escape(f"(got {method!r})")):
            tunnypy.Processes(method)

    def test_forkserver_is_the_default_where_it_exists(self) -> None:
        """On Linux the default start method is forkserver."""
        assert tunnypy.Processes().start_method == "forkserver"
        assert repr(tunnypy.Processes("spawn")) == "Processes(start_method='spawn')"
