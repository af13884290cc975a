"""
Every script in examples/ runs to completion.

Each ``examples/*.py`` is collected automatically and run as a subprocess with
this interpreter. It must exit 0 within ``TIMEOUT`` seconds, print something,
leave no traceback on stderr (an exception in a thread does not change the
exit code, so stderr is checked too), and print every line it promises with a
comment of the form ``# expect: <text>``; that text must appear in its output.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 30.0
"""Seconds an example may run; each is meant to take a few."""
EXPECT = "# expect: "


def expected_lines(path: Path) -> list[str]:
    """The texts an example promises to print, from its ``# expect:`` comments."""
    return [
        line.strip()[len(EXPECT) :].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith(EXPECT)
    ]


def example_names() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py") if not path.name.startswith("_"))


class TestExamples:
    def test_found(self) -> None:
        """The examples directory is found and holds the quick start."""
        assert "quickstart.py" in example_names()

    @pytest.mark.parametrize("name", example_names())
    def test_runs(self, name: str) -> None:
        """The example exits 0 promptly, prints what it promises and no traceback."""
        path = EXAMPLES / name
        completed = subprocess.run(
            [sys.executable, str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        report = f"stdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
        assert completed.returncode == 0, report
        assert completed.stdout.strip(), f"{name} printed nothing\n{report}"
        assert "Traceback" not in completed.stderr, report
        for text in expected_lines(path):
            assert text in completed.stdout, f"{name} did not print {text!r}\n{report}"
