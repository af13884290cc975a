"""
``python -m benchmarks.wire``: the wire to a child process, and what it was chosen over.

An echo child answers each message with the object it received. Three ways
to carry the object, interleaved round by round in one process:

- ``plain``: ``Connection.send_bytes(pickle.dumps(obj, protocol=5))`` and
  ``pickle.loads(Connection.recv_bytes())``, the first ``_wire``;
- ``wire``: ``tunnypy._wire.send`` / ``recv``;
- ``shm`` (large payloads only): a shared-memory segment made once and
  mapped by both sides; the sender copies the bytes in, the receiver copies
  them out into a new ``bytes`` object, and a small message on the pipe says
  how many. The least a shared-memory transport of ``bytes`` can do.

Reported: the median round trip of a small call (a tuple of a few items)
and of a large ``bytes`` payload (64 MiB by default). Run it under
``taskset -c 0`` for the pinned figures.
"""

from __future__ import annotations

import argparse
import mmap
import multiprocessing
import os
import pickle
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from tunnypy import _wire

__all__ = ["main"]

SMALL = ("job", (1, "x"), None)


def _plain_send(conn: Connection, obj: object) -> None:
    conn.send_bytes(pickle.dumps(obj, protocol=5))


def _plain_recv(conn: Connection) -> object:
    return pickle.loads(conn.recv_bytes())


WAYS: dict[str, tuple[Callable[[Connection, object], None], Callable[[Connection], object]]] = {
    "plain": (_plain_send, _plain_recv),
    "wire": (_wire.send, _wire.recv),
}


def _echo(conn: Connection, way: str, shm_path: str | None) -> None:
    """Child: send back what arrives, until None."""
    if way == "shm":
        assert shm_path is not None
        with open(shm_path, "r+b") as file, mmap.mmap(file.fileno(), 0) as segment:
            view = memoryview(segment)
            while (n := _wire.recv(conn)) is not None:
                assert isinstance(n, int)
                data = bytes(view[:n])  # the object the job would get
                view[:n] = data  # the job's result, back in
                del data
                _wire.send(conn, n)
            view.release()
        return
    send, recv = WAYS[way]
    while (obj := recv(conn)) is not None:
        send(conn, obj)


class Echo:
    """An echo child for one way of carrying objects."""

    def __init__(self, way: str, size: int) -> None:
        self.way = way
        self.shm_path: str | None = None
        self.view: memoryview | None = None
        if way == "shm":
            fd, self.shm_path = tempfile.mkstemp(prefix="tunnypy-wire-", dir="/dev/shm")
            os.ftruncate(fd, size)
            self.segment = mmap.mmap(fd, size)
            os.close(fd)
            self.view = memoryview(self.segment)
        context: Any = multiprocessing.get_context("forkserver")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_echo, args=(child, way, self.shm_path))
        self.process.start()
        child.close()

    def call(self, obj: object) -> object:
        if self.view is None:
            send, recv = WAYS[self.way]
            send(self.conn, obj)
            return recv(self.conn)
        assert isinstance(obj, bytes)
        self.view[: len(obj)] = obj
        _wire.send(self.conn, len(obj))
        n = _wire.recv(self.conn)
        assert isinstance(n, int)
        return bytes(self.view[:n])

    def close(self) -> None:
        _wire.send(self.conn, None)
        self.process.join(10)
        self.conn.close()
        if self.view is not None:
            self.view.release()
            self.segment.close()
        if self.shm_path is not None:
            os.unlink(self.shm_path)


def _median_call(echo: Echo, obj: object, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        echo.call(obj)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(ways: list[str], obj: object, calls: int, rounds: int, size: int) -> dict[str, float]:
    """Median over rounds of each way's median call, in seconds, interleaved and rotated."""
    echoes = {way: Echo(way, size) for way in ways}
    try:
        for echo in echoes.values():
            _median_call(echo, obj, 2)
        per_round: dict[str, list[float]] = {way: [] for way in ways}
        for r in range(rounds):
            k = r % len(ways)
            for way in ways[k:] + ways[:k]:
                per_round[way].append(_median_call(echoes[way], obj, calls))
    finally:
        for echo in echoes.values():
            echo.close()
    return {way: statistics.median(values) for way, values in per_round.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wire", description=__doc__)
    parser.add_argument("--mib", type=int, default=64, help="large payload, MiB (default 64)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (default 7)")
    parser.add_argument("--small-calls", type=int, default=5_000, help="small calls per round")
    parser.add_argument("--large-calls", type=int, default=3, help="large calls per round")
    args = parser.parse_args(argv)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}; CPUs allowed {sorted(os.sched_getaffinity(0))}")
    small = measure(["plain", "wire"], SMALL, args.small_calls, args.rounds, 0)
    print(
        f"small call round trip: plain {small['plain'] * 1e6:.1f} µs, "
        f"wire {small['wire'] * 1e6:.1f} µs (wire/plain {small['wire'] / small['plain']:.2f})"
    )
    size = args.mib * 1024 * 1024
    big = os.urandom(size)
    large = measure(["plain", "wire", "shm"], big, args.large_calls, args.rounds, size)
    print(
        f"{args.mib} MiB bytes round trip: plain {large['plain'] * 1e3:.1f} ms, "
        f"wire {large['wire'] * 1e3:.1f} ms, shm {large['shm'] * 1e3:.1f} ms "
        f"(wire/plain {large['wire'] / large['plain']:.2f}, "
        f"wire/shm {large['wire'] / large['shm']:.2f})"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
