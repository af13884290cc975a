"""Wakers: eventfds within a budget, locks past it; 10,000 workers under 1,024 open files."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap

import pytest

import tunnypy
from tests.helpers import WAIT, Call, identity
from tunnypy import _job, _waker


class TestWakers:
    def test_wake_before_wait_is_not_lost(self) -> None:
        """A wake sent before the wait makes the wait return at once, for both kinds."""
        for waker in (_waker.new_waker(), _waker.LockWaker()):
            waker.wake()
            waker.wake()  # wakes do not accumulate
            assert waker.wait(WAIT) is True
            assert waker.wait(0.001) is False

    def test_wake_from_another_thread(self) -> None:
        """A waiting thread is woken by another thread's wake()."""
        for waker in (_waker.new_waker(), _waker.LockWaker()):
            call = Call(waker.wait, WAIT)
            waker.wake()
            assert call.wait() is True

    def test_fd_budget_is_never_exceeded(self) -> None:
        """A pool far larger than the budget holds at most FD_BUDGET eventfds."""
        start = _waker.fds_in_use()
        with tunnypy.Pool.from_func(_waker.FD_BUDGET + 50, identity) as pool:
            assert _waker.fds_in_use() <= _waker.FD_BUDGET
            assert pool.process(3) == 3
        assert _waker.fds_in_use() <= max(start, 1) + 1

    @pytest.mark.timeout(300)
    def test_ten_thousand_workers_under_1024_open_files(self) -> None:
        """With RLIMIT_NOFILE at 1,024, a pool of 10,000 workers starts, serves and closes."""
        code = textwrap.dedent(
            """
            import os, resource, threading
            resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
            threading.stack_size(256 * 1024)
            import tunnypy
            from tunnypy import _waker
            pool = tunnypy.Pool.from_func(10_000, lambda x: x + 1)
            assert pool.stats().workers == 10_000
            futures = [pool.submit(i) for i in range(20_000)]
            assert [f.result(60) for f in futures] == [i + 1 for i in range(20_000)]
            fds = len(os.listdir("/proc/self/fd"))
            assert pool.close(timeout=60)
            print("ok", _waker.fds_in_use(), fds)
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=240
        )
        assert done.returncode == 0, done.stderr
        word, eventfds, open_fds = done.stdout.split()
        assert word == "ok"
        assert int(eventfds) <= _waker.FD_BUDGET
        assert int(open_fds) < 1024


class TestAfterFork:
    def test_budget_lock_held_at_fork_is_free_in_the_child(self) -> None:
        """A fork while the fd-budget lock is held leaves the child able to make wakers."""
        read_end, write_end = os.pipe()
        with _waker._budget_lock:  # as another thread would, mid-update
            pid = os.fork()
            if pid == 0:  # the child: exit at once whatever happens
                try:
                    _waker.new_waker()
                    os.write(write_end, b"ok")
                finally:
                    os._exit(0)
        os.close(write_end)
        try:
            # A child stuck on the lock would never write: bound the wait.
            ready = select.select([read_end], [], [], WAIT)[0]
            if not ready:
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert ready, "the child hung making a waker"
            assert os.read(read_end, 2) == b"ok"
            assert os.waitstatus_to_exitcode(status) == 0
        finally:
            os.close(read_end)

    def test_a_forking_thread_with_a_waker_of_its_own_is_not_stranded_by_the_lock(self) -> None:
        """Forgetting the forking thread's eventfd waker in the child takes the freed lock."""
        with tunnypy.Pool.from_func(1, identity) as pool:
            assert pool.process(1) == 1  # this thread now keeps a waker for its calls
        assert _job._tls.waker is not None
        read_end, write_end = os.pipe()
        with _waker._budget_lock:  # as another thread would, mid-update
            pid = os.fork()
            if pid == 0:  # the child: exit at once whatever happens
                try:
                    os.write(write_end, b"ok")
                finally:
                    os._exit(0)
        os.close(write_end)
        try:
            ready = select.select([read_end], [], [], WAIT)[0]
            if not ready:
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            assert ready, "the child hung in fork()"
            assert os.read(read_end, 2) == b"ok"
            assert os.waitstatus_to_exitcode(status) == 0
        finally:
            os.close(read_end)


@pytest.mark.skipif(not hasattr(os, "eventfd"), reason="eventfd is Linux-only")
def test_an_eventfd_wait_longer_than_poll_takes_still_waits_for_its_wake() -> None:
    """poll() takes at most 2**31 - 1 ms; a month-long wait raised OverflowError."""
    waker = tunnypy._waker.new_fd_waker()
    assert waker is not None
    month = 30 * 86400.0
    call = Call(waker.wait, month)
    waker.wake()
    assert call.wait() is True
