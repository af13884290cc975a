"""Interpreter exit without close(): every worker is terminated, running jobs finish."""

from __future__ import annotations

import pytest

from tests.helpers import WAIT
from tests.test_subprocess import Child


class TestTerminateAtExit:
    def test_every_idle_worker_is_terminated(self) -> None:
        """terminate() runs once per worker, with or without a block_until_ready hook."""
        child = Child(
            """
            import sys, tunnypy
            class Plain(tunnypy.BaseWorker):
                def process(self, payload):
                    return payload
                def terminate(self):
                    sys.stdout.write("terminated\\n")
                    sys.stdout.flush()
            class Ready(Plain):
                def block_until_ready(self):
                    pass
            plain = tunnypy.Pool(8, Plain)
            ready = tunnypy.Pool(8, Ready)
            print("results", plain.process(1), ready.process(2), flush=True)
            """
        )
        try:
            assert child.expect("results") == "results 1 2"
            assert child.finish() == 0, child.stderr()
            rest = []
            while (line := child.lines.get(timeout=WAIT)) is not None:
                rest.append(line)
            assert "".join(rest).count("terminated") == 16  # lines of threads may interleave
        finally:
            child.close()


class TestExitAfterAnInterruptedClose:
    def test_the_running_job_finishes_before_the_program_exits(self) -> None:
        """Ctrl-C in close(), then exit: the busy worker is still waited for (3.11, 3.12)."""
        child = Child(
            """
            import signal, sys, threading, time, tunnypy
            interrupted = threading.Event()
            def on_sigint(signum, frame):
                if not interrupted.is_set():  # only the first SIGINT is a Ctrl-C
                    interrupted.set()
                    raise KeyboardInterrupt
            signal.signal(signal.SIGINT, on_sigint)
            started = threading.Event()
            tick = threading.Event()  # never set: a bounded sleep between looks
            exiting = tunnypy.Pool.from_func(1, abs)  # closed by interpreter exit, not before
            def job(_):
                started.set()
                while not exiting.closed:
                    tick.wait(0.001)
                time.sleep(0.2)  # the job's own work, begun as the program exits
                print("job finished", flush=True)
            pool = tunnypy.Pool.from_func(1, job)
            pool.submit(1)
            started.wait(10)
            main = threading.main_thread()
            def waiting_in_close():
                frame = sys._current_frames().get(main.ident)
                names = []
                while frame is not None:
                    names.append(frame.f_code.co_name)
                    frame = frame.f_back
                sleeping = names[0] in ("_wait_for_tstate_lock", "join", "wait")
                return sleeping and "close" in names
            def ctrl_c():
                deadline = time.monotonic() + 10
                while not waiting_in_close() and time.monotonic() < deadline:
                    tick.wait(0.001)
                # A SIGINT landing before the lock wait begins is handled only
                # once that wait ends, here never: send until the handler ran.
                while not interrupted.is_set() and time.monotonic() < deadline:
                    signal.pthread_kill(main.ident, signal.SIGINT)
                    interrupted.wait(0.05)
            sender = threading.Thread(target=ctrl_c)
            sender.start()
            try:
                pool.close()
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            sender.join(10)
            print("main ends", flush=True)
            """
        )
        try:
            child.expect("interrupted")
            child.expect("main ends")
            child.expect("job finished")
            assert child.finish() == 0, child.stderr()
        finally:
            child.close()


class TestExitAfterCloseWithoutWaiting:
    @pytest.mark.parametrize("ending", ["pool.close(wait=False)", "del pool"])
    def test_workers_still_running_are_waited_for(self, ending: str) -> None:
        """close(wait=False), or an unclosed pool dropped: its job ends, every terminate() runs."""
        child = Child(
            """
            import sys, threading, time, tunnypy
            started = threading.Event()
            class Slow(tunnypy.BaseWorker):
                def process(self, payload):
                    started.set()
                    time.sleep(0.2)  # the job's own work, outlasting main
                    sys.stdout.write("job finished\\n")
                    sys.stdout.flush()
                def terminate(self):
                    sys.stdout.write("terminated\\n")
                    sys.stdout.flush()
            pool = tunnypy.Pool(4, Slow)
            pool.submit(1)
            started.wait(10)
            ENDING
            print("main ends", flush=True)
            """.replace("ENDING", ending)
        )
        try:
            assert child.finish() == 0, child.stderr()
            lines = []
            while (line := child.lines.get(timeout=WAIT)) is not None:
                lines.append(line)
            text = "".join(lines)
            assert (text.count("job finished"), text.count("terminated")) == (1, 4)
            assert "main ends" in text
        finally:
            child.close()
