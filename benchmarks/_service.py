"""
I/O-bound service: many small HTTP requests to a local server.

The server is the stdlib's threaded ``http.server`` speaking HTTP/1.1
keep-alive, started by the benchmark in a child process bound to 127.0.0.1
(its own process, so its threads neither share this process's GIL nor its
file descriptors, and it stops by itself when this process closes its stdin).
Nothing but 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import tunnypy

from ._harness import Config, Sample, ScenarioResult, Target, interleave
from ._threads import REPO, repo_env

__all__ = ["io_service", "open_sockets"]

HOST = "127.0.0.1"
WORKERS = 32
SOCKET_SLACK = 4
"""How many sockets beyond one per worker the tunnypy pool may have open."""
SERVER_LIFETIME = 900.0
SAMPLE_EVERY = 0.002


def open_sockets() -> int:
    """How many sockets this process has open, read from /proc/self/fd."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                count += 1
        except OSError:
            pass  # closed between listdir and readlink
    return count


@contextmanager
def sampled_peak() -> Iterator[Callable[[], int]]:
    """Sample :func:`open_sockets` on a thread while the block runs; yield the peak getter."""
    peak = [open_sockets()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_EVERY):
            peak[0] = max(peak[0], open_sockets())

    thread = threading.Thread(target=sample, name="bench-socket-sampler")
    thread.start()
    try:
        yield lambda: peak[0]
    finally:
        stop.set()
        thread.join()
        peak[0] = max(peak[0], open_sockets())


@contextmanager
def local_server() -> Iterator[int]:
    """Start the child HTTP server; yield its port; stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks._httpserver", str(SERVER_LIFETIME)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=repo_env(),
        cwd=REPO,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the benchmark HTTP server did not start")
        yield int(line)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


class HttpWorker(tunnypy.BaseWorker[str, int]):
    """A stateful worker: one persistent keep-alive connection, reopened if dropped."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def process(self, payload: str) -> int:
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
            try:
                return _get(self.conn, payload)
            except (OSError, http.client.HTTPException):
                self.conn.close()  # e.g. the server dropped an idle connection
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def terminate(self) -> None:
        if self.conn is not None:
            self.conn.close()


def _fetch_new_connection(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        return _get(conn, path)
    finally:
        conn.close()


def _measure(submit: Callable[[str], Future[int]], n: int) -> Callable[[], Sample]:
    def measure() -> Sample:
        at_start = open_sockets()
        with sampled_peak() as peak:
            start = time.perf_counter()
            futures = [submit(f"/r/{i}") for i in range(n)]
            statuses = [f.result() for f in futures]
            took = time.perf_counter() - start
        bad = sum(1 for s in statuses if s != 200)
        if bad:
            raise RuntimeError(f"{bad} of {n} requests did not return 200")
        return Sample(
            n / took, {"peak_sockets": float(peak()), "sockets_at_start": float(at_start)}
        )

    return measure


def io_service(config: Config) -> list[ScenarioResult]:
    """N requests through 32 keep-alive tunnypy workers vs connection-per-request executors."""
    n = config.size(10_000, 200)
    with local_server() as port:
        pool: tunnypy.Pool[str, int] = tunnypy.Pool(WORKERS, lambda: HttpWorker(port))
        tpe = ThreadPoolExecutor(WORKERS)
        tpe_ka = ThreadPoolExecutor(WORKERS)
        local = threading.local()
        ka_conns: list[http.client.HTTPConnection] = []

        def fetch_keepalive(path: str) -> int:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection(HOST, port, timeout=10)
                ka_conns.append(conn)
            return _get(conn, path)

        def tpe_submit(path: str) -> Future[int]:
            return tpe.submit(_fetch_new_connection, port, path)

        def tpe_ka_submit(path: str) -> Future[int]:
            return tpe_ka.submit(fetch_keepalive, path)

        def tpe_ka_measure() -> Sample:
            try:
                return ka_measure()
            finally:
                # Close the idle connections so that other contenders' socket
                # counts do not include them; they reopen on next use.
                for conn in ka_conns:
                    conn.close()

        submits: dict[str, tuple[str, Callable[[str], Future[int]]]] = {
            "tunnypy": ("tunnypy, 32 keep-alive workers", pool.submit),
            "tpe": ("ThreadPoolExecutor(32), new connection each", tpe_submit),
            "tpe_keepalive": ("ThreadPoolExecutor(32), thread-local keep-alive", tpe_ka_submit),
        }
        contenders = {cid: (label, _measure(sub, n)) for cid, (label, sub) in submits.items()}
        ka_measure = contenders["tpe_keepalive"][1]
        contenders["tpe_keepalive"] = (submits["tpe_keepalive"][0], tpe_ka_measure)
        try:
            for _, submit in submits.values():
                # Warm up: this opens the persistent connections.
                _measure(submit, config.size(4, 1) * WORKERS)()
            for conn in ka_conns:
                conn.close()
            rows = interleave(contenders, config.rounds, "io")
        finally:
            pool.close()
            tpe.shutdown()
            tpe_ka.shutdown()
            for conn in ka_conns:
                conn.close()
    for row in rows:
        row.extra["peak_sockets_max"] = max(s.extra["peak_sockets"] for s in row.samples)
    return [
        ScenarioResult(
            scenario="io",
            title="I/O-bound service",
            metric="requests per second",
            unit="req/s",
            better="higher",
            subject="tunnypy",
            rows=rows,
            targets=[
                Target("≥1.5x ThreadPoolExecutor", "tunnypy", ">=", 1.5, "tpe"),
                Target(
                    f"peak sockets ≤ {WORKERS} + {SOCKET_SLACK}",
                    "tunnypy",
                    "<=",
                    WORKERS + SOCKET_SLACK,
                    key="peak_sockets_max",
                ),
            ],
            notes=(
                f"{n} GET requests per round to a stdlib ThreadingHTTPServer (HTTP/1.1, "
                "child process, 127.0.0.1), all submitted then awaited; peak_sockets: "
                f"open sockets in this process sampled every {SAMPLE_EVERY * 1000:g} ms, "
                "which for the other rows include tunnypy's idle keep-alive connections "
                "(sockets_at_start)"
            ),
        )
    ]
