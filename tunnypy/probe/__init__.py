"""
The ``tunnypy`` command (``tunnypy probe``), apart from the library.

``import tunnypy`` never loads this package; the ``tunnypy`` script and
``python -m tunnypy`` call :func:`main`.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tunnypy`` command; returns the exit status."""
    # Imported here: a measurement subprocess runs this file first and needs none of the CLI.
    from ._cli import main as run  # noqa: PLC0415

    return run(argv)
