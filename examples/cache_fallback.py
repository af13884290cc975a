"""
Falling back instead of waiting: a cache that serves its last value when the pool is busy.

The article's advice for a saturated pool: a caller can wait with a timeout,
or use old data instead of waiting. ``Pool.try_process`` makes the second
possible: it raises ``PoolBusyError`` at once, starting nothing, when no
worker is free. The cache below asks for a fresh value that way and, when the
pool is busy, answers with the value it already has. Only when it has nothing
yet does it wait, with a timeout.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

import tunnypy

K = TypeVar("K")
V = TypeVar("V")


class FallbackCache(Generic[K, V]):
    """Fresh values from a pool when a worker is free, the last known value when not."""

    def __init__(self, pool: tunnypy.Pool[K, V], timeout: float) -> None:
        self.pool = pool
        self.timeout = timeout
        self.values: dict[K, V] = {}
        self.lock = threading.Lock()

    def get(self, key: K) -> tuple[V, bool]:
        """Return ``(value, fresh)``; *fresh* is False when the pool was busy."""
        with self.lock:
            known = key in self.values
            cached = self.values.get(key)
        try:
            value = self.pool.try_process(key)
        except tunnypy.PoolBusyError:
            if known:
                return cached, False  # type: ignore[return-value]
            value = self.pool.process_timed(key, self.timeout)  # nothing to fall back on: wait
        with self.lock:
            self.values[key] = value
        return value, True

    def refresh(self, key: K) -> None:
        """Fetch *key* anew, waiting (up to the timeout) for a worker: for background refreshers."""
        value = self.pool.process_timed(key, self.timeout)
        with self.lock:
            self.values[key] = value


class PriceBackend:
    """A slow upstream service; ``hold`` makes the next fetch hang until released."""

    def __init__(self) -> None:
        self.price = 100
        self.hold = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()

    def fetch(self, symbol: str) -> int:
        if self.hold.is_set():
            self.holding.set()
            self.release.wait(10)
        self.price += 1
        return self.price


def main() -> None:
    backend = PriceBackend()
    with tunnypy.Pool.from_func(1, backend.fetch) as pool:
        cache: FallbackCache[str, int] = FallbackCache(pool, timeout=5.0)

        value, fresh = cache.get("TUNY")
        # expect: first read: 101 (fresh)
        print(f"first read: {value} ({'fresh' if fresh else 'stale'})")

        # A slow refresh occupies the only worker.
        backend.hold.set()
        refresh = threading.Thread(target=cache.refresh, args=("TUNY",))
        refresh.start()
        backend.holding.wait(10)

        for _ in range(3):
            value, fresh = cache.get("TUNY")
            state = "fresh" if fresh else "stale: the pool is busy, served the cached value"
            # expect: read during the slow refresh: 101 (stale: the pool is busy,
            print(f"read during the slow refresh: {value} ({state})")

        backend.hold.clear()
        backend.release.set()
        refresh.join(10)
        value = cache.values["TUNY"]
        # expect: after the refresh the cache holds 102
        print(f"after the refresh the cache holds {value}")


if __name__ == "__main__":
    main()
