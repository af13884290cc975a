"""``tunnypy probe --to-the-limit --rlimit-as``: fails fast, and the report names RLIMIT_AS."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from tunnypy.probe import _child, main

# Puts the address-space limit where a new thread gets its stack but not the memory
# for its first Python frame, in this process, for three sizes of that gap.
AT_THE_EDGE = textwrap.dedent(
    """
    import json, os, resource, threading
    from tunnypy.probe import _child, _limits

    stack, page = 256 * 1024, os.sysconf("SC_PAGE_SIZE")
    threading.stack_size(stack)
    # Threads that stay alive: glibc's per-thread arenas exist, and no stack of an
    # ended thread is cached for the next to reuse.
    hold = threading.Event()
    for _ in range(40):
        threading.Thread(target=hold.wait, daemon=True).start()
    runs = []
    for extra in (4096, 8192, 12288):
        room = stack + page + extra
        limit = _limits.snapshot()["vm"] + room
        spec = {"max": 100, "time_limit": 5, "stack_size": stack, "rlimit_as": limit}
        runs.append(_child._to_the_limit(spec))
        unlimited = resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_AS, (unlimited, unlimited))
    hold.set()
    print(json.dumps(runs))
    """
)


class TestAtTheEdge:
    """A thread that gets its stack but cannot run does not hang the run."""

    def test_run_ends_with_a_failure(self) -> None:
        """Each run ends in an error within the start grace, and every thread stops."""
        completed = subprocess.run(
            [sys.executable, "-c", AT_THE_EDGE],
            capture_output=True,
            text=True,
            timeout=40,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        runs = json.loads(completed.stdout.splitlines()[-1])
        assert len(runs) == 3
        for run in runs:
            assert run["stopped"] == "error", run
            assert run["stopped_all"] is True
            assert run["seconds"] < _child.START_GRACE + 5
            assert run["state"]["vm"] is not None


class TestDocumentedCommand:
    """The --rlimit-as demonstration of docs/how-many-threads.md, with fewer counts."""

    def test_names_rlimit_as(self) -> None:
        """The run ends in a failure that the report puts down to RLIMIT_AS."""
        # The limit is met after about 3,900 thread starts: well under a second
        # on a quiet machine, ten seconds or more with both CPUs busy.
        completed = subprocess.run(
            [
                *(sys.executable, "-m", "tunnypy", "probe", "--counts", "10"),
                *("--stack-size", "256K", "--to-the-limit", "--rlimit-as", "2G"),
                *("--time-limit", "40"),
            ],
            capture_output=True,
            text=True,
            timeout=55,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr
        last = completed.stdout.splitlines()[-1]
        assert last.startswith("To the limit: started "), completed.stdout
        assert "likely cause: RLIMIT_AS" in last
        assert last.endswith("All stopped.")


class TestLostChild:
    """A run to the limit whose subprocess dies is still reported."""

    @pytest.fixture
    def dying_python(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An interpreter whose run to the limit reports progress, then is killed."""
        fake = tmp_path / "python"
        fake.write_text(
            "#!/bin/sh\n"
            'case "$3" in\n'
            '  *\'"mode": "limit"\'*)\n'
            "    echo 'progress 1000'\n"
            "    echo 'Exception ignored in thread started by: <object repr() failed>' >&2\n"
            "    echo 'MemoryError: ' >&2\n"
            "    kill -9 $$ ;;\n"
            "esac\n"
            f'exec "{sys.executable}" "$@"\n'
        )
        fake.chmod(0o755)
        monkeypatch.setattr(sys, "executable", str(fake))

    @pytest.mark.usefixtures("dying_python")
    def test_killed_under_rlimit_as(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Killed under --rlimit-as: exit 0, and the report names RLIMIT_AS."""
        args = ["probe", "--counts", "10", "--to-the-limit", "--rlimit-as", "1G", "--json"]
        assert main(args) == 0
        run = json.loads(capsys.readouterr().out)["to_the_limit"]
        assert run["lost"] is True
        assert run["started"] == 1000
        assert run["stopped"] == "error"
        assert (
            run["error"]
            == "probe subprocess was killed by signal 9 (the OOM killer?): MemoryError:"
        )
        assert run["likely_cause"] == "RLIMIT_AS"

    @pytest.mark.usefixtures("dying_python")
    def test_killed_without_rlimit_as(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Killed with no limit set by the probe: reported, cause not identified."""
        assert main(["probe", "--counts", "10", "--to-the-limit"]) == 0
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith("To the limit: started at least 1,000 threads in ")
        assert "then probe subprocess was killed by signal 9" in last
        assert "cause not identified" in last
        assert last.endswith("Its threads ended with it.")


class TestBareSleepers:
    """The run to the limit's threads stop as a chain."""

    def test_waking_the_newest_stops_them_all(self) -> None:
        """stop() wakes only the newest; each thread woken wakes the one before it."""
        sleepers = _child._BareSleepers(grace=10)
        for _ in range(20):
            sleepers.start()
        assert sleepers.started == 20
        assert sleepers.stop(timeout=10)

    def test_stop_with_none_started_is_a_no_op(self) -> None:
        """Nothing started, nothing to stop."""
        assert _child._BareSleepers(grace=1).stop(timeout=1)

    def test_a_thread_that_dies_unrun_is_given_up_on(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A thread that ends before its body runs: start() raises after grace; the chain holds."""
        sleepers = _child._BareSleepers(grace=0.2)
        sleepers.start()
        monkeypatch.setattr(_child, "_sleep_in_chain", lambda *_: None)
        with pytest.raises(RuntimeError, match=r"^a new thread did not run within 0.2 s "):
            sleepers.start()
        monkeypatch.undo()
        assert (sleepers.started, sleepers.gave_up) == (1, True)
        sleepers.start()
        assert sleepers.started == 2
        assert sleepers.stop(timeout=10)

    def test_a_thread_that_runs_late_stays_out(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A thread given up on that runs later finds its link taken and ends at once."""
        late = threading.Event()
        real = _child._sleep_in_chain

        def slow(*locks: Any) -> None:
            late.wait(10)
            real(*locks)

        sleepers = _child._BareSleepers(grace=0.2)
        monkeypatch.setattr(_child, "_sleep_in_chain", slow)
        with pytest.raises(RuntimeError, match="did not run within"):
            sleepers.start()
        monkeypatch.undo()
        sleepers.start()
        late.set()
        # stop() waits for every thread started here to end, the late one included.
        assert sleepers.stop(timeout=10)
        assert sleepers.started == 1


class TestRunChild:
    """Reading a probe subprocess."""

    def test_much_stderr_does_not_block_the_child(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A child that writes more to stderr than a pipe holds still has its result read."""
        script = tmp_path / "noisy.py"
        script.write_text(
            "import sys\n"
            "sys.stderr.write('MemoryError\\n' * 100_000)\n"
            "sys.stderr.flush()\n"
            "print('result {\"ok\": true}', flush=True)\n"
        )
        fake = tmp_path / "python"
        fake.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{script}"\n')
        fake.chmod(0o755)
        monkeypatch.setattr(sys, "executable", str(fake))
        assert _child.run_child({}, lambda _: None, timeout=20) == {"ok": True}
