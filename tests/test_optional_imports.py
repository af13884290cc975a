"""The core never imports an optional integration's dependency (the extras of contrib/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tunnypy
from tests.helpers import WAIT


def test_the_core_never_imports_dask() -> None:
    """Importing every core module (tunnypy/*.py) loads neither dask nor distributed."""
    core = sorted(
        f"tunnypy.{path.stem}"
        for path in (Path(tunnypy.__file__).parent).glob("*.py")
        if path.stem not in {"__main__"}
    )
    code = (
        "import importlib, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "print(bad)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=WAIT, check=True
    )
    assert done.stdout.strip() == "[]"
