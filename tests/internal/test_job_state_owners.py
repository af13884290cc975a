"""Who may change a job's hand-off state: only the line and the job itself."""

from __future__ import annotations

import ast
from pathlib import Path

import tunnypy

# What the gate between caller and worker decides (see _job.py's docstring).
GUARDED = {"withdrawn"}
OWNERS = {"_job.py", "_line.py"}
# A child process keeps its own record of the job it runs (_process._ChildJob),
# read by interrupted() there; no line Job is in a child. A Dask actor does
# the same (contrib/dask.py, _RemoteJob).
CHILD_RECORDS = {"_process.py", "dask.py"}


class TestJobStateOwners:
    """No module but _job and _line assigns a job's withdrawn flag."""

    def test_only_the_line_and_the_job_assign_withdrawn(self) -> None:
        """Every assignment to .withdrawn in the package is in _job.py or _line.py."""
        package = Path(tunnypy.__file__).parent
        found = []
        for path in sorted(package.rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign):
                    targets = node.targets
                elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                    targets = [node.target]
                else:
                    continue
                for target in targets:
                    if isinstance(target, ast.Attribute) and target.attr in GUARDED:
                        found.append((path.name, node.lineno))
        assert found, "the check found no assignment at all: it is looking in the wrong place"
        assert [(name, line) for name, line in found if name not in OWNERS | CHILD_RECORDS] == []
