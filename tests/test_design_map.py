"""docs/design.md's map points at the code: every file:line anchor lands on the line it names."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = ROOT / "docs" / "design.md"
ANCHOR = re.compile(r"`(tunnypy/[\w/]+\.py):(\d+)`")

# What each anchor of the map is about: the text its line must hold. When
# the code moves, the test names the line where that text is now.
LANDMARKS: dict[str, list[str]] = {
    "tunnypy/_pool.py": [
        "def process(self, payload: P) -> R:",
        "job = tls.spare",
        "yield_until_free(lock)",
        "parked = idle[-1]",
        "line.waiting.append(job)",
        "parked.waker.wake()",
        "line.dispatch(job)",
        "wait()",
        "result = job.result",
        "return line.outcome(job)",
    ],
    "tunnypy/_line.py": [
        "def dispatch(self, job: Job",
        "    def call(",
        "def outcome(self, job: Job)",
        "def take_or_park(self, worker: Taker)",
        "def answer_summons(self, worker: Taker)",
    ],
    "tunnypy/_worker_thread.py": [
        "def _run(self) -> None:",
        "outcome = job.context.run(process, job.payload)",
        "following = take_or_park(self) if offered else None",
        "if offered and ok:",
        "deliver(job, ok, outcome)",
        "job = following  # None: parked",
        "self.supervisor.worker_exited(self)",
        "job = self.job  # set under the pool's lock",
        "job = line.answer_summons(self)",
        "self.waker.wait_forever()",
        "def _deliver(self, job: Job, ok: bool, outcome: Any) -> None:",
        "gate.acquire()",
        "job.waker.wake()",
    ],
}


def _anchors() -> dict[str, set[int]]:
    found: dict[str, set[int]] = {}
    for path, line in ANCHOR.findall(DESIGN.read_text(encoding="utf-8")):
        found.setdefault(path, set()).add(int(line))
    return found


class TestDesignMap:
    """Each anchor in the map lands on one of the landmarks listed for its file."""

    def test_every_anchor_lands_on_a_landmark(self) -> None:
        """A file:line anchor whose line no longer holds its landmark fails."""
        problems = []
        for path, lines in sorted(_anchors().items()):
            assert path in LANDMARKS, f"{path} is anchored in design.md but has no landmarks here"
            source = (ROOT / path).read_text(encoding="utf-8").splitlines()
            for number in sorted(lines):
                text = source[number - 1] if number <= len(source) else ""
                if not any(mark in text for mark in LANDMARKS[path]):
                    problems.append(f"{path}:{number} holds {text.strip()!r}")
        assert not problems, "anchors that drifted:\n" + "\n".join(problems)

    def test_every_landmark_is_anchored_once(self) -> None:
        """Each landmark is on exactly one line of its file, and the map points at that line."""
        anchors = _anchors()
        problems = []
        for path, marks in LANDMARKS.items():
            source = (ROOT / path).read_text(encoding="utf-8").splitlines()
            for mark in marks:
                where = [i + 1 for i, text in enumerate(source) if mark in text]
                if len(where) != 1:
                    # A common landmark (``wait()``): it must be one of the anchored lines.
                    if not any(n in anchors.get(path, set()) for n in where):
                        problems.append(f"{mark!r} in {path}: on lines {where}, none anchored")
                elif where[0] not in anchors.get(path, set()):
                    problems.append(f"{mark!r} is now at {path}:{where[0]}")
        assert not problems, "update docs/design.md's map:\n" + "\n".join(problems)
