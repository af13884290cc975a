"""
The ```python blocks of README.md and docs/*.md run.

Each block runs on its own, in a fresh interpreter (a subprocess of this one),
as ``__main__``. It must exit 0 within ``TIMEOUT`` seconds, raise nothing in
any thread, and leave no thread running once it ends. A line
``print(...)  # 49`` (a literal, up to the first comma of the comment) must
print that literal on a line of its own.

A block that cannot run as it stands says so in an HTML comment on the line
just above its fence, which GitHub and the site do not show:

- ``<!-- not-run: <reason> -->``: a sketch (its names stand for the reader's
  own code); the test skips it, giving the reason, so ``pytest -ra`` lists
  every block not run and why.
- ``<!-- continues -->``: it goes on from the previous ```python block of the
  same page (the two run together, as one program).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TIMEOUT = 30.0
"""Seconds a block may run; each is meant to take well under one."""

_FENCE = re.compile(r"^```python\s*$")
_NOT_RUN = re.compile(r"^<!--\s*not-run:\s*(?P<reason>.+?)\s*-->\s*$")
_CONTINUES = re.compile(r"^<!--\s*continues\s*-->\s*$")
_PRINTS = re.compile(r"^\s*print\(.*\)\s*#\s*(?P<said>[^,]+)")

# Runs one block: the block's own exceptions and those of its threads fail the
# run, and so does a thread still alive shortly after it ended.
_RUNNER = """
import sys, threading, time

failures = []
threading.excepthook = lambda args: failures.append(args)
source, label = sys.stdin.read(), sys.argv[1]
exec(compile(source, label, "exec"), {"__name__": "__main__"})
deadline = time.monotonic() + 5.0
for thread in threading.enumerate():
    if thread is not threading.main_thread():
        thread.join(max(0.0, deadline - time.monotonic()))
alive = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
if alive:
    sys.exit(f"{label} left threads running: {alive}")
if failures:
    sys.exit(f"{label}: a thread raised {failures[0].exc_value!r}")
"""


class Block(NamedTuple):
    """One ```python block: where it is, its code, and why it is not run (if so)."""

    label: str
    source: str
    not_run: str | None


def blocks(page: Path) -> list[Block]:
    """The ```python blocks of *page*, a continuing block joined to its predecessor."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        if not _FENCE.match(lines[index]):
            index += 1
            continue
        start = index
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == "```")
        source = "\n".join(lines[start + 1 : end]) + "\n"
        above = lines[start - 1] if start else ""
        label = f"{page.relative_to(ROOT)}:{start + 1}"
        not_run = _NOT_RUN.match(above)
        if _CONTINUES.match(above):
            assert found, f"{label} continues, but no block comes before it"
            before = found.pop()
            found.append(Block(label, before.source + source, before.not_run))
        else:
            found.append(Block(label, source, not_run["reason"] if not_run else None))
        index = end + 1
    return found


def promised_output(source: str) -> list[str]:
    """What the block's ``print(...)  # <literal>`` lines say they print."""
    promised = []
    for line in source.splitlines():
        match = _PRINTS.match(line)
        if match is None:
            continue
        try:
            value = ast.literal_eval(match["said"].strip())
        except (ValueError, SyntaxError):
            continue  # prose, not a value
        promised.append(str(value))
    return promised


ALL_BLOCKS = [block for page in PAGES for block in blocks(page)]


class TestDocExamples:
    def test_found(self) -> None:
        """README.md and the docs hold python blocks, and most of them run."""
        ran = [block for block in ALL_BLOCKS if block.not_run is None]
        assert len(ran) > 2 * (len(ALL_BLOCKS) - len(ran)), [b.label for b in ALL_BLOCKS]

    def test_promised_output_read(self) -> None:
        """A print's comment is read as the value it promises, unless it is prose."""
        source = "print(f(7))  # 49\nprint(g())  # 64, or JobTimedOutError\nprint(h)  # the last\n"
        assert promised_output(source) == ["49", "64"]

    @pytest.mark.parametrize("block", ALL_BLOCKS, ids=[block.label for block in ALL_BLOCKS])
    def test_runs(self, block: Block) -> None:
        """The block runs to the end, in a fresh interpreter, and leaves no thread."""
        if block.not_run is not None:
            pytest.skip(f"{block.label} not run: {block.not_run}")
        completed = subprocess.run(
            [sys.executable, "-W", "error", "-c", _RUNNER, block.label],
            input=block.source,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        report = f"{block.label}\nstdout:\n{completed.stdout}\nstderr:\n{completed.stderr}"
        assert completed.returncode == 0, report
        assert "Traceback" not in completed.stderr, report
        printed = completed.stdout.splitlines()
        for value in promised_output(block.source):
            assert value in printed, f"{block.label} did not print {value!r}\n{report}"
