"""
Nothing left behind by a pool of processes: close, collection, interpreter exit, a killed parent.

A child counts as left behind while its pid exists, a zombie included.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tunnypy
from tests.helpers import WAIT, Call, wait_for
from tests.process_helpers import Board, ChildWorker, Held, alive, pid, records, running

ROOT = Path(__file__).resolve().parent.parent

CHILD_SCRIPT = """
import os, sys, time
import tunnypy
from tests.process_helpers import Board, Held, pid, records

method, ending = sys.argv[1], sys.argv[2]
board = Board(sys.argv[3])
pool = tunnypy.Pool(2, records(board), isolation=tunnypy.Processes(method))
held = Held(board, "held")
future = pool.submit(held)  # one child busy with a job, one idle
assert held.started.wait()
print(held.ran_on(), pool.process(pid), flush=True)
if ending == "exit":
    assert board.flag("exit").wait()  # the test has seen both children alive
    held.release.set()
    future.result(10)
    sys.exit(0)  # no close(): interpreter exit ends the children
time.sleep(60)  # killed with SIGKILL by the test
"""


def _children_of(script_args: list[str], board: Board) -> tuple[subprocess.Popen[str], list[int]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, *script_args, board.root],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()
        assert line, parent.communicate(timeout=WAIT)[1]
        pids = [int(p) for p in line.split()]
        assert len(set(pids)) == 2 and all(alive(p) for p in pids)
    except BaseException:
        parent.kill()  # no parent left running, no pipe left open
        parent.communicate(timeout=WAIT)
        raise
    return parent, pids


def _gone_within(pids: list[int], seconds: float, *, zombies: bool = False) -> bool:
    """Whether every pid is gone (with *zombies*: or dead, left for init to reap) in time."""
    exists = running if zombies else alive
    deadline = time.monotonic() + seconds
    while any(exists(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


class TestEnds:
    """close(), collection and interpreter exit end every child."""

    def test_close_ends_and_reaps_every_child(self, tmp_path: Path) -> None:
        """After close(wait=True) no child pid exists, not even as a zombie."""
        board = Board(str(tmp_path))
        pool = tunnypy.Pool(2, records(board), isolation="process")
        pids = [int(p) for p in board.lines("started")]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        assert pool.close(timeout=WAIT)
        assert not any(alive(p) for p in pids)

    def test_close_without_wait_ends_them_too(self, tmp_path: Path) -> None:
        """close(wait=False) returns at once; the children end as their threads leave."""
        board = Board(str(tmp_path))
        pool = tunnypy.Pool(2, records(board), isolation="process")
        pids = [int(p) for p in board.lines("started")]
        pool.close(wait=False)
        assert _gone_within(pids, WAIT)
        assert pool.close(timeout=WAIT)

    def test_a_dropped_pool_ends_its_children(self, tmp_path: Path) -> None:
        """A pool collected without close() ends its children."""
        board = Board(str(tmp_path))
        pool = tunnypy.Pool(1, records(board), isolation="process")
        pids = [pool.process(pid)]
        del pool
        gc.collect()
        assert _gone_within(pids, WAIT)

    @pytest.mark.parametrize("method", ["forkserver", "spawn"])
    def test_interpreter_exit_ends_every_child_quietly(self, tmp_path: Path, method: str) -> None:
        """A script that exits without close(): its children end, and it prints no warning."""
        board = Board(str(tmp_path))
        parent, pids = _children_of([method, "exit"], board)
        board.flag("exit").set()
        _, stderr = parent.communicate(timeout=WAIT)
        assert parent.returncode == 0, stderr
        assert stderr == ""  # no resource_tracker warning, no traceback
        assert _gone_within(pids, WAIT)
        assert sorted(map(int, board.lines("terminated"))) == sorted(pids)


class TestParentKilled:
    """A parent killed with SIGKILL leaves no child running a second later."""

    @pytest.mark.parametrize("method", ["forkserver", "spawn"])
    def test_children_of_a_killed_parent_end_within_a_second(
        self, tmp_path: Path, method: str
    ) -> None:
        """Both children, the busy one and the idle one, are gone within a second."""
        board = Board(str(tmp_path))
        parent, pids = _children_of([method, "kill"], board)
        parent.send_signal(signal.SIGKILL)
        parent.communicate(timeout=WAIT)
        # Orphans: init reaps them, when it gets to it; they must not run.
        assert _gone_within(pids, 1.0, zombies=True), [p for p in pids if running(p)]


def _open_fds() -> int:
    gc.collect()  # an eventfd waker is closed as it is collected: not a leak
    return len(os.listdir("/proc/self/fd"))


def _cycle() -> list[int]:
    with tunnypy.Pool(1, ChildWorker, isolation="process") as pool:
        return [pool.process(pid)]


class TestNoLeaks:
    """Many pools made and closed leave no fd, thread or child behind."""

    # 200 child starts take a few seconds of CPU; on a loaded machine they
    # took over a minute of wall time.
    @pytest.mark.timeout(240)
    def test_200_create_close_cycles(self) -> None:
        """fds, threads and children return to where they were."""
        _cycle()  # the forkserver and its resource tracker start once, and stay
        fds = _open_fds()
        threads = threading.active_count()
        pids: list[int] = []
        for _ in range(200):
            made = _cycle()
            # Checked at once: over 200 cycles on a busy machine pids wrap and
            # an old pid may be a stranger's by the end.
            assert made and not any(alive(p) for p in made)
            pids += made
        assert len(pids) == 200
        assert _open_fds() == fds
        assert threading.active_count() == threads, threading.enumerate()

    def test_a_killed_and_a_crashed_child_leave_nothing(self, tmp_path: Path) -> None:
        """Kills and crashes release their pipes and processes too."""
        board = Board(str(tmp_path))
        _cycle()
        fds = _open_fds()
        pool: tunnypy.Pool[Any, Any] = tunnypy.Pool(
            1, records(board), isolation="process", kill_grace=0
        )
        pids = [pool.process(pid)]
        token = tunnypy.CancelToken()
        held = Held(board, "never released")
        call = Call(pool.process_ctx, held, token)
        assert held.started.wait()
        token.cancel()  # kill_grace=0: killed at once
        assert call.done.wait(WAIT)
        call.thread.join(WAIT)  # its eventfd waker goes with the thread
        del call, token
        pids.append(pool.process(pid))
        os.kill(pids[-1], signal.SIGKILL)
        wait_for(lambda: not alive(pids[-1]), "the child to die")
        pids.append(pool.process(pid))
        assert pool.close(timeout=WAIT)
        assert len(set(pids)) == 3
        assert not any(alive(p) for p in pids)
        assert _open_fds() == fds
