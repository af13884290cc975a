"""Whole programs in a subprocess: Ctrl-C in process(), exit without close(), os.fork()."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import WAIT, wait_for

ROOT = Path(__file__).resolve().parent.parent


class Child:
    """A Python program run in a subprocess, its stdout read line by line with bounded waits."""

    def __init__(self, source: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(source)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def expect(self, prefix: str) -> str:
        """Return the next line, which must start with *prefix*."""
        try:
            line = self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"child printed nothing; expected {prefix!r}") from None
        if line is None:
            raise AssertionError(f"child ended; expected {prefix!r}; stderr:\n{self.stderr()}")
        self.seen.append(line)
        assert line.startswith(prefix), f"expected {prefix!r}, got {line!r}"
        return line

    def finish(self, timeout: float = WAIT) -> int:
        """Wait (bounded) for the child to exit and return its exit code."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"child did not exit within {timeout}s") from None
        finally:
            self.reader.join(WAIT)
        return code

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.poll() is None:
            return "(still running)"
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(WAIT)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def blocked_in_read(pid: int, fd: int) -> bool:
    """Whether the main thread of *pid* is blocked in read(fd) right now (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        return False
    return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == fd


needs_proc_syscall = pytest.mark.skipif(
    not Path(f"/proc/{os.getpid()}/syscall").exists(), reason="needs Linux /proc/<pid>/syscall"
)


class TestCtrlC:
    @needs_proc_syscall
    def test_sigint_while_waiting_in_process_raises_promptly_and_the_pool_still_closes(
        self,
    ) -> None:
        """KeyboardInterrupt reaches the waiting caller at once; its job is interrupted."""
        child = Child(
            """
            import signal, threading, tunnypy
            from tunnypy import _job
            # A shell's "cmd &" starts children with SIGINT ignored; be a
            # foreground program whatever launched the test run.
            signal.signal(signal.SIGINT, signal.default_int_handler)
            release = threading.Event()
            saw = threading.Event()
            def job(_):
                print("started", flush=True)
                while not release.wait(0.005):
                    if tunnypy.interrupted():
                        saw.set()
                        return "interrupted"
                return "released"
            pool = tunnypy.Pool.from_func(1, job)
            waker = _job.caller_waker()  # the waker process() will sleep on
            print("fd", getattr(waker, "_fd", -1), flush=True)
            try:
                pool.process(1)
                print("returned", flush=True)
            except KeyboardInterrupt:
                print("keyboard interrupt", flush=True)
            print("job saw interrupt", saw.wait(10), flush=True)
            release.set()
            print("closed", pool.close(timeout=10), flush=True)
            stats = pool.stats()
            print("cancelled", stats.cancelled, "workers", stats.workers, flush=True)
            """
        )
        try:
            fd = int(child.expect("fd ").split()[1])
            assert fd >= 0, "the caller waker should be an eventfd in a fresh process"
            child.expect("started")
            wait_for(lambda: blocked_in_read(child.proc.pid, fd), "the main thread to block")
            sent = time.monotonic()
            os.kill(child.proc.pid, signal.SIGINT)
            child.expect("keyboard interrupt")
            assert time.monotonic() - sent < 2.0
            assert child.expect("job saw interrupt") == "job saw interrupt True"
            assert child.expect("closed") == "closed True"
            assert child.expect("cancelled") == "cancelled 1 workers 0"
            assert child.finish() == 0, child.stderr()
        finally:
            child.close()


class TestExitWithoutClose:
    def test_the_program_exits_after_its_running_job_ends(self) -> None:
        """A pool never closed neither hangs exit nor cuts its running job short."""
        child = Child(
            """
            import threading, time, tunnypy
            started = threading.Event()
            def job(_):
                started.set()
                time.sleep(0.2)  # the job's own work
                print("job done", flush=True)
                return 1
            pool = tunnypy.Pool.from_func(4, job)
            idle = tunnypy.Pool.from_func(8, abs)  # only parked workers
            pool.submit(1)
            started.wait(10)
            print("main ends", flush=True)
            """
        )
        try:
            child.expect("main ends")
            child.expect("job done")
            assert child.finish() == 0, child.stderr()
        finally:
            child.close()

    def test_a_worker_stuck_in_block_until_ready_does_not_hold_exit(self) -> None:
        """Workers blocked outside a job are daemon threads; exit does not wait for them."""
        child = Child(
            """
            import threading, tunnypy
            stuck = threading.Event()
            class Stuck(tunnypy.BaseWorker):
                def process(self, payload):
                    return payload
                def block_until_ready(self):
                    stuck.set()
                    threading.Event().wait()  # forever
            pool = tunnypy.Pool(2, Stuck)
            stuck.wait(10)
            print("main ends", flush=True)
            """
        )
        try:
            child.expect("main ends")
            assert child.finish() == 0, child.stderr()
        finally:
            child.close()


class TestInterpreterExit:
    def test_a_waker_freed_during_module_teardown_reports_no_error(self) -> None:
        """The main thread's waker, freed as exit clears tunnypy, closes quietly (regression)."""
        proc = subprocess.run(
            [
                sys.executable,
                "-X",
                "dev",
                "-c",
                textwrap.dedent(
                    """
                    import sys, tunnypy
                    from tunnypy import _job, _waker
                    pool = tunnypy.Pool.from_func(1, abs)
                    print(pool.process(-1), pool.close(), type(_job.caller_waker()).__name__)
                    class Keeper:  # holds the module until its globals are cleared at exit
                        def __del__(self):
                            pass
                    keeper = Keeper()
                    keeper.module = _waker
                    keeper.me = keeper
                    sys.keeper = keeper
                    """
                ),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert proc.stdout == "1 True FdWaker\n"
        assert proc.stderr == ""
        assert proc.returncode == 0


class TestFork:
    def test_the_child_copy_fails_clearly_and_the_parent_is_unaffected(self) -> None:
        """In a forked child every call raises PoolClosedError; a new pool there works."""
        child = Child(
            """
            import os, sys, threading, time, tunnypy
            release = threading.Event()
            started = threading.Event()
            def job(x):
                if x == "gate":
                    started.set()
                    release.wait(10)
                    return "gate done"
                return x * 2
            pool = tunnypy.Pool.from_func(3, job)
            running = pool.submit("gate")  # a worker is busy across the fork
            started.wait(10)
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                for name, call in [
                    ("process", lambda: pool.process(1)),
                    ("process_timed", lambda: pool.process_timed(1, 1)),
                    ("submit", lambda: pool.submit(1)),
                    ("set_size", lambda: pool.set_size(5)),
                ]:
                    try:
                        call()
                        print("child", name, "did not raise", flush=True)
                    except tunnypy.PoolClosedError as exc:
                        print("child", name, "raised:", exc, flush=True)
                print("child close", pool.close(timeout=1), flush=True)
                fresh = tunnypy.Pool.from_func(2, job)
                print("child fresh pool", fresh.process(21), fresh.close(timeout=10), flush=True)
                # The child ends normally: the interpreter-exit hook must not hang.
            else:
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    done, status = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                    time.sleep(0.01)
                else:
                    os.kill(pid, 9)
                    status = -1
                print("parent saw child exit", os.waitstatus_to_exitcode(status), flush=True)
                release.set()
                print("parent", running.result(10), pool.process(5), pool.close(timeout=10),
                      flush=True)
            """
        )
        try:
            reason = "pool cannot be used in a forked child process"
            for name in ("process", "process_timed", "submit", "set_size"):
                assert f"child {name} raised: {reason}" == child.expect(f"child {name}")
            assert child.expect("child close") == "child close True"
            assert child.expect("child fresh pool") == "child fresh pool 42 True"
            assert child.expect("parent saw child exit") == "parent saw child exit 0"
            assert child.expect("parent ") == "parent gate done 10 True"
            assert child.finish() == 0, child.stderr()
        finally:
            child.close()
