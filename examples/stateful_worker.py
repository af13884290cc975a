"""
A stateful worker: each worker owns a connection and a rate limit.

The example starts a tiny line-based TCP service on 127.0.0.1 (it upper-cases
each line and tags the reply with the connection's number), then runs a pool
whose workers each hold one persistent connection to it. ``block_until_ready``
is a token bucket, so no connection sends faster than its limit, and
``terminate`` closes the connection when the pool closes.
"""

from __future__ import annotations

import itertools
import socket
import socketserver
import threading
import time
from typing import BinaryIO

import tunnypy

WORKERS = 3
RATE = 20.0
"""Requests per second allowed on each connection."""
BURST = 2
"""Requests a connection may send back to back before the rate applies."""
REQUESTS = 30
IO_TIMEOUT = 5.0
"""Upper bound on any socket operation: the example never hangs."""


# -- the local service ----------------------------------------------------------


class UpperService(socketserver.ThreadingTCPServer):
    """Replies ``<connection number> <LINE>`` to every line it receives."""

    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), UpperHandler)
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()
        self.opened = 0
        self.open_now = 0


class UpperHandler(socketserver.StreamRequestHandler):
    server: UpperService
    timeout = IO_TIMEOUT

    def handle(self) -> None:
        with self.server.lock:
            number = next(self.server.numbers)
            self.server.opened += 1
            self.server.open_now += 1
        try:
            for line in self.rfile:  # ends when the client closes the connection
                self.wfile.write(b"%d %s\n" % (number, line.strip().upper()))
        finally:
            with self.server.lock:
                self.server.open_now -= 1


# -- the worker -------------------------------------------------------------------


class TokenBucket:
    """Allows *rate* events per second on average, *burst* at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self) -> None:
        """Block until a token is available, then use it."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            time.sleep((1.0 - self.tokens) / self.rate)
            self.last = time.monotonic()
            self.tokens = 1.0
        self.tokens -= 1.0


class ConnectionWorker(tunnypy.BaseWorker[str, str]):
    """
    Sends each payload as one line over its own connection and returns the reply.

    Everything here belongs to one worker thread: the pool calls
    ``block_until_ready``, ``process`` and ``terminate`` from that thread only,
    so the connection and the bucket need no lock.
    """

    def __init__(self, address: tuple[str, int]) -> None:
        # Runs in the factory, on the thread that grows the pool: a failure to
        # connect reaches whoever called Pool(...) or set_size(...).
        self.sock = socket.create_connection(address, timeout=IO_TIMEOUT)
        self.reader: BinaryIO = self.sock.makefile("rb")
        self.bucket = TokenBucket(RATE, BURST)
        self.sent = 0
        self.number = "?"  # the service's number for this connection, from the first reply

    def block_until_ready(self) -> None:
        # Called before the worker offers itself for each job: here is where it
        # waits for its rate limit, so a caller is never handed a worker that
        # would then sit on the job.
        self.bucket.take()

    def process(self, payload: str) -> str:
        self.sock.sendall(payload.encode() + b"\n")
        reply = self.reader.readline()
        if not reply:
            raise ConnectionError("the service closed the connection")
        self.sent += 1
        self.number, _, text = reply.decode().strip().partition(" ")
        return f"{text} (via #{self.number})"

    def terminate(self) -> None:
        # expect: terminate: closing connection #
        print(f"terminate: closing connection #{self.number} after {self.sent} requests")
        self.reader.close()
        self.sock.close()


def main() -> None:
    service = UpperService()
    serving = threading.Thread(target=service.serve_forever, name="upper-service")
    serving.start()
    try:
        address = service.server_address
        assert isinstance(address, tuple)
        host, port = str(address[0]), int(address[1])

        start = time.monotonic()
        with tunnypy.Pool(WORKERS, lambda: ConnectionWorker((host, port))) as pool:
            futures = [pool.submit(f"message {i}") for i in range(REQUESTS)]
            replies = [future.result(timeout=IO_TIMEOUT) for future in futures]
            elapsed = time.monotonic() - start
            print("first replies:", replies[:3])
            connections = sorted({reply.rsplit("#", 1)[1].rstrip(")") for reply in replies})
            # expect: 30 requests over 3 connections
            print(f"{REQUESTS} requests over {len(connections)} connections")
            limit = WORKERS * RATE
            print(f"took {elapsed:.2f} s; the limit of {limit:.0f}/s allows at best", end=" ")
            print(f"{(REQUESTS - WORKERS * BURST) / limit:.2f} s")
            assert elapsed >= (REQUESTS - WORKERS * BURST) / limit * 0.9, "rate limit ignored"
        # Closing the pool ran every worker's terminate(), on its own thread.
    finally:
        service.shutdown()
        service.server_close()  # joins the handler threads
        serving.join(IO_TIMEOUT)
    # expect: service: 3 connections opened, 0 still open
    print(f"service: {service.opened} connections opened, {service.open_now} still open")


if __name__ == "__main__":
    main()
