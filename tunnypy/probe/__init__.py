"""
The ``tunnypy`` command (``tunnypy probe``), apart from the library.

``import tunnypy`` never loads this package; the ``tunnypy`` script and
``python -m tunnypy`` call :func:`main`.

- ``_cli``: the options, the run of the probe, ``main``.
- ``_child``: one measurement in a fresh interpreter, and how the CLI reads it.
- ``_limits``: reading the system and the limits on the thread count.
- ``_report``: the progress display, the text report and the plot.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tunnypy`` command; returns the exit status."""
    # Imported here: a measurement subprocess runs this file first and needs none of the CLI.
    from ._cli import main as run  # noqa: PLC0415

    return run(argv)
