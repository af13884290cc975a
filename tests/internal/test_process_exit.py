"""
Interpreter exit ends a process pool's children while a worker thread it did not wait for runs on.

Exit waits for every worker thread except those flagged ``readying`` (which
may be inside a ``block_until_ready()`` that never returns); the host's
close then ends what is left (tunnypy/_process.py, ``_ChildWorker.end``).
Each script here holds such a thread at one point, with events, and lets it
go at a chosen moment of the exit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import WAIT
from tests.process_helpers import Board, alive

ROOT = Path(__file__).resolve().parent.parent.parent

PREAMBLE = """
import sys, threading
import tunnypy
from tunnypy import _lifecycle, _process, _wire
from tests.process_helpers import Board, pid, records

board = Board(sys.argv[2])
real_ready = _process._ChildWorker.block_until_ready
real_close = _process._ProcessHost.close
hold = threading.Event()  # set: the worker thread is held before its next block_until_ready
"""

# The thread is caught with ``readying`` set, just before the proxy's
# block_until_ready, and runs again only once the host's close has returned.
READYING = """
closed = threading.Event()

def held_ready(self):
    if hold.is_set():
        hold.clear()
        board.flag("inside").set()
        if not closed.wait(10):
            print("host.close() never came", file=sys.stderr)
    real_ready(self)

def close(self):
    real_close(self)
    closed.set()

_process._ChildWorker.block_until_ready = held_ready
_process._ProcessHost.close = close
"""

# The thread, not waited for, ends its child (terminate()) as exit closes the
# host: the close must not return before that child has ended.
TERMINATING = """
looked = threading.Event()  # exit has looked at the workers
sending = threading.Event()  # the worker thread is about to send "terminate"
closing = threading.Event()
returned = threading.Event()
ended = threading.Event()
real_join = _lifecycle._join
real_send = _wire.send
real_end = _process._end_process

def held_ready(self):
    if hold.is_set():
        hold.clear()
        board.flag("inside").set()
        if not looked.wait(10):
            print("exit never looked", file=sys.stderr)
    real_ready(self)

def join(*args):
    looked.set()
    return real_join(*args)

def send(conn, obj):
    if obj == ("terminate",) and threading.current_thread() is not threading.main_thread():
        sending.set()
        if not closing.wait(10):
            print("host.close() never came", file=sys.stderr)
    real_send(conn, obj)

def end_process(process, *, kill):
    real_end(process, kill=kill)
    if threading.current_thread() is not threading.main_thread():
        if returned.is_set():
            print("host.close() returned before the child had ended", file=sys.stderr)
        ended.set()

def close(self):
    if not sending.wait(10):
        print("the worker thread never ended its child", file=sys.stderr)
    closing.set()
    real_close(self)
    returned.set()
    if not ended.wait(10):
        print("the child was never ended", file=sys.stderr)

_process._ChildWorker.block_until_ready = held_ready
_lifecycle._join = join
_wire.send = send
_process._end_process = end_process
_process._ProcessHost.close = close
"""

# The thread waits for the child's own block_until_ready(), which does not
# return: exit kills the child, and the thread, finding it dead, starts no other.
AWAITING = """
import functools
from tests.process_helpers import ReadyWorker

closing = threading.Event()
settled = threading.Event()
real_start = _process._ProcessHost.start_child

def ready(self):
    if hold.is_set():
        hold.clear()
        board.flag("inside").set()  # readying: exit will not wait for this thread
    real_ready(self)
    if closing.is_set():
        settled.set()

def start_child(self, *args):
    if closing.is_set():
        print("a child was started at exit", file=sys.stderr)
    return real_start(self, *args)

def close(self):
    closing.set()
    real_close(self)
    if not settled.wait(10):
        print("the worker thread never left block_until_ready", file=sys.stderr)

_process._ChildWorker.block_until_ready = ready
_process._ProcessHost.start_child = start_child
_process._ProcessHost.close = close
pool = tunnypy.Pool(
    1, functools.partial(ReadyWorker, board), isolation=tunnypy.Processes(sys.argv[1])
)
board.flag("ready.hold").set()
hold.set()
print(pool.process(pid), flush=True)
assert board.flag("inside").wait()
assert board.flag("ready.inside").wait()
sys.exit(0)  # its block_until_ready never returns: killed
"""

EXIT = """
pool = tunnypy.Pool(1, records(board), isolation=tunnypy.Processes(sys.argv[1]))
hold.set()
print(pool.process(pid), flush=True)  # then its thread holds before block_until_ready
assert board.flag("inside").wait()
sys.exit(0)  # no close(): interpreter exit ends the child
"""


def run_quietly(script: str, method: str, board: Board) -> int:
    """Run *script* in a new interpreter; it exits 0 saying nothing on stderr. Its child's pid."""
    done = subprocess.run(
        [sys.executable, "-c", script, method, board.root],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=WAIT * 4,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    child = int(done.stdout)
    return child


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
@pytest.mark.parametrize(
    "scenario", [pytest.param(READYING, id="readying"), pytest.param(TERMINATING, id="terminating")]
)
def test_exit_ends_the_child_of_a_thread_it_did_not_wait_for(
    tmp_path: Path, method: str, scenario: str
) -> None:
    """Its terminate() runs once, and the child is gone by the time exit is done; exit is quiet."""
    board = Board(str(tmp_path))
    child = run_quietly(PREAMBLE + scenario + EXIT, method, board)
    assert board.lines("started") == [str(child)]  # and none started at exit
    assert board.lines("terminated") == [str(child)]
    assert not alive(child)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_exit_kills_a_child_in_its_own_block_until_ready_and_starts_none(
    tmp_path: Path, method: str
) -> None:
    """The thread waiting for it lets go once it is killed, and starts no child in its place."""
    board = Board(str(tmp_path))
    child = run_quietly(PREAMBLE + AWAITING, method, board)
    assert board.lines("started") == [str(child)]
    assert board.lines("terminated") == []  # killed: its terminate() would wait for it
    assert not alive(child)
