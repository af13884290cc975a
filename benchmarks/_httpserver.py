"""
A small threaded HTTP/1.1 keep-alive server on 127.0.0.1, run as a child process.

``python -m benchmarks._httpserver LIFETIME`` binds an ephemeral port on
127.0.0.1 only, prints it on stdout, and serves until its standard input
closes (the benchmark ends or dies) or LIFETIME seconds pass, whichever is
first. Idle keep-alive connections are dropped after ``IDLE`` seconds.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDLE = 30.0
BODY = b"ok\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client closes
    timeout = IDLE
    # Send headers and body in one segment: an unbuffered writer sends them
    # separately, and Nagle's algorithm plus delayed ACKs then stall every
    # keep-alive response for tens of milliseconds.
    wbufsize = -1
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: one line per request would dominate the run


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # exit promptly even with idle keep-alive connections open
    request_queue_size = 1024  # bursts of new connections must not overflow the backlog


def main(lifetime: float) -> None:
    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="http-server", daemon=True)
    thread.start()
    print(server.server_address[1], flush=True)
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # returns at EOF: the parent closed the pipe or died
        stop.set()

    threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    stop.wait(lifetime)
    server.shutdown()
    server.server_close()


if __name__ == "__main__":
    main(float(sys.argv[1]))
