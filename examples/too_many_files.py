"""
The article's failure mode, shown: one thread per request runs out of file descriptors.

A threaded HTTP server listens on 127.0.0.1 only. Two clients send it the same
load, each in its own subprocess with RLIMIT_NOFILE lowered to 256 so that a
failure comes fast and harms nothing else:

* naive: one thread and one connection per request, all in flight at once.
  It fails fast: at the first request that cannot open its socket ("too many
  open files", EMFILE) or start its thread, it stops starting more.
* pooled: the same requests submitted at once to a tunnypy pool of 50
  stateful workers, each keeping one HTTP/1.1 connection open for its life.
  It completes every request with at most 50 client sockets open.

Run it: ``python examples/too_many_files.py`` (``--requests``, ``--workers``,
``--nofile``, ``--json`` to change it). It stops by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import tunnypy

HOST = "127.0.0.1"
SERVER_LIFETIME = 120.0
"""The server shuts itself down after this many seconds, whatever happens."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a worker's connection serves many requests

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


# -- measuring the client's sockets ---------------------------------------------


def open_sockets() -> int:
    """Sockets this process holds open now."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            continue  # closed while we looked
    return count


class PeakSockets:
    """Samples the open-socket count in the background and keeps the peak."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            try:
                self.peak = max(self.peak, open_sockets())
            except OSError:  # at the fd limit even listing fds can fail
                continue

    def __enter__(self) -> PeakSockets:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, open_sockets())


# -- the two clients (each runs in its own subprocess) --------------------------


def naive(port: int, requests: int) -> dict[str, Any]:
    """One thread and one fresh connection per request, all in flight at once."""
    go = threading.Event()
    failed = threading.Event()
    lock = threading.Lock()
    outcome: dict[str, Any] = {"completed": 0, "error": None}
    # Counted exactly as well as sampled: the sampler thread competes for the
    # GIL with hundreds of starting threads and can miss the peak.
    held = [0, 0]  # sockets connected now, and the most at once

    def request() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connected = False
        try:
            connection.connect()  # the socket is held from here on, as a request in flight
            connected = True
            with lock:
                held[0] += 1
                held[1] = max(held[1], held[0])
            go.wait(30)
            connection.request("GET", "/")
            connection.getresponse().read()
            with lock:
                outcome["completed"] += 1
        except OSError as exc:
            with lock:
                outcome["error"] = outcome["error"] or f"{type(exc).__name__}: {exc}"
            failed.set()
        finally:
            connection.close()
            if connected:
                with lock:
                    held[0] -= 1

    threads: list[threading.Thread] = []
    with PeakSockets() as sockets:
        for _ in range(requests):
            if failed.is_set():
                break  # fail fast: stop starting requests once one has failed
            thread = threading.Thread(target=request, daemon=True)
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread"
                outcome["error"] = outcome["error"] or f"{type(exc).__name__}: {exc}"
                break
            threads.append(thread)
        go.set()
        for thread in threads:
            thread.join(30)
    return {**outcome, "threads": len(threads), "peak_sockets": max(sockets.peak, held[1])}


class ConnectionWorker(tunnypy.BaseWorker[str, int]):
    """A stateful worker: one HTTP connection, opened once and reused for every request."""

    opened = 0
    _lock = threading.Lock()

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection(HOST, port, timeout=30)

    def process(self, payload: str) -> int:
        if self.connection.sock is None:
            with ConnectionWorker._lock:
                ConnectionWorker.opened += 1
        self.connection.request("GET", payload)
        response = self.connection.getresponse()
        response.read()
        return response.status

    def terminate(self) -> None:
        self.connection.close()


def pooled(port: int, requests: int, workers: int) -> dict[str, Any]:
    """The same requests, all submitted at once to a pool of stateful workers."""
    began = time.perf_counter()
    with PeakSockets() as sockets, tunnypy.Pool(workers, lambda: ConnectionWorker(port)) as pool:
        futures = [pool.submit("/") for _ in range(requests)]
        statuses = [future.result(60) for future in futures]
    return {
        "completed": statuses.count(200),
        "error": None,
        "threads": workers,
        "peak_sockets": sockets.peak,
        "connections_opened": ConnectionWorker.opened,
        "seconds": time.perf_counter() - began,
    }


def client_main(args: argparse.Namespace) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, hard))
    if args.client == "naive":
        result = naive(args.port, args.requests)
    else:
        result = pooled(args.port, args.requests, args.workers)
    print(json.dumps(result))


# -- the driver -----------------------------------------------------------------


def run_client(kind: str, port: int, args: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--client",
        kind,
        "--port",
        str(port),
        "--requests",
        str(args.requests),
        "--workers",
        str(args.workers),
        "--nofile",
        str(args.nofile),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=90, check=True)
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--nofile", type=int, default=256, help="RLIMIT_NOFILE for the clients")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--client", choices=["naive", "pooled"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        client_main(args)
        return

    server = Server((HOST, 0), Handler)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    watchdog = threading.Timer(SERVER_LIFETIME, server.shutdown)
    watchdog.daemon = True
    watchdog.start()
    try:
        naive_result = run_client("naive", port, args)
        pooled_result = run_client("pooled", port, args)
    finally:
        watchdog.cancel()
        server.shutdown()
        server.server_close()
        serving.join()

    if args.json:
        report = {"requests": args.requests, "naive": naive_result, "pooled": pooled_result}
        print(json.dumps(report))
        return
    n = args.requests
    print(f"{n:,} concurrent requests to http://{HOST}:{port}/")
    print(f"clients run with RLIMIT_NOFILE={args.nofile}")
    print("naive, one thread and one connection per request:")
    print(
        f"  started {naive_result['threads']:,} threads, completed {naive_result['completed']:,} "
        f"of {n:,} requests, peak client sockets {naive_result['peak_sockets']}"
    )
    # expect: Too many open files
    print(f"  then failed: {naive_result['error']}")
    print(f"pool of {args.workers} stateful workers, one keep-alive connection each:")
    # expect: completed 10,000 of 10,000 requests
    print(
        f"  completed {pooled_result['completed']:,} of {n:,} requests "
        f"in {pooled_result['seconds']:.1f} s, peak client sockets {pooled_result['peak_sockets']} "
        f"(connections opened: {pooled_result['connections_opened']})"
    )


if __name__ == "__main__":
    main()
