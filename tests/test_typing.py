"""Static types: checked by mypy --strict in `make test`, and run here too."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import assert_type

import tunnypy


class Upper(tunnypy.BaseWorker[str, str]):
    def process(self, payload: str) -> str:
        return payload.upper()


class TestTypes:
    def test_from_func_infers_payload_and_result(self) -> None:
        """Pool.from_func(2, str.upper).process("a") is a str to mypy and at run time."""
        with tunnypy.Pool.from_func(2, str.upper) as pool:
            assert_type(pool, tunnypy.Pool[str, str])
            result = pool.process("a")
            assert_type(result, str)
            assert result == "A"
            assert_type(pool.submit("b"), Future[str])
            assert_type(pool.process_timed("c", 1.0), str)

    def test_worker_factory_fixes_the_types(self) -> None:
        """A pool built from a BaseWorker[str, str] factory is a Pool[str, str]."""
        with tunnypy.Pool(1, Upper) as pool:
            assert_type(pool, tunnypy.Pool[str, str])
            assert pool.process("x") == "X"

    def test_callback_pool_takes_callables(self) -> None:
        """A callback pool's payloads are zero-argument callables."""
        with tunnypy.Pool.from_callback(1) as pool:
            assert_type(pool, tunnypy.Pool[Callable[[], object], object])
            assert pool.process(lambda: 3) == 3

    def test_executor_submit_and_map_keep_the_types(self) -> None:
        """Executor.submit(fn, ...) is a Future of fn's result; map yields fn's results."""
        with tunnypy.Executor(1) as executor:
            future = executor.submit(str.upper, "a")
            assert_type(future, Future[str])
            assert future.result() == "A"
            results = executor.map(len, ["ab", "c"], buffersize=1)
            assert list(results) == [2, 1]
            assert_type(next(executor.map(len, ["x"])), int)
