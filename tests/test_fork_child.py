"""A pool inherited by a forked child reads as closed: size 0, no workers, its counts kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import WAIT

ROOT = Path(__file__).resolve().parent.parent

PROGRAM = """
import os, threading, tunnypy
release = threading.Event()
started = threading.Event()
def job(x):
    if x == "gate":
        started.set()
        release.wait(10)
    return x
pool = tunnypy.Pool.from_func(2, job)
pool.process(1)
pool.process(2)
running = pool.submit("gate")  # a worker is busy across the fork
started.wait(10)
pid = os.fork()
if pid == 0:
    s = pool.stats()
    print("child", pool.size, pool.closed, s.size, s.workers, s.busy, s.idle, s.waiting,
          s.completed, flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
release.set()
print("parent", os.waitstatus_to_exitcode(status), running.result(10), pool.size,
      pool.close(timeout=10), flush=True)
"""


class TestForkedChild:
    def test_an_inherited_pool_reads_as_closed(self) -> None:
        """In the child: size 0, closed, no workers, busy, idle or waiting; completed kept."""
        done = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(PROGRAM)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        # Not stderr: 3.12+ warns that fork() in a threaded process may deadlock.
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines == ["child 0 True 0 0 0 0 0 2", "parent 0 gate 2 True"], done.stderr
