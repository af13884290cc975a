"""
An asyncio HTTP service whose blocking work runs on a tunnypy pool.

The service (stdlib ``asyncio.start_server``, loopback only) answers:

- ``GET /work?n=N&timeout=S``: runs a blocking job on the pool through
  ``await pool.aprocess(n, timeout=S)``. The request waits in the pool's line
  (backpressure: no unbounded queue), and a client that goes away, or a
  deadline that passes, interrupts its job. 504 on a missed deadline, 503
  when the line is full.
- ``GET /metrics``: the pool's metrics in Prometheus text format
  (``tunnypy.contrib.prometheus``, extra ``prometheus``), with wait and run
  time histograms since the pool times its calls (``latency="sampled"``:
  jobs this long are all timed, and a burst of tiny ones costs little).
- ``POST /resize?size=N``: resizes the pool while it serves.

Run as a script, it starts the service on a free port, sends it a burst of
requests as its own client, resizes the pool, prints an excerpt of
``/metrics`` and stops. ``--serve PORT`` keeps it running until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import time
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, generate_latest

import tunnypy
from tunnypy.contrib import prometheus

STEP = 0.002
"""Seconds per unit of pretend blocking work."""


class Hasher(tunnypy.BaseWorker[int, str]):
    """A stateful worker: its own buffer, set up once per worker thread."""

    def __init__(self) -> None:
        self.buffer = bytearray(1024)

    def process(self, payload: int) -> str:
        digest = hashlib.sha256()
        for _ in range(payload):
            if tunnypy.interrupted():  # the client gave up: stop early
                return "interrupted"
            digest.update(self.buffer)
            time.sleep(STEP)  # blocking I/O or a C call, off the event loop
        return digest.hexdigest()[:16]


class Service:
    """The HTTP front: parses one request per connection and routes it."""

    def __init__(self, pool: tunnypy.Pool[int, str], registry: CollectorRegistry) -> None:
        self.pool = pool
        self.registry = registry

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass  # headers: not needed here
            method, target, _ = request.decode("latin-1").split(" ", 2)
            status, body, kind = await self.route(method, target)
        except (ValueError, UnicodeDecodeError) as exc:
            status, body, kind = 400, f"bad request: {exc}\n".encode(), "text/plain"
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
            f"Content-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        try:
            await writer.drain()
        finally:
            writer.close()

    async def route(self, method: str, target: str) -> tuple[int, bytes, str]:
        url = urlsplit(target)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        if method == "GET" and url.path == "/work":
            n = int(query.get("n", "10"))
            timeout = float(query.get("timeout", "5"))
            try:
                result = await self.pool.aprocess(n, timeout=timeout)
            except tunnypy.JobTimedOutError:
                return 504, b"deadline passed; the job was interrupted\n", "text/plain"
            except tunnypy.PoolBusyError:
                return 503, b"busy; try again\n", "text/plain"
            return 200, json.dumps({"n": n, "digest": result}).encode(), "application/json"
        if method == "GET" and url.path == "/metrics":
            return 200, generate_latest(self.registry), "text/plain; version=0.0.4"
        if method == "POST" and url.path == "/resize":
            size = int(query["size"])
            # Growing calls the worker factory: off the loop, like any blocking call.
            await asyncio.to_thread(self.pool.set_size, size)
            return 200, json.dumps({"size": self.pool.size}).encode(), "application/json"
        return 404, b"not found\n", "text/plain"


async def fetch(port: int, method: str, target: str) -> tuple[int, bytes]:
    """One request to the service on 127.0.0.1:*port*; its status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def demo(service: Service, port: int) -> None:
    """Act as the service's client: a burst, a resize, a deadline, the metrics."""
    started = time.perf_counter()
    burst = await asyncio.gather(*(fetch(port, "GET", "/work?n=5") for _ in range(16)))
    statuses = sorted({status for status, _ in burst})
    elapsed = time.perf_counter() - started
    # expect: statuses [200]
    print(f"16 requests on 2 workers: statuses {statuses} in {elapsed:.2f} s")

    status, body = await fetch(port, "POST", "/resize?size=4")
    # expect: resized: 200 {"size": 4}
    print(f"resized: {status} {body.decode()}")

    status, body = await fetch(port, "GET", "/work?n=1000&timeout=0.05")
    # expect: a job past its deadline: 504
    print(f"a job past its deadline: {status} {body.decode().strip()}")

    _, metrics = await fetch(port, "GET", "/metrics")
    wanted = ("tunnypy_pool_size{", "tunnypy_pool_calls_total{", "tunnypy_pool_wait_seconds_count{")
    print("excerpt of /metrics:")
    for line in metrics.decode().splitlines():
        if line.startswith(wanted):
            print(f"  {line}")
    # expect: tunnypy_pool_size{pool="service"} 4.0
    # expect: tunnypy_pool_calls_total{outcome="completed",pool="service"} 16.0
    # expect: tunnypy_pool_calls_total{outcome="timed_out",pool="service"} 1.0


async def main(port: int | None) -> None:
    registry = CollectorRegistry()
    with tunnypy.Pool(2, Hasher, max_waiting=64, latency="sampled") as pool:
        prometheus.register(pool, name="service", registry=registry)
        service = Service(pool, registry)
        server = await asyncio.start_server(service.handle, "127.0.0.1", port or 0)
        bound = server.sockets[0].getsockname()[1]
        async with server:
            if port is None:
                await demo(service, bound)
            else:
                print(f"serving on http://127.0.0.1:{bound}/ (Ctrl-C stops)")
                await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", type=int, metavar="PORT", help="serve until Ctrl-C")
    asyncio.run(main(parser.parse_args().serve))
