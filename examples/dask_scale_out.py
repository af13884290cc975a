"""
The too_many_files service, scaled out: threads, then processes, then a Dask cluster.

The service of ``examples/too_many_files.py``: a pool of stateful workers,
each keeping one HTTP/1.1 connection to a local server open for its life,
serving requests submitted all at once. Here the same pool runs three times,
and only ``isolation=`` changes:

* ``"thread"``: each worker on a thread of this process (the default);
* ``"process"``: each worker in a child process of its own;
* ``DaskWorkers.local(2, processes=False)``: each worker a Dask actor, on a
  Dask worker of its own, on a ``LocalCluster`` started here, its workers
  in this process so that the example starts in a moment (drop
  ``processes=False`` for worker processes; pass ``DaskWorkers(client)`` for
  a real cluster; the ``dask`` extra).

Every promise of the pool (backpressure, FIFO, timeouts) holds in each. Run
it: ``python examples/dask_scale_out.py`` (``--requests``, ``--workers``). It
stops by itself.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from typing import Any

import too_many_files as service  # examples/too_many_files.py, beside this file

import tunnypy
from tunnypy.contrib.dask import DaskWorkers


def serve(isolation: Any, port: int, requests: int, workers: int) -> tuple[int, float]:
    """The service's requests, through a pool of *workers* on *isolation*: (completed, seconds)."""
    began = time.perf_counter()
    factory = functools.partial(service.ConnectionWorker, port)  # picklable: made remotely
    with tunnypy.Pool(workers, factory, isolation=isolation) as pool:
        futures = [pool.submit("/") for _ in range(requests)]
        statuses = [future.result(60) for future in futures]
    return statuses.count(200), time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    server = service.Server((service.HOST, 0), service.Handler)
    port = server.server_address[1]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        n, workers = args.requests, args.workers
        print(f"{n:,} requests to http://{service.HOST}:{port}/, {workers} workers each way")
        for label, isolation in [
            ("threads", "thread"),
            ("processes", "process"),
            ("dask", DaskWorkers.local(workers, processes=False)),
        ]:
            completed, seconds = serve(isolation, port, n, workers)
            # expect: threads: completed 60 of 60
            # expect: processes: completed 60 of 60
            # expect: dask: completed 60 of 60
            print(f"{label}: completed {completed:,} of {n:,} requests in {seconds:.2f} s")
    finally:
        server.shutdown()
        server.server_close()
        serving.join()


if __name__ == "__main__":
    main()
